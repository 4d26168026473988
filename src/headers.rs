//! Request headers the filter changes, as one list of [`HeaderOp`]s applied in order (see
//! `decide`): the managed headers the client sent are removed ([`strip`]), then the canonical
//! `:path`, the report header, the claim headers ([`claim_headers`]) and the assertion are set,
//! and last the token is taken out unless forwarded ([`remove_token`]: its header removed, and
//! `:path` or `cookie` set again without it). Removals and sets are interleaved, not grouped.

use crate::claims;
use crate::config::{Config, TokenSource};
use crate::identity::Identity;
use crate::token::{self, Found, Location, RequestFacts};

/// One change to the request going upstream, applied in the order of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    Remove(String),
    Set(String, String),
}

/// The request headers that belong to the filter: every name it may set (the claim headers of
/// `headers.claims` and of every provider's `claim_headers`, the report and assertion headers)
/// or was told to strip (lower case, no duplicates), and every name under
/// `headers.reserved_prefix`, except the token-source headers and the assertion's request id
/// header, which clients send. A host that cannot remove request headers refuses a request
/// that carries one instead (`headers.spoofed_headers`).
///
/// The client-certificate header the configuration trusts (`client_certificate` with source
/// `xfcc` or `header`) is managed too: read, then removed before the request goes upstream. It
/// is expected on every request, put there by the TLS terminator in front (which replaces any
/// client-sent copy), so it is never refused as spoofed (`trusted`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Managed {
    pub names: Vec<String>,
    pub prefix: String,
    pub exempt: Vec<String>,
    pub trusted: Option<String>,
}

impl Managed {
    /// Whether a request header name (any case) belongs to the filter.
    pub fn contains(&self, name: &str) -> bool {
        if self.exempt.iter().any(|e| e.eq_ignore_ascii_case(name)) {
            return false;
        }
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
            || (!self.prefix.is_empty()
                && name
                    .get(..self.prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(&self.prefix)))
    }

    /// The managed headers a request carries that the filter refuses under
    /// `spoofed_headers: reject` (all of [`Managed::present`] but the trusted certificate header).
    pub fn spoofed<'a>(&'a self, present: &'a [String]) -> impl Iterator<Item = &'a String> + 'a {
        present
            .iter()
            .filter(move |name| self.trusted.as_deref() != Some(name.as_str()))
    }

    /// The managed headers a request carries, lower case and without duplicates, in order.
    pub fn present(&self, facts: &RequestFacts) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (name, _) in &facts.headers {
            if self.contains(name) && !out.iter().any(|o| o.eq_ignore_ascii_case(name)) {
                out.push(name.to_ascii_lowercase());
            }
        }
        out
    }
}

/// What a configuration manages (see [`Managed`]).
pub fn managed(config: &Config) -> Managed {
    let mut names: Vec<String> = Vec::new();
    let claim_headers = config
        .headers
        .claims
        .iter()
        .chain(
            config
                .providers
                .iter()
                .flat_map(|p| p.claim_headers.iter().flatten()),
        )
        .map(|c| c.header.as_str());
    let own = [
        Some(config.headers.report_header.as_str()),
        config.headers.assertion.as_ref().map(|a| a.header.as_str()),
    ];
    let all = claim_headers
        .chain(own.into_iter().flatten())
        .chain(config.headers.strip.iter().map(String::as_str));
    let trusted = crate::mtls::trusted_header(&config.client_certificate);
    for name in all.chain(trusted.as_deref()) {
        let lower = name.to_ascii_lowercase();
        if !names.contains(&lower) {
            names.push(lower);
        }
    }
    let exempt = config
        .token_sources
        .iter()
        .filter_map(|s| s.header.as_deref())
        .chain(
            config
                .headers
                .assertion
                .as_ref()
                .map(|a| a.request_id_header.as_str()),
        )
        .map(str::to_ascii_lowercase)
        .filter(|n| !names.contains(n))
        .collect();
    Managed {
        names,
        prefix: config.headers.reserved_prefix.clone(),
        exempt,
        trusted,
    }
}

/// Removal of the managed headers a request carries ([`Managed::present`]; the facts hold all
/// its headers, so an absent one needs no host call): the start of every request's changes.
pub fn strip(present: Vec<String>) -> Vec<HeaderOp> {
    present.into_iter().map(HeaderOp::Remove).collect()
}

/// Claim headers for a verified caller: its provider's `claim_headers` when set, else
/// `headers.claims`. A claim that is absent, null, or would put a control character into the
/// header is skipped (the header stays stripped).
pub fn claim_headers(config: &Config, who: &Identity) -> Vec<HeaderOp> {
    let own = config
        .providers
        .iter()
        .find(|p| p.name == who.provider)
        .and_then(|p| p.claim_headers.as_ref());
    own.unwrap_or(&config.headers.claims)
        .iter()
        .filter_map(|c| {
            let text = match (&c.claim, c.identity) {
                (Some(path), _) => claims::header_value(path.lookup(&who.claims)?)?,
                (None, Some(field)) => claims::header_value(&who.field(field)?)?,
                (None, None) => return None,
            };
            Some(HeaderOp::Set(c.header.to_ascii_lowercase(), text))
        })
        .collect()
}

