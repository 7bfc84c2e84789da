//! A `redis-server` of our own, where no other program can be mistaken for it.
//!
//! - [`RedisServer::start_unix`]: on a unix socket in its own directory, with TCP off. Nothing
//!   else can listen at that path, so nothing can collide: one Redis for the local stack and the
//!   tests.
//! - [`RedisServer::start_tcp`]: on a TCP port of 127.0.0.1, for what must be reached over TCP
//!   (the nodes of a Redis Cluster announce `ip:port` to each other and to clients; sentinels
//!   name the primary by `ip:port`). `redis-server` cannot bind port 0 (`--port 0` turns TCP
//!   off), so a port the kernel calls free is tried; when another program took it in the
//!   meantime, the server exits ("Address already in use") and the next candidate is tried. A
//!   server counts as started only when the one answering on the port is the process we
//!   started (`INFO server`'s `process_id`), never another test's Redis that happens to be there.
//! - [`RedisServer::start_tls`]: on a unix socket as above, and on a TLS port of 127.0.0.1
//!   (plain TCP off), for the tests of `rediss://`. The socket is how the start is checked and
//!   how a test looks at the data; the services use the TLS port.

use std::{
    fmt,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    net,
    process::{Output, Spec, Supervised},
};

/// How to install Redis, for the error a user sees when it is missing.
pub const INSTALL_HINT: &str = "install it (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis) or set REDIS_URL";

/// How long a server gets to answer after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many ports [`RedisServer::start_tcp`] tries before it gives up.
const TCP_ATTEMPTS: usize = 20;

/// The longest path a unix socket address holds (`sun_path` is 108 bytes with its final NUL).
pub const UNIX_PATH_MAX: usize = 107;

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

/// Where a Redis listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A connection to an endpoint, either kind.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

impl Endpoint {
    /// `redis://127.0.0.1:<port>/0` or `redis+unix:///<path>`: `REDIS_URL` for the services.
    pub fn url(&self) -> String {
        match self {
            Self::Tcp(addr) => format!("redis://{addr}/0"),
            Self::Unix(path) => format!("redis+unix://{}", path.display()),
        }
    }

    /// The TCP address, when it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(addr) => Some(*addr),
            Self::Unix(_) => None,
        }
    }

    /// `redis-cli`'s arguments to reach it: `-h <ip> -p <port>` or `-s <path>`.
    pub fn cli_args(&self) -> Vec<String> {
        match self {
            Self::Tcp(addr) => vec![
                "-h".into(),
                addr.ip().to_string(),
                "-p".into(),
                addr.port().to_string(),
            ],
            Self::Unix(path) => vec!["-s".into(), path.display().to_string()],
        }
    }

    fn connect(&self, timeout: Duration) -> Option<Box<dyn Stream>> {
        match self {
            Self::Tcp(addr) => {
                let stream = TcpStream::connect_timeout(addr, timeout).ok()?;
                stream.set_read_timeout(Some(timeout)).ok()?;
                stream.set_write_timeout(Some(timeout)).ok()?;
                Some(Box::new(stream))
            }
            Self::Unix(path) => {
                let stream = UnixStream::connect(path).ok()?;
                stream.set_read_timeout(Some(timeout)).ok()?;
                stream.set_write_timeout(Some(timeout)).ok()?;
                Some(Box::new(stream))
            }
        }
    }

    /// Whether a Redis (server or sentinel) answers `PING` here.
    pub fn ping(&self, timeout: Duration) -> bool {
        let Some(mut stream) = self.connect(timeout) else {
            return false;
        };
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// The process id of the Redis (server or sentinel) answering here (`INFO server`'s
    /// `process_id`), if one answers.
    pub fn pid(&self, timeout: Duration) -> Option<u32> {
        let mut stream = self.connect(timeout)?;
        stream.write_all(b"INFO server\r\n").ok()?;
        // A bulk string: `$<length>\r\n<text>\r\n`.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).ok()?;
            head.push(byte[0]);
            if head.len() > 32 {
                return None;
            }
        }
        let length: usize = std::str::from_utf8(head.strip_prefix(b"$")?)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let mut text = vec![0u8; length];
        stream.read_exact(&mut text).ok()?;
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
    }
}

