//! [`Sessions`]: the per-worker session service, what the middleware, the extractor and the
//! health check share: the store handle and the rules both services follow (keys, cookie,
//! lifetimes, the per-user cap, the trusted origins).
//!
//! It does no request work of its own: [`crate::current::CurrentSession`] asks it for the rules
//! and the store, once per request.

use std::{sync::Arc, time::Duration};

use actix_web::cookie::Cookie;

use crate::{
    config::{CookieSettings, HeaderSessions, SessionConfig},
    cross_site::TrustedOrigins,
    handle::{SessionHandle, UserId, now_ms},
    keys::Keyring,
    pending::Pending,
    store::{RedisStore, StoreError},
    throttle::LoginThrottle,
};

/// The per-worker session service: the store plus the rules both services follow.
/// Register it with `App::app_data(web::Data::new(sessions))`.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: RedisStore,
    rules: Arc<Rules>,
}

#[derive(Debug, Clone)]
struct Rules {
    keyring: Keyring,
    cookie: CookieSettings,
    ttl: Duration,
    max_age: Option<Duration>,
    max_per_user: Option<u32>,
    header: HeaderSessions,
    trusted_origins: TrustedOrigins,
}

impl Sessions {
    /// Prepares the store (lazily connected, see [`RedisStore::new`]).
    pub fn new(config: &SessionConfig) -> Result<Self, StoreError> {
        Ok(Self {
            store: RedisStore::new(&config.redis_url, config.ttl)?
                .with_wait_replicas(config.wait_replicas),
            rules: Arc::new(Rules {
                keyring: config.keyring.clone(),
                cookie: config.cookie.clone(),
                ttl: config.ttl,
                max_age: config.max_age,
                max_per_user: None,
                header: config.header,
                trusted_origins: TrustedOrigins::default(),
            }),
        })
    }

    /// The session cookie's name when it is to be marked `Secure` behind HTTPS only
    /// (`SESSION_COOKIE_SECURE=auto`, see [`crate::service::secure_behind_https`]).
    pub fn cookie_secured_behind_https(&self) -> Option<&str> {
        let cookie = &self.rules.cookie;
        cookie.secure_behind_https.then_some(cookie.name.as_str())
    }

    /// Caps the number of live sessions per user (`SESSION_MAX_PER_USER`).
    #[must_use]
    pub fn with_max_per_user(mut self, cap: Option<u32>) -> Self {
        Arc::make_mut(&mut self.rules).max_per_user = cap;
        self
    }

    /// Lets pages of these origins change sessions too (`SESSION_TRUSTED_ORIGINS`, see
    /// [`crate::cross_site`]).
    #[must_use]
    pub fn with_trusted_origins(mut self, origins: TrustedOrigins) -> Self {
        Arc::make_mut(&mut self.rules).trusted_origins = origins;
        self
    }

    pub(crate) fn store(&self) -> &RedisStore {
        &self.store
    }

    /// Single-use values, kept in the same Redis (see [`crate::pending`]).
    pub fn pending(&self) -> Pending {
        Pending::new(self.store.clone())
    }

    /// The failed-login counters, kept in the same Redis, and the known-device cookies.
    pub fn login_throttle(&self) -> LoginThrottle {
        LoginThrottle::new(self.clone())
    }

    /// The keys that seal the session cookie and the cookies beside it.
    pub(crate) fn keyring(&self) -> &Keyring {
        &self.rules.keyring
    }

    /// The live sessions a user may have at once; `None`: no cap.
    pub(crate) fn max_per_user(&self) -> Option<u32> {
        self.rules.max_per_user
    }

    /// Origins other than the request's own whose pages may change sessions.
    pub(crate) fn trusted_origins(&self) -> &TrustedOrigins {
        &self.rules.trusted_origins
    }

    /// Which header, if any, carries a session for clients without cookies.
    pub(crate) fn header(&self) -> HeaderSessions {
        self.rules.header
    }

    /// The session cookie's name, which is also what a sealed handle is bound to.
    pub(crate) fn cookie_name(&self) -> &str {
        &self.rules.cookie.name
    }

    /// The idle timeout.
    pub(crate) fn ttl(&self) -> Duration {
        self.rules.ttl
    }

    /// How long a session may live from now: `None` once its absolute deadline has passed.
    pub(crate) fn lifetime(&self, handle: &SessionHandle) -> Option<Duration> {
        handle.lifetime_from(now_ms(), self.rules.ttl)
    }

    /// A handle for a session of `user` starting now, and how long it may live.
    pub(crate) fn new_session(&self, user: UserId) -> (SessionHandle, Duration) {
        let handle = SessionHandle::new(user, self.rules.max_age);
        // A new session's deadline (if any) is at least a second away, so it has a lifetime.
        let lifetime = handle
            .lifetime_from(handle.issued_at_ms(), self.rules.ttl)
            .unwrap_or(self.rules.ttl);
        (handle, lifetime)
    }

    /// `handle` sealed with the primary key: a cookie value, or a header session's token.
    pub(crate) fn seal(&self, handle: &SessionHandle) -> String {
        let rules = &self.rules;
        rules.keyring.seal(&rules.cookie.name, &handle.encode())
    }

    /// Opens a cookie value or header token with any key of the ring: the handle, and whether
    /// an older key sealed it. `None` for anything we did not seal.
    pub(crate) fn open(&self, sealed: &str) -> Option<(SessionHandle, bool)> {
        SessionHandle::open(&self.rules.keyring, &self.rules.cookie.name, sealed)
    }

