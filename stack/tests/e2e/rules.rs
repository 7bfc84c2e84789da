//! The session rules of DESIGN.md, each against a real redis-server and the real services.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use serde_json::json;
use session::{Keyring, SessionHandle, UserId};

use crate::helpers::{
    Options, SECRET, StoreKind, TestStack, command_calls, json, login, redis_info, session_cookie,
    set_cookies,
};

const NOT_LOGGED_IN: &str = "Please go \"log in!\" (set up your session)";

async fn concurrent_increments_over_two_writers_lose_no_update(store: StoreKind) {
    const N: i64 = 240;
    const CLIENTS: usize = 48;
    let stack = TestStack::start_with(Options::default().store(store).writers(2));
    let (cookie, user) = login(&stack).await;
    let client = stack.client();

    let counts: Vec<i64> = stream::iter(0..N)
        .map(|_| {
            let request = client
                .post(stack.url("/increment"))
                .header("cookie", &cookie);
            async move {
                let response = request.send().await.expect("increment");
                assert!(
                    set_cookies(&response).is_empty(),
                    "an increment sets no cookie"
                );
                let (status, body) = json(response).await;
                assert_eq!(status, 200, "{body}");
                body["count"].as_i64().expect("count")
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;

    let mut sorted = counts.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=N).collect::<Vec<_>>(),
        "every increment got its own count"
    );
    let (status, body) = json(stack.get_with_cookie("/", &cookie).await).await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": user }, "count": N }))
    );
    for log in ["writer.log", "writer2.log"] {
        let text = std::fs::read_to_string(stack.dir.path().join(log)).unwrap_or_default();
        assert!(
            text.contains("path=/increment"),
            "{log} served increments too"
        );
    }
}

