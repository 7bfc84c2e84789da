//! Certificates without chores: with `GATEWAY_ACME_DOMAINS`, the gateway obtains its HTTPS
//! certificate from an ACME server (Let's Encrypt's by default) and renews it, answering the
//! HTTP-01 challenge on its plain port.
//!
//! The certificate lives in `GATEWAY_ACME_DIR` (a volume) as `cert.pem` and `key.pem`, beside
//! the account (`account.json`): the HTTPS listener serves those files as it serves
//! `GATEWAY_TLS_CERT`/`KEY`, picking up each renewal without touching open connections (see
//! [`super::server`]). Until the first certificate arrives it serves a self-signed one for the
//! domains, so the listener is up from the start.
//!
//! The manager looks at the certificate at start and then every `GATEWAY_ACME_CHECK_EVERY`
//! ([`DEFAULT_CHECK_EVERY`]; reading one small file): it orders a new one when there is none, when it does not name every domain, or when it expires within
//! `GATEWAY_ACME_RENEW_BEFORE` (30 days). An order that fails is logged, counted
//! (`gateway_acme_orders_total{result="failure"}`) and tried again after a back-off from
//! [`FIRST_RETRY`] doubling to [`LAST_RETRY`]; the certificate in force keeps serving meanwhile.
//!
//! Replicas sharing one directory do not all order at once: ordering takes an exclusive lock on
//! `<dir>/lock` (an advisory file lock, released if the process dies). A replica that finds it
//! taken waits, and serves what the holder writes. Challenge answers are written to
//! `<dir>/challenges/` as well as kept in memory, so whichever replica the ACME server's
//! request reaches can answer it.
//!
//! `instant-acme` speaks the protocol (RFC 8555): a maintained, async, pure-Rust client that
//! leaves the challenge to the caller (here: the plain listener, which already runs) and takes
//! an HTTP client of ours, so it trusts what the rest of the gateway trusts (Mozilla's roots,
//! compiled in, plus `GATEWAY_ACME_CA` for a private ACME server) on the ring provider.

use std::{
    collections::HashMap,
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use super::server::TlsFiles;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// How long before expiry a certificate is renewed, unless `GATEWAY_ACME_RENEW_BEFORE` says.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How often the certificate on disk is looked at, unless `GATEWAY_ACME_CHECK_EVERY` says.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(60);
/// The first wait after a failed order, doubled after each further failure…
pub const FIRST_RETRY: Duration = Duration::from_secs(2);
/// …up to this.
pub const LAST_RETRY: Duration = Duration::from_secs(60 * 60);
/// Where HTTP-01 answers are asked for (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// `GATEWAY_ACME_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory: String,
    pub dir: PathBuf,
    /// A PEM file of the CA to trust for the ACME server, besides Mozilla's roots.
    pub ca: Option<PathBuf>,
    pub renew_before: Duration,
    pub check_every: Duration,
}

impl AcmeSettings {
    /// The files the HTTPS listener serves.
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.dir.join("cert.pem"),
            key: self.dir.join("key.pem"),
        }
    }
}

/// HTTP-01 answers by token: kept here for this process, and in `<dir>/challenges/` for
/// replicas sharing the directory.
#[derive(Debug)]
pub struct Challenges {
    dir: PathBuf,
    answers: RwLock<HashMap<String, String>>,
}

impl Challenges {
    pub fn new(acme_dir: &Path) -> Self {
        Self {
            dir: acme_dir.join("challenges"),
            answers: RwLock::new(HashMap::new()),
        }
    }

    /// The key authorization for `token`, when a challenge of this gateway or of a replica
    /// sharing its directory is pending.
    pub fn answer(&self, token: &str) -> Option<String> {
        // A token is base64url (RFC 8555 §8.1): anything else names no file.
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        if let Some(answer) = self
            .answers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
        {
            return Some(answer.clone());
        }
        fs::read_to_string(self.dir.join(token)).ok()
    }

    fn insert(&self, token: &str, answer: &str) -> std::io::Result<()> {
        self.answers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_owned(), answer.to_owned());
        fs::create_dir_all(&self.dir)?;
        write_atomically(&self.dir.join(token), answer.as_bytes())
    }

    fn clear(&self) {
        let tokens: Vec<String> = self
            .answers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(token, _)| token)
            .collect();
        for token in tokens {
            let _ = fs::remove_file(self.dir.join(token));
        }
    }
}

/// Why the certificate on disk must be replaced; `None`: it is good for now.
fn needs_order(settings: &AcmeSettings) -> Option<String> {
    let pem = match fs::read(settings.files().cert) {
        Ok(pem) => pem,
        Err(_) => return Some("no certificate yet".into()),
    };
    let Some((not_after, names)) = inspect(&pem) else {
        return Some("the certificate does not parse".into());
    };
    if let Some(missing) = settings
        .domains
        .iter()
        .find(|domain| !names.contains(domain))
    {
        return Some(format!("the certificate does not name {missing}"));
    }
    let renew_at = not_after
        .checked_sub(settings.renew_before)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    (SystemTime::now() >= renew_at).then(|| "it expires soon".to_owned())
}

