//! [`FakeIdp`]: an OpenID Provider of the test's own, for what a real one will not do on
//! request: sign with a key it does not publish, issue a token for another audience, with
//! another nonce, or long ago, rotate its keys, or be down.
//!
//! It serves discovery, its keys, an authorization endpoint that signs the configured
//! [`Person`] in at once (302 back to the client with a code), and a token endpoint that checks
//! the code and the PKCE verifier and answers an ID token signed by the `openidconnect` crate
//! (no JOSE written here either). It runs on the test's own runtime, on port 0. The real,
//! certified provider for the happy paths is [`crate::oidc`].
//!
//! Keys are 2048-bit RSA from `openssl genrsa` (RS256 is what the writer accepts).

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
};

use chrono::{Duration, Utc};
use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, service::service_fn};
use openidconnect::{
    AccessToken, Audience, AuthorizationCode, EndUserEmail, EndUserName, IssuerUrl, JsonWebKeyId,
    LocalizedClaim, Nonce, PrivateSigningKey, StandardClaims, SubjectIdentifier,
    core::{CoreGenderClaim, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who the fake provider signs in.
#[derive(Debug, Clone)]
pub struct Person {
    pub sub: String,
    pub name: String,
    pub email: String,
    pub groups: Vec<String>,
    /// The provider session (`sid`).
    pub sid: String,
}

impl Person {
    pub fn new(sub: &str, name: &str, groups: &[&str]) -> Self {
        Self {
            sub: sub.to_owned(),
            name: name.to_owned(),
            email: format!("{sub}@example.com"),
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            sid: format!("sid-{sub}"),
        }
    }
}

/// How the next ID token is spoiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tamper {
    #[default]
    None,
    /// Signed with a key the provider does not publish (under a published key id).
    BadSignature,
    /// Issued to another client.
    WrongAudience,
    /// Issued an hour ago, expired half an hour ago.
    Stale,
    /// Carrying another nonce than the sign-in's.
    WrongNonce,
}

/// The claims beyond the standard ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Extra {
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<serde_json::Value>,
}

impl openidconnect::AdditionalClaims for Extra {}

type Claims = openidconnect::IdTokenClaims<Extra, CoreGenderClaim>;
type Token = openidconnect::IdToken<
    Extra,
    CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

struct Grant {
    nonce: Option<String>,
    challenge: Option<String>,
}

struct State {
    client_id: String,
    person: Person,
    /// Published keys; the last one signs.
    keys: Vec<CoreRsaPrivateSigningKey>,
    /// Not published: signs [`Tamper::BadSignature`] tokens.
    rogue: CoreRsaPrivateSigningKey,
    tamper: Tamper,
    down: bool,
    codes: HashMap<String, Grant>,
    /// Token requests answered, to show a check happened before the exchange or not.
    token_requests: usize,
}

/// The provider; stops when dropped.
pub struct FakeIdp {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeIdp")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIdp {
    /// Starts on the current runtime; `client_id` is the one client it knows.
    pub async fn start(client_id: &str, person: Person) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = rsa_key(dir.path(), "key-1");
        let rogue = rsa_key(dir.path(), "key-1");
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.to_owned(),
            person,
            keys: vec![first],
            rogue,
            tamper: Tamper::None,
            down: false,
            codes: HashMap::new(),
            token_requests: 0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(answer(addr, &state, request).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            dir,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_person(&self, person: Person) {
        self.with(|state| state.person = person);
    }

    pub fn tamper(&self, tamper: Tamper) {
        self.with(|state| state.tamper = tamper);
    }

    /// Down: every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.with(|state| state.down = down);
    }

    /// A new signing key, published alone from now on (the old one is gone).
    pub fn rotate_keys(&self) {
        let count = self.with(|state| state.keys.len());
        let key = rsa_key(self.dir.path(), &format!("key-{}", count + 1));
        self.with(|state| state.keys = vec![key]);
    }

    /// How many token requests it answered.
    pub fn token_requests(&self) -> usize {
        self.with(|state| state.token_requests)
    }

    /// A back-channel logout token for the configured person (signed like an ID token), with
    /// `sid` when `with_sid`, and `nonce` when given (which a logout token must not carry).
    pub fn logout_token(&self, with_sid: bool, nonce: Option<&str>, tamper: Tamper) -> String {
        self.with(|state| {
            let person = state.person.clone();
            let extra = Extra {
                groups: None,
                sid: with_sid.then(|| person.sid.clone()),
                events: Some(serde_json::json!({
                    "http://schemas.openid.net/event/backchannel-logout": {}
                })),
            };
            let mut claims = claims(&self.issuer(), state, extra, tamper);
            claims = claims.set_nonce(nonce.map(|nonce| Nonce::new(nonce.to_owned())));
            sign(state, claims, tamper, None)
        })
    }
}

/// A 2048-bit RSA key from `openssl`, named `kid`.
fn rsa_key(dir: &Path, kid: &str) -> CoreRsaPrivateSigningKey {
    let path = dir.join(format!("{}-{kid}.pem", common::random::hex(16)));
    let status = std::process::Command::new("openssl")
        // PKCS#1 ("RSA PRIVATE KEY"), the form the crate reads.
        .args(["genrsa", "-traditional", "-out"])
        .arg(&path)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl genpkey");
    let pem = std::fs::read_to_string(&path).expect("the key");
    CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.to_owned())))
        .expect("an RSA key")
}

