//! RFC 9110 header handling, observed from the upstream's side and the client's side.

use crate::helpers::{Probe, TestGateway, client, json, raw, received, routes_to};

#[tokio::test]
async fn every_set_cookie_reaches_the_client_separately() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let response = client()
        .get(gateway.url("/two-cookies"))
        .send()
        .await
        .expect("request");
    let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/; HttpOnly"]);
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let answer = raw(
        gateway.addr,
        b"GET /echo?x=1 HTTP/1.1\r\nHost: front.test\r\nConnection: close, X-Hop-Secret\r\n\
          X-Hop-Secret: do-not-forward\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
          Proxy-Authorization: Basic Zm9vOmJhcg==\r\nTE: gzip\r\nX-End-To-End: kept\r\n\r\n",
    )
    .await;
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let echo: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON echo");
    for hop in [
        "x-hop-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
    ] {
        assert!(
            received(&echo, hop).is_empty(),
            "{hop} was forwarded: {echo}"
        );
    }
    assert_eq!(received(&echo, "x-end-to-end"), ["kept"]);
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "x=1");
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let response = client()
        .get(gateway.url("/hop"))
        .send()
        .await
        .expect("request");
    let headers = response.headers();
    for hop in ["x-upstream-hop", "keep-alive", "proxy-connection"] {
        assert!(!headers.contains_key(hop), "{hop} reached the client");
    }
    assert_eq!(headers["x-upstream-kept"], "1");
    assert_eq!(headers["via"], "1.1 gateway");
}

#[tokio::test]
async fn host_is_preserved_and_forwarding_headers_are_set() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let response = client()
        .post(gateway.url("/echo"))
        .header("host", "shop.example.test")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.test")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "abc-123")
        .body("hello")
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.headers()["x-request-id"],
        "abc-123",
        "the id comes back"
    );
    let (status, echo) = json(response).await;
    assert_eq!(status, 200);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], 5);
    assert_eq!(received(&echo, "host"), ["shop.example.test"]);
    // The client is not a trusted proxy: its claims are replaced, not appended to.
    assert_eq!(received(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(received(&echo, "x-forwarded-host"), ["shop.example.test"]);
    assert_eq!(received(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(received(&echo, "x-request-id"), ["abc-123"]);
    assert_eq!(received(&echo, "via"), ["1.1 gateway"]);
}

#[tokio::test]
async fn a_trusted_proxy_chain_is_appended_to_once() {
    let probe = Probe::start().await;
    let routes = routes_to(&probe).replace(
        "[settings]\n",
        "[settings]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    );
    let gateway = TestGateway::start(&routes).await;
    let response = client()
        .get(gateway.url("/echo"))
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "www.example.test")
        .send()
        .await
        .expect("request");
    let (_, echo) = json(response).await;
    assert_eq!(
        received(&echo, "x-forwarded-for"),
        ["198.51.100.1, 127.0.0.1"]
    );
    assert_eq!(received(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(received(&echo, "x-forwarded-host"), ["www.example.test"]);
}

#[tokio::test]
async fn a_request_id_is_generated_when_missing_or_invalid() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let response = client()
        .get(gateway.url("/echo"))
        .header("x-request-id", "has spaces")
        .send()
        .await
        .expect("request");
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 32);
    let (_, echo) = json(response).await;
    assert_eq!(
        received(&echo, "x-request-id"),
        [id.as_str()],
        "upstream saw the same id"
    );
}

/// RFC 9112 §6.3: a request with both Content-Length and Transfer-Encoding is a smuggling
/// attempt. hyper's parser (below the gateway's code) processes it by Transfer-Encoding alone,
/// drops Content-Length and closes the connection after answering, so the upstream never sees
/// the ambiguous framing and nothing can be smuggled behind it on the same connection.
#[tokio::test]
async fn conflicting_content_length_and_transfer_encoding_cannot_smuggle() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let answer = raw(
        gateway.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "one answer, the rest is dropped: {answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let echo: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON echo");
    assert!(received(&echo, "content-length").is_empty(), "{echo}");
    assert_eq!(echo["body_len"], 0);
    assert!(!answer.contains("/smuggled"), "{answer}");
}

/// Without a trace exporter (none is installed in these tests), the gateway adds no trace
/// context and leaves the client's alone: a tracing setup around it keeps working.
#[tokio::test]
async fn without_an_exporter_the_trace_context_passes_through_unchanged() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = client()
        .get(gateway.url("/echo"))
        .header("traceparent", traceparent)
        .header("tracestate", "vendor=opaque")
        .send()
        .await
        .expect("request");
    let (_, echo) = json(response).await;
    assert_eq!(received(&echo, "traceparent"), [traceparent]);
    assert_eq!(received(&echo, "tracestate"), ["vendor=opaque"]);
    let plain = client()
        .get(gateway.url("/echo"))
        .send()
        .await
        .expect("request");
    let (_, echo) = json(plain).await;
    assert!(received(&echo, "traceparent").is_empty(), "{echo}");
}
