//! Overload is refused, not queued: `max_in_flight` on a route and on an upstream (503
//! overloaded at once, the upstream not asked, the places given back on every path), the cap
//! on open client connections (`GATEWAY_MAX_CONNECTIONS`) and on the streams of one HTTP/2
//! connection.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::{Request, Response, body::Frame, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

use crate::helpers::{Routes, TestGateway, client, json, raw, wait};

type HeldBody = BoxBody<Bytes, Infallible>;

/// An upstream that holds requests as long as the test says:
/// - a path with `/hold`: answers once [`Held::release`] is called (requests arriving later wait for the
///   next call);
/// - a path with `/endless`: its headers and a first chunk at once, then nothing, never ending;
/// - anything else: `200 ok` at once.
///
/// It counts every request it received, and those it has not answered yet.
struct Held {
    addr: SocketAddr,
    state: Arc<HeldState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct HeldState {
    received: AtomicUsize,
    holding: AtomicUsize,
    release: Notify,
}

impl Held {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(HeldState::default());
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(state.answer(request.uri().path()).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    fn received(&self) -> usize {
        self.state.received.load(Ordering::SeqCst)
    }

    /// Requests received and not answered (or, for `/endless`, not ended).
    fn holding(&self) -> usize {
        self.state.holding.load(Ordering::SeqCst)
    }

    async fn wait_holding(&self, n: usize) {
        wait::until(
            &format!("the upstream to hold {n} request(s)"),
            Duration::from_secs(5),
            || async { self.holding() == n },
        )
        .await;
    }

    /// Answers every `/hold` request held now.
    fn release(&self) {
        self.state.release.notify_waiters();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HeldState {
    async fn answer(self: Arc<Self>, path: &str) -> Response<HeldBody> {
        self.received.fetch_add(1, Ordering::SeqCst);
        let body = if path.contains("/hold") {
            // Registered before it counts as held: a release right after cannot miss it.
            let released = self.release.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            // Counted until answered, or dropped with its connection by a gateway that let go.
            let holding = Unhold(Arc::clone(&self));
            self.holding.fetch_add(1, Ordering::SeqCst);
            released.await;
            drop(holding);
            http_body_util::Full::new(Bytes::from_static(b"released")).boxed()
        } else if path.contains("/endless") {
            let holding = Unhold(Arc::clone(&self));
            self.holding.fetch_add(1, Ordering::SeqCst);
            let chunks = futures_util::stream::unfold((0, holding), |(step, holding)| async move {
                if step > 0 {
                    std::future::pending::<()>().await;
                }
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"first;"))),
                    (step + 1, holding),
                ))
            });
            StreamBody::new(chunks).boxed()
        } else {
            http_body_util::Full::new(Bytes::from_static(b"ok")).boxed()
        };
        Response::new(body)
    }
}

/// A request counted as held until answered, or until the gateway drops it.
struct Unhold(Arc<HeldState>);

