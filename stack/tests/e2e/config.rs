//! Start-up with missing or invalid settings: one line naming the variable, a non-zero exit.

use std::time::Duration;

use stack::{
    process::{Output, Supervised},
    topology::{self, Logs, RedisCluster, RedisSentinel},
};

use crate::helpers::{SECRET, service_spec};

/// Runs `name` with `env` and returns (exit code, stderr) once it exits on its own.
pub(crate) fn run(name: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("out.log");
    let mut spec = service_spec(name, dir.path()).output(Output::File(log.clone()));
    for (key, value) in env {
        spec = spec.env(key, *value);
    }
    let mut process = Supervised::spawn(spec).expect("spawn");
    let status = process
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{name} should exit on bad settings"));
    (status.code(), std::fs::read_to_string(log).expect("log"))
}

#[test]
fn services_refuse_to_start_without_valid_settings() {
    let redis = ("REDIS_URL", "redis://127.0.0.1:1/0");
    let secret = ("SESSION_SECRET", SECRET);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[secret], "REDIS_URL: is required"),
        (&[redis], "SESSION_SECRET: is required"),
        (
            &[redis, ("SESSION_SECRET", "too-short")],
            "SESSION_SECRET: the first secret is 9 bytes long",
        ),
        (
            &[("REDIS_URL", "http://nope"), secret],
            "REDIS_URL: not a Redis URL",
        ),
        (
            &[redis, secret, ("SESSION_TTL", "soon")],
            "SESSION_TTL: \"soon\" is not a whole number of seconds",
        ),
        (
            &[redis, secret, ("SESSION_COOKIE_SAMESITE", "sometimes")],
            "SESSION_COOKIE_SAMESITE: \"sometimes\" is not one of",
        ),
        (
            &[redis, secret, ("SESSION_COOKIE_SAMESITE", "none")],
            "none requires SESSION_COOKIE_SECURE=true",
        ),
        (
            &[redis, secret, ("LOG_FORMAT", "xml")],
            "LOG_FORMAT: \"xml\" is not a log format",
        ),
        (
            &[redis, secret, ("SESSION_HEADER", "cookie")],
            "SESSION_HEADER: \"cookie\" is not one of",
        ),
        (
            &[redis, secret, ("RUST_LOG", "writer=loudly")],
            "RUST_LOG: invalid filter",
        ),
        (
            &[redis, secret, ("SESSION_COOKIE_NAME", "my cookie")],
            "SESSION_COOKIE_NAME: \"my cookie\" is not a valid cookie name",
        ),
        (
            &[redis, secret, ("SESSION_MAX_AGE", "0")],
            "SESSION_MAX_AGE: must be at least 1 second",
        ),
        (
            &[redis, secret, ("REDIS_WAIT_REPLICAS", "one")],
            "REDIS_WAIT_REPLICAS: ",
        ),
    ];
    for name in ["writer", "reader"] {
        for (env, expected) in cases {
            let (code, stderr) = run(name, env);
            assert_eq!(code, Some(2), "{name} {env:?}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(
                lines.len(),
                1,
                "{name} {env:?}: exactly one line, got {stderr:?}"
            );
            assert!(
                lines[0].starts_with(&format!("{name}: ")) && lines[0].contains(expected),
                "{name} {env:?}: {stderr:?} should contain {expected:?}"
            );
        }
    }
    let (code, stderr) = run("writer", &[redis, secret, ("SESSION_MAX_PER_USER", "0")]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("SESSION_MAX_PER_USER: must be at least 1"),
        "{stderr}"
    );
    let (code, stderr) = run(
        "writer",
        &[
            redis,
            secret,
            ("SESSION_TRUSTED_ORIGINS", "https://spa.example/app"),
        ],
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("SESSION_TRUSTED_ORIGINS: \"https://spa.example/app\" is not an origin"),
        "{stderr}"
    );
    let (code, stderr) = run(
        "writer",
        &[redis, secret, ("TRUSTED_GATEWAYS", "10.0.0.0/8, gateway")],
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("TRUSTED_GATEWAYS: \"gateway\" is not an IP address or CIDR range"),
        "{stderr}"
    );
    for (name, variable) in [("writer", "WRITER_ADDR"), ("reader", "READER_ADDR")] {
        let (code, stderr) = run(name, &[redis, secret, (variable, "localhost")]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{variable}: \"localhost\" is not a listen address"
            )),
            "{stderr}"
        );
    }
    let missing = ("AUTH_USERS_FILE", "/nonexistent/users.toml");
    let (code, stderr) = run("writer", &[redis, secret, missing]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("writer: AUTH_USERS_FILE: /nonexistent/users.toml: cannot read"),
        "{stderr}"
    );
}

