//! `reader`: reads its settings from the environment (and `.env`), then serves until Ctrl-C or
//! SIGTERM. See the crate docs for the endpoints.

use std::process::ExitCode;

use reader::{Application, ReaderConfig};

#[actix_web::main]
async fn main() -> ExitCode {
    let config = match common::startup("reader", ReaderConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let addr = config.addr;
    let result = match Application::build(config) {
        Ok(app) => app.run_until(common::shutdown::signal()).await,
        Err(err) => Err(std::io::Error::new(
            err.kind(),
            format!("cannot listen on {addr}: {err} (set READER_ADDR to another address)"),
        )),
    };
    common::finish("reader", result)
}