/// A running `redis-server`, stopped when dropped.
#[derive(Debug)]
pub struct RedisServer {
    process: Supervised,
    endpoint: Endpoint,
    /// The TLS port of a server started with [`Self::start_tls`].
    tls: Option<SocketAddr>,
}

impl RedisServer {
    /// Finds `redis-server` on `PATH`.
    pub fn binary() -> Option<PathBuf> {
        crate::binaries::on_path("redis-server")
    }

    fn require_binary() -> Result<PathBuf, String> {
        Self::binary().ok_or_else(|| format!("redis-server is not on PATH: {INSTALL_HINT}"))
    }

    /// Starts a server listening on the unix socket `<dir>/redis.sock` only (TCP off), with its
    /// files in `dir`, and waits until it answers. Fails when that path is too long for a
    /// socket address ([`UNIX_PATH_MAX`]): see [`RedisServer::start_local`].
    pub fn start_unix(
        dir: &Path,
        persistence: Persistence,
        output: Output,
    ) -> Result<Self, String> {
        let binary = Self::require_binary()?;
        create_dir(dir)?;
        let endpoint = Endpoint::Unix(socket_in(dir)?);
        let spec = server_spec(&binary, &endpoint, dir, persistence, output, &[]);
        let process = Supervised::spawn(spec).map_err(|err| err.to_string())?;
        let mut server = Self {
            process,
            endpoint,
            tls: None,
        };
        server.wait_ready().map_err(Failure::into_message)?;
        Ok(server)
    }

    /// Starts a server on the unix socket `<dir>/redis.sock` and on a TLS port of 127.0.0.1
    /// (`--tls-port`; `--port 0`: no plain TCP) with `tls_options` (`--tls-cert-file`,
    /// `--tls-key-file`, `--tls-ca-cert-file`, `--tls-auth-clients`, …); waits until it answers
    /// on the socket. A TLS port another program took first makes the server exit, and the
    /// next candidate is tried (as for [`Self::start_tcp`]).
    pub fn start_tls(
        dir: &Path,
        persistence: Persistence,
        output: Output,
        tls_options: &[String],
    ) -> Result<Self, String> {
        let binary = Self::require_binary()?;
        create_dir(dir)?;
        let endpoint = Endpoint::Unix(socket_in(dir)?);
        let mut taken = Vec::new();
        for _ in 0..TCP_ATTEMPTS {
            let port =
                net::free_port().map_err(|err| format!("no port for redis-server: {err}"))?;
            let mut options = vec!["--tls-port".to_owned(), port.to_string()];
            options.extend_from_slice(tls_options);
            let spec = server_spec(
                &binary,
                &endpoint,
                dir,
                persistence,
                output.clone(),
                &options,
            );
            let mut process = Supervised::spawn(spec).map_err(|err| err.to_string())?;
            match wait_answering(&mut process, &endpoint) {
                Ok(()) => {
                    return Ok(Self {
                        process,
                        endpoint,
                        tls: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
                    });
                }
                Err(Failure::PortTaken(why)) => taken.push(why),
                Err(Failure::Other(why)) => return Err(why),
            }
        }
        Err(format!(
            "redis-server found no free TLS port in {TCP_ATTEMPTS} tries: {}",
            taken.join("; ")
        ))
    }

