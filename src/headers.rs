//! Request headers the filter changes: every identity header is stripped from the client's
//! request, then the verified identity is set; the original token is removed unless forwarded.

use crate::claims;
use crate::config::{Config, TokenSource};
use crate::identity::Identity;
use crate::token::{self, Found, Location, RequestFacts};

/// One change to the request going upstream. Removals are applied before sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    Remove(String),
    Set(String, String),
}

/// Every header name the filter may set or was told to strip, lower-case and without
/// duplicates. These are removed from every request, whatever the decision.
pub fn managed(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let claim_headers = config.headers.claims.iter().map(|c| c.header.as_str());
    let own = [
        Some(config.headers.report_header.as_str()),
        config.headers.assertion.as_ref().map(|a| a.header.as_str()),
    ];
    let all = claim_headers
        .chain(own.into_iter().flatten())
        .chain(config.headers.strip.iter().map(String::as_str));
    for name in all {
        let lower = name.to_ascii_lowercase();
        if !names.contains(&lower) {
            names.push(lower);
        }
    }
    names
}

/// Removal of every managed header the request carries (the facts hold all its headers, so an
/// absent one needs no host call): the start of every request's changes.
pub fn strip(managed: &[String], facts: &RequestFacts) -> Vec<HeaderOp> {
    managed
        .iter()
        .filter(|n| facts.header(n).is_some())
        .map(|n| HeaderOp::Remove(n.clone()))
        .collect()
}

/// Claim headers for a verified caller. A claim that is absent, null, or would put a control
/// character into the header is skipped (the header stays stripped).
pub fn identity(config: &Config, who: &Identity) -> Vec<HeaderOp> {
    config
        .headers
        .claims
        .iter()
        .filter_map(|c| {
            let text = match (&c.claim, c.identity) {
                (Some(path), _) => claims::header_value(claims::lookup(&who.claims, path)?)?,
                (None, Some(field)) => claims::header_value(&who.field(field)?)?,
                (None, None) => return None,
            };
            Some(HeaderOp::Set(c.header.to_ascii_lowercase(), text))
        })
        .collect()
}

