//! The live dashboard on the admin listener: `GET /` is one page (its script and style served
//! beside it, no outside assets, a strict `Content-Security-Policy`) that asks `GET /stats`
//! every second and shows the routes, each upstream address and its health, requests per second,
//! p50 and p99 latency and error rates per route over the last minute, reloads and the loaded
//! generation.
//!
//! The minute is kept here, not in the browser: a sampler takes every route's totals once a
//! second into a ring of [`SAMPLES`] ([`Window`]); `/stats` subtracts the oldest from the newest.
//! The page only replaces what it shows, so it can stay open for hours without growing.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::{
    access::AccessLog,
    error::json_response,
    generation::Generation,
    http_ext::body::{self, Body},
    listen::clients::ClientConnections,
    metrics::{BUCKETS, LATENCY_BOUNDS, Metrics, RouteTotals},
};

/// How far back the dashboard looks.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Samples kept: one a second over [`WINDOW`], and the one before it.
const SAMPLES: usize = 61;
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The last minute of every route's totals, one sample a second.
#[derive(Debug, Default)]
pub struct Window {
    samples: Mutex<VecDeque<(Instant, BTreeMap<String, RouteTotals>)>>,
}

impl Window {
    /// Takes a sample now, dropping the oldest past [`SAMPLES`].
    pub fn sample(&self, metrics: &Metrics) {
        let totals = metrics.route_totals();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back((Instant::now(), totals));
    }

    /// Samples once a second until the task is dropped.
    pub async fn keep_sampling(self: Arc<Self>, metrics: Arc<Metrics>) {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.sample(&metrics);
        }
    }

    /// Each route's requests between the oldest sample and now (`now`: totals taken just now),
    /// and how long that was.
    fn since_oldest(
        &self,
        now: &BTreeMap<String, RouteTotals>,
    ) -> (Duration, BTreeMap<String, RouteTotals>) {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some((at, oldest)) = samples.front() else {
            return (Duration::ZERO, BTreeMap::new());
        };
        let deltas = now
            .iter()
            .map(|(route, totals)| {
                let before = oldest.get(route).copied().unwrap_or_default();
                (route.clone(), minus(totals, &before))
            })
            .collect();
        (at.elapsed(), deltas)
    }
}

/// `now - before`, per field (a route's totals only grow).
fn minus(now: &RouteTotals, before: &RouteTotals) -> RouteTotals {
    let mut buckets = [0; BUCKETS + 1];
    for (delta, (now, before)) in buckets
        .iter_mut()
        .zip(now.buckets.iter().zip(before.buckets))
    {
        *delta = now.saturating_sub(before);
    }
    RouteTotals {
        requests: now.requests.saturating_sub(before.requests),
        client_errors: now.client_errors.saturating_sub(before.client_errors),
        server_errors: now.server_errors.saturating_sub(before.server_errors),
        buckets,
    }
}

/// The latency under which a `quantile` of the requests counted in `buckets` were answered, in
/// milliseconds, interpolated within its bucket; `None` without requests.
fn quantile_ms(buckets: &[u64; BUCKETS + 1], quantile: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let target = quantile * total as f64;
    let mut below = 0.0;
    for (index, &count) in buckets.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let count = count as f64;
        if below + count >= target && count > 0.0 {
            let lower = if index == 0 {
                0.0
            } else {
                LATENCY_BOUNDS[index - 1]
            };
            // Above every bound: the last bound is all that can be said.
            let Some(&upper) = LATENCY_BOUNDS.get(index) else {
                return Some(lower * 1000.0);
            };
            let within = (target - below) / count;
            return Some((lower + (upper - lower) * within) * 1000.0);
        }
        below += count;
    }
    None
}

#[derive(Debug, Serialize)]
struct Stats {
    generation: u64,
    reloads: Reloads,
    connections: usize,
    access_log_dropped: u64,
    /// The seconds the figures cover (up to a minute; less just after start).
    window_seconds: f64,
    routes: Vec<RouteStats>,
    upstreams: Vec<UpstreamStats>,
}

#[derive(Debug, Serialize)]
struct Reloads {
    succeeded: u64,
    failed: u64,
}

#[derive(Debug, Serialize)]
struct RouteStats {
    route: String,
    upstream: String,
    requests: u64,
    rps: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    client_errors: u64,
    server_errors: u64,
    /// 5xx answers over requests: what the gateway or its upstream got wrong.
    error_rate: f64,
}

#[derive(Debug, Serialize)]
struct UpstreamStats {
    name: String,
    addresses: Vec<AddressStats>,
}

#[derive(Debug, Serialize)]
struct AddressStats {
    target: String,
    address: String,
    /// Takes requests: healthy (or not checked) and not ejected.
    up: bool,
    healthy: bool,
    in_flight: usize,
    requests: u64,
}

