//! The local stack behind `cargo run`: Redis (ours, or `REDIS_URL`), writer, reader and gateway
//! as separate processes, each waited for until it answers, all stopped on Ctrl-C.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use common::{
    ConfigError, env,
    listening::{self, Listeners},
};

use crate::{
    binaries, net,
    process::{Output, Spec, Supervised},
    redis::{Persistence, RedisServer},
};

/// How long each part gets to answer after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a local run, from the environment (and `.env`).
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// `REDIS_URL`; unset = start our own `redis-server`.
    pub redis_url: Option<String>,
    /// `SESSION_SECRET`; unset = a development secret kept in `.data/session-secret`.
    pub session_secret: Option<String>,
    pub writer: SocketAddr,
    pub reader: SocketAddr,
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    /// `GATEWAY_ROUTES`, default `routes/routes.toml` in the repository.
    pub routes: PathBuf,
    /// Where our Redis data and the development secret live: `STACK_DATA_DIR`, default `.data`
    /// in the repository (git-ignored).
    pub data_dir: PathBuf,
}

impl LaunchConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let root = binaries::workspace_root().unwrap_or_else(|| PathBuf::from("."));
        Ok(Self {
            redis_url: env::optional("REDIS_URL")?,
            session_secret: env::optional("SESSION_SECRET")?,
            writer: env::socket_addr("WRITER_ADDR", "127.0.0.1:8090")?,
            reader: env::socket_addr("READER_ADDR", "127.0.0.1:8091")?,
            gateway: env::socket_addr("GATEWAY_ADDR", "127.0.0.1:8080")?,
            admin: env::socket_addr("GATEWAY_ADMIN_ADDR", "127.0.0.1:9090")?,
            routes: env::optional("GATEWAY_ROUTES")?
                .map_or_else(|| root.join("routes").join("routes.toml"), PathBuf::from),
            data_dir: env::optional("STACK_DATA_DIR")?
                .map_or_else(|| root.join(".data"), PathBuf::from),
        })
    }
}

/// The running stack; dropping it stops every part, gateway first, Redis last.
#[derive(Debug)]
pub struct Stack {
    // Field order is drop order.
    pub gateway: Supervised,
    pub writer: Supervised,
    pub reader: Supervised,
    pub redis: Option<RedisServer>,
    pub url: String,
}

/// Prints a progress line of the launcher.
fn say(message: impl AsRef<str>) {
    eprintln!("stack   | {}", message.as_ref());
}

/// Starts everything and waits until every part answers.
pub fn launch(config: &LaunchConfig) -> Result<Stack, String> {
    check_ports(config)?;
    if config.redis_url.is_none() && RedisServer::binary().is_none() {
        return Err(format!(
            "redis-server is not on PATH and REDIS_URL is not set: {}",
            crate::redis::INSTALL_HINT
        ));
    }
    let secret = match &config.session_secret {
        Some(secret) => secret.clone(),
        None => development_secret(&config.data_dir)?,
    };
    let (redis, redis_url) = start_redis(config)?;

    say("[2/5] building writer, reader and gateway (cargo's progress follows)…");
    let build_started = std::time::Instant::now();
    let bin = binaries::build(false)?;
    say(format!("[2/5] built in {:.1?}", build_started.elapsed()));

    let sessions = SessionServices {
        config,
        bin: &bin,
        redis_url: &redis_url,
        secret: &secret,
    };
    let (writer, writer_listeners) = start(
        "[3/5]",
        sessions.spec("writer", "WRITER_ADDR", config.writer),
        config.writer,
        ("addr", "/healthz"),
    )?;
    let (reader, reader_listeners) = start(
        "[4/5]",
        sessions.spec("reader", "READER_ADDR", config.reader),
        config.reader,
        ("addr", "/healthz"),
    )?;
    let gateway_spec = gateway_spec(config, &bin, &writer_listeners, &reader_listeners)?;
    let (gateway, gateway_listeners) =
        start("[5/5]", gateway_spec, config.gateway, ("admin", "/readyz"))?;
    Ok(Stack {
        gateway,
        writer,
        reader,
        redis,
        url: format!("http://{}", listener(&gateway_listeners, "addr")?),
    })
}

/// A friendly word before anything starts when a configured port is taken; the service would
/// refuse it anyway. (Port 0 is always free: the kernel picks one as the service binds it.)
fn check_ports(config: &LaunchConfig) -> Result<(), String> {
    for (variable, addr) in [
        ("GATEWAY_ADDR", config.gateway),
        ("GATEWAY_ADMIN_ADDR", config.admin),
        ("WRITER_ADDR", config.writer),
        ("READER_ADDR", config.reader),
    ] {
        if addr.port() != 0 && !net::is_free(addr) {
            let mut suggestion = addr;
            suggestion.set_port(addr.port().wrapping_add(100));
            return Err(format!(
                "port {} is already in use ({variable}={addr}): stop what uses it, or pick another port, e.g. `{variable}={suggestion} cargo run --release` (or set it in .env)",
                addr.port()
            ));
        }
    }
    Ok(())
}

