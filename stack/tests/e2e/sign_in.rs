//! Sign-in with an identity provider (`AUTH_PROVIDERS_FILE`), against [`FakeIdp`], a provider
//! the test controls: the flow, who you are afterwards, each way a sign-in can go wrong (and
//! that none of them stores anything), key rotation, a provider that is down, two providers at
//! once, back-channel logout and the sessions page.
//!
//! The browser sees the stack at `PUBLIC_URL` = `http://one-origin.test`; the tests send what
//! the provider redirects there to the gateway (see [`Flow::at_gateway`]).

use std::time::Duration;

use reqwest::{StatusCode, header};
use serde_json::Value;

use crate::helpers::{
    FakeIdp, Options, Person, StoreKind, Tamper, TestStack, command_calls, json, wait,
};

pub(crate) const PUBLIC_URL: &str = "http://one-origin.test";
pub(crate) const CLIENT_ID: &str = "one-origin";
pub(crate) const CLIENT_SECRET: &str = "a-test-client-secret";

/// A stack whose writer signs in with `providers` (name, issuer, extra lines); `door.rs` signs
/// its users in with it too.
pub(crate) struct Flow {
    pub(crate) stack: TestStack,
    _dir: tempfile::TempDir,
}

impl Flow {
    pub(crate) fn start(store: StoreKind, providers: &[(&str, String, &str)]) -> Self {
        Self::start_with(store, providers, &[])
    }

    fn start_with(
        store: StoreKind,
        providers: &[(&str, String, &str)],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("providers.toml");
        let mut text = String::new();
        for (name, issuer, extra) in providers {
            text.push_str(&format!(
                "[providers.{name}]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\n\
                 client_secret = \"${{IDP_SECRET}}\"\nlabel = \"Sign in with {name}\"\n\
                 scopes = [\"email\", \"profile\", \"groups\"]\ngroups_claim = \"groups\"\n{extra}\n\n"
            ));
        }
        std::fs::write(&file, text).expect("providers file");
        let mut options = Options::default()
            .store(store)
            .env("AUTH_PROVIDERS_FILE", file.to_str().expect("utf-8"))
            .env("PUBLIC_URL", PUBLIC_URL)
            .env("IDP_SECRET", CLIENT_SECRET);
        for (name, value) in env {
            options = options.env(name, value);
        }
        let stack = TestStack::start_with(options);
        Self { stack, _dir: dir }
    }

    /// `url` with the public origin replaced by the gateway's.
    pub(crate) fn at_gateway(&self, url: &str) -> String {
        match url.strip_prefix(PUBLIC_URL) {
            Some(path) => self.stack.url(path),
            None => url.to_owned(),
        }
    }

    /// Waits until the login page offers `provider`'s button (discovery happened).
    pub(crate) async fn until_available(&self, provider: &str) {
        let button = format!("href=\"/login/{provider}\"");
        wait::until("the provider's button", Duration::from_secs(20), || async {
            page(&browser(), &self.stack.url("/login"))
                .await
                .1
                .contains(&button)
        })
        .await;
    }

    /// `GET /login/<provider>` and the provider's redirect back: the callback URL (at the
    /// gateway), which `client` has not visited yet.
    async fn to_callback(&self, client: &reqwest::Client, provider: &str) -> String {
        let start = client
            .get(self.stack.url(&format!("/login/{provider}")))
            .send()
            .await
            .expect("start");
        assert_eq!(start.status(), StatusCode::FOUND);
        let authorize = location(&start);
        let back = client.get(&authorize).send().await.expect("authorize");
        assert_eq!(back.status(), StatusCode::FOUND, "{authorize}");
        let callback = location(&back);
        assert!(callback.starts_with(PUBLIC_URL), "{callback}");
        self.at_gateway(&callback)
    }

