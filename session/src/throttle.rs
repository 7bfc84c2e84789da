//! Throttling of failed logins, per user and per client address.
//!
//! The counters live in Redis, so every writer replica sees the same ones, and expire with their
//! window: `login-failures:{<user>}` (same hash slot as the user's sessions) and
//! `login-failures:addr:<ip>`. They are the only keys a request without a session can create,
//! one per user or address, bounded by the window.

use std::{net::IpAddr, sync::LazyLock, time::Duration};

use redis::Script;

use crate::{
    error::ApiError,
    handle::UserId,
    store::{RedisStore, Retry},
};

/// Failures allowed per user within [`WINDOW`] before logins for that user get 429.
pub const MAX_FAILURES_PER_USER: u64 = 5;
/// Failures allowed per client address within [`WINDOW`] (several users behind one address).
pub const MAX_FAILURES_PER_ADDRESS: u64 = 20;
/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

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

/// Login throttling on top of the session store's connection.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    store: RedisStore,
}

impl LoginThrottle {
    pub(crate) fn new(store: RedisStore) -> Self {
        Self { store }
    }

    fn user_key(user: &UserId) -> String {
        format!("login-failures:{{{user}}}")
    }

    fn address_key(address: IpAddr) -> String {
        format!("login-failures:addr:{address}")
    }

    /// Refuses with 429 when `user` (if the name is a valid user id) or `address` failed too
    /// often recently.
    pub async fn check(&self, user: Option<&UserId>, address: IpAddr) -> Result<(), ApiError> {
        let mut counters = vec![(Self::address_key(address), MAX_FAILURES_PER_ADDRESS)];
        if let Some(user) = user {
            counters.push((Self::user_key(user), MAX_FAILURES_PER_USER));
        }
        for (key, limit) in counters {
            let (count, left_ms): (u64, i64) = self.store.invoke(&READ_SCRIPT.key(&key)).await?;
            if count >= limit {
                return Err(ApiError::TooManyAttempts {
                    retry_after: Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)),
                });
            }
        }
        Ok(())
    }

    /// Counts a failed login for `user` (if the name is a valid user id) and `address`.
    pub async fn failed(&self, user: Option<&UserId>, address: IpAddr) -> Result<(), ApiError> {
        let window = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        let mut keys = vec![Self::address_key(address)];
        keys.extend(user.map(Self::user_key));
        for key in keys {
            let mut call = COUNT_SCRIPT.key(&key);
            call.arg(window);
            let _: u64 = self.store.invoke_write(&call, &key).await?;
        }
        Ok(())
    }

    /// Forgets the user's failures after a successful login.
    pub async fn succeeded(&self, user: &UserId) -> Result<(), ApiError> {
        let key = Self::user_key(user);
        let _: u64 = self
            .store
            .run(Retry::Idempotent, |mut connection| {
                let key = &key;
                async move {
                    redis::cmd("DEL")
                        .arg(key)
                        .query_async(&mut connection)
                        .await
                }
            })
            .await?;
        Ok(())
    }
}
