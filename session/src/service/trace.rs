//! Request ids and the access log: every request runs in a span carrying its id, the id goes
//! back in the response, and one line is logged when it is answered. [`super::bind`] installs it
//! outermost. When traces are exported, that span is the service's server span, continuing the
//! trace of the incoming `traceparent` (see [`common::traces`]).

use std::time::Instant;

use actix_web::{
    HttpMessage,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};
use common::request_id;
use tracing::Instrument;

use crate::current::{REFRESHED_TOKEN_HEADER, RefreshedToken};

/// Opens a span carrying the request id for everything the request logs, echoes the id in the
/// response (with a refreshed session token when there is one), and writes one access-log line.
pub(super) async fn trace_request(
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
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    if common::traces::exporting() {
        // The server side of the gateway's upstream attempt, under the trace it passed on.
        span.record("otel.kind", "server");
        span.record(
            "otel.name",
            format!("{} {}", req.method(), req.path()).as_str(),
        );
        common::traces::continue_trace(&span, |name| {
            req.headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
        });
    }
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
