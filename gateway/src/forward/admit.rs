//! Step 1 of a request: admit it. Give the path its one meaning (see [`path`]) and route it,
//! answer a CORS preflight here, refuse a body
//! declared larger than the route allows, and prepare what goes upstream (the headers per RFC
//! 9110 §7.6, the body wrapped in the route's limit) and what the response step needs back.

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use http::{
    HeaderMap, HeaderValue, Method, Request, Response, Uri, Version, request::Parts,
    uri::PathAndQuery,
};
use http_body_util::{BodyExt, Limited};
use hyper::{body::Incoming, upgrade::OnUpgrade};

use crate::{
    error::GatewayError,
    forward::{
        compress, cors,
        headers::{self, Peer},
        host::{self, RequestHost},
        path,
    },
    generation::Generation,
    http_ext::body::{Body, BoxError, ClientBodyError},
    listen::Remote,
    routes::{Route, Settings},
    upstream::pool::Pool,
};

/// The outcome of admission: answered by the gateway itself, or to be forwarded.
#[derive(Debug)]
pub enum Admission<'g> {
    Answered(&'g Route, Response<Body>),
    Forward(Admitted<'g>),
}

/// An admitted request, split between the step that sends it and the one that answers.
#[derive(Debug)]
pub struct Admitted<'g> {
    pub outgoing: Outgoing<'g>,
    pub returning: Returning,
    /// The request target as the client sent it, kept only for a route with a door check
    /// (which is told the original `X-Forwarded-Uri`).
    pub client_target: Option<PathAndQuery>,
    /// The client's address, as decided for `X-Real-IP` (see [`super::client`]).
    pub client: IpAddr,
}

/// What goes to the upstream.
#[derive(Debug)]
pub struct Outgoing<'g> {
    pub route: &'g Route,
    pub pool: &'g Arc<Pool>,
    pub method: Method,
    /// Already rewritten for the upstream.
    pub headers: HeaderMap,
    pub path_and_query: PathAndQuery,
    /// Within the route's `max_body`.
    pub body: Body,
    /// An upgrade (WebSocket) is never retried: its body is the rest of the connection.
    pub upgrade: bool,
}

/// What the response step needs from the request.
#[derive(Debug)]
pub struct Returning {
    /// `Some` when CORS is configured: the request's origin if it is an allowed one.
    pub cors_origin: Option<Option<HeaderValue>>,
    /// The client side of a protocol switch the request asked for.
    pub client_upgrade: Option<OnUpgrade>,
    /// The HTTP version the client spoke.
    pub client_version: Version,
    /// On a route with `compress = true`: how the response may be encoded.
    pub compress: Option<compress::Choice>,
}

/// Admits `request` from `remote` (whose address is already formatted as header text, once
/// per connection) under `generation`'s table.
pub fn admit<'g>(
    generation: &'g Generation,
    mut request: Request<Incoming>,
    remote: &Remote,
    request_id: &HeaderValue,
) -> Result<Admission<'g>, GatewayError> {
    let table = &generation.table;
    let Routed {
        host,
        route,
        pool,
        rewritten,
    } = routed(generation, &request)?;
    let cors_origin = match &table.cors {
        Some(cors) if cors::is_preflight(request.method(), request.headers()) => {
            let answer = cors::preflight(cors, request.headers(), request_id);
            return Ok(Admission::Answered(route, answer));
        }
        Some(cors) => Some(cors::allowed_origin(cors, request.headers()).cloned()),
        None => None,
    };
    refuse_declared_excess(route, request.headers())?;
    let upgrade = headers::upgrade_protocol(request.headers()).is_some();
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));

    let compress = if route.compress {
        Some(compress::negotiate(request.method(), request.headers()))
    } else {
        None
    };
    let (mut parts, body) = request.into_parts();
    let client = rewrite_headers(
        &mut parts,
        host.as_ref(),
        remote,
        request_id,
        &table.settings,
    );
    let checked_target = route.auth.is_some().then(|| client_target(&parts.uri));
    let path_and_query = rewritten.unwrap_or_else(|| client_target(&parts.uri));
    Ok(Admission::Forward(Admitted {
        outgoing: Outgoing {
            route,
            pool,
            method: parts.method,
            headers: parts.headers,
            path_and_query,
            body: limit(route, body),
            upgrade,
        },
        returning: Returning {
            cors_origin,
            client_upgrade,
            client_version: parts.version,
            compress,
        },
        client_target: checked_target,
        client,
    }))
}

