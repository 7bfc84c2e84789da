//! Prometheus metrics for the admin listener's `/metrics`: requests by route and status,
//! latency by route, requests a door check kept out, requests shed by a `max_in_flight` cap,
//! requests over a rate limit and the keys each limit holds, client connections open and
//! refused, upstream address health and load, reloads and the routing generation.
//!
//! Requests are tallied per worker ([`RequestStats`]) and summed when scraped, so the hot path
//! touches no counter or lock another core writes (prometheus-client's own histogram takes a
//! shared lock on every observation).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use http::StatusCode;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet, text::encode},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::Gauge,
    },
    registry::{Metric, Registry},
};

use crate::{
    access::AccessLog, error::Capped, generation::Generation, listen::clients::ClientConnections,
};

pub(crate) const BUCKETS: usize = 16;
/// Upper bounds of the latency histogram, seconds: 0.5 ms, doubling, to ~16 s.
pub(crate) const LATENCY_BOUNDS: [f64; BUCKETS] = {
    let mut bounds = [0.0; BUCKETS];
    let (mut i, mut bound) = (0, 0.0005);
    while i < BUCKETS {
        bounds[i] = bound;
        bound *= 2.0;
        i += 1;
    }
    bounds
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DoorLabels {
    route: String,
    reason: &'static str,
}

/// Why a door check kept a request from its route's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorRefusal {
    /// The check answered something else than 2xx (a 401): that answer went to the client.
    Denied,
    /// The check passed, but the user is in none of the route's `allow_groups`: 403.
    Forbidden,
    /// The check could not be asked (its upstream down or too slow): 503.
    Unavailable,
}

