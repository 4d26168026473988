//! The configuration document as a whole: parsing, defaults, and the field paths of errors.

use super::tokens::default_token_sources;
use super::*;
use crate::claims::ClaimPath;
use crate::reason::Detail;

fn minimal() -> serde_json::Value {
    serde_json::json!({
        "providers": [{"name": "dev", "issuer": "https://issuer.test", "jwks": {"keys": []}}]
    })
}

fn parse(v: &serde_json::Value) -> Result<Config, ConfigError> {
    Config::from_json(v.to_string().as_bytes())
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse(&minimal()).unwrap();
    assert_eq!(c.max_token_bytes, 8192);
    assert_eq!(c.token_sources, default_token_sources());
    assert_eq!(c.default, DefaultAction::Deny);
    assert_eq!(c.providers[0].clock_skew_seconds, 60);
    assert!(c.providers[0].require_expiration);
    assert!(c.metrics.enabled);
    assert!(c.log.decisions);
    assert!(!c.headers.forward_token);
    assert_eq!(c.errors.reason_header, "x-identity-reason");
    assert_eq!(c.errors.detail, Detail::Reason);
}

#[test]
fn header_names_are_lower_cased_once_at_configuration() {
    let doc = r#"{"providers": [{"name": "p", "issuer": "i", "jwks": {"keys": []}}],
        "token_sources": [{"header": "X-Token"}],
        "headers": {"claims": [{"claim": "sub", "header": "X-Sub"}], "strip": ["X-User"],
            "report_header": "X-Report",
            "assertion": {"audience": "a", "header": "X-Assert", "request_id_header": "X-Req",
                "keys": [{"kid": "k", "secret": "0123456789abcdef0123456789abcdef"}]}}}"#;
    let c = Config::from_json(doc.as_bytes()).unwrap();
    assert_eq!(c.headers.claims[0].header, "x-sub");
    assert_eq!(c.headers.strip, vec!["x-user"]);
    assert_eq!(c.headers.report_header, "x-report");
    let a = c.headers.assertion.unwrap();
    assert_eq!(
        (a.header.as_str(), a.request_id_header.as_str()),
        ("x-assert", "x-req")
    );
    assert_eq!(c.token_sources[0].header.as_deref(), Some("x-token"));
}

#[test]
fn unknown_field_names_its_path() {
    let mut v = minimal();
    v["providers"][0]["audience"] = "x".into();
    let e = parse(&v).unwrap_err();
    assert_eq!(e.path, "providers[0].audience");
    assert!(
        e.message.contains("unknown field `audience`"),
        "{}",
        e.message
    );
}

#[test]
fn json_syntax_errors_name_line_and_column() {
    let e =
        Config::from_json(b"{\n  \"providers\": [\n    {\"name\": \"x\",}\n  ]\n}").unwrap_err();
    assert_eq!(e.message, "trailing comma (line 3, column 18)");
    let e = Config::from_json(b"{\"providers\": [").unwrap_err();
    assert!(e.message.contains("(line 1, column 15)"), "{}", e.message);
    let mut text = serde_json::to_string(&minimal()).unwrap();
    text.push_str("\n x");
    let e = Config::from_json(text.as_bytes()).unwrap_err();
    assert!(e.message.contains("(line 2, column 2)"), "{}", e.message);
}

#[test]
fn wrong_type_names_its_path() {
    let mut v = minimal();
    v["providers"][0]["clock_skew_seconds"] = "60".into();
    let e = parse(&v).unwrap_err();
    assert_eq!(e.path, "providers[0].clock_skew_seconds");
    assert!(e
        .to_string()
        .starts_with("invalid configuration at providers[0].clock_skew_seconds"));
}

#[test]
fn unknown_algorithm_is_refused() {
    let mut v = minimal();
    v["providers"][0]["algorithms"] = serde_json::json!(["none"]);
    let e = parse(&v).unwrap_err();
    assert_eq!(e.path, "providers[0].algorithms[0]");
}

#[test]
fn not_json_is_an_error_not_a_panic() {
    // Each names the syntax error with its line and column; the path is where parsing
    // stopped ("?": a key it could not read, ".": the document, "": after the document).
    let e = Config::from_json(b"{not json").unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.message.as_str()),
        ("?", "key must be a string (line 1, column 2)")
    );
    let e = Config::from_json(b"").unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.message.as_str()),
        (".", "EOF while parsing a value (line 1, column 0)")
    );
    let e = Config::from_json(b"{\"providers\": []} trailing").unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.message.as_str()),
        ("", "trailing characters (line 1, column 19)")
    );
}