/// Where a request goes, as its head says.
struct Routed<'g> {
    /// The host it is for (see [`host`]).
    host: Option<RequestHost>,
    route: &'g Route,
    pool: &'g Arc<Pool>,
    /// The target to send when it is not the client's: the path normalized or the route's
    /// prefix replaced, with the query as it came.
    rewritten: Option<PathAndQuery>,
}

/// Checks the request's host and transfer codings, gives the path its one meaning and routes it.
fn routed<'g>(
    generation: &'g Generation,
    request: &Request<Incoming>,
) -> Result<Routed<'g>, GatewayError> {
    let host = host::of_request(request.version(), request.uri(), request.headers())
        .map_err(GatewayError::BadRequest)?;
    refuse_transfer_codings(request.headers())?;
    let normal_path = path::normalize(request.uri().path()).map_err(GatewayError::BadRequest)?;
    let route = generation
        .table
        .route(&normal_path)
        .ok_or(GatewayError::NoRoute)?;
    // The upstream gets the path that was routed (with the route's prefix replaced when it
    // says so); the query as it came.
    let forwarded = match (route.forwarded_path(&normal_path), normal_path) {
        (Some(replaced), _) => Some(replaced),
        (None, Cow::Owned(normal)) => Some(normal),
        (None, Cow::Borrowed(_)) => None,
    };
    let rewritten = forwarded
        .map(|path| with_query(path, request.uri().query()))
        .transpose()?;
    let pool = generation
        .pool(&route.upstream.name)
        .ok_or(GatewayError::NoRoute)?;
    Ok(Routed {
        host,
        route,
        pool,
        rewritten,
    })
}

/// Rewrites the request's headers for the upstream (see [`headers::prepare_request`]) and
/// returns the client's address.
fn rewrite_headers(
    parts: &mut Parts,
    host: Option<&RequestHost>,
    remote: &Remote,
    request_id: &HeaderValue,
    settings: &Settings,
) -> IpAddr {
    let peer = Peer {
        addr: remote.addr.ip(),
        text: &remote.ip,
        trusted: settings.is_trusted(remote.addr.ip()),
        https: remote.https,
    };
    headers::prepare_request(
        &mut parts.headers,
        parts.version,
        host,
        &peer,
        request_id,
        settings,
    )
}

/// The request target as the client sent it.
fn client_target(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// `path?query` as a request target.
fn with_query(mut path: String, query: Option<&str>) -> Result<PathAndQuery, GatewayError> {
    if let Some(query) = query {
        path.push('?');
        path.push_str(query);
    }
    PathAndQuery::try_from(path).map_err(|_| GatewayError::BadRequest(path::AMBIGUOUS))
}

/// 413 before anything is sent when `Content-Length` already says the body is too large (a
/// body without one is cut off at the limit while it streams, see [`limit`]).
fn refuse_declared_excess(route: &Route, headers: &HeaderMap) -> Result<(), GatewayError> {
    let Some(limit) = route.max_body else {
        return Ok(());
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    Ok(())
}

/// 501 for a request body in a transfer coding other than `chunked` (RFC 9112 §6.1): hyper
/// decodes only the chunks, so a `gzip, chunked` body would reach the upstream without its
/// coding and mean something else.
fn refuse_transfer_codings(headers: &HeaderMap) -> Result<(), GatewayError> {
    let mut codings = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii);
    if codings.any(|coding| !coding.eq_ignore_ascii_case(b"chunked")) {
        return Err(GatewayError::NotImplemented(
            "transfer codings other than chunked are not supported",
        ));
    }
    Ok(())
}

/// The request body, ended with an error once it passes the route's `max_body`. Its own
/// errors (a malformed chunk, a client that reset its stream) are marked as the client's, so
/// that they answer 400 and do not count against the upstream.
fn limit(route: &Route, body: Incoming) -> Body {
    let body = body.map_err(|err| BoxError::from(ClientBodyError(err)));
    match route.max_body {
        Some(limit) => Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
            .map_err(BoxError::from)
            .boxed(),
        None => body.boxed(),
    }
}
