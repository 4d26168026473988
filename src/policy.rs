//! Route rules: which rule covers a request, and what it asks of the caller.

use std::borrow::Cow;

use crate::claims;
use crate::config::{
    ClaimCondition, Config, DefaultAction, Requirement, RouteMatch, Rule, SetCondition,
};
use crate::identity::Identity;
use crate::reason::{Denial, Reason};

/// What the covering rule asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed; a token that is sent must be valid.
    Anonymous,
    /// A valid token is needed.
    Authenticated,
    /// Refused whatever the caller sends.
    Deny,
}

/// The rule that covers a request.
#[derive(Debug, Clone)]
pub struct Matched<'a> {
    /// The rule's name (`rules[i]` when unnamed, `default` when no rule matched).
    pub name: Cow<'a, str>,
    pub access: Access,
    /// The rule itself; `None` for the default.
    pub rule: Option<&'a Rule>,
    /// Segments captured by the rule's `path_template`.
    pub captures: Vec<(&'a str, String)>,
    /// Whether the decision is only reported (the rule's or the global `report_only`).
    pub report_only: bool,
    /// The canonical path (without query) when it differs from the path as sent: rules were
    /// matched on it, and it is the path that goes upstream (see [`crate::path`]).
    pub canonical: Option<String>,
}

impl Matched<'_> {
    /// Whether the rule applies only to some providers' tokens (`match.providers`).
    pub fn provider_gated(&self) -> bool {
        self.rule.is_some_and(|r| !r.route.providers.is_empty())
    }

    /// The denial when the access is [`Access::Deny`]: `forbidden` naming the rule, or
    /// `path_not_canonical` for a path that cannot be matched safely.
    pub fn refusal(&self) -> Denial {
        if self.name == NOT_CANONICAL_RULE && self.rule.is_none() {
            Denial::new(Reason::PathNotCanonical)
        } else {
            Denial::by_rule(Reason::Forbidden, &self.name)
        }
    }
}

/// The pseudo-rule that refuses a path with dot segments.
pub const DOT_SEGMENTS_RULE: &str = "path_dot_segments";

/// The pseudo-rule that refuses a path without a safe canonical form (`400 path_not_canonical`).
pub const NOT_CANONICAL_RULE: &str = "path_not_canonical";

fn refused<'a>(config: &Config, name: &'static str) -> Matched<'a> {
    Matched {
        name: Cow::Borrowed(name),
        access: Access::Deny,
        rule: None,
        captures: Vec::new(),
        report_only: config.report_only,
        canonical: None,
    }
}

/// Find the first rule whose match covers `method`, `path` (without query string) and `host`
/// (the `:authority`). A path with dot segments matches no rule: it is refused by the
/// pseudo-rule [`DOT_SEGMENTS_RULE`] (see [`has_dot_segment`]). Rules are matched on the
/// path's canonical form ([`crate::path`]); a path without one is refused by the pseudo-rule
/// [`NOT_CANONICAL_RULE`].
/// A rule with `match.providers` is taken like any other here (it asks for a token); once the
/// token is verified, [`select_for_provider`] chooses again.
pub fn select<'a>(config: &'a Config, method: &str, path: &str, host: &str) -> Matched<'a> {
    select_with(config, method, path, host, None)
}

/// As [`select`], for a request whose token was verified and issued by `provider`: rules with
/// `match.providers` that do not list it are passed over.
pub fn select_for_provider<'a>(
    config: &'a Config,
    method: &str,
    path: &str,
    host: &str,
    provider: &str,
) -> Matched<'a> {
    select_with(config, method, path, host, Some(provider))
}

