//! The Redis layout of sessions and the atomic operations on it.
//!
//! ```text
//! session:{<user>}:<session id>   STRING  the count ("0" at login), then PX: idle timeout,
//!                                           the identity and the device  capped by the deadline
//!                                           (see crate::identity)
//! user:{<user>}:sessions          ZSET    session id -> issued (ms)      PX: at least as long as
//!                                                                        its longest session
//! ```
//!
//! The index must outlive every session it lists, or "log out everywhere" and the per-user cap
//! would miss sessions. Writes (login, increment) extend it by the session's lifetime plus one
//! idle timeout of slack. A read is one `GETEX`, which cannot touch a second key; the slack means
//! a read only has to extend the index when a session has been kept alive by reads alone for
//! longer than the slack. The store remembers how far it extended each index, so that second
//! command happens at most once per idle timeout per session and worker.
//!
//! Every key of one user carries the same `{<user>}` hash tag, so each operation below touches a
//! single Redis Cluster slot. Every mutation is one command: a native one where Redis has it
//! (`GETEX`), otherwise one Lua script (`EVALSHA`) that Redis runs atomically. Nothing here reads a
//! value into the service, changes it and writes it back, so concurrent requests on any number of
//! replicas cannot lose an update. No operation creates a session key except login: a request
//! racing a logout finds the key gone and fails, it never writes it back.
//!
//! Every call is bounded by [`OP_TIMEOUT`]; a Redis that does not answer in time is reported as
//! [`StoreError::Unavailable`], which the services turn into a 503.
//!
//! `REDIS_URL` ([`RedisUrl`]) may name one Redis, a Redis Cluster or a Sentinel set-up
//! ([`topology`]), each over TLS too ([`tls`]); the operations and their guarantees are the same
//! on each ([`connection`]).

mod connection;
mod scripts;
pub mod tls;
pub mod topology;
mod url;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use common::time::{millis, now_ms};
use redis::{AsyncCommands, PushInfo, PushKind, Script, aio::ConnectionManagerConfig};
use tracing::{Instrument as _, Span};

use self::{
    connection::Connection,
    scripts::{
        END, INCREMENT, LIST, LOGIN, LOGOUT, LOGOUT_EVERYWHERE, OPERATION_MEMORY_MS, STALE,
        STALE_ATTEMPTS,
    },
};
pub use self::{tls::RedisTls, url::RedisUrl};
use crate::{
    handle::{SessionHandle, UserId},
    metrics::{EndReason, metrics},
};

/// Upper bound on any single store operation, connection included.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1000);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis is down, unreachable or too slow. Retrying later may work.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// Redis answered something this code does not expect (a bug or a foreign key).
    #[error("unexpected answer from the session store: {0}")]
    Unexpected(#[source] redis::RedisError),
}

impl From<redis::RedisError> for StoreError {
    fn from(err: redis::RedisError) -> Self {
        if err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_unrecoverable_error()
            // Redis is loading its data, or a failover is under way: a replica refused a write,
            // a cluster has slots without a primary, or keys are moving.
            || matches!(
                err.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::BusyLoading
                        | redis::ServerErrorKind::ReadOnly
                        | redis::ServerErrorKind::ClusterDown
                        | redis::ServerErrorKind::MasterDown
                        | redis::ServerErrorKind::TryAgain
                        // The cluster client gave up following redirections: its slot map is
                        // still settling after a failover.
                        | redis::ServerErrorKind::Moved
                        | redis::ServerErrorKind::Ask
                )
            )
            // The sentinels name no usable primary while they fail over (the name itself was
            // checked at start).
            || matches!(
                err.kind(),
                redis::ErrorKind::ClusterConnectionNotFound
                    | redis::ErrorKind::MasterNameNotFoundBySentinel
            )
        {
            Self::Unavailable(err.to_string())
        } else {
            Self::Unexpected(err)
        }
    }
}

