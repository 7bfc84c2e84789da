//! The harness: [`TestStack`] starts Redis and the three services for one test and stops them
//! (by PID) when dropped.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::OnceLock,
    time::Duration,
};

use stack::{
    binaries, net,
    process::{Output, Spec, Supervised},
    redis::{Persistence, RedisServer},
};

/// A development secret for tests (never used outside them).
pub const SECRET: &str = "test-secret-test-secret-test-secret-0001";

/// The service binaries, built once per test run with the test's own profile.
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| binaries::build(true).expect("service binaries build"));
    binaries::path(dir, name)
}

/// Where a test's processes write their logs.
fn output(dir: &std::path::Path, name: &str) -> Output {
    if std::env::var_os("TEST_LOG").is_some() {
        Output::Prefixed
    } else {
        Output::File(dir.join(format!("{name}.log")))
    }
}

/// Variables a developer's shell could leak into the services.
const LEAKY: [&str; 14] = [
    "REDIS_URL",
    "SESSION_SECRET",
    "SESSION_COOKIE_NAME",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_SAMESITE",
    "SESSION_TTL",
    "SESSION_MAX_AGE",
    "SESSION_MAX_PER_USER",
    "AUTH_USERS_FILE",
    "WRITER_ADDR",
    "READER_ADDR",
    "GATEWAY_ADDR",
    "GATEWAY_ADMIN_ADDR",
    "GATEWAY_ROUTES",
];

/// A spec for one of our binaries with a clean environment, run in `dir` (so no `.env` of the
/// repository is read).
pub fn service_spec(name: &str, dir: &std::path::Path) -> Spec {
    let mut spec = Spec::new(name, bin(name))
        .current_dir(dir)
        .output(output(dir, name));
    for variable in LEAKY {
        spec = spec.env_remove(variable);
    }
    spec
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Extra settings for a stack.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra environment for writer and reader (for example `SESSION_TTL`).
    pub session_env: Vec<(String, String)>,
}

/// Redis, writer, reader and gateway, wired together.
#[derive(Debug)]
pub struct TestStack {
    // Drop order: gateway, services, Redis, then the directory.
    #[allow(dead_code, reason = "held so the gateway stops with the stack")]
    pub gateway: Supervised,
    pub writer: Supervised,
    pub reader: Supervised,
    pub redis: RedisServer,
    pub gateway_addr: SocketAddr,
    pub writer_addr: SocketAddr,
    pub reader_addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestStack {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = || net::free_port().expect("free port");
        let redis = RedisServer::start(
            port(),
            &dir.path().join("redis"),
            Persistence::None,
            output(dir.path(), "redis"),
        )
        .expect("redis-server starts (is it installed?)");

        let (writer_addr, reader_addr) = (localhost(port()), localhost(port()));
        let (gateway_addr, admin_addr) = (localhost(port()), localhost(port()));

        let session = |name: &str, addr_var: &str, addr: SocketAddr| {
            let mut spec = service_spec(name, dir.path())
                .env("REDIS_URL", redis.url())
                .env("SESSION_SECRET", SECRET)
                .env(addr_var, addr.to_string());
            for (key, value) in &options.session_env {
                spec = spec.env(key, value);
            }
            spec
        };
        let writer = spawn_ready(
            session("writer", "WRITER_ADDR", writer_addr),
            writer_addr,
            "/healthz",
        );
        let reader = spawn_ready(
            session("reader", "READER_ADDR", reader_addr),
            reader_addr,
            "/healthz",
        );

        let routes = dir.path().join("routes.toml");
        let shipped = binaries::workspace_root()
            .expect("workspace root")
            .join("routes.toml");
        std::fs::copy(&shipped, &routes).expect("copy the shipped routes.toml");
        let gateway = spawn_ready(
            service_spec("gateway", dir.path())
                .env("GATEWAY_ADDR", gateway_addr.to_string())
                .env("GATEWAY_ADMIN_ADDR", admin_addr.to_string())
                .env("GATEWAY_ROUTES", &routes)
                .env("WRITER_URL", format!("http://{writer_addr}"))
                .env("READER_URL", format!("http://{reader_addr}")),
            admin_addr,
            "/readyz",
        );
        Self {
            gateway,
            writer,
            reader,
            redis,
            gateway_addr,
            writer_addr,
            reader_addr,
            dir,
        }
    }

    /// A URL on the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway_addr)
    }

    /// A client with its own cookie jar, like one browser.
    pub fn browser(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    /// A client that keeps no cookies (set them by hand).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    /// A connection to the test's Redis, to look at what the services stored.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    /// Every key in Redis.
    pub async fn redis_keys(&self) -> Vec<String> {
        let mut connection = self.redis().await;
        redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut connection)
            .await
            .expect("KEYS")
    }

    /// Restarts writer and reader (SIGTERM, start again, wait until they answer).
    pub fn restart_services(&mut self) {
        for (process, addr) in [
            (&mut self.writer, self.writer_addr),
            (&mut self.reader, self.reader_addr),
        ] {
            process.restart().expect("restart");
            assert!(
                net::wait_until(Duration::from_secs(20), || {
                    net::http_status(addr, "/healthz", Duration::from_millis(300)) == Some(200)
                }),
                "{} answers again after a restart",
                process.name()
            );
        }
    }
}

/// Starts `spec` and waits until `probe` answers 200 on `addr`.
pub fn spawn_ready(spec: Spec, addr: SocketAddr, probe: &str) -> Supervised {
    let name = spec.name.clone();
    let mut process = Supervised::spawn(spec).expect("spawn");
    let ready = net::wait_until(Duration::from_secs(20), || {
        process.try_wait().is_some()
            || net::http_status(addr, probe, Duration::from_millis(300)) == Some(200)
    });
    assert!(
        ready && process.try_wait().is_none(),
        "{name} did not become ready on {addr}{probe}"
    );
    process
}

/// Status and JSON body of a response.
pub async fn json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, body)
}

/// The value of the session cookie set by `response` (`None` if it sets none).
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    set_cookies(response).into_iter().find_map(|cookie| {
        cookie
            .strip_prefix("sid=")
            .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
    })
}

/// Every `Set-Cookie` header of `response`.
pub fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().expect("ascii").to_owned())
        .collect()
}