impl DoorRefusal {
    fn label(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OverloadLabels {
    route: String,
    /// Whose `max_in_flight` it was: `route` or `upstream`.
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitedLabels {
    route: String,
    limit: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabels {
    upstream: String,
    target: String,
    address: String,
}

/// Every metric of the gateway.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Arc<RequestStats>,
    door_refusals: Family<DoorLabels, Counter>,
    overloaded: Family<OverloadLabels, Counter>,
    rate_limited: Family<LimitedLabels, Counter>,
    limit_keys: Family<LimitLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
    tls_reloads: Family<ReloadLabels, Counter>,
    generation: Gauge,
    address_up: Family<AddressLabels, Gauge>,
    address_in_flight: Family<AddressLabels, Gauge>,
    address_requests: Family<AddressLabels, Counter>,
    connections_open: Gauge,
    connections_refused: Family<RefusedLabels, Counter>,
    access_log_dropped: Counter,
    acme_orders: Family<ReloadLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    reason: &'static str,
}

impl Metrics {
    /// Metrics for a gateway of `workers` workers.
    pub fn new(workers: usize) -> Self {
        let mut registry = Registry::with_prefix("gateway");
        let requests = Arc::new(RequestStats {
            shards: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
        });
        registry.register_collector(Box::new(Arc::clone(&requests)));
        let r = &mut registry;
        let door_refusals = registered(
            r,
            "door_refusals",
            "Requests a door check kept from their route's upstream, by route and reason: denied \
             (the check's own answer, a 401), forbidden (in none of the route's allow_groups: \
             403), unavailable (the check could not be asked: 503)",
        );
        let overloaded = registered(
            r,
            "overloaded",
            "Requests refused with 503 overloaded before anything was sent, by route and by whose \
             max_in_flight was reached (limit: route or upstream)",
        );
        let rate_limited = registered(
            r,
            "rate_limited",
            "Requests answered 429 because their route's rate limit had none left, by route and \
             limit; the upstream never saw them",
        );
        let limit_keys = registered(
            r,
            "rate_limit_keys",
            "Buckets a rate limit holds now (clients or users seen lately), by limit; at most \
             100000",
        );
        let reloads = registered(r, "reloads", "routes.toml reloads, by result");
        let tls_reloads = registered(
            r,
            "tls_reloads",
            "Changed certificate files loaded (success) or refused, the previous pair kept (failure)",
        );
        let generation = registered(
            r,
            "config_generation",
            "Generation of the routing table in use (1 = as started)",
        );
        let address_up = registered(
            r,
            "upstream_address_up",
            "1 when an upstream address is usable (healthy, not ejected)",
        );
        let address_in_flight = registered(
            r,
            "upstream_address_in_flight",
            "Requests in flight to an upstream address",
        );
        let address_requests = registered(
            r,
            "upstream_address_requests",
            "Requests sent to an upstream address (each attempt); shows how replicas share the load",
        );
        let connections_open = registered(
            r,
            "client_connections",
            "Client connections open on the public and HTTPS ports",
        );
        let connections_refused = registered(
            r,
            "connections_refused",
            "Client connections closed as soon as they were accepted, by reason: \
             max_connections_per_client (their client had that many open), max_connections \
             (GATEWAY_MAX_CONNECTIONS were open)",
        );
        let access_log_dropped = registered(
            r,
            "access_log_dropped",
            "Access-log lines not written because the file writer was behind (GATEWAY_ACCESS_LOG \
             is a file on a disk slower than the traffic)",
        );
        let acme_orders = registered(
            r,
            "acme_orders",
            "Certificate orders over ACME (GATEWAY_ACME_DOMAINS), by result: a failure leaves the \
             certificate in force serving and is retried",
        );
        Self {
            registry,
            requests,
            door_refusals,
            overloaded,
            rate_limited,
            limit_keys,
            reloads,
            tls_reloads,
            generation,
            address_up,
            address_in_flight,
            address_requests,
            connections_open,
            connections_refused,
            access_log_dropped,
            acme_orders,
        }
    }
}

/// A new metric registered as `name` (the registry keeps a handle to it).
fn registered<M>(registry: &mut Registry, name: &str, help: &str) -> M
where
    M: Metric + Clone + Default,
{
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Records one request answered by `worker` (`route` is `-` when none matched).
    pub fn observe(&self, worker: usize, route: &str, status: StatusCode, latency: Duration) {
        let shard = &self.requests.shards[worker % self.requests.shards.len()];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        let (status, seconds) = (status.as_u16(), latency.as_secs_f64());
        if let Some(tally) = shard.get_mut(route) {
            tally.observe(status, seconds);
        } else {
            let mut tally = RouteTally::default();
            tally.observe(status, seconds);
            shard.insert(route.to_owned(), tally);
        }
    }

    /// Records a request on `route` that its door check kept out, and why. Refusals only: a
    /// request let through touches no counter here.
    pub fn door_refused(&self, route: &str, why: DoorRefusal) {
        self.door_refusals
            .get_or_create(&DoorLabels {
                route: route.to_owned(),
                reason: why.label(),
            })
            .inc();
    }

    /// Records a request on `route` refused because `capped`'s `max_in_flight` was reached.
    /// Refusals only: a request let through touches no counter here.
    pub fn overloaded(&self, route: &str, capped: Capped) {
        self.overloaded
            .get_or_create(&OverloadLabels {
                route: route.to_owned(),
                limit: capped.label(),
            })
            .inc();
    }

    /// Records a request on `route` refused by its rate limit `limit`. Refusals only: a request
    /// within the limit touches no counter here.
    pub fn rate_limited(&self, route: &str, limit: &str) {
        self.rate_limited
            .get_or_create(&LimitedLabels {
                route: route.to_owned(),
                limit: limit.to_owned(),
            })
            .inc();
    }

    /// Records an attempt to load changed certificate files.
    pub fn tls_reloaded(&self, succeeded: bool) {
        let result = if succeeded { "success" } else { "failure" };
        self.tls_reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Records a reload attempt.
    pub fn reloaded(&self, succeeded: bool) {
        let result = if succeeded { "success" } else { "failure" };
        self.reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Every route's requests so far (all workers), for the dashboard's window.
    pub fn route_totals(&self) -> BTreeMap<String, RouteTotals> {
        self.requests
            .totals()
            .into_iter()
            .map(|(route, tally)| {
                let count_where = |pick: fn(u16) -> bool| {
                    tally
                        .statuses
                        .iter()
                        .filter(|(status, _)| pick(*status))
                        .map(|(_, count)| count)
                        .sum()
                };
                let totals = RouteTotals {
                    requests: tally.count,
                    client_errors: count_where(|status| (400..500).contains(&status)),
                    server_errors: count_where(|status| status >= 500),
                    buckets: tally.buckets,
                };
                (route, totals)
            })
            .collect()
    }

    /// (successful, failed) reloads so far.
    pub fn reload_counts(&self) -> (u64, u64) {
        let count = |result: &str| {
            self.reloads
                .get_or_create(&ReloadLabels {
                    result: result.to_owned(),
                })
                .get()
        };
        (count("success"), count("failure"))
    }

    /// The Prometheus text exposition, with address gauges taken from `generation`, connection
    /// counts from `clients` and dropped lines from `access_log` now.
    pub fn render(
        &self,
        generation: &Generation,
        clients: &ClientConnections,
        access_log: &AccessLog,
    ) -> String {
        let dropped = access_log
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        self.access_log_dropped
            .inc_by(dropped.saturating_sub(self.access_log_dropped.get()));
        self.generation
            .set(i64::try_from(generation.number).unwrap_or(i64::MAX));
        self.connections_open
            .set(i64::try_from(clients.open_count()).unwrap_or(i64::MAX));
        for (reason, count) in [
            ("max_connections_per_client", clients.refused_count()),
            ("max_connections", clients.refused_over_total()),
        ] {
            let refused = self
                .connections_refused
                .get_or_create(&RefusedLabels { reason });
            refused.inc_by(count.saturating_sub(refused.get()));
        }
        self.limit_keys.clear();
        for limiter in generation.limiters() {
            let labels = LimitLabels {
                limit: limiter.spec.name.clone(),
            };
            self.limit_keys
                .get_or_create(&labels)
                .set(i64::try_from(limiter.keys()).unwrap_or(i64::MAX));
        }
        self.address_up.clear();
        self.address_in_flight.clear();
        self.address_requests.clear();
        for pool in generation.pools() {
            for endpoint in pool.endpoints().iter() {
                let labels = AddressLabels {
                    upstream: pool.upstream.name.clone(),
                    target: endpoint.target.clone(),
                    address: endpoint.addr.to_string(),
                };
                self.address_up
                    .get_or_create(&labels)
                    .set(i64::from(endpoint.is_available()));
                self.address_in_flight
                    .get_or_create(&labels)
                    .set(i64::try_from(endpoint.in_flight()).unwrap_or(i64::MAX));
                // Kept by the endpoint, which lives as long as its address (across reloads).
                self.address_requests
                    .get_or_create(&labels)
                    .inc_by(endpoint.sent());
            }
        }
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Requests and latencies by route, one shard per worker. A shard's lock is only ever taken
/// by its worker, and by a scrape.
#[derive(Debug)]
struct RequestStats {
    shards: Box<[Mutex<HashMap<String, RouteTally>>]>,
}

/// One route's requests on one worker.
#[derive(Debug, Default, Clone)]
struct RouteTally {
    /// (status, count); a route answers few distinct statuses.
    statuses: Vec<(u16, u64)>,
    /// Observations per latency bucket (the last: above every bound).
    buckets: [u64; BUCKETS + 1],
    sum: f64,
    count: u64,
}

impl RouteTally {
    fn observe(&mut self, status: u16, seconds: f64) {
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, count)) => *count += 1,
            None => self.statuses.push((status, 1)),
        }
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS);
        self.buckets[bucket] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    fn add(&mut self, other: &Self) {
        for &(status, count) in &other.statuses {
            match self.statuses.iter_mut().find(|(s, _)| *s == status) {
                Some((_, total)) => *total += count,
                None => self.statuses.push((status, count)),
            }
        }
        for (total, count) in self.buckets.iter_mut().zip(other.buckets) {
            *total += count;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

impl crate::tls::acme::OrderObserver for Metrics {
    fn ordered(&self, succeeded: bool) {
        let result = if succeeded { "success" } else { "failure" };
        self.acme_orders
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
    }
}

/// One route's requests so far, summed over workers: what the dashboard subtracts a minute ago
/// from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTotals {
    pub requests: u64,
    /// 4xx answers.
    pub client_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
    /// Requests per latency bucket ([`LATENCY_BOUNDS`], the last above them all).
    pub buckets: [u64; BUCKETS + 1],
}

impl RequestStats {
    /// Every worker's tallies, summed by route.
    fn totals(&self) -> BTreeMap<String, RouteTally> {
        let mut totals: BTreeMap<String, RouteTally> = BTreeMap::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (route, tally) in shard.iter() {
                totals.entry(route.clone()).or_default().add(tally);
            }
        }
        totals
    }
}

impl Collector for RequestStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.totals();
        let mut requests = encoder.encode_descriptor(
            "requests",
            "Requests answered, by route and status",
            None,
            MetricType::Counter,
        )?;
        for (route, tally) in &totals {
            let mut statuses = tally.statuses.clone();
            statuses.sort_unstable();
            for (status, count) in statuses {
                let labels = RequestLabels {
                    route: route.clone(),
                    status,
                };
                ConstCounter::new(count).encode(requests.encode_family(&labels)?)?;
            }
        }
        let mut duration = encoder.encode_descriptor(
            "request_duration_seconds",
            "Time from request to response headers, by route",
            None,
            MetricType::Histogram,
        )?;
        for (route, tally) in &totals {
            let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                .into_iter()
                .chain([f64::INFINITY])
                .zip(tally.buckets)
                .collect();
            let labels = RouteLabels {
                route: route.clone(),
            };
            duration
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(tally.sum, tally.count, &buckets, None)?;
        }
        Ok(())
    }
}
