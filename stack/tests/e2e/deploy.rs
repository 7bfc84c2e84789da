//! The container deployment, checked without a Docker engine: `docker-compose config -q` must
//! accept the compose files, every `environment:` entry must be a variable the service's binary
//! reads, and the Dockerfile must build and copy exactly the workspace's service binaries.
//!
//! `docker-compose` (Debian's) is needed for the first check: skipped locally without it, required
//! in CI (`CI` set; `.ci/run` installs it).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    stack::binaries::workspace_root().expect("workspace root")
}

fn compose() -> Yaml {
    let text =
        std::fs::read_to_string(root().join("docker-compose.yml")).expect("docker-compose.yml");
    YamlLoader::load_from_str(&text)
        .expect("valid YAML")
        .into_iter()
        .next()
        .expect("a document")
}

fn docker_compose() -> Option<PathBuf> {
    let found = stack::binaries::on_path("docker-compose");
    let missing = found
        .is_none()
        .then(|| "docker-compose is not installed (apt-get install -y docker-compose)".to_owned());
    crate::helpers::can_run("`docker-compose config`", missing);
    found
}

#[test]
fn docker_compose_config_accepts_the_compose_files() {
    let Some(docker_compose) = docker_compose() else {
        return;
    };
    // A fresh clone plus the one step docs/src/deploying/docker.md asks for: `cp .env.example .env`.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("routes")).expect("routes/");
    for file in [
        "docker-compose.yml",
        "docker-compose.scale.yml",
        "docker-compose.cluster.yml",
        "routes/routes.toml",
        "Dockerfile",
    ] {
        std::fs::copy(root().join(file), dir.path().join(file)).expect("copy");
    }
    std::fs::copy(root().join(".env.example"), dir.path().join(".env")).expect(".env");
    for files in [
        &["docker-compose.yml"][..],
        &["docker-compose.yml", "docker-compose.scale.yml"],
        &["docker-compose.yml", "docker-compose.cluster.yml"],
    ] {
        let mut command = Command::new(&docker_compose);
        command.current_dir(dir.path());
        for file in files {
            command.args(["-f", file]);
        }
        let output = command
            .args(["config", "-q"])
            .output()
            .expect("docker-compose runs");
        assert!(
            output.status.success(),
            "docker-compose {files:?} config -q: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `key` of a compose service, looking through a `<<:` merge (YAML merge keys are not resolved
/// by the parser).
fn field<'a>(service: &'a Yaml, key: &str) -> &'a Yaml {
    let own = &service[key];
    if own.is_badvalue() {
        &service["<<"][key]
    } else {
        own
    }
}

/// The keys of a mapping, with those it merges (`<<: *anchor`) in.
fn keys_with_merged(mapping: &Yaml) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (key, value) in mapping.as_hash().into_iter().flatten() {
        match key.as_str() {
            Some("<<") => keys.extend(keys_with_merged(value)),
            Some(key) => {
                keys.insert(key.to_owned());
            }
            None => {}
        }
    }
    keys
}

/// The binary a service of ours runs (services built from this repository's Dockerfile).
fn our_binary(service: &Yaml) -> Option<&str> {
    if field(service, "build").is_badvalue() {
        return None;
    }
    field(service, "command")[0].as_str()
}

/// The crates whose code each binary runs.
fn crates_of(binary: &str) -> &'static [&'static str] {
    match binary {
        "writer" => &["writer", "session", "common"],
        "reader" => &["reader", "session", "common"],
        "gateway" => &["gateway", "common"],
        other => panic!("unknown binary {other:?}"),
    }
}

/// The text of every Rust source file under `<crate>/src` for each of `crates`.
pub(crate) fn rust_sources(crates: &[&str]) -> Vec<String> {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(std::fs::read_to_string(&path).expect("source"));
            }
        }
    }
    let mut found = Vec::new();
    for name in crates {
        walk(&root().join(name).join("src"), &mut found);
    }
    found
}