fn select_with<'a>(
    config: &'a Config,
    method: &str,
    path: &str,
    host: &str,
    provider: Option<&str>,
) -> Matched<'a> {
    if has_dot_segment(path) {
        return refused(config, DOT_SEGMENTS_RULE);
    }
    let Ok(canonical) = crate::path::canonicalize(path, config.paths.allow_parameters) else {
        return refused(config, NOT_CANONICAL_RULE);
    };
    let rewrite = match &canonical.path {
        Cow::Owned(p) => Some(p.clone()),
        Cow::Borrowed(_) => None,
    };
    // The host gave a path that was not UTF-8 (read lossily): it cannot be rewritten faithfully.
    if rewrite.is_some() && path.contains('\u{FFFD}') {
        return refused(config, NOT_CANONICAL_RULE);
    }
    let path = canonical.matched.as_ref();
    for (i, rule) in config.rules.iter().enumerate() {
        let gates = &rule.route.providers;
        if provider.is_some_and(|p| !gates.is_empty() && !gates.iter().any(|g| g == p)) {
            continue;
        }
        let ignore_case = rule.route.ignore_case.unwrap_or(config.paths.ignore_case);
        if let Some(captures) = covers(&rule.route, method, path, host, ignore_case) {
            let name = match &rule.name {
                Some(n) => Cow::Borrowed(n.as_str()),
                None => Cow::Owned(format!("rules[{i}]")),
            };
            let access = if rule.allow_anonymous {
                Access::Anonymous
            } else {
                Access::Authenticated
            };
            return Matched {
                name,
                access,
                rule: Some(rule),
                captures,
                report_only: rule.report_only || config.report_only,
                canonical: rewrite,
            };
        }
    }
    let access = match config.default {
        DefaultAction::Deny => Access::Deny,
        DefaultAction::Authenticated => Access::Authenticated,
        DefaultAction::Anonymous => Access::Anonymous,
    };
    Matched {
        name: Cow::Borrowed("default"),
        access,
        rule: None,
        captures: Vec::new(),
        report_only: config.report_only,
        canonical: rewrite,
    }
}

/// When every condition of the match holds: the template's captures (empty without one).
/// `path` is canonical; `ignore_case` compares its letters ASCII case-insensitively.
pub fn covers<'a>(
    route: &'a RouteMatch,
    method: &str,
    path: &str,
    host: &str,
    ignore_case: bool,
) -> Option<Vec<(&'a str, String)>> {
    if !route.methods.is_empty() && !route.methods.iter().any(|m| m == method) {
        return None;
    }
    if !route.hosts.is_empty() && !route.hosts.iter().any(|h| host_covers(h, host)) {
        return None;
    }
    if let Some(exact) = &route.path {
        if !same_text(exact, path, ignore_case) {
            return None;
        }
    }
    if let Some(prefix) = &route.path_prefix {
        if !prefix_covers(prefix, path, ignore_case) {
            return None;
        }
    }
    match &route.path_template {
        Some(template) => template_captures(template, path, ignore_case),
        None => Some(Vec::new()),
    }
}

/// Match a path against `/a/{x}/b`: literal segments equal, each `{name}` takes one non-empty
/// segment. Captures are percent-decoded when that gives UTF-8, else kept as sent; they keep
/// their case when literal segments are compared case-insensitively.
pub fn template_captures<'a>(
    template: &'a str,
    path: &str,
    ignore_case: bool,
) -> Option<Vec<(&'a str, String)>> {
    let mut want = template.split('/');
    let mut have = path.split('/');
    let mut captures = Vec::new();
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(captures),
            (Some(w), Some(h)) => {
                if let Some(name) = w.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                    if h.is_empty() {
                        return None;
                    }
                    captures.push((name, decode_segment(h)));
                } else if !same_text(w, h, ignore_case) {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

fn decode_segment(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_string();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = segment
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_string())
}

/// Whether a path has a `.` or `..` segment in any spelling an upstream may resolve: plain,
/// percent-encoded (`%2e%2e`), between encoded or back slashes (`%2f..`, `..\`), or with
/// segment parameters (`..;x`, as Java servers read it). Rules match the path as sent, so
/// `/public/../admin` would match a `/public` prefix while an upstream that normalizes serves
/// `/admin`; such paths are refused instead (Envoy's `normalize_path` resolves them first).
pub fn has_dot_segment(path: &str) -> bool {
    if !path.contains('.') && !path.contains('%') {
        return false;
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = path
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                decoded.push(v);
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    decoded.split(|b| *b == b'/' || *b == b'\\').any(|segment| {
        let name = segment.split(|b| *b == b';').next().unwrap_or_default();
        name == b"." || name == b".."
    })
}

/// `api.example.com` matches itself (any case, any port); `*.example.com` any subdomain.
pub fn host_covers(pattern: &str, authority: &str) -> bool {
    let host = strip_port(authority);
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .len()
            .checked_sub(suffix.len() + 1)
            .and_then(|cut| host.get(cut..))
            .and_then(|tail| tail.strip_prefix('.'))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix)),
        None => host.eq_ignore_ascii_case(pattern),
    }
}

