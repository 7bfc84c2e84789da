//! The access log written to a file (`GATEWAY_ACCESS_LOG=<path>`): one JSON line per request,
//! with every field, for a plain request, a proxied error, a door-checked request and a tunnel.

use std::{path::Path, time::Duration};

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::{
    helpers::{Probe, RefusingPort, Routes, TestGateway, client, wait},
    hostile::voucher,
    protocols::{echo, open_tunnel},
};

/// The lines of the access log, parsed.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect()
}

/// Waits until the log holds a line for which `matches` holds; returns it.
async fn line_where(path: &Path, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    wait::until(what, Duration::from_secs(5), || async {
        lines(path).iter().any(&matches)
    })
    .await;
    lines(path)
        .into_iter()
        .find(|line| matches(line))
        .expect("the line")
}

#[tokio::test]
async fn every_request_is_one_json_line_with_every_field() {
    let probe = Probe::start().await;
    let voucher = voucher().await;
    let refusing = RefusingPort::bind().expect("a refusing port");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    let routes = Routes::new()
        .upstream("probe", [probe.url()])
        .upstream("voucher", [format!("http://{voucher}")])
        .upstream("gone", [format!("http://{}", refusing.addr())])
        .table("[auth.session]\nupstream = \"voucher\"\npath = \"/session\"")
        .route("/", "probe")
        .route("/gone", "gone")
        .route_with("/app", "probe", "auth = \"session\"");
    let destination = gateway::access::Destination::File(log.clone());
    let gateway = TestGateway::start_configured(&routes.to_string(), |config| {
        config.access_log = destination;
    })
    .await;

    // A plain request with a body, a path to normalize, a Host and a user agent.
    let plain = client()
        .post(gateway.url("/a/../echo?token=secret"))
        .header("host", "front.test")
        .header("user-agent", "access-test/1")
        .body("hello")
        .send()
        .await
        .expect("plain");
    let request_id = plain.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let sent = plain.bytes().await.expect("body").len() as u64;
    let line = line_where(&log, "the plain request's line", |line| {
        line["request_id"] == request_id.as_str()
    })
    .await;
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["host"], "front.test");
    assert_eq!(line["path"], "/echo", "normalized, without the query");
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["route"], "/");
    assert_eq!(line["upstream"], "probe");
    assert_eq!(line["address"], probe.addr.to_string());
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["bytes_in"], 5);
    assert_eq!(line["bytes_out"], sent);
    assert_eq!(line["user_agent"], "access-test/1");
    assert!(
        line["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{line}"
    );
    assert!(
        line["duration_ms"].as_f64() >= line["latency_ms"].as_f64(),
        "{line}"
    );
    let time = line["time"].as_str().expect("time");
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.contains('T'),
        "{time}"
    );
    for absent in ["error", "user", "trace_id"] {
        assert!(line.get(absent).is_none(), "{absent}: {line}");
    }

    // An error the gateway answers itself: the upstream refuses connections.
    let failed = client()
        .get(gateway.url("/gone/x"))
        .send()
        .await
        .expect("gone");
    assert_eq!(failed.status(), 502);
    let id = failed.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let line = line_where(&log, "the error's line", |line| {
        line["request_id"] == id.as_str()
    })
    .await;
    assert_eq!(line["status"], 502);
    assert_eq!(line["route"], "/gone");
    assert_eq!(line["upstream"], "gone");
    assert_eq!(line["address"], refusing.addr().to_string());
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("upstream unavailable: cannot connect")),
        "{line}"
    );
    assert_eq!(
        line["bytes_out"],
        failed.bytes().await.expect("body").len() as u64
    );

    // A door-checked request names the user the check vouched for.
    let checked = client()
        .get(gateway.url("/app/page"))
        .header("cookie", "sid=ok")
        .send()
        .await
        .expect("app");
    assert_eq!(checked.status(), 200);
    let id = checked.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let line = line_where(&log, "the door-checked line", |line| {
        line["request_id"] == id.as_str()
    })
    .await;
    assert_eq!(line["user"], "real-user");
    assert_eq!(line["route"], "/app");

    // A tunnel: its line is written when it closes, with the bytes each way.
    let mut tunnel = open_tunnel(&gateway).await;
    assert_eq!(echo(&mut tunnel, "hello tunnel").await, "hello tunnel");
    assert!(
        !lines(&log).iter().any(|line| line["status"] == 101),
        "not before it closes"
    );
    tunnel.shutdown().await.expect("close");
    drop(tunnel);
    let line = line_where(&log, "the tunnel's line", |line| line["status"] == 101).await;
    assert_eq!(line["path"], "/upgrade");
    assert_eq!(line["bytes_in"], 12);
    assert_eq!(line["bytes_out"], 12);
}

#[tokio::test]
async fn off_writes_nothing_and_an_unwritable_file_stops_the_start() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start_configured(&crate::helpers::routes_to(&probe), |config| {
        config.access_log = gateway::access::Destination::Off;
    })
    .await;
    let off = gateway::access::AccessLog::open(&gateway::access::Destination::Off).expect("off");
    assert!(!off.enabled());
    let response = client()
        .get(gateway.url("/echo"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);

    let dir = tempfile::tempdir().expect("temp dir");
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, crate::helpers::routes_to(&probe)).expect("routes");
    let mut config = gateway::GatewayConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        routes,
        workers: std::num::NonZeroUsize::new(1).expect("one"),
        max_connections: gateway::config::default_max_connections(),
        tls: None,
        access_log: gateway::access::Destination::File(dir.path().join("no/such/dir/access.log")),
    };
    let Err(err) = gateway::Gateway::build(config.clone()).await else {
        panic!("an unwritable access log stops the start");
    };
    assert!(
        err.to_string().starts_with("GATEWAY_ACCESS_LOG: ")
            && err
                .to_string()
                .contains("no/such/dir/access.log: cannot open for appending"),
        "{err}"
    );
    config.access_log = gateway::access::Destination::Stderr;
    assert!(gateway::Gateway::build(config).await.is_ok());
}