/// `GET /stats`: the dashboard's figures.
pub fn stats(
    window: &Window,
    metrics: &Metrics,
    generation: &Generation,
    clients: &ClientConnections,
    access_log: &AccessLog,
) -> Response<Body> {
    let (elapsed, recent) = window.since_oldest(&metrics.route_totals());
    let seconds = elapsed.as_secs_f64();
    let routes = generation
        .table
        .routes
        .iter()
        .map(|route| {
            let totals = recent.get(&route.path).copied().unwrap_or_default();
            #[allow(clippy::cast_precision_loss)]
            let (requests, errors) = (totals.requests as f64, totals.server_errors as f64);
            RouteStats {
                route: route.path.clone(),
                upstream: route.upstream.name.clone(),
                requests: totals.requests,
                rps: if seconds > 0.0 {
                    requests / seconds
                } else {
                    0.0
                },
                p50_ms: quantile_ms(&totals.buckets, 0.50),
                p99_ms: quantile_ms(&totals.buckets, 0.99),
                client_errors: totals.client_errors,
                server_errors: totals.server_errors,
                error_rate: if requests > 0.0 {
                    errors / requests
                } else {
                    0.0
                },
            }
        })
        .collect();
    let upstreams = generation
        .pools()
        .map(|pool| UpstreamStats {
            name: pool.upstream.name.clone(),
            addresses: pool
                .endpoints()
                .iter()
                .map(|endpoint| AddressStats {
                    target: endpoint.target.clone(),
                    address: endpoint.addr.to_string(),
                    up: endpoint.is_available(),
                    healthy: endpoint.is_healthy(),
                    in_flight: endpoint.in_flight(),
                    requests: endpoint.sent(),
                })
                .collect(),
        })
        .collect();
    let (succeeded, failed) = metrics.reload_counts();
    let stats = Stats {
        generation: generation.number,
        reloads: Reloads { succeeded, failed },
        connections: clients.open_count(),
        access_log_dropped: access_log
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        window_seconds: (seconds * 10.0).round() / 10.0,
        routes,
        upstreams,
    };
    let value = serde_json::to_value(&stats).unwrap_or_default();
    let mut response = json_response(StatusCode::OK, &value, None);
    no_store(&mut response);
    response
}

/// The page and its two assets, compiled in.
const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// Nothing may load or run but the page's own script and style from this listener, and its own
/// requests to `/stats`; no frame may embed it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`, `/dashboard.js`, `/dashboard.css`; `None` for any other path.
pub fn asset(path: &str) -> Option<Response<Body>> {
    let (text, content_type) = match path {
        "/" => (PAGE, "text/html; charset=utf-8"),
        "/dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/dashboard.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut response = Response::new(body::full(text));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_store(&mut response);
    Some(response)
}

fn no_store(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(usize, u64)]) -> [u64; BUCKETS + 1] {
        let mut buckets = [0; BUCKETS + 1];
        for &(index, count) in pairs {
            buckets[index] = count;
        }
        buckets
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        assert_eq!(quantile_ms(&buckets(&[]), 0.5), None);
        // 100 requests under 0.5 ms: the median is half-way through the first bucket.
        let fast = buckets(&[(0, 100)]);
        assert!((quantile_ms(&fast, 0.5).expect("p50") - 0.25).abs() < 1e-9);
        // 90 in (0.5, 1] ms, 10 in (1, 2] ms: p50 in the first, p99 in the second.
        let mixed = buckets(&[(1, 90), (2, 10)]);
        let p50 = quantile_ms(&mixed, 0.5).expect("p50");
        assert!((0.5..=1.0).contains(&p50), "{p50}");
        let p99 = quantile_ms(&mixed, 0.99).expect("p99");
        assert!((1.0..=2.0).contains(&p99), "{p99}");
        // Beyond every bound: the last bound.
        let slow = buckets(&[(BUCKETS, 3)]);
        let last = LATENCY_BOUNDS[BUCKETS - 1] * 1000.0;
        assert!((quantile_ms(&slow, 0.99).expect("p99") - last).abs() < 1e-9);
    }

    #[test]
    fn the_window_keeps_a_minute_of_samples_and_no_more() {
        let metrics = Metrics::new(1);
        let window = Window::default();
        for _ in 0..(SAMPLES * 3) {
            window.sample(&metrics);
        }
        assert_eq!(
            window.samples.lock().expect("lock").len(),
            SAMPLES,
            "bounded however long it runs"
        );
    }

    #[test]
    fn the_window_counts_what_came_after_its_oldest_sample() {
        let metrics = Metrics::new(1);
        metrics.observe(0, "/", StatusCode::OK, Duration::from_millis(1));
        let window = Window::default();
        window.sample(&metrics);
        for status in [
            StatusCode::OK,
            StatusCode::NOT_FOUND,
            StatusCode::BAD_GATEWAY,
        ] {
            metrics.observe(0, "/", status, Duration::from_millis(3));
        }
        let (_, recent) = window.since_oldest(&metrics.route_totals());
        let totals = recent["/"];
        assert_eq!(
            (totals.requests, totals.client_errors, totals.server_errors),
            (3, 1, 1)
        );
        assert_eq!(totals.buckets.iter().sum::<u64>(), 3);
    }
}
