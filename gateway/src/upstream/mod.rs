//! The addresses behind each upstream, whether they are usable, and picking one per request.
//!
//! A target (`http://reader:8091`) resolves to one or more addresses (with `docker compose up
//! --scale reader=3`, the name `reader` resolves to three). Each address is an [`Endpoint`] with
//! its own state: requests in flight (for power-of-two-choices), consecutive connection failures
//! and an ejection deadline (passive health), and the result of the last active health check.
//!
//! Endpoint state lives in a [`Registry`] shared by all generations of the routing table, so a
//! reload does not forget that an address is down or busy. Host names are resolved again every
//! `resolve_interval` by a task that lives as long as its generation ([`health`] has it, and the
//! active health checks).
//!
//! Each worker has a slot of its own in every endpoint, on its own cache line: its requests in
//! flight and its idle connections to the address ([`connection`]). A worker never writes a
//! line another core reads on its hot path; power-of-two-choices compares the picking worker's
//! own counts (as each nginx worker balances its own connections). Connections live as long as
//! the endpoint, so a reload keeps them.

pub mod connection;
pub mod health;
pub mod streamed;
pub mod tls;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
};

use std::time::Duration;

use arc_swap::ArcSwap;
use common::time::{millis, now_ms};
use http::{Method, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use rand::Rng;

use rustls::pki_types::ServerName;

use self::{
    connection::{Connection, Dial, SendError},
    tls::UpstreamTls,
};
use crate::{
    http_ext::body::{self, Body},
    routes::{Balance, Eject, HealthCheck, Target, Upstream},
};

/// Most idle connections a worker keeps to one address.
const MAX_IDLE_PER_WORKER: usize = 256;

/// One address of an upstream target.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once: every request to this address needs it.
    pub authority: http::uri::Authority,
    /// The target it was resolved from (`http://reader:8091`), for logs and metrics.
    pub target: String,
    /// The target's host, sent as `Host` by health checks.
    pub host: String,
    /// One slot per worker (see the module docs).
    slots: Box<[Slot]>,
    failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    /// Result of the last active health check (true until one fails, or without checks).
    healthy: AtomicBool,
    /// For an `https://` target: how to secure the connection, and the name to verify.
    tls: Option<(Arc<UpstreamTls>, ServerName<'static>)>,
}

/// What one worker has of an endpoint, alone on its cache line(s).
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    in_flight: AtomicUsize,
    /// Requests this worker has sent to the address (every attempt), for the metrics.
    sent: AtomicU64,
    /// Only this worker takes this lock (its requests, and its sweeper), so it is never
    /// contended.
    idle: Mutex<Idle>,
}

/// A worker's idle connections to one address, and the task that watches them.
///
/// An idle connection is nobody's request, so nothing would read from it: when the upstream
/// closed it (a keep-alive timeout, a restart), its socket would sit in CLOSE-WAIT until a
/// request took it out of the list. So each list has a sweeper, a task of the worker that
/// every idle connection's socket wakes: it polls the idle connections and drops those that
/// ended. A connection is registered with it as it goes back into the list (one poll with the
/// sweeper's waker), which costs a request nothing it would notice and no wake-up across tasks.
#[derive(Debug, Default)]
struct Idle {
    connections: Vec<Connection>,
    /// The sweeper's waker, once it has run; `None` before (then it is about to be spawned).
    sweeper: Option<std::task::Waker>,
    sweeper_spawned: bool,
}

impl Endpoint {
    fn new(
        target: &Target,
        addr: SocketAddr,
        slots: usize,
        tls: Option<(Arc<UpstreamTls>, ServerName<'static>)>,
    ) -> Self {
        Self {
            addr,
            authority: http::uri::Authority::try_from(addr.to_string().as_str())
                .unwrap_or_else(|_| http::uri::Authority::from_static("0.0.0.0:0")),
            target: target.url().to_owned(),
            host: target.host.clone(),
            slots: (0..slots.max(1)).map(|_| Slot::default()).collect(),
            failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            tls,
        }
    }

    /// How to open a connection to this address.
    pub fn dial(&self) -> Dial<'_> {
        Dial {
            addr: self.addr,
            tls: self.tls.as_ref().map(|(tls, name)| (&**tls, name)),
        }
    }

