//! Addresses that swallow packets (neither refused nor reset): a gateway upstream and a Redis.
//! Everything runs in a network namespace the test makes (see [`crate::netns`]); where that is
//! impossible (not root, no `ip`), the test says it skipped, and fails in CI (`CI` set).

use std::{
    collections::HashSet,
    net::{SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use futures_util::future::join_all;

use crate::{
    helpers::{Routes, TestStack, can_run, wait},
    netns::{BLACKHOLE, Netns},
    support::{User, base, connecting, reroute, store_unavailable, timed},
};

/// The gateway's `connect_timeout` in this test, and the route timeout of `/blackhole-timed`
/// (shorter: the route's clock runs out first, so that route answers 504).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const ROUTE_TIMEOUT: Duration = Duration::from_millis(300);
/// Slack on every bound, for a loaded 2-core machine; less than the distance to the gateway's
/// default `connect_timeout` (2 s), so a setting that is not applied is noticed.
const SLACK: Duration = Duration::from_millis(1000);

fn namespace() -> Option<Netns> {
    match Netns::create() {
        Ok(namespace) => Some(namespace),
        Err(why) => {
            let missing = format!("no network namespace (root and iproute2 needed): {why}");
            can_run("the blackhole tests", Some(missing));
            None
        }
    }
}

/// The stack's routes with `settings`, plus `/blackhole` and `/blackhole-timed` to the silent
/// address.
fn blackhole_routes(stack: &TestStack, settings: &str) -> Routes {
    stack
        .routes()
        .setting(settings)
        .upstream("blackhole", [format!("http://{BLACKHOLE}:8090")])
        .route("/blackhole", "blackhole")
        .route_with(
            "/blackhole-timed",
            "blackhole",
            &format!("timeout = \"{}ms\"", ROUTE_TIMEOUT.as_millis()),
        )
}

/// Asserts `answer` is `status` with the gateway's JSON `error`, after about `after`.
fn assert_gateway_error(
    answer: &crate::support::Answer,
    status: u16,
    error: &str,
    after: Duration,
) {
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (status, Some(error)),
        "{answer:?}"
    );
    // Not before the configured time (a refused address answers at once), not long after.
    assert!(
        answer.elapsed >= after - Duration::from_millis(50) && answer.elapsed < after + SLACK,
        "{status} after {:?}, configured {after:?}",
        answer.elapsed
    );
}

/// A writer or reader like the stack's, on a port of its own, whose Redis is the silent
/// address.
fn service_with_silent_redis(
    stack: &TestStack,
    writer: bool,
) -> (stack::process::Supervised, SocketAddr) {
    let (process, label) = if writer {
        (&stack.writers[0], "writer-silent-redis")
    } else {
        (&stack.reader, "reader-silent-redis")
    };
    stack.spawn_like(
        process,
        label,
        &[("REDIS_URL", &format!("redis://{BLACKHOLE}:6379/0"))],
    )
}

#[test]
fn silent_upstreams_and_a_silent_redis_answer_within_their_configured_time() {
    let Some(namespace) = namespace() else {
        return;
    };
    // Built before entering the namespace (a no-op when fresh).
    crate::helpers::bin("gateway");
    namespace.run(|| {
        let stack = TestStack::start();
        let (writer, writer_addr) = service_with_silent_redis(&stack, true);
        let (reader, reader_addr) = service_with_silent_redis(&stack, false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let settings = format!("connect_timeout = \"{}ms\"", CONNECT_TIMEOUT.as_millis());
            reroute(&stack, blackhole_routes(&stack, &settings)).await;
            let client = stack.client();
            let gateway = base(stack.gateway_addr);
            let user = User::login(&stack).await;

            // The silent upstream: 502 at connect_timeout, 504 where the route's timeout is
            // shorter; every time (the address is ejected, but it is the only one, so it is
            // still tried), and the other routes answer meanwhile.
            for attempt in 0..2 {
                let (silent, timed_out, served) = tokio::join!(
                    timed(client.get(format!("{gateway}/blackhole"))),
                    timed(client.get(format!("{gateway}/blackhole-timed"))),
                    timed(user.request(&client, &gateway, "/", false)),
                );
                assert_gateway_error(&silent, 502, "upstream unavailable", CONNECT_TIMEOUT);
                assert_gateway_error(&timed_out, 504, "upstream timed out", ROUTE_TIMEOUT);
                assert_eq!(served.status, 200, "attempt {attempt}: {served:?}");
                assert!(served.elapsed < SLACK, "attempt {attempt}: {served:?}");
            }

            // A writer and a reader whose Redis is silent: 503 within the book's "about a
            // second" (with room for a loaded machine; a fixed figure, so a longer store timeout
            // is noticed), for several requests at once and again after them; /healthz answers
            // meanwhile.
            let bound = Duration::from_millis(2500);
            let silent_redis = SocketAddrV4::new(BLACKHOLE, 6379);
            let opening =
                |process: &stack::process::Supervised| connecting(process.pid(), silent_redis);
            for round in 0..2 {
                // An earlier round's requests leave connection attempts behind (the client
                // opens a new one when a command fails to connect, and gives it the store's
                // 1 s): the ones open now are not this round's.
                let leftover: HashSet<String> =
                    opening(&writer).union(&opening(&reader)).cloned().collect();
                let new = |process: &stack::process::Supervised| {
                    opening(process).difference(&leftover).count()
                };
                let requests = (0..6).map(|i| {
                    let request = match i % 3 {
                        0 => client.post(format!("{}/login", base(writer_addr))),
                        1 => user.request(&client, &base(writer_addr), "/increment", true),
                        _ => user.request(&client, &base(reader_addr), "/", false),
                    };
                    timed(request)
                });
                let health = async {
                    // The probes go once both services' store calls are stuck connecting.
                    wait::until(
                        "the writer's and the reader's store calls to hang on the silent Redis",
                        bound,
                        || async { new(&writer) > 0 && new(&reader) > 0 },
                    )
                    .await;
                    let started = Instant::now();
                    let writer = timed(client.get(format!("{}/healthz", base(writer_addr)))).await;
                    let reader = timed(client.get(format!("{}/healthz", base(reader_addr)))).await;
                    (writer.status, reader.status, started.elapsed())
                };
                let (answers, (writer, reader, took)) = tokio::join!(join_all(requests), health);
                for answer in answers {
                    assert_eq!(
                        (answer.status, &answer.body),
                        (503, &store_unavailable()),
                        "round {round}: {answer:?}"
                    );
                    assert!(answer.elapsed < bound, "round {round}: {answer:?}");
                }
                assert_eq!((writer, reader), (200, 200), "round {round}: /healthz");
                assert!(took < SLACK, "round {round}: /healthz took {took:?}");
            }
        });
    });
}
