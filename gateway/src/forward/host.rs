//! The one host a request is for (RFC 9112 §3.2, RFC 9113 §8.3.1), checked before anything
//! else looks at it: upstreams build links and redirects from `Host` and `X-Forwarded-Host`, and
//! two hosts, or one that is not a host at all, let a client choose what they see.
//!
//! - HTTP/1.1: exactly one `Host`; HTTP/1.0: at most one. A request target in absolute form
//!   (`GET http://a.example/ HTTP/1.1`) names the host itself, and `Host` is then ignored
//!   (§3.2.2): the target's authority is what goes upstream.
//! - HTTP/2: the `:authority` pseudo-header, or one `Host`; both may be sent only if they agree.
//! - The value is `host[:port]`: a registered name (RFC 3986 §3.2.2: letters, digits and
//!   `-._~!$&'()*+,;=` or `%XX`), an IPv4 address or a bracketed IPv6 address, and a port from
//!   1 to 65535.

use std::net::Ipv6Addr;

use http::{HeaderMap, HeaderValue, Uri, Version, header::HOST};

/// Why a request's host is refused (the text of its 400).
pub type Refusal = &'static str;

/// The host a request is for, as it goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHost {
    pub value: HeaderValue,
    /// Taken from the request target (HTTP/2's `:authority`, an absolute-form target), so the
    /// `Host` header must be set to it; otherwise it is the `Host` header as sent.
    pub from_target: bool,
}

/// The host the request is for: the `Host` header (checked), or the target's authority when
/// the request names one (HTTP/2, absolute form). `None` for an HTTP/1.0 request without a
/// host.
pub fn of_request(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<RequestHost>, Refusal> {
    let mut hosts = headers.get_all(HOST).iter();
    let sent = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    if let Some(sent) = sent
        && !is_valid(sent.as_bytes())
    {
        return Err("invalid Host header");
    }
    let Some(authority) = uri.authority() else {
        return match (sent, version) {
            (None, Version::HTTP_11 | Version::HTTP_2) => Err("missing Host header"),
            (sent, _) => Ok(sent.map(|value| RequestHost {
                value: value.clone(),
                from_target: false,
            })),
        };
    };
    let authority = authority.as_str();
    if !is_valid(authority.as_bytes()) {
        return Err("invalid host in the request target");
    }
    if version == Version::HTTP_2
        && sent.is_some_and(|sent| !sent.as_bytes().eq_ignore_ascii_case(authority.as_bytes()))
    {
        return Err("Host differs from :authority");
    }
    let value =
        HeaderValue::from_str(authority).map_err(|_| "invalid host in the request target")?;
    Ok(Some(RequestHost {
        value,
        from_target: true,
    }))
}

/// Whether `value` is `host[:port]` as RFC 3986 spells it, with a port in 1..=65535. One pass
/// over the bytes: every request pays for it.
pub fn is_valid(value: &[u8]) -> bool {
    match value.first() {
        None => false,
        Some(b'[') => is_ip_literal_then_port(value),
        Some(_) => is_reg_name_then_port(value),
    }
}

/// The bytes of a registered name (RFC 3986 §3.2.2: unreserved and sub-delims; `%` starts an
/// escape). An IPv4 address is spelled with them too.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let allowed = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=";
    let mut i = 0;
    while i < allowed.len() {
        table[allowed[i] as usize] = true;
        i += 1;
    }
    table
};

/// `reg-name [":" port]`, the name not empty.
fn is_reg_name_then_port(value: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&byte) = value.get(i) {
        match byte {
            b':' => return i > 0 && is_port(&value[i + 1..]),
            b'%' => {
                let hex = |at: usize| value.get(at).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                i += 3;
            }
            _ if REG_NAME[usize::from(byte)] => i += 1,
            _ => return false,
        }
    }
    true
}

/// `"[" IPv6address "]" [":" port]`.
fn is_ip_literal_then_port(value: &[u8]) -> bool {
    let Some(end) = value.iter().position(|&b| b == b']') else {
        return false;
    };
    let inside = std::str::from_utf8(&value[1..end]).ok();
    if inside.and_then(|ip| ip.parse::<Ipv6Addr>().ok()).is_none() {
        return false;
    }
    match &value[end + 1..] {
        [] => true,
        [b':', port @ ..] => is_port(port),
        _ => false,
    }
}

/// 1 to 65535, digits only.
fn is_port(port: &[u8]) -> bool {
    if port.is_empty() || port.len() > 5 {
        return false;
    }
    let mut number: u32 = 0;
    for &digit in port {
        if !digit.is_ascii_digit() {
            return false;
        }
        number = number * 10 + u32::from(digit - b'0');
    }
    (1..=65535).contains(&number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_rfc_3986_spells_them() {
        for good in [
            "example.com",
            "example.com:8080",
            "localhost:1",
            "a.example:65535",
            "192.0.2.1",
            "192.0.2.1:80",
            "[2001:db8::1]",
            "[::1]:8080",
            "xn--bcher-kva.example",
            "under_score.example",
            "%41.example",
        ] {
            assert!(is_valid(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "a b",
            "evil/path?x",
            "user@evil",
            "evil#frag",
            "example.com:99999",
            "example.com:0",
            "example.com:",
            "example.com:80a",
            ":80",
            "[2001:db8::1",
            "[not-ip]:80",
            "[::1]x",
            "%4",
            "a\"b",
            "a\\b",
        ] {
            assert!(!is_valid(bad.as_bytes()), "{bad:?}");
        }
    }

    fn request(version: Version, target: &str, hosts: &[&str]) -> Result<Option<String>, Refusal> {
        let uri: Uri = target.parse().expect("uri");
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(HOST, HeaderValue::from_str(host).expect("value"));
        }
        of_request(version, &uri, &headers)
            .map(|host| host.map(|h| h.value.to_str().expect("text").to_owned()))
    }

    #[test]
    fn exactly_one_host_for_http_1_1() {
        assert_eq!(
            request(Version::HTTP_11, "/", &["a.example"]),
            Ok(Some("a.example".into()))
        );
        assert!(request(Version::HTTP_11, "/", &[]).is_err());
        assert!(request(Version::HTTP_11, "/", &["a.example", "b.example"]).is_err());
        assert_eq!(request(Version::HTTP_10, "/", &[]), Ok(None));
    }

    #[test]
    fn an_absolute_target_names_the_host() {
        assert_eq!(
            request(Version::HTTP_11, "http://a.example/x", &["b.example"]),
            Ok(Some("a.example".into()))
        );
    }

    #[test]
    fn http2_authority_and_host_must_agree() {
        assert_eq!(
            request(Version::HTTP_2, "https://a.example/", &[]),
            Ok(Some("a.example".into()))
        );
        assert_eq!(
            request(Version::HTTP_2, "https://a.example/", &["A.example"]),
            Ok(Some("a.example".into()))
        );
        assert!(request(Version::HTTP_2, "https://a.example/", &["b.example"]).is_err());
        assert!(request(Version::HTTP_2, "/", &[]).is_err());
    }
}
