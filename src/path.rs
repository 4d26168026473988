//! One canonical form of the request path, so that a rule covers every spelling of the path it
//! names, and the path the upstream receives is the one the rule covered.
//!
//! The canonical form of a path (without its query string):
//!
//! - starts with `/`; empty segments are merged (`//admin` → `/admin`);
//! - percent-encoded unreserved characters (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`) are decoded
//!   (`/%61dmin` → `/admin`); every other escape is kept, with upper-case hex (`%c3%a9` →
//!   `%C3%A9`); a `%` not followed by two hex digits is a literal `%` (Kong's host hands over a
//!   path nginx already decoded, where `/100%` is a plain path).
//!
//! What cannot be made canonical safely is refused ([`NotCanonical`], `400 path_not_canonical`):
//! an encoded `/` or `\` (`%2F`, `%5C`: one segment to the filter, two to many upstreams), an
//! encoded or raw NUL or other control character, a raw `\`, double encoding (`%25` followed by
//! two hex digits, or any spelling whose canonical form would still decode further), and `;`
//! path parameters (`/admin;x/users`, which Java servers read as `/admin/users`) unless
//! `paths.allow_parameters` is set. Dot segments are refused before this (`403 forbidden`,
//! rule `path_dot_segments`, see [`crate::policy::has_dot_segment`]).
//!
//! The canonical form is a fixed point: a canonical path is never changed or refused, so a path
//! nginx (Kong) or Envoy's `normalize_path` already normalized passes as it is.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::percent::escape_at;
use crate::token::{split_query, RequestFacts};

/// How request paths are read (`paths`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// Compare rule paths ASCII case-insensitively (`/ADMIN` is covered by a rule on `/admin`),
    /// unless a rule's `match.ignore_case` says otherwise. Default `true`: an upstream that
    /// serves `/admin` for `/ADMIN` (IIS, ASP.NET, case-insensitive file systems, some framework
    /// settings) must not get it past a rule on `/admin`; a case-sensitive upstream only sees
    /// rules apply to case variants of their paths.
    #[serde(default = "default_true")]
    pub ignore_case: bool,
    /// Accept `;` path parameters (`/a;jsessionid=1/b`): rules then match the path without them
    /// (`/a/b`), and the path goes upstream with them. Only for upstreams that ignore them too
    /// (Java servlet containers) or need them. Default `false`: a path with `;` is refused
    /// `400 path_not_canonical`.
    #[serde(default)]
    pub allow_parameters: bool,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            ignore_case: true,
            allow_parameters: false,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Why a path has no safe canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCanonical {
    /// It does not start with `/`.
    NotAbsolute,
    /// `%2F` or `%5C`: a separator inside a segment.
    EncodedSeparator,
    /// A control character (raw or encoded), NUL included.
    ControlCharacter,
    /// A raw `\`, which some upstreams read as `/`.
    Backslash,
    /// `%25` followed by two hex digits, or escapes that decode into another escape.
    DoubleEncoding,
    /// A `;` path parameter while `paths.allow_parameters` is off.
    Parameters,
}

impl NotCanonical {
    /// A short description for logs.
    pub fn describe(self) -> &'static str {
        match self {
            NotCanonical::NotAbsolute => "the path does not start with `/`",
            NotCanonical::EncodedSeparator => "the path has an encoded `/` or `\\`",
            NotCanonical::ControlCharacter => "the path has a control character",
            NotCanonical::Backslash => "the path has a `\\`",
            NotCanonical::DoubleEncoding => "the path is percent-encoded twice",
            NotCanonical::Parameters => "the path has `;` parameters",
        }
    }
}

/// A path in canonical form: the path that goes upstream, and the one rules match (the same,
/// unless allowed `;` parameters were taken out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical<'a> {
    pub path: Cow<'a, str>,
    pub matched: Cow<'a, str>,
}

/// The canonical form of `path` (without the query string). Borrowed when `path` already is.
pub fn canonicalize(path: &str, allow_parameters: bool) -> Result<Canonical<'_>, NotCanonical> {
    let forwarded = canonical_form(path, allow_parameters)?;
    let matched = if allow_parameters && forwarded.contains(';') {
        Cow::Owned(without_parameters(&forwarded))
    } else {
        forwarded.clone()
    };
    Ok(Canonical {
        path: forwarded,
        matched,
    })
}

