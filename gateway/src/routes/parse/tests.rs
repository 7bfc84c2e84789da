//! The whole of [`super::parse`]: a file read end to end, and the mistakes any step may find.

use std::{path::Path, time::Duration};

use super::{
    super::Settings,
    testing::{no_env, parse, parse_err},
};

const GOOD: &str = r#"
[upstreams]
writer = ["${WRITER_URL:-http://127.0.0.1:8090}"]
reader = ["http://127.0.0.1:8091", "http://127.0.0.1:8092"]

[[routes]]
path = "/"
upstream = "reader"

[[routes]]
path = "/login/"
upstream = "writer"
timeout = "5s"
"#;

#[test]
fn parses_the_schema() {
    let table = parse(Path::new("routes.toml"), GOOD, no_env).expect("valid");
    let login = table.route("/login").expect("routed");
    assert_eq!(login.path, "/login");
    assert_eq!(login.upstream.name, "writer");
    assert_eq!(login.timeout, Duration::from_secs(5));
    assert_eq!(login.upstream.targets[0].url(), "http://127.0.0.1:8090");
    let root = table.route("/x").expect("routed");
    assert_eq!(root.upstream.targets.len(), 2);
    assert_eq!(root.timeout, Settings::default().request_timeout);
}

#[test]
fn interpolates_from_the_environment() {
    let env = |name: &str| (name == "WRITER_URL").then(|| "http://writer:8090".to_owned());
    let table = parse(Path::new("r.toml"), GOOD, env).expect("valid");
    let login = table.route("/login").expect("routed");
    assert_eq!(login.upstream.targets[0].url(), "http://writer:8090");
}

#[test]
fn syntax_errors_carry_file_and_line() {
    let err = parse_err("[upstreams]\nwriter = [\"http://x:1\"\n\n[[routes]]\n");
    assert_eq!(err.file, Path::new("routes.toml"));
    assert!(err.line.is_some(), "{err}");
    assert!(err.to_string().starts_with("routes.toml:"), "{err}");
}

#[test]
fn unknown_keys_are_errors() {
    let err = parse_err(
        "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\ntimout = \"1s\"\n",
    );
    assert!(err.reason.contains("timout"), "{err}");
    assert_eq!(err.line, Some(6), "{err}");
    let err = parse_err("[upstream]\nw = [\"http://x:1\"]\n");
    assert!(err.reason.contains("upstream"), "{err}");
}

#[test]
fn invalid_values_are_explained() {
    let base = "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\nupstream = \"w\"\n";
    for (path_line, expected) in [
        ("path = \"login\"", "must start with /"),
        ("path = \"/a?b\"", "plain path prefix"),
        ("path = \"/a//b\"", "empty, . or .. segment"),
        ("path = \"/a/../b\"", "empty, . or .. segment"),
    ] {
        let err = parse_err(&format!("{base}{path_line}\n"));
        assert!(err.reason.contains(expected), "{path_line}: {err}");
        assert_eq!(err.line, Some(5), "{err}");
    }
    let err =
        parse_err("[upstreams]\nw = [\"ws://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n");
    assert!(err.reason.contains("http:// or https://"), "{err}");
    assert_eq!(err.line, Some(2));
    let err = parse_err("[upstreams]\nw = []\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n");
    assert!(err.reason.contains("no targets"), "{err}");
    let err = parse_err("[upstreams]\nw = [\"http://x:1\"]\n");
    assert!(err.reason.contains("no [[routes]]"), "{err}");
    let err = parse_err(
        "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n",
    );
    assert!(err.reason.contains("already routed on line 4"), "{err}");
    let err = parse_err(
        "[settings]\nrequest_timeout = \"soon\"\n[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n",
    );
    assert!(err.reason.contains("not a duration"), "{err}");
    assert_eq!(err.line, Some(2));
    let err = parse_err(
        "[settings]\ntrusted_proxies = [\"10.0.0.0/33\"]\n[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n",
    );
    assert!(err.reason.contains("CIDR"), "{err}");
}

