//! `routes.toml`: its schema, its validation and the immutable routing table built from it.
//!
//! Loading happens in two stages (as in rust-rpxy): [`file`] deserializes the raw TOML into
//! structs that refuse unknown keys, then validates them into a [`RouteTable`]. Every error carries
//! the file, the line and a reason. A table, once built, never changes: a reload builds a new one
//! and swaps it in whole. The same raw structs give the file's JSON Schema ([`schema`]), which
//! editors use.

mod error;
mod file;
mod interpolate;
mod schema;
mod table;

pub use error::RoutesError;
pub use file::{load, parse};
pub use schema::{schema, schema_json};
pub use table::{
    Balance, Cors, DoorCheck, Eject, HealthCheck, Route, RouteTable, Settings, Target, Upstream,
};
