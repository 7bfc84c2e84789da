//! The session store on Redis's own high availability, under continuous reads and increments:
//! a cluster primary killed (its replica takes over), a live user's slot moved to another
//! primary, and a Sentinel-managed primary killed. No service is restarted. Requests may fail
//! (503, the store's JSON) only while a failover is under way; what asynchronous replication
//! lost with the dead primary is counted and printed, never hidden.

use std::time::{Duration, Instant};

use stack::topology::{Logs, RedisCluster, RedisSentinel};

use crate::{
    helpers::{Options, TestStack},
    load::{Done, Load},
    support::{User, base, percentile, store_unavailable, stored_count, timed},
};

const USERS: usize = 8;

/// After a failover is complete, how long the services may take to notice (a cluster client
/// refreshes its slot map on the first MOVED or refused connection, a Sentinel client asks the
/// sentinels on the first failure).
const SETTLE: Duration = Duration::from_millis(1500);

/// Every request succeeded, except 503s with the store's JSON while `window` lasted.
fn assert_failed_only_within(done: &[Done], window: (Instant, Instant), what: &str) {
    for request in done {
        if request.answer.status == 200 {
            continue;
        }
        assert!(
            request.answer.status == 503 && request.answer.body == store_unavailable(),
            "{what}: only the store's 503 may fail a request: {request:?}"
        );
        assert!(
            request.overlaps(window),
            "{what}: a request failed outside the failover ({:?} after it began): {request:?}",
            request.started.saturating_duration_since(window.0)
        );
    }
}

/// Requests sent, failed, increments acknowledged and acknowledged increments lost, per the
/// counts stored at `redis_url` afterwards. A user's loss is how far the stored count fell
/// behind the last count acknowledged to them.
struct Tally {
    sent: usize,
    failed: usize,
    acknowledged: usize,
    lost: i64,
    lost_by_user: Vec<i64>,
}