    /// The TLS port of a server started with [`Self::start_tls`].
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls
    }

    /// A server of our own on this machine: on a unix socket in `dir` ([`Self::start_unix`]),
    /// or on a TCP port ([`Self::start_tcp`]) when the socket's path would be too long.
    pub fn start_local(
        dir: &Path,
        persistence: Persistence,
        output: Output,
    ) -> Result<Self, String> {
        if dir.join("redis.sock").as_os_str().len() <= UNIX_PATH_MAX {
            Self::start_unix(dir, persistence, output)
        } else {
            Self::start_tcp(dir, persistence, output, &[])
        }
    }

    /// Starts a server on a TCP port of 127.0.0.1 with more `redis-server` options
    /// (`--cluster-enabled yes`, `--replicaof 127.0.0.1 6379`, …; see [`crate::topology`]) and
    /// its files in `dir`; waits until it answers. The port is one the kernel called free;
    /// when it is taken before the server binds it, the next one is tried (see the module docs).
    pub fn start_tcp(
        dir: &Path,
        persistence: Persistence,
        output: Output,
        options: &[String],
    ) -> Result<Self, String> {
        Self::start_tcp_from(net::free_port, dir, persistence, output, options)
    }

    /// [`Self::start_tcp`] with the candidate ports from `ports` (a test hands it a port that
    /// is taken, to see the next one used).
    pub fn start_tcp_from(
        ports: impl FnMut() -> std::io::Result<u16>,
        dir: &Path,
        persistence: Persistence,
        output: Output,
        options: &[String],
    ) -> Result<Self, String> {
        let binary = Self::require_binary()?;
        create_dir(dir)?;
        let (process, addr) = spawn_on_tcp(ports, |port| {
            let endpoint = Endpoint::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
            Ok(server_spec(
                &binary,
                &endpoint,
                dir,
                persistence,
                output.clone(),
                options,
            ))
        })?;
        Ok(Self {
            process,
            endpoint: Endpoint::Tcp(addr),
            tls: None,
        })
    }

    /// Waits until the process we started answers on our endpoint.
    fn wait_ready(&mut self) -> Result<(), Failure> {
        wait_answering(&mut self.process, &self.endpoint)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The TCP address of a server started with [`Self::start_tcp`] (cluster nodes, sentinel
    /// set-ups). Panics for one on a unix socket: ask [`Self::endpoint`] where it may be either.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint
            .tcp()
            .expect("this Redis listens on a unix socket, not on TCP")
    }

    /// `REDIS_URL` for it: `redis://127.0.0.1:<port>/0` or `redis+unix:///<path>`.
    pub fn url(&self) -> String {
        self.endpoint.url()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops the server (as an outage would) without giving up its data directory.
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

    /// Starts it again where it was (same socket or port, same directory); waits until it
    /// answers. On a unix socket nothing can be in the way. A TCP server re-binds the port it
    /// held (a cluster node must come back on its own address): only the by-hand failover
    /// drill restarts one, and if another program took the port meanwhile this fails, saying so.
    pub fn restart(&mut self) -> Result<(), String> {
        self.process.restart().map_err(|err| err.to_string())?;
        self.wait_ready().map_err(Failure::into_message)
    }
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))
}

fn server_spec(
    binary: &Path,
    endpoint: &Endpoint,
    dir: &Path,
    persistence: Persistence,
    output: Output,
    options: &[String],
) -> Spec {
    let (appendonly, appendfsync) = match persistence {
        Persistence::AppendOnly => ("yes", "everysec"),
        Persistence::AppendOnlyAlways => ("yes", "always"),
        Persistence::None => ("no", "everysec"),
    };
    let listen: Vec<String> = match endpoint {
        Endpoint::Tcp(addr) => vec![
            "--bind".into(),
            addr.ip().to_string(),
            "--port".into(),
            addr.port().to_string(),
        ],
        Endpoint::Unix(path) => vec![
            "--port".into(),
            "0".into(),
            "--unixsocket".into(),
            path.display().to_string(),
            "--unixsocketperm".into(),
            "700".into(),
        ],
    };
    let mut spec = Spec::new("redis", binary);
    spec.args.extend(listen.into_iter().map(Into::into));
    spec.args.extend(
        [
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
        ]
        .map(Into::into),
    );
    spec.args.extend(options.iter().map(Into::into));
    spec.arg("--dir").arg(dir).output(output)
}

/// Why a start did not work.
#[derive(Debug)]
enum Failure {
    /// Another program holds the port: try another.
    PortTaken(String),
    /// Anything else: give up with this message.
    Other(String),
}

