//! `writer`: reads its settings from the environment (and `.env`), then serves until Ctrl-C or
//! SIGTERM. `writer hash-password` prints an argon2id hash for `AUTH_USERS_FILE`;
//! `writer healthcheck` asks a running writer's `/healthz` (for container health checks).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use writer::{Application, WriterConfig};

/// Creates, changes and destroys sessions: /login, /increment, /logout (see README).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
    match Cli::parse().command {
        Some(Command::HashPassword) => return hash_password(),
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
    let addr = config.addr;
    if config.users.is_none() {
        tracing::warn!(
            "open demo login: GET or POST /login logs anyone in as a new user (set AUTH_USERS_FILE for real credentials)"
        );
    }
    let result = match Application::build(config) {
        Ok(app) => match common::listening::announce(&[("addr", app.local_addr())]) {
            Ok(()) => app.run_until(common::shutdown::signal()).await,
            Err(err) => Err(std::io::Error::other(err.to_string())),
        },
        Err(err) => Err(std::io::Error::new(
            err.kind(),
            format!("cannot listen on {addr}: {err} (set WRITER_ADDR to another address)"),
        )),
    };
    common::finish("writer", result)
}

fn hash_password() -> ExitCode {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("password: ").and_then(|first| {
            let again = rpassword::prompt_password("again: ")?;
            if first == again {
                Ok(first)
            } else {
                Err(std::io::Error::other("the passwords differ"))
            }
        })
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map(|_| line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let hashed = password
        .map_err(|err| err.to_string())
        .and_then(|password| {
            if password.is_empty() {
                Err("the password is empty".to_owned())
            } else {
                writer::auth::hash_password(&password)
            }
        });
    match hashed {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("writer hash-password: {err}");
            ExitCode::FAILURE
        }
    }
}