    /// A whole sign-in: the callback's answer.
    pub(crate) async fn sign_in(
        &self,
        client: &reqwest::Client,
        provider: &str,
    ) -> reqwest::Response {
        let callback = self.to_callback(client, provider).await;
        client.get(callback).send().await.expect("callback")
    }

    /// Every session and user key in Redis.
    async fn session_keys(&self) -> Vec<String> {
        self.stack
            .redis_keys()
            .await
            .into_iter()
            .filter(|key| key.starts_with("session:") || key.starts_with("user:"))
            .collect()
    }
}

/// One browser: its own cookies, redirects not followed (the test follows them).
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub(crate) fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .expect("a Location")
        .to_owned()
}

/// Status and body of a page asked for as a browser does.
async fn page(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let response = client
        .get(url)
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .expect("page");
    (response.status(), response.text().await.expect("body"))
}

pub(crate) async fn whoami(flow: &Flow, client: &reqwest::Client) -> (u16, Value) {
    json(
        client
            .get(flow.stack.url("/"))
            .send()
            .await
            .expect("whoami"),
    )
    .await
}

fn ann() -> Person {
    Person::new("ann-248289761001", "Ann Lee", &["staff", "admins"])
}

async fn a_provider_sign_in_starts_a_session_that_knows_the_person(store: StoreKind) {
    let idp = FakeIdp::start(CLIENT_ID, ann()).await;
    let flow = Flow::start(store, &[("corp", idp.issuer(), "")]);
    flow.until_available("corp").await;

    let laptop = browser();
    let done = flow.sign_in(&laptop, "corp").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/");
    let (status, body) = whoami(&flow, &laptop).await;
    assert_eq!(status, 200, "{body}");
    let user = &body["user"];
    assert_eq!(user["name"], "Ann Lee");
    assert_eq!(user["email"], "ann-248289761001@example.com");
    assert_eq!(user["groups"], serde_json::json!(["staff", "admins"]));
    assert_eq!(user["provider"], "corp");
    assert_eq!(body["count"], 0);
    let id = user["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("oidc."), "{id}");
    let (_, html) = page(&laptop, &flow.stack.url("/")).await;
    assert!(html.contains("<span id=\"name\">Ann Lee</span>"), "{html}");

    // The same person on another device is the same user; the door check says who it is.
    let phone = browser();
    flow.sign_in(&phone, "corp").await;
    let (_, body) = whoami(&flow, &phone).await;
    assert_eq!(body["user"]["id"], id.as_str());
    let check = phone
        .get(format!("http://{}/session", flow.stack.reader_addr))
        .send()
        .await
        .expect("check");
    assert_eq!(check.status(), StatusCode::NO_CONTENT);
    let header = |name: &str| {
        check
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("x-user-id").as_deref(), Some(id.as_str()));
    assert_eq!(header("x-user-name").as_deref(), Some("Ann Lee"));
    assert_eq!(header("x-user-groups").as_deref(), Some("staff,admins"));

    // `next` is followed when it is a path here, never to another origin.
    let client = browser();
    for (next, expected) in [
        ("/account?tab=1", "/account?tab=1"),
        ("https://evil.example/", "/"),
    ] {
        let start = client
            .get(flow.stack.url("/login/corp"))
            .query(&[("next", next)])
            .send()
            .await
            .expect("start");
        let back = client
            .get(location(&start))
            .send()
            .await
            .expect("authorize");
        let done = client
            .get(flow.at_gateway(&location(&back)))
            .send()
            .await
            .expect("callback");
        assert_eq!(location(&done), expected, "next={next}");
    }

    // Knowing the person costs the reads nothing: a read of `/` is still one GETEX.
    const N: u64 = 5;
    whoami(&flow, &phone).await;
    let before = command_calls(&flow.stack).await;
    for _ in 0..N {
        assert_eq!(whoami(&flow, &phone).await.0, 200);
    }
    let after = command_calls(&flow.stack).await;
    let spent: Vec<(String, u64)> = after
        .iter()
        .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
        .filter(|(name, n)| *n > 0 && !matches!(name.as_str(), "info" | "hello" | "client|setinfo"))
        .collect();
    assert_eq!(spent, vec![("getex".to_owned(), N)], "one GETEX per read");
}

async fn a_callback_that_this_browser_did_not_start_is_400_and_stores_nothing(store: StoreKind) {
    let idp = FakeIdp::start(CLIENT_ID, ann()).await;
    let flow = Flow::start(store, &[("corp", idp.issuer(), "")]);
    flow.until_available("corp").await;
    let expect_400 = |response: reqwest::Response, why: &'static str| async move {
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{why}");
        let html = response.text().await.expect("body");
        assert!(html.contains("id=\"error\""), "{why}: {html}");
    };

    // No state at all.
    let client = browser();
    let no_state = client
        .get(flow.stack.url("/login/corp/callback?code=x"))
        .send()
        .await
        .expect("callback");
    expect_400(no_state, "no state").await;

    // Another browser presents the callback: the binding cookie is missing.
    let victim = browser();
    let callback = flow.to_callback(&victim, "corp").await;
    let attacker = browser();
    expect_400(
        attacker.get(&callback).send().await.expect("callback"),
        "other browser",
    )
    .await;
    // ... and the state is spent: the browser that started it cannot use it either.
    expect_400(
        victim.get(&callback).send().await.expect("callback"),
        "spent",
    )
    .await;

    // A state used once is not accepted again.
    let once = browser();
    let callback = flow.to_callback(&once, "corp").await;
    assert_eq!(
        once.get(&callback).send().await.expect("first").status(),
        StatusCode::SEE_OTHER
    );
    let signed_in = flow.session_keys().await;
    expect_400(
        once.get(&callback).send().await.expect("replay"),
        "replayed",
    )
    .await;
    assert_eq!(
        flow.session_keys().await,
        signed_in,
        "a replay stores nothing"
    );

    // An unknown (or expired: Redis forgot it) state.
    let forged = callback.replace("state=", "state=forged");
    expect_400(
        once.get(&forged).send().await.expect("forged"),
        "unknown state",
    )
    .await;

    let fresh = Flow::start(store, &[("corp", idp.issuer(), "")]);
    fresh.until_available("corp").await;
    let client = browser();
    let callback = fresh.to_callback(&client, "corp").await;
    let other = browser();
    let _ = other.get(&callback).send().await;
    assert!(
        fresh.session_keys().await.is_empty(),
        "{:?}",
        fresh.session_keys().await
    );
}

