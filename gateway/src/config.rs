//! The gateway's process settings (environment); routing lives in `routes.toml`.

use std::{net::SocketAddr, num::NonZeroUsize, path::PathBuf};

use common::{ConfigError, env};

pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9090";
pub const DEFAULT_ROUTES: &str = "routes.toml";

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `GATEWAY_ADDR`: the public listener.
    pub addr: SocketAddr,
    /// `GATEWAY_ADMIN_ADDR`: health and routing introspection.
    pub admin_addr: SocketAddr,
    /// `GATEWAY_ROUTES`: the routes file, watched for changes.
    pub routes: PathBuf,
    /// `GATEWAY_WORKERS`: threads serving the public port, each a single-threaded runtime with
    /// its own accept socket and upstream connections (default: one per core).
    pub workers: NonZeroUsize,
}

impl GatewayConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Self {
            addr: env::socket_addr("GATEWAY_ADDR", DEFAULT_ADDR)?,
            admin_addr: env::socket_addr("GATEWAY_ADMIN_ADDR", DEFAULT_ADMIN_ADDR)?,
            routes: env::optional("GATEWAY_ROUTES")?
                .map_or_else(|| PathBuf::from(DEFAULT_ROUTES), PathBuf::from),
            workers: env::parse_or(
                "GATEWAY_WORKERS",
                "a number of threads above 0",
                default_workers(),
            )?,
        };
        if config.addr == config.admin_addr && config.addr.port() != 0 {
            return Err(ConfigError::new(
                "GATEWAY_ADMIN_ADDR",
                "must differ from GATEWAY_ADDR (admin endpoints never share the public port)",
            ));
        }
        Ok(config)
    }
}

/// One worker per core the process may run on.
pub fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}
