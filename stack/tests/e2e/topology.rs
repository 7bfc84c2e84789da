//! The Redis topologies the store must work on, started as the tests and drills start them: a
//! cluster of three primaries with a replica each, and a primary with a replica under three
//! sentinels. Each fails over when its primary is killed, within the time these tests rely on.

use std::time::Duration;

use stack::topology::{Logs, RedisCluster, RedisSentinel, redis_cli};

#[test]
fn a_cluster_moves_a_dead_primarys_slots_to_its_replica() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = RedisCluster::start(dir.path(), 3, 1, &Logs::Files).expect("cluster");
    assert_eq!(cluster.addrs().len(), 6);
    assert!(
        cluster.url().starts_with("redis://127.0.0.1:"),
        "{}",
        cluster.url()
    );
    assert_eq!(
        cluster.url().matches(',').count(),
        5,
        "every node is a seed"
    );

    // A user's keys share one slot, hence one primary.
    let index = "user:{alice}:sessions";
    let primary = cluster.primary_of(index).expect("primary");
    assert_eq!(
        cluster.primary_of("session:{alice}:abc").expect("primary"),
        primary
    );
    let port = primary.port().to_string();
    redis_cli(&["-c", "-p", &port, "SET", "session:{alice}:abc", "7"]).expect("SET");
    // Replication is asynchronous: only a write the replica has survives the primary's death.
    cluster
        .wait_replicated(primary, Duration::from_secs(10))
        .expect("replicated");

    let took = cluster
        .fail_over(primary, Duration::from_secs(20))
        .expect("the replica takes over");
    eprintln!("cluster: failed over in {took:.1?}");
    let promoted = cluster.primary_of(index).expect("a new primary");
    assert_ne!(promoted, primary);
    let port = promoted.port().to_string();
    let value = redis_cli(&["-c", "-p", &port, "GET", "session:{alice}:abc"]).expect("GET");
    assert_eq!(value.trim(), "7", "the replica had the write");
}

#[test]
fn sentinels_promote_the_replica_when_the_primary_dies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sentinel = RedisSentinel::start(dir.path(), &Logs::Files).expect("sentinel set-up");
    let url = sentinel.url();
    assert!(
        url.starts_with("redis+sentinel://127.0.0.1:") && url.ends_with("/mymaster"),
        "{url}"
    );
    assert_eq!(
        sentinel.current_primary().expect("primary"),
        sentinel.primary.addr()
    );

    let took = sentinel
        .fail_over(Duration::from_secs(30))
        .expect("the replica is promoted");
    eprintln!("sentinel: failed over in {took:.1?}");
    assert_eq!(
        sentinel.current_primary().expect("primary"),
        sentinel.replica.addr()
    );
}
