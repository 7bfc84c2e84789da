//! The HTTP contract of DESIGN.md, walked through the gateway.

use serde_json::json;

use crate::helpers::{
    Options, StoreKind, TestStack, json, logs, session_cookie, set_cookies, wait,
};

const NOT_LOGGED_IN: &str = "Please go \"log in!\" (set up your session)";

pub(crate) async fn login_count_increment_logout_walkthrough(store: StoreKind) {
    let stack = TestStack::start_with(Options::default().store(store));
    let browser = stack.browser();

    let login = browser
        .get(stack.url("/login"))
        .send()
        .await
        .expect("login");
    let cookies = set_cookies(&login);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing in {cookie}"
        );
    }
    assert!(
        !cookie.contains("Secure"),
        "Secure only when configured: {cookie}"
    );
    assert!(
        !cookie.contains("Max-Age"),
        "a browser-session cookie: {cookie}"
    );
    let (status, body) = json(login).await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "you are now logged in");
    let user = body["user"]["id"].as_str().expect("user id").to_owned();
    assert!(!user.is_empty());

    let (status, body) = json(browser.get(stack.url("/")).send().await.expect("read")).await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": user }, "count": 0 }))
    );

    for expected in 1..=2 {
        let response = browser
            .post(stack.url("/increment"))
            .send()
            .await
            .expect("increment");
        let (status, body) = json(response).await;
        assert_eq!(
            (status, body),
            (
                200,
                json!({ "message": "Incremented Count", "count": expected })
            )
        );
    }
    let (status, body) = json(browser.get(stack.url("/")).send().await.expect("read")).await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": user }, "count": 2 }))
    );

    let logout = browser
        .get(stack.url("/logout"))
        .send()
        .await
        .expect("logout");
    let expired = set_cookies(&logout);
    assert!(
        expired
            .iter()
            .any(|c| c.starts_with("sid=;") && c.contains("Max-Age=0")),
        "logout expires the cookie: {expired:?}"
    );
    let (status, body) = json(logout).await;
    assert_eq!(
        (status, body),
        (200, json!({ "message": "logged out : count reset" }))
    );

    let (status, body) = json(browser.get(stack.url("/")).send().await.expect("read")).await;
    assert_eq!(
        (status, body),
        (401, json!({ "message": NOT_LOGGED_IN, "login": "/login" }))
    );
    assert!(
        stack.redis_keys().await.is_empty(),
        "logout leaves nothing in Redis"
    );
}

async fn anonymous_requests_are_401_and_store_nothing(store: StoreKind) {
    let stack = TestStack::start_with(Options::default().store(store));
    let client = stack.client();
    for (method, path) in [("GET", "/"), ("GET", "/increment"), ("POST", "/increment")] {
        for cookie in [None, Some("sid=garbage"), Some("sid=")] {
            let mut request = client.request(method.parse().expect("method"), stack.url(path));
            if let Some(cookie) = cookie {
                request = request.header("cookie", cookie);
            }
            let response = request.send().await.expect("request");
            assert!(set_cookies(&response).is_empty(), "no cookie for strangers");
            let (status, body) = json(response).await;
            assert_eq!(
                (status, body),
                (401, json!({ "message": NOT_LOGGED_IN, "login": "/login" })),
                "{method} {path} with {cookie:?}"
            );
        }
    }
    // Logging out without a session is fine and changes nothing.
    let (status, body) = json(
        client
            .get(stack.url("/logout"))
            .send()
            .await
            .expect("logout"),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({ "message": "logged out : count reset" }))
    );
    assert!(stack.redis_keys().await.is_empty(), "Redis stays empty");
}

