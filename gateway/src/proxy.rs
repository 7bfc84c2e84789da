//! Forwarding one request: route it, pick a target, rewrite headers, send it upstream over a
//! pooled keep-alive connection, and stream the answer back. Bodies are streamed in both
//! directions, never buffered.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, Uri, Version, uri::PathAndQuery};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tracing::Instrument;

use crate::{
    Body,
    error::GatewayError,
    headers::{self, Peer, X_REQUEST_ID},
    routes::{Route, RouteTable, Target},
};

/// One loaded routes file with everything built from it. In-flight requests hold their
/// generation until they finish, so a reload never changes a request halfway.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub table: RouteTable,
    client: Client<HttpConnector, Body>,
    /// Round-robin position per upstream name.
    cursors: std::collections::HashMap<String, AtomicUsize>,
}

impl Generation {
    pub fn new(number: u64, table: RouteTable) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(table.settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        let cursors = table
            .upstreams
            .keys()
            .map(|name| (name.clone(), AtomicUsize::new(0)))
            .collect();
        Self {
            number,
            table,
            client,
            cursors,
        }
    }

    fn pick<'a>(&self, route: &'a Route) -> &'a Target {
        let targets = &route.upstream.targets;
        let turn = self
            .cursors
            .get(&route.upstream.name)
            .map_or(0, |cursor| cursor.fetch_add(1, Ordering::Relaxed));
        &targets[turn % targets.len()]
    }
}

/// The proxy: the current generation, swapped atomically on reload.
#[derive(Debug)]
pub struct Proxy {
    current: ArcSwap<Generation>,
}

/// What the access log says about a request besides its status.
#[derive(Debug, Default)]
struct Served {
    route: Option<String>,
    target: Option<String>,
}

impl Proxy {
    pub fn new(table: RouteTable) -> Self {
        Self {
            current: ArcSwap::from_pointee(Generation::new(1, table)),
        }
    }

    /// The generation requests are routed with right now.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Installs a new routes table; requests already running keep the old one.
    pub fn install(&self, table: RouteTable) -> u64 {
        let number = self.current.load().number + 1;
        self.current.store(Arc::new(Generation::new(number, table)));
        number
    }

    /// Handles one client request; never fails (errors become JSON responses).
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let request_id = HeaderValue::from_str(&common::request_id::keep_or_generate(
            request
                .headers()
                .get(&X_REQUEST_ID)
                .map(HeaderValue::as_bytes),
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let span = tracing::info_span!(
            "request",
            request_id = request_id.to_str().unwrap_or_default(),
            method = %request.method(),
            path = request.uri().path(),
        );
        async {
            let generation = self.current();
            let mut served = Served::default();
            let result = forward(&generation, request, peer, &request_id, &mut served).await;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            let route = served.route.as_deref().unwrap_or("-");
            let target = served.target.as_deref().unwrap_or("-");
            match result {
                Ok(response) => {
                    tracing::info!(
                        route,
                        target,
                        status = response.status().as_u16(),
                        latency_ms,
                        "proxied"
                    );
                    response
                }
                Err(err) => {
                    let status = err.status().as_u16();
                    match &err {
                        GatewayError::UpstreamUnavailable { cause, .. } => tracing::warn!(
                            route, target, status, latency_ms, cause = %cause, "upstream unavailable"
                        ),
                        _ => tracing::info!(route, target, status, latency_ms, error = %err, "refused"),
                    }
                    err.into_response(&request_id)
                }
            }
        }
        .instrument(span)
        .await
    }
}

async fn forward(
    generation: &Generation,
    request: Request<Incoming>,
    peer: SocketAddr,
    request_id: &HeaderValue,
    served: &mut Served,
) -> Result<Response<Body>, GatewayError> {
    let table = &generation.table;
    let route = table
        .route(request.uri().path())
        .ok_or(GatewayError::NoRoute)?;
    served.route = Some(route.path.clone());
    let target = generation.pick(route);
    served.target = Some(target.url().to_owned());

    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    let client_version = parts.version;
    let peer = Peer {
        addr: peer.ip(),
        trusted: table.settings.is_trusted(peer.ip()),
    };
    headers::prepare_request(
        &mut parts.headers,
        client_version,
        authority.as_deref(),
        peer,
        request_id,
    );
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(target.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| GatewayError::BadRequest("request target cannot be forwarded"))?;
    parts.version = Version::HTTP_11;
    let upstream_request = Request::from_parts(parts, body.map_err(Into::into).boxed());

    let unavailable =
        |cause: Box<dyn std::error::Error + Send + Sync>| GatewayError::UpstreamUnavailable {
            upstream: route.upstream.name.clone(),
            target: target.url().to_owned(),
            cause,
        };
    let response = match tokio::time::timeout(
        route.timeout,
        generation.client.request(upstream_request),
    )
    .await
    {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => return Err(unavailable(Box::new(err))),
        Err(_) => {
            return Err(GatewayError::UpstreamTimeout {
                upstream: route.upstream.name.clone(),
                target: target.url().to_owned(),
                after: route.timeout,
            });
        }
    };

    let (mut parts, body) = response.into_parts();
    headers::prepare_response(&mut parts.headers, parts.version, request_id);
    Ok(Response::from_parts(
        parts,
        body.map_err(Into::into).boxed(),
    ))
}