/// Every string literal in the Rust sources of `crates`.
fn string_literals(crates: &[&str]) -> BTreeSet<String> {
    rust_sources(crates)
        .iter()
        .flat_map(|text| {
            text.split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_compose_environment_variable_is_read_by_its_binary() {
    let compose = compose();
    let services = compose["services"].as_hash().expect("services");
    let routes =
        std::fs::read_to_string(root().join("routes/routes.toml")).expect("routes/routes.toml");
    let mut checked = BTreeMap::new();
    for (name, service) in services {
        let name = name.as_str().expect("service name");
        let Some(binary) = our_binary(service) else {
            assert!(
                service["image"]
                    .as_str()
                    .is_some_and(|image| image.contains("redis:7")),
                "{name}"
            );
            continue;
        };
        let known = string_literals(crates_of(binary));
        let environment = keys_with_merged(&service["environment"]);
        for variable in &environment {
            let read = known.contains(variable)
                || (binary == "gateway" && routes.contains(&format!("${{{variable}")));
            assert!(read, "service {name}: {variable} is not read by `{binary}`");
        }
        // Least privilege: settings by name only (no `env_file`, which hands every container
        // all of .env), a read-only root, no capabilities.
        assert!(field(service, "env_file").is_badvalue(), "{name}: env_file");
        assert_eq!(field(service, "read_only").as_bool(), Some(true), "{name}");
        assert_eq!(
            field(service, "cap_drop")[0].as_str(),
            Some("ALL"),
            "{name}"
        );
        if binary == "gateway" {
            for secret in ["SESSION_SECRET", "REDIS_URL"] {
                assert!(
                    !environment.contains(secret),
                    "the gateway must not get {secret}"
                );
            }
            let volumes: Vec<&str> = service["volumes"]
                .as_vec()
                .expect("volumes")
                .iter()
                .filter_map(Yaml::as_str)
                .collect();
            assert_eq!(
                volumes,
                ["./routes:/etc/gateway:ro"],
                "the gateway sees its routes and nothing else of the repository"
            );
        }
        checked.insert(name.to_owned(), binary.to_owned());
    }
    assert_eq!(
        checked.values().cloned().collect::<BTreeSet<_>>(),
        ["gateway", "reader", "writer"].map(String::from).into(),
        "each service binary runs in one service"
    );
    // Only the gateway is published.
    for (name, service) in services {
        let published = !service["ports"].is_badvalue();
        assert_eq!(
            published,
            name.as_str() == Some("gateway"),
            "{name:?} ports"
        );
    }
}

#[test]
fn the_dockerfile_builds_and_copies_exactly_the_service_binaries() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let stages: BTreeSet<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .filter_map(|line| {
            line.split_whitespace()
                .skip_while(|w| !w.eq_ignore_ascii_case("AS"))
                .nth(1)
        })
        .collect();
    for line in dockerfile.lines() {
        for from in line
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("--from="))
        {
            assert!(
                stages.contains(from),
                "COPY --from={from}: no such stage in {stages:?}"
            );
        }
    }
    let built: BTreeSet<&str> = dockerfile
        .lines()
        .filter(|line| line.contains("cargo build"))
        .flat_map(|line| line.split(" -p ").skip(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let copied: BTreeSet<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("COPY --from=binaries"))
        .flat_map(str::split_whitespace)
        .filter_map(|word| word.strip_prefix("/out/"))
        .collect();

    // The workspace's service binaries, from cargo itself.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let metadata = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).expect("JSON");
    let binaries: BTreeSet<String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|package| package["targets"].as_array().cloned().unwrap_or_default())
        .filter(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.contains(&"bin".into()))
        })
        .filter_map(|target| target["name"].as_str().map(str::to_owned))
        .filter(|name| name != "stack")
        .collect();
    let as_strings =
        |set: &BTreeSet<&str>| set.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(
        as_strings(&built),
        binaries,
        "packages built by the Dockerfile"
    );
    assert_eq!(
        as_strings(&copied),
        binaries,
        "binaries copied into the runtime image"
    );

    // Every compose service runs one of them.
    let compose = compose();
    for (name, service) in compose["services"].as_hash().expect("services") {
        if let Some(binary) = our_binary(service) {
            assert!(binaries.contains(binary), "{name:?} runs {binary:?}");
        }
    }
}