/// Changes that take out every token candidate when none could be read (too large, empty,
/// different tokens in several places): each configured source that holds something that looks
/// like a token (a header value with the source's prefix, the query parameter, the cookie).
pub fn remove_unread_tokens(sources: &[TokenSource], facts: &RequestFacts) -> Vec<HeaderOp> {
    let has_prefix = |value: &str, prefix: &str| {
        value
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    let has_cookie = |name: &str| {
        facts.header_values("cookie").any(|header| {
            header
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .any(|(key, _)| key.trim() == name)
        })
    };
    let mut locations = Vec::new();
    for source in sources {
        if let Some(name) = &source.header {
            let prefix = source.prefix.as_deref().unwrap_or("");
            if facts.header_values(name).any(|v| has_prefix(v, prefix)) {
                locations.push(Location::Header(name.to_ascii_lowercase()));
            }
        } else if let Some(name) = &source.query {
            if token::path_without_query_param(&facts.path, name) != facts.path {
                locations.push(Location::Query(name.clone()));
            }
        } else if let Some(name) = &source.cookie {
            if has_cookie(name) {
                locations.push(Location::Cookie(name.clone()));
            }
        }
    }
    let found = Found {
        token: String::new(),
        locations,
    };
    remove_token(&found, facts)
}

/// Changes that take the token out of the request, from wherever it was found.
pub fn remove_token(found: &Found, facts: &RequestFacts) -> Vec<HeaderOp> {
    let mut ops = Vec::new();
    let mut path = facts.path.clone();
    let mut cookie: Option<String> = None;
    for location in &found.locations {
        match location {
            Location::Header(name) => ops.push(HeaderOp::Remove(name.clone())),
            Location::Query(name) => path = token::path_without_query_param(&path, name),
            Location::Cookie(name) => {
                let current = cookie.take().unwrap_or_else(|| {
                    facts.header_values("cookie").collect::<Vec<_>>().join("; ")
                });
                cookie = Some(token::cookie_without(&current, name).unwrap_or_default());
            }
        }
    }
    if path != facts.path {
        ops.push(HeaderOp::Set(":path".into(), path));
    }
    match cookie {
        Some(c) if c.is_empty() => ops.push(HeaderOp::Remove("cookie".into())),
        Some(c) => ops.push(HeaderOp::Set("cookie".into(), c)),
        None => {}
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(headers: serde_json::Value) -> Config {
        let v = json!({
            "providers": [{"name": "p", "issuer": "i", "jwks": {"keys": []}}],
            "headers": headers,
        });
        Config::from_json(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn managed_headers_cover_claims_and_strip_list() {
        let c = config(json!({
            "claims": [{"claim": "sub", "header": "X-Identity-Subject"}, {"claim": "email", "header": "x-identity-email"}],
            "strip": ["x-identity-subject", "Prefect-Automation-Id"]
        }));
        assert_eq!(
            managed(&c),
            vec![
                "x-identity-subject",
                "x-identity-email",
                "x-identity-report",
                "prefect-automation-id"
            ]
        );
        let f = facts(
            "/",
            &[
                ("X-Identity-Subject", "admin"),
                ("prefect-automation-id", "1"),
            ],
        );
        assert_eq!(
            strip(&managed(&c), &f),
            vec![
                HeaderOp::Remove("x-identity-subject".into()),
                HeaderOp::Remove("prefect-automation-id".into())
            ]
        );
    }

    #[test]
    fn identity_headers_from_claims() {
        let c = config(json!({"claims": [
            {"claim": "sub", "header": "x-sub"},
            {"claim": "realm_access.roles", "header": "x-roles"},
            {"claim": "missing", "header": "x-missing"},
            {"claim": "evil", "header": "x-evil"},
            {"identity": "scopes", "header": "x-scopes"},
            {"identity": "tenant", "header": "x-tenant"}
        ]}));
        let claims = json!({"sub": "alice", "realm_access": {"roles": ["a", "b"]}, "evil": "x\r\ny: z", "scp": ["r", "w"]});
        let provider = &c.providers[0];
        let who = Identity::from_claims(provider, claims.as_object().unwrap().clone());
        let ops = identity(&c, &who);
        assert_eq!(
            ops,
            vec![
                HeaderOp::Set("x-sub".into(), "alice".into()),
                HeaderOp::Set("x-roles".into(), "a,b".into()),
                HeaderOp::Set("x-scopes".into(), "r,w".into()),
            ]
        );
    }

    fn facts(path: &str, headers: &[(&str, &str)]) -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            path: path.into(),
            authority: "a".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            unique: "u-1".into(),
        }
    }

    #[test]
    fn token_is_removed_where_it_was_found() {
        let f = facts("/x?t=abc&k=1", &[("cookie", "s=abc; o=1")]);
        let found = Found {
            token: "abc".into(),
            locations: vec![
                Location::Header("authorization".into()),
                Location::Query("t".into()),
                Location::Cookie("s".into()),
            ],
        };
        assert_eq!(
            remove_token(&found, &f),
            vec![
                HeaderOp::Remove("authorization".into()),
                HeaderOp::Set(":path".into(), "/x?k=1".into()),
                HeaderOp::Set("cookie".into(), "o=1".into()),
            ]
        );
    }

    #[test]
    fn unread_tokens_are_removed_from_every_source_that_holds_one() {
        let sources: Vec<TokenSource> = serde_json::from_value(json!([
            {"header": "authorization", "prefix": "Bearer "},
            {"header": "x-api-token"},
            {"query": "access_token"},
            {"cookie": "session"}
        ]))
        .unwrap();
        let f = facts(
            "/x?access_token=%zz&k=1",
            &[
                ("authorization", "Basic dTpw"),
                ("cookie", "a=1; session=t"),
            ],
        );
        assert_eq!(
            remove_unread_tokens(&sources, &f),
            vec![
                HeaderOp::Set(":path".into(), "/x?k=1".into()),
                HeaderOp::Set("cookie".into(), "a=1".into()),
            ],
            "a header without the source's prefix holds no token and stays"
        );
        let f = facts("/x", &[("Authorization", "bearer  ")]);
        assert_eq!(
            remove_unread_tokens(&sources, &f),
            vec![HeaderOp::Remove("authorization".into())]
        );
        assert!(remove_unread_tokens(&sources, &facts("/x?k=1", &[])).is_empty());
    }

    #[test]
    fn last_cookie_removal_drops_the_header() {
        let f = facts("/", &[("cookie", "s=abc")]);
        let found = Found {
            token: "abc".into(),
            locations: vec![Location::Cookie("s".into())],
        };
        assert_eq!(
            remove_token(&found, &f),
            vec![HeaderOp::Remove("cookie".into())]
        );
    }
}
