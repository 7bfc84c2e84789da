//! The gateway's process settings (environment); routing lives in `routes.toml`.

use std::{net::SocketAddr, num::NonZeroUsize, path::PathBuf};

use common::{ConfigError, env};

use crate::{
    access::Destination,
    listen::clients::DEFAULT_MAX_CONNECTIONS,
    tls::{
        TlsFiles,
        acme::{self, AcmeSettings},
    },
};

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
    /// `GATEWAY_MAX_CONNECTIONS`: client connections open at once, every listener and worker
    /// together (admin excepted); more are closed as they are accepted. Default 10000.
    pub max_connections: NonZeroUsize,
    /// `GATEWAY_TLS_ADDR`, `GATEWAY_TLS_CERT`, `GATEWAY_TLS_KEY`, `GATEWAY_HTTPS_REDIRECT`: the
    /// HTTPS listener, when configured.
    pub tls: Option<TlsSettings>,
    /// `GATEWAY_ACCESS_LOG`: `stderr` (default), `off`, or a file (see [`crate::access`]).
    pub access_log: Destination,
}

/// The HTTPS listener: where, with which certificate, and whether plain HTTP is sent there.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub addr: SocketAddr,
    pub files: TlsFiles,
    /// `GATEWAY_HTTPS_REDIRECT=true`: the plain listener answers every request with a redirect
    /// to HTTPS, and HTTPS answers carry `Strict-Transport-Security`.
    pub redirect: bool,
    /// `GATEWAY_ACME_*`: the certificate is obtained and renewed over ACME, into `files`.
    pub acme: Option<AcmeSettings>,
}

impl TlsSettings {
    /// All three of address, certificate and key, or none; the pair is loaded once to check it.
    /// With `GATEWAY_ACME_DOMAINS`, the address alone: the pair is the ACME directory's.
    fn from_env() -> Result<Option<Self>, ConfigError> {
        if let Some(acme) = acme_from_env()? {
            return Self::with_acme(acme).map(Some);
        }
        let addr = env::optional("GATEWAY_TLS_ADDR")?;
        let cert = env::optional("GATEWAY_TLS_CERT")?;
        let key = env::optional("GATEWAY_TLS_KEY")?;
        let redirect = env::flag("GATEWAY_HTTPS_REDIRECT", false)?;
        let (addr, cert, key) = match (addr, cert, key) {
            (None, None, None) if redirect => {
                return Err(ConfigError::new(
                    "GATEWAY_HTTPS_REDIRECT",
                    "needs the HTTPS listener: set GATEWAY_TLS_ADDR, GATEWAY_TLS_CERT and GATEWAY_TLS_KEY",
                ));
            }
            (None, None, None) => return Ok(None),
            (Some(addr), Some(cert), Some(key)) => (addr, cert, key),
            (addr, cert, _) => {
                let missing = if addr.is_none() {
                    "GATEWAY_TLS_ADDR"
                } else if cert.is_none() {
                    "GATEWAY_TLS_CERT"
                } else {
                    "GATEWAY_TLS_KEY"
                };
                return Err(ConfigError::new(
                    missing,
                    "is required for HTTPS (GATEWAY_TLS_ADDR, GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together)",
                ));
            }
        };
        let addr: SocketAddr = addr.trim().parse().map_err(|_| {
            ConfigError::new(
                "GATEWAY_TLS_ADDR",
                format!("{addr:?} is not a listen address like 0.0.0.0:8443"),
            )
        })?;
        let files = TlsFiles {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        };
        files
            .load()
            .map_err(|err| ConfigError::new(err.variable(), err.to_string()))?;
        Ok(Some(Self {
            addr,
            files,
            redirect,
            acme: None,
        }))
    }