/// The full example of the book's routes.toml reference must stay a valid file, with every key
/// it shows.
#[test]
fn the_reference_example_is_valid() {
    let reference = include_str!("../../../../docs/src/reference/routes.md");
    let start = reference.find("```toml\n").expect("example") + "```toml\n".len();
    let example = &reference[start..start + reference[start..].find("```").expect("end")];
    let table = parse(Path::new("docs/src/reference/routes.md"), example, no_env)
        .expect("the reference's example");
    assert_eq!(table.settings.max_header_bytes, 16 * 1024);
    assert!(table.settings.forwarded);
    let reader = &table.upstreams["reader"];
    assert_eq!(reader.targets.len(), 2);
    assert!(reader.health_check.is_some());
    let login = table.route("/login").expect("route");
    assert_eq!(login.max_body, Some(64 * 1024));
    assert_eq!(
        login.limit.as_ref().map(|limit| limit.name.as_str()),
        Some("per-client")
    );
    assert!(!login.compress, "off by default");
    assert!(table.route("/assets").expect("route").compress);
    assert_eq!(table.cors.as_ref().map(|c| c.origins.len()), Some(1));
}

#[test]
fn sizes_cors_and_settings_are_validated() {
    let route = |extra: &str| {
        format!(
            "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n{extra}\n"
        )
    };
    let table = parse(Path::new("r"), &route("max_body = 2048"), no_env).expect("bytes");
    assert_eq!(table.routes[0].max_body, Some(2048));
    let table = parse(Path::new("r"), &route("max_body = \"1MB\""), no_env).expect("unit");
    assert_eq!(table.routes[0].max_body, Some(1_000_000));
    assert!(
        parse_err(&route("max_body = \"1 parsec\""))
            .reason
            .contains("unknown unit")
    );
    assert!(
        parse_err(&route("max_body = 0"))
            .reason
            .contains("more than zero")
    );
    let cors = |origins: &str| format!("{}[cors]\norigins = [{origins}]\n", route(""));
    assert!(parse_err(&cors("\"*\"")).reason.contains("not allowed"));
    assert!(
        parse_err(&cors("\"https://a.test/path\""))
            .reason
            .contains("path")
    );
    assert!(
        parse_err(&cors("\"ftp://a.test\""))
            .reason
            .contains("not an origin")
    );
    let table = parse(Path::new("r"), &cors("\"HTTPS://App.Test:8443\""), no_env).expect("origin");
    assert_eq!(table.cors.expect("cors").origins, ["https://app.test:8443"]);
    let settings = |line: &str| format!("[settings]\n{line}\n{}", route(""));
    assert!(
        parse_err(&settings("max_header_bytes = 1024"))
            .reason
            .contains("at least 8KiB")
    );
    assert!(
        parse_err(&settings("idle_timeout = \"0s\""))
            .reason
            .contains("more than zero")
    );
    assert!(parse_err(&settings("forwarded = \"yes\"")).line.is_some());
}

#[test]
fn unset_variables_are_errors() {
    let err =
        parse_err("[upstreams]\nw = [\"${NOPE}\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n");
    assert!(err.reason.contains("NOPE is not set"), "{err}");
    assert_eq!(err.line, Some(2));
}

/// CA files are read once the whole file is valid: a mistake elsewhere is told first, and a CA
/// file that cannot be used is told at the line of its `ca`.
#[test]
fn ca_files_are_read_after_validation() {
    let upstream = "[upstreams.api]\ntargets = [\"https://a:1\"]\nca = \"/nonexistent/ca.pem\"\n";
    let err = parse_err(&format!(
        "{upstream}[[routes]]\npath = \"/\"\nupstream = \"api\"\ntimeout = \"0s\"\n"
    ));
    assert_eq!(err.reason, "timeout must be more than zero", "{err}");
    let err = parse_err(&format!(
        "{upstream}[[routes]]\npath = \"/\"\nupstream = \"api\"\n"
    ));
    assert!(
        err.reason
            .starts_with("upstream \"api\": ca /nonexistent/ca.pem: "),
        "{err}"
    );
    assert_eq!(err.line, Some(3), "{err}");
}
