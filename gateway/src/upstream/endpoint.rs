//! One address of an upstream target, and what each worker has of it.
//!
//! An [`Endpoint`] keeps the address's own state: requests in flight (for
//! power-of-two-choices), consecutive connection failures and an ejection deadline (passive
//! health), and the result of the last active health check. Each worker has a slot of its own
//! in it, on its own cache line: its requests in flight and its idle connections to the address
//! ([`super::connection`]), watched by a sweeper task. [`Endpoint::send`] sends a request on
//! one of them, or on a new one, and sends it again when the connection fails under it as
//! [`super::retry`] allows.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use common::time::{millis, now_ms};
use http::{Request, Response};
use hyper::body::Incoming;
use rustls::pki_types::ServerName;

use super::{
    connection::{Connection, Dial, SendError},
    retry::{self, Again},
};
use crate::{
    http_ext::body::Body,
    routes::{Eject, Target},
    tls::upstream::UpstreamTls,
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
    pub(super) fn new(
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
    pub(super) fn in_flight_on(&self, worker: usize) -> usize {
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
    /// on another connection, as Go's `http.Transport` and nginx do: repeating it does no harm
    /// (the rules are [`retry`]'s).
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
            let replay = retry::replay_copy(&request, idle, replayed, idempotent_route);
            match connection.send(request).await {
                Ok(response) => return Ok((response, connection)),
                Err(err) => match retry::after_connection_failure(err, reused, replay) {
                    Again::Unsent(unsent) => request = unsent,
                    Again::Replay(again) => {
                        tracing::debug!(address = %self.addr, "pooled connection closed under an idempotent request; sending it again");
                        replayed = true;
                        request = again;
                    }
                    Again::No(err) => return Err(SendError::Failed(err)),
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
