//! The reader: the "application" service. It only reads sessions: `GET /` answers who you are
//! and your count, or 401 when you are not logged in. Reading costs one Redis command (`GETEX`),
//! which also restarts the session's idle timeout, so the reader never needs to set a cookie.
//!
//! `GET /session` is the same read as a door check, for the gateway's `auth = "session"` routes:
//! 204 with `X-User-Id`, or the JSON error `/` would answer. Services behind such a route learn
//! who the user is from that header and never need to know the session format.

pub mod config;

use std::{future::Future, io, net::SocketAddr};

use actix_web::{HttpResponse, http::header::HeaderValue, web};
pub use config::ReaderConfig;
use session::{
    ApiError, CurrentSession, LiveSession, Method,
    audience::Audience,
    pages,
    service::{self, BoundService, resource},
};

/// The reader, bound to its address and ready to run.
#[derive(Debug)]
pub struct Application(BoundService);

impl Application {
    /// Binds the listen address (port 0 picks a free one); does not touch Redis yet.
    pub fn build(config: ReaderConfig) -> io::Result<Self> {
        service::bind(
            "reader",
            service::Listen {
                addr: config.addr,
                admin: config.admin_addr,
            },
            config.session,
            |sessions| sessions,
            configure,
        )
        .map(Self)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Serves until `shutdown` resolves.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        self.0.run_until(shutdown).await
    }
}

impl From<Application> for BoundService {
    fn from(app: Application) -> Self {
        app.0
    }
}

fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/").get(whoami))
        .service(resource("/session").get(check));
}

/// `{"user":{"id":"…"},"count":N}`, serialized straight from borrowed fields; a user who signed
/// in with an identity provider also has `name`, `email`, `groups` and `provider`.
#[derive(serde::Serialize)]
struct WhoAmI<'a> {
    user: User<'a>,
    count: i64,
}

#[derive(serde::Serialize)]
struct User<'a> {
    id: &'a session::UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
}

impl<'a> User<'a> {
    fn of(session: &'a LiveSession) -> Self {
        let identity = &session.identity;
        let from_provider = identity.method == Method::Provider;
        Self {
            id: &session.user,
            name: identity.name.as_deref(),
            email: identity.email.as_deref(),
            groups: from_provider.then_some(identity.groups.as_slice()),
            provider: identity.provider.as_deref(),
        }
    }
}

/// `GET /`: JSON for API clients, a page for browsers.
async fn whoami(audience: Audience, current: CurrentSession) -> Result<HttpResponse, ApiError> {
    match current.read().await {
        Ok(session) if audience.is_browser() => Ok(pages::session(
            &session.user,
            session.identity.name.as_deref(),
            session.count,
            "Your session",
        )),
        Ok(session) => Ok(HttpResponse::Ok().json(WhoAmI {
            user: User::of(&session),
            count: session.count,
        })),
        Err(ApiError::NotLoggedIn) if audience.is_browser() => Ok(pages::login_prompt()),
        Err(err) => Err(err),
    }
}

/// `GET /session`: 204 with `X-User-Id` for a live session (one `GETEX`, which counts as a use:
/// the idle timeout restarts), and what the session knows of the user in `X-User-Name`,
/// `X-User-Email` and `X-User-Groups` (comma-separated); else 401 or 503 JSON. Always JSON, never
/// a page: the gateway hands the answer of a failed check to the client as it is.
async fn check(current: CurrentSession) -> Result<HttpResponse, ApiError> {
    let session = current.read().await?;
    let identity = &session.identity;
    let mut answer = HttpResponse::NoContent();
    answer.insert_header((USER_ID, session.user.as_str()));
    // A value that cannot be a header (a line break in a name) is left out, never sent mangled.
    let mut optional = |name: &'static str, value: Option<String>| {
        if let Some(value) = value.and_then(|value| HeaderValue::try_from(value).ok()) {
            answer.insert_header((name, value));
        }
    };
    optional(USER_NAME, identity.name.clone());
    optional(USER_EMAIL, identity.email.clone());
    optional(
        USER_GROUPS,
        (!identity.groups.is_empty()).then(|| identity.groups.join(",")),
    );
    Ok(answer.finish())
}

/// The header that names the user of a checked session.
pub const USER_ID: &str = "x-user-id";
/// The user's name, from their identity provider.
pub const USER_NAME: &str = "x-user-name";
/// The user's email address, from their identity provider.
pub const USER_EMAIL: &str = "x-user-email";
/// The user's groups (comma-separated), from their identity provider.
pub const USER_GROUPS: &str = "x-user-groups";
