//! `writer hash-password`: reads a password (prompted twice on a terminal, else one line of
//! standard input) and prints its argon2id hash, for `AUTH_USERS_FILE` (see [`crate::auth`]).

use std::{
    io::{self, IsTerminal},
    process::ExitCode,
};

/// Runs the command: the hash on standard output and exit code 0, or one line on standard error
/// and exit code 1.
pub fn run() -> ExitCode {
    let hashed = read_password()
        .map_err(|err| err.to_string())
        .and_then(|password| {
            if password.is_empty() {
                Err("the password is empty".to_owned())
            } else {
                crate::auth::hash_password(&password)
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

/// The password: typed twice without echo on a terminal, else the first line of the input.
fn read_password() -> io::Result<String> {
    if io::stdin().is_terminal() {
        rpassword::prompt_password("password: ").and_then(|first| {
            let again = rpassword::prompt_password("again: ")?;
            if first == again {
                Ok(first)
            } else {
                Err(io::Error::other("the passwords differ"))
            }
        })
    } else {
        let mut line = String::new();
        io::stdin()
            .read_line(&mut line)
            .map(|_| line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
