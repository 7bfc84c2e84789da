//! Header rules of a transparent proxy (RFC 9110 §7.6).
//!
//! - Hop-by-hop headers describe one connection and never cross the proxy: the fixed list below
//!   plus every header named in `Connection` (§7.6.1). Applied in both directions.
//! - `Via` records the proxy (§7.6.3).
//! - `X-Forwarded-For/-Proto/-Host` tell upstreams about the original request. They are only
//!   believed when the peer is a configured trusted proxy; otherwise a client could claim any
//!   address, so the gateway replaces them.
//! - `Host` is preserved: upstreams see the host the client asked for.

use std::net::IpAddr;

use http::{
    HeaderMap, HeaderName, HeaderValue, Version,
    header::{
        CONNECTION, COOKIE, EXPECT, FORWARDED, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
        TRANSFER_ENCODING, UPGRADE, VIA,
    },
};

use super::{client, host::RequestHost};
use crate::{
    http_ext::names::{
        X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
    },
    routes::Settings,
};

/// Headers that are hop-by-hop whatever `Connection` says (RFC 9110 §7.6.1, plus the
/// non-standard `Keep-Alive`/`Proxy-Connection` still sent by old clients, and the
/// `Proxy-Authenticate`/`Proxy-Authorization` pair addressed to proxies, RFC 9110 §11.7).
/// `Trailer` is not among them: RFC 9110 §6.6.2 makes it end-to-end, and without it the
/// trailers it announces could not be relayed.
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Whether `name` is on the fixed hop-by-hop list (a `match` on the text: a length switch and
/// one comparison, cheaper than comparing with each listed name).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str())
}

fn is_hop_by_hop_name(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Whether any header of the fixed hop-by-hop list is present: one pass over the names, no
/// hashing. Most messages have none.
fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(is_hop_by_hop)
}

/// Removes every hop-by-hop header: those named in `Connection`, then the fixed list.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_hop_by_hop_sparing(headers, |_| false);
}

/// [`remove_hop_by_hop`], except for the fields `spare` names, whatever `Connection` says.
fn remove_hop_by_hop_sparing(headers: &mut HeaderMap, spare: impl Fn(&HeaderName) -> bool) {
    // `Connection` is on the list, so without any listed header there is nothing to do.
    if !has_hop_by_hop(headers) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !spare(name))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether the client accepts trailers (`TE: trailers`, RFC 9110 §10.1.4). `TE` itself is
/// hop-by-hop, so the proxy re-sends just that token upstream.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("trailers"))
}

/// What the gateway knows about the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    pub addr: IpAddr,
    /// `addr` as header text, made once per connection.
    pub text: &'a HeaderValue,
    /// Whether `addr` is in `trusted_proxies`.
    pub trusted: bool,
    /// Whether the request came over TLS (the HTTPS listener).
    pub https: bool,
}

impl Peer<'_> {
    /// The scheme the client used, for `X-Forwarded-Proto` and `Forwarded: proto=`.
    fn proto(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

/// Which headers a request carries that the rewrite must look at; most requests carry none
/// of them, and one pass over the fields finds out without a lookup per header.
#[derive(Debug, Default)]
struct Present {
    hop_by_hop: bool,
    expect: bool,
    forwarded: bool,
    forwarded_for: bool,
    forwarded_proto: bool,
    forwarded_host: bool,
    /// Some field name contains `_`.
    underscore: bool,
    /// `Cookie` fields (HTTP/2 clients may split the cookies over several).
    cookies: usize,
}

impl Present {
    fn scan(headers: &HeaderMap) -> Self {
        let mut present = Self::default();
        for (name, _) in headers {
            match name.as_str() {
                "cookie" => present.cookies += 1,
                "expect" => present.expect = true,
                "forwarded" => present.forwarded = true,
                "x-forwarded-for" => present.forwarded_for = true,
                "x-forwarded-proto" => present.forwarded_proto = true,
                "x-forwarded-host" => present.forwarded_host = true,
                name => {
                    present.hop_by_hop |= is_hop_by_hop_name(name);
                    present.underscore |= name.as_bytes().contains(&b'_');
                }
            }
        }
        present
    }
}

/// Rewrites the headers of a request about to be sent upstream, for the host it is for (see
/// [`super::host`]), and returns the client's address (see [`super::client`]), which goes
/// upstream as `X-Real-IP`.
///
/// `Expect: 100-continue` is answered by the gateway itself (hyper sends `100 Continue` when the
/// body is first read), so it is not forwarded. With `settings.forwarded`, an RFC 7239
/// `Forwarded` element is added as well. Header names with `_` are dropped unless
/// `settings.underscores_in_headers`; HTTP/2's split `Cookie` fields are joined into one
/// (RFC 9113 §8.2.3), as HTTP/1.1 upstreams expect.
pub fn prepare_request(
    headers: &mut HeaderMap,
    version: Version,
    host: Option<&RequestHost>,
    peer: &Peer<'_>,
    request_id: &HeaderValue,
    settings: &Settings,
) -> IpAddr {
    let present = Present::scan(headers);
    let client = if peer.trusted && present.forwarded_for {
        client::address(headers, peer.addr, settings)
    } else {
        peer.addr
    };
    if present.expect {
        headers.remove(EXPECT);
    }
    if present.hop_by_hop {
        remove_hop_by_hop_keeping_agreed(headers);
    }
    if present.underscore && !settings.underscores_in_headers {
        remove_underscored(headers);
    }
    if present.cookies > 1 {
        join_cookies(headers);
    }
    let request_host = host;
    let host = host.map(|host| &host.value);
    if settings.forwarded {
        add_forwarded(headers, peer, host);
    } else if present.forwarded && !peer.trusted {
        headers.remove(FORWARDED);
    }
    add_forwarded_for(headers, peer, present.forwarded_for);
    if !(peer.trusted && present.forwarded_proto) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(peer.proto()));
    }
    if !(peer.trusted && present.forwarded_host) {
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
            None => headers.remove(X_FORWARDED_HOST),
        };
    }
    if let Some(host) = request_host.filter(|host| host.from_target) {
        headers.insert(HOST, host.value.clone());
    }
    let real_ip = if client == peer.addr {
        peer.text.clone()
    } else {
        HeaderValue::from_str(&client.to_string()).unwrap_or_else(|_| peer.text.clone())
    };
    headers.insert(X_REAL_IP, real_ip);
    headers.insert(X_REQUEST_ID, request_id.clone());
    add_via(headers, version);
    client
}