async fn replaying_a_logged_out_cookie_gets_401(store: StoreKind) {
    let stack = TestStack::start_with(Options::default().store(store));
    let client = stack.client();
    let login = client.get(stack.url("/login")).send().await.expect("login");
    let cookie = format!("sid={}", session_cookie(&login).expect("cookie"));
    let read = client
        .get(stack.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);

    let logout = client
        .post(stack.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 200);
    for path in ["/", "/increment"] {
        let replay = client
            .get(stack.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("replay");
        assert_eq!(replay.status(), 401, "{path}");
    }
    assert!(
        stack.redis_keys().await.is_empty(),
        "the replay recreated nothing"
    );
}

async fn login_renews_the_session_id_and_keeps_the_user(store: StoreKind) {
    let stack = TestStack::start_with(Options::default().store(store));
    let client = stack.client();
    let first = client.get(stack.url("/login")).send().await.expect("login");
    let old_cookie = format!("sid={}", session_cookie(&first).expect("cookie"));
    let (_, body) = json(first).await;
    let user = body["user"]["id"].clone();
    client
        .get(stack.url("/increment"))
        .header("cookie", &old_cookie)
        .send()
        .await
        .expect("inc");

    let again = client
        .get(stack.url("/login"))
        .header("cookie", &old_cookie)
        .send()
        .await
        .expect("login");
    let new_cookie = format!("sid={}", session_cookie(&again).expect("a new cookie"));
    assert_ne!(new_cookie, old_cookie);
    let (status, body) = json(again).await;
    assert_eq!(status, 200);
    assert_eq!(body["user"]["id"], user, "same user as before");

    let old = client
        .get(stack.url("/"))
        .header("cookie", &old_cookie)
        .send()
        .await
        .expect("old");
    assert_eq!(old.status(), 401, "the pre-login cookie is dead");
    let (status, body) = json(
        client
            .get(stack.url("/"))
            .header("cookie", &new_cookie)
            .send()
            .await
            .expect("new"),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": user }, "count": 1 }))
    );
}

async fn restarting_writer_and_reader_keeps_the_session(store: StoreKind) {
    let mut stack = TestStack::start_with(Options::default().store(store));
    let browser = stack.browser();
    let (_, body) = json(
        browser
            .get(stack.url("/login"))
            .send()
            .await
            .expect("login"),
    )
    .await;
    let user = body["user"]["id"].clone();
    browser
        .get(stack.url("/increment"))
        .send()
        .await
        .expect("increment");

    stack.restart_services().await;

    let (status, body) = json(browser.get(stack.url("/")).send().await.expect("read")).await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": user }, "count": 1 }))
    );
    let (status, body) = json(
        browser
            .get(stack.url("/increment"))
            .send()
            .await
            .expect("inc"),
    )
    .await;
    assert_eq!((status, body["count"].clone()), (200, json!(2)));
}

