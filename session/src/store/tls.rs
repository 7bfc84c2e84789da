//! TLS to Redis (`rediss://`): which certificates the server's must chain to, and the client's
//! own certificate when Redis asks for one (`tls-auth-clients yes`).
//!
//! - `REDIS_CA`: a PEM file of the CA certificates to trust instead of Mozilla's roots (a
//!   private CA, Redis Cloud's). Unset: Mozilla's roots, compiled in (`webpki-roots`), which the
//!   public CAs of ElastiCache, Azure Cache and Upstash chain to.
//! - `REDIS_CLIENT_CERT` + `REDIS_CLIENT_KEY`: a PEM certificate chain and its private key,
//!   both or neither.
//!
//! The server's certificate is always verified, name included: there is no setting to skip it,
//! and a URL asking for that (`#insecure`) is refused (see [`super::topology`]). Every file is
//! read and checked once at start, so a wrong path, a PEM without a certificate or a key that
//! does not belong to its certificate stops the service with one line naming the variable;
//! what cannot be known before connecting (a server certificate the CA did not sign) shows as
//! a store error naming the certificate problem.

use std::{fmt, path::Path, sync::Arc};

use common::{ConfigError, env};
use redis::{ClientTlsConfig, TlsCertificates};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// The CA file to trust instead of Mozilla's roots.
pub const CA_VARIABLE: &str = "REDIS_CA";
/// The client's certificate chain, PEM.
pub const CERT_VARIABLE: &str = "REDIS_CLIENT_CERT";
/// The client's private key, PEM.
pub const KEY_VARIABLE: &str = "REDIS_CLIENT_KEY";

/// The TLS settings of the connections to Redis, checked. Never prints the key.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// PEM of the CA certificates from `REDIS_CA`; `None`: Mozilla's roots.
    ca: Option<Vec<u8>>,
    /// PEM of the client's certificate chain and key.
    client: Option<ClientTlsConfig>,
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("own_ca", &self.ca.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl RedisTls {
    /// Reads and checks `REDIS_CA`, `REDIS_CLIENT_CERT` and `REDIS_CLIENT_KEY`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let ca = env::optional(CA_VARIABLE)?;
        let cert = env::optional(CERT_VARIABLE)?;
        let key = env::optional(KEY_VARIABLE)?;
        let client = match (cert, key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    KEY_VARIABLE,
                    format!(
                        "is required with {CERT_VARIABLE} (the private key of that certificate)"
                    ),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    CERT_VARIABLE,
                    format!("is required with {KEY_VARIABLE} (the certificate of that key)"),
                ));
            }
            (Some(cert), Some(key)) => Some((cert, key)),
        };
        Self::from_files(
            ca.as_deref().map(str::trim).map(Path::new),
            client
                .as_ref()
                .map(|(cert, key)| (Path::new(cert.trim()), Path::new(key.trim()))),
        )
    }

    /// The settings from a CA file and a client certificate and key file, each checked:
    /// `Err` names the variable that set the file at fault.
    pub fn from_files(
        ca: Option<&Path>,
        client: Option<(&Path, &Path)>,
    ) -> Result<Self, ConfigError> {
        let ca = ca
            .map(|path| {
                let pem = read(CA_VARIABLE, path)?;
                roots(&pem).map_err(|reason| ConfigError::new(CA_VARIABLE, reason))?;
                Ok::<_, ConfigError>(pem)
            })
            .transpose()?;
        let client = client
            .map(|(cert_path, key_path)| {
                let client_cert = read(CERT_VARIABLE, cert_path)?;
                let client_key = read(KEY_VARIABLE, key_path)?;
                check_client(&client_cert, &client_key)?;
                Ok::<_, ConfigError>(ClientTlsConfig {
                    client_cert,
                    client_key,
                })
            })
            .transpose()?;
        Ok(Self { ca, client })
    }

    /// Whether any of the settings is given (they only mean something with `rediss://`).
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    /// The variable of the first setting given, for the error when the URL uses no TLS.
    pub fn first_variable(&self) -> &'static str {
        if self.ca.is_some() {
            CA_VARIABLE
        } else {
            CERT_VARIABLE
        }
    }

    /// The form the redis crate takes: no CA means its compiled-in roots.
    pub fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.clone(),
            root_cert: self.ca.clone(),
        }
    }
}

