//! Real credentials (`AUTH_USERS_FILE`), logging out everywhere, the per-user cap, and sessions
//! carried in a header instead of a cookie.

use std::{io::Write, process::Stdio, time::Duration};

use serde_json::json;

use crate::helpers::{
    Options, StoreKind, TestStack, bin, json, reroute, session_cookie, set_cookies,
};

/// `writer hash-password`, fed on stdin.
fn hash(password: &str) -> String {
    let mut child = std::process::Command::new(bin("writer"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("writer hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write password");
    let output = child.wait_with_output().expect("output");
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

/// A stack whose writer knows alice ("wonderland") and bob ("builder").
fn with_users(options: Options) -> (TestStack, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("users.toml");
    std::fs::write(
        &file,
        format!(
            "[users.alice]\npassword_hash = \"{}\"\n\n[users.bob]\npassword_hash = \"{}\"\n",
            hash("wonderland"),
            hash("builder")
        ),
    )
    .expect("users file");
    let stack =
        TestStack::start_with(options.env("AUTH_USERS_FILE", file.to_str().expect("utf-8")));
    (stack, dir)
}

async fn password_login(stack: &TestStack, user: &str, password: &str) -> reqwest::Response {
    stack
        .client()
        .post(stack.url("/login"))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .expect("login")
}

/// Logs `user` in on a new "device"; returns its cookie.
async fn device(stack: &TestStack, user: &str, password: &str) -> String {
    let response = password_login(stack, user, password).await;
    assert_eq!(response.status(), 200);
    format!("sid={}", session_cookie(&response).expect("cookie"))
}

/// How many sessions the user's index lists.
async fn indexed_sessions(stack: &TestStack, user: &str) -> u64 {
    let mut redis = stack.redis().await;
    redis::cmd("ZCARD")
        .arg(format!("user:{{{user}}}:sessions"))
        .query_async(&mut redis)
        .await
        .expect("zcard")
}

/// The status of `GET path` with `cookie`.
async fn status(stack: &TestStack, path: &str, cookie: &str) -> u16 {
    stack.get_with_cookie(path, cookie).await.status().as_u16()
}

async fn credentials_log_in_and_a_wrong_pair_does_not_say_which_part(store: StoreKind) {
    let (stack, _users) = with_users(Options::default().store(store));
    let client = stack.client();

    let ok = password_login(&stack, "alice", "wonderland").await;
    let cookie = format!("sid={}", session_cookie(&ok).expect("cookie"));
    let (status, body) = json(ok).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({ "message": "you are now logged in", "user": { "id": "alice" } })
        )
    );
    let (status, body) = json(
        client
            .get(stack.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("read"),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": "alice" }, "count": 0 }))
    );

    let wrong_password = json(password_login(&stack, "alice", "nope").await).await;
    let unknown_user = json(password_login(&stack, "mallory", "wonderland").await).await;
    let expected = (401, json!({ "error": "invalid username or password" }));
    assert_eq!(wrong_password, expected);
    assert_eq!(unknown_user, expected);

    // A form works as well as JSON.
    let form = client
        .post(stack.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=bob&password=builder")
        .send()
        .await
        .expect("form login");
    let (status, body) = json(form).await;
    assert_eq!((status, body["user"]["id"].clone()), (200, json!("bob")));

    // A body over actix's payload limit is refused in JSON too, not actix's plain text.
    let huge = client
        .post(stack.url("/login"))
        .header("content-type", "application/json")
        .body(vec![b'a'; 400_000])
        .send()
        .await
        .expect("huge");
    let (status, body) = json(huge).await;
    assert_eq!(
        (status, body),
        (413, json!({ "error": "payload too large" }))
    );

    let empty = client
        .post(stack.url("/login"))
        .send()
        .await
        .expect("empty");
    assert_eq!(empty.status(), 400);
    let missing = client
        .post(stack.url("/login"))
        .json(&json!({ "username": "alice" }))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), 400);

    // GET /login is a form now, not an open door.
    let page = client.get(stack.url("/login")).send().await.expect("form");
    assert_eq!(page.status(), 200);
    assert!(
        set_cookies(&page).is_empty(),
        "showing the form logs nobody in"
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("<form method=\"post\" action=\"/login\">"),
        "{html}"
    );
}

/// A stack whose writer knows alice and bob, behind a load balancer the gateway trusts
/// (127.0.0.1): each test request can come from the client address it names.
async fn behind_a_balancer(store: StoreKind) -> (TestStack, tempfile::TempDir) {
    let (stack, users) = with_users(Options::default().store(store));
    let trusting = stack
        .routes()
        .setting("trusted_proxies = [\"127.0.0.1/32\"]");
    reroute(&stack, trusting).await;
    (stack, users)
}

/// A password login as the load balancer would forward it for `client` (in `X-Forwarded-For`),
/// with the browser's known-device cookie when it has one.
async fn login_from(
    stack: &TestStack,
    client: &str,
    device: Option<&str>,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let mut request = stack
        .client()
        .post(stack.url("/login"))
        .header("x-forwarded-for", client)
        .json(&json!({ "username": user, "password": password }));
    if let Some(device) = device {
        request = request.header("cookie", device);
    }
    request.send().await.expect("login")
}

/// The status of [`login_from`].
async fn status_from(
    stack: &TestStack,
    client: &str,
    device: Option<&str>,
    user: &str,
    password: &str,
) -> u16 {
    login_from(stack, client, device, user, password)
        .await
        .status()
        .as_u16()
}

/// Logs `user` in from `client`; returns the known-device cookie (`sid-device=…`) it gets.
async fn known_device(stack: &TestStack, client: &str, user: &str, password: &str) -> String {
    let response = login_from(stack, client, None, user, password).await;
    assert_eq!(response.status(), 200);
    let set = set_cookies(&response)
        .into_iter()
        .find(|cookie| cookie.starts_with("sid-device="))
        .expect("a known-device cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("Max-Age=7776000"), "90 days: {set}");
    set.split(';').next().expect("name=value").to_owned()
}

async fn a_guesser_locks_the_user_out_of_its_own_address_only(store: StoreKind) {
    let (stack, _users) = behind_a_balancer(store).await;
    let guesser = "203.0.113.9";
    for _ in 0..5 {
        assert_eq!(
            status_from(&stack, guesser, None, "alice", "guess").await,
            401
        );
    }
    let blocked = login_from(&stack, guesser, None, "alice", "wonderland").await;
    assert_eq!(blocked.status(), 429, "even the right password waits now");
    let retry_after: u64 = blocked.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let (_, body) = json(blocked).await;
    assert_eq!(
        body,
        json!({ "error": "too many failed logins, try again later" })
    );
    // A known-device cookie that is not one (forged, garbled) changes nothing.
    let forged = Some("sid-device=alice");
    assert_eq!(
        status_from(&stack, guesser, forged, "alice", "wonderland").await,
        429
    );
    // Alice from anywhere else, and anyone else from the guesser's address, still log in.
    assert_eq!(
        status_from(&stack, "198.51.100.1", None, "alice", "wonderland").await,
        200
    );
    assert_eq!(
        status_from(&stack, guesser, None, "bob", "builder").await,
        200
    );
    let keys = stack.redis_keys().await;
    for key in [
        "login-failures:{alice}:addr:203.0.113.9",
        "login-failures:{alice}",
        "login-failures:addr:203.0.113.9",
    ] {
        assert!(keys.contains(&key.to_owned()), "{key} in {keys:?}");
    }
    assert!(
        !keys
            .iter()
            .any(|key| key.starts_with("login-failures:addr:127.")),
        "failures counted against the balancer: {keys:?}"
    );
    // A claim to the left of what the balancer saw changes nothing.
    assert_eq!(
        status_from(&stack, "1.2.3.4, 203.0.113.9", None, "alice", "wonderland").await,
        429
    );
}

async fn a_guesser_with_many_addresses_cannot_lock_out_a_known_browser(store: StoreKind) {
    let (stack, _users) = behind_a_balancer(store).await;
    let alices_browser = known_device(&stack, "198.51.100.1", "alice", "wonderland").await;
    // 50 failures from ten addresses: the most strangers may spend on one user.
    for i in 0..50 {
        let guesser = format!("203.0.113.{}", i / 5);
        assert_eq!(
            status_from(&stack, &guesser, None, "alice", "guess").await,
            401
        );
    }
    // A new browser now waits, even one on an address that never failed…
    assert_eq!(
        status_from(&stack, "192.0.2.1", None, "alice", "wonderland").await,
        429
    );
    // …but alice's own browser logs in, from anywhere, even a guesser's address.
    let device = Some(alices_browser.as_str());
    assert_eq!(
        status_from(&stack, "192.0.2.1", device, "alice", "wonderland").await,
        200
    );
    assert_eq!(
        status_from(&stack, "203.0.113.0", device, "alice", "wonderland").await,
        200
    );
    // Alice's cookie does not let bob's guesser past bob's counters.
    for _ in 0..5 {
        assert_eq!(
            status_from(&stack, "203.0.113.0", device, "bob", "guess").await,
            401
        );
    }
    assert_eq!(
        status_from(&stack, "203.0.113.0", device, "bob", "builder").await,
        429
    );
}

async fn one_client_behind_a_shared_address_cannot_lock_out_the_others(store: StoreKind) {
    let (stack, _users) = behind_a_balancer(store).await;
    // An office behind one NAT address: bob has logged in from there before.
    let office = "203.0.113.9";
    let bobs_browser = known_device(&stack, office, "bob", "builder").await;
    // One client in the office fails 20 times over names (none reaches a per-user limit).
    for i in 0..20 {
        let user = format!("other{}", i % 5);
        assert_eq!(status_from(&stack, office, None, &user, "guess").await, 401);
    }
    // A browser new to the office waits; bob's does not.
    assert_eq!(
        status_from(&stack, office, None, "bob", "builder").await,
        429
    );
    assert_eq!(
        status_from(&stack, office, Some(&bobs_browser), "bob", "builder").await,
        200
    );
    // Twenty clients behind the balancer failing once each lock out no one.
    for i in 0..20 {
        let client = format!("198.51.100.{i}");
        let user = format!("user{}", i % 5);
        assert_eq!(
            status_from(&stack, &client, None, &user, "guess").await,
            401
        );
    }
    assert_eq!(
        status_from(&stack, "198.51.100.7", None, "bob", "builder").await,
        200
    );
}

async fn a_known_browser_that_guesses_loses_its_standing(store: StoreKind) {
    let (stack, _users) = behind_a_balancer(store).await;
    let client = "198.51.100.1";
    let cookie = known_device(&stack, client, "alice", "wonderland").await;
    let device = Some(cookie.as_str());
    // Its own 5 failures, then 5 more judged as a stranger's on this address…
    for _ in 0..10 {
        assert_eq!(
            status_from(&stack, client, device, "alice", "guess").await,
            401
        );
    }
    // …and it waits like a stranger would.
    assert_eq!(
        status_from(&stack, client, device, "alice", "wonderland").await,
        429
    );
    let keys = stack.redis_keys().await;
    assert!(
        keys.iter()
            .any(|key| key.starts_with("login-failures:{alice}:device:")),
        "{keys:?}"
    );
}

async fn logging_out_everywhere_ends_every_device_of_the_user(store: StoreKind) {
    let (stack, _users) = with_users(Options::default().store(store));
    let phones: Vec<String> =
        futures_util::future::join_all((0..3).map(|_| device(&stack, "alice", "wonderland"))).await;
    let bob = device(&stack, "bob", "builder").await;
    for phone in &phones {
        assert_eq!(status(&stack, "/", phone).await, 200);
    }

    let response = stack
        .client()
        .post(stack.url("/logout?everywhere=true"))
        .header("cookie", &phones[0])
        .send()
        .await
        .expect("logout everywhere");
    assert_eq!(response.status(), 200);
    for phone in &phones {
        assert_eq!(
            status(&stack, "/", phone).await,
            401,
            "every alice session ended"
        );
    }
    assert_eq!(status(&stack, "/", &bob).await, 200, "bob is not alice");
    let keys = stack.redis_keys().await;
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("{alice}") && !k.starts_with("login-failures")),
        "{keys:?}"
    );

    // The GET form works too.
    let again = device(&stack, "alice", "wonderland").await;
    assert_eq!(status(&stack, "/logout?everywhere=true", &again).await, 200);
    assert_eq!(status(&stack, "/", &again).await, 401);
}

