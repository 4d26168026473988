//! The committed seeds of the raw-bytes targets (`decide_raw`, `config`, `jwks`), written by
//! the targets themselves: `FUZZ_WRITE_SEEDS=<dir> <target binary>` writes them and exits
//! (`make fuzz-seeds`). The structure-aware targets' seeds are minimized fuzzing corpora.

use std::path::Path;

use identity_filter::RequestFacts;
use serde_json::{json, Value};

use crate::keys::{self, Alg, AUDIENCE, ISSUER, ISSUER_HS};
use crate::{request, NOW};

/// Called from every target's `init`: write the seeds when asked to, then exit.
pub fn write_if_asked(target: &str) {
    let Ok(dir) = std::env::var("FUZZ_WRITE_SEEDS") else {
        return;
    };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("create the seed directory");
    let seeds = seeds(target);
    for (name, bytes) in &seeds {
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    }
    eprintln!("{} seeds for {target} in {}", seeds.len(), dir.display());
    std::process::exit(0);
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "decide_raw" => requests(),
        "config" => configs(),
        "jwks" => key_sets(),
        _ => Vec::new(),
    }
}

fn token(alg: Alg, rsa: usize, extra: Value) -> String {
    let mut claims = json!({
        "iss": alg.issuer(), "aud": AUDIENCE, "sub": "alice", "exp": NOW + 600, "iat": NOW,
        "tid": "acme", "scope": "runs:read runs:write", "roles": ["admin"], "email": "a@x.test"
    });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    let header = json!({"alg": alg.name(), "kid": alg.kid(rsa), "typ": "JWT"});
    keys::sign_token(alg, rsa, &header, &claims, 1)
}

fn facts(method: &str, path: &str, headers: &[(&str, String)], spoof: bool) -> RequestFacts {
    RequestFacts {
        method: method.into(),
        path: path.into(),
        authority: "api.test".into(),
        scheme: "https".into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
        nonce: String::new(),
        reject_spoofed: spoof,
        peer_certificate: Default::default(),
    }
}

fn requests() -> Vec<(String, Vec<u8>)> {
    let bearer = |t: String| ("authorization", format!("Bearer {t}"));
    let list = [
        (
            "rs256-tenant",
            0,
            0,
            facts(
                "GET",
                "/t/acme/runs?x=1",
                &[bearer(token(Alg::RS256, 0, json!({})))],
                false,
            ),
        ),
        (
            "ps256-cookie-admin",
            0,
            0,
            facts(
                "POST",
                "/admin/x",
                &[(
                    "cookie",
                    format!("theme=dark; session={}", token(Alg::PS256, 1, json!({}))),
                )],
                false,
            ),
        ),
        (
            "es384-query-claims",
            0,
            0,
            facts(
                "GET",
                &format!("/claims?access_token={}", token(Alg::ES384, 0, json!({}))),
                &[],
                false,
            ),
        ),
        (
            "eddsa-expired",
            0,
            0x7f,
            facts(
                "GET",
                "/",
                &[bearer(token(Alg::EdDSA, 0, json!({})))],
                false,
            ),
        ),
        (
            "preflight",
            0,
            0,
            facts(
                "OPTIONS",
                "/x",
                &[
                    ("origin", "https://app.test".into()),
                    ("access-control-request-method", "POST".into()),
                ],
                false,
            ),
        ),
        (
            "public-spoofed",
            0,
            0,
            facts(
                "GET",
                "/public/x",
                &[
                    ("x-identity-subject", "admin".into()),
                    ("x-user", "root".into()),
                ],
                false,
            ),
        ),
        (
            "report-only-xtoken",
            1,
            0,
            facts(
                "GET",
                "/report/1",
                &[
                    ("x-token", token(Alg::EdDSA, 0, json!({"groups": ["g1"]}))),
                    ("x-req", "r-1".into()),
                ],
                false,
            ),
        ),
        (
            "assertion-keys",
            1,
            0,
            facts("GET", "/.well-known/assertion-keys", &[], false),
        ),
        (
            "hs256-kong-spoof",
            2,
            0,
            facts(
                "GET",
                "/t/acme/runs",
                &[
                    bearer(token(Alg::HS256, 0, json!({}))),
                    ("x-identity-roles", "admin".into()),
                ],
                true,
            ),
        ),
        (
            "two-tokens",
            0,
            0,
            facts(
                "GET",
                "/",
                &[
                    bearer(token(Alg::ES256, 0, json!({}))),
                    ("cookie", "session=abc".to_string()),
                ],
                false,
            ),
        ),
    ];
    list.into_iter()
        .map(|(name, config, time, facts)| {
            (name.to_string(), request::encode(config, time, &facts))
        })
        .collect()
}

