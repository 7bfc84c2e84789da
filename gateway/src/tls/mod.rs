//! TLS, both sides, with rustls and its ring provider: [`server`] serves the public HTTPS port
//! (the certificate pair, replaced while the gateway runs), [`upstream`] secures and verifies
//! the connections to `https://` upstreams; [`acme`] obtains and renews the public certificate.

pub mod acme;
pub mod server;
pub mod upstream;

pub use server::{CertStore, RELOAD_EVERY, TlsError, TlsFiles};