/// Removes every field whose name contains `_` (see [`Settings::underscores_in_headers`]).
fn remove_underscored(headers: &mut HeaderMap) {
    let underscored: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    for name in underscored {
        headers.remove(name);
    }
}

/// One `Cookie` field of all of them, joined with "; " (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let joined = headers
        .get_all(COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(b"; ".as_slice());
    match HeaderValue::from_bytes(&joined) {
        Ok(value) => {
            headers.insert(COOKIE, value);
        }
        Err(_) => {
            headers.remove(COOKIE);
        }
    }
}

/// Removes the hop-by-hop headers of a request, keeping what must reach the upstream to be
/// agreed end to end: `TE: trailers` (re-sent as just that token) and a protocol switch
/// (never to `h2c`: the gateway speaks HTTP/2 itself, and an upstream that switched would
/// take the client's connection out of the gateway's hands).
fn remove_hop_by_hop_keeping_agreed(headers: &mut HeaderMap) {
    let trailers = accepts_trailers(headers);
    let upgrade = upgrade_protocol(headers);
    remove_hop_by_hop_sparing(headers, is_relied_on);
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if let Some(protocol) = upgrade {
        // A protocol switch (WebSocket) must reach the upstream to be agreed end to end.
        headers.insert(UPGRADE, protocol);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// End-to-end request fields that a `Connection` option cannot remove: the host the request
/// is for, and the credentials a door check reads (RFC 9110 §7.6.1 lets a proxy ignore an
/// option naming a field meant for every recipient).
fn is_relied_on(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "cookie" | "authorization" | "x-session-id" | "content-length" | "content-type"
    )
}

/// `X-Forwarded-For`: the client's address, after the chain a trusted proxy sent.
fn add_forwarded_for(headers: &mut HeaderMap, peer: &Peer<'_>, present: bool) {
    if peer.trusted
        && present
        && let Some(chain) = previous_values(headers, &X_FORWARDED_FOR)
    {
        let text = peer.text.to_str().unwrap_or_default();
        set(headers, &X_FORWARDED_FOR, &format!("{chain}, {text}"));
        return;
    }
    headers.insert(X_FORWARDED_FOR, peer.text.clone());
}

/// Rewrites the headers of an upstream response about to be sent to the client. A
/// `101 Switching Protocols` keeps its `Upgrade` and `Connection: upgrade`.
pub fn prepare_response(
    headers: &mut HeaderMap,
    status: http::StatusCode,
    version: Version,
    request_id: &HeaderValue,
) {
    let upgrade = (status == http::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| headers.get(UPGRADE).cloned())
        .flatten();
    remove_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(UPGRADE, protocol);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    headers.insert(X_REQUEST_ID, request_id.clone());
    add_via(headers, version);
}

/// The protocol a request asks to switch to (`Upgrade`, with `upgrade` among the `Connection`
/// options, RFC 9110 §7.8), if any. A switch to `h2c` is never passed on: HTTP/2 is the
/// gateway's to speak with the client (RFC 9113 §3.1 drops the upgrade anyway).
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asked = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !asked {
        return None;
    }
    let protocol = headers.get(UPGRADE)?;
    let to_h2c = protocol.to_str().map_or(true, |protocols| {
        protocols
            .split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("h2c"))
    });
    (!to_h2c).then(|| protocol.clone())
}