async fn requests_racing_a_logout_never_bring_the_session_back(store: StoreKind) {
    let stack = TestStack::start_with(Options::default().store(store).writers(2));
    let client = stack.client();
    for round in 0..5 {
        let (cookie, _) = login(&stack).await;
        let racers = stream::iter(0..60)
            .map(|i| {
                let path = match i % 3 {
                    0 => "/",
                    _ => "/increment",
                };
                let request = client.post(stack.url(path)).header("cookie", &cookie);
                let request = if path == "/" {
                    client.get(stack.url(path)).header("cookie", &cookie)
                } else {
                    request
                };
                async move {
                    let response = request.send().await.expect("racer");
                    let cookies = set_cookies(&response);
                    (response.status().as_u16(), cookies)
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>();
        let logout = async {
            tokio::time::sleep(Duration::from_millis(5 * round)).await;
            client
                .get(stack.url("/logout"))
                .header("cookie", &cookie)
                .send()
                .await
                .expect("logout")
        };
        let (results, logout) = tokio::join!(racers, logout);
        assert_eq!(logout.status(), 200);
        for (status, cookies) in results {
            assert!(
                status == 200 || status == 401,
                "round {round}: status {status}"
            );
            assert!(
                cookies.is_empty(),
                "round {round}: a racer handed out a cookie: {cookies:?}"
            );
        }
        let after = stack.get_with_cookie("/", &cookie).await;
        assert_eq!(after.status(), 401, "round {round}: the session came back");
        let inc = stack.get_with_cookie("/increment", &cookie).await;
        assert_eq!(inc.status(), 401, "round {round}");
        assert!(
            stack.redis_keys().await.is_empty(),
            "round {round}: {:?}",
            stack.redis_keys().await
        );
    }
}

/// Cookie values that are not a session: each is answered 401 and costs no Redis command.
fn bad_cookies(valid: &str) -> Vec<(String, String)> {
    let value = valid.strip_prefix("sid=").expect("sid cookie");
    let mut flipped = value.as_bytes().to_vec();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    let other_key = Keyring::from_secrets("another-secret-another-secret-another-1").expect("key");
    let foreign = other_key.seal("sid", &SessionHandle::new(UserId::random(), None).encode());
    vec![
        ("empty".into(), "sid=".into()),
        ("garbage".into(), "sid=garbage".into()),
        (
            "truncated".into(),
            format!("sid={}", &value[..value.len() / 2]),
        ),
        (
            "one byte flipped".into(),
            format!("sid={}", String::from_utf8(flipped).expect("ascii")),
        ),
        ("4 KB".into(), format!("sid={}", "A".repeat(4096))),
        (
            "percent-encoded non-ASCII".into(),
            "sid=%C3%A9t%C3%A9%F0%9F%8D%AA".into(),
        ),
        (
            "duplicated name".into(),
            "sid=garbage; sid=other-garbage".into(),
        ),
        (
            "sealed with another secret".into(),
            format!("sid={foreign}"),
        ),
        ("no value".into(), "sid".into()),
    ]
}

async fn bad_cookies_are_not_logged_in_and_never_reach_redis(store: StoreKind) {
    let stack = TestStack::start_with(Options::default().store(store));
    let (valid, _) = login(&stack).await;
    let keys_before = stack.redis_keys().await;
    let total = |info: Vec<(String, String)>| -> u64 {
        info.into_iter()
            .filter(|(k, _)| k == "total_commands_processed")
            .map(|(_, v)| v.parse::<u64>().expect("total_commands_processed"))
            .sum()
    };
    let before = total(redis_info(&stack, "stats").await);
    let mut requests = 0;
    for (what, cookie) in bad_cookies(&valid) {
        for (method, path) in [("GET", "/"), ("POST", "/increment"), ("GET", "/increment")] {
            let response = stack
                .client()
                .request(method.parse().expect("method"), stack.url(path))
                .header("cookie", &cookie)
                .send()
                .await
                .expect("request");
            requests += 1;
            assert!(
                set_cookies(&response).is_empty(),
                "{what}: no cookie for strangers"
            );
            let (status, body) = json(response).await;
            assert_eq!(
                (status, body),
                (401, json!({ "message": NOT_LOGGED_IN, "login": "/login" })),
                "{what} on {method} {path}"
            );
        }
    }
    // Non-ASCII bytes straight in the header (obs-text): still just "not logged in".
    let raw = reqwest::header::HeaderValue::from_bytes(b"sid=\xc3\xa9\xff\xfe").expect("obs-text");
    let response = stack
        .client()
        .get(stack.url("/"))
        .header("cookie", raw)
        .send()
        .await
        .expect("raw");
    assert_eq!(response.status(), 401);

    let after = total(redis_info(&stack, "stats").await);
    // The only commands in between are the first INFO calls themselves, one per server.
    assert_eq!(
        after - before,
        stack.redis.nodes().len() as u64,
        "{requests} requests with bad cookies reached Redis"
    );
    assert_eq!(
        stack.redis_keys().await,
        keys_before,
        "nothing created or changed"
    );
}

async fn a_planted_or_unknown_session_id_is_never_adopted(store: StoreKind) {
    let stack = TestStack::start_with(Options::default().store(store));
    let keyring = Keyring::from_secrets(SECRET).expect("test secret");
    let planted = SessionHandle::new(UserId::random(), None);
    let cookie = format!("sid={}", keyring.seal("sid", &planted.encode()));

    let response = stack.get_with_cookie("/", &cookie).await;
    assert_eq!(
        response.status(),
        401,
        "a well-formed id nobody logged in with is not a session"
    );
    let login = stack.get_with_cookie("/login", &cookie).await;
    let new_cookie = session_cookie(&login).expect("a cookie");
    let opened = keyring
        .open("sid", &decode_cookie(&new_cookie))
        .expect("sealed by us");
    let handle = SessionHandle::decode(&opened.plaintext).expect("a handle");
    assert_ne!(handle.id(), planted.id(), "the server chose a new id");
    assert_ne!(
        handle.user(),
        planted.user(),
        "the stale cookie's user was not adopted"
    );
    let keys = stack.redis_keys().await;
    assert!(
        keys.iter().all(|key| !key.contains(planted.id().as_str())),
        "{keys:?}"
    );
}

/// actix-session percent-encodes `/` and `=` in the cookie it sets.
fn decode_cookie(value: &str) -> String {
    value
        .replace("%2F", "/")
        .replace("%3D", "=")
        .replace("%2B", "+")
}

async fn idle_sessions_expire_and_each_use_extends_them(store: StoreKind) {
    let stack = TestStack::start_with(Options::default().store(store).env("SESSION_TTL", "2"));
    let (cookie, _) = login(&stack).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let read = stack.get_with_cookie("/", &cookie).await;
        assert!(
            set_cookies(&read).is_empty(),
            "the reader needs no cookie to keep a session"
        );
        assert_eq!(
            read.status(),
            200,
            "used within the idle timeout: still alive"
        );
    }
    // 3.6 s after login, alive; now leave it idle.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        stack.get_with_cookie("/", &cookie).await.status(),
        401,
        "idle longer than SESSION_TTL"
    );
    assert!(
        stack
            .redis_keys()
            .await
            .iter()
            .all(|key| !key.starts_with("session:"))
    );
}

async fn the_absolute_lifetime_caps_every_extension(store: StoreKind) {
    let stack = TestStack::start_with(
        Options::default()
            .store(store)
            .env("SESSION_TTL", "2")
            .env("SESSION_MAX_AGE", "3"),
    );
    let (cookie, _) = login(&stack).await;
    let started = Instant::now();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            stack.get_with_cookie("/increment", &cookie).await.status(),
            200
        );
    }
    tokio::time::sleep(
        Duration::from_secs(3).saturating_sub(started.elapsed()) + Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        stack.get_with_cookie("/", &cookie).await.status(),
        401,
        "past SESSION_MAX_AGE"
    );
}

