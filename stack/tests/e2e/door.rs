//! The session check at the door: a route with `auth = "session"` is forwarded only after the
//! reader's `GET /session` vouched for the request's session, with `X-User-Id` set by the
//! gateway. The upstream behind it is `examples/greeter/greeter.py`, a Python service that knows
//! nothing of sessions, run for real.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde_json::json;
use stack::{
    net,
    process::{Output, Spec, Supervised},
};

use crate::helpers::{Options, Routes, StoreKind, TestStack, can_run, json, login, logs, reroute};

/// The greeter, on a port it binds itself, and the file its request lines go to.
struct Greeter {
    process: Supervised,
    addr: SocketAddr,
    log: PathBuf,
}

impl Greeter {
    fn start(dir: &std::path::Path) -> Self {
        let log = dir.join("greeter.log");
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/greeter/greeter.py");
        let mut process = Supervised::spawn(
            Spec::new("greeter", "python3")
                .arg(&script)
                .env("GREETER_ADDR", "127.0.0.1:0")
                .output(Output::File(log.clone())),
        )
        .expect("python3 runs the greeter");
        // "greeter listening on 127.0.0.1:40123"
        let listening = || {
            logs::find_line(&log, |line| {
                line.strip_prefix("greeter listening on ")?
                    .trim()
                    .parse()
                    .ok()
            })
        };
        assert!(
            net::wait_until(Duration::from_secs(10), || {
                process.try_wait().is_some() || listening().is_some()
            }),
            "the greeter says where it listens: {}",
            logs::read(&log)
        );
        let addr: SocketAddr = listening().expect("the greeter's address");
        assert!(
            net::wait_until(Duration::from_secs(10), || net::http_status(
                addr,
                "/",
                Duration::from_millis(300)
            )
            .is_some()),
            "the greeter answers"
        );
        Self { process, addr, log }
    }

    /// The users of the requests the greeter received, in order (`-` for none).
    fn seen(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with("GET "))
            .map(|line| line.rsplit(' ').next().unwrap_or_default().to_owned())
            .collect()
    }
}

/// The stack's routes plus the greeter at `/greet` behind the session check.
fn routes_with_greeter(stack: &TestStack, greeter: SocketAddr) -> Routes {
    stack
        .routes()
        .upstream_table("greeter", &format!("targets = [\"http://{greeter}\"]"))
        .table("[auth.session]\nupstream = \"reader\"\npath = \"/session\"")
        .route_with(
            "/greet",
            "greeter",
            "auth = \"session\"\nstrip_prefix = true",
        )
}

async fn greet(stack: &TestStack, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut request = stack.client().get(stack.url("/greet"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    json(request.send().await.expect("GET /greet")).await
}

async fn a_service_that_knows_no_sessions_learns_the_user_at_the_door(store: StoreKind) {
    let missing = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
        .then(|| "python3 (for examples/greeter)".to_owned());
    if !can_run("door check", missing) {
        return;
    }
    let mut stack = TestStack::start_with(Options::default().store(store));
    let mut greeter = Greeter::start(stack.dir.path());
    let seen_at_start = greeter.seen().len();
    reroute(&stack, routes_with_greeter(&stack, greeter.addr)).await;

    // Not logged in: the check's own 401 JSON; the greeter never hears of it, whatever
    // X-User-Id the client claims.
    let (status, body) = greet(&stack, &[("x-user-id", "mallory")]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["login"], "/login",
        "the reader's not-logged-in answer: {body}"
    );
    assert_eq!(
        greeter.seen().len(),
        seen_at_start,
        "nothing reached the greeter"
    );

    // Logged in: greeted by the id the session holds, the client's claim removed.
    let (cookie, user) = login(&stack).await;
    let (status, body) = greet(&stack, &[("cookie", &cookie), ("x-user-id", "mallory")]).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({ "greeting": format!("Hello, {user}!"), "user": user })
        )
    );
    assert_eq!(greeter.seen()[seen_at_start..], [user.as_str()]);

    // Logout takes effect at the door with the next request: nothing is cached.
    let response = stack
        .client()
        .post(stack.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), 200);
    let (status, _) = greet(&stack, &[("cookie", &cookie)]).await;
    assert_eq!(status, 401, "the logged-out session is refused at the door");

    // The session service down: 503 JSON from the gateway, still nothing forwarded.
    let (cookie, _) = login(&stack).await;
    stack.reader.stop().expect("the reader stops");
    let (status, body) = greet(&stack, &[("cookie", &cookie)]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "session check unavailable", "{body}");
    assert_eq!(greeter.seen().len(), seen_at_start + 1, "only the one pass");
    greeter.process.stop().expect("the greeter stops");
}

on_every_store!(a_service_that_knows_no_sessions_learns_the_user_at_the_door);
