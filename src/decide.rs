//! Policy to decision: the request's rule, its caller (from [`crate::authenticate`]) and what the
//! rule requires, then the headers to strip and set, or the denial. One pure function: facts,
//! keys and the instance's caches in, decision out. The host glue gathers the facts, calls
//! [`decide_with`], and applies the decision; Kong and Envoy differ only in that glue.

use std::rc::Rc;

use crate::assertion;
use crate::authenticate::{self, Ask, Caches, Outcome};
use crate::engine::Engine;
use crate::headers::{self, HeaderOp};
use crate::identity::Identity;
use crate::keystore::KeySource;
use crate::mtls::PeerCertificate;
use crate::policy::{self, Access, Failure, Matched};
use crate::reason::{Denial, Reason, Response};
use crate::token::{self, Found, RequestFacts};

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Let it go on with these changes, in order.
    Allow {
        ops: Vec<HeaderOp>,
        log: DecisionLog,
    },
    /// Answer it locally.
    Deny {
        response: Response,
        log: DecisionLog,
    },
    /// Wait for the keys of provider `index`, then decide again.
    NeedKeys(usize),
    /// Answer with a local document that is not a denial (the assertion JWKS).
    Serve(Response),
}

/// One decision, as logged (a JSON line) and counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLog {
    pub decision: &'static str,
    pub reason: Option<Reason>,
    pub rule: String,
    pub provider: Option<String>,
    pub sub: Option<String>,
    /// The request's method and path (without the query). These, `rule`, `provider` and `sub`
    /// are filled only to be logged: empty (`None`) with `log.decisions: false`.
    pub method: String,
    pub path: String,
    /// The rule's decision was only reported; `reason` is what it would have refused with.
    pub report_only: bool,
    /// For an allowed request that carried a token: whether it was taken out before the request
    /// went upstream (`false` with `forward_token: true`, and in a host that cannot remove it).
    pub token_removed: Option<bool>,
}

impl DecisionLog {
    /// The JSON line: the fields in this order, `reason`, `provider`, `sub` and
    /// `token_removed` only when set, `report_only` only when true. Written field by field (it
    /// runs on every request with decision logs on), each string escaped by `serde_json`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(96 + self.rule.len() + self.path.len());
        out.push_str("{\"decision\":");
        json_str(&mut out, self.decision);
        if let Some(reason) = self.reason {
            out.push_str(",\"reason\":");
            json_str(&mut out, reason.code());
        }
        out.push_str(",\"rule\":");
        json_str(&mut out, &self.rule);
        if let Some(provider) = &self.provider {
            out.push_str(",\"provider\":");
            json_str(&mut out, provider);
        }
        if let Some(sub) = &self.sub {
            out.push_str(",\"sub\":");
            json_str(&mut out, sub);
        }
        out.push_str(",\"method\":");
        json_str(&mut out, &self.method);
        out.push_str(",\"path\":");
        json_str(&mut out, &self.path);
        if self.report_only {
            out.push_str(",\"report_only\":true");
        }
        if let Some(removed) = self.token_removed {
            out.push_str(",\"token_removed\":");
            out.push_str(if removed { "true" } else { "false" });
        }
        out.push('}');
        out
    }
}

/// A JSON string: `"`, `\\` and control characters escaped (`\n`, `\u001f`, ...), the rest as
/// it is (what `serde_json` writes).
fn json_str(out: &mut String, text: &str) {
    out.push('"');
    let mut rest = text;
    while let Some(at) = rest
        .bytes()
        .position(|b| b < b' ' || b == b'"' || b == b'\\')
    {
        let (clean, tail) = rest.split_at(at);
        out.push_str(clean);
        let b = tail.bytes().next().unwrap_or_default();
        rest = tail.get(1..).unwrap_or_default();
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "\\u00",
        };
        out.push_str(short);
        if short == "\\u00" {
            for digit in [b >> 4, b & 15] {
                out.push(char::from_digit(u32::from(digit), 16).unwrap_or('0'));
            }
        }
    }
    out.push_str(rest);
    out.push('"');
}

/// Decide one request at `now` (Unix seconds) with the engine's inline keys.
pub fn decide(engine: &Engine, caches: &mut Caches, facts: &RequestFacts, now: u64) -> Decision {
    decide_with_keys(engine, engine, caches, facts, now)
}

/// [`decide`] with keys from `keys` (inline and fetched: [`crate::keystore::KeyView`]).
pub fn decide_with_keys(
    engine: &Engine,
    keys: &dyn KeySource,
    caches: &mut Caches,
    facts: &RequestFacts,
    now: u64,
) -> Decision {
    let ask = Ask {
        now: &|| now,
        peer_certificate: &|| PeerCertificate::Unavailable,
        shared: None,
    };
    decide_with(engine, keys, caches, facts, &ask)
}

