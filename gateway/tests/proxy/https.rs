//! HTTPS at the gateway: certificates made by the test (a CA and leaves for `localhost`),
//! HTTP/2 and HTTP/1.1 by ALPN through curl, a renewed pair served without a restart and
//! without dropping an open connection, a broken renewal refused and counted, and the redirect
//! from plain HTTP with HSTS.

use std::{path::Path, sync::Arc, time::Duration};

use gateway::tls::TlsFiles;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::Command,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::helpers::{Probe, TestCa, TestGateway, client, received, routes_to, wait};

/// A leaf for `localhost` named `name` from `ca` (see [`TestCa::issue`]), as the gateway's TLS
/// files, and its DER.
fn issue(ca: &TestCa, dir: &Path, name: &str) -> (TlsFiles, CertificateDer<'static>) {
    let leaf = ca.issue(dir, name, &["localhost"]);
    (
        TlsFiles {
            cert: leaf.cert,
            key: leaf.key,
        },
        CertificateDer::from(leaf.der),
    )
}

/// A TLS client trusting only `ca`, offering `alpn`.
fn connector(ca: &TestCa, alpn: &[u8]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .expect("CA");
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// curl over HTTPS to `localhost` at `port` (resolved to 127.0.0.1), trusting `ca`: the HTTP
/// version it spoke and the body. (Run without blocking: the upstream probe shares the test's
/// runtime.)
async fn curl(ca: &Path, port: u16, path: &str, version: &str) -> (String, String) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", version])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["--write-out", "\n%{http_version}"])
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .await
        .expect("curl runs (install curl)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl {version}: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (body, version) = text.rsplit_once('\n').expect("version line");
    (version.to_owned(), body.to_owned())
}

async fn connect(ca: &TestCa, addr: std::net::SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    connector(ca, b"http/1.1")
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

/// The certificate the gateway presents to a new connection now.
async fn served_certificate(ca: &TestCa, addr: std::net::SocketAddr) -> CertificateDer<'static> {
    let stream = connect(ca, addr).await;
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("certificates")[0]
        .clone()
}

/// One keep-alive HTTP/1.1 GET on `stream`; the status code.
async fn get(stream: &mut TlsStream<TcpStream>, path: &str) -> u16 {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Head, then exactly Content-Length bytes of body: the connection stays open.
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return head[9..12].parse().expect("status");
            }
        }
    }
}

#[tokio::test]
async fn https_speaks_h2_and_http11_by_alpn_and_forwards_as_https() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new();
    let (files, _) = issue(&ca, dir.path(), "first");
    let probe = Probe::start().await;
    let gateway = TestGateway::start_with(&routes_to(&probe), Some((files, false))).await;
    let port = gateway.tls.expect("https listener").port();
    let ca_file = ca.write_pem(dir.path());

    let (version, body) = curl(&ca_file, port, "/echo", "--http2").await;
    assert_eq!(version, "2", "h2 chosen by ALPN");
    let echo: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(received(&echo, "x-forwarded-proto"), ["https"], "{echo}");
    let (version, _) = curl(&ca_file, port, "/echo", "--http1.1").await;
    assert_eq!(version, "1.1");

    // The plain port still serves plain HTTP, and says so upstream.
    let response = client()
        .get(gateway.url("/echo"))
        .send()
        .await
        .expect("plain");
    let echo: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(received(&echo, "x-forwarded-proto"), ["http"], "{echo}");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_or_a_dropped_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new();
    let (files, first) = issue(&ca, dir.path(), "first");
    let probe = Probe::start().await;
    let gateway = TestGateway::start_with(&routes_to(&probe), Some((files.clone(), false))).await;
    let addr = gateway.tls.expect("https listener");
    assert_eq!(served_certificate(&ca, addr).await, first);
    let mut open = connect(&ca, addr).await;
    assert_eq!(get(&mut open, "/echo").await, 200);

    // Renewal: new files copied over the old ones, as a certificate manager does.
    let (renewed, second) = issue(&ca, dir.path(), "second");
    std::fs::copy(&renewed.cert, &files.cert).expect("cert");
    std::fs::copy(&renewed.key, &files.key).expect("key");
    wait::until(
        "the renewed certificate to be served",
        Duration::from_secs(5),
        || async { served_certificate(&ca, addr).await == second },
    )
    .await;
    assert_eq!(
        get(&mut open, "/echo").await,
        200,
        "the connection opened before the renewal still serves"
    );

    // A broken renewal (a key that belongs to another certificate) is refused and counted;
    // the renewed pair keeps serving.
    let (other, _) = issue(&ca, dir.path(), "other");
    std::fs::copy(&other.key, &files.key).expect("key");
    let counted = "gateway_tls_reloads_total{result=\"failure\"} 1";
    wait::until(
        "the refused pair to be counted",
        Duration::from_secs(5),
        || async { gateway.metrics().await.contains(counted) },
    )
    .await;
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_tls_reloads_total{result=\"success\"} 1")
    );
    assert_eq!(served_certificate(&ca, addr).await, second);
    assert_eq!(get(&mut open, "/echo").await, 200);
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_which_carries_hsts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new();
    let (files, _) = issue(&ca, dir.path(), "first");
    let probe = Probe::start().await;
    let gateway = TestGateway::start_with(&routes_to(&probe), Some((files, true))).await;
    let port = gateway.tls.expect("https listener").port();

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_redirects
        .post(format!(
            "http://localhost:{}/login?next=%2F",
            gateway.addr.port()
        ))
        .body("form")
        .send()
        .await
        .expect("plain");
    assert_eq!(response.status(), 308, "308 keeps the method and the body");
    assert_eq!(
        response.headers()["location"],
        format!("https://localhost:{port}/login?next=%2F").as_str()
    );

    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--include", "--max-time", "10"])
        .arg("--cacert")
        .arg(ca.write_pem(dir.path()))
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}/echo"))
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).to_lowercase();
    assert!(
        text.contains("strict-transport-security: max-age=31536000"),
        "{text}"
    );
}

