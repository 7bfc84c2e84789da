//! Accepting connections on one listener: HTTP/1.1 and HTTP/2 (h2c with prior knowledge, or
//! chosen by ALPN over TLS) through hyper-util's auto builder, each connection on its own task,
//! tracked so shutdown can drain them (the hyper-util `server_graceful` example, with a cap on
//! the wait).

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use http::{HeaderValue, Request, Response};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{
        conn::auto,
        graceful::{GracefulShutdown, Watcher},
    },
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsAcceptor;

use crate::forward::body::Body;

/// Limits applied to each new client connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// How long a client may take to send a request head, and may sit idle between requests.
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

/// The client end of a connection, as every request on it sees it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub addr: SocketAddr,
    /// The client's IP as header text (`X-Forwarded-For`), formatted once per connection.
    pub ip: HeaderValue,
    /// Whether the connection is TLS (the HTTPS listener).
    pub https: bool,
}

impl Remote {
    fn new(addr: SocketAddr, https: bool) -> Self {
        let ip = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { addr, ip, https }
    }
}

/// Something that answers requests; the proxy and the admin endpoints both are.
pub trait Handler: Send + Sync + 'static {
    fn call(
        self: Arc<Self>,
        request: Request<Incoming>,
        remote: Remote,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// Limits for a connection accepted now (the proxy's follow routes.toml).
    fn connection_settings(&self) -> ConnectionSettings {
        ConnectionSettings::default()
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
    let graceful = GracefulShutdown::new();
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
        let watcher = graceful.watcher();
        tokio::spawn(serve_connection(
            name,
            stream,
            peer,
            tls.clone(),
            Arc::clone(&handler),
            watcher,
        ));
    }

    drop(listener);
    let grace = grace();
    tracing::info!(listener = name, "stopped accepting; draining connections");
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!(listener = name, "all connections closed"),
        Err(_) => tracing::warn!(
            listener = name,
            ?grace,
            "closing connections still open after the grace period"
        ),
    }
}

/// Serves one accepted connection until it closes (or shutdown, through `watcher`, ends it).
async fn serve_connection<H: Handler>(
    name: &'static str,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let settings = handler.connection_settings();
    // hyper reads the first bytes (HTTP/1.1 or HTTP/2?) without a deadline; a client that
    // connects and says nothing is dropped after the idle timeout instead.
    let mut first = [0u8; 1];
    if tokio::time::timeout(settings.idle_timeout, stream.peek(&mut first))
        .await
        .is_err()
    {
        tracing::debug!(listener = name, %peer, "closing a connection that sent nothing");
        return;
    }
    let Some(tls) = tls else {
        serve_io(
            name,
            stream,
            Remote::new(peer, false),
            settings,
            handler,
            watcher,
        )
        .await;
        return;
    };
    // The handshake has the same deadline: a client that stops halfway is dropped too.
    match tokio::time::timeout(settings.idle_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            serve_io(
                name,
                stream,
                Remote::new(peer, true),
                settings,
                handler,
                watcher,
            )
            .await;
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
async fn serve_io<H, I>(
    name: &'static str,
    io: I,
    remote: Remote,
    settings: ConnectionSettings,
    handler: Arc<H>,
    watcher: Watcher,
) where
    H: Handler,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = remote.addr;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.idle_timeout)
        .max_buf_size(settings.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    let service = service_fn(move |request| {
        let future = Arc::clone(&handler).call(request, remote.clone());
        async move { Ok::<_, Infallible>(future.await) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(err) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(listener = name, %peer, error = %err, "connection ended with an error");
    }
}
