//! The OpenID Provider fixture ([`testkit::oidc`]) end to end, without our services: a client
//! registered after the start, a sign-in with PKCE through the login and consent pages, the
//! code exchanged for an ID token with the claims the writer reads, and a sign-out that makes
//! the provider POST a logout token to the client's back-channel logout URI.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::Url;
use serde_json::Value;
use sha2::{Digest, Sha256};
use testkit::{
    http::browser_no_redirects,
    oidc::{self, Account, Client, OidcProvider},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

const SECRET: &str = "relying-party-secret-relying-party-secret";

/// A relying party's loopback address: the redirect URI is never requested (sign_in returns
/// it), the back-channel logout URI is served by [`BackChannel`].
struct BackChannel {
    base: String,
    bodies: mpsc::UnboundedReceiver<String>,
}

impl BackChannel {
    /// Answers every request 200 and hands over its body (a form with `logout_token`).
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (sender, bodies) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let sender = sender.clone();
                tokio::spawn(async move {
                    if let Some(body) = read_request(&mut stream).await {
                        // Handed over before the answer: the provider waits for it.
                        let _ = sender.send(body);
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        Self { base, bodies }
    }

    fn client(&self) -> Client {
        Client {
            client_id: "writer".to_owned(),
            client_secret: SECRET.to_owned(),
            redirect_uris: vec![format!("{}/cb", self.base)],
            backchannel_logout_uri: Some(format!("{}/backchannel", self.base)),
            backchannel_logout_session_required: true,
            post_logout_redirect_uris: vec![format!("{}/", self.base)],
        }
    }
}

/// The body of one HTTP/1.1 request with a Content-Length.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut request = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let read = stream.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        request.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&request);
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length: usize = text[..end]
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        if request.len() >= end + 4 + length {
            return Some(text[end + 4..end + 4 + length].to_owned());
        }
    }
}

/// A sign-in request as a relying party makes it.
struct Attempt {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
}

impl Attempt {
    fn new(provider: &OidcProvider, client: &Client, redirect_uri: &str, tag: &str) -> Self {
        let verifier = format!("verifier-{tag}-0123456789-0123456789-0123456789");
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let state = format!("state-{tag}");
        let nonce = format!("nonce-{tag}");
        let mut url = Url::parse(&provider.authorization_endpoint()).expect("endpoint");
        url.query_pairs_mut()
            .append_pair("client_id", &client.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid profile email groups")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Self {
            url: url.to_string(),
            state,
            nonce,
            verifier,
        }
    }
}

fn query(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .expect("URL")
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The claims of a JWT, unverified.
fn payload(jwt: &str) -> Value {
    let middle = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(middle).expect("base64url")).expect("JSON")
}

/// Exchanges the code of `callback` for tokens, as `client` (client_secret_basic, with the
/// PKCE verifier of `attempt`): the ID token, and the whole answer.
async fn redeem(
    provider: &OidcProvider,
    client: &Client,
    callback: &str,
    attempt: &Attempt,
) -> (String, Value) {
    let code = query(callback, "code").unwrap_or_else(|| panic!("no code: {callback}"));
    let redirect_uri = callback.split('?').next().expect("redirect URI");
    let response = testkit::client()
        .post(provider.token_endpoint())
        .basic_auth(&client.client_id, Some(&client.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", attempt.verifier.as_str()),
        ])
        .send()
        .await
        .expect("token request");
    let (status, tokens) = testkit::json(response).await;
    assert_eq!(status, 200, "{tokens}\n{}", provider.logged());
    let id_token = tokens["id_token"].as_str().expect("id_token").to_owned();
    (id_token, tokens)
}

fn alice() -> Account {
    Account::new("alice", "Alice Liddell", &["staff", "readers"])
}

#[tokio::test]
async fn signs_in_with_pkce_and_signs_out_over_the_back_channel() {
    if !oidc::available("the OpenID Provider fixture") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = OidcProvider::start(dir.path(), &[alice()]);
    let mut back_channel = BackChannel::start().await;
    let client = back_channel.client();
    // Registered after the start, as the tests do once their services listen.
    provider.set_clients(std::slice::from_ref(&client));

    let browser = browser_no_redirects();
    let attempt = Attempt::new(&provider, &client, &client.redirect_uris[0], "one");
    let callback = provider.sign_in(&browser, &attempt.url, "alice").await;
    assert!(callback.starts_with(&client.redirect_uris[0]), "{callback}");
    assert_eq!(query(&callback, "state"), Some(attempt.state.clone()));
    assert_eq!(query(&callback, "iss").as_deref(), Some(provider.issuer()));
    let (raw_id_token, tokens) = redeem(&provider, &client, &callback, &attempt).await;
    let id_token = payload(&raw_id_token);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(id_token["iss"], provider.issuer());
    assert_eq!(id_token["aud"], "writer");
    assert_eq!(id_token["sub"], "alice-sub");
    assert_eq!(id_token["name"], "Alice Liddell");
    assert_eq!(id_token["email"], "alice@example.com");
    assert_eq!(id_token["email_verified"], true);
    assert_eq!(id_token["groups"], serde_json::json!(["staff", "readers"]));
    assert_eq!(id_token["nonce"], attempt.nonce.as_str());
    let sid = id_token["sid"].as_str().expect("sid").to_owned();

    // Signed in at the provider: the next sign-in (another redirect URI, registered meanwhile:
    // the provider reads its clients anew) asks for nothing.
    let mut changed = client.clone();
    changed
        .redirect_uris
        .push(format!("{}/again", back_channel.base));
    provider.set_clients(std::slice::from_ref(&changed));
    let again = Attempt::new(&provider, &changed, &changed.redirect_uris[1], "two");
    let callback = provider.sign_in(&browser, &again.url, "nobody").await;
    assert!(
        callback.starts_with(&changed.redirect_uris[1]),
        "{callback}"
    );
    assert!(query(&callback, "code").is_some(), "{callback}");

    // Signing out at the provider tells the client, over the back channel, before it answers.
    let landed = provider.sign_out(&browser).await;
    assert!(landed.starts_with(provider.issuer()), "{landed}");
    let body = back_channel
        .bodies
        .try_recv()
        .unwrap_or_else(|_| panic!("no logout token was POSTed:\n{}", provider.logged()));
    let form = form_pairs(&body);
    let token = form
        .iter()
        .find(|(name, _)| name == "logout_token")
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no logout_token in {body:?}"));
    let logout = payload(token);
    assert_eq!(logout["iss"], provider.issuer());
    assert_eq!(logout["aud"], "writer");
    assert_eq!(logout["sub"], "alice-sub");
    assert_eq!(logout["sid"], sid.as_str());
    assert!(
        logout["events"]
            .get("http://schemas.openid.net/event/backchannel-logout")
            .is_some(),
        "{logout}"
    );
    assert!(logout.get("nonce").is_none(), "{logout}");

    // Signed out: the login page again.
    let after = Attempt::new(&provider, &client, &client.redirect_uris[0], "three");
    let callback = provider.sign_in(&browser, &after.url, "nobody").await;
    assert_eq!(query(&callback, "error").as_deref(), Some("access_denied"));
    // Each logout token was in before the sign-out was answered: no other came.
    assert!(
        back_channel.bodies.try_recv().is_err(),
        "a second logout token"
    );
}

#[tokio::test]
async fn an_unknown_login_is_denied_and_an_unknown_client_refused() {
    if !oidc::available("the OpenID Provider fixture") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = OidcProvider::start(dir.path(), &[alice()]);
    let back_channel = BackChannel::start().await;
    let client = back_channel.client();
    provider.set_clients(std::slice::from_ref(&client));

    let attempt = Attempt::new(&provider, &client, &client.redirect_uris[0], "one");
    let callback = provider
        .sign_in(&browser_no_redirects(), &attempt.url, "mallory")
        .await;
    assert_eq!(query(&callback, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&callback, "state"), Some(attempt.state));

    // No client registered any more: the provider shows its error page, not a redirect.
    provider.set_clients(&[]);
    let response = browser_no_redirects()
        .get(&attempt.url)
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.status(), 400);
    let page = response.text().await.expect("page");
    assert!(page.contains("invalid_client"), "{page}");
}

