//! The reader: the "application" service. It only reads sessions: `GET /` answers who you are
//! and your count, or 401 when you are not logged in. Reading costs one Redis command (`GETEX`),
//! which also restarts the session's idle timeout, so the reader never needs to set a cookie.
//!
//! `GET /session` is the same read as a door check, for the gateway's `auth = "session"` routes:
//! 204 with `X-User-Id`, or the JSON error `/` would answer. Services behind such a route learn
//! who the user is from that header and never need to know the session format.

pub mod config;

use std::{future::Future, io, net::SocketAddr};

use actix_web::{HttpResponse, web};
pub use config::ReaderConfig;
use session::{
    ApiError, CurrentSession,
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
            config.addr,
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

/// `{"user":{"id":"…"},"count":N}`, serialized straight from borrowed fields.
#[derive(serde::Serialize)]
struct WhoAmI<'a> {
    user: User<'a>,
    count: i64,
}

#[derive(serde::Serialize)]
struct User<'a> {
    id: &'a session::UserId,
}

/// `GET /`: JSON for API clients, a page for browsers.
async fn whoami(audience: Audience, current: CurrentSession) -> Result<HttpResponse, ApiError> {
    match current.read().await {
        Ok((user, count)) if audience.is_browser() => {
            Ok(pages::session(&user, count, "Your session"))
        }
        Ok((user, count)) => Ok(HttpResponse::Ok().json(WhoAmI {
            user: User { id: &user },
            count,
        })),
        Err(ApiError::NotLoggedIn) if audience.is_browser() => Ok(pages::login_prompt()),
        Err(err) => Err(err),
    }
}

/// `GET /session`: 204 with `X-User-Id` for a live session (one `GETEX`, which counts as a use:
/// the idle timeout restarts), else 401 or 503 JSON. Always JSON, never a page: the gateway hands
/// the answer of a failed check to the client as it is.
async fn check(current: CurrentSession) -> Result<HttpResponse, ApiError> {
    let (user, _) = current.read().await?;
    Ok(HttpResponse::NoContent()
        .insert_header((USER_ID, user.as_str()))
        .finish())
}

/// The header that names the user of a checked session.
pub const USER_ID: &str = "x-user-id";
