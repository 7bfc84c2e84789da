//! The writer: the "auth" service that creates, changes and destroys sessions.
//!
//! | request                     | logged in                              | not logged in          |
//! |-----------------------------|----------------------------------------|------------------------|
//! | `GET`/`POST /login`         | 200, same user, session id renewed     | 200, new user          |
//! | `GET`/`POST /increment`     | 200 with the new count                 | 401, nothing stored    |
//! | `GET`/`POST /logout`        | 200, session deleted, cookie expired   | 200 (idempotent)       |
//!
//! With `AUTH_USERS_FILE`, `/login` wants a username and password instead (see [`auth`]).
//! Requests another site made a browser send change nothing (see [`session::cross_site`]).
//! All session logic lives in the `session` library; this crate maps it to HTTP.

pub mod auth;
pub mod client;
pub mod config;
pub mod hash_password;
pub mod oidc;
mod routes;

use std::{future::Future, io, net::SocketAddr, sync::Arc};

pub use config::WriterConfig;
use oidc::Providers;
use session::service::{self, BoundService};

/// The writer, bound to its address and ready to run.
#[derive(Debug)]
pub struct Application {
    service: BoundService,
    /// Discovered in the background once the writer runs.
    providers: Option<Arc<Providers>>,
}

impl Application {
    /// Binds the listen address (port 0 picks a free one); does not touch Redis yet.
    pub fn build(config: WriterConfig) -> io::Result<Self> {
        let max_per_user = config.max_per_user;
        let trusted_origins = config.trusted_origins;
        let users = config.users;
        let providers = config.providers.clone();
        let gateways = config.trusted_gateways;
        service::bind(
            "writer",
            service::Listen {
                addr: config.addr,
                admin: config.admin_addr,
            },
            config.session,
            move |sessions| {
                sessions
                    .with_max_per_user(max_per_user)
                    .with_trusted_origins(trusted_origins.clone())
            },
            move |service: &mut actix_web::web::ServiceConfig| {
                routes::configure(service, users.clone(), providers.clone(), gateways.clone())
            },
        )
        .map(|service| Self {
            service,
            providers: config.providers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.service.local_addr()
    }

    /// Serves until `shutdown` resolves.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let service: BoundService = self.into();
        service.run_until(shutdown).await
    }
}

impl From<Application> for BoundService {
    /// Starts discovering the identity providers (a task on the running system) and hands the
    /// bound service over.
    fn from(app: Application) -> Self {
        if let Some(providers) = app.providers {
            actix_web::rt::spawn(providers.discover());
        }
        app.service
    }
}
