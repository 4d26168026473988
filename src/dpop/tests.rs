//! DPoP: the RFC vectors, and every check of a proof through the request path (`decide`), each
//! refusal with its reason.

use super::*;
use crate::decide::{Decision, Tested};
use crate::engine::Engine;
use crate::headers::HeaderOp;
use crate::jwks::test_keys;
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.test";

#[test]
fn rfc_7638_example_key_has_the_rfc_thumbprint() {
    // RFC 7638 §3.1.
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        thumbprint(jwk.as_object().unwrap()).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
}

#[test]
fn thumbprints_need_the_required_members_of_a_known_key_type() {
    let no_y = json!({"kty": "EC", "crv": "P-256", "x": "abc"});
    assert_eq!(thumbprint(no_y.as_object().unwrap()), None);
    let oct = json!({"kty": "oct", "k": "abc"});
    assert_eq!(thumbprint(oct.as_object().unwrap()), None);
    let number = json!({"kty": "OKP", "crv": "Ed25519", "x": 5});
    assert_eq!(thumbprint(number.as_object().unwrap()), None);
}

#[test]
fn rfc_9449_example_access_token_hash() {
    // RFC 9449 §7.1: the access token of the example request and its `ath`, as the request path
    // compares them (the proof's `ath` decoded against the token's hash).
    let ath = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    assert_eq!(decode_ath(ath), Some(token_hash(token)));
    assert_ne!(
        decode_ath(ath),
        Some(token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxV"))
    );
    // Padded, short, long or not base64url: no hash at all.
    for bad in [
        &format!("{ath}="),
        &ath[1..],
        &format!("{ath}A"),
        &ath.replacen('f', "+", 1),
    ] {
        assert_eq!(decode_ath(bad), None, "{bad}");
    }
}

#[test]
fn uris_are_compared_without_query_fragment_case_or_default_port() {
    let n = |s: &str| normalize_uri(s);
    assert_eq!(
        n("HTTPS://API.Example.com:443/a/B?x=1#f").as_deref(),
        Some("https://api.example.com/a/B")
    );
    assert_eq!(n("http://h:80").as_deref(), Some("http://h/"));
    assert_eq!(n("https://h:8443/x").as_deref(), Some("https://h:8443/x"));
    assert_eq!(n("http://h:443/x").as_deref(), Some("http://h:443/x"));
    assert_eq!(n("https://[::1]:443/x").as_deref(), Some("https://[::1]/x"));
    assert_eq!(n("ftp://h/x"), None);
    assert_eq!(n("https://user@h/x"), None);
    assert_eq!(n("https:///x"), None);
    assert_eq!(n("/x"), None);
}

#[test]
fn public_base_url_is_a_scheme_and_host_only() {
    let config = |url: &str| DpopConfig {
        public_base_url: Some(url.into()),
        ..DpopConfig::default()
    };
    for good in [
        "https://api.example.com",
        "https://api.example.com/",
        "http://h:8080",
    ] {
        assert!(config(good).check().is_ok(), "{good}");
    }
    for bad in [
        "api.example.com",
        "https://api.example.com/v1",
        "https://api.example.com?x",
        "https://api.example.com#f",
        "ftp://api.example.com",
        "https://u@api.example.com",
    ] {
        assert_eq!(
            config(bad).check().unwrap_err().path,
            "dpop.public_base_url",
            "{bad}"
        );
    }
}

#[test]
fn the_replay_cache_is_bounded_and_forgets_expired_proofs_first() {
    let mut cache = ReplayCache::new(2);
    let key = |b: u8| [b; 16];
    assert!(!cache.seen(&key(1), NOW + 10, NOW));
    assert!(cache.seen(&key(1), NOW + 10, NOW + 5));
    assert!(!cache.seen(&key(2), NOW + 100, NOW));
    // Expired: forgotten, and the slot is reused without evicting a live proof.
    assert!(!cache.seen(&key(3), NOW + 100, NOW + 11));
    assert_eq!(cache.stats(), (2, 0));
    assert!(cache.seen(&key(2), NOW + 100, NOW + 11));
    // Full of live proofs: the oldest goes.
    assert!(!cache.seen(&key(4), NOW + 100, NOW + 12));
    assert_eq!(cache.stats(), (2, 1));
    assert!(!cache.seen(&key(2), NOW + 100, NOW + 12));
}

// ---- the request path ----

use test_proofs::{client_jwk, client_key, jkt, sign};

fn header() -> Value {
    json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": client_jwk(&client_key())})
}

fn claims(token: &str, jti: &str) -> Value {
    json!({
        "jti": jti, "htm": "GET", "htu": "https://api.test/runs/1", "iat": NOW,
        "ath": access_token_hash(token)
    })
}

/// A proof for `GET https://api.test/runs/1` with `token`, changed by `edit`.
fn proof_with(token: &str, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
    let (mut h, mut c) = (header(), claims(token, "jti-1"));
    edit(&mut h, &mut c);
    sign(&client_key(), &h, &c)
}

fn proof(token: &str) -> String {
    proof_with(token, |_, _| {})
}

fn bound_token() -> String {
    test_keys::sign_ed25519(ISSUER, NOW, json!({"cnf": {"jkt": jkt(&client_key())}}))
}

fn plain_token() -> String {
    test_keys::sign_ed25519(ISSUER, NOW, json!({}))
}

fn engine(dpop: Value) -> Tested {
    let v = json!({
        "providers": [{
            "name": "p", "issuer": ISSUER,
            "jwks": {"keys": [test_keys::ed25519_jwk()]},
            "dpop": dpop
        }],
        "default": "authenticated",
        "headers": {"claims": [{"identity": "binding", "header": "x-identity-binding"}]},
    });
    Engine::from_json(v.to_string().as_bytes()).unwrap().into()
}

fn request(authorization: &str, proofs: &[&str]) -> RequestFacts {
    let mut headers = vec![("authorization".to_string(), authorization.to_string())];
    for p in proofs {
        headers.push(("dpop".to_string(), p.to_string()));
    }
    RequestFacts {
        method: "GET".into(),
        path: "/runs/1?page=2".into(),
        authority: "api.test".into(),
        scheme: "https".into(),
        headers,
        ..RequestFacts::default()
    }
}

fn dpop_request(token: &str, proofs: &[&str]) -> RequestFacts {
    request(&format!("DPoP {token}"), proofs)
}

fn reason(engine: &Tested, facts: &RequestFacts) -> Option<Reason> {
    match engine.decide(facts, NOW) {
        Decision::Deny { log, .. } => log.reason,
        _ => None,
    }
}

fn binding_header(decision: &Decision) -> Option<String> {
    match decision {
        Decision::Allow { ops, .. } => ops.iter().find_map(|op| match op {
            HeaderOp::Set(n, v) if n == "x-identity-binding" => Some(v.clone()),
            _ => None,
        }),
        other => panic!("expected allow, got {other:?}"),
    }
}

#[test]
fn a_bound_token_with_its_proof_passes_as_dpop() {
    let e = engine(json!({}));
    let token = bound_token();
    let d = e.decide(&dpop_request(&token, &[&proof(&token)]), NOW);
    assert_eq!(binding_header(&d).as_deref(), Some("dpop"));
}

#[test]
fn the_scheme_is_case_insensitive() {
    let e = engine(json!({}));
    let token = bound_token();
    let facts = request(&format!("dpop {token}"), &[&proof(&token)]);
    assert_eq!(reason(&e, &facts), None);
}

#[test]
fn a_replayed_proof_is_refused() {
    let e = engine(json!({}));
    let token = bound_token();
    let p = proof(&token);
    assert_eq!(reason(&e, &dpop_request(&token, &[&p])), None);
    assert_eq!(
        reason(&e, &dpop_request(&token, &[&p])),
        Some(Reason::DpopProofReplayed)
    );
    // A new jti is a new proof.
    let fresh = proof_with(&token, |_, c| c["jti"] = json!("jti-2"));
    assert_eq!(reason(&e, &dpop_request(&token, &[&fresh])), None);
}

#[test]
fn a_cached_token_still_needs_a_fresh_proof_every_request() {
    let e = engine(json!({}));
    let token = bound_token();
    assert_eq!(reason(&e, &dpop_request(&token, &[&proof(&token)])), None);
    assert_eq!(e.cache_stats().0, 1);
    assert_eq!(
        reason(&e, &dpop_request(&token, &[])),
        Some(Reason::DpopProofMissing)
    );
}

#[test]
fn ath_is_checked_against_the_cached_tokens_hash() {
    let e = engine(json!({}));
    let token = bound_token();
    assert_eq!(reason(&e, &dpop_request(&token, &[&proof(&token)])), None);
    let hit = |p: String| {
        let r = reason(&e, &dpop_request(&token, &[&p]));
        assert!(e.cache_stats().0 >= 1, "the token is cached");
        r
    };
    // Each with a fresh jti: the hash kept with the cached identity is what `ath` must match.
    let other = proof_with(&token, |_, c| {
        c["jti"] = json!("a");
        c["ath"] = json!(access_token_hash("other"));
    });
    assert_eq!(hit(other), Some(Reason::DpopAthMismatch));
    let good = access_token_hash(&token);
    let padded = proof_with(&token, |_, c| {
        c["jti"] = json!("b");
        c["ath"] = json!(format!("{good}="));
    });
    assert_eq!(hit(padded), Some(Reason::DpopAthMismatch));
    // The same 32 bytes, but the unused low bits of the last character set: not canonical.
    let last = good.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let i = alphabet.find(last).unwrap();
    let loose = format!("{}{}", &good[..42], &alphabet[i | 1..(i | 1) + 1]);
    assert_ne!(loose, good);
    let noncanonical = proof_with(&token, |_, c| {
        c["jti"] = json!("c");
        c["ath"] = json!(loose);
    });
    assert_eq!(hit(noncanonical), Some(Reason::DpopAthMismatch));
    let fine = proof_with(&token, |_, c| c["jti"] = json!("d"));
    assert_eq!(hit(fine), None);
}

#[test]
fn a_bound_tokens_identity_keeps_its_hash_and_a_plain_ones_does_not() {
    let e = engine(json!({}));
    for (token, kept) in [(bound_token(), true), (plain_token(), false)] {
        let p = proof_with(&token, |_, c| c["jti"] = json!(format!("{kept}")));
        let facts = if kept {
            dpop_request(&token, &[&p])
        } else {
            request(&format!("Bearer {token}"), &[&p])
        };
        assert_eq!(reason(&e, &facts), None);
        let hash = crate::dpop::token_hash(&token);
        let found = e.cached_identity(&token).expect("cached");
        assert_eq!(found.token_hash, kept.then_some(hash));
    }
}

#[test]
fn each_broken_check_has_its_reason() {
    let token = bound_token();
    let cases: Vec<(&str, String, Reason)> = vec![
        (
            "wrong htm",
            proof_with(&token, |_, c| c["htm"] = json!("POST")),
            Reason::DpopProofInvalid,
        ),
        (
            "wrong htu",
            proof_with(&token, |_, c| c["htu"] = json!("https://api.test/runs/2")),
            Reason::DpopProofInvalid,
        ),
        (
            "htu of another host",
            proof_with(&token, |_, c| c["htu"] = json!("https://evil.test/runs/1")),
            Reason::DpopProofInvalid,
        ),
        (
            "stale iat",
            proof_with(&token, |_, c| c["iat"] = json!(NOW - 301)),
            Reason::DpopProofInvalid,
        ),
        (
            "future iat",
            proof_with(&token, |_, c| c["iat"] = json!(NOW + 61)),
            Reason::DpopProofInvalid,
        ),
        (
            "no jti",
            proof_with(&token, |_, c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            Reason::DpopProofInvalid,
        ),
        (
            "wrong typ",
            proof_with(&token, |h, _| h["typ"] = json!("JWT")),
            Reason::DpopProofInvalid,
        ),
        (
            "none",
            proof_with(&token, |h, _| h["alg"] = json!("none")),
            Reason::DpopProofInvalid,
        ),
        (
            "HMAC",
            proof_with(&token, |h, _| h["alg"] = json!("HS256")),
            Reason::DpopProofInvalid,
        ),
        (
            "alg of another key type",
            proof_with(&token, |h, _| h["alg"] = json!("ES256")),
            Reason::DpopProofInvalid,
        ),
        (
            "private key in jwk",
            proof_with(&token, |h, _| {
                h["jwk"]["d"] = json!(test_keys::b64(&[7u8; 32]));
            }),
            Reason::DpopProofInvalid,
        ),
        (
            "no jwk",
            proof_with(&token, |h, _| {
                h.as_object_mut().unwrap().remove("jwk");
            }),
            Reason::DpopProofInvalid,
        ),
        (
            "symmetric jwk",
            proof_with(&token, |h, _| {
                h["jwk"] = test_keys::oct_jwk(test_keys::HMAC_SECRET);
            }),
            Reason::DpopProofInvalid,
        ),
        (
            "wrong ath",
            proof_with(&token, |_, c| c["ath"] = json!(access_token_hash("other"))),
            Reason::DpopAthMismatch,
        ),
        (
            "no ath",
            proof_with(&token, |_, c| {
                c.as_object_mut().unwrap().remove("ath");
            }),
            Reason::DpopProofInvalid,
        ),
    ];
    for (name, p, expected) in cases {
        let e = engine(json!({}));
        assert_eq!(
            reason(&e, &dpop_request(&token, &[&p])),
            Some(expected),
            "{name}"
        );
    }
}

#[test]
fn a_bad_signature_is_an_invalid_proof() {
    let e = engine(json!({}));
    let token = bound_token();
    let p = proof(&token);
    let (input, _) = p.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", test_keys::b64(&[1u8; 64]));
    assert_eq!(
        reason(&e, &dpop_request(&token, &[&forged])),
        Some(Reason::DpopProofInvalid)
    );
}

#[test]
fn a_proof_by_another_key_is_a_key_mismatch() {
    let e = engine(json!({}));
    let token = bound_token();
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let h = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": client_jwk(&other)});
    let p = sign(&other, &h, &claims(&token, "j"));
    assert_eq!(
        reason(&e, &dpop_request(&token, &[&p])),
        Some(Reason::DpopKeyMismatch)
    );
}

#[test]
fn two_proof_headers_are_refused() {
    let e = engine(json!({}));
    let token = bound_token();
    let (a, b) = (
        proof(&token),
        proof_with(&token, |_, c| c["jti"] = json!("x")),
    );
    assert_eq!(
        reason(&e, &dpop_request(&token, &[&a, &b])),
        Some(Reason::DpopProofInvalid)
    );
}

#[test]
fn a_bound_token_cannot_be_downgraded_to_bearer() {
    let e = engine(json!({}));
    let token = bound_token();
    let bearer = format!("Bearer {token}");
    assert_eq!(
        reason(&e, &request(&bearer, &[])),
        Some(Reason::DpopRequired)
    );
    assert_eq!(
        reason(&e, &request(&bearer, &[&proof(&token)])),
        Some(Reason::DpopRequired)
    );
    assert_eq!(
        reason(&e, &dpop_request(&token, &[])),
        Some(Reason::DpopProofMissing)
    );
}

#[test]
fn allowed_mode_keeps_plain_bearer_tokens_working() {
    let e = engine(json!({}));
    let token = plain_token();
    let d = e.decide(&request(&format!("Bearer {token}"), &[]), NOW);
    assert_eq!(binding_header(&d).as_deref(), Some("none"));
    // A proof sent next to it is checked, and binds nothing.
    let d = e.decide(&request(&format!("Bearer {token}"), &[&proof(&token)]), NOW);
    assert_eq!(binding_header(&d).as_deref(), Some("none"));
    let stale = proof_with(&token, |_, c| c["iat"] = json!(NOW - 1000));
    assert_eq!(
        reason(&e, &request(&format!("Bearer {token}"), &[&stale])),
        Some(Reason::DpopProofInvalid)
    );
    // The DPoP scheme with an unbound token: the token is not bound to the proof's key.
    let p = proof_with(&token, |_, c| c["jti"] = json!("other"));
    assert_eq!(
        reason(&e, &dpop_request(&token, &[&p])),
        Some(Reason::DpopKeyMismatch)
    );
}

#[test]
fn required_mode_refuses_plain_bearer_tokens() {
    let e = engine(json!({"mode": "required"}));
    let token = plain_token();
    assert_eq!(
        reason(&e, &request(&format!("Bearer {token}"), &[])),
        Some(Reason::DpopRequired)
    );
    assert_eq!(
        reason(&e, &dpop_request(&token, &[&proof(&token)])),
        Some(Reason::DpopRequired)
    );
    let token = bound_token();
    assert_eq!(reason(&e, &dpop_request(&token, &[&proof(&token)])), None);
}

#[test]
fn off_mode_takes_a_bound_token_as_a_bearer_token() {
    let e = engine(json!({"mode": "off"}));
    let token = bound_token();
    let d = e.decide(&request(&format!("Bearer {token}"), &[]), NOW);
    assert_eq!(binding_header(&d).as_deref(), Some("none"));
}

#[test]
fn the_algorithm_list_is_the_providers() {
    let e = engine(json!({"algorithms": ["ES256"]}));
    let token = bound_token();
    let d = e.decide(&dpop_request(&token, &[&proof(&token)]), NOW);
    let Decision::Deny { response, log } = d else {
        panic!("expected deny")
    };
    assert_eq!(log.reason, Some(Reason::DpopProofInvalid));
    let challenge = response
        .headers
        .iter()
        .find(|(n, _)| n == "www-authenticate")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        challenge,
        Some("DPoP error=\"invalid_dpop_proof\", algs=\"ES256\"")
    );
}

#[test]
fn hmac_proof_algorithms_are_a_configuration_error() {
    let v = json!({
        "providers": [{"name": "p", "issuer": ISSUER, "jwks": {"keys": []},
                       "dpop": {"algorithms": ["ES256", "HS256"]}}]
    });
    let e = Engine::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.path, "providers[0].dpop.algorithms[1]");
}