/// The session store: a self-reconnecting connection to Redis (one server, a cluster or the
/// primary of a Sentinel set-up) and the scripts of [`scripts`].
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    /// False from the moment the connection is known to have died (Redis closed it, crashed,
    /// or a command failed on it) until a `PING` has gone through again. A script, which may
    /// only be retried when it cannot have run, is never the first command on such a
    /// connection: the `PING` is, and absorbs whatever the reconnection left behind.
    verified: Arc<AtomicBool>,
    scripts: Arc<Scripts>,
    /// Slack added to index lifetimes: the idle timeout.
    index_slack: Duration,
    /// Per index key: how far (Unix ms) this store has extended it, at least.
    index_extended: Arc<Mutex<HashMap<String, u64>>>,
    /// Replicas that must confirm a write before it is acknowledged (`REDIS_WAIT_REPLICAS`).
    wait_replicas: u32,
}

/// How long a write waits for its replicas (`REDIS_WAIT_REPLICAS`) before it is answered 503.
pub const REPLICA_WAIT: Duration = Duration::from_millis(500);

/// Entries kept in `index_extended` before expired ones are pruned.
const INDEX_MEMORY_LIMIT: usize = 10_000;

struct Scripts {
    login: Script,
    increment: Script,
    logout: Script,
    logout_everywhere: Script,
    end: Script,
    list: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepares a connection without opening it: the service starts (and answers `/healthz`)
    /// while Redis is still down, and connects on first use.
    ///
    /// `ttl` is the idle timeout; it is also the slack by which indexes outlive their sessions.
    ///
    /// Must be called inside a Tokio runtime; the connection's I/O task runs on it.
    pub fn new(url: &RedisUrl, ttl: Duration) -> Result<Self, StoreError> {
        // RESP3, because with it the connection manager learns at once that Redis closed the
        // connection (a restart, a failover) and reconnects in the background; with RESP2 the
        // next command would go out on the dead connection and fail. (Scripts return nil, not
        // false, for "no such session": RESP3 would turn a Lua false into a boolean.)
        // No backoff loop inside the client: a request fails within OP_TIMEOUT and the next one
        // triggers a fresh connection attempt, so recovery needs no restart and no request waits
        // for minutes behind retries.
        let verified = Arc::new(AtomicBool::new(true));
        let disconnected = Arc::clone(&verified);
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            // The client's own notice that the connection closed, sent whether or not a
            // command was running: the only way to hear of a crash while the site is idle.
            .set_push_sender(move |push: PushInfo| {
                if push.kind == PushKind::Disconnection {
                    disconnected.store(false, Relaxed);
                }
                Ok::<(), std::convert::Infallible>(())
            });
        let connection = Connection::new(url.topology(), url.tls(), config)?;
        Ok(Self {
            connection,
            verified,
            scripts: Arc::new(Scripts {
                login: Script::new(LOGIN),
                increment: Script::new(INCREMENT),
                logout: Script::new(LOGOUT),
                logout_everywhere: Script::new(LOGOUT_EVERYWHERE),
                end: Script::new(END),
                list: Script::new(LIST),
            }),
            index_slack: ttl,
            index_extended: Arc::default(),
            wait_replicas: 0,
        })
    }

    /// Acknowledges a write only once `replicas` replicas have it (`WAIT`, one more round trip
    /// per write, on the connection that wrote it): a primary that dies then cannot take an
    /// acknowledged write with it, as long as one of those replicas is promoted. A write not
    /// confirmed within [`REPLICA_WAIT`] is answered 503 (it may still have applied, as after
    /// a timeout). 0 keeps Redis's asynchronous replication.
    #[must_use]
    pub fn with_wait_replicas(mut self, replicas: u32) -> Self {
        self.wait_replicas = replicas;
        self
    }

    /// `session:{<user>}:<id>`
    pub fn session_key(handle: &SessionHandle) -> String {
        Self::listed_session_key(handle.user(), handle.id().as_str())
    }

    /// `user:{<user>}:sessions`
    pub fn index_key(user: &UserId) -> String {
        format!("user:{{{user}}}:sessions")
    }

