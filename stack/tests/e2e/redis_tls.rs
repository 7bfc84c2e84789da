//! Sessions on a Redis reached over TLS only (`rediss://`): the server's certificate verified
//! against `REDIS_CA`, a client certificate when Redis requires one, and what a wrong CA or a
//! bad file does.

use crate::{
    config::run,
    flow::login_count_increment_logout_walkthrough,
    helpers::{SECRET, Store, StoreKind, TestCa},
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

/// A Redis over TLS whose certificate `REDIS_CA` does not vouch for, or that wants a client
/// certificate the services do not have, is a setting to fix: the services refuse to start,
/// with one line naming the certificate problem. One that does not answer yet is not: it may
/// start after them (the other settings' checks below use such an address).
#[test]
fn a_certificate_redis_does_not_accept_is_refused_at_start() {
    let other = tempfile::tempdir().expect("temp dir");
    let other_ca = TestCa::new().write_pem(other.path()).display().to_string();
    for (client_certificate, why) in [
        (false, "a server certificate from another CA"),
        (true, "no client certificate where Redis requires one"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::start(StoreKind::Tls { client_certificate }, dir.path());
        let url = store.url();
        let mut env: Vec<(&str, String)> = if client_certificate {
            // The right CA, but no client certificate.
            store
                .env()
                .into_iter()
                .filter(|(name, _)| *name == "REDIS_CA")
                .collect()
        } else {
            vec![("REDIS_CA", other_ca.clone())]
        };
        env.push(("REDIS_URL", url));
        env.push(("SESSION_SECRET", SECRET.to_owned()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for service in ["writer", "reader"] {
            let (code, stderr) = run(service, &env);
            assert_eq!(code, Some(2), "{why}: {service}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{why}: one line, got {stderr:?}");
            assert!(
                stderr.starts_with(&format!("{service}: REDIS_URL: "))
                    && stderr.contains("certificate"),
                "{why}: {stderr:?}"
            );
        }
    }
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
