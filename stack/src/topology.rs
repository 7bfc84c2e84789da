//! Redis beyond one server, on loopback, for tests and drills: a Redis Cluster (primaries with
//! replicas) and a Sentinel set-up (a primary, a replica, three sentinels). Every process is a
//! [`RedisServer`] and is stopped when the topology is dropped.
//!
//! Timings are short on purpose (`cluster-node-timeout` and `down-after-milliseconds` of one
//! second), so that a failover takes a few seconds, not the production defaults' tens.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    net,
    process::{Output, Spec, Supervised},
    redis::{Persistence, RedisServer, spawn_on_tcp},
};

/// How long a node may be silent before the others fail it over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Where a topology's processes write their logs.
#[derive(Debug, Clone)]
pub enum Logs {
    /// One file per process in the topology's directory.
    Files,
    /// To our stderr with the process's name as prefix, and to the files.
    Terminal,
}

impl Logs {
    fn output(&self, dir: &Path, name: &str) -> Output {
        let file = dir.join(format!("{name}.log"));
        match self {
            Self::Files => Output::File(file),
            Self::Terminal => Output::PrefixedAndFile(file),
        }
    }
}

/// Runs `redis-cli` with `args`; its standard output, or what went wrong.
pub fn redis_cli(args: &[&str]) -> Result<String, String> {
    let output = Command::new("redis-cli")
        .args(args)
        .output()
        .map_err(|err| format!("redis-cli: {err} (it comes with redis-server: redis-tools)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "redis-cli {}: {stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `redis-cli -p <port> <command…>`.
fn ask(port: u16, command: &[&str]) -> Result<String, String> {
    let port = port.to_string();
    let mut args = vec!["-p", port.as_str()];
    args.extend_from_slice(command);
    redis_cli(&args)
}

/// The value of `field` in an `INFO`-style answer (`field:value` lines).
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Waits up to `timeout` for `ready`; `what` names it in the error.
fn wait(timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    if net::wait_until(timeout, &mut ready) {
        Ok(())
    } else {
        Err(format!("{what}: not within {timeout:?}"))
    }
}

/// A Redis Cluster on loopback: `primaries` primaries, each with `replicas` replicas.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts the nodes in `dir`, creates the cluster and waits until every node says it is
    /// ok and agrees on who serves the 16,384 slots. Persistence: none (a test's data).
    pub fn start(
        dir: &Path,
        primaries: usize,
        replicas: usize,
        logs: &Logs,
    ) -> Result<Self, String> {
        let count = primaries * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        for index in 1..=count {
            // The cluster bus listens on the port + 10,000: a candidate whose bus port is taken
            // makes the server exit like a taken port does, and the next one is tried.
            let options = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                &NODE_TIMEOUT.as_millis().to_string(),
                // While a primary is failed and not yet replaced, the other primaries keep
                // serving their slots (the default refuses every query, CLUSTERDOWN).
                "--cluster-require-full-coverage",
                "no",
            ]
            .map(String::from);
            nodes.push(RedisServer::start_tcp(
                &dir.join(format!("node-{index}")),
                Persistence::None,
                logs.output(dir, &format!("redis-node-{index}")),
                &options,
            )?);
        }
        let addrs: Vec<String> = nodes.iter().map(|node| node.addr().to_string()).collect();
        let mut create: Vec<&str> = vec!["--cluster", "create"];
        create.extend(addrs.iter().map(String::as_str));
        let replicas = replicas.to_string();
        create.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        redis_cli(&create)?;
        let cluster = Self {
            nodes,
            dir: dir.to_owned(),
        };
        cluster.wait_healthy(Duration::from_secs(20))?;
        // A replica that has not synced with its primary yet refuses to take over from it.
        wait(Duration::from_secs(20), "every replica is in sync", || {
            cluster.nodes.iter().all(|node| {
                ask(node.addr().port(), &["INFO", "replication"]).is_ok_and(|info| {
                    field(&info, "role") == Some("master")
                        || field(&info, "master_link_status") == Some("up")
                })
            })
        })?;
        Ok(cluster)
    }

    /// `redis://127.0.0.1:<port>,redis://…` for every node: the seed list of `REDIS_URL`.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("redis://{}", node.addr()))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// Waits until every running node reports `cluster_state:ok` with all slots served.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let mut last = String::new();
        wait(timeout, "the cluster is ok on every node", || {
            self.running().all(|node| {
                let info = ask(node.addr().port(), &["CLUSTER", "INFO"]);
                let ok = info.as_ref().is_ok_and(|info| {
                    field(info, "cluster_state") == Some("ok")
                        && field(info, "cluster_slots_ok") == Some("16384")
                });
                if !ok {
                    last = format!("{}: {info:?}", node.addr());
                }
                ok
            })
        })
        .map_err(|err| format!("{err} (last seen: {last})"))
    }

    fn running(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes
            .iter()
            .filter(|node| node.endpoint().ping(Duration::from_millis(200)))
    }

    /// The primary serving `key`'s slot, as the running nodes see it (`CLUSTER NODES`).
    pub fn primary_of(&self, key: &str) -> Result<SocketAddr, String> {
        let node = self.running().next().ok_or("no node answers")?;
        let slot = ask(node.addr().port(), &["CLUSTER", "KEYSLOT", key])?;
        let slot: u16 = slot
            .trim()
            .parse()
            .map_err(|_| format!("KEYSLOT answered {slot:?}"))?;
        let nodes = ask(node.addr().port(), &["CLUSTER", "NODES"])?;
        // <id> <ip:port@cport> <flags> <primary> <ping> <pong> <epoch> <link> <slot ranges…>
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            if !flags.contains("master") || flags.contains("fail") {
                continue;
            }
            let serves = fields.iter().skip(8).any(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                matches!((start.parse::<u16>(), end.parse::<u16>()), (Ok(start), Ok(end)) if (start..=end).contains(&slot))
            });
            if serves {
                let addr = addr.split('@').next().unwrap_or(addr);
                return addr.parse().map_err(|_| format!("not an address: {addr}"));
            }
        }
        Err(format!("no primary serves slot {slot}"))
    }

    /// Waits until every replica of the primary on `addr` has everything it has written so far
    /// (replication is asynchronous: a write the primary acknowledged may not be on its replica
    /// yet, and is lost if the primary dies then).
    pub fn wait_replicated(&self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        let info = ask(addr.port(), &["INFO", "replication"])?;
        let written: u64 = field(&info, "master_repl_offset")
            .and_then(|offset| offset.parse().ok())
            .ok_or("no master_repl_offset")?;
        wait(timeout, "the replicas have every write", || {
            ask(addr.port(), &["INFO", "replication"]).is_ok_and(|info| {
                // slave0:ip=127.0.0.1,port=30004,state=online,offset=1234,lag=0
                let offsets: Vec<u64> = info
                    .lines()
                    .filter(|line| line.starts_with("slave"))
                    .filter_map(|line| {
                        line.split(',')
                            .find_map(|pair| pair.strip_prefix("offset="))
                            .and_then(|offset| offset.trim().parse().ok())
                    })
                    .collect();
                !offsets.is_empty() && offsets.iter().all(|offset| *offset >= written)
            })
        })
    }

    /// The node on `addr`.
    pub fn node(&self, addr: SocketAddr) -> Option<&RedisServer> {
        self.nodes.iter().find(|node| node.addr() == addr)
    }

    /// The node on `addr`, to stop or restart it.
    pub fn node_mut(&mut self, addr: SocketAddr) -> Option<&mut RedisServer> {
        self.nodes.iter_mut().find(|node| node.addr() == addr)
    }

    /// Kills the node on `addr` (SIGKILL) and waits until its replica has taken over its
    /// slots; returns how long the cluster was without a primary for them.
    pub fn fail_over(&mut self, addr: SocketAddr, timeout: Duration) -> Result<Duration, String> {
        let killed = Instant::now();
        self.node_mut(addr).ok_or("no such node")?.kill();
        // Until the others notice (NODE_TIMEOUT), they still call it ok: wait for them to mark
        // it failed, then for the slots to be served again.
        let node = addr.to_string();
        wait(
            timeout,
            "every node marks the killed primary failed",
            || {
                self.running().all(|other| {
                    ask(other.addr().port(), &["CLUSTER", "NODES"]).is_ok_and(|nodes| {
                        nodes.lines().any(|line| {
                            let fields: Vec<&str> = line.split_whitespace().collect();
                            fields
                                .get(1)
                                .is_some_and(|at| at.starts_with(&format!("{node}@")))
                                && fields.get(2).is_some_and(|flags| flags.contains("fail"))
                        })
                    })
                })
            },
        )?;
        self.wait_healthy(timeout.saturating_sub(killed.elapsed()))?;
        Ok(killed.elapsed())
    }

    /// The replicas of the primary on `addr`, as `CLUSTER NODES` lists them.
    pub fn replicas_of(&self, addr: SocketAddr) -> Result<Vec<SocketAddr>, String> {
        let primary = self.node_id(addr)?;
        let nodes = ask(addr.port(), &["CLUSTER", "NODES"])?;
        // <id> <ip:port@cport> <flags> <primary id> …
        Ok(nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let replica = fields.get(2)?.contains("slave") && fields.get(3)? == &primary;
                let at = fields.get(1)?.split('@').next()?;
                replica.then(|| at.parse().ok()).flatten()
            })
            .collect())
    }

    /// The node id (`CLUSTER MYID`) of the node on `addr`.
    pub fn node_id(&self, addr: SocketAddr) -> Result<String, String> {
        Ok(ask(addr.port(), &["CLUSTER", "MYID"])?.trim().to_owned())
    }

    /// The slot of `key`.
    pub fn slot_of(&self, key: &str) -> Result<u16, String> {
        let node = self.running().next().ok_or("no node answers")?;
        let slot = ask(node.addr().port(), &["CLUSTER", "KEYSLOT", key])?;
        slot.trim()
            .parse()
            .map_err(|_| format!("KEYSLOT answered {slot:?}"))
    }

    /// Moves `slot` from the primary on `from` to the primary on `to` while clients use it, the
    /// way `redis-cli --cluster reshard` moves each slot: mark it importing on `to` and
    /// migrating on `from`, `MIGRATE` its keys a hundred at a time, then give the slot to `to` on
    /// every node. Meanwhile clients are answered ASK for keys already moved, TRYAGAIN for an
    /// operation whose keys are split or partly new, and MOVED once the slot has its new owner.
    /// Returns how many keys moved.
    pub fn move_slot(&self, slot: u16, from: SocketAddr, to: SocketAddr) -> Result<usize, String> {
        const BATCH: &str = "100";
        let slot = slot.to_string();
        let (from_id, to_id) = (self.node_id(from)?, self.node_id(to)?);
        ask(
            to.port(),
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id],
        )?;
        ask(
            from.port(),
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id],
        )?;
        let (to_host, to_port) = (to.ip().to_string(), to.port().to_string());
        let mut moved = 0;
        loop {
            let keys = ask(from.port(), &["CLUSTER", "GETKEYSINSLOT", &slot, BATCH])?;
            let keys: Vec<&str> = keys
                .lines()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut migrate = vec!["MIGRATE", &to_host, &to_port, "", "0", "5000", "KEYS"];
            migrate.extend(&keys);
            ask(from.port(), &migrate)?;
            moved += keys.len();
        }
        // The new owner first, then the old one (which then answers MOVED), then the rest.
        let others: Vec<SocketAddr> = self
            .running()
            .map(RedisServer::addr)
            .filter(|addr| *addr != to && *addr != from)
            .collect();
        for addr in [to, from].into_iter().chain(others) {
            ask(addr.port(), &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id])?;
        }
        Ok(moved)
    }

    /// The directory holding the nodes' files and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The primary's name the sentinels watch.