async fn the_per_user_cap_ends_the_oldest_session(store: StoreKind) {
    let (stack, _users) = with_users(
        Options::default()
            .store(store)
            .env("SESSION_MAX_PER_USER", "2"),
    );
    let mut devices = Vec::new();
    for _ in 0..3 {
        devices.push(device(&stack, "alice", "wonderland").await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        status(&stack, "/", &devices[0]).await,
        401,
        "the oldest ended"
    );
    assert_eq!(status(&stack, "/", &devices[1]).await, 200);
    assert_eq!(status(&stack, "/", &devices[2]).await, 200);
    assert_eq!(indexed_sessions(&stack, "alice").await, 2);
}

/// Logins of one user at the same moment all change the one index, each after reading it: a
/// session indexed in between must neither make a login fail nor be lost from the index.
async fn concurrent_logins_of_one_user_all_succeed_and_are_all_indexed(store: StoreKind) {
    let (stack, _users) = with_users(Options::default().store(store));
    let logins =
        futures_util::future::join_all((0..12).map(|_| device(&stack, "alice", "wonderland")))
            .await;
    for cookie in &logins {
        assert_eq!(status(&stack, "/", cookie).await, 200);
    }
    assert_eq!(indexed_sessions(&stack, "alice").await, 12);
    // And logging out everywhere ends all twelve.
    assert_eq!(
        status(&stack, "/logout?everywhere=true", &logins[0]).await,
        200
    );
    for cookie in &logins {
        assert_eq!(status(&stack, "/", cookie).await, 401);
    }
}

async fn api_clients_keep_their_session_in_a_header(store: StoreKind) {
    let stack = TestStack::start_with(Options::default().store(store));
    let client = stack.client();
    let login = client
        .post(stack.url("/login?session=header"))
        .send()
        .await
        .expect("login");
    assert!(
        set_cookies(&login).is_empty(),
        "a header client gets no cookie"
    );
    let (status, body) = json(login).await;
    assert_eq!(status, 200);
    let token = body["session"]
        .as_str()
        .expect("the token is in the body")
        .to_owned();
    let user = body["user"]["id"].clone();

    let with = |path: &str| {
        client
            .get(stack.url(path))
            .header("authorization", format!("Session {token}"))
    };
    let (status, body) = json(with("/increment").send().await.expect("increment")).await;
    assert_eq!((status, body["count"].clone()), (200, json!(1)));
    let (status, body) = json(with("/").send().await.expect("read")).await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": user }, "count": 1 }))
    );

    // The header is explicit: another scheme is not a session, a bad token is 401.
    let bearer = client
        .get(stack.url("/"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("bearer");
    assert_eq!(bearer.status(), 401);
    let bad = client
        .get(stack.url("/"))
        .header("authorization", "Session garbage")
        .send()
        .await
        .expect("bad");
    assert_eq!(bad.status(), 401);

    // Browsers never see the token: a cookie login has no "session" in its body.
    let (_, body) = json(
        client
            .get(stack.url("/login"))
            .send()
            .await
            .expect("cookie login"),
    )
    .await;
    assert!(body.get("session").is_none(), "{body}");

    assert_eq!(with("/logout").send().await.expect("logout").status(), 200);
    assert_eq!(with("/").send().await.expect("after").status(), 401);
}

async fn the_session_header_is_configurable(store: StoreKind) {
    let stack = TestStack::start_with(
        Options::default()
            .store(store)
            .env("SESSION_HEADER", "x-session-id"),
    );
    let client = stack.client();
    let (_, body) = json(
        client
            .get(stack.url("/login?session=header"))
            .send()
            .await
            .expect("login"),
    )
    .await;
    let token = body["session"].as_str().expect("token").to_owned();
    let read = client
        .get(stack.url("/"))
        .header("x-session-id", &token)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);
    let other = client
        .get(stack.url("/"))
        .header("authorization", format!("Session {token}"))
        .send()
        .await
        .expect("read");
    assert_eq!(other.status(), 401, "only the configured header counts");
}

async fn a_header_token_from_an_old_secret_is_refreshed(store: StoreKind) {
    const NEW: &str = "the-new-secret-the-new-secret-the-new-0002";
    let mut stack = TestStack::start_with(Options::default().store(store));
    let client = stack.client();
    let (_, body) = json(
        client
            .get(stack.url("/login?session=header"))
            .send()
            .await
            .expect("login"),
    )
    .await;
    let old_token = body["session"].as_str().expect("token").to_owned();

    stack
        .restart_services_with(&[(
            "SESSION_SECRET",
            &format!("{NEW},{}", crate::helpers::SECRET),
        )])
        .await;
    let client = stack.client();
    let read = client
        .get(stack.url("/"))
        .header("authorization", format!("Session {old_token}"))
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);
    let new_token = read.headers()["x-session-token"]
        .to_str()
        .expect("refreshed token")
        .to_owned();
    assert_ne!(new_token, old_token);

    stack
        .restart_services_with(&[("SESSION_SECRET", NEW)])
        .await;
    let client = stack.client();
    let with = |token: &str| {
        client
            .get(stack.url("/"))
            .header("authorization", format!("Session {token}"))
    };
    assert_eq!(with(&new_token).send().await.expect("new").status(), 200);
    assert_eq!(with(&old_token).send().await.expect("old").status(), 401);
}

on_every_store!(
    credentials_log_in_and_a_wrong_pair_does_not_say_which_part,
    a_guesser_locks_the_user_out_of_its_own_address_only,
    a_guesser_with_many_addresses_cannot_lock_out_a_known_browser,
    one_client_behind_a_shared_address_cannot_lock_out_the_others,
    a_known_browser_that_guesses_loses_its_standing,
    logging_out_everywhere_ends_every_device_of_the_user,
    the_per_user_cap_ends_the_oldest_session,
    concurrent_logins_of_one_user_all_succeed_and_are_all_indexed,
    api_clients_keep_their_session_in_a_header,
    the_session_header_is_configurable,
    a_header_token_from_an_old_secret_is_refreshed,
);
