//! The Redis of a test stack (one server on a unix socket of its own, or a cluster), and
//! connections for looking at what the services stored.

use std::path::Path;

use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster_async::ClusterConnection,
};
use stack::{
    redis::{Endpoint, Persistence, RedisServer},
    topology::{Logs, RedisCluster},
};

use crate::services::output;

/// What the session store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// One `redis-server`.
    Single,
    /// A Redis Cluster of three primaries (no replicas: these tests do not fail over).
    Cluster,
}

/// The Redis of a test stack: one server, or a cluster.
#[derive(Debug)]
pub enum Store {
    Single(Box<RedisServer>),
    Cluster(RedisCluster),
}

impl Store {
    /// Starts it in `dir`. One Redis listens on a unix socket in `dir` (no port: nothing
    /// another test starts can be in its place); a cluster's nodes on TCP ports (see
    /// [`RedisServer::start_tcp`]).
    pub fn start(kind: StoreKind, dir: &Path) -> Self {
        match kind {
            StoreKind::Single => Self::Single(Box::new(
                RedisServer::start_local(
                    &dir.join("redis"),
                    Persistence::None,
                    output(dir, "redis"),
                )
                .expect("redis-server starts (is it installed?)"),
            )),
            StoreKind::Cluster => {
                let logs = if std::env::var_os("TEST_LOG").is_some() {
                    Logs::Terminal
                } else {
                    Logs::Files
                };
                Self::Cluster(
                    RedisCluster::start(&dir.join("cluster"), 3, 0, &logs)
                        .expect("a Redis Cluster starts"),
                )
            }
        }
    }

    /// `REDIS_URL` for the services.
    pub fn url(&self) -> String {
        match self {
            Self::Single(redis) => redis.url(),
            Self::Cluster(cluster) => cluster.url(),
        }
    }

    /// Every server holding data: the one Redis, or each primary of the cluster.
    pub fn nodes(&self) -> Vec<Endpoint> {
        match self {
            Self::Single(redis) => vec![redis.endpoint().clone()],
            Self::Cluster(cluster) => cluster.addrs().into_iter().map(Endpoint::Tcp).collect(),
        }
    }

    /// The one Redis, for tests that stop, restart or proxy it.
    pub fn single(&mut self) -> &mut RedisServer {
        match self {
            Self::Single(redis) => redis,
            Self::Cluster(_) => panic!("this test runs on one Redis, not a cluster"),
        }
    }
}

/// A connection to the test's Redis for looking at data: plain, or cluster-aware.
pub enum Data {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Data::Single",
            Self::Cluster(_) => "Data::Cluster",
        })
    }
}

impl ConnectionLike for Data {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// A connection for looking at data at `redis_url` (one Redis, or a cluster's comma-separated
/// seeds): cluster-aware when it lists several nodes.
pub async fn data_connection(redis_url: &str) -> Data {
    if redis_url.contains(',') {
        Data::Cluster(
            redis::cluster::ClusterClient::new(redis_url.split(','))
                .expect("cluster url")
                .get_async_connection()
                .await
                .expect("cluster connection"),
        )
    } else {
        Data::Single(
            redis::Client::open(redis_url)
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("redis connection"),
        )
    }
}

/// A plain connection to one server.
pub async fn node_connection(node: &Endpoint) -> MultiplexedConnection {
    redis::Client::open(node.url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}
