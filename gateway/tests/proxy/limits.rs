//! Limits: body size per route (413), request head size (431), idle client connections.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Probe, Routes, TestGateway, client, json, raw};

fn routes(probe: &Probe, settings: &str) -> String {
    Routes::new()
        .setting(settings)
        .upstream("probe", [probe.url()])
        .route_with("/upload", "probe", "max_body = \"1KiB\"")
        .route("/", "probe")
        .to_string()
}

#[tokio::test]
async fn bodies_over_the_route_limit_get_413() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes(&probe, "")).await;
    // Declared too large: refused before anything is sent upstream.
    let (status, body) = json(
        client()
            .post(gateway.url("/upload"))
            .body(vec![b'x'; 2048])
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "request body too large");
    // Streamed (chunked) past the limit: refused when the limit is crossed.
    let chunks = futures_util::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 512]))),
    );
    let response = client()
        .post(gateway.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);
    // Within the limit, and on other routes, bodies pass.
    let (status, echo) = json(
        client()
            .post(gateway.url("/upload"))
            .body(vec![b'x'; 1024])
            .send()
            .await
            .expect("ok"),
    )
    .await;
    assert_eq!(
        (status, echo["body_len"].clone()),
        (200, serde_json::json!(1024))
    );
    let (status, _) = json(
        client()
            .post(gateway.url("/other"))
            .body(vec![b'x'; 4096])
            .send()
            .await
            .expect("ok"),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_gets_431() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes(&probe, "max_header_bytes = \"8KiB\"")).await;
    let big = "a".repeat(10_000);
    let answer = raw(
        gateway.addr,
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let fine = raw(
        gateway.addr,
        b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
}

#[tokio::test]
async fn idle_client_connections_are_closed() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes(&probe, "idle_timeout = \"300ms\"")).await;
    // A connection that never sends a request…
    let mut silent = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
        .await
        .expect("closed by the gateway, not by the test's timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // …and a keep-alive connection left idle after a request.
    let mut idle = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .expect("write");
    let mut total = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), idle.read_to_end(&mut total)).await;
    assert!(closed.is_ok(), "the idle keep-alive connection was closed");
    assert!(String::from_utf8_lossy(&total).starts_with("HTTP/1.1 200"));
}