fn canonical_form(path: &str, allow_parameters: bool) -> Result<Cow<'_, str>, NotCanonical> {
    let once = canonical_once(path, allow_parameters)?;
    if once == path {
        return Ok(Cow::Borrowed(path));
    }
    // A canonical form that would change again (`%%32%66` → `%2f`) was encoded twice.
    if once.contains('%') && canonical_once(&once, allow_parameters).as_ref() != Ok(&once) {
        return Err(NotCanonical::DoubleEncoding);
    }
    Ok(Cow::Owned(once))
}

// Escapes are read with the crate's one reader (`percent::escape_at`), but a path is not run
// through `percent::decode`: its canonical form decodes only unreserved characters and keeps
// every other escape (a decoded `%2F` would split a segment), reads a `%` without two hex digits
// as a literal `%` (the decoder refuses it) and refuses what cannot be made canonical. Decoding
// the whole path and re-encoding it would not give back these rules.
fn canonical_once(path: &str, allow_parameters: bool) -> Result<String, NotCanonical> {
    if !path.starts_with('/') {
        return Err(NotCanonical::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => match escape_at(bytes, i + 1) {
                Some(v) if is_unreserved(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Some(b'/' | b'\\') => return Err(NotCanonical::EncodedSeparator),
                Some(v) if v < 0x20 || v == 0x7f => return Err(NotCanonical::ControlCharacter),
                Some(b'%') if escape_at(bytes, i + 3).is_some() => {
                    return Err(NotCanonical::DoubleEncoding)
                }
                Some(v) => {
                    out.push(b'%');
                    out.extend_from_slice(&upper_hex(v));
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'\\' => return Err(NotCanonical::Backslash),
            b';' if !allow_parameters => return Err(NotCanonical::Parameters),
            b'/' if out.last() == Some(&b'/') => {}
            b if b < 0x20 || b == 0x7f => return Err(NotCanonical::ControlCharacter),
            b => out.push(b),
        }
        i += 1;
    }
    // Only ASCII was decoded and every other byte copied: the result is UTF-8.
    String::from_utf8(out).map_err(|_| NotCanonical::ControlCharacter)
}

/// `/a;x/b;y=1` → `/a/b` (then merged again: `/;x/b` → `/b`).
fn without_parameters(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').skip(1) {
        if !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or_default());
    }
    out
}

fn upper_hex(v: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let digit = |n: u8| DIGITS.get(usize::from(n)).copied().unwrap_or(b'0');
    [digit(v >> 4), digit(v & 0x0f)]
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The request as the upstream will receive it: `facts` with `:path` set to `path` (canonical,
/// without a query) followed by the original query string.
pub fn with_path(facts: &RequestFacts, path: &str) -> RequestFacts {
    let full = match split_query(&facts.path).1 {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    RequestFacts {
        path: full,
        ..facts.clone()
    }
}

/// A rule's `path`, `path_prefix` or `path_template` must be canonical (and without `;`), or it
/// could never match: the error says what its canonical form is.
pub fn check_rule_path(value: &str) -> Result<(), String> {
    match canonical_form(value, false) {
        Ok(Cow::Borrowed(_)) => Ok(()),
        Ok(Cow::Owned(canonical)) => Err(format!(
            "must be in canonical form (`{canonical}`): requests are matched on that form"
        )),
        Err(why) => Err(format!("cannot match any request: {}", why.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(path: &str) -> Result<String, NotCanonical> {
        canonicalize(path, false).map(|c| c.path.into_owned())
    }

    #[test]
    fn a_canonical_path_is_borrowed_unchanged() {
        for path in [
            "/",
            "/admin/users",
            "/a/",
            "/a%20b",
            "/%C3%A9t%C3%A9",
            "/files/r.pdf",
        ] {
            let c = canonicalize(path, false).unwrap();
            assert!(matches!(c.path, Cow::Borrowed(_)), "{path}");
            assert_eq!(c.path, path);
        }
    }

    #[test]
    fn encoded_unreserved_characters_are_decoded() {
        assert_eq!(canonical("/%61dmin/users"), Ok("/admin/users".into()));
        assert_eq!(canonical("/%41%2d%5F%7e%30"), Ok("/A-_~0".into()));
    }

    #[test]
    fn other_escapes_keep_their_encoding_in_upper_case() {
        assert_eq!(canonical("/a%20b/%c3%a9"), Ok("/a%20b/%C3%A9".into()));
        assert_eq!(canonical("/a%3fb%23c"), Ok("/a%3Fb%23c".into()));
    }

    #[test]
    fn repeated_slashes_are_merged() {
        assert_eq!(canonical("//admin/users"), Ok("/admin/users".into()));
        assert_eq!(canonical("/admin///users//"), Ok("/admin/users/".into()));
    }

    #[test]
    fn encoded_separators_are_refused() {
        for path in [
            "/admin%2fusers",
            "/admin%2Fusers",
            "/admin%5cusers",
            "/a%5C",
        ] {
            assert_eq!(
                canonical(path),
                Err(NotCanonical::EncodedSeparator),
                "{path}"
            );
        }
    }

    #[test]
    fn control_characters_are_refused_raw_or_encoded() {
        for path in ["/a%00b", "/a%0ab", "/a%7F", "/a\u{1}b", "/a\tb"] {
            assert_eq!(
                canonical(path),
                Err(NotCanonical::ControlCharacter),
                "{path}"
            );
        }
    }

    #[test]
    fn a_raw_backslash_is_refused() {
        assert_eq!(canonical("/admin\\users"), Err(NotCanonical::Backslash));
    }

    #[test]
    fn double_encoding_is_refused() {
        for path in [
            "/%2561dmin/users",
            "/a%252fb",
            "/%%32%66admin",
            "/%25%32%66",
        ] {
            assert_eq!(canonical(path), Err(NotCanonical::DoubleEncoding), "{path}");
        }
    }

    #[test]
    fn a_literal_percent_is_kept() {
        // nginx (Kong) hands over `/100%` for `/100%25`; Envoy may pass `/100%` as sent.
        assert_eq!(canonical("/100%"), Ok("/100%".into()));
        assert_eq!(canonical("/100%25"), Ok("/100%25".into()));
        assert_eq!(canonical("/50% off/x"), Ok("/50% off/x".into()));
    }

    #[test]
    fn a_relative_path_is_refused() {
        assert_eq!(canonical("admin"), Err(NotCanonical::NotAbsolute));
        assert_eq!(canonical("*"), Err(NotCanonical::NotAbsolute));
        assert_eq!(canonical(""), Err(NotCanonical::NotAbsolute));
    }

    #[test]
    fn parameters_are_refused_unless_allowed() {
        assert_eq!(canonical("/admin;x/users"), Err(NotCanonical::Parameters));
        let c = canonicalize("/admin;x/users;jsessionid=1", true).unwrap();
        assert_eq!(c.path, "/admin;x/users;jsessionid=1");
        assert_eq!(c.matched, "/admin/users");
        assert_eq!(canonicalize("/;x/admin", true).unwrap().matched, "/admin");
        assert_eq!(canonicalize("/a;x/", true).unwrap().matched, "/a/");
        assert_eq!(canonicalize("/;x", true).unwrap().matched, "/");
    }

    #[test]
    fn canonicalization_is_idempotent() {
        for path in [
            "/%61dmin//users",
            "/a%20b/%c3%a9",
            "/100%",
            "/100%25",
            "/x/%7e/",
            "/a b/ü",
            "/%41%42",
        ] {
            let once = canonical(path).unwrap();
            assert_eq!(canonical(&once), Ok(once.clone()), "{path}");
            assert!(matches!(
                canonicalize(&once, false).unwrap().path,
                Cow::Borrowed(_)
            ));
        }
    }

    #[test]
    fn paths_nginx_already_decoded_pass_as_they_are() {
        // Kong: `:path` is percent-decoded and normalized by nginx.
        for path in [
            "/admin/users",
            "/a b/c",
            "/é/x",
            "/100%",
            "/a+b",
            "/a,b=c@d",
        ] {
            assert_eq!(canonical(path), Ok(path.to_string()), "{path}");
        }
    }

    #[test]
    fn rule_paths_must_be_canonical() {
        assert_eq!(check_rule_path("/t/{tenant}/runs"), Ok(()));
        assert!(check_rule_path("/admin//x")
            .unwrap_err()
            .contains("`/admin/x`"));
        assert!(check_rule_path("/%61dmin")
            .unwrap_err()
            .contains("`/admin`"));
        assert!(check_rule_path("/a;b").is_err());
        assert!(check_rule_path("/a%2fb").is_err());
    }

    #[test]
    fn with_path_keeps_the_query() {
        let facts = RequestFacts {
            path: "//a?x=1".into(),
            ..RequestFacts::default()
        };
        assert_eq!(with_path(&facts, "/a").path, "/a?x=1");
        let facts = RequestFacts {
            path: "//a".into(),
            ..RequestFacts::default()
        };
        assert_eq!(with_path(&facts, "/a").path, "/a");
    }
}
