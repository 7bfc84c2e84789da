//! `routes/routes.schema.json`, the JSON Schema editors use for routes.toml, against the parser it
//! is derived from: the committed file is what `gateway schema` prints, the shipped and
//! documented routes files validate, mistakes are refused by both, and its keys are exactly the
//! keys the parser accepts (`every_key.toml` has each of them).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use jsonschema::Validator;
use serde_json::{Value, json};

const REGENERATE: &str = "cargo run -p gateway -- schema > routes/routes.schema.json";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The committed schema: what editors see.
fn schema() -> Value {
    serde_json::from_str(&read("routes/routes.schema.json")).expect("routes.schema.json is JSON")
}

fn validator() -> Validator {
    jsonschema::draft7::new(&schema()).expect("a draft 7 schema")
}

/// A routes file as JSON, as an editor's schema support sees it.
fn as_json(text: &str) -> Value {
    let table: toml::Table = toml::from_str(text).unwrap_or_else(|err| panic!("TOML: {err}"));
    serde_json::to_value(table).expect("TOML values are JSON values")
}

/// What the schema finds wrong in `value`, one line each; empty when it is valid.
fn schema_errors(validator: &Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|err| format!("{}: {err}", err.instance_path()))
        .collect()
}

fn parser_accepts(text: &str) -> Result<(), String> {
    gateway::routes::parse(Path::new("routes.toml"), text, |_| None)
        .map(drop)
        .map_err(|err| err.to_string())
}

#[test]
fn the_committed_schema_is_what_gateway_schema_prints() {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("schema")
        .output()
        .expect("gateway schema runs");
    assert!(output.status.success(), "gateway schema: {output:?}");
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(printed, gateway::routes::schema_json());
    assert!(
        printed == read("routes/routes.schema.json"),
        "routes/routes.schema.json is not what `gateway schema` prints; regenerate it: {REGENERATE}"
    );
    jsonschema::draft7::meta::validate(&schema()).expect("a valid draft 7 schema");
}

/// The shipped routes, through `routes/routes.toml` and the root link, name the schema on
/// their first line and validate against it; so do the routes of the Kubernetes ConfigMap.
#[test]
fn the_shipped_routes_validate() {
    let validator = validator();
    for (file, schema_next_to_it) in [
        ("routes/routes.toml", "routes/routes.schema.json"),
        ("routes.toml", "routes.schema.json"),
    ] {
        let text = read(file);
        assert_eq!(
            text.lines().next(),
            Some("#:schema ./routes.schema.json"),
            "{file}: the first line points editors at the schema"
        );
        assert!(
            root().join(schema_next_to_it).is_file(),
            "{file}: ./routes.schema.json must resolve next to it ({schema_next_to_it})"
        );
        assert_eq!(
            schema_errors(&validator, &as_json(&text)),
            Vec::<String>::new(),
            "{file}"
        );
        parser_accepts(&text).unwrap_or_else(|err| panic!("{file}: {err}"));
    }

    let manifests = yaml_rust2::YamlLoader::load_from_str(&read("deploy/kubernetes/routes.yaml"))
        .expect("routes.yaml is YAML");
    let routes = manifests
        .iter()
        .find_map(|document| document["data"]["routes.toml"].as_str())
        .expect("the ConfigMap has routes.toml");
    assert_eq!(
        schema_errors(&validator, &as_json(routes)),
        Vec::<String>::new(),
        "deploy/kubernetes/routes.yaml"
    );
}

/// The book's routes.toml reference: one chapter, and a page per topic under `routes/` beside it.
const ROUTES_REFERENCE: &str = "docs/src/reference/routes.md";
const ROUTES_REFERENCE_PAGES: &str = "docs/src/reference/routes";

/// The reference chapter, then each of its pages (sorted by name), as (path, text).
fn routes_reference() -> Vec<(String, String)> {
    let mut pages: Vec<String> = std::fs::read_dir(root().join(ROUTES_REFERENCE_PAGES))
        .unwrap_or_else(|err| panic!("{ROUTES_REFERENCE_PAGES}: {err}"))
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("{ROUTES_REFERENCE_PAGES}/{name}"))
        .collect();
    pages.sort();
    std::iter::once(ROUTES_REFERENCE.to_owned())
        .chain(pages)
        .map(|path| {
            let text = read(&path);
            (path, text)
        })
        .collect()
}

