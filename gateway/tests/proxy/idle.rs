//! Client connections that hold descriptors without using them (issue: hostile clients, finding
//! 1): every connection, HTTP/1, HTTP/2 or still being detected, is closed once idle for
//! `idle_timeout`; HTTP/2 peers that stop answering pings are dropped; one client cannot open
//! more than `max_connections_per_client`.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};

use crate::helpers::{Probe, TestGateway, raw};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what completes a client's side of the HTTP/2 handshake.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn routes(probe: &Probe, settings: &str) -> String {
    format!(
        "[settings]\n{settings}\n\n[upstreams]\nprobe = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"probe\"\n",
        probe.url()
    )
}

/// The value of an unlabelled metric (or of the first line starting with `name`).
async fn metric(gateway: &TestGateway, name: &str) -> f64 {
    let text = gateway.metrics().await;
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Waits until the gateway reports `open` client connections (up to `within`); returns when.
async fn until_open(gateway: &TestGateway, open: f64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = metric(gateway, "gateway_client_connections ").await;
        if now == open {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {now} client connections after {within:?} (waiting for {open})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until the peer closes (EOF or reset); `Err` with what arrived if `within` passes.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<(), String> {
    let mut sink = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut sink)).await {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("still open, {} bytes received", sink.len())),
    }
}

#[tokio::test]
async fn idle_and_half_sent_http2_connections_are_closed_at_the_idle_timeout() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes(
        &probe,
        "idle_timeout = \"2s\"\nmax_connections_per_client = 0",
    ))
    .await;
    // 600 connections from one attacker, three kinds: a preface cut after 10 bytes (protocol
    // detection waits for the rest), the whole preface without SETTINGS (the HTTP/2 handshake
    // waits), and a finished handshake that never sends a request (an idle HTTP/2 connection).
    let kinds: [&[&[u8]]; 3] = [&[b"PRI * HTTP"], &[PREFACE], &[PREFACE, SETTINGS]];
    let mut connections = Vec::new();
    let opened = Instant::now();
    for n in 0..600 {
        let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
        for part in kinds[n % 3] {
            stream.write_all(part).await.expect("write");
        }
        connections.push(stream);
    }
    until_open(&gateway, 600.0, Duration::from_secs(5)).await;
    let closings = connections.into_iter().map(|mut stream| async move {
        closed_within(&mut stream, Duration::from_secs(8)).await?;
        Ok::<_, String>(opened.elapsed())
    });
    let results = futures_util::future::join_all(closings).await;
    let open: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        open.is_empty(),
        "{} of 600 still open: {:?}",
        open.len(),
        open.first()
    );
    let earliest = results.iter().flatten().min().expect("some closed");
    assert!(
        *earliest >= Duration::from_millis(1500),
        "closed after {earliest:?}, before the idle timeout"
    );
    until_open(&gateway, 0.0, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn an_http2_connection_idle_after_its_requests_is_closed_and_one_in_use_is_not() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes(
        &probe,
        "idle_timeout = \"1s\"\nrequest_timeout = \"10s\"",
    ))
    .await;
    let stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    let ended = tokio::spawn(async move {
        let _ = connection.await;
        Instant::now()
    });
    // A request slower than the idle timeout, and a body paused for longer than it: the
    // connection is in use all along, and both arrive whole.
    for path in ["/slow", "/stream"] {
        let request = http::Request::get(format!("http://{}{path}", gateway.addr))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("answer");
        assert_eq!(response.status(), 200, "{path}");
        let body = response.into_body().collect().await.expect("body");
        assert!(!body.to_bytes().is_empty(), "{path}");
    }
    let idle_since = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .expect("task");
    let idle = ended.duration_since(idle_since);
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(3),
        "closed {idle:?} after its last answer"
    );
}

/// A socket whose reading can be stopped: the peer then looks alive to TCP but answers
/// nothing, like a client whose machine froze behind a NAT that still holds the mapping.
struct Freezable {
    stream: TcpStream,
    frozen: Arc<AtomicBool>,
}

impl AsyncRead for Freezable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.frozen.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Freezable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn an_http2_peer_that_stops_answering_pings_is_dropped_with_its_request() {
    let probe = Probe::start().await;
    // Pings every 500 ms, answered within 500 ms; the upstream takes 3 s.
    let gateway = TestGateway::start(&routes(
        &probe,
        "idle_timeout = \"500ms\"\nrequest_timeout = \"10s\"",
    ))
    .await;
    let frozen = Arc::new(AtomicBool::new(false));
    let stream = Freezable {
        stream: TcpStream::connect(gateway.addr).await.expect("connect"),
        frozen: Arc::clone(&frozen),
    };
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    let _connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/slow", gateway.addr))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let _pending = tokio::spawn(sender.send_request(request));
    until_open(&gateway, 1.0, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    frozen.store(true, Ordering::SeqCst);
    // Without pings the gateway would hold the connection until the answer came (3 s) and
    // then for the idle timeout.
    let gone = until_open(&gateway, 0.0, Duration::from_millis(2500)).await;
    assert!(gone < Duration::from_millis(2500), "dropped after {gone:?}");
}

#[tokio::test]
async fn an_http1_connection_that_sends_nothing_more_is_closed_at_the_idle_timeout() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes(&probe, "idle_timeout = \"1s\"")).await;
    let opened = Instant::now();
    let mut silent = TcpStream::connect(gateway.addr).await.expect("connect");
    let mut half_head = TcpStream::connect(gateway.addr).await.expect("connect");
    half_head.write_all(b"GET / HT").await.expect("write");
    for stream in [&mut silent, &mut half_head] {
        closed_within(stream, Duration::from_secs(4))
            .await
            .expect("closed");
    }
    assert!(opened.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn one_client_gets_max_connections_per_client_and_a_trusted_proxy_is_not_limited() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes(&probe, "max_connections_per_client = 3")).await;
    let request = b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.expect("answer");
        assert_eq!(&head, b"HTTP/1.1 200");
        held.push(stream);
    }
    // The fourth is closed without an answer.
    let answer = raw(gateway.addr, request).await;
    assert_eq!(answer, "", "a fourth connection was served");
    assert_eq!(
        metric(
            &gateway,
            "gateway_connections_refused_total{reason=\"max_connections_per_client\"}"
        )
        .await,
        1.0
    );
    // A place given back is free again.
    held.pop();
    until_open(&gateway, 2.0, Duration::from_secs(2)).await;
    assert!(
        raw(
            gateway.addr,
            b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        )
        .await
        .starts_with("HTTP/1.1 200")
    );

    // Behind a trusted proxy every client comes from its address: it is not one client.
    std::fs::write(
        &gateway.routes,
        routes(
            &probe,
            "max_connections_per_client = 3\ntrusted_proxies = [\"127.0.0.1/32\"]",
        ),
    )
    .expect("write routes");
    crate::helpers::wait_for_generation(&gateway, 2).await;
    let mut many = Vec::new();
    for _ in 0..10 {
        let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.expect("answer");
        assert_eq!(&head, b"HTTP/1.1 200");
        many.push(stream);
    }
}
