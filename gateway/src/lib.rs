//! The gateway: a path-based reverse proxy on hyper 1, driven by `routes.toml`.
//!
//! - [`routes`]: the file's schema, validation and the immutable routing table;
//! - [`proxy`]: forwarding one request (headers per RFC 9110, streamed bodies, pooled upstream
//!   connections, 404/502/504 as JSON);
//! - [`reload`]: live reloading of the file, swapping whole tables atomically;
//! - [`server`]: connection handling (HTTP/1.1 and h2c) with graceful shutdown;
//! - [`admin`]: the admin listener.

pub mod admin;
pub mod config;
pub mod error;
pub mod headers;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod server;

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
pub use config::GatewayConfig;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::{
    admin::Admin, proxy::Proxy, reload::ReloadStats, routes::RoutesError, server::Handler,
};

/// Errors inside streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response crossing the gateway.
pub type Body = BoxBody<Bytes, BoxError>;

/// How long shutdown waits for in-flight requests before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    reloads: Arc<ReloadStats>,
}

impl Handler for Proxy {
    async fn call(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        self.handle(request, peer).await
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
        Ok(Self {
            listener,
            admin_listener,
            routes_path: config.routes,
            proxy: Arc::new(Proxy::new(table)),
            reloads: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serves until `shutdown` resolves, reloading the routes file as it changes; then drains
    /// in-flight requests for at most [`SHUTDOWN_GRACE`].
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
            Arc::clone(&self.reloads),
        ));
        let admin = tokio::spawn(server::serve(
            "admin",
            self.admin_listener,
            Arc::new(Admin {
                proxy: Arc::clone(&self.proxy),
                reloads: Arc::clone(&self.reloads),
            }),
            stopped(stop_rx.clone()),
            Duration::from_secs(1),
        ));
        let public = server::serve(
            "public",
            self.listener,
            Arc::clone(&self.proxy),
            async {
                shutdown.await;
                let _ = stop_tx.send(true);
            },
            SHUTDOWN_GRACE,
        );
        public.await;
        watcher.abort();
        let _ = admin.await;
    }
}
