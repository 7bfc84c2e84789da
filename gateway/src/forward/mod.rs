//! Forwarding one request, in three steps, each in its own module:
//!
//! 1. [`admit`]: give the path its one meaning ([`path`]) and route it, answer CORS
//!    preflights, refuse a declared body over the limit, and rewrite the headers to send
//!    (RFC 9110 §7.6); on a route with a rate limit, take the request from it ([`limit`]); on
//!    a route with a door check, ask it ([`door`]);
//! 2. [`send`]: pick an upstream address, send over a pooled keep-alive connection of this
//!    worker, and retry on another address only when that cannot do harm (as
//!    [`crate::upstream::retry`] decides, with the body kept by [`resend`]);
//! 3. [`respond`]: rewrite the response headers, apply CORS, stream the body back (or splice a
//!    `101 Switching Protocols` into a tunnel).
//!
//! [`Proxy::handle`] strings them together, keeps the metrics and starts the request's
//! access-log line ([`crate::access`]), written once the answer is sent. Bodies are streamed
//! both ways, never buffered; every failure becomes a JSON answer ([`crate::error`]).

pub mod admit;
pub mod client;
pub mod compress;
pub mod cors;
pub mod door;
pub mod headers;
pub mod host;
pub mod limit;
pub mod path;
pub mod resend;
pub mod respond;
pub mod send;
pub mod trace;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, Version, header::CONNECTION};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    access::{AccessLog, Counted, Entry, Logged, OrDash, TunnelEntry},
    capacity::Tickets,
    error::{Capped, GatewayError},
    forward::admit::{Admission, Admitted},
    generation::Generation,
    http_ext::{
        body::{self, Body},
        names::{X_REQUEST_ID, X_USER_ID},
    },
    listen::{
        Accepted, ConnectionSettings, Handler, OpenRequest, Remote, clients::ClientConnections,
    },
    metrics::{DoorRefusal, Metrics},
    routes::{Route, RouteTable},
    tls::acme::{self, Challenges},
    upstream::pool::{Pool, Registry},
};

/// The proxy: the current generation (swapped atomically on reload), the endpoint registry shared
/// by all generations, metrics, and the upgraded connections (tunnels) it carries.
#[derive(Debug)]
pub struct Proxy {
    current: ArcSwap<Generation>,
    registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Open client connections, for `GATEWAY_MAX_CONNECTIONS` and `max_connections_per_client`.
    pub clients: Arc<ClientConnections>,
    /// Where each request's line goes (`GATEWAY_ACCESS_LOG`).
    pub access_log: Arc<AccessLog>,
    tunnels: TaskTracker,
    close_tunnels: CancellationToken,
}

/// What the access log and the metrics say about a request besides its status.
#[derive(Debug, Default)]
pub struct Served<'g> {
    pub route: Option<&'g Route>,
    /// The upstream address of the last attempt.
    pub address: Option<SocketAddr>,
    pub attempts: usize,
    /// The client's address (see [`client`]), once the request was admitted.
    pub client: Option<IpAddr>,
    /// The user a door check vouched for (its `X-User-Id`).
    pub user: Option<HeaderValue>,
    /// With an access log: the counter of request body bytes (see [`Counted`]).
    pub bytes_in: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// A protocol switch: where its tunnel takes the access-log line, to write it on closing.
    pub tunnel: Option<TunnelEntry>,
}

