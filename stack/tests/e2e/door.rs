//! The session check at the door: a route with `auth = "session"` is forwarded only after the
//! reader's `GET /session` vouched for the request's session, with `X-User-Id` (and, for a user
//! signed in at an identity provider, `X-User-Name`, `X-User-Email`, `X-User-Groups`) set by
//! the gateway and every `X-User-*` header of the client's removed; a route with
//! `allow_groups` lets only those groups' members through. The upstream behind it is
//! `examples/greeter/greeter.py`, a Python service that knows nothing of sessions, run for
//! real; the provider is [`crate::helpers::FakeIdp`], signed in at as in `sign_in.rs`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde_json::json;
use stack::{
    net,
    process::{Output, Spec, Supervised},
};

use crate::{
    helpers::{
        FakeIdp, Options, Person, Routes, StoreKind, TestStack, can_run, json, login, logs, reroute,
    },
    sign_in::{CLIENT_ID, Flow, browser},
};

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
        self.requests().into_iter().map(|(user, _)| user).collect()
    }

    /// The names of the `X-User-*` headers (in any spelling) of the last request the greeter
    /// received, sorted.
    fn last_identity_fields(&self) -> Vec<String> {
        let (_, fields) = self
            .requests()
            .pop()
            .expect("a request reached the greeter");
        fields
    }

    /// "GET / <user> <fields>" lines: each request's user and identity header names.
    fn requests(&self) -> Vec<(String, Vec<String>)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with("GET "))
            .map(|line| {
                let mut words = line.split(' ').skip(2);
                let user = words.next().unwrap_or_default().to_owned();
                let fields = match words.next().unwrap_or("-") {
                    "-" => Vec::new(),
                    names => names.split(',').map(str::to_owned).collect(),
                };
                (user, fields)
            })
            .collect()
    }
}

/// Whether python3 runs (the greeter needs it): else the test is skipped, visibly.
fn python_runs() -> bool {
    let missing = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
        .then(|| "python3 (for examples/greeter)".to_owned());
    can_run("door check", missing)
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
    if !python_runs() {
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

/// The headers a client forges to pass for someone else: a group, a flag the check never
/// sends, and an underscore spelling that CGI-style servers read as `X-User-Email` (the
/// gateway is told to keep underscored names, so only the door check can take it out).
const FORGED: [(&str, &str); 3] = [
    ("x-user-groups", "admins"),
    ("x-user-admin", "true"),
    ("x_user_email", "mallory@evil.test"),
];

/// A stack that signs `person` in at the provider "corp", with the greeter behind the door at
/// `/greet` and, for the group `admins` only, at `/admins`.
async fn signing_in_with_a_greeter(store: StoreKind, person: Person) -> (FakeIdp, Flow, Greeter) {
    let idp = FakeIdp::start(CLIENT_ID, person).await;
    let flow = Flow::start(store, &[("corp", idp.issuer(), "")]);
    flow.until_available("corp").await;
    let greeter = Greeter::start(flow.stack.dir.path());
    let routes = routes_with_greeter(&flow.stack, greeter.addr)
        .setting("underscores_in_headers = true")
        .route_with(
            "/admins",
            "greeter",
            "auth = \"session\"\nstrip_prefix = true\nallow_groups = [\"admins\"]",
        );
    reroute(&flow.stack, routes).await;
    (idp, flow, greeter)
}

/// `GET path` as `browser` (its session cookie), with `headers` added.
async fn greet_as(
    flow: &Flow,
    browser: &reqwest::Client,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut request = browser.get(flow.stack.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    json(request.send().await.expect("GET")).await
}

async fn a_user_signed_in_at_a_provider_is_greeted_by_name_and_forged_identity_never_arrives(
    store: StoreKind,
) {
    if !python_runs() {
        return;
    }
    let ann = Person::new("ann-5521907", "Ann Lee", &["staff", "payroll"]);
    let (_idp, flow, mut greeter) = signing_in_with_a_greeter(store, ann).await;
    let laptop = browser();
    assert_eq!(flow.sign_in(&laptop, "corp").await.status(), 303);

    let (status, body) = greet_as(&flow, &laptop, "/greet", &FORGED).await;
    assert_eq!(status, 200, "{body}");
    let id = body["user"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("oidc."), "{body}");
    assert_eq!(
        body,
        json!({
            "greeting": "Hello, Ann Lee!",
            "user": id,
            "name": "Ann Lee",
            "email": "ann-5521907@example.com",
            "groups": ["staff", "payroll"],
        }),
        "the check's values, not the client's"
    );
    assert_eq!(
        greeter.last_identity_fields(),
        ["x-user-email", "x-user-groups", "x-user-id", "x-user-name"],
        "no X-User-Admin, no x_user_email: only what the check vouched for"
    );
    greeter.process.stop().expect("the greeter stops");
}

async fn a_route_with_allow_groups_lets_only_members_through(store: StoreKind) {
    if !python_runs() {
        return;
    }
    let staff = Person::new("bo-8830121", "Bo Berg", &["staff"]);
    let (idp, flow, mut greeter) = signing_in_with_a_greeter(store, staff).await;
    let laptop = browser();
    assert_eq!(flow.sign_in(&laptop, "corp").await.status(), 303);
    let before = greeter.seen().len();

    // Vouched for, but not an admin, whatever the client claims: 403 at the door.
    for claims in [&[][..], &FORGED[..]] {
        let (status, body) = greet_as(&flow, &laptop, "/admins", claims).await;
        assert_eq!(status, 403, "{claims:?}: {body}");
        assert_eq!(body["error"], "forbidden", "{body}");
    }
    assert_eq!(greeter.seen().len(), before, "nothing reached the greeter");
    // The route without allow_groups lets the same user through.
    let (status, _) = greet_as(&flow, &laptop, "/greet", &[]).await;
    assert_eq!(status, 200);

    // An admin, signed in on another device: let through, greeted by name.
    idp.set_person(Person::new("al-8830122", "Al Ng", &["staff", "admins"]));
    let phone = browser();
    assert_eq!(flow.sign_in(&phone, "corp").await.status(), 303);
    let (status, body) = greet_as(&flow, &phone, "/admins", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["greeting"], "Hello, Al Ng!", "{body}");
    assert_eq!(body["groups"], json!(["staff", "admins"]), "{body}");
    assert_eq!(
        greeter.seen().len(),
        before + 2,
        "the pass on /greet, then the admin"
    );
    greeter.process.stop().expect("the greeter stops");
}

on_every_store!(
    a_service_that_knows_no_sessions_learns_the_user_at_the_door,
    a_user_signed_in_at_a_provider_is_greeted_by_name_and_forged_identity_never_arrives,
    a_route_with_allow_groups_lets_only_members_through,
);
