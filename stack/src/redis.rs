//! A `redis-server` of our own, on a port we choose.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    net,
    process::{Output, Spec, Supervised},
};

/// How to install Redis, for the error a user sees when it is missing.
pub const INSTALL_HINT: &str = "install it (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis) or set REDIS_URL";

/// Whether data survives a restart of this Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Append-only file in the data directory (the local stack: restarts keep sessions),
    /// fsynced once a second (Redis's default): a crash of the machine can lose the last second.
    AppendOnly,
    /// Append-only file fsynced before every reply (`appendfsync always`): nothing Redis
    /// acknowledged is lost, even by a crash (the fault tests kill Redis with SIGKILL).
    AppendOnlyAlways,
    /// Nothing on disk (tests).
    None,
}

/// A running `redis-server`, stopped when dropped.
#[derive(Debug)]
pub struct RedisServer {
    process: Supervised,
    addr: SocketAddr,
}

impl RedisServer {
    /// Finds `redis-server` on `PATH`.
    pub fn binary() -> Option<PathBuf> {
        crate::binaries::on_path("redis-server")
    }

    /// Starts a server on 127.0.0.1:`port` with its files in `dir`, and waits until it answers.
    pub fn start(
        port: u16,
        dir: &Path,
        persistence: Persistence,
        output: Output,
    ) -> Result<Self, String> {
        Self::start_with(port, dir, persistence, output, &[])
    }

    /// [`RedisServer::start`] with more `redis-server` options (`--cluster-enabled yes`,
    /// `--replicaof 127.0.0.1 6379`, …; see [`crate::topology`]).
    pub fn start_with(
        port: u16,
        dir: &Path,
        persistence: Persistence,
        output: Output,
        options: &[String],
    ) -> Result<Self, String> {
        let binary =
            Self::binary().ok_or_else(|| format!("redis-server is not on PATH: {INSTALL_HINT}"))?;
        std::fs::create_dir_all(dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut spec = Self::spec(&binary, port, dir, persistence, output);
        spec.args.extend(options.iter().map(Into::into));
        let process = Supervised::spawn(spec).map_err(|err| err.to_string())?;
        let mut server = Self { process, addr };
        server.wait_ready()?;
        Ok(server)
    }

    fn spec(
        binary: &Path,
        port: u16,
        dir: &Path,
        persistence: Persistence,
        output: Output,
    ) -> Spec {
        let (appendonly, appendfsync) = match persistence {
            Persistence::AppendOnly => ("yes", "everysec"),
            Persistence::AppendOnlyAlways => ("yes", "always"),
            Persistence::None => ("no", "everysec"),
        };
        Spec::new("redis", binary)
            .args_from([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                appendonly,
                "--appendfsync",
                appendfsync,
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .arg("--dir")
            .arg(dir)
            .output(output)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let addr = self.addr;
        let answered = net::wait_until(Duration::from_secs(10), || {
            net::redis_ping(addr, Duration::from_millis(200))
        });
        if answered {
            return Ok(());
        }
        let status = self.process.try_wait();
        Err(format!(
            "redis-server on {addr} did not answer within 10 s{}",
            status
                .map(|s| format!(" (it exited: {s})"))
                .unwrap_or_default()
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Stops the server (as an outage would) without giving up its port or data directory.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kills the server at once (SIGKILL), as a crash would: no shutdown save, connections
    /// dropped without a word.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Freezes the server (SIGSTOP): its connections stay open, nothing is answered or
    /// acknowledged, as with a replica stuck behind a full disk or a long pause.
    pub fn pause(&self) {
        self.process.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.process.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// Starts it again on the same port and directory; waits until it answers.
    pub fn restart(&mut self) -> Result<(), String> {
        self.process.restart().map_err(|err| err.to_string())?;
        self.wait_ready()
    }
}

impl Spec {
    fn args_from<'a>(mut self, args: impl IntoIterator<Item = &'a str>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}
