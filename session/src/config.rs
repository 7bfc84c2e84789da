//! Session settings shared by writer and reader, read from the environment once at start.
//!
//! The names and defaults are the contract of DESIGN.md ("Configuration"). Anything missing or
//! invalid is a [`ConfigError`] naming the variable; there is no default secret.

use std::time::Duration;

use actix_web::cookie::SameSite;
use common::{ConfigError, env};

use crate::{
    keys::Keyring,
    store::{RedisTls, RedisUrl},
};

/// Everything both services must agree on for a session to be shared.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where sessions live.
    pub redis_url: RedisUrl,
    /// Keys derived from `SESSION_SECRET`; the first seals new cookies, all open them.
    pub keyring: Keyring,
    /// Attributes of the session cookie.
    pub cookie: CookieSettings,
    /// Idle timeout: a session ends this long after its last use (`SESSION_TTL`).
    pub ttl: Duration,
    /// Optional absolute lifetime after login (`SESSION_MAX_AGE`).
    pub max_age: Option<Duration>,
    /// Where clients without cookies send their session (`SESSION_HEADER`).
    pub header: HeaderSessions,
    /// `REDIS_WAIT_REPLICAS`: a session write is acknowledged only once this many replicas
    /// confirmed it (`WAIT`); 0, the default, acknowledges what the primary applied.
    pub wait_replicas: u32,
}

/// Which request header carries a session for clients that do not keep cookies (API and mobile
/// clients). The value is the same sealed handle a cookie carries, with the same rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderSessions {
    /// `Authorization: Session <token>` (the default).
    Authorization,
    /// `X-Session-Id: <token>`.
    XSessionId,
    /// Cookies only.
    Disabled,
}

/// Attributes of the session cookie. `HttpOnly` and `Path=/` are not configurable: no script
/// should read the session cookie, and both services live under one origin.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    /// `Secure` on every cookie (`SESSION_COOKIE_SECURE=true`).
    pub secure: bool,
    /// `SESSION_COOKIE_SECURE=auto`: `Secure` on the cookies of requests the gateway received
    /// over HTTPS (`X-Forwarded-Proto: https`). Only for services reachable through the gateway
    /// alone, which sets that header and never passes on a client's.
    pub secure_behind_https: bool,
    pub same_site: SameSite,
}

/// Default idle timeout: one day.
pub const DEFAULT_TTL: Duration = Duration::from_secs(86_400);
/// Default cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "sid";

impl SessionConfig {
    /// Reads `REDIS_URL` (with `REDIS_CA`, `REDIS_CLIENT_CERT`, `REDIS_CLIENT_KEY`),
    /// `REDIS_WAIT_REPLICAS`, `SESSION_SECRET`, `SESSION_COOKIE_*`,
    /// `SESSION_TTL`, `SESSION_MAX_AGE` and `SESSION_HEADER`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let redis_url = redis_url_from_env()?;
        let keyring = keyring_from_env()?;
        let cookie = CookieSettings::from_env()?;
        let ttl = env::seconds_optional("SESSION_TTL")?.unwrap_or(DEFAULT_TTL);
        let max_age = env::seconds_optional("SESSION_MAX_AGE")?;
        let header = HeaderSessions::from_env()?;
        let wait_replicas =
            env::parse_optional::<u32>("REDIS_WAIT_REPLICAS", "a whole number of replicas")?
                .unwrap_or(0);
        Ok(Self {
            redis_url,
            keyring,
            cookie,
            ttl,
            max_age,
            header,
            wait_replicas,
        })
    }
}

/// `REDIS_URL`, parsed, with its TLS settings, and for a cluster or sentinels asked once
/// whether they serve.
fn redis_url_from_env() -> Result<RedisUrl, ConfigError> {
    let redis_url = env::required("REDIS_URL", "for example redis://127.0.0.1:6379/0")?;
    let redis_url = RedisUrl::parse(redis_url.trim())
        .map_err(|reason| ConfigError::new("REDIS_URL", reason))?
        .secure(&RedisTls::from_env()?)?;
    redis_url
        .topology()
        .verify()
        .map_err(|reason| ConfigError::new("REDIS_URL", reason))?;
    Ok(redis_url)
}