impl Proxy {
    /// A proxy for `workers` workers, serving `table` as generation 1 to at most
    /// `max_connections` client connections at a time.
    pub async fn new(
        table: RouteTable,
        metrics: Arc<Metrics>,
        workers: usize,
        max_connections: usize,
        access_log: Arc<AccessLog>,
    ) -> Self {
        let registry = Arc::new(Registry::new(workers));
        let generation = Generation::new(1, table, &registry, None).await;
        generation.spawn_tasks(&registry);
        let clients = Arc::new(ClientConnections::new(max_connections));
        Self {
            current: ArcSwap::from_pointee(generation),
            registry,
            metrics,
            clients,
            access_log,
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
        let previous = self.current();
        let number = previous.number + 1;
        let generation = Generation::new(number, table, &self.registry, Some(&previous)).await;
        generation.spawn_tasks(&self.registry);
        self.current.store(Arc::new(generation));
        number
    }

    /// Waits for upgraded connections to end, closing those still open after `grace`.
    pub async fn drain_tunnels(&self, grace: Duration) {
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

    /// Handles one client request on `worker`; never fails (errors become JSON responses).
    pub async fn handle(
        &self,
        worker: usize,
        request: Request<Incoming>,
        remote: &Remote,
    ) -> Response<Body> {
        let started = Instant::now();
        let request_id = request_id(&request);
        let span = tracing::info_span!(
            "request",
            request_id = request_id.to_str().unwrap_or_default(),
            method = %request.method(),
            path = request.uri().path(),
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        trace::continue_from_client(&span, &request);
        let mut entry = Entry::start(&self.access_log, &request, started, &span);
        // HTTP/1.x: a request whose body the gateway fails on may leave part of it unread, and
        // then hyper closes the client connection after the answer (see below).
        let body_pending = request.version() <= Version::HTTP_11 && !request.body().is_end_stream();
        async {
            let generation = self.current();
            let mut served = Served {
                bytes_in: entry.as_ref().and_then(|entry| entry.bytes_in()),
                ..Served::default()
            };
            let result = self
                .forward(
                    worker,
                    &generation,
                    request,
                    remote,
                    &request_id,
                    &mut served,
                )
                .await;
            let latency = started.elapsed();
            let failed = result.is_err();
            let mut response = outcome(result, &served, &request_id, latency, entry.as_deref_mut());
            if failed && body_pending {
                // The upstream failed (or the request was refused) with its body perhaps half
                // read: the rest cannot be forwarded, so hyper will not keep this connection.
                // Saying so (RFC 9112 §9.6) keeps the client from sending its next request on
                // it, which would get a reset instead of an answer.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            let route = served.route.map_or("-", |route| route.path.as_str());
            self.metrics
                .observe(worker, route, response.status(), latency);
            match (entry, served.tunnel) {
                (None, _) => response,
                // The tunnel writes the line when it closes, with the bytes it carried.
                (Some(entry), Some(tunnel)) => {
                    *tunnel.lock().unwrap_or_else(|e| e.into_inner()) = Some(entry);
                    response
                }
                (Some(entry), None) => response.map(|body| Logged::new(body, entry).boxed()),
            }
        }
        .instrument(span)
        .await
    }

    /// admit → send → respond.
    async fn forward<'g>(
        &self,
        worker: usize,
        generation: &'g Generation,
        request: Request<Incoming>,
        remote: &Remote,
        request_id: &HeaderValue,
        served: &mut Served<'g>,
    ) -> Result<Response<Body>, GatewayError> {
        let admission = admit::admit(generation, request, remote, request_id)?;
        let Admitted {
            mut outgoing,
            returning,
            client_target,
            client,
        } = match admission {
            Admission::Answered(route, response) => {
                served.route = Some(route);
                return Ok(response);
            }
            Admission::Forward(admitted) => admitted,
        };
        let route = outgoing.route;
        served.route = Some(route);
        served.client = Some(client);
        if let Some(read) = served.bytes_in.clone() {
            let body = std::mem::replace(&mut outgoing.body, body::empty());
            outgoing.body = Counted::new(body, read).boxed();
        }
        // A limit kept per client or route is taken before the door check, one per user after.
        let limited = |stage, headers: &http::HeaderMap| {
            limit::take(generation, &self.metrics, route, stage, client, headers)
        };
        limited(limit::Stage::BeforeCheck, &outgoing.headers)?;
        // Taken after the rate limit (a request over it holds no ticket) and before the door
        // check, which a shed request then does not cost either.
        let tickets = self.tickets(route, outgoing.pool)?;
        if let (Some(check), Some(target)) = (&route.auth, &client_target) {
            let verdict = door::check(worker, generation, check, &mut outgoing, target)
                .instrument(trace::door_check(route))
                .await
                .inspect_err(|_| {
                    self.metrics
                        .door_refused(&route.path, DoorRefusal::Unavailable)
                })?;
            match verdict {
                door::Verdict::Pass => served.user = outgoing.headers.get(&X_USER_ID).cloned(),
                door::Verdict::Refuse(answer) => {
                    self.metrics.door_refused(&route.path, DoorRefusal::Denied);
                    return Ok(respond::respond(
                        self, answer, returning, request_id, tickets, served,
                    ));
                }
                door::Verdict::Forbidden => {
                    self.metrics
                        .door_refused(&route.path, DoorRefusal::Forbidden);
                    return Err(GatewayError::Forbidden);
                }
            }
            limited(limit::Stage::AfterCheck, &outgoing.headers)?;
        }
        let sent = send::send(worker, generation, outgoing, served).await?;
        Ok(respond::respond(
            self, sent, returning, request_id, tickets, served,
        ))
    }

    /// A ticket of each cap on `route` and on its upstream (`pool`), or 503 overloaded (and
    /// counted) when one has none left. A route and upstream without caps cost two branches.
    fn tickets(&self, route: &Route, pool: &Pool) -> Result<Tickets, GatewayError> {
        let mut tickets = Tickets::default();
        if let Some(cap) = &route.max_in_flight {
            tickets.route = Some(
                cap.try_take()
                    .ok_or_else(|| self.overloaded(route, Capped::Route))?,
            );
        }
        if let Some(cap) = &pool.cap {
            tickets.upstream = Some(
                cap.try_take()
                    .ok_or_else(|| self.overloaded(route, Capped::Upstream))?,
            );
        }
        Ok(tickets)
    }

    #[cold]
    fn overloaded(&self, route: &Route, capped: Capped) -> GatewayError {
        self.metrics.overloaded(&route.path, capped);
        GatewayError::Overloaded { capped }
    }
}

/// `308 Permanent Redirect` to the same host, path and query on the HTTPS port (308 keeps the
/// method and body, unlike 301). A request without a usable `Host` gets 400 JSON.
fn to_https(request: &Request<Incoming>, port: u16) -> Response<Body> {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| request.uri().authority().map(http::uri::Authority::as_str))
        .and_then(|host| host.parse::<http::uri::Authority>().ok());
    let Some(host) = host else {
        return GatewayError::BadRequest("a redirect to HTTPS needs a Host header")
            .into_response(&HeaderValue::from_static("-"));
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let location = if port == 443 {
        format!("https://{}{target}", host.host())
    } else {
        format!("https://{}:{port}{target}", host.host())
    };
    let mut response = Response::new(body::empty());
    *response.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
    if let Ok(location) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    response
}

/// The incoming `X-Request-Id` when it is a usable id, else a fresh one.
fn request_id(request: &Request<Incoming>) -> HeaderValue {
    let incoming = request.headers().get(&X_REQUEST_ID);
    if let Some(id) = incoming.filter(|id| common::request_id::is_valid(id.as_bytes())) {
        return id.clone();
    }
    let mut fresh = [0u8; common::request_id::GENERATED_LEN];
    common::request_id::generate_into(&mut fresh);
    HeaderValue::from_bytes(&fresh).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Turns an error into its JSON answer (an upstream that failed is logged at warn level, with
/// the cause), and fills in what the access log says of the outcome.
fn outcome(
    result: Result<Response<Body>, GatewayError>,
    served: &Served<'_>,
    request_id: &HeaderValue,
    latency: Duration,
    entry: Option<&mut Entry>,
) -> Response<Body> {
    let (response, error) = match result {
        Ok(response) => (response, None),
        Err(err) => {
            let mut error = entry.is_some().then(|| err.to_string());
            if let GatewayError::UpstreamUnavailable { cause, .. } = &err {
                let route = served.route.map_or("-", |route| route.path.as_str());
                let upstream = served
                    .route
                    .map_or("-", |route| route.upstream.name.as_str());
                let address = tracing::field::display(OrDash(served.address));
                tracing::warn!(route, upstream, address, attempts = served.attempts, cause = %cause, "upstream unavailable");
                if let Some(error) = &mut error {
                    *error = format!("{error}: {cause}");
                }
            }
            (err.into_response(request_id), error)
        }
    };
    if let Some(entry) = entry {
        let outcome = entry.outcome_mut();
        outcome.request_id = Some(request_id.clone());
        outcome.client = served.client;
        outcome.route = served.route.map(|route| route.path.clone());
        outcome.upstream = served.route.map(|route| route.upstream.name.clone());
        outcome.address = served.address;
        outcome.attempts = served.attempts;
        outcome.status = response.status().as_u16();
        outcome.latency = latency;
        outcome.error = error;
        outcome.trace_id = common::traces::trace_id(&tracing::Span::current());
        outcome.user.clone_from(&served.user);
    }
    response
}

/// The proxy as seen by one worker: requests it accepts use the worker's own upstream
/// connections and counters.
#[derive(Debug)]
pub struct WorkerProxy {
    pub proxy: Arc<Proxy>,
    pub worker: usize,
    pub https: HttpsPolicy,
}

/// What plain HTTP gets when the gateway also serves HTTPS.
#[derive(Debug, Clone, Default)]
pub struct HttpsPolicy {
    /// `GATEWAY_HTTPS_REDIRECT=true`: the HTTPS port plain requests are sent to (308), and
    /// HTTPS answers carry `Strict-Transport-Security`.
    pub redirect_port: Option<u16>,
    /// With ACME: the HTTP-01 answers, given on the plain port before any routing or redirect.
    pub challenges: Option<Arc<Challenges>>,
}

/// The answer to an ACME server's `GET /.well-known/acme-challenge/<token>`: the key
/// authorization as plain text (RFC 8555 §8.3), or 404 JSON like every other refusal.
fn challenge_answer(challenges: &Challenges, token: &str) -> Response<Body> {
    let Some(answer) = challenges.answer(token) else {
        return crate::error::json_response(
            http::StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": "not found" }),
            None,
        );
    };
    let mut response = Response::new(body::full(answer));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    response
}

/// One year: browsers then use HTTPS for the host without asking plain HTTP first.
static HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

impl Handler for WorkerProxy {
    async fn call(self: Arc<Self>, request: Request<Incoming>, remote: Remote) -> Response<Body> {
        // HTTP/2: the connection is not idle while the answer streams.
        let open = remote.begin(&request);
        if let Some(challenges) = &self.https.challenges
            && !remote.https
            && let Some(token) = request.uri().path().strip_prefix(acme::CHALLENGE_PREFIX)
        {
            return OpenRequest::keep_until_sent(open, challenge_answer(challenges, token));
        }
        let response = match self.https.redirect_port {
            Some(port) if !remote.https => to_https(&request, port),
            Some(_) => {
                let mut response = self.proxy.handle(self.worker, request, &remote).await;
                response
                    .headers_mut()
                    .insert(http::header::STRICT_TRANSPORT_SECURITY, HSTS.clone());
                response
            }
            None => self.proxy.handle(self.worker, request, &remote).await,
        };
        OpenRequest::keep_until_sent(open, response)
    }

    fn accept(&self, peer: IpAddr) -> Option<Accepted> {
        let generation = self.proxy.current();
        let settings = &generation.table.settings;
        // A trusted proxy carries many clients' connections: it is not limited as one client.
        let limit = settings
            .max_connections_per_client
            .filter(|_| !settings.is_trusted(peer));
        let permit = self.proxy.clients.open(peer, limit)?;
        Some(Accepted {
            settings: ConnectionSettings {
                idle_timeout: settings.idle_timeout,
                max_header_bytes: settings.max_header_bytes,
            },
            permit: Some(permit),
        })
    }
}
