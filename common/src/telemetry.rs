//! One way to log, for every binary: `RUST_LOG` picks what is logged (default `info`),
//! `LOG_FORMAT` picks how (`text` for people, `json` for log shippers). Logs go to stderr so
//! stdout stays free for command output such as `gateway --check`. The same spans become
//! OpenTelemetry traces when the standard variables ask for them (see [`crate::traces`]).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{ConfigError, env, traces::TraceExport};

/// How log lines are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` (default `text`).
    pub fn from_env() -> Result<Self, ConfigError> {
        env::choice(
            "LOG_FORMAT",
            &[("text", Self::Text), ("json", Self::Json)],
            Self::Text,
            "a log format (use text or json)",
        )
    }
}

/// Installs the global subscriber, with the trace exporter when one is asked for; `binary`
/// names the process in traces unless `OTEL_SERVICE_NAME` does. Call once, first thing in
/// `main`.
pub fn init(binary: &str) -> Result<(), ConfigError> {
    let format = LogFormat::from_env()?;
    let export = TraceExport::from_env(binary)?;
    let filter = match env::optional("RUST_LOG")? {
        Some(directives) => EnvFilter::try_new(&directives)
            .map_err(|err| ConfigError::new("RUST_LOG", format!("invalid filter: {err}")))?,
        None => EnvFilter::new("info"),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let traces = export.map(TraceExport::install).transpose()?;
    let registry = registry.with(traces);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second call (tests that build several apps in one process) keeps the first subscriber.
    drop(installed);
    Ok(())
}