pub const MASTER_NAME: &str = "mymaster";

/// A primary, one replica and three sentinels (quorum 2) on loopback.
#[derive(Debug)]
pub struct RedisSentinel {
    pub primary: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<(Supervised, SocketAddr)>,
}

impl RedisSentinel {
    /// Starts everything in `dir` and waits until every sentinel knows the primary, the
    /// replica and the two other sentinels.
    pub fn start(dir: &Path, logs: &Logs) -> Result<Self, String> {
        let primary = RedisServer::start_tcp(
            &dir.join("primary"),
            Persistence::None,
            logs.output(dir, "redis-primary"),
            &[],
        )?;
        let primary_port = primary.addr().port();
        let replica = RedisServer::start_tcp(
            &dir.join("replica"),
            Persistence::None,
            logs.output(dir, "redis-replica"),
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary_port.to_string(),
            ],
        )?;
        let binary = RedisServer::binary().ok_or("redis-server is not on PATH")?;
        let sentinels = (1..=3)
            .map(|index| start_sentinel(dir, logs, &binary, index, primary_port))
            .collect::<Result<_, _>>()?;
        let topology = Self {
            primary,
            replica,
            sentinels,
        };
        topology.wait_ready()?;
        Ok(topology)
    }

    /// Waits until the replica is in sync and every sentinel sees it and the two others.
    fn wait_ready(&self) -> Result<(), String> {
        // A replica that has not synced yet is not one the sentinels will promote.
        wait(Duration::from_secs(20), "the replica is in sync", || {
            ask(self.replica.addr().port(), &["INFO", "replication"])
                .is_ok_and(|info| field(&info, "master_link_status") == Some("up"))
        })?;
        wait(
            Duration::from_secs(30),
            "the sentinels see each other and the replica",
            || {
                self.sentinels.iter().all(|(_, sentinel)| {
                    ask(sentinel.port(), &["SENTINEL", "MASTER", MASTER_NAME]).is_ok_and(|master| {
                        let value = |name: &str| {
                            let lines: Vec<&str> = master.lines().map(str::trim).collect();
                            lines
                                .iter()
                                .position(|line| *line == name)
                                .and_then(|at| lines.get(at + 1).copied())
                        };
                        value("num-other-sentinels") == Some("2")
                            && value("num-slaves") == Some("1")
                    })
                })
            },
        )
    }

    /// `redis+sentinel://127.0.0.1:<port>,…/mymaster`: `REDIS_URL` for this set-up.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|(_, sentinel)| sentinel.to_string())
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", sentinels.join(","))
    }

    /// Who the sentinels say the primary is now.
    pub fn current_primary(&self) -> Result<SocketAddr, String> {
        let (_, sentinel) = self.sentinels.first().ok_or("no sentinel")?;
        let answer = ask(
            sentinel.port(),
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        )?;
        let mut lines = answer.lines().map(str::trim);
        let host = lines.next().ok_or("no host")?;
        let port = lines.next().ok_or("no port")?;
        format!("{host}:{port}")
            .parse()
            .map_err(|_| format!("not an address: {answer:?}"))
    }

    /// Kills the primary (SIGKILL) and waits until the sentinels have promoted the replica and
    /// it accepts writes; returns how long that took.
    pub fn fail_over(&mut self, timeout: Duration) -> Result<Duration, String> {
        let killed = Instant::now();
        self.primary.kill();
        let replica = self.replica.addr();
        wait(timeout, "the sentinels promote the replica", || {
            self.current_primary()
                .is_ok_and(|primary| primary == replica)
                && ask(replica.port(), &["ROLE"]).is_ok_and(|role| role.starts_with("master"))
        })?;
        Ok(killed.elapsed())
    }
}

/// Starts sentinel `index` (1 to 3) in `dir`, watching the primary on `primary_port` with a
/// quorum of 2, on a free port.
fn start_sentinel(
    dir: &Path,
    logs: &Logs,
    binary: &Path,
    index: usize,
    primary_port: u16,
) -> Result<(Supervised, SocketAddr), String> {
    let sentinel_dir = dir.join(format!("sentinel-{index}"));
    std::fs::create_dir_all(&sentinel_dir).map_err(|err| err.to_string())?;
    // A sentinel rewrites its configuration file: it must be its own, and writable (and written
    // anew for each port tried).
    let config = sentinel_dir.join("sentinel.conf");
    spawn_on_tcp(net::free_port, |sentinel_port| {
        std::fs::write(
            &config,
            format!(
                "bind 127.0.0.1\nport {sentinel_port}\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                sentinel_dir.display(),
                down = NODE_TIMEOUT.as_millis()
            ),
        )
        .map_err(|err| err.to_string())?;
        // The configuration file must be the first argument.
        Ok(Spec::new(format!("sentinel-{index}"), binary)
            .arg(&config)
            .arg("--sentinel")
            .output(logs.output(dir, &format!("sentinel-{index}"))))
    })
}