    /// `op:{<user>}:<random id>`: where a script that may be sent twice remembers its answer.
    fn operation_key(user: &UserId) -> String {
        format!("op:{{{user}}}:{}", common::random::hex(16))
    }

    /// `session:{<user>}:<id>` for an id read from the user's index.
    fn listed_session_key(user: &UserId, id: &str) -> String {
        let user = user.as_str();
        let mut key = String::with_capacity("session:{}:".len() + user.len() + id.len());
        for part in ["session:{", user, "}:", id] {
            key.push_str(part);
        }
        key
    }

    /// Runs `operation` on the shared connection under [`OP_TIMEOUT`], sending it a second
    /// time when `retry` allows it for the error of the first attempt.
    ///
    /// The retry is what makes recovery seamless: after an outage the first command finds the
    /// connection broken (which starts a reconnect) and would fail although Redis is back. A
    /// command that must not run twice is not retried after it may have been sent; instead it
    /// is never the first command after a disconnection (see `verified`).
    ///
    /// When traces are exported, the operation is a span named `command` (a Redis command, or
    /// `EVALSHA <script>`): never with its keys or values, which hold user ids and sessions.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        command: &'static str,
        retry: Retry,
        operation: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        let attempts = async {
            // Not on a cluster: its client reconnects node by node and re-sends by itself
            // (which the scripts allow for), and a PING there would go to every primary.
            if retry == Retry::IfUnsent
                && !self.connection.may_resend()
                && !self.verified.load(Relaxed)
            {
                Self::with_retry(Retry::Idempotent, || async {
                    let mut connection = self.connection.clone();
                    redis::cmd("PING").query_async::<()>(&mut connection).await
                })
                .await?;
                self.verified.store(true, Relaxed);
            }
            Self::with_retry(retry, || operation(self.connection.clone())).await
        };
        let started = std::time::Instant::now();
        let timed = tokio::time::timeout(OP_TIMEOUT, attempts);
        // Without a trace exporter, not even an empty span is entered on every poll.
        let outcome = if common::traces::exporting() {
            timed.instrument(command_span(command)).await
        } else {
            timed.await
        };
        metrics().store_command(started.elapsed());
        let result = match outcome {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                OP_TIMEOUT.as_millis()
            ))),
        };
        if let Err(StoreError::Unavailable(_)) = &result {
            self.verified.store(false, Relaxed);
        }
        result
    }

    /// `operation`, and once more when `retry` allows it for the error of the first attempt.
    async fn with_retry<T, F, Fut>(retry: Retry, operation: F) -> Result<T, redis::RedisError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        match operation().await {
            Err(err) if retry.allows(&err) => {
                tracing::debug!(error = %err, "retrying a Redis command on a new connection");
                operation().await
            }
            result => result,
        }
    }

    /// Reads the value of a live session (its count, identity and device: see
    /// [`crate::identity`]) and restarts its idle timeout: one `GETEX`. `None` when the session
    /// does not exist (never logged in, logged out, expired).
    ///
    /// Only for a session kept alive by reads for longer than the idle timeout does a read also
    /// extend the user's index (see the module docs), at most once per idle timeout.
    pub async fn read(
        &self,
        handle: &SessionHandle,
        lifetime: Duration,
    ) -> Result<Option<String>, StoreError> {
        let key = Self::session_key(handle);
        let value: Option<String> = self
            .run("GETEX", Retry::Idempotent, |mut connection| {
                let key = &key;
                async move {
                    connection
                        .get_ex(key, redis::Expiry::PX(px(lifetime)))
                        .await
                }
            })
            .await?;
        if value.is_some() {
            self.keep_index_alive(handle, lifetime).await;
        }
        Ok(value)
    }

    /// Extends the user's index when the session, just extended to `now + lifetime`, could
    /// otherwise outlive it. A failure is logged, not returned: the read itself succeeded.
    async fn keep_index_alive(&self, handle: &SessionHandle, lifetime: Duration) {
        let now = now_ms();
        let session_end = now.saturating_add(millis(lifetime));
        let index = Self::index_key(handle.user());
        // Login extended the index to issued + its lifetime at login + slack (the idle timeout
        // then, capped by the deadline); a later extension by this store may be further.
        let issued = handle.issued_at_ms();
        let at_login = issued
            .saturating_add(
                handle
                    .lifetime_from(issued, self.index_slack)
                    .map_or(0, millis),
            )
            .saturating_add(millis(self.index_slack));
        let known = {
            let extended = self
                .index_extended
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            extended.get(&index).copied().unwrap_or(0).max(at_login)
        };
        if session_end <= known {
            return;
        }
        let index_lifetime = lifetime + self.index_slack;
        let mut extend = redis::cmd("PEXPIRE");
        extend.arg(&index).arg(px(index_lifetime)).arg("GT");
        let extended: Result<bool, _> = self
            .run("PEXPIRE", Retry::Idempotent, |mut connection| {
                let extend = &extend;
                async move { extend.query_async(&mut connection).await }
            })
            .await;
        match extended {
            Ok(_) => {
                let mut memory = self
                    .index_extended
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if memory.len() >= INDEX_MEMORY_LIMIT {
                    memory.retain(|_, until| *until > now);
                }
                memory.insert(index, now.saturating_add(millis(index_lifetime)));
            }
            Err(err) => tracing::warn!(error = %err, "could not extend a session index"),
        }
    }

    /// Adds one to the count of a live session: one `EVALSHA`. `None` when it does not exist.
    pub async fn increment(
        &self,
        handle: &SessionHandle,
        lifetime: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let mut call = self.scripts.increment.key(Self::session_key(handle));
        call.key(Self::index_key(handle.user()))
            .arg(px(lifetime))
            .arg(px(lifetime + self.index_slack));
        if self.connection.may_resend() {
            call.key(Self::operation_key(handle.user()))
                .arg(OPERATION_MEMORY_MS);
        }
        self.invoke_write("EVALSHA increment", &call, &Self::index_key(handle.user()))
            .await
    }

    /// Stores the session of a login, its count followed by `tail` (the identity and the
    /// device, see [`crate::identity`]). With `previous`, the previous session (same user) is
    /// replaced and its count carried over; `None` means it no longer exists and nothing was
    /// written. `cap` limits the user's live sessions; the oldest end first.
    pub async fn login(
        &self,
        new: &SessionHandle,
        lifetime: Duration,
        cap: Option<u32>,
        previous: Option<&SessionHandle>,
        tail: &str,
    ) -> Result<Option<i64>, StoreError> {
        debug_assert!(previous.is_none_or(|previous| previous.user() == new.user()));
        let user = new.user();
        let index = Self::index_key(user);
        let answer = self
            .until_fresh("EVALSHA login", user, |listed| {
                let mut call = self.scripts.login.key(&index);
                call.key(Self::session_key(new));
                for id in listed {
                    call.key(Self::listed_session_key(user, id));
                }
                if let Some(previous) = previous {
                    call.key(Self::session_key(previous));
                }
                call.arg(new.id().as_str())
                    .arg(px(lifetime))
                    .arg(new.issued_at_ms())
                    .arg(cap.unwrap_or(0))
                    .arg(px(lifetime + self.index_slack))
                    .arg(previous.map_or("", |previous| previous.id().as_str()))
                    .arg(tail)
                    .arg(listed);
                call
            })
            .await?;
        match answer {
            redis::Value::Nil => Ok(None),
            answer => {
                let (count, capped): (i64, u64) =
                    redis::from_redis_value(answer).map_err(redis::RedisError::from)?;
                metrics().ended(EndReason::ExpiredCap, capped);
                Ok(Some(count))
            }
        }
    }

    /// Ends one session (idempotent).
    pub async fn logout(&self, handle: &SessionHandle) -> Result<(), StoreError> {
        let mut call = self.scripts.logout.key(Self::session_key(handle));
        call.key(Self::index_key(handle.user()))
            .arg(handle.id().as_str());
        let _: i64 = self
            .invoke_write("EVALSHA logout", &call, &Self::index_key(handle.user()))
            .await?;
        Ok(())
    }

    /// Ends every session of the handle's user, the handle's own included. Returns how many.
    pub async fn logout_everywhere(&self, handle: &SessionHandle) -> Result<u64, StoreError> {
        let user = handle.user();
        let index = Self::index_key(user);
        let ended = self
            .until_fresh("EVALSHA logout-everywhere", user, |listed| {
                let mut call = self.scripts.logout_everywhere.key(&index);
                call.key(Self::session_key(handle));
                for id in listed {
                    call.key(Self::listed_session_key(user, id));
                }
                call.arg(listed);
                call
            })
            .await?;
        let ended: i64 = redis::from_redis_value(ended).map_err(redis::RedisError::from)?;
        Ok(u64::try_from(ended).unwrap_or(0))
    }

    /// The live sessions of `user`, oldest first: for the sessions page and a back-channel
    /// logout. Not atomic (the index, then the sessions), which a listing does not need: a
    /// session that ended in between is left out.
    pub async fn list(&self, user: &UserId) -> Result<Vec<Listed>, StoreError> {
        let index = Self::index_key(user);
        let listed: Vec<(String, f64)> = self
            .run("ZRANGE", Retry::Idempotent, |mut connection| {
                let index = &index;
                async move { connection.zrange_withscores(index, 0, -1).await }
            })
            .await?;
        if listed.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.scripts.list.prepare_invoke();
        for (id, _) in &listed {
            call.key(Self::listed_session_key(user, id));
        }
        // Reads only: safe to send twice.
        let found: Vec<(Option<String>, i64)> = self
            .run("EVALSHA list", Retry::Idempotent, |mut connection| {
                let call = &call;
                async move { call.invoke_async(&mut connection).await }
            })
            .await?;
        Ok(listed
            .into_iter()
            .zip(found)
            .filter_map(|((id, issued), (value, ttl_ms))| {
                Some(Listed {
                    id,
                    // Scores are whole milliseconds, far below 2^53.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    issued_ms: issued as u64,
                    value: value?,
                    ttl_ms: u64::try_from(ttl_ms).unwrap_or(0),
                })
            })
            .collect())
    }

    /// Ends the sessions `ids` of `user` (idempotent). Returns how many still existed.
    pub async fn end(&self, user: &UserId, ids: &[&str]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let index = Self::index_key(user);
        let mut call = self.scripts.end.key(&index);
        for id in ids {
            call.key(Self::listed_session_key(user, id));
        }
        call.arg(ids);
        let ended: i64 = self.invoke_write("EVALSHA end", &call, &index).await?;
        Ok(u64::try_from(ended).unwrap_or(0))
    }

    /// Runs a script built by `call` from the session ids the user's index lists now, and reads
    /// the index again as long as the script answers [`STALE`] (a login of the user came in
    /// between and must be taken into account), at most [`STALE_ATTEMPTS`] times.
    async fn until_fresh<'a, F>(
        &'a self,
        script: &'static str,
        user: &UserId,
        call: F,
    ) -> Result<redis::Value, StoreError>
    where
        F: Fn(&[String]) -> redis::ScriptInvocation<'a>,
    {
        let index = Self::index_key(user);
        for _ in 0..STALE_ATTEMPTS {
            let listed: Vec<String> = self
                .run("ZRANGE", Retry::Idempotent, |mut connection| {
                    let index = &index;
                    async move { connection.zrange(index, 0, -1).await }
                })
                .await?;
            let answer: redis::Value = self.invoke(script, &call(&listed)).await?;
            if answer != redis::Value::Int(STALE) {
                self.confirm_replicated(&index).await?;
                return Ok(answer);
            }
        }
        Err(StoreError::Unavailable(format!(
            "the sessions of one user kept changing over {STALE_ATTEMPTS} attempts"
        )))
    }

    /// Whether Redis answers, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self
            .run("PING", Retry::Idempotent, |mut connection| async move {
                redis::cmd("PING").query_async(&mut connection).await
            })
            .await?;
        Ok(())
    }

    /// Runs a prepared script call: `EVALSHA`, or `SCRIPT LOAD` + `EVALSHA` the first time on
    /// a server. Scripts change data, so they are only retried when unsent.
    /// `script` names it in traces (`EVALSHA <name>`).
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &'static str,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.run(script, Retry::IfUnsent, |mut connection| async move {
            call.invoke_async(&mut connection).await
        })
        .await
    }

    /// [`Self::invoke`] for a script that writes `key`'s slot, then, with
    /// [`Self::with_wait_replicas`], waits for the replicas before answering.
    pub(crate) async fn invoke_write<T: redis::FromRedisValue>(
        &self,
        script: &'static str,
        call: &redis::ScriptInvocation<'_>,
        key: &str,
    ) -> Result<T, StoreError> {
        let answer = self.invoke(script, call).await?;
        self.confirm_replicated(key).await?;
        Ok(answer)
    }

    /// With [`Self::with_wait_replicas`]: `Ok` once enough replicas have every write sent so far
    /// on the connection that wrote `key`.
    async fn confirm_replicated(&self, key: &str) -> Result<(), StoreError> {
        if self.wait_replicas > 0 {
            let wanted = self.wait_replicas;
            let confirmed = self
                .run("WAIT", Retry::Idempotent, |mut connection| async move {
                    connection
                        .wait_for_replicas(key, wanted, REPLICA_WAIT)
                        .await
                })
                .await?;
            if confirmed < i64::from(wanted) {
                return Err(StoreError::Unavailable(format!(
                    "the write reached {confirmed} of {wanted} replicas within {} ms",
                    REPLICA_WAIT.as_millis()
                )));
            }
        }
        Ok(())
    }
}

