//! Parsing and validating `routes.toml`.
//!
//! ```toml
//! [settings]                               # optional
//! request_timeout = "30s"
//! connect_timeout = "2s"
//! trusted_proxies = ["10.0.0.0/8"]
//!
//! [upstreams]
//! writer = ["${WRITER_URL:-http://127.0.0.1:8090}"]
//! reader = ["http://127.0.0.1:8091", "http://127.0.0.1:8092"]
//!
//! [[routes]]
//! path = "/login"
//! upstream = "writer"
//! timeout = "10s"                          # optional, overrides request_timeout
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::{
    interpolate::interpolate,
    table::{Route, RouteTable, Settings, Target, Upstream},
};

/// A routes file that cannot be used, displayed as `file:line: reason`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {reason}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct RoutesError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    settings: Option<Spanned<RawSettings>>,
    upstreams: Spanned<BTreeMap<String, Spanned<Vec<Spanned<String>>>>>,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    request_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: Spanned<String>,
    upstream: Spanned<String>,
    timeout: Option<Spanned<String>>,
}

/// Reads and validates the routes file at `path`.
pub fn load(path: &Path) -> Result<RouteTable, RoutesError> {
    let text = std::fs::read_to_string(path).map_err(|err| RoutesError {
        file: path.to_owned(),
        line: None,
        reason: format!("cannot read: {err}"),
    })?;
    parse(path, &text, |name| std::env::var(name).ok())
}

/// Validates routes file `text` (`file` names it in errors; `env` resolves `${VAR}`).
pub fn parse(
    file: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RouteTable, RoutesError> {
    let error = |span: Option<Range<usize>>, reason: String| RoutesError {
        file: file.to_owned(),
        line: span.map(|span| line_of(text, span.start)),
        reason,
    };

    let raw: RawFile =
        toml::from_str(text).map_err(|err| error(err.span(), err.message().trim().to_owned()))?;

    // Values may contain ${VAR}; errors point at the value's line.
    let value = |spanned: &Spanned<String>| {
        interpolate(spanned.get_ref(), &env).map_err(|reason| error(Some(spanned.span()), reason))
    };
    let duration = |spanned: &Spanned<String>, what: &str| -> Result<Duration, RoutesError> {
        let raw = value(spanned)?;
        match humantime::parse_duration(raw.trim()) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err(error(
                Some(spanned.span()),
                format!("{what} must be more than zero"),
            )),
            Err(err) => Err(error(
                Some(spanned.span()),
                format!("{what} {raw:?} is not a duration like \"500ms\" or \"30s\" ({err})"),
            )),
        }
    };

    let mut settings = Settings::default();
    if let Some(raw_settings) = &raw.settings {
        let raw_settings = raw_settings.get_ref();
        if let Some(timeout) = &raw_settings.request_timeout {
            settings.request_timeout = duration(timeout, "request_timeout")?;
        }
        if let Some(timeout) = &raw_settings.connect_timeout {
            settings.connect_timeout = duration(timeout, "connect_timeout")?;
        }
        for proxy in &raw_settings.trusted_proxies {
            let text = value(proxy)?;
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    error(
                        Some(proxy.span()),
                        format!("trusted_proxies: {text:?} is not an IP address or CIDR range"),
                    )
                })?;
            settings.trusted_proxies.push(net);
        }
    }

    let mut upstreams = BTreeMap::new();
    for (name, targets) in raw.upstreams.get_ref() {
        if targets.get_ref().is_empty() {
            return Err(error(
                Some(targets.span()),
                format!("upstream {name:?} has no targets"),
            ));
        }
        let mut parsed = Vec::new();
        for target in targets.get_ref() {
            let url = value(target)?;
            let target_parsed = Target::parse(url.trim()).map_err(|reason| {
                error(Some(target.span()), format!("upstream {name:?}: {reason}"))
            })?;
            if parsed.contains(&target_parsed) {
                return Err(error(
                    Some(target.span()),
                    format!("upstream {name:?} lists {} twice", target_parsed.url()),
                ));
            }
            parsed.push(target_parsed);
        }
        upstreams.insert(
            name.clone(),
            Arc::new(Upstream {
                name: name.clone(),
                targets: parsed,
            }),
        );
    }

    if raw.routes.is_empty() {
        return Err(error(None, "no [[routes]]: nothing would be served".into()));
    }
    let mut routes = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for route in &raw.routes {
        let raw_route = route.get_ref();
        let path = normalize_path(&value(&raw_route.path)?)
            .map_err(|reason| error(Some(raw_route.path.span()), reason))?;
        let line = line_of(text, raw_route.path.span().start);
        if let Some(first) = seen.insert(path.clone(), line) {
            return Err(error(
                Some(raw_route.path.span()),
                format!("path {path:?} is already routed on line {first}"),
            ));
        }
        let name = value(&raw_route.upstream)?;
        let upstream = upstreams.get(&name).cloned().ok_or_else(|| {
            let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            error(
                Some(raw_route.upstream.span()),
                format!(
                    "upstream {name:?} is not defined in [upstreams] (defined: {})",
                    known.join(", ")
                ),
            )
        })?;
        let timeout = match &raw_route.timeout {
            Some(timeout) => duration(timeout, "timeout")?,
            None => settings.request_timeout,
        };
        routes.push(Route {
            path,
            upstream,
            timeout,
        });
    }

    Ok(RouteTable::new(routes, upstreams, settings))
}

/// A route path: starts with `/`, has no query, fragment or empty/dot segments; a trailing
/// slash is dropped (`/api/` routes like `/api`).
fn normalize_path(raw: &str) -> Result<String, String> {
    let path = raw.trim();
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with /"));
    }
    if path.contains(['?', '#', ' ', '%']) {
        return Err(format!(
            "path {path:?} must be a plain path prefix (no query, fragment, spaces or escapes)"
        ));
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed
        .split('/')
        .skip(1)
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(format!("path {path:?} has an empty, . or .. segment"));
    }
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_err(text: &str) -> RoutesError {
        parse(Path::new("routes.toml"), text, no_env).expect_err("must be refused")
    }

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
    fn unknown_upstream_names_the_line() {
        let text = "[upstreams]\nwriter = [\"http://x:1\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"wirter\"\n";
        let err = parse_err(text);
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.reason.contains("\"wirter\" is not defined"), "{err}");
        assert!(err.reason.contains("defined: writer"), "{err}");
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
        let err = parse_err(
            "[upstreams]\nw = [\"https://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n",
        );
        assert!(err.reason.contains("http://"), "{err}");
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

    #[test]
    fn unset_variables_are_errors() {
        let err = parse_err(
            "[upstreams]\nw = [\"${NOPE}\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n",
        );
        assert!(err.reason.contains("NOPE is not set"), "{err}");
        assert_eq!(err.line, Some(2));
    }
}
