//! The Kong `meta.json` of the identity filter, generated from its Rust config types.
//!
//! Kong (3.4–3.10) validates a filter's `config` against `config_schema` from
//! `<filter>.meta.json` with lua-resty-ljsonschema, a **draft-4** validator, and refuses to start
//! when the file is not a valid draft-4 schema. schemars 1.x emits draft 2020-12 / draft-07, so
//! the generated schema is converted here, conservatively:
//!
//! - `$schema` is draft-04; subschemas are inlined (no `$defs`); a recursive type would keep a
//!   `$ref`, rewritten to `#/definitions/...`.
//! - A nested `anyOf` that is a whole variant of an `anyOf` (an `Option` of a choice) is
//!   spliced into its parent.
//! - `const` becomes a single-value `enum`; a `oneOf` of such strings (a Rust unit enum with
//!   documented variants) becomes one `enum`, the variants' docs appended to the description.
//! - `examples`, `deprecated`, `readOnly`, `writeOnly`, `$comment` are dropped; non-draft-4
//!   `format`s (`uint64`, ...) are dropped; numeric `exclusiveMinimum`/`exclusiveMaximum` become
//!   draft-4 booleans; boolean subschemas become `{}` / `{"not": {}}`; empty `required` is dropped.
//! - Any other keyword outside draft-4 is an error: nothing exotic reaches Kong.
//! - Every property must carry a `description` (the field's doc comment) and, unless required,
//!   a `default`. schemars omits defaults of types that are not `Serialize`; those are filled in
//!   as `null` (the field admits null) or `{}` (a struct whose fields all have defaults). The
//!   crate's tests prove every default in the schema parses to the same `Config` as leaving the
//!   field out.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use identity_filter::Config;

mod defaults;

/// A valid configuration with at least one element in every list, used to check that every
/// `default` in the schema is what the parser does (see `defaults`).
const SEED: &str = include_str!("../seed.json");

/// The draft-4 meta-schema id, as Kong's `kong.db.schema.json` expects it.
pub const DRAFT_04: &str = "http://json-schema.org/draft-04/schema#";

/// Path of the committed file, relative to the repository root.
pub const META_PATH: &str = "kong/identity_filter.meta.json";

/// Keywords a draft-4 schema object may carry (validation keywords and annotations).
const DRAFT4_KEYWORDS: &[&str] = &[
    "$schema",
    "id",
    "$ref",
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "additionalItems",
    "items",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "additionalProperties",
    "definitions",
    "properties",
    "patternProperties",
    "dependencies",
    "enum",
    "type",
    "format",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
];

/// Annotations of later drafts that carry no validation and are dropped.
const DROPPED_ANNOTATIONS: &[&str] = &[
    "examples",
    "example",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
];

/// The `format` values draft-4 defines; others (schemars' `uint64`, `int32`, ...) are dropped.
const DRAFT4_FORMATS: &[&str] = &["date-time", "email", "hostname", "ipv4", "ipv6", "uri"];

/// The draft-4 `config_schema` for the filter's configuration document.
pub fn config_schema() -> Result<Value, Vec<String>> {
    let mut settings = SchemaSettings::draft07();
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    let generator = settings.into_generator();
    let schema = generator.into_root_schema_for::<Config>();
    let schema = to_draft4(schema.to_value())?;
    let seed: Value = serde_json::from_str(SEED).map_err(|e| vec![format!("seed.json: {e}")])?;
    let problems = defaults::verify_defaults(&schema, &seed);
    if problems.is_empty() {
        Ok(schema)
    } else {
        Err(problems)
    }
}

/// `{"config_schema": ...}`: the whole `identity_filter.meta.json` document, with the Kong-only
/// restrictions of [`for_kong`].
pub fn kong_meta() -> Result<Value, Vec<String>> {
    let mut schema = config_schema()?;
    for_kong(&mut schema)?;
    Ok(json!({ "config_schema": schema }))
}

/// What the filter accepts but Kong must not be given, and Kong's safe defaults:
/// - `remote_keys.waiting: resume` is refused: in Kong's host a root context cannot resume a
///   request (it crashes the worker). The filter would take it as `own_fetch` anyway.
/// - `headers.spoofed_headers` defaults to `reject` (what `auto` chooses in Kong, said
///   explicitly): Kong's host forwards client-sent headers the filter removes.
pub fn for_kong(schema: &mut Value) -> Result<(), Vec<String>> {
    let waiting = schema
        .pointer_mut("/properties/remote_keys/properties/waiting")
        .ok_or_else(|| vec!["remote_keys.waiting is missing from the schema".to_string()])?;
    let values = waiting
        .get_mut("enum")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| vec!["remote_keys.waiting has no enum".to_string()])?;
    values.retain(|v| v != "resume");
    append_description(
        waiting,
        " Kong: `resume` is not accepted (it would crash the worker); `auto` is `own_fetch`.",
    );
    let spoofed = schema
        .pointer_mut("/properties/headers/properties/spoofed_headers")
        .ok_or_else(|| vec!["headers.spoofed_headers is missing from the schema".to_string()])?;
    if let Some(obj) = spoofed.as_object_mut() {
        obj.insert("default".into(), Value::String("reject".into()));
    }
    append_description(
        spoofed,
        " Kong: the default is `reject`, since Kong forwards removed request headers.",
    );
    Ok(())
}

