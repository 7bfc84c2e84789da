//! `cargo run --release` in the repository: starts Redis, writer, reader and gateway, prints the
//! URL to open, and stops everything on Ctrl-C. See docs/src/getting-started/quick-start.md.

use std::{process::ExitCode, time::Duration};

use stack::launcher::{self, LaunchConfig};

fn main() -> ExitCode {
    let config = match common::startup("stack", LaunchConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let mut stack = match launcher::launch(&config) {
        Ok(stack) => stack,
        Err(err) => {
            eprintln!("stack   | error: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "\n  The stack is up. Open {url}/login, then {url}/\n  Ctrl-C stops everything.\n",
        url = stack.url
    );

    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(supervise(&mut stack)),
        Err(err) => {
            eprintln!("stack   | error: {err}");
            ExitCode::FAILURE
        }
    };
    eprintln!("stack   | stopping…");
    drop(stack);
    eprintln!("stack   | stopped");
    code
}

/// Waits for Ctrl-C/SIGTERM, or for a part to exit on its own.
async fn supervise(stack: &mut launcher::Stack) -> ExitCode {
    let signal = common::shutdown::signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = &mut signal => return ExitCode::SUCCESS,
            _ = tick.tick() => {
                if let Some((name, status)) = stack.exited() {
                    // Ctrl-C in a terminal reaches every process of the group: a clean exit
                    // here is the same shutdown, seen from a child first.
                    if status.success() {
                        return ExitCode::SUCCESS;
                    }
                    eprintln!("stack   | {name} exited ({status}); stopping the others");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
}
