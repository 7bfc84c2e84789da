//! Graceful shutdown: stop accepting, let in-flight requests finish, then exit.

use std::time::{Duration, Instant};

use crate::helpers::{Probe, TestGateway, client, routes_to, wait};

#[tokio::test]
async fn in_flight_requests_finish_and_new_connections_are_refused() {
    let probe = Probe::start().await;
    let routes = routes_to(&probe).replace("request_timeout = \"1s\"", "request_timeout = \"5s\"");
    let gateway = TestGateway::start(&routes).await;
    let addr = gateway.addr;
    let url = gateway.url("/slow");
    let slow =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    probe.wait_holding(1).await;

    let started = Instant::now();
    let stopping = tokio::spawn(gateway.shutdown());
    // Once shutdown has started the listener is closed: new connections are refused (while
    // the request in flight goes on).
    wait::until(
        "new connections to be refused once shutdown started",
        Duration::from_secs(2),
        || async { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    assert_eq!(probe.in_flight(), 1, "the slow request is still in flight");
    assert_eq!(
        slow.await
            .expect("task")
            .expect("the slow request completes"),
        200
    );
    stopping.await.expect("stopped");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A connection accepted just before shutdown, whose request arrives after it began (a client
/// that connected as the old gateway of an upgrade was told to stop): it is answered, and then
/// closed, rather than dropped unanswered.
#[tokio::test]
async fn a_connection_accepted_before_shutdown_gets_its_first_request_answered() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let addr = gateway.addr;
    let mut early = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // Accepted before shutdown: the gateway has answered a first request on another connection
    // of the same worker since, so this one is past the accept queue.
    let warm = client()
        .get(gateway.url("/echo"))
        .send()
        .await
        .expect("warm");
    assert_eq!(warm.status(), 200);
    let stopping = tokio::spawn(gateway.shutdown());
    wait::until("the listener to close", Duration::from_secs(2), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    early
        .write_all(b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .expect("request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), early.read_to_end(&mut answer))
        .await
        .expect("answered, then closed")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    stopping.await.expect("stopped");
}
