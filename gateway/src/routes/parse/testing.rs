//! What the tests of every validation step share: a file parsed as `routes.toml` without an
//! environment, and the error it must be refused with.

use std::path::Path;

pub(super) use super::super::error::RoutesError;
use super::super::table::RouteTable;

/// [`super::parse`], with the environment as any closure.
pub(super) fn parse(
    file: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RouteTable, RoutesError> {
    super::parse(file, text, &env)
}

pub(super) fn no_env(_: &str) -> Option<String> {
    None
}

pub(super) fn parse_err(text: &str) -> RoutesError {
    parse(Path::new("routes.toml"), text, no_env).expect_err("must be refused")
}
