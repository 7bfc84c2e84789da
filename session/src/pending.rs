//! Values that are used once and soon: a sign-in with an identity provider waiting for the
//! browser to come back (see the writer's `oidc` module).
//!
//! ```text
//! pending:{<random key>}   STRING  what the caller keeps (opaque here)   PX: its lifetime
//! ```
//!
//! Taking a value deletes it in the same command (`GETDEL`), so two requests presenting the
//! same key cannot both have it: a replayed callback finds nothing.

use std::time::Duration;

use redis::AsyncCommands;

use crate::store::{RedisStore, Retry, StoreError};

/// Single-use values in the session store. Get one with [`crate::Sessions::pending`].
#[derive(Debug, Clone)]
pub struct Pending {
    store: RedisStore,
}

impl Pending {
    pub(crate) fn new(store: RedisStore) -> Self {
        Self { store }
    }

    /// `pending:{<key>}`; the hash tag keeps the key in one cluster slot whatever it holds.
    fn redis_key(key: &str) -> String {
        format!("pending:{{{key}}}")
    }

    /// Keeps `value` under `key` for `lifetime`. `key` must be random and new: a value already
    /// there is replaced.
    pub async fn put(&self, key: &str, value: &str, lifetime: Duration) -> Result<(), StoreError> {
        let redis_key = Self::redis_key(key);
        let millis = u64::try_from(lifetime.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        // Sending it twice writes the same value again: safe to retry.
        self.store
            .run("PSETEX", Retry::Idempotent, |mut connection| {
                let redis_key = &redis_key;
                async move {
                    connection
                        .pset_ex::<_, _, ()>(redis_key, value, millis)
                        .await
                }
            })
            .await
    }

    /// The value under `key`, deleted as it is read; `None` when there is none (never put,
    /// expired, or already taken).
    pub async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        let redis_key = Self::redis_key(key);
        // Sent twice after a lost answer, the second would find nothing: retried only unsent.
        self.store
            .run("GETDEL", Retry::IfUnsent, |mut connection| {
                let redis_key = &redis_key;
                async move { connection.get_del(redis_key).await }
            })
            .await
    }
}
