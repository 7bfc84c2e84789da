//! Who the client is: decided once, here, for everything after the gateway (the writer's login
//! throttle, logs) and sent upstream as `X-Real-IP`, which the gateway always overwrites.
//!
//! From a peer that is not a trusted proxy, the client is the peer. Behind trusted proxies, each
//! proxy appends the address it received the request from to `X-Forwarded-For`, so the entries
//! are only believable from the right: the client is the right-most entry that is not itself a
//! trusted proxy (anything to its left was written by the client). Taking the last entry
//! instead gives the address of the nearest proxy, and every client behind a load balancer then
//! shares one address; taking the first lets any client claim any address.

use std::net::IpAddr;

use http::HeaderMap;

use crate::{http_ext::names::X_FORWARDED_FOR, routes::Settings};

/// The client's address for a request from `peer` carrying `headers` (as received, before the
/// gateway appends its own hop).
pub fn address(headers: &HeaderMap, peer: IpAddr, settings: &Settings) -> IpAddr {
    if !settings.is_trusted(peer) {
        return peer;
    }
    // Right to left over every X-Forwarded-For line and entry: the last line is the nearest
    // proxy's.
    let mut client = peer;
    let entries = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|value| value.as_bytes().rsplit(|&byte| byte == b','));
    for entry in entries {
        // An entry that is not an address was not written by a proxy we trust (they write
        // addresses): the nearest address known is the last good one.
        let Some(ip) = parse_entry(entry) else {
            return client;
        };
        client = ip;
        if !settings.is_trusted(ip) {
            return ip;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: `192.0.2.1`, `2001:db8::1`, and the forms some proxies write
/// with a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`) or quoted.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(unmapped(ip));
    }
    let host = match text.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?.0,
        None => text.rsplit_once(':')?.0,
    };
    host.parse::<IpAddr>().ok().map(unmapped)
}

/// `::ffff:192.0.2.1` as `192.0.2.1`: one client, one spelling.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn settings(trusted: &[&str]) -> Settings {
        Settings {
            trusted_proxies: trusted
                .iter()
                .map(|net| net.parse().expect("net"))
                .collect(),
            ..Settings::default()
        }
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(line).expect("value"));
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let headers = forwarded(&["198.51.100.9"]);
        assert_eq!(
            address(&headers, ip("203.0.113.7"), &settings(&["10.0.0.0/8"])),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let lb = settings(&["10.0.0.0/8"]);
        // The client forged the first entry; the load balancer appended the real one.
        let headers = forwarded(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(address(&headers, ip("10.0.0.2"), &lb), ip("203.0.113.7"));
        // Two trusted hops, over two lines.
        let headers = forwarded(&["6.6.6.6, 203.0.113.7", "10.0.0.5"]);
        assert_eq!(address(&headers, ip("10.0.0.2"), &lb), ip("203.0.113.7"));
        // Only trusted addresses: the left-most is as far as anyone can see.
        let headers = forwarded(&["10.0.0.9, 10.0.0.5"]);
        assert_eq!(address(&headers, ip("10.0.0.2"), &lb), ip("10.0.0.9"));
        // A trusted proxy that sent no X-Forwarded-For is the client.
        assert_eq!(
            address(&HeaderMap::new(), ip("10.0.0.2"), &lb),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_address_known() {
        let lb = settings(&["10.0.0.0/8"]);
        let headers = forwarded(&["unknown, 10.0.0.5"]);
        assert_eq!(address(&headers, ip("10.0.0.2"), &lb), ip("10.0.0.5"));
    }

    #[test]
    fn entries_with_ports_brackets_quotes_and_mapped_addresses_are_read() {
        let lb = settings(&["10.0.0.0/8"]);
        for (entry, client) in [
            ("203.0.113.7:4711", "203.0.113.7"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("\"[2001:db8::2]\"", "2001:db8::2"),
            ("2001:db8::3", "2001:db8::3"),
            ("::ffff:203.0.113.8", "203.0.113.8"),
            (" 203.0.113.9 ", "203.0.113.9"),
        ] {
            let headers = forwarded(&[entry]);
            assert_eq!(
                address(&headers, ip("10.0.0.2"), &lb),
                ip(client),
                "{entry}"
            );
        }
    }
}
