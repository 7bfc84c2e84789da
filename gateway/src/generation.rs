//! One loaded routes file with everything built from it: the routing table and the address
//! pools of its upstreams. In-flight requests hold their generation until they finish, so a
//! reload never changes a request halfway. (Upstream connections belong to the addresses, which
//! outlive generations: a reload keeps them.)

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    routes::RouteTable,
    upstream::{
        health,
        pool::{Pool, Registry},
    },
};

#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub table: RouteTable,
    pools: BTreeMap<String, Arc<Pool>>,
}

impl Generation {
    /// Builds a generation: the upstreams' addresses, resolved, and the caps on requests in
    /// flight counting with the previous generations' counts.
    pub async fn new(number: u64, mut table: RouteTable, registry: &Registry) -> Self {
        for route in &mut table.routes {
            if let Some(cap) = &mut route.max_in_flight {
                cap.share(registry.in_flight_count(format!("route {}", route.path)));
            }
        }
        let mut pools = BTreeMap::new();
        for (name, upstream) in &table.upstreams {
            let pool = Pool::new(Arc::clone(upstream), registry).await;
            pools.insert(name.clone(), Arc::new(pool));
        }
        Self {
            number,
            table,
            pools,
        }
    }

    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }

    pub fn pool(&self, upstream: &str) -> Option<&Arc<Pool>> {
        self.pools.get(upstream)
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
                    self.table.settings.connect_timeout,
                    Arc::downgrade(pool),
                ));
            }
        }
    }
}
