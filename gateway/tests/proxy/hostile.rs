//! Requests an attacker sends, on raw sockets where a client library would tidy them up (issue:
//! hostile clients, findings 3 to 5 and what was seen beside them): vouched identity headers
//! under other spellings and in trailers, `x-user-` headers the check does not vouch for, a
//! user outside a route's `allow_groups`, the session passed to door-checked upstreams, Host
//! games, `Upgrade: h2c`, broken chunked framing, transfer codings, split HTTP/2 cookies, and a
//! claimed client address.

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{Probe, TestGateway, raw, received};

/// A door check's upstream: 204 with `X-User-Id: real-user` and `X-User-Groups: staff` for a
/// request carrying the session `ok` (cookie `sid=ok` or `Authorization: Session ok`), with
/// `X-User-Id: boss` and `X-User-Groups: staff, admins` for the session `admin`, with
/// `X-User-Id: loner` and no groups for `nobody`; else 401.
pub(crate) async fn voucher() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let headers = request.headers();
                    let text = |name| {
                        headers
                            .get_all(name)
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .collect::<Vec<_>>()
                            .join(";")
                    };
                    let session = |id: &str| {
                        text("cookie")
                            .split(';')
                            .any(|c| c.trim().strip_prefix("sid=") == Some(id))
                            || text("authorization") == format!("Session {id}")
                    };
                    let user = [
                        ("ok", "real-user", Some("staff")),
                        ("admin", "boss", Some("staff, admins")),
                        ("nobody", "loner", None),
                    ]
                    .into_iter()
                    .find(|(id, _, _)| session(id));
                    let response = if let Some((_, user, groups)) = user {
                        let mut answer = Response::builder().status(204).header("x-user-id", user);
                        if let Some(groups) = groups {
                            answer = answer.header("x-user-groups", groups);
                        }
                        answer.body(Full::new(Bytes::new()))
                    } else {
                        Response::builder()
                            .status(401)
                            .body(Full::new(Bytes::from_static(b"{\"error\":\"no\"}")))
                    };
                    Ok::<_, Infallible>(response.expect("response"))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Routes: `/` to the probe; `/app` to the probe behind a door check answered by `voucher`;
/// `/admin` behind the same check, for the group `admins` only.
fn door_routes(probe: &Probe, voucher: SocketAddr, settings: &str, check: &str) -> String {
    format!(
        "[settings]\n{settings}\n\n[upstreams]\nprobe = [\"{}\"]\nvoucher = [\"http://{voucher}\"]\n\n\
         [auth.session]\nupstream = \"voucher\"\npath = \"/session\"\n{check}\n\n\
         [[routes]]\npath = \"/\"\nupstream = \"probe\"\n\n\
         [[routes]]\npath = \"/app\"\nupstream = \"probe\"\nauth = \"session\"\n\n\
         [[routes]]\npath = \"/admin\"\nupstream = \"probe\"\nauth = \"session\"\nallow_groups = [\"admins\"]\n",
        probe.url()
    )
}

/// Every field the probe received (headers and trailers) named `x-user-…` in any spelling.
fn user_fields(echo: &Value) -> Vec<(&str, &str)> {
    ["headers", "trailers"]
        .iter()
        .flat_map(|part| echo[part].as_array().into_iter().flatten())
        .map(|pair| {
            (
                pair[0].as_str().expect("name"),
                pair[1].as_str().expect("value"),
            )
        })
        .filter(|(field, _)| {
            field
                .replace('_', "-")
                .to_ascii_lowercase()
                .starts_with("x-user-")
        })
        .collect()
}

/// The status line and the JSON body of a raw answer.
fn answer(raw: &str) -> (String, Value) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Every field the probe received (headers and trailers) whose name, with `_` read as `-`,
/// is `name`: what a CGI/WSGI app would see as one variable.
fn spellings<'a>(echo: &'a Value, name: &str) -> Vec<(&'a str, &'a str)> {
    ["headers", "trailers"]
        .iter()
        .flat_map(|part| echo[part].as_array().into_iter().flatten())
        .map(|pair| {
            (
                pair[0].as_str().expect("name"),
                pair[1].as_str().expect("value"),
            )
        })
        .filter(|(field, _)| field.replace('_', "-").eq_ignore_ascii_case(name))
        .collect()
}