async fn health_and_readiness(store: StoreKind) {
    let stack = TestStack::start_with(Options::default().store(store));
    let client = stack.client();
    for addr in [stack.writer_addrs[0], stack.reader_addr] {
        for path in ["/healthz", "/readyz"] {
            let response = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .expect("probe");
            assert_eq!(response.status(), 200, "{addr}{path}");
        }
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let stack = TestStack::start();
    let client = stack.client();
    let (status, body) = json(client.get(stack.url("/nope")).send().await.expect("404")).await;
    assert_eq!((status, body), (404, json!({ "error": "not found" })));
    let (status, body) = json(
        client
            .delete(stack.url("/login"))
            .send()
            .await
            .expect("405"),
    )
    .await;
    assert_eq!(
        (status, body),
        (405, json!({ "error": "method not allowed" }))
    );
    let (status, body) = json(
        client
            .get(stack.url("/logout?everywhere=maybe"))
            .send()
            .await
            .expect("400"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("invalid request"),
        "{body}"
    );
}

#[tokio::test]
async fn request_ids_are_kept_or_generated_and_echoed() {
    let stack = TestStack::start();
    let client = stack.client();
    let kept = client
        .get(stack.url("/"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .expect("request");
    assert_eq!(kept.headers()["x-request-id"], "trace-me-123");
    let generated = client
        .get(stack.url("/"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .expect("request");
    let id = generated.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(id.len(), 32, "{id}");
    // The id reached the reader: its log line carries it.
    let log = std::fs::read_to_string(stack.dir.path().join("reader.log")).unwrap_or_default();
    assert!(log.contains("trace-me-123"), "reader logged the request id");
}

#[tokio::test]
async fn json_logs_carry_one_request_id_through_every_service() {
    let stack = TestStack::start_with(Options::default().env_all("LOG_FORMAT", "json"));
    let response = stack
        .client()
        .get(stack.url("/login"))
        .header("x-request-id", "follow-me-42")
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    let lines = |name: &str| -> Vec<serde_json::Value> {
        logs::read(&stack.log(name))
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|_| panic!("{name}: not JSON: {line}"))
            })
            .collect()
    };
    // The answer can arrive before the lines about it are written: wait for both.
    let logged = |name: &str, message: &str| {
        lines(name)
            .iter()
            .any(|line| line["message"] == message && line["span"]["request_id"] == "follow-me-42")
    };
    wait::until(
        "the gateway's and the writer's lines about the request",
        std::time::Duration::from_secs(5),
        || async { logged("gateway", "proxied") && logged("writer", "served") },
    )
    .await;
    let gateway = lines("gateway");
    let access = gateway
        .iter()
        .find(|line| line["message"] == "proxied" && line["span"]["request_id"] == "follow-me-42")
        .unwrap_or_else(|| panic!("no access-log line for the request: {gateway:#?}"));
    assert_eq!(access["route"], "/login");
    assert_eq!(access["status"], 200);
    assert_eq!(access["upstream"], "writer");
    assert_eq!(access["address"], stack.writer_addrs[0].to_string());
    assert!(access["latency_ms"].as_f64().is_some());
    let writer = lines("writer");
    assert!(
        writer.iter().any(|line| line["span"]["request_id"] == "follow-me-42" && line["message"] == "served"),
        "the writer logged the same id"
    );
}

#[tokio::test]
async fn sighup_reloads_the_routes_and_sigterm_exits_cleanly() {
    let mut stack = TestStack::start();
    let admin = format!("http://{}/routes", stack.admin_addr);
    let (_, routes) = json(stack.client().get(&admin).send().await.expect("routes")).await;
    assert_eq!(routes["generation"], 1);
    stack.gateway.signal(nix::sys::signal::Signal::SIGHUP);
    wait::until(
        "SIGHUP to force a reload even when the file did not change",
        std::time::Duration::from_secs(3),
        || async {
            let (_, routes) = json(stack.client().get(&admin).send().await.expect("routes")).await;
            routes["generation"] == 2
        },
    )
    .await;
    let status = stack.gateway.stop().expect("the gateway exits on SIGTERM");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn browsers_get_pages_and_api_clients_keep_their_json() {
    const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let stack = TestStack::start();
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    let page = browser
        .get(stack.url("/login"))
        .header("accept", BROWSER)
        .send()
        .await
        .expect("login");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        policy.starts_with("default-src 'none'") && !policy.contains("unsafe-inline"),
        "{policy}"
    );
    let html = page.text().await.expect("html");
    assert!(!html.to_lowercase().contains("<script"), "no script at all");
    assert!(
        html.contains("<form method=\"post\" action=\"/increment\">"),
        "{html}"
    );

    // A form POST is answered with 303 to /, where the new count shows.
    let posted = browser
        .post(stack.url("/increment"))
        .header("accept", BROWSER)
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), 303);
    assert_eq!(posted.headers()["location"], "/");
    let home = browser
        .get(stack.url("/"))
        .header("accept", BROWSER)
        .send()
        .await
        .expect("home");
    assert!(
        home.text()
            .await
            .expect("html")
            .contains("<span id=\"count\">1</span>")
    );

    // The same browser session asked for JSON gets the contract's JSON.
    let (status, body) = json(browser.get(stack.url("/")).send().await.expect("json")).await;
    assert_eq!((status, body["count"].clone()), (200, json!(1)));
    let (status, body) = json(
        browser
            .get(stack.url("/"))
            .header("accept", "*/*")
            .send()
            .await
            .expect("json"),
    )
    .await;
    assert_eq!((status, body["count"].clone()), (200, json!(1)));

    // Logging out from the page, then the login prompt.
    let out = browser
        .post(stack.url("/logout"))
        .header("accept", BROWSER)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 303);
    let prompt = browser
        .get(stack.url("/"))
        .header("accept", BROWSER)
        .send()
        .await
        .expect("prompt");
    assert_eq!(prompt.status(), 401);
    assert!(
        prompt
            .text()
            .await
            .expect("html")
            .contains("href=\"/login\"")
    );
}

#[tokio::test]
async fn cookie_name_secure_and_same_site_follow_the_settings() {
    let stack = TestStack::start_with(
        Options::default()
            .env("SESSION_COOKIE_NAME", "__Host-session")
            .env("SESSION_COOKIE_SECURE", "true")
            .env("SESSION_COOKIE_SAMESITE", "strict"),
    );
    let login = stack
        .client()
        .get(stack.url("/login"))
        .send()
        .await
        .expect("login");
    let cookies = set_cookies(&login);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert!(cookie.starts_with("__Host-session="), "{cookie}");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing in {cookie}"
        );
    }
    // The reader reads the same cookie name.
    let value = cookie.split(';').next().expect("name=value");
    let read = stack
        .client()
        .get(stack.url("/"))
        .header("cookie", value)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);
    let other_name = value.replacen("__Host-session", "sid", 1);
    let read = stack
        .client()
        .get(stack.url("/"))
        .header("cookie", other_name)
        .send()
        .await
        .expect("read");
    assert_eq!(
        read.status(),
        401,
        "the default name is not accepted under another name"
    );
}

on_every_store!(
    login_count_increment_logout_walkthrough,
    anonymous_requests_are_401_and_store_nothing,
    replaying_a_logged_out_cookie_gets_401,
    login_renews_the_session_id_and_keeps_the_user,
    restarting_writer_and_reader_keeps_the_session,
    health_and_readiness,
);
