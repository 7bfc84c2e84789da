//! CORS: credentialed requests from listed origins only; nothing for anyone else.

use crate::helpers::{Probe, TestGateway, client};

async fn gateway(probe: &Probe) -> TestGateway {
    TestGateway::start(&format!(
        "[upstreams]\nprobe = [\"{}\"]\n[[routes]]\npath = \"/\"\nupstream = \"probe\"\n[cors]\norigins = [\"https://app.example.com\"]\nmax_age = \"5m\"\n",
        probe.url()
    ))
    .await
}

#[tokio::test]
async fn preflights_from_listed_origins_are_answered_with_credentials() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    let response = client()
        .request(reqwest::Method::OPTIONS, gateway.url("/increment"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert_eq!(response.status(), 204);
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .expect("ascii")
            .contains("POST")
    );
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .expect("ascii")
            .contains("content-type")
    );
    assert_eq!(headers["access-control-max-age"], "300");
    assert!(
        !headers.contains_key("x-probe"),
        "the gateway answered, not the upstream"
    );
}

#[tokio::test]
async fn other_origins_get_no_cors_headers_at_all() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    let preflight = client()
        .request(reqwest::Method::OPTIONS, gateway.url("/increment"))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 403);
    assert!(
        !preflight
            .headers()
            .keys()
            .any(|h| h.as_str().starts_with("access-control-"))
    );

    let request = client()
        .get(gateway.url("/echo"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(request.status(), 200, "the request itself is proxied");
    assert!(
        !request
            .headers()
            .keys()
            .any(|h| h.as_str().starts_with("access-control-"))
    );
    assert_eq!(request.headers()["vary"], "Origin");
}

#[tokio::test]
async fn requests_from_listed_origins_get_credentialed_cors_headers() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    let response = client()
        .post(gateway.url("/echo"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("request");
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(
        headers["access-control-expose-headers"]
            .to_str()
            .expect("ascii")
            .contains("x-request-id")
    );
    assert_eq!(headers["vary"], "Origin");
}
