//! Rate limits (`[limits.<name>]`, a route's `limit`): a burst, then 429 with Retry-After and
//! nothing more upstream; buckets per client (as `trusted_proxies` decides it), per vouched
//! user, or one per route; a reload that leaves a limit as it was keeps its buckets.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::helpers::{TestGateway, client, json, wait_for_generation};

/// An upstream that answers 200 to everything and counts what it received. On `/session` it is
/// a door check: a `sid=<name>` cookie is vouched for as `X-User-Id: <name>`, no cookie is 401.
struct Upstream {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(AtomicUsize::new(0));
        let counting = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counting = Arc::clone(&counting);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let counting = Arc::clone(&counting);
                        async move { Ok::<_, Infallible>(answer(&request, &counting)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, received }
    }

    /// Requests received, door checks left out.
    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

fn answer(
    request: &Request<hyper::body::Incoming>,
    received: &AtomicUsize,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/session" {
        received.fetch_add(1, Ordering::SeqCst);
        return Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
    }
    let user = request
        .headers()
        .get("cookie")
        .and_then(|cookie| cookie.to_str().ok())
        .and_then(|cookie| {
            cookie
                .split(';')
                .find_map(|c| c.trim().strip_prefix("sid="))
        })
        .map(str::to_owned);
    let answer = match user {
        Some(user) => Response::builder().status(204).header("x-user-id", user),
        None => Response::builder().status(401),
    };
    answer.body(Full::new(Bytes::new())).expect("response")
}

/// `/` unlimited, `/login` under `[limits.per-client]` with `limit`'s lines, `/app` under
/// `[limits.per-user]` (burst 2, by user) behind a door check; the peer (127.0.0.1) a trusted
/// proxy.
fn routes(upstream: &Upstream, limit: &str) -> String {
    let url = format!("http://{}", upstream.addr);
    format!(
        "[settings]\ntrusted_proxies = [\"127.0.0.1\"]\n\n\
         [upstreams]\napp = [\"{url}\"]\n\n\
         [[routes]]\npath = \"/\"\nupstream = \"app\"\n\n\
         [[routes]]\npath = \"/login\"\nupstream = \"app\"\nlimit = \"per-client\"\n\n\
         [[routes]]\npath = \"/app\"\nupstream = \"app\"\nauth = \"session\"\nlimit = \"per-user\"\n\n\
         [auth.session]\nupstream = \"app\"\npath = \"/session\"\n\n\
         [limits.per-client]\n{limit}\n\n\
         [limits.per-user]\nrate = \"1/m\"\nburst = 2\nkey = \"user\"\n"
    )
}

/// The status of `GET path` from the client at `from` (sent as the trusted peer's
/// `X-Forwarded-For`), with `headers`.
async fn status(gateway: &TestGateway, path: &str, from: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = client()
        .get(gateway.url(path))
        .header("x-forwarded-for", from);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request").status().as_u16()
}

async fn statuses(gateway: &TestGateway, path: &str, from: &str, n: usize) -> Vec<u16> {
    let mut answers = Vec::new();
    for _ in 0..n {
        answers.push(status(gateway, path, from, &[]).await);
    }
    answers
}

#[tokio::test]
async fn a_burst_passes_then_429_with_retry_after_and_the_upstream_sees_no_more() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&routes(&upstream, "rate = \"1/m\"\nburst = 3")).await;
    assert_eq!(
        statuses(&gateway, "/login", "203.0.113.1", 3).await,
        [200, 200, 200]
    );
    let refused = client()
        .get(gateway.url("/login"))
        .header("x-forwarded-for", "203.0.113.1")
        .send()
        .await
        .expect("request");
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .expect("Retry-After in whole seconds");
    // One request a minute: the next passes a minute after the burst began.
    assert!(
        (55..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    let (status, body) = json(refused).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate limited"))
    );
    assert_eq!(
        statuses(&gateway, "/login", "203.0.113.1", 2).await,
        [429, 429]
    );
    assert_eq!(upstream.received(), 3, "the upstream saw the burst only");
    // Routes without a limit are not counted.
    assert_eq!(statuses(&gateway, "/", "203.0.113.1", 5).await, [200; 5]);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("gateway_rate_limited_total{route=\"/login\",limit=\"per-client\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_rate_limit_keys{limit=\"per-client\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn each_client_behind_a_trusted_proxy_has_a_bucket_of_its_own() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&routes(&upstream, "rate = \"1/m\"\nburst = 2")).await;
    assert_eq!(
        statuses(&gateway, "/login", "203.0.113.1", 3).await,
        [200, 200, 429]
    );
    assert_eq!(
        statuses(&gateway, "/login", "203.0.113.2", 3).await,
        [200, 200, 429],
        "another client, another bucket"
    );
    // The right-most address that is not a trusted proxy is the client: what it wrote further
    // left does not buy it another bucket.
    assert_eq!(
        statuses(&gateway, "/login", "198.51.100.7, 203.0.113.1", 1).await,
        [429]
    );
    // An IPv6 client is its /64: another address of its network is the same client.
    assert_eq!(
        statuses(&gateway, "/login", "2001:db8::1", 2).await,
        [200, 200]
    );
    assert_eq!(statuses(&gateway, "/login", "2001:db8::2", 1).await, [429]);
    assert_eq!(upstream.received(), 6);
}

