//! Where tokens come from: headers with a prefix, query parameters, cookies. One [`scan`] of the
//! configured sources returns every candidate with its location; the token is [`read`] from it
//! (its size first, before any parsing or decoding; then its encoding and whether the candidates
//! agree), and a token that could not be read is removed at the scan's [`locations`]
//! (`headers::remove_unread_tokens`). Finding a token is cheap string work.

use crate::config::TokenSource;
use crate::percent::{self, Plus};
use crate::reason::Reason;

/// The facts about a request the filter decides on. Header names are compared
/// case-insensitively (Envoy sends them lower-case; other hosts may not).
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub method: String,
    /// `:path`, including the query string.
    pub path: String,
    /// `:authority` (or `host`).
    pub authority: String,
    /// `:scheme` (`http` or `https`), as the host reports it; empty when it did not. Used only
    /// to rebuild the request's URI for DPoP proofs (`dpop.public_base_url` overrides it).
    pub scheme: String,
    pub headers: Vec<(String, String)>,
    /// The request's nonce, from the host's randomness: the assertion's `jti`, and the request
    /// id when the request has none. Empty when no assertion is configured.
    pub nonce: String,
    /// Refuse a request that carries a header the filter manages, instead of stripping it: set
    /// by the host glue from `headers.spoofed_headers` and the host (see `filter::host`).
    pub reject_spoofed: bool,
    /// The client certificate of the downstream connection, read by the host glue only when
    /// `client_certificate.source` is `connection` (see `mtls`).
    pub peer_certificate: crate::mtls::PeerCertificate,
}

impl RequestFacts {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        split_query(&self.path).0
    }
}

/// Split `/a/b?x=1` into `("/a/b", Some("x=1"))`.
pub fn split_query(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

/// Where a found token was, so it can be removed before the request goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Header(String),
    Query(String),
    Cookie(String),
}

/// A token found in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub token: String,
    pub locations: Vec<Location>,
    /// Every location carried the token with the `DPoP` authorization scheme (RFC 9449 §7.1),
    /// accepted wherever a header source's prefix is `Bearer `.
    pub dpop_scheme: bool,
}

/// One token candidate: the raw text a source holds where a token would be (after the header's
/// prefix, trimmed; the query parameter's value, still encoded; the cookie's value), where it
/// is, and whether it came with the `DPoP` scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub raw: &'a str,
    pub location: Location,
    pub dpop: bool,
}

/// Every token candidate of a request, in the order of the sources and, within a source, of
/// the request. The one reading of the token sources: [`read`] takes the token from it (size,
/// encoding, ambiguity), and the removal of an unread token (`headers::remove_unread_tokens`)
/// takes out its [`locations`].
pub fn scan<'a>(sources: &'a [TokenSource], facts: &'a RequestFacts) -> Vec<Candidate<'a>> {
    let mut out = Vec::new();
    for source in sources {
        candidates(source, facts, &mut out);
    }
    out
}

/// Look for the token in every configured source: [`read`] of the request's [`scan`].
pub fn find(
    sources: &[TokenSource],
    facts: &RequestFacts,
    max_bytes: usize,
) -> Result<Option<Found>, Reason> {
    read(&scan(sources, facts), max_bytes)
}