impl Drop for Unhold {
    fn drop(&mut self) {
        self.0.holding.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The value of the metric line starting with `name` (0 when there is none yet).
async fn metric(gateway: &TestGateway, name: &str) -> f64 {
    gateway
        .metrics()
        .await
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Sends `GET path` in the background; its status once answered.
fn in_background(gateway: &TestGateway, path: &str) -> tokio::task::JoinHandle<u16> {
    let request = client().get(gateway.url(path));
    tokio::spawn(async move {
        request
            .send()
            .await
            .map_or(0, |response| response.status().as_u16())
    })
}

/// Asserts that `GET path` is refused at once, overloaded, with `Retry-After: 1`.
async fn assert_overloaded(gateway: &TestGateway, path: &str) {
    let started = Instant::now();
    let response = client()
        .get(gateway.url(path))
        .send()
        .await
        .expect("answer");
    let elapsed = started.elapsed();
    let retry_after = response.headers().get("retry-after").cloned();
    let (status, body) = json(response).await;
    assert_eq!(status, 503, "{path}: {body}");
    assert_eq!(body["error"], "overloaded", "{path}");
    assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
    assert!(
        elapsed < Duration::from_millis(500),
        "{path}: refused after {elapsed:?}, not at once"
    );
}

/// A raw HTTP/1.1 client that reads `GET path`'s head and first chunk, then is dropped by the
/// caller: a client gone in the middle of its answer.
async fn half_read(gateway: &TestGateway, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("first;") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("the first chunk in time")
            .expect("read");
        assert!(n > 0, "closed before the first chunk: {seen:?}");
        seen.extend_from_slice(&buffer[..n]);
    }
    stream
}

#[tokio::test]
async fn a_route_over_its_max_in_flight_is_refused_at_once_and_serves_again_after() {
    let upstream = Held::start().await;
    let routes = Routes::new()
        .upstream("held", [upstream.url()])
        .route_with("/capped", "held", "max_in_flight = 2")
        .route("/", "held")
        .to_string();
    let gateway = TestGateway::start(&routes).await;

    let held = [
        in_background(&gateway, "/capped/hold/1"),
        in_background(&gateway, "/capped/hold/2"),
    ];
    upstream.wait_holding(2).await;
    assert_overloaded(&gateway, "/capped/hold/3").await;
    assert_overloaded(&gateway, "/capped/other").await;
    assert_eq!(
        upstream.received(),
        2,
        "the refused requests reached the upstream"
    );
    // The cap is the route's: another route to the same upstream is served.
    let free = client()
        .get(gateway.url("/free"))
        .send()
        .await
        .expect("free");
    assert_eq!(free.status(), 200);
    assert_eq!(
        metric(
            &gateway,
            "gateway_overloaded_total{route=\"/capped\",limit=\"route\"}"
        )
        .await,
        2.0
    );

    upstream.release();
    for request in held {
        assert_eq!(request.await.expect("held request"), 200);
    }
    // Both places are free again: two requests are held, the third refused.
    let again = [
        in_background(&gateway, "/capped/hold/4"),
        in_background(&gateway, "/capped/hold/5"),
    ];
    upstream.wait_holding(2).await;
    assert_overloaded(&gateway, "/capped/hold/6").await;
    upstream.release();
    for request in again {
        assert_eq!(request.await.expect("held request"), 200);
    }
}

#[tokio::test]
async fn clients_gone_before_or_during_their_answer_give_their_places_back() {
    let upstream = Held::start().await;
    let routes = Routes::new()
        .upstream("held", [upstream.url()])
        .route_with("/capped", "held", "max_in_flight = 2")
        .route("/", "held")
        .to_string();
    let gateway = TestGateway::start(&routes).await;

    // Gone while the upstream still works on the request (no response head yet).
    let mut waiting = [
        TcpStream::connect(gateway.addr).await.expect("connect"),
        TcpStream::connect(gateway.addr).await.expect("connect"),
    ];
    for (n, stream) in waiting.iter_mut().enumerate() {
        let request = format!("GET /capped/hold/{n} HTTP/1.1\r\nHost: h\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
    }
    upstream.wait_holding(2).await;
    assert_overloaded(&gateway, "/capped/x").await;
    drop(waiting);
    upstream.wait_holding(0).await;

    // Gone halfway through a response body that never ends.
    let reading = [
        half_read(&gateway, "/capped/endless/1").await,
        half_read(&gateway, "/capped/endless/2").await,
    ];
    assert_overloaded(&gateway, "/capped/x").await;
    drop(reading);
    // The gateway drops both answers (the upstream sees its bodies dropped)...
    upstream.wait_holding(0).await;
    // ...and the count is back to 0, not merely below 2: two are taken again, a third refused.
    let again = [
        half_read(&gateway, "/capped/endless/3").await,
        half_read(&gateway, "/capped/endless/4").await,
    ];
    assert_overloaded(&gateway, "/capped/x").await;
    drop(again);
    upstream.wait_holding(0).await;
    let answer = raw(
        gateway.addr,
        b"GET /capped/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn an_upstreams_max_in_flight_counts_every_route_to_it() {
    let upstream = Held::start().await;
    let routes = Routes::new()
        .upstream_table(
            "held",
            &format!("targets = [\"{}\"]\nmax_in_flight = 2", upstream.url()),
        )
        .route("/a", "held")
        .route("/b", "held")
        .to_string();
    let gateway = TestGateway::start(&routes).await;

    let held = [
        in_background(&gateway, "/a/hold"),
        in_background(&gateway, "/b/hold"),
    ];
    upstream.wait_holding(2).await;
    assert_overloaded(&gateway, "/a/hold").await;
    assert_overloaded(&gateway, "/b/other").await;
    assert_eq!(
        upstream.received(),
        2,
        "the refused requests reached the upstream"
    );
    assert_eq!(
        metric(
            &gateway,
            "gateway_overloaded_total{route=\"/b\",limit=\"upstream\"}"
        )
        .await,
        1.0
    );
    upstream.release();
    for request in held {
        assert_eq!(request.await.expect("held request"), 200);
    }
    let answer = client()
        .get(gateway.url("/b/x"))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn a_reload_keeps_counting_the_requests_in_flight_against_the_new_cap() {
    let upstream = Held::start().await;
    let routes = |max: u32| {
        Routes::new()
            .upstream("held", [upstream.url()])
            .route_with("/capped", "held", &format!("max_in_flight = {max}"))
            .to_string()
    };
    let gateway = TestGateway::start(&routes(2)).await;
    let mut held = vec![
        in_background(&gateway, "/capped/hold/1"),
        in_background(&gateway, "/capped/hold/2"),
    ];
    upstream.wait_holding(2).await;

    // Raised to 3: the two in flight still count, so one more and no other.
    std::fs::write(&gateway.routes, routes(3)).expect("write routes");
    crate::helpers::wait_for_generation(&gateway, 2).await;
    held.push(in_background(&gateway, "/capped/hold/3"));
    upstream.wait_holding(3).await;
    assert_overloaded(&gateway, "/capped/hold/4").await;
    assert_eq!(upstream.received(), 3);
    upstream.release();
    for request in held {
        assert_eq!(request.await.expect("held request"), 200);
    }
}

#[tokio::test]
async fn connections_over_gateway_max_connections_are_closed_and_counted() {
    let upstream = Held::start().await;
    let routes = Routes::new()
        // One client here: its own cap must not be what closes the connections.
        .setting("max_connections_per_client = 0")
        .upstream("held", [upstream.url()])
        .route("/", "held")
        .to_string();
    let gateway = TestGateway::start_configured(&routes, |config| {
        config.max_connections = std::num::NonZeroUsize::new(3).expect("3");
    })
    .await;
    let request = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.expect("answer");
        assert_eq!(&head, b"HTTP/1.1 200");
        open.push(stream);
    }
    // The fourth and fifth are closed without an answer.
    for _ in 0..2 {
        assert_eq!(raw(gateway.addr, request).await, "", "served over the cap");
    }
    assert_eq!(
        metric(
            &gateway,
            "gateway_connections_refused_total{reason=\"max_connections\"}"
        )
        .await,
        2.0
    );
    assert_eq!(
        metric(
            &gateway,
            "gateway_connections_refused_total{reason=\"max_connections_per_client\"}"
        )
        .await,
        0.0
    );
    // The admin listener is not counted: the metrics above were read over it.
    open.truncate(1);
    wait::until(
        "the gateway to count the closed connections",
        Duration::from_secs(2),
        || async { metric(&gateway, "gateway_client_connections ").await == 1.0 },
    )
    .await;
    for _ in 0..2 {
        let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.expect("answered again");
        assert_eq!(&head, b"HTTP/1.1 200");
        open.push(stream);
    }
    assert_eq!(raw(gateway.addr, request).await, "", "served over the cap");
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame: its 9-byte header (RFC 9113 §4.1) and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("small");
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// Reads one frame: (type, flags, stream, payload).
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await?;
    Ok((header[3], header[4], id, payload))
}

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const REFUSED_STREAM: u32 = 0x7;

#[tokio::test]
async fn one_http2_connection_gets_at_most_a_hundred_streams_at_once() {
    let upstream = Held::start().await;
    let routes = Routes::new()
        .upstream("held", [upstream.url()])
        .route("/", "held")
        .to_string();
    let gateway = TestGateway::start(&routes).await;
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    stream.write_all(PREFACE).await.expect("preface");
    stream
        .write_all(&frame(SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    let (kind, _, _, settings) = read_frame(&mut stream).await.expect("server settings");
    assert_eq!(kind, SETTINGS);
    let announced = settings.chunks(6).find_map(|setting| {
        (u16::from_be_bytes([setting[0], setting[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS)
            .then(|| u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]))
    });
    assert_eq!(announced, Some(100), "SETTINGS_MAX_CONCURRENT_STREAMS");
    stream
        .write_all(&frame(SETTINGS, 0x1, 0, &[]))
        .await
        .expect("settings ack");

    // A client that ignores the setting: 130 requests at once, each a HEADERS frame that ends
    // its stream. HPACK: GET, http, then :path and :authority as literals without indexing.
    let mut block = vec![0x82, 0x86, 0x04, 5];
    block.extend(b"/hold");
    block.extend([0x01, 1, b'h']);
    let mut burst = Vec::new();
    for n in 0..130u32 {
        burst.extend(frame(HEADERS, 0x1 | 0x4, 2 * n + 1, &block));
    }
    stream.write_all(&burst).await.expect("requests");

    // Every stream past the hundredth is refused, which a client may safely retry.
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while refused < 30 && Instant::now() < deadline {
        let read = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stream)).await;
        let Ok(Ok((kind, _, _, payload))) = read else {
            break;
        };
        if kind == RST_STREAM
            && u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                == REFUSED_STREAM
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 30, "streams refused");
    // 100 held and 30 refused account for all 130 streams: no other can still arrive.
    upstream.wait_holding(100).await;
    assert_eq!(
        upstream.received(),
        100,
        "requests that reached the upstream"
    );
    upstream.release();
}
