//! HTTP/1.1 connections to an upstream address, kept per worker and driven by the request that
//! uses them.
//!
//! hyper-util's pooled client spawns a task per connection and hands every request to it over
//! channels: two tasks and several wake-ups per request, and a pool keyed by a hashed URI behind
//! a lock. Here a connection is hyper's `SendRequest` together with its connection future, and
//! the request's own task polls that future while it waits for the response head and while it
//! streams the body ([`Connection::drive`]). Between requests the connection waits in the idle
//! list of its address and worker ([`super::endpoint::Endpoint`]). One task per client
//! connection does all the I/O of its requests, as an nginx worker's event loop does.
//!
//! A pooled connection the upstream closed while it sat idle (a keep-alive timeout, a restart)
//! fails before the request is written; hyper hands such a request back and it is sent again on
//! a new connection. One the upstream closes just as the request arrives (its keep-alive timeout
//! firing at that moment) fails after: an idempotent request without a body is then sent again
//! too ([`super::endpoint::Endpoint::send`], by the rule in [`super::retry`]); any other gets
//! its 502, since it may have been carried out.
//!
//! An upstream may answer before it has read the whole request body (a `413`, an early error).
//! Such a connection is never pooled: the rest of the body would wait in it, unread, and so
//! would the client connection it streams from. [`Connection::request_sent`] tells.