#[test]
fn providers_are_required() {
    let e = parse(&serde_json::json!({"providers": []})).unwrap_err();
    assert_eq!(e.path, "providers");
    let e = parse(&serde_json::json!({})).unwrap_err();
    assert!(e.message.contains("providers"));
}

#[test]
fn duplicate_issuers_are_refused() {
    let mut v = minimal();
    let p = v["providers"][0].clone();
    let mut q = p.clone();
    q["name"] = "other".into();
    v["providers"] = serde_json::json!([p, q]);
    let e = parse(&v).unwrap_err();
    assert_eq!(e.path, "providers[1].issuer");
}

#[test]
fn token_source_needs_exactly_one_location() {
    let mut v = minimal();
    v["token_sources"] = serde_json::json!([{"header": "x", "query": "y"}]);
    assert_eq!(parse(&v).unwrap_err().path, "token_sources[0]");
    v["token_sources"] = serde_json::json!([{}]);
    assert_eq!(parse(&v).unwrap_err().path, "token_sources[0]");
    v["token_sources"] = serde_json::json!([{"query": "t", "prefix": "x"}]);
    assert_eq!(parse(&v).unwrap_err().path, "token_sources[0].prefix");
}

#[test]
fn bad_header_names_are_refused() {
    let mut v = minimal();
    v["headers"] = serde_json::json!({"claims": [{"claim": "sub", "header": "x sub"}]});
    assert_eq!(parse(&v).unwrap_err().path, "headers.claims[0].header");
    v["headers"] = serde_json::json!({"claims": [{"claim": "a..b", "header": "x-sub"}]});
    assert_eq!(parse(&v).unwrap_err().path, "headers.claims[0].claim");
    v["headers"] = serde_json::json!({"strip": ["Host"]});
    assert_eq!(parse(&v).unwrap_err().path, "headers.strip[0]");
}

#[test]
fn claim_paths_take_both_forms_wherever_a_claim_is_named() {
    let v = serde_json::json!({
        "providers": [{
            "name": "k8s", "issuer": "https://kubernetes.default.svc.cluster.local",
            "jwks": {"keys": []},
            "audience_claims": ["aud", ["kubernetes.io", "audience"]],
            "require_claims": ["kubernetes.io.namespace", ["kubernetes.io", "pod", "uid"]],
            "identity": {
                "subject": ["kubernetes.io", "serviceaccount", "name"],
                "roles": ["kubernetes.io.serviceaccount.name"],
                "tenant": [["kubernetes.io", "namespace"]]
            },
            "claim_headers": [{"claim": ["kubernetes.io", "namespace"], "header": "X-K8s-Namespace"}]
        }],
        "rules": [{"require": {"claims": [
            {"claim": "kubernetes.io.namespace", "equals": "flows"},
            {"claim": ["kubernetes.io", "serviceaccount", "name"], "equals": "worker"}
        ]}}],
        "headers": {"claims": [{"claim": ["https://example.com/roles"], "header": "x-roles"}]}
    });
    let c = parse(&v).unwrap();
    let p = &c.providers[0];
    assert_eq!(p.audience_claims.len(), 2);
    assert_eq!(
        p.require_claims[0],
        ClaimPath::dotted("kubernetes.io.namespace").unwrap()
    );
    assert_eq!(
        p.identity.subject,
        ClaimPath::keys(vec![
            "kubernetes.io".into(),
            "serviceaccount".into(),
            "name".into()
        ])
        .unwrap()
    );
    let own = p.claim_headers.as_ref().unwrap();
    assert_eq!(
        own[0].header, "x-k8s-namespace",
        "lower-cased like headers.claims"
    );

    for (path, value, at) in [
        (
            &["providers", "0", "require_claims"][..],
            serde_json::json!(["a..b"]),
            "providers[0].require_claims[0]",
        ),
        (
            &["providers", "0", "audience_claims"],
            serde_json::json!(["aud", []]),
            "providers[0].audience_claims[1]",
        ),
        (
            &["providers", "0", "identity", "roles"],
            serde_json::json!(["ok", "x."]),
            "providers[0].identity.roles[1]",
        ),
        (
            &["providers", "0", "identity", "subject"],
            serde_json::json!(["a", ""]),
            "providers[0].identity.subject",
        ),
        (
            &["providers", "0", "identity", "tenant"],
            serde_json::json!([7]),
            "providers[0].identity.tenant[0]",
        ),
        (
            &["providers", "0", "claim_headers"],
            serde_json::json!([{"claim": ".a", "header": "x"}]),
            "providers[0].claim_headers[0].claim",
        ),
        (
            &["headers", "claims"],
            serde_json::json!([{"claim": [], "header": "x"}]),
            "headers.claims[0].claim",
        ),
    ] {
        let mut bad = v.clone();
        let mut target = &mut bad;
        for step in &path[..path.len() - 1] {
            target = match step.parse::<usize>() {
                Ok(i) => &mut target[i],
                Err(_) => &mut target[*step],
            };
        }
        target[path[path.len() - 1]] = value;
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.path, at, "{e}");
    }
    let mut bad = v.clone();
    bad["rules"][0]["require"]["claims"][0]["claim"] = serde_json::json!("");
    assert_eq!(
        parse(&bad).unwrap_err().path,
        "rules[0].require.claims[0].claim"
    );
}

