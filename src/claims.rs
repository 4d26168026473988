//! Claims of a verified token and how to read them: claim paths into nested objects (parsed
//! once, from the configuration), and the rendering of a claim value as a header value.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The payload of a token: a JSON object.
pub type Claims = Map<String, Value>;

/// Most names in one claim path.
pub const MAX_PATH_SEGMENTS: usize = 16;
/// Most bytes in one claim path (the dotted string, or the names of the array form together).
pub const MAX_PATH_BYTES: usize = 256;
/// Most object keys one lookup of a dotted path tries. A path of [`MAX_PATH_SEGMENTS`] names
/// needs at most 136 without backtracking; a token whose keys would make the search try more is
/// treated as not holding the claim.
pub const MAX_KEYS_TRIED: usize = 256;

/// Where a claim is found, as configured: parsed once, used the same way everywhere (claim
/// headers, identity mapping, `require_claims`, `audience_claims`, rule conditions).
///
/// - A string is a dotted path, resolved **longest claim name first at every level**: at each
///   object, the longest run of the remaining names (joined with `.`) that is a key of the
///   object is taken first, then shorter ones; when a longer match leads nowhere (not an object,
///   or the rest is not found beneath it) the next shorter one is tried. So
///   `kubernetes.io.serviceaccount.name` reaches `{"kubernetes.io": {"serviceaccount": {"name":
///   ..}}}` and `https://example.com/roles` reaches that top-level claim.
/// - An array of strings names each key explicitly (`["kubernetes.io", "serviceaccount",
///   "name"]`): no dots are interpreted, nothing is ambiguous.
///
/// With both `{"a.b": 1}` and `{"a": {"b": 2}}` in a token, `"a.b"` finds 1 (longest first)
/// and `["a", "b"]` finds 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(Form);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Form {
    /// Explicit keys, one per level (also a dotted string of a single name).
    Keys(Vec<String>),
    /// A dotted string of two or more names: the text and the byte range of each name in it.
    Dotted {
        text: String,
        names: Vec<(usize, usize)>,
    },
}

impl ClaimPath {
    /// A path of one claim name, taken as it is (dots included). For defaults.
    pub fn name(name: &str) -> ClaimPath {
        ClaimPath(Form::Keys(vec![name.to_string()]))
    }

    /// A dotted path (`realm_access.roles`): non-empty names separated by `.`.
    pub fn dotted(text: &str) -> Result<ClaimPath, String> {
        let bad = || format!("`{text}` is not a claim path (names separated by `.`)");
        if text.is_empty() || text.split('.').any(str::is_empty) {
            return Err(bad());
        }
        check_size(text.len(), text.split('.').count())?;
        let mut names = Vec::new();
        let mut start = 0;
        for name in text.split('.') {
            names.push((start, start + name.len()));
            start += name.len() + 1;
        }
        if names.len() == 1 {
            return Ok(ClaimPath::name(text));
        }
        Ok(ClaimPath(Form::Dotted {
            text: text.to_string(),
            names,
        }))
    }

    /// An explicit path: one non-empty key per level, dots taken literally.
    pub fn keys(keys: Vec<String>) -> Result<ClaimPath, String> {
        if keys.is_empty() {
            return Err("an empty claim path; name at least one claim".into());
        }
        if let Some(i) = keys.iter().position(String::is_empty) {
            return Err(format!("name {i} of the claim path is empty"));
        }
        check_size(keys.iter().map(String::len).sum(), keys.len())?;
        Ok(ClaimPath(Form::Keys(keys)))
    }

    /// The claim at this path, if the token has it.
    pub fn lookup<'a>(&self, claims: &'a Claims) -> Option<&'a Value> {
        match &self.0 {
            Form::Keys(keys) => {
                let (first, rest) = keys.split_first()?;
                let mut current = claims.get(first)?;
                for key in rest {
                    current = current.as_object()?.get(key)?;
                }
                Some(current)
            }
            Form::Dotted { text, names } => {
                let mut budget = MAX_KEYS_TRIED;
                longest_first(text, names, claims, 0, &mut budget)
            }
        }
    }
}

fn check_size(bytes: usize, names: usize) -> Result<(), String> {
    if names > MAX_PATH_SEGMENTS {
        return Err(format!(
            "a claim path has at most {MAX_PATH_SEGMENTS} names"
        ));
    }
    if bytes > MAX_PATH_BYTES {
        return Err(format!("a claim path has at most {MAX_PATH_BYTES} bytes"));
    }
    Ok(())
}

