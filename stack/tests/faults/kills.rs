//! `kill -9` of a writer and then of a reader, each one of two replicas behind the gateway, in
//! the middle of a load of increments and reads. (`rules::killing_one_of_two_writers_…` kills a
//! writer under increments alone; this adds the reader, both in one load, and checks each failure
//! against the moment of a kill.)

use std::time::{Duration, Instant};

use crate::{
    helpers::{Options, Routes, TestStack},
    load::Load,
    support::reroute,
};

/// Users, each with a client of its own: at most this many requests are in flight at a kill.
const CLIENTS: usize = 16;

/// SIGKILLs `process` and waits until it is gone; returns when that began and ended.
fn kill(process: &mut stack::process::Supervised) -> (Instant, Instant) {
    let from = Instant::now();
    tokio::task::block_in_place(|| process.kill());
    (from, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_writer_and_a_reader_mid_load_fails_only_requests_in_flight() {
    let mut stack = TestStack::start_with(Options::default().writers(2));
    // A second reader, as the first was started, on a port of its own.
    let (mut second_reader, second_addr) = stack.spawn_like(&stack.reader, "reader2", &[]);
    let readers = [stack.reader_addr, second_addr];
    reroute(&stack, Routes::stack(&stack.writer_addrs, &readers)).await;

    let load = Load::new(&stack, CLIENTS).await;
    let running = tokio::spawn(load.clone().run(Duration::from_secs(3)));
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Each kill takes from the signal until the process is reaped: a request under way at any
    // point of that may fail.
    let writer_killed = kill(&mut stack.writers[1]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let reader_killed = kill(&mut second_reader);
    let done = running.await.expect("load");

    let kills = [("writer", writer_killed), ("reader", reader_killed)];
    for (name, (from, to)) in kills {
        let before = done.iter().filter(|request| request.ended < from).count();
        let after = done.iter().filter(|request| request.started > to).count();
        assert!(
            before >= CLIENTS && after >= CLIENTS,
            "the {name} was killed while the load ran ({before} requests before, {after} after)"
        );
    }
    // Every failure is the gateway's 502 for a request the killed process had in hand; at most
    // one per client per kill.
    let failed: Vec<_> = done
        .iter()
        .filter(|request| request.answer.status != 200)
        .collect();
    for request in &failed {
        assert_eq!(request.answer.status, 502, "{request:?}");
        assert_eq!(
            request.answer.body["error"], "upstream unavailable",
            "{request:?}"
        );
        assert!(
            kills.iter().any(|(_, during)| request.overlaps(*during)),
            "a request not in flight at a kill failed: {request:?}"
        );
    }
    assert!(
        failed.len() <= 2 * CLIENTS,
        "{} failures with {CLIENTS} requests in flight at each kill",
        failed.len()
    );
    load.assert_nothing_acknowledged_lost(&done, &stack.redis.url())
        .await;
}