async fn an_id_token_that_fails_a_check_is_401_and_stores_nothing(store: StoreKind) {
    let idp = FakeIdp::start(CLIENT_ID, ann()).await;
    let flow = Flow::start(store, &[("corp", idp.issuer(), "")]);
    flow.until_available("corp").await;
    for tamper in [
        Tamper::BadSignature,
        Tamper::WrongAudience,
        Tamper::Stale,
        Tamper::WrongNonce,
    ] {
        idp.tamper(tamper);
        let client = browser();
        let done = flow.sign_in(&client, "corp").await;
        assert_eq!(done.status(), StatusCode::UNAUTHORIZED, "{tamper:?}");
        let html = done.text().await.expect("body");
        assert!(html.contains("could not be verified"), "{tamper:?}: {html}");
        assert_eq!(whoami(&flow, &client).await.0, 401, "{tamper:?}");
    }
    assert!(
        flow.session_keys().await.is_empty(),
        "{:?}",
        flow.session_keys().await
    );
    // The same flow with an honest token works: the refusals were the token's.
    idp.tamper(Tamper::None);
    let client = browser();
    assert_eq!(
        flow.sign_in(&client, "corp").await.status(),
        StatusCode::SEE_OTHER
    );
}

async fn allowed_groups_let_only_members_sign_in(store: StoreKind) {
    let idp = FakeIdp::start(CLIENT_ID, Person::new("bob", "Bob", &["contractors"])).await;
    let flow = Flow::start(
        store,
        &[("corp", idp.issuer(), "allowed_groups = [\"staff\"]")],
    );
    flow.until_available("corp").await;
    let client = browser();
    let refused = flow.sign_in(&client, "corp").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.expect("body").contains("not allowed"));
    assert!(flow.session_keys().await.is_empty());

    idp.set_person(Person::new("carol", "Carol", &["staff"]));
    assert_eq!(
        flow.sign_in(&client, "corp").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(whoami(&flow, &client).await.1["user"]["name"], "Carol");
}

