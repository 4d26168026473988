//! Every numeric field of the configuration schema, driven with extreme values through the same
//! configure path the module runs (`Engine::from_json`): each has an upper bound in the schema
//! (so Kong's meta.json enforces it too), values within the bounds load, values outside are a
//! `config_invalid` error naming the field, and nothing panics or preallocates on the way.

use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::Engine;

/// A configuration holding every object that has a numeric field (a remote provider, the
/// assertion, the cache, remote keys). `min_refresh_seconds`/`max_refresh_seconds` are set to
/// the ends of their range so either can be driven alone (`max` must not be below `min`).
fn base() -> Value {
    json!({
        "providers": [{
            "name": "idp",
            "issuer": "https://idp.test",
            "jwks_uri": "https://idp.test/jwks",
            "upstream": "idp",
            "min_refresh_seconds": 1,
            "max_refresh_seconds": 86400,
            "max_lifetime_seconds": 3600,
            "dpop": {}
        }],
        "headers": {"assertion": {"audience": "svc", "keys": [{"kid": "a1", "secret": "0123456789abcdef0123456789abcdef"}]}},
        "cache": {},
        "remote_keys": {},
        "dpop": {}
    })
}

/// (path, minimum, maximum) of every integer field, found by walking the generated schema.
fn integer_fields() -> Vec<(String, u64, Option<u64>)> {
    let schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap();
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    let mut out = Vec::new();
    walk(&schema, &defs, String::new(), &mut Vec::new(), &mut out);
    out
}

fn walk(
    schema: &Value,
    defs: &Value,
    path: String,
    stack: &mut Vec<String>,
    out: &mut Vec<(String, u64, Option<u64>)>,
) {
    if let Some(name) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
    {
        if stack.iter().any(|s| s == name) {
            return; // a recursive type (requirements): no numbers in there
        }
        stack.push(name.to_string());
        walk(&defs[name], defs, path.clone(), stack, out);
        stack.pop();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for branch in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(branch, defs, path.clone(), stack, out);
        }
    }
    let is_integer = match schema.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
        _ => false,
    };
    if is_integer {
        let min = schema.get("minimum").and_then(Value::as_u64).unwrap_or(0);
        out.push((
            path.clone(),
            min,
            schema.get("maximum").and_then(Value::as_u64),
        ));
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let here = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            walk(sub, defs, here, stack, out);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(items, defs, format!("{path}[0]"), stack, out);
    }
}

/// `base()` with the field at `path` (`providers[0].fetch_timeout_ms`) set to `value`.
fn with(path: &str, value: u64) -> Vec<u8> {
    let mut config = base();
    let mut target = &mut config;
    let steps: Vec<&str> = path.split('.').collect();
    for (i, step) in steps.iter().enumerate() {
        let (name, index) = match step.split_once('[') {
            Some((n, rest)) => (
                n,
                Some(rest.trim_end_matches(']').parse::<usize>().unwrap()),
            ),
            None => (*step, None),
        };
        if i + 1 == steps.len() {
            target[name] = json!(value);
            break;
        }
        assert!(
            target.get(name).is_some(),
            "{path}: add `{name}` to base() so the field can be driven"
        );
        target = &mut target[name];
        if let Some(index) = index {
            target = &mut target[index];
        }
    }
    config.to_string().into_bytes()
}

fn load(path: &str, value: u64) -> Result<(), String> {
    match Engine::from_json(&with(path, value)) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.path),
    }
}

#[test]
fn the_base_configuration_loads() {
    // Loaded as written: the values the other tests drive start where base() puts them.
    let engine = Engine::from_json(base().to_string().as_bytes()).unwrap();
    let c = &engine.config;
    assert_eq!(c.providers.len(), 1);
    let p = &c.providers[0];
    assert_eq!(
        (p.name.as_str(), p.issuer.as_str()),
        ("idp", "https://idp.test")
    );
    assert_eq!(p.jwks_uri.as_deref(), Some("https://idp.test/jwks"));
    assert_eq!(p.upstream.as_deref(), Some("idp"));
    assert_eq!((p.min_refresh_seconds, p.max_refresh_seconds), (1, 86400));
    assert_eq!(p.max_lifetime_seconds, Some(3600));
    let assertion = c.headers.assertion.as_ref().unwrap();
    assert_eq!(assertion.audience, "svc");
    assert_eq!(assertion.keys.len(), 1);
}

#[test]
fn the_schema_walk_finds_every_known_numeric_field() {
    let found: Vec<String> = integer_fields().into_iter().map(|(p, _, _)| p).collect();
    for known in [
        "max_token_bytes",
        "cache.max_entries",
        "cache.max_ttl_seconds",
        "remote_keys.tick_ms",
        "headers.assertion.lifetime_seconds",
        "providers[0].fetch_timeout_ms",
        "providers[0].min_refresh_seconds",
        "providers[0].max_refresh_seconds",
        "providers[0].refetch_min_interval_seconds",
        "providers[0].max_stale_seconds",
        "providers[0].cold_start_wait_ms",
        "providers[0].max_response_bytes",
        "providers[0].clock_skew_seconds",
        "providers[0].min_rsa_bits",
        "providers[0].max_lifetime_seconds",
        "providers[0].dpop.max_age_seconds",
        "dpop.replay_cache_entries",
    ] {
        assert!(found.iter().any(|p| p == known), "{known} not in {found:?}");
    }
}

#[test]
fn every_numeric_field_has_an_upper_bound_in_the_schema() {
    for (path, _, max) in integer_fields() {
        assert!(max.is_some(), "{path} has no `maximum` in the schema");
    }
}

