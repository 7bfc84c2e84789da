//! The writer's settings: the shared session settings plus its own.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use common::{ConfigError, env};
use session::{SessionConfig, TrustedOrigins};

use crate::{
    auth::Users,
    client::{DEFAULT_TRUSTED_GATEWAYS, TrustedGateways},
    oidc::{self, Providers},
};

/// Default listen address (`WRITER_ADDR`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8090";

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub addr: SocketAddr,
    /// `WRITER_ADMIN_ADDR`: where `/metrics` is served (none when unset).
    pub admin_addr: Option<SocketAddr>,
    pub session: SessionConfig,
    /// `SESSION_MAX_PER_USER`: live sessions per user; a login beyond it ends the oldest.
    pub max_per_user: Option<u32>,
    /// `AUTH_USERS_FILE`: who may log in, with which password.
    pub users: Option<Arc<Users>>,
    /// `AUTH_PROVIDERS_FILE` (with `PUBLIC_URL`): the identity providers users may sign in
    /// with. Neither this nor `users`: the open demo login.
    pub providers: Option<Arc<Providers>>,
    /// `SESSION_TRUSTED_ORIGINS`: other origins whose pages may log in, increment and log out
    /// (see [`session::cross_site`]).
    pub trusted_origins: TrustedOrigins,
    /// `TRUSTED_GATEWAYS`: peers whose `X-Real-IP` names the client (see [`crate::client`]).
    pub trusted_gateways: TrustedGateways,
}

impl WriterConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let max_per_user =
            env::parse_optional::<u32>("SESSION_MAX_PER_USER", "a positive whole number")?;
        if max_per_user == Some(0) {
            return Err(ConfigError::new(
                "SESSION_MAX_PER_USER",
                "must be at least 1 (leave it unset for no cap)",
            ));
        }
        let users = env::optional("AUTH_USERS_FILE")?
            .map(|path| Users::load(&PathBuf::from(path.trim())).map(Arc::new))
            .transpose()?;
        let providers = providers_from_env()?;
        let trusted_origins = env::optional("SESSION_TRUSTED_ORIGINS")?
            .map(|list| TrustedOrigins::parse(&list))
            .transpose()
            .map_err(|reason| ConfigError::new("SESSION_TRUSTED_ORIGINS", reason))?
            .unwrap_or_default();
        let trusted_gateways = TrustedGateways::parse(
            &env::optional("TRUSTED_GATEWAYS")?
                .unwrap_or_else(|| DEFAULT_TRUSTED_GATEWAYS.to_owned()),
        )
        .map_err(|reason| ConfigError::new("TRUSTED_GATEWAYS", reason))?;
        Ok(Self {
            addr: env::socket_addr("WRITER_ADDR", DEFAULT_ADDR)?,
            admin_addr: env::parse_optional(
                "WRITER_ADMIN_ADDR",
                "an address such as 127.0.0.1:9190",
            )?,
            session: SessionConfig::from_env()?,
            max_per_user,
            users,
            providers,
            trusted_origins,
            trusted_gateways,
        })
    }
}

/// `AUTH_PROVIDERS_FILE` and the `PUBLIC_URL` its redirect URIs start with.
fn providers_from_env() -> Result<Option<Arc<Providers>>, ConfigError> {
    let Some(path) = env::optional(oidc::config::VARIABLE)? else {
        return Ok(None);
    };
    let configs = oidc::config::load(&PathBuf::from(path.trim()), |name| std::env::var(name).ok())?;
    let public_url = public_url(&env::required(
        PUBLIC_URL,
        "the origin browsers see (for example https://app.example.com): identity providers send them back to it",
    )?)
    .map_err(|reason| ConfigError::new(PUBLIC_URL, reason))?;
    Providers::new(configs, &public_url)
        .map(|providers| Some(Arc::new(providers)))
        .map_err(|reason| ConfigError::new(oidc::config::VARIABLE, reason))
}

/// The variable naming the origin browsers see.
pub const PUBLIC_URL: &str = "PUBLIC_URL";

/// `PUBLIC_URL` as an origin without a trailing slash: `http(s)://host[:port]`.
fn public_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim().trim_end_matches('/');
    let url = url::Url::parse(raw).map_err(|err| format!("{raw:?} is not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{raw:?} must be http(s)://host[:port]"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{raw:?} must be an origin only, without a path, query or fragment"
        ));
    }
    Ok(raw.to_owned())
}