async fn a_read_and_an_increment_each_cost_one_redis_command(store: StoreKind) {
    const N: usize = 10;
    let stack = TestStack::start_with(Options::default().store(store));
    let (cookie, _) = login(&stack).await;
    // Warm up: the first script call on a connection also loads the script.
    stack.get_with_cookie("/increment", &cookie).await;
    stack.get_with_cookie("/", &cookie).await;

    let mut monitors = Vec::new();
    for node in stack.redis.nodes() {
        let client = redis::Client::open(node.url()).expect("url");
        monitors.push(client.get_async_monitor().await.expect("MONITOR"));
    }
    let before = command_calls(&stack).await;
    for _ in 0..N {
        assert_eq!(stack.get_with_cookie("/", &cookie).await.status(), 200);
    }
    let middle = command_calls(&stack).await;
    for _ in 0..N {
        assert_eq!(
            stack.get_with_cookie("/increment", &cookie).await.status(),
            200
        );
    }
    let after = command_calls(&stack).await;

    let calls = |stats: &std::collections::HashMap<String, u64>, name: &str| {
        stats.get(name).copied().unwrap_or(0)
    };
    // Reads: GETEX only. INFO is the test's own command; a service worker that opens its
    // connection during the measurement sends the handshake once per connection, not per
    // request (HELLO for RESP3, and CLIENT SETINFO on Redis 7.2 and later).
    let per_request = |stats: &std::collections::HashMap<String, u64>| -> u64 {
        stats
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "info" | "hello" | "client|setinfo"))
            .map(|(_, n)| n)
            .sum()
    };
    let reads = per_request(&middle) - per_request(&before);
    assert_eq!(calls(&middle, "getex") - calls(&before, "getex"), N as u64);
    assert_eq!(reads, N as u64, "{N} reads = {N} commands in all");
    assert_eq!(
        calls(&after, "evalsha") - calls(&middle, "evalsha"),
        N as u64,
        "one script per increment"
    );

    // What the services sent, as seen by MONITOR: one command per request, scripts' inner
    // calls aside.
    let mut lines: Vec<String> = Vec::new();
    for monitor in &mut monitors {
        lines.extend(
            monitor
                .on_message::<String>()
                .take_until(tokio::time::sleep(Duration::from_millis(500)))
                .collect::<Vec<_>>()
                .await,
        );
    }
    let sent: Vec<&String> = lines
        .iter()
        .filter(|line| {
            let lower = line.to_lowercase();
            !line.contains("[0 lua]")
                && !lower.contains("\"info\"")
                && !lower.contains("\"hello\"")
                && !lower.contains("\"setinfo\"")
        })
        .collect();
    assert_eq!(sent.len(), 2 * N, "{sent:#?}");
    assert_eq!(
        sent.iter()
            .filter(|l| l.to_lowercase().contains("\"getex\""))
            .count(),
        N
    );
    assert_eq!(
        sent.iter()
            .filter(|l| l.to_lowercase().contains("\"evalsha\""))
            .count(),
        N
    );
}

async fn a_session_kept_alive_by_reads_keeps_its_index_alive(store: StoreKind) {
    // A 2 s idle timeout, read every 0.7 s: 1.3 s of margin for a busy machine.
    let stack = TestStack::start_with(Options::default().store(store).env("SESSION_TTL", "2"));
    let (cookie, user) = login(&stack).await;
    let index = format!("user:{{{user}}}:sessions");
    let mut connection = stack.redis().await;
    // Reads only, for about 2.5 idle timeouts: longer than the index's slack.
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(stack.get_with_cookie("/", &cookie).await.status(), 200);
        let keys = stack.redis_keys().await;
        let session = keys
            .iter()
            .find(|k| k.starts_with("session:"))
            .expect("session key")
            .clone();
        let session_ttl: i64 = redis::cmd("PTTL")
            .arg(&session)
            .query_async(&mut connection)
            .await
            .expect("pttl");
        let index_ttl: i64 = redis::cmd("PTTL")
            .arg(&index)
            .query_async(&mut connection)
            .await
            .expect("pttl");
        assert!(
            index_ttl >= session_ttl,
            "index {index_ttl} ms < session {session_ttl} ms"
        );
    }
}

