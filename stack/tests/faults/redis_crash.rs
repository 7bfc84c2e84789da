//! Redis crashes (SIGKILL, no shutdown save) and is started again, three times under continuous
//! reads and increments, with an idle gap after each restart, then once more while idle. Redis
//! keeps an append-only file fsynced before every reply (`appendfsync always`), so whatever it
//! acknowledged survives.

use std::time::{Duration, Instant};

use stack::{
    process::Output,
    redis::{Persistence, RedisServer},
};

use crate::{
    helpers::{Options, TestStack},
    load::{Done, Load},
    support::store_unavailable,
};

const CRASHES: usize = 3;
const USERS: usize = 8;

/// Redis was up from `up` until `down` (if it went down within the batch).
type Window = (Instant, Option<Instant>);

/// A request that ran entirely while Redis was up (inside one of `up_windows`) must have
/// succeeded; one that overlapped the crash may instead be a 503, never another failure.
fn assert_served_while_up(done: &[Done], up_windows: &[Window], when: &str) {
    for request in done {
        let while_up = up_windows.iter().any(|(up, down)| {
            request.started >= *up && down.is_none_or(|down| request.ended < down)
        });
        let unavailable =
            request.answer.status == 503 && request.answer.body == store_unavailable();
        let overlap = if while_up {
            "with Redis up"
        } else {
            "around the crash"
        };
        assert!(
            request.answer.status == 200 || (!while_up && unavailable),
            "{when}, a request {overlap}: {request:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_three_times_under_load_loses_no_acknowledged_increment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut redis = RedisServer::start_local(
        dir.path(),
        Persistence::AppendOnlyAlways,
        Output::File(dir.path().join("redis.log")),
    )
    .expect("redis-server starts");
    // The harness starts a Redis of its own too; the services are pointed at this one instead.
    let stack = TestStack::start_with(Options::default().env("REDIS_URL", &redis.url()));
    let load = Load::new(&stack, USERS).await;

    let mut all = Vec::new();
    let mut up = Instant::now();
    for crash in 1..=CRASHES {
        // Load across the crash: Redis is killed 0.7 s in, and started again 0.5 s later.
        let running = tokio::spawn(load.clone().run(Duration::from_millis(2500)));
        tokio::time::sleep(Duration::from_millis(700)).await;
        let down = Instant::now();
        tokio::task::block_in_place(|| redis.kill());
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::task::block_in_place(|| redis.restart()).expect("redis restarts");
        let back = Instant::now();
        let done = running.await.expect("load");
        let windows = [(up, Some(down)), (back, None)];
        assert_served_while_up(&done, &windows, &format!("crash {crash}"));
        let after = done.iter().filter(|request| request.started >= back);
        assert!(
            after.count() >= USERS,
            "crash {crash}: the load went on after the restart"
        );
        all.extend(done);

        // Nobody uses the site for a while after the restart; then every request succeeds.
        tokio::time::sleep(Duration::from_secs(3)).await;
        up = Instant::now();
        let done = load.clone().run(Duration::from_secs(1)).await;
        assert_served_while_up(&done, &[(up, None)], &format!("after the idle gap {crash}"));
        all.extend(done);
    }

    // Once more while nobody uses the site: the services' connections die with Redis, unused.
    // The first requests after it is back must succeed all the same (over RESP3 the services
    // hear the close and reconnect; with RESP2 the first command of each connection would fail).
    // Redis is started again at once, so the services' reconnections may meet it down, still
    // loading its file, or up; whichever, no request may fail.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| redis.kill());
    tokio::task::block_in_place(|| redis.restart()).expect("redis restarts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    up = Instant::now();
    let done = load.clone().run(Duration::from_secs(1)).await;
    assert_served_while_up(&done, &[(up, None)], "after a crash while idle");
    all.extend(done);
    load.assert_nothing_acknowledged_lost(&all, &redis.url())
        .await;
}
