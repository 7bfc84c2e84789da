//! Graceful shutdown: stop accepting, let in-flight requests finish, then exit.

use std::time::{Duration, Instant};

use crate::helpers::{Probe, TestGateway, client, routes_to};

#[tokio::test]
async fn in_flight_requests_finish_and_new_connections_are_refused() {
    let probe = Probe::start().await;
    let routes = routes_to(&probe).replace("request_timeout = \"1s\"", "request_timeout = \"5s\"");
    let gateway = TestGateway::start(&routes).await;
    let addr = gateway.addr;
    let url = gateway.url("/slow");
    let slow =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let stopping = tokio::spawn(gateway.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections once shutdown started"
    );
    assert_eq!(
        slow.await
            .expect("task")
            .expect("the slow request completes"),
        200
    );
    stopping.await.expect("stopped");
    assert!(started.elapsed() < Duration::from_secs(5));
}
