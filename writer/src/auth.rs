//! Real credentials (optional): the users of `AUTH_USERS_FILE` and their argon2id hashes.
//!
//! ```toml
//! # One table per user; hashes come from `writer hash-password`.
//! [users.alice]
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! ```
//!
//! Verification costs the same whether the user exists or not (an unknown name is checked
//! against a dummy hash), so timing does not tell which part of a pair was wrong.

use std::{collections::BTreeMap, path::Path};

use argon2::{
    Algorithm, Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use common::ConfigError;
use serde::Deserialize;
use session::UserId;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    users: BTreeMap<String, RawUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    password_hash: String,
}

/// The users who may log in.
pub struct Users {
    hashes: BTreeMap<UserId, String>,
    /// Verified against when the user is unknown, so both cases cost one argon2 run.
    dummy: String,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.hashes.len())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Reads and validates the users file (`AUTH_USERS_FILE`).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let error = |reason: String| {
            ConfigError::new("AUTH_USERS_FILE", format!("{}: {reason}", path.display()))
        };
        let text =
            std::fs::read_to_string(path).map_err(|err| error(format!("cannot read: {err}")))?;
        let raw: RawFile =
            toml::from_str(&text).map_err(|err| error(err.message().trim().to_owned()))?;
        let mut hashes = BTreeMap::new();
        for (name, user) in raw.users {
            let id = UserId::parse(&name)
                .map_err(|reason| error(format!("user name {name:?} {reason}")))?;
            if name.starts_with(crate::oidc::provider::USER_PREFIX) {
                return Err(error(format!(
                    "user name {name:?}: names starting with {:?} belong to identity provider users",
                    crate::oidc::provider::USER_PREFIX
                )));
            }
            let parsed = PasswordHash::new(&user.password_hash).map_err(|err| {
                error(format!(
                    "user {name:?}: password_hash is not a PHC hash string ({err})"
                ))
            })?;
            if parsed.algorithm != Algorithm::Argon2id.ident() {
                return Err(error(format!(
                    "user {name:?}: password_hash must be argon2id (make one with `writer hash-password`)"
                )));
            }
            hashes.insert(id, user.password_hash);
        }
        if hashes.is_empty() {
            return Err(error("no [users.<name>] entries".into()));
        }
        let dummy = hash_password(&random_password()).map_err(error)?;
        Ok(Self { hashes, dummy })
    }

    /// The user id when `password` is right for `username`. Deliberately slow (argon2id):
    /// call it off the request thread.
    pub fn verify(&self, username: &str, password: &str) -> Option<UserId> {
        let known = UserId::parse(username)
            .ok()
            .and_then(|id| self.hashes.get_key_value(&id));
        let hash = known.map_or(self.dummy.as_str(), |(_, hash)| hash.as_str());
        let matches = PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        known.filter(|_| matches).map(|(id, _)| id.clone())
    }
}

/// An argon2id hash (PHC string) of `password` with the default parameters (19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| format!("cannot hash: {err}"))
}

fn random_password() -> String {
    common::random::hex(24)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users_file(content: &str) -> (tempfile::NamedTempFile, Result<Users, ConfigError>) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), content).expect("write");
        let users = Users::load(file.path());
        (file, users)
    }

    #[test]
    fn verifies_the_right_pair_only() {
        let hash = hash_password("correct horse").expect("hash");
        let (_file, users) = users_file(&format!("[users.alice]\npassword_hash = \"{hash}\"\n"));
        let users = users.expect("valid file");
        assert_eq!(
            users
                .verify("alice", "correct horse")
                .map(|u| u.to_string()),
            Some("alice".into())
        );
        assert_eq!(users.verify("alice", "wrong"), None);
        assert_eq!(users.verify("bob", "correct horse"), None);
        assert_eq!(users.verify("not a valid name", "x"), None);
    }

    #[test]
    fn refuses_bad_files_with_a_reason() {
        let (_f, result) = users_file("[users.alice]\npassword_hash = \"plain\"\n");
        let err = result.expect_err("not a hash").to_string();
        assert!(
            err.starts_with("AUTH_USERS_FILE: ") && err.contains("not a PHC hash"),
            "{err}"
        );

        let bcrypt = "$2b$12$abcdefghijklmnopqrstuuJz1lnz2dFBRYIbi0LbgmRr7iCIs3xYe";
        let (_f, result) = users_file(&format!("[users.alice]\npassword_hash = \"{bcrypt}\"\n"));
        assert!(result.is_err());

        let (_f, result) = users_file("[users.alice]\npasword_hash = \"x\"\n");
        assert!(
            result
                .expect_err("typo")
                .to_string()
                .contains("pasword_hash")
        );

        let (_f, result) = users_file("[users]\n");
        assert!(
            result
                .expect_err("empty")
                .to_string()
                .contains("no [users.<name>]")
        );

        let missing = Users::load(Path::new("/nonexistent/users.toml"));
        assert!(
            missing
                .expect_err("missing")
                .to_string()
                .contains("cannot read")
        );
    }
}