/// The expiry and DNS names of the first certificate of a PEM chain.
pub fn inspect(pem: &[u8]) -> Option<(SystemTime, Vec<String>)> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let certificate = block.parse_x509().ok()?;
    let seconds = u64::try_from(certificate.validity().not_after.timestamp()).ok()?;
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
    let names = certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(name) => Some((*name).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some((not_after, names))
}

/// A self-signed certificate for the domains, served until the first real one arrives (a
/// browser warns; nothing else would answer at all).
pub fn placeholder(domains: &[String]) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|err| err.to_string())?;
    let params = rcgen::CertificateParams::new(domains.to_vec()).map_err(|err| err.to_string())?;
    let cert = params.self_signed(&key).map_err(|err| err.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What the manager tells the metrics.
pub trait OrderObserver: Send + Sync + 'static {
    fn ordered(&self, succeeded: bool);
}

/// Keeps the certificate obtained and renewed until the task is dropped.
pub async fn manage(
    settings: AcmeSettings,
    challenges: Arc<Challenges>,
    observer: Arc<dyn OrderObserver>,
) {
    let mut retry = FIRST_RETRY;
    loop {
        let Some(reason) = needs_order(&settings) else {
            retry = FIRST_RETRY;
            tokio::time::sleep(settings.check_every).await;
            continue;
        };
        // Another replica may be ordering: wait for its result rather than order twice.
        let lock = match take_lock(&settings.dir) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::info!(dir = %settings.dir.display(), "another gateway is ordering the certificate; waiting for it");
                tokio::time::sleep(FIRST_RETRY).await;
                continue;
            }
            Err(err) => {
                tracing::warn!(dir = %settings.dir.display(), error = %err, "cannot lock the ACME directory");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(LAST_RETRY);
                continue;
            }
        };
        // The holder before us may have just written a good certificate.
        if needs_order(&settings).is_none() {
            drop(lock);
            continue;
        }
        tracing::info!(domains = ?settings.domains, directory = %settings.directory, %reason, "ordering a certificate");
        let result = order(&settings, &challenges).await;
        challenges.clear();
        drop(lock);
        match result {
            Ok(()) => {
                observer.ordered(true);
                retry = FIRST_RETRY;
                tracing::info!(domains = ?settings.domains, "certificate obtained; serving it");
                // A certificate that is due for renewal as soon as it is issued: the ACME server
                // issues shorter ones than GATEWAY_ACME_RENEW_BEFORE. Not ordered again at once
                // (that would run into the server's rate limits).
                if needs_order(&settings).is_some() {
                    tracing::warn!(renew_before = ?settings.renew_before, "the new certificate is already due for renewal: GATEWAY_ACME_RENEW_BEFORE is longer than the certificates issued; next try in an hour");
                    tokio::time::sleep(LAST_RETRY).await;
                }
            }
            Err(err) => {
                observer.ordered(false);
                tracing::warn!(domains = ?settings.domains, error = %err, retry_in = ?retry, "ordering a certificate failed; the certificate in force keeps serving");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(LAST_RETRY);
            }
        }
    }
}

/// The exclusive lock on `<dir>/lock`, or `None` when another process holds it.
fn take_lock(dir: &Path) -> std::io::Result<Option<File>> {
    fs::create_dir_all(dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(err)) => Err(err),
    }
}

/// One order: the account (created once, kept in `account.json`), the HTTP-01 challenges, the
/// certificate written to the directory.
async fn order(settings: &AcmeSettings, challenges: &Challenges) -> Result<(), String> {
    let account = account(settings).await?;
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|domain| Identifier::Dns(domain.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|err| format!("new order: {err}"))?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|err| format!("authorization: {err}"))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization is {other:?}")),
        }
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or("the ACME server offers no HTTP-01 challenge")?;
        let answer = challenge.key_authorization();
        challenges
            .insert(&challenge.token, answer.as_str())
            .map_err(|err| format!("cannot keep the challenge answer: {err}"))?;
        challenge
            .set_ready()
            .await
            .map_err(|err| format!("challenge: {err}"))?;
    }
    let patience = RetryPolicy::new().timeout(Duration::from_secs(90));
    let status = order
        .poll_ready(&patience)
        .await
        .map_err(|err| format!("waiting for validation: {err}"))?;
    if status != OrderStatus::Ready {
        return Err(format!("the order is {status:?}, not ready"));
    }
    let key = order
        .finalize()
        .await
        .map_err(|err| format!("finalize: {err}"))?;
    let chain = order
        .poll_certificate(&patience)
        .await
        .map_err(|err| format!("certificate: {err}"))?;
    // The key first: the listener loads a pair only when both files changed and match.
    let files = settings.files();
    write_atomically(&files.key, key.as_bytes()).map_err(|err| err.to_string())?;
    write_atomically(&files.cert, chain.as_bytes()).map_err(|err| err.to_string())?;
    Ok(())
}