#[test]
fn htu_uses_the_public_base_url_when_set() {
    let v = json!({
        "providers": [{"name": "p", "issuer": ISSUER,
                       "jwks": {"keys": [test_keys::ed25519_jwk()]}}],
        "default": "authenticated",
        "dpop": {"public_base_url": "https://public.example.com"}
    });
    let e: Tested = Engine::from_json(v.to_string().as_bytes()).unwrap().into();
    let token = bound_token();
    let p = proof(&token);
    assert_eq!(
        reason(&e, &dpop_request(&token, &[&p])),
        Some(Reason::DpopProofInvalid)
    );
    let p = proof_with(&token, |_, c| {
        c["htu"] = json!("https://PUBLIC.example.com:443/runs/1");
        c["jti"] = json!("2");
    });
    assert_eq!(reason(&e, &dpop_request(&token, &[&p])), None);
}

#[test]
fn htu_names_the_path_as_sent_not_its_canonical_form() {
    let e = engine(json!({}));
    let token = bound_token();
    let mut facts = dpop_request(&token, &[]);
    facts.path = "/runs//1".into();
    let p = proof_with(&token, |_, c| c["htu"] = json!("https://api.test/runs//1"));
    facts.headers.push(("dpop".into(), p));
    assert_eq!(reason(&e, &facts), None);
}

