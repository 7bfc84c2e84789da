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

/// Where a test's processes write their logs: always to a file the test may read, and with
/// `TEST_LOG` to the terminal as well.
fn output(dir: &std::path::Path, name: &str) -> Output {
    let file = dir.join(format!("{name}.log"));
    if std::env::var_os("TEST_LOG").is_some() {
        Output::PrefixedAndFile(file)
    } else {
        Output::File(file)
    }
}

/// Variables a developer's shell could leak into the services.
const LEAKY: [&str; 15] = [
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
#[derive(Debug, Clone)]
pub struct Options {
    /// How many writer processes (the gateway balances over them).
    pub writers: usize,
    /// Extra environment for writers and reader (for example `SESSION_TTL`).
    pub session_env: Vec<(String, String)>,
    /// Extra environment for the gateway (see [`Options::env_all`]).
    pub gateway_env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            writers: 1,
            session_env: Vec::new(),
            gateway_env: Vec::new(),
        }
    }
}

impl Options {
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.session_env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets `name=value` for every service, the gateway included.
    #[must_use]
    pub fn env_all(mut self, name: &str, value: &str) -> Self {
        self.gateway_env.push((name.to_owned(), value.to_owned()));
        self.env(name, value)
    }

    #[must_use]
    pub fn writers(mut self, writers: usize) -> Self {
        self.writers = writers;
        self
    }
}

/// Redis, writer(s), reader and gateway, wired together.
#[derive(Debug)]
pub struct TestStack {
    // Drop order: gateway, services, Redis, then the directory.
    pub gateway: Supervised,
    pub writers: Vec<Supervised>,
    pub reader: Supervised,
    pub redis: RedisServer,
    pub gateway_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub writer_addrs: Vec<SocketAddr>,
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

        let session = |name: &str, addr_var: &str, addr: SocketAddr, log: &str| {
            let mut spec = service_spec(name, dir.path())
                .output(output(dir.path(), log))
                .env("REDIS_URL", redis.url())
                .env("SESSION_SECRET", SECRET)
                .env(addr_var, addr.to_string());
            for (key, value) in &options.session_env {
                spec = spec.env(key, value);
            }
            spec
        };
        let writer_addrs: Vec<SocketAddr> =
            (0..options.writers).map(|_| localhost(port())).collect();
        let writers = writer_addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let log = if i == 0 {
                    "writer".to_owned()
                } else {
                    format!("writer{}", i + 1)
                };
                spawn_ready(
                    session("writer", "WRITER_ADDR", *addr, &log),
                    *addr,
                    "/healthz",
                )
            })
            .collect();
        let reader_addr = localhost(port());
        let reader = spawn_ready(
            session("reader", "READER_ADDR", reader_addr, "reader"),
            reader_addr,
            "/healthz",
        );

        let (gateway_addr, admin_addr) = (localhost(port()), localhost(port()));
        let routes = dir.path().join("routes.toml");
        std::fs::write(&routes, routes_file(&writer_addrs, reader_addr)).expect("routes.toml");
        let mut gateway_spec = service_spec("gateway", dir.path());
        for (key, value) in &options.gateway_env {
            gateway_spec = gateway_spec.env(key, value);
        }
        let gateway = spawn_ready(
            gateway_spec
                .env("GATEWAY_ADDR", gateway_addr.to_string())
                .env("GATEWAY_ADMIN_ADDR", admin_addr.to_string())
                .env("GATEWAY_ROUTES", &routes),
            admin_addr,
            "/readyz",
        );
        Self {
            gateway,
            writers,
            reader,
            redis,
            gateway_addr,
            admin_addr,
            writer_addrs,
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

    /// Restarts every writer and the reader (SIGTERM, start again, wait until they answer).
    pub fn restart_services(&mut self) {
        self.restart_services_with(&[]);
    }

    /// Restarts every writer and the reader with extra (overriding) environment.
    pub fn restart_services_with(&mut self, env: &[(&str, &str)]) {
        let addrs: Vec<SocketAddr> = self
            .writer_addrs
            .iter()
            .copied()
            .chain([self.reader_addr])
            .collect();
        let processes = self.writers.iter_mut().chain([&mut self.reader]);
        for (process, addr) in processes.zip(addrs) {
            let mut spec = process.spec().clone();
            for (key, value) in env {
                spec = spec.env(key, *value);
            }
            process.restart_with(spec).expect("restart");
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

/// A routes file sending writer paths to `writers` (balanced) and the rest to `reader`.
fn routes_file(writers: &[SocketAddr], reader: SocketAddr) -> String {
    let targets: Vec<String> = writers
        .iter()
        .map(|addr| format!("\"http://{addr}\""))
        .collect();
    let mut file = format!(
        "[upstreams]\nwriter = [{}]\nreader = [\"http://{reader}\"]\n",
        targets.join(", ")
    );
    for path in ["/login", "/increment", "/logout"] {
        file.push_str(&format!(
            "\n[[routes]]\npath = \"{path}\"\nupstream = \"writer\"\nidempotent = false\n"
        ));
    }
    file.push_str("\n[[routes]]\npath = \"/\"\nupstream = \"reader\"\n");
    file
}

/// Logs in through the gateway as an API client; returns the `Cookie` header value to send and
/// the user id.
pub async fn login(stack: &TestStack) -> (String, String) {
    let response = stack
        .client()
        .get(stack.url("/login"))
        .send()
        .await
        .expect("login");
    let cookie = format!(
        "sid={}",
        session_cookie(&response).expect("a session cookie")
    );
    let (status, body) = json(response).await;
    assert_eq!(status, 200, "login: {body}");
    (cookie, body["user"]["id"].as_str().expect("id").to_owned())
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

/// `(name, value)` of a Redis `INFO` section, e.g. `commandstats` or `stats`.
pub async fn redis_info(stack: &TestStack, section: &str) -> Vec<(String, String)> {
    let mut connection = stack.redis().await;
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut connection)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Calls of each command so far (`INFO commandstats`), e.g. `getex` → 3.
pub async fn command_calls(stack: &TestStack) -> std::collections::HashMap<String, u64> {
    redis_info(stack, "commandstats")
        .await
        .into_iter()
        .filter_map(|(name, stats)| {
            let command = name.strip_prefix("cmdstat_")?.to_owned();
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((command, calls))
        })
        .collect()
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

/// Polls an async condition every 50 ms until it holds or `timeout` passes.
pub async fn wait_async<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a test that needs something this machine may lack can run: with `missing` (what is
/// missing, and how to get it) it cannot, which fails the test in CI (`CI` set: CI must have
/// everything, `.ci/run` installs it) and is reported as a visible skip elsewhere.
pub fn can_run(test: &str, missing: Option<String>) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must be able to run {test}: {missing}"
    );
    report_skip(&format!("{test}: {missing}"));
    false
}

/// Says that a test skips part of its work, where it is seen: libtest captures `eprintln!`
/// (a passing test would just read "ok"), but not a direct write to the process's stderr.
pub fn report_skip(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED (not in CI): {what}");
}
