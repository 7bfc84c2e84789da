//! Accepting connections on one listener: HTTP/1.1 and HTTP/2 (h2c with prior knowledge, or
//! chosen by ALPN over TLS) through hyper-util's auto builder, each connection on its own task,
//! tracked so shutdown can drain them (the hyper-util `server_graceful` example, with a cap on
//! the wait), and closed once idle for `idle_timeout` whatever its protocol.

use std::{
    convert::Infallible,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::Instant,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::clients::Permit;
use crate::http_ext::body::{Body, BoxError};

/// Limits applied to each new client connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// How long a client may take to send a request head, and may sit idle between requests,
    /// whatever the protocol (and while it is still being detected).
    pub idle_timeout: Duration,
    /// Largest request head accepted (HTTP/1.1: 431 beyond it).
    pub max_header_bytes: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
        }
    }
}

impl ConnectionSettings {
    /// How often an HTTP/2 connection is pinged: a peer that vanished (a half-open connection,
    /// with a request in flight or not) is noticed without waiting for TCP.
    fn ping_interval(&self) -> Duration {
        self.idle_timeout.min(PING_INTERVAL)
    }

    fn ping_timeout(&self) -> Duration {
        self.idle_timeout.min(PING_TIMEOUT)
    }
}

/// Requests one HTTP/2 connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`, RFC
/// 9113 §6.5.2; hyper's default is 200): one more stream is refused (`RST_STREAM
/// REFUSED_STREAM`, safe for the client to retry), so one connection cannot put an unbounded
/// number of requests in flight. A browser opens around a hundred at most.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Streams a client may open and reset before the gateway has accepted them (the "rapid
/// reset" attack, CVE-2023-44487), and streams the gateway may reset for a client's errors,
/// before the connection is closed with `GOAWAY`: hyper's and h2's own protections, kept at
/// their defaults and written down here so that they stay.
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// HTTP/2 keep-alive pings: every 30 s at most, answered within 20 s or the connection closes.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a connection told to close because it was idle gets to say goodbye (HTTP/2's
/// GOAWAY), before it is dropped: a client that does not read cannot keep it open either.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long, once shutdown starts, a connection accepted just before gets for its first request
/// to begin (it is usually in the socket already) before it is closed: closing it at once would
/// lose a request the client had sent. Bounded by the shutdown grace too.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(2);

/// A connection the handler accepts, with what it holds while it is open.
#[derive(Debug)]
pub struct Accepted {
    pub settings: ConnectionSettings,
    /// Released when the connection ends (a place in the per-client count).
    pub permit: Option<Permit>,
}

/// The client end of a connection, as every request on it sees it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub addr: SocketAddr,
    /// The client's IP as header text (`X-Forwarded-For`), formatted once per connection.
    pub ip: HeaderValue,
    /// Whether the connection is TLS (the HTTPS listener).
    pub https: bool,
    /// What the connection's idle timer knows of its requests.
    activity: Arc<Activity>,
}

impl Remote {
    fn new(addr: SocketAddr, https: bool, activity: Arc<Activity>) -> Self {
        let ip = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            addr,
            ip,
            https,
            activity,
        }
    }

    /// Every [`Handler::call`] starts here: a request tells its connection's idle timer that it
    /// began. An HTTP/2 request counts as open until the returned mark is dropped; a handler
    /// whose answers may take long to send (a stream, a download) keeps it on its answer with
    /// [`OpenRequest::keep_until_sent`]. HTTP/1 gets `None` (hyper watches it).
    pub fn begin(&self, request: &Request<Incoming>) -> Option<OpenRequest> {
        self.activity.begin(request.version())
    }
}

/// Something that answers requests; the proxy and the admin endpoints both are.
pub trait Handler: Send + Sync + 'static {
    /// Answers `request`; it first tells the connection with [`Remote::begin`].
    fn call(
        self: Arc<Self>,
        request: Request<Incoming>,
        remote: Remote,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// Whether a connection from `peer` accepted now is served (`None`: it is closed at once),
    /// and with which limits (the proxy's follow routes.toml).
    fn accept(&self, peer: IpAddr) -> Option<Accepted> {
        let _ = peer;
        Some(Accepted {
            settings: ConnectionSettings::default(),
            permit: None,
        })
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves, then stops accepting and waits up
/// to `grace()` for open connections to finish their requests. With `tls`, every connection
/// is a TLS one (the HTTPS listener).
pub async fn serve<H: Handler>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
    grace: impl FnOnce() -> Duration,
) {
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = name, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(accepted) = handler.accept(peer.ip()) else {
            tracing::debug!(listener = name, %peer, "closing a connection over a connection limit");
            continue;
        };
        connections.spawn(serve_connection(
            name,
            stream,
            peer,
            tls.clone(),
            Arc::clone(&handler),
            accepted,
            closing.clone(),
        ));
    }

    drop(listener);
    connections.close();
    closing.cancel();
    let grace = grace();
    tracing::info!(listener = name, "stopped accepting; draining connections");
    match tokio::time::timeout(grace, connections.wait()).await {
        Ok(()) => tracing::info!(listener = name, "all connections closed"),
        Err(_) => tracing::warn!(
            listener = name,
            ?grace,
            "closing connections still open after the grace period"
        ),
    }
}