/// Appends this hop to `Forwarded` (RFC 7239): the chain is kept from trusted proxies only.
fn add_forwarded(headers: &mut HeaderMap, peer: &Peer<'_>, host: Option<&HeaderValue>) {
    let node = match peer.addr {
        IpAddr::V4(ip) => ip.to_string(),
        // IPv6 addresses are quoted and bracketed (RFC 7239 §6).
        IpAddr::V6(ip) => format!("\"[{ip}]\""),
    };
    let mut element = format!("for={node};proto={}", peer.proto());
    if let Some(host) = host.and_then(|h| h.to_str().ok()) {
        if host
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',')
        {
            element.push_str(&format!(";host={host}"));
        } else {
            element.push_str(&format!(";host=\"{}\"", host.replace(['"', '\\'], "")));
        }
    }
    let value = match previous_values(headers, &FORWARDED) {
        Some(chain) if peer.trusted => format!("{chain}, {element}"),
        _ => element,
    };
    set(headers, &FORWARDED, &value);
}

fn add_via(headers: &mut HeaderMap, version: Version) {
    let via = match version {
        Version::HTTP_09 => "0.9 gateway",
        Version::HTTP_10 => "1.0 gateway",
        Version::HTTP_2 => "2 gateway",
        Version::HTTP_3 => "3 gateway",
        _ => "1.1 gateway",
    };
    headers.append(VIA, HeaderValue::from_static(via));
}