#[test]
fn audience_claims_default_to_aud_and_cannot_be_empty() {
    let c = parse(&minimal()).unwrap();
    assert_eq!(c.providers[0].audience_claims, vec![ClaimPath::name("aud")]);
    let mut v = minimal();
    v["providers"][0]["audience_claims"] = serde_json::json!([]);
    assert_eq!(parse(&v).unwrap_err().path, "providers[0].audience_claims");
}

#[test]
fn provider_claim_headers_are_checked_like_the_global_ones() {
    let mut v = minimal();
    assert!(parse(&v).unwrap().providers[0].claim_headers.is_none());
    v["providers"][0]["claim_headers"] = serde_json::json!([]);
    let none = parse(&v).unwrap();
    assert_eq!(
        none.providers[0].claim_headers.as_ref().map(Vec::len),
        Some(0)
    );
    v["providers"][0]["claim_headers"] =
        serde_json::json!([{"claim": "sub", "identity": "subject", "header": "x-a"}]);
    assert_eq!(parse(&v).unwrap_err().path, "providers[0].claim_headers[0]");
    v["providers"][0]["claim_headers"] = serde_json::json!([{"header": "x-a"}]);
    assert_eq!(parse(&v).unwrap_err().path, "providers[0].claim_headers[0]");
    v["providers"][0]["claim_headers"] = serde_json::json!([{"claim": "sub", "header": "Host"}]);
    assert_eq!(
        parse(&v).unwrap_err().path,
        "providers[0].claim_headers[0].header"
    );
}

#[test]
fn rule_match_is_checked() {
    let mut v = minimal();
    v["rules"] = serde_json::json!([{"match": {"path": "/a", "path_prefix": "/b"}}]);
    assert_eq!(parse(&v).unwrap_err().path, "rules[0].match");
    v["rules"] = serde_json::json!([{"match": {"path_prefix": "api"}}]);
    assert_eq!(parse(&v).unwrap_err().path, "rules[0].match.path_prefix");
    v["rules"] = serde_json::json!([{"match": {"methods": ["get"]}}]);
    assert_eq!(parse(&v).unwrap_err().path, "rules[0].match.methods[0]");
    v["rules"] = serde_json::json!([{"match": {"paths": "/"}}]);
    assert_eq!(parse(&v).unwrap_err().path, "rules[0].match.paths");
}

#[test]
fn provider_gates_name_configured_providers() {
    let mut v = minimal();
    v["rules"] = serde_json::json!([{"match": {"providers": ["dev", "okta"]}}]);
    let e = parse(&v).unwrap_err();
    assert_eq!(e.path, "rules[0].match.providers[1]");
    assert!(e.message.contains("`okta`"), "{}", e.message);
    v["rules"] = serde_json::json!([{"match": {"providers": ["dev"]}, "allow_anonymous": true}]);
    assert_eq!(parse(&v).unwrap_err().path, "rules[0].allow_anonymous");
    v["rules"] =
        serde_json::json!([{"require": {"any_of": [{"providers": ["nope"]}, {"providers": []}]}}]);
    assert_eq!(
        parse(&v).unwrap_err().path,
        "rules[0].require.any_of[1].providers"
    );
    v["rules"] = serde_json::json!([{"require": {"any_of": [{"providers": ["nope"]}]}}]);
    assert_eq!(
        parse(&v).unwrap_err().path,
        "rules[0].require.any_of[0].providers[0]"
    );
    v["rules"] =
        serde_json::json!([{"match": {"providers": ["dev"]}, "require": {"providers": ["dev"]}}]);
    assert!(parse(&v).is_ok());
}