/// `SESSION_SECRET`: one secret, or several for a rotation (see [`Keyring`]).
fn keyring_from_env() -> Result<Keyring, ConfigError> {
    let secrets = env::required(
        "SESSION_SECRET",
        "at least 32 characters; generate one with `openssl rand -base64 48`",
    )?;
    Keyring::from_secrets(&secrets).map_err(|reason| ConfigError::new("SESSION_SECRET", reason))
}

impl CookieSettings {
    /// Reads `SESSION_COOKIE_NAME`, `SESSION_COOKIE_SECURE` and `SESSION_COOKIE_SAMESITE`.
    fn from_env() -> Result<Self, ConfigError> {
        let name = env::optional("SESSION_COOKIE_NAME")?
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|| DEFAULT_COOKIE_NAME.to_owned());
        if !is_cookie_name(&name) {
            return Err(ConfigError::new(
                "SESSION_COOKIE_NAME",
                format!(
                    "{name:?} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"
                ),
            ));
        }
        let (secure, secure_behind_https) = env::choice(
            "SESSION_COOKIE_SECURE",
            &[
                ("true", (true, false)),
                ("false", (false, false)),
                ("auto", (false, true)),
            ],
            (false, false),
            "one of true, false, auto",
        )?;
        let same_site = env::choice(
            "SESSION_COOKIE_SAMESITE",
            &[
                ("strict", SameSite::Strict),
                ("lax", SameSite::Lax),
                ("none", SameSite::None),
            ],
            SameSite::Lax,
            "one of strict, lax, none",
        )?;
        if same_site == SameSite::None && !secure {
            // Browsers drop `SameSite=None` cookies that are not `Secure`; fail here rather than
            // ship a login that silently never sticks.
            return Err(ConfigError::new(
                "SESSION_COOKIE_SAMESITE",
                "none requires SESSION_COOKIE_SECURE=true (browsers reject it otherwise)",
            ));
        }
        Ok(Self {
            name,
            secure,
            secure_behind_https,
            same_site,
        })
    }
}

impl HeaderSessions {
    /// Reads `SESSION_HEADER`.
    fn from_env() -> Result<Self, ConfigError> {
        env::choice(
            "SESSION_HEADER",
            &[
                ("authorization", Self::Authorization),
                ("x-session-id", Self::XSessionId),
                ("none", Self::Disabled),
            ],
            Self::Authorization,
            "one of authorization, x-session-id, none",
        )
    }
}

/// The secrets of [`SessionConfig::for_tests`], primary first.
#[cfg(test)]
pub(crate) const TEST_SECRETS: [&str; 2] = [
    "unit-test-primary-secret-0123456789abcdef",
    "unit-test-older-secret-0123456789abcdef",
];

#[cfg(test)]
impl SessionConfig {
    /// Settings for unit tests: the defaults, a keyring of [`TEST_SECRETS`] (so that tokens of
    /// an older key can be made), and a Redis on a port nothing listens on: a unit test starts
    /// nothing, and an operation that reached the store would fail rather than pass.
    pub(crate) fn for_tests() -> Self {
        Self {
            redis_url: RedisUrl::parse("redis://127.0.0.1:1/0").expect("a valid URL"),
            keyring: Keyring::from_secrets(&TEST_SECRETS.join(",")).expect("valid secrets"),
            cookie: CookieSettings {
                name: DEFAULT_COOKIE_NAME.to_owned(),
                secure: false,
                secure_behind_https: false,
                same_site: SameSite::Lax,
            },
            ttl: DEFAULT_TTL,
            max_age: None,
            header: HeaderSessions::Authorization,
            wait_replicas: 0,
        }
    }
}

/// RFC 6265 §4.1.1: a cookie name is an RFC 2616 token.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_names_are_tokens() {
        assert!(is_cookie_name("sid"));
        assert!(is_cookie_name("__Host-sid"));
        assert!(!is_cookie_name(""));
        assert!(!is_cookie_name("s id"));
        assert!(!is_cookie_name("sid;"));
        assert!(!is_cookie_name("sïd"));
    }
}