/// An HTTPS upstream with a certificate for `localhost` and `api.test` from `ca`: it answers
/// every request with the `Host` it got and the TLS name the client asked for; returns its
/// address and a count of the requests it answered.
async fn https_upstream(
    ca: &TestCa,
    dir: &Path,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let leaf = ca.issue(dir, "upstream", &["localhost", "api.test"]);
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der)],
        rustls::pki_types::PrivateKeyDer::try_from(leaf.key_der).expect("key"),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = stream.get_ref().1.server_name().unwrap_or("-").to_owned();
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let body = serde_json::json!({
                            "host": request.headers().get("host").and_then(|h| h.to_str().ok()),
                            "sni": sni,
                            "path": request.uri().path(),
                        });
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body.to_string())),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, answered)
}

#[tokio::test]
async fn an_https_upstream_is_verified_against_its_ca_and_gets_its_own_host() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new();
    let ca_file = ca.write_pem(dir.path());
    let (upstream, answered) = https_upstream(&ca, dir.path()).await;
    let routes = |extra: &str| {
        format!(
            "[upstreams.api]\ntargets = [\"https://localhost:{}\"]\n{extra}\n\n\
             [[routes]]\npath = \"/\"\nupstream = \"api\"\n",
            upstream.port()
        )
    };

    // Its CA, its own Host: verified as api.test, and sent Host: api.test.
    let gateway = TestGateway::start(&routes(&format!(
        "ca = \"{}\"\nhost = \"api.test\"",
        ca_file.display()
    )))
    .await;
    let (status, body) = crate::helpers::json(
        client()
            .get(gateway.url("/v1/items"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({ "host": "api.test", "sni": "api.test", "path": "/v1/items" })
    );

    // Without `host`: the target's name is verified, the client's Host is kept.
    let gateway = TestGateway::start(&routes(&format!("ca = \"{}\"", ca_file.display()))).await;
    let (status, body) = crate::helpers::json(
        client()
            .get(gateway.url("/"))
            .header("host", "shop.example")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        (status, &body["sni"], &body["host"]),
        (
            200,
            &serde_json::json!("localhost"),
            &serde_json::json!("shop.example")
        )
    );

    // Without `ca`, the web's roots do not know the test's CA: 502, and nothing reached it.
    let before = answered.load(std::sync::atomic::Ordering::SeqCst);
    let gateway = TestGateway::start(&routes("")).await;
    let response = client().get(gateway.url("/")).send().await.expect("answer");
    assert_eq!(response.status(), 502);
    assert_eq!(
        answered.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "an unverified upstream gets no request"
    );
}