/// [`decide_with_keys`], with what only some requests need asked of the host through `ask`
/// (the clock, the client certificate, shared DPoP proofs).
pub fn decide_with(
    engine: &Engine,
    keys: &dyn KeySource,
    caches: &mut Caches,
    facts: &RequestFacts,
    ask: &Ask<'_>,
) -> Decision {
    let config = &engine.config;
    let path = facts.path_only();
    let mut log = DecisionLog {
        decision: "deny",
        reason: None,
        rule: String::new(),
        provider: None,
        sub: None,
        // Copied from the request only to be logged.
        method: if config.log.decisions {
            facts.method.clone()
        } else {
            String::new()
        },
        path: if config.log.decisions {
            path.to_string()
        } else {
            String::new()
        },
        report_only: false,
        token_removed: None,
    };
    let present = engine.managed.present(facts);
    if facts.reject_spoofed && engine.managed.spoofed(&present).next().is_some() {
        // Before any other work, on every route and in report-only mode too: the host cannot
        // keep the client's header from the upstream, so the request cannot go on.
        log.rule = "spoofed_headers".into();
        return deny(engine, Denial::new(Reason::IdentityHeaderSpoofed), log);
    }
    let mut ops = headers::strip(present);

    if let Some(response) = engine
        .signer
        .as_ref()
        .and_then(|s| s.jwks_response(&facts.method, path))
    {
        return Decision::Serve(response);
    }
    if config.cors_preflight && is_cors_preflight(facts) {
        log.rule = "cors_preflight".into();
        return allow(ops, log);
    }

    let matched = policy::select(config, &facts.method, path, &facts.authority);
    // Rules matched the canonical path: it is what goes upstream (and what the assertion binds).
    let canonical_facts;
    let facts = match &matched.canonical {
        Some(canonical) => {
            canonical_facts = crate::path::with_path(facts, canonical);
            ops.push(HeaderOp::Set(":path".into(), canonical_facts.path.clone()));
            &canonical_facts
        }
        None => facts,
    };
    let judgement = match judge(engine, keys, caches, facts, path, matched, ask) {
        Ok(j) => j,
        Err(index) => return Decision::NeedKeys(index),
    };
    // A rule gated by provider may have given way to a later one (or the default).
    let matched = &judgement.matched;
    if config.log.decisions {
        log.rule = matched.name.to_string();
    }
    if let Some(who) = judgement.caller.as_ref().filter(|_| config.log.decisions) {
        log.provider = Some(who.provider.clone());
        log.sub = who.subject.clone();
    }
    let report = &config.headers.report_header;
    let would_deny = judgement.denial.is_some();
    match judgement.denial {
        Some(denial) if !matched.report_only => return deny(engine, denial, log),
        Some(denial) => {
            log.report_only = true;
            log.reason = Some(denial.reason);
            let value = format!(
                "deny; reason={}; rule={}",
                denial.reason.code(),
                matched.name
            );
            ops.push(HeaderOp::Set(report.clone(), value));
        }
        None if matched.report_only => {
            log.report_only = true;
            ops.push(HeaderOp::Set(
                report.clone(),
                format!("allow; rule={}", matched.name),
            ));
        }
        None => {}
    }
    if let Some(who) = &judgement.caller {
        ops.extend(headers::claim_headers(config, who));
        if let Some(signer) = &engine.signer {
            match assertion::mint_headers(signer, who, facts, (ask.now)()) {
                Some(mut minted) => ops.append(&mut minted),
                None => return deny(engine, Denial::new(Reason::ConfigInvalid), log),
            }
        }
    }
    if judgement.found.is_some() {
        log.token_removed = Some(!config.headers.forward_token);
    }
    if !config.headers.forward_token {
        match &judgement.found {
            Some(found) => ops.extend(headers::remove_token(found, facts)),
            // A token that could not be read (too large, ambiguous, empty) only passes in
            // report-only mode; it must not reach the upstream either.
            None if would_deny => {
                ops.extend(headers::remove_unread_tokens(&config.token_sources, facts))
            }
            None => {}
        }
    }
    allow(ops, log)
}

/// What the rule concluded: the rule that decided, the verified caller (if any), and the
/// denial (if any). Both can be set: a verified caller the policy refuses.
struct Judgement<'a> {
    matched: Matched<'a>,
    found: Option<Found>,
    caller: Option<Rc<Identity>>,
    denial: Option<Denial>,
}

impl<'a> Judgement<'a> {
    fn denied(
        matched: Matched<'a>,
        found: Option<Found>,
        caller: Option<Rc<Identity>>,
        denial: Denial,
    ) -> Self {
        Judgement {
            matched,
            found,
            caller,
            denial: Some(denial),
        }
    }
}

/// Apply the covering rule. `Err(index)` when provider `index`'s keys must be waited for.
///
/// When the covering rule is gated by `match.providers`, the token is verified before the rule
/// is known: a request without a valid token is refused under that first rule (401), and a
/// verified one is matched again among the rules its provider may use
/// ([`policy::select_for_provider`]), which may end at a later rule or the default.
///
/// The caller ([`authenticate::caller`]: token, certificate binding, DPoP proof) is established
/// on every request that carries a token; `sent_path` is the path as the client sent it.
fn judge<'a>(
    engine: &'a Engine,
    keys: &dyn KeySource,
    caches: &mut Caches,
    facts: &RequestFacts,
    sent_path: &str,
    matched: Matched<'a>,
    ask: &Ask<'_>,
) -> Result<Judgement<'a>, usize> {
    let config = &engine.config;
    // A refusing default refuses whatever is sent. Enforced, the token is not even looked at;
    // in report-only mode the request passes, so its token is still verified (to identify the
    // caller) and removed like on any other route, but the reported reason stays `forbidden`.
    let refused = (matched.access == Access::Deny).then(|| matched.refusal());
    if let (Some(denial), false) = (&refused, matched.report_only) {
        let denial = denial.clone();
        return Ok(Judgement::denied(matched, None, None, denial));
    }
    let found = match token::find(&config.token_sources, facts, config.max_token_bytes) {
        Ok(Some(found)) => found,
        Ok(None) if matched.access != Access::Authenticated => {
            return Ok(Judgement {
                matched,
                found: None,
                caller: None,
                denial: refused,
            })
        }
        Ok(None) => {
            return Ok(Judgement::denied(
                matched,
                None,
                None,
                Denial::new(Reason::TokenMissing),
            ))
        }
        Err(reason) => {
            let denial = refused.unwrap_or_else(|| Denial::new(reason));
            return Ok(Judgement::denied(matched, None, None, denial));
        }
    };
    let who = match authenticate::caller(engine, keys, caches, &found, facts, sent_path, ask) {
        Ok(who) => who,
        Err(Outcome::Deny(denial)) => {
            let denial = refused.unwrap_or(denial);
            return Ok(Judgement::denied(matched, Some(found), None, denial));
        }
        Err(Outcome::NeedKeys(index)) => return Err(index),
    };
    let (matched, refused) = if matched.provider_gated() {
        let again = policy::select_for_provider(
            config,
            &facts.method,
            facts.path_only(),
            &facts.authority,
            &who.provider,
        );
        let refused = (again.access == Access::Deny).then(|| again.refusal());
        (again, refused)
    } else {
        (matched, refused)
    };
    if let Some(denial) = refused {
        return Ok(Judgement::denied(matched, Some(found), Some(who), denial));
    }
    let denial = matched
        .rule
        .and_then(|r| r.require.as_ref())
        .and_then(|req| policy::check(req, &who, &matched.captures))
        .map(|failure| match failure {
            Failure::Scopes(scopes) => Denial {
                scopes,
                ..Denial::by_rule(Reason::InsufficientScope, &matched.name)
            },
            Failure::Other => Denial::by_rule(Reason::Forbidden, &matched.name),
        });
    Ok(Judgement {
        matched,
        found: Some(found),
        caller: Some(who),
        denial,
    })
}

