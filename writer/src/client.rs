//! The client's address, for the login throttle: what the gateway decided (`X-Real-IP`), when
//! the request came from a gateway; the peer's own address otherwise.
//!
//! The gateway is the one place that reads `X-Forwarded-For` (against its `trusted_proxies`) and
//! always overwrites `X-Real-IP`. A client that reaches the writer directly could send any
//! `X-Real-IP`, so it is believed only from the peers in `TRUSTED_GATEWAYS` (by default loopback
//! and the private ranges, where the gateway runs in compose, Kubernetes and a local run).

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// The header the gateway sends the client's address in.
pub const X_REAL_IP: &str = "x-real-ip";

/// Loopback, RFC 1918, RFC 4193 (unique local IPv6) and RFC 6598 (carrier-grade NAT, which some
/// clusters use for pods).
pub const DEFAULT_TRUSTED_GATEWAYS: &str =
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7";

/// Peers whose `X-Real-IP` is believed (`TRUSTED_GATEWAYS`).
#[derive(Debug, Clone, Default)]
pub struct TrustedGateways(Vec<IpNet>);

impl TrustedGateways {
    /// A comma-separated list of addresses and CIDR ranges, or `none`.
    pub fn parse(list: &str) -> Result<Self, String> {
        if list.trim().eq_ignore_ascii_case("none") {
            return Ok(Self::default());
        }
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("{entry:?} is not an IP address or CIDR range (or say \"none\")")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The address the request is from: `X-Real-IP` from a trusted gateway, else the peer.
    pub fn client_address(&self, request: &HttpRequest) -> IpAddr {
        let peer = request
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.ip());
        if !self.contains(peer) {
            return unmapped(peer);
        }
        let mut claimed = request.headers().get_all(X_REAL_IP);
        // One value, an address: anything else was not written by the gateway.
        match (claimed.next(), claimed.next()) {
            (Some(value), None) => value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<IpAddr>().ok())
                .map_or(unmapped(peer), unmapped),
            _ => unmapped(peer),
        }
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn from(peer: &str, real_ip: &[&str]) -> HttpRequest {
        let mut request = TestRequest::default().peer_addr(peer.parse().expect("peer"));
        for value in real_ip {
            request = request.append_header((X_REAL_IP, *value));
        }
        request.to_http_request()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn a_gateway_is_believed_anyone_else_is_the_peer() {
        let trusted = TrustedGateways::parse(DEFAULT_TRUSTED_GATEWAYS).expect("default");
        assert_eq!(
            trusted.client_address(&from("172.18.0.4:5000", &["203.0.113.7"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            trusted.client_address(&from("198.51.100.2:5000", &["203.0.113.7"])),
            ip("198.51.100.2"),
            "a client reaching the writer directly cannot claim an address"
        );
        let none = TrustedGateways::parse("none").expect("none");
        assert_eq!(
            none.client_address(&from("127.0.0.1:5000", &["203.0.113.7"])),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn anything_but_one_address_from_the_gateway_is_not_believed() {
        let trusted = TrustedGateways::parse("10.0.0.0/8").expect("list");
        for claimed in [&["garbage"][..], &["1.2.3.4", "5.6.7.8"], &[]] {
            assert_eq!(
                trusted.client_address(&from("10.1.2.3:5000", claimed)),
                ip("10.1.2.3"),
                "{claimed:?}"
            );
        }
    }

    #[test]
    fn the_list_is_checked() {
        assert!(TrustedGateways::parse("10.0.0.0/8, 192.0.2.1").is_ok());
        let err = TrustedGateways::parse("10.0.0.0/33").expect_err("invalid");
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
