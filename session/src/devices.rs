//! The list of a user's sessions (the writer's `/sessions`), and ending some of them: one from
//! the list, every other one, or those a back-channel logout names.
//!
//! Session ids never leave the server: each session is shown by a short handle, the first 12
//! hex digits of the SHA-256 of its id, which names it only among the sessions of its user and
//! cannot be turned back into a credential.
//!
//! "Last used" is read off the session's remaining lifetime (each use restarts the idle
//! timeout): it is exact for sessions without `SESSION_MAX_AGE`; for one that is close to its
//! absolute deadline it is the latest time that deadline allows, so it may show earlier than
//! the last use.

use sha2::{Digest, Sha256};

use crate::{
    action::Action,
    current::CurrentSession,
    error::ApiError,
    handle::{UserId, now_ms},
    identity::{Method, Value},
    metrics::{EndReason, metrics},
    sessions::Sessions,
    store::{Listed, StoreError},
};

/// Hex digits of a session's handle.
const HANDLE_LEN: usize = 12;

/// One session, as its user sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionSummary {
    /// Names the session in `POST /sessions/<handle>/end`.
    pub handle: String,
    /// The session of the request that asked.
    pub current: bool,
    /// When it began (Unix ms).
    pub started_ms: u64,
    /// When it was last used (Unix ms, see the module docs).
    pub last_used_ms: u64,
    /// The browser it began in.
    pub agent: Option<String>,
    /// The client address it began from.
    pub address: Option<String>,
    /// `password`, `demo`, or the identity provider's name.
    pub signed_in_with: String,
}

/// The handle of session `id` (see the module docs).
pub fn handle_of(id: &str) -> String {
    Sha256::digest(id.as_bytes())
        .iter()
        .take(HANDLE_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl CurrentSession {
    /// The live sessions of the request's user, oldest first, the current one marked.
    pub async fn sessions(&self) -> Result<Vec<SessionSummary>, ApiError> {
        let (user, current) = self.live_id().await?;
        let ttl = self.sessions.ttl();
        let now = now_ms();
        let listed = self.sessions.store().list(&user).await?;
        Ok(listed
            .iter()
            .map(|listed| summary(listed, &current, ttl, now))
            .collect())
    }

    /// Ends the session `handle` of the request's user; `false` when there is no such
    /// session (ended already, or never one of theirs).
    pub async fn end_session(&self, handle: &str) -> Result<bool, ApiError> {
        self.refuse_cross_site(Action::EndSession)?;
        let (user, _) = self.live_id().await?;
        let listed = self.sessions.store().list(&user).await?;
        let Some(target) = listed.iter().find(|listed| handle_of(&listed.id) == handle) else {
            return Ok(false);
        };
        let ended = self.sessions.store().end(&user, &[&target.id]).await?;
        tracing::info!(%user, handle, "session ended from the sessions page");
        metrics().ended(EndReason::Revoked, ended);
        Ok(ended > 0)
    }

    /// Ends every session of the request's user but its own. Returns how many.
    pub async fn end_other_sessions(&self) -> Result<u64, ApiError> {
        self.refuse_cross_site(Action::EndOthers)?;
        let (user, current) = self.live_id().await?;
        let listed = self.sessions.store().list(&user).await?;
        let others: Vec<&str> = listed
            .iter()
            .map(|listed| listed.id.as_str())
            .filter(|id| *id != current)
            .collect();
        let ended = self.sessions.store().end(&user, &others).await?;
        tracing::info!(%user, ended, "other sessions ended");
        metrics().ended(EndReason::Revoked, ended);
        Ok(ended)
    }

    /// The user and session id of the request's live session (one `GETEX`, which also counts
    /// as a use); [`ApiError::NotLoggedIn`] otherwise.
    async fn live_id(&self) -> Result<(UserId, String), ApiError> {
        let live = self.read().await?;
        let credential = self.credential.as_ref().ok_or(ApiError::NotLoggedIn)?;
        Ok((live.user, credential.handle.id().as_str().to_owned()))
    }
}

impl Sessions {
    /// Ends the sessions of `user` that signed in with `provider`: all of them, or with
    /// `provider_session` only those of that provider session (a back-channel logout).
    /// Returns how many ended.
    pub async fn end_provider_sessions(
        &self,
        user: &UserId,
        provider: &str,
        provider_session: Option<&str>,
    ) -> Result<u64, StoreError> {
        let listed = self.store().list(user).await?;
        let ids: Vec<&str> = listed
            .iter()
            .filter(|listed| {
                let Some(value) = Value::split(&listed.value) else {
                    return false;
                };
                let identity = value.identity();
                let from_provider = identity.method == Method::Provider
                    && identity.provider.as_deref() == Some(provider);
                from_provider
                    && provider_session
                        .is_none_or(|sid| value.device().provider_session.as_deref() == Some(sid))
            })
            .map(|listed| listed.id.as_str())
            .collect();
        let ended = self.store().end(user, &ids).await?;
        metrics().ended(EndReason::Backchannel, ended);
        Ok(ended)
    }
}

fn summary(listed: &Listed, current: &str, ttl: std::time::Duration, now: u64) -> SessionSummary {
    let value = Value::split(&listed.value);
    let (identity, device) = value
        .as_ref()
        .map(|value| (value.identity(), value.device()))
        .unwrap_or_default();
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let last_used = now
        .saturating_add(listed.ttl_ms)
        .saturating_sub(ttl_ms)
        .clamp(listed.issued_ms.min(now), now);
    SessionSummary {
        handle: handle_of(&listed.id),
        current: listed.id == current,
        started_ms: listed.issued_ms,
        last_used_ms: last_used,
        agent: device.agent,
        address: device.address,
        signed_in_with: identity.signed_in_with().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::{Device, Identity, encode_tail};

    #[test]
    fn a_handle_is_short_stable_and_not_the_id() {
        let id = "a".repeat(64);
        let handle = handle_of(&id);
        assert_eq!(handle.len(), HANDLE_LEN);
        assert_eq!(handle, handle_of(&id));
        assert!(!id.contains(&handle));
        assert_ne!(handle, handle_of(&"b".repeat(64)));
    }

    #[test]
    fn a_summary_reads_the_device_and_when_the_session_was_last_used() {
        let device = Device::new(Some("Firefox"), Some("192.0.2.7".into()));
        let listed = Listed {
            id: "x".into(),
            issued_ms: 1_000,
            value: format!("3{}", encode_tail(&Identity::password(), &device)),
            // Used 40 s ago with a 100 s idle timeout: 60 s left.
            ttl_ms: 60_000,
        };
        let now = 500_000;
        let first = summary(&listed, "x", Duration::from_secs(100), now);
        assert!(first.current);
        assert_eq!(first.last_used_ms, now - 40_000);
        assert_eq!(first.agent.as_deref(), Some("Firefox"));
        assert_eq!(first.address.as_deref(), Some("192.0.2.7"));
        assert_eq!(first.signed_in_with, "password");

        let older = Listed {
            value: "5".into(),
            ..listed
        };
        let second = summary(&older, "y", Duration::from_secs(100), now);
        assert!(!second.current);
        assert_eq!(second.signed_in_with, "unknown");
    }
}
