//! What writer and reader share as HTTP services: the server loop (bind, run until a shutdown
//! future resolves), the end of their `main` ([`serve`]), request ids on every span
//! (`trace.rs`), `/healthz` and `/readyz`, the `Secure` mark of the session cookie behind HTTPS
//! ([`secure_behind_https`]), and JSON answers for everything actix would otherwise answer in
//! plain text (unknown paths, wrong methods, bad queries or bodies, oversized payloads:
//! `fallbacks.rs`).

mod fallbacks;
mod https;
mod trace;

use std::{future::Future, io, net::SocketAddr, process::ExitCode};

use actix_web::{
    App, HttpResponse, HttpServer,
    dev::Server,
    middleware::{ErrorHandlers, from_fn},
    web,
};
use serde_json::json;

pub use self::https::secure_behind_https;
use self::{
    fallbacks::{bad_request, json_errors, not_allowed, not_found},
    trace::trace_request,
};
use crate::{
    config::SessionConfig, error::ApiError, middleware::session_middleware, sessions::Sessions,
};

/// A service bound to its port (and its admin port, if any), not yet running.
pub struct BoundService {
    name: &'static str,
    addr: SocketAddr,
    server: Server,
    admin: Option<(SocketAddr, Server)>,
}

/// Where a service listens: its public address, and the admin address that serves
/// `/metrics` (never on the public port; none when not set).
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
}

/// Binds a writer or reader: `routes` adds the service's own endpoints; `/healthz`, `/readyz`,
/// the session middleware, request tracing and the JSON fallbacks are added here.
///
/// `prepare` adjusts the per-worker [`Sessions`] (for example the writer's per-user cap).
pub fn bind<R, P>(
    name: &'static str,
    listen: Listen,
    config: SessionConfig,
    prepare: P,
    routes: R,
) -> io::Result<BoundService>
where
    R: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    P: Fn(Sessions) -> Sessions + Clone + Send + 'static,
{
    let admin = listen.admin.map(bind_admin).transpose()?;
    let listener = std::net::TcpListener::bind(listen.addr)?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        // One lazily connected Redis connection per worker: each worker is a single-threaded
        // runtime, so its commands never cross threads.
        let sessions = Sessions::new(&config)
            .map(&prepare)
            .unwrap_or_else(|err| panic!("REDIS_URL was validated at start: {err}"));
        App::new()
            .app_data(web::Data::new(sessions))
            .app_data(web::QueryConfig::default().error_handler(|err, _| bad_request(err)))
            .app_data(web::JsonConfig::default().error_handler(|err, _| bad_request(err)))
            .app_data(web::FormConfig::default().error_handler(|err, _| bad_request(err)))
            .configure(routes.clone())
            .service(
                web::resource("/healthz")
                    .get(healthz)
                    .default_service(web::to(not_allowed)),
            )
            .service(
                web::resource("/readyz")
                    .get(readyz)
                    .default_service(web::to(not_allowed)),
            )
            .default_service(web::to(not_found))
            .wrap(session_middleware(&config))
            .wrap(from_fn(secure_behind_https))
            .wrap(ErrorHandlers::new().default_handler(json_errors))
            .wrap(from_fn(trace_request))
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(10)
    .run();
    Ok(BoundService {
        name,
        addr,
        server,
        admin,
    })
}

/// The admin listener: `GET /metrics` (Prometheus text) and `/healthz`, one worker.
fn bind_admin(addr: SocketAddr) -> io::Result<(SocketAddr, Server)> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|err| io::Error::new(err.kind(), format!("admin address {addr}: {err}")))?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(|| {
        App::new()
            .service(resource("/metrics").get(metrics))
            .service(resource("/healthz").get(healthz))
            .default_service(web::to(not_found))
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .run();
    Ok((addr, server))
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::metrics().encode())
}

impl std::fmt::Debug for BoundService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundService")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl BoundService {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// What `LISTEN_ADDR_FILE` announces: `addr`, and `admin` when there is one.
    fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut listeners = vec![("addr", self.addr)];
        listeners.extend(self.admin_addr().map(|admin| ("admin", admin)));
        listeners
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        tracing::info!(service = self.name, addr = %self.addr, admin = ?self.admin_addr(), "listening");
        if let Some((_, admin)) = self.admin {
            let stop = admin.handle();
            actix_web::rt::spawn(admin);
            let result = Self::serve(self.name, self.server, shutdown).await;
            stop.stop(false).await;
            return result;
        }
        Self::serve(self.name, self.server, shutdown).await
    }

    async fn serve(
        name: &'static str,
        server: Server,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let handle = server.handle();
        tokio::select! {
            result = server => result,
            () = shutdown => {
                handle.stop(true).await;
                tracing::info!(service = name, "stopped");
                Ok(())
            }
        }
    }
}

/// A `web::resource` answering 405 JSON for methods it does not route.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(not_allowed))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(sessions: web::Data<Sessions>) -> Result<HttpResponse, ApiError> {
    sessions.store().ping().await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
}

/// The end of a writer's or reader's `main`, once its settings are read: tells
/// `LISTEN_ADDR_FILE` where `bound` listens, serves until Ctrl-C or SIGTERM, and ends with the
/// exit code of [`common::finish`]. A listen address that could not be bound is named in the
/// error with its variable (`variable`, `addr`).
pub async fn serve(
    binary: &str,
    (variable, addr): (&str, SocketAddr),
    bound: io::Result<impl Into<BoundService>>,
) -> ExitCode {
    let result = match bound.map(Into::into) {
        Ok(service) => match common::listening::announce(&service.listeners()) {
            Ok(()) => service.run_until(common::shutdown::signal()).await,
            Err(err) => Err(io::Error::other(err.to_string())),
        },
        Err(err) => Err(io::Error::new(
            err.kind(),
            format!("cannot listen on {addr}: {err} (set {variable} to another address)"),
        )),
    };
    common::finish(binary, result)
}
