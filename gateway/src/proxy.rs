//! Forwarding one request: route it, pick an upstream address, rewrite headers, send it over a
//! pooled keep-alive connection, and stream the answer back. Bodies are streamed both ways,
//! never buffered.
//!
//! Failures are retried on another address only when that cannot do harm: when nothing reached
//! the upstream (the connection was refused or timed out, and the body was not read), or when the
//! method is idempotent and the body is still unread. A timeout is never retried: the upstream
//! may still be working on it.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Weak},
    time::Instant,
};

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, uri::PathAndQuery};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    Body, BoxError,
    body::{Reclaimable, Tracked},
    cors,
    error::{GatewayError, empty_body},
    headers::{self, Peer, X_REQUEST_ID},
    metrics::Metrics,
    routes::{Route, RouteTable},
    upstream::{Endpoint, Pool, Registry},
};

/// Most addresses one request is tried on.
const MAX_ATTEMPTS: usize = 3;

/// One loaded routes file with everything built from it. In-flight requests hold their
/// generation until they finish, so a reload never changes a request halfway.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub table: RouteTable,
    pools: BTreeMap<String, Arc<Pool>>,
    client: Client<HttpConnector, Body>,
}

impl Generation {
    /// Builds a generation: one upstream client with this table's connect timeout, and the
    /// upstreams' addresses resolved.
    async fn new(number: u64, table: RouteTable, registry: &Registry) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(table.settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        let mut pools = BTreeMap::new();
        for (name, upstream) in &table.upstreams {
            let pool = Pool::new(Arc::clone(upstream), registry).await;
            pools.insert(name.clone(), Arc::new(pool));
        }
        Self {
            number,
            table,
            pools,
            client,
        }
    }

    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }

    /// Ready when every upstream has at least one usable address.
    pub fn is_ready(&self) -> bool {
        self.pools
            .values()
            .all(|pool| pool.endpoints().iter().any(|e| e.is_available()))
    }

    /// Starts the background work of this generation (re-resolving host names, active health
    /// checks); each task ends once the generation is replaced and its last request is done.
    fn spawn_tasks(self: &Arc<Self>, registry: &Arc<Registry>) {
        let interval = self.table.settings.resolve_interval;
        for pool in self.pools.values() {
            if pool.has_host_names() {
                let pool = Arc::downgrade(pool);
                let registry = Arc::clone(registry);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(interval).await;
                        let Some(pool) = pool.upgrade() else { break };
                        pool.resolve(&registry).await;
                    }
                });
            }
            if pool.upstream.health_check.is_some() {
                tokio::spawn(health_checks(Arc::downgrade(self), Arc::downgrade(pool)));
            }
        }
    }
}

/// Checks every address of `pool` each interval while the generation lives.
async fn health_checks(generation: Weak<Generation>, pool: Weak<Pool>) {
    loop {
        let Some((client, pool)) = generation
            .upgrade()
            .map(|generation| generation.client.clone())
            .zip(pool.upgrade())
        else {
            break;
        };
        let Some(check) = pool.upstream.health_check.clone() else {
            break;
        };
        for endpoint in pool.endpoints().iter() {
            let request = Request::get(format!("http://{}{}", endpoint.addr, check.path))
                .header(http::header::HOST, &endpoint.host)
                .header(http::header::USER_AGENT, "gateway-health-check")
                .body(empty_body());
            let Ok(request) = request else { continue };
            let healthy = matches!(
                tokio::time::timeout(check.timeout, client.request(request)).await,
                Ok(Ok(response)) if response.status().is_success()
            );
            if endpoint.checked(healthy) {
                if healthy {
                    tracing::info!(upstream = %pool.upstream.name, address = %endpoint.addr, "health check passes again");
                } else {
                    tracing::warn!(upstream = %pool.upstream.name, address = %endpoint.addr, path = %check.path, "health check failed; address taken out");
                }
            }
        }
        drop((client, pool));
        tokio::time::sleep(check.interval).await;
    }
}

/// The proxy: the current generation (swapped atomically on reload), the endpoint registry shared
/// by all generations, metrics, and the upgraded connections (tunnels) it carries.
#[derive(Debug)]
pub struct Proxy {
    current: ArcSwap<Generation>,
    registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    tunnels: TaskTracker,
    close_tunnels: CancellationToken,
}

/// What the access log says about a request besides its status.
#[derive(Debug, Default)]
struct Served {
    route: Option<String>,
    upstream: Option<String>,
    /// The upstream address of the last attempt.
    address: Option<SocketAddr>,
    attempts: usize,
}

