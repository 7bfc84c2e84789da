//! HTTP probes with nothing but the standard library: the launcher and the tests wait with them
//! for a service to answer, and each binary's `healthcheck` mode runs one, so a container image
//! needs no `curl` (or any shell tool) for its health checks.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    process::ExitCode,
    time::Duration,
};

use crate::env;

/// The HTTP status of `GET path` on `addr`, or `None` when nothing answers in `timeout`.
pub fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 32];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => return None,
            Ok(n) => read += n,
        }
    }
    // "HTTP/1.1 200 …"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `<binary> healthcheck`: `GET path` on the address the binary listens on (read from
/// `addr_variable` as the server reads it; an all-interfaces address is probed on loopback).
/// Exit code 0 on a 200 within 2 seconds, else 1 with one line on stderr: what a container
/// engine's `HEALTHCHECK` and a Kubernetes `exec` probe expect.
pub fn healthcheck(binary: &str, addr_variable: &str, default: &str, path: &str) -> ExitCode {
    let outcome = env::load_dotenv()
        .and_then(|()| env::socket_addr(addr_variable, default))
        .map_err(|err| err.to_string())
        .and_then(|listen| {
            let addr = loopback_if_unspecified(listen);
            match http_status(addr, path, Duration::from_secs(2)) {
                Some(200) => Ok(()),
                Some(status) => Err(format!("GET http://{addr}{path} answered {status}")),
                None => Err(format!("GET http://{addr}{path}: no answer within 2 s")),
            }
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("{binary} healthcheck: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// `0.0.0.0:8090` is not an address to connect to; the same port on loopback is.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_interfaces_are_probed_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8090".parse().expect("addr");
        assert_eq!(
            loopback_if_unspecified(any),
            "127.0.0.1:8090".parse().expect("addr")
        );
        let any6: SocketAddr = "[::]:8090".parse().expect("addr");
        assert_eq!(
            loopback_if_unspecified(any6),
            "[::1]:8090".parse().expect("addr")
        );
        let specific: SocketAddr = "10.0.0.2:8090".parse().expect("addr");
        assert_eq!(loopback_if_unspecified(specific), specific);
    }
}
