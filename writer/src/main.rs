//! `writer`: reads its settings from the environment (and `.env`), then serves until Ctrl-C or
//! SIGTERM. `writer hash-password` prints an argon2id hash for `AUTH_USERS_FILE`;
//! `writer healthcheck` asks a running writer's `/healthz` (for container health checks).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use session::service;
use writer::{Application, WriterConfig};

/// Creates, changes and destroys sessions: /login, /increment, /logout (see docs/src/reference/http.md).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Validate the settings (environment, .env, AUTH_USERS_FILE, AUTH_PROVIDERS_FILE) and exit:
    /// 0 when they are valid, 2 with the first mistake.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a password (prompted, or one line on stdin) and print its argon2id hash.
    HashPassword,
    /// Exit 0 when the writer listening on WRITER_ADDR answers /healthz, else 1.
    Healthcheck,
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::HashPassword) => return writer::hash_password::run(),
        Some(Command::Healthcheck) => {
            return common::probe::healthcheck(
                "writer",
                "WRITER_ADDR",
                writer::config::DEFAULT_ADDR,
                "/healthz",
            );
        }
        None => {}
    }
    let config = match common::startup("writer", WriterConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if cli.check {
        println!("writer: the settings are valid");
        return ExitCode::SUCCESS;
    }
    if config.users.is_none() && config.providers.is_none() {
        tracing::warn!(
            "open demo login: GET or POST /login logs anyone in as a new user (set AUTH_USERS_FILE or AUTH_PROVIDERS_FILE for real sign-ins)"
        );
    }
    let listen = ("WRITER_ADDR", config.addr);
    service::serve("writer", listen, Application::build(config)).await
}
