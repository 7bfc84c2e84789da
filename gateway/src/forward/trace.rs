//! The gateway's part of a trace (see [`common::traces`]): its request continues the client's
//! `traceparent` (or starts a trace), each upstream attempt and the door check are spans of
//! their own, and each attempt passes its context on in `traceparent` / `tracestate`.
//!
//! Without an exporter, every function here returns at once: no span, no header, no
//! allocation; a client's `traceparent` then goes upstream as it came.

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use tracing::Span;

use crate::{routes::Route, upstream::endpoint::Endpoint};

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Makes the request's span (`otel.name`, `otel.kind` declared empty) the server span of the
/// trace the client's headers carry, or of a new one.
pub fn continue_from_client<B>(span: &Span, request: &Request<B>) {
    if !common::traces::exporting() {
        return;
    }
    span.record("otel.kind", "server");
    span.record(
        "otel.name",
        format!("{} {}", request.method(), request.uri().path()).as_str(),
    );
    common::traces::continue_trace(span, |name| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    });
}

/// The span of the door check of `route`.
pub fn door_check(route: &Route) -> Span {
    if !common::traces::exporting() {
        return Span::none();
    }
    tracing::info_span!("door check", route = route.path.as_str())
}

/// The span of attempt number `attempt` on `endpoint`, a client span.
pub fn attempt(route: &Route, endpoint: &Endpoint, attempt: usize) -> Span {
    if !common::traces::exporting() {
        return Span::none();
    }
    tracing::info_span!(
        "upstream",
        otel.name = format!("upstream {}", route.upstream.name).as_str(),
        otel.kind = "client",
        upstream = route.upstream.name.as_str(),
        server.address = %endpoint.addr,
        attempt,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Puts `span`'s context into the headers of the attempt it covers, replacing whatever
/// trace context the client sent (the attempt's parent already continues it).
pub fn pass_on(span: &Span, headers: &mut HeaderMap) {
    if span.is_none() {
        return;
    }
    headers.remove(&TRACESTATE);
    common::traces::propagate(span, |name, value| {
        let name = if name == "traceparent" {
            &TRACEPARENT
        } else {
            &TRACESTATE
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name.clone(), value);
        }
    });
}
