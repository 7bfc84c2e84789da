//! The Redis of a test stack (one server on a unix socket of its own, one over TLS, or a
//! cluster), and connections for looking at what the services stored.

use std::path::{Path, PathBuf};

use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster_async::ClusterConnection,
};
use stack::{
    redis::{Endpoint, Persistence, RedisServer},
    topology::{Logs, RedisCluster},
};

use crate::{services::output, tls::TestCa};

/// What the session store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// One `redis-server`.
    Single,
    /// A Redis Cluster of three primaries (no replicas: these tests do not fail over).
    Cluster,
    /// One `redis-server` reached over TLS only (`rediss://`), its certificate signed by a CA
    /// of the test's own (`REDIS_CA`). With `client_certificate` it requires one
    /// (`tls-auth-clients yes`) and the services get theirs (`REDIS_CLIENT_CERT`,
    /// `REDIS_CLIENT_KEY`); without, it asks for none (`tls-auth-clients optional`).
    Tls { client_certificate: bool },
}

/// The Redis of a test stack: one server, one over TLS, or a cluster.
#[derive(Debug)]
pub enum Store {
    Single(Box<RedisServer>),
    Cluster(RedisCluster),
    Tls(Box<TlsRedis>),
}

/// One Redis over TLS, and the files the services need to reach it.
#[derive(Debug)]
pub struct TlsRedis {
    pub server: RedisServer,
    /// The CA that signed the server's certificate (and the client's), PEM.
    pub ca: PathBuf,
    /// The client's certificate chain and key, when the server requires them.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsRedis {
    /// Issues the certificates in `dir` and starts the server there.
    fn start(dir: &Path, client_certificate: bool) -> Self {
        std::fs::create_dir_all(dir).expect("the TLS Redis's directory");
        let ca = TestCa::new();
        let ca_pem = ca.write_pem(dir);
        let server = ca.issue(dir, "redis-server", &["127.0.0.1", "localhost"]);
        let client = ca.issue(dir, "redis-client", &["redis-client"]);
        let path = |path: &Path| path.display().to_string();
        let options = [
            "--tls-cert-file",
            &path(&server.cert),
            "--tls-key-file",
            &path(&server.key),
            "--tls-ca-cert-file",
            &path(&ca_pem),
            "--tls-auth-clients",
            if client_certificate {
                "yes"
            } else {
                "optional"
            },
        ]
        .map(String::from);
        let server = RedisServer::start_tls(dir, Persistence::None, output(dir, "redis"), &options)
            .expect("redis-server starts with TLS (is it built with TLS support?)");
        Self {
            server,
            ca: ca_pem,
            client: client_certificate.then_some((client.cert, client.key)),
        }
    }

    /// `rediss://127.0.0.1:<TLS port>/0`.
    pub fn url(&self) -> String {
        let addr = self.server.tls_addr().expect("started with a TLS port");
        format!("rediss://{addr}/0")
    }
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
            StoreKind::Tls { client_certificate } => Self::Tls(Box::new(TlsRedis::start(
                &dir.join("redis"),
                client_certificate,
            ))),
        }
    }

    /// `REDIS_URL` for the services.
    pub fn url(&self) -> String {
        match self {
            Self::Single(redis) => redis.url(),
            Self::Cluster(cluster) => cluster.url(),
            Self::Tls(redis) => redis.url(),
        }
    }

    /// The rest of the services' Redis settings: the TLS files of a Redis over TLS.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let Self::Tls(redis) = self else {
            return Vec::new();
        };
        let path = |path: &Path| path.display().to_string();
        let mut env = vec![("REDIS_CA", path(&redis.ca))];
        if let Some((cert, key)) = &redis.client {
            env.push(("REDIS_CLIENT_CERT", path(cert)));
            env.push(("REDIS_CLIENT_KEY", path(key)));
        }
        env
    }

    /// A URL for the test's own look at the data: [`Self::url`], but the plain unix socket
    /// of a Redis over TLS.
    pub fn data_url(&self) -> String {
        match self {
            Self::Tls(redis) => redis.server.url(),
            _ => self.url(),
        }
    }

    /// Every server holding data: the one Redis, or each primary of the cluster.
    pub fn nodes(&self) -> Vec<Endpoint> {
        match self {
            Self::Single(redis) => vec![redis.endpoint().clone()],
            Self::Cluster(cluster) => cluster.addrs().into_iter().map(Endpoint::Tcp).collect(),
            Self::Tls(redis) => vec![redis.server.endpoint().clone()],
        }
    }

    /// The one Redis, for tests that stop, restart or proxy it.
    pub fn single(&mut self) -> &mut RedisServer {
        match self {
            Self::Single(redis) => redis,
            Self::Tls(redis) => &mut redis.server,
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