/// `host:8080` → `host`; `[::1]:8080` → `[::1]`.
fn strip_port(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            host
        }
        _ => authority,
    }
}

/// Why a requirement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Only scopes are missing: these would satisfy it.
    Scopes(Vec<String>),
    /// Anything else.
    Other,
}

/// Check a requirement against a verified caller; `None` when it holds.
pub fn check(req: &Requirement, who: &Identity, captures: &[(&str, String)]) -> Option<Failure> {
    let mut scope_failure: Option<Vec<String>> = None;
    let mut other = false;
    let mut note = |f: Failure| match f {
        Failure::Scopes(s) => scope_failure.get_or_insert_with(Vec::new).extend(s),
        Failure::Other => other = true,
    };
    if let Some(all) = &req.all_of {
        for r in all {
            if let Some(f) = check(r, who, captures) {
                note(f);
            }
        }
    }
    if let Some(any) = &req.any_of {
        let fails: Vec<Failure> = any.iter().map_while(|r| check(r, who, captures)).collect();
        if fails.len() == any.len() {
            // Only the branches meant for this caller explain the denial: a branch gated by
            // `issuers`/`providers` that the caller does not pass is another issuer's.
            let fails: Vec<Failure> = any
                .iter()
                .zip(fails)
                .filter(|(r, _)| gate_holds(r, who))
                .map(|(_, f)| f)
                .collect();
            if !fails.is_empty() && fails.iter().all(|f| matches!(f, Failure::Scopes(_))) {
                let mut scopes = Vec::new();
                for f in fails {
                    if let Failure::Scopes(s) = f {
                        scopes.extend(s);
                    }
                }
                note(Failure::Scopes(scopes));
            } else {
                note(Failure::Other);
            }
        }
    }
    if let Some(set) = &req.scopes {
        if let Some(missing) = set_failure(set, &who.scopes) {
            note(Failure::Scopes(missing));
        }
    }
    for (set, have) in [(&req.roles, &who.roles), (&req.groups, &who.groups)] {
        if let Some(set) = set {
            if set_failure(set, have).is_some() {
                note(Failure::Other);
            }
        }
    }
    if let Some(issuers) = &req.issuers {
        if !issuers.contains(&who.issuer) {
            note(Failure::Other);
        }
    }
    if let Some(providers) = &req.providers {
        if !providers.contains(&who.provider) {
            note(Failure::Other);
        }
    }
    if let Some(tenants) = &req.tenants {
        if !who.tenant.as_ref().is_some_and(|t| tenants.contains(t)) {
            note(Failure::Other);
        }
    }
    if let Some(name) = &req.tenant_from_path {
        if who.tenant.is_none() || who.tenant.as_deref() != capture(captures, name) {
            note(Failure::Other);
        }
    }
    for c in &req.claims {
        if !claim_holds(c, who, captures) {
            note(Failure::Other);
        }
    }
    if other {
        return Some(Failure::Other);
    }
    scope_failure.map(|s| {
        // Alternatives may share scopes: name each once, in order of first appearance.
        let mut unique: Vec<String> = Vec::with_capacity(s.len());
        for scope in s {
            if !unique.contains(&scope) {
                unique.push(scope);
            }
        }
        Failure::Scopes(unique)
    })
}

/// Whether a requirement's gate (its own `issuers` and `providers`, if any) lets the caller in.
fn gate_holds(req: &Requirement, who: &Identity) -> bool {
    req.issuers.as_ref().is_none_or(|i| i.contains(&who.issuer))
        && req
            .providers
            .as_ref()
            .is_none_or(|p| p.contains(&who.provider))
}

