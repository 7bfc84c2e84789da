//! Process plumbing shared by every binary of the stack (writer, reader, gateway and the local
//! launcher): reading typed settings from the environment, installing the tracing subscriber,
//! waiting for a shutdown signal, telling a supervisor where a service listens, and probing a
//! service's health.
//!
//! It deliberately knows nothing about HTTP or sessions, so the gateway can use it without pulling
//! in actix.

pub mod env;
pub mod listening;
pub mod probe;
pub mod random;
pub mod request_id;
pub mod shutdown;
pub mod telemetry;
pub mod time;
pub mod traces;

pub use env::ConfigError;

/// Start-up shared by every binary: loads `.env`, installs logging, then reads the binary's
/// settings with `load`. On any error it prints one line, `<binary>: <VARIABLE>: <reason>`, and
/// returns the exit code to end with (2, the convention for usage errors).
pub fn startup<T>(
    binary: &str,
    load: impl FnOnce() -> Result<T, ConfigError>,
) -> Result<T, std::process::ExitCode> {
    env::load_dotenv()
        .and_then(|()| telemetry::init(binary))
        .and_then(|()| load())
        .map_err(|err| {
            eprintln!("{binary}: {err}");
            std::process::ExitCode::from(2)
        })
}

/// Ends a binary after its server stopped: success, or one line on stderr and exit code 1.
pub fn finish(binary: &str, result: std::io::Result<()>) -> std::process::ExitCode {
    traces::shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{binary}: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