    /// The HTTPS listener of a certificate obtained over ACME: `GATEWAY_TLS_ADDR` is required,
    /// and `GATEWAY_TLS_CERT`/`KEY` must not name other files.
    fn with_acme(acme: AcmeSettings) -> Result<Self, ConfigError> {
        for set in ["GATEWAY_TLS_CERT", "GATEWAY_TLS_KEY"] {
            if env::optional(set)?.is_some() {
                return Err(ConfigError::new(
                    set,
                    "is set with GATEWAY_ACME_DOMAINS: the certificate is obtained over ACME into GATEWAY_ACME_DIR; unset one or the other",
                ));
            }
        }
        let addr = env::required(
            "GATEWAY_TLS_ADDR",
            "the HTTPS listener for the ACME certificate, such as 0.0.0.0:443",
        )?;
        let addr: SocketAddr = addr.trim().parse().map_err(|_| {
            ConfigError::new(
                "GATEWAY_TLS_ADDR",
                format!("{addr:?} is not a listen address like 0.0.0.0:8443"),
            )
        })?;
        Ok(Self {
            addr,
            files: acme.files(),
            redirect: env::flag("GATEWAY_HTTPS_REDIRECT", false)?,
            acme: Some(acme),
        })
    }
}

/// `GATEWAY_ACME_*`, when `GATEWAY_ACME_DOMAINS` is set.
fn acme_from_env() -> Result<Option<AcmeSettings>, ConfigError> {
    let Some(domains) = env::optional("GATEWAY_ACME_DOMAINS")? else {
        return Ok(None);
    };
    let domains: Vec<String> = domains
        .split(',')
        .map(|domain| domain.trim().to_ascii_lowercase())
        .filter(|domain| !domain.is_empty())
        .collect();
    for domain in &domains {
        let valid = domain.split('.').count() >= 2
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(ConfigError::new(
                "GATEWAY_ACME_DOMAINS",
                format!("{domain:?} is not a domain name such as app.example.com"),
            ));
        }
    }
    if domains.is_empty() {
        return Ok(None);
    }
    let directory =
        env::optional("GATEWAY_ACME_DIRECTORY")?.unwrap_or_else(|| acme::LETS_ENCRYPT.to_owned());
    if !directory.starts_with("https://") {
        return Err(ConfigError::new(
            "GATEWAY_ACME_DIRECTORY",
            format!("{directory:?} is not an https:// URL of an ACME directory"),
        ));
    }
    let ca = env::optional("GATEWAY_ACME_CA")?.map(PathBuf::from);
    if let Some(ca) = &ca
        && std::fs::metadata(ca).is_err()
    {
        return Err(ConfigError::new(
            "GATEWAY_ACME_CA",
            format!("{}: cannot read", ca.display()),
        ));
    }
    Ok(Some(AcmeSettings {
        domains,
        email: env::optional("GATEWAY_ACME_EMAIL")?,
        directory,
        dir: PathBuf::from(env::optional("GATEWAY_ACME_DIR")?.unwrap_or_else(|| "acme".into())),
        ca,
        renew_before: env::seconds_optional("GATEWAY_ACME_RENEW_BEFORE")?
            .unwrap_or(acme::DEFAULT_RENEW_BEFORE),
        check_every: env::seconds_optional("GATEWAY_ACME_CHECK_EVERY")?
            .unwrap_or(acme::DEFAULT_CHECK_EVERY),
    }))
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
            max_connections: env::parse_or(
                "GATEWAY_MAX_CONNECTIONS",
                "a number of connections above 0",
                default_max_connections(),
            )?,
            tls: TlsSettings::from_env()?,
            access_log: env::optional("GATEWAY_ACCESS_LOG")?
                .map_or_else(Destination::default, |raw| Destination::parse(&raw)),
        };
        if config.addr == config.admin_addr && config.addr.port() != 0 {
            return Err(ConfigError::new(
                "GATEWAY_ADMIN_ADDR",
                "must differ from GATEWAY_ADDR (admin endpoints never share the public port)",
            ));
        }
        if let Some(tls) = &config.tls
            && tls.addr.port() != 0
            && (tls.addr == config.addr || tls.addr == config.admin_addr)
        {
            return Err(ConfigError::new(
                "GATEWAY_TLS_ADDR",
                "must differ from GATEWAY_ADDR and GATEWAY_ADMIN_ADDR",
            ));
        }
        Ok(config)
    }
}

/// [`DEFAULT_MAX_CONNECTIONS`], as the setting's type.
pub fn default_max_connections() -> NonZeroUsize {
    NonZeroUsize::new(DEFAULT_MAX_CONNECTIONS).unwrap_or(NonZeroUsize::MIN)
}

/// One worker per core the process may run on.
pub fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}
