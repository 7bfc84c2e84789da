//! Step 2 of a request: send it upstream, on one of the worker's idle connections to the
//! address picked or on a new one ([`crate::upstream::connection`]).
//!
//! A failed attempt is retried on another address only when that cannot do harm: when nothing
//! reached the upstream (the connection was refused or timed out, and the body was not read), or
//! when the method is idempotent and the body is still unread. A timeout is never retried: the
//! upstream may still be working on it. Those rules are [`crate::upstream::retry`]'s: this step
//! asks it, and keeps the body for another attempt ([`super::resend`]).

use std::{sync::Arc, time::Duration};

use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, header::HOST, uri};
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::{
    error::GatewayError,
    forward::{Served, admit::Outgoing, resend::Resendable, trace},
    generation::Generation,
    http_ext::body::{self, Body, BoxError},
    routes::Route,
    upstream::{
        connection::{self, Connection, SendError},
        endpoint::{Endpoint, InFlight},
        pool::Pool,
        retry::{self, MAX_ATTEMPTS},
    },
};

/// An upstream's answer, with the connection its body arrives on (`None` for a protocol
/// switch) and its address's in-flight count, both held until the body is done.
#[derive(Debug)]
pub struct Sent {
    pub response: Response<Incoming>,
    pub connection: Option<Connection>,
    pub in_flight: InFlight,
}

/// Sends `outgoing` for `worker`, trying up to [`MAX_ATTEMPTS`] addresses when retrying is safe.
pub async fn send<'g>(
    worker: usize,
    generation: &'g Generation,
    mut outgoing: Outgoing<'g>,
    served: &mut Served<'g>,
) -> Result<Sent, GatewayError> {
    let (route, pool, upgrade) = (outgoing.route, outgoing.pool, outgoing.upgrade);
    let connect_timeout = generation.table.settings.connect_timeout;
    // Headers are kept for a retry only when there is another address to retry on; for a
    // single-address upstream they move into the request.
    let may_retry = retry::may_retry(pool.has_alternatives(), upgrade);
    let mut body = Resendable::new(outgoing.body, may_retry);
    let mut tried: Vec<Arc<Endpoint>> = Vec::new();
    let mut last_error = None;
    while served.attempts < MAX_ATTEMPTS {
        let Some(endpoint) = pool.pick(worker, &tried) else {
            break;
        };
        let Some(attempt_body) = body.for_attempt() else {
            break;
        };
        served.attempts += 1;
        served.address = Some(endpoint.addr);
        let mut request = upstream_request(
            &outgoing.method,
            &mut outgoing.headers,
            may_retry,
            &endpoint,
            pool.upstream.host.as_ref(),
            &outgoing.path_and_query,
        )?
        .map(|()| attempt_body);
        let span = trace::attempt(route, &endpoint, served.attempts);
        trace::pass_on(&span, request.headers_mut());
        let in_flight = endpoint.begin(worker);
        let sending = exchange(worker, route, &endpoint, request, upgrade, connect_timeout);
        let timed = tokio::time::timeout(route.timeout, sending);
        // Without a trace exporter the span is none: not even that is entered on every poll.
        let answer = if span.is_none() {
            timed.await
        } else {
            timed.instrument(span.clone()).await
        };
        match answer {
            Ok(Ok((response, connection))) => {
                if !span.is_none() {
                    span.record("http.response.status_code", response.status().as_u16());
                }
                endpoint.answered();
                return Ok(Sent {
                    response,
                    connection,
                    in_flight,
                });
            }
            Ok(Err(err)) => {
                let retryable = failed(route, pool, &endpoint, &outgoing.method, &err)?;
                last_error = Some(unavailable(route, &endpoint, Box::new(err)));
                tried.push(endpoint);
                if !(retryable && may_retry) {
                    break;
                }
            }
            Err(_) => return Err(timed_out(route, &endpoint)),
        }
    }
    Err(last_error.unwrap_or_else(|| no_address(route)))
}