impl Proxy {
    pub async fn new(table: RouteTable, metrics: Arc<Metrics>) -> Self {
        let registry = Arc::new(Registry::default());
        let generation = Arc::new(Generation::new(1, table, &registry).await);
        generation.spawn_tasks(&registry);
        Self {
            current: ArcSwap::new(generation),
            registry,
            metrics,
            tunnels: TaskTracker::new(),
            close_tunnels: CancellationToken::new(),
        }
    }

    /// The generation requests are routed with right now.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Installs a new routes table; requests (and tunnels) already running keep the old one.
    pub async fn install(&self, table: RouteTable) -> u64 {
        let number = self.current.load().number + 1;
        let generation = Arc::new(Generation::new(number, table, &self.registry).await);
        generation.spawn_tasks(&self.registry);
        self.current.store(generation);
        number
    }

    /// Waits for upgraded connections to end, closing those still open after `grace`.
    pub async fn drain_tunnels(&self, grace: std::time::Duration) {
        self.tunnels.close();
        if tokio::time::timeout(grace, self.tunnels.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.tunnels.len(),
                "closing upgraded connections at the deadline"
            );
            self.close_tunnels.cancel();
            self.tunnels.wait().await;
        }
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
            let result = self
                .forward(&generation, request, peer, &request_id, &mut served)
                .await;
            let latency = started.elapsed();
            let latency_ms = latency.as_secs_f64() * 1000.0;
            let route = served.route.as_deref().unwrap_or("-");
            let upstream = served.upstream.as_deref().unwrap_or("-");
            let address = served.address.map(|a| a.to_string());
            let address = address.as_deref().unwrap_or("-");
            let attempts = served.attempts;
            let response = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    tracing::info!(
                        route, upstream, address, attempts, status, latency_ms, "proxied"
                    );
                    response
                }
                Err(err) => {
                    let status = err.status().as_u16();
                    match &err {
                        GatewayError::UpstreamUnavailable { cause, .. } => tracing::warn!(
                            route, upstream, address, attempts, status, latency_ms, cause = %cause,
                            "upstream unavailable"
                        ),
                        _ => tracing::info!(
                            route, upstream, address, attempts, status, latency_ms, error = %err,
                            "refused"
                        ),
                    }
                    err.into_response(&request_id)
                }
            };
            self.metrics
                .observe(route, response.status().as_u16(), latency);
            response
        }
        .instrument(span)
        .await
    }

    async fn forward(
        &self,
        generation: &Generation,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        request_id: &HeaderValue,
        served: &mut Served,
    ) -> Result<Response<Body>, GatewayError> {
        let table = &generation.table;
        let route = table
            .route(request.uri().path())
            .ok_or(GatewayError::NoRoute)?;
        served.route = Some(route.path.clone());
        served.upstream = Some(route.upstream.name.clone());
        let pool = generation
            .pools
            .get(&route.upstream.name)
            .ok_or(GatewayError::NoRoute)?;

        let cors_origin = table
            .cors
            .as_ref()
            .and_then(|cors| cors::allowed_origin(cors, request.headers()).cloned());
        if let Some(cors) = &table.cors {
            if cors::is_preflight(request.method(), request.headers()) {
                return Ok(cors::preflight(cors, request.headers(), request_id));
            }
        }
        if let Some(limit) = route.max_body {
            let declared = request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|length| length > limit) {
                return Err(GatewayError::PayloadTooLarge { limit });
            }
        }

        let upgrade = headers::upgrade_protocol(request.headers()).is_some();
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));

        let (mut parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        let peer = Peer {
            addr: peer.ip(),
            trusted: table.settings.is_trusted(peer.ip()),
        };
        headers::prepare_request(
            &mut parts.headers,
            parts.version,
            authority.as_deref(),
            peer,
            request_id,
            table.settings.forwarded,
        );
        let limit = route.max_body.map_or(usize::MAX, |limit| {
            usize::try_from(limit).unwrap_or(usize::MAX)
        });
        let (first_body, mut reclaim) = Reclaimable::new(Limited::new(body, limit));
        let mut first_body = Some(first_body.boxed());

        // Headers are kept for a retry only when there is another address to retry on (and an
        // upgrade is never retried): for a single-address upstream they move into the request.
        let may_retry = pool.has_alternatives() && !upgrade;
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        let mut last_error = None;
        while served.attempts < MAX_ATTEMPTS {
            let Some(endpoint) = pool.pick(&tried) else {
                break;
            };
            // The first attempt sends the body; a retry only when that body was never read.
            let attempt_body = match first_body.take() {
                Some(body) => body,
                None => match reclaim.take() {
                    Some(unread) => {
                        let (body, handle) = Reclaimable::new(unread);
                        reclaim = handle;
                        body.boxed()
                    }
                    None => break,
                },
            };
            served.attempts += 1;
            served.address = Some(endpoint.addr);
            let mut attempt = Request::new(attempt_body);
            *attempt.method_mut() = parts.method.clone();
            *attempt.version_mut() = Version::HTTP_11;
            *attempt.headers_mut() = if may_retry {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            *attempt.uri_mut() = Uri::builder()
                .scheme("http")
                .authority(endpoint.authority.clone())
                .path_and_query(path_and_query.clone())
                .build()
                .map_err(|_| GatewayError::BadRequest("request target cannot be forwarded"))?;

            let in_flight = endpoint.begin();
            let sent =
                tokio::time::timeout(route.timeout, generation.client.request(attempt)).await;
            match sent {
                Ok(Ok(response)) => {
                    endpoint.answered();
                    return Ok(self.respond(
                        response,
                        in_flight,
                        request_id,
                        cors_origin.as_ref(),
                        table.cors.is_some(),
                        client_upgrade,
                    ));
                }
                Ok(Err(err)) => {
                    if let Some(limit) = route.max_body.filter(|_| is_length_limit(&err)) {
                        return Err(GatewayError::PayloadTooLarge { limit });
                    }
                    let unsent = err.is_connect();
                    if unsent && endpoint.connect_failed(&pool.upstream.eject) {
                        tracing::warn!(upstream = %pool.upstream.name, address = %endpoint.addr, cooldown = ?pool.upstream.eject.cooldown, "address ejected after connection failures");
                    }
                    let retryable = unsent || is_idempotent(&parts.method);
                    tracing::debug!(address = %endpoint.addr, error = %err, retryable, "upstream attempt failed");
                    last_error = Some(unavailable(route, &endpoint, Box::new(err)));
                    tried.push(endpoint);
                    if !(retryable && may_retry) {
                        break;
                    }
                }
                Err(_) => {
                    return Err(GatewayError::UpstreamTimeout {
                        upstream: route.upstream.name.clone(),
                        target: endpoint.target.clone(),
                        after: route.timeout,
                    });
                }
            }
        }
        Err(
            last_error.unwrap_or_else(|| GatewayError::UpstreamUnavailable {
                upstream: route.upstream.name.clone(),
                target: "-".into(),
                cause: "no address to send the request to".into(),
            }),
        )
    }

    /// Turns an upstream response into the client's: headers rewritten, CORS applied, body
    /// streamed (holding the address's in-flight count), a `101` spliced into a tunnel.
    fn respond(
        &self,
        response: Response<Incoming>,
        in_flight: crate::upstream::InFlight,
        request_id: &HeaderValue,
        cors_origin: Option<&HeaderValue>,
        cors_configured: bool,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<Body> {
        let mut response = response;
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let upstream_upgrade = switching.then(|| hyper::upgrade::on(&mut response));
        let (mut parts, body) = response.into_parts();
        headers::prepare_response(&mut parts.headers, parts.status, parts.version, request_id);
        if cors_configured {
            cors::decorate(&mut parts.headers, cors_origin);
        }
        if let (Some(client), Some(upstream)) = (client_upgrade, upstream_upgrade) {
            self.spawn_tunnel(client, upstream, in_flight);
            return Response::from_parts(parts, empty_body());
        }
        let body = Tracked::new(body, in_flight)
            .map_err(BoxError::from)
            .boxed();
        Response::from_parts(parts, body)
    }

    /// Splices the client's and the upstream's upgraded connections until either side closes,
    /// or until shutdown closes all tunnels.
    fn spawn_tunnel(
        &self,
        client: hyper::upgrade::OnUpgrade,
        upstream: hyper::upgrade::OnUpgrade,
        in_flight: crate::upstream::InFlight,
    ) {
        let closing = self.close_tunnels.clone();
        self.tunnels.spawn(
            async move {
                let (client, upstream) = match tokio::try_join!(client, upstream) {
                    Ok(sides) => sides,
                    Err(err) => {
                        tracing::debug!(error = %err, "upgrade did not complete");
                        return;
                    }
                };
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                tokio::select! {
                    copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                        if let Ok((up, down)) = copied {
                            tracing::debug!(bytes_up = up, bytes_down = down, "tunnel closed");
                        }
                    }
                    () = closing.cancelled() => tracing::debug!("tunnel closed at shutdown"),
                }
                drop(in_flight);
            }
            .in_current_span(),
        );
    }
}

fn unavailable(route: &Route, endpoint: &Endpoint, cause: BoxError) -> GatewayError {
    GatewayError::UpstreamUnavailable {
        upstream: route.upstream.name.clone(),
        target: endpoint.target.clone(),
        cause,
    }
}

/// RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
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
