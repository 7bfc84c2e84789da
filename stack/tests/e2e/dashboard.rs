//! The gateway's live dashboard (`GET /` on the admin listener) in headless Chromium: traffic
//! sent to one route shows on that route's row, and a killed upstream turns red within its
//! health-check interval. Skipped like the other browser tests without Chromium.

use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::{
    browser::{Browser, artifact_dir, browser_available},
    helpers::{Routes, TestStack, reroute},
};

/// How often the test routes health-check the reader.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The text of the first element `css` selects, or `None` while there is none.
async fn text_of(client: &fantoccini::Client, css: &str) -> Option<String> {
    let element = client.find(Locator::Css(css)).await.ok()?;
    element.text().await.ok()
}

#[tokio::test]
async fn the_dashboard_shows_live_traffic_and_a_dead_upstream() {
    if !browser_available() {
        return;
    }
    let mut stack = TestStack::start();
    let writers: Vec<String> = stack
        .writer_addrs
        .iter()
        .map(|addr| format!("\"http://{addr}\""))
        .collect();
    let reader = stack.reader_addr;
    let mut routes = Routes::new()
        .upstream_table("writer", &format!("targets = [{}]", writers.join(", ")))
        .upstream_table(
            "reader",
            &format!(
                "targets = [\"http://{reader}\"]\nhealth_check = {{ path = \"/healthz\", \
                 interval = \"{}s\", timeout = \"500ms\" }}",
                CHECK_INTERVAL.as_secs()
            ),
        );
    for path in ["/login", "/increment", "/logout", "/sessions"] {
        routes = routes.route_with(path, "writer", "idempotent = false");
    }
    reroute(&stack, routes.route("/", "reader")).await;

    let browser = Browser::start(stack.dir.path()).await;
    let client = &browser.client;
    client
        .goto(&format!("http://{}/", stack.admin_addr))
        .await
        .expect("open the dashboard");
    let reader_row = format!("tr[data-address=\"{reader}\"]");
    let state = text_of(client, &format!("{reader_row} td.state")).await;
    assert_eq!(state.as_deref(), Some("up"), "the reader starts up");

    // Traffic to one route: 40 reads (401 without a session) through the gateway.
    for _ in 0..40 {
        let status = stack
            .client()
            .get(stack.url("/"))
            .send()
            .await
            .expect("read");
        assert_eq!(status.status(), 401);
    }
    let rate = |route: &'static str| async move {
        text_of(client, &format!("tr[data-route=\"{route}\"] td.rps"))
            .await
            .and_then(|text| text.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while rate("/").await <= 0.0 {
        assert!(
            Instant::now() < deadline,
            "the reads never showed on the page"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rate("/login").await.abs() < f64::EPSILON,
        "only the route that had traffic moves"
    );
    let p50 = text_of(client, "tr[data-route=\"/\"] td.p50")
        .await
        .expect("p50");
    assert!(p50.ends_with(" ms"), "{p50}");

    // Kill the reader: its address turns red within the health-check interval (plus the
    // check's own timeout and the page's one-second refresh).
    stack.reader.kill();
    let killed = Instant::now();
    let down = format!("tr.down[data-address=\"{reader}\"]");
    while client.find(Locator::Css(&down)).await.is_err() {
        assert!(
            killed.elapsed() < CHECK_INTERVAL + Duration::from_millis(500) + Duration::from_secs(2),
            "the dead reader is still shown up after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let color = client
        .find(Locator::Css(&format!("{down} td.state")))
        .await
        .expect("the state cell")
        .css_value("color")
        .await
        .expect("its color");
    assert_eq!(color, "rgba(207, 34, 46, 1)", "red");
    // The picture in the README and the book: traffic on one route, a dead upstream.
    std::fs::create_dir_all(artifact_dir()).expect("artifacts dir");
    let screenshot = client.screenshot().await.expect("screenshot");
    std::fs::write(artifact_dir().join("dashboard.png"), screenshot).expect("save");

    // An hour open: the page keeps no history; the two tables are replaced, not appended to.
    let rows = client
        .find_all(Locator::Css("tbody tr"))
        .await
        .expect("rows")
        .len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = client
        .find_all(Locator::Css("tbody tr"))
        .await
        .expect("rows")
        .len();
    assert_eq!(rows, later, "the same rows after more updates");
    browser.close().await;
}