/// One request and its response head on `endpoint`: over a connection of the worker's pool,
/// or, for a protocol switch, over a connection of its own (then no connection comes back).
async fn exchange(
    worker: usize,
    route: &Route,
    endpoint: &Endpoint,
    request: Request<Body>,
    upgrade: bool,
    connect_timeout: Duration,
) -> Result<(Response<Incoming>, Option<Connection>), SendError> {
    if upgrade {
        let response = connection::send_upgrade(endpoint.dial(), connect_timeout, request).await?;
        return Ok((response, None));
    }
    let (response, connection) = endpoint
        .send(worker, request, connect_timeout, route.idempotent)
        .await?;
    Ok((response, Some(connection)))
}

/// The request line and headers for one attempt on `endpoint` (HTTP/1.1 upstream, whatever the
/// client spoke, in origin form); the body is added by the caller. The headers are copied when
/// `keep` says another attempt may need them, else they move into the request. A request
/// without a `Host` (HTTP/1.0) gets the address's, which HTTP/1.1 requires.
fn upstream_request(
    method: &Method,
    headers: &mut HeaderMap,
    keep: bool,
    endpoint: &Endpoint,
    host: Option<&HeaderValue>,
    path_and_query: &uri::PathAndQuery,
) -> Result<Request<()>, GatewayError> {
    let mut headers = if keep {
        headers.clone()
    } else {
        std::mem::take(headers)
    };
    let mut target = uri::Parts::default();
    target.path_and_query = Some(path_and_query.clone());
    let uri = Uri::from_parts(target)
        .map_err(|_| GatewayError::BadRequest("request target cannot be forwarded"))?;
    if !headers.contains_key(HOST)
        && let Ok(host) = HeaderValue::from_str(endpoint.authority.as_str())
    {
        headers.insert(HOST, host);
    }
    // An upstream with its own `host` (an external service behind its own name) gets that,
    // not the client's.
    if let Some(host) = host {
        headers.insert(HOST, host.clone());
    }
    let mut request = Request::new(());
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Classifies a failed attempt: `Err` when it must not be retried at all (the client's body
/// went over the limit or failed), else whether another address may be tried (as
/// [`retry::after_failure`] says). Connection failures count towards ejecting the address.
fn failed(
    route: &Route,
    pool: &Pool,
    endpoint: &Endpoint,
    method: &Method,
    err: &SendError,
) -> Result<bool, GatewayError> {
    if let Some(limit) = route.max_body.filter(|_| is_length_limit(err)) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    // The client's body broke off or was malformed: nothing is wrong with the upstream.
    if body::is_client_body_error(err) {
        return Err(GatewayError::BadRequest(
            "malformed or incomplete request body",
        ));
    }
    if err.is_unsent() && endpoint.connect_failed(&pool.upstream.eject) {
        tracing::warn!(upstream = %pool.upstream.name, address = %endpoint.addr, cooldown = ?pool.upstream.eject.cooldown, "address ejected after connection failures");
    }
    let retryable = retry::after_failure(err, route.idempotent, method);
    tracing::debug!(address = %endpoint.addr, error = %err, retryable, "upstream attempt failed");
    Ok(retryable)
}

fn unavailable(route: &Route, endpoint: &Endpoint, cause: BoxError) -> GatewayError {
    GatewayError::UpstreamUnavailable {
        upstream: route.upstream.name.clone(),
        target: endpoint.target.clone(),
        cause,
    }
}

fn no_address(route: &Route) -> GatewayError {
    GatewayError::UpstreamUnavailable {
        upstream: route.upstream.name.clone(),
        target: "-".into(),
        cause: "no address to send the request to".into(),
    }
}

fn timed_out(route: &Route, endpoint: &Endpoint) -> GatewayError {
    GatewayError::UpstreamTimeout {
        upstream: route.upstream.name.clone(),
        target: endpoint.target.clone(),
        after: route.timeout,
    }
}

/// Whether a failed upstream request failed because the client's body went over `max_body`.
fn is_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(error) = cause {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = error.source();
    }
    false
}