/// Serves one accepted connection until it closes, idles out, or shutdown (`closing`) ends it.
async fn serve_connection<H: Handler>(
    name: &'static str,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    accepted: Accepted,
    closing: CancellationToken,
) {
    let _permit = accepted.permit;
    let settings = accepted.settings;
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        serve_io(name, stream, (peer, false), settings, handler, closing).await;
        return;
    };
    // A client that stops halfway through its handshake is dropped at the idle timeout too.
    match tokio::time::timeout(settings.idle_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            serve_io(name, stream, (peer, true), settings, handler, closing).await;
        }
        Ok(Err(err)) => {
            tracing::debug!(listener = name, %peer, error = %err, "TLS handshake failed")
        }
        Err(_) => {
            tracing::debug!(listener = name, %peer, "closing a connection slow to finish its TLS handshake")
        }
    }
}

/// Serves HTTP on an established connection, plain or TLS.
///
/// hyper's HTTP/1 side closes a connection whose next request head does not arrive within
/// `idle_timeout` by itself. Nothing in hyper does for the rest: the protocol detection
/// (hyper-util reads up to the 24 bytes of the HTTP/2 preface without a deadline) and HTTP/2,
/// which has no idle timer. So an idle timer of our own watches every connection until it has
/// shown itself HTTP/1: once no request has been open for `idle_timeout`, the connection is
/// told to close (a GOAWAY for HTTP/2) and dropped if it has not after [`CLOSE_GRACE`].
async fn serve_io<H, I>(
    name: &'static str,
    io: I,
    (peer, https): (SocketAddr, bool),
    settings: ConnectionSettings,
    handler: Arc<H>,
    closing: CancellationToken,
) where
    H: Handler,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = builder(&settings);
    let activity = Arc::new(Activity::new());
    let remote = Remote::new(peer, https, Arc::clone(&activity));
    // The handler's future (the whole proxying of a request: kilobytes) is made in a heap
    // slot of its own (`Box::new` builds its argument in place) and hyper keeps the pointer.
    // Left to hyper to store, it was copied whole on every request unless the compiler
    // happened to build it in place, which the smallest change here could undo (it cost a
    // third of the gateway's instructions per request). Requests tell the idle timer about
    // themselves through `Remote::begin`.
    let service = service_fn(move |request: Request<Incoming>| {
        let future = Box::into_pin(Box::new(Arc::clone(&handler).call(request, remote.clone())));
        async move { Ok::<_, Infallible>(future.await) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut timer = IdleTimer::new(&activity, settings.idle_timeout);
    let mut draining = false;
    // Shutdown came before the connection's first request: until when that may still begin.
    let mut first_request_by: Option<Instant> = None;
    let result = loop {
        tokio::select! {
            // In this order, without drawing a random number on every poll.
            biased;
            result = connection.as_mut() => break result,
            () = closing.cancelled(), if !draining => {
                draining = true;
                if timer.watch != Watch::Closing {
                    if activity.any_request() {
                        connection.as_mut().graceful_shutdown();
                    } else {
                        first_request_by = Some(Instant::now() + FIRST_REQUEST_WAIT);
                    }
                }
                // The drain's own deadline (the shutdown grace) ends it if need be.
                timer.watch = Watch::Off;
            }
            // A connection accepted just before shutdown: told to close once its first request
            // has begun (that request is answered, with `Connection: close`), or when it is
            // still silent after the wait; not dropped unanswered.
            () = first_request(&activity, first_request_by), if first_request_by.is_some() => {
                first_request_by = None;
                connection.as_mut().graceful_shutdown();
            }
            () = &mut timer, if timer.watch != Watch::Off => match timer.fired(settings.idle_timeout) {
                Fired::Wait => {}
                Fired::Close => {
                    tracing::debug!(listener = name, %peer, "closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                }
                Fired::Drop => {
                    tracing::debug!(listener = name, %peer, "dropping an idle connection that did not close");
                    return;
                }
            },
        }
    };
    if let Err(err) = result {
        tracing::debug!(listener = name, %peer, error = %err, "connection ended with an error");
    }
}

/// Resolves when the connection's first request has begun, or at `by`.
async fn first_request(activity: &Activity, by: Option<Instant>) {
    if activity.any_request() {
        return;
    }
    let Some(by) = by else { return };
    let _ = tokio::time::timeout_at(by, activity.first.notified()).await;
}

/// hyper's connection settings for `settings`, both protocols.
fn builder(settings: &ConnectionSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.idle_timeout)
        .max_buf_size(settings.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.ping_interval())
        .keep_alive_timeout(settings.ping_timeout())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// The idle timer's sleep, which stops being polled once the connection shows itself HTTP/1:
/// the connection's task is woken for every read and write, and an HTTP/1 request should not
/// pay for polling a timer it does not need on each of them.
struct IdleTimer<'a> {
    sleep: Pin<Box<tokio::time::Sleep>>,
    activity: &'a Activity,
    watch: Watch,
}

/// What the connection must do when its idle timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fired {
    /// Nothing yet: the timer is set again, or off.
    Wait,
    /// It has been idle for `idle_timeout`: tell it to close.
    Close,
    /// It was told to close and has not: drop it.
    Drop,
}

impl<'a> IdleTimer<'a> {
    /// A timer over `activity`, which first fires after `idle_timeout`.
    fn new(activity: &'a Activity, idle_timeout: Duration) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(idle_timeout)),
            activity,
            watch: Watch::Idle,
        }
    }

    /// The timer fired: what the connection's requests say about it now.
    fn fired(&mut self, idle_timeout: Duration) -> Fired {
        match (self.watch, self.activity.idle_until(idle_timeout)) {
            (Watch::Closing, Idle::Open) => self.reset(idle_timeout),
            (Watch::Closing, _) => return Fired::Drop,
            (_, Idle::Http1) => self.watch = Watch::Off,
            (_, Idle::Open) => self.reset(idle_timeout),
            (_, Idle::Until(deadline)) if deadline > Instant::now() => self.reset_at(deadline),
            (_, Idle::Until(_)) => {
                self.watch = Watch::Closing;
                self.reset(CLOSE_GRACE);
                return Fired::Close;
            }
        }
        Fired::Wait
    }

    fn reset(&mut self, after: Duration) {
        self.reset_at(Instant::now() + after);
    }

    fn reset_at(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
    }
}

impl Future for IdleTimer<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // HTTP/1 is hyper's to time out: this timer never fires for it.
        if self.activity.http1.load(Relaxed) {
            return Poll::Pending;
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// What the idle timer of a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Waiting for the connection to be idle for `idle_timeout`.
    Idle,
    /// The connection was told to close; it is dropped if it has not when the timer fires.
    Closing,
    /// Not needed: hyper's HTTP/1 timer watches it, or shutdown is closing it.
    Off,
}

/// The requests of one connection, as its idle timer sees them. Only HTTP/2 requests are
/// counted: HTTP/1 is watched by hyper, and its hot path pays nothing for this.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// HTTP/2 requests whose answer has not been sent to its end.
    open: AtomicUsize,
    /// When a request last began or ended, in milliseconds since `opened`.
    last_ms: AtomicU64,
    http1: AtomicBool,
    /// Told when the first request begins (a draining connection waits for it).
    first: Notify,
}

