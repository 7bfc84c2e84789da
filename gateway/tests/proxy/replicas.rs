//! Upstreams with several addresses: balancing, retries, passive ejection, active health checks.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use futures_util::{StreamExt, stream};

use crate::helpers::{
    Probe, Routes, TestGateway, admin_routes, client, json, wait, wait_for_generation,
};

fn two_targets(a: &Probe, b: &Probe, extra: &str) -> String {
    Routes::new()
        .upstream_table(
            "pair",
            &format!("targets = [\"{}\", \"{}\"]\n{extra}", a.url(), b.url()),
        )
        .route("/", "pair")
        .to_string()
}

/// Sends `n` POSTs to `url`, `concurrency` at a time; their statuses (0 = no answer).
async fn posts(client: &reqwest::Client, url: &str, n: usize, concurrency: usize) -> Vec<u16> {
    posts_counted(client, url, n, concurrency, &AtomicUsize::new(0)).await
}

/// [`posts`], counting answered requests in `done` as they come.
async fn posts_counted(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    concurrency: usize,
    done: &AtomicUsize,
) -> Vec<u16> {
    stream::iter(0..n)
        .map(|_| {
            let request = client.post(url).body("payload");
            async move {
                let status = request.send().await.map_or(0, |r| r.status().as_u16());
                done.fetch_add(1, Ordering::SeqCst);
                status
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn who_answers(gateway: &TestGateway, path: &str, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let response = client()
            .get(gateway.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        let probe = response.headers()["x-probe"]
            .to_str()
            .expect("ascii")
            .to_owned();
        *seen.entry(probe).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn round_robin_alternates_and_p2c_uses_both() {
    let (a, b) = (Probe::named("a").await, Probe::named("b").await);
    let rr = TestGateway::start(&two_targets(&a, &b, "balance = \"round_robin\"")).await;
    let seen = who_answers(&rr, "/echo", 10).await;
    assert_eq!((seen["a"], seen["b"]), (5, 5), "{seen:?}");
    // The metrics say the same, per address.
    let metrics = rr.metrics().await;
    for probe in [&a, &b] {
        let line = format!(
            "gateway_upstream_address_requests_total{{upstream=\"pair\",target=\"{}\",address=\"{}\"}} 5",
            probe.url(),
            probe.url().trim_start_matches("http://")
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    let p2c = TestGateway::start(&two_targets(&a, &b, "")).await;
    let seen = who_answers(&p2c, "/echo", 40).await;
    assert!(
        seen.get("a").copied().unwrap_or(0) > 0 && seen.get("b").copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_dead_address_is_retried_elsewhere_and_ejected() {
    let (a, mut b) = (Probe::named("a").await, Probe::named("b").await);
    let gateway = TestGateway::start(&two_targets(
        &a,
        &b,
        "balance = \"round_robin\"\neject = { failures = 1, cooldown = \"30s\" }",
    ))
    .await;
    b.kill().await;
    // Even a POST (not idempotent) is safe to retry when the connection was refused.
    for _ in 0..6 {
        let response = client()
            .post(gateway.url("/echo"))
            .body("x")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-probe"], "a");
    }
    let (_, routes) = json(
        client()
            .get(format!("http://{}/routes", gateway.admin))
            .send()
            .await
            .expect("routes"),
    )
    .await;
    let addresses = routes["addresses"]["pair"].as_array().expect("addresses");
    let dead = addresses
        .iter()
        .find(|address| address["address"] == b.addr.to_string())
        .expect("b listed");
    assert_eq!(dead["available"], false, "{routes}");
}

/// Waits until the gateway's admin `/routes` says `probe`'s address of upstream `pair` is
/// `available` (or not): the health checks have seen what it answers now.
async fn wait_available(gateway: &TestGateway, probe: &Probe, available: bool) {
    let address = probe.addr.to_string();
    wait::until(
        &format!("{address} to be marked available = {available}"),
        Duration::from_secs(5),
        || async {
            let routes = admin_routes(gateway).await;
            routes["addresses"]["pair"]
                .as_array()
                .expect("addresses")
                .iter()
                .any(|entry| entry["address"] == address && entry["available"] == available)
        },
    )
    .await;
}

#[tokio::test]
async fn failing_health_checks_take_an_address_out_and_passing_ones_bring_it_back() {
    let (a, b) = (Probe::named("a").await, Probe::named("b").await);
    let gateway = TestGateway::start(&two_targets(
        &a,
        &b,
        "balance = \"round_robin\"\nhealth_check = { path = \"/healthz\", interval = \"100ms\", timeout = \"500ms\" }",
    ))
    .await;
    b.set_healthy(false);
    wait_available(&gateway, &b, false).await;
    let seen = who_answers(&gateway, "/echo", 6).await;
    assert_eq!(seen.get("b"), None, "b failed its checks: {seen:?}");

    b.set_healthy(true);
    wait_available(&gateway, &b, true).await;
    let seen = who_answers(&gateway, "/echo", 6).await;
    assert_eq!(seen.get("b"), Some(&3), "b is back: {seen:?}");

    // /readyz wants a usable address per upstream.
    let ready = client()
        .get(format!("http://{}/readyz", gateway.admin))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    a.set_healthy(false);
    b.set_healthy(false);
    wait_available(&gateway, &a, false).await;
    wait_available(&gateway, &b, false).await;
    let (status, body) = json(
        client()
            .get(format!("http://{}/readyz", gateway.admin))
            .send()
            .await
            .expect("readyz"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["upstreams"][0], "pair");
}

#[tokio::test]
async fn killing_one_of_two_replicas_under_load_fails_at_most_the_requests_in_flight() {
    const CONCURRENCY: usize = 8;
    let (a, mut b) = (Probe::named("a").await, Probe::named("b").await);
    let gateway = TestGateway::start(&two_targets(&a, &b, "")).await;
    let client = client();
    let url = gateway.url("/echo");
    let done = AtomicUsize::new(0);
    let load = posts_counted(&client, &url, 800, CONCURRENCY, &done);
    let killer = async {
        wait::until(
            "the load to be under way",
            Duration::from_secs(5),
            || async { done.load(Ordering::SeqCst) >= CONCURRENCY },
        )
        .await;
        b.kill().await;
        done.load(Ordering::SeqCst)
    };
    let (results, done_at_kill) = tokio::join!(load, killer);
    assert!(
        done_at_kill > 0 && done_at_kill < results.len(),
        "the kill came while the load ran ({done_at_kill} of {} answered)",
        results.len()
    );
    let after = posts(&client, &url, 100, CONCURRENCY).await;
    let failed = results
        .iter()
        .chain(after.iter())
        .filter(|status| **status != 200)
        .count();
    assert!(
        failed <= CONCURRENCY,
        "{failed} failures with {CONCURRENCY} in flight"
    );
    assert!(
        after.iter().all(|status| *status == 200),
        "after the kill every request succeeds"
    );
}

#[tokio::test]
async fn a_host_name_resolving_to_several_addresses_is_balanced_over_them() {
    // `localhost` resolves to 127.0.0.1 (and ::1 on most systems, where nothing listens: those
    // connections are refused, retried on 127.0.0.1, and the address ejected).
    let probe = Probe::start().await;
    let routes = format!(
        "[settings]\nresolve_interval = \"200ms\"\n[upstreams]\nlocal = [\"http://localhost:{}\"]\n[[routes]]\npath = \"/\"\nupstream = \"local\"\n",
        probe.addr.port()
    );
    let gateway = TestGateway::start(&routes).await;
    for _ in 0..5 {
        assert_eq!(
            client()
                .get(gateway.url("/echo"))
                .send()
                .await
                .expect("request")
                .status(),
            200
        );
    }
    let (_, routes) = json(
        client()
            .get(format!("http://{}/routes", gateway.admin))
            .send()
            .await
            .expect("routes"),
    )
    .await;
    let addresses = routes["addresses"]["local"].as_array().expect("addresses");
    assert!(
        addresses
            .iter()
            .any(|a| a["address"] == probe.addr.to_string()),
        "{routes}"
    );
}

/// `blue` and `green` with these weights.
fn blue_green(blue: &Probe, green: &Probe, blue_weight: u32, green_weight: u32) -> String {
    Routes::new()
        .upstream_table(
            "app",
            &format!(
                "targets = [\n  {{ url = \"{}\", weight = {blue_weight} }},\n  \
                 {{ url = \"{}\", weight = {green_weight} }},\n]",
                blue.url(),
                green.url()
            ),
        )
        .route("/", "app")
        .to_string()
}

/// Sends `n` GETs, `concurrency` at a time; how many each probe answered, and the failures.
async fn split(
    gateway: &TestGateway,
    n: usize,
    concurrency: usize,
) -> (HashMap<String, usize>, usize) {
    let answers: Vec<Option<String>> = stream::iter(0..n)
        .map(|_| async {
            let response = client().get(gateway.url("/echo")).send().await.ok()?;
            (response.status() == 200).then(|| {
                response.headers()["x-probe"]
                    .to_str()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut seen = HashMap::new();
    let mut failed = 0;
    for answer in answers {
        match answer {
            Some(probe) => *seen.entry(probe).or_insert(0) += 1,
            None => failed += 1,
        }
    }
    (seen, failed)
}

#[tokio::test]
async fn weights_split_the_traffic_and_a_rollback_under_load_fails_nothing() {
    const N: usize = 4000;
    let (blue, green) = (Probe::named("blue").await, Probe::named("green").await);
    let gateway = TestGateway::start(&blue_green(&blue, &green, 90, 10)).await;

    // A canary: 10 % to green. Over 4000 requests the share's standard deviation is 0.5 %.
    let (seen, failed) = split(&gateway, N, 16).await;
    assert_eq!(failed, 0, "{seen:?}");
    let green_share = seen.get("green").copied().unwrap_or(0) as f64 / N as f64;
    assert!(
        (0.08..=0.12).contains(&green_share),
        "green got {:.1} % of {N}, not about 10 %: {seen:?}",
        green_share * 100.0
    );

    // Shifted to 50/50 by editing the file: live within a second.
    std::fs::write(&gateway.routes, blue_green(&blue, &green, 50, 50)).expect("edit");
    let edited = std::time::Instant::now();
    wait_for_generation(&gateway, 2).await;
    assert!(
        edited.elapsed() < Duration::from_secs(1),
        "{:?}",
        edited.elapsed()
    );
    let (seen, failed) = split(&gateway, N, 16).await;
    assert_eq!(failed, 0, "{seen:?}");
    let green_share = seen.get("green").copied().unwrap_or(0) as f64 / N as f64;
    assert!((0.46..=0.54).contains(&green_share), "{seen:?}");

    // Rollback under load: green drained (weight 0) while requests keep coming; none fails,
    // and once the new table is live green gets nothing new.
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let load = {
        let url = gateway.url("/echo");
        let answered = std::sync::Arc::clone(&answered);
        tokio::spawn(async move { posts_counted(&client(), &url, 3000, 16, &answered).await })
    };
    // The edit lands while the load runs.
    wait::until(
        "the load to be under way",
        Duration::from_secs(5),
        || async { answered.load(Ordering::SeqCst) > 0 },
    )
    .await;
    std::fs::write(&gateway.routes, blue_green(&blue, &green, 100, 0)).expect("edit");
    wait_for_generation(&gateway, 3).await;
    let statuses = load.await.expect("load");
    assert!(
        statuses.iter().all(|status| *status == 200),
        "no request fails during the switch: {} failed",
        statuses.iter().filter(|status| **status != 200).count()
    );
    let (seen, failed) = split(&gateway, 500, 16).await;
    assert_eq!((failed, seen.get("green")), (0, None), "{seen:?}");
    assert_eq!(seen["blue"], 500);
}

#[tokio::test]
async fn a_drained_target_is_not_a_retry_either() {
    let (mut blue, mut green) = (Probe::named("blue").await, Probe::named("green").await);
    let gateway = TestGateway::start(&blue_green(&blue, &green, 1, 0)).await;
    let (seen, failed) = split(&gateway, 200, 8).await;
    assert_eq!((failed, seen.get("green")), (0, None), "{seen:?}");
    // With blue's port closed, the request fails rather than reaching a drained target.
    blue.kill().await;
    let response = client()
        .get(gateway.url("/echo"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 502);
    green.kill().await;
}