impl Failure {
    fn into_message(self) -> String {
        match self {
            Self::PortTaken(message) | Self::Other(message) => message,
        }
    }
}

/// The log file of `spec`, if its output goes to one.
fn log_file(spec: &Spec) -> Option<&Path> {
    match &spec.output {
        Output::File(path) | Output::PrefixedAndFile(path) => Some(path),
        Output::Prefixed | Output::Null => None,
    }
}

/// Waits until `process` itself answers at `endpoint`, done loading its data: a server there
/// with another process id means the port was taken by someone else.
fn wait_answering(process: &mut Supervised, endpoint: &Endpoint) -> Result<(), Failure> {
    // Only what this start logged counts (a log file may be shared by several starts).
    let log = log_file(process.spec()).map(Path::to_owned);
    let logged_before = log
        .as_ref()
        .and_then(|path| std::fs::metadata(path).ok())
        .map_or(0, |meta| meta.len());
    let logged = || {
        log.as_ref()
            .and_then(|path| std::fs::read(path).ok())
            .map(|bytes| {
                let start = usize::try_from(logged_before).unwrap_or(0).min(bytes.len());
                String::from_utf8_lossy(&bytes[start..]).into_owned()
            })
    };
    let ours = process.pid();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match endpoint.pid(Duration::from_millis(200)) {
            // Ours, and serving: INFO answers while Redis is still loading its data, PING
            // answers -LOADING until it is done (a restart with an append-only file to replay).
            Some(pid) if pid == ours && endpoint.ping(Duration::from_millis(200)) => return Ok(()),
            Some(pid) if pid == ours => {}
            Some(other) => {
                return Err(Failure::PortTaken(format!(
                    "{endpoint} is served by another Redis (process {other})"
                )));
            }
            None => {}
        }
        if let Some(status) = process.try_wait() {
            let said = logged();
            let message = format!(
                "redis-server on {endpoint} exited during start ({status}){}",
                said.as_deref()
                    .map(|said| format!(": {}", said.trim()))
                    .unwrap_or_default()
            );
            // Without a log file the cause is unknown: a taken port is the likely one.
            let taken = said.is_none_or(|said| said.contains("Address already in use"));
            return Err(if taken {
                Failure::PortTaken(message)
            } else {
                Failure::Other(message)
            });
        }
        if Instant::now() >= deadline {
            return Err(Failure::Other(format!(
                "redis-server on {endpoint} did not answer within {READY_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the Redis process (server or sentinel) `spec(port)` makes, on ports from `ports`
/// until one was not taken by another program first (see the module docs); returns it and its
/// address once that process answers there.
pub(crate) fn spawn_on_tcp(
    mut ports: impl FnMut() -> std::io::Result<u16>,
    mut spec: impl FnMut(u16) -> Result<Spec, String>,
) -> Result<(Supervised, SocketAddr), String> {
    let mut taken = Vec::new();
    for _ in 0..TCP_ATTEMPTS {
        let port = ports().map_err(|err| format!("no port for redis-server: {err}"))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut process = Supervised::spawn(spec(port)?).map_err(|err| err.to_string())?;
        match wait_answering(&mut process, &Endpoint::Tcp(addr)) {
            Ok(()) => return Ok((process, addr)),
            // Dropping `process` stops ours, if it still runs.
            Err(Failure::PortTaken(why)) => taken.push(why),
            Err(Failure::Other(why)) => return Err(why),
        }
    }
    Err(format!(
        "redis-server found no free port in {TCP_ATTEMPTS} tries: {}",
        taken.join("; ")
    ))
}

/// `<dir>/redis.sock`, or why it cannot be a socket address ([`UNIX_PATH_MAX`]).
fn socket_in(dir: &Path) -> Result<PathBuf, String> {
    let socket = dir.join("redis.sock");
    if socket.as_os_str().len() > UNIX_PATH_MAX {
        return Err(format!(
            "{} is longer than a unix socket path may be ({UNIX_PATH_MAX} bytes)",
            socket.display()
        ));
    }
    Ok(socket)
}