    /// Usable: passing its health checks and not ejected.
    pub fn is_available(&self) -> bool {
        self.healthy.load(Relaxed) && self.ejected_until_ms.load(Relaxed) <= now_ms()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Requests in flight to this address, from every worker.
    pub fn in_flight(&self) -> usize {
        self.slots
            .iter()
            .map(|slot| slot.in_flight.load(Relaxed))
            .sum()
    }

    /// Requests sent to this address so far (every attempt), from every worker.
    pub fn sent(&self) -> u64 {
        self.slots.iter().map(|slot| slot.sent.load(Relaxed)).sum()
    }

    /// Requests in flight to this address from `worker`.
    fn in_flight_on(&self, worker: usize) -> usize {
        self.slot(worker).in_flight.load(Relaxed)
    }

    fn slot(&self, worker: usize) -> &Slot {
        &self.slots[worker % self.slots.len()]
    }

    /// Sends `request` for `worker` on one of its idle connections to this address, or on a
    /// new one; returns the response head and the connection, which the response body drives
    /// and then gives back ([`Endpoint::give_back`]).
    ///
    /// A pooled connection can be closed by the upstream just as a request goes out on it: its
    /// keep-alive timeout fires as the request arrives (actix-web's and Node's are 5 s). A request
    /// the connection never wrote comes back from hyper and goes out again; an idempotent request
    /// without a body that was written and met by a close instead of an answer is sent once more
    /// on another connection, as Go's `http.Transport` and nginx do: repeating it does no harm.
    pub async fn send(
        &self,
        worker: usize,
        mut request: Request<Body>,
        connect_timeout: Duration,
        idempotent_route: bool,
    ) -> Result<(Response<Incoming>, Connection), SendError> {
        let mut replayed = false;
        loop {
            let (mut connection, idle) = match self.take_idle(worker).await {
                Some((connection, idle)) => (connection, Some(idle)),
                None => (
                    Connection::open(self.dial(), connect_timeout)
                        .await
                        .map_err(SendError::Connect)?,
                    None,
                ),
            };
            let reused = idle.is_some();
            // The copy to send again is only made where the race can happen: on a connection
            // idle long enough for a keep-alive timeout to fire. Under load connections are
            // reused at once, and no request pays for copying its head.
            let racy = idle.is_some_and(|idle| idle >= KEEP_ALIVE_RACE_AFTER);
            let replay = (racy && !replayed && idempotent_route && is_replayable(&request))
                .then(|| head(&request));
            match connection.send(request).await {
                Ok(response) => return Ok((response, connection)),
                Err(mut err) => match (err.take_message(), replay) {
                    // A pooled connection that turned out closed: the request was not written.
                    (Some(unsent), _) if reused => request = unsent,
                    (None, Some(head)) if closed_unanswered(err.error()) => {
                        tracing::debug!(address = %self.addr, "pooled connection closed under an idempotent request; sending it again");
                        replayed = true;
                        request = head.map(|()| body::empty());
                    }
                    _ => return Err(SendError::Failed(err.into_error())),
                },
            }
        }
    }

    /// An idle connection of `worker` that is still usable (closed ones are dropped), and how
    /// long it was idle.
    async fn take_idle(&self, worker: usize) -> Option<(Connection, Duration)> {
        loop {
            let mut connection = self.idle(worker).connections.pop()?;
            if let Some(idle) = connection.reusable_after().await {
                return Some((connection, idle));
            }
        }
    }

    fn idle(&self, worker: usize) -> std::sync::MutexGuard<'_, Idle> {
        self.slot(worker)
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a connection whose last response was read to its end, for `worker`'s next
    /// request, watched by the worker's sweeper for this address (see [`Idle`]).
    pub fn give_back(self: &Arc<Self>, worker: usize, mut connection: Connection) {
        connection.idle();
        let mut idle = self.idle(worker);
        if idle.connections.len() >= MAX_IDLE_PER_WORKER {
            return;
        }
        match &idle.sweeper {
            Some(sweeper) => {
                let mut cx = std::task::Context::from_waker(sweeper);
                if !connection.drive(&mut cx) {
                    return;
                }
            }
            // The sweeper polls every connection in the list when it first runs.
            None if !idle.sweeper_spawned => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                idle.sweeper_spawned = true;
                runtime.spawn(sweep(Arc::downgrade(self), worker));
            }
            None => {}
        }
        idle.connections.push(connection);
    }

