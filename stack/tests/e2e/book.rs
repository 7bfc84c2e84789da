//! The book (`docs/`, an mdBook) cannot drift from the code: every setting the binaries read,
//! every routes.toml key of the schema the gateway generates and every HTTP path the services
//! answer is in its reference chapters, and those chapters name nothing the code does not
//! know; every internal link resolves; every providers example passes `writer --check` and
//! every whole routes.toml example `gateway --check`; and `mdbook build` passes.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    config::check,
    deploy::{rust_sources, settings_read_by_the_code},
    helpers::{SECRET, can_run},
};

fn root() -> PathBuf {
    stack::binaries::workspace_root().expect("workspace root")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every page of the book (`docs/src/**/*.md`), as (path, text).
fn pages() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, found: &mut Vec<(PathBuf, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
            .flatten()
            .map(|entry| entry.path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                let text = read(&path);
                found.push((path, text));
            }
        }
    }
    let mut found = Vec::new();
    walk(&root().join("docs/src"), &mut found);
    assert!(found.len() > 5, "the book has pages: {found:?}");
    found
}

/// The text of the reference page `name` and the pages under `reference/<name>/`.
fn reference(name: &str) -> String {
    let dir = root().join("docs/src/reference");
    let mut text = read(&dir.join(format!("{name}.md")));
    for (path, page) in pages() {
        if path.starts_with(dir.join(name)) {
            text.push_str(&page);
        }
    }
    text
}

/// The spans written in backticks in `text`, outside fenced code blocks.
fn code_spans(text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            spans.extend(line.split('`').skip(1).step_by(2));
        }
    }
    spans
}

/// The fenced blocks of `text` whose info string starts with `lang`, without the indentation
/// of their fence (a block inside a list item is indented).
fn code_blocks(text: &str, lang: &str) -> Vec<String> {
    struct Open {
        indent: usize,
        wanted: bool,
        body: String,
    }
    let mut blocks = Vec::new();
    let mut open: Option<Open> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let fence = trimmed.starts_with("```");
        match open.as_mut() {
            None if fence => {
                open = Some(Open {
                    indent,
                    wanted: trimmed.trim_start_matches('`').starts_with(lang),
                    body: String::new(),
                });
            }
            None => {}
            Some(_) if fence => {
                let block = open.take().expect("an open block");
                if block.wanted {
                    blocks.push(block.body);
                }
            }
            Some(block) => {
                block.body.push_str(&line[block.indent.min(indent)..]);
                block.body.push('\n');
            }
        }
    }
    blocks
}

#[test]
fn the_configuration_reference_is_every_setting_the_code_reads() {
    let page = reference("configuration");
    let mut settings = settings_read_by_the_code();
    // The shipped routes file's `${WRITER_URL:-…}`: read by the gateway through routes.toml.
    let routes: Vec<String> = read(&root().join("routes/routes.toml"))
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect();
    settings.extend(
        variables(&routes.join("\n"))
            .into_iter()
            .map(|variable| variable.split(":-").next().unwrap_or_default().to_owned()),
    );
    let named: BTreeSet<&str> = page
        .lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            let first_cell = line.split('|').nth(1).unwrap_or_default();
            first_cell.split('`').skip(1).step_by(2)
        })
        .filter(|name| {
            name.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    for setting in &settings {
        assert!(
            named.contains(setting.as_str()),
            "{setting} is read by the code but has no row in docs/src/reference/configuration.md"
        );
    }
    let stale: Vec<&&str> = named
        .iter()
        .filter(|name| !settings.contains(**name))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/src/reference/configuration.md has rows for {stale:?}, which no binary reads"
    );
}