/// Resolve `names[from..]` in `object`: the longest run of names that is a key first, then
/// shorter ones, backtracking when a match leads nowhere; at most `budget` keys are tried.
fn longest_first<'a>(
    text: &str,
    names: &[(usize, usize)],
    object: &'a Claims,
    from: usize,
    budget: &mut usize,
) -> Option<&'a Value> {
    let (start, _) = *names.get(from)?;
    for to in (from + 1..=names.len()).rev() {
        if *budget == 0 {
            return None;
        }
        *budget -= 1;
        let (_, end) = *names.get(to - 1)?;
        let Some(value) = object.get(text.get(start..end)?) else {
            continue;
        };
        if to == names.len() {
            return Some(value);
        }
        if let Some(inner) = value.as_object() {
            if let Some(found) = longest_first(text, names, inner, to, budget) {
                return Some(found);
            }
        }
    }
    None
}

/// Find a claim by its path (see [`ClaimPath`]).
pub fn lookup<'a>(claims: &'a Claims, path: &ClaimPath) -> Option<&'a Value> {
    path.lookup(claims)
}

impl<'de> Deserialize<'de> for ClaimPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ClaimPathVisitor)
    }
}

struct ClaimPathVisitor;

impl<'de> Visitor<'de> for ClaimPathVisitor {
    type Value = ClaimPath;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a claim path: a dotted string or an array of claim names")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ClaimPath, E> {
        ClaimPath::dotted(v).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClaimPath, A::Error> {
        let mut keys = Vec::new();
        while let Some(key) = seq.next_element::<String>()? {
            if keys.len() == MAX_PATH_SEGMENTS {
                return Err(A::Error::custom(format!(
                    "a claim path has at most {MAX_PATH_SEGMENTS} names"
                )));
            }
            keys.push(key);
        }
        ClaimPath::keys(keys).map_err(A::Error::custom)
    }
}

/// The configured form: a dotted path as its string; explicit keys as an array, except a
/// single name without dots, which is the same path either way and is written as a string.
impl Serialize for ClaimPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Form::Dotted { text, .. } => serializer.serialize_str(text),
            Form::Keys(keys) => match keys.as_slice() {
                [one] if !one.contains('.') => serializer.serialize_str(one),
                _ => {
                    let mut seq = serializer.serialize_seq(Some(keys.len()))?;
                    for key in keys {
                        seq.serialize_element(key)?;
                    }
                    seq.end()
                }
            },
        }
    }
}

