//! A certificate authority of the test's own, and certificates it signs: for the gateway's
//! HTTPS listener, HTTPS upstreams, curl and Chromium.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData};
use sha2::Digest as _;

/// The CA: a self-signed certificate and its key, kept in memory.
#[derive(Debug)]
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    der: Vec<u8>,
}

/// A certificate the CA signed, written to files.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// PEM: the leaf, then the CA (a chain, as servers send it).
    pub cert: PathBuf,
    /// PEM: the leaf's private key.
    pub key: PathBuf,
    /// The leaf alone, DER.
    pub der: Vec<u8>,
    /// The private key, PKCS #8 DER (for a server built in the test).
    pub key_der: Vec<u8>,
    /// SHA-256 of the leaf's public key, base64: what Chromium is told to trust
    /// (`--ignore-certificate-errors-spki-list`).
    pub spki_sha256: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "one-origin test CA");
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            params,
            key,
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Writes the CA certificate to `<dir>/ca.pem`; its path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).expect("ca.pem");
        path
    }

    /// A leaf for `hosts` named `name` (its common name), written as `<dir>/<name>.pem` (the
    /// chain) and `<dir>/<name>.key`.
    pub fn issue(&self, dir: &Path, name: &str, hosts: &[&str]) -> Leaf {
        let hosts: Vec<String> = hosts.iter().map(|host| (*host).to_owned()).collect();
        let mut params = CertificateParams::new(hosts).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .expect("leaf certificate");
        let leaf = Leaf {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            spki_sha256: base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(key.subject_public_key_info())),
        };
        std::fs::write(&leaf.cert, format!("{}{}", cert.pem(), self.pem)).expect("cert");
        std::fs::write(&leaf.key, key.serialize_pem()).expect("key");
        leaf
    }
}