async fn two_providers_at_once_are_two_buttons_and_two_users(store: StoreKind) {
    let corp = FakeIdp::start(CLIENT_ID, ann()).await;
    let partner = FakeIdp::start(CLIENT_ID, ann()).await;
    let flow = Flow::start(
        store,
        &[
            ("corp", corp.issuer(), ""),
            ("partner", partner.issuer(), ""),
        ],
    );
    flow.until_available("corp").await;
    flow.until_available("partner").await;
    let (_, html) = page(&browser(), &flow.stack.url("/login")).await;
    assert!(
        html.contains("Sign in with corp") && html.contains("Sign in with partner"),
        "{html}"
    );
    assert!(
        !html.contains("name=\"password\""),
        "no password form without AUTH_USERS_FILE"
    );

    let (a, b) = (browser(), browser());
    flow.sign_in(&a, "corp").await;
    flow.sign_in(&b, "partner").await;
    let (_, at_corp) = whoami(&flow, &a).await;
    let (_, at_partner) = whoami(&flow, &b).await;
    assert_eq!(at_corp["user"]["provider"], "corp");
    assert_eq!(at_partner["user"]["provider"], "partner");
    // The same `sub` at another issuer is someone else.
    assert_ne!(at_corp["user"]["id"], at_partner["user"]["id"]);
}

async fn back_channel_logout_ends_the_users_sessions_and_a_bad_token_changes_nothing(
    store: StoreKind,
) {
    let idp = FakeIdp::start(CLIENT_ID, ann()).await;
    let flow = Flow::start(store, &[("corp", idp.issuer(), "")]);
    flow.until_available("corp").await;
    let devices = [browser(), browser(), browser()];
    for device in &devices {
        flow.sign_in(device, "corp").await;
        assert_eq!(whoami(&flow, device).await.0, 200);
    }
    let post = |token: String| {
        let url = flow.stack.url("/logout/corp/backchannel");
        async move {
            json(
                browser()
                    .post(url)
                    .form(&[("logout_token", token)])
                    .send()
                    .await
                    .expect("backchannel"),
            )
            .await
        }
    };
    for (token, why) in [
        (
            idp.logout_token(true, Some("a-nonce"), Tamper::None),
            "nonce",
        ),
        (
            idp.logout_token(true, None, Tamper::BadSignature),
            "signature",
        ),
        (
            idp.logout_token(true, None, Tamper::WrongAudience),
            "audience",
        ),
        (idp.logout_token(true, None, Tamper::Stale), "stale"),
        ("not.a.token".to_owned(), "garbage"),
    ] {
        let (status, body) = post(token).await;
        assert_eq!(status, 400, "{why}: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("logout token")),
            "{why}: {body}"
        );
    }
    for device in &devices {
        assert_eq!(
            whoami(&flow, device).await.0,
            200,
            "a bad token ends nothing"
        );
    }
    let (status, body) = post(idp.logout_token(false, None, Tamper::None)).await;
    assert_eq!(
        (status, &body["ended"]),
        (200, &serde_json::json!(3)),
        "{body}"
    );
    for device in &devices {
        assert_eq!(
            whoami(&flow, device).await.0,
            401,
            "every device is logged out"
        );
    }
    // Idempotent: nothing left to end.
    assert_eq!(
        post(idp.logout_token(true, None, Tamper::None)).await.0,
        200
    );
}

