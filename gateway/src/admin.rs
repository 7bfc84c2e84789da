//! The admin listener (`GATEWAY_ADMIN_ADDR`, never the public port):
//!
//! - `GET /healthz`: 200 while the process serves;
//! - `GET /readyz`: 200 when a routing table is loaded and every upstream has a usable address,
//!   else 503 naming the upstreams without one;
//! - `GET /metrics`: Prometheus text format (see [`crate::metrics`]);
//! - `GET /routes`: the active table as JSON, with its generation and reload counts;
//! - `GET /`: the live dashboard (with `/dashboard.js` and `/dashboard.css`), fed by `GET /stats`
//!   (see [`crate::dashboard`]).

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;

use crate::{
    dashboard::{self, Window},
    error::json_response,
    forward::Proxy,
    generation::Generation,
    http_ext::body::{self, Body},
    listen::{Handler, Remote},
    upstream::pool::Pool,
};

#[derive(Debug)]
pub struct Admin {
    pub proxy: Arc<Proxy>,
    /// The last minute of requests, for `/stats`.
    pub window: Arc<Window>,
}

impl Handler for Admin {
    async fn call(self: Arc<Self>, request: Request<Incoming>, remote: Remote) -> Response<Body> {
        // Admin answers are immediate: the mark can end with the call.
        let _open = remote.begin(&request);
        if request.method() != Method::GET {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "error": "method not allowed" }),
                None,
            );
        }
        let generation = self.proxy.current();
        match request.uri().path() {
            "/healthz" => json_response(StatusCode::OK, &json!({ "status": "ok" }), None),
            "/readyz" => readyz(&generation),
            "/metrics" => self.metrics(&generation),
            "/routes" => self.routes(&generation),
            "/stats" => dashboard::stats(
                &self.window,
                &self.proxy.metrics,
                &generation,
                &self.proxy.clients,
                &self.proxy.access_log,
            ),
            path if let Some(page) = dashboard::asset(path) => page,
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": "not found" }),
                None,
            ),
        }
    }
}

impl Admin {
    /// `GET /metrics`.
    fn metrics(&self, generation: &Generation) -> Response<Body> {
        let text =
            self.proxy
                .metrics
                .render(generation, &self.proxy.clients, &self.proxy.access_log);
        let mut response = Response::new(body::full(text));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }

    /// `GET /routes`: the table, and every upstream's addresses with their state.
    fn routes(&self, generation: &Generation) -> Response<Body> {
        let (succeeded, failed) = self.proxy.metrics.reload_counts();
        let upstreams: serde_json::Map<String, serde_json::Value> = generation
            .pools()
            .map(|pool| (pool.upstream.name.clone(), addresses(pool)))
            .collect();
        json_response(
            StatusCode::OK,
            &json!({
                "generation": generation.number,
                "reloads": { "succeeded": succeeded, "failed": failed },
                "table": &generation.table,
                "addresses": upstreams,
            }),
            None,
        )
    }
}

/// `GET /readyz`: ready when every upstream has a usable address.
fn readyz(generation: &Generation) -> Response<Body> {
    let unready: Vec<&str> = generation
        .pools()
        .filter(|pool| !pool.endpoints().iter().any(|e| e.is_available()))
        .map(|pool| pool.upstream.name.as_str())
        .collect();
    if unready.is_empty() {
        json_response(
            StatusCode::OK,
            &json!({ "status": "ready", "generation": generation.number }),
            None,
        )
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "error": "no usable address", "upstreams": unready }),
            None,
        )
    }
}

/// The addresses of `pool` as `/routes` lists them.
fn addresses(pool: &Pool) -> serde_json::Value {
    let addresses: Vec<_> = pool
        .endpoints()
        .iter()
        .map(|e| {
            json!({
                "target": e.target,
                "address": e.addr.to_string(),
                "available": e.is_available(),
                "healthy": e.is_healthy(),
                "in_flight": e.in_flight(),
            })
        })
        .collect();
    json!(addresses)
}