fn append_description(schema: &mut Value, text: &str) {
    if let Some(obj) = schema.as_object_mut() {
        let old = obj
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        obj.insert("description".into(), Value::String(format!("{old}{text}")));
    }
}

/// The file's exact text: two-space indented JSON and a final newline.
pub fn kong_meta_text() -> Result<String, Vec<String>> {
    let meta = kong_meta()?;
    serde_json::to_string_pretty(&meta)
        .map(|s| s + "\n")
        .map_err(|e| vec![e.to_string()])
}

/// Convert a schemars draft-07 root schema to a conservative draft-4 one (see the module docs).
pub fn to_draft4(mut root: Value) -> Result<Value, Vec<String>> {
    let mut problems = Vec::new();
    let Some(obj) = root.as_object_mut() else {
        return Err(vec!["root schema is not an object".into()]);
    };
    // A recursive type keeps its definition; draft-4 names the folder `definitions`.
    if let Some(defs) = obj.remove("$defs") {
        obj.insert("definitions".into(), defs);
    }
    let mut out = Map::new();
    out.insert("$schema".into(), Value::String(DRAFT_04.into()));
    for (k, v) in std::mem::take(obj) {
        if k != "$schema" {
            out.insert(k, v);
        }
    }
    let mut root = Value::Object(out);
    convert(&mut root, "", &mut problems);
    if problems.is_empty() {
        Ok(root)
    } else {
        Err(problems)
    }
}

/// Convert one schema object and its subschemas in place. `at` is a readable config path.
fn convert(schema: &mut Value, at: &str, problems: &mut Vec<String>) {
    let obj = match schema {
        Value::Bool(true) => {
            *schema = json!({});
            return;
        }
        Value::Bool(false) => {
            *schema = json!({ "not": {} });
            return;
        }
        Value::Object(obj) => obj,
        _ => {
            problems.push(format!("{}: a schema must be an object", show(at)));
            return;
        }
    };

    for key in DROPPED_ANNOTATIONS {
        obj.remove(*key);
    }
    if let Some(Value::String(d)) = obj.get_mut("description") {
        *d = unwrap_lines(d);
    }
    if let Some(c) = obj.remove("const") {
        obj.entry("enum").or_insert_with(|| Value::Array(vec![c]));
    }
    for (exclusive, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(n) = obj.get(exclusive).filter(|v| v.is_number()).cloned() {
            obj.insert(bound.into(), n);
            obj.insert(exclusive.into(), Value::Bool(true));
        }
    }
    if let Some(Value::String(f)) = obj.get("format") {
        if !DRAFT4_FORMATS.contains(&f.as_str()) {
            obj.remove("format");
        }
    }
    if obj
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        obj.remove("required");
    }
    if let Some(Value::String(r)) = obj.get_mut("$ref") {
        if let Some(name) = r.strip_prefix("#/$defs/") {
            *r = format!("#/definitions/{name}");
        }
    }
    collapse_string_one_of(obj);
    flatten_nested_any_of(obj);

    for key in obj.keys() {
        if !DRAFT4_KEYWORDS.contains(&key.as_str()) {
            problems.push(format!("{}: keyword `{key}` is not draft-4", show(at)));
        }
    }

    // Subschemas.
    let required: Vec<String> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for (name, sub) in props.iter_mut() {
            let path = join(at, name);
            convert(sub, &path, problems);
            check_field(sub, &path, required.contains(name), problems);
        }
    }
    for key in ["patternProperties", "definitions"] {
        if let Some(Value::Object(map)) = obj.get_mut(key) {
            for (name, sub) in map.iter_mut() {
                convert(sub, &format!("{}<{key} {name}>", prefix(at)), problems);
            }
        }
    }
    if let Some(Value::Object(deps)) = obj.get_mut("dependencies") {
        for (name, sub) in deps.iter_mut() {
            if sub.is_object() || sub.is_boolean() {
                convert(sub, &format!("{}<dependency {name}>", prefix(at)), problems);
            }
        }
    }
    for key in ["additionalProperties", "additionalItems"] {
        if let Some(sub) = obj.get_mut(key).filter(|v| v.is_object()) {
            convert(sub, &format!("{}<{key}>", prefix(at)), problems);
        }
    }
    match obj.get_mut("items") {
        Some(Value::Array(items)) => {
            for (i, sub) in items.iter_mut().enumerate() {
                convert(sub, &format!("{at}[{i}]"), problems);
            }
        }
        Some(sub) => convert(sub, &format!("{at}[]"), problems),
        None => {}
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = obj.get_mut(key) {
            for sub in subs.iter_mut() {
                convert(sub, at, problems);
            }
        }
    }
    if let Some(sub) = obj.get_mut("not") {
        convert(sub, at, problems);
    }
}