#[tokio::test]
async fn no_spelling_of_a_vouched_header_reaches_the_upstream_in_headers_or_trailers() {
    let probe = Probe::start().await;
    let voucher = voucher().await;
    for settings in ["", "underscores_in_headers = true"] {
        let gateway = TestGateway::start(&door_routes(&probe, voucher, settings, "")).await;
        let forged = "POST /app HTTP/1.1\r\nHost: h\r\nCookie: sid=ok\r\nConnection: close\r\n\
             X-User-Id: admin\r\nX_User_Id: admin\r\nx_user-id: admin\r\nX-USER-ID: admin\r\n\
             Trailer: X-User-Id, X_User_Id, X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\nbody\r\n0\r\nX-User-Id: forged\r\nX_User_Id: forged\r\nX-Checksum: 1\r\n\r\n";
        let (status, echo) = answer(&raw(gateway.addr, forged.as_bytes()).await);
        assert!(status.ends_with("200 OK"), "{settings}: {status}");
        assert_eq!(
            spellings(&echo, "x-user-id"),
            [("x-user-id", "real-user")],
            "{settings}: only the vouched value"
        );
        assert_eq!(received(&echo, "trailer"), ["x-checksum"], "{settings}");
        assert!(
            echo["trailers"]
                .as_array()
                .expect("trailers")
                .iter()
                .any(|pair| pair[0] == "x-checksum"),
            "{settings}: other trailers pass: {echo}"
        );
    }
}

/// Every `x-user-` header is the check's, whether its `headers` name it or not: a client's
/// `X-User-Groups`, `X-User-Admin` or `x_user_email`, as headers or trailers, never arrives;
/// only what the check vouched for (among `headers`) does.
#[tokio::test]
async fn no_x_user_header_of_the_clients_reaches_the_upstream() {
    let probe = Probe::start().await;
    let voucher = voucher().await;
    for settings in ["", "underscores_in_headers = true"] {
        let gateway = TestGateway::start(&door_routes(&probe, voucher, settings, "")).await;
        let forged = "POST /app HTTP/1.1\r\nHost: h\r\nCookie: sid=ok\r\nConnection: close\r\n\
             X-User-Groups: admins\r\nX-User-Admin: true\r\nx_user_email: boss@example.com\r\n\
             X_USER_NAME: Boss\r\nX-User: kept\r\n\
             Trailer: X-User-Admin, x_user_groups, X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\nbody\r\n0\r\nX-User-Admin: true\r\nx_user_groups: admins\r\nX-Checksum: 1\r\n\r\n";
        let (status, echo) = answer(&raw(gateway.addr, forged.as_bytes()).await);
        assert!(status.ends_with("200 OK"), "{settings}: {status}");
        let mut fields = user_fields(&echo);
        fields.sort_unstable();
        assert_eq!(
            fields,
            [("x-user-groups", "staff"), ("x-user-id", "real-user")],
            "{settings}: only what the check vouched for: {echo}"
        );
        assert_eq!(
            received(&echo, "x-user"),
            ["kept"],
            "{settings}: not an x-user- name"
        );
        assert_eq!(received(&echo, "trailer"), ["x-checksum"], "{settings}");
    }
    // A check that vouches for the id alone: the client's groups are still removed, and the
    // check's are not passed on.
    let only_the_id = door_routes(&probe, voucher, "", "headers = [\"x-user-id\"]");
    let gateway = TestGateway::start(&only_the_id).await;
    let request = "GET /app HTTP/1.1\r\nHost: h\r\nCookie: sid=ok\r\nConnection: close\r\n\
         X-User-Groups: admins\r\nX-User-Admin: true\r\n\r\n";
    let (status, echo) = answer(&raw(gateway.addr, request.as_bytes()).await);
    assert!(status.ends_with("200 OK"), "{status}");
    assert_eq!(user_fields(&echo), [("x-user-id", "real-user")], "{echo}");
}

