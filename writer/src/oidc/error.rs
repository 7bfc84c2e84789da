//! Why a sign-in with an identity provider failed, as the page the browser gets. Nothing is
//! stored in any of these cases: no session, no user.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use session::{ApiError, StoreError, pages};

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// No provider of that name.
    #[error("no such identity provider")]
    UnknownProvider,
    /// Discovery has not succeeded yet (the provider was down at start and still is).
    #[error("{0} is unavailable right now; try again in a minute")]
    ProviderUnavailable(String),
    /// The provider failed during the sign-in (unreachable, or it refused the code).
    #[error("the identity provider did not answer as expected; try again")]
    ProviderFailed(String),
    /// The callback does not belong to a sign-in started in this browser: no `state`, an
    /// expired or used one, one from another browser or for another provider.
    #[error("this sign-in {0}; start again")]
    BadState(&'static str),
    /// The provider sent the browser back with an error (the user declined, for example).
    #[error("the identity provider did not sign you in ({0})")]
    Refused(String),
    /// The ID token failed a check (signature, audience, expiry, nonce, …).
    #[error("the identity provider's answer could not be verified")]
    TokenRejected(String),
    /// The user is not in any of the provider's `allowed_groups`.
    #[error("your account is not allowed to sign in here")]
    NotAllowed,
    /// The session store failed.
    #[error("{0}")]
    Session(#[from] ApiError),
}

impl From<StoreError> for SignInError {
    fn from(err: StoreError) -> Self {
        Self::Session(err.into())
    }
}

impl ResponseError for SignInError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnknownProvider => StatusCode::NOT_FOUND,
            Self::ProviderUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::ProviderFailed(_) => StatusCode::BAD_GATEWAY,
            Self::BadState(_) => StatusCode::BAD_REQUEST,
            Self::Refused(_) | Self::NotAllowed => StatusCode::FORBIDDEN,
            Self::TokenRejected(_) => StatusCode::UNAUTHORIZED,
            Self::Session(err) => err.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        // The cause goes to the log; the page says what the person can do.
        match self {
            Self::ProviderFailed(cause) | Self::TokenRejected(cause) => {
                tracing::warn!(error = %cause, "{self}");
            }
            Self::Session(err) => return err.error_response(),
            _ => tracing::info!("sign-in failed: {self}"),
        }
        pages::sign_in_failed(self.status_code(), &self.to_string())
    }
}