fn small_jwks() -> Value {
    let all = keys::public_jwks();
    let keep: Vec<Value> = all["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["kty"] != "RSA" || k["kid"] == "rsa-2048")
        .cloned()
        .collect();
    json!({ "keys": keep })
}

fn configs() -> Vec<(String, Vec<u8>)> {
    let rules = keys::configs()
        .first()
        .map(|c| c["rules"].clone())
        .unwrap_or_default();
    let list = [
        (
            "inline-rules-assertion",
            json!({
                "providers": [{"name": "p", "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": small_jwks(),
                               "identity": {"tenant": ["tid"]}, "max_lifetime_seconds": 3600, "require_claims": ["sub"]}],
                "token_sources": [{"header": "authorization", "prefix": "Bearer "}, {"cookie": "session"}, {"query": "access_token"}],
                "default": "authenticated", "rules": rules, "cors_preflight": true,
                "headers": {"claims": [{"claim": "sub", "header": "x-identity-subject"}, {"identity": "roles", "header": "x-identity-roles"}],
                            "strip": ["x-user"], "assertion": {"audience": "svc", "keys": [{"kid": "a1", "secret": keys::ASSERTION_SECRET}]}},
                "errors": {"detail": "message", "realm": "fuzz"}, "cache": {"max_entries": 16, "max_ttl_seconds": 60}
            }),
        ),
        (
            "remote",
            json!({
                "providers": [
                    {"name": "r", "issuer": ISSUER, "jwks_uri": "https://idp.fuzz/keys", "upstream": "idp", "cold_start_wait_ms": 100},
                    {"name": "d", "issuer": "https://disc.fuzz", "discovery": true, "upstream": "idp"}
                ],
                "remote_keys": {"waiting": "own_fetch", "shared_data": true}, "default": "anonymous"
            }),
        ),
        (
            "hs-report-only",
            json!({
                "providers": [{"name": "h", "issuer": ISSUER_HS, "jwks": keys::hs_jwks(), "algorithms": ["HS256", "ES256"], "clock_skew_seconds": 0}],
                "token_sources": [{"header": "x-token"}],
                "report_only": true, "default": "deny", "max_token_bytes": 2048,
                "headers": {"claims": [{"claim": "sub", "header": "x-id-sub"}], "reserved_prefix": "x-id-", "forward_token": true, "spoofed_headers": "reject"}
            }),
        ),
    ];
    list.into_iter()
        .map(|(name, v)| {
            (
                name.to_string(),
                serde_json::to_vec_pretty(&v).unwrap_or_default(),
            )
        })
        .collect()
}

fn key_sets() -> Vec<(String, Vec<u8>)> {
    let mut marked = small_jwks();
    if let Some(list) = marked["keys"].as_array_mut() {
        for (i, k) in list.iter_mut().enumerate() {
            match i {
                0 => k["alg"] = json!("PS256"),
                1 => k["use"] = json!("sig"),
                2 => k["key_ops"] = json!(["verify"]),
                _ => k["alg"] = json!("EdDSA"),
            }
        }
    }
    let list = [
        ("harness", keys::public_jwks()),
        ("hs-oct", keys::hs_jwks()),
        ("marked", marked),
        (
            "odd",
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, {"kty": "RSA", "n": "AQAB", "e": "AQAB"}, {"kty": "OKP", "crv": "X25519", "x": ""}]}),
        ),
    ];
    list.into_iter()
        .map(|(name, v)| (name.to_string(), v.to_string().into_bytes()))
        .collect()
}
