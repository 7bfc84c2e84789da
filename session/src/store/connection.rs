//! The store's connection to whatever `REDIS_URL` names, behind one `ConnectionLike`.
//!
//! - One Redis: redis-rs's `ConnectionManager` (one multiplexed connection, reconnected in the
//!   background; RESP3 so it hears a disconnection at once).
//! - Redis Cluster: redis-rs's cluster client. It routes each command by the slot of its first
//!   key (all keys of one operation share the user's hash tag), follows MOVED and ASK during a
//!   resharding, refreshes its slot map after a failover and loads scripts where they are missing.
//! - Sentinel: a `ConnectionManager` to the primary the sentinels name. redis-rs resolves the
//!   primary only when it connects, so after a failover the old address is either gone or a
//!   replica answering READONLY: on either sign this connection forgets the primary and the next
//!   command asks the sentinels again.
//!
//! Over TLS (`rediss://`) the certificates go on every connection, also on those the client
//! opens by itself: the cluster's other nodes, the sentinels and the primary they name.

use std::sync::{Arc, Mutex};

use redis::{
    Client, Cmd, ErrorKind, Pipeline, ProtocolVersion, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, TlsCertificates, TlsMode, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClientBuilder, ClusterConfig},
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
};

use super::{
    OP_TIMEOUT,
    topology::{SentinelSetup, Topology, address},
};

/// A connection to one Redis, a cluster, or the primary of a Sentinel set-up. Cheap to clone:
/// clones share the underlying connections.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelPrimary>),
}

impl Connection {
    /// Prepares a connection without opening it; the first command connects.
    /// `tls`: the certificates of a `rediss://` URL (the addresses in `topology` carry them
    /// already). `manager` configures the connections to one Redis (single and Sentinel).
    pub(crate) fn new(
        topology: &Topology,
        tls: Option<&TlsCertificates>,
        manager: ConnectionManagerConfig,
    ) -> RedisResult<Self> {
        match topology {
            Topology::Single(info) => {
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                let client = Client::open(info.clone().set_redis_settings(settings))?;
                Ok(Self::Single(ConnectionManager::new_lazy_with_config(
                    client, manager,
                )?))
            }
            Topology::Cluster(nodes) => {
                let mut builder = ClusterClientBuilder::new(nodes.clone());
                if let Some(certificates) = tls {
                    // For the nodes learnt from the slot map, not only the seeds.
                    builder = builder.tls(TlsMode::Secure).certs(certificates.clone());
                }
                let client = builder
                    .use_protocol(ProtocolVersion::RESP3)
                    // Redirections and a slot-map refresh after a failover take a few tries;
                    // the default waits (1.28 s and up) would outlast the operation's bound.
                    .retries(10)
                    .min_retry_wait(10)
                    .max_retry_wait(200)
                    .build()?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(OP_TIMEOUT)
                    .set_response_timeout(OP_TIMEOUT);
                Ok(Self::Cluster(
                    client.get_pending_async_connection_with_config(config),
                ))
            }
            Topology::Sentinel(setup) => Ok(Self::Sentinel(Arc::new(SentinelPrimary::new(
                setup, tls, manager,
            )?))),
        }
    }

    /// `WAIT replicas timeout` on the connection that wrote `key` (on a cluster: the one to the
    /// primary serving its slot): how many replicas have every write sent on it so far.
    pub(crate) async fn wait_for_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: std::time::Duration,
    ) -> RedisResult<i64> {
        // WAIT names no key, and alone a cluster client sends it to every primary: in a pipeline
        // behind a read of `key` it goes where `key` lives, in one round trip.
        let (confirmed,): (i64,) = redis::pipe()
            .cmd("PTTL")
            .arg(key)
            .ignore()
            .cmd("WAIT")
            .arg(replicas)
            .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
            .query_async(self)
            .await?;
        Ok(confirmed)
    }

    /// Whether the client re-sends a command by itself after a dropped connection (the cluster
    /// client does), so that a command which changes data must be safe to run twice.
    pub(crate) fn may_resend(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(manager) => manager.req_packed_command(cmd),
            Self::Cluster(cluster) => cluster.req_packed_command(cmd),
            Self::Sentinel(primary) => Box::pin(async move {
                let mut manager = primary.connection().await?;
                let result = manager.req_packed_command(cmd).await;
                primary.check(&result);
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Self::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(primary) => Box::pin(async move {
                let mut manager = primary.connection().await?;
                let result = manager.req_packed_commands(pipeline, offset, count).await;
                primary.check(&result);
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(manager) => manager.get_db(),
            Self::Cluster(cluster) => cluster.get_db(),
            Self::Sentinel(primary) => primary.db,
        }
    }
}

/// The primary of a Sentinel set-up, as last named by the sentinels.
pub(crate) struct SentinelPrimary {
    master_name: String,
    db: i64,
    manager: ConnectionManagerConfig,
    /// The sentinels (with their cached connections) and how to reach the primary they name;
    /// locked while asking them, so that a burst of requests after a failover asks once.
    sentinels: tokio::sync::Mutex<SentinelClient>,
    /// The connection to the current primary; `None` until the sentinels are asked.
    current: Mutex<Option<ConnectionManager>>,
}

impl SentinelPrimary {
    fn new(
        setup: &SentinelSetup,
        tls: Option<&TlsCertificates>,
        manager: ConnectionManagerConfig,
    ) -> RedisResult<Self> {
        let node = &setup.node;
        let mut builder = SentinelClientBuilder::new(
            setup
                .sentinels
                .iter()
                .map(|sentinel| sentinel.addr().clone()),
            &setup.master_name,
            SentinelServerType::Master,
        )?
        .set_client_to_redis_protocol(ProtocolVersion::RESP3)
        .set_client_to_redis_db(node.db());
        if let Some(username) = node.username() {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = node.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(certificates) = tls {
            builder = builder
                .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_certificates(certificates.clone())
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_redis_certificates(certificates.clone());
        }
        Ok(Self {
            master_name: setup.master_name.clone(),
            db: node.db(),
            manager,
            sentinels: tokio::sync::Mutex::new(builder.build()?),
            current: Mutex::new(None),
        })
    }

    fn current(&self) -> Option<ConnectionManager> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The connection to the primary, asking the sentinels first when none is known.
    async fn connection(&self) -> RedisResult<ConnectionManager> {
        if let Some(manager) = self.current() {
            return Ok(manager);
        }
        let mut sentinels = self.sentinels.lock().await;
        // Another request may have asked while this one waited for the lock.
        if let Some(manager) = self.current() {
            return Ok(manager);
        }
        // The sentinels answer with an address; redis-rs checks that the node there says it is
        // a primary (ROLE) before handing it out.
        let client = sentinels.async_get_client().await?;
        tracing::info!(
            primary = %address(client.get_connection_info()),
            name = %self.master_name,
            "following the primary the sentinels name"
        );
        let manager = ConnectionManager::new_lazy_with_config(client, self.manager.clone())?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(manager.clone());
        Ok(manager)
    }

    /// Forgets the primary when `result` says it may no longer be one: it cannot be reached, or
    /// it was demoted to a replica (READONLY).
    fn check<T>(&self, result: &RedisResult<T>) {
        if let Err(err) = result
            && primary_lost(err)
        {
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// An error after which the primary must be looked up again.
fn primary_lost(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}
