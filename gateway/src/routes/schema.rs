//! The JSON Schema of `routes.toml`, for editors: `gateway schema` prints it, the repository
//! ships it as `routes/routes.schema.json`, and the first line of `routes.toml`,
//! `#:schema ./routes.schema.json`, points Taplo (and the Even Better TOML extension, which runs
//! it) at it, so keys are completed and mistakes marked while typing.
//!
//! It is derived from the parser's own `Raw*` types ([`super::file`]): a key the parser reads is
//! a key of the schema, with the key's doc comment as its description, and `deny_unknown_fields`
//! becomes `additionalProperties: false`. The schema never refuses a file the parser accepts; it
//! does not know everything the validation checks (a zero duration, an upstream name that is not
//! defined, two routes on one path), which only `gateway --check` reports.
//!
//! Draft 7, not 2020-12: the draft that editors' schema support (Taplo's included) knows best.

use std::borrow::Cow;

use schemars::{
    JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema,
    transform::RecursiveTransform,
};
use serde_json::Value;

use super::file::{RawFile, RawUpstream, RawWeightedTarget};

// What a `${VAR}` becomes is only known when the file is loaded: a value with one (`\$\{` in
// each pattern) passes.

/// A duration as `humantime` reads it: numbers, each with a unit, `"500ms"`, `"30s"`, `"1h 30m"`.
const DURATION_PATTERN: &str = concat!(
    r"^\s*([0-9][0-9\s]*(\.\s*[0-9][0-9\s]*)?",
    r"(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s",
    r"|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w",
    r"|months|month|M|years|year|yrs|yr|y)\s*)+$",
    r"|\$\{"
);

/// A size with a unit, as `parse_size` reads it (the unit in any case): `"64KiB"`, `"1 MB"`.
pub(super) const SIZE_PATTERN: &str = r"^\s*[0-9]+\s*([bB]|[kKmMgG][iI]?[bB])?\s*$|\$\{";

/// A route path or a rewrite prefix: it starts with `/` (spaces around are trimmed).
const PATH_PATTERN: &str = r"^\s*/|\$\{";

/// An upstream target: `http://` (in any case) and a host.
const TARGET_PATTERN: &str = r"^\s*[hH][tT][tT][pP][sS]?://|\$\{";

/// A CORS origin: `http://` or `https://` and a host (so never `*`).
const ORIGIN_PATTERN: &str = r"^\s*[hH][tT][tT][pP][sS]?://|\$\{";

/// The JSON Schema of `routes.toml` (draft 7).
pub fn schema() -> Value {
    let generator = SchemaSettings::draft07()
        .with(|settings| {
            // Before `RemoveRefSiblings`, which moves a `$ref` with a description into `allOf`.
            settings
                .transforms
                .insert(0, Box::new(RecursiveTransform(no_null)));
        })
        .into_generator();
    let mut schema = generator.into_root_schema_for::<RawFile>().to_value();
    // One order whatever serde_json features the build unifies (`preserve_order`).
    schema.sort_all_objects();
    schema
}

/// [`schema`] as the committed `routes/routes.schema.json` holds it: pretty, newline-terminated.
pub fn schema_json() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// TOML has no null: an optional key is left out, never set to null. Takes out the `null` that
/// schemars allows for every `Option`.
fn no_null(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|kind| kind != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            object.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(values)) = object.get_mut("enum") {
        values.retain(|value| !value.is_null());
    }
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(options)) = object.get_mut(key) else {
            continue;
        };
        options.retain(|option| option.get("type").and_then(Value::as_str) != Some("null"));
        // `{"anyOf": [X], ...}` is X with the rest, when they do not share a key.
        let only = match options.as_slice() {
            [Value::Object(only)] => only.clone(),
            _ => continue,
        };
        if only.keys().all(|k| !object.contains_key(k)) {
            object.remove(key);
            object.extend(only);
        }
    }
}

/// A schema that is only a string `pattern`, under a name of its own in `definitions`.
fn string_schema(pattern: &str, description: &str) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": pattern,
        "description": description,
    })
}

// Types that exist only to be described: the parser reads these values as plain strings (or a
// `toml::Value`, for an upstream) and checks them itself.

/// A duration string.
#[derive(Debug)]
pub(super) enum DurationSchema {}

impl JsonSchema for DurationSchema {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_schema(
            DURATION_PATTERN,
            "A duration: a number and a unit, \"500ms\", \"30s\", \"5m\", \"1h 30m\" \
             (units ms, s, m, h, d and their long names). More than zero.",
        )
    }
}

/// A path prefix string.
#[derive(Debug)]
pub(super) enum PathSchema {}

impl JsonSchema for PathSchema {
    fn schema_name() -> Cow<'static, str> {
        "Path".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_schema(
            PATH_PATTERN,
            "A path prefix: starts with /, no query, fragment, empty or dot segments; a \
             trailing / is dropped (\"/api/\" is \"/api\").",
        )
    }
}

/// An upstream target URL.
#[derive(Debug)]
pub(super) enum TargetSchema {}

impl JsonSchema for TargetSchema {
    fn schema_name() -> Cow<'static, str> {
        "Target".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_schema(
            TARGET_PATTERN,
            "A target: \"http://host:port\" or \"https://host:port\" (no path, query or user; \
             port 80 or 443 if left out).",
        )
    }
}

/// A target entry: a URL, or a table with its URL and weight.
#[derive(Debug)]
pub(super) enum TargetEntrySchema {}

impl JsonSchema for TargetEntrySchema {
    fn schema_name() -> Cow<'static, str> {
        "TargetEntry".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let target = generator.subschema_for::<TargetSchema>();
        let weighted = generator.subschema_for::<RawWeightedTarget>();
        json_schema!({
            "description": "A target, \"http://host:port\", or { url = \"http://host:port\", \
                weight = 90 } to give it a share of the requests.",
            "anyOf": [target, weighted],
        })
    }
}

/// A CORS origin.
#[derive(Debug)]
pub(super) enum OriginSchema {}

impl JsonSchema for OriginSchema {
    fn schema_name() -> Cow<'static, str> {
        "Origin".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_schema(
            ORIGIN_PATTERN,
            "An origin as browsers send it: \"https://app.example.com\", \
             scheme://host[:port], no path.",
        )
    }
}

/// One entry of `[upstreams]`: the short or the long form.
#[derive(Debug)]
pub(super) enum UpstreamSchema {}

impl JsonSchema for UpstreamSchema {
    fn schema_name() -> Cow<'static, str> {
        "Upstream".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let target = generator.subschema_for::<TargetEntrySchema>();
        let long = generator.subschema_for::<RawUpstream>();
        json_schema!({
            "description": "An upstream: its targets, [\"http://host:port\", ...] (short \
                form), or a table with `targets` and options (long form).",
            "anyOf": [
                {
                    "type": "array",
                    "items": target,
                    "minItems": 1,
                    "description": "Short form: the targets, balanced with \"p2c\".",
                },
                long,
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_keys_are_never_null() {
        let text = schema_json();
        assert!(!text.contains("null"), "{text}");
    }
}
