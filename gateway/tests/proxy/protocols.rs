//! HTTP/2 without TLS (h2c, prior knowledge) and protocol upgrades (WebSocket and friends).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Probe, TestGateway, client, json, received, routes_to, wait_for_generation};

#[tokio::test]
async fn http2_clients_are_served_on_the_same_port() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let response = h2
        .get(gateway.url("/echo"))
        .header("x-request-id", "h2-request")
        .send()
        .await
        .expect("h2c request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let (status, echo) = json(response).await;
    assert_eq!(status, 200);
    // Forwarded upstream over HTTP/1.1, with :authority as Host and Via naming HTTP/2.
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(received(&echo, "host"), [gateway.addr.to_string().as_str()]);
    assert_eq!(received(&echo, "via"), ["2 gateway"]);
}

pub(crate) async fn open_tunnel(gateway: &TestGateway) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .expect("upgrade request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("101 head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("upgrade: echo") && head.contains("connection: upgrade"),
        "{head}"
    );
    stream
}

pub(crate) async fn echo(stream: &mut tokio::net::TcpStream, text: &str) -> String {
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; text.len()];
    tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .expect("echo");
    String::from_utf8(buf).expect("utf-8")
}

#[tokio::test]
async fn upgrades_are_spliced_and_survive_a_reload() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let mut tunnel = open_tunnel(&gateway).await;
    assert_eq!(echo(&mut tunnel, "hello").await, "hello");

    // Re-route everything elsewhere: the open tunnel keeps its upstream.
    std::fs::write(
        &gateway.routes,
        "[upstreams]\nnowhere = [\"http://127.0.0.1:9\"]\n[[routes]]\npath = \"/\"\nupstream = \"nowhere\"\n",
    )
    .expect("edit");
    wait_for_generation(&gateway, 2).await;
    let rerouted = client()
        .get(gateway.url("/echo"))
        .send()
        .await
        .expect("request");
    assert_eq!(rerouted.status(), 502, "new requests follow the new table");
    assert_eq!(echo(&mut tunnel, "still here").await, "still here");
}

#[tokio::test]
async fn tunnels_are_closed_at_the_shutdown_deadline() {
    let probe = Probe::start().await;
    let routes =
        routes_to(&probe).replace("[settings]\n", "[settings]\nshutdown_grace = \"300ms\"\n");
    let gateway = TestGateway::start(&routes).await;
    let mut tunnel = open_tunnel(&gateway).await;
    assert_eq!(echo(&mut tunnel, "hi").await, "hi");
    let started = std::time::Instant::now();
    gateway.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(2), tunnel.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the tunnel is closed: {read:?}"
    );
}
