//! The sign-in itself (OpenID Connect Core, authorization code flow with PKCE):
//!
//! 1. `GET /login/<name>[?next=/path]`: a pending sign-in (PKCE verifier, nonce, where to go
//!    next) is kept in Redis under the random `state` for [`PENDING_LIFETIME`], bound to this
//!    browser by a cookie; the browser is sent (302) to the provider.
//! 2. `GET /login/<name>/callback?code&state`: the pending sign-in is taken (so a second use of
//!    the same `state` finds nothing), must come from the same browser, the code is exchanged
//!    and the ID token verified (see [`super::provider`]); then a session starts by the same
//!    rules as a password login, and the browser goes (303) to `next` or `/`.
//!
//! The binding cookie is what protects the callback from a forged or stolen `state`: the
//! callback is a navigation from the provider's site, so the cross-site rule that guards every
//! other login cannot tell it from an attack.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use session::{
    CurrentSession, LoginAs, Method, Sessions, Transport,
    metrics::{LoginResult, metrics},
};
use sha2::{Digest, Sha256};

use super::{Providers, error::SignInError};
use crate::routes::device;

/// How long a started sign-in may take.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The binding cookie: `<session cookie>-signin`.
const BINDING_COOKIE: &str = "signin";
/// Longest `state` looked up (the writer's own are 22 characters).
const MAX_STATE_LEN: usize = 128;
/// Longest `next` path kept.
const MAX_NEXT_LEN: usize = 2048;

/// What the callback needs, kept in Redis under the `state`.
#[derive(Debug, Serialize, Deserialize)]
struct PendingSignIn {
    provider: String,
    /// The binding cookie's value, hashed: Redis never holds what the browser presents.
    binding: String,
    verifier: String,
    nonce: String,
    next: Option<String>,
    started_ms: i64,
}

#[derive(Debug, Deserialize)]
pub(super) struct StartQuery {
    next: Option<String>,
}

/// `GET /login/<name>`.
pub(super) async fn start(
    request: HttpRequest,
    name: web::Path<String>,
    query: web::Query<StartQuery>,
    providers: web::Data<Providers>,
    sessions: web::Data<Sessions>,
) -> Result<HttpResponse, SignInError> {
    let provider = providers.get(&name).ok_or(SignInError::UnknownProvider)?;
    let authorization = provider.authorize()?;
    // One binding per browser, kept across sign-ins, so two tabs signing in at once both work.
    let binding = request
        .cookie(&sessions.side_cookie_name(BINDING_COOKIE))
        .map(|cookie| cookie.value().to_owned())
        .filter(|value| value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| common::random::hex(16));
    let pending = PendingSignIn {
        provider: provider.name().to_owned(),
        binding: hashed(&binding),
        verifier: authorization.verifier,
        nonce: authorization.nonce,
        next: query.next.as_deref().and_then(same_origin_path),
        started_ms: Utc::now().timestamp_millis(),
    };
    let pending = serde_json::to_string(&pending)
        .map_err(|err| SignInError::Session(session::ApiError::Unexpected(err.into())))?;
    sessions
        .pending()
        .put(&authorization.state, &pending, PENDING_LIFETIME)
        .await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, authorization.url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(sessions.side_cookie(BINDING_COOKIE, binding, PENDING_LIFETIME))
        .finish())
}

#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /login/<name>/callback`.
pub(super) async fn callback(
    request: HttpRequest,
    name: web::Path<String>,
    query: web::Query<CallbackQuery>,
    providers: web::Data<Providers>,
    sessions: web::Data<Sessions>,
    current: CurrentSession,
) -> Result<HttpResponse, SignInError> {
    let finished = finish(request, name, query, providers, sessions, current).await;
    if finished.is_err() {
        metrics().login(Method::Provider, LoginResult::Failure);
    }
    finished
}

/// The callback's work; any error is a failed sign-in.
async fn finish(
    request: HttpRequest,
    name: web::Path<String>,
    query: web::Query<CallbackQuery>,
    providers: web::Data<Providers>,
    sessions: web::Data<Sessions>,
    current: CurrentSession,
) -> Result<HttpResponse, SignInError> {
    let provider = providers.get(&name).ok_or(SignInError::UnknownProvider)?;
    let query = query.into_inner();
    let pending = take_pending(&request, &sessions, query.state.as_deref()).await?;
    if pending.provider != provider.name() {
        return Err(SignInError::BadState("was started with another provider"));
    }
    if let Some(error) = query.error {
        let said = match query.error_description {
            Some(description) => format!("{error}: {description}"),
            None => error,
        };
        return Err(SignInError::Refused(said));
    }
    let code = query
        .code
        .ok_or(SignInError::BadState("came back without a code"))?;
    let started = DateTime::from_timestamp_millis(pending.started_ms).unwrap_or_else(Utc::now);
    let signed_in = provider
        .finish(code, pending.verifier, &pending.nonce, started)
        .await?;
    let mut device = device(&request);
    device.provider_session = signed_in.provider_session;
    let login = current
        .login(
            LoginAs::FromProvider(signed_in.user, signed_in.identity),
            Transport::Cookie,
            &device,
        )
        .await?;
    tracing::info!(user = %login.user, provider = provider.name(), renewed = login.renewed, "signed in with an identity provider");
    let next = pending.next.unwrap_or_else(|| "/".to_owned());
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// The pending sign-in of `state`, taken out of Redis, if this browser started it.
async fn take_pending(
    request: &HttpRequest,
    sessions: &Sessions,
    state: Option<&str>,
) -> Result<PendingSignIn, SignInError> {
    let state = state
        .filter(|state| !state.is_empty() && state.len() <= MAX_STATE_LEN)
        .ok_or(SignInError::BadState("came back without its state"))?;
    let raw = sessions
        .pending()
        .take(state)
        .await?
        .ok_or(SignInError::BadState("has expired or was already used"))?;
    let pending: PendingSignIn =
        serde_json::from_str(&raw).map_err(|_| SignInError::BadState("could not be read"))?;
    let presented = request
        .cookie(&sessions.side_cookie_name(BINDING_COOKIE))
        .map(|cookie| hashed(cookie.value()));
    // Hashes are compared, so the time taken says nothing about the cookie's value.
    if presented.as_deref() != Some(pending.binding.as_str()) {
        return Err(SignInError::BadState("was started in another browser"));
    }
    Ok(pending)
}

fn hashed(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `next` when it is a path on this origin: `/…`, never `//host` or `/\host` (which browsers
/// read as another origin), no control characters.
fn same_origin_path(next: &str) -> Option<String> {
    let safe = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= MAX_NEXT_LEN
        && !next.chars().any(char::is_control);
    safe.then(|| next.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_path_on_this_origin_only() {
        for good in ["/", "/account?tab=1", "/a/b#c"] {
            assert_eq!(same_origin_path(good).as_deref(), Some(good));
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "evil",
            "",
            "/a\nb",
            "javascript:alert(1)",
        ] {
            assert_eq!(same_origin_path(bad), None, "{bad:?}");
        }
    }
}
