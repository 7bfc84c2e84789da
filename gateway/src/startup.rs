//! Building the gateway (routes loaded, listeners bound, so errors show before anything
//! serves) and running it until a shutdown future resolves.

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

use crate::{
    access::{AccessLog, Destination},
    admin::Admin,
    config::GatewayConfig,
    dashboard::Window,
    forward::{HttpsPolicy, Proxy, WorkerProxy},
    listen::{self, Deadline},
    metrics::Metrics,
    reload,
    routes::{self, RoutesError},
    tls::{
        CertStore, TlsError,
        acme::{self, AcmeSettings, Challenges, OrderObserver},
    },
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
    #[error("{variable}: {source}", variable = source.variable())]
    Tls {
        #[from]
        source: TlsError,
    },
    #[error("GATEWAY_TLS_CERT: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("GATEWAY_ACME_DOMAINS: cannot make the placeholder certificate: {0}")]
    AcmePlaceholder(String),
    #[error("GATEWAY_ACCESS_LOG: {path}: cannot open for appending: {source}", path = path.display())]
    AccessLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The HTTPS side, when configured: its sockets (one per worker), certificates and policy.
#[derive(Debug)]
struct Https {
    listeners: Vec<std::net::TcpListener>,
    certs: Arc<CertStore>,
    server: Arc<rustls::ServerConfig>,
    redirect: bool,
    /// With ACME: its settings, for the manager.
    acme: Option<AcmeSettings>,
}

/// A gateway with its routes loaded and its listeners bound, ready to run.
#[derive(Debug)]
pub struct Gateway {
    /// The public port, bound once per worker.
    listeners: Vec<std::net::TcpListener>,
    admin_listener: TcpListener,
    https: Option<Https>,
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
        // SO_REUSEPORT like the public port: a new gateway taking over from this one (an
        // upgrade, see listen::bind_shared) binds the same admin address beside it.
        let admin_listener = listen::bind_shared(config.admin_addr, 1)
            .and_then(|mut listeners| TcpListener::from_std(listeners.remove(0)))
            .map_err(bind_error(config.admin_addr, "GATEWAY_ADMIN_ADDR"))?;
        let https = match config.tls {
            Some(tls) => {
                let certs = match &tls.acme {
                    Some(acme) => CertStore::new_or_placeholder(tls.files, &acme.domains)
                        .map_err(StartError::AcmePlaceholder)?,
                    None => CertStore::new(tls.files)?,
                };
                Some(Https {
                    acme: tls.acme,
                    listeners: listen::bind_shared(tls.addr, workers)
                        .map_err(bind_error(tls.addr, "GATEWAY_TLS_ADDR"))?,
                    server: certs.server_config()?,
                    certs,
                    redirect: tls.redirect,
                })
            }
            None => None,
        };
        let access_log = AccessLog::open(&config.access_log).map_err(|source| {
            let path = match &config.access_log {
                Destination::File(path) => path.clone(),
                _ => PathBuf::new(),
            };
            StartError::AccessLog { path, source }
        })?;
        let metrics = Arc::new(Metrics::new(workers));
        let proxy = Proxy::new(
            table,
            metrics,
            workers,
            config.max_connections.get(),
            Arc::new(access_log),
        )
        .await;
        Ok(Self {
            listeners,
            admin_listener,
            https,
            routes_path: config.routes,
            proxy: Arc::new(proxy),
        })
    }

    /// The HTTPS listener's address, when there is one.
    pub fn tls_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        let https = self.https.as_ref()?;
        Some(
            https
                .listeners
                .first()
                .ok_or_else(|| std::io::Error::other("no listener"))
                .and_then(std::net::TcpListener::local_addr),
        )
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
        self.log_listening();
        let policy = self.https_policy();
        let (set_deadline, deadline) = Deadline::unset();
        let Self {
            listeners,
            admin_listener,
            https,
            routes_path,
            proxy,
        } = self;
        let control = Control::spawn(
            &proxy,
            admin_listener,
            routes_path,
            https.as_ref(),
            policy.challenges.as_ref(),
            &deadline,
        );
        let stop = async {
            shutdown.await;
            let grace = proxy.current().table.settings.shutdown_grace;
            let _ = set_deadline.send(Some(std::time::Instant::now() + grace));
        };
        let (sockets, acceptor) = worker_sockets(listeners, https);
        let work = {
            let proxy = Arc::clone(&proxy);
            move |worker, sockets| {
                let handler = WorkerProxy {
                    proxy: Arc::clone(&proxy),
                    worker,
                    https: policy.clone(),
                };
                serve_worker(handler, sockets, acceptor.clone(), deadline.clone())
            }
        };
        tokio::join!(stop, listen::run_workers(sockets, work));
        control.stop().await;
    }

    fn log_listening(&self) {
        tracing::info!(
            addr = %self.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            https = %self.tls_addr().and_then(Result::ok).map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            admin = %self.admin_addr().map(|a| a.to_string()).unwrap_or_default(),
            workers = self.listeners.len(),
            routes = %self.routes_path.display(),
            "gateway listening"
        );
    }

    /// What plain HTTP gets: with `GATEWAY_HTTPS_REDIRECT`, a redirect to the HTTPS port; with
    /// ACME, the answers to its challenges.
    fn https_policy(&self) -> HttpsPolicy {
        HttpsPolicy {
            redirect_port: match (&self.https, self.tls_addr()) {
                (Some(https), Some(Ok(addr))) if https.redirect => Some(addr.port()),
                _ => None,
            },
            challenges: self
                .https
                .as_ref()
                .and_then(|https| https.acme.as_ref())
                .map(|acme| Arc::new(Challenges::new(&acme.dir))),
        }
    }
}