/// Trace settings the services cannot use stop each of them at start, writer, reader and
/// gateway alike, with one line naming the variable.
#[test]
fn unusable_trace_settings_are_refused_at_start() {
    let redis = ("REDIS_URL", "redis://127.0.0.1:1/0");
    let secret = ("SESSION_SECRET", SECRET);
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
            "OTEL_EXPORTER_OTLP_ENDPOINT: \"collector:4318\" is not an http:// or https:// URL",
        ),
        (
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "ftp://collector/v1/traces",
            )],
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: \"ftp://collector/v1/traces\" is not an http:// or https:// URL",
        ),
        (
            &[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            "OTEL_EXPORTER_OTLP_PROTOCOL: \"grpc\" is not supported; use http/protobuf",
        ),
        (
            &[
                endpoint,
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ],
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: \"http/json\" is not supported",
        ),
        (
            &[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")],
            "OTEL_TRACES_EXPORTER: \"zipkin\" is not an exporter here",
        ),
        (
            &[endpoint, ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")],
            "OTEL_EXPORTER_OTLP_TIMEOUT: ",
        ),
    ];
    for name in ["writer", "reader", "gateway"] {
        for (otel, expected) in cases {
            let mut env = vec![redis, secret];
            env.extend_from_slice(otel);
            let (code, stderr) = run(name, &env);
            assert_eq!(code, Some(2), "{name} {env:?}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
            assert!(
                stderr.starts_with(&format!("{name}: {expected}")),
                "{name}: {stderr:?} should start with {expected:?}"
            );
        }
    }
    // Turned off, a bad endpoint is never looked at.
    let shipped = stack::binaries::workspace_root()
        .expect("root")
        .join("routes/routes.toml");
    let shipped = shipped.to_str().expect("utf-8");
    for off in [
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ] {
        let env = [off, ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")];
        let (code, text) = check("gateway", &[shipped], &env);
        assert_eq!(code, Some(0), "{off:?}: {text}");
    }
}

/// One line naming `REDIS_URL`, exit code 2, for each service.
fn assert_refused(env: &[(&str, &str)], expected: &[&str]) {
    for name in ["writer", "reader"] {
        let (code, stderr) = run(name, env);
        assert_eq!(code, Some(2), "{name} {env:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: exactly one line, got {stderr:?}");
        assert!(
            lines[0].starts_with(&format!("{name}: REDIS_URL: ")),
            "{name}: {stderr:?}"
        );
        for part in expected {
            assert!(
                lines[0].contains(part),
                "{name}: {stderr:?} should say {part:?}"
            );
        }
    }
}

#[test]
fn a_cluster_or_sentinel_that_cannot_serve_is_refused_at_start() {
    let secret = ("SESSION_SECRET", SECRET);
    // Ports that refuse connections, held for the test: nothing else can start listening there.
    let refusing = || stack::net::RefusingPort::bind().expect("a refusing port");
    let (held_a, held_b) = (refusing(), refusing());
    let (a, b) = (held_a.addr().port(), held_b.addr().port());

    // Sentinels that do not answer.
    let url = format!("redis+sentinel://127.0.0.1:{a},127.0.0.1:{b}/mymaster");
    assert_refused(
        &[("REDIS_URL", &url), secret],
        &["no sentinel answered", &format!("127.0.0.1:{a}"), "refused"],
    );
    // Cluster seeds that do not answer.
    let url = format!("redis://127.0.0.1:{a},redis://127.0.0.1:{b}");
    assert_refused(
        &[("REDIS_URL", &url), secret],
        &[
            "no node of the Redis Cluster serves",
            &format!("127.0.0.1:{b}"),
        ],
    );

    let dir = tempfile::tempdir().expect("temp dir");
    // Sentinels that answer but watch no primary of that name.
    let sentinel =
        RedisSentinel::start(&dir.path().join("sentinel"), &Logs::Files).expect("sentinel set-up");
    let url = sentinel.url().replace("/mymaster", "/othermaster");
    assert_refused(
        &[("REDIS_URL", &url), secret],
        &[
            "no sentinel knows a primary named 'othermaster'",
            "3 of 3 asked answered",
        ],
    );
    // One Redis given as a cluster seed (cluster support disabled).
    let single = format!("redis://{}", sentinel.primary.addr());
    let url = format!("{single},{single}");
    assert_refused(&[("REDIS_URL", &url), secret], &["is not a cluster node"]);

    // A cluster that lost two of its three primaries: the survivor cannot reach a majority and
    // reports the cluster failed; the others refuse connections.
    let mut cluster =
        RedisCluster::start(&dir.path().join("cluster"), 3, 0, &Logs::Files).expect("cluster");
    let addrs = cluster.addrs();
    for victim in &addrs[1..] {
        cluster.node_mut(*victim).expect("node").kill();
    }
    let survivor = addrs[0].port().to_string();
    assert!(
        stack::net::wait_until(Duration::from_secs(15), || {
            topology::redis_cli(&["-p", &survivor, "CLUSTER", "INFO"])
                .is_ok_and(|info| info.contains("cluster_state:fail"))
        }),
        "the survivor notices it is alone"
    );
    assert_refused(
        &[("REDIS_URL", &cluster.url()), secret],
        &[
            "no node of the Redis Cluster serves",
            "cluster_state:fail",
            "refused",
        ],
    );
}

#[test]
fn gateway_refuses_an_invalid_routes_file_with_file_line_and_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let routes = dir.path().join("routes.toml");
    std::fs::write(
        &routes,
        "[upstreams]\nwriter = [\"http://127.0.0.1:1\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"nobody\"\n",
    )
    .expect("write");
    let routes_str = routes.to_str().expect("utf-8 path");
    let (code, stderr) = run(
        "gateway",
        &[
            ("GATEWAY_ROUTES", routes_str),
            ("GATEWAY_ADDR", "127.0.0.1:0"),
            ("GATEWAY_ADMIN_ADDR", "127.0.0.1:0"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{routes_str}:6: upstream \"nobody\" is not defined"
        )),
        "{stderr}"
    );

    // `--check` says the same and exits 1; the shipped file passes.
    let check = std::process::Command::new(crate::helpers::bin("gateway"))
        .args(["--check", routes_str])
        .output()
        .expect("run --check");
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stderr).contains(":6: upstream \"nobody\""));
    // Groups are a door check's: `allow_groups` on a route without `auth` is refused too.
    std::fs::write(
        &routes,
        "[upstreams]\nwriter = [\"http://127.0.0.1:1\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"writer\"\n\
         allow_groups = [\"admins\"]\n",
    )
    .expect("write");
    let check = std::process::Command::new(crate::helpers::bin("gateway"))
        .args(["--check", routes_str])
        .output()
        .expect("run --check");
    assert_eq!(check.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stderr)
            .contains(&format!("{routes_str}:7: allow_groups needs auth")),
        "{check:?}"
    );
    let root = stack::binaries::workspace_root().expect("root");
    let shipped = root.join("routes/routes.toml");
    // `routes.toml` at the root, where users look for it, is a link to the same file.
    assert_eq!(
        std::fs::canonicalize(root.join("routes.toml")).expect("routes.toml"),
        std::fs::canonicalize(&shipped).expect("routes/routes.toml")
    );
    let check = std::process::Command::new(crate::helpers::bin("gateway"))
        .arg("--check")
        .arg(&shipped)
        .output()
        .expect("run --check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("OK (5 routes, 2 upstreams)"));

    // The number of workers is checked like every other setting.
    for workers in ["0", "many"] {
        let (code, stderr) = run("gateway", &[("GATEWAY_WORKERS", workers)]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "gateway: GATEWAY_WORKERS: \"{workers}\" is not a number of threads above 0"
            )),
            "{stderr}"
        );
    }
    // So is the cap on client connections.
    for max in ["0", "-5", "lots"] {
        let (code, stderr) = run("gateway", &[("GATEWAY_MAX_CONNECTIONS", max)]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "gateway: GATEWAY_MAX_CONNECTIONS: \"{max}\" is not a number of connections above 0"
            )),
            "{stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

