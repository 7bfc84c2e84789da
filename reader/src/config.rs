//! The reader's settings: the shared session settings and its listen address.

use std::net::SocketAddr;

use common::{ConfigError, env};
use session::SessionConfig;

/// Default listen address (`READER_ADDR`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8091";

#[derive(Debug, Clone)]
pub struct ReaderConfig {
    pub addr: SocketAddr,
    pub session: SessionConfig,
}

impl ReaderConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            addr: env::socket_addr("READER_ADDR", DEFAULT_ADDR)?,
            session: SessionConfig::from_env()?,
        })
    }
}