use std::{
    future::{Future, poll_fn},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::{
    body::Incoming,
    client::conn::{TrySendError, http1},
};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::client::TlsStream;

use crate::{
    http_ext::body::{Body, BoxError},
    tls::upstream::UpstreamTls,
};

type Driver = http1::Connection<TokioIo<Stream>, Body>;

/// Where a connection goes: an address, and for an `https://` target how to secure it.
#[derive(Debug, Clone, Copy)]
pub struct Dial<'a> {
    pub addr: SocketAddr,
    pub tls: Option<(&'a UpstreamTls, &'a ServerName<'static>)>,
}

/// The socket under a connection: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An idle connection older than this is closed instead of reused. Upstreams close theirs
/// after a keep-alive timeout (actix-web and Node after 5 s by default); a close that has
/// arrived is noticed at reuse, but one sent as the request goes out races it, and a request
/// that is not idempotent cannot be sent again. Ending idle connections first, a little before
/// the usual 5 s, keeps requests out of that race.
pub const MAX_IDLE: Duration = Duration::from_secs(4);

/// One HTTP/1.1 connection to an upstream address (boxed: it moves between the idle list, the
/// request and the response body, and hyper's connection state is large).
pub struct Connection(Box<State>);

struct State {
    sender: http1::SendRequest<Body>,
    driver: Driver,
    /// The driver has finished (closed, failed or shut down): never poll it again.
    ended: bool,
    idle_since: Instant,
    /// Set once the last request's body has been handed to the connection whole (`None`: it
    /// had no body).
    body_sent: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("ended", &self.0.ended)
            .finish_non_exhaustive()
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened: nothing was sent.
    Connect(io::Error),
    /// The connection failed after the request was handed to it: it may have been processed.
    Failed(hyper::Error),
}

impl SendError {
    /// Whether nothing of the request reached the upstream.
    pub fn is_unsent(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(err) => write!(f, "cannot connect: {err}"),
            Self::Failed(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(err) => Some(err),
            Self::Failed(err) => Some(err),
        }
    }
}

impl Connection {
    /// Opens a connection as `dial` says within `connect_timeout` (TLS handshake included).
    pub async fn open(dial: Dial<'_>, connect_timeout: Duration) -> io::Result<Self> {
        let (sender, driver) = handshake(dial, connect_timeout).await?;
        Ok(Self(Box::new(State {
            sender,
            driver,
            ended: false,
            idle_since: Instant::now(),
            body_sent: None,
        })))
    }

    /// Polls the connection's I/O (reading responses, writing requests and their bodies);
    /// returns false once the connection has ended.
    pub fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        drive(&mut self.0.driver, &mut self.0.ended, cx)
    }

    /// How long the connection has been idle, when it can take a request now: its last request
    /// went out whole, it has not been idle for too long, and it is still open once its I/O has
    /// been polled (which notices a close by the upstream). `None` when it cannot.
    pub async fn reusable_after(&mut self) -> Option<Duration> {
        let idle = self.0.idle_since.elapsed();
        let usable = idle <= MAX_IDLE
            && self.request_sent()
            && poll_fn(|cx| Poll::Ready(self.drive(cx))).await
            && !self.0.sender.is_closed()
            && self.0.sender.is_ready();
        usable.then_some(idle)
    }

    /// Marks the start of an idle period (the response body was read to its end).
    pub fn idle(&mut self) {
        self.0.idle_since = Instant::now();
    }

    /// Whether the last request went out whole, body included: only then can the connection
    /// carry another one.
    pub fn request_sent(&self) -> bool {
        self.0
            .body_sent
            .as_ref()
            .is_none_or(|sent| sent.load(Ordering::Relaxed))
    }

    /// Sends `request` and drives the connection until the response head arrives. A request
    /// the connection never wrote comes back in the error.
    pub async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Body>>> {
        let state = &mut *self.0;
        let request = if request.body().is_end_stream() {
            state.body_sent = None;
            request
        } else {
            let sent = Arc::new(AtomicBool::new(false));
            state.body_sent = Some(Arc::clone(&sent));
            request.map(|body| Watched { body, sent }.boxed())
        };
        let mut response = std::pin::pin!(state.sender.try_send_request(request));
        let (driver, ended) = (&mut state.driver, &mut state.ended);
        poll_fn(|cx| {
            if let Poll::Ready(result) = response.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            // The driver's progress wakes this task again when there is more to do.
            drive(driver, ended, cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// A request body that records when it has been read to its end.
struct Watched {
    body: Body,
    sent: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        // hyper stops polling once `is_end_stream` says so, or at `None`.
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.sent.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.body.is_end_stream();
        if ended {
            self.sent.store(true, Ordering::Relaxed);
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn drive(driver: &mut Driver, ended: &mut bool, cx: &mut Context<'_>) -> bool {
    if *ended {
        return false;
    }
    if let Poll::Ready(result) = Pin::new(driver).poll(cx) {
        *ended = true;
        if let Err(err) = result {
            tracing::debug!(error = %err, "upstream connection ended with an error");
        }
    }
    !*ended
}

/// Sends a request that asks to switch protocols (WebSocket) on a connection of its own: the
/// connection is driven by a task of its own, which hands it over as an upgraded stream when
/// the upstream agrees (`101`), so it is never pooled.
pub async fn send_upgrade(
    dial: Dial<'_>,
    connect_timeout: Duration,
    request: Request<Body>,
) -> Result<Response<Incoming>, SendError> {
    let (mut sender, driver) = handshake(dial, connect_timeout)
        .await
        .map_err(SendError::Connect)?;
    tokio::spawn(async move {
        if let Err(err) = driver.with_upgrades().await {
            tracing::debug!(error = %err, "upgraded upstream connection ended with an error");
        }
    });
    sender
        .send_request(request)
        .await
        .map_err(SendError::Failed)
}

async fn handshake(
    dial: Dial<'_>,
    connect_timeout: Duration,
) -> io::Result<(http1::SendRequest<Body>, Driver)> {
    let connecting = async {
        let stream = TcpStream::connect(dial.addr).await?;
        stream.set_nodelay(true)?;
        match dial.tls {
            None => Ok::<_, io::Error>(Stream::Plain(stream)),
            // A certificate that does not verify fails here, before anything is sent.
            Some((tls, name)) => Ok(Stream::Tls(Box::new(
                tls.connect(name.clone(), stream).await?,
            ))),
        }
    };
    let stream = tokio::time::timeout(connect_timeout, connecting)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)
}