/// Changes that take out every token candidate when none could be read (too large, empty,
/// different tokens in several places): every location of the request's [`token::scan`], the
/// candidates `token::find` read and refused.
pub fn remove_unread_tokens(sources: &[TokenSource], facts: &RequestFacts) -> Vec<HeaderOp> {
    remove_at(&token::locations(&token::scan(sources, facts)), facts)
}

/// Changes that take the token out of the request, from wherever it was found.
pub fn remove_token(found: &Found, facts: &RequestFacts) -> Vec<HeaderOp> {
    remove_at(&found.locations, facts)
}

/// Changes that take out whatever is at `locations`: a header, a query parameter, a cookie.
fn remove_at(locations: &[Location], facts: &RequestFacts) -> Vec<HeaderOp> {
    let mut ops = Vec::new();
    let mut path = facts.path.clone();
    let mut cookie: Option<String> = None;
    for location in locations {
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
            managed(&c).names,
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
            strip(managed(&c).present(&f)),
            vec![
                HeaderOp::Remove("x-identity-subject".into()),
                HeaderOp::Remove("prefect-automation-id".into())
            ]
        );
    }

    #[test]
    fn every_name_under_the_reserved_prefix_is_stripped_whatever_is_configured() {
        let c = config(json!({"claims": [{"claim": "sub", "header": "x-sub"}]}));
        let f = facts(
            "/",
            &[
                ("X-Identity-Assertion", "forged"),
                ("x-identity-tenant", "t"),
                ("x-sub", "admin"),
                ("x-other", "kept"),
            ],
        );
        assert_eq!(
            strip(managed(&c).present(&f)),
            vec![
                HeaderOp::Remove("x-identity-assertion".into()),
                HeaderOp::Remove("x-identity-tenant".into()),
                HeaderOp::Remove("x-sub".into()),
            ]
        );
        let off = config(json!({"reserved_prefix": ""}));
        assert!(strip(managed(&off).present(&f)).is_empty());
    }

    #[test]
    fn token_sources_and_the_request_id_are_never_managed() {
        let v = json!({
            "providers": [{"name": "p", "issuer": "i", "jwks": {"keys": []}}],
            "token_sources": [{"header": "X-Identity-Token"}],
            "headers": {"assertion": {"audience": "a", "request_id_header": "x-identity-request-id",
                "keys": [{"kid": "k", "secret": "0123456789abcdef0123456789abcdef"}]}},
        });
        let c = Config::from_json(v.to_string().as_bytes()).unwrap();
        let m = managed(&c);
        assert!(!m.contains("x-identity-token"));
        assert!(!m.contains("x-identity-request-id"));
        assert!(m.contains("x-identity-assertion"));
        assert!(m.contains("x-identity-anything"));
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
        let ops = claim_headers(&c, &who);
        assert_eq!(
            ops,
            vec![
                HeaderOp::Set("x-sub".into(), "alice".into()),
                HeaderOp::Set("x-roles".into(), "a,b".into()),
                HeaderOp::Set("x-scopes".into(), "r,w".into()),
            ]
        );
    }

    /// Two issuers that spell their claims differently: `corp` maps its own, `k8s` has its own
    /// list, `plain` uses the global one.
    fn per_provider() -> Config {
        let v = json!({
            "providers": [
                {"name": "corp", "issuer": "https://corp.test", "jwks": {"keys": []},
                 "claim_headers": [{"claim": "email", "header": "X-Corp-Email"}]},
                {"name": "k8s", "issuer": "https://kubernetes.default.svc.cluster.local", "jwks": {"keys": []},
                 "claim_headers": [
                    {"claim": "kubernetes.io.namespace", "header": "x-k8s-namespace"},
                    {"claim": ["kubernetes.io", "serviceaccount", "name"], "header": "x-k8s-sa"}
                 ]},
                {"name": "plain", "issuer": "https://plain.test", "jwks": {"keys": []}}
            ],
            "headers": {"claims": [{"claim": "email", "header": "x-email"}], "reserved_prefix": ""},
        });
        Config::from_json(v.to_string().as_bytes()).unwrap()
    }

    fn caller(c: &Config, provider: usize, claims: serde_json::Value) -> Identity {
        Identity::from_claims(&c.providers[provider], claims.as_object().unwrap().clone())
    }

    #[test]
    fn a_providers_claim_headers_replace_the_global_ones_for_its_tokens() {
        let c = per_provider();
        let claims = json!({
            "sub": "system:serviceaccount:flows:worker", "email": "a@corp.test",
            "kubernetes.io": {"namespace": "flows", "serviceaccount": {"name": "worker"}}
        });
        assert_eq!(
            claim_headers(&c, &caller(&c, 0, claims.clone())),
            vec![HeaderOp::Set("x-corp-email".into(), "a@corp.test".into())]
        );
        assert_eq!(
            claim_headers(&c, &caller(&c, 1, claims.clone())),
            vec![
                HeaderOp::Set("x-k8s-namespace".into(), "flows".into()),
                HeaderOp::Set("x-k8s-sa".into(), "worker".into()),
            ],
            "the global x-email is not set for k8s tokens"
        );
        assert_eq!(
            claim_headers(&c, &caller(&c, 2, claims)),
            vec![HeaderOp::Set("x-email".into(), "a@corp.test".into())]
        );
    }

    #[test]
    fn every_providers_claim_headers_are_managed() {
        let c = per_provider();
        let m = managed(&c);
        for name in ["x-email", "x-corp-email", "x-k8s-namespace", "x-k8s-sa"] {
            assert!(m.contains(name), "{name}");
        }
        let f = facts(
            "/",
            &[
                ("X-K8s-SA", "admin"),
                ("x-corp-email", "boss@corp.test"),
                ("x-other", "1"),
            ],
        );
        assert_eq!(
            strip(m.present(&f)),
            vec![
                HeaderOp::Remove("x-k8s-sa".into()),
                HeaderOp::Remove("x-corp-email".into())
            ]
        );
    }

    fn facts(path: &str, headers: &[(&str, &str)]) -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            path: path.into(),
            authority: "a".into(),
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
            dpop_scheme: false,
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
        // Only the scan's candidates go: a query without the parameter is left as it was sent,
        // empty pairs and all.
        let f = facts("/x?k=1&&b&", &[("authorization", "Bearer ")]);
        assert_eq!(
            remove_unread_tokens(&sources, &f),
            vec![HeaderOp::Remove("authorization".into())]
        );
    }

    /// The request after `ops`, as the host applies them.
    fn apply(ops: &[HeaderOp], facts: &RequestFacts) -> RequestFacts {
        let mut out = facts.clone();
        for op in ops {
            match op {
                HeaderOp::Remove(name) => {
                    out.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name))
                }
                HeaderOp::Set(name, value) if name == ":path" => out.path = value.clone(),
                HeaderOp::Set(name, value) => {
                    out.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    out.headers.push((name.clone(), value.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn unread_token_removal_takes_out_exactly_the_scans_candidates() {
        let sources: Vec<TokenSource> = serde_json::from_value(json!([
            {"header": "authorization", "prefix": "Bearer "},
            {"header": "x-api-token"},
            {"query": "access_token"},
            {"cookie": "session"}
        ]))
        .unwrap();
        let requests = [
            facts("/x?access_token=a&access_token=b&k=1", &[]),
            facts("/x?k=1&access_token", &[("authorization", "Basic dTpw")]),
            facts(
                "/x?k=1",
                &[
                    ("Authorization", "Bearer a,DPoP b"),
                    ("cookie", "o=1; session=s"),
                    ("cookie", "session=t"),
                ],
            ),
            facts("/x", &[("x-api-token", ""), ("cookie", "sessions=1")]),
            facts("/x?accesstoken=1", &[("authorization", "bearer")]),
        ];
        for f in &requests {
            let candidates = token::scan(&sources, f);
            let ops = remove_unread_tokens(&sources, f);
            let after = apply(&ops, f);
            assert_eq!(token::scan(&sources, &after), vec![], "{f:?}: {ops:?}");
            // Nothing else changed: every header, query parameter and cookie that is not a
            // candidate's location is still there.
            let removed = token::locations(&candidates);
            for (name, value) in &f.headers {
                let gone = removed.contains(&Location::Header(name.to_ascii_lowercase()));
                let kept = after.headers.iter().any(|(n, v)| n == name && v == value);
                if name != "cookie" {
                    assert_eq!(kept, !gone, "{f:?}: {name}");
                }
            }
            let other_params = |path: &str| -> Vec<String> {
                token::split_query(path)
                    .1
                    .into_iter()
                    .flat_map(|q| q.split('&'))
                    .filter(|p| p.split('=').next() != Some("access_token"))
                    .map(String::from)
                    .collect()
            };
            assert_eq!(other_params(&after.path), other_params(&f.path));
            let other_cookies = |facts: &RequestFacts| -> Vec<String> {
                facts
                    .header_values("cookie")
                    .flat_map(|h| h.split(';'))
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.starts_with("session="))
                    .collect()
            };
            assert_eq!(other_cookies(&after), other_cookies(f));
            if candidates.is_empty() {
                assert_eq!(ops, vec![], "{f:?}");
            }
        }
    }

    #[test]
    fn last_cookie_removal_drops_the_header() {
        let f = facts("/", &[("cookie", "s=abc")]);
        let found = Found {
            token: "abc".into(),
            locations: vec![Location::Cookie("s".into())],
            dpop_scheme: false,
        };
        assert_eq!(
            remove_token(&found, &f),
            vec![HeaderOp::Remove("cookie".into())]
        );
    }
}