impl JsonSchema for ClaimPath {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "ClaimPath".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_PATH_BYTES},
                {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1, "maxLength": MAX_PATH_BYTES},
                    "minItems": 1,
                    "maxItems": MAX_PATH_SEGMENTS
                }
            ]
        })
    }
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

    fn dotted(text: &str) -> ClaimPath {
        ClaimPath::dotted(text).unwrap()
    }

    fn keys(keys: &[&str]) -> ClaimPath {
        ClaimPath::keys(keys.iter().map(|k| k.to_string()).collect()).unwrap()
    }

    #[test]
    fn nested_path_is_followed() {
        let c = claims(json!({"realm_access": {"roles": ["a", "b"]}}));
        assert_eq!(
            lookup(&c, &dotted("realm_access.roles")),
            Some(&json!(["a", "b"]))
        );
        assert_eq!(lookup(&c, &dotted("realm_access.missing")), None);
        assert_eq!(lookup(&c, &dotted("realm_access.roles.x")), None);
    }

    #[test]
    fn dotted_top_level_name_wins() {
        let c = claims(json!({"https://ns.example/roles": ["x"]}));
        assert_eq!(
            lookup(&c, &dotted("https://ns.example/roles")),
            Some(&json!(["x"]))
        );
    }

    #[test]
    fn names_with_dots_are_found_at_any_depth() {
        let c = claims(json!({
            "sub": "system:serviceaccount:flows:prefect-worker",
            "kubernetes.io": {
                "namespace": "flows",
                "serviceaccount": {"name": "prefect-worker", "uid": "u-1"},
                "pod": {"name": "worker-0", "uid": "u-2"}
            },
            "ext": {"https://example.com/tenant": {"id": 7}}
        }));
        assert_eq!(
            lookup(&c, &dotted("kubernetes.io.namespace")),
            Some(&json!("flows"))
        );
        assert_eq!(
            lookup(&c, &dotted("kubernetes.io.serviceaccount.name")),
            Some(&json!("prefect-worker"))
        );
        assert_eq!(
            lookup(&c, &dotted("kubernetes.io.pod.uid")),
            Some(&json!("u-2"))
        );
        assert_eq!(
            lookup(&c, &dotted("ext.https://example.com/tenant.id")),
            Some(&json!(7))
        );
        assert_eq!(
            lookup(&c, &dotted("kubernetes.io.serviceaccount.missing")),
            None
        );
        assert_eq!(lookup(&c, &dotted("kubernetes.serviceaccount")), None);
    }

    #[test]
    fn the_longest_name_wins_and_the_array_form_reaches_the_other() {
        let c = claims(json!({"a.b": 1, "a": {"b": 2}}));
        assert_eq!(lookup(&c, &dotted("a.b")), Some(&json!(1)));
        assert_eq!(lookup(&c, &keys(&["a", "b"])), Some(&json!(2)));
        assert_eq!(lookup(&c, &keys(&["a.b"])), Some(&json!(1)));
    }

    #[test]
    fn a_longer_match_that_leads_nowhere_falls_back_to_a_shorter_one() {
        let c = claims(json!({"a.b": 1, "a": {"b": {"c": 3}}}));
        assert_eq!(lookup(&c, &dotted("a.b.c")), Some(&json!(3)));
        let c = claims(json!({"a.b": {"x": 1}, "a": {"b": {"c": 3}}}));
        assert_eq!(lookup(&c, &dotted("a.b.c")), Some(&json!(3)));
        assert_eq!(lookup(&c, &dotted("a.b.x")), Some(&json!(1)));
    }

    #[test]
    fn explicit_keys_never_split_at_dots() {
        let c = claims(json!({"kubernetes.io": {"namespace": "flows"}, "kubernetes": {"io": 1}}));
        assert_eq!(
            lookup(&c, &keys(&["kubernetes.io", "namespace"])),
            Some(&json!("flows"))
        );
        assert_eq!(lookup(&c, &keys(&["kubernetes", "io"])), Some(&json!(1)));
        assert_eq!(lookup(&c, &keys(&["kubernetes", "io", "namespace"])), None);
    }

    /// Keys `a`, `a.a`, `a.a.a`, ... at every level, so that a path of `rem` names `a` can be
    /// cut in every way; only cutting it into single names all the way down reaches a value,
    /// and longest-first tries that way last (after about 2^(rem-1) keys).
    fn every_cut(rem: usize, singles: bool) -> Value {
        let mut o = Map::new();
        for len in 1..=rem {
            let name = vec!["a"; len].join(".");
            if len < rem {
                o.insert(name, every_cut(rem - len, singles && len == 1));
            } else if len == 1 && singles {
                o.insert(name, json!("found"));
            }
        }
        Value::Object(o)
    }

    #[test]
    fn the_search_tries_a_bounded_number_of_keys() {
        let path = |n: usize| dotted(&vec!["a"; n].join("."));
        let small = claims(every_cut(6, true));
        assert_eq!(lookup(&small, &path(6)), Some(&json!("found")));
        // 2^15 keys would be tried: the search stops at MAX_KEYS_TRIED and finds nothing.
        let big = claims(every_cut(16, true));
        assert_eq!(lookup(&big, &path(16)), None);
        assert_eq!(lookup(&big, &keys(&["a"; 16])), Some(&json!("found")));
    }

    #[test]
    fn claim_paths_are_checked_when_configured() {
        for bad in ["", ".", "a..b", ".a", "a."] {
            assert!(ClaimPath::dotted(bad).is_err(), "{bad:?}");
        }
        assert!(ClaimPath::keys(vec![]).is_err());
        assert!(ClaimPath::keys(vec!["a".into(), String::new()]).is_err());
        let long = "x".repeat(MAX_PATH_BYTES + 1);
        assert!(ClaimPath::dotted(&long).is_err());
        assert!(ClaimPath::keys(vec![long]).is_err());
        assert!(ClaimPath::dotted(&vec!["a"; MAX_PATH_SEGMENTS + 1].join(".")).is_err());
        assert!(ClaimPath::dotted(&vec!["a"; MAX_PATH_SEGMENTS].join(".")).is_ok());
        assert!(ClaimPath::keys(vec!["a.".into(), ".b".into()]).is_ok());
    }

    #[test]
    fn both_forms_deserialize_and_serialize_back() {
        for doc in [
            json!("sub"),
            json!("a.b"),
            json!(["a.b", "c"]),
            json!(["a", "b"]),
        ] {
            let p: ClaimPath = serde_json::from_value(doc.clone()).unwrap();
            assert_eq!(serde_json::to_value(&p).unwrap(), doc);
        }
        let one: ClaimPath = serde_json::from_value(json!(["sub"])).unwrap();
        assert_eq!(one, ClaimPath::name("sub"));
        assert_eq!(
            serde_json::from_value::<ClaimPath>(json!("sub")).unwrap(),
            one
        );
        for bad in [
            json!(7),
            json!([1]),
            json!({}),
            json!([]),
            json!("a..b"),
            json!(null),
        ] {
            assert!(
                serde_json::from_value::<ClaimPath>(bad.clone()).is_err(),
                "{bad}"
            );
        }
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
