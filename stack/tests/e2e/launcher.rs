//! `cargo run`: the launcher starts the stack, serves the flow, keeps sessions across a full
//! restart, stops everything on Ctrl-C, and explains what it cannot do.

use std::{net::SocketAddr, path::Path, time::Duration};

use common::listening::Listeners;
use nix::sys::signal::Signal;
use serde_json::json;
use stack::{
    net,
    process::{Output, Spec, Supervised},
};

use crate::helpers::{json, session_cookie};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_stack");

struct Ports {
    writer: SocketAddr,
    reader: SocketAddr,
    gateway: SocketAddr,
    admin: SocketAddr,
}

impl Ports {
    /// Port 0 everywhere: each part binds a free port as it starts.
    fn any() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            writer: any,
            reader: any,
            gateway: any,
            admin: any,
        }
    }
}

/// Where part `name` of the stack the launcher started in `data` listens (it writes
/// `<data>/<name>.addr`, see `LISTEN_ADDR_FILE`).
fn listening(data: &Path, name: &str) -> Listeners {
    Listeners::read(&data.join(format!("{name}.addr")))
        .expect("readable")
        .unwrap_or_else(|| panic!("{name} says where it listens"))
}

fn launcher(data: &Path, ports: &Ports, log: &Path) -> Spec {
    let mut spec = Spec::new("stack", LAUNCHER)
        .env("STACK_DATA_DIR", data)
        .env("WRITER_ADDR", ports.writer.to_string())
        .env("READER_ADDR", ports.reader.to_string())
        .env("GATEWAY_ADDR", ports.gateway.to_string())
        .env("GATEWAY_ADMIN_ADDR", ports.admin.to_string())
        .current_dir(data)
        .output(Output::File(log.to_owned()));
    for variable in [
        "REDIS_URL",
        "SESSION_SECRET",
        "GATEWAY_ROUTES",
        "SESSION_TTL",
        "SESSION_MAX_AGE",
    ] {
        spec = spec.env_remove(variable);
    }
    spec
}

/// Waits until the launcher says the stack is up (after the given number of earlier starts
/// logged to the same file) and the gateway answers; the gateway's address.
fn wait_for_gateway(
    process: &mut Supervised,
    data: &Path,
    log: &Path,
    starts_before: usize,
) -> SocketAddr {
    let mut gateway = None;
    let up = net::wait_until(Duration::from_secs(120), || {
        let said = std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("The stack is up")
            .count();
        if said > starts_before {
            gateway = listening(data, "gateway").addr();
        }
        process.try_wait().is_some()
            || gateway.is_some_and(|gateway| {
                net::http_status(gateway, "/", Duration::from_millis(300)) == Some(401)
            })
    });
    assert!(
        up && process.try_wait().is_none(),
        "the stack did not come up: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    gateway.expect("the gateway's address")
}

#[tokio::test]
async fn cargo_run_serves_the_flow_and_a_restart_keeps_the_session() {
    let data = tempfile::tempdir().expect("temp dir");
    let log = data.path().join("launcher.log");
    let ports = Ports::any();
    let client = reqwest::Client::new();

    let mut stack = Supervised::spawn(launcher(data.path(), &ports, &log)).expect("launch");
    let gateway = wait_for_gateway(&mut stack, data.path(), &log, 0);
    let url = |path: &str| format!("http://{gateway}{path}");
    let output = std::fs::read_to_string(&log).expect("log");
    assert!(
        output.contains(&format!("Open http://{gateway}/login")),
        "{output}"
    );
    let bound: Vec<SocketAddr> = [("gateway", "addr"), ("gateway", "admin")]
        .into_iter()
        .chain([("writer", "addr"), ("reader", "addr")])
        .map(|(name, listener)| {
            listening(data.path(), name)
                .get(listener)
                .expect("a listener")
        })
        .collect();
    assert!(
        output.contains("redis: ready on") && output.contains("redis.sock"),
        "the launcher's Redis listens on a unix socket in its data directory: {output}"
    );
    assert!(
        output.contains("generated a development secret"),
        "{output}"
    );
    for part in ["writer  | ", "reader  | ", "gateway | "] {
        assert!(
            output.contains(part),
            "log lines are prefixed with {part:?}"
        );
    }

    let login = client.get(url("/login")).send().await.expect("login");
    let cookie = format!("sid={}", session_cookie(&login).expect("cookie"));
    let (_, body) = json(login).await;
    let user = body["user"]["id"].clone();
    const INCREMENTS: i64 = 50;
    for _ in 0..INCREMENTS {
        let response = client
            .get(url("/increment"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("increment");
        assert_eq!(response.status(), 200);
    }

    // Ctrl-C in the terminal, right after the last acknowledged increment: the signal goes to
    // the launcher's whole process group, as a terminal sends it. Everything stops, cleanly,
    // Redis with its shutdown save, and only once.
    stack.signal_group(Signal::SIGINT);
    let status = stack
        .wait_timeout(Duration::from_secs(20))
        .expect("the launcher exits");
    assert!(status.success(), "{status}");
    for addr in bound {
        assert!(net::is_free(addr), "{addr} is still bound after Ctrl-C");
    }
    let output = std::fs::read_to_string(&log).expect("log");
    assert!(
        output.contains("ready to exit"),
        "Redis shut down cleanly: {output}"
    );
    // Redis heard only the launcher, after the other parts had stopped: not the terminal's
    // SIGINT, and not twice ("You insist" skips its shutdown save).
    assert!(
        output.contains("Received SIGTERM") && !output.contains("Received SIGINT"),
        "Redis was stopped by the launcher alone: {output}"
    );
    assert!(!output.contains("You insist"), "{output}");

    // Same data directory: same secret, same Redis data, same session.
    let mut stack = Supervised::spawn(launcher(data.path(), &ports, &log)).expect("relaunch");
    let gateway = wait_for_gateway(&mut stack, data.path(), &log, 1);
    let url = |path: &str| format!("http://{gateway}{path}");
    // A new client: the old one's pooled connections died with the first stack.
    let client = reqwest::Client::new();
    let (status, body) = json(
        client
            .get(url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("read"),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": user }, "count": INCREMENTS }))
    );
    stack.stop();
}

#[test]
fn without_redis_it_says_how_to_install_it() {
    let data = tempfile::tempdir().expect("temp dir");
    let log = data.path().join("launcher.log");
    let spec = launcher(data.path(), &Ports::any(), &log).env("PATH", data.path());
    let mut process = Supervised::spawn(spec).expect("launch");
    let status = process
        .wait_timeout(Duration::from_secs(10))
        .expect("exits");
    assert!(!status.success());
    let output = std::fs::read_to_string(&log).expect("log");
    assert!(output.contains("redis-server is not on PATH"), "{output}");
    assert!(
        output.contains("apt-get install -y redis-server"),
        "{output}"
    );
    assert!(
        !data.path().join("session-secret").exists(),
        "nothing written on failure"
    );
}

#[test]
fn a_port_in_use_is_named_with_its_variable() {
    let data = tempfile::tempdir().expect("temp dir");
    let log = data.path().join("launcher.log");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut ports = Ports::any();
    ports.gateway = taken.local_addr().expect("addr");
    let mut process = Supervised::spawn(launcher(data.path(), &ports, &log)).expect("launch");
    let status = process
        .wait_timeout(Duration::from_secs(10))
        .expect("exits");
    assert!(!status.success());
    let output = std::fs::read_to_string(&log).expect("log");
    assert!(
        output.contains(&format!(
            "port {} is already in use (GATEWAY_ADDR={})",
            ports.gateway.port(),
            ports.gateway
        )),
        "{output}"
    );
}
