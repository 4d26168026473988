//! JWKS JSON: any document through `KeySet::parse`, inline (strict) and remote (lenient).
//! Checked: no panic; parsing is deterministic (same fingerprint twice); a strict parse without
//! `oct` keys agrees with the lenient one; every key the filter accepts is a valid key for the
//! reference libraries; and for each accepted key and each algorithm it may serve, the filter's
//! signature verdict equals the reference's (on a harness signature, which matches when the
//! JWK is a harness key, and on a corrupted one).
#![no_main]

use std::sync::OnceLock;

use fuzz_support::keys::{self, Alg};
use fuzz_support::{check, reference};
use identity_filter::{Algorithm, KeySet, Origin};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const MESSAGE: &[u8] = b"eyJhbGciOiJmdXp6In0.eyJzdWIiOiJmdXp6In0";

/// Harness signatures over MESSAGE: per algorithm, one per RSA key.
fn signatures() -> &'static Vec<(Alg, Vec<Vec<u8>>)> {
    static SIGS: OnceLock<Vec<(Alg, Vec<Vec<u8>>)>> = OnceLock::new();
    SIGS.get_or_init(|| {
        keys::ALL
            .iter()
            .map(|&alg| {
                let n = if alg.kid(0).starts_with("rsa") { 3 } else { 1 };
                let sigs = (0..n)
                    .map(|k| reference::sign(alg, k, MESSAGE, 7))
                    .collect();
                (alg, sigs)
            })
            .collect()
    })
}

fn member(jwk: &Value, name: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk.get(name)?.as_str()?)
        .ok()
}

/// A key the filter accepted must be a valid key for the reference libraries.
fn reference_accepts(jwk: &Value) {
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
    let ok = match (kty, crv) {
        ("EC", _) => {
            let sec1 = [
                vec![4u8],
                member(jwk, "x").unwrap_or_default(),
                member(jwk, "y").unwrap_or_default(),
            ]
            .concat();
            match crv {
                "P-256" => p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).is_ok(),
                "P-384" => p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).is_ok(),
                _ => false,
            }
        }
        ("OKP", "Ed25519") => member(jwk, "x")
            .and_then(|x| <[u8; 32]>::try_from(x).ok())
            .is_some_and(|x| ed25519_dalek::VerifyingKey::from_bytes(&x).is_ok()),
        ("RSA", _) => {
            let (n, e) = (
                member(jwk, "n").unwrap_or_default(),
                member(jwk, "e").unwrap_or_default(),
            );
            rsa::RsaPublicKey::new_with_max_size(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
                4096,
            )
            .is_ok()
        }
        ("oct", _) => true,
        _ => false,
    };
    assert!(
        ok,
        "KEY ACCEPTED BY THE FILTER, REFUSED BY THE REFERENCE: {jwk}"
    );
}

fuzz_target!(
    init: fuzz_support::seeds::write_if_asked("jwks"),
    |data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let list: Vec<Value> = doc
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // The budget is per key loaded.
    let units = check::KEY_UNITS * list.len();
    let inline = check::Budget::pure(units, &"inline", || KeySet::parse(&doc, Origin::Inline));
    let remote = check::Budget::pure(units, &"remote", || KeySet::parse(&doc, Origin::Remote));
    let again = KeySet::parse(&doc, Origin::Inline);
    assert_eq!(
        inline.as_ref().map(KeySet::fingerprint).ok(),
        again.as_ref().map(KeySet::fingerprint).ok(),
        "parsing is not deterministic"
    );
    let has_oct = list.iter().any(|k| k.get("kty").and_then(Value::as_str) == Some("oct"));
    if let (Ok(inline), false) = (&inline, has_oct) {
        if !inline.is_empty() {
            let remote = remote
                .as_ref()
                .unwrap_or_else(|e| panic!("strict parse accepted, lenient refused: {e:?}"));
            assert_eq!(
                (inline.len(), inline.fingerprint()),
                (remote.len(), remote.fingerprint()),
                "strict and lenient parses of a set without oct keys differ"
            );
        }
    }
    // Key by key (at most 8): acceptance and signature verdicts against the reference.
    for jwk in list.iter().take(8) {
        let single = json!({ "keys": [jwk] });
        let Ok(set) = check::Budget::pure(check::KEY_UNITS, jwk, || KeySet::parse(&single, Origin::Inline)) else {
            continue;
        };
        if set.is_empty() {
            continue;
        }
        reference_accepts(jwk);
        // For an RSA key, the signature of the harness key with the same modulus (if any):
        // one RSA verification per algorithm keeps big keys within the budget.
        let n = member(jwk, "n").unwrap_or_default();
        let rsa_index = keys::keys()
            .rsa
            .iter()
            .position(|k| {
                use rsa::traits::PublicKeyParts;
                k.n().to_bytes_be() == n
            })
            .unwrap_or(0);
        for (alg, sigs) in signatures() {
            let sig = sigs.get(rsa_index).or(sigs.first());
            let Some(algorithm) = Algorithm::from_name(alg.name()) else {
                continue;
            };
            for verifier in set.select(algorithm, None) {
                if let Some(sig) = sig {
                    let mut bad = sig.clone();
                    if let Some(b) = bad.last_mut() {
                        *b ^= 1;
                    }
                    for s in [sig, &bad] {
                        let ours = check::Budget::pure(1, &(alg, jwk), || {
                            verifier.verify_signature(MESSAGE, s)
                        });
                        let theirs = reference::verify_with_jwk(jwk, alg.name(), MESSAGE, s);
                        assert_eq!(
                            ours, theirs,
                            "{} verdict differs from the reference for {jwk}",
                            alg.name()
                        );
                    }
                }
            }
        }
    }
});