#[tokio::test]
async fn the_first_requests_after_an_idle_redis_restart_succeed() {
    let mut stack = TestStack::start();
    let (cookie, _) = login(&stack).await;
    // Every worker of both services has a connection to Redis.
    for _ in 0..8 {
        assert_eq!(stack.get_with_cookie("/", &cookie).await.status(), 200);
        assert_eq!(
            stack.get_with_cookie("/increment", &cookie).await.status(),
            200
        );
    }
    // A maintenance restart while nobody uses the site: Redis closes every connection.
    stack.redis.single().restart().expect("redis restarts");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Enough requests to reach every worker; not one may fail. (A command sent on the
    // connection Redis closed failed with "broken pipe", and a login is not retried.)
    // (The test's Redis keeps nothing on disk, so sessions start again after the restart.)
    for attempt in 0..8 {
        let (status, body) = json(stack.get_with_cookie("/", &cookie).await).await;
        assert_eq!(
            status, 401,
            "read {attempt} of a session Redis forgot: {body}"
        );
        let (status, body) = json(stack.get_with_cookie("/login", "").await).await;
        assert_eq!(status, 200, "login {attempt}: {body}");
        let (fresh, _) = login(&stack).await;
        let (status, body) = json(stack.get_with_cookie("/increment", &fresh).await).await;
        assert_eq!(status, 200, "increment {attempt}: {body}");
    }
}

/// The connections die while the site is idle and their reconnection fails with something
/// other than "refused" (here: Redis accepts, but a pause holds the handshake past its timeout;
/// likewise a reset, or a Redis still starting). When Redis is fine again, the first script
/// (an increment, a login) must not meet that stale error: it cannot be retried once it may
/// have been sent, so a verified connection must be in place before it goes out.
#[tokio::test]
async fn a_reconnection_that_failed_while_idle_costs_no_request() {
    let stack = TestStack::start();
    let (cookie, _) = login(&stack).await;
    for _ in 0..8 {
        assert_eq!(stack.get_with_cookie("/", &cookie).await.status(), 200);
        assert_eq!(
            stack.get_with_cookie("/increment", &cookie).await.status(),
            200
        );
    }
    // In one round trip: close every service connection, then hold every client for 2.5 s.
    // The services hear of the close at once and reconnect into the pause.
    let mut redis = stack.redis().await;
    let _: () = redis::pipe()
        .cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .ignore()
        .cmd("CLIENT")
        .arg(&["PAUSE", "2500", "ALL"])
        .ignore()
        .query_async(&mut redis)
        .await
        .expect("kill and pause");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for attempt in 0..8 {
        let (status, body) = json(stack.get_with_cookie("/increment", &cookie).await).await;
        assert_eq!(status, 200, "increment {attempt}: {body}");
        let (status, body) = json(stack.get_with_cookie("/login", "").await).await;
        assert_eq!(status, 200, "login {attempt}: {body}");
    }
}

#[tokio::test]
async fn with_redis_down_services_answer_503_fast_and_recover_by_themselves() {
    let mut stack = TestStack::start();
    let (cookie, _) = login(&stack).await;
    stack.redis.single().stop();

    for (path, with_cookie) in [
        ("/", true),
        ("/increment", true),
        ("/login", false),
        ("/login", true),
        ("/logout", true),
    ] {
        let started = Instant::now();
        let cookie = if with_cookie { cookie.as_str() } else { "" };
        let response = stack.get_with_cookie(path, cookie).await;
        let elapsed = started.elapsed();
        let (status, body) = json(response).await;
        assert_eq!(
            (status, body),
            (503, json!({ "error": "session store unavailable" })),
            "{path} (cookie: {with_cookie})"
        );
        assert!(elapsed < Duration::from_secs(2), "{path} took {elapsed:?}");
    }
    let client = stack.client();
    for addr in [stack.writer_addrs[0], stack.reader_addr] {
        let health = client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200, "{addr} is alive");
        let ready = client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 503, "{addr} is not ready");
    }

    stack.redis.single().restart().expect("redis comes back");
    // The very first requests after Redis is back succeed: no polling until they do.
    for attempt in 0..4 {
        let status = stack.get_with_cookie("/login", "").await.status();
        assert_eq!(status, 200, "login {attempt} after Redis returned");
    }
    let (cookie, user) = login(&stack).await;
    let (status, body) = json(stack.get_with_cookie("/", &cookie).await).await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": user }, "count": 0 }))
    );
    for addr in [stack.writer_addrs[0], stack.reader_addr] {
        let ready = client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 200, "{addr} is ready again");
    }
}

