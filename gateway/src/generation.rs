//! One loaded routes file with everything built from it: the routing table, the address
//! pools of its upstreams and the buckets of its rate limits. In-flight requests hold their generation until they finish, so a
//! reload never changes a request halfway. (Upstream connections belong to the addresses, which
//! outlive generations: a reload keeps them.)

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    limit::{Limiter, Limiters},
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
    /// Shared with the generation before for each limit that did not change.
    limiters: Limiters,
}

impl Generation {
    /// Builds a generation: the upstreams' addresses, resolved; the caps on requests in flight
    /// counting with the previous generations' counts; the limits of `previous` (the
    /// generation it replaces) kept where they did not change.
    pub async fn new(
        number: u64,
        mut table: RouteTable,
        registry: &Registry,
        previous: Option<&Generation>,
    ) -> Self {
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
        let limiters = Limiters::carried_over(&table, previous.map(|p| &p.limiters));
        Self {
            number,
            table,
            pools,
            limiters,
        }
    }

    /// The buckets of the limit named `name`.
    pub fn limiter(&self, name: &str) -> Option<&Arc<Limiter>> {
        self.limiters.get(name)
    }

    pub fn limiters(&self) -> impl Iterator<Item = &Arc<Limiter>> {
        self.limiters.iter()
    }

    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }

    pub fn pool(&self, upstream: &str) -> Option<&Arc<Pool>> {
        self.pools.get(upstream)
    }

    /// Starts the background work of this generation (re-resolving host names, active health
    /// checks, forgetting full buckets) on the current runtime; each task ends once the
    /// generation (for a limit: the last generation holding it) is gone.
    pub fn spawn_tasks(&self, registry: &Arc<Registry>) {
        self.limiters.spawn_pruning();
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
