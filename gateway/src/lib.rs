//! The gateway: a path-based reverse proxy on hyper 1, driven by `routes.toml`.
//!
//! - [`routes`]: the file's schema, validation and the immutable routing table;
//! - [`proxy`]: forwarding one request (headers per RFC 9110, streamed bodies, pooled upstream
//!   connections, retries, tunnels for upgrades, 404/413/502/504 as JSON);
//! - [`upstream`]: addresses behind each upstream, balancing, passive and active health;
//! - [`reload`]: live reloading of the file, swapping whole tables atomically;
//! - [`server`]: connection handling (HTTP/1.1 and h2c) with graceful shutdown;
//! - [`admin`]: the admin listener; [`metrics`]: what `/metrics` says;
//! - [`cors`], [`headers`], [`body`]: CORS, header rules, body wrappers.

pub mod admin;
pub mod body;
pub mod config;
pub mod cors;
pub mod error;
pub mod headers;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod server;
pub mod upstream;

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
pub use config::GatewayConfig;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::{
    admin::Admin,
    metrics::Metrics,
    proxy::Proxy,
    routes::RoutesError,
    server::{ConnectionSettings, Handler},
};

/// Errors inside streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response crossing the gateway.
pub type Body = BoxBody<Bytes, BoxError>;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Routes(#[from] RoutesError),
    #[error("cannot listen on {addr}: {source} (set {variable} to another address)")]
    Bind {
        addr: SocketAddr,
        variable: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A gateway with its routes loaded and both listeners bound, ready to run.
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    admin_listener: TcpListener,
    routes_path: PathBuf,
    proxy: Arc<Proxy>,
}

impl Handler for Proxy {
    async fn call(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        self.handle(request, peer).await
    }

    fn connection_settings(&self) -> ConnectionSettings {
        let settings = &self.current().table.settings;
        ConnectionSettings {
            idle_timeout: settings.idle_timeout,
            max_header_bytes: settings.max_header_bytes,
        }
    }
}

impl Gateway {
    /// Loads the routes file (an invalid file stops the start) and binds both listeners.
    pub async fn build(config: GatewayConfig) -> Result<Self, StartError> {
        let table = routes::load(&config.routes)?;
        let bind = |addr: SocketAddr, variable: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr,
                    variable,
                    source,
                })
        };
        let listener = bind(config.addr, "GATEWAY_ADDR").await?;
        let admin_listener = bind(config.admin_addr, "GATEWAY_ADMIN_ADDR").await?;
        let proxy = Proxy::new(table, Arc::new(Metrics::default())).await;
        Ok(Self {
            listener,
            admin_listener,
            routes_path: config.routes,
            proxy: Arc::new(proxy),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serves until `shutdown` resolves, reloading the routes file as it changes; then stops
    /// accepting and gives in-flight requests and tunnels `shutdown_grace` (routes.toml) to
    /// finish before closing them.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        };
        tracing::info!(
            addr = %self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            admin = %self.admin_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            routes = %self.routes_path.display(),
            "gateway listening"
        );
        let watcher = tokio::spawn(reload::watch(
            self.routes_path.clone(),
            Arc::clone(&self.proxy),
        ));
        let admin = tokio::spawn(server::serve(
            "admin",
            self.admin_listener,
            Arc::new(Admin {
                proxy: Arc::clone(&self.proxy),
            }),
            stopped(stop_rx),
            || Duration::from_secs(1),
        ));

        // The drain deadline is taken when shutdown starts, from the routes in force then; the
        // tunnels get what is left of it after the requests.
        let deadline: Mutex<Option<Instant>> = Mutex::new(None);
        server::serve(
            "public",
            self.listener,
            Arc::clone(&self.proxy),
            async {
                shutdown.await;
                let _ = stop_tx.send(true);
            },
            || {
                let grace = self.proxy.current().table.settings.shutdown_grace;
                *deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + grace);
                grace
            },
        )
        .await;
        watcher.abort();
        let left = deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Duration::ZERO, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
        self.proxy.drain_tunnels(left).await;
        let _ = admin.await;
    }
}
