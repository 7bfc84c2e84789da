//! The keyring built from `SESSION_SECRET`.
//!
//! `SESSION_SECRET=new,old` rotates secrets without logging anyone out: the first secret seals
//! every cookie handed out from now on, every listed secret can still open one. A cookie opened
//! with an older secret is sealed again with the first one on the next successful request, so
//! dropping the old secret later only ends sessions that were not used in between.
//!
//! Each secret is stretched into a [`Key`] with `Key::derive_from` (HKDF-SHA256), which needs at
//! least 32 bytes of input; shorter secrets are refused at start rather than padded. `Key::from`
//! is never used: it panics on short input.

use std::fmt;

use actix_web::cookie::{Cookie, CookieJar, Key};

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The keys derived from `SESSION_SECRET`, primary first. `Debug` shows only how many there are.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// Parses a comma-separated list of secrets (surrounding spaces are ignored).
    pub fn from_secrets(secrets: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for (position, secret) in secrets.split(',').map(str::trim).enumerate() {
            let which = ordinal(position);
            if secret.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "the {which} secret is {} bytes long; each secret needs at least {MIN_SECRET_LEN} (generate one with `openssl rand -base64 48`)",
                    secret.len()
                ));
            }
            if seen.contains(&secret) {
                return Err(format!("the {which} secret repeats an earlier one"));
            }
            seen.push(secret);
            keys.push(Key::derive_from(secret.as_bytes()));
        }
        Ok(Self { keys })
    }

    /// The key that seals new cookies; actix-session verifies with this one.
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Encrypts and authenticates `plaintext` as the value of cookie `name` with the primary key.
    /// The result is exactly what the session cookie carries, so the same string also works as a
    /// header credential.
    pub fn seal(&self, name: &str, plaintext: &str) -> String {
        let mut jar = CookieJar::new();
        jar.private_mut(self.primary())
            .add(Cookie::new(name.to_owned(), plaintext.to_owned()));
        jar.get(name)
            .map(|cookie| cookie.value().to_owned())
            .unwrap_or_default()
    }

    /// Opens a value sealed by any key of the ring. Returns the plaintext and whether it was
    /// sealed by an older key (and so should be sealed again with the primary one).
    pub fn open(&self, name: &str, sealed: &str) -> Option<Opened> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(name.to_owned(), sealed.to_owned()));
        self.keys.iter().enumerate().find_map(|(index, key)| {
            jar.private(key).get(name).map(|cookie| Opened {
                plaintext: cookie.value().to_owned(),
                by_old_key: index > 0,
            })
        })
    }
}

/// A value opened by [`Keyring::open`].
#[derive(Debug)]
pub struct Opened {
    pub plaintext: String,
    pub by_old_key: bool,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn ordinal(position: usize) -> String {
    match position {
        0 => "first".into(),
        1 => "second".into(),
        2 => "third".into(),
        n => format!("{}th", n + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a-development-secret-of-more-than-32-bytes";
    const B: &str = "b-development-secret-of-more-than-32-bytes";

    #[test]
    fn short_and_repeated_secrets_are_refused() {
        let err = Keyring::from_secrets("short").expect_err("too short");
        assert!(err.contains("first secret is 5 bytes"), "{err}");
        let err = Keyring::from_secrets(&format!("{A},tiny")).expect_err("second too short");
        assert!(err.contains("second secret"), "{err}");
        let err = Keyring::from_secrets(&format!("{A}, {A}")).expect_err("repeat");
        assert!(err.contains("repeats"), "{err}");
        assert!(Keyring::from_secrets("").is_err());
    }

    #[test]
    fn seal_and_open_round_trip() {
        let ring = Keyring::from_secrets(A).expect("valid");
        let sealed = ring.seal("sid", "hello");
        assert!(!sealed.contains("hello"));
        let opened = ring.open("sid", &sealed).expect("opens");
        assert_eq!(opened.plaintext, "hello");
        assert!(!opened.by_old_key);
        // The cookie name is authenticated too: a value moved to another cookie is refused.
        assert!(ring.open("other", &sealed).is_none());
    }

    #[test]
    fn rotation_opens_old_values_and_seals_with_the_new_key() {
        let old = Keyring::from_secrets(A).expect("valid");
        let rotated = Keyring::from_secrets(&format!("{B},{A}")).expect("valid");
        let new = Keyring::from_secrets(B).expect("valid");

        let from_old = old.seal("sid", "v");
        let opened = rotated
            .open("sid", &from_old)
            .expect("old key still accepted");
        assert!(opened.by_old_key);
        assert_eq!(opened.plaintext, "v");

        let from_rotated = rotated.seal("sid", "v");
        assert!(
            new.open("sid", &from_rotated).is_some(),
            "sealed with the new key"
        );
        assert!(old.open("sid", &from_rotated).is_none());
        assert!(new.open("sid", &from_old).is_none(), "old key dropped");
    }

    #[test]
    fn debug_does_not_print_keys() {
        let ring = Keyring::from_secrets(A).expect("valid");
        assert_eq!(format!("{ring:?}"), "Keyring { keys: 1, .. }");
    }
}
