//! TLS to `https://` upstreams (an external API, another team's service): the certificate is
//! always verified, against the upstream's own `ca` file when it has one, else against
//! Mozilla's roots compiled in (webpki-roots: the runtime image carries no CA bundle). There is
//! deliberately no setting that skips verification; a private CA is what `ca` is for.
//!
//! The name asked for (SNI) and verified is the upstream's `host` when it sets one, else the
//! target's host name.

use std::{fmt, path::Path, sync::Arc};

use rustls::{
    ClientConfig, RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

/// How an upstream's HTTPS connections are made and verified.
pub struct UpstreamTls {
    connector: TlsConnector,
    /// From the upstream's `host`, when set: the name every target is verified against.
    name: Option<ServerName<'static>>,
    /// What the roots are, for logs and `/routes`.
    pub roots: String,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Verification against the certificates in `ca` (PEM), or the web's roots; `host` names
    /// the server instead of each target's host.
    pub fn new(ca: Option<&Path>, host: Option<&str>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        let described = match ca {
            Some(ca) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                    .map_err(|err| format!("ca {}: {err}", ca.display()))?
                    .collect::<Result<_, _>>()
                    .map_err(|err| format!("ca {}: {err}", ca.display()))?;
                if certs.is_empty() {
                    return Err(format!("ca {}: holds no PEM certificate", ca.display()));
                }
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("ca {}: no usable CA certificate", ca.display()));
                }
                ca.display().to_string()
            }
            None => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                "web roots".to_owned()
            }
        };
        let name = host
            .map(|host| {
                ServerName::try_from(host.to_owned())
                    .map_err(|_| format!("host {host:?} is not a server name"))
            })
            .transpose()?;
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Upstream connections speak HTTP/1.1 (see `crate::upstream::connection`).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            name,
            roots: described,
        })
    }

    /// The name to ask for and verify when connecting to a target whose host is `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        match &self.name {
            Some(name) => Ok(name.clone()),
            None => ServerName::try_from(host.to_owned())
                .map_err(|_| format!("{host:?} is not a server name")),
        }
    }

    /// The TLS handshake on a connected socket.
    pub async fn connect(
        &self,
        name: ServerName<'static>,
        stream: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(name, stream).await
    }
}
