//! The JSON error type of writer and reader.
//!
//! The status of every failure is decided here, in one place; the body is a short generated
//! message without internals, and the cause is logged once, inside the request's span.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde_json::json;

use crate::{action::Action, pages, store::StoreError};

/// Body of the "not logged in" answer, shared by the reader's `/` and the writer's `/increment`
/// (DESIGN.md, HTTP contract).
pub const NOT_LOGGED_IN_MESSAGE: &str = "Please go \"log in!\" (set up your session)";

/// Everything a writer or reader endpoint can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid session: no credential, or one that is tampered, foreign, expired or logged out.
    #[error("not logged in")]
    NotLoggedIn,
    /// The request itself is malformed (bad query or body).
    #[error("{0}")]
    BadRequest(String),
    /// A login with a wrong username/password pair (which part is wrong is not said).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many failed logins for this user or client address.
    #[error("too many failed logins, try again later")]
    TooManyAttempts { retry_after: std::time::Duration },
    /// No endpoint at this path.
    #[error("not found")]
    NotFound,
    /// The path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A request another site made a browser send (see [`crate::cross_site`]); nothing was done.
    /// A top-level navigation is answered with a page that asks to confirm the action.
    #[error("cross-site request refused")]
    CrossSite { action: Action, navigation: bool },
    /// Redis is down or too slow; the request changed nothing.
    #[error("session store unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// A bug or an impossible state; details go to the log only.
    #[error("unexpected error")]
    Unexpected(#[source] anyhow::Error),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => Self::StoreUnavailable(err),
            StoreError::Unexpected(_) => Self::Unexpected(err.into()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotLoggedIn => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::CrossSite { .. } => StatusCode::FORBIDDEN,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let Self::CrossSite { action, navigation } = *self {
            tracing::warn!(%action, navigation, "cross-site request refused");
            if navigation {
                return pages::confirm(status, action);
            }
        }
        let body = match self {
            Self::NotLoggedIn => json!({ "message": NOT_LOGGED_IN_MESSAGE, "login": "/login" }),
            Self::StoreUnavailable(cause) => {
                tracing::warn!(error = %cause, "session store unavailable");
                crate::metrics::metrics().unavailable();
                json!({ "error": self.to_string() })
            }
            Self::Unexpected(cause) => {
                tracing::error!(error = ?cause, "unexpected error");
                json!({ "error": self.to_string() })
            }
            Self::BadRequest(_)
            | Self::InvalidCredentials
            | Self::TooManyAttempts { .. }
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::CrossSite { .. } => json!({ "error": self.to_string() }),
        };
        let mut response = HttpResponse::build(status);
        match self {
            // A hint for clients and load balancers; the store usually recovers within seconds.
            Self::StoreUnavailable(_) => {
                response.insert_header(("retry-after", "1"));
            }
            Self::TooManyAttempts { retry_after } => {
                response.insert_header(("retry-after", retry_after.as_secs().max(1).to_string()));
            }
            _ => {}
        }
        response.json(body)
    }
}
