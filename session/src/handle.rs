//! What the session cookie carries: an opaque handle, sealed with the keyring.
//!
//! The plaintext names a session, it does not hold one: `1:<session id>:<issued>:<deadline>:<user>`.
//! The session id is 256 random bits chosen by the server (a value sent by a client is never
//! adopted); the user id is part of the handle because every key of one user shares a Redis
//! Cluster hash slot (see [`crate::store`]); `issued` and `deadline` (Unix milliseconds, `0` = no
//! absolute lifetime) are fixed at login. Everything that changes, the count, lives only in Redis,
//! so a logout or an expiry on the server ends the session whatever cookie a client replays.

use std::{fmt, time::Duration};

use common::time::millis;
pub use common::time::now_ms;

use crate::keys::Keyring;

/// Version tag of the handle format, so a future layout can coexist with cookies already out.
const FORMAT: &str = "1";
/// Longest accepted user id.
pub const MAX_USER_ID_LEN: usize = 64;

/// A user id: `[A-Za-z0-9._@-]{1,64}`. The character set keeps it safe inside Redis key names
/// (no `{`, `}` or `:`) and inside the handle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// A fresh random id (128 bits, hex) for a visitor of the open demo login.
    pub fn random() -> Self {
        Self(common::random::hex(16))
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > MAX_USER_ID_LEN {
            return Err(format!("must be 1 to {MAX_USER_ID_LEN} characters"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
        {
            return Err("may contain only letters, digits and . _ @ -".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A server-chosen session id: 256 random bits, hex.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn random() -> Self {
        Self(common::random::hex(32))
    }

    fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Enough to correlate log lines, not enough to replay a session.
        write!(f, "SessionId({}…)", &self.0[..8])
    }
}

/// The decoded content of a session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHandle {
    user: UserId,
    id: SessionId,
    issued_at_ms: u64,
    deadline_ms: Option<u64>,
}

impl SessionHandle {
    /// A handle for a session created now, ending at the latest `max_age` from now.
    pub fn new(user: UserId, max_age: Option<Duration>) -> Self {
        let now = now_ms();
        Self {
            user,
            id: SessionId::random(),
            issued_at_ms: now,
            deadline_ms: max_age.map(|age| now.saturating_add(millis(age))),
        }
    }

    pub fn user(&self) -> &UserId {
        &self.user
    }

    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// When the session was created (Unix milliseconds).
    pub fn issued_at_ms(&self) -> u64 {
        self.issued_at_ms
    }

    /// The absolute end of the session, if `SESSION_MAX_AGE` was set at login.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.deadline_ms
    }

    /// How long the session may live from `now_ms` on: the idle timeout, cut short by the
    /// absolute deadline. `None` when the deadline has passed.
    pub fn lifetime_from(&self, now_ms: u64, ttl: Duration) -> Option<Duration> {
        let idle = millis(ttl);
        let remaining = match self.deadline_ms {
            Some(deadline) if deadline <= now_ms => return None,
            Some(deadline) => idle.min(deadline - now_ms),
            None => idle,
        };
        Some(Duration::from_millis(remaining))
    }

    pub fn encode(&self) -> String {
        format!(
            "{FORMAT}:{}:{}:{}:{}",
            self.id.0,
            self.issued_at_ms,
            self.deadline_ms.unwrap_or(0),
            self.user.0
        )
    }

    /// Opens a sealed handle (a cookie value or header token) with any key of `keyring`.
    /// Returns the handle and whether an older key sealed it. `None` for anything that is not a
    /// handle sealed by one of our keys: this is the whole trust boundary for credentials, and
    /// the target of the `cookie` fuzzer.
    pub fn open(keyring: &Keyring, name: &str, sealed: &str) -> Option<(Self, bool)> {
        let opened = keyring.open(name, sealed)?;
        Self::decode(&opened.plaintext).map(|handle| (handle, opened.by_old_key))
    }

    /// Parses [`encode`](Self::encode)'s output; anything else is `None`.
    pub fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(5, ':');
        if parts.next()? != FORMAT {
            return None;
        }
        let id = SessionId::parse(parts.next()?)?;
        let issued_at_ms = parts.next()?.parse().ok()?;
        let deadline_ms = match parts.next()?.parse::<u64>().ok()? {
            0 => None,
            deadline => Some(deadline),
        };
        let user = UserId::parse(parts.next()?).ok()?;
        Some(Self {
            user,
            id,
            issued_at_ms,
            deadline_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip() {
        let handle = SessionHandle::new(UserId::random(), Some(Duration::from_secs(60)));
        assert_eq!(
            SessionHandle::decode(&handle.encode()),
            Some(handle.clone())
        );
        let open = SessionHandle::new(UserId::parse("alice@example.com").expect("valid"), None);
        assert_eq!(SessionHandle::decode(&open.encode()), Some(open));
    }

    #[test]
    fn malformed_handles_are_refused() {
        let good = SessionHandle::new(UserId::random(), None).encode();
        for bad in [
            "",
            "1",
            "2:".to_owned().as_str(),
            &good.replacen("1:", "2:", 1),
            &good[..good.len() - 1].replace(':', ";"),
            &format!("{good}{{}}"),
            "1:abc:0:0:user",
            &good.to_uppercase(),
        ] {
            assert_eq!(SessionHandle::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn user_ids_cannot_break_key_names() {
        assert!(UserId::parse("alice").is_ok());
        for bad in ["", "a}b", "{a}", "a:b", "a b", "é", &"x".repeat(65)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lifetime_is_capped_by_the_deadline() {
        let ttl = Duration::from_secs(100);
        let mut handle = SessionHandle::new(UserId::random(), None);
        assert_eq!(handle.lifetime_from(5, ttl), Some(ttl));
        handle.deadline_ms = Some(10_000);
        assert_eq!(
            handle.lifetime_from(5_000, ttl),
            Some(Duration::from_millis(5_000))
        );
        assert_eq!(handle.lifetime_from(10_000, ttl), None);
    }
}
