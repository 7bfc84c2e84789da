//! 500 slow clients at the gateway (half connect and say nothing, half send their request head
//! one byte a second) while a normal client is served at its normal pace; the gateway's
//! `idle_timeout` (also its time limit for a request head) closes every slow one.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    helpers::TestStack,
    support::{User, base, percentile, reroute, timed},
};

const SLOW: usize = 500;
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The test holds one end of every slow connection and the gateway (which inherits this limit)
/// the other, besides its own: make sure both may open that many files.
fn allow_open_files(needed: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < needed {
        assert!(
            hard >= needed,
            "RLIMIT_NOFILE: {needed} open files needed, the hard limit is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).expect("setrlimit");
    }
}

/// A slow client on an open connection: sends nothing (`trickle` false) or its request head one
/// byte a second, until the gateway closes the connection. Returns when that happened and what
/// the gateway said before closing (nothing, or an error status).
async fn slow_client(mut stream: TcpStream, opened: Instant, trickle: bool) -> (Instant, String) {
    let head = b"GET / HTTP/1.1\r\nHost: slow.test\r\nX-Slow: 1\r\n\r\n";
    let mut sent = 0;
    let mut said = Vec::new();
    let mut buffer = [0u8; 256];
    while opened.elapsed() < Duration::from_secs(30) {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => said.extend_from_slice(&buffer[..n]),
            // A second without news: the next byte, if this client trickles.
            Err(_) if trickle && sent < head.len() => {
                if stream.write_all(&head[sent..=sent]).await.is_err() {
                    break;
                }
                sent += 1;
            }
            Err(_) => {}
        }
    }
    (Instant::now(), String::from_utf8_lossy(&said).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_slow_clients_do_not_slow_a_normal_one_and_are_closed() {
    allow_open_files(4096);
    let stack = TestStack::start();
    let settings = format!("idle_timeout = \"{}s\"", IDLE_TIMEOUT.as_secs());
    // 500 clients, here all from 127.0.0.1: one address's cap (tested on its own in the proxy
    // suite, `idle::one_client_gets_max_connections_per_client…`) would close most of them at
    // once, and this test is about what the idle timeout does to each.
    let routes = stack
        .routes()
        .setting(&settings)
        .setting("max_connections_per_client = 0");
    reroute(&stack, routes).await;
    let user = User::login(&stack).await;
    let client = stack.client();
    let gateway = base(stack.gateway_addr);

    // Every slow connection is open before the normal client starts.
    let mut streams = Vec::new();
    for _ in 0..SLOW {
        let stream = TcpStream::connect(stack.gateway_addr)
            .await
            .expect("connect");
        streams.push((stream, Instant::now()));
    }
    let opened: Vec<Instant> = streams.iter().map(|(_, at)| *at).collect();
    let slow =
        tokio::spawn(join_all(streams.into_iter().enumerate().map(
            |(i, (stream, opened))| slow_client(stream, opened, i % 2 == 1),
        )));

    let mut latencies = Vec::new();
    for i in 0..50 {
        let answer = timed(user.request(&client, &gateway, "/", false)).await;
        assert_eq!(answer.status, 200, "normal request {i}: {answer:?}");
        latencies.push(answer.elapsed);
    }
    let normal_done = Instant::now();
    let p99 = percentile(&mut latencies, 99);
    // A read takes a few milliseconds here; a gateway whose workers are tied up by slow clients
    // would make the normal client wait for their timeouts (seconds).
    assert!(
        p99 < Duration::from_millis(500),
        "p99 {p99:?} of 50 normal requests beside {SLOW} slow clients ({latencies:?})"
    );

    // Each slow connection is closed by the idle timeout: not before it, not long after, and
    // never with an answer to the trickled head (its last byte would come after 45 s).
    let closed = slow.await.expect("slow clients");
    let first_close = closed
        .iter()
        .map(|(at, _)| *at)
        .min()
        .expect("slow clients");
    assert!(
        normal_done < first_close,
        "the normal requests ran while every slow connection was open"
    );
    for (i, (at, said)) in closed.into_iter().enumerate() {
        let open = at - opened[i];
        assert!(
            open >= IDLE_TIMEOUT - Duration::from_millis(200) && open < IDLE_TIMEOUT * 4,
            "slow client {i} (trickles: {}) closed after {open:?}",
            i % 2 == 1
        );
        assert!(
            said.is_empty() || said.starts_with("HTTP/1.1 408"),
            "slow client {i} was answered: {said:?}"
        );
    }
}