/// Every environment variable the code reads as a setting, from the sources: the first string
/// literal after each `env::` call.
pub(crate) fn settings_read_by_the_code() -> BTreeSet<String> {
    /// Read by the code, but not settings of the stack.
    const NOT_SETTINGS: [&str; 4] = ["PATH", "CARGO", "CI", "TEST_LOG"];
    let is_name =
        |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    let sources = rust_sources(&["common", "session", "writer", "reader", "gateway", "stack"]);
    // `const VARIABLE: &str = "AUTH_PROVIDERS_FILE";`: a name read through a constant.
    let mut constants: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for text in &sources {
        for line in text.lines() {
            let line = line
                .trim()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            let Some(rest) = line.strip_prefix("const ") else {
                continue;
            };
            if let Some((ident, value)) = rest.split_once(": &str = \"") {
                let value = value.trim_end_matches("\";");
                if is_name(value) {
                    constants
                        .entry(ident.to_owned())
                        .or_default()
                        .push(value.to_owned());
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    for text in &sources {
        for (at, _) in text.match_indices("env::") {
            let after = &text[at..(at + 160).min(text.len())];
            // `env::var(NAME)`, `env::optional(oidc::config::VARIABLE)`: a constant's name.
            let argument = after
                .split_once('(')
                .and_then(|(_, rest)| rest.split([',', ')']).next())
                .map(str::trim)
                .and_then(|path| path.rsplit("::").next())
                .and_then(|ident| constants.get(ident));
            // Constants of one name in several crates: each may be the one meant.
            if let Some(names) = argument {
                found.extend(
                    names
                        .iter()
                        .filter(|name| !NOT_SETTINGS.contains(&name.as_str()))
                        .cloned(),
                );
                continue;
            }
            let Some(literal) = after.split('"').nth(1) else {
                continue;
            };
            // The literal is an argument of this call, not of a later statement (a call in a
            // struct literal may have no `;` within reach).
            let in_this_statement = match (after.find('"'), after.find(';')) {
                (Some(quote), Some(end)) => quote < end,
                (quote, None) => quote.is_some(),
                _ => false,
            };
            if is_name(literal) && !NOT_SETTINGS.contains(&literal) && in_this_statement {
                found.insert(literal.to_owned());
            }
        }
    }
    found
}

/// The book's page of settings: every one is named there in backticks, in its table.
const CONFIGURATION_REFERENCE: &str = "docs/src/reference/configuration.md";

/// The book's chapter on the tests, which lists the tests `on_every_store!` registers.
const TESTING_CHAPTER: &str = "docs/src/testing.md";

#[test]
fn every_setting_is_in_env_example_and_the_configuration_reference() {
    let example = std::fs::read_to_string(root().join(".env.example")).expect(".env.example");
    let reference = std::fs::read_to_string(root().join(CONFIGURATION_REFERENCE))
        .expect(CONFIGURATION_REFERENCE);
    let settings = settings_read_by_the_code();
    assert!(
        settings.contains("SESSION_MAX_PER_USER") && settings.contains("REDIS_URL"),
        "{settings:?}"
    );
    for setting in &settings {
        assert!(
            example
                .lines()
                .any(|line| line.starts_with(&format!("{setting}="))),
            "{setting} is read by the code but missing from .env.example"
        );
        assert!(
            reference.contains(&format!("`{setting}`")),
            "{setting} is not in {CONFIGURATION_REFERENCE}"
        );
    }
}

/// `<binary> healthcheck` (what the image's health checks run, instead of `curl`): exit 0 while
/// the service answers on the address it reads, 1 with one line once it does not.
#[test]
fn each_binary_checks_its_own_health() {
    let stack = crate::helpers::TestStack::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let healthcheck = |binary: &str, variable: &str, addr: String| {
        let output = Command::new(crate::helpers::bin(binary))
            .arg("healthcheck")
            .env_clear()
            .env(variable, addr)
            .current_dir(dir.path())
            .output()
            .expect("run healthcheck");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let all_interfaces = |addr: std::net::SocketAddr| format!("0.0.0.0:{}", addr.port());
    for (binary, variable, addr) in [
        ("writer", "WRITER_ADDR", stack.writer_addrs[0]),
        ("reader", "READER_ADDR", stack.reader_addr),
        ("gateway", "GATEWAY_ADMIN_ADDR", stack.admin_addr),
    ] {
        assert_eq!(
            healthcheck(binary, variable, addr.to_string()),
            (Some(0), String::new()),
            "{binary}"
        );
        assert_eq!(
            healthcheck(binary, variable, all_interfaces(addr)).0,
            Some(0),
            "{binary} listening on all interfaces is probed on loopback"
        );
        let refusing = stack::net::RefusingPort::bind().expect("a refusing port");
        let nobody = refusing.addr().to_string();
        let (code, stderr) = healthcheck(binary, variable, nobody.clone());
        assert_eq!(code, Some(1), "{binary}: {stderr}");
        assert!(
            stderr.starts_with(&format!("{binary} healthcheck: GET http://{nobody}/"))
                && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
}

/// The manifests in `deploy/kubernetes/`.
fn kubernetes_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .expect("deploy/kubernetes")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every document of every manifest in `deploy/kubernetes/`.
fn kubernetes_manifests() -> Vec<(String, Yaml)> {
    kubernetes_files()
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).expect("manifest");
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            YamlLoader::load_from_str(&text)
                .unwrap_or_else(|err| panic!("{name}: {err}"))
                .into_iter()
                .map(move |document| (name.clone(), document))
        })
        .collect()
}

/// The Kubernetes example validates against the Kubernetes schemas (PyPI's
/// `kubernetes-validate`, offline; `.ci/run` installs it; skipped locally without it).
#[test]
fn the_kubernetes_manifests_validate_against_the_schemas() {
    let missing = stack::binaries::on_path("kubernetes-validate")
        .is_none()
        .then(|| "not installed (pip install kubernetes-validate)".to_owned());
    if !crate::helpers::can_run("`kubernetes-validate`", missing) {
        return;
    }
    let manifests = kubernetes_files();
    assert!(manifests.len() >= 5, "{manifests:?}");
    let output = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&manifests)
        .output()
        .expect("kubernetes-validate runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What the schemas cannot say: each Deployment probes `/readyz` and `/healthz`, asks for
/// resources, runs unprivileged on a read-only root; the gateway gets no secret and follows its
/// ConfigMap (mounted whole, never by subPath); the routes in it pass `gateway --check`.
#[test]
fn the_kubernetes_example_keeps_the_deployment_rules() {
    let manifests = kubernetes_manifests();
    let mut deployments = BTreeSet::new();
    for (file, document) in &manifests {
        match document["kind"].as_str() {
            Some("Deployment") => {}
            Some("ConfigMap") => {
                let routes = document["data"]["routes.toml"]
                    .as_str()
                    .expect("routes.toml");
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("routes.toml");
                std::fs::write(&path, routes).expect("write");
                let check = Command::new(crate::helpers::bin("gateway"))
                    .arg("--check")
                    .arg(&path)
                    .output()
                    .expect("gateway --check");
                assert!(
                    check.status.success(),
                    "{file}: {}",
                    String::from_utf8_lossy(&check.stderr)
                );
                continue;
            }
            _ => continue,
        }
        let name = document["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let pod = &document["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{name}"
        );
        let container = &pod["containers"][0];
        assert_eq!(container["args"][0].as_str(), Some(name.as_str()));
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz"),
            "{name}"
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz"),
            "{name}"
        );
        for resource in ["cpu", "memory"] {
            assert!(
                !container["resources"]["requests"][resource].is_badvalue(),
                "{name}: {resource}"
            );
        }
        assert!(
            !container["resources"]["limits"]["memory"].is_badvalue(),
            "{name}"
        );
        let security = &container["securityContext"];
        assert_eq!(
            security["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{name}"
        );
        assert_eq!(
            security["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{name}"
        );
        let secrets: Vec<&str> = container["env"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter(|variable| !variable["valueFrom"]["secretKeyRef"].is_badvalue())
            .filter_map(|variable| variable["name"].as_str())
            .collect();
        if name == "gateway" {
            assert!(
                secrets.is_empty(),
                "the gateway holds no secret: {secrets:?}"
            );
            let mount = &container["volumeMounts"][0];
            assert_eq!(mount["mountPath"].as_str(), Some("/etc/gateway"));
            assert!(
                mount["subPath"].is_badvalue(),
                "a subPath mount is never updated"
            );
        } else {
            assert_eq!(secrets, ["SESSION_SECRET", "REDIS_URL"], "{name}");
        }
        deployments.insert(name);
    }
    assert_eq!(
        deployments,
        ["gateway", "reader", "writer"].map(String::from).into(),
        "one Deployment per binary"
    );
}

/// The tests `on_every_store!` registers have no `#[tokio::test]` of their own in the source:
/// the book's testing chapter lists them, file by file, and this keeps the list true.
#[test]
fn the_testing_chapter_lists_every_test_that_runs_on_every_store() {
    let e2e = root().join("stack/tests/e2e");
    let mut registered = BTreeSet::new();
    for entry in std::fs::read_dir(&e2e).expect("stack/tests/e2e") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let source = std::fs::read_to_string(&path).expect("source");
        for invocation in source.split("\non_every_store!(").skip(1) {
            let names = invocation.split(");").next().expect("closing `);`");
            for name in names
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
            {
                registered.insert((file.clone(), name.to_owned()));
            }
        }
    }
    assert!(
        !registered.is_empty(),
        "no on_every_store! found in {}",
        e2e.display()
    );

    let chapter = std::fs::read_to_string(root().join(TESTING_CHAPTER)).expect(TESTING_CHAPTER);
    let block = chapter
        .split("<!-- on_every_store: begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- on_every_store: end -->").next())
        .expect("the testing chapter's list of on_every_store tests");
    let mut listed = BTreeSet::new();
    let mut file = String::new();
    for line in block.lines() {
        let line = match line.trim().strip_prefix("- `") {
            Some(rest) => {
                let (name, rest) = rest.split_once("`:").expect("- `file.rs`: names");
                file = name.to_owned();
                rest
            }
            None => line,
        };
        for name in line.split('`').skip(1).step_by(2) {
            listed.insert((file.clone(), name.to_owned()));
        }
    }
    assert_eq!(
        listed, registered,
        "the testing chapter's list (left) against the on_every_store! invocations (right)"
    );
}