#[test]
fn every_numeric_field_loads_at_both_ends_of_its_range() {
    for (path, min, max) in integer_fields() {
        let max = max.unwrap();
        assert_eq!(load(&path, min), Ok(()), "{path} = {min}");
        assert_eq!(load(&path, max), Ok(()), "{path} = {max}");
    }
}

#[test]
fn zero_loads_only_where_the_schema_allows_it() {
    for (path, min, _) in integer_fields() {
        let expected = if min == 0 { Ok(()) } else { Err(path.clone()) };
        assert_eq!(load(&path, 0), expected, "{path} = 0");
    }
}

#[test]
fn one_past_the_bound_is_config_invalid_naming_the_field() {
    for (path, _, max) in integer_fields() {
        let over = max.unwrap() + 1;
        assert_eq!(load(&path, over), Err(path.clone()), "{path} = {over}");
    }
}

#[test]
fn u64_max_is_config_invalid_naming_the_field() {
    // Found in the field: `cache.max_entries: 4000000000` aborted `on_configure` ("Hash table
    // capacity overflow", the LRU preallocating), so Envoy refused the plugin at start-up.
    for (path, _, _) in integer_fields() {
        assert_eq!(
            load(&path, u64::MAX),
            Err(path.clone()),
            "{path} = u64::MAX"
        );
    }
}

#[test]
fn the_error_message_states_the_bounds() {
    let error = Engine::from_json(&with("cache.max_entries", 4_000_000_000)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid configuration at cache.max_entries: must be between 0 and 100000"
    );
}

/// Every place a claim path is configured, as (JSON pointer of the path in the document, the
/// field path an error names), on top of `base()`.
const CLAIM_PATH_FIELDS: &[(&str, &str)] = &[
    (
        "/providers/0/require_claims/0",
        "providers[0].require_claims[0]",
    ),
    (
        "/providers/0/audience_claims/0",
        "providers[0].audience_claims[0]",
    ),
    (
        "/providers/0/identity/subject",
        "providers[0].identity.subject",
    ),
    (
        "/providers/0/identity/roles/0",
        "providers[0].identity.roles[0]",
    ),
    (
        "/providers/0/identity/groups/0",
        "providers[0].identity.groups[0]",
    ),
    (
        "/providers/0/identity/scopes/0",
        "providers[0].identity.scopes[0]",
    ),
    (
        "/providers/0/identity/tenant/0",
        "providers[0].identity.tenant[0]",
    ),
    (
        "/providers/0/claim_headers/0/claim",
        "providers[0].claim_headers[0].claim",
    ),
    ("/headers/claims/0/claim", "headers.claims[0].claim"),
    (
        "/rules/0/require/claims/0/claim",
        "rules[0].require.claims[0].claim",
    ),
];

/// `base()` with a claim path in every place, and the one at `pointer` set to `path`.
fn load_claim_path(pointer: &str, path: Value) -> Result<(), String> {
    let mut config = base();
    let provider = &mut config["providers"][0];
    provider["require_claims"] = json!(["sub"]);
    provider["audience_claims"] = json!(["aud"]);
    provider["identity"] = json!({"subject": "sub", "roles": ["r"], "groups": ["g"], "scopes": ["s"], "tenant": ["t"]});
    provider["claim_headers"] = json!([{"claim": "sub", "header": "x-sub"}]);
    config["headers"]["claims"] = json!([{"claim": "sub", "header": "x-sub"}]);
    config["rules"] = json!([{"require": {"claims": [{"claim": "sub", "equals": "a"}]}}]);
    *config.pointer_mut(pointer).unwrap() = path;
    Engine::from_json(config.to_string().as_bytes())
        .map(|_| ())
        .map_err(|e| e.path)
}

#[test]
fn claim_paths_load_at_their_bounds_and_not_past_them() {
    use crate::claims::{MAX_PATH_BYTES, MAX_PATH_SEGMENTS};
    let names = |n: usize| vec!["n"; n];
    let longest = "x".repeat(MAX_PATH_BYTES);
    let too_long = "x".repeat(MAX_PATH_BYTES + 1);
    for (pointer, field) in CLAIM_PATH_FIELDS {
        let ok = [
            json!(longest),
            json!(names(MAX_PATH_SEGMENTS).join(".")),
            json!([longest]),
            json!(names(MAX_PATH_SEGMENTS)),
        ];
        for path in ok {
            assert_eq!(
                load_claim_path(pointer, path.clone()),
                Ok(()),
                "{field} = {path}"
            );
        }
        let bad = [
            json!(too_long),
            json!(names(MAX_PATH_SEGMENTS + 1).join(".")),
            json!([too_long]),
            json!(names(MAX_PATH_SEGMENTS + 1)),
            json!(""),
            json!([]),
            json!("a..b"),
            json!(["a", ""]),
        ];
        for path in bad {
            assert_eq!(
                load_claim_path(pointer, path.clone()),
                Err(field.to_string()),
                "{field} = {path}"
            );
        }
    }
}

#[test]
fn the_schema_states_the_claim_path_bounds() {
    use crate::claims::{MAX_PATH_BYTES, MAX_PATH_SEGMENTS};
    let schema = serde_json::to_value(schemars::schema_for!(crate::claims::ClaimPath)).unwrap();
    let forms = schema["anyOf"].as_array().unwrap();
    assert_eq!(forms[0]["maxLength"], json!(MAX_PATH_BYTES));
    assert_eq!(forms[1]["maxItems"], json!(MAX_PATH_SEGMENTS));
    assert_eq!(forms[1]["items"]["maxLength"], json!(MAX_PATH_BYTES));
}