#[tokio::test]
async fn a_relying_party_sends_the_browser_to_sign_out_and_gets_it_back() {
    if !oidc::available("the OpenID Provider fixture") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = OidcProvider::start(dir.path(), &[alice()]);
    let mut back_channel = BackChannel::start().await;
    let client = back_channel.client();
    provider.set_clients(std::slice::from_ref(&client));
    let browser = browser_no_redirects();
    let attempt = Attempt::new(&provider, &client, &client.redirect_uris[0], "one");
    let callback = provider.sign_in(&browser, &attempt.url, "alice").await;
    let (id_token, _) = redeem(&provider, &client, &callback, &attempt).await;

    let mut end_session = Url::parse(&provider.end_session_endpoint()).expect("endpoint");
    end_session
        .query_pairs_mut()
        .append_pair("id_token_hint", &id_token)
        .append_pair(
            "post_logout_redirect_uri",
            &client.post_logout_redirect_uris[0],
        )
        .append_pair("state", "bye");
    let landed = provider.sign_out_from(&browser, end_session.as_str()).await;
    assert!(
        landed.starts_with(&client.post_logout_redirect_uris[0]),
        "{landed}"
    );
    assert_eq!(query(&landed, "state").as_deref(), Some("bye"));
    let body = back_channel.bodies.try_recv().expect("a logout token");
    let logout = payload(&form_pairs(&body)[0].1);
    assert_eq!(logout["sid"], payload(&id_token)["sid"]);
}

/// The name-value pairs of an `application/x-www-form-urlencoded` body.
fn form_pairs(body: &str) -> Vec<(String, String)> {
    Url::parse(&format!("http://x/?{body}"))
        .expect("form")
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}