async fn tally(load: &Load, done: &[Done], redis_url: &str) -> Tally {
    let mut lost_by_user = Vec::new();
    for (user, session) in load.users.iter().enumerate() {
        let last_acknowledged = done
            .iter()
            .filter(|request| request.user == user && request.increment)
            .filter_map(|request| request.answer.body["count"].as_i64())
            .max()
            .unwrap_or(0);
        let stored = stored_count(redis_url, session).await;
        lost_by_user.push((last_acknowledged - stored).max(0));
    }
    Tally {
        sent: done.len(),
        failed: done.iter().filter(|r| r.answer.status != 200).count(),
        acknowledged: done
            .iter()
            .filter(|r| r.increment && r.answer.status == 200)
            .count(),
        lost: lost_by_user.iter().sum(),
        lost_by_user,
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests sent {}, failed {}, acknowledged increments {}, lost {}",
            self.sent, self.failed, self.acknowledged, self.lost
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_primary_killed_under_load_is_replaced_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = RedisCluster::start(dir.path(), 3, 1, &Logs::Files).expect("cluster");
    let stack = TestStack::start_with(Options::default().env("REDIS_URL", &cluster.url()));
    let load = Load::new(&stack, USERS).await;
    // The primary of the first user's keys dies; users on the other primaries must not notice.
    let slot_of = |user: &str| format!("user:{{{user}}}:sessions");
    let victim = cluster
        .primary_of(&slot_of(&load.users[0].id))
        .expect("primary");
    let on_victim: Vec<bool> = load
        .users
        .iter()
        .map(|user| cluster.primary_of(&slot_of(&user.id)).expect("primary") == victim)
        .collect();

    let running = tokio::spawn(load.clone().run(Duration::from_secs(7)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    let took = tokio::task::block_in_place(|| cluster.fail_over(victim, Duration::from_secs(20)))
        .expect("the replica takes over");
    let settled = Instant::now() + SETTLE;
    let done = running.await.expect("load");

    assert_failed_only_within(&done, (killed, settled), "cluster failover");
    let after: Vec<&Done> = done.iter().filter(|r| r.started > settled).collect();
    assert!(
        after.len() >= USERS && after.iter().all(|r| r.answer.status == 200),
        "requests succeed again after the failover, without a restart"
    );
    let unaffected = done
        .iter()
        .filter(|r| !on_victim[r.user] && r.answer.status != 200)
        .count();
    assert_eq!(unaffected, 0, "users on the other primaries saw no failure");

    let tally = tally(&load, &done, &cluster.url()).await;
    for (user, lost) in tally.lost_by_user.iter().enumerate() {
        assert!(
            on_victim[user] || *lost == 0,
            "user {user} lost {lost} on a primary that did not fail"
        );
    }
    eprintln!(
        "cluster failover: {took:.1?} without a primary for {} of {USERS} users; {tally}",
        on_victim.iter().filter(|on| **on).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_users_slots_move_to_other_primaries_without_a_failed_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = RedisCluster::start(dir.path(), 3, 0, &Logs::Files).expect("cluster");
    let stack = TestStack::start_with(Options::default().env("REDIS_URL", &cluster.url()));
    let load = Load::new(&stack, USERS).await;
    let primaries = cluster.addrs();

    let running = tokio::spawn(load.clone().run(Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Every user's slot moves to the next primary, one slot every 200 ms, as a resharding does.
    let mut moved = 0;
    for user in load.users.iter() {
        let index = format!("user:{{{}}}:sessions", user.id);
        let slot = cluster.slot_of(&index).expect("slot");
        let from = cluster.primary_of(&index).expect("primary");
        let at = primaries
            .iter()
            .position(|addr| *addr == from)
            .expect("known");
        let to = primaries[(at + 1) % primaries.len()];
        moved += tokio::task::block_in_place(|| cluster.move_slot(slot, from, to))
            .expect("the slot moves");
        assert_eq!(cluster.primary_of(&index).expect("primary"), to);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let done = running.await.expect("load");

    assert!(
        moved >= 2 * USERS,
        "sessions and indexes moved ({moved} keys)"
    );
    let failed: Vec<&Done> = done.iter().filter(|r| r.answer.status != 200).collect();
    assert!(
        failed.is_empty(),
        "no request fails during the moves: {failed:#?}"
    );
    load.assert_nothing_acknowledged_lost(&done, &cluster.url())
        .await;
    let tally = tally(&load, &done, &cluster.url()).await;
    assert_eq!(tally.lost, 0);
    eprintln!("resharding: {USERS} live slots ({moved} keys) moved under load; {tally}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_is_followed_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sentinel = RedisSentinel::start(dir.path(), &Logs::Files).expect("sentinel set-up");
    let stack = TestStack::start_with(Options::default().env("REDIS_URL", &sentinel.url()));
    let load = Load::new(&stack, USERS).await;

    let running = tokio::spawn(load.clone().run(Duration::from_secs(8)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    let took = tokio::task::block_in_place(|| sentinel.fail_over(Duration::from_secs(30)))
        .expect("the sentinels promote the replica");
    let settled = Instant::now() + SETTLE;
    let done = running.await.expect("load");

    assert_failed_only_within(&done, (killed, settled), "sentinel failover");
    let after: Vec<&Done> = done.iter().filter(|r| r.started > settled).collect();
    assert!(
        after.len() >= USERS && after.iter().all(|r| r.answer.status == 200),
        "requests succeed again on the promoted replica, without a restart"
    );
    let primary = sentinel.current_primary().expect("primary");
    let tally = tally(&load, &done, &format!("redis://{primary}")).await;
    eprintln!("sentinel failover: {took:.1?}; {tally}");
}

/// `REDIS_WAIT_REPLICAS=1` closes the window asynchronous replication leaves: an increment is
/// acknowledged only once its primary's replica has it. With that replica frozen (SIGSTOP: its
/// connection stays up, nothing is confirmed) an increment is answered 503 instead of 200, so
/// nothing a failover could lose is ever acknowledged; without the setting the same increment
/// is acknowledged. Prints what the wait costs: an increment's latency with and without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_replica_acknowledges_only_replicated_increments() {
    const SAMPLES: usize = 200;
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = RedisCluster::start(dir.path(), 3, 1, &Logs::Files).expect("cluster");
    let mut stack = TestStack::start_with(
        Options::default()
            .env("REDIS_URL", &cluster.url())
            .env("REDIS_WAIT_REPLICAS", "1"),
    );
    let user = User::login(&stack).await;
    let client = stack.client();
    let gateway = base(stack.gateway_addr);
    let increment = || timed(user.request(&client, &gateway, "/increment", true));
    let primary = cluster
        .primary_of(&format!("user:{{{}}}:sessions", user.id))
        .expect("primary");
    let replicas = cluster.replicas_of(primary).expect("replicas");
    let replica = cluster
        .node(replicas[0])
        .expect("the replica is one of ours");

    // Latency of an increment that waits for its replica, and one that does not.
    let p50 = |samples: &mut Vec<Duration>| percentile(samples, 50);
    let mut waiting = Vec::new();
    for _ in 0..SAMPLES {
        let answer = increment().await;
        assert_eq!(answer.status, 200, "{answer:?}");
        waiting.push(answer.elapsed);
    }

    replica.pause();
    let refused = increment().await;
    replica.resume();
    assert_eq!(
        (refused.status, &refused.body),
        (503, &store_unavailable()),
        "an increment its replica did not confirm is not acknowledged"
    );
    assert!(
        refused.elapsed < Duration::from_secs(3),
        "answered within the wait: {:?}",
        refused.elapsed
    );
    let back = increment().await;
    assert_eq!(
        back.status, 200,
        "acknowledged again once the replica confirms: {back:?}"
    );

    stack
        .restart_services_with(&[("REDIS_WAIT_REPLICAS", "0")])
        .await;
    let mut not_waiting = Vec::new();
    for _ in 0..SAMPLES {
        let answer = increment().await;
        assert_eq!(answer.status, 200, "{answer:?}");
        not_waiting.push(answer.elapsed);
    }
    replica.pause();
    let acknowledged = increment().await;
    replica.resume();
    assert_eq!(
        acknowledged.status, 200,
        "without the wait, a write the replica never got is acknowledged: the window"
    );
    eprintln!(
        "REDIS_WAIT_REPLICAS=1: increment p50 {:.2?} (vs {:.2?} without), {SAMPLES} sequential \
         increments through the gateway each",
        p50(&mut waiting),
        p50(&mut not_waiting)
    );
}
