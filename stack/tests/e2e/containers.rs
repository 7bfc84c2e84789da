//! The compose deployment, run for real: the repository's Dockerfile (runtime stage) and
//! `docker-compose.yml`, driven by Debian's `docker-compose` through podman's Docker API, then
//! everything a user does, through the gateway's port published on 127.0.0.1: the flow in
//! Chromium and as JSON, routes edited on the host, replicas, stops and restarts, and what each
//! container may see and do.
//!
//! Set-up (`deploy/smoke.sh`): no image registry is reachable here, so the Debian base is built
//! from Debian's packages, Redis is a stand-in built the same way, and the binaries are this test
//! run's own (stripped), fed to the Dockerfile's runtime stage with `--build-arg BINARIES`; the
//! Dockerfile's Rust build stages are not run. Needs root, `podman`, `runc`, `mmdebstrap`,
//! `docker-compose` (`.ci/run` installs them): skipped locally without them, a failure in CI.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use nix::sys::signal::Signal;
use serde_json::json;
use stack::{
    net,
    process::{Output, Spec, Supervised},
};

use crate::{
    browser::{Browser, browser_available, text},
    helpers::{bin, can_run, json, wait},
};

const TOOLS: [&str; 4] = ["podman", "runc", "mmdebstrap", "docker-compose"];

fn root() -> PathBuf {
    stack::binaries::workspace_root().expect("workspace root")
}

fn containers_available() -> bool {
    let missing: Vec<&str> = TOOLS
        .into_iter()
        .filter(|tool| stack::binaries::on_path(tool).is_none())
        .collect();
    // /proc/self belongs to the effective user.
    let root_user = std::fs::metadata("/proc/self").is_ok_and(|proc| {
        use std::os::unix::fs::MetadataExt;
        proc.uid() == 0
    });
    let problem = if !root_user {
        Some("not root (the test runs rootful podman)".to_owned())
    } else if !missing.is_empty() {
        Some(format!(
            "{} not installed (apt-get install -y {})",
            missing.join(", "),
            TOOLS.join(" ")
        ))
    } else {
        None
    };
    can_run("the container smoke test", problem)
}

/// Runs a command to completion; panics with its output unless it succeeds.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn podman(args: &[&str]) -> String {
    run(Command::new("podman").args(args).env(
        "CONTAINERS_CONF",
        root().join("deploy/smoke/containers.conf"),
    ))
}

/// One compose project: a copy of the deployment files in a directory of its own (so the
/// test edits its own routes), the podman API it talks to, and the health-check loop.
struct Deployment {
    dir: tempfile::TempDir,
    project: String,
    socket: PathBuf,
    /// The host port the gateway is published on, as podman picked it (learnt after each
    /// `up` or `start`).
    port: std::cell::Cell<u16>,
    /// The compose files, `-f` each (empty: `docker-compose.yml` alone).
    files: Vec<&'static str>,
    engine: Supervised,
    healthchecks: Supervised,
}

impl Deployment {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let smoke = root().join("deploy/smoke.sh");
        let started = Instant::now();
        let binaries = bin("gateway").parent().expect("bin dir").to_owned();
        run(Command::new(&smoke).arg("images").arg(&binaries));
        eprintln!("containers: images ready in {:.0?}", started.elapsed());

        std::fs::create_dir(dir.path().join("routes")).expect("routes/");
        for file in [
            "docker-compose.yml",
            "docker-compose.cluster.yml",
            "routes/routes.toml",
        ] {
            std::fs::copy(root().join(file), dir.path().join(file)).expect("copy");
        }
        // `cp .env.example .env`, then the secret, as docs/src/deploying/docker.md asks; the Redis stand-in, and
        // port 0: podman publishes the gateway on a port it binds itself, read back with
        // `docker-compose port`.
        let example = std::fs::read_to_string(root().join(".env.example")).expect(".env.example");
        let mut env: String = example
            .lines()
            .filter(|line| !line.starts_with("SESSION_SECRET="))
            .map(|line| format!("{line}\n"))
            .collect();
        env.push_str(&format!(
            "SESSION_SECRET={}\nREDIS_IMAGE=localhost/one-origin-redis-standin\nGATEWAY_PORT=0\n",
            crate::helpers::SECRET
        ));
        std::fs::write(dir.path().join(".env"), env).expect(".env");