/// Step 1: the Redis of `REDIS_URL`, or our own `redis-server` (returned, to be stopped last);
/// and the URL the services get.
fn start_redis(config: &LaunchConfig) -> Result<(Option<RedisServer>, String), String> {
    if let Some(url) = &config.redis_url {
        say(format!("[1/5] redis: using REDIS_URL ({})", redact(url)));
        return Ok((None, url.clone()));
    }
    let dir = config.data_dir.join("redis");
    say(format!(
        "[1/5] redis: starting redis-server (data in {})",
        dir.display()
    ));
    // On a unix socket in its data directory: no port to pick, none to collide on.
    let server = RedisServer::start_local(&dir, Persistence::AppendOnly, Output::Prefixed)?;
    say(format!(
        "[1/5] redis: ready on {} (redis-cli {})",
        server.endpoint(),
        server.endpoint().cli_args().join(" ")
    ));
    let url = server.url();
    Ok((Some(server), url))
}

/// Where a part says it listens: a file of its own (an address may name port 0).
fn addr_file(config: &LaunchConfig, name: &str) -> PathBuf {
    config.data_dir.join(format!("{name}.addr"))
}

/// What writer and reader are started with: the same Redis and the same secret.
struct SessionServices<'a> {
    config: &'a LaunchConfig,
    bin: &'a Path,
    redis_url: &'a str,
    secret: &'a str,
}

impl SessionServices<'_> {
    /// The spec of service `name`, asked to listen on `addr` (its variable `addr_variable`).
    fn spec(&self, name: &str, addr_variable: &str, addr: SocketAddr) -> Spec {
        Spec::new(name, binaries::path(self.bin, name))
            .env("REDIS_URL", self.redis_url)
            .env("SESSION_SECRET", self.secret)
            .env(listening::VARIABLE, addr_file(self.config, name))
            .output(Output::Prefixed)
            .env(addr_variable, addr.to_string())
    }
}

/// The gateway's spec, in front of the writer and reader listening where they said.
fn gateway_spec(
    config: &LaunchConfig,
    bin: &Path,
    writer: &Listeners,
    reader: &Listeners,
) -> Result<Spec, String> {
    Ok(Spec::new("gateway", binaries::path(bin, "gateway"))
        .env("GATEWAY_ADDR", config.gateway.to_string())
        .env("GATEWAY_ADMIN_ADDR", config.admin.to_string())
        .env("GATEWAY_ROUTES", &config.routes)
        .env(
            "WRITER_URL",
            format!("http://{}", listener(writer, "addr")?),
        )
        .env(
            "READER_URL",
            format!("http://{}", listener(reader, "addr")?),
        )
        .env(listening::VARIABLE, addr_file(config, "gateway"))
        .output(Output::Prefixed))
}

/// The address of listener `name` in `listeners`.
fn listener(listeners: &Listeners, name: &str) -> Result<SocketAddr, String> {
    listeners
        .get(name)
        .ok_or_else(|| format!("no {name} listener in {listeners:?}"))
}

/// Starts one service asked to listen on `addr` (port 0: any free port), learns where it does,
/// and waits until `probe` (a path on its listener named `probe_listener`) answers 200.
fn start(
    step: &str,
    spec: Spec,
    addr: SocketAddr,
    (probe_listener, probe): (&str, &str),
) -> Result<(Supervised, Listeners), String> {
    let name = spec.name.clone();
    say(format!("{step} {name}: starting on {addr}…"));
    let mut process = Supervised::spawn(spec).map_err(|err| err.to_string())?;
    let listeners = process
        .listeners(READY_TIMEOUT)
        .map_err(|err| format!("{err}; see its log lines above"))?;
    let probe_addr = listener(&listeners, probe_listener)?;
    let ready = net::wait_until(READY_TIMEOUT, || {
        process.try_wait().is_some()
            || net::http_status(probe_addr, probe, Duration::from_millis(500)) == Some(200)
    });
    if let Some(status) = process.try_wait() {
        return Err(format!(
            "{name} exited during start ({status}); see its log lines above"
        ));
    }
    if !ready {
        return Err(format!(
            "{name} did not answer on {probe_addr}{probe} within {READY_TIMEOUT:?}"
        ));
    }
    let bound = listener(&listeners, "addr")?;
    say(format!("{step} {name}: ready on http://{bound}"));
    Ok((process, listeners))
}

/// The development secret in `<data>/session-secret`: generated once, then reused so restarts
/// keep sessions. Never used when `SESSION_SECRET` is set.
fn development_secret(data_dir: &Path) -> Result<String, String> {
    let path = data_dir.join("session-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_owned();
        if secret.len() >= 32 {
            return Ok(secret);
        }
    }
    let secret = common::random::hex(32);
    std::fs::create_dir_all(data_dir)
        .and_then(|()| write_private(&path, &secret))
        .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    say(format!(
        "SESSION_SECRET is not set: generated a development secret in {} (set SESSION_SECRET for production)",
        path.display()
    ));
    Ok(secret)
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(content.as_bytes())
}

/// `redis://user:secret@host` → `redis://***@host`.
fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_auth, host)) => {
            let scheme = scheme_auth.split("://").next().unwrap_or("redis");
            format!("{scheme}://***@{host}")
        }
        None => url.to_owned(),
    }
}

impl Stack {
    /// Which part has exited, if any (with its status).
    pub fn exited(&mut self) -> Option<(String, std::process::ExitStatus)> {
        for process in [&mut self.gateway, &mut self.writer, &mut self.reader] {
            if let Some(status) = process.try_wait() {
                return Some((process.name().to_owned(), status));
            }
        }
        None
    }
}
