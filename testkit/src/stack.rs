//! [`TestStack`]: Redis and the three services for one test, wired together, stopped (by PID)
//! when dropped. Every service binds port 0 and says where it listens (`LISTEN_ADDR_FILE`); the
//! one Redis listens on a unix socket in the test's directory. No number is picked in advance,
//! so no other test can end up where this one's requests go.

use std::{fmt::Display, net::SocketAddr, path::PathBuf, time::Duration};

use reqwest::Method;
use stack::{net, process::Supervised};

use crate::{
    http::{self, json, session_cookie, with_cookie},
    routes::Routes,
    services::{SECRET, named, service_spec, spawn_listening, spawn_ready},
    store::{Data, Store, StoreKind, data_connection, node_connection},
    wait,
};

/// Port 0 on loopback: the kernel picks a free port as the service binds it.
const ANY_PORT: &str = "127.0.0.1:0";

/// How long a restarted service gets to answer again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(20);

/// Extra settings for a stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many writer processes (the gateway balances over them).
    pub writers: usize,
    /// Extra environment for writers and reader (for example `SESSION_TTL`).
    pub session_env: Vec<(String, String)>,
    /// Extra environment for the gateway (see [`Options::env_all`]).
    pub gateway_env: Vec<(String, String)>,
    /// One Redis, one over TLS, or a cluster.
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
    /// The gateway's HTTPS listener, when the options set `GATEWAY_TLS_ADDR` (port 0 works).
    pub tls_addr: Option<SocketAddr>,
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
        let redis = Store::start(options.store, dir.path());

        let session = |name: &str, addr_var: &str, label: &str| {
            let mut spec = named(service_spec(name, dir.path()), dir.path(), label)
                .env("REDIS_URL", redis.url())
                .env("SESSION_SECRET", SECRET)
                .env(addr_var, ANY_PORT);
            for (key, value) in redis.env() {
                spec = spec.env(key, value);
            }
            for (key, value) in &options.session_env {
                spec = spec.env(key, value);
            }
            spec
        };
        let (writers, writer_addrs): (Vec<_>, Vec<_>) = (0..options.writers)
            .map(|i| {
                let label = if i == 0 {
                    "writer".to_owned()
                } else {
                    format!("writer{}", i + 1)
                };
                spawn_ready(session("writer", "WRITER_ADDR", &label), "/healthz")
            })
            .unzip();
        let (reader, reader_addr) =
            spawn_ready(session("reader", "READER_ADDR", "reader"), "/healthz");

        let routes = dir.path().join("routes.toml");
        std::fs::write(
            &routes,
            Routes::stack(&writer_addrs, &[reader_addr]).to_string(),
        )
        .expect("routes.toml");
        let mut gateway_spec = service_spec("gateway", dir.path())
            .env("GATEWAY_ADDR", ANY_PORT)
            .env("GATEWAY_ADMIN_ADDR", ANY_PORT)
            .env("GATEWAY_ROUTES", &routes);
        for (key, value) in &options.gateway_env {
            gateway_spec = gateway_spec.env(key, value);
        }
        let (gateway, listeners) = spawn_listening(gateway_spec, "admin", "/readyz");
        Self {
            gateway,
            writers,
            reader,
            redis,
            gateway_addr: listeners.addr().expect("the gateway's public listener"),
            admin_addr: listeners
                .get("admin")
                .expect("the gateway's admin listener"),
            tls_addr: listeners.get("https"),
            writer_addrs,
            reader_addr,
            dir,
        }
    }

    /// The routes file the stack serves now (writer paths to the writers, the rest to the
    /// reader), to extend and [`reroute`] to.
    pub fn routes(&self) -> Routes {
        Routes::stack(&self.writer_addrs, &[self.reader_addr])
    }

    /// A URL on the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway_addr)
    }

    /// The log file of the test's process `name` (`gateway`, `writer`, `writer2`, `reader`, …).
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// A client with its own cookie jar, like one browser.
    pub fn browser(&self) -> reqwest::Client {
        http::browser()
    }

    /// A client that keeps no cookies (set them by hand).
    pub fn client(&self) -> reqwest::Client {
        http::client()
    }

    /// `GET path` on the gateway with `cookie` (a `Cookie` header value, `sid=…`).
    pub async fn get_with_cookie(&self, path: &str, cookie: &str) -> reqwest::Response {
        with_cookie(&self.client(), Method::GET, &self.url(path), cookie)
            .send()
            .await
            .expect("request")
    }

    /// A connection to the test's Redis, to look at what the services stored (cluster-aware
    /// on a cluster: each command goes to the node serving its key).
    pub async fn redis(&self) -> Data {
        data_connection(&self.redis.data_url()).await
    }

    /// Every key in Redis (on every node of a cluster), sorted.
    ///
    /// Not listed: the operation keys a cluster's increments leave for 10 s (`op:{<user>}:…`,
    /// the answer a re-sent script gives instead of counting twice). They hold no session.
    pub async fn redis_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for node in self.redis.nodes() {
            let mut connection = node_connection(&node).await;
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

    /// Another process like `like` (a writer or the reader), known as `label` (its log is
    /// `<label>.log`), with `env` on top, on a port of its own; where it listens. The gateway
    /// does not know it until the test reroutes.
    pub fn spawn_like(
        &self,
        like: &Supervised,
        label: &str,
        env: &[(&str, &str)],
    ) -> (Supervised, SocketAddr) {
        let mut spec = named(like.spec().clone(), self.dir.path(), label);
        for (key, value) in env {
            spec = spec.env(key, *value);
        }
        spawn_ready(spec, "/healthz")
    }

    /// Restarts every writer and the reader (SIGTERM, start again, wait until they answer),
    /// then points the gateway at them.
    pub async fn restart_services(&mut self) {
        self.restart_each(&[], &[]).await;
    }

    /// Restarts every writer and the reader with extra (overriding) environment.
    pub async fn restart_services_with(&mut self, env: &[(&str, &str)]) {
        self.restart_each(env, env).await;
    }

    /// Restarts every writer with `writer_env` and the reader with `reader_env` on top of what
    /// they had. Each comes back on a new port (bound as it starts, like the first time), so
    /// the gateway is then rerouted to the new addresses, and this returns once it serves them.
    pub async fn restart_each(&mut self, writer_env: &[(&str, &str)], reader_env: &[(&str, &str)]) {
        let mut addrs = Vec::new();
        let processes = self
            .writers
            .iter_mut()
            .map(|writer| (writer, writer_env))
            .chain([(&mut self.reader, reader_env)]);
        for (process, env) in processes {
            let mut spec = process.spec().clone();
            for (key, value) in env {
                spec = spec.env(key, *value);
            }
            process.restart_with(spec).expect("restart");
            let addr = process
                .listeners(RESTART_TIMEOUT)
                .unwrap_or_else(|err| panic!("after a restart: {err}"))
                .addr()
                .expect("addr listener");
            assert!(
                net::wait_until(RESTART_TIMEOUT, || {
                    net::http_status(addr, "/healthz", Duration::from_millis(300)) == Some(200)
                }),
                "{} answers again after a restart",
                process.name()
            );
            addrs.push(addr);
        }
        self.reader_addr = addrs.pop().expect("the reader");
        self.writer_addrs = addrs;
        reroute(self, self.routes()).await;
    }
}

