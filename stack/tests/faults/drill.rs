//! The failover drill (issue 11), run by hand: two writers, three readers and the gateway on a
//! Redis Cluster of three primaries with a replica each, under a load that counts every
//! acknowledged increment. A primary, a writer and a reader are killed with SIGKILL and brought
//! back, a fourth reader is added by editing routes.toml, and the drill prints what was sent,
//! what failed, what was acknowledged, what the cluster kept and what it lost.
//!
//! ```text
//! cargo test -p stack --test faults drill -- --ignored --nocapture
//! ```
//!
//! `DRILL_SECS=30` makes each phase 30 s long instead of 5; `DRILL_LOGS=<dir>` copies every
//! process's log there at the end (the test's own directory is deleted with it).
//!
//! Ignored in the suite: it is a minute of wall clock for what the fault tests already keep true
//! one fault at a time; its point is the whole story in one run, and its printed figures.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use stack::{
    net,
    process::Supervised,
    topology::{Logs, RedisCluster, redis_cli},
};

use crate::{
    helpers::{Options, Routes, TestStack},
    load::{Done, Load},
    support::{User, reroute},
};

/// Users, each a client sending one request at a time: enough that every writer, reader and
/// primary is busy at each fault, few enough for two shared cores.
const USERS: usize = 32;

/// Each phase's length unless `DRILL_SECS` says otherwise.
const PHASE: Duration = Duration::from_secs(5);

/// How long a failover, a restart or a rejoin may take before the drill calls it failed.
const RECOVERY: Duration = Duration::from_secs(30);

/// `DRILL_SECS`, or [`PHASE`]: longer phases show steadier rates and slower recoveries.
fn phase_length() -> Duration {
    match std::env::var("DRILL_SECS") {
        Ok(secs) => Duration::from_secs(
            secs.parse()
                .expect("DRILL_SECS is a whole number of seconds"),
        ),
        Err(_) => PHASE,
    }
}

/// The key every user's operations share a slot with (`user:{<id>}:sessions`).
fn index_key(user: &User) -> String {
    format!("user:{{{}}}:sessions", user.id)
}

/// SIGKILLs `process`, leaves it dead for `down` (under load), starts it again and waits until
/// it answers; returns how long it took to answer after the start, and where it listens now
/// (it binds port 0 again, as at its first start: a new port, which the gateway learns from
/// an edit of routes.toml, as it would learn a replaced container's address).
async fn kill_and_restart(process: &mut Supervised, down: Duration) -> (Duration, SocketAddr) {
    tokio::task::block_in_place(|| process.kill());
    tokio::time::sleep(down).await;
    tokio::task::block_in_place(|| {
        let started = Instant::now();
        process.restart().expect("the killed process starts again");
        let addr = process
            .listeners(RECOVERY)
            .expect("the restarted process listens")
            .addr()
            .expect("addr listener");
        assert!(
            net::wait_until(RECOVERY, || {
                net::http_status(addr, "/healthz", Duration::from_millis(300)) == Some(200)
            }),
            "{} answers again after its restart",
            process.name()
        );
        (started.elapsed(), addr)
    })
}

/// Whether the node on `addr` is a replica whose link to its primary is up.
fn in_sync_replica(addr: SocketAddr) -> bool {
    let port = addr.port().to_string();
    redis_cli(&["-p", &port, "INFO", "replication"]).is_ok_and(|info| {
        info.lines().any(|line| line.trim() == "role:slave")
            && info
                .lines()
                .any(|line| line.trim() == "master_link_status:up")
    })
}

/// Requests the gateway has sent to each upstream address (`upstream address` → count), from
/// its admin `/metrics`.
async fn requests_per_address(stack: &TestStack) -> BTreeMap<String, u64> {
    let text = stack
        .client()
        .get(format!("http://{}/metrics", stack.admin_addr))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(labels) = line.strip_prefix("gateway_upstream_address_requests_total{") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .and_then(|value| value.split('"').next())
                .unwrap_or("?")
                .to_owned()
        };
        let count = line
            .rsplit(' ')
            .next()
            .and_then(|count| count.parse().ok())
            .unwrap_or(0);
        counts.insert(format!("{} {}", label("upstream"), label("address")), count);
    }
    counts
}