    /// A cookie that travels beside the session cookie: named `<session cookie>-<suffix>`, as
    /// `Secure` as it, `HttpOnly`, path `/`, and `SameSite=Lax` whatever the session cookie's,
    /// so that it comes back on a navigation from another site (an identity provider sending
    /// the browser back).
    pub fn side_cookie(&self, suffix: &str, value: String, max_age: Duration) -> Cookie<'static> {
        let cookie = &self.rules.cookie;
        Cookie::build(format!("{}-{suffix}", cookie.name), value)
            .path("/")
            .http_only(true)
            .secure(cookie.secure)
            .same_site(actix_web::cookie::SameSite::Lax)
            .max_age(actix_web::cookie::time::Duration::seconds(
                i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
            ))
            .finish()
    }

    /// The name of the side cookie `suffix` (see [`Self::side_cookie`]).
    pub fn side_cookie_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.rules.cookie.name)
    }

    /// A `Set-Cookie` that expires the session cookie, with the attributes it was set with.
    pub(crate) fn removal_cookie(&self) -> Cookie<'static> {
        let cookie = &self.rules.cookie;
        let mut removal = Cookie::build(cookie.name.clone(), "")
            .path("/")
            .http_only(true)
            .secure(cookie.secure)
            .same_site(cookie.same_site)
            .finish();
        removal.make_removal();
        removal
    }
}

#[cfg(test)]
mod tests {
    use actix_web::cookie::{SameSite, time};

    use super::*;
    use crate::config::TEST_SECRETS;

    /// The test settings' sessions; the store is never connected (nothing here awaits it).
    fn sessions(adjust: impl FnOnce(&mut SessionConfig)) -> Sessions {
        let mut config = SessionConfig::for_tests();
        adjust(&mut config);
        Sessions::new(&config).expect("a lazily connected store")
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("a user id")
    }

    #[actix_web::test]
    async fn the_rules_are_the_settings_until_a_service_adjusts_its_copy() {
        let plain = sessions(|_| {});
        assert_eq!(plain.cookie_name(), "sid");
        assert_eq!(plain.header(), HeaderSessions::Authorization);
        assert_eq!(plain.max_per_user(), None);
        assert_eq!(plain.trusted_origins(), &TrustedOrigins::default());
        assert_eq!(plain.cookie_secured_behind_https(), None);

        let origins = TrustedOrigins::parse("https://spa.example").expect("origins");
        let writer = plain
            .clone()
            .with_max_per_user(Some(3))
            .with_trusted_origins(origins.clone());
        assert_eq!(writer.max_per_user(), Some(3));
        assert_eq!(writer.trusted_origins(), &origins);
        // The rules are shared until changed: the copy it was made from keeps its own.
        assert_eq!(plain.max_per_user(), None);
        assert_eq!(plain.trusted_origins(), &TrustedOrigins::default());
    }

    #[actix_web::test]
    async fn the_cookie_is_secured_behind_https_only_when_configured() {
        let auto = sessions(|config| {
            config.cookie.name = "__Host-sid".to_owned();
            config.cookie.secure_behind_https = true;
        });
        assert_eq!(auto.cookie_secured_behind_https(), Some("__Host-sid"));
    }

    #[actix_web::test]
    async fn a_new_session_lives_one_idle_timeout_capped_by_its_max_age() {
        let idle = sessions(|config| config.ttl = Duration::from_secs(600));
        let (handle, lifetime) = idle.new_session(user("alice"));
        assert_eq!(handle.user(), &user("alice"));
        assert_eq!(handle.deadline_ms(), None);
        assert_eq!(lifetime, Duration::from_secs(600));
        assert_eq!(idle.lifetime(&handle), Some(Duration::from_secs(600)));

        let capped = sessions(|config| {
            config.ttl = Duration::from_secs(600);
            config.max_age = Some(Duration::from_secs(60));
        });
        let (handle, lifetime) = capped.new_session(user("bob"));
        assert_eq!(lifetime, Duration::from_secs(60));
        assert!(
            capped
                .lifetime(&handle)
                .is_some_and(|left| left <= lifetime)
        );
    }

    #[actix_web::test]
    async fn a_session_past_its_deadline_has_no_lifetime() {
        let sessions = sessions(|config| config.max_age = Some(Duration::ZERO));
        let (handle, _) = sessions.new_session(user("carol"));
        assert_eq!(sessions.lifetime(&handle), None);
    }

    #[actix_web::test]
    async fn what_is_sealed_opens_and_an_older_key_asks_to_be_sealed_again() {
        let sessions = sessions(|_| {});
        let (handle, _) = sessions.new_session(user("dave"));
        assert_eq!(
            sessions.open(&sessions.seal(&handle)),
            Some((handle.clone(), false))
        );

        let old = Keyring::from_secrets(TEST_SECRETS[1]).expect("a keyring");
        let by_old_key = old.seal(sessions.cookie_name(), &handle.encode());
        assert_eq!(sessions.open(&by_old_key), Some((handle.clone(), true)));

        let other_name = sessions.rules.keyring.seal("other", &handle.encode());
        assert_eq!(
            sessions.open(&other_name),
            None,
            "bound to the cookie's name"
        );
        assert_eq!(sessions.open("garbage"), None);
    }

    #[actix_web::test]
    async fn the_removal_cookie_matches_the_session_cookie_and_is_expired() {
        let sessions = sessions(|config| {
            config.cookie.secure = true;
            config.cookie.same_site = SameSite::Strict;
        });
        let removal = sessions.removal_cookie();
        assert_eq!(removal.name(), "sid");
        assert_eq!(removal.value(), "");
        assert_eq!(removal.path(), Some("/"));
        assert_eq!(removal.http_only(), Some(true));
        assert_eq!(removal.secure(), Some(true));
        assert_eq!(removal.same_site(), Some(SameSite::Strict));
        assert_eq!(removal.max_age(), Some(time::Duration::ZERO));
    }
}
