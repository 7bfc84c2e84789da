//! Prometheus metrics for the admin listener's `/metrics`: requests by route and status,
//! latency by route, upstream address health and load, reloads and the routing generation.

use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::proxy::Generation;

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
struct ReloadLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabels {
    upstream: String,
    target: String,
    address: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Every metric of the gateway.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    reloads: Family<ReloadLabels, Counter>,
    generation: Gauge,
    address_up: Family<AddressLabels, Gauge>,
    address_in_flight: Family<AddressLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        let duration: HistogramFamily = Family::new_with_constructor(|| {
            // 0.5 ms to ~16 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers, by route",
            duration.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("reloads", "routes.toml reloads, by result", reloads.clone());
        let generation = Gauge::default();
        registry.register(
            "config_generation",
            "Generation of the routing table in use (1 = as started)",
            generation.clone(),
        );
        let address_up = Family::<AddressLabels, Gauge>::default();
        registry.register(
            "upstream_address_up",
            "1 when an upstream address is usable (healthy, not ejected)",
            address_up.clone(),
        );
        let address_in_flight = Family::<AddressLabels, Gauge>::default();
        registry.register(
            "upstream_address_in_flight",
            "Requests in flight to an upstream address",
            address_in_flight.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            reloads,
            generation,
            address_up,
            address_in_flight,
        }
    }
}

impl Metrics {
    /// Records one answered request (`route` is `-` when none matched).
    pub fn observe(&self, route: &str, status: u16, latency: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(latency.as_secs_f64());
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

    /// The Prometheus text exposition, with address gauges taken from `generation` now.
    pub fn render(&self, generation: &Generation) -> String {
        self.generation
            .set(i64::try_from(generation.number).unwrap_or(i64::MAX));
        self.address_up.clear();
        self.address_in_flight.clear();
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
            }
        }
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
