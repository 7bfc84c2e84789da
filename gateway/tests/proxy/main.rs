//! The gateway against a probe upstream that shows what it received: the gateway runs in-process
//! (its app factory on port 0), the probe is a real HTTP server, bound to port 0 as well.

mod helpers;

mod access_log;
mod acme;
mod compression;
mod connections;
mod cors;
mod errors;
mod headers;
mod hostile;
mod https;
mod idle;
mod limits;
mod overload;
mod paths;
mod protocols;
mod rate_limits;
mod reload;
mod replicas;
mod rfc;
mod shutdown;
mod streaming;