/// What [`Activity::idle_until`] found.
#[derive(Debug)]
enum Idle {
    Http1,
    Open,
    Until(Instant),
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            open: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            http1: AtomicBool::new(false),
            first: Notify::new(),
        }
    }

    /// A request of `version` begins: an HTTP/2 one is counted as open until the returned
    /// mark is dropped.
    fn begin(self: &Arc<Self>, version: Version) -> Option<OpenRequest> {
        if version < Version::HTTP_2 {
            if !self.http1.load(Relaxed) {
                self.http1.store(true, Relaxed);
                self.first.notify_one();
            }
            return None;
        }
        if self.open.fetch_add(1, Relaxed) == 0 && self.last_ms.load(Relaxed) == 0 {
            self.first.notify_one();
        }
        self.touch();
        Some(OpenRequest(Arc::clone(self)))
    }

    /// Whether any request has begun on the connection.
    fn any_request(&self) -> bool {
        self.http1.load(Relaxed) || self.open.load(Relaxed) > 0 || self.last_ms.load(Relaxed) > 0
    }

    fn touch(&self) {
        let since = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(since, Relaxed);
    }

    /// When the connection will have been idle for `timeout`, as far as its requests say.
    fn idle_until(&self, timeout: Duration) -> Idle {
        if self.http1.load(Relaxed) {
            return Idle::Http1;
        }
        if self.open.load(Relaxed) > 0 {
            return Idle::Open;
        }
        Idle::Until(self.opened + Duration::from_millis(self.last_ms.load(Relaxed)) + timeout)
    }
}

/// An HTTP/2 request counted as open by its connection's idle timer, until dropped (see
/// [`Remote::begin`]).
#[derive(Debug)]
pub struct OpenRequest(Arc<Activity>);

impl OpenRequest {
    /// `response`, with its request counted open until its body has been sent or dropped.
    pub fn keep_until_sent(open: Option<Self>, response: Response<Body>) -> Response<Body> {
        match open {
            Some(open) => response.map(|body| Open { body, _open: open }.boxed()),
            None => response,
        }
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// An answer whose request counts as open until the answer is sent (or dropped).
#[derive(Debug)]
struct Open {
    body: Body,
    _open: OpenRequest,
}

impl HttpBody for Open {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