/// `binary --check [args]` with `env` only (nothing from the test's own environment): exit
/// code, and stdout then stderr.
pub(crate) fn check(binary: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = std::process::Command::new(crate::helpers::bin(binary))
        .arg("--check")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|err| panic!("run {binary} --check: {err}"));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

#[test]
fn the_writer_refuses_a_bad_providers_file_with_file_line_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("providers.toml");
    let path = file.to_str().expect("utf-8").to_owned();
    let good = "[providers.corp]\n\
                issuer = \"https://id.example.com\"\n\
                client_id = \"one-origin\"\n\
                client_secret = \"${CORP_SECRET}\"\n\
                label = \"Sign in with Corp\"\n";
    let base = [
        ("REDIS_URL", "redis://127.0.0.1:1/0"),
        ("SESSION_SECRET", SECRET),
        ("AUTH_PROVIDERS_FILE", path.as_str()),
        ("CORP_SECRET", "a-client-secret"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        env
    };
    let public = ("PUBLIC_URL", "https://app.example.com");

    std::fs::write(&file, good).expect("write");
    let (code, out) = check("writer", &[], &with(&[public]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("writer: the settings are valid"), "{out}");
    // The validation is the start's: the service itself refuses what --check refuses.
    let (code, out) = check("writer", &[], &with(&[]));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.starts_with("writer: PUBLIC_URL: is required"), "{out}");
    let (code, out) = run(
        "writer",
        &with(&[("PUBLIC_URL", "https://app.example.com/app")]),
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.starts_with("writer: PUBLIC_URL: "), "{out}");

    for (text, expected) in [
        (
            good.replace("\"${CORP_SECRET}\"", "\"hunter2\""),
            format!(
                "writer: AUTH_PROVIDERS_FILE: {path}:4: providers.corp.client_secret: write ${{NAME}}"
            ),
        ),
        (
            good.replace("https://id.example.com", "http://id.example.com"),
            format!(
                "writer: AUTH_PROVIDERS_FILE: {path}:2: providers.corp.issuer: must be an https:// URL"
            ),
        ),
        (
            good.replace("label =", "lable ="),
            format!("writer: AUTH_PROVIDERS_FILE: {path}:5: unknown field `lable`"),
        ),
        (
            good.replace("CORP_SECRET", "UNSET_SECRET"),
            format!(
                "writer: AUTH_PROVIDERS_FILE: {path}:4: providers.corp.client_secret: the variable UNSET_SECRET is not set"
            ),
        ),
    ] {
        std::fs::write(&file, &text).expect("write");
        let (code, out) = check("writer", &[], &with(&[public]));
        assert_eq!(code, Some(2), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {out}");
        assert!(lines[0].starts_with(&expected), "{out}\nwanted {expected}");
        // And the writer does not start on it.
        let (code, log) = run("writer", &with(&[public]));
        assert_eq!(code, Some(2), "{log}");
        assert!(log.contains(&expected), "{log}");
    }
}
