//! Claims of a verified token and how to read them: dotted paths into nested objects, and the
//! rendering of a claim value as a header value.

use serde_json::{Map, Value};

/// The payload of a token: a JSON object.
pub type Claims = Map<String, Value>;

/// Find a claim by a dotted path (`realm_access.roles`). A top-level claim whose name itself
/// contains dots (`https://example.com/roles`) is found first, as it is.
pub fn lookup<'a>(claims: &'a Claims, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut segments = path.split('.');
    let first = segments.next()?;
    let mut current = claims.get(first)?;
    for segment in segments {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

/// Render a claim value for a header: strings as they are, numbers and booleans as text, arrays
/// joined with `,` (their elements rendered the same way, nested arrays and objects as JSON),
/// objects as compact JSON. `None` for `null` and for any value that would put a control
/// character (CR, LF, NUL, ...) or non-visible byte into the header.
pub fn header_value(value: &Value) -> Option<String> {
    let rendered = match value {
        Value::Null => return None,
        Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                parts.push(scalar_text(item)?);
            }
            parts.join(",")
        }
        other => scalar_text(other)?,
    };
    if is_header_safe(&rendered) {
        Some(rendered)
    } else {
        None
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(_) | Value::Object(_) => Some(value.to_string()),
    }
}

/// True when the text may stand in a header value: no control characters at all (tabs
/// included); non-ASCII UTF-8 is allowed.
pub fn is_header_safe(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// A claim that is a list of strings: a JSON array of strings, or a space-delimited string (as
/// OAuth's `scope`). Non-string array elements are skipped.
pub fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn nested_path_is_followed() {
        let c = claims(json!({"realm_access": {"roles": ["a", "b"]}}));
        assert_eq!(lookup(&c, "realm_access.roles"), Some(&json!(["a", "b"])));
        assert_eq!(lookup(&c, "realm_access.missing"), None);
        assert_eq!(lookup(&c, "realm_access.roles.x"), None);
    }

    #[test]
    fn dotted_top_level_name_wins() {
        let c = claims(json!({"https://ns.example/roles": ["x"]}));
        assert_eq!(lookup(&c, "https://ns.example/roles"), Some(&json!(["x"])));
    }

    #[test]
    fn values_render_for_headers() {
        assert_eq!(header_value(&json!("alice")), Some("alice".into()));
        assert_eq!(header_value(&json!(42)), Some("42".into()));
        assert_eq!(header_value(&json!(true)), Some("true".into()));
        assert_eq!(header_value(&json!(["a", "b", 3])), Some("a,b,3".into()));
        assert_eq!(
            header_value(&json!({"k": [1, 2]})),
            Some("{\"k\":[1,2]}".into())
        );
        assert_eq!(header_value(&json!([{"k": 1}])), Some("{\"k\":1}".into()));
        assert_eq!(header_value(&json!(null)), None);
        assert_eq!(header_value(&json!([])), Some(String::new()));
    }

    #[test]
    fn control_characters_are_never_rendered() {
        assert_eq!(header_value(&json!("a\r\nx-evil: 1")), None);
        assert_eq!(header_value(&json!(["ok", "bad\n"])), None);
        assert_eq!(header_value(&json!("nul\u{0}")), None);
        assert_eq!(header_value(&json!("tab\t")), None);
        assert_eq!(header_value(&json!("del\u{7f}")), None);
        assert_eq!(header_value(&json!("ünïcode")), Some("ünïcode".into()));
    }

    #[test]
    fn string_lists_from_arrays_and_spaces() {
        assert_eq!(string_list(&json!("a b  c")), vec!["a", "b", "c"]);
        assert_eq!(string_list(&json!(["a", 1, "b"])), vec!["a", "b"]);
        assert!(string_list(&json!(7)).is_empty());
    }
}