fn read(variable: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|err| ConfigError::new(variable, format!("cannot read {}: {err}", path.display())))
}

/// The certificates of a PEM file; `Err` when it holds none or one rustls cannot use.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("is not a PEM file of {what} ({err})"))?;
    if certificates.is_empty() {
        return Err(format!(
            "holds no {what} (no -----BEGIN CERTIFICATE----- block)"
        ));
    }
    Ok(certificates)
}

/// The trust anchors of a CA file.
fn roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(pem, "CA certificates")? {
        roots
            .add(certificate)
            .map_err(|err| format!("holds a certificate that is no usable CA ({err})"))?;
    }
    Ok(roots)
}

/// Checks that the client certificate and key parse and belong together, as rustls will use
/// them when it connects.
fn check_client(cert: &[u8], key: &[u8]) -> Result<(), ConfigError> {
    let chain = certificates(cert, "certificates")
        .map_err(|reason| ConfigError::new(CERT_VARIABLE, reason))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|err| {
        ConfigError::new(
            KEY_VARIABLE,
            format!("holds no PEM private key (PKCS #8, PKCS #1 or SEC1): {err}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ConfigError::new(KEY_VARIABLE, err.to_string()))?
        .with_root_certificates(RootCertStore::empty())
        .with_client_auth_cert(chain, key)
        .map_err(|err| match err {
            rustls::Error::InconsistentKeys(_) => ConfigError::new(
                KEY_VARIABLE,
                format!("is not the private key of the certificate in {CERT_VARIABLE}"),
            ),
            err => ConfigError::new(KEY_VARIABLE, format!("cannot be used ({err})")),
        })?;
    Ok(())
}

/// A self-signed CA certificate, PEM, for unit tests that write files.
#[cfg(test)]
pub(crate) fn test_ca_pem() -> String {
    tests::ca().0.pem()
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    use super::*;

    pub(super) fn ca() -> (rcgen::Certificate, CertificateParams, KeyPair) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        (cert, params, key)
    }

    /// Writes `name` with `contents` into `dir`; its path.
    fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    #[test]
    fn files_are_checked_and_errors_name_the_variable() {
        let dir = std::env::temp_dir().join(format!("redis-tls-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (ca, params, ca_key) = ca();
        let client_key = KeyPair::generate().expect("key");
        let client = CertificateParams::new(vec!["client".to_owned()])
            .expect("params")
            .signed_by(&client_key, &Issuer::from_params(&params, &ca_key))
            .expect("client certificate");
        let ca_pem = write(&dir, "ca.pem", &ca.pem());
        let cert = write(&dir, "client.pem", &client.pem());
        let key = write(&dir, "client.key", &client_key.serialize_pem());
        let other_key = write(
            &dir,
            "other.key",
            &KeyPair::generate().expect("key").serialize_pem(),
        );
        let not_pem = write(&dir, "notes.txt", "hello");
        let missing = dir.join("missing.pem");

        let tls = RedisTls::from_files(Some(&ca_pem), Some((&cert, &key))).expect("valid");
        let certificates = tls.certificates();
        assert!(certificates.root_cert.is_some() && certificates.client_tls.is_some());
        assert!(!format!("{tls:?}").contains("BEGIN"), "{tls:?}");

        /// A CA file, a client certificate and key, the variable blamed, part of the reason.
        type Case<'a> = (
            Option<&'a Path>,
            Option<(&'a Path, &'a Path)>,
            &'a str,
            &'a str,
        );
        let cases: [Case<'_>; 5] = [
            (Some(&missing), None, CA_VARIABLE, "cannot read"),
            (Some(&not_pem), None, CA_VARIABLE, "no CA certificates"),
            (
                None,
                Some((&not_pem, &key)),
                CERT_VARIABLE,
                "no certificates",
            ),
            (
                None,
                Some((&cert, &not_pem)),
                KEY_VARIABLE,
                "no PEM private key",
            ),
            (
                None,
                Some((&cert, &other_key)),
                KEY_VARIABLE,
                "not the private key",
            ),
        ];
        for (ca, client, variable, reason) in cases {
            let err = RedisTls::from_files(ca, client).expect_err("refused");
            assert_eq!(err.var, variable, "{err}");
            assert!(err.reason.contains(reason), "{err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
