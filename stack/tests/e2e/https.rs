//! The whole stack over HTTPS: the real gateway with `GATEWAY_TLS_*` and certificates the test
//! makes (a CA and a leaf for `localhost`), writer and reader with `SESSION_COOKIE_SECURE=auto`.
//! curl logs in, increments and reads over HTTPS (the cookie comes back `Secure`), the same
//! stack over plain HTTP keeps a cookie without it, and headless Chromium, trusting the test's
//! certificate, logs in over HTTPS. Bad TLS settings stop the gateway with one line.

use std::path::{Path, PathBuf};

use crate::{
    browser::{Browser, browser_available, text},
    helpers::{Options, TestCa, TestStack, set_cookies},
};

/// The test CA, and a certificate for `localhost` signed by it, written into a directory.
struct TestCertificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// SHA-256 of the leaf's public key, base64: what Chromium is told to trust.
    spki_sha256: String,
}

impl TestCertificates {
    fn make(dir: &Path) -> Self {
        let ca = TestCa::new();
        let leaf = ca.issue(dir, "localhost", &["localhost"]);
        Self {
            ca: ca.write_pem(dir),
            cert: leaf.cert,
            key: leaf.key,
            spki_sha256: leaf.spki_sha256,
        }
    }

    fn path(path: &Path) -> &str {
        path.to_str().expect("utf-8 path")
    }
}

/// A stack whose gateway also serves HTTPS, on a port it binds itself; the port.
fn https_stack(certs: &TestCertificates) -> (TestStack, u16) {
    let stack = TestStack::start_with(
        Options::default()
            .env("SESSION_COOKIE_SECURE", "auto")
            .env_all("GATEWAY_TLS_ADDR", "127.0.0.1:0")
            .env_all("GATEWAY_TLS_CERT", TestCertificates::path(&certs.cert))
            .env_all("GATEWAY_TLS_KEY", TestCertificates::path(&certs.key)),
    );
    let port = stack.tls_addr.expect("the HTTPS listener").port();
    (stack, port)
}

/// curl over HTTPS to `localhost:port` (127.0.0.1), trusting the test CA, with a cookie jar:
/// the response head and body.
async fn curl(certs: &TestCertificates, jar: &Path, port: u16, method: &str, path: &str) -> String {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--include", "--max-time", "10"])
        .args(["--request", method])
        .arg("--cacert")
        .arg(&certs.ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg("--cookie-jar")
        .arg(jar)
        .arg("--cookie")
        .arg(jar)
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .await
        .expect("curl runs (install curl)");
    assert!(
        output.status.success(),
        "curl {method} {path}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The session cookie line of a response head.
fn session_cookie_line(head: &str) -> Option<&str> {
    head.lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie: sid="))
}

#[tokio::test]
async fn curl_logs_in_over_https_and_the_cookie_is_secure_only_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::make(dir.path());
    let (stack, port) = https_stack(&certs);
    let jar = dir.path().join("jar");

    let login = curl(&certs, &jar, port, "POST", "/login").await;
    assert!(login.starts_with("HTTP/2 200"), "h2 over TLS: {login}");
    let cookie = session_cookie_line(&login).expect("a session cookie");
    assert!(
        cookie.to_ascii_lowercase().contains("; secure"),
        "Secure behind HTTPS: {cookie}"
    );
    let increment = curl(&certs, &jar, port, "POST", "/increment").await;
    assert!(increment.contains("\"count\":1"), "{increment}");
    let read = curl(&certs, &jar, port, "GET", "/").await;
    assert!(read.contains("\"count\":1"), "{read}");

    // The same services over the gateway's plain port: no Secure (it would never come back).
    let response = stack
        .client()
        .post(stack.url("/login"))
        .send()
        .await
        .expect("plain login");
    let cookies = set_cookies(&response);
    let plain = cookies
        .iter()
        .find(|cookie| cookie.starts_with("sid="))
        .expect("a session cookie");
    assert!(
        !plain.to_ascii_lowercase().contains("secure"),
        "no Secure over plain HTTP: {plain}"
    );
}

#[tokio::test]
async fn chromium_logs_in_over_https() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::make(dir.path());
    let (stack, port) = https_stack(&certs);
    // Chromium is told to trust the test's key (it has no API to add a CA to a fresh profile).
    let browser = Browser::start_with(
        stack.dir.path(),
        &[format!(
            "--ignore-certificate-errors-spki-list={}",
            certs.spki_sha256
        )],
    )
    .await;
    let client = &browser.client;
    // The open demo login: a browser's GET /login logs in and shows the session page.
    client
        .goto(&format!("https://localhost:{port}/login"))
        .await
        .expect("login page");
    let user = text(client, "user").await;
    assert!(!user.is_empty(), "logged in over HTTPS");
    let cookie = client
        .get_named_cookie("sid")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.secure(), Some(true), "{cookie:?}");
    assert_eq!(cookie.http_only(), Some(true));
    browser.close().await;
}

