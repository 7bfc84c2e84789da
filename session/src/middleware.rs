//! actix-session wiring: actix-session owns the cookie and the request lifecycle (reading and
//! verifying the cookie, renewing it at login, expiring it at logout); this module gives it a
//! store that holds no data.
//!
//! Why not actix-session's own Redis store: it loads the whole state before the handler and
//! writes it all back after (concurrent updates are lost), its `update` re-creates a session that
//! a logout just deleted, it needs two round trips per request, and a Redis outage turns into an
//! empty 500 after minutes of retries. Here the store only translates between the cookie and a
//! [`SessionHandle`](crate::SessionHandle); every Redis operation is an explicit, atomic call made by the handler through
//! [`crate::CurrentSession`], so its failures become proper JSON answers.

use std::collections::HashMap;

use actix_session::{
    SessionMiddleware,
    config::{BrowserSession, CookieContentSecurity},
    storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError},
};
use actix_web::cookie::time::Duration;

use crate::config::SessionConfig;

/// The one entry of actix-session's state: the encoded handle, as a JSON string.
pub(crate) const HANDLE_ENTRY: &str = "handle";

/// A [`SessionStore`] that maps cookies to handles and back, without any I/O.
///
/// - `load`: the cookie (already decrypted and authenticated by actix-session) is the handle.
/// - `save`/`update`: the handle to put in the cookie is the one the handler stored with
///   [`actix_session::Session::insert`]; the handler has already written Redis.
/// - `delete`: the handler has already deleted the session in Redis.
#[derive(Debug, Clone, Copy, Default)]
pub struct HandleStore;

impl SessionStore for HandleStore {
    async fn load(
        &self,
        session_key: &SessionKey,
    ) -> Result<Option<HashMap<String, String>>, LoadError> {
        // The cookie was sealed by us (actix-session has authenticated it): it is an encoded
        // handle, which `CurrentSession` decodes (and refuses when malformed) once.
        let encoded = serde_json::to_string(session_key.as_ref())
            .map_err(|err| LoadError::Deserialization(err.into()))?;
        Ok(Some(HashMap::from([(HANDLE_ENTRY.to_owned(), encoded)])))
    }

    async fn save(
        &self,
        session_state: HashMap<String, String>,
        _ttl: &Duration,
    ) -> Result<SessionKey, SaveError> {
        handle_of(&session_state).map_err(SaveError::Other)
    }

    async fn update(
        &self,
        _session_key: SessionKey,
        session_state: HashMap<String, String>,
        _ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        handle_of(&session_state).map_err(UpdateError::Other)
    }

    async fn update_ttl(&self, _session_key: &SessionKey, _ttl: &Duration) -> anyhow::Result<()> {
        // Idle expiry is enforced by Redis key TTLs, extended by every store operation.
        Ok(())
    }

    async fn delete(&self, _session_key: &SessionKey) -> anyhow::Result<()> {
        Ok(())
    }
}

fn handle_of(state: &HashMap<String, String>) -> anyhow::Result<SessionKey> {
    let encoded = state
        .get(HANDLE_ENTRY)
        .ok_or_else(|| anyhow::anyhow!("session state has no handle"))?;
    let handle: String = serde_json::from_str(encoded)?;
    Ok(SessionKey::try_from(handle)?)
}

/// The actix-session middleware configured from [`SessionConfig`]: an encrypted
/// (`Private`: AES-256-GCM) `HttpOnly` cookie on `Path=/`, without `Max-Age`. The cookie
/// lives as long as the browser keeps it; Redis TTLs decide how long the session lives, so a
/// read-only request never needs a `Set-Cookie` to keep it alive.
pub fn session_middleware(config: &SessionConfig) -> SessionMiddleware<HandleStore> {
    SessionMiddleware::builder(HandleStore, config.keyring.primary().clone())
        .cookie_name(config.cookie.name.clone())
        .cookie_secure(config.cookie.secure)
        .cookie_same_site(config.cookie.same_site)
        .cookie_http_only(true)
        .cookie_path("/".to_owned())
        .cookie_content_security(CookieContentSecurity::Private)
        .session_lifecycle(BrowserSession::default())
        .build()
}
