//! Throttling of failed logins, without handing attackers a way to lock people out.
//!
//! Counting failures per user alone lets anyone who knows a user name lock that user out;
//! counting per client address alone lets one client behind a shared address (an office NAT, a
//! proxy the gateway does not trust) lock out everyone behind it. So a login attempt is judged
//! by who makes it:
//!
//! - A browser that has logged in as this user before carries a **known-device cookie**
//!   (`<session cookie>-device`, sealed like the session cookie, bound to the user, valid
//!   [`KNOWN_DEVICE_LIFETIME`]). Only its own failures count against it
//!   ([`MAX_FAILURES_PER_DEVICE`]); what strangers do to the user's name or to the shared
//!   address does not stop it. Past its limit the cookie is worth nothing until the window
//!   ends, and the attempt is judged as a stranger's.
//! - Any other attempt is a stranger's, and three counters must all be under their limit: the
//!   user from this address ([`MAX_FAILURES_PER_USER_AND_ADDRESS`]), the user from all strangers
//!   ([`MAX_FAILURES_PER_USER`], which bounds a guesser with many addresses), and this address
//!   over all users ([`MAX_FAILURES_PER_ADDRESS`], which bounds trying one password on many
//!   users).
//!
//! This is the "device cookie" scheme OWASP recommends against lockout attacks. The counters
//! live in Redis, so every writer replica sees the same ones, and expire with their window:
//! `login-failures:{<user>}`, `login-failures:{<user>}:addr:<ip>`,
//! `login-failures:{<user>}:device:<id>` (in the user's hash slot) and `login-failures:addr:<ip>`.
//! They are the only keys a request without a session can create, bounded by the window.

use std::{net::IpAddr, sync::LazyLock, time::Duration};

use actix_web::cookie::Cookie;
use redis::Script;

use crate::{
    error::ApiError,
    handle::{UserId, now_ms},
    sessions::Sessions,
    store::Retry,
};

/// Failures a known device may make for its user within [`WINDOW`].
pub const MAX_FAILURES_PER_DEVICE: u64 = 5;
/// Failures allowed for one user from one address within [`WINDOW`], without a known device.
pub const MAX_FAILURES_PER_USER_AND_ADDRESS: u64 = 5;
/// Failures allowed for one user from all clients without a known device within [`WINDOW`].
pub const MAX_FAILURES_PER_USER: u64 = 50;
/// Failures allowed from one address over all users within [`WINDOW`], without a known device.
pub const MAX_FAILURES_PER_ADDRESS: u64 = 20;
/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a browser stays known after its last successful login.
pub const KNOWN_DEVICE_LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// The known-device cookie's suffix (see [`Sessions::side_cookie`]).
pub const KNOWN_DEVICE_COOKIE: &str = "device";

/// Counts a failure: KEYS 1 counter; ARGV 1 window ms. Returns the count in the window.
const COUNT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

/// Reads a counter: KEYS 1 counter. Returns {count, ms left}.
const READ: &str = r"
local n = redis.call('GET', KEYS[1])
if not n then return {0, 0} end
return {tonumber(n), redis.call('PTTL', KEYS[1])}
";

static COUNT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COUNT));
static READ_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(READ));

/// Login throttling on top of the session store's connection and keys.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    sessions: Sessions,
}

/// A login attempt let through [`LoginThrottle::admit`]: which counters its failure raises and
/// its success clears.
#[derive(Debug)]
pub struct Admitted {
    user: Option<UserId>,
    /// The known device the attempt came from, when its cookie was valid and under its limit.
    device: Option<String>,
    counters: Vec<String>,
}

impl Admitted {
    /// Whether the attempt came from a known device of the claimed user.
    pub fn from_known_device(&self) -> bool {
        self.device.is_some()
    }
}