/// Every ```toml block of the book's routes.toml reference (`docs/src/reference/routes.md` and
/// every page under `docs/src/reference/routes/`) whose top-level keys are all keys of
/// routes.toml validates: a whole file as it is, a part of one (say, only `[cors]`) completed
/// with a minimal `[upstreams]` and `[[routes]]`. A block with other top-level keys is a
/// fragment (the keys of one table shown without its header) and is skipped.
#[test]
fn the_routes_reference_examples_validate() {
    let pages = routes_reference();
    let schema = schema();
    let root_keys: BTreeSet<&str> = schema["properties"]
        .as_object()
        .expect("root properties")
        .keys()
        .map(String::as_str)
        .collect();
    let validator = validator();
    let (mut checked, mut skipped) = (0, Vec::new());
    let blocks = pages.iter().flat_map(|(path, text)| {
        text.split("```toml\n")
            .skip(1)
            .enumerate()
            .map(move |(number, block)| (path, number, block))
    });
    for (path, number, block) in blocks {
        let block = &block[..block.find("```").expect("closed block")];
        let name = format!("{path}, toml block {}", number + 1);
        let Ok(table) = toml::from_str::<toml::Table>(block) else {
            skipped.push(name);
            continue;
        };
        let mut value = serde_json::to_value(table).expect("TOML values are JSON values");
        let object = value.as_object_mut().expect("a table");
        if !object.keys().all(|key| root_keys.contains(key.as_str())) {
            skipped.push(name);
            continue;
        }
        let whole = object.contains_key("upstreams") && object.contains_key("routes");
        object
            .entry("upstreams")
            .or_insert_with(|| json!({ "u": ["http://127.0.0.1:1"] }));
        object
            .entry("routes")
            .or_insert_with(|| json!([{ "path": "/", "upstream": "u" }]));
        assert_eq!(
            schema_errors(&validator, &value),
            Vec::<String>::new(),
            "{name}"
        );
        if whole {
            parser_accepts(block).unwrap_or_else(|err| panic!("{name}: {err}"));
        }
        checked += 1;
    }
    eprintln!(
        "{checked} routes.toml examples of the book validate; fragments skipped: {skipped:?}"
    );
    assert!(
        checked >= 1 && !skipped.contains(&format!("{ROUTES_REFERENCE}, toml block 1")),
        "the full routes.toml example of {ROUTES_REFERENCE} was not found"
    );
}

/// What the parser says of a file, and the schema must agree.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Both accept it.
    Valid,
    /// Both refuse it: a mistake an editor marks while typing.
    Invalid,
    /// The schema accepts it and the parser refuses it: only `gateway --check` (and a reload)
    /// knows, from more than one value's shape.
    OnlyTheParserRefuses,
}

/// A file with one route on upstream `w`, and `extra` lines in that route.
fn route(extra: &str) -> String {
    let file = "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n";
    format!("{file}{extra}\n")
}

/// [`route`] with `[settings]` of `extra` lines.
fn settings(extra: &str) -> String {
    format!("[settings]\n{extra}\n{}", route(""))
}

/// A file whose upstream `u` is the table of `extra` lines after `targets`.
fn upstream(extra: &str) -> String {
    upstream_table(&format!("targets = [\"http://x:1\"]\n{extra}"))
}

/// A file whose upstream `u` is the table of `lines`.
fn upstream_table(lines: &str) -> String {
    format!("[upstreams.u]\n{lines}\n[[routes]]\npath = \"/\"\nupstream = \"u\"\n")
}

/// Lines for [`route`]: `auth = "s"`, then `extra`, then the check `[auth.s]` on upstream `w`.
fn checked(extra: &str) -> String {
    format!("auth = \"s\"\n{extra}\n[auth.s]\nupstream = \"w\"\npath = \"/session\"")
}

/// [`route`] under `limit = "l"`, with `[limits.l]` of `extra` lines.
fn limited(extra: &str) -> String {
    format!("{}[limits.l]\n{extra}\n", route("limit = \"l\""))
}

/// [`route`] with a `[cors]` of `extra` lines.
fn cors(extra: &str) -> String {
    format!("{}[cors]\n{extra}\n", route(""))
}