/// The routing generation the gateway of `stack` serves (0 when it does not answer).
pub async fn generation(stack: &TestStack) -> u64 {
    let url = format!("http://{}/routes", stack.admin_addr);
    let Ok(response) = stack.client().get(url).send().await else {
        return 0;
    };
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["generation"].as_u64().unwrap_or(0)
}

/// Replaces the routes file of `stack` and waits until the gateway serves it. The new file is
/// written beside it and renamed over it, as editors do, so the gateway never reads half of it.
pub async fn reroute(stack: &TestStack, file: impl Display) {
    let file = file.to_string();
    let before = generation(stack).await;
    let (path, fresh) = (
        stack.dir.path().join("routes.toml"),
        stack.dir.path().join("routes.toml.new"),
    );
    std::fs::write(&fresh, &file).expect("write routes.toml.new");
    std::fs::rename(&fresh, &path).expect("rename over routes.toml");
    wait::until(
        &format!("the gateway to load the new routes:\n{file}"),
        Duration::from_secs(10),
        || async { generation(stack).await > before },
    )
    .await;
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

/// A user logged in through the gateway: the `Cookie` header to send and the user's id.
#[derive(Debug, Clone)]
pub struct User {
    pub cookie: String,
    pub id: String,
}

impl User {
    pub async fn login(stack: &TestStack) -> Self {
        let (cookie, id) = login(stack).await;
        Self { cookie, id }
    }

    /// `GET path` (or `POST` when `post`) with this user's cookie, at `base` (`http://addr`:
    /// the gateway, or a writer or reader directly).
    pub fn request(
        &self,
        client: &reqwest::Client,
        base: &str,
        path: &str,
        post: bool,
    ) -> reqwest::RequestBuilder {
        let method = if post { Method::POST } else { Method::GET };
        with_cookie(client, method, &format!("{base}{path}"), &self.cookie)
    }
}

/// `(name, value)` of a Redis `INFO` section, e.g. `commandstats` or `stats`: one list per
/// server holding data (see [`Store::nodes`]), one after the other.
pub async fn redis_info(stack: &TestStack, section: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for node in stack.redis.nodes() {
        let mut connection = node_connection(&node).await;
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