    /// Counts a request of `worker` in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>, worker: usize) -> InFlight {
        let slot = self.slot(worker);
        slot.in_flight.fetch_add(1, Relaxed);
        slot.sent.fetch_add(1, Relaxed);
        InFlight {
            endpoint: Arc::clone(self),
            worker,
        }
    }

    /// A connection could not be opened; returns true when this ejects the endpoint.
    pub fn connect_failed(&self, eject: &Eject) -> bool {
        let failures = self.failures.fetch_add(1, Relaxed) + 1;
        if failures >= eject.failures {
            let until = now_ms().saturating_add(millis(eject.cooldown));
            self.ejected_until_ms.store(until, Relaxed);
            self.failures.store(0, Relaxed);
            return true;
        }
        false
    }

    /// The endpoint answered: its failure streak ends.
    pub fn answered(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
    }

    /// Records an active health check result; a passing check also lifts an ejection.
    pub fn checked(&self, healthy: bool) -> bool {
        if healthy {
            self.ejected_until_ms.store(0, Relaxed);
            self.failures.store(0, Relaxed);
        }
        self.healthy.swap(healthy, Relaxed) != healthy
    }
}

/// The sweeper of `worker`'s idle connections to `endpoint` (see [`Idle`]): woken by their
/// sockets, it drops the connections that ended; it ends with the endpoint.
async fn sweep(endpoint: Weak<Endpoint>, worker: usize) {
    std::future::poll_fn(|cx| {
        let Some(endpoint) = endpoint.upgrade() else {
            return std::task::Poll::Ready(());
        };
        let mut idle = endpoint.idle(worker);
        if !idle
            .sweeper
            .as_ref()
            .is_some_and(|sweeper| sweeper.will_wake(cx.waker()))
        {
            idle.sweeper = Some(cx.waker().clone());
        }
        idle.connections
            .retain_mut(|connection| connection.drive(cx));
        std::task::Poll::Pending
    })
    .await;
}

impl Drop for Endpoint {
    /// Wakes the sweepers, which end when they find the endpoint gone.
    fn drop(&mut self) {
        for slot in &self.slots {
            let sweeper = slot
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sweeper
                .take();
            if let Some(sweeper) = sweeper {
                sweeper.wake();
            }
        }
    }
}

/// A request in flight on an endpoint.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    worker: usize,
}

impl InFlight {
    /// Keeps `connection` for the next request of the same worker to the same address.
    pub fn give_back(&self, connection: Connection) {
        self.endpoint.give_back(self.worker, connection);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint
            .slot(self.worker)
            .in_flight
            .fetch_sub(1, Relaxed);
    }
}

/// Endpoint state shared across reloads: the same (target, address) is the same endpoint.
#[derive(Debug)]
pub struct Registry {
    /// Workers serving requests; each has a slot per endpoint.
    workers: usize,
    endpoints: Mutex<HashMap<(String, SocketAddr), Weak<Endpoint>>>,
}

impl Registry {
    pub fn new(workers: usize) -> Self {
        Self {
            workers,
            endpoints: Mutex::default(),
        }
    }