#[test]
fn the_schema_refuses_what_the_parser_refuses() {
    use Verdict::*;
    let one_route = route("");
    let cases = [
        // Keys.
        (route("timout = \"1s\""), Invalid),
        (one_route.replace("[upstreams]", "[upstream]"), Invalid),
        (
            one_route.replace("[upstreams]\nw = [\"http://x:1\"]\n", ""),
            Invalid,
        ),
        (one_route.replace("upstream = \"w\"\n", ""), Invalid),
        (
            settings("request_timeout = \"1s\"\nrequest_timout = \"1s\""),
            Invalid,
        ),
        (upstream("balnce = \"p2c\""), Invalid),
        (
            cors("origins = [\"https://a.test\"]\nmax_ages = \"1m\""),
            Invalid,
        ),
        // Types and shapes: durations are strings with a unit, sizes numbers or strings with a
        // unit, flags booleans, lists lists.
        (route("timeout = 5"), Invalid),
        (route("timeout = \"30\""), Invalid),
        (route("timeout = \"5 sekunden\""), Invalid),
        (route("timeout = \"1h 30m\""), Valid),
        (route("timeout = \"1.5s\""), Valid),
        (route("timeout = \"${ROUTE_TIMEOUT:-5s}\""), Valid),
        (route("max_body = 2048"), Valid),
        (route("max_body = \"64 kib\""), Valid),
        (route("max_body = \"1 parsec\""), Invalid),
        (route("max_body = 0"), Invalid),
        (route("max_body = -1"), Invalid),
        (route("max_body = 1.5"), Invalid),
        (route("max_body = true"), Invalid),
        (route("strip_prefix = \"yes\""), Invalid),
        (route("idempotent = 0"), Invalid),
        (route("rewrite = \"v2\""), Invalid),
        (route("rewrite = \"/v2/\""), Valid),
        (
            one_route.replace("path = \"/\"", "path = \"login\""),
            Invalid,
        ),
        (
            one_route.replace("[\"http://x:1\"]", "\"http://x:1\""),
            Invalid,
        ),
        (one_route.replace("[\"http://x:1\"]", "[]"), Invalid),
        (
            "routes = []\n[upstreams]\nw = [\"http://x:1\"]\n".into(),
            Invalid,
        ),
        (settings("forwarded = \"yes\""), Invalid),
        (settings("trusted_proxies = \"10.0.0.0/8\""), Invalid),
        (settings("max_header_bytes = 8192"), Valid),
        (upstream("balance = \"random\""), Invalid),
        (upstream("balance = \"round_robin\""), Valid),
        (upstream_table("targets = [\"https://x:1\"]"), Valid),
        (upstream_table("targets = [\"ftp://x:1\"]"), Invalid),
        (upstream_table("targets = []"), Invalid),
        (upstream("eject = { failures = 0 }"), Invalid),
        (upstream("eject = { failures = 2 }"), Valid),
        (upstream("health_check = { path = \"healthz\" }"), Invalid),
        (upstream("health_check = { interval = \"5s\" }"), Invalid),
        // Caps on requests in flight: a whole number, at least 1.
        (route("max_in_flight = 64"), Valid),
        (route("max_in_flight = 0"), Invalid),
        (route("max_in_flight = -1"), Invalid),
        (route("max_in_flight = \"64\""), Invalid),
        (upstream("max_in_flight = 64"), Valid),
        (upstream("max_in_flight = 0"), Invalid),
        // Groups are a door check's: only on a route with `auth`, and at least one.
        (route("allow_groups = [\"admins\"]"), Invalid),
        (route(&checked("allow_groups = [\"admins\"]")), Valid),
        (route(&checked("allow_groups = []")), Invalid),
        (route(&checked("allow_groups = \"admins\"")), Invalid),
        // Rate limits: a rate per second, minute or hour, a burst of at least one, a known key.
        (
            limited("rate = \"20/s\"\nburst = 40\nkey = \"client\""),
            Valid,
        ),
        (limited("rate = \"100 / m\"\nkey = \"route\""), Valid),
        (limited("rate = \"20\""), Invalid),
        (limited("rate = \"20/d\""), Invalid),
        (limited("rate = 20"), Invalid),
        (limited("burst = 5"), Invalid),
        (limited("rate = \"1/s\"\nburst = 0"), Invalid),
        (limited("rate = \"1/s\"\nkey = \"ip\""), Invalid),
        (limited("rate = \"1/s\"\nburts = 5"), Invalid),
        (cors("origins = [\"*\"]"), Invalid),
        (cors("origins = \"https://a.test\""), Invalid),
        (cors("origins = [\"HTTPS://App.Test:8443\"]"), Valid),
        // Beyond one value's shape: only the parser's validation sees these.
        (route("timeout = \"0s\""), OnlyTheParserRefuses),
        (
            one_route.replace("upstream = \"w\"", "upstream = \"v\""),
            OnlyTheParserRefuses,
        ),
        (route("strip_prefix = true"), OnlyTheParserRefuses),
        (
            route(&checked("allow_groups = [\"a,b\"]")),
            OnlyTheParserRefuses,
        ),
        (settings("max_header_bytes = 1024"), OnlyTheParserRefuses),
        (limited("rate = \"0/s\""), OnlyTheParserRefuses),
        (
            route("limit = \"nowhere\"\n[limits.l]\nrate = \"1/s\""),
            OnlyTheParserRefuses,
        ),
        (
            limited("rate = \"1/s\"\nkey = \"user\""),
            OnlyTheParserRefuses,
        ),
        (
            settings("trusted_proxies = [\"10.0.0.0/33\"]"),
            OnlyTheParserRefuses,
        ),
        (
            route("[[routes]]\npath = \"/\"\nupstream = \"w\""),
            OnlyTheParserRefuses,
        ),
        (
            "[upstreams]\nw = [\"http://x:1\"]\n".into(),
            OnlyTheParserRefuses,
        ),
    ];
    let validator = validator();
    for (text, expected) in cases {
        let schema = schema_errors(&validator, &as_json(&text));
        let parser = parser_accepts(&text);
        let verdict = match (parser.is_ok(), schema.is_empty()) {
            (true, true) => Valid,
            (false, false) => Invalid,
            (false, true) => OnlyTheParserRefuses,
            (true, false) => {
                panic!("the schema refuses a file the parser accepts: {schema:?}\n{text}")
            }
        };
        assert_eq!(
            verdict, expected,
            "parser: {parser:?}, schema: {schema:?}\n{text}"
        );
    }
}