#[test]
fn an_oversized_proof_is_invalid_before_parsing() {
    let e = engine(json!({}));
    let token = bound_token();
    let huge = "a".repeat(MAX_PROOF_BYTES + 1);
    assert_eq!(
        reason(&e, &dpop_request(&token, &[&huge])),
        Some(Reason::DpopProofInvalid)
    );
}

#[test]
fn a_shared_store_refuses_a_proof_another_worker_used() {
    struct Always;
    impl ReplayStore for Always {
        fn seen(&self, _: &ReplayKey, _: u64, _: u64) -> bool {
            true
        }
    }
    let e = engine(json!({}));
    let token = bound_token();
    let d = crate::decide::decide_with(
        &e,
        &e.engine,
        &mut e.caches.borrow_mut(),
        &dpop_request(&token, &[&proof(&token)]),
        &crate::authenticate::Ask {
            now: &|| NOW,
            peer_certificate: &|| crate::mtls::PeerCertificate::Unavailable,
            shared: Some(&Always),
        },
    );
    let Decision::Deny { log, .. } = d else {
        panic!("expected deny")
    };
    assert_eq!(log.reason, Some(Reason::DpopProofReplayed));
}

#[test]
fn a_prepared_proof_key_still_checks_every_signature() {
    // The first proof prepares the client's key; the second repeats its header (a hit) with a
    // signature over other claims: refused, then a proper one passes.
    let e = engine(json!({}));
    let token = bound_token();
    let good = proof_with(&token, |_, c| c["jti"] = json!("first"));
    assert_eq!(reason(&e, &dpop_request(&token, &[&good])), None);
    let next = proof_with(&token, |_, c| c["jti"] = json!("second"));
    let (head, rest) = next.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let (_, signature) = good.rsplit_once('.').unwrap();
    assert_eq!(head, good.split_once('.').unwrap().0, "the header repeats");
    let spliced = format!("{head}.{payload}.{signature}");
    assert_eq!(
        reason(&e, &dpop_request(&token, &[&spliced])),
        Some(Reason::DpopProofInvalid)
    );
    assert_eq!(reason(&e, &dpop_request(&token, &[&next])), None);
}

#[test]
fn prepared_proof_keys_are_bounded() {
    let segment = |h: &Value| test_keys::b64(h.to_string().as_bytes());
    let mut keys = ProofKeys::new();
    for i in 0..(PROOF_KEYS + 20) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[u8::try_from(i % 251).unwrap() + 1; 32]);
        let h = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": client_jwk(&key)});
        assert!(keys.get(&segment(&h)).is_some(), "{i}");
    }
    assert_eq!(keys.entries.len(), PROOF_KEYS);
    // A header that is not a proof's is refused before anything is prepared or kept.
    let mut private = header();
    private["jwk"]["d"] = json!("c2VjcmV0");
    let mut wrong_typ = header();
    wrong_typ["typ"] = json!("JWT");
    let mut critical = header();
    critical["crit"] = json!(["x"]);
    let mut no_alg = header();
    no_alg.as_object_mut().unwrap().remove("alg");
    for bad in [private, wrong_typ, critical, no_alg] {
        assert!(keys.get(&segment(&bad)).is_none(), "{bad}");
        assert!(!keys.entries.contains(&segment(&bad)));
    }
    assert!(keys.get("not base64!").is_none());
}