/// The token the candidates carry. `Ok(None)` when there is none; an error at the first
/// candidate that is too large (checked before decoding), badly encoded or empty, or when they
/// carry different tokens.
pub fn read(candidates: &[Candidate<'_>], max_bytes: usize) -> Result<Option<Found>, Reason> {
    let mut found: Option<Found> = None;
    for Candidate {
        raw,
        location,
        dpop,
    } in candidates
    {
        if raw.len() > max_bytes {
            return Err(Reason::TokenTooLarge);
        }
        let token = match location {
            Location::Query(_) => {
                percent::decode(raw, Plus::Space).ok_or(Reason::TokenMalformed)?
            }
            _ => raw.to_string(),
        };
        if token.is_empty() {
            return Err(Reason::TokenMalformed);
        }
        match &mut found {
            None => {
                found = Some(Found {
                    token,
                    locations: vec![location.clone()],
                    dpop_scheme: *dpop,
                })
            }
            Some(f) if f.token == token => {
                f.dpop_scheme &= *dpop;
                if !f.locations.contains(location) {
                    f.locations.push(location.clone());
                }
            }
            Some(_) => return Err(Reason::TokenAmbiguous),
        }
    }
    Ok(found)
}

/// The locations of the candidates, each once, in order.
pub fn locations(candidates: &[Candidate<'_>]) -> Vec<Location> {
    let mut out: Vec<Location> = Vec::new();
    for c in candidates {
        if !out.contains(&c.location) {
            out.push(c.location.clone());
        }
    }
    out
}

/// The candidates of one source, appended to `out`.
fn candidates<'a>(source: &'a TokenSource, facts: &'a RequestFacts, out: &mut Vec<Candidate<'a>>) {
    let mut push = |raw: &'a str, location: &Location, dpop: bool| {
        out.push(Candidate {
            raw,
            location: location.clone(),
            dpop,
        })
    };
    if let Some(name) = &source.header {
        let prefix = source.prefix.as_deref().unwrap_or("");
        let location = Location::Header(name.to_ascii_lowercase());
        for value in facts.header_values(name) {
            for (rest, dpop) in credentials(value, prefix) {
                push(rest.trim(), &location, dpop);
            }
        }
    } else if let Some(name) = &source.query {
        let location = Location::Query(name.clone());
        if let (_, Some(query)) = split_query(&facts.path) {
            for (key, value) in query_pairs(query) {
                if key == name {
                    push(value, &location, false);
                }
            }
        }
    } else if let Some(name) = &source.cookie {
        let location = Location::Cookie(name.clone());
        for header in facts.header_values("cookie") {
            for (key, value) in cookie_pairs(header) {
                if key == name {
                    push(value, &location, false);
                }
            }
        }
    }
}

/// The credentials in one header value, each after its scheme. A header sent twice reaches the
/// filter as one value joined with `,` in Envoy (RFC 9110 §5.3) and as two values in Kong; a
/// JWS has no `,`, so when every `,`-separated part carries the scheme, each part is one
/// credential, and both hosts see the same two tokens (equal: one token; different:
/// `token_ambiguous`). Otherwise the value is one credential, as sent.
fn credentials<'a>(value: &'a str, prefix: &'a str) -> impl Iterator<Item = (&'a str, bool)> {
    let split = value.contains(',')
        && value
            .split(',')
            .all(|part| after_scheme(part.trim_start(), prefix).is_some());
    let whole = (!split).then_some(value);
    let parts = value.split(',').filter(move |_| split).map(str::trim_start);
    whole
        .into_iter()
        .chain(parts)
        .filter_map(move |credential| after_scheme(credential, prefix))
}

/// The `DPoP` authorization scheme (RFC 9449 §7.1), accepted by every header source whose
/// prefix is `Bearer ` (any case).
pub const DPOP_PREFIX: &str = "DPoP ";

/// The rest of a header value after the source's `prefix`, and whether it came with the `DPoP`
/// scheme instead (only where the prefix is `Bearer `). Both matched ASCII case-insensitively.
pub fn after_scheme<'a>(value: &'a str, prefix: &str) -> Option<(&'a str, bool)> {
    if let Some(rest) = strip_prefix_ignore_case(value, prefix) {
        return Some((rest, false));
    }
    if prefix.eq_ignore_ascii_case("Bearer ") {
        return strip_prefix_ignore_case(value, DPOP_PREFIX).map(|rest| (rest, true));
    }
    None
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        value.get(prefix.len()..)
    } else {
        None
    }
}

/// `a=1&b=2` → pairs; a key without `=` has an empty value.
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// `a=1; b=2` → pairs.
fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(';')
        .map(str::trim)
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
}

