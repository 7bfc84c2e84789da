//! HTTPS on the public side: the certificate and key (`GATEWAY_TLS_CERT`, `GATEWAY_TLS_KEY`,
//! PEM files, the chain in the certificate file), served by rustls with HTTP/2 and HTTP/1.1
//! offered by ALPN, and replaced while the gateway runs.
//!
//! Renewed files are picked up without a restart and without touching open connections: a
//! handshake asks [`CertStore`] for the pair in force at that moment (an `ArcSwap`), and a task
//! looks at the files every [`RELOAD_EVERY`]. A new pair that does not load (unreadable, not
//! PEM, a key that does not match the certificate, a half-written file) is logged and counted,
//! and the previous pair keeps serving, as an invalid routes file keeps the previous table.
//! Polling rather than file events: certificate managers (certbot, cert-manager's projected
//! secrets) replace files through renames and symlink swaps that events do not always report.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

/// How often the certificate files are looked at.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The certificate and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads and checks the pair: a chain of at least one certificate, a private key, and the
    /// key belonging to the first certificate. The error names the file at fault.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let cert_error = |reason: String| TlsError::Cert {
            path: self.cert.clone(),
            reason,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|err| cert_error(err.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|err| cert_error(err.to_string()))?;
        if chain.is_empty() {
            return Err(cert_error("holds no PEM certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|err| TlsError::Key {
            path: self.key.clone(),
            reason: err.to_string(),
        })?;
        CertifiedKey::from_der(chain, key, &provider()).map_err(|err| TlsError::Key {
            path: self.key.clone(),
            reason: format!("does not go with the certificate ({err})"),
        })
    }

    /// When either file last changed (and how long each is): a renewal changes it.
    fn stamp(&self) -> Option<[(SystemTime, u64); 2]> {
        let of = |path: &Path| {
            let meta = fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        };
        Some([of(&self.cert)?, of(&self.key)?])
    }
}

/// Why a certificate pair cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {reason}", path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
}

impl TlsError {
    /// The setting that names the file at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Cert { .. } => "GATEWAY_TLS_CERT",
            Self::Key { .. } => "GATEWAY_TLS_KEY",
        }
    }
}

/// The one crypto provider the gateway is built with.
fn provider() -> CryptoProvider {
    ring::default_provider()
}

/// The certificate pair in force, swapped whole when the files change.
pub struct CertStore {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertStore {
    /// Loads the pair; an error here stops the start.
    pub fn new(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let pair = files.load()?;
        Ok(Arc::new(Self {
            files,
            current: ArcSwap::from_pointee(pair),
        }))
    }

    /// The pair of `files` when it loads, else a self-signed certificate for `domains` until
    /// the files arrive (an ACME certificate not obtained yet): the watcher swaps them in.
    pub fn new_or_placeholder(files: TlsFiles, domains: &[String]) -> Result<Arc<Self>, String> {
        let pair = match files.load() {
            Ok(pair) => pair,
            Err(_) => {
                let (cert, key) = super::acme::placeholder(domains)?;
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| err.to_string())?;
                let key =
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|err| err.to_string())?;
                CertifiedKey::from_der(chain, key, &provider()).map_err(|err| err.to_string())?
            }
        };
        Ok(Arc::new(Self {
            files,
            current: ArcSwap::from_pointee(pair),
        }))
    }

    /// The server side of TLS: this store's certificate, HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Looks at the files every [`RELOAD_EVERY`] and swaps in a changed pair once it loads;
    /// runs until the task is dropped. Each change is told to `reloaded`: `true` when the new
    /// pair serves, `false` when it does not load (the metrics count both).
    pub async fn watch(self: Arc<Self>, reloaded: impl Fn(bool)) {
        let mut seen = self.files.stamp();
        let mut interval = tokio::time::interval(RELOAD_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let stamp = self.files.stamp();
            if stamp == seen {
                continue;
            }
            seen = stamp;
            match self.files.load() {
                Ok(pair) => {
                    self.current.store(Arc::new(pair));
                    reloaded(true);
                    tracing::info!(cert = %self.files.cert.display(), "serving the renewed certificate");
                }
                Err(err) => {
                    reloaded(false);
                    tracing::warn!(error = %err, "certificate files changed but do not load; the previous certificate keeps serving");
                }
            }
        }
    }
}
