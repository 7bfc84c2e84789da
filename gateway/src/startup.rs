//! Building the gateway (routes loaded, listeners bound, so errors show before anything
//! serves) and running it until a shutdown future resolves.

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::net::TcpListener;

use crate::{
    admin::Admin,
    config::GatewayConfig,
    forward::{Proxy, WorkerProxy},
    listen::{self, Deadline},
    metrics::Metrics,
    reload,
    routes::{self, RoutesError},
};

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

/// A gateway with its routes loaded and its listeners bound, ready to run.
#[derive(Debug)]
pub struct Gateway {
    /// The public port, bound once per worker.
    listeners: Vec<std::net::TcpListener>,
    admin_listener: TcpListener,
    routes_path: PathBuf,
    proxy: Arc<Proxy>,
}

impl Gateway {
    /// Loads the routes file (an invalid file stops the start) and binds the listeners.
    pub async fn build(config: GatewayConfig) -> Result<Self, StartError> {
        let table = routes::load(&config.routes)?;
        let workers = config.workers.get();
        let bind_error = |addr, variable| {
            move |source| StartError::Bind {
                addr,
                variable,
                source,
            }
        };
        let listeners = listen::bind_shared(config.addr, workers)
            .map_err(bind_error(config.addr, "GATEWAY_ADDR"))?;
        let admin_listener = TcpListener::bind(config.admin_addr)
            .await
            .map_err(bind_error(config.admin_addr, "GATEWAY_ADMIN_ADDR"))?;
        let proxy = Proxy::new(table, Arc::new(Metrics::new(workers)), workers).await;
        Ok(Self {
            listeners,
            admin_listener,
            routes_path: config.routes,
            proxy: Arc::new(proxy),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners
            .first()
            .ok_or_else(|| std::io::Error::other("no listener"))?
            .local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serves until `shutdown` resolves, reloading the routes file as it changes; then stops
    /// accepting and gives in-flight requests and tunnels `shutdown_grace` (routes.toml, as in
    /// force when shutdown starts) to finish before closing them.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) {
        tracing::info!(
            addr = %self.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            admin = %self.admin_addr().map(|a| a.to_string()).unwrap_or_default(),
            workers = self.listeners.len(),
            routes = %self.routes_path.display(),
            "gateway listening"
        );
        let (set_deadline, deadline) = Deadline::unset();
        let watcher = tokio::spawn(reload::watch(
            self.routes_path.clone(),
            Arc::clone(&self.proxy),
        ));
        let admin = tokio::spawn(listen::serve(
            "admin",
            self.admin_listener,
            Arc::new(Admin {
                proxy: Arc::clone(&self.proxy),
            }),
            deadline.clone().started(),
            || Duration::from_secs(1),
        ));
        let stop = async {
            shutdown.await;
            let grace = self.proxy.current().table.settings.shutdown_grace;
            let _ = set_deadline.send(Some(std::time::Instant::now() + grace));
        };
        let proxy = Arc::clone(&self.proxy);
        let workers = listen::run_workers(self.listeners, move |worker, listener| {
            let proxy = Arc::clone(&proxy);
            let deadline = deadline.clone();
            async move {
                let handler = Arc::new(WorkerProxy {
                    proxy: Arc::clone(&proxy),
                    worker,
                });
                listen::serve(
                    "public",
                    listener,
                    handler,
                    deadline.clone().started(),
                    || deadline.remaining(),
                )
                .await;
                // Tunnels get what is left of the deadline after the requests.
                proxy.drain_tunnels(deadline.remaining()).await;
            }
        });
        tokio::join!(stop, workers);
        watcher.abort();
        let _ = admin.await;
    }
}