/// `allow_groups`: a user the check vouched for, in none of the route's groups, gets 403 JSON
/// and the upstream never sees the request (the probe would answer 200); a member is let
/// through, whatever the client claimed; each refusal is counted.
#[tokio::test]
async fn a_route_with_allow_groups_forbids_users_of_other_groups() {
    let probe = Probe::start().await;
    let voucher = voucher().await;
    // The check vouches for the id alone: groups are read from its answer all the same.
    let gateway = TestGateway::start(&door_routes(
        &probe,
        voucher,
        "",
        "headers = [\"x-user-id\"]",
    ))
    .await;
    let request = |session: &str, extra: &str| {
        format!(
            "GET /admin/panel HTTP/1.1\r\nHost: h\r\nCookie: sid={session}\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    for (session, claim) in [
        ("ok", ""),
        ("ok", "X-User-Groups: admins\r\n"),
        ("nobody", "X-User-Groups: admins\r\n"),
    ] {
        let raw_answer = raw(gateway.addr, request(session, claim).as_bytes()).await;
        let (status, body) = answer(&raw_answer);
        assert!(
            status.starts_with("HTTP/1.1 403"),
            "{session} {claim:?}: {raw_answer}"
        );
        assert_eq!(body["error"], "forbidden", "{raw_answer}");
        assert!(
            raw_answer
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{raw_answer}"
        );
    }
    let (status, echo) = answer(&raw(gateway.addr, request("admin", "").as_bytes()).await);
    assert!(status.ends_with("200 OK"), "a member: {status}");
    assert_eq!(echo["path"], "/admin/panel");
    assert_eq!(user_fields(&echo), [("x-user-id", "boss")], "{echo}");
    // Not logged in: the check's own 401, before any group is looked at.
    let (status, _) = answer(&raw(gateway.addr, request("stolen", "").as_bytes()).await);
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    // A route without allow_groups lets every checked user through.
    let open = "GET /app HTTP/1.1\r\nHost: h\r\nCookie: sid=nobody\r\nConnection: close\r\n\r\n";
    let (status, _) = answer(&raw(gateway.addr, open.as_bytes()).await);
    assert!(status.ends_with("200 OK"), "{status}");

    let metrics = gateway.metrics().await;
    for expected in [
        "gateway_door_refusals_total{route=\"/admin\",reason=\"forbidden\"} 3",
        "gateway_door_refusals_total{route=\"/admin\",reason=\"denied\"} 1",
    ] {
        assert!(metrics.contains(expected), "{expected} in:\n{metrics}");
    }
    assert!(
        !metrics.contains("gateway_door_refusals_total{route=\"/app\""),
        "passes are not refusals:\n{metrics}"
    );
}

#[tokio::test]
async fn header_names_with_underscores_are_dropped_unless_allowed() {
    let probe = Probe::start().await;
    let request = b"GET /echo HTTP/1.1\r\nHost: h\r\nX_Custom: 1\r\nConnection: close\r\n\r\n";
    let gateway = TestGateway::start(&crate::helpers::routes_to(&probe)).await;
    let (_, echo) = answer(&raw(gateway.addr, request).await);
    assert!(received(&echo, "x_custom").is_empty(), "{echo}");
    let allowing = format!(
        "[settings]\nunderscores_in_headers = true\n\n[upstreams]\nprobe = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"probe\"\n",
        probe.url()
    );
    let gateway = TestGateway::start(&allowing).await;
    let (_, echo) = answer(&raw(gateway.addr, request).await);
    assert_eq!(received(&echo, "x_custom"), ["1"]);
}

#[tokio::test]
async fn the_session_stays_at_the_door_unless_the_check_passes_it_on() {
    let probe = Probe::start().await;
    let voucher = voucher().await;
    let request = "GET /app HTTP/1.1\r\nHost: h\r\nCookie: theme=dark; sid=ok; lang=en\r\n\
         X-Session-Id: ok\r\nConnection: close\r\n\r\n";
    let gateway = TestGateway::start(&door_routes(&probe, voucher, "", "")).await;
    let (status, echo) = answer(&raw(gateway.addr, request.as_bytes()).await);
    assert!(status.ends_with("200 OK"), "{status}");
    assert_eq!(received(&echo, "cookie"), ["theme=dark; lang=en"]);
    assert!(received(&echo, "x-session-id").is_empty());
    assert_eq!(received(&echo, "x-user-id"), ["real-user"]);
    // A session header is held back too.
    let header =
        "GET /app HTTP/1.1\r\nHost: h\r\nAuthorization: Session ok\r\nConnection: close\r\n\r\n";
    let (status, echo) = answer(&raw(gateway.addr, header.as_bytes()).await);
    assert!(status.ends_with("200 OK"), "{status}");
    assert!(received(&echo, "authorization").is_empty(), "{echo}");

    let passing =
        TestGateway::start(&door_routes(&probe, voucher, "", "pass_session = true")).await;
    let (_, echo) = answer(&raw(passing.addr, request.as_bytes()).await);
    assert_eq!(received(&echo, "cookie"), ["theme=dark; sid=ok; lang=en"]);
    assert_eq!(received(&echo, "x-session-id"), ["ok"]);
    // A route without a check passes what it gets.
    let open = "GET /echo HTTP/1.1\r\nHost: h\r\nCookie: sid=ok\r\nConnection: close\r\n\r\n";
    let (_, echo) = answer(&raw(gateway.addr, open.as_bytes()).await);
    assert_eq!(received(&echo, "cookie"), ["sid=ok"]);
}

#[tokio::test]
async fn a_request_gets_exactly_one_valid_host_or_400() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&crate::helpers::routes_to(&probe)).await;
    let request =
        |host_lines: &str| format!("GET /echo HTTP/1.1\r\n{host_lines}Connection: close\r\n\r\n");
    for (what, host_lines) in [
        (
            "two Host headers",
            "Host: a.example\r\nHost: b.example\r\n".to_owned(),
        ),
        ("no Host", String::new()),
        ("empty", "Host: \r\n".to_owned()),
        ("a space", "Host: a b\r\n".to_owned()),
        ("a path", "Host: evil/path?x\r\n".to_owned()),
        ("user info", "Host: user@evil\r\n".to_owned()),
        ("port too large", "Host: a.example:99999\r\n".to_owned()),
        ("port 0", "Host: a.example:0\r\n".to_owned()),
    ] {
        let (status, body) = answer(&raw(gateway.addr, request(&host_lines).as_bytes()).await);
        assert!(status.starts_with("HTTP/1.1 400"), "{what}: {status}");
        assert!(
            body["error"].as_str().is_some(),
            "{what}: JSON error, got {body}"
        );
    }
    // HTTP/1.0 may leave Host out.
    let (status, _) = answer(&raw(gateway.addr, b"GET /echo HTTP/1.0\r\n\r\n").await);
    assert!(
        status.ends_with("200 OK"),
        "HTTP/1.0 without Host: {status}"
    );
    // Connection cannot take Host (or the cookie) away.
    let (status, echo) = answer(
        &raw(
            gateway.addr,
            b"GET /echo HTTP/1.1\r\nHost: a.example\r\nCookie: sid=1\r\nConnection: close, host, cookie\r\n\r\n",
        )
        .await,
    );
    assert!(status.ends_with("200 OK"), "{status}");
    assert_eq!(received(&echo, "host"), ["a.example"]);
    assert_eq!(received(&echo, "cookie"), ["sid=1"]);
    // An absolute-form target names the host; the Host header is then ignored (RFC 9112 §3.2.2).
    let (_, echo) = answer(
        &raw(
            gateway.addr,
            b"GET http://a.example/echo HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(received(&echo, "host"), ["a.example"]);
    assert_eq!(received(&echo, "x-forwarded-host"), ["a.example"]);
}

/// A request over HTTP/2 with prior knowledge; `headers` are added as given (repeated names
/// stay separate fields).
async fn h2_request(gateway: &TestGateway, headers: &[(&str, &str)]) -> (u16, Value) {
    let stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let mut request = Request::get(format!("http://{}/echo", gateway.addr));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("answer");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn http2_cookies_are_joined_and_a_host_unlike_the_authority_is_refused() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&crate::helpers::routes_to(&probe)).await;
    let (status, echo) = h2_request(&gateway, &[("cookie", "a=1"), ("cookie", "sid=2")]).await;
    assert_eq!(status, 200);
    assert_eq!(
        received(&echo, "cookie"),
        ["a=1; sid=2"],
        "one Cookie line (RFC 9113 §8.2.3)"
    );
    let (status, _) = h2_request(&gateway, &[("host", "elsewhere.example")]).await;
    assert_eq!(status, 400, "Host differs from :authority");
}

