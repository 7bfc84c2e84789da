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