async fn keys_rotated_at_the_provider_are_fetched_again(store: StoreKind) {
    let idp = FakeIdp::start(CLIENT_ID, ann()).await;
    let flow = Flow::start(store, &[("corp", idp.issuer(), "")]);
    flow.until_available("corp").await;
    assert_eq!(
        flow.sign_in(&browser(), "corp").await.status(),
        StatusCode::SEE_OTHER
    );
    idp.rotate_keys();
    let client = browser();
    assert_eq!(
        flow.sign_in(&client, "corp").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(whoami(&flow, &client).await.0, 200);
}

#[tokio::test]
async fn a_provider_down_at_start_or_during_a_sign_in_is_a_page_and_stores_nothing() {
    let idp = FakeIdp::start(CLIENT_ID, ann()).await;
    idp.set_down(true);
    let flow = Flow::start(StoreKind::Single, &[("corp", idp.issuer(), "")]);
    // The writer started anyway; the button says the provider is unavailable.
    let (status, html) = page(&browser(), &flow.stack.url("/login")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("unavailable right now"), "{html}");
    let (status, html) = page(&browser(), &flow.stack.url("/login/corp")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{html}");

    // Discovery is tried again until it works.
    idp.set_down(false);
    flow.until_available("corp").await;

    // Down between the redirect and the code exchange.
    let client = browser();
    let callback = flow.to_callback(&client, "corp").await;
    idp.set_down(true);
    let done = client.get(&callback).send().await.expect("callback");
    assert_eq!(done.status(), StatusCode::BAD_GATEWAY);
    assert!(done.text().await.expect("body").contains("did not answer"));
    assert!(flow.session_keys().await.is_empty());
}

#[tokio::test]
async fn the_sessions_page_lists_and_ends_sessions() {
    let idp = FakeIdp::start(CLIENT_ID, ann()).await;
    let flow = Flow::start(StoreKind::Single, &[("corp", idp.issuer(), "")]);
    flow.until_available("corp").await;
    let (laptop, phone, tablet) = (browser(), browser(), browser());
    for device in [&laptop, &phone, &tablet] {
        flow.sign_in(device, "corp").await;
    }
    let list = |client: reqwest::Client| {
        let url = flow.stack.url("/sessions");
        async move { json(client.get(url).send().await.expect("list")).await }
    };
    let (status, body) = list(laptop.clone()).await;
    assert_eq!(status, 200, "{body}");
    let sessions = body["sessions"].as_array().expect("sessions").clone();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    for session in &sessions {
        assert_eq!(session["signed_in_with"], "corp");
        assert_eq!(session["address"], "127.0.0.1");
        assert_eq!(session["handle"].as_str().map(str::len), Some(12));
    }
    // The page never shows a session id (64 hex digits), only handles.
    let (_, html) = page(&laptop, &flow.stack.url("/sessions")).await;
    assert!(html.contains("this session"), "{html}");
    let cookie_ids: Vec<String> = flow.session_keys().await;
    for key in cookie_ids.iter().filter(|key| key.starts_with("session:")) {
        let id = key.rsplit(':').next().expect("an id");
        assert!(!html.contains(id), "the page shows a session id");
    }

    // Ending the phone's session from the laptop.
    let (_, phone_view) = list(phone.clone()).await;
    let phone_handle = phone_view["sessions"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["current"] == true))
        .and_then(|s| s["handle"].as_str())
        .expect("the phone's handle")
        .to_owned();
    let ended = laptop
        .post(flow.stack.url(&format!("/sessions/{phone_handle}/end")))
        .send()
        .await
        .expect("end");
    assert_eq!(ended.status(), StatusCode::OK);
    assert_eq!(whoami(&flow, &phone).await.0, 401);
    assert_eq!(whoami(&flow, &tablet).await.0, 200);
    let again = laptop
        .post(flow.stack.url(&format!("/sessions/{phone_handle}/end")))
        .send()
        .await
        .expect("end again");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // Another site cannot end sessions.
    let cross = laptop
        .post(flow.stack.url("/sessions/others/end"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("cross-site");
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(whoami(&flow, &tablet).await.0, 200);

    let (status, body) = json(
        laptop
            .post(flow.stack.url("/sessions/others/end"))
            .send()
            .await
            .expect("end others"),
    )
    .await;
    assert_eq!(
        (status, &body["ended"]),
        (200, &serde_json::json!(1)),
        "{body}"
    );
    assert_eq!(whoami(&flow, &tablet).await.0, 401);
    assert_eq!(
        whoami(&flow, &laptop).await.0,
        200,
        "the current session stays"
    );
    assert_eq!(list(browser()).await.0, 401, "not logged in: 401");
}

/// The admin listener of the process whose `LISTEN_ADDR_FILE` is `<dir>/<label>.addr`.
fn admin_of(flow: &Flow, label: &str) -> std::net::SocketAddr {
    let path = flow.stack.dir.path().join(format!("{label}.addr"));
    common::listening::Listeners::read(&path)
        .expect("the listeners file")
        .and_then(|listeners| listeners.get("admin"))
        .unwrap_or_else(|| panic!("{label} announces no admin listener"))
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    let response = browser()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("text")
}

#[tokio::test]
async fn writer_and_reader_export_metrics_on_their_admin_address_only() {
    let idp = FakeIdp::start(CLIENT_ID, ann()).await;
    let any = "127.0.0.1:0";
    let flow = Flow::start_with(
        StoreKind::Single,
        &[("corp", idp.issuer(), "")],
        &[("WRITER_ADMIN_ADDR", any), ("READER_ADMIN_ADDR", any)],
    );
    flow.until_available("corp").await;
    let (writer, reader) = (admin_of(&flow, "writer"), admin_of(&flow, "reader"));

    let (one, two) = (browser(), browser());
    flow.sign_in(&one, "corp").await;
    flow.sign_in(&two, "corp").await;
    idp.tamper(Tamper::WrongNonce);
    flow.sign_in(&browser(), "corp").await;
    assert_eq!(whoami(&flow, &one).await.0, 200);
    one.post(flow.stack.url("/logout"))
        .send()
        .await
        .expect("logout");
    let token = idp.logout_token(false, None, Tamper::None);
    browser()
        .post(flow.stack.url("/logout/corp/backchannel"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .expect("backchannel");

    let text = metrics(writer).await;
    for line in [
        r#"session_logins_total{method="provider",result="success"} 2"#,
        r#"session_logins_total{method="provider",result="failure"} 1"#,
        r#"session_ended_total{reason="logout"} 1"#,
        r#"session_ended_total{reason="backchannel"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    let text = metrics(reader).await;
    assert!(
        text.contains("session_store_command_seconds_count"),
        "{text}"
    );
    assert!(
        !text.contains("session_logins_total{"),
        "the reader logs nobody in: {text}"
    );
    // Never on the public port.
    let public = browser()
        .get(format!("http://{}/metrics", flow.stack.writer_addrs[0]))
        .send()
        .await
        .expect("public");
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
}

on_every_store!(
    a_provider_sign_in_starts_a_session_that_knows_the_person,
    a_callback_that_this_browser_did_not_start_is_400_and_stores_nothing,
    an_id_token_that_fails_a_check_is_401_and_stores_nothing,
    allowed_groups_let_only_members_sign_in,
    two_providers_at_once_are_two_buttons_and_two_users,
    back_channel_logout_ends_the_users_sessions_and_a_bad_token_changes_nothing,
    keys_rotated_at_the_provider_are_fetched_again,
);