/// One session of a user, as [`RedisStore::list`] finds it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The session id (never shown: see [`crate::devices`]).
    pub id: String,
    /// When it began (Unix ms).
    pub issued_ms: u64,
    /// Its value: count, identity, device (see [`crate::identity`]).
    pub value: String,
    /// How long until it expires unless used (ms).
    pub ttl_ms: u64,
}

/// When a failed command may be sent a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and expiry extensions: sending them twice changes nothing.
    Idempotent,
    /// Scripts: only when the command cannot have run (the connection was refused, or Redis
    /// answered that it is still loading its data).
    IfUnsent,
}

impl Retry {
    fn allows(self, err: &redis::RedisError) -> bool {
        // A replica refuses a script at its first write (READONLY), before it changed anything:
        // the primary it was has been demoted, and the connection now asks the sentinels.
        let not_run = err.is_connection_refusal()
            || matches!(
                err.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::BusyLoading | redis::ServerErrorKind::ReadOnly
                )
            );
        match self {
            Self::Idempotent => not_run || err.is_connection_dropped() || err.is_io_error(),
            Self::IfUnsent => not_run,
        }
    }
}

/// A Redis `PX` argument: whole milliseconds, at least 1 (Redis refuses 0).
fn px(duration: Duration) -> u64 {
    millis(duration).max(1)
}

/// The span of one Redis operation, for traces (OpenTelemetry's database client conventions).
fn command_span(command: &'static str) -> Span {
    tracing::info_span!(
        "redis",
        otel.name = command,
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = command,
    )
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_users_hash_slot() {
        let handle = SessionHandle::new(UserId::parse("alice").expect("valid"), None);
        let session = RedisStore::session_key(&handle);
        assert_eq!(
            session,
            format!("session:{{alice}}:{}", handle.id().as_str())
        );
        assert_eq!(
            RedisStore::index_key(handle.user()),
            "user:{alice}:sessions"
        );
    }
}