fn allow(ops: Vec<HeaderOp>, mut log: DecisionLog) -> Decision {
    log.decision = "allow";
    Decision::Allow { ops, log }
}

fn deny(engine: &Engine, denial: Denial, mut log: DecisionLog) -> Decision {
    log.decision = "deny";
    log.reason = Some(denial.reason);
    Decision::Deny {
        response: engine.render(&denial),
        log,
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_cors_preflight(facts: &RequestFacts) -> bool {
    facts.method == "OPTIONS"
        && facts.header("origin").is_some()
        && facts.header("access-control-request-method").is_some()
}

/// An engine with its caches, deciding with its inline keys (tests).
#[cfg(test)]
pub(crate) struct Tested {
    pub engine: Engine,
    pub caches: std::cell::RefCell<Caches>,
}

#[cfg(test)]
impl From<Engine> for Tested {
    fn from(engine: Engine) -> Tested {
        let caches = std::cell::RefCell::new(Caches::new(&engine.config));
        Tested { engine, caches }
    }
}

#[cfg(test)]
impl std::ops::Deref for Tested {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

#[cfg(test)]
impl Tested {
    /// [`decide`] with this engine's caches.
    pub fn decide(&self, facts: &RequestFacts, now: u64) -> Decision {
        decide(&self.engine, &mut self.caches.borrow_mut(), facts, now)
    }

    /// [`decide_with_keys`] with this engine's caches.
    pub fn decide_with_keys(
        &self,
        keys: &dyn KeySource,
        facts: &RequestFacts,
        now: u64,
    ) -> Decision {
        decide_with_keys(
            &self.engine,
            keys,
            &mut self.caches.borrow_mut(),
            facts,
            now,
        )
    }

    /// Verified-token cache (entries, hits, misses).
    pub fn cache_stats(&self) -> (usize, u64, u64) {
        self.caches.borrow().cache_stats()
    }

    /// The identity cached for a token.
    pub fn cached_identity(&self, token: &str) -> Option<Rc<Identity>> {
        self.caches.borrow().cached_identity(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::KeyState;
    use serde_json::json;

    fn engine(extra: serde_json::Value) -> Tested {
        let mut v = json!({
            "providers": [{"name": "p", "issuer": "https://issuer.test", "jwks": {"keys": []}}],
            "headers": {"claims": [{"claim": "sub", "header": "x-identity-subject"}]},
        });
        if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in extra {
                base.insert(k.clone(), val.clone());
            }
        }
        Engine::from_json(v.to_string().as_bytes()).unwrap().into()
    }

    fn facts(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestFacts {
        RequestFacts {
            method: method.into(),
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

    fn reason_of(d: &Decision) -> Option<Reason> {
        match d {
            Decision::Deny { log, .. } => log.reason,
            _ => None,
        }
    }

    #[test]
    fn anonymous_route_strips_spoofed_identity() {
        let e = engine(json!({"default": "anonymous"}));
        let d = e.decide(&facts("GET", "/", &[("x-identity-subject", "admin")]), 0);
        match d {
            Decision::Allow { ops, log } => {
                assert_eq!(ops, vec![HeaderOp::Remove("x-identity-subject".into())]);
                assert_eq!(log.decision, "allow");
                assert_eq!(log.rule, "default");
            }
            other => panic!("expected allow, got {other:?}"),
        }
    }

    #[test]
    fn default_deny_is_forbidden_by_rule_default() {
        let e = engine(json!({}));
        let d = e.decide(&facts("GET", "/x", &[]), 0);
        assert_eq!(reason_of(&d), Some(Reason::Forbidden));
        if let Decision::Deny { response, .. } = d {
            assert_eq!(response.status, 403);
            assert!(response
                .headers
                .contains(&("x-identity-reason".into(), "forbidden; rule=default".into())));
        }
    }

    #[test]
    fn missing_token_on_authenticated_route() {
        let e = engine(json!({"default": "authenticated"}));
        let d = e.decide(&facts("GET", "/x", &[]), 0);
        assert_eq!(reason_of(&d), Some(Reason::TokenMissing));
    }

    #[test]
    fn malformed_token_is_refused_even_on_anonymous_route() {
        let e = engine(json!({"default": "anonymous"}));
        let d = e.decide(
            &facts("GET", "/x", &[("authorization", "Bearer not-a-jwt")]),
            0,
        );
        assert_eq!(reason_of(&d), Some(Reason::TokenMalformed));
    }

    #[test]
    fn cors_preflight_passes_when_enabled() {
        let pre = facts(
            "OPTIONS",
            "/x",
            &[
                ("origin", "https://app.test"),
                ("access-control-request-method", "POST"),
            ],
        );
        let e = engine(json!({"cors_preflight": true}));
        assert!(matches!(e.decide(&pre, 0), Decision::Allow { .. }));
        let e = engine(json!({"cors_preflight": false}));
        assert_eq!(reason_of(&e.decide(&pre, 0)), Some(Reason::Forbidden));
    }

    #[test]
    fn decision_log_is_one_json_line() {
        let e = engine(json!({"default": "authenticated"}));
        let d = e.decide(&facts("GET", "/x?q=1", &[]), 0);
        let Decision::Deny { log, .. } = d else {
            panic!("expected deny")
        };
        let line = log.to_json();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["reason"], "token_missing");
        assert_eq!(v["path"], "/x");
        assert_eq!(v["method"], "GET");
    }

    #[test]
    fn the_decision_line_is_what_serde_json_writes() {
        let odd = "a\"b\\c\nd\re\tf\u{8}\u{c}\u{1}\u{1f}é/<>\u{7f}\u{2028}😀";
        let full = DecisionLog {
            decision: "allow",
            reason: Some(Reason::Forbidden),
            rule: odd.into(),
            provider: Some("p".into()),
            sub: Some(odd.into()),
            method: "GET".into(),
            path: odd.into(),
            report_only: true,
            token_removed: Some(false),
        };
        let expected = serde_json::to_string(&json!({
            "decision": "allow", "reason": "forbidden", "rule": odd, "provider": "p", "sub": odd,
            "method": "GET", "path": odd, "report_only": true, "token_removed": false,
        }))
        .unwrap();
        // serde_json's map keeps insertion order only with `preserve_order`: compare values,
        // and the text of each escaped string.
        let line = full.to_json();
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(&expected).unwrap()
        );
        assert!(
            line.contains(&serde_json::to_string(odd).unwrap()),
            "{line}"
        );
        assert!(line.starts_with("{\"decision\":\"allow\",\"reason\":\"forbidden\",\"rule\":"));
        let bare = DecisionLog {
            reason: None,
            provider: None,
            sub: None,
            report_only: false,
            token_removed: None,
            rule: "r".into(),
            path: "/".into(),
            ..full
        };
        assert_eq!(
            bare.to_json(),
            r#"{"decision":"allow","rule":"r","method":"GET","path":"/"}"#
        );
    }

    mod with_tokens {
        use super::*;
        use crate::jwks::test_keys;
        use jwt_simple::prelude::Ed25519KeyPair;

        const NOW: u64 = 1_800_000_000;
        const SECRET: &str = "assertion-secret-assertion-secret";

        fn sign(claims: serde_json::Value) -> String {
            test_keys::sign_ed25519("https://issuer.test", NOW, claims)
        }

        fn engine(extra: serde_json::Value) -> Tested {
            let mut v = json!({
                "providers": [{
                    "name": "p", "issuer": "https://issuer.test",
                    "jwks": {"keys": [test_keys::ed25519_jwk()]},
                    "identity": {"tenant": ["tid"]}
                }],
                "default": "authenticated",
                "headers": {
                    "claims": [{"claim": "sub", "header": "x-identity-subject"}, {"identity": "scopes", "header": "x-identity-scopes"}],
                    "assertion": {"audience": "svc", "keys": [{"kid": "a1", "secret": SECRET}]}
                },
            });
            if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                for (k, val) in extra {
                    base.insert(k.clone(), val.clone());
                }
            }
            Engine::from_json(v.to_string().as_bytes()).unwrap().into()
        }

        fn request(method: &str, path: &str, token: &str, extra: &[(&str, &str)]) -> RequestFacts {
            let bearer = format!("Bearer {token}");
            let mut h: Vec<(&str, &str)> = vec![("authorization", bearer.as_str())];
            h.extend_from_slice(extra);
            facts(method, path, &h)
        }

        fn set<'a>(ops: &'a [HeaderOp], name: &str) -> Option<&'a str> {
            ops.iter().find_map(|op| match op {
                HeaderOp::Set(n, v) if n == name => Some(v.as_str()),
                _ => None,
            })
        }

        fn assertion_payload(token: &str) -> serde_json::Value {
            use base64::Engine as _;
            let part = token.split('.').nth(1).unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        }

        #[test]
        fn verified_caller_gets_identity_headers_and_a_bound_assertion() {
            let e = engine(json!({}));
            let token = sign(json!({"scope": "runs:read runs:write", "tid": "acme"}));
            let d = e.decide(
                &request("POST", "/runs/a?x=1", &token, &[("x-request-id", "rid-7")]),
                NOW + 1,
            );
            let Decision::Allow { ops, log } = d else {
                panic!("expected allow, got {d:?}")
            };
            assert_eq!(set(&ops, "x-identity-subject"), Some("alice"));
            assert_eq!(set(&ops, "x-identity-scopes"), Some("runs:read,runs:write"));
            assert!(ops.contains(&HeaderOp::Remove("authorization".into())));
            assert_eq!(
                set(&ops, "x-request-id"),
                None,
                "an existing request id is kept"
            );
            let p = assertion_payload(set(&ops, "x-identity-assertion").unwrap());
            assert_eq!(
                p["req"],
                json!({"method": "POST", "path": "/runs/a", "id": "rid-7"})
            );
            assert_eq!(p["tenant"], "acme");
            assert_eq!(p["aud"], "svc");
            assert_eq!(p["jti"], "u-1");
            assert_eq!(p["iat"], NOW + 1);
            assert_eq!(log.sub.as_deref(), Some("alice"));
            assert_eq!(log.provider.as_deref(), Some("p"));
        }

        #[test]
        fn request_id_is_generated_when_missing() {
            let e = engine(json!({}));
            let token = sign(json!({}));
            let Decision::Allow { ops, .. } = e.decide(&request("GET", "/", &token, &[]), NOW)
            else {
                panic!("expected allow")
            };
            assert_eq!(set(&ops, "x-request-id"), Some("u-1"));
            assert_eq!(
                assertion_payload(set(&ops, "x-identity-assertion").unwrap())["req"]["id"],
                "u-1"
            );
        }

        #[test]
        fn forwarded_token_stays() {
            let e = engine(json!({"headers": {"forward_token": true}}));
            let token = sign(json!({}));
            let Decision::Allow { ops, .. } = e.decide(&request("GET", "/", &token, &[]), NOW)
            else {
                panic!("expected allow")
            };
            assert!(!ops.contains(&HeaderOp::Remove("authorization".into())));
        }

        fn denial(d: &Decision) -> (u32, String, Option<String>) {
            let Decision::Deny { response, .. } = d else {
                panic!("expected deny, got {d:?}")
            };
            let find = |n: &str| {
                response
                    .headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
            };
            (
                response.status,
                find("x-identity-reason").unwrap(),
                find("www-authenticate"),
            )
        }

        #[test]
        fn missing_scope_is_insufficient_scope_naming_rule_and_scopes() {
            let e = engine(
                json!({"rules": [{"name": "write", "match": {"path_prefix": "/runs"}, "require": {"scopes": {"all_of": ["runs:write"]}}}]}),
            );
            let d = e.decide(
                &request("POST", "/runs/x", &sign(json!({"scope": "runs:read"})), &[]),
                NOW,
            );
            let (status, reason, challenge) = denial(&d);
            assert_eq!(status, 403);
            assert_eq!(reason, "insufficient_scope; rule=write");
            assert_eq!(
                challenge.unwrap(),
                "Bearer error=\"insufficient_scope\", scope=\"runs:write\""
            );
        }

        #[test]
        fn missing_role_is_forbidden() {
            let e = engine(
                json!({"rules": [{"name": "admin", "match": {}, "require": {"roles": {"any_of": ["admin"]}}}]}),
            );
            let d = e.decide(
                &request("GET", "/", &sign(json!({"roles": ["dev"]})), &[]),
                NOW,
            );
            assert_eq!(denial(&d).0, 403);
            assert_eq!(denial(&d).1, "forbidden; rule=admin");
        }

        #[test]
        fn tenant_in_path_must_be_the_callers() {
            let e = engine(
                json!({"rules": [{"name": "t", "match": {"path_template": "/t/{tenant}/runs"}, "require": {"tenant_from_path": "tenant"}}]}),
            );
            let token = sign(json!({"tid": "acme"}));
            assert!(matches!(
                e.decide(&request("GET", "/t/acme/runs", &token, &[]), NOW),
                Decision::Allow { .. }
            ));
            let d = e.decide(&request("GET", "/t/globex/runs", &token, &[]), NOW);
            assert_eq!(denial(&d).1, "forbidden; rule=t");
        }

        #[test]
        fn report_only_passes_with_the_would_be_decision() {
            let e = engine(
                json!({"rules": [{"name": "admin", "match": {}, "report_only": true, "require": {"roles": {"any_of": ["admin"]}}}]}),
            );
            let d = e.decide(&request("GET", "/", &sign(json!({})), &[]), NOW);
            let Decision::Allow { ops, log } = d else {
                panic!("expected allow")
            };
            assert_eq!(
                set(&ops, "x-identity-report"),
                Some("deny; reason=forbidden; rule=admin")
            );
            assert_eq!(
                set(&ops, "x-identity-subject"),
                Some("alice"),
                "the verified identity still flows"
            );
            assert!(log.report_only);
            assert_eq!(log.reason, Some(Reason::Forbidden));
            let d = e.decide(
                &request("GET", "/", &sign(json!({"roles": ["admin"]})), &[]),
                NOW,
            );
            let Decision::Allow { ops, .. } = d else {
                panic!("expected allow")
            };
            assert_eq!(set(&ops, "x-identity-report"), Some("allow; rule=admin"));
        }

        #[test]
        fn report_only_also_covers_token_failures() {
            let e = engine(json!({"report_only": true}));
            let d = e.decide(&facts("GET", "/", &[("x-identity-subject", "spoof")]), NOW);
            let Decision::Allow { ops, .. } = d else {
                panic!("expected allow")
            };
            assert_eq!(
                set(&ops, "x-identity-report"),
                Some("deny; reason=token_missing; rule=default")
            );
            assert_eq!(set(&ops, "x-identity-subject"), None);
            assert!(ops.contains(&HeaderOp::Remove("x-identity-subject".into())));
        }

        #[test]
        fn report_only_default_deny_identifies_the_caller_and_removes_the_token() {
            // Found by tests/test_report_only.py: the refusing default did not look at the
            // token, so in report-only mode the raw token went upstream with no identity.
            let e = engine(json!({"default": "deny", "report_only": true}));
            let d = e.decide(&request("GET", "/x", &sign(json!({})), &[]), NOW);
            let Decision::Allow { ops, log } = d else {
                panic!("expected allow, got {d:?}")
            };
            assert_eq!(
                set(&ops, "x-identity-report"),
                Some("deny; reason=forbidden; rule=default")
            );
            assert_eq!(set(&ops, "x-identity-subject"), Some("alice"));
            assert!(set(&ops, "x-identity-assertion").is_some());
            assert!(ops.contains(&HeaderOp::Remove("authorization".into())));
            assert_eq!(
                (log.reason, log.sub.as_deref()),
                (Some(Reason::Forbidden), Some("alice"))
            );
            // An invalid token: still `forbidden` (what enforcement answers), and removed.
            let d = e.decide(&request("GET", "/x", &sign(json!({})), &[]), NOW + 700);
            let Decision::Allow { ops, .. } = d else {
                panic!("expected allow, got {d:?}")
            };
            assert_eq!(
                set(&ops, "x-identity-report"),
                Some("deny; reason=forbidden; rule=default")
            );
            assert_eq!(set(&ops, "x-identity-subject"), None);
            assert!(ops.contains(&HeaderOp::Remove("authorization".into())));
        }

        #[test]
        fn enforced_default_deny_does_not_look_at_the_token() {
            let e = engine(json!({"default": "deny"}));
            let d = e.decide(&request("GET", "/x", "not-a-jwt", &[]), NOW);
            assert_eq!(denial(&d).1, "forbidden; rule=default");
        }

        #[test]
        fn report_only_removes_a_token_that_could_not_be_read() {
            let e = engine(json!({
                "report_only": true,
                "token_sources": [{"header": "authorization", "prefix": "Bearer "}, {"cookie": "session"}],
            }));
            let token = sign(json!({}));
            let cookie = format!("theme=dark; session={}", sign(json!({"scope": "x"})));
            let d = e.decide(
                &request("GET", "/", &token, &[("cookie", cookie.as_str())]),
                NOW,
            );
            let Decision::Allow { ops, .. } = d else {
                panic!("expected allow, got {d:?}")
            };
            assert_eq!(
                set(&ops, "x-identity-report"),
                Some("deny; reason=token_ambiguous; rule=default")
            );
            assert!(ops.contains(&HeaderOp::Remove("authorization".into())));
            assert_eq!(set(&ops, "cookie"), Some("theme=dark"));
        }

        #[test]
        fn expired_token_is_refused() {
            let e = engine(json!({}));
            let d = e.decide(&request("GET", "/", &sign(json!({})), &[]), NOW + 600 + 61);
            assert_eq!(denial(&d).1, "token_expired");
        }

        #[test]
        fn eddsa_assertion_keys_are_served_at_jwks_path() {
            let pair = Ed25519KeyPair::generate();
            let jwk: serde_json::Value = serde_json::from_str(&pair.to_jwk()).unwrap();
            let e = engine(json!({"headers": {"assertion": {
                "audience": "svc", "keys": [{"kid": "ed", "private_jwk": jwk}], "jwks_path": "/.well-known/identity/jwks.json"
            }}}));
            let d = e.decide(&facts("GET", "/.well-known/identity/jwks.json", &[]), NOW);
            let Decision::Serve(r) = d else {
                panic!("expected the jwks")
            };
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["keys"][0]["kid"], "ed");
        }

        #[test]
        fn a_cached_token_still_meets_time_and_policy_checks() {
            let e = engine(json!({"rules": [
                {"name": "admin", "match": {"path_prefix": "/admin"}, "require": {"roles": {"any_of": ["admin"]}}},
                {"name": "any", "match": {}}
            ]}));
            let token = sign(json!({"roles": ["dev"]}));
            assert!(matches!(
                e.decide(&request("GET", "/x", &token, &[]), NOW),
                Decision::Allow { .. }
            ));
            assert!(matches!(
                e.decide(&request("GET", "/x", &token, &[]), NOW),
                Decision::Allow { .. }
            ));
            assert_eq!(e.cache_stats(), (1, 1, 1));
            let d = e.decide(&request("GET", "/admin", &token, &[]), NOW);
            assert_eq!(
                denial(&d).1,
                "forbidden; rule=admin",
                "policy applies on a hit"
            );
            assert_eq!(e.cache_stats().1, 2);
            let d = e.decide(&request("GET", "/x", &token, &[]), NOW + 600 + 61);
            assert_eq!(denial(&d).1, "token_expired", "time is checked on a hit");
        }

        #[test]
        fn a_tampered_token_never_hits_the_cache() {
            let e = engine(json!({}));
            let token = sign(json!({}));
            assert!(matches!(
                e.decide(&request("GET", "/", &token, &[]), NOW),
                Decision::Allow { .. }
            ));
            let mut forged = token.clone();
            forged.push('A');
            let d = e.decide(&request("GET", "/", &forged, &[]), NOW);
            assert!(matches!(d, Decision::Deny { .. }));
        }

        /// Three providers sharing one key; `okta` and `github` have rules of their own.
        fn per_provider(rules: serde_json::Value, default: &str) -> Tested {
            let provider = |name: &str| {
                json!({"name": name, "issuer": format!("https://{name}.test"),
                       "jwks": {"keys": [test_keys::ed25519_jwk()]}})
            };
            engine(json!({
                "providers": [provider("okta"), provider("github"), provider("other")],
                "rules": rules,
                "default": default,
            }))
        }

        fn signed(provider: &str, claims: serde_json::Value) -> String {
            test_keys::sign_ed25519(&format!("https://{provider}.test"), NOW, claims)
        }

        fn two_issuer_rules(then: serde_json::Value) -> serde_json::Value {
            let mut rules = json!([
                {"name": "okta-runs", "match": {"path_prefix": "/runs", "providers": ["okta"]},
                 "require": {"scopes": {"all_of": ["runs:write"]}}},
                {"name": "ci-runs", "match": {"path_prefix": "/runs", "providers": ["github"]},
                 "require": {"claims": [{"claim": "repository", "equals": "acme/etl"}]}}
            ]);
            if let (Some(list), Some(more)) = (rules.as_array_mut(), then.as_array()) {
                list.extend(more.iter().cloned());
            }
            rules
        }

        fn allowed_by(d: &Decision) -> String {
            match d {
                Decision::Allow { log, .. } => log.rule.clone(),
                other => panic!("expected allow, got {other:?}"),
            }
        }

        #[test]
        fn a_provider_gated_route_without_a_token_is_401_never_a_later_anonymous_rule() {
            let later = json!([{"name": "open", "match": {"path_prefix": "/runs"}, "allow_anonymous": true}]);
            let e = per_provider(two_issuer_rules(later), "deny");
            let d = e.decide(&facts("GET", "/runs/1", &[]), NOW);
            assert_eq!(
                denial(&d),
                (401, "token_missing".into(), Some("Bearer".into()))
            );
            let Decision::Deny { log, .. } = d else {
                unreachable!()
            };
            assert_eq!(log.rule, "okta-runs");
            let d = e.decide(&request("GET", "/runs/1", "junk", &[]), NOW);
            assert_eq!(denial(&d).1, "token_malformed");
            let old = signed("github", json!({"repository": "acme/etl"}));
            let d = e.decide(&request("GET", "/runs/1", &old, &[]), NOW + 700);
            assert_eq!(denial(&d).1, "token_expired");
            // A verified token of a provider without a rule of its own: the next rule.
            let d = e.decide(
                &request("GET", "/runs/1", &signed("other", json!({})), &[]),
                NOW,
            );
            assert_eq!(allowed_by(&d), "open");
        }

        #[test]
        fn each_issuer_gets_its_own_rule_and_its_own_denial() {
            let e = per_provider(two_issuer_rules(json!([])), "deny");
            let get = |token: &str| e.decide(&request("POST", "/runs/1", token, &[]), NOW);
            let d = get(&signed("okta", json!({"scope": "runs:write"})));
            assert_eq!(allowed_by(&d), "okta-runs");
            let d = get(&signed("okta", json!({"scope": "runs:read"})));
            assert_eq!(
                denial(&d),
                (
                    403,
                    "insufficient_scope; rule=okta-runs".into(),
                    Some("Bearer error=\"insufficient_scope\", scope=\"runs:write\"".into())
                )
            );
            let d = get(&signed("github", json!({"repository": "acme/etl"})));
            assert_eq!(allowed_by(&d), "ci-runs");
            let d = get(&signed(
                "github",
                json!({"repository": "acme/web", "scope": "runs:write"}),
            ));
            assert_eq!(
                denial(&d).1,
                "forbidden; rule=ci-runs",
                "okta's rule is not github's"
            );
            // No rule for `other`: the default.
            let d = get(&signed("other", json!({"scope": "runs:write"})));
            assert_eq!(denial(&d).1, "forbidden; rule=default");
            let e = per_provider(two_issuer_rules(json!([])), "authenticated");
            let d = e.decide(
                &request("GET", "/runs/1", &signed("other", json!({})), &[]),
                NOW,
            );
            assert_eq!(allowed_by(&d), "default");
        }

        #[test]
        fn report_only_on_a_gated_rule_reports_the_missing_token_and_the_chosen_rule() {
            let mut rules = two_issuer_rules(json!([]));
            rules[0]["report_only"] = json!(true);
            let e = per_provider(rules, "deny");
            let Decision::Allow { ops, log } = e.decide(&facts("GET", "/runs/1", &[]), NOW) else {
                panic!("expected allow")
            };
            assert_eq!(
                set(&ops, "x-identity-report"),
                Some("deny; reason=token_missing; rule=okta-runs")
            );
            assert_eq!(log.rule, "okta-runs");
            // A github token goes on to the enforced github rule.
            let token = signed("github", json!({"repository": "acme/web"}));
            let d = e.decide(&request("GET", "/runs/1", &token, &[]), NOW);
            assert_eq!(denial(&d).1, "forbidden; rule=ci-runs");
        }

        struct Pending;

        impl KeySource for Pending {
            fn keys(&self, _provider: usize) -> KeyState<'_> {
                KeyState::Pending
            }
        }

        #[test]
        fn on_a_gated_route_a_token_waits_for_its_providers_keys_before_a_rule_is_chosen() {
            let e = per_provider(two_issuer_rules(json!([])), "deny");
            let token = signed("github", json!({"repository": "acme/etl"}));
            let d = e.decide_with_keys(&Pending, &request("GET", "/runs/1", &token, &[]), NOW);
            assert_eq!(d, Decision::NeedKeys(1), "github's keys");
            // Nothing to wait for without a token.
            let d = e.decide_with_keys(&Pending, &facts("GET", "/runs/1", &[]), NOW);
            assert_eq!(denial(&d).1, "token_missing");
        }

        #[test]
        fn a_gated_rule_uses_the_cache_like_any_other() {
            let e = per_provider(two_issuer_rules(json!([])), "deny");
            let token = signed("github", json!({"repository": "acme/etl"}));
            for _ in 0..2 {
                let d = e.decide(&request("GET", "/runs/1", &token, &[]), NOW);
                assert_eq!(allowed_by(&d), "ci-runs");
            }
            assert_eq!(e.cache_stats(), (1, 1, 1), "verified once, then a hit");
        }

        const ENTRA: &str = "https://login.microsoftonline.com/{tenant}/v2.0";

        fn entra(extra: serde_json::Value) -> Tested {
            let mut provider = json!({
                "name": "entra", "issuer": ENTRA, "tenants": ["acme", "globex"],
                "jwks": {"keys": [test_keys::ed25519_jwk()]},
                "identity": {"tenant": ["tid"]}
            });
            if let (Some(p), Some(extra)) = (provider.as_object_mut(), extra.as_object()) {
                for (k, v) in extra {
                    p.insert(k.clone(), v.clone());
                }
            }
            engine(json!({
                "providers": [provider],
                "rules": [
                    {"name": "t", "match": {"path_template": "/t/{tenant}/runs"}, "require": {"tenant_from_path": "tenant"}},
                    {"name": "acme-only", "match": {"path": "/acme"}, "require": {"tenants": ["acme"]}}
                ],
                "headers": {
                    "claims": [{"identity": "tenant", "header": "x-identity-tenant"}, {"identity": "issuer", "header": "x-identity-issuer"}],
                    "assertion": {"audience": "svc", "keys": [{"kid": "a1", "secret": SECRET}]}
                }
            }))
        }

        fn of_tenant(tenant: &str, claims: serde_json::Value) -> String {
            let iss = format!("https://login.microsoftonline.com/{tenant}/v2.0");
            test_keys::sign_ed25519(&iss, NOW, claims)
        }

        #[test]
        fn a_listed_tenant_of_an_issuer_pattern_is_the_callers_tenant() {
            let e = entra(json!({}));
            let token = of_tenant("acme", json!({"tid": "acme"}));
            let Decision::Allow { ops, log } =
                e.decide(&request("GET", "/t/acme/runs", &token, &[]), NOW)
            else {
                panic!("expected allow")
            };
            assert_eq!(set(&ops, "x-identity-tenant"), Some("acme"));
            assert_eq!(
                set(&ops, "x-identity-issuer"),
                Some("https://login.microsoftonline.com/acme/v2.0"),
                "the concrete issuer, not the pattern"
            );
            let p = assertion_payload(set(&ops, "x-identity-assertion").unwrap());
            assert_eq!(p["tenant"], "acme");
            assert_eq!(log.provider.as_deref(), Some("entra"));
            let d = e.decide(&request("GET", "/t/globex/runs", &token, &[]), NOW);
            assert_eq!(denial(&d).1, "forbidden; rule=t");
            // Without a tenant claim, the issuer's tenant still counts.
            let globex = of_tenant("globex", json!({}));
            let d = e.decide(&request("GET", "/t/globex/runs", &globex, &[]), NOW);
            assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
            let d = e.decide(&request("GET", "/acme", &globex, &[]), NOW);
            assert_eq!(denial(&d).1, "forbidden; rule=acme-only");
        }

        #[test]
        fn a_tenant_not_listed_is_issuer_unknown() {
            let e = entra(json!({}));
            let token = of_tenant("initech", json!({"tid": "initech"}));
            let d = e.decide(&request("GET", "/t/initech/runs", &token, &[]), NOW);
            assert_eq!(
                denial(&d),
                (
                    401,
                    "issuer_unknown".into(),
                    Some("Bearer error=\"invalid_token\"".into())
                )
            );
            // The pattern itself is no tenant.
            let token = test_keys::sign_ed25519(ENTRA, NOW, json!({}));
            let d = e.decide(&request("GET", "/acme", &token, &[]), NOW);
            assert_eq!(denial(&d).1, "issuer_unknown");
        }

        #[test]
        fn a_tenant_claim_that_contradicts_the_issuer_is_refused() {
            let e = entra(json!({}));
            let token = of_tenant("acme", json!({"tid": "globex"}));
            let d = e.decide(&request("GET", "/t/globex/runs", &token, &[]), NOW);
            assert_eq!(denial(&d).1, "issuer_unknown");
            // Twice: a refused token is not cached.
            let d = e.decide(&request("GET", "/t/globex/runs", &token, &[]), NOW);
            assert_eq!(denial(&d).1, "issuer_unknown");
        }

        /// An RS256 token naming `kid`, with a signature no key made.
        fn rs256_token(kid: &str) -> String {
            let header = test_keys::b64(json!({"alg": "RS256", "kid": kid}).to_string().as_bytes());
            let claims = json!({"iss": "https://issuer.test", "sub": "alice", "exp": NOW + 600});
            let payload = test_keys::b64(claims.to_string().as_bytes());
            format!("{header}.{payload}.{}", test_keys::b64(&[1; 128]))
        }

        #[test]
        fn a_short_inline_rsa_key_is_skipped_and_its_tokens_get_key_not_found() {
            let small =
                json!({"kty": "RSA", "kid": "old", "n": test_keys::b64(&[0xcb; 128]), "e": "AQAB"});
            let provider = |min: u64| {
                json!({"providers": [{
                    "name": "p", "issuer": "https://issuer.test", "min_rsa_bits": min,
                    "jwks": {"keys": [small.clone(), test_keys::ed25519_jwk()]}
                }]})
            };
            let e = engine(provider(2048));
            let weak: Vec<_> = e
                .weak_keys()
                .iter()
                .map(|(p, w)| (p.name.clone(), w.len()))
                .collect();
            assert_eq!(weak, vec![("p".to_string(), 1)]);
            assert!(matches!(
                e.decide(&request("GET", "/", &sign(json!({})), &[]), NOW),
                Decision::Allow { .. }
            ));
            let d = e.decide(&request("GET", "/", &rs256_token("old"), &[]), NOW);
            assert_eq!(denial(&d).1, "key_not_found");
            // With `min_rsa_bits: 1024` the key is in the set: the bad signature is what fails.
            let e = engine(provider(1024));
            assert!(e.weak_keys().is_empty());
            let d = e.decide(&request("GET", "/", &rs256_token("old"), &[]), NOW);
            assert_eq!(denial(&d).1, "signature_invalid");
        }

        #[test]
        fn audience_claims_are_checked_on_every_request_cached_or_not() {
            let e = engine(json!({"providers": [{
                "name": "cognito", "issuer": "https://issuer.test",
                "jwks": {"keys": [test_keys::ed25519_jwk()]},
                "audiences": ["client-1"], "audience_claims": ["aud", "client_id"]
            }]}));
            let access = sign(json!({"client_id": "client-1", "token_use": "access"}));
            for _ in 0..2 {
                let d = e.decide(&request("GET", "/", &access, &[]), NOW);
                assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
            }
            assert_eq!(e.cache_stats(), (1, 1, 1), "the second request was a hit");
            let other = sign(json!({"client_id": "client-2", "aud": "client-3"}));
            for _ in 0..2 {
                let d = e.decide(&request("GET", "/", &other, &[]), NOW);
                assert_eq!(denial(&d).1, "audience_mismatch");
            }
            assert_eq!(e.cache_stats().0, 1, "a refused token is never cached");
        }

        #[test]
        fn cache_can_be_turned_off() {
            let e = engine(json!({"cache": {"max_entries": 0}}));
            let token = sign(json!({}));
            for _ in 0..2 {
                assert!(matches!(
                    e.decide(&request("GET", "/", &token, &[]), NOW),
                    Decision::Allow { .. }
                ));
            }
            assert_eq!(e.cache_stats(), (0, 0, 0));
        }
    }
}