    /// The endpoint of `target` at `addr`, secured with `tls` for an `https://` target. An
    /// endpoint is the same across reloads as long as its target, address and TLS settings are.
    fn endpoint(
        &self,
        target: &Target,
        addr: SocketAddr,
        tls: Option<&Arc<UpstreamTls>>,
    ) -> Arc<Endpoint> {
        let secured = tls.filter(|_| target.https).and_then(|tls| {
            match tls.server_name(&target.host) {
                Ok(name) => Some((Arc::clone(tls), name)),
                Err(err) => {
                    tracing::warn!(target = target.url(), error = %err, "cannot verify this target");
                    None
                }
            }
        });
        let identity = match &secured {
            Some((tls, name)) => format!("{} {} {}", target.url(), tls.roots, name.to_str()),
            None => target.url().to_owned(),
        };
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let key = (identity, addr);
        if let Some(existing) = endpoints.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        // Forget endpoints no generation uses any more.
        endpoints.retain(|_, endpoint| endpoint.strong_count() > 0);
        let endpoint = Arc::new(Endpoint::new(target, addr, self.workers, secured));
        endpoints.insert(key, Arc::downgrade(&endpoint));
        endpoint
    }
}

/// One upstream of one routing-table generation.
#[derive(Debug)]
pub struct Pool {
    pub upstream: Arc<Upstream>,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    cursor: AtomicUsize,
}

impl Pool {
    /// Resolves every target now (an unresolvable host contributes no address until it
    /// resolves).
    pub async fn new(upstream: Arc<Upstream>, registry: &Registry) -> Self {
        let pool = Self {
            upstream,
            endpoints: ArcSwap::from_pointee(Vec::new()),
            cursor: AtomicUsize::new(0),
        };
        pool.resolve(registry).await;
        pool
    }