#[test]
fn an_issuer_pattern_needs_a_tenant_list_and_no_overlap() {
    let entra = "https://login.microsoftonline.com/{tenant}/v2.0";
    let mut v = minimal();
    v["providers"][0]["issuer"] = entra.into();
    assert_eq!(parse(&v).unwrap_err().path, "providers[0].tenants");
    v["providers"][0]["tenants"] = serde_json::json!([]);
    assert_eq!(parse(&v).unwrap_err().path, "providers[0].tenants");
    v["providers"][0]["tenants"] = serde_json::json!(["acme", "*"]);
    let e = parse(&v).unwrap_err();
    assert_eq!(e.path, "providers[0].tenants[1]");
    assert!(e.message.contains("`*`"), "{}", e.message);
    v["providers"][0]["tenants"] = serde_json::json!(["a/b"]);
    assert_eq!(parse(&v).unwrap_err().path, "providers[0].tenants[0]");
    v["providers"][0]["tenants"] = serde_json::json!(["acme"]);
    assert!(parse(&v).is_ok());
    v["providers"][0]["issuer"] = "https://login.microsoftonline.com/x{tenant}/v2.0".into();
    assert_eq!(parse(&v).unwrap_err().path, "providers[0].issuer");
    // Tenants without a pattern.
    let mut w = minimal();
    w["providers"][0]["tenants"] = serde_json::json!(["acme"]);
    assert_eq!(parse(&w).unwrap_err().path, "providers[0].tenants");
    // An exact issuer the pattern also matches, or two patterns that meet.
    let pattern = serde_json::json!({"name": "entra", "issuer": entra, "tenants": ["acme"], "jwks": {"keys": []}});
    for other in [
        "https://login.microsoftonline.com/globex/v2.0",
        "https://login.microsoftonline.com/common/{tenant}",
    ] {
        let mut q = pattern.clone();
        q["name"] = "other".into();
        q["issuer"] = other.into();
        if !other.contains("{tenant}") {
            q.as_object_mut().unwrap().remove("tenants");
        }
        let doc = serde_json::json!({"providers": [pattern.clone(), q]});
        let e = parse(&doc).unwrap_err();
        assert_eq!(e.path, "providers[1].issuer", "{other}");
        assert!(e.message.contains("providers[0].issuer"), "{}", e.message);
    }
    let v1 = serde_json::json!({"name": "v1", "issuer": "https://sts.windows.net/{tenant}/", "tenants": ["acme"], "jwks": {"keys": []}});
    assert!(parse(&serde_json::json!({"providers": [pattern, v1]})).is_ok());
}

#[test]
fn discovery_of_a_pattern_fetches_its_first_tenants_document() {
    let c = parse(&remote(serde_json::json!({
        "issuer": "https://login.microsoftonline.com/{tenant}/v2.0",
        "tenants": ["acme", "globex"], "jwks_uri": null, "discovery": true
    })))
    .unwrap();
    assert_eq!(
        crate::issuer::discovery_issuer(&c.providers[0]),
        "https://login.microsoftonline.com/acme/v2.0"
    );
}