fn capture<'a>(captures: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    captures
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// `None` when the set condition holds; otherwise the strings that would satisfy it.
fn set_failure(set: &SetCondition, have: &[String]) -> Option<Vec<String>> {
    let missing: Vec<String> = set
        .all_of
        .iter()
        .filter(|w| !have.contains(w))
        .cloned()
        .collect();
    let any_ok = set.any_of.is_empty() || set.any_of.iter().any(|w| have.contains(w));
    if missing.is_empty() && any_ok {
        return None;
    }
    let mut wanted = missing;
    if !any_ok {
        wanted.extend(set.any_of.iter().cloned());
    }
    Some(wanted)
}

/// A claim condition; an array claim holds when any element does.
fn claim_holds(c: &ClaimCondition, who: &Identity, captures: &[(&str, String)]) -> bool {
    let Some(value) = claims::lookup(&who.claims, &c.claim) else {
        return false;
    };
    let values: Vec<&serde_json::Value> = match value {
        serde_json::Value::Array(items) => items.iter().collect(),
        v => vec![v],
    };
    values.iter().any(|v| {
        if let Some(want) = &c.equals {
            return *v == want;
        }
        if let Some(set) = &c.one_of {
            return set.contains(v);
        }
        if let Some(name) = &c.equals_segment {
            let text = match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            return text.is_some() && text.as_deref() == capture(captures, name);
        }
        false
    })
}

