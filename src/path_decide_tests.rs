//! The request path through `decide`: rules see the canonical path, the upstream receives it,
//! the assertion binds it, and a path without a safe canonical form is `400
//! path_not_canonical`.

use serde_json::{json, Value};

use crate::decide::{Decision, Tested};
use crate::engine::Engine;
use crate::headers::HeaderOp;
use crate::jwks::test_keys;
use crate::reason::Reason;
use crate::token::RequestFacts;

const NOW: u64 = 1_800_000_000;

fn sign(claims: Value) -> String {
    test_keys::sign_ed25519("https://issuer.test", NOW, claims)
}

/// `/admin` needs role `admin`; `/t/{tenant}/runs` the caller's tenant; anything else a token.
fn engine(extra: Value) -> Tested {
    let mut v = json!({
        "providers": [{
            "name": "p", "issuer": "https://issuer.test",
            "jwks": {"keys": [test_keys::ed25519_jwk()]},
            "identity": {"tenant": ["tid"]}
        }],
        "rules": [
            {"name": "admin", "match": {"path_prefix": "/admin"}, "require": {"roles": {"any_of": ["admin"]}}},
            {"name": "runs", "match": {"path_template": "/t/{tenant}/runs"}, "require": {"tenant_from_path": "tenant"}}
        ],
        "default": "authenticated",
        "token_sources": [{"header": "authorization", "prefix": "Bearer "}, {"query": "access_token"}],
        "headers": {"assertion": {"audience": "svc", "keys": [{"kid": "a1", "secret": "assertion-secret-assertion-secret"}]}},
    });
    if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            base.insert(k.clone(), val.clone());
        }
    }
    Engine::from_json(v.to_string().as_bytes()).unwrap().into()
}

fn request(path: &str, roles: &[&str]) -> RequestFacts {
    let token = sign(json!({"roles": roles, "tid": "acme"}));
    RequestFacts {
        method: "GET".into(),
        path: path.into(),
        authority: "api.test".into(),
        scheme: "https".into(),
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        nonce: "u-1".into(),
        reject_spoofed: false,
        peer_certificate: Default::default(),
    }
}

fn run(e: &Tested, facts: &RequestFacts) -> Decision {
    e.decide(facts, NOW + 1)
}

/// The last value set for a header (later sets win, as the host applies them in order).
fn last_set<'a>(ops: &'a [HeaderOp], name: &str) -> Option<&'a str> {
    ops.iter().rev().find_map(|op| match op {
        HeaderOp::Set(n, v) if n == name => Some(v.as_str()),
        _ => None,
    })
}