async fn rotating_the_secret_keeps_sessions_that_are_used(store: StoreKind) {
    const OLD: &str = SECRET;
    const NEW: &str = "the-new-secret-the-new-secret-the-new-0002";
    let mut stack = TestStack::start_with(Options::default().store(store));
    let (used, user) = login(&stack).await;
    let (unused, _) = login(&stack).await;

    // Rotation: new first, old still accepted.
    stack
        .restart_services_with(&[("SESSION_SECRET", &format!("{NEW},{OLD}"))])
        .await;
    let read = stack.get_with_cookie("/", &used).await;
    let resealed = format!(
        "sid={}",
        session_cookie(&read).expect("the old cookie is sealed again")
    );
    let (status, body) = json(read).await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": user }, "count": 0 }))
    );
    let new_key = Keyring::from_secrets(NEW).expect("key");
    let value = decode_cookie(resealed.strip_prefix("sid=").expect("sid"));
    assert!(
        new_key.open("sid", &value).is_some(),
        "resealed with the new secret"
    );
    let (fresh, _) = login(&stack).await;
    let fresh_value = decode_cookie(fresh.strip_prefix("sid=").expect("sid"));
    assert!(
        new_key.open("sid", &fresh_value).is_some(),
        "new cookies use the new secret"
    );

    // The old secret is dropped: only the session never seen since is logged out.
    stack
        .restart_services_with(&[("SESSION_SECRET", NEW)])
        .await;
    let (status, body) = json(stack.get_with_cookie("/", &resealed).await).await;
    assert_eq!(
        (status, body),
        (200, json!({ "user": { "id": user }, "count": 0 }))
    );
    assert_eq!(stack.get_with_cookie("/", &fresh).await.status(), 200);
    assert_eq!(stack.get_with_cookie("/", &unused).await.status(), 401);
    assert_eq!(
        stack.get_with_cookie("/", &used).await.status(),
        401,
        "the old cookie value itself is dead"
    );
}

async fn killing_one_of_two_writers_mid_load_fails_at_most_the_requests_in_flight(
    store: StoreKind,
) {
    const CLIENTS: usize = 16;
    let mut stack = TestStack::start_with(Options::default().store(store).writers(2));
    let (cookie, user) = login(&stack).await;
    let client = stack.client();
    let url = stack.url("/increment");
    let done = std::sync::atomic::AtomicUsize::new(0);
    let load = stream::iter(0..1500)
        .map(|_| {
            let request = client.post(&url).header("cookie", &cookie);
            let done = &done;
            async move {
                let status = request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                status
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<u16>>();
    let second_writer = &mut stack.writers[1];
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        second_writer.kill();
        done.load(std::sync::atomic::Ordering::SeqCst)
    };
    let (statuses, done_at_kill) = tokio::join!(load, kill);
    assert!(
        done_at_kill > 0 && done_at_kill < statuses.len(),
        "the kill came while the load ran ({done_at_kill} of {} answered)",
        statuses.len()
    );
    let succeeded = statuses.iter().filter(|s| **s == 200).count();
    let failed = statuses.len() - succeeded;
    assert!(
        failed <= CLIENTS,
        "{failed} failures with {CLIENTS} requests in flight"
    );
    // Every answered increment counted; a failed one may or may not have reached Redis.
    let (status, body) = json(stack.get_with_cookie("/", &cookie).await).await;
    assert_eq!((status, body["user"]["id"].clone()), (200, json!(user)));
    let count = usize::try_from(body["count"].as_i64().expect("count")).expect("positive");
    assert!(
        (succeeded..=succeeded + failed).contains(&count),
        "count {count}, succeeded {succeeded}, failed {failed}"
    );
}

on_every_store!(
    concurrent_increments_over_two_writers_lose_no_update,
    requests_racing_a_logout_never_bring_the_session_back,
    bad_cookies_are_not_logged_in_and_never_reach_redis,
    a_planted_or_unknown_session_id_is_never_adopted,
    idle_sessions_expire_and_each_use_extends_them,
    the_absolute_lifetime_caps_every_extension,
    a_read_and_an_increment_each_cost_one_redis_command,
    a_session_kept_alive_by_reads_keeps_its_index_alive,
    rotating_the_secret_keeps_sessions_that_are_used,
    killing_one_of_two_writers_mid_load_fails_at_most_the_requests_in_flight,
);
