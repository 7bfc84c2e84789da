//! The writer's settings: the shared session settings plus its own.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use common::{ConfigError, env};
use session::{SessionConfig, TrustedOrigins};

use crate::{
    auth::Users,
    client::{DEFAULT_TRUSTED_GATEWAYS, TrustedGateways},
};

/// Default listen address (`WRITER_ADDR`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8090";

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub addr: SocketAddr,
    pub session: SessionConfig,
    /// `SESSION_MAX_PER_USER`: live sessions per user; a login beyond it ends the oldest.
    pub max_per_user: Option<u32>,
    /// `AUTH_USERS_FILE`: who may log in, with which password. `None` = the open demo login.
    pub users: Option<Arc<Users>>,
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
            session: SessionConfig::from_env()?,
            max_per_user,
            users,
            trusted_origins,
            trusted_gateways,
        })
    }
}