/// (status, reason header) of a denial.
fn denied(d: &Decision) -> (u32, String) {
    match d {
        Decision::Deny { response, .. } => {
            let reason = response
                .headers
                .iter()
                .find(|(n, _)| n == "x-identity-reason")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            (response.status, reason)
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn allowed(d: Decision) -> Vec<HeaderOp> {
    match d {
        Decision::Allow { ops, .. } => ops,
        other => panic!("expected allow, got {other:?}"),
    }
}

fn assertion_path(ops: &[HeaderOp]) -> Value {
    use base64::Engine as _;
    let token = last_set(ops, "x-identity-assertion").unwrap();
    let part = token.split('.').nth(1).unwrap();
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap();
    payload["req"]["path"].clone()
}

#[test]
fn an_encoded_spelling_of_a_ruled_path_meets_that_rule() {
    let d = run(&engine(json!({})), &request("/%61dmin/users", &["user"]));
    assert_eq!(denied(&d), (403, "forbidden; rule=admin".into()));
}

#[test]
fn merged_slashes_meet_the_rule() {
    let d = run(&engine(json!({})), &request("//admin/users", &["user"]));
    assert_eq!(denied(&d), (403, "forbidden; rule=admin".into()));
}

#[test]
fn an_allowed_request_goes_upstream_on_the_canonical_path_with_its_query() {
    let ops = allowed(run(
        &engine(json!({})),
        &request("//%61dmin/users?x=1", &["admin"]),
    ));
    assert_eq!(last_set(&ops, ":path"), Some("/admin/users?x=1"));
}

#[test]
fn a_canonical_path_is_not_rewritten() {
    let ops = allowed(run(
        &engine(json!({})),
        &request("/admin/users?x=1", &["admin"]),
    ));
    assert_eq!(last_set(&ops, ":path"), None);
}

#[test]
fn the_assertion_binds_the_canonical_path() {
    let ops = allowed(run(
        &engine(json!({})),
        &request("//admin//users?x=1", &["admin"]),
    ));
    assert_eq!(assertion_path(&ops), "/admin/users");
}

#[test]
fn a_query_token_is_removed_from_the_canonical_path() {
    let e = engine(json!({}));
    let token = sign(json!({"roles": ["admin"]}));
    let facts = RequestFacts {
        method: "GET".into(),
        path: format!("//admin?access_token={token}&b=2"),
        authority: "api.test".into(),
        scheme: "https".into(),
        headers: vec![],
        nonce: "u-1".into(),
        reject_spoofed: false,
        peer_certificate: Default::default(),
    };
    let ops = allowed(run(&e, &facts));
    assert_eq!(last_set(&ops, ":path"), Some("/admin?b=2"));
}

#[test]
fn an_encoded_slash_is_400_path_not_canonical() {
    let d = run(&engine(json!({})), &request("/admin%2fusers", &["admin"]));
    assert_eq!(denied(&d), (400, "path_not_canonical".into()));
}

#[test]
fn double_encoding_is_400_path_not_canonical() {
    let d = run(&engine(json!({})), &request("/%2561dmin/users", &["admin"]));
    assert_eq!(denied(&d), (400, "path_not_canonical".into()));
}

#[test]
fn path_parameters_are_400_path_not_canonical_by_default() {
    let d = run(&engine(json!({})), &request("/admin;x/users", &["user"]));
    assert_eq!(denied(&d), (400, "path_not_canonical".into()));
}

#[test]
fn allowed_path_parameters_are_ignored_by_rules_and_kept_upstream() {
    let e = engine(json!({"paths": {"allow_parameters": true}}));
    let d = run(&e, &request("/admin;x/users", &["user"]));
    assert_eq!(denied(&d), (403, "forbidden; rule=admin".into()));
    let ops = allowed(run(&e, &request("/admin;x/users", &["admin"])));
    assert_eq!(last_set(&ops, ":path"), None);
    assert_eq!(assertion_path(&ops), "/admin;x/users");
}

#[test]
fn report_only_reports_a_path_without_canonical_form_and_lets_it_pass() {
    let e = engine(json!({"report_only": true}));
    let ops = allowed(run(&e, &request("/admin%2fusers", &["user"])));
    assert_eq!(
        last_set(&ops, "x-identity-report"),
        Some("deny; reason=path_not_canonical; rule=path_not_canonical")
    );
    assert_eq!(last_set(&ops, ":path"), None);
}

#[test]
fn rules_ignore_case_by_default() {
    let d = run(&engine(json!({})), &request("/ADMIN/users", &["user"]));
    assert_eq!(denied(&d), (403, "forbidden; rule=admin".into()));
}

#[test]
fn ignore_case_off_globally_matches_case_exactly() {
    let e = engine(json!({"paths": {"ignore_case": false}}));
    allowed(run(&e, &request("/ADMIN/users", &["user"])));
}

#[test]
fn a_rule_may_override_the_global_case_setting() {
    let e = engine(json!({"rules": [
        {"name": "admin", "match": {"path_prefix": "/admin", "ignore_case": false}, "require": {"roles": {"any_of": ["admin"]}}}
    ]}));
    allowed(run(&e, &request("/ADMIN/users", &["user"])));
    let e = engine(json!({"paths": {"ignore_case": false}, "rules": [
        {"name": "admin", "match": {"path_prefix": "/admin", "ignore_case": true}, "require": {"roles": {"any_of": ["admin"]}}}
    ]}));
    let d = run(&e, &request("/ADMIN/users", &["user"]));
    assert_eq!(denied(&d), (403, "forbidden; rule=admin".into()));
}

#[test]
fn template_captures_come_from_the_canonical_path() {
    let e = engine(json!({}));
    allowed(run(&e, &request("/t/%61cme//runs", &[])));
    allowed(run(&e, &request("/T/acme/RUNS", &[])));
}

#[test]
fn captures_keep_their_case_when_the_rule_ignores_case() {
    let d = run(&engine(json!({})), &request("/t/ACME/runs", &[]));
    assert_eq!(denied(&d), (403, "forbidden; rule=runs".into()));
}

#[test]
fn a_rule_path_that_is_not_canonical_is_a_configuration_error() {
    let config = json!({
        "providers": [{"name": "p", "issuer": "i", "jwks": {"keys": []}}],
        "rules": [{"match": {"path_prefix": "/%61dmin"}}]
    });
    let error = Engine::from_json(config.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.path, "rules[0].match.path_prefix");
    assert!(error.message.contains("`/admin`"), "{}", error.message);
}

#[test]
fn the_reason_code_is_stable() {
    assert_eq!(Reason::PathNotCanonical.code(), "path_not_canonical");
    assert_eq!(Reason::PathNotCanonical.status(), 400);
}
