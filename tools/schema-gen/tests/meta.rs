//! The committed Kong meta.json is exactly what the config types generate, and it is draft-4.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn generated() -> String {
    match schema_gen::kong_meta_text() {
        Ok(text) => text,
        Err(problems) => panic!("schema generation failed:\n  {}", problems.join("\n  ")),
    }
}

#[test]
fn committed_meta_json_is_fresh() {
    let path = repo_root().join(schema_gen::META_PATH);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make schema`)", path.display()));
    assert!(
        committed == generated(),
        "{} differs from the Rust config types: run `make schema` and commit the result",
        schema_gen::META_PATH
    );
}

#[test]
fn meta_json_has_only_config_schema_at_the_top() {
    let meta: Value = serde_json::from_str(&generated()).unwrap();
    let keys: Vec<&String> = meta.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["config_schema"]);
    assert_eq!(meta["config_schema"]["$schema"], schema_gen::DRAFT_04);
    assert_eq!(meta["config_schema"]["type"], "object");
    assert_eq!(meta["config_schema"]["additionalProperties"], false);
}

#[test]
fn refs_are_local_draft4_definitions_that_resolve() {
    // Subschemas are inlined; only a recursive type (rules[].require nests requirements) keeps
    // a `$ref`, in draft-4 form. Kong's validator resolves local refs (its own draft-4
    // metaschema, which Kong validates every meta.json against, is built on them).
    fn walk(v: &Value, refs: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    refs.push(r.clone());
                    assert_eq!(m.len(), 1, "$ref with siblings: {m:?}");
                }
                m.values().for_each(|x| walk(x, refs));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, refs)),
            _ => {}
        }
    }
    let meta: Value = serde_json::from_str(&generated()).unwrap();
    let schema = &meta["config_schema"];
    assert!(schema.get("$defs").is_none());
    let mut refs = Vec::new();
    walk(schema, &mut refs);
    for r in refs {
        let name = r
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("non-local {r}"));
        assert!(schema["definitions"].get(name).is_some(), "unresolved {r}");
    }
}

#[test]
fn every_object_denies_unknown_fields_except_jose_keys() {
    fn walk(v: &Value, at: &str, open: &mut Vec<String>) {
        if let Value::Object(m) = v {
            let object = match m.get("type") {
                Some(Value::String(t)) => t == "object",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
                _ => false,
            };
            if object && m.get("additionalProperties") != Some(&Value::Bool(false)) {
                open.push(at.to_string());
            }
            for (k, sub) in m {
                walk(sub, &format!("{at}/{k}"), open);
            }
        } else if let Value::Array(a) = v {
            for (i, sub) in a.iter().enumerate() {
                walk(sub, &format!("{at}/{i}"), open);
            }
        }
    }
    let meta: Value = serde_json::from_str(&generated()).unwrap();
    let mut open = Vec::new();
    walk(&meta["config_schema"], "", &mut open);
    // A JWKS or JWK is an open RFC 7517 document; everything else is ours and closed.
    let jose = |p: &str| p.contains("/jwks") || p.contains("/private_jwk");
    assert!(
        open.iter().all(|p| jose(p)),
        "objects without additionalProperties: false: {open:?}"
    );
}

#[test]
fn a_non_draft4_keyword_is_refused() {
    let schema = serde_json::json!({"type": "object", "if": {"type": "object"}});
    let problems = schema_gen::to_draft4(schema).unwrap_err();
    assert!(problems[0].contains("`if` is not draft-4"), "{problems:?}");
}

#[test]
fn const_examples_and_numeric_exclusive_bounds_are_converted() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "a": {"description": "a", "const": "x", "examples": ["x"]},
            "b": {"description": "b", "type": "integer", "exclusiveMinimum": 0, "format": "uint64",
                  "default": 1}
        },
        "required": ["a"]
    });
    let out = schema_gen::to_draft4(schema).unwrap();
    assert_eq!(
        out["properties"]["a"],
        serde_json::json!({"description": "a", "enum": ["x"]})
    );
    assert_eq!(out["properties"]["b"]["minimum"], 0);
    assert_eq!(out["properties"]["b"]["exclusiveMinimum"], true);
    assert!(out["properties"]["b"].get("format").is_none());
}

#[test]
fn an_option_of_a_choice_is_one_any_of() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "claim": {"description": "c", "default": null, "anyOf": [
                {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                {"type": "null"}
            ]},
            "kept": {"description": "k", "default": null, "anyOf": [
                {"anyOf": [{"type": "string"}], "minLength": 1},
                {"type": "null"}
            ]}
        }
    });
    let out = schema_gen::to_draft4(schema).unwrap();
    assert_eq!(
        out["properties"]["claim"]["anyOf"],
        serde_json::json!([{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}])
    );
    assert_eq!(
        out["properties"]["kept"]["anyOf"][0],
        serde_json::json!({"anyOf": [{"type": "string"}], "minLength": 1}),
        "a variant with more than the nested anyOf stays as it is"
    );
}

#[test]
fn the_claim_paths_of_the_meta_json_accept_a_string_or_an_array_of_names() {
    let meta: serde_json::Value = serde_json::from_str(&generated()).unwrap();
    let claim = &meta["config_schema"]["properties"]["headers"]["properties"]["claims"]["items"]
        ["properties"]["claim"];
    let types: Vec<&str> = claim["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["string", "array", "null"]);
}

#[test]
fn a_field_without_doc_comment_is_refused() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"]
    });
    let problems = schema_gen::to_draft4(schema).unwrap_err();
    assert!(problems[0].contains("a: no description"), "{problems:?}");
}
