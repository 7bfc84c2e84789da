//! Upstream connections: kept per worker and reused, renewed when the upstream closed them
//! while they sat idle, and kept across a reload.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::helpers::{Routes, TestGateway, client, wait};

/// A minimal HTTP/1.1 upstream that counts the connections it accepts, answers each request
/// with `200 ok` on a kept-alive connection, and closes a connection that has been idle for
/// `idle_close` (as actix-web does after its keep-alive timeout). A request for `/early` gets
/// `413` at once, and the connection then reads nothing more (an upstream that refuses a body
/// without reading it). A request for `/crash` makes the upstream close the connection while
/// the body is still coming, without an answer (an upstream that dies mid-request). A request
/// for `/vanish` that is not the first on its connection is met with a close instead of an
/// answer: the race of a keep-alive timeout firing as a request arrives on the idle connection.
struct Counting {
    url: String,
    accepted: Arc<AtomicUsize>,
    /// Connections it closed because they sat idle for `idle_close`.
    idle_closed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Counting {
    async fn start(idle_close: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let idle_closed = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let closed = Arc::clone(&idle_closed);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let closed = Arc::clone(&closed);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut answered = 0;
                    loop {
                        let read = tokio::time::timeout(idle_close, stream.read(&mut chunk)).await;
                        let n = match read {
                            Ok(Ok(n @ 1..)) => n,
                            Ok(_) => return,
                            Err(_idle) => {
                                drop(stream);
                                closed.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        };
                        buffer.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let early = buffer.starts_with(b"POST /early ");
                            let vanish = [b"GET /vanish ".as_slice(), b"POST /vanish "]
                                .iter()
                                .any(|line| buffer.starts_with(line));
                            if buffer.starts_with(b"POST /crash ") || (vanish && answered > 0) {
                                return;
                            }
                            answered += 1;
                            buffer.drain(..end + 4);
                            if early {
                                let refusal =
                                    b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n";
                                let _ = stream.write_all(refusal).await;
                                tokio::time::sleep(Duration::from_secs(60)).await;
                                return;
                            }
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            url,
            accepted,
            idle_closed,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn idle_closed(&self) -> usize {
        self.idle_closed.load(Ordering::SeqCst)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn routes(upstream: &Counting) -> String {
    Routes::new()
        .upstream("up", [&upstream.url])
        .route("/", "up")
        .to_string()
}

async fn get_ok(client: &reqwest::Client, url: &str) {
    let response = client.get(url).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "ok");
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let upstream = Counting::start(Duration::from_secs(30)).await;
    let gateway = TestGateway::start(&routes(&upstream)).await;
    // One client connection is served by one worker, whose pool keeps one connection.
    let client = client();
    for _ in 0..20 {
        get_ok(&client, &gateway.url("/")).await;
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "20 requests, one upstream connection"
    );
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced_without_an_error() {
    let upstream = Counting::start(Duration::from_millis(100)).await;
    let gateway = TestGateway::start(&routes(&upstream)).await;
    let client = client();
    for round in 1..=3 {
        get_ok(&client, &gateway.url("/")).await;
        // The upstream closes the idle connection; the next request must not see it.
        wait::until(
            "the upstream to close the idle connection",
            Duration::from_secs(5),
            || async { upstream.idle_closed() == round },
        )
        .await;
        assert_eq!(upstream.accepted(), round);
    }
    get_ok(&client, &gateway.url("/")).await;
    assert_eq!(upstream.accepted(), 4);
}

#[tokio::test]
async fn a_reload_keeps_the_upstream_connections() {
    let upstream = Counting::start(Duration::from_secs(30)).await;
    let gateway = TestGateway::start(&routes(&upstream)).await;
    let client = client();
    get_ok(&client, &gateway.url("/")).await;
    let edited = format!(
        "{}\n[settings]\nrequest_timeout = \"20s\"\n",
        routes(&upstream)
    );
    std::fs::write(&gateway.routes, edited).expect("edit routes");
    crate::helpers::wait_for_generation(&gateway, 2).await;
    get_ok(&client, &gateway.url("/")).await;
    assert_eq!(
        upstream.accepted(),
        1,
        "the new table uses the same connection"
    );
}

/// On one client connection: `POST <path>` with a body of 32 MiB (more than the sockets between
/// gateway and upstream can hold, so part of it is still unsent when the upstream stops reading),
/// then `GET /`. Returns everything the gateway sent back until it answered the GET with `ok`
/// or closed the connection. Panics if neither happens within 10 s: the connection must never
/// be left hanging.
async fn post_then_get(gateway: &TestGateway, path: &str) -> String {
    let body = vec![b'x'; 32 << 20];
    let mut stream = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    let (mut read, mut write) = stream.split();
    let requests = async {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        write.write_all(head.as_bytes()).await?;
        write.write_all(&body).await?;
        write
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
    };
    let answers = async {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("\r\n\r\nok") {
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    };
    let both = async { tokio::join!(requests, answers) };
    let (_, answers) = tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("both requests answered, or the connection closed; never left hanging");
    answers
}

#[tokio::test]
async fn a_connection_answered_before_its_body_was_sent_is_not_reused() {
    let upstream = Counting::start(Duration::from_secs(30)).await;
    let gateway = TestGateway::start(&routes(&upstream)).await;
    // The upstream refuses the POST's body unread.
    let answers = post_then_get(&gateway, "/early").await;
    assert!(answers.starts_with("HTTP/1.1 413"), "{answers}");
    // The gateway either answered the GET on this connection (on a new upstream connection:
    // the refused one is never pooled), or it could not read the rest of a body it no longer
    // forwards and closed the connection after its answer (a 413 relayed says so with
    // `Connection: close`); it never hangs.
    if answers.contains("\r\n\r\nok") {
        assert!(answers.contains("HTTP/1.1 200"), "{answers}");
        assert_eq!(
            upstream.accepted(),
            2,
            "the refused connection was not pooled"
        );
    } else if answers.starts_with("HTTP/1.1 413") {
        assert!(
            answers.to_lowercase().contains("connection: close"),
            "{answers}"
        );
    }
    get_ok(&client(), &gateway.url("/")).await;
}

#[tokio::test]
async fn an_upstream_dying_mid_request_body_gets_a_502_that_closes_the_connection() {
    let upstream = Counting::start(Duration::from_secs(30)).await;
    let gateway = TestGateway::start(&routes(&upstream)).await;
    // The upstream closes the connection while the POST's body is still coming.
    let answers = post_then_get(&gateway, "/crash").await;
    assert!(answers.starts_with("HTTP/1.1 502"), "{answers:?}");
    assert!(answers.contains("upstream unavailable"), "{answers:?}");
    // The rest of the body will not be read, so the connection cannot carry the GET: the 502
    // must say `Connection: close` (RFC 9112 §9.6), or a client sends its next request on it and
    // gets a reset instead of an answer. (Or the gateway reads the body away and answers the GET.)
    if !answers.contains("\r\n\r\nok") {
        assert!(
            answers.to_lowercase().contains("connection: close"),
            "closed after a 502 without `Connection: close`: {answers:?}"
        );
    }
    // A pooled client recovers the same way: its next request goes out on a new connection.
    let client = client();
    let response = client
        .post(gateway.url("/crash"))
        .body(vec![b'x'; 8 << 20])
        .send()
        .await
        .expect("the 502 arrives");
    assert_eq!(response.status(), 502);
    let _ = response.bytes().await;
    get_ok(&client, &gateway.url("/")).await;
}

#[tokio::test]
async fn an_idempotent_request_met_by_an_upstream_keep_alive_close_is_sent_again() {
    let upstream = Counting::start(Duration::from_secs(30)).await;
    let gateway = TestGateway::start(&routes(&upstream)).await;
    let client = client();
    // The first request opens the connection; the second goes out on it, pooled after an idle
    // gap as long as a keep-alive timeout can be, and the upstream closes it instead of
    // answering (its keep-alive timeout fired as the request came).
    get_ok(&client, &gateway.url("/vanish")).await;
    tokio::time::sleep(gateway::upstream::KEEP_ALIVE_RACE_AFTER + Duration::from_millis(100)).await;
    get_ok(&client, &gateway.url("/vanish")).await;
    assert_eq!(
        upstream.accepted(),
        2,
        "the second was sent again on a new connection"
    );
    // Not a POST: it may have been carried out before the close.
    let response = client
        .post(gateway.url("/vanish"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 502);
}

/// On a route marked `idempotent = false` (a service whose GET changes state, like the writer's
/// `GET /increment`), a GET that was written is never sent again, not even in the keep-alive
/// race: it may have been carried out.
#[tokio::test]
async fn a_route_not_idempotent_never_sends_a_written_get_again() {
    let upstream = Counting::start(Duration::from_secs(30)).await;
    let gateway = TestGateway::start(&format!(
        "[upstreams]\nup = [\"{}\"]\n[[routes]]\npath = \"/\"\nupstream = \"up\"\nidempotent = false\n",
        upstream.url
    ))
    .await;
    let client = client();
    get_ok(&client, &gateway.url("/vanish")).await;
    tokio::time::sleep(gateway::upstream::KEEP_ALIVE_RACE_AFTER + Duration::from_millis(100)).await;
    let response = client
        .get(gateway.url("/vanish"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 502);
    assert_eq!(upstream.accepted(), 1, "not sent again on a new connection");
}

#[tokio::test]
async fn a_connection_idle_past_the_pools_limit_is_not_reused() {
    // The upstream would keep it for 30 s; the gateway ends it sooner, before the keep-alive
    // timeout of common upstreams (5 s) could race a request sent on it.
    let upstream = Counting::start(Duration::from_secs(30)).await;
    let gateway = TestGateway::start(&routes(&upstream)).await;
    let client = client();
    get_ok(&client, &gateway.url("/")).await;
    tokio::time::sleep(gateway::upstream::connection::MAX_IDLE + Duration::from_millis(300)).await;
    get_ok(&client, &gateway.url("/")).await;
    assert_eq!(
        upstream.accepted(),
        2,
        "a new connection after the idle limit"
    );
    assert!(gateway::upstream::connection::MAX_IDLE < Duration::from_secs(5));
}

/// Sockets on this machine connected to `port` (as the remote end) in TCP state `state`
/// (`/proc/net/tcp` codes: 08 is CLOSE-WAIT).
fn sockets_to(port: u16, state: &str) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|remote| remote.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            remote_port == Some(port) && fields.get(3) == Some(&state)
        })
        .count()
}

#[tokio::test]
async fn pooled_connections_the_upstream_closed_are_dropped_at_once() {
    let upstream = Counting::start(Duration::from_millis(200)).await;
    let port: u16 = upstream
        .url
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("port");
    let gateway = TestGateway::start(&routes(&upstream)).await;
    // Several pooled connections, on both workers.
    let clients: Vec<reqwest::Client> = (0..8).map(|_| client()).collect();
    let url = gateway.url("/");
    let requests = clients.iter().map(|client| get_ok(client, &url));
    futures_util::future::join_all(requests).await;
    assert!(
        upstream.accepted() >= 2,
        "{} connections",
        upstream.accepted()
    );
    // The upstream closes them after 200 ms idle; the gateway must close its ends then, not
    // keep them in CLOSE-WAIT until a request happens to take them.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let started = std::time::Instant::now();
    while sockets_to(port, "08") > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{} upstream connections in CLOSE-WAIT",
            sockets_to(port, "08")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the pool still works.
    get_ok(&clients[0], &gateway.url("/")).await;
}
