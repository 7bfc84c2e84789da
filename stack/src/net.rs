//! Ports and readiness probes, with nothing but the standard library (and tokio's socket type):
//! a probe must work before any of our services (or an HTTP client) can.
//!
//! Our services bind port 0 and say where they listen (`LISTEN_ADDR_FILE`, see
//! [`crate::process::Supervised::listeners`]): no port number is chosen for them in advance.
//! What is left here is for programs that cannot do that.

pub use common::probe::http_status;
use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    thread,
    time::{Duration, Instant},
};

/// A port the kernel considers free on 127.0.0.1 right now: a candidate, not a reservation.
///
/// It is free when this returns and anyone may take it before it is bound. So it is only used
/// for `redis-server`, which cannot bind port 0 (`--port 0` turns TCP off), and always with a
/// retry: [`crate::redis::RedisServer::start_tcp`] tries the next candidate when the port was
/// taken, and makes sure the server answering is the one it started.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Whether `addr` can be bound (nobody listens there).
pub fn is_free(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

/// A port of 127.0.0.1 where nothing listens and nothing can start listening while this is
/// held: the socket is bound but never listens, so connections to it are refused, and the
/// kernel gives the number to nobody else (not to a bind to port 0, not to an outgoing
/// connection). For tests that need an address that refuses.
#[derive(Debug)]
pub struct RefusingPort {
    _socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl RefusingPort {
    pub fn bind() -> std::io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = socket.local_addr()?;
        Ok(Self {
            _socket: socket,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Polls `ready` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusing_port_refuses_and_cannot_be_listened_on() {
        let port = RefusingPort::bind().expect("bind");
        let refused = std::net::TcpStream::connect_timeout(&port.addr(), Duration::from_secs(1));
        assert_eq!(
            refused.map_err(|err| err.kind()).err(),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(!is_free(port.addr()), "nobody else may listen there");
    }
}
