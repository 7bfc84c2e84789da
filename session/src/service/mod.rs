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

/// A service bound to its port, not yet running.
pub struct BoundService {
    name: &'static str,
    addr: SocketAddr,
    server: Server,
}

/// Binds a writer or reader: `routes` adds the service's own endpoints; `/healthz`, `/readyz`,
/// the session middleware, request tracing and the JSON fallbacks are added here.
///
/// `prepare` adjusts the per-worker [`Sessions`] (for example the writer's per-user cap).
pub fn bind<R, P>(
    name: &'static str,
    listen: SocketAddr,
    config: SessionConfig,
    prepare: P,
    routes: R,
) -> io::Result<BoundService>
where
    R: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    P: Fn(Sessions) -> Sessions + Clone + Send + 'static,
{
    let listener = std::net::TcpListener::bind(listen)?;
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
    Ok(BoundService { name, addr, server })
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

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        tracing::info!(service = self.name, addr = %self.addr, "listening");
        let handle = self.server.handle();
        tokio::select! {
            result = self.server => result,
            () = shutdown => {
                handle.stop(true).await;
                tracing::info!(service = self.name, "stopped");
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
        Ok(service) => match common::listening::announce(&[("addr", service.local_addr())]) {
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