/// Every property name in the schema, at every depth.
fn schema_keys(schema: &serde_json::Value, keys: &mut BTreeSet<String>) {
    match schema {
        serde_json::Value::Object(object) => {
            for (name, value) in object {
                if matches!(name.as_str(), "properties" | "patternProperties") {
                    if let Some(properties) = value.as_object() {
                        for (key, property) in properties {
                            if name == "properties" {
                                keys.insert(key.clone());
                            }
                            schema_keys(property, keys);
                        }
                    }
                } else {
                    schema_keys(value, keys);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| schema_keys(item, keys)),
        _ => {}
    }
}

#[test]
fn the_routes_reference_names_every_key_of_the_schema() {
    // The committed schema is what `gateway schema` prints (gateway's schema tests).
    let schema: serde_json::Value =
        serde_json::from_str(&read(&root().join("routes/routes.schema.json"))).expect("JSON");
    let mut keys = BTreeSet::new();
    schema_keys(&schema, &mut keys);
    assert!(
        keys.contains("upstreams") && keys.contains("allow_groups"),
        "{keys:?}"
    );
    let page = reference("routes");
    let blocks = code_blocks(&page, "toml");
    let mentioned: BTreeSet<&str> = code_spans(&page)
        .into_iter()
        .chain(blocks.iter().flat_map(|block| {
            // `key = …`, `[table]`, `[[routes]]`, `[upstreams.name]`: the key names of a block.
            block.lines().filter_map(|line| {
                let line = line.trim().trim_start_matches('#').trim();
                let name = line
                    .trim_start_matches('[')
                    .split([' ', '=', '.', ']'])
                    .next()?;
                Some(name)
            })
        }))
        .collect();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| !mentioned.contains(key.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes.toml keys not in docs/src/reference/routes*.md: {missing:?}"
    );
}

/// A path with its parameters written one way: `/login/{provider}` and `/login/<name>` are
/// both `/login/*`.
fn normalize(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') || segment.starts_with('<') {
                "*"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The paths the binaries answer: the services' `resource("…")`s and the gateway admin
/// listener's `"/…" =>` arms.
fn paths_the_code_answers() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for text in rust_sources(&["session", "writer", "reader"]) {
        for (at, _) in text.match_indices("resource(\"/") {
            let literal = text[at + "resource(\"".len()..]
                .split('"')
                .next()
                .unwrap_or("");
            found.insert(normalize(literal));
        }
    }
    // The admin listener's paths, and its dashboard's page and assets.
    let admin = read(&root().join("gateway/src/admin.rs"))
        + &read(&root().join("gateway/src/dashboard.rs"));
    for line in admin.lines() {
        let line = line.trim();
        if let Some((path, _)) = line
            .strip_prefix("\"/")
            .and_then(|rest| rest.split_once("\" =>"))
        {
            found.insert(format!("/{path}"));
        }
    }
    found
}

/// The paths of the HTTP reference's tables: the path of every `` `GET /path` ``-like span in
/// a table row.
fn paths_in_the_http_reference() -> BTreeSet<String> {
    let page = reference("http");
    let mut found = BTreeSet::new();
    for line in page.lines().filter(|line| line.starts_with('|')) {
        for span in line.split('`').skip(1).step_by(2) {
            let mut words = span.split_whitespace();
            let (Some(method), Some(path)) = (words.next(), words.next()) else {
                continue;
            };
            let is_method = matches!(
                method,
                "GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS"
            );
            if is_method && path.starts_with('/') {
                let path = path.split(['?', '[']).next().unwrap_or(path);
                found.insert(normalize(path));
            }
        }
    }
    found
}

#[test]
fn the_http_reference_is_every_path_the_binaries_answer() {
    let code = paths_the_code_answers();
    assert!(
        code.contains("/login/*/callback") && code.contains("/routes") && code.contains("/"),
        "{code:?}"
    );
    let book = paths_in_the_http_reference();
    let missing: Vec<_> = code.difference(&book).collect();
    assert!(
        missing.is_empty(),
        "answered but not in docs/src/reference/http.md: {missing:?}"
    );
    let stale: Vec<_> = book.difference(&code).collect();
    assert!(
        stale.is_empty(),
        "in docs/src/reference/http.md but answered by nothing: {stale:?}"
    );
}

/// mdBook's id of a heading: lower case, letters, digits, `-` and `_` kept, spaces to `-`,
/// everything else dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c.to_lowercase().next()?),
            c if c.is_whitespace() => Some('-'),
            _ => None,
        })
        .collect()
}

/// The anchors of `text`'s headings (a repeated heading gets `-1`, `-2`, … as mdBook does).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        // Markdown in a heading is not part of its id: `code` and [links](…) keep their text.
        let plain: String = heading.replace('`', "");
        let base = anchor(&plain);
        let mut id = base.clone();
        let mut n = 0;
        while !found.insert(id.clone()) {
            n += 1;
            id = format!("{base}-{n}");
        }
    }
    found
}