#[tokio::test]
async fn an_h2c_upgrade_is_not_passed_on() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&crate::helpers::routes_to(&probe)).await;
    let (status, echo) = answer(
        &raw(
            gateway.addr,
            b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        )
        .await,
    );
    assert!(status.ends_with("200 OK"), "answered as HTTP/1.1: {status}");
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(received(&echo, name).is_empty(), "{name} forwarded: {echo}");
    }
}

#[tokio::test]
async fn broken_chunked_framing_is_the_clients_400_and_no_upstream_failure() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&crate::helpers::routes_to(&probe)).await;
    let (status, body) = answer(
        &raw(
            gateway.addr,
            b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\nzz\r\nmore\r\n0\r\n\r\n",
        )
        .await,
    );
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    assert!(body["error"].as_str().is_some(), "{body}");
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("gateway_requests_total{route=\"/\",status=\"400\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("status=\"502\""),
        "counted as an upstream failure"
    );
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_are_refused() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&crate::helpers::routes_to(&probe)).await;
    let (status, body) = answer(
        &raw(
            gateway.addr,
            b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
        )
        .await,
    );
    assert!(status.starts_with("HTTP/1.1 501"), "{status}");
    assert!(body["error"].as_str().is_some(), "{body}");
}

#[tokio::test]
async fn the_client_address_goes_upstream_as_x_real_ip_and_cannot_be_claimed() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&crate::helpers::routes_to(&probe)).await;
    let claim = b"GET /echo HTTP/1.1\r\nHost: h\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n";
    let (_, echo) = answer(&raw(gateway.addr, claim).await);
    assert_eq!(received(&echo, "x-real-ip"), ["127.0.0.1"]);
    // Behind a trusted proxy: the right-most address the proxy did not vouch for itself.
    let trusting = format!(
        "[settings]\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n\n[upstreams]\nprobe = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"probe\"\n",
        probe.url()
    );
    let gateway = TestGateway::start(&trusting).await;
    let chain = b"GET /echo HTTP/1.1\r\nHost: h\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.0.0.3\r\nConnection: close\r\n\r\n";
    let (_, echo) = answer(&raw(gateway.addr, chain).await);
    assert_eq!(received(&echo, "x-real-ip"), ["203.0.113.7"]);
    assert_eq!(
        received(&echo, "x-forwarded-for"),
        ["6.6.6.6, 203.0.113.7, 10.0.0.3, 127.0.0.1"]
    );
}

#[tokio::test]
async fn asterisk_form_and_connect_never_reach_an_upstream() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&crate::helpers::routes_to(&probe)).await;
    for request in [
        "OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n",
    ] {
        let (status, body) = answer(&raw(gateway.addr, request.as_bytes()).await);
        assert!(status.starts_with("HTTP/1.1 404"), "{request:?}: {status}");
        assert_eq!(body["error"], "no route for this path", "{request:?}");
    }
}
