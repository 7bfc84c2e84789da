//! A TCP proxy to put between the services and Redis, whose behaviour a test switches while it
//! runs: pass bytes through, add latency, reset connections in the middle of a reply, or stall
//! (accept and hold: nothing is forwarded either way until the fault ends). It counts the store
//! calls that met the fault, so a test can wait until the calls it sent are held before it
//! checks what else the services still answer.
//!
//! Written here with tokio rather than taken from a crate: the faults are a few lines each, the
//! mode must switch on live connections, and a toxiproxy-like crate would be a server to run
//! and configure for what one loop per direction does.
//!
//! It runs on a thread and runtime of its own, so a test that blocks its runtime (starting the
//! services waits synchronously) never stalls the proxy by accident.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use stack::redis::Endpoint;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream, UnixStream},
    sync::{oneshot, watch},
};

/// What the proxy does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards everything as it comes.
    Pass,
    /// Holds every chunk, both ways, this long before forwarding it (order is kept).
    Delay(Duration),
    /// Forwards requests; the next reply is cut after its first byte and both connections are
    /// reset (RST, not FIN), as a crashing middlebox or a dying peer does. New connections too.
    /// (One byte: no RESP reply is complete in it, so no request whose reply comes after the
    /// switch can succeed, and none is half-read by accident.)
    Reset,
    /// Accepts connections and reads them, but forwards nothing, either way, while the mode
    /// lasts; what was held is delivered, in order, once the mode changes (a partition that
    /// heals).
    Stall,
}

/// A running proxy from a local port to `target`; stopped (every connection dropped) on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Chunks of commands that arrived while the current mode is a fault.
    met: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a port of 127.0.0.1 (bound as port 0) and relays to `target` (a Redis on TCP
    /// or on a unix socket), in [`Mode::Pass`].
    pub fn start(target: Endpoint) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, watching) = watch::channel(Mode::Pass);
        let met = Arc::new(AtomicUsize::new(0));
        let counting = Arc::clone(&met);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    () = accept_loop(listener, target, watching, counting) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every relay task, and with them every connection.
        });
        Self {
            addr,
            mode,
            met,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `redis://<proxy address>/0`, for a service's `REDIS_URL`.
    pub fn redis_url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Switches every connection, open or new, to `mode`, and starts counting
    /// [`FaultProxy::calls_met`] anew.
    pub fn set(&self, mode: Mode) {
        self.met.store(0, Ordering::SeqCst);
        self.mode.send_replace(mode);
    }

    /// How many commands (chunks a service sent towards Redis) arrived since the last
    /// [`FaultProxy::set`] while that mode is a fault: held back by a delay or a stall, or
    /// forwarded to have their reply cut by a reset. Above zero once the service's store calls
    /// are in the fault's hands.
    pub fn calls_met(&self) -> usize {
        self.met.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: Endpoint,
    mode: watch::Receiver<Mode>,
    met: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(relay(
            client,
            target.clone(),
            mode.clone(),
            Arc::clone(&met),
        ));
    }
}

/// How one direction of a relayed connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// A side closed, failed, or the proxy is stopping.
    Closed,
    /// A reply was cut in [`Mode::Reset`]: both connections must be reset.
    Reset,
}

async fn relay(
    mut client: TcpStream,
    target: Endpoint,
    mode: watch::Receiver<Mode>,
    met: Arc<AtomicUsize>,
) {
    let _ = client.set_nodelay(true);
    // SO_LINGER 0: closing sends RST instead of FIN (a unix socket has no such thing).
    match target {
        Endpoint::Tcp(addr) => {
            let Ok(mut upstream) = TcpStream::connect(addr).await else {
                return;
            };
            let _ = upstream.set_nodelay(true);
            if carry(&mut client, &mut upstream, mode, met).await == Ended::Reset {
                let _ = client.set_zero_linger();
                let _ = upstream.set_zero_linger();
            }
        }
        Endpoint::Unix(path) => {
            let Ok(mut upstream) = UnixStream::connect(path).await else {
                return;
            };
            if carry(&mut client, &mut upstream, mode, met).await == Ended::Reset {
                let _ = client.set_zero_linger();
            }
        }
    }
}

/// Relays between `client` and `upstream` until either direction ends.
async fn carry<U: AsyncRead + AsyncWrite + Unpin>(
    client: &mut TcpStream,
    upstream: &mut U,
    mode: watch::Receiver<Mode>,
    met: Arc<AtomicUsize>,
) -> Ended {
    let (from_client, to_client) = client.split();
    let (from_upstream, to_upstream) = tokio::io::split(upstream);
    // Redis never half-closes, so the first direction to end ends the connection.
    tokio::select! {
        ended = pump(from_client, to_upstream, mode.clone(), Some(met)) => ended,
        ended = pump(from_upstream, to_client, mode, None) => ended,
    }
}

/// Copies one direction: the service → Redis one counts the commands that meet a fault in
/// `met`; the other, Redis → service, carries the replies (the ones [`Mode::Reset`] cuts).
/// Reading and writing are apart, joined by a queue of chunks stamped with the time they are
/// due, so a delay is latency (every chunk late by it) and not a cap on throughput.
async fn pump(
    from: impl AsyncRead + Unpin,
    to: impl AsyncWrite + Unpin,
    mode: watch::Receiver<Mode>,
    met: Option<Arc<AtomicUsize>>,
) -> Ended {
    let replies = met.is_none();
    let (queue, queued) = tokio::sync::mpsc::unbounded_channel();
    tokio::select! {
        () = read_side(from, queue, mode.clone(), met) => Ended::Closed,
        ended = write_side(queued, to, mode, replies) => ended,
    }
}

/// Reads chunks and queues each with the time it is due (the write side holds them while
/// stalled); counts in `met` those read while the mode is a fault.
async fn read_side(
    mut from: impl AsyncRead + Unpin,
    queue: tokio::sync::mpsc::UnboundedSender<(Instant, Vec<u8>)>,
    mode: watch::Receiver<Mode>,
    met: Option<Arc<AtomicUsize>>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        if current != Mode::Pass
            && let Some(met) = &met
        {
            met.fetch_add(1, Ordering::SeqCst);
        }
        let delay = match current {
            Mode::Delay(delay) => delay,
            _ => Duration::ZERO,
        };
        if queue
            .send((Instant::now() + delay, buffer[..n].to_vec()))
            .is_err()
        {
            return;
        }
    }
}

/// Writes the queued chunks when they are due; holds them while stalled; in [`Mode::Reset`],
/// cuts the next reply after its first byte and asks for a reset.
async fn write_side(
    mut queued: tokio::sync::mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut to: impl AsyncWrite + Unpin,
    mut mode: watch::Receiver<Mode>,
    replies: bool,
) -> Ended {
    while let Some((due, chunk)) = queued.recv().await {
        tokio::time::sleep_until(due.into()).await;
        if mode.wait_for(|mode| *mode != Mode::Stall).await.is_err() {
            return Ended::Closed;
        }
        if replies && *mode.borrow() == Mode::Reset {
            let _ = to.write_all(&chunk[..1]).await;
            let _ = to.flush().await;
            return Ended::Reset;
        }
        if to.write_all(&chunk).await.is_err() {
            return Ended::Closed;
        }
    }
    Ended::Closed
}
