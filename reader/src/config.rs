//! The reader's settings: the shared session settings, its listen and admin addresses.

use std::net::SocketAddr;

use common::{ConfigError, env};
use session::SessionConfig;

/// Default listen address (`READER_ADDR`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8091";

#[derive(Debug, Clone)]
pub struct ReaderConfig {
    pub addr: SocketAddr,
    /// `READER_ADMIN_ADDR`: where `/metrics` is served (none when unset).
    pub admin_addr: Option<SocketAddr>,
    pub session: SessionConfig,
}

impl ReaderConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            addr: env::socket_addr("READER_ADDR", DEFAULT_ADDR)?,
            admin_addr: env::parse_optional(
                "READER_ADMIN_ADDR",
                "an address such as 127.0.0.1:9191",
            )?,
            session: SessionConfig::from_env()?,
        })
    }
}