/// Equal, or equal but for ASCII case.
fn same_text(a: &str, b: &str, ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Segment-wise prefix: `/api` covers `/api` and `/api/x` but not `/apix`; `/api/` and `/`
/// cover everything below them.
pub fn prefix_covers(prefix: &str, path: &str, ignore_case: bool) -> bool {
    let rest = if ignore_case {
        path.get(..prefix.len())
            .filter(|head| head.eq_ignore_ascii_case(prefix))
            .and_then(|_| path.get(prefix.len()..))
    } else {
        path.strip_prefix(prefix)
    };
    match rest {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rules: serde_json::Value, default: &str) -> Config {
        let v = serde_json::json!({
            "providers": [{"name": "p", "issuer": "i", "jwks": {"keys": []}}],
            "rules": rules,
            "default": default,
        });
        Config::from_json(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn first_matching_rule_wins() {
        let c = config(
            serde_json::json!([
                {"name": "health", "match": {"path": "/healthz"}, "allow_anonymous": true},
                {"name": "api", "match": {"path_prefix": "/api"}},
                {"name": "catch", "match": {}, "allow_anonymous": true}
            ]),
            "deny",
        );
        let m = select(&c, "GET", "/healthz", "h");
        assert_eq!((m.name.as_ref(), m.access), ("health", Access::Anonymous));
        let m = select(&c, "GET", "/api/x", "h");
        assert_eq!((m.name.as_ref(), m.access), ("api", Access::Authenticated));
        let m = select(&c, "GET", "/other", "h");
        assert_eq!(m.name, "catch");
    }

    #[test]
    fn methods_restrict_a_rule() {
        let c = config(
            serde_json::json!([{"match": {"path_prefix": "/docs", "methods": ["GET", "HEAD"]}, "allow_anonymous": true}]),
            "authenticated",
        );
        assert_eq!(select(&c, "GET", "/docs", "h").access, Access::Anonymous);
        assert_eq!(select(&c, "GET", "/docs", "h").name, "rules[0]");
        let m = select(&c, "POST", "/docs", "h");
        assert_eq!(
            (m.name.as_ref(), m.access),
            ("default", Access::Authenticated)
        );
    }

    #[test]
    fn default_deny_when_nothing_matches() {
        let c = config(serde_json::json!([]), "deny");
        let m = select(&c, "GET", "/", "h");
        assert_eq!((m.name.as_ref(), m.access), ("default", Access::Deny));
        assert!(m.rule.is_none());
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_covers("/api", "/api", false));
        assert!(prefix_covers("/api", "/api/runs", false));
        assert!(!prefix_covers("/api", "/apix", false));
        assert!(prefix_covers("/api/", "/api/x", false));
        assert!(prefix_covers("/", "/anything", false));
        assert!(!prefix_covers("/api", "/", false));
    }

    #[test]
    fn templates_capture_named_segments() {
        let t = "/api/t/{tenant}/deployments/{name}/runs";
        assert_eq!(
            template_captures(t, "/api/t/acme/deployments/etl%20x/runs", false),
            Some(vec![
                ("tenant", "acme".to_string()),
                ("name", "etl x".to_string())
            ])
        );
        assert_eq!(
            template_captures(t, "/api/t//deployments/x/runs", false),
            None
        );
        assert_eq!(
            template_captures(t, "/api/t/acme/deployments/x/runs/extra", false),
            None
        );
        assert_eq!(
            template_captures(t, "/api/t/acme/deployments/x", false),
            None
        );
        assert_eq!(
            template_captures("/a/{x}", "/a/%ff", false),
            Some(vec![("x", "%ff".to_string())])
        );
    }

    #[test]
    fn dot_segments_in_any_spelling_are_found() {
        for path in [
            "/public/../admin",
            "/public/./x",
            "/public/..",
            "/public/%2e%2e/admin",
            "/public/%2E./admin",
            "/public%2f..%2fadmin",
            "/public/..\\admin",
            "/public/..;x=1/admin",
            "..",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/",
            "/a/b",
            "/files/report.pdf",
            "/a/.well-known/jwks.json",
            "/a/...",
            "/a/..b",
            "/v1.2/x",
            "/a%20b/%zz",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn a_path_with_dot_segments_matches_no_rule() {
        // Found by tests/test_authz.py: `/docs/../roles/any` matched the anonymous `/docs`
        // prefix and reached the upstream, which may well serve `/roles/any`.
        let c = config(
            serde_json::json!([{"name": "docs", "match": {"path_prefix": "/docs"}, "allow_anonymous": true}]),
            "anonymous",
        );
        let m = select(&c, "GET", "/docs/%2e%2e/admin", "h");
        assert_eq!(
            (m.name.as_ref(), m.access),
            (DOT_SEGMENTS_RULE, Access::Deny)
        );
        assert!(m.rule.is_none() && !m.report_only);
        assert_eq!(select(&c, "GET", "/docs/a.b", "h").name, "docs");
    }

    #[test]
    fn hosts_match_without_port_and_case() {
        assert!(host_covers("api.example.com", "API.example.com:8443"));
        assert!(!host_covers("api.example.com", "api.example.com.evil"));
        assert!(host_covers("*.example.com", "a.b.example.com"));
        assert!(!host_covers("*.example.com", "example.com"));
        assert!(!host_covers("*.example.com", "badexample.com"));
        assert!(host_covers("[::1]", "[::1]:80"));
    }

    fn caller(extra: serde_json::Value) -> Identity {
        let mut claims = serde_json::json!({"sub": "alice", "roles": ["dev"], "scope": "runs:read", "tid": "acme", "org": {"plan": "pro"}, "teams": ["a", "b"]});
        if let (Some(base), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        let provider: crate::config::Provider = serde_json::from_value(serde_json::json!({
            "name": "p", "issuer": "https://idp", "jwks": {"keys": []}, "identity": {"tenant": ["tid"]}
        }))
        .unwrap();
        Identity::from_claims(&provider, claims.as_object().unwrap().clone())
    }

    fn req(v: serde_json::Value) -> Requirement {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn role_and_scope_sets() {
        let who = caller(serde_json::json!({}));
        assert_eq!(
            check(
                &req(serde_json::json!({"roles": {"any_of": ["dev", "ops"]}})),
                &who,
                &[]
            ),
            None
        );
        assert_eq!(
            check(
                &req(serde_json::json!({"roles": {"all_of": ["dev", "ops"]}})),
                &who,
                &[]
            ),
            Some(Failure::Other)
        );
        assert_eq!(
            check(
                &req(serde_json::json!({"scopes": {"all_of": ["runs:read", "runs:write"]}})),
                &who,
                &[]
            ),
            Some(Failure::Scopes(vec!["runs:write".into()]))
        );
    }

    #[test]
    fn any_of_all_of_trees() {
        let who = caller(serde_json::json!({}));
        let r = req(
            serde_json::json!({"any_of": [{"roles": {"any_of": ["admin"]}}, {"scopes": {"any_of": ["runs:read"]}}]}),
        );
        assert_eq!(check(&r, &who, &[]), None);
        let r = req(
            serde_json::json!({"any_of": [{"scopes": {"any_of": ["a"]}}, {"scopes": {"any_of": ["b"]}}]}),
        );
        assert_eq!(
            check(&r, &who, &[]),
            Some(Failure::Scopes(vec!["a".into(), "b".into()]))
        );
        // Found by tests/test_authz.py: alternatives sharing a scope named it twice.
        let r = req(
            serde_json::json!({"any_of": [{"scopes": {"all_of": ["a", "b"]}}, {"scopes": {"all_of": ["a", "c"]}}]}),
        );
        assert_eq!(
            check(&r, &who, &[]),
            Some(Failure::Scopes(vec!["a".into(), "b".into(), "c".into()]))
        );
        let r = req(
            serde_json::json!({"all_of": [{"scopes": {"any_of": ["runs:read"]}}, {"issuers": ["https://other"]}]}),
        );
        assert_eq!(check(&r, &who, &[]), Some(Failure::Other));
    }

    #[test]
    fn claim_values_and_path_segments() {
        let who = caller(serde_json::json!({}));
        let captures = [("tenant", "acme".to_string()), ("team", "b".to_string())];
        let ok = |v: serde_json::Value| check(&req(v), &who, &captures).is_none();
        assert!(ok(
            serde_json::json!({"claims": [{"claim": "org.plan", "equals": "pro"}]})
        ));
        assert!(!ok(
            serde_json::json!({"claims": [{"claim": "org.plan", "equals": "free"}]})
        ));
        assert!(ok(
            serde_json::json!({"claims": [{"claim": "org.plan", "in": ["free", "pro"]}]})
        ));
        assert!(ok(
            serde_json::json!({"claims": [{"claim": "teams", "equals": "b"}]})
        ));
        assert!(ok(
            serde_json::json!({"claims": [{"claim": "teams", "equals_segment": "team"}]})
        ));
        assert!(!ok(
            serde_json::json!({"claims": [{"claim": "missing", "equals": "x"}]})
        ));
        assert!(ok(serde_json::json!({"tenant_from_path": "tenant"})));
        assert!(ok(
            serde_json::json!({"tenants": ["acme"], "issuers": ["https://idp"]})
        ));
        let other = [("tenant", "globex".to_string())];
        assert!(check(
            &req(serde_json::json!({"tenant_from_path": "tenant"})),
            &who,
            &other
        )
        .is_some());
    }

    fn two_issuers(rules: serde_json::Value, default: &str) -> Config {
        let v = serde_json::json!({
            "providers": [
                {"name": "okta", "issuer": "https://okta.test", "jwks": {"keys": []}},
                {"name": "github", "issuer": "https://gh.test", "jwks": {"keys": []}},
                {"name": "other", "issuer": "https://other.test", "jwks": {"keys": []}}
            ],
            "rules": rules,
            "default": default,
        });
        Config::from_json(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_provider_gated_rule_asks_for_a_token_then_applies_only_to_its_providers() {
        let c = two_issuers(
            serde_json::json!([
                {"name": "okta", "match": {"path_prefix": "/runs", "providers": ["okta"]}},
                {"name": "gh", "match": {"path_prefix": "/runs", "providers": ["github"]}},
                {"name": "runs", "match": {"path_prefix": "/runs"}, "allow_anonymous": true}
            ]),
            "deny",
        );
        // Before the token is known: the first rule that fits the request, gated or not.
        let m = select(&c, "GET", "/runs/1", "h");
        assert_eq!((m.name.as_ref(), m.access), ("okta", Access::Authenticated));
        assert!(m.provider_gated());
        let by = |p: &str| select_for_provider(&c, "GET", "/runs/1", "h", p).name;
        assert_eq!(by("okta"), "okta");
        assert_eq!(by("github"), "gh");
        assert_eq!(by("other"), "runs");
        assert!(!select_for_provider(&c, "GET", "/runs/1", "h", "other").provider_gated());
        // Elsewhere the gate changes nothing.
        assert_eq!(by_path(&c, "/x", "okta"), "default");
    }

    fn by_path<'a>(c: &'a Config, path: &str, provider: &str) -> Cow<'a, str> {
        select_for_provider(c, "GET", path, "h", provider).name
    }

    #[test]
    fn a_provider_without_a_rule_of_its_own_gets_the_default() {
        let c = two_issuers(
            serde_json::json!([{"name": "okta", "match": {"providers": ["okta"]}}]),
            "deny",
        );
        let m = select_for_provider(&c, "GET", "/", "h", "github");
        assert_eq!((m.name.as_ref(), m.access), ("default", Access::Deny));
    }

    fn caller_of(provider: &str, issuer: &str, claims: serde_json::Value) -> Identity {
        let p: crate::config::Provider = serde_json::from_value(serde_json::json!({
            "name": provider, "issuer": issuer, "jwks": {"keys": []}
        }))
        .unwrap();
        Identity::from_claims(&p, claims.as_object().unwrap().clone())
    }

    #[test]
    fn any_of_reports_the_failure_of_the_branch_gated_to_the_caller() {
        let gated_by_issuer = req(serde_json::json!({"any_of": [
            {"issuers": ["https://okta.test"], "scopes": {"all_of": ["runs:write"]}},
            {"issuers": ["https://gh.test"], "claims": [{"claim": "repository", "equals": "acme/etl"}]}
        ]}));
        let gated_by_provider = req(serde_json::json!({"any_of": [
            {"providers": ["okta"], "scopes": {"all_of": ["runs:write"]}},
            {"providers": ["github"], "claims": [{"claim": "repository", "equals": "acme/etl"}]}
        ]}));
        let okta = caller_of(
            "okta",
            "https://okta.test",
            serde_json::json!({"scope": "runs:read"}),
        );
        let gh = caller_of(
            "github",
            "https://gh.test",
            serde_json::json!({"repository": "acme/web"}),
        );
        let stranger = caller_of("other", "https://other.test", serde_json::json!({}));
        for r in [&gated_by_issuer, &gated_by_provider] {
            assert_eq!(
                check(r, &okta, &[]),
                Some(Failure::Scopes(vec!["runs:write".into()])),
                "the okta branch failed only on scopes"
            );
            assert_eq!(check(r, &gh, &[]), Some(Failure::Other));
            assert_eq!(
                check(r, &stranger, &[]),
                Some(Failure::Other),
                "no branch is theirs"
            );
            let ok = caller_of(
                "github",
                "https://gh.test",
                serde_json::json!({"repository": "acme/etl"}),
            );
            assert_eq!(check(r, &ok, &[]), None);
        }
        // Ungated branches still all count.
        let r = req(serde_json::json!({"any_of": [
            {"scopes": {"all_of": ["runs:write"]}},
            {"claims": [{"claim": "repository", "equals": "acme/etl"}]}
        ]}));
        assert_eq!(check(&r, &okta, &[]), Some(Failure::Other));
    }

    #[test]
    fn rule_report_only_and_captures_come_with_the_match() {
        let c = config(
            serde_json::json!([{"match": {"path_template": "/t/{tenant}/runs", "hosts": ["api.test"]}, "report_only": true}]),
            "deny",
        );
        let m = select(&c, "GET", "/t/acme/runs", "api.test:443");
        assert!(m.report_only);
        assert_eq!(m.captures, vec![("tenant", "acme".to_string())]);
        assert_eq!(
            select(&c, "GET", "/t/acme/runs", "other.test").name,
            "default"
        );
    }
}
