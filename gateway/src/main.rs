//! `gateway`: serves the routes of `GATEWAY_ROUTES` (default `routes.toml`) until Ctrl-C or
//! SIGTERM; `gateway --check [FILE]` only validates a routes file; `gateway healthcheck` asks a
//! running gateway's admin `/readyz` (for container health checks); `gateway schema` prints the
//! JSON Schema of routes.toml (`gateway schema > routes/routes.schema.json`).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use gateway::{Gateway, GatewayConfig};

/// Path-based reverse proxy driven by routes.toml (see docs/src/reference/routes.md).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Validate a routes file (default: GATEWAY_ROUTES or routes.toml) and exit: 0 valid,
    /// 1 invalid.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    check: Option<Option<PathBuf>>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exit 0 when the gateway's admin listener (GATEWAY_ADMIN_ADDR) answers /readyz, else 1.
    Healthcheck,
    /// Print the JSON Schema of routes.toml, which editors use to complete and check it
    /// (regenerate the shipped one: `gateway schema > routes/routes.schema.json`).
    Schema,
}

// The control runtime (admin listener, routes watcher, health checks) needs one thread; the
// public port has worker threads of its own (see `gateway::listen`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck) => {
            return common::probe::healthcheck(
                "gateway",
                "GATEWAY_ADMIN_ADDR",
                gateway::config::DEFAULT_ADMIN_ADDR,
                "/readyz",
            );
        }
        Some(Command::Schema) => {
            print!("{}", gateway::routes::schema_json());
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    let config = match common::startup("gateway", GatewayConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(file) = cli.check {
        return check(&file.unwrap_or(config.routes));
    }
    match Gateway::build(config).await {
        Ok(gateway) => {
            let announced =
                listeners(&gateway)
                    .map_err(|err| err.to_string())
                    .and_then(|listeners| {
                        common::listening::announce(&listeners).map_err(|err| err.to_string())
                    });
            if let Err(err) = announced {
                eprintln!("gateway: {err}");
                return ExitCode::FAILURE;
            }
            gateway.run_until(common::shutdown::signal()).await;
            common::traces::shutdown();
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("gateway: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What `LISTEN_ADDR_FILE` gets: the public and admin listeners, and HTTPS when served.
fn listeners(gateway: &Gateway) -> std::io::Result<Vec<(&'static str, std::net::SocketAddr)>> {
    let mut listeners = vec![
        ("addr", gateway.local_addr()?),
        ("admin", gateway.admin_addr()?),
    ];
    if let Some(https) = gateway.tls_addr() {
        listeners.push(("https", https?));
    }
    Ok(listeners)
}

fn check(file: &std::path::Path) -> ExitCode {
    match gateway::routes::load(file) {
        Ok(table) => {
            println!(
                "{}: OK ({} routes, {} upstreams)",
                file.display(),
                table.routes.len(),
                table.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}
