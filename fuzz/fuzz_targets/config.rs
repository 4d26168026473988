//! Configuration JSON: any document through `Engine::from_json` (strict parsing, validation,
//! inline key sets, the assertion signer). When it is accepted, the same document with the
//! token cache turned off must be accepted too, and a few fixed requests (tokens signed by the
//! harness keys, from several sources, on several paths) go through both engines with
//! `check::decide_all`'s invariants. The key store is built from it as the host glue would.
#![no_main]

use std::sync::OnceLock;

use fuzz_support::keys::{self, Alg};
use fuzz_support::{check, keys::without_cache, NOW};
use identity_filter::{Caches, Engine, KeyStore, RequestFacts};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

/// Requests with harness tokens (built once): every algorithm, valid for its issuer.
fn requests() -> &'static [RequestFacts] {
    static REQUESTS: OnceLock<Vec<RequestFacts>> = OnceLock::new();
    REQUESTS.get_or_init(|| {
        let mut out = Vec::new();
        for (i, alg) in [Alg::RS256, Alg::PS384, Alg::ES256, Alg::EdDSA, Alg::HS256]
            .into_iter()
            .enumerate()
        {
            let claims = json!({
                "iss": alg.issuer(), "aud": keys::AUDIENCE, "sub": format!("user-{i}"),
                "exp": NOW + 600, "iat": NOW, "roles": ["admin"], "scope": "runs:read",
                "tid": "acme", "email": "a@x.test", "groups": ["g1"],
            });
            let header = json!({"alg": alg.name(), "kid": alg.kid(i)});
            let token = keys::sign_token(alg, i, &header, &claims, i as u64);
            let (path, headers) = match i {
                0 => (
                    "/t/acme/runs".to_string(),
                    vec![("authorization", format!("Bearer {token}"))],
                ),
                1 => (
                    "/admin".to_string(),
                    vec![("cookie", format!("a=b; session={token}"))],
                ),
                2 => (
                    format!("/x?access_token={token}"),
                    vec![("x-identity-subject", "spoof".to_string())],
                ),
                3 => (
                    "/claims".to_string(),
                    vec![("x-token", token.clone()), ("x-request-id", "r1".into())],
                ),
                _ => (
                    "/report".to_string(),
                    vec![("authorization", format!("bearer {token}"))],
                ),
            };
            out.push(RequestFacts {
                method: "GET".into(),
                path,
                authority: "api.test".into(),
                scheme: "https".into(),
                headers: headers
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect(),
                nonce: "fuzz-nonce-1".into(),
                reject_spoofed: i == 4,
                peer_certificate: Default::default(),
            });
        }
        out.push(RequestFacts {
            method: "OPTIONS".into(),
            path: "/".into(),
            authority: "api.test".into(),
            scheme: "https".into(),
            headers: vec![
                ("origin".into(), "https://a.test".into()),
                ("access-control-request-method".into(), "POST".into()),
            ],
            nonce: String::new(),
            reject_spoofed: false,
            peer_certificate: Default::default(),
        });
        out
    })
}

fuzz_target!(
    init: fuzz_support::seeds::write_if_asked("config"),
    |data: &[u8]| {
    // The budget: per key the document holds (inline JWKs, assertion keys), two loads.
    let doc: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    let count = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_array()).map_or(0, Vec::len);
    let keys = doc.as_ref().map_or(0, |d| {
        let inline: usize = d["providers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| count(p.pointer("/jwks/keys")))
            .sum();
        inline + count(d.pointer("/headers/assertion/keys"))
    });
    let Ok(engine) = check::Budget::pure(check::KEY_UNITS * keys, &"Engine::from_json", || Engine::from_json(data)) else {
        return;
    };
    // Accepted JSON is an object; the same with `cache.max_entries: 0` must be accepted too.
    let doc = doc.expect("accepted config is JSON");
    let plain = without_cache(&doc).to_string();
    let uncached = match Engine::from_json(plain.as_bytes()) {
        Ok(e) => e,
        Err(e) => panic!("config accepted, but not without its cache: {e:?}"),
    };
    // The key store as the glue builds it, and its first fetches: no panic.
    let mut budget = check::Budget::new();
    budget.run(|| {
        let mut store: KeyStore = KeyStore::new(&engine.config);
        for p in store.due(NOW * 1000) {
            let _ = store.start(p, NOW * 1000);
        }
    });
    budget.finish();
    let jwks = check::inline_jwks(&engine.config);
    let mut caches = Caches::new(&engine.config);
    for facts in requests() {
        check::decide_all(
            (&engine, &mut caches),
            &uncached,
            None,
            facts,
            NOW + 1,
            &jwks,
        );
    }
});