/// The work of the control runtime while the gateway serves: the admin listener, the routes
/// file's watcher and, with HTTPS, the certificate files' watcher.
struct Control {
    admin: JoinHandle<()>,
    routes_watcher: JoinHandle<()>,
    /// Reopens the access log's file on SIGHUP.
    log_reopener: JoinHandle<()>,
    /// Samples the requests once a second for the dashboard.
    sampler: JoinHandle<()>,
    /// With ACME: obtains and renews the certificate.
    acme_manager: Option<JoinHandle<()>>,
    cert_watcher: Option<JoinHandle<()>>,
}

impl Control {
    /// Starts them; the admin listener drains once `deadline` is set.
    fn spawn(
        proxy: &Arc<Proxy>,
        admin_listener: TcpListener,
        routes_path: PathBuf,
        https: Option<&Https>,
        challenges: Option<&Arc<Challenges>>,
        deadline: &Deadline,
    ) -> Self {
        let acme_manager = https
            .and_then(|https| https.acme.clone())
            .zip(challenges.cloned())
            .map(|(settings, challenges)| {
                let observer: Arc<dyn OrderObserver> = Arc::clone(&proxy.metrics) as _;
                tokio::spawn(acme::manage(settings, challenges, observer))
            });
        let cert_watcher = https.map(|https| {
            let metrics = Arc::clone(&proxy.metrics);
            tokio::spawn(Arc::clone(&https.certs).watch(move |ok| metrics.tls_reloaded(ok)))
        });
        let routes_watcher = tokio::spawn(reload::watch(routes_path, Arc::clone(proxy)));
        let log_reopener = tokio::spawn(reload::reopen_on_hangup(Arc::clone(&proxy.access_log)));
        let window = Arc::new(Window::default());
        let sampler = tokio::spawn(Arc::clone(&window).keep_sampling(Arc::clone(&proxy.metrics)));
        let admin = tokio::spawn(listen::serve(
            "admin",
            admin_listener,
            None,
            Arc::new(Admin {
                proxy: Arc::clone(proxy),
                window,
            }),
            deadline.clone().started(),
            || Duration::from_secs(1),
        ));
        Self {
            admin,
            routes_watcher,
            log_reopener,
            sampler,
            cert_watcher,
            acme_manager,
        }
    }

    /// Once the workers are done: stops watching the files and waits for the admin listener.
    async fn stop(self) {
        self.routes_watcher.abort();
        self.log_reopener.abort();
        self.sampler.abort();
        if let Some(acme_manager) = self.acme_manager {
            acme_manager.abort();
        }
        if let Some(cert_watcher) = self.cert_watcher {
            cert_watcher.abort();
        }
        let _ = self.admin.await;
    }
}

/// What each worker accepts on: its socket of the public port and, with HTTPS, of the TLS one.
type WorkerSockets = (std::net::TcpListener, Option<std::net::TcpListener>);

/// The sockets of each worker (see [`WorkerSockets`]), and the TLS acceptor with HTTPS.
fn worker_sockets(
    listeners: Vec<std::net::TcpListener>,
    https: Option<Https>,
) -> (Vec<WorkerSockets>, Option<TlsAcceptor>) {
    let (tls_listeners, acceptor) = match https {
        Some(https) => (
            https.listeners.into_iter().map(Some).collect(),
            Some(TlsAcceptor::from(https.server)),
        ),
        None => (Vec::new(), None),
    };
    let sockets = listeners
        .into_iter()
        .zip(
            tls_listeners
                .into_iter()
                .chain(std::iter::repeat_with(|| None)),
        )
        .collect();
    (sockets, acceptor)
}

/// One worker's life, on its own runtime: serves its sockets until the deadline is set, then
/// drains them and, with what is left of the deadline after the requests, the tunnels.
async fn serve_worker(
    handler: WorkerProxy,
    (plain, tls): WorkerSockets,
    acceptor: Option<TlsAcceptor>,
    deadline: Deadline,
) -> std::io::Result<()> {
    let proxy = Arc::clone(&handler.proxy);
    let handler = Arc::new(handler);
    let serve = |name, listener, tls| {
        listen::serve(
            name,
            listener,
            tls,
            Arc::clone(&handler),
            deadline.clone().started(),
            || deadline.remaining(),
        )
    };
    let plain = TcpListener::from_std(plain)?;
    match tls.map(TcpListener::from_std).transpose()? {
        Some(tls) => {
            tokio::join!(serve("public", plain, None), serve("https", tls, acceptor));
        }
        None => serve("public", plain, None).await,
    }
    // Tunnels get what is left of the deadline after the requests.
    proxy.drain_tunnels(deadline.remaining()).await;
    Ok(())
}
