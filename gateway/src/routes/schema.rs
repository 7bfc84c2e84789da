//! The JSON Schema of `routes.toml`, for editors: `gateway schema` prints it, the repository
//! ships it as `routes/routes.schema.json`, and the first line of `routes.toml`,
//! `#:schema ./routes.schema.json`, points Taplo (and the Even Better TOML extension, which runs
//! it) at it, so keys are completed and mistakes marked while typing.
//!
//! It is derived from the parser's own `Raw*` types ([`super::raw`]): a key the parser reads is
//! a key of the schema, with the key's doc comment as its description, and `deny_unknown_fields`
//! becomes `additionalProperties: false`. The schema never refuses a file the parser accepts; it
//! does not know everything the validation checks (a zero duration, an upstream name that is not
//! defined, two routes on one path), which only `gateway --check` reports.
//!
//! Draft 7, not 2020-12: the draft that editors' schema support (Taplo's included) knows best.

use schemars::{Schema, generate::SchemaSettings, transform::RecursiveTransform};
use serde_json::Value;

use super::raw::RawFile;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_keys_are_never_null() {
        let text = schema_json();
        assert!(!text.contains("null"), "{text}");
    }
}
