//! `reader`: reads its settings from the environment (and `.env`), then serves until Ctrl-C or
//! SIGTERM. See the crate docs for the endpoints. `reader healthcheck` asks a running reader's
//! `/healthz` (for container health checks).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reader::{Application, ReaderConfig};
use session::service;

/// Reads the shared session: GET / answers who you are and your count (see docs/src/reference/http.md).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exit 0 when the reader listening on READER_ADDR answers /healthz, else 1.
    Healthcheck,
}

#[actix_web::main]
async fn main() -> ExitCode {
    if let Some(Command::Healthcheck) = Cli::parse().command {
        return common::probe::healthcheck(
            "reader",
            "READER_ADDR",
            reader::config::DEFAULT_ADDR,
            "/healthz",
        );
    }
    let config = match common::startup("reader", ReaderConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let listen = ("READER_ADDR", config.addr);
    service::serve("reader", listen, Application::build(config)).await
}
