//! The addresses behind each upstream, whether they are usable, and picking one per request.
//!
//! A target (`http://reader:8091`) resolves to one or more addresses (with `docker compose up
//! --scale reader=3`, the name `reader` resolves to three). Each address is an [`Endpoint`] with
//! its own state: requests in flight (for power-of-two-choices), consecutive connection failures
//! and an ejection deadline (passive health), and the result of the last active health check.
//!
//! Endpoint state lives in a [`Registry`] shared by all generations of the routing table, so a
//! reload does not forget that an address is down or busy. Host names are resolved again every
//! `resolve_interval` by a task that lives as long as its generation ([`health`] has it, and the
//! active health checks).
//!
//! Each worker has a slot of its own in every endpoint, on its own cache line: its requests in
//! flight and its idle connections to the address ([`connection`]). A worker never writes a
//! line another core reads on its hot path; power-of-two-choices compares the picking worker's
//! own counts (as each nginx worker balances its own connections). Connections live as long as
//! the endpoint, so a reload keeps them.
//!
//! Here: [`endpoint`] (one address, its per-worker slots and idle connections), [`pool`] (the
//! addresses of an upstream, the registry, lookup and balancing), [`retry`] (when a request may
//! be sent again), [`connection`] (one HTTP/1.1 connection), [`streamed`] (a response body that
//! drives its connection), [`health`] (re-resolving and active checks). How an `https://` upstream
//! is reached is in [`crate::tls::upstream`], with the server side of TLS.
//!
//! [`Endpoint`]: endpoint::Endpoint
//! [`Registry`]: pool::Registry

pub mod connection;
pub mod endpoint;
pub mod health;
pub mod pool;
pub mod retry;
pub mod streamed;

pub use retry::KEEP_ALIVE_RACE_AFTER;
