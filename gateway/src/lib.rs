//! The gateway: a path-based reverse proxy on hyper 1, driven by `routes.toml`.
//!
//! A request's way through it, by module:
//!
//! - [`listen`]: one single-threaded runtime per core, each accepting on its own `SO_REUSEPORT`
//!   socket of the public port (HTTP/1.1 and h2c), with graceful shutdown;
//! - [`forward`]: one request, in three steps: [`forward::admit`] (route, CORS preflight, body
//!   limit, headers to send), [`forward::send`] (an upstream address, retries when safe), and
//!   [`forward::respond`] (headers back, CORS, streamed body or a tunnel for an upgrade);
//! - [`generation`]: one loaded routes file with everything built from it (address pools,
//!   per-worker upstream clients, health checks), swapped whole on reload;
//! - [`upstream`]: the addresses behind each upstream ([`upstream::endpoint`]), balancing and
//!   name lookup ([`upstream::pool`]), passive and active health, the connections to them, and
//!   the one rule for sending a request again ([`upstream::retry`]);
//! - [`limit`]: the buckets of the file's rate limits, kept across reloads, bounded in memory;
//! - [`routes`]: the file's schema, validation and the immutable routing table; [`reload`]
//!   follows its edits;
//! - [`tls`]: both sides of TLS, the public HTTPS port's certificates and the connections to
//!   `https://` upstreams;
//! - [`capacity`]: the caps on requests in flight (`max_in_flight`) and the tickets a request
//!   holds until its answer is sent (a leaf, like [`http_ext`]);
//! - [`http_ext`]: the body type and the header names every layer shares (a leaf: it imports
//!   nothing of the gateway);
//! - [`admin`]: `/healthz`, `/readyz`, `/routes`, `/metrics` ([`metrics`]) on their own port;
//! - [`startup`]: building and running the whole gateway.

pub mod access;
pub mod admin;
pub mod capacity;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod forward;
pub mod generation;
pub mod http_ext;
pub mod limit;
pub mod listen;
pub mod metrics;
pub mod reload;
pub mod routes;
pub mod startup;
pub mod tls;
pub mod upstream;

pub use config::GatewayConfig;
pub use http_ext::body::{Body, BoxError};
pub use startup::{Gateway, StartError};