/// All values of `name`, joined with ", " (several header lines mean one list).
fn previous_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(name.clone(), value);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    static CLIENT: HeaderValue = HeaderValue::from_static("203.0.113.7");

    fn peer(trusted: bool) -> Peer<'static> {
        Peer {
            addr: "203.0.113.7".parse().expect("ip"),
            text: &CLIENT,
            trusted,
            https: false,
        }
    }

    fn id() -> HeaderValue {
        HeaderValue::from_static("req-1")
    }

    /// Settings that trust the test peer as a proxy, or not, and send `Forwarded` or not.
    fn settings(trusted: bool, forwarded: bool) -> Settings {
        Settings {
            trusted_proxies: if trusted {
                vec!["203.0.113.7/32".parse().expect("net")]
            } else {
                Vec::new()
            },
            forwarded,
            ..Settings::default()
        }
    }

    /// An HTTP/1.1 request (origin form) from the test peer, trusted or not, with `Forwarded`
    /// or not; returns the client address decided.
    fn prepare_http11(headers: &mut HeaderMap, trusted: bool, forwarded: bool) -> IpAddr {
        let host =
            super::super::host::of_request(Version::HTTP_11, &http::Uri::from_static("/"), headers)
                .ok()
                .flatten();
        prepare_request(
            headers,
            Version::HTTP_11,
            host.as_ref(),
            &peer(trusted),
            &id(),
            &settings(trusted, forwarded),
        )
    }

    #[test]
    fn the_fast_check_knows_the_same_list() {
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(&name), "{name}");
        }
        for name in [VIA, HOST, HeaderName::from_static("trailer")] {
            assert!(!is_hop_by_hop(&name), "{name}");
        }
    }

    #[test]
    fn removes_fixed_and_connection_named_headers() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("x-other", "2"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "yes"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        remove_hop_by_hop(&mut headers);
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["set-cookie", "trailer", "x-kept"]);
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut headers = map(&[
            ("host", "example.test"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.test"),
        ]);
        prepare_http11(&mut headers, false, false);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "example.test");
        assert_eq!(headers["host"], "example.test");
        assert_eq!(headers["via"], "1.1 gateway");
        assert_eq!(headers["x-request-id"], "req-1");
    }

    #[test]
    fn trusted_forwarding_headers_are_appended_once() {
        let mut headers = map(&[
            ("host", "internal:8080"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "www.example.test"),
            ("via", "1.1 edge"),
        ]);
        prepare_http11(&mut headers, true, false);
        assert_eq!(headers["x-forwarded-for"], "1.2.3.4, 10.0.0.1, 203.0.113.7");
        assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "www.example.test");
        let via: Vec<_> = headers.get_all("via").iter().collect();
        assert_eq!(via, ["1.1 edge", "1.1 gateway"]);
        assert_eq!(
            headers["x-real-ip"], "10.0.0.1",
            "the right-most entry not trusted"
        );
    }

    #[test]
    fn the_client_address_is_decided_here_and_a_claimed_one_is_replaced() {
        let mut headers = map(&[
            ("host", "h"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        let client = prepare_http11(&mut headers, false, false);
        assert_eq!(client, "203.0.113.7".parse::<IpAddr>().expect("ip"));
        let real: Vec<_> = headers.get_all("x-real-ip").iter().collect();
        assert_eq!(real, ["203.0.113.7"]);
    }

    #[test]
    fn underscored_names_are_dropped_and_relied_on_fields_survive_connection() {
        let mut headers = map(&[
            ("host", "h"),
            ("x_user_id", "admin"),
            ("x-kept", "1"),
            ("cookie", "sid=abc"),
            ("authorization", "Session t"),
            ("connection", "host, cookie, authorization, x-kept"),
        ]);
        prepare_http11(&mut headers, false, false);
        assert!(!headers.contains_key("x_user_id"));
        assert!(
            !headers.contains_key("x-kept"),
            "an ordinary option is honoured"
        );
        assert_eq!(headers["host"], "h");
        assert_eq!(headers["cookie"], "sid=abc");
        assert_eq!(headers["authorization"], "Session t");
    }

    #[test]
    fn split_cookie_fields_are_joined() {
        let mut headers = map(&[("host", "h"), ("cookie", "a=1"), ("cookie", "sid=2")]);
        prepare_http11(&mut headers, false, false);
        let cookies: Vec<_> = headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; sid=2"]);
    }

    #[test]
    fn an_h2c_upgrade_is_never_forwarded() {
        let mut headers = map(&[
            ("host", "h"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
        ]);
        assert!(upgrade_protocol(&headers).is_none());
        prepare_http11(&mut headers, false, false);
        for name in ["upgrade", "connection", "http2-settings"] {
            assert!(!headers.contains_key(name), "{name}");
        }
    }

    #[test]
    fn http2_authority_becomes_host() {
        let mut headers = HeaderMap::new();
        let host = RequestHost {
            value: HeaderValue::from_static("example.test:8080"),
            from_target: true,
        };
        prepare_request(
            &mut headers,
            Version::HTTP_2,
            Some(&host),
            &peer(false),
            &id(),
            &settings(false, false),
        );
        assert_eq!(headers["host"], "example.test:8080");
        assert_eq!(headers["x-forwarded-host"], "example.test:8080");
        assert_eq!(headers["via"], "2 gateway");
    }

    #[test]
    fn forwarded_is_added_and_only_trusted_chains_are_kept() {
        let mut headers = map(&[("host", "shop.test"), ("forwarded", "for=6.6.6.6")]);
        prepare_http11(&mut headers, false, true);
        assert_eq!(
            headers["forwarded"],
            "for=203.0.113.7;proto=http;host=shop.test"
        );
        let mut headers = map(&[("host", "shop.test"), ("forwarded", "for=10.0.0.1")]);
        prepare_http11(&mut headers, true, true);
        assert_eq!(
            headers["forwarded"],
            "for=10.0.0.1, for=203.0.113.7;proto=http;host=shop.test"
        );
        let mut headers = map(&[("forwarded", "for=6.6.6.6")]);
        prepare_http11(&mut headers, false, false);
        assert!(
            !headers.contains_key("forwarded"),
            "an untrusted claim is dropped"
        );
        let v6_text = HeaderValue::from_static("2001:db8::1");
        let v6 = Peer {
            addr: "2001:db8::1".parse().expect("ip"),
            text: &v6_text,
            trusted: false,
            https: true,
        };
        let mut headers = HeaderMap::new();
        prepare_request(
            &mut headers,
            Version::HTTP_11,
            None,
            &v6,
            &id(),
            &settings(false, true),
        );
        assert_eq!(headers["forwarded"], "for=\"[2001:db8::1]\";proto=https");
        assert_eq!(
            headers["x-forwarded-proto"], "https",
            "from the HTTPS listener"
        );
    }

    #[test]
    fn upgrades_keep_their_headers_and_expect_is_answered_here() {
        let mut headers = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("expect", "100-continue"),
        ]);
        prepare_http11(&mut headers, false, false);
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["connection"], "upgrade");
        assert!(!headers.contains_key("expect"));
        let mut plain = map(&[("upgrade", "h2c")]);
        prepare_http11(&mut plain, false, false);
        assert!(
            !plain.contains_key("upgrade"),
            "Upgrade without Connection: upgrade is dropped"
        );
    }

    #[test]
    fn te_trailers_survives_other_te_values_do_not() {
        let mut headers = map(&[("te", "gzip, trailers")]);
        prepare_http11(&mut headers, false, false);
        assert_eq!(headers["te"], "trailers");
        let mut headers = map(&[("te", "gzip")]);
        prepare_http11(&mut headers, false, false);
        assert!(!headers.contains_key("te"));
    }
}