/// The count each user's session holds now, read through a cluster-aware connection (each
/// command goes to the primary serving the user's slot, as the services' do).
async fn final_counts(cluster: &RedisCluster, users: &[User]) -> Vec<i64> {
    let seeds: Vec<String> = cluster
        .addrs()
        .iter()
        .map(|addr| format!("redis://{addr}"))
        .collect();
    let mut connection = redis::cluster::ClusterClient::new(seeds)
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("cluster connection");
    let mut counts = Vec::with_capacity(users.len());
    for user in users {
        let sessions: Vec<String> = redis::cmd("ZRANGE")
            .arg(index_key(user))
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .expect("ZRANGE of the user's index");
        assert_eq!(
            sessions.len(),
            1,
            "user {} logged in once: {sessions:?}",
            user.id
        );
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("session:{{{}}}:{}", user.id, sessions[0]))
            .query_async(&mut connection)
            .await
            .expect("GET of the user's session");
        let value = value.expect("the user's session still exists");
        // `<count>\n<identity>\n<device>` (session::identity), or the count alone.
        let count = value.lines().next().unwrap_or_default();
        counts.push(
            count
                .parse()
                .unwrap_or_else(|_| panic!("a count first in the session value: {value:?}")),
        );
    }
    counts
}

/// One user's requests, in the order its client sent them, held against the count the cluster
/// kept for it.
#[derive(Debug, Default)]
struct Tally<'a> {
    acknowledged: usize,
    /// Acknowledged increments the count no longer holds.
    lost: Vec<&'a Done>,
    /// Increments without a 200: each may or may not have been applied.
    failed_increments: usize,
    /// Reads (200) that saw less than an acknowledged increment the count still holds: a stale
    /// read, which nothing may produce.
    stale_reads: Vec<&'a Done>,
    /// Acknowledged increments the count still holds.
    kept: usize,
}

/// Counts `requests` (one user's, in order) against `stored`. An increment's answer below an
/// earlier one means the count fell back past that earlier one (a primary died with writes its
/// replica never got): every acknowledged count at or above the new answer is lost; at the end,
/// every acknowledged count above `stored` is. Failed increments that were applied only raise
/// the count, so they hide no loss from this walk.
fn tally<'a>(requests: &[&'a Done], stored: i64) -> Tally<'a> {
    let mut tally = Tally::default();
    // The acknowledged counts still held, rising.
    let mut kept: Vec<(i64, usize)> = Vec::new();
    let mut lost_at = Vec::new();
    for (at, request) in requests.iter().enumerate() {
        let count = request.answer.body["count"].as_i64();
        match (request.increment, request.answer.status, count) {
            (true, 200, Some(count)) => {
                tally.acknowledged += 1;
                while kept.last().is_some_and(|(held, _)| *held >= count) {
                    lost_at.extend(kept.pop().map(|(_, at)| at));
                }
                kept.push((count, at));
            }
            (true, _, _) => tally.failed_increments += 1,
            (false, _, _) => {}
        }
    }
    while kept.last().is_some_and(|(held, _)| *held > stored) {
        lost_at.extend(kept.pop().map(|(_, at)| at));
    }
    lost_at.sort_unstable();
    tally.lost = lost_at.iter().map(|at| requests[*at]).collect();
    tally.kept = kept.len();
    // Reads again, now that it is known which acknowledged counts were kept.
    let mut floor = 0;
    for (at, request) in requests.iter().enumerate() {
        let count = request.answer.body["count"].as_i64();
        match (request.increment, request.answer.status, count) {
            (true, 200, Some(count)) if lost_at.binary_search(&at).is_err() => floor = count,
            (false, 200, Some(count)) if count < floor => tally.stale_reads.push(request),
            _ => {}
        }
    }
    tally
}

