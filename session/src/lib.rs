//! The one place where writer and reader agree on what a session is.
//!
//! Both services link this library, so the cookie name, the signing keys, the cookie format, the
//! Redis layout and every rule about who may touch a session are written exactly once:
//!
//! - [`config`]: typed settings read from the environment and validated at start;
//! - [`keys`]: the keyring built from `SESSION_SECRET` (several secrets = rotation);
//! - [`handle`]: what the cookie carries (an encrypted, opaque session handle);
//! - [`identity`]: what a session knows of its user and where it started;
//! - [`store`]: the Redis layout and the atomic operations on it;
//! - [`sessions`]: [`Sessions`], the per-worker store handle and the rules both services follow;
//! - [`middleware`]: the actix-session wiring (cookie and request lifecycle);
//! - `credential`: which credential a request carries (session header or cookie);
//! - [`current`]: [`CurrentSession`], the extractor handlers use;
//! - [`cross_site`]: why requests from other sites never change a session;
//! - [`devices`]: the list of one's sessions, and ending some of them;
//! - [`action`]: what a request that changes a session asks for;
//! - [`audience`]: whether a request is answered with a page or with JSON;
//! - [`error`]: the JSON error type every endpoint answers with;
//! - [`pages`]: the small HTML pages browsers get instead of JSON;
//! - [`pending`]: single-use values, such as a sign-in waiting for an identity provider;
//! - [`metrics`]: what the admin listener's `/metrics` counts;
//! - [`throttle`]: failed-login counters in Redis, and the known-device cookies that keep
//!   strangers' failures from locking a user out;
//! - [`service`]: what both HTTP services share (request ids, health checks, the server loop).

pub mod action;
pub mod audience;
pub mod config;
mod credential;
pub mod cross_site;
pub mod current;
pub mod devices;
pub mod error;
pub mod handle;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod middleware;
pub mod pages;
pub mod pending;
pub mod service;
pub mod sessions;
pub mod store;
pub mod throttle;

pub use config::SessionConfig;
pub use cross_site::TrustedOrigins;
pub use current::{CurrentSession, LiveSession, LoggedIn, LoginAs, Logout, Transport};
pub use error::ApiError;
pub use handle::{SessionHandle, UserId};
pub use identity::{Device, Identity, Method};
pub use keys::Keyring;
pub use sessions::Sessions;
pub use store::{RedisStore, StoreError};