type Body = Full<Bytes>;

fn reply(status: u16, content_type: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a response")
}

fn json_reply(status: u16, body: &serde_json::Value) -> Response<Body> {
    reply(status, "application/json", body.to_string())
}

async fn answer(
    addr: SocketAddr,
    state: &Mutex<State>,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    use http_body_util::BodyExt;
    let issuer = format!("http://{addr}");
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    if state.down {
        return json_reply(
            503,
            &serde_json::json!({ "error": "temporarily_unavailable" }),
        );
    }
    match path.as_str() {
        "/.well-known/openid-configuration" => json_reply(200, &discovery(&issuer)),
        "/jwks" => {
            let keys: Vec<_> = state
                .keys
                .iter()
                .map(PrivateSigningKey::as_verification_key)
                .collect();
            json_reply(200, &serde_json::json!({ "keys": keys }))
        }
        "/authorize" => authorize(&mut state, &query),
        "/token" => {
            state.token_requests += 1;
            token(&issuer, &mut state, &body)
        }
        _ => json_reply(404, &serde_json::json!({ "error": "not found" })),
    }
}

fn discovery(issuer: &str) -> serde_json::Value {
    serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    })
}

/// Signs the person in at once: 302 to the redirect URI with a code and the state.
fn authorize(state: &mut State, query: &str) -> Response<Body> {
    let params: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap_or_default();
    let (Some(redirect), Some(client)) = (params.get("redirect_uri"), params.get("client_id"))
    else {
        return json_reply(400, &serde_json::json!({ "error": "invalid_request" }));
    };
    if *client != state.client_id
        || params.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return json_reply(400, &serde_json::json!({ "error": "invalid_request" }));
    }
    let code = common::random::hex(16);
    state.codes.insert(
        code.clone(),
        Grant {
            nonce: params.get("nonce").cloned(),
            challenge: params.get("code_challenge").cloned(),
        },
    );
    let mut location = reqwest::Url::parse(redirect).expect("a redirect URI");
    location.query_pairs_mut().append_pair("code", &code);
    if let Some(client_state) = params.get("state") {
        location
            .query_pairs_mut()
            .append_pair("state", client_state);
    }
    Response::builder()
        .status(302)
        .header("location", location.as_str())
        .body(Full::new(Bytes::new()))
        .expect("a response")
}

/// The code exchange: the code once, its PKCE verifier, then the (maybe spoiled) ID token.
fn token(issuer: &str, state: &mut State, body: &[u8]) -> Response<Body> {
    let params: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let grant = params.get("code").and_then(|code| state.codes.remove(code));
    let Some(grant) = grant else {
        return json_reply(400, &serde_json::json!({ "error": "invalid_grant" }));
    };
    let verified = params.get("code_verifier").is_some_and(|verifier| {
        let digest = Sha256::digest(verifier.as_bytes());
        let challenge =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest);
        grant.challenge.as_deref() == Some(challenge.as_str())
    });
    if !verified {
        return json_reply(
            400,
            &serde_json::json!({ "error": "invalid_grant", "error_description": "PKCE" }),
        );
    }
    let tamper = state.tamper;
    let person = state.person.clone();
    let extra = Extra {
        groups: Some(person.groups.clone()),
        sid: Some(person.sid.clone()),
        events: None,
    };
    let nonce = match tamper {
        Tamper::WrongNonce => Some("not-the-nonce-of-this-sign-in".to_owned()),
        _ => grant.nonce,
    };
    let claims = claims(issuer, state, extra, tamper)
        .set_nonce(nonce.map(Nonce::new))
        .set_name(Some(LocalizedClaim::from(EndUserName::new(
            person.name.clone(),
        ))))
        .set_email(Some(EndUserEmail::new(person.email.clone())));
    let access = AccessToken::new(common::random::hex(16));
    let id_token = sign(state, claims, tamper, Some(&access));
    json_reply(
        200,
        &serde_json::json!({
            "access_token": access.secret(),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }),
    )
}

fn claims(issuer: &str, state: &State, extra: Extra, tamper: Tamper) -> Claims {
    let now = Utc::now();
    let (issued, expires) = match tamper {
        Tamper::Stale => (now - Duration::hours(1), now - Duration::minutes(30)),
        _ => (now, now + Duration::minutes(5)),
    };
    let audience = match tamper {
        Tamper::WrongAudience => "another-client".to_owned(),
        _ => state.client_id.clone(),
    };
    Claims::new(
        IssuerUrl::new(issuer.to_owned()).expect("an issuer"),
        vec![Audience::new(audience)],
        expires,
        issued,
        StandardClaims::new(SubjectIdentifier::new(state.person.sub.clone())),
        extra,
    )
}

fn sign(state: &State, claims: Claims, tamper: Tamper, access: Option<&AccessToken>) -> String {
    let key = match tamper {
        Tamper::BadSignature => &state.rogue,
        _ => state.keys.last().expect("a key"),
    };
    let token = Token::new(
        claims,
        key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        access,
        None::<&AuthorizationCode>,
    )
    .expect("a signed token");
    serde_json::to_value(&token)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .expect("a compact token")
}