fn remote(extra: serde_json::Value) -> serde_json::Value {
    let mut p = serde_json::json!({
        "name": "idp", "issuer": "https://idp.test",
        "jwks_uri": "https://idp.test/keys", "upstream": "idp"
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                p.remove(k);
            } else {
                p.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::json!({"providers": [p]})
}

#[test]
fn remote_key_fields_get_documented_defaults() {
    let c = parse(&remote(serde_json::json!({}))).unwrap();
    let p = &c.providers[0];
    assert!(p.is_remote());
    assert_eq!(p.jwks, None);
    assert!(!p.discovery);
    assert_eq!(p.fetch_timeout_ms, 5000);
    assert_eq!(p.min_refresh_seconds, 60);
    assert_eq!(p.max_refresh_seconds, 600);
    assert_eq!(p.refetch_min_interval_seconds, 30);
    assert_eq!(p.max_stale_seconds, 86400);
    assert_eq!(p.cold_start_wait_ms, 3000);
    assert_eq!(p.max_response_bytes, 262_144);
    assert_eq!(p.min_rsa_bits, 2048);
    assert!(!c.remote_keys.shared_data);
    assert_eq!(c.remote_keys.waiting, WaitMode::Auto);
    assert_eq!(c.remote_keys.tick_ms, 100);
}

#[test]
fn exactly_one_key_source() {
    let both = remote(serde_json::json!({"jwks": {"keys": []}}));
    assert_eq!(parse(&both).unwrap_err().path, "providers[0]");
    let uri_and_discovery = remote(serde_json::json!({"discovery": true}));
    assert_eq!(parse(&uri_and_discovery).unwrap_err().path, "providers[0]");
    let none = remote(serde_json::json!({"jwks_uri": null}));
    assert_eq!(parse(&none).unwrap_err().path, "providers[0]");
    let discovery = remote(serde_json::json!({"jwks_uri": null, "discovery": true}));
    assert!(parse(&discovery).is_ok());
}

#[test]
fn remote_keys_need_an_upstream_and_urls() {
    let e = parse(&remote(serde_json::json!({"upstream": null}))).unwrap_err();
    assert_eq!(e.path, "providers[0].upstream");
    let e = parse(&remote(serde_json::json!({"jwks_uri": "idp.test/keys"}))).unwrap_err();
    assert_eq!(e.path, "providers[0].jwks_uri");
    let e = parse(&remote(
        serde_json::json!({"jwks_uri": null, "discovery": true, "issuer": "idp"}),
    ))
    .unwrap_err();
    assert_eq!(e.path, "providers[0].discovery");
}

#[test]
fn remote_key_numbers_are_checked() {
    for (field, value) in [
        ("fetch_timeout_ms", 0),
        ("min_refresh_seconds", 0),
        ("cold_start_wait_ms", 60_001),
        ("max_response_bytes", 10),
    ] {
        let e = parse(&remote(serde_json::json!({ field: value }))).unwrap_err();
        assert_eq!(e.path, format!("providers[0].{field}"));
    }
    let e = parse(&remote(
        serde_json::json!({"min_refresh_seconds": 100, "max_refresh_seconds": 10}),
    ))
    .unwrap_err();
    assert_eq!(e.path, "providers[0].max_refresh_seconds");
    let mut v = remote(serde_json::json!({}));
    v["remote_keys"] = serde_json::json!({"tick_ms": 5});
    assert_eq!(parse(&v).unwrap_err().path, "remote_keys.tick_ms");
    v["remote_keys"] = serde_json::json!({"waiting": "sometimes"});
    assert_eq!(parse(&v).unwrap_err().path, "remote_keys.waiting");
}

/// Every section is checked, and the first error found is the one reported, in the order of
/// `Config::validate`: a document wrong in every section reports them one after the other as
/// each is fixed.
#[test]
fn sections_are_checked_in_order_and_the_first_error_is_reported() {
    let mut v = serde_json::json!({
        "providers": [{"name": " ", "issuer": "https://issuer.test", "jwks": {"keys": []}}],
        "token_sources": [{"header": "authorization", "query": "t"}],
        "max_token_bytes": 0,
        "rules": [{"match": {"path": "/a", "path_prefix": "/a", "providers": ["nobody"]}}],
        "headers": {"claims": [{"header": "x-sub"}], "reserved_prefix": "X-Identity-"},
        "errors": {"reason_header": "bad header"},
        "remote_keys": {"tick_ms": 5},
        "cache": {"max_entries": 100001},
        "dpop": {"replay_cache_entries": 0},
        "client_certificate": {"header": "x-cert"},
    });
    type Fix = fn(&mut serde_json::Value);
    let steps: [(&str, Fix); 12] = [
        ("providers[0].name", |v| {
            v["providers"][0]["name"] = "dev".into()
        }),
        ("token_sources[0]", |v| {
            v["token_sources"] = serde_json::json!([{"header": "authorization"}])
        }),
        ("max_token_bytes", |v| v["max_token_bytes"] = 8192.into()),
        ("rules[0].match", |v| {
            v["rules"][0]["match"]["path_prefix"] = serde_json::Value::Null;
            v["rules"][0]["match"]["path"] = "/a//b".into();
        }),
        ("headers.claims[0]", |v| {
            v["headers"]["claims"][0]["claim"] = "sub".into()
        }),
        ("errors.reason_header", |v| {
            v["errors"]["reason_header"] = "x-reason".into()
        }),
        ("headers.reserved_prefix", |v| {
            v["headers"]["reserved_prefix"] = "x-identity-".into()
        }),
        ("remote_keys.tick_ms", |v| {
            v["remote_keys"]["tick_ms"] = 100.into()
        }),
        ("cache.max_entries", |v| {
            v["cache"]["max_entries"] = 10.into()
        }),
        ("dpop.replay_cache_entries", |v| {
            v["dpop"]["replay_cache_entries"] = 10.into()
        }),
        ("rules[0].match.path", |v| {
            v["rules"][0]["match"]["path"] = "/a/b".into()
        }),
        ("rules[0].match.providers[0]", |v| {
            v["rules"][0]["match"]["providers"] = serde_json::json!(["dev"])
        }),
    ];
    for (path, fix) in steps {
        assert_eq!(parse(&v).unwrap_err().path, path);
        fix(&mut v);
    }
    assert_eq!(parse(&v).unwrap_err().path, "client_certificate.header");
    v["client_certificate"] = serde_json::json!({});
    assert!(parse(&v).is_ok());
}