        let socket = dir.path().join("podman.sock");
        let log = |name: &str| Output::File(dir.path().join(format!("{name}.log")));
        let engine = Supervised::spawn(
            Spec::new("podman-api", &smoke)
                .arg("engine")
                .arg(&socket)
                .output(log("podman-api")),
        )
        .expect("podman system service");
        assert!(
            net::wait_until(Duration::from_secs(20), || socket.exists()),
            "the podman API socket appears"
        );
        let healthchecks = Supervised::spawn(
            Spec::new("healthchecks", &smoke)
                .arg("healthchecks")
                .output(log("healthchecks")),
        )
        .expect("health-check loop");
        Self {
            dir,
            project: format!("smoke{}", std::process::id()),
            socket,
            port: std::cell::Cell::new(0),
            files: Vec::new(),
            engine,
            healthchecks,
        }
    }

    fn compose(&self, args: &[&str]) -> String {
        run(&mut self.compose_command(args))
    }

    fn compose_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .args(["--project-name", &self.project])
            .args(self.files.iter().flat_map(|file| ["-f", file]))
            .args(args)
            .current_dir(self.dir.path())
            // Only what compose needs: a developer's exported settings must not leak in.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()));
        command
    }

    /// `up -d` (with `extra` arguments), then waits until the gateway serves.
    fn up(&self, extra: &[&str]) {
        let started = Instant::now();
        let mut args = vec!["up", "-d", "--no-build"];
        args.extend_from_slice(extra);
        self.compose(&args);
        self.wait_serving("the deployment serves through the gateway");
        eprintln!("containers: up {extra:?} in {:.1?}", started.elapsed());
    }

    /// Learns where the gateway is published (`docker-compose port gateway 8080`) and waits
    /// until it serves there; `what` names the wait in its failure.
    fn wait_serving(&self, what: &str) {
        assert!(
            net::wait_until(Duration::from_secs(90), || {
                let Some(port) = self.published_port() else {
                    return false;
                };
                self.port.set(port);
                net::http_status(self.addr(), "/readyz", Duration::from_secs(1)) == Some(200)
            }),
            "{what}"
        );
    }

    /// The host port of the gateway's container port 8080, once it has one.
    fn published_port(&self) -> Option<u16> {
        let output = self
            .compose_command(&["port", "gateway", "8080"])
            .output()
            .ok()?;
        // `127.0.0.1:40321`
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .rsplit(':')
            .next()?
            .parse()
            .ok()
            .filter(|port| *port != 0)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port.get()))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// The container ids of a service.
    fn containers(&self, service: &str) -> Vec<String> {
        self.compose(&["ps", "-q", service])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn exec(&self, container: &str, command: &[&str]) -> std::process::Output {
        Command::new("podman")
            .args(["exec", container])
            .args(command)
            .output()
            .expect("podman exec")
    }

    /// The gateway's admin listener, on its container's address (reachable from the host on
    /// the bridge network compose made; it is not published).
    fn admin_url(&self, path: &str) -> String {
        let gateway = &self.containers("gateway")[0];
        let ip = podman(&[
            "inspect",
            gateway,
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        ]);
        format!("http://{}:9090{path}", ip.trim())
    }

    /// Requests sent to each reader address, from the gateway's metrics.
    async fn reads_per_reader(&self) -> BTreeMap<String, u64> {
        let metrics = reqwest::get(self.admin_url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        metrics
            .lines()
            .filter(|line| {
                line.starts_with("gateway_upstream_address_requests_total{upstream=\"reader\"")
            })
            .filter_map(|line| {
                let address = line.split("address=\"").nth(1)?.split('"').next()?;
                let count = line.rsplit(' ').next()?.parse().ok()?;
                Some((address.to_owned(), count))
            })
            .collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .args(["--project-name", &self.project])
            .args(self.files.iter().flat_map(|file| ["-f", file]))
            .args(["down", "--volumes", "--timeout", "5"])
            .current_dir(self.dir.path())
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .output();
        // The loop is a shell with podman children: stop its whole group.
        self.healthchecks.signal_group(Signal::SIGTERM);
        self.engine.signal_group(Signal::SIGTERM);
    }
}

/// Logs in with a fresh cookie jar; returns the client and the user id.
async fn login(deployment: &Deployment) -> (reqwest::Client, String) {
    // No idle connections kept: the containers are stopped and started under it, and a request
    // on a connection that died meanwhile would fail where a browser would quietly retry.
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let (status, body) = json(
        client
            .get(deployment.url("/login"))
            .send()
            .await
            .expect("login"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let user = body["user"]["id"].as_str().expect("user").to_owned();
    (client, user)
}

async fn read(deployment: &Deployment, client: &reqwest::Client) -> (u16, serde_json::Value) {
    json(client.get(deployment.url("/")).send().await.expect("read")).await
}

/// Writes `text` over `path`: in place (same inode, as `echo >` does) or by replacing the file
/// (a new inode renamed over it, as `sed -i` and most editors do).
fn edit(path: &Path, text: &str, in_place: bool) {
    if in_place {
        std::fs::write(path, text).expect("write in place");
    } else {
        let fresh = path.with_extension("toml.new");
        std::fs::write(&fresh, text).expect("write");
        std::fs::rename(&fresh, path).expect("rename over");
    }
}

/// Waits until `GET /` with `client` answers `status`; returns how long that took.
async fn rerouted(deployment: &Deployment, client: &reqwest::Client, status: u16) -> Duration {
    wait::until(
        &format!("GET / to answer {status} after the routes edit"),
        Duration::from_secs(10),
        || async { read(deployment, client).await.0 == status },
    )
    .await
}

#[tokio::test]
async fn the_compose_deployment_serves_scales_reroutes_and_keeps_sessions() {
    if !containers_available() {
        return;
    }
    let started = Instant::now();
    let mut deployment = Deployment::start();
    deployment.up(&[]);

    // The JSON flow, as curl would.
    let (client, user) = login(&deployment).await;
    for expected in 1..=2 {
        let response = client
            .post(deployment.url("/increment"))
            .send()
            .await
            .expect("increment");
        assert_eq!(
            json(response).await,
            (
                200,
                json!({ "message": "Incremented Count", "count": expected })
            )
        );
    }
    assert_eq!(
        read(&deployment, &client).await,
        (200, json!({ "user": { "id": user }, "count": 2 }))
    );

    // A browser: /login, then /.
    if browser_available() {
        let browser = Browser::start(deployment.dir.path()).await;
        browser
            .client
            .goto(&deployment.url("/login"))
            .await
            .expect("open /login");
        let browser_user = text(&browser.client, "user").await;
        browser
            .client
            .goto(&deployment.url("/"))
            .await
            .expect("open /");
        assert_eq!(text(&browser.client, "user").await, browser_user);
        assert_eq!(text(&browser.client, "count").await, "0");
        browser.close().await;
    }

    // Routes edited on the host: `/` to the writer (which has no `/`: its 404), in place; then
    // back to the reader by replacing the file. The running gateway follows both.
    let routes = deployment.dir.path().join("routes/routes.toml");
    let shipped = std::fs::read_to_string(&routes).expect("routes");
    let to_writer = shipped.replace(
        "path = \"/\"\nupstream = \"reader\"",
        "path = \"/\"\nupstream = \"writer\"",
    );
    assert_ne!(
        to_writer, shipped,
        "the shipped routes send / to the reader"
    );
    edit(&routes, &to_writer, true);
    let in_place = rerouted(&deployment, &client, 404).await;
    edit(&routes, &shipped, false);
    let replaced = rerouted(&deployment, &client, 200).await;
    eprintln!(
        "containers: re-routed in {in_place:.2?} (edit in place), {replaced:.2?} (file replaced)"
    );
    for (how, took) in [("in place", in_place), ("replaced", replaced)] {
        // The gateway applies an edit within a second; the rest is a loaded machine's slack.
        assert!(took < Duration::from_secs(3), "{how}: {took:?}");
    }

    // Least privilege: our containers run as uid 10001 on a read-only root; the gateway holds
    // no session secret and sees nothing of the project but its routes.
    for service in ["writer", "reader", "gateway"] {
        let container = &deployment.containers(service)[0];
        let uid = deployment.exec(container, &["id", "-u"]);
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "10001",
            "{service}"
        );
        let write = deployment.exec(container, &["touch", "/usr/local/bin/x"]);
        assert!(
            !write.status.success(),
            "{service}: the root filesystem is read-only"
        );
    }
    let environment_of = |service: &str| {
        let container = &deployment.containers(service)[0];
        let output = deployment.exec(container, &["cat", "/proc/1/environ"]);
        String::from_utf8_lossy(&output.stdout).replace('\0', "\n")
    };
    assert!(
        environment_of("writer").contains(&format!("SESSION_SECRET={}", crate::helpers::SECRET))
    );
    let gateway_env = environment_of("gateway");
    assert!(
        !gateway_env.contains("SESSION_SECRET") && !gateway_env.contains("REDIS_URL"),
        "{gateway_env}"
    );
    let gateway = &deployment.containers("gateway")[0];
    let listing = deployment.exec(gateway, &["ls", "-A", "/etc/gateway"]);
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        "routes.toml"
    );

    // Replicas: 3 readers, 2 writers. The gateway finds them by DNS; 32 clients increment
    // concurrently and nothing is lost; reads reach every reader.
    deployment.up(&["--scale", "reader=3", "--scale", "writer=2"]);
    let readers = wait::for_value(
        "the gateway to know three reader addresses",
        Duration::from_secs(30),
        || async {
            let readers = deployment.reads_per_reader().await;
            (readers.len() == 3).then_some(readers)
        },
    )
    .await;
    let increments: Vec<u16> = stream::iter(0..320)
        .map(|_| async {
            client
                .post(deployment.url("/increment"))
                .send()
                .await
                .map_or(0, |response| response.status().as_u16())
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        increments.iter().all(|status| *status == 200),
        "{increments:?}"
    );
    for _ in 0..60 {
        assert_eq!(read(&deployment, &client).await.0, 200);
    }
    let (_, body) = read(&deployment, &client).await;
    assert_eq!(
        body["count"], 322,
        "320 concurrent increments over two writers, none lost"
    );
    let after = deployment.reads_per_reader().await;
    for (address, before) in &readers {
        assert!(
            after.get(address).is_some_and(|now| now > before),
            "reader {address} got reads: {readers:?} -> {after:?}"
        );
    }

    // Stop and start every container, then down and up (the volume kept): the session and its
    // count survive.
    deployment.compose(&["stop", "--timeout", "10"]);
    deployment.compose(&["start"]);
    deployment.wait_serving("serving again after stop and start");
    assert_eq!(
        read(&deployment, &client).await,
        (200, json!({ "user": { "id": user }, "count": 322 })),
        "after stop and start"
    );
    deployment.compose(&["down", "--timeout", "10"]);
    deployment.up(&[]);
    assert_eq!(
        read(&deployment, &client).await,
        (200, json!({ "user": { "id": user }, "count": 322 })),
        "after down and up"
    );

    on_a_redis_cluster(&mut deployment).await;
    eprintln!(
        "containers: the whole smoke test took {:.0?}",
        started.elapsed()
    );
}

/// The deployment on a Redis Cluster (`docker-compose.cluster.yml`): the flow works, and a
/// session survives the death of the primary holding it.
async fn on_a_redis_cluster(deployment: &mut Deployment) {
    deployment.compose(&["down", "--volumes", "--timeout", "10"]);
    deployment.files = vec!["docker-compose.yml", "docker-compose.cluster.yml"];
    deployment.up(&[]);
    // The first request after `up` must already work; if it does not, say what the containers
    // said (a service that exited at start names the reason on its last line).
    let probe = reqwest::Client::new()
        .get(deployment.url("/login"))
        .send()
        .await
        .map(|response| response.status().as_u16());
    if !matches!(probe, Ok(200)) {
        let logs =
            deployment.compose(&["logs", "--tail", "15", "writer", "reader", "redis-cluster"]);
        panic!(
            "login after up on the cluster: {probe:?}\n{}\n{logs}",
            deployment.compose(&["ps"])
        );
    }
    let (client, user) = login(deployment).await;
    for expected in 1..=3 {
        let (status, body) = json(
            client
                .post(deployment.url("/increment"))
                .send()
                .await
                .expect("increment"),
        )
        .await;
        assert_eq!((status, &body["count"]), (200, &json!(expected)), "{body}");
    }

    // The node serving the user's slot, by the name it announces (CLUSTER NODES lists
    // `ip:port@cport,hostname`).
    let first = &deployment.containers("redis")[0];
    let ask = |command: &[&str]| {
        let mut full = vec!["redis-cli"];
        full.extend_from_slice(command);
        let output = deployment.exec(first, &full);
        assert!(output.status.success(), "{command:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let index = format!("user:{{{user}}}:sessions");
    let slot: u16 = ask(&["cluster", "keyslot", &index])
        .trim()
        .parse()
        .expect("slot");
    let nodes = ask(&["cluster", "nodes"]);
    let primary = nodes
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serves = fields.iter().skip(8).any(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                matches!((start.parse::<u16>(), end.parse::<u16>()), (Ok(start), Ok(end)) if (start..=end).contains(&slot))
            });
            let name = fields.get(1)?.split(',').nth(1)?;
            (serves && fields.get(2)?.contains("master")).then(|| name.to_owned())
        })
        .unwrap_or_else(|| panic!("a primary serves slot {slot}: {nodes}"));
    // Replication is asynchronous: the replica must have the writes before its primary dies.
    let victim = deployment.containers(&primary)[0].clone();
    let replication = || {
        let output = deployment.exec(&victim, &["redis-cli", "info", "replication"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let written = replication()
        .lines()
        .find_map(|line| line.trim().strip_prefix("master_repl_offset:"))
        .and_then(|offset| offset.parse::<u64>().ok())
        .expect("the primary's master_repl_offset");
    wait::until(
        &format!("{primary}'s replica to have its writes (offset {written})"),
        Duration::from_secs(20),
        || async {
            // slave0:ip=10.89.0.5,port=6379,state=online,offset=1234,lag=0
            let offsets: Vec<u64> = replication()
                .lines()
                .filter(|line| line.starts_with("slave"))
                .filter_map(|line| {
                    line.split(',')
                        .find_map(|pair| pair.strip_prefix("offset="))
                        .and_then(|offset| offset.trim().parse().ok())
                })
                .collect();
            !offsets.is_empty() && offsets.iter().all(|offset| *offset >= written)
        },
    )
    .await;
    let killed = Instant::now();
    podman(&["kill", &victim]);
    let served = wait::poll(Duration::from_secs(60), || async {
        read(deployment, &client).await.0 == 200
    })
    .await;
    assert!(
        served,
        "reads are served again after the failover: {:?}",
        read(deployment, &client).await
    );
    assert_eq!(
        read(deployment, &client).await,
        (200, json!({ "user": { "id": user }, "count": 3 })),
        "the session and its count survived {primary}'s death"
    );
    eprintln!(
        "containers: cluster primary {primary} killed, served again after {:.1?}",
        killed.elapsed()
    );
}
