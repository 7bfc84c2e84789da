//! The admin listener (`GATEWAY_ADMIN_ADDR`, never the public port): liveness, readiness and
//! the active routing table, for operators and orchestrators.
//!
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when a routing table is loaded.
//! - `GET /routes`: the active table as JSON, with its generation.

use std::{net::SocketAddr, sync::Arc, sync::atomic::Ordering};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::{Body, error::json_response, proxy::Proxy, reload::ReloadStats, server::Handler};

#[derive(Debug)]
pub struct Admin {
    pub proxy: Arc<Proxy>,
    pub reloads: Arc<ReloadStats>,
}

impl Handler for Admin {
    async fn call(
        self: Arc<Self>,
        request: Request<Incoming>,
        _peer: SocketAddr,
    ) -> Response<Body> {
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
            "/readyz" => json_response(
                StatusCode::OK,
                &json!({ "status": "ready", "generation": generation.number }),
                None,
            ),
            "/routes" => json_response(
                StatusCode::OK,
                &json!({
                    "generation": generation.number,
                    "reloads": {
                        "succeeded": self.reloads.succeeded.load(Ordering::Relaxed),
                        "failed": self.reloads.failed.load(Ordering::Relaxed),
                    },
                    "table": &generation.table,
                }),
                None,
            ),
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": "not found" }),
                None,
            ),
        }
    }
}