/// One step of the drill: what happened, from when, and what it took.
#[derive(Debug)]
struct Phase {
    name: &'static str,
    from: Instant,
    note: String,
}

/// Starts a phase named `name` now; returns its index in `phases`.
fn begin(phases: &mut Vec<Phase>, name: &'static str) -> usize {
    phases.push(Phase {
        name,
        from: Instant::now(),
        note: String::new(),
    });
    phases.len() - 1
}

/// `502 upstream unavailable` and the like, for counting failures by kind.
fn failure(done: &Done) -> String {
    match done.answer.body["error"].as_str() {
        Some(error) => format!("{} {error}", done.answer.status),
        None if done.answer.status == 0 => "no answer".to_owned(),
        None => done.answer.status.to_string(),
    }
}

/// `3 × 502 upstream unavailable, 1 × 503 …`
fn failures<'a>(requests: impl Iterator<Item = &'a Done>) -> String {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for request in requests.filter(|request| request.answer.status != 200) {
        *kinds.entry(failure(request)).or_default() += 1;
    }
    kinds
        .iter()
        .map(|(kind, count)| format!("{count} × {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A log line without what differs between lines of one kind: its time, the request span,
/// numbers (addresses, ids, latencies).
fn kind_of(line: &str) -> String {
    let line = line
        .split_once(' ')
        .map_or(line, |(_, rest)| rest)
        .trim_start();
    let line = match (line.find("request{"), line.find("}: ")) {
        (Some(from), Some(to)) if from < to => format!("{}{}", &line[..from], &line[to + 3..]),
        _ => line.to_owned(),
    };
    let mut kind = String::new();
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !kind.ends_with('N') {
                kind.push('N');
            }
        } else {
            kind.push(c);
        }
    }
    kind.chars().take(140).collect()
}

/// The lines at WARN or ERROR in the services' logs (text, without colours, in files): how
/// many each service wrote, then every kind over all of them, most frequent first. What an
/// operator would find in the logs after such a day.
fn log_warnings(dir: &Path) -> (String, Vec<String>) {
    let mut totals = Vec::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for name in [
        "gateway", "writer", "writer2", "reader", "reader2", "reader3", "reader4",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        let mut total = 0;
        for line in text
            .lines()
            .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        {
            *kinds.entry(kind_of(line)).or_default() += 1;
            total += 1;
        }
        totals.push(format!("{name} {total}"));
    }
    let mut kinds: Vec<(String, usize)> = kinds.into_iter().collect();
    kinds.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    let kinds = kinds
        .iter()
        .map(|(kind, count)| format!("{count:>4} × {kind}"))
        .collect();
    (totals.join(", "), kinds)
}

/// Copies every `*.log` of `dirs` into `to`.
fn keep_logs(dirs: &[&Path], to: &Path) {
    std::fs::create_dir_all(to).expect("DRILL_LOGS directory");
    for dir in dirs {
        for entry in std::fs::read_dir(dir).expect("log directory").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "log")
                && let Some(name) = path.file_name()
            {
                std::fs::copy(&path, to.join(name)).expect("copy a log");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a drill, run by hand: cargo test -p stack --test faults drill -- --ignored --nocapture"]
async fn failover_drill() {
    let phase = phase_length();
    // Declared first, dropped last: the services stop before the cluster they use.
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = if std::env::var_os("TEST_LOG").is_some() {
        Logs::Terminal
    } else {
        Logs::Files
    };
    let cluster_dir = dir.path().join("cluster");
    let mut cluster = RedisCluster::start(&cluster_dir, 3, 1, &logs)
        .expect("a Redis Cluster of three primaries with a replica each starts");
    // The harness starts a Redis of its own too; the services are pointed at the cluster.
    let mut stack = TestStack::start_with(
        Options::default()
            .env("REDIS_URL", &cluster.url())
            .writers(2),
    );
    let mut reader_addrs = vec![stack.reader_addr];
    let mut readers = Vec::new();
    for name in ["reader2", "reader3"] {
        let (reader, addr) = stack.spawn_like(&stack.reader, name, &[]);
        readers.push(reader);
        reader_addrs.push(addr);
    }
    reroute(&stack, Routes::stack(&stack.writer_addrs, &reader_addrs)).await;

    let load = Load::new(&stack, USERS).await;
    let victim_user = &load.users[0];
    let victim = cluster
        .primary_of(&index_key(victim_user))
        .expect("the primary of user 0's keys");
    // Whose keys the doomed primary serves: only their increments can be lost.
    let on_victim: Vec<bool> = load
        .users
        .iter()
        .map(|user| cluster.primary_of(&index_key(user)).expect("primary") == victim)
        .collect();
    let affected = on_victim.iter().filter(|on| **on).count();

    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load.clone().run_while({
        let stop = Arc::clone(&stop);
        move || !stop.load(Ordering::Relaxed)
    }));
    let start = Instant::now();
    let mut phases: Vec<Phase> = Vec::new();

    begin(&mut phases, "steady load");
    tokio::time::sleep(phase).await;

    // A primary: its replica takes over once the other nodes have failed it (NODE_TIMEOUT).
    let failover = begin(&mut phases, "primary killed");
    let killed = Instant::now();
    let took = tokio::task::block_in_place(|| cluster.fail_over(victim, RECOVERY))
        .expect("the replica takes over the killed primary's slots");
    let promoted = cluster
        .primary_of(&index_key(victim_user))
        .expect("the new primary");
    let failover_note = format!(
        "{victim} (keys of {affected} of {USERS} users) SIGKILLed; its replica {promoted} \
         served its slots {took:.1?} later"
    );
    tokio::time::sleep(phase).await;

    let writer = begin(&mut phases, "writer killed, restarted");
    let down = phase / 5;
    let writer_addr = stack.writer_addrs[1];
    let (answering, restarted) = kill_and_restart(&mut stack.writers[1], down).await;
    stack.writer_addrs[1] = restarted;
    let edited = Instant::now();
    reroute(&stack, Routes::stack(&stack.writer_addrs, &reader_addrs)).await;
    let writer_note = format!(
        "{writer_addr} SIGKILLed; started again {down:.1?} later on {restarted}, answering after \
         {answering:.1?}; routed to {:.1?} after the edit",
        edited.elapsed()
    );
    tokio::time::sleep_until((phases[writer].from + phase).into()).await;

    let reader = begin(&mut phases, "reader killed, restarted");
    let reader_addr = stack.reader_addr;
    let (answering, restarted) = kill_and_restart(&mut stack.reader, down).await;
    stack.reader_addr = restarted;
    reader_addrs[0] = restarted;
    let edited = Instant::now();
    reroute(&stack, Routes::stack(&stack.writer_addrs, &reader_addrs)).await;
    let reader_note = format!(
        "{reader_addr} SIGKILLed; started again {down:.1?} later on {restarted}, answering after \
         {answering:.1?}; routed to {:.1?} after the edit",
        edited.elapsed()
    );
    // Every fault has been repaired (the cluster has a primary for every slot again): from now
    // on every request must succeed.
    let settled = Instant::now();
    tokio::time::sleep_until((phases[reader].from + phase).into()).await;

    // The killed primary comes back empty (no persistence) and, its slots now owned by a newer
    // epoch, turns into a replica of the node that took them over.
    let rejoin = begin(&mut phases, "killed Redis node restarted");
    let rejoined = tokio::task::block_in_place(|| {
        let started = Instant::now();
        cluster
            .node_mut(victim)
            .expect("the killed node")
            .restart()
            .expect("the killed Redis node starts again");
        assert!(
            net::wait_until(RECOVERY, || in_sync_replica(victim)),
            "the restarted node {victim} becomes a replica in sync"
        );
        cluster
            .wait_healthy(RECOVERY)
            .expect("the cluster is ok on every node");
        started.elapsed()
    });
    let rejoin_note =
        format!("{victim} back as a replica of {promoted}, in sync after {rejoined:.1?}");
    tokio::time::sleep(phase).await;

    let fourth = begin(&mut phases, "fourth reader added");
    let (fourth_reader, fourth_addr) = stack.spawn_like(&stack.reader, "reader4", &[]);
    readers.push(fourth_reader);
    reader_addrs.push(fourth_addr);
    let edited = Instant::now();
    reroute(&stack, Routes::stack(&stack.writer_addrs, &reader_addrs)).await;
    let reloaded = edited.elapsed();
    tokio::time::sleep_until((phases[fourth].from + phase).into()).await;
    let fourth_key = format!("reader {fourth_addr}");
    let fourth_requests = requests_per_address(&stack)
        .await
        .get(&fourth_key)
        .copied()
        .unwrap_or(0);
    let fourth_note = format!(
        "{fourth_addr} started and added to routes.toml; the gateway served the new table \
         {reloaded:.1?} after the edit; the reader had {fourth_requests} requests by the end of \
         the phase"
    );

    begin(&mut phases, "steady load");
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Relaxed);
    let done = running.await.expect("the load runs to the end");
    let ended = Instant::now();
    for (at, note) in [
        (failover, failover_note),
        (writer, writer_note),
        (reader, reader_note),
        (rejoin, rejoin_note),
        (fourth, fourth_note),
    ] {
        phases[at].note = note;
    }

    // What the cluster kept, against what each user was told.
    let stored = final_counts(&cluster, &load.users).await;
    let tallies: Vec<Tally> = (0..USERS)
        .map(|user| {
            let requests: Vec<&Done> = done.iter().filter(|request| request.user == user).collect();
            tally(&requests, stored[user])
        })
        .collect();
    let sent = done.len();
    let failed = done
        .iter()
        .filter(|request| request.answer.status != 200)
        .count();
    let acknowledged: usize = tallies.iter().map(|tally| tally.acknowledged).sum();
    let final_count: i64 = stored.iter().sum();
    let lost: usize = tallies.iter().map(|tally| tally.lost.len()).sum();

    let secs = |duration: Duration| format!("{:.1} s", duration.as_secs_f64());
    println!(
        "drill: {USERS} users (one request at a time each: increment, read, …), 2 writers, \
         3 readers then 4, a cluster of 3 primaries with a replica each; phases of {}",
        secs(phase)
    );
    println!(
        "drill: {:<28} {:>7} {:>7} {:>9} {:>7}  failures",
        "phase", "at", "length", "answered", "failed"
    );
    for (index, step) in phases.iter().enumerate() {
        let to = phases.get(index + 1).map_or(ended, |next| next.from);
        // By when the answer came: a request cut off by a kill belongs to the kill's phase.
        let within: Vec<&Done> = done
            .iter()
            .filter(|request| {
                request.ended >= step.from && (request.ended < to || index + 1 == phases.len())
            })
            .collect();
        let failed_here = within
            .iter()
            .filter(|request| request.answer.status != 200)
            .count();
        println!(
            "drill: {:<28} {:>7} {:>7} {:>9} {:>7}  {}",
            step.name,
            secs(step.from - start),
            secs(to - step.from),
            within.len(),
            failed_here,
            failures(within.iter().copied())
        );
        if !step.note.is_empty() {
            println!("drill:   {}", step.note);
        }
    }
    // How long the users of the killed primary went without a successful request.
    let unserved = (0..USERS)
        .filter(|user| on_victim[*user])
        .filter_map(|user| {
            done.iter()
                .filter(|request| {
                    request.user == user
                        && request.started >= killed
                        && request.answer.status == 200
                })
                .map(|request| request.ended - killed)
                .min()
        })
        .max()
        .unwrap_or_default();
    // Failures from the kill until the writer's kill, by whose keys the dead primary served.
    let window = (killed, phases[writer].from);
    let failed_in_window = |on: bool| {
        done.iter()
            .filter(|request| {
                on_victim[request.user] == on
                    && request.answer.status != 200
                    && request.ended >= window.0
                    && request.ended < window.1
            })
            .count()
    };
    println!(
        "drill: the {affected} users on the killed primary: {} failed requests, a successful \
         one again at most {} after the kill; the other {} users: {} failed requests",
        failed_in_window(true),
        secs(unserved),
        USERS - affected,
        failed_in_window(false)
    );
    let per_address = requests_per_address(&stack).await;
    println!(
        "drill: gateway requests per address: {}",
        per_address
            .iter()
            .map(|(address, count)| format!("{address} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let dirs = [stack.dir.path(), cluster_dir.as_path()];
    let (totals, kinds) = log_warnings(stack.dir.path());
    println!("drill: log lines at WARN or ERROR: {totals}; by kind (numbers as N):");
    for kind in kinds {
        println!("drill:   {kind}");
    }
    let lost_increments: Vec<&Done> = tallies
        .iter()
        .flat_map(|tally| tally.lost.iter().copied())
        .collect();
    for request in &lost_increments {
        println!(
            "drill:   lost: user {}'s increment to {} sent {} after the start, answered {} \
             after the primary's kill",
            request.user,
            request.answer.body["count"],
            secs(request.started - start),
            secs(request.ended.saturating_duration_since(killed))
        );
    }
    let failed_increments: usize = tallies.iter().map(|tally| tally.failed_increments).sum();
    let applied_unanswered: i64 = tallies
        .iter()
        .zip(&stored)
        .map(|(tally, stored)| stored - tally.kept as i64)
        .sum();
    println!(
        "drill: failed increments the final count holds all the same (applied, answer lost): \
         {applied_unanswered} of {failed_increments}"
    );
    println!(
        "drill: requests sent {sent}, failed {failed}, acknowledged increments {acknowledged}, \
         final count {final_count}, lost {lost}"
    );
    if let Some(to) = std::env::var_os("DRILL_LOGS") {
        keep_logs(&dirs, Path::new(&to));
        println!("drill: logs copied to {}", Path::new(&to).display());
    }

    // What must hold, checked after the figures are out.
    for phase in &phases {
        let requests = done
            .iter()
            .filter(|request| request.started >= phase.from)
            .count();
        assert!(requests > 0, "the load ran from '{}' on", phase.name);
    }
    let after_faults: Vec<&Done> = done
        .iter()
        .filter(|request| request.started >= settled && request.answer.status != 200)
        .collect();
    assert!(
        after_faults.is_empty(),
        "{} requests failed after the last fault was repaired: {after_faults:#?}",
        after_faults.len()
    );
    assert!(
        fourth_requests > 0,
        "the fourth reader got requests after the routes.toml edit"
    );
    // Replication is asynchronous, so a kill can lose what the primary acknowledged and had not
    // yet sent to its replica; nothing else can lose an increment. So a lost one was sent
    // before the kill, by a user whose keys the killed primary served.
    for request in &lost_increments {
        assert!(
            on_victim[request.user] && request.started < killed,
            "an increment was lost that the killed primary never had: {request:#?}"
        );
    }
    for (user, tally) in tallies.iter().enumerate() {
        assert!(
            tally.stale_reads.is_empty(),
            "user {user} read less than a kept acknowledged count: {:#?}",
            tally.stale_reads
        );
        // Each kept acknowledged increment counts once; a failed one may have been applied;
        // nothing else raises the count (a re-sent script is answered, not run again).
        let most = (tally.kept + tally.failed_increments) as i64;
        assert!(
            (tally.kept as i64..=most).contains(&stored[user]),
            "user {user}: stored {}, {} acknowledged increments kept, {} failed",
            stored[user],
            tally.kept,
            tally.failed_increments
        );
    }
}