/// The path with every `name=...` query parameter removed (the `?` dropped when none is left).
pub fn path_without_query_param(path: &str, name: &str) -> String {
    match split_query(path) {
        (p, Some(query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| {
                    !pair.is_empty() && pair.split_once('=').map_or(*pair, |(k, _)| k) != name
                })
                .collect();
            if kept.is_empty() {
                p.to_string()
            } else {
                format!("{p}?{}", kept.join("&"))
            }
        }
        (p, None) => p.to_string(),
    }
}

/// A `Cookie` header value without the named cookie; `None` when nothing is left.
// Out of line: inlined into its one caller (`headers::remove_token`) it adds 1.8 KB to the
// wasm32 module (tools/wasm_size.py).
#[inline(never)]
pub fn cookie_without(header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.split_once('=').map_or(*p, |(k, _)| k.trim()) != name)
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(path: &str, headers: &[(&str, &str)]) -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            path: path.into(),
            authority: "api.test".into(),
            scheme: "https".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            nonce: "u-1".into(),
            reject_spoofed: false,
            peer_certificate: Default::default(),
        }
    }

    fn bearer() -> TokenSource {
        TokenSource {
            header: Some("authorization".into()),
            prefix: Some("Bearer ".into()),
            query: None,
            cookie: None,
        }
    }

    fn query(name: &str) -> TokenSource {
        TokenSource {
            header: None,
            prefix: None,
            query: Some(name.into()),
            cookie: None,
        }
    }

    fn cookie(name: &str) -> TokenSource {
        TokenSource {
            header: None,
            prefix: None,
            query: None,
            cookie: Some(name.into()),
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc  "] {
            let f = find(&[bearer()], &facts("/", &[("Authorization", value)]), 100)
                .unwrap()
                .unwrap();
            assert_eq!(f.token, "abc");
            assert_eq!(f.locations, vec![Location::Header("authorization".into())]);
        }
    }

    #[test]
    fn other_schemes_are_no_token() {
        assert_eq!(
            find(
                &[bearer()],
                &facts("/", &[("authorization", "Basic abc")]),
                100
            ),
            Ok(None)
        );
        assert_eq!(
            find(&[bearer()], &facts("/", &[("authorization", "Bear")]), 100),
            Ok(None)
        );
        assert_eq!(find(&[bearer()], &facts("/", &[]), 100), Ok(None));
    }

    #[test]
    fn empty_bearer_is_malformed() {
        assert_eq!(
            find(
                &[bearer()],
                &facts("/", &[("authorization", "Bearer   ")]),
                100
            ),
            Err(Reason::TokenMalformed)
        );
    }

    #[test]
    fn size_is_checked_before_parsing() {
        let long = format!("Bearer {}", "a".repeat(101));
        assert_eq!(
            find(&[bearer()], &facts("/", &[("authorization", &long)]), 100),
            Err(Reason::TokenTooLarge)
        );
        let q = format!("/?t={}", "%".repeat(101));
        assert_eq!(
            find(&[query("t")], &facts(&q, &[]), 100),
            Err(Reason::TokenTooLarge)
        );
    }

    #[test]
    fn query_parameter_is_decoded() {
        let f = find(
            &[query("access_token")],
            &facts("/x?a=1&access_token=ab%2Ec&b", &[]),
            100,
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.token, "ab.c");
        assert_eq!(
            find(&[query("t")], &facts("/x?t=%zz", &[]), 100),
            Err(Reason::TokenMalformed)
        );
        assert_eq!(
            find(&[query("t")], &facts("/x?t=%+1", &[]), 100),
            Err(Reason::TokenMalformed)
        );
    }

    #[test]
    fn cookie_is_found() {
        let f = find(
            &[cookie("session")],
            &facts("/", &[("cookie", "a=1; session=tok; b=2")]),
            100,
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.token, "tok");
        assert_eq!(f.locations, vec![Location::Cookie("session".into())]);
    }

    #[test]
    fn same_token_in_two_places_is_fine_different_is_ambiguous() {
        let sources = [bearer(), query("t")];
        let f = find(
            &sources,
            &facts("/?t=abc", &[("authorization", "Bearer abc")]),
            100,
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.locations.len(), 2);
        assert_eq!(
            find(
                &sources,
                &facts("/?t=xyz", &[("authorization", "Bearer abc")]),
                100
            ),
            Err(Reason::TokenAmbiguous)
        );
        let two_headers = facts(
            "/",
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
        );
        assert_eq!(
            find(&[bearer()], &two_headers, 100),
            Err(Reason::TokenAmbiguous)
        );
    }

    #[test]
    fn a_header_sent_twice_reads_the_same_joined_or_not() {
        let found = |headers: &[(&str, &str)]| {
            find(&[bearer()], &facts("/", headers), 100).map(|f| f.map(|f| f.token))
        };
        // Kong: two values; Envoy: one value joined with `,`.
        for same in [
            &[
                ("authorization", "Bearer a.b.c"),
                ("authorization", "Bearer a.b.c"),
            ][..],
            &[("authorization", "Bearer a.b.c,Bearer a.b.c")][..],
            &[("authorization", "Bearer a.b.c, bearer a.b.c")][..],
        ] {
            assert_eq!(found(same), Ok(Some("a.b.c".into())), "{same:?}");
        }
        for different in [
            &[
                ("authorization", "Bearer a.b.c"),
                ("authorization", "Bearer d.e.f"),
            ][..],
            &[("authorization", "Bearer a.b.c,Bearer d.e.f")][..],
            &[("authorization", "Bearer a.b.c, DPoP d.e.f")][..],
        ] {
            assert_eq!(
                found(different),
                Err(Reason::TokenAmbiguous),
                "{different:?}"
            );
        }
        // A part without the scheme: the value is one credential, as sent (not a JWS).
        assert_eq!(
            found(&[("authorization", "Bearer a.b.c, Basic eHl6")]),
            Ok(Some("a.b.c, Basic eHl6".into()))
        );
        assert_eq!(
            found(&[("authorization", "Basic eHl6,Basic eHl6")]),
            Ok(None)
        );
        // A trailing comma leaves an empty credential.
        assert_eq!(
            found(&[("authorization", "Bearer a.b.c,Bearer ")]),
            Err(Reason::TokenMalformed)
        );
    }

    #[test]
    fn non_ascii_header_values_do_not_panic() {
        let v = "Beärer abc";
        assert_eq!(
            find(&[bearer()], &facts("/", &[("authorization", v)]), 100),
            Ok(None)
        );
        let v = "é";
        assert_eq!(
            find(&[bearer()], &facts("/", &[("authorization", v)]), 100),
            Ok(None)
        );
        // After the scheme, non-ASCII is the credential's own: found as sent, judged later.
        for v in ["Bearer é", "Bearer a.é.c", "bearer \u{0}é"] {
            assert_eq!(
                find(&[bearer()], &facts("/", &[("authorization", v)]), 100)
                    .map(|f| f.map(|f| f.token)),
                Ok(Some(v[7..].into())),
                "{v:?}"
            );
        }
    }

    #[test]
    fn token_is_removed_from_query_and_cookie() {
        assert_eq!(
            path_without_query_param("/x?a=1&t=abc&b=2", "t"),
            "/x?a=1&b=2"
        );
        assert_eq!(path_without_query_param("/x?t=abc", "t"), "/x");
        assert_eq!(path_without_query_param("/x", "t"), "/x");
        assert_eq!(
            cookie_without("a=1; s=tok; b=2", "s"),
            Some("a=1; b=2".into())
        );
        assert_eq!(cookie_without("s=tok", "s"), None);
    }

    fn header_source(name: &str, prefix: Option<&str>) -> TokenSource {
        TokenSource {
            header: Some(name.into()),
            prefix: prefix.map(Into::into),
            query: None,
            cookie: None,
        }
    }

    #[test]
    fn a_scan_returns_every_candidate_with_its_location_in_order() {
        let sources = [
            bearer(),
            query("t"),
            cookie("s"),
            header_source("X-Api-Token", None),
        ];
        let f = facts(
            "/x?t=a%2Eb&k=1&t=&t",
            &[
                ("cookie", "s=c1; o=1"),
                ("Authorization", "Bearer h1,DPoP h2"),
                ("x-api-token", " raw "),
                ("authorization", "Basic no"),
                ("Cookie", "s=\"c2\""),
            ],
        );
        let header = |name: &str| Location::Header(name.into());
        let q = Location::Query("t".into());
        let c = Location::Cookie("s".into());
        let expected = [
            ("h1", header("authorization"), false),
            ("h2", header("authorization"), true),
            ("a%2Eb", q.clone(), false),
            ("", q.clone(), false),
            ("", q.clone(), false),
            ("c1", c.clone(), false),
            ("c2", c.clone(), false),
            ("raw", header("x-api-token"), false),
        ];
        let got: Vec<(&str, Location, bool)> = scan(&sources, &f)
            .into_iter()
            .map(|c| (c.raw, c.location, c.dpop))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(
            locations(&scan(&sources, &f)),
            vec![header("authorization"), q, c, header("x-api-token")],
            "each location once, in the order of the scan"
        );
    }

    #[test]
    fn a_scan_finds_nothing_where_no_source_holds_a_token() {
        let sources = [bearer(), query("t"), cookie("s")];
        let f = facts(
            "/x?tt=1&&a=t&?t",
            &[
                ("authorization", "Basic dTpw"),
                ("cookie", "ss=1; t=2; s"),
                ("x-t", "Bearer a"),
            ],
        );
        assert_eq!(scan(&sources, &f), vec![]);
        assert_eq!(read(&[], 10), Ok(None));
    }

    #[test]
    fn read_refuses_at_the_first_bad_candidate_in_scan_order() {
        let location = Location::Header("authorization".into());
        let candidate = |raw| Candidate {
            raw,
            location: location.clone(),
            dpop: false,
        };
        // The first bad candidate, in scan order, gives the reason.
        let big = "x".repeat(11);
        assert_eq!(
            read(&[candidate(&big), candidate("a"), candidate("b")], 10),
            Err(Reason::TokenTooLarge)
        );
        assert_eq!(
            read(&[candidate("a"), candidate("b"), candidate(&big)], 10),
            Err(Reason::TokenAmbiguous)
        );
        assert_eq!(
            read(&[candidate("a"), candidate(""), candidate("b")], 10),
            Err(Reason::TokenMalformed)
        );
        let dpop = Candidate {
            dpop: true,
            ..candidate("a")
        };
        let f = read(&[dpop.clone(), candidate("a")], 10).unwrap().unwrap();
        assert_eq!((f.token.as_str(), f.dpop_scheme), ("a", false));
        assert_eq!(f.locations, vec![location.clone()]);
        let f = read(&[dpop.clone(), dpop], 10).unwrap().unwrap();
        assert!(f.dpop_scheme);
    }

    #[test]
    fn find_is_read_of_the_scan() {
        let sources = [bearer(), query("t"), cookie("s")];
        for f in [
            facts("/?t=abc", &[("authorization", "Bearer abc")]),
            facts("/?t=abc", &[("authorization", "Bearer abd")]),
            facts("/?t=%zz", &[("cookie", "s=abc")]),
            facts("/", &[("cookie", "s=abc; s=abc")]),
            facts("/", &[("authorization", "DPoP abc")]),
        ] {
            for max in [2, 100] {
                assert_eq!(
                    find(&sources, &f, max),
                    read(&scan(&sources, &f), max),
                    "{f:?}"
                );
            }
        }
    }

    #[test]
    fn path_only_drops_query() {
        assert_eq!(facts("/a/b?x=1", &[]).path_only(), "/a/b");
        assert_eq!(facts("/a/b", &[]).path_only(), "/a/b");
    }
}
