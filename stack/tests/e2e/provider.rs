//! Sign-in against a real, certified OpenID Provider (npm's `oidc-provider`, run by
//! [`OidcProvider`]): what a team's Keycloak or Dex would do, not what the tests think a
//! provider does. A headless browser walks the whole redirect flow (our login page, the
//! provider's login and consent pages, back at `/` with the person's name), and logging out at
//! the provider ends sessions here over the back channel, before the provider answers.
//!
//! Each way a sign-in can go wrong is in `sign_in.rs`, against a provider the test controls.
//! Needs `node` (and `npm` for the first install) and, for the browser, Chromium: without them
//! these tests skip locally and fail in CI.

use fantoccini::Locator;
use reqwest::StatusCode;

use crate::{
    browser::{Browser, browser_available, text},
    helpers::{
        StoreKind,
        http::browser_no_redirects,
        oidc::{self, Account, Client, OidcProvider},
    },
    sign_in::{CLIENT_ID, CLIENT_SECRET, Flow, PUBLIC_URL, location, whoami},
};

fn ann() -> Account {
    Account::new("ann", "Ann Lee", &["staff"])
}

/// The writer as the provider knows it: its redirect URI at the public origin and, when given,
/// where logout tokens go (the gateway's real address: the provider calls it server to server).
fn registration(backchannel: Option<String>, session_required: bool) -> Client {
    Client {
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        redirect_uris: vec![format!("{PUBLIC_URL}/login/corp/callback")],
        backchannel_logout_uri: backchannel,
        backchannel_logout_session_required: session_required,
        post_logout_redirect_uris: Vec::new(),
    }
}

/// A stack whose writer signs in with `provider` as "corp".
async fn stack_for(provider: &OidcProvider) -> Flow {
    let flow = Flow::start(
        StoreKind::Single,
        &[("corp", provider.issuer().to_owned(), "")],
    );
    flow.until_available("corp").await;
    flow
}

#[tokio::test]
async fn a_browser_signs_in_through_a_real_provider_and_sees_its_name() {
    if !oidc::available("the real provider's browser sign-in") || !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = OidcProvider::start(dir.path(), &[ann()]);
    provider.set_clients(&[registration(None, false)]);
    let flow = stack_for(&provider).await;
    // The browser sees the stack at PUBLIC_URL (the provider sends it back there) and reaches
    // it at the gateway.
    let resolve = format!(
        "--host-resolver-rules=MAP one-origin.test 127.0.0.1:{}",
        flow.stack.gateway_addr.port()
    );
    // No HTTPS attempt first for a plain-http origin: the gateway listens for HTTP only.
    let no_upgrade = "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable".to_owned();
    let browser = Browser::start_with(flow.stack.dir.path(), &[resolve, no_upgrade]).await;
    let client = &browser.client;

    let result = async {
        client
            .goto(&format!("{PUBLIC_URL}/login"))
            .await
            .expect("open /login");
        assert_eq!(text(client, "provider-corp").await, "Sign in with corp");
        browser.click("provider-corp").await;

        // The provider's own pages: the login form, then consent.
        text(client, "sign-in").await;
        let at = client.current_url().await.expect("url");
        assert!(
            at.as_str().starts_with(provider.issuer()),
            "the browser is at the provider: {at}"
        );
        let field = |id: &'static str| async move {
            client
                .find(Locator::Id(id))
                .await
                .unwrap_or_else(|err| panic!("#{id} on the provider's login page: {err}"))
        };
        field("login").await.send_keys("ann").await.expect("type");
        field("password")
            .await
            .send_keys("any password")
            .await
            .expect("type");
        browser.click("sign-in").await;
        text(client, "allow").await;
        browser.click("allow").await;

        // Back at the one origin, signed in, by name.
        assert_eq!(text(client, "name").await, "Ann Lee");
        let at = client.current_url().await.expect("url");
        assert_eq!(at.as_str(), format!("{PUBLIC_URL}/"));
        assert_eq!(text(client, "count").await, "0");
    }
    .await;
    browser.close().await;
    result
}

/// Signs `device` in through the provider as `login`, as a browser would (the provider's
/// pages filled in by [`OidcProvider::sign_in`]); the writer's answer is `303` to `/`.
async fn sign_in(flow: &Flow, provider: &OidcProvider, device: &reqwest::Client, login: &str) {
    let start = device
        .get(flow.stack.url("/login/corp"))
        .send()
        .await
        .expect("start");
    assert_eq!(start.status(), StatusCode::FOUND);
    let callback = provider.sign_in(device, &location(&start), login).await;
    assert!(callback.starts_with(PUBLIC_URL), "{callback}");
    let done = device
        .get(flow.at_gateway(&callback))
        .send()
        .await
        .expect("callback");
    assert_eq!(
        (done.status(), location(&done)),
        (StatusCode::SEE_OTHER, "/".to_owned()),
        "{}",
        provider.logged()
    );
}

#[tokio::test]
async fn logging_out_at_a_real_provider_ends_sessions_here_before_it_answers() {
    if !oidc::available("the real provider's back-channel logout") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = OidcProvider::start(dir.path(), &[ann()]);
    let flow = stack_for(&provider).await;
    let backchannel = Some(flow.stack.url("/logout/corp/backchannel"));
    let live = |device: reqwest::Client| {
        let flow = &flow;
        async move { whoami(flow, &device).await.0 == 200 }
    };

    // Logout tokens that name the provider session (`sid`): signing out on the laptop ends the
    // laptop's session here and leaves the phone's, which is another provider session.
    provider.set_clients(&[registration(backchannel.clone(), true)]);
    let (laptop, phone) = (browser_no_redirects(), browser_no_redirects());
    for device in [&laptop, &phone] {
        sign_in(&flow, &provider, device, "ann").await;
        assert!(live(device.clone()).await);
    }
    provider.sign_out(&laptop).await;
    assert!(
        !live(laptop.clone()).await,
        "the laptop's session outlived its provider session:\n{}",
        provider.logged()
    );
    assert!(live(phone.clone()).await, "the phone's session ended too");

    // Logout tokens that name the user only: signing out anywhere ends every session of the
    // user here, the tablet's too, though it signed in through another provider session.
    provider.set_clients(&[registration(backchannel, false)]);
    let tablet = browser_no_redirects();
    sign_in(&flow, &provider, &tablet, "ann").await;
    assert!(live(tablet.clone()).await);
    provider.sign_out(&phone).await;
    for (device, name) in [(&phone, "phone"), (&tablet, "tablet")] {
        assert!(
            !live(device.clone()).await,
            "the {name}'s session outlived the user's logout:\n{}",
            provider.logged()
        );
    }
    // The writer answered each logout token with success, as the provider saw it.
    let logged = provider.logged();
    assert_eq!(
        logged.matches("back-channel logout sent to").count(),
        2,
        "{logged}"
    );
    assert!(!logged.contains("backchannel.error"), "{logged}");
}
