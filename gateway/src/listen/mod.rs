//! The public port, served by one worker per core in the manner of nginx's workers and
//! Pingora's no-steal runtime: each worker is a thread running a single-threaded tokio runtime
//! that accepts on a socket of its own (the port is bound once per worker with
//! `SO_REUSEPORT`, and the kernel spreads new connections over the sockets). A connection, the
//! requests on it and the upstream connections they use all stay on the thread that accepted
//! it: no task migrates, no wake-up crosses to another core, no pool lock is shared.
//!
//! The admin listener, the routes watcher and the health checks run on the process's own
//! (control) runtime.

pub mod clients;
mod serve;

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

pub use serve::{Accepted, ConnectionSettings, Handler, OpenRequest, Remote, serve};
use tokio::{
    net::TcpSocket,
    sync::{oneshot, watch},
};

/// Pending connections the kernel queues per socket before the worker accepts them.
const BACKLOG: u32 = 1024;

/// Binds `addr` once per worker, every socket with `SO_REUSEPORT` on the same port (with port
/// 0, the port the kernel picked for the first). Only sockets of the same user can join the
/// group; a port held by anything else is "in use" as usual.
///
/// The group is also how a gateway is replaced without dropping a connection (see the book's
/// Upgrades chapter): the new process binds the same addresses and joins, then the old one,
/// on SIGTERM, closes its sockets and drains. With `net.ipv4.tcp_migrate_req=1` the kernel
/// hands the connections still queued on the closed sockets to the new process's, instead of
/// resetting them.
pub fn bind_shared(addr: SocketAddr, workers: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let first = bind_one(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind_one(addr)?);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // The socket is registered with a worker's runtime, not the one binding it.
    socket.listen(BACKLOG)?.into_std()
}

/// When shutdown started, and so when the drain ends: set once, seen by every worker.
#[derive(Debug, Clone)]
pub struct Deadline(watch::Receiver<Option<Instant>>);

impl Deadline {
    /// A deadline not set yet, and the sender that sets it.
    pub fn unset() -> (watch::Sender<Option<Instant>>, Self) {
        let (sender, receiver) = watch::channel(None);
        (sender, Self(receiver))
    }

    /// Resolves once shutdown has started (or the sender is gone).
    pub async fn started(mut self) {
        let _ = self.0.wait_for(Option::is_some).await;
    }

    /// Time left until the deadline (zero when none is set).
    pub fn remaining(&self) -> Duration {
        self.0.borrow().map_or(Duration::ZERO, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        })
    }
}

/// Runs one worker thread per entry of `sockets` (what that worker accepts on), each with its
/// own single-threaded runtime, and waits until all have finished. `work(index, sockets)` is
/// the worker's whole life; it is called on the worker's thread, inside its runtime (where the
/// sockets are registered with [`tokio::net::TcpListener::from_std`]), so its future need not
/// be `Send`.
pub async fn run_workers<S, W, F>(sockets: Vec<S>, work: W)
where
    S: Send + 'static,
    W: Fn(usize, S) -> F + Send + Sync + 'static,
    F: Future<Output = io::Result<()>> + 'static,
{
    let work = Arc::new(work);
    let mut finished = Vec::new();
    for (index, sockets) in sockets.into_iter().enumerate() {
        let (done, finished_rx) = oneshot::channel::<()>();
        let work = Arc::clone(&work);
        let spawned = std::thread::Builder::new()
            .name(format!("gateway-worker-{index}"))
            .spawn(move || run_worker(index, sockets, &*work, done));
        match spawned {
            Ok(_) => finished.push(finished_rx),
            Err(err) => {
                tracing::error!(worker = index, error = %err, "cannot start a worker thread")
            }
        }
    }
    for finished in finished {
        let _ = finished.await;
    }
}

fn run_worker<S, W, F>(index: usize, sockets: S, work: &W, done: oneshot::Sender<()>)
where
    W: Fn(usize, S) -> F,
    F: Future<Output = io::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = runtime.and_then(|runtime| runtime.block_on(work(index, sockets)));
    if let Err(err) = outcome {
        tracing::error!(worker = index, error = %err, "worker stopped");
    }
    let _ = done.send(());
}
