//! `routes.toml`: its schema, its validation and the immutable routing table built from it.
//!
//! ```toml
//! [settings]                               # optional, every key optional
//! request_timeout = "30s"
//! trusted_proxies = ["10.0.0.0/8"]
//!
//! [upstreams]
//! writer = ["${WRITER_URL:-http://127.0.0.1:8090}"]        # short form
//!
//! [upstreams.reader]                       # long form
//! targets = ["http://127.0.0.1:8091", "http://127.0.0.1:8092"]
//! balance = "round_robin"
//! health_check = { path = "/healthz", interval = "5s" }
//!
//! [[routes]]
//! path = "/login"
//! upstream = "writer"
//! timeout = "10s"
//! max_body = "64KiB"
//!
//! [cors]
//! origins = ["https://app.example.com"]
//! ```
//!
//! Loading happens in two stages (as in rust-rpxy): the raw TOML is deserialized into structs
//! that refuse unknown keys ([`raw`]), then [`parse()`] validates them into a [`RouteTable`]
//! ([`table`]), reading the values with the parsers of [`values`]. Every error carries the file,
//! the line and a reason. A table, once built, never changes: a reload builds a new one and
//! swaps it in whole. The same raw structs give the file's JSON Schema ([`schema`]), which
//! editors use; the full schema is also in the book, docs/src/reference/routes.md.

mod error;
mod interpolate;
mod parse;
mod raw;
mod schema;
mod table;
mod values;

use std::path::Path;

pub use error::RoutesError;
pub use schema::{schema, schema_json};
pub use table::{
    Balance, Cors, DoorCheck, Eject, HealthCheck, LimitKey, Rate, RateLimit, Route, RouteTable,
    Settings, Target, Upstream,
};

/// Reads and validates the routes file at `path`.
pub fn load(path: &Path) -> Result<RouteTable, RoutesError> {
    let text = std::fs::read_to_string(path).map_err(|err| RoutesError {
        file: path.to_owned(),
        line: None,
        reason: format!("cannot read: {err}"),
    })?;
    parse(path, &text, |name| std::env::var(name).ok())
}

/// Validates routes file `text` (`file` names it in errors; `env` resolves `${VAR}`), then
/// reads the files it names (the upstreams' CA certificates).
pub fn parse(
    file: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RouteTable, RoutesError> {
    parse::parse(file, text, &env)
}
