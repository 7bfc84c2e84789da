//! Sessions on a Redis reached over TLS only (`rediss://`): the server's certificate verified
//! against `REDIS_CA`, a client certificate when Redis requires one, and what a wrong CA or a
//! bad file does.

use std::time::Duration;

use serde_json::json;

use crate::{
    config::run,
    flow::login_count_increment_logout_walkthrough,
    helpers::{Options, SECRET, StoreKind, TestCa, TestStack, json, logs, wait},
};

#[tokio::test]
async fn sessions_work_over_tls() {
    login_count_increment_logout_walkthrough(StoreKind::Tls {
        client_certificate: false,
    })
    .await;
}

#[tokio::test]
async fn sessions_work_with_a_client_certificate_when_redis_requires_one() {
    login_count_increment_logout_walkthrough(StoreKind::Tls {
        client_certificate: true,
    })
    .await;
}

/// One Redis is not asked at start (it may start after the services), so a server
/// certificate the CA did not sign shows as it would for a Redis that is down: 503 on every
/// session request and `/readyz`, and a log line that names the certificate problem.
#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_and_logged() {
    let other = tempfile::tempdir().expect("temp dir");
    let other_ca = TestCa::new().write_pem(other.path());
    let stack = TestStack::start_with(
        Options::default()
            .store(StoreKind::Tls {
                client_certificate: false,
            })
            .env("REDIS_CA", &other_ca.display().to_string()),
    );
    let (status, body) = json(
        stack
            .browser()
            .get(stack.url("/login"))
            .send()
            .await
            .expect("login"),
    )
    .await;
    assert_eq!(
        (status, body),
        (503, json!({ "error": "session store unavailable" }))
    );
    let log = stack.log("writer");
    wait::until(
        "the writer logs the certificate problem",
        Duration::from_secs(5),
        || {
            let logged = logs::read(&log);
            async move { logged.contains("session store unavailable") && logged.contains("certificate") }
        },
    )
    .await;
    assert!(stack.redis_keys().await.is_empty(), "nothing reached Redis");
}

#[test]
fn tls_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new();
    let ca_pem = ca.write_pem(dir.path()).display().to_string();
    let leaf = ca.issue(dir.path(), "client", &["client"]);
    let other = ca.issue(dir.path(), "other", &["other"]);
    let (cert, key, other_key) = (
        leaf.cert.display().to_string(),
        leaf.key.display().to_string(),
        other.key.display().to_string(),
    );
    let tls = ("REDIS_URL", "rediss://127.0.0.1:1/0");
    let secret = ("SESSION_SECRET", SECRET);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("REDIS_URL", "rediss://127.0.0.1:1/0#insecure"), secret],
            "REDIS_URL: asks to skip verifying the server's certificate",
        ),
        (
            &[tls, secret, ("REDIS_CA", "/nonexistent/ca.pem")],
            "REDIS_CA: cannot read /nonexistent/ca.pem",
        ),
        (
            &[tls, secret, ("REDIS_CA", &key)],
            "REDIS_CA: holds no CA certificates",
        ),
        (
            &[tls, secret, ("REDIS_CLIENT_CERT", &cert)],
            "REDIS_CLIENT_KEY: is required with REDIS_CLIENT_CERT",
        ),
        (
            &[
                tls,
                secret,
                ("REDIS_CLIENT_CERT", &cert),
                ("REDIS_CLIENT_KEY", &other_key),
            ],
            "REDIS_CLIENT_KEY: is not the private key of the certificate in REDIS_CLIENT_CERT",
        ),
        (
            &[
                ("REDIS_URL", "redis://127.0.0.1:1/0"),
                secret,
                ("REDIS_CA", &ca_pem),
            ],
            "REDIS_CA: is set, but REDIS_URL does not use TLS",
        ),
    ];
    for (env, expected) in cases {
        let (code, stderr) = run("writer", env);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{env:?}: one line, got {stderr:?}"
        );
        assert!(
            stderr.starts_with("writer: ") && stderr.contains(expected),
            "{env:?}: {stderr:?} should contain {expected:?}"
        );
    }
}
