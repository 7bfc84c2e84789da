//! A probe upstream, an in-process gateway, and a raw HTTP client for requests no well-behaved
//! client would send. What every suite shares (clients, JSON, waiting, routes files, a test CA)
//! is the workspace's test kit, [`testkit`]; the common pieces are re-exported here.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use gateway::{Gateway, GatewayConfig, config::TlsSettings, tls::TlsFiles};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{body::Frame, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

pub use testkit::{RefusingPort, Routes, TestCa, client, json, wait};

type ProbeBody = BoxBody<Bytes, std::io::Error>;

fn full(body: impl Into<Bytes>) -> ProbeBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An upstream that answers by path (every answer carries `x-probe: <name>`):
/// - `/two-cookies`: two `Set-Cookie` headers;
/// - `/hop`: hop-by-hop response headers;
/// - `/slow`: answers after 3 s;
/// - `/die`: promises 1000 bytes, sends 10, then closes the connection;
/// - `/stream`: 5 chunks, the first at once, the rest 2 s later;
/// - `/status/<code>`: that status, with a body unless the status forbids one;
/// - `/trailers`: a chunked body with an `x-checksum` trailer (sent when the request allows);
/// - `/healthz`: 200 or 503 as [`Probe::set_healthy`] says;
/// - `/upgrade`: `101 Switching Protocols` to a protocol that echoes what it receives;
/// - `/shaped?...`: the response the query describes (see [`shaped`]);
/// - `/events`: a `text/event-stream`, one event at once and the next 2 s later;
/// - anything else: JSON describing the request (method, path, query, headers, trailers, body
///   length).
pub struct Probe {
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    /// Requests received and not answered yet.
    in_flight: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Probe {
    pub async fn start() -> Self {
        Self::named("probe").await
    }

    /// A probe that says `x-probe: <name>` on every answer.
    pub async fn named(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind probe");
        let addr = listener.local_addr().expect("addr");
        let (stop, mut stopped) = oneshot::channel::<()>();
        let healthy = Arc::new(AtomicBool::new(true));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let state = Arc::clone(&healthy);
        let counting = Arc::clone(&in_flight);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => break,
                };
                let state = Arc::clone(&state);
                let counting = Arc::clone(&counting);
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        let counting = Arc::clone(&counting);
                        async move {
                            counting.fetch_add(1, Ordering::SeqCst);
                            let answer = answer(request, name, state).await;
                            counting.fetch_sub(1, Ordering::SeqCst);
                            answer
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
            // Stopping drops every open connection too, like a crashed process.
            connections.abort_all();
        });
        Self {
            addr,
            healthy,
            in_flight,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests the probe has received and not answered yet (`/slow` holds one for 3 s).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until the probe holds `n` requests it has not answered.
    pub async fn wait_holding(&self, n: usize) {
        wait::until(
            &format!("the probe to hold {n} request(s)"),
            Duration::from_secs(5),
            || async { self.in_flight() >= n },
        )
        .await;
    }

    /// What `/healthz` answers from now on.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Stops listening and drops every connection (the port is closed afterwards).
    pub async fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn answer(
    mut request: Request<hyper::body::Incoming>,
    name: &'static str,
    healthy: Arc<AtomicBool>,
) -> Result<Response<ProbeBody>, Infallible> {
    let path = request.uri().path().to_owned();
    let response = match path.as_str() {
        "/two-cookies" => Response::builder()
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; Path=/; HttpOnly")
            .body(full("two")),
        "/hop" => Response::builder()
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("x-upstream-kept", "1")
            .body(full("hop")),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Response::builder().body(full("slow"))
        }
        "/die" => {
            let chunks = futures_util::stream::unfold(0, |step| async move {
                match step {
                    0 => Some((Ok(Frame::data(Bytes::from_static(b"0123456789"))), 1)),
                    1 => {
                        // Let the headers and the first bytes reach the gateway first.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Err(std::io::Error::other("upstream crashed")), 2))
                    }
                    _ => None,
                }
            });
            Response::builder()
                .header("content-length", "1000")
                .body(StreamBody::new(chunks).boxed())
        }
        "/stream" => {
            let chunks = futures_util::stream::unfold(0, |i| async move {
                if i == 5 {
                    return None;
                }
                // The first chunk at once, the rest after a pause far longer than any
                // scheduling delay: a proxy that buffers cannot deliver the first in time.
                if i == 1 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Some((
                    Ok::<_, std::io::Error>(Frame::data(Bytes::from(format!("chunk{i};")))),
                    i + 1,
                ))
            });
            Response::builder().body(StreamBody::new(chunks).boxed())
        }
        "/healthz" => Response::builder()
            .status(if healthy.load(Ordering::Relaxed) {
                200
            } else {
                503
            })
            .body(full("health")),
        "/upgrade" => {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "echo")
                .header("connection", "upgrade")
                .body(full(""))
        }
        "/trailers" => {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-checksum", http::HeaderValue::from_static("abc123"));
            let frames = futures_util::stream::iter([
                Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"payload"))),
                Ok(Frame::trailers(trailers)),
            ]);
            Response::builder()
                .header("trailer", "x-checksum")
                .body(StreamBody::new(frames).boxed())
        }
        "/shaped" => shaped(request.uri().query().unwrap_or_default()),
        "/events" => {
            let events = futures_util::stream::unfold(0, |i| async move {
                match i {
                    0 => Some((Ok(Frame::data(Bytes::from_static(b"data: first\n\n"))), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        Some((Ok(Frame::data(Bytes::from_static(b"data: second\n\n"))), 2))
                    }
                    _ => None,
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(events).boxed())
        }
        status if status.starts_with("/status/") => {
            let code: u16 = status["/status/".len()..].parse().unwrap_or(500);
            Response::builder()
                .status(code)
                .body(full("a body the status may not carry"))
        }
        _ => {
            let method = request.method().to_string();
            let query = request.uri().query().unwrap_or_default().to_owned();
            let version = format!("{:?}", request.version());
            let headers: Vec<(String, String)> = request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("<binary>").to_owned()))
                .collect();
            let collected = request.into_body().collect().await.ok();
            let trailers: Vec<(String, String)> = collected
                .as_ref()
                .and_then(|body| body.trailers())
                .map(|trailers| {
                    trailers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("<binary>").to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let body = collected.map(|b| b.to_bytes()).unwrap_or_default();
            let echo = json!({
                "method": method,
                "path": path,
                "query": query,
                "version": version,
                "headers": headers,
                "trailers": trailers,
                "body_len": body.len(),
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(full(echo.to_string()))
        }
    };
    let mut response = response.expect("valid response");
    response
        .headers_mut()
        .insert("x-probe", http::HeaderValue::from_static(name));
    Ok(response)
}

/// The compressible text `/shaped` answers with: `len` bytes of a repeated sentence.
pub fn shaped_body(len: usize) -> Vec<u8> {
    b"the gateway compresses what its route asks it to. "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// The response a `/shaped` query describes: `status=206`, `len=4096` (of [`shaped_body`], with
/// its Content-Length; 2048 by default), `chunked` (the same body streamed, no length), and
/// headers `type` (Content-Type), `encoding` (Content-Encoding), `cache` (Cache-Control),
/// `etag` (a strong ETag with that tag), `range` (Content-Range), `vary`; always
/// `Accept-Ranges: bytes`.
fn shaped(query: &str) -> Result<Response<ProbeBody>, http::Error> {
    let mut response = Response::builder();
    let mut len = 2048;
    let mut chunked = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        response = match name {
            "status" => response.status(value.parse::<u16>().unwrap_or(500)),
            "len" => {
                len = value.parse().unwrap_or(0);
                response
            }
            "chunked" => {
                chunked = true;
                response
            }
            "type" => response.header("content-type", value),
            "encoding" => response.header("content-encoding", value),
            "cache" => response.header("cache-control", value),
            "etag" => response.header("etag", format!("\"{value}\"")),
            "range" => response.header("content-range", value.replace("%20", " ")),
            "vary" => response.header("vary", value),
            _ => response,
        };
    }
    let body = shaped_body(len);
    response = response.header("accept-ranges", "bytes");
    if chunked {
        let chunks = futures_util::stream::iter(
            body.chunks(512)
                .map(|chunk| Ok(Frame::data(Bytes::copy_from_slice(chunk))))
                .collect::<Vec<_>>(),
        );
        return response.body(StreamBody::new(chunks).boxed());
    }
    response.body(full(body))
}

/// A gateway running in this process, stopped when dropped.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The HTTPS listener, when started with [`TestGateway::start_with`] and TLS settings.
    pub tls: Option<SocketAddr>,
    pub routes: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Starts a gateway whose routes file is `routes` (may name `{probe}` for the probe's URL).
    pub async fn start(routes: &str) -> Self {
        Self::start_with(routes, None).await
    }

    /// [`TestGateway::start`], with an HTTPS listener (port 0, read back) when `tls` is given.
    pub async fn start_with(routes: &str, tls: Option<(TlsFiles, bool)>) -> Self {
        Self::start_configured(routes, |config| {
            config.tls = tls.map(|(files, redirect)| TlsSettings {
                addr: "127.0.0.1:0".parse().expect("addr"),
                files,
                redirect,
                acme: None,
            });
        })
        .await
    }

    /// [`TestGateway::start`], with the process settings `configure` makes of the test's own
    /// (every listener on port 0, two workers).
    pub async fn start_configured(
        routes: &str,
        configure: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, routes).expect("write routes");
        let mut config = GatewayConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            admin_addr: "127.0.0.1:0".parse().expect("addr"),
            routes: path.clone(),
            // Two workers whatever the machine: every test crosses the per-worker state.
            workers: std::num::NonZeroUsize::new(2).expect("two"),
            max_connections: gateway::config::default_max_connections(),
            tls: None,
            access_log: gateway::access::Destination::Stderr,
        };
        configure(&mut config);
        let gateway = Gateway::build(config).await.expect("gateway starts");
        let addr = gateway.local_addr().expect("addr");
        let admin = gateway.admin_addr().expect("admin addr");
        let tls = gateway.tls_addr().map(|addr| addr.expect("tls addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin,
            tls,
            routes: path,
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The Prometheus text of the admin listener's `/metrics`.
    pub async fn metrics(&self) -> String {
        client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Stops the gateway and waits until it has drained.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The usual test routes: everything to the probe, with a request timeout of a second.
pub fn routes_to(probe: &Probe) -> String {
    Routes::new()
        .setting("request_timeout = \"1s\"")
        .upstream("probe", [probe.url()])
        .route("/", "probe")
        .to_string()
}

/// The gateway's admin `/routes` answer: the table, its generation, reload counts, addresses.
pub async fn admin_routes(gateway: &TestGateway) -> serde_json::Value {
    let response = client()
        .get(format!("http://{}/routes", gateway.admin))
        .send()
        .await
        .expect("admin /routes");
    json(response).await.1
}

/// The value of header `name` as the probe received it (first one), if any.
pub fn received<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().expect("value"))
        .collect()
}

/// Sends raw bytes and returns everything the server answered until it closed (or 3 s).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Waits (up to 5 s) until the gateway serves routing generation `generation` or a later one.
pub async fn wait_for_generation(gateway: &TestGateway, generation: u64) {
    wait::until(
        &format!("the gateway to reach generation {generation}"),
        Duration::from_secs(5),
        || async { admin_routes(gateway).await["generation"].as_u64() >= Some(generation) },
    )
    .await;
}
