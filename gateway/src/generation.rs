//! One loaded routes file with everything built from it: the routing table, the address pools of
//! its upstreams, and the clients that hold upstream connections. In-flight requests hold their
//! generation until they finish, so a reload never changes a request halfway.
//!
//! Each worker has a client (a connection pool) of its own: a connection is opened, used and
//! pooled by one thread, so the request and the upstream connection it uses are polled by the
//! same single-threaded runtime, without a cross-thread wake-up or a contended pool lock. A
//! last, separate client serves the health checks that run on the control runtime.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::{
    forward::body::Body,
    routes::RouteTable,
    upstream::{Pool, Registry, health},
};

/// An HTTP/1.1 client with a keep-alive pool, for one worker.
pub type UpstreamClient = Client<HttpConnector, Body>;

/// Idle upstream connections are closed after this long (below the services' own keep-alive
/// timeouts would be better still; they are far longer).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub table: RouteTable,
    pools: BTreeMap<String, Arc<Pool>>,
    /// One client per worker, then the control client.
    clients: Box<[UpstreamClient]>,
}

impl Generation {
    /// Builds a generation for `workers` workers: its clients (with this table's connect
    /// timeout) and the upstreams' addresses, resolved.
    pub async fn new(number: u64, table: RouteTable, registry: &Registry, workers: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(table.settings.connect_timeout));
        connector.set_nodelay(true);
        let clients = (0..=workers)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .pool_max_idle_per_host(256)
                    .build(connector.clone())
            })
            .collect();
        let mut pools = BTreeMap::new();
        for (name, upstream) in &table.upstreams {
            let pool = Pool::new(Arc::clone(upstream), registry).await;
            pools.insert(name.clone(), Arc::new(pool));
        }
        Self {
            number,
            table,
            pools,
            clients,
        }
    }

    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }

    pub fn pool(&self, upstream: &str) -> Option<&Arc<Pool>> {
        self.pools.get(upstream)
    }

    /// The client of `worker`.
    pub fn client(&self, worker: usize) -> &UpstreamClient {
        &self.clients[worker.min(self.clients.len() - 1)]
    }

    fn control_client(&self) -> &UpstreamClient {
        &self.clients[self.clients.len() - 1]
    }

    /// Starts the background work of this generation (re-resolving host names, active health
    /// checks) on the current runtime; each task ends once the generation is gone.
    pub fn spawn_tasks(&self, registry: &Arc<Registry>) {
        let interval = self.table.settings.resolve_interval;
        for pool in self.pools.values() {
            if pool.has_host_names() {
                tokio::spawn(health::resolve_every(
                    interval,
                    Arc::downgrade(pool),
                    Arc::clone(registry),
                ));
            }
            if pool.upstream.health_check.is_some() {
                tokio::spawn(health::check_every(
                    self.control_client().clone(),
                    Arc::downgrade(pool),
                ));
            }
        }
    }
}
