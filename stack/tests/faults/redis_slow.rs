//! Redis behind a fault proxy: slow, resetting connections in the middle of replies, or silent
//! (connections accepted, nothing answered). Writer and reader must answer 503 within their
//! bound (`session::store::OP_TIMEOUT`, 1 s, plus the way through the gateway), keep answering
//! everything else, and serve normally again when the fault ends, with no restart.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;

use crate::{
    fault_proxy::{FaultProxy, Mode},
    helpers::{TestStack, wait},
    support::{Answer, User, base, store_unavailable, timed},
};

/// Longest a 503 may take through the gateway: the store's 1 s bound, with room for a loaded
/// 2-core machine.
const BOUND: Duration = Duration::from_millis(2500);

/// A mixed batch at once through the gateway: reads, increments and logins.
async fn batch(stack: &TestStack, user: &User, client: &reqwest::Client) -> Vec<(String, Answer)> {
    let gateway = base(stack.gateway_addr);
    let requests = (0..24).map(|i| {
        let (path, post) = [("/", false), ("/increment", true), ("/login", true)][i % 3];
        let request = if path == "/login" {
            client.post(format!("{gateway}/login"))
        } else {
            user.request(client, &gateway, path, post)
        };
        async move { (path.to_owned(), timed(request).await) }
    });
    join_all(requests).await
}

/// `/healthz` and `/readyz` of writer and reader, asked directly.
async fn probes(stack: &TestStack, client: &reqwest::Client) -> Vec<(String, Answer)> {
    let mut answers = Vec::new();
    for addr in [stack.writer_addrs[0], stack.reader_addr] {
        for path in ["/healthz", "/readyz"] {
            let answer = timed(client.get(format!("{}{path}", base(addr)))).await;
            answers.push((format!("{addr}{path}"), answer));
        }
    }
    answers
}

/// Increments acknowledged and failed in `answers`.
fn increments(answers: &[(String, Answer)]) -> (i64, i64) {
    let of = |ok: bool| {
        let n = answers
            .iter()
            .filter(|(path, answer)| path == "/increment" && (answer.status == 200) == ok)
            .count();
        i64::try_from(n).expect("small")
    };
    (of(true), of(false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_resetting_or_silent_redis_is_503_in_bound_and_recovered_from() {
    let mut stack = TestStack::start();
    // One proxy for the writer, one for the reader: each shows when its service's store calls
    // are in the fault's hands.
    let redis = stack.redis.single().endpoint().clone();
    let proxies = [FaultProxy::start(redis.clone()), FaultProxy::start(redis)];
    stack
        .restart_each(
            &[("REDIS_URL", &proxies[0].redis_url())],
            &[("REDIS_URL", &proxies[1].redis_url())],
        )
        .await;
    let set = |mode| {
        for proxy in &proxies {
            proxy.set(mode);
        }
    };
    let client = stack.client();
    let user = User::login(&stack).await;
    let (mut acked, mut failed) = (0, 0);

    // Every worker of writer and reader connects and loads its scripts (a few round trips,
    // which latency would multiply) …
    for _ in 0..2 {
        let answers = batch(&stack, &user, &client).await;
        for (path, answer) in &answers {
            assert_eq!(answer.status, 200, "{path}: {answer:?}");
        }
        acked += increments(&answers).0;
    }
    // … then latency under the bound (100 ms each way) only slows answers down, and shows the
    // proxy is in the way.
    let latency = Duration::from_millis(100);
    set(Mode::Delay(latency));
    let answers = batch(&stack, &user, &client).await;
    for (path, answer) in &answers {
        assert_eq!(
            answer.status, 200,
            "{path} with {latency:?} of latency: {answer:?}"
        );
        assert!(answer.elapsed >= 2 * latency, "{path}: {answer:?}");
    }
    acked += increments(&answers).0;

    for fault in [
        Mode::Delay(Duration::from_millis(2000)),
        Mode::Reset,
        Mode::Stall,
    ] {
        set(fault);
        // Everything at once: the store calls must not hold up the health probes, and none of
        // them may wait past the bound. The probes go once the fault holds (or, resetting, has
        // cut) store calls of both services.
        let (answers, health) = tokio::join!(batch(&stack, &user, &client), async {
            wait::until(
                &format!("the writer's and the reader's store calls to meet {fault:?}"),
                BOUND,
                || async { proxies.iter().all(|proxy| proxy.calls_met() > 0) },
            )
            .await;
            probes(&stack, &client).await
        });
        for (path, answer) in &answers {
            assert_eq!(
                (answer.status, &answer.body),
                (503, &store_unavailable()),
                "{path} under {fault:?}"
            );
            assert!(answer.elapsed < BOUND, "{path} under {fault:?}: {answer:?}");
        }
        for (probe, answer) in &health {
            let expected = if probe.ends_with("/healthz") {
                200
            } else {
                503
            };
            assert_eq!(answer.status, expected, "{probe} under {fault:?}");
            assert!(
                answer.elapsed < BOUND,
                "{probe} under {fault:?}: {answer:?}"
            );
        }
        failed += increments(&answers).1;

        // The fault ends. After a reset or a stall the very next batch succeeds: what was held
        // is delivered, and a connection that failed is replaced before a script goes out on
        // it. Delayed replies still arrive as late as they were due, so after latency the
        // requests of the next two seconds may still time out: there, a whole batch must
        // succeed within a few seconds. From then on every request succeeds, with no restart.
        set(Mode::Pass);
        let ends = Instant::now();
        loop {
            let answers = batch(&stack, &user, &client).await;
            let (ok, not) = increments(&answers);
            (acked, failed) = (acked + ok, failed + not);
            if answers.iter().all(|(_, answer)| answer.status == 200) {
                break;
            }
            assert!(
                matches!(fault, Mode::Delay(_)) && ends.elapsed() < Duration::from_secs(10),
                "no recovery after {fault:?}: {answers:?}"
            );
        }
        for _ in 0..3 {
            let answers = batch(&stack, &user, &client).await;
            for (path, answer) in &answers {
                assert_eq!(answer.status, 200, "{path} after {fault:?}: {answer:?}");
            }
            acked += increments(&answers).0;
        }
        for (probe, answer) in probes(&stack, &client).await {
            assert_eq!(answer.status, 200, "{probe} after {fault:?}");
        }
    }

    // An increment that timed out may still have reached Redis; none acknowledged is lost.
    let read = timed(user.request(&client, &base(stack.gateway_addr), "/", false)).await;
    let count = read.body["count"].as_i64().unwrap_or(-1);
    assert!(
        (acked..=acked + failed).contains(&count),
        "count {count}: {acked} acknowledged, {failed} failed ({:?})",
        read.body.get("user").map(Value::to_string)
    );
}
