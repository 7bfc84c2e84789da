//! Load shedding: a flood of ten times a route's capacity (`max_in_flight`) in front of a slow
//! upstream is refused at once with 503 overloaded, while a normal client on another route is
//! served at its normal pace; when the flood stops, everything is served again.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{
    helpers::{TestStack, wait},
    support::{User, base, percentile, reroute, timed},
};

/// The route's cap: the slow upstream's capacity.
const CAPACITY: usize = 4;
/// How long the slow upstream takes to answer.
const SLOW: Duration = Duration::from_millis(300);
/// Flooding clients, each with one request at a time: ten times the capacity.
const FLOOD: usize = CAPACITY * 10;
const FLOOD_FOR: Duration = Duration::from_secs(6);

/// An upstream that answers every request after [`SLOW`] (HTTP/1.1, keep-alive, requests
/// without a body), keeping the most it ever held at once.
struct SlowUpstream {
    addr: SocketAddr,
    peak: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowUpstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (holding, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let seen = Arc::clone(&peak);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&holding), Arc::clone(&seen)));
            }
        });
        Self { addr, peak, task }
    }
}

/// Answers each request head on `stream` after [`SLOW`].
async fn serve(mut stream: TcpStream, holding: Arc<AtomicUsize>, peak: Arc<AtomicUsize>) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        while let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            received.drain(..end + 4);
            let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(SLOW).await;
            holding.fetch_sub(1, Ordering::SeqCst);
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow";
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the flood got: (status, how long it took) of every request.
async fn flood(client: reqwest::Client, url: String, until: Instant) -> Vec<(u16, Duration)> {
    let mut answers = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let status = match client.get(&url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                status
            }
            Err(_) => 0,
        };
        answers.push((status, started.elapsed()));
        if status == 503 {
            // A flood that keeps its pressure on without spinning the test's own cores: the
            // gateway and the normal client share them.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_one_route_is_shed_and_another_route_keeps_its_latency() {
    let stack = TestStack::start();
    let slow = SlowUpstream::start().await;
    let routes = stack
        .routes()
        .upstream("slow", [format!("http://{}", slow.addr)])
        .route_with("/flood", "slow", &format!("max_in_flight = {CAPACITY}"));
    reroute(&stack, routes).await;
    let user = User::login(&stack).await;
    let client = stack.client();
    let gateway = base(stack.gateway_addr);

    let until = Instant::now() + FLOOD_FOR;
    let flooding = tokio::spawn(join_all((0..FLOOD).map(|_| {
        tokio::spawn(flood(
            reqwest::Client::new(),
            format!("{gateway}/flood"),
            until,
        ))
    })));
    // The flood fills the cap first.
    let peak = Arc::clone(&slow.peak);
    wait::until("the flood to fill the cap", Duration::from_secs(5), || {
        let peak = Arc::clone(&peak);
        async move { peak.load(Ordering::SeqCst) >= CAPACITY }
    })
    .await;
    let mut latencies = Vec::new();
    while Instant::now() + Duration::from_millis(500) < until {
        let answer = timed(user.request(&client, &gateway, "/", false)).await;
        assert_eq!(answer.status, 200, "normal request: {answer:?}");
        latencies.push(answer.elapsed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers: Vec<(u16, Duration)> = flooding
        .await
        .expect("flood")
        .into_iter()
        .flat_map(|client| client.expect("flooding client"))
        .collect();

    let p99 = percentile(&mut latencies, 99);
    let mut refused: Vec<Duration> = answers
        .iter()
        .filter(|(status, _)| *status == 503)
        .map(|(_, took)| *took)
        .collect();
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    let other: Vec<_> = answers
        .iter()
        .filter(|(status, _)| !matches!(status, 200 | 503))
        .collect();
    let refused_p99 = percentile(&mut refused, 99);
    println!(
        "normal: {} requests, p99 {p99:?}; flood: {} requests, {served} served, {} refused \
         (p99 {refused_p99:?}); the upstream held at most {}",
        latencies.len(),
        answers.len(),
        refused.len(),
        slow.peak.load(Ordering::SeqCst)
    );
    assert!(
        p99 < Duration::from_millis(500),
        "p99 {p99:?} of {} normal requests beside the flood",
        latencies.len()
    );
    assert!(other.is_empty(), "the flood got other answers: {other:?}");
    assert!(
        refused.len() > served * 4,
        "{} refused, {served} served",
        refused.len()
    );
    // Refused at once: nowhere near the upstream's 300 ms.
    assert!(
        refused_p99 < Duration::from_millis(100),
        "p99 of the refusals {refused_p99:?}"
    );
    assert!(
        slow.peak.load(Ordering::SeqCst) <= CAPACITY,
        "the upstream held {} at once",
        slow.peak.load(Ordering::SeqCst)
    );
    // At most the capacity, served one after another for the whole flood.
    let most = FLOOD_FOR.as_millis() / SLOW.as_millis() * CAPACITY as u128;
    assert!(served as u128 <= most + CAPACITY as u128, "{served} served");

    // The flood over, the route serves its capacity at once again, and the rest as usual.
    let again =
        join_all((0..CAPACITY).map(|_| timed(client.get(format!("{gateway}/flood"))))).await;
    for answer in again {
        assert_eq!(answer.status, 200, "after the flood: {answer:?}");
    }
    let answer = timed(user.request(&client, &gateway, "/", false)).await;
    assert_eq!(answer.status, 200);
}