/// The account in `account.json`, or a new one (kept there).
async fn account(settings: &AcmeSettings) -> Result<Account, String> {
    let path = settings.dir.join("account.json");
    let builder = || client::builder(settings.ca.as_deref());
    if let Ok(saved) = fs::read(&path)
        && let Ok(credentials) = serde_json::from_slice::<AccountCredentials>(&saved)
    {
        return builder()?
            .from_credentials(credentials)
            .await
            .map_err(|err| format!("account: {err}"));
    }
    let contact = settings
        .email
        .as_ref()
        .map(|email| format!("mailto:{email}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(|err| format!("new account at {}: {err}", settings.directory))?;
    let json = serde_json::to_vec_pretty(&credentials).map_err(|err| err.to_string())?;
    write_atomically(&path, &json).map_err(|err| err.to_string())?;
    Ok(account)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so no reader sees half a
/// file; private (0600): the key and the account key are secrets.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let temporary = path.with_extension("tmp");
    let mut file = File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

/// The ACME client's HTTP: hyper with rustls on ring, Mozilla's roots and the optional CA.
mod client {
    use std::path::Path;

    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    use instant_acme::{Account, AccountBuilder, BodyWrapper};
    use rustls::{
        RootCertStore,
        pki_types::{CertificateDer, pem::PemObject},
    };

    pub(super) fn builder(ca: Option<&Path>) -> Result<AccountBuilder, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = ca {
            for certificate in CertificateDer::pem_file_iter(ca)
                .map_err(|err| format!("GATEWAY_ACME_CA {}: {err}", ca.display()))?
            {
                let certificate = certificate
                    .map_err(|err| format!("GATEWAY_ACME_CA {}: {err}", ca.display()))?;
                roots
                    .add(certificate)
                    .map_err(|err| format!("GATEWAY_ACME_CA {}: {err}", ca.display()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client: Client<_, BodyWrapper<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector);
        Ok(Account::builder_with_http(Box::new(client)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, domains: &[&str]) -> AcmeSettings {
        AcmeSettings {
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            email: None,
            directory: LETS_ENCRYPT.to_owned(),
            dir: dir.to_owned(),
            ca: None,
            renew_before: DEFAULT_RENEW_BEFORE,
            check_every: DEFAULT_CHECK_EVERY,
        }
    }

    #[test]
    fn a_certificate_is_ordered_when_missing_foreign_or_expiring() {
        let dir = tempfile::tempdir().expect("dir");
        let wanted = settings(dir.path(), &["app.example.com", "www.example.com"]);
        assert_eq!(needs_order(&wanted).as_deref(), Some("no certificate yet"));
        let (cert, key) = placeholder(&wanted.domains).expect("placeholder");
        fs::write(wanted.files().cert, &cert).expect("cert");
        fs::write(wanted.files().key, &key).expect("key");
        // rcgen's certificates are valid until 4096: nothing to renew.
        assert_eq!(needs_order(&wanted), None);
        let more = settings(dir.path(), &["app.example.com", "api.example.com"]);
        assert_eq!(
            needs_order(&more).as_deref(),
            Some("the certificate does not name api.example.com")
        );
        let mut soon = settings(dir.path(), &["app.example.com"]);
        soon.renew_before = Duration::from_secs(3000 * 365 * 24 * 60 * 60);
        assert_eq!(needs_order(&soon).as_deref(), Some("it expires soon"));
        fs::write(wanted.files().cert, "not PEM").expect("cert");
        assert_eq!(
            needs_order(&wanted).as_deref(),
            Some("the certificate does not parse")
        );
    }

    #[test]
    fn challenge_answers_are_shared_through_the_directory_and_tokens_checked() {
        let dir = tempfile::tempdir().expect("dir");
        let ours = Challenges::new(dir.path());
        let replica = Challenges::new(dir.path());
        ours.insert("tok-EN_1", "tok-EN_1.thumb").expect("insert");
        assert_eq!(ours.answer("tok-EN_1").as_deref(), Some("tok-EN_1.thumb"));
        assert_eq!(
            replica.answer("tok-EN_1").as_deref(),
            Some("tok-EN_1.thumb"),
            "a replica answers from the shared directory"
        );
        for hostile in ["", "../lock", "a/b", "..", "tok EN"] {
            assert_eq!(ours.answer(hostile), None, "{hostile:?}");
        }
        ours.clear();
        assert_eq!(replica.answer("tok-EN_1"), None);
    }

    #[test]
    fn one_process_at_a_time_holds_the_ordering_lock() {
        let dir = tempfile::tempdir().expect("dir");
        let first = take_lock(dir.path()).expect("lock").expect("free");
        assert!(take_lock(dir.path()).expect("lock").is_none(), "taken");
        drop(first);
        assert!(take_lock(dir.path()).expect("lock").is_some(), "released");
    }
}
