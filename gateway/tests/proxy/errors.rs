//! Failures become JSON with the right status: no route 404, unreachable 502, slow 504.

use serde_json::json;

use crate::helpers::{Probe, RefusingPort, TestGateway, client, json, routes_to};

#[tokio::test]
async fn no_route_is_404_json() {
    let probe = Probe::start().await;
    let routes = format!(
        "[upstreams]\nprobe = [\"{}\"]\n[[routes]]\npath = \"/only\"\nupstream = \"probe\"\n",
        probe.url()
    );
    let gateway = TestGateway::start(&routes).await;
    let response = client()
        .get(gateway.url("/elsewhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["content-type"], "application/json");
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let (status, body) = json(response).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({ "error": "no route for this path", "request_id": id })
        )
    );
}

#[tokio::test]
async fn unreachable_upstream_is_502_json() {
    // A port nobody listens on, held so that nobody can start to while the test runs.
    let refusing = RefusingPort::bind().expect("a refusing port");
    let closed = refusing.addr();
    let routes = format!(
        "[upstreams]\ngone = [\"http://{closed}\"]\n[[routes]]\npath = \"/\"\nupstream = \"gone\"\n"
    );
    let gateway = TestGateway::start(&routes).await;
    let (status, body) = json(
        client()
            .get(gateway.url("/"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(body["error"], "upstream unavailable");
}

#[tokio::test]
async fn slow_upstream_is_504_json_after_the_route_timeout() {
    let probe = Probe::start().await;
    let routes = format!(
        "[upstreams]\nprobe = [\"{}\"]\n[[routes]]\npath = \"/\"\nupstream = \"probe\"\ntimeout = \"300ms\"\n",
        probe.url()
    );
    let gateway = TestGateway::start(&routes).await;
    let started = std::time::Instant::now();
    let (status, body) = json(
        client()
            .get(gateway.url("/slow"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 504);
    assert_eq!(body["error"], "upstream timed out");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "answered at the timeout"
    );
}

#[tokio::test]
async fn an_upstream_dying_mid_response_breaks_that_response_only() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let response = client()
        .get(gateway.url("/die"))
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "a truncated body must not look complete to the client"
    );
    // The gateway keeps serving.
    let again = client()
        .get(gateway.url("/echo"))
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn admin_endpoints_answer_on_their_own_port() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let admin = |path: &str| format!("http://{}{path}", gateway.admin);
    for path in ["/healthz", "/readyz"] {
        let response = client().get(admin(path)).send().await.expect("admin");
        assert_eq!(response.status(), 200, "{path}");
    }
    let (status, routes) = json(client().get(admin("/routes")).send().await.expect("routes")).await;
    assert_eq!(status, 200);
    assert_eq!(routes["generation"], 1);
    assert_eq!(routes["table"]["routes"][0]["path"], "/");
    assert_eq!(routes["table"]["routes"][0]["upstream"], "probe");
    // Prometheus metrics, after some traffic.
    client()
        .get(gateway.url("/echo"))
        .send()
        .await
        .expect("traffic");
    let metrics = client()
        .get(admin("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = metrics.text().await.expect("text");
    for expected in [
        "gateway_requests_total{route=\"/\",status=\"200\"}",
        "gateway_request_duration_seconds_bucket{le=",
        "gateway_config_generation 1",
        &format!(
            "gateway_upstream_address_up{{upstream=\"probe\",target=\"{}\",address=\"{}\"}} 1",
            probe.url(),
            probe.addr
        ),
    ] {
        assert!(text.contains(expected), "{expected} missing in:\n{text}");
    }
    // The admin endpoints are not reachable through the public port.
    let public = client()
        .get(gateway.url("/routes"))
        .send()
        .await
        .expect("public");
    let (_, echo) = json(public).await;
    assert_eq!(
        echo["path"], "/routes",
        "the public port proxied it like any path"
    );
}

#[tokio::test]
async fn metrics_add_up_the_requests_of_every_worker() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    // A new client per request: new connections, spread by the kernel over both workers.
    for _ in 0..40 {
        let response = client()
            .get(gateway.url("/echo"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
    let missing = client()
        .get(gateway.url("/status/404"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
    let text = gateway.metrics().await;
    for expected in [
        "gateway_requests_total{route=\"/\",status=\"200\"} 40\n",
        "gateway_requests_total{route=\"/\",status=\"404\"} 1\n",
        "gateway_request_duration_seconds_count{route=\"/\"} 41\n",
        "gateway_request_duration_seconds_bucket{le=\"+Inf\",route=\"/\"} 41\n",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
    }
}
