//! What writer and reader share as HTTP services: the server loop (bind, run until a shutdown
//! future resolves), request ids on every span, `/healthz` and `/readyz`, and JSON answers for
//! everything actix would otherwise answer in plain text (unknown paths, wrong methods, bad
//! queries or bodies, oversized payloads).

use std::{future::Future, io, net::SocketAddr, time::Instant};

use actix_web::{
    App, HttpMessage, HttpResponse, HttpServer,
    body::MessageBody,
    dev::{Server, ServiceRequest, ServiceResponse},
    http::header::{self, HeaderName, HeaderValue},
    middleware::{ErrorHandlerResponse, ErrorHandlers, Next, from_fn},
    web,
};
use common::request_id;
use serde_json::json;
use tracing::Instrument;

use crate::{
    config::SessionConfig,
    current::{REFRESHED_TOKEN_HEADER, RefreshedToken},
    error::ApiError,
    middleware::{secure_behind_https, session_middleware},
    sessions::Sessions,
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

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

fn bad_request(err: impl std::fmt::Display) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid request: {err}")).into()
}

/// Turns an error response that actix itself wrote in plain text (an oversized body, a
/// malformed header an extractor refused, …) into the JSON every client of these services
/// expects: `{"error": "<reason>"}`, same status, same other headers. Our own errors (JSON) and
/// pages (HTML) pass untouched.
fn json_errors<B>(response: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| kind.starts_with("application/json") || kind.starts_with("text/html"));
    if ours {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let status = response.status();
    let reason = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let (request, original) = response.into_parts();
    let mut json = HttpResponse::build(status).json(json!({ "error": reason }));
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, json).map_into_right_body(),
    ))
}

/// Opens a span carrying the request id for everything the request logs, echoes the id in the
/// response (with a refreshed session token when there is one), and writes one access-log line.
async fn trace_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // The gateway always sends an id: it is kept as it came, without a copy.
    let id = match req.headers().get(request_id::HEADER) {
        Some(incoming) if request_id::is_valid(incoming.as_bytes()) => incoming.clone(),
        _ => {
            let mut fresh = [0u8; request_id::GENERATED_LEN];
            request_id::generate_into(&mut fresh);
            HeaderValue::from_bytes(&fresh).unwrap_or_else(|_| HeaderValue::from_static("-"))
        }
    };
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let _entered = span.enter();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(mut response) => {
            tracing::info!(status = response.status().as_u16(), latency_ms, "served");
            let refreshed = response
                .request()
                .extensions()
                .get::<RefreshedToken>()
                .cloned();
            let headers = response.headers_mut();
            headers.insert(HeaderName::from_static(request_id::HEADER), id);
            if let Some(value) = refreshed.and_then(|token| HeaderValue::from_str(&token.0).ok()) {
                headers.insert(HeaderName::from_static(REFRESHED_TOKEN_HEADER), value);
            }
            Ok(response)
        }
        Err(err) => {
            tracing::error!(error = %err, latency_ms, "failed");
            Err(err)
        }
    }
}