/// The targets of `text`'s inline links `[…](target)`, outside fenced blocks and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let outside_code: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        for (at, _) in outside_code.match_indices("](") {
            let rest = &outside_code[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push(
                    rest[..end]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
        }
    }
    found
}

#[test]
fn every_internal_link_of_the_book_and_the_readme_resolves() {
    let mut pages = pages();
    pages.push((root().join("README.md"), read(&root().join("README.md"))));
    let mut broken = Vec::new();
    let mut checked = 0;
    for (path, text) in &pages {
        for target in link_targets(text) {
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let file = if file.is_empty() {
                path.clone()
            } else {
                path.parent().expect("a directory").join(file)
            };
            checked += 1;
            if !file.exists() {
                broken.push(format!("{}: {target}: no such file", path.display()));
                continue;
            }
            let is_page = file.extension().is_some_and(|ext| ext == "md");
            if !fragment.is_empty() && is_page && !anchors(&read(&file)).contains(fragment) {
                broken.push(format!("{}: {target}: no such heading", path.display()));
            }
        }
    }
    assert!(checked > 20, "{checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `env` as `check` takes it.
fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

/// The `${NAME}`s of `text`.
fn variables(text: &str) -> Vec<String> {
    text.match_indices("${")
        .filter_map(|(at, _)| Some(text[at + 2..].split_once('}')?.0.to_owned()))
        .collect()
}

#[test]
fn every_providers_and_routes_example_of_the_book_passes_the_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    // An example names the CA file of its own deployment; a real PEM file stands in for it.
    let ca_file = crate::helpers::TestCa::new().write_pem(dir.path());
    let (mut providers, mut routes) = (0, 0);
    for (path, text) in pages() {
        for (number, block) in code_blocks(&text, "toml").into_iter().enumerate() {
            let name = format!("{}, toml block {}", path.display(), number + 1);
            let is_providers = block.lines().any(|line| line.starts_with("[providers."));
            let is_routes = block.contains("[[routes]]") && block.contains("[upstreams");
            if !is_providers && !is_routes {
                continue;
            }
            let with_ca: String = block
                .lines()
                .map(|line| match line.trim_start().strip_prefix("ca = ") {
                    Some(_) => format!("ca = {:?}", ca_file.display().to_string()),
                    None => line.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            let file = dir.path().join("example.toml");
            std::fs::write(&file, &with_ca).expect("write the example");
            let mut env: Vec<(String, String)> = variables(&block)
                .into_iter()
                .map(|variable| (variable, "a-value-from-the-environment".to_owned()))
                .collect();
            let (code, out) = if is_providers {
                providers += 1;
                env.extend(
                    [
                        ("REDIS_URL", "redis://127.0.0.1:1/0"),
                        ("SESSION_SECRET", SECRET),
                        ("PUBLIC_URL", "https://app.example.com"),
                        ("AUTH_PROVIDERS_FILE", file.to_str().expect("utf-8")),
                    ]
                    .map(|(key, value)| (key.to_owned(), value.to_owned())),
                );
                check("writer", &[], &pairs(&env))
            } else {
                routes += 1;
                check("gateway", &[file.to_str().expect("utf-8")], &pairs(&env))
            };
            assert_eq!(code, Some(0), "{name}:\n{block}\n{out}");
        }
    }
    assert!(
        providers >= 4,
        "{providers} providers examples (Keycloak, Entra ID, Google, Dex…)"
    );
    assert!(routes >= 1, "{routes} whole routes.toml examples");
}

#[test]
fn the_book_builds() {
    let mdbook = Command::new("mdbook").arg("--version").output();
    if !can_run(
        "the book build",
        mdbook
            .is_err()
            .then(|| "mdbook (cargo install mdbook --locked)".to_owned()),
    ) {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new("mdbook")
        .arg("build")
        .arg(root().join("docs"))
        .arg("--dest-dir")
        .arg(out.path())
        .output()
        .expect("mdbook build");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "mdbook build warns:\n{log}"
    );
    assert!(out.path().join("index.html").exists());
}