#[tokio::test]
async fn a_route_key_is_one_bucket_for_everyone() {
    let upstream = Upstream::start().await;
    let limit = "rate = \"1/m\"\nburst = 2\nkey = \"route\"";
    let gateway = TestGateway::start(&routes(&upstream, limit)).await;
    assert_eq!(statuses(&gateway, "/login", "203.0.113.1", 1).await, [200]);
    assert_eq!(statuses(&gateway, "/login", "203.0.113.2", 1).await, [200]);
    assert_eq!(statuses(&gateway, "/login", "203.0.113.3", 1).await, [429]);
    assert_eq!(statuses(&gateway, "/login", "203.0.113.1", 1).await, [429]);
    assert_eq!(upstream.received(), 2);
}

#[tokio::test]
async fn a_user_key_counts_each_vouched_user_wherever_they_come_from() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&routes(&upstream, "rate = \"1/s\"")).await;
    let alice = [("cookie", "sid=alice")];
    assert_eq!(status(&gateway, "/app", "203.0.113.1", &alice).await, 200);
    assert_eq!(status(&gateway, "/app", "203.0.113.2", &alice).await, 200);
    assert_eq!(
        status(&gateway, "/app", "203.0.113.3", &alice).await,
        429,
        "alice, from a third address"
    );
    // What the client claims is not who the check vouched for.
    let forged = [("cookie", "sid=alice"), ("x-user-id", "bob")];
    assert_eq!(status(&gateway, "/app", "203.0.113.1", &forged).await, 429);
    let bob = [("cookie", "sid=bob")];
    assert_eq!(status(&gateway, "/app", "203.0.113.1", &bob).await, 200);
    // Without a session the door check answers, as before.
    assert_eq!(status(&gateway, "/app", "203.0.113.1", &[]).await, 401);
    assert_eq!(upstream.received(), 3);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("gateway_rate_limited_total{route=\"/app\",limit=\"per-user\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_buckets_of_an_unchanged_limit_and_a_changed_one_starts_anew() {
    let upstream = Upstream::start().await;
    let limit = "rate = \"1/m\"\nburst = 2";
    let gateway = TestGateway::start(&routes(&upstream, limit)).await;
    assert_eq!(
        statuses(&gateway, "/login", "203.0.113.1", 3).await,
        [200, 200, 429]
    );
    // Another route added; the limit as it was: the spent bucket stays spent.
    let more = format!(
        "{}\n[[routes]]\npath = \"/more\"\nupstream = \"app\"\n",
        routes(&upstream, limit)
    );
    std::fs::write(&gateway.routes, &more).expect("edit");
    wait_for_generation(&gateway, 2).await;
    assert_eq!(statuses(&gateway, "/more", "203.0.113.1", 1).await, [200]);
    assert_eq!(statuses(&gateway, "/login", "203.0.113.1", 1).await, [429]);
    // The limit changed: its buckets start full.
    std::fs::write(
        &gateway.routes,
        routes(&upstream, "rate = \"1/m\"\nburst = 3"),
    )
    .expect("edit");
    wait_for_generation(&gateway, 3).await;
    assert_eq!(
        statuses(&gateway, "/login", "203.0.113.1", 4).await,
        [200, 200, 200, 429]
    );
}