/// Durations are read by `humantime`: what it reads the schema accepts, and what it refuses the
/// schema refuses too (but for overflows and fractions of nanoseconds).
#[test]
fn the_duration_pattern_is_what_humantime_reads() {
    let validator = validator();
    for duration in [
        "500ms",
        "30s",
        " 30s ",
        "5m",
        "1h",
        "1h30m",
        "1h 30m",
        "2 days",
        "1week",
        "1.5s",
        "1. 5s",
        "1 0s",
        "3M",
        "1y",
        "10µs",
        "30",
        "",
        "s",
        "5 S",
        "30 sec.",
        "1.s",
        "+1s",
        "1s-",
        "5 sekunden",
        "1h,30m",
        "1_000ms",
        "5 mins",
        "5 mns",
    ] {
        let read = humantime::parse_duration(duration.trim()).is_ok();
        let errors = schema_errors(
            &validator,
            &as_json(&route(&format!("timeout = {duration:?}"))),
        );
        assert_eq!(
            errors.is_empty(),
            read,
            "{duration:?}: humantime {read}, schema {errors:?}"
        );
    }
}

/// Key paths of a schema, `settings.request_timeout`, `upstreams.*.targets`,
/// `routes[].path`, walked from `node` (`$ref`s resolved).
fn schema_keys(root: &Value, node: &Value, path: &str, keys: &mut BTreeSet<String>) {
    let node = match node["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/definitions/");
            &root["definitions"][name]
        }
        None => node,
    };
    for combined in ["allOf", "anyOf", "oneOf"] {
        for part in node[combined].as_array().into_iter().flatten() {
            schema_keys(root, part, path, keys);
        }
    }
    for (key, value) in node["properties"].as_object().into_iter().flatten() {
        let key_path = join(path, key);
        keys.insert(key_path.clone());
        schema_keys(root, value, &key_path, keys);
    }
    if node["additionalProperties"].is_object() {
        schema_keys(root, &node["additionalProperties"], &join(path, "*"), keys);
    }
    if node["items"].is_object() {
        schema_keys(root, &node["items"], &format!("{path}[]"), keys);
    }
}