    /// Whether some target is a host name (and so needs resolving again now and then).
    pub fn has_host_names(&self) -> bool {
        self.upstream
            .targets
            .iter()
            .any(|target| target.host.parse::<IpAddr>().is_err())
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// Whether a failed attempt could go to another address.
    pub fn has_alternatives(&self) -> bool {
        self.endpoints.load().len() > 1
    }

    /// Resolves the targets again; a target whose lookup fails keeps its previous addresses.
    pub async fn resolve(&self, registry: &Registry) {
        let previous = self.endpoints.load_full();
        let mut resolved = Vec::new();
        for target in &self.upstream.targets {
            match lookup(target).await {
                Ok(mut addrs) => {
                    addrs.sort();
                    addrs.dedup();
                    resolved.extend(
                        addrs.into_iter().map(|addr| {
                            registry.endpoint(target, addr, self.upstream.tls.as_ref())
                        }),
                    );
                }
                Err(err) => {
                    tracing::warn!(upstream = %self.upstream.name, target = target.url(), error = %err, "cannot resolve target");
                    resolved.extend(
                        previous
                            .iter()
                            .filter(|e| e.target == target.url())
                            .cloned(),
                    );
                }
            }
        }
        let changed = resolved.len() != previous.len()
            || resolved
                .iter()
                .zip(previous.iter())
                .any(|(a, b)| !Arc::ptr_eq(a, b));
        if changed {
            let addresses: Vec<String> = resolved.iter().map(|e| e.addr.to_string()).collect();
            tracing::info!(upstream = %self.upstream.name, addresses = %addresses.join(", "), "upstream addresses");
            self.endpoints.store(Arc::new(resolved));
        }
    }

    /// Picks an endpoint for a request of `worker`, never one of `tried`. Available endpoints
    /// first; when none is available, any endpoint (a guess beats refusing every request while
    /// all are marked down). A weighted upstream picks a target first ([`Self::pick_weighted`]).
    pub fn pick(&self, worker: usize, tried: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        let endpoints = self.endpoints.load();
        if self.upstream.weighted {
            return self.pick_weighted(worker, tried, &endpoints);
        }
        // The common case, one address and a first attempt: nothing to choose.
        if let ([only], []) = (endpoints.as_slice(), tried) {
            return Some(Arc::clone(only));
        }
        let untried: Vec<&Arc<Endpoint>> = endpoints
            .iter()
            .filter(|e| !tried.iter().any(|t| Arc::ptr_eq(t, e)))
            .collect();
        self.choose(worker, &Self::preferring_available(untried))
    }

    /// The available ones of `candidates`, or all of them when none is.
    fn preferring_available(candidates: Vec<&Arc<Endpoint>>) -> Vec<&Arc<Endpoint>> {
        if candidates.iter().any(|e| e.is_available()) {
            candidates
                .into_iter()
                .filter(|e| e.is_available())
                .collect()
        } else {
            candidates
        }
    }

    /// For an upstream with weights: a target by weight among those with an untried address
    /// (those with an available one first), then one of its addresses by `balance`. A target
    /// of weight 0 gets no new request, even as a retry: it is being drained.
    fn pick_weighted(
        &self,
        worker: usize,
        tried: &[Arc<Endpoint>],
        endpoints: &[Arc<Endpoint>],
    ) -> Option<Arc<Endpoint>> {
        let groups: Vec<(u32, Vec<&Arc<Endpoint>>)> = self
            .upstream
            .targets
            .iter()
            .filter(|target| target.weight > 0)
            .map(|target| {
                let addresses = endpoints
                    .iter()
                    .filter(|e| {
                        e.target == target.url() && !tried.iter().any(|t| Arc::ptr_eq(t, e))
                    })
                    .collect();
                (target.weight, addresses)
            })
            .filter(|(_, addresses): &(u32, Vec<&Arc<Endpoint>>)| !addresses.is_empty())
            .collect();
        let serving = |(_, addresses): &&(u32, Vec<&Arc<Endpoint>>)| {
            addresses.iter().any(|e| e.is_available())
        };
        let eligible: Vec<&(u32, Vec<&Arc<Endpoint>>)> = if groups.iter().any(|g| serving(&g)) {
            groups.iter().filter(serving).collect()
        } else {
            groups.iter().collect()
        };
        let total: u64 = eligible.iter().map(|(weight, _)| u64::from(*weight)).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = rand::rng().random_range(0..total);
        let (_, addresses) = eligible.into_iter().find(|(weight, _)| {
            let weight = u64::from(*weight);
            if ticket < weight {
                return true;
            }
            ticket -= weight;
            false
        })?;
        self.choose(worker, &Self::preferring_available(addresses.clone()))
    }

    /// One of `candidates` by the upstream's `balance`.
    fn choose(&self, worker: usize, candidates: &[&Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        match candidates.len() {
            0 => None,
            1 => Some(Arc::clone(candidates[0])),
            n => Some(Arc::clone(match self.upstream.balance {
                Balance::RoundRobin => candidates[self.cursor.fetch_add(1, Relaxed) % n],
                Balance::PowerOfTwoChoices => {
                    let mut rng = rand::rng();
                    let first = rng.random_range(0..n);
                    let second = (first + rng.random_range(1..n)) % n;
                    let (a, b) = (candidates[first], candidates[second]);
                    if b.in_flight_on(worker) < a.in_flight_on(worker) {
                        b
                    } else {
                        a
                    }
                }
            })),
        }
    }
}

async fn lookup(target: &Target) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .collect();
    if addrs.is_empty() {
        return Err(std::io::Error::other("no addresses"));
    }
    Ok(addrs)
}

/// How long a pooled connection must have been idle before an upstream's keep-alive timeout
/// can close it under a request: no server closes idle connections much sooner than a second
/// (actix-web and Node after 5 s, nginx after 75 s).
pub const KEEP_ALIVE_RACE_AFTER: Duration = Duration::from_secs(1);

/// RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether `request` can be sent again whole after it was written: idempotent, without a body.
fn is_replayable(request: &Request<Body>) -> bool {
    is_idempotent(request.method()) && request.body().is_end_stream()
}

/// The request line and headers of `request`, to send it again.
fn head(request: &Request<Body>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    head
}

/// Whether the upstream closed (or reset) the connection instead of answering.
fn closed_unanswered(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() {
        return true;
    }
    let mut cause = std::error::Error::source(err);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(targets: &[&str], balance: Balance) -> Arc<Upstream> {
        Arc::new(Upstream {
            name: "test".into(),
            targets: targets
                .iter()
                .map(|t| Target::parse(t).expect("target"))
                .collect(),
            balance,
            health_check: None,
            eject: Eject::default(),
            weighted: false,
            tls: None,
            host: None,
        })
    }

    /// A pool over two local addresses (ports 1 and 2), with its own registry.
    async fn pair(balance: Balance) -> (Registry, Pool) {
        let registry = Registry::new(1);
        let targets = ["http://127.0.0.1:1", "http://127.0.0.1:2"];
        let pool = Pool::new(upstream(&targets, balance), &registry).await;
        (registry, pool)
    }

    #[tokio::test]
    async fn round_robin_takes_turns_and_skips_tried_endpoints() {
        let (_registry, pool) = pair(Balance::RoundRobin).await;
        let ports: Vec<u16> = (0..4)
            .map(|_| pool.pick(0, &[]).expect("one").addr.port())
            .collect();
        assert_eq!(ports, [1, 2, 1, 2]);
        let first = pool.pick(0, &[]).expect("one");
        let other = pool.pick(0, &[Arc::clone(&first)]).expect("another");
        assert_ne!(first.addr, other.addr);
        assert!(
            pool.pick(0, &[first, other]).is_none(),
            "nothing left to try"
        );
    }

    #[tokio::test]
    async fn power_of_two_choices_prefers_the_less_busy() {
        let (_registry, pool) = pair(Balance::PowerOfTwoChoices).await;
        let busy = pool.endpoints()[0].clone();
        let _guards: Vec<InFlight> = (0..5).map(|_| busy.begin(0)).collect();
        for _ in 0..20 {
            assert_eq!(pool.pick(0, &[]).expect("one").addr.port(), 2);
        }
    }

    #[tokio::test]
    async fn ejected_endpoints_are_skipped_until_all_are_down() {
        let (_registry, pool) = pair(Balance::RoundRobin).await;
        let eject = Eject::default();
        let down = pool.endpoints()[0].clone();
        assert!(down.connect_failed(&eject), "one failure ejects by default");
        for _ in 0..4 {
            assert_eq!(pool.pick(0, &[]).expect("one").addr.port(), 2);
        }
        pool.endpoints()[1].connect_failed(&eject);
        assert!(pool.pick(0, &[]).is_some(), "all down: still try something");
        assert!(
            down.checked(true) || down.is_available(),
            "a passing check lifts the ejection"
        );
        assert!(down.is_available());
    }

    #[tokio::test]
    async fn state_survives_a_new_generation() {
        let registry = Registry::new(1);
        let targets = ["http://127.0.0.1:1"];
        let old = Pool::new(upstream(&targets, Balance::RoundRobin), &registry).await;
        let endpoint = old.endpoints()[0].clone();
        endpoint.connect_failed(&Eject::default());
        let new = Pool::new(upstream(&targets, Balance::RoundRobin), &registry).await;
        assert!(Arc::ptr_eq(&endpoint, &new.endpoints()[0]));
        assert!(
            !new.endpoints()[0].is_available(),
            "still ejected after a reload"
        );
    }

    #[tokio::test]
    async fn host_names_resolve_to_every_address() {
        let registry = Registry::new(1);
        let pool = Pool::new(
            upstream(&["http://localhost:9"], Balance::RoundRobin),
            &registry,
        )
        .await;
        assert!(pool.has_host_names());
        assert!(!pool.endpoints().is_empty(), "localhost resolves");
        assert!(
            pool.endpoints()
                .iter()
                .all(|e| e.addr.port() == 9 && e.host == "localhost")
        );
    }
}
