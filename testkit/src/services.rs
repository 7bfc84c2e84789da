//! Our binaries (writer, reader, gateway) as the tests start them: built once per run, with a
//! clean environment, on port 0, logging to a file in the test's directory.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use common::listening::{self, Listeners};
use stack::{
    binaries, net,
    process::{Output, Spec, Supervised},
};

/// A development secret for tests (never used outside them).
pub const SECRET: &str = "test-secret-test-secret-test-secret-0001";

/// How long a service gets to bind and to answer its probe.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The service binaries, built once per test run with the test's own profile.
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| binaries::build(true).expect("service binaries build"));
    binaries::path(dir, name)
}

/// Where a test's process `name` writes its logs: always to `<dir>/<name>.log`, which the test
/// may read, and with `TEST_LOG` to the terminal as well.
pub fn output(dir: &Path, name: &str) -> Output {
    let file = dir.join(format!("{name}.log"));
    if std::env::var_os("TEST_LOG").is_some() {
        Output::PrefixedAndFile(file)
    } else {
        Output::File(file)
    }
}

/// Variables a developer's shell could leak into the services.
const LEAKY: [&str; 48] = [
    "REDIS_URL",
    "SESSION_SECRET",
    "SESSION_COOKIE_NAME",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_SAMESITE",
    "SESSION_TTL",
    "SESSION_MAX_AGE",
    "SESSION_MAX_PER_USER",
    "SESSION_TRUSTED_ORIGINS",
    "AUTH_USERS_FILE",
    "AUTH_PROVIDERS_FILE",
    "PUBLIC_URL",
    "WRITER_ADMIN_ADDR",
    "READER_ADMIN_ADDR",
    "TRUSTED_GATEWAYS",
    "WRITER_ADDR",
    "READER_ADDR",
    "GATEWAY_ADDR",
    "GATEWAY_ADMIN_ADDR",
    "GATEWAY_ROUTES",
    "GATEWAY_TLS_ADDR",
    "GATEWAY_TLS_CERT",
    "GATEWAY_TLS_KEY",
    "GATEWAY_HTTPS_REDIRECT",
    "GATEWAY_ACME_DOMAINS",
    "GATEWAY_ACME_EMAIL",
    "GATEWAY_ACME_DIRECTORY",
    "GATEWAY_ACME_DIR",
    "GATEWAY_ACME_CA",
    "GATEWAY_ACME_RENEW_BEFORE",
    "GATEWAY_ACME_CHECK_EVERY",
    "GATEWAY_ACCESS_LOG",
    "REDIS_WAIT_REPLICAS",
    "REDIS_CA",
    "REDIS_CLIENT_CERT",
    "REDIS_CLIENT_KEY",
    "LISTEN_ADDR_FILE",
    // A developer's own trace settings would send the tests' spans to their collector.
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

/// A spec for our binary `name` with a clean environment, run in `dir` (so no `.env` of the
/// repository is read), logging to `<dir>/<name>.log` and saying where it listens in
/// `<dir>/<name>.addr`. The caller adds its address variable, usually with port 0.
pub fn service_spec(name: &str, dir: &Path) -> Spec {
    let mut spec = Spec::new(name, bin(name)).current_dir(dir);
    for variable in LEAKY {
        spec = spec.env_remove(variable);
    }
    named(spec, dir, name)
}

/// `spec` for another instance, known as `label`: its log in `<dir>/<label>.log`, where it
/// listens in `<dir>/<label>.addr`.
pub fn named(spec: Spec, dir: &Path, label: &str) -> Spec {
    spec.output(output(dir, label))
        .env(listening::VARIABLE, dir.join(format!("{label}.addr")))
}

/// What `spec`'s process logged so far (for failure messages).
pub fn logged(spec: &Spec) -> String {
    match &spec.output {
        Output::File(path) | Output::PrefixedAndFile(path) => crate::logs::read(path),
        Output::Prefixed | Output::Null => String::new(),
    }
}

/// Starts `spec`, learns where it listens (its `LISTEN_ADDR_FILE`), and waits until `probe`
/// answers 200 on its listener `listener` (`addr`, or the gateway's `admin`).
pub fn spawn_listening(spec: Spec, listener: &str, probe: &str) -> (Supervised, Listeners) {
    let name = spec.name.clone();
    let mut process = Supervised::spawn(spec).expect("spawn");
    let listeners = process
        .listeners(READY_TIMEOUT)
        .unwrap_or_else(|err| panic!("{err}:\n{}", logged(process.spec())));
    let addr = listeners
        .get(listener)
        .unwrap_or_else(|| panic!("{name} has no {listener} listener: {listeners:?}"));
    let ready = net::wait_until(READY_TIMEOUT, || {
        process.try_wait().is_some()
            || net::http_status(addr, probe, Duration::from_millis(300)) == Some(200)
    });
    assert!(
        ready && process.try_wait().is_none(),
        "{name} did not become ready on {addr}{probe}:\n{}",
        logged(process.spec())
    );
    (process, listeners)
}

/// [`spawn_listening`] for a writer or reader: `probe` on its one listener; where it listens.
pub fn spawn_ready(spec: Spec, probe: &str) -> (Supervised, SocketAddr) {
    let (process, listeners) = spawn_listening(spec, "addr", probe);
    let addr = listeners.addr().expect("addr listener");
    (process, addr)
}