impl LoginThrottle {
    pub(crate) fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }

    fn user_key(user: &UserId) -> String {
        format!("login-failures:{{{user}}}")
    }

    fn user_and_address_key(user: &UserId, address: IpAddr) -> String {
        format!("login-failures:{{{user}}}:addr:{address}")
    }

    fn device_key(user: &UserId, device: &str) -> String {
        format!("login-failures:{{{user}}}:device:{device}")
    }

    fn address_key(address: IpAddr) -> String {
        format!("login-failures:addr:{address}")
    }

    /// The known-device cookie's name.
    pub fn device_cookie_name(&self) -> String {
        self.sessions.side_cookie_name(KNOWN_DEVICE_COOKIE)
    }

    /// Decides whether an attempt for `user` (if the name is a valid user id) from `address`,
    /// with the browser's known-device cookie value if it sent one, may be tried; 429 when a
    /// counter that judges it is at its limit.
    pub async fn admit(
        &self,
        user: Option<&UserId>,
        address: IpAddr,
        device_cookie: Option<&str>,
    ) -> Result<Admitted, ApiError> {
        if let Some(user) = user
            && let Some(device) = device_cookie.and_then(|sealed| self.open_device(user, sealed))
        {
            let key = Self::device_key(user, &device);
            // A known device over its limit falls back to being judged as a stranger.
            if self.over(&key, MAX_FAILURES_PER_DEVICE).await?.is_none() {
                return Ok(Admitted {
                    user: Some(user.clone()),
                    device: Some(device),
                    counters: vec![key],
                });
            }
        }
        let mut counters = Vec::with_capacity(3);
        if let Some(user) = user {
            counters.push((
                Self::user_and_address_key(user, address),
                MAX_FAILURES_PER_USER_AND_ADDRESS,
            ));
            counters.push((Self::user_key(user), MAX_FAILURES_PER_USER));
        }
        counters.push((Self::address_key(address), MAX_FAILURES_PER_ADDRESS));
        for (key, limit) in &counters {
            if let Some(retry_after) = self.over(key, *limit).await? {
                return Err(ApiError::TooManyAttempts { retry_after });
            }
        }
        Ok(Admitted {
            user: user.cloned(),
            device: None,
            counters: counters.into_iter().map(|(key, _)| key).collect(),
        })
    }

    /// `Some(time left)` when the counter at `key` has reached `limit`.
    async fn over(&self, key: &str, limit: u64) -> Result<Option<Duration>, ApiError> {
        let (count, left_ms): (u64, i64) = self
            .sessions
            .store()
            .invoke("EVALSHA login-failures-read", &READ_SCRIPT.key(key))
            .await?;
        Ok((count >= limit).then(|| Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))))
    }

    /// Counts the admitted attempt's failure on each counter that judged it.
    pub async fn failed(&self, attempt: &Admitted) -> Result<(), ApiError> {
        let window = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        for key in &attempt.counters {
            let mut call = COUNT_SCRIPT.key(key);
            call.arg(window);
            let _: u64 = self
                .sessions
                .store()
                .invoke_write("EVALSHA login-failures-count", &call, key)
                .await?;
        }
        Ok(())
    }

    /// After a successful login as `user`: forgets the failures of this client for this user
    /// (the counters of the user from this address, or of this device; not those strangers
    /// ran up elsewhere) and returns the known-device cookie to set, which keeps the device's
    /// id when it already was known.
    pub async fn succeeded(
        &self,
        attempt: &Admitted,
        user: &UserId,
        address: IpAddr,
    ) -> Result<Cookie<'static>, ApiError> {
        let known = attempt
            .device
            .as_ref()
            .filter(|_| attempt.user.as_ref() == Some(user));
        let cleared = match known {
            Some(device) => Self::device_key(user, device),
            None => Self::user_and_address_key(user, address),
        };
        let _: u64 = self
            .sessions
            .store()
            .run("DEL", Retry::Idempotent, |mut connection| {
                let key = &cleared;
                async move {
                    redis::cmd("DEL")
                        .arg(key)
                        .query_async(&mut connection)
                        .await
                }
            })
            .await?;
        let device = known.cloned().unwrap_or_else(|| common::random::hex(16));
        Ok(self.device_cookie(user, &device))
    }

    /// The known-device cookie for `device` of `user`, sealed now.
    fn device_cookie(&self, user: &UserId, device: &str) -> Cookie<'static> {
        let name = self.device_cookie_name();
        let sealed = self
            .sessions
            .keyring()
            .seal(&name, &format!("{user}\n{device}\n{}", now_ms()));
        self.sessions
            .side_cookie(KNOWN_DEVICE_COOKIE, sealed, KNOWN_DEVICE_LIFETIME)
    }

    /// The device id in a known-device cookie, when we sealed it for `user` and it is within
    /// its lifetime. Anything else (another user's, forged, expired, garbled) is no device.
    fn open_device(&self, user: &UserId, sealed: &str) -> Option<String> {
        let opened = self
            .sessions
            .keyring()
            .open(&self.device_cookie_name(), sealed)?;
        let mut fields = opened.plaintext.split('\n');
        let (owner, device, issued) = (fields.next()?, fields.next()?, fields.next()?);
        let issued: u64 = issued.parse().ok()?;
        let lifetime = u64::try_from(KNOWN_DEVICE_LIFETIME.as_millis()).unwrap_or(u64::MAX);
        let fresh = now_ms().saturating_sub(issued) < lifetime;
        (owner == user.as_str() && fresh && fields.next().is_none()).then(|| device.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SessionConfig;

    /// A throttle whose store is never connected: these tests only seal and open cookies.
    fn throttle() -> LoginThrottle {
        let sessions =
            Sessions::new(&SessionConfig::for_tests()).expect("a lazily connected store");
        sessions.login_throttle()
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("a user id")
    }

    #[actix_web::test]
    async fn a_device_cookie_opens_for_its_user_only() {
        let throttle = throttle();
        let cookie = throttle.device_cookie(&user("alice"), "d1");
        assert_eq!(cookie.name(), "sid-device");
        assert!(cookie.http_only().unwrap_or(false));
        assert_eq!(
            throttle.open_device(&user("alice"), cookie.value()),
            Some("d1".to_owned())
        );
        assert_eq!(throttle.open_device(&user("bob"), cookie.value()), None);
    }

    #[actix_web::test]
    async fn forged_garbled_and_expired_device_cookies_are_no_device() {
        let throttle = throttle();
        let alice = user("alice");
        assert_eq!(throttle.open_device(&alice, ""), None);
        assert_eq!(throttle.open_device(&alice, "alice\nd1\n0"), None);
        assert_eq!(throttle.open_device(&alice, "%%%not base64%%%"), None);
        let keyring = throttle.sessions.keyring();
        let name = throttle.device_cookie_name();
        let lifetime = u64::try_from(KNOWN_DEVICE_LIFETIME.as_millis()).expect("fits");
        let expired = keyring.seal(&name, &format!("alice\nd1\n{}", now_ms() - lifetime - 1));
        assert_eq!(throttle.open_device(&alice, &expired), None);
        let extra_field = keyring.seal(&name, &format!("alice\nd1\n{}\nx", now_ms()));
        assert_eq!(throttle.open_device(&alice, &extra_field), None);
        // Sealed under another cookie's name (a session cookie's value, say): not a device.
        let other_name = keyring.seal("sid", &format!("alice\nd1\n{}", now_ms()));
        assert_eq!(throttle.open_device(&alice, &other_name), None);
    }
}