#[test]
fn bad_tls_settings_stop_the_gateway_with_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::make(dir.path());
    let other = TestCertificates::make(&{
        let other = dir.path().join("other");
        std::fs::create_dir(&other).expect("dir");
        other
    });
    let cert = TestCertificates::path(&certs.cert);
    let key = TestCertificates::path(&certs.key);
    let addr = ("GATEWAY_TLS_ADDR", "127.0.0.1:0");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[addr], "GATEWAY_TLS_CERT: is required for HTTPS"),
        (
            &[addr, ("GATEWAY_TLS_CERT", cert)],
            "GATEWAY_TLS_KEY: is required",
        ),
        (
            &[
                addr,
                ("GATEWAY_TLS_CERT", "/nonexistent/cert.pem"),
                ("GATEWAY_TLS_KEY", key),
            ],
            "GATEWAY_TLS_CERT: /nonexistent/cert.pem: ",
        ),
        (
            &[
                addr,
                ("GATEWAY_TLS_CERT", cert),
                ("GATEWAY_TLS_KEY", TestCertificates::path(&other.key)),
            ],
            "does not go with the certificate",
        ),
        (
            &[("GATEWAY_HTTPS_REDIRECT", "true")],
            "GATEWAY_HTTPS_REDIRECT: needs the HTTPS listener",
        ),
        (
            &[
                ("GATEWAY_TLS_ADDR", "localhost"),
                ("GATEWAY_TLS_CERT", cert),
                ("GATEWAY_TLS_KEY", key),
            ],
            "GATEWAY_TLS_ADDR: \"localhost\" is not a listen address",
        ),
        // Certificates over ACME.
        (
            &[("GATEWAY_ACME_DOMAINS", "app.example.com")],
            "GATEWAY_TLS_ADDR: is required (the HTTPS listener for the ACME certificate",
        ),
        (
            &[
                ("GATEWAY_ACME_DOMAINS", "app.example.com"),
                addr,
                ("GATEWAY_TLS_CERT", cert),
            ],
            "GATEWAY_TLS_CERT: is set with GATEWAY_ACME_DOMAINS",
        ),
        (
            &[
                ("GATEWAY_ACME_DOMAINS", "app.example.com, app example.com"),
                addr,
            ],
            "GATEWAY_ACME_DOMAINS: \"app example.com\" is not a domain name",
        ),
        (
            &[
                ("GATEWAY_ACME_DOMAINS", "app.example.com"),
                addr,
                (
                    "GATEWAY_ACME_DIRECTORY",
                    "http://acme.example.com/directory",
                ),
            ],
            "GATEWAY_ACME_DIRECTORY: \"http://acme.example.com/directory\" is not an https:// URL",
        ),
        (
            &[
                ("GATEWAY_ACME_DOMAINS", "app.example.com"),
                addr,
                ("GATEWAY_ACME_CA", "/nonexistent/ca.pem"),
            ],
            "GATEWAY_ACME_CA: /nonexistent/ca.pem: cannot read",
        ),
        (
            &[
                ("GATEWAY_ACME_DOMAINS", "app.example.com"),
                addr,
                ("GATEWAY_ACME_RENEW_BEFORE", "a month"),
            ],
            "GATEWAY_ACME_RENEW_BEFORE: \"a month\" is not a whole number of seconds",
        ),
    ];
    for (env, expected) in cases {
        let mut all = vec![
            ("GATEWAY_ADDR", "127.0.0.1:0"),
            ("GATEWAY_ADMIN_ADDR", "127.0.0.1:0"),
        ];
        all.extend_from_slice(env);
        let (code, stderr) = crate::config::run("gateway", &all);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(
            stderr.starts_with("gateway: ") && stderr.contains(expected),
            "{env:?}: {stderr:?} should contain {expected:?}"
        );
    }
}
