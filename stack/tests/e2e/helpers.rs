//! The harness: [`TestStack`] starts Redis and the three services for one test and stops them
//! (by PID) when dropped.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::OnceLock,
    time::Duration,
};

use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster_async::ClusterConnection,
};
use stack::{
    binaries, net,
    process::{Output, Spec, Supervised},
    redis::{Persistence, RedisServer},
    topology::{Logs, RedisCluster},
};

/// Declares each listed `async fn(StoreKind)` as two tests: `on_one_redis::<name>` and
/// `on_a_cluster::<name>` (three primaries). The session rules hold on both.
// The fault suite shares these helpers, not this macro.
#[allow(unused_macros)]
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        mod on_one_redis {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::helpers::StoreKind::Single).await;
                }
            )*
        }
        mod on_a_cluster {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::helpers::StoreKind::Cluster).await;
                }
            )*
        }
    };
}

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
const LEAKY: [&str; 21] = [
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
    "REDIS_WAIT_REPLICAS",
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

/// What the session store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// One `redis-server`.
    Single,
    /// A Redis Cluster of three primaries (no replicas: these tests do not fail over).
    Cluster,
}

/// The Redis of a test stack: one server, or a cluster.
#[derive(Debug)]
pub enum Store {
    Single(Box<RedisServer>),
    Cluster(RedisCluster),
}

impl Store {
    fn start(kind: StoreKind, dir: &std::path::Path) -> Self {
        match kind {
            StoreKind::Single => Self::Single(Box::new(
                RedisServer::start(
                    net::free_port().expect("free port"),
                    &dir.join("redis"),
                    Persistence::None,
                    output(dir, "redis"),
                )
                .expect("redis-server starts (is it installed?)"),
            )),
            StoreKind::Cluster => {
                let logs = if std::env::var_os("TEST_LOG").is_some() {
                    Logs::Terminal
                } else {
                    Logs::Files
                };
                Self::Cluster(
                    RedisCluster::start(&dir.join("cluster"), 3, 0, &logs)
                        .expect("a Redis Cluster starts"),
                )
            }
        }
    }

    /// `REDIS_URL` for the services.
    pub fn url(&self) -> String {
        match self {
            Self::Single(redis) => redis.url(),
            Self::Cluster(cluster) => cluster.url(),
        }
    }

    /// Every server holding data: the one Redis, or each primary of the cluster.
    pub fn nodes(&self) -> Vec<SocketAddr> {
        match self {
            Self::Single(redis) => vec![redis.addr()],
            Self::Cluster(cluster) => cluster.addrs(),
        }
    }

    /// The one Redis, for tests that stop, restart or proxy it.
    pub fn single(&mut self) -> &mut RedisServer {
        match self {
            Self::Single(redis) => redis,
            Self::Cluster(_) => panic!("this test runs on one Redis, not a cluster"),
        }
    }
}

/// A connection to the test's Redis for looking at data: plain, or cluster-aware.
pub enum Data {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Data {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// A connection for looking at data at `redis_url` (one Redis, or a cluster's comma-separated
/// seeds): cluster-aware when it lists several nodes.
pub async fn data_connection(redis_url: &str) -> Data {
    if redis_url.contains(',') {
        Data::Cluster(
            redis::cluster::ClusterClient::new(redis_url.split(','))
                .expect("cluster url")
                .get_async_connection()
                .await
                .expect("cluster connection"),
        )
    } else {
        Data::Single(
            redis::Client::open(redis_url)
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("redis connection"),
        )
    }
}

/// A plain connection to one server.
async fn node_connection(addr: SocketAddr) -> MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}"))
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
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
    /// One Redis or a cluster.
    pub store: StoreKind,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            store: StoreKind::Single,
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
    pub fn store(mut self, store: StoreKind) -> Self {
        self.store = store;
        self
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
    pub redis: Store,
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
        let redis = Store::start(options.store, dir.path());

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
        std::fs::write(&routes, routes_file(&writer_addrs, &[reader_addr], "", ""))
            .expect("routes.toml");
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

    /// The routes file the stack started with (writer paths to the writers, the rest to the
    /// reader), to extend and [`reroute`] to.
    pub fn routes(&self) -> String {
        routes_file(&self.writer_addrs, &[self.reader_addr], "", "")
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

    /// A connection to the test's Redis, to look at what the services stored (cluster-aware
    /// on a cluster: each command goes to the node serving its key).
    pub async fn redis(&self) -> Data {
        data_connection(&self.redis.url()).await
    }

    /// Every key in Redis (on every node of a cluster), sorted.
    ///
    /// Not listed: the operation keys a cluster's increments leave for 10 s (`op:{<user>}:…`,
    /// the answer a re-sent script gives instead of counting twice). They hold no session.
    pub async fn redis_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for node in self.redis.nodes() {
            let mut connection = node_connection(node).await;
            let on_node: Vec<String> = redis::cmd("KEYS")
                .arg("*")
                .query_async(&mut connection)
                .await
                .expect("KEYS");
            keys.extend(on_node.into_iter().filter(|key| !key.starts_with("op:")));
        }
        keys.sort();
        keys
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

/// The routing generation the gateway of `stack` serves (0 when it does not answer).
async fn generation(stack: &TestStack) -> u64 {
    let url = format!("http://{}/routes", stack.admin_addr);
    let Ok(response) = stack.client().get(url).send().await else {
        return 0;
    };
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["generation"].as_u64().unwrap_or(0)
}

/// Replaces the routes file of `stack` and waits until the gateway serves it.
pub async fn reroute(stack: &TestStack, file: &str) {
    let before = generation(stack).await;
    std::fs::write(stack.dir.path().join("routes.toml"), file).expect("write routes.toml");
    assert!(
        wait_async(Duration::from_secs(10), || async {
            generation(stack).await > before
        })
        .await,
        "the gateway did not load the new routes:\n{file}"
    );
}

/// A routes file: writer paths balanced over `writers`, everything else over `readers`, with
/// `settings` lines (e.g. `idle_timeout = "2s"`) and `extra` lines after the upstreams (more
/// upstreams, or whole tables). The writer's routes say `idempotent = false`, as the shipped
/// routes.toml does: its `GET /increment` changes state, so a written one is never sent again.
pub fn routes_file(
    writers: &[SocketAddr],
    readers: &[SocketAddr],
    settings: &str,
    extra: &str,
) -> String {
    let list = |addrs: &[SocketAddr]| {
        addrs
            .iter()
            .map(|addr| format!("\"http://{addr}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut file = format!(
        "[settings]\n{settings}\n\n[upstreams]\nwriter = [{}]\nreader = [{}]\n{extra}\n",
        list(writers),
        list(readers)
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

/// `(name, value)` of a Redis `INFO` section, e.g. `commandstats` or `stats`: one list per
/// server holding data (see [`Store::nodes`]), one after the other.
pub async fn redis_info(stack: &TestStack, section: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for node in stack.redis.nodes() {
        let mut connection = node_connection(node).await;
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut connection)
            .await
            .expect("INFO");
        all.extend(
            info.lines()
                .filter_map(|line| line.trim().split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
    }
    all
}

/// Calls of each command so far (`INFO commandstats`, summed over the servers), e.g.
/// `getex` → 3.
pub async fn command_calls(stack: &TestStack) -> std::collections::HashMap<String, u64> {
    let mut calls = std::collections::HashMap::new();
    for (name, stats) in redis_info(stack, "commandstats").await {
        let Some(command) = name.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some(n) = stats
            .split(',')
            .find_map(|field| field.strip_prefix("calls="))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        *calls.entry(command.to_owned()).or_insert(0) += n;
    }
    calls
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