/// A property must say what it is, and what it is when left out.
fn check_field(sub: &mut Value, at: &str, required: bool, problems: &mut Vec<String>) {
    let Some(obj) = sub.as_object_mut() else {
        return;
    };
    let described = obj
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| !d.trim().is_empty());
    if !described {
        problems.push(format!(
            "{at}: no description (add a doc comment to the field)"
        ));
    }
    if let Some(default) = obj.get_mut("default") {
        drop_null_members(default);
    }
    if required || obj.contains_key("default") {
        return;
    }
    // schemars leaves out defaults of types that are not `Serialize`; these fills are checked
    // against the parser by `verify_defaults` before anything is written.
    if admits_null(obj) {
        obj.insert("default".into(), Value::Null);
    } else if has_type(obj, "object") {
        obj.insert("default".into(), json!({}));
    } else if has_type(obj, "array") {
        obj.insert("default".into(), json!([]));
    } else {
        problems.push(format!(
            "{at}: optional but no default in the schema (derive Serialize on its type, or add \
             #[schemars(extend(\"default\" = ...))] to the field)"
        ));
    }
}

/// `{"header": "authorization", "query": null}` → `{"header": "authorization"}` inside a default
/// (a serialized `None`); `verify_defaults` proves the shorter form parses the same.
fn drop_null_members(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_null_members);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_null_members),
        _ => {}
    }
}

fn admits_null(obj: &Map<String, Value>) -> bool {
    let null_type = |v: &Value| match v {
        Value::String(t) => t == "null",
        Value::Array(ts) => ts.iter().any(|t| t == "null"),
        _ => false,
    };
    if obj.get("type").is_some_and(null_type) {
        return true;
    }
    ["anyOf", "oneOf"].iter().any(|k| {
        obj.get(*k)
            .and_then(Value::as_array)
            .is_some_and(|subs| subs.iter().any(|s| s.get("type").is_some_and(null_type)))
    })
}

fn has_type(obj: &Map<String, Value>, t: &str) -> bool {
    obj.get("type").and_then(Value::as_str) == Some(t)
}

/// `oneOf: [{type: string, enum: [a], description}, ...]` → `type: string, enum: [a, ...]`.
/// One `enum` gives Kong's validator and admin API a plain list; the variants' docs are kept in
/// the description.
fn collapse_string_one_of(obj: &mut Map<String, Value>) {
    let Some(Value::Array(variants)) = obj.get("oneOf") else {
        return;
    };
    let mut values = Vec::new();
    let mut docs = Vec::new();
    for v in variants {
        let Some(v) = v.as_object() else { return };
        // Variants are converted after their parent: a value is still `const` here.
        let only_known = v
            .keys()
            .all(|k| ["type", "const", "enum", "description", "title"].contains(&k.as_str()));
        let value = match (v.get("const"), v.get("enum").and_then(Value::as_array)) {
            (Some(c), None) if c.is_string() => c.clone(),
            (None, Some(e)) if e.len() == 1 && e[0].is_string() => e[0].clone(),
            _ => return,
        };
        if !only_known || v.get("type").is_some_and(|t| t != "string") {
            return;
        }
        if let (Some(name), Some(doc)) =
            (value.as_str(), v.get("description").and_then(Value::as_str))
        {
            docs.push(format!("`{name}`: {doc}"));
        }
        values.push(value);
    }
    obj.remove("oneOf");
    obj.insert("type".into(), Value::String("string".into()));
    obj.insert("enum".into(), Value::Array(values));
    if !docs.is_empty() {
        let base = obj
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end()
            .to_string();
        let text = if base.is_empty() {
            docs.join(" ")
        } else {
            format!("{base} {}", docs.join(" "))
        };
        obj.insert("description".into(), Value::String(text));
    }
}

/// `anyOf: [{anyOf: [a, b]}, c]` → `anyOf: [a, b, c]` (an `Option` of a type that is itself a
/// choice, e.g. a claim path: a string or an array): the same values, one level to read.
fn flatten_nested_any_of(obj: &mut Map<String, Value>) {
    let Some(Value::Array(variants)) = obj.get_mut("anyOf") else {
        return;
    };
    let mut flat = Vec::with_capacity(variants.len());
    for v in variants.drain(..) {
        match v {
            Value::Object(mut inner) if inner.len() == 1 && inner.contains_key("anyOf") => {
                match inner.remove("anyOf") {
                    Some(Value::Array(nested)) => flat.extend(nested),
                    Some(other) => {
                        inner.insert("anyOf".into(), other);
                        flat.push(Value::Object(inner));
                    }
                    None => {}
                }
            }
            other => flat.push(other),
        }
    }
    *variants = flat;
}

/// Doc comments are wrapped at 100 columns; a description reads better as one line per
/// paragraph (`GET /schemas/filters/identity_filter`, admin GUIs).
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|para| {
            para.split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn prefix(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!("{at}.")
    }
}

fn show(at: &str) -> &str {
    if at.is_empty() {
        "(root)"
    } else {
        at
    }
}

/// The filter's own verdict on a configuration document: what Envoy, Istio and Kong would get
/// from `on_configure` (the same `Engine::from_json`).
pub fn check(bytes: &[u8]) -> Result<(), identity_filter::ConfigError> {
    identity_filter::Engine::from_json(bytes).map(|_| ())
}
