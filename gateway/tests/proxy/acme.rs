//! Certificates over ACME, against Let's Encrypt's own test server (Debian's `pebble`, with
//! `pebble-challtestsrv` answering its DNS), entirely on loopback: the gateway obtains a
//! certificate with no file placed by hand, a client trusting pebble's root gets it, a renewal
//! swaps it without dropping an open connection, and a dead ACME server leaves HTTPS up.
//!
//! Skipped (visibly) without pebble; `.ci/run` installs it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use gateway::{
    config::TlsSettings,
    tls::acme::{self, AcmeSettings},
};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use stack::{
    net,
    process::{Output, Spec, Supervised},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use crate::helpers::{Probe, TestCa, TestGateway, routes_to, wait};

const DOMAIN: &str = "app.test";

/// Tries to start `spec_for(port)` on candidate ports until one stays up: pebble and its DNS
/// cannot bind port 0, so a port another program took first is skipped, as for Redis.
fn start_on_free_port(name: &str, spec_for: impl Fn(u16) -> Spec) -> (Supervised, u16) {
    for _ in 0..5 {
        let port = net::free_port().expect("a port");
        let mut process = Supervised::spawn(spec_for(port)).expect("spawn");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if net::wait_until(Duration::from_secs(10), || {
            process.try_wait().is_none() && !net::is_free(addr)
        }) && process.try_wait().is_none()
        {
            return (process, port);
        }
        process.kill();
    }
    panic!("{name} did not start on any of five ports");
}

/// pebble and its DNS, issuing for names that resolve to 127.0.0.1 and validating HTTP-01 on
/// `http_port` (the gateway's plain port).
struct Pebble {
    _dns: Supervised,
    _server: Supervised,
    directory: String,
    management: u16,
    /// The CA of pebble's own listener (made here), which the gateway and the test trust.
    listener_ca: PathBuf,
}

impl Pebble {
    fn start(dir: &Path, http_port: u16) -> Self {
        let (dns, dns_port) = start_on_free_port("pebble-challtestsrv", |port| {
            let mut spec = Spec::new("challtestsrv", "pebble-challtestsrv");
            for arg in [
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                "",
            ] {
                spec = spec.arg(arg);
            }
            spec.output(Output::File(dir.join("challtestsrv.log")))
        });
        let ca = TestCa::new();
        let leaf = ca.issue(dir, "pebble", &["127.0.0.1", "localhost"]);
        let listener_ca = ca.write_pem(dir);
        let management = net::free_port().expect("a port");
        let (server, port) = start_on_free_port("pebble", |port| {
            let config = dir.join(format!("pebble-{port}.json"));
            std::fs::write(
                &config,
                serde_json::json!({ "pebble": {
                    "listenAddress": format!("127.0.0.1:{port}"),
                    "managementListenAddress": format!("127.0.0.1:{management}"),
                    "certificate": leaf.cert,
                    "privateKey": leaf.key,
                    "httpPort": http_port,
                    "tlsPort": 5001,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": false,
                }})
                .to_string(),
            )
            .expect("pebble config");
            Spec::new("pebble", "pebble")
                .arg("-config")
                .arg(&config)
                .arg("-dnsserver")
                .arg(format!("127.0.0.1:{dns_port}"))
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .output(Output::File(dir.join("pebble.log")))
        });
        Self {
            _dns: dns,
            _server: server,
            directory: format!("https://127.0.0.1:{port}/dir"),
            management,
            listener_ca,
        }
    }

    /// The root pebble signs certificates with (it makes a new one at each start).
    async fn root(&self) -> Vec<u8> {
        let output = tokio::process::Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--max-time", "10"])
            .arg("--cacert")
            .arg(&self.listener_ca)
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .output()
            .await
            .expect("curl runs");
        assert!(
            output.status.success(),
            "pebble's root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }
}

/// A TLS client for `DOMAIN` trusting `root` (PEM).
fn connector(root: &[u8]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(root) {
        roots.add(certificate.expect("PEM")).expect("root");
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// `GET /echo` on an open keep-alive connection; the status line.
async fn get<S: AsyncReadExt + AsyncWriteExt + Unpin>(stream: &mut S) -> String {
    stream
        .write_all(format!("GET /echo HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.expect("read");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|length| length.trim().parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("body");
    head.lines().next().unwrap_or_default().to_owned()
}

/// The serial of the certificate the gateway serves now, over a new connection, when `root`
/// vouches for it (`None` while it serves another, such as the placeholder before the first).
async fn served_serial(root: &[u8], addr: SocketAddr) -> Option<Vec<u8>> {
    tokio::time::timeout(Duration::from_secs(2), async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let tls = connector(root)
            .connect(ServerName::try_from(DOMAIN).ok()?, tcp)
            .await
            .ok()?;
        let (_, session) = tls.get_ref();
        let leaf = session.peer_certificates()?.first()?.clone();
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).ok()?;
        Some(parsed.raw_serial().to_vec())
    })
    .await
    .ok()
    .flatten()
}

/// Waits until the gateway serves a certificate `root` vouches for, other than `not`.
async fn serving(root: &[u8], addr: SocketAddr, not: Option<&[u8]>) -> Vec<u8> {
    wait::for_value(
        "a certificate from pebble",
        Duration::from_secs(30),
        || async move {
            served_serial(root, addr)
                .await
                .filter(|serial| Some(serial.as_slice()) != not)
        },
    )
    .await
}

fn pebble_available() -> bool {
    let missing = ["pebble", "pebble-challtestsrv"]
        .into_iter()
        .find(|binary| {
            std::process::Command::new(binary)
                .arg("-h")
                .output()
                .is_err()
        })
        .map(|binary| format!("{binary} is missing (apt-get install -y pebble)"));
    testkit::can_run("the ACME tests", missing)
}

#[tokio::test]
async fn a_certificate_is_obtained_renewed_and_kept_when_the_acme_server_dies() {
    if !pebble_available() {
        return;
    }
    let probe = Probe::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let acme_dir = dir.path().join("acme");
    let pebble_dir = dir.path().join("pebble");
    std::fs::create_dir_all(&pebble_dir).expect("pebble dir");
    let settings = |directory: String, ca: PathBuf| AcmeSettings {
        domains: vec![DOMAIN.to_owned()],
        email: Some("ops@app.test".to_owned()),
        directory,
        dir: acme_dir.clone(),
        ca: Some(ca),
        renew_before: acme::DEFAULT_RENEW_BEFORE,
        check_every: Duration::from_secs(1),
    };
    // pebble validates HTTP-01 on a port named in its configuration, and the gateway needs
    // pebble's address in its own: the gateway's plain port is held here while pebble starts,
    // and handed over just before the gateway binds it.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let plain_port = plain.local_addr().expect("addr").port();
    let pebble = Pebble::start(&pebble_dir, plain_port);
    drop(plain);
    let gateway = TestGateway::start_configured(&routes_to(&probe), |config| {
        config.addr = SocketAddr::from(([127, 0, 0, 1], plain_port));
        let acme = settings(pebble.directory.clone(), pebble.listener_ca.clone());
        config.tls = Some(TlsSettings {
            addr: "127.0.0.1:0".parse().expect("addr"),
            files: acme.files(),
            redirect: false,
            acme: Some(acme),
        });
    })
    .await;
    let https = gateway.tls.expect("an HTTPS listener");
    // A token no challenge is pending for (or a hostile one) gets 404 JSON, never a route.
    for token in ["unknown-token", "..%2Flock"] {
        let response = crate::helpers::client()
            .get(gateway.url(&format!("{}{token}", acme::CHALLENGE_PREFIX)))
            .send()
            .await
            .expect("challenge");
        assert_eq!(response.status(), 404, "{token}");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(body, serde_json::json!({ "error": "not found" }));
    }

    // Obtained: with no file placed by hand, a client trusting pebble's root gets through.
    let cert = acme_dir.join("cert.pem");
    wait::until("the first certificate", Duration::from_secs(30), || async {
        cert.exists()
    })
    .await;
    let root = pebble.root().await;
    let first = serving(&root, https, None).await;
    let root_file = dir.path().join("pebble-root.pem");
    std::fs::write(&root_file, &root).expect("root");
    let curl = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "10"])
        .arg("--cacert")
        .arg(&root_file)
        .args(["--resolve", &format!("{DOMAIN}:{}:127.0.0.1", https.port())])
        .arg(format!("https://{DOMAIN}:{}/echo", https.port()))
        .output()
        .await
        .expect("curl runs");
    assert!(
        curl.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );

    // A connection open across the renewal keeps working.
    let tcp = TcpStream::connect(https).await.expect("connect");
    let mut open = connector(&root)
        .connect(ServerName::try_from(DOMAIN).expect("name"), tcp)
        .await
        .expect("handshake");
    assert_eq!(get(&mut open).await, "http/1.1 200 ok");
    // Renewal: a certificate that no longer names the domain (as after a domain is added)
    // is replaced at the next look.
    let (other, key) = acme::placeholder(&["other.test".to_owned()]).expect("other");
    std::fs::write(acme_dir.join("key.pem"), key).expect("key");
    std::fs::write(&cert, other).expect("cert");
    let renewed = serving(&root, https, Some(&first)).await;
    assert_ne!(renewed, first);
    assert_eq!(
        get(&mut open).await,
        "http/1.1 200 ok",
        "the open connection lives on"
    );

    // The ACME server dies; an order fails, is counted, and HTTPS keeps serving.
    drop(pebble);
    let metrics = || async {
        reqwest::get(format!("http://{}/metrics", gateway.admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    // The certificate file lost (a volume wiped): the gateway orders, and fails.
    std::fs::remove_file(&cert).expect("remove");
    wait::until(
        "a failed order counted",
        Duration::from_secs(30),
        || async {
            metrics()
                .await
                .contains("gateway_acme_orders_total{result=\"failure\"}")
        },
    )
    .await;
    assert_eq!(
        served_serial(&root, https).await,
        Some(renewed),
        "the certificate in force keeps serving"
    );
}