/// Key paths of a routes file as [`schema_keys`] writes them: the schema tells which tables
/// are maps of names (`upstreams.*`).
fn file_keys(root: &Value, schema: &Value, value: &Value, path: &str, keys: &mut BTreeSet<String>) {
    let mut schemas = Vec::new();
    flatten(root, schema, &mut schemas);
    match value {
        Value::Object(table) => {
            for (key, value) in table {
                if let Some(property) = schemas.iter().find_map(|s| s["properties"].get(key)) {
                    let key_path = join(path, key);
                    keys.insert(key_path.clone());
                    file_keys(root, property, value, &key_path, keys);
                } else if let Some(map) = schemas
                    .iter()
                    .find(|s| s["additionalProperties"].is_object())
                {
                    file_keys(
                        root,
                        &map["additionalProperties"],
                        value,
                        &join(path, "*"),
                        keys,
                    );
                } else {
                    panic!("{}: not a key of the schema", join(path, key));
                }
            }
        }
        Value::Array(items) => {
            if let Some(array) = schemas.iter().find(|s| s["items"].is_object()) {
                for item in items {
                    file_keys(root, &array["items"], item, &format!("{path}[]"), keys);
                }
            }
        }
        _ => {}
    }
}

/// `node` and the schemas it refers to or combines, `$ref`s resolved.
fn flatten<'a>(root: &'a Value, node: &'a Value, out: &mut Vec<&'a Value>) {
    if let Some(reference) = node["$ref"].as_str() {
        flatten(
            root,
            &root["definitions"][reference.trim_start_matches("#/definitions/")],
            out,
        );
    }
    for combined in ["allOf", "anyOf", "oneOf"] {
        for part in node[combined].as_array().into_iter().flatten() {
            flatten(root, part, out);
        }
    }
    out.push(node);
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `every_key.toml` is accepted by the parser and the schema, and its keys are exactly the
/// schema's: no key the parser reads is missing from the schema, none is there that it does not.
#[test]
fn every_key_the_parser_accepts_is_in_the_schema() {
    let text = include_str!("every_key.toml");
    parser_accepts(text).expect("the parser accepts every_key.toml");
    let schema = schema();
    let value = as_json(text);
    assert_eq!(schema_errors(&validator(), &value), Vec::<String>::new());

    let mut in_schema = BTreeSet::new();
    schema_keys(&schema, &schema, "", &mut in_schema);
    let mut in_file = BTreeSet::new();
    file_keys(&schema, &schema, &value, "", &mut in_file);
    let missing: Vec<_> = in_schema.difference(&in_file).collect();
    let unknown: Vec<_> = in_file.difference(&in_schema).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "keys of the schema missing from gateway/tests/schema/every_key.toml (add them, with a \
         value the parser accepts): {missing:?}; keys of the file not in the schema: {unknown:?}"
    );
}

/// The parser refuses any other key, wherever it is put (`deny_unknown_fields`), and so does the
/// schema (`additionalProperties: false`): `every_key.toml` has all the keys there are.
#[test]
fn no_table_takes_a_key_every_key_toml_lacks() {
    let document: toml::Table = toml::from_str(include_str!("every_key.toml")).expect("TOML");
    let mut tables = Vec::new();
    table_paths(
        &toml::Value::Table(document.clone()),
        &mut Vec::new(),
        &mut tables,
    );
    assert!(tables.len() > 10, "{tables:?}");
    let validator = validator();
    for path in tables {
        let mut changed = toml::Value::Table(document.clone());
        let mut table = &mut changed;
        for step in &path {
            table = match step {
                Step::Key(key) => &mut table[key.as_str()],
                Step::Index(index) => &mut table[*index],
            };
        }
        table
            .as_table_mut()
            .expect("a table")
            .insert("not_a_key".into(), toml::Value::Boolean(true));
        let text = toml::to_string(&changed).expect("TOML");
        assert!(
            parser_accepts(&text).is_err(),
            "the parser takes not_a_key in {path:?}"
        );
        assert!(
            !schema_errors(&validator, &as_json(&text)).is_empty(),
            "the schema takes not_a_key in {path:?}"
        );
    }
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where the tables of `value` are, itself included.
fn table_paths(value: &toml::Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match value {
        toml::Value::Table(table) => {
            out.push(path.clone());
            for (key, value) in table {
                path.push(Step::Key(key.clone()));
                table_paths(value, path, out);
                path.pop();
            }
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(Step::Index(index));
                table_paths(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}
