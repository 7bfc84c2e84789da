//! `POST /logout/<name>/backchannel` (OpenID Connect Back-Channel Logout 1.0): the provider
//! tells the writer, server to server, that a user logged out there. The `logout_token` is
//! verified like an ID token plus the logout rules (see [`super::Provider::logout_token`]);
//! then every session of that user signed in with this provider ends at once, or, when the
//! token names a provider session (`sid`), the sessions of that provider session.
//!
//! 200 when done (also when no session was left: logging out is idempotent); 400 with the
//! reason for a bad token, and nothing changes; 503 when the session store is down (the
//! provider may try again). Never a page, never a cookie: no browser is involved.

use actix_web::{HttpResponse, http::header, web};
use serde::Deserialize;
use serde_json::json;
use session::Sessions;

use super::{Providers, SignInError};

#[derive(Debug, Deserialize)]
pub(super) struct LogoutForm {
    logout_token: String,
}

pub(super) async fn logout(
    name: web::Path<String>,
    form: Result<web::Form<LogoutForm>, actix_web::Error>,
    providers: web::Data<Providers>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let Some(provider) = providers.get(&name) else {
        return refused("no such identity provider");
    };
    let Ok(form) = form else {
        return refused("send logout_token as a form field (application/x-www-form-urlencoded)");
    };
    let (user, sid) = match provider.logout_token(&form.logout_token).await {
        Ok(who) => who,
        Err(SignInError::TokenRejected(reason)) => {
            tracing::warn!(provider = provider.name(), %reason, "logout token refused");
            return refused(&format!("invalid logout token: {reason}"));
        }
        Err(err) => {
            tracing::warn!(provider = provider.name(), error = %err, "back-channel logout failed");
            return answer(HttpResponse::ServiceUnavailable(), &err.to_string());
        }
    };
    match sessions
        .end_provider_sessions(&user, provider.name(), sid.as_deref())
        .await
    {
        Ok(ended) => {
            tracing::info!(%user, provider = provider.name(), sid = sid.is_some(), ended, "back-channel logout");
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(json!({ "ended": ended }))
        }
        Err(err) => {
            tracing::warn!(error = %err, "back-channel logout: session store unavailable");
            session::metrics::metrics().unavailable();
            answer(
                HttpResponse::ServiceUnavailable(),
                "session store unavailable",
            )
        }
    }
}

fn refused(reason: &str) -> HttpResponse {
    answer(HttpResponse::BadRequest(), reason)
}

fn answer(mut response: actix_web::HttpResponseBuilder, error: &str) -> HttpResponse {
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": error }))
}
