//! Between admission and sending: the door check of a route that says `auth = "<name>"`
//! ([`DoorCheck`]), as Traefik's ForwardAuth and nginx's `auth_request` do it.
//!
//! The gateway asks the check's upstream (for sessions: the reader's `GET /session`) with the
//! request's own headers, already rewritten for an upstream (so the cookie and any session
//! header go along, hop-by-hop headers do not), no body, and what the check may want to know of
//! the original request: `X-Forwarded-Method` and `X-Forwarded-Uri` (`X-Forwarded-Host` and
//! `-Proto` are among the rewritten headers already). A 2xx answer lets the request through with
//! the answer's named headers (`X-User-Id`) set on it; any other answer, a 401 or the session
//! store's 503, goes back to the client as it is. The gateway itself knows no session format,
//! and caches nothing: a logout takes effect at the door with the next request.

use http::{HeaderMap, HeaderName, HeaderValue, Method, header, uri::PathAndQuery};
use http_body_util::{BodyExt, Limited};

use crate::{
    error::GatewayError,
    forward::{
        Served,
        admit::Outgoing,
        body::{self, Streamed},
        send::{self, Sent},
    },
    generation::Generation,
    routes::DoorCheck,
};

/// What the method and the target of the checked request are sent as.
pub static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The most of a passing answer's body the gateway reads (and drops) to keep its connection.
const PASSING_BODY_LIMIT: usize = 64 * 1024;

/// The check's verdict on one request.
#[derive(Debug)]
pub enum Verdict {
    /// Forward it: the check's headers are on it now.
    Pass,
    /// Answer the client with the check's own answer.
    Refuse(Sent),
}

/// Asks `check` about the request in `outgoing` (whose target as the client sent it is
/// `client_target`), and on a pass sets the check's headers on it.
pub async fn check(
    worker: usize,
    generation: &Generation,
    check: &DoorCheck,
    outgoing: &mut Outgoing<'_>,
    client_target: &PathAndQuery,
) -> Result<Verdict, GatewayError> {
    // Whatever the client sent under the names the check vouches for is never believed, pass or
    // not: neither the check nor the upstream sees it.
    for name in &check.headers {
        outgoing.headers.remove(name);
    }
    let pool = generation
        .pool(&check.route.upstream.name)
        .ok_or(GatewayError::NoRoute)?;
    let mut headers = outgoing.headers.clone();
    for framing in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING] {
        headers.remove(framing);
    }
    set(&mut headers, &X_FORWARDED_METHOD, outgoing.method.as_str());
    set(&mut headers, &X_FORWARDED_URI, client_target.as_str());
    let asking = Outgoing {
        route: &check.route,
        pool,
        method: Method::GET,
        headers,
        path_and_query: check.target.clone(),
        body: body::empty(),
        upgrade: false,
    };
    let mut served = Served::default();
    let sent = send::send(worker, generation, asking, &mut served)
        .await
        .map_err(|err| GatewayError::CheckUnavailable {
            check: check.name.clone(),
            cause: Box::new(err),
        })?;
    if !sent.response.status().is_success() {
        return Ok(Verdict::Refuse(sent));
    }
    let Sent {
        response,
        connection,
        in_flight,
    } = sent;
    let (parts, body) = response.into_parts();
    for name in &check.headers {
        for value in parts.headers.get_all(name) {
            outgoing.headers.append(name.clone(), value.clone());
        }
    }
    // Read the (normally empty) body to its end, so that the connection goes back to the pool.
    let body = Limited::new(
        Streamed::new(body, connection, in_flight),
        PASSING_BODY_LIMIT,
    );
    if let Err(err) = body.collect().await {
        tracing::debug!(check = %check.name, error = %err, "a passing check's body was not read to its end");
    }
    Ok(Verdict::Pass)
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), value);
    }
}
