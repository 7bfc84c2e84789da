//! Typed settings from environment variables.
//!
//! Every reader here returns a [`ConfigError`] that names the variable and says what is wrong, so
//! a service that cannot start prints exactly one actionable line. An empty value counts as unset:
//! `SESSION_MAX_AGE=` in a `.env` file means "no absolute lifetime", not "zero".

use std::{fmt::Display, net::SocketAddr, str::FromStr};

/// A setting that is missing or invalid; displayed as `NAME: reason`.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The environment variable (or file) the problem is about.
    pub var: String,
    /// What is wrong with it, phrased for the person who set it.
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            reason: reason.into(),
        }
    }
}

/// Loads `.env` from the working directory when there is one. Variables already set in the
/// environment win, so `FOO=1 cargo run` overrides the file. A malformed file is an error that
/// names the file and the line, never silently half-applied.
pub fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(err) if err.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(line, at)) => Err(ConfigError::new(
            ".env",
            format!("cannot parse {line:?} (at character {at})"),
        )),
        Err(err) => Err(ConfigError::new(".env", err.to_string())),
    }
}

/// The value of `name`, or `None` when it is unset or empty.
pub fn optional(name: &str) -> Result<Option<String>, ConfigError> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::new(name, "is not valid UTF-8")),
    }
}

/// The value of `name`; `hint` says what a valid value looks like when it is missing.
pub fn required(name: &str, hint: &str) -> Result<String, ConfigError> {
    optional(name)?.ok_or_else(|| ConfigError::new(name, format!("is required ({hint})")))
}

/// Parses `name` with [`FromStr`], or returns `None` when it is unset.
pub fn parse_optional<T>(name: &str, expected: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    optional(name)?
        .map(|raw| {
            raw.trim()
                .parse::<T>()
                .map_err(|err| ConfigError::new(name, format!("{raw:?} is not {expected} ({err})")))
        })
        .transpose()
}

/// Parses `name` with [`FromStr`], falling back to `default` when it is unset.
pub fn parse_or<T>(name: &str, expected: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    Ok(parse_optional(name, expected)?.unwrap_or(default))
}

/// A listen address such as `127.0.0.1:8090` (port 0 lets the kernel choose).
pub fn socket_addr(name: &str, default: &str) -> Result<SocketAddr, ConfigError> {
    let raw = optional(name)?.unwrap_or_else(|| default.to_owned());
    raw.trim().parse().map_err(|_| {
        ConfigError::new(
            name,
            format!("{raw:?} is not a listen address like 127.0.0.1:8080 or [::]:8080"),
        )
    })
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), falling back to `default`.
pub fn flag(name: &str, default: bool) -> Result<bool, ConfigError> {
    let Some(raw) = optional(name)? else {
        return Ok(default);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            name,
            format!("{raw:?} is not a boolean (use true or false)"),
        )),
    }
}

/// One of a fixed set of words (compared case-insensitively), `default` when unset. `expected`
/// completes the error "`<value>` is not …", e.g. "one of strict, lax, none".
pub fn choice<T: Copy>(
    name: &str,
    choices: &[(&str, T)],
    default: T,
    expected: &str,
) -> Result<T, ConfigError> {
    let Some(raw) = optional(name)? else {
        return Ok(default);
    };
    let word = raw.trim().to_ascii_lowercase();
    choices
        .iter()
        .find(|(choice, _)| *choice == word)
        .map(|(_, value)| *value)
        .ok_or_else(|| ConfigError::new(name, format!("{word:?} is not {expected}")))
}

/// A positive number of seconds.
pub fn seconds_optional(name: &str) -> Result<Option<std::time::Duration>, ConfigError> {
    match parse_optional::<u64>(name, "a whole number of seconds")? {
        Some(0) => Err(ConfigError::new(name, "must be at least 1 second")),
        other => Ok(other.map(std::time::Duration::from_secs)),
    }
}

#[cfg(test)]
mod tests {
    use super::ConfigError;

    #[test]
    fn errors_name_the_variable() {
        let err = ConfigError::new("SESSION_TTL", "\"x\" is not a whole number");
        assert_eq!(err.to_string(), "SESSION_TTL: \"x\" is not a whole number");
    }
}
