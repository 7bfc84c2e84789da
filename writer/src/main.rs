//! `writer`: reads its settings from the environment (and `.env`), then serves until Ctrl-C or
//! SIGTERM. See the crate docs for the endpoints.

use std::process::ExitCode;

use writer::{Application, WriterConfig};

#[actix_web::main]
async fn main() -> ExitCode {
    let config = match common::startup("writer", WriterConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let addr = config.addr;
    tracing::warn!(
        "open demo login: GET or POST /login logs anyone in as a new user (set AUTH_USERS_FILE for real credentials)"
    );
    let result = match Application::build(config) {
        Ok(app) => app.run_until(common::shutdown::signal()).await,
        Err(err) => Err(std::io::Error::new(
            err.kind(),
            format!("cannot listen on {addr}: {err} (set WRITER_ADDR to another address)"),
        )),
    };
    common::finish("writer", result)
}
