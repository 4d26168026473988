//! identity-crypto (crates/crypto) against RustCrypto, verdict for verdict: RSA PKCS#1 v1.5 and PSS (salt = hLen,
//! MGF1 over the same hash) with SHA-256/384/512 against `rsa`; ECDSA P-256/SHA-256 and
//! P-384/SHA-384 with JWS's fixed-size `r ‖ s` against `p256`/`p384`; Ed25519 (strict)
//! against `ed25519-dalek`. Keys are the harness's RSA keys or fuzzed moduli, and EC / Ed25519
//! keys from fuzzed scalars or fuzzed points; signatures are valid ones (signed here), changed
//! ones, or raw bytes. Key acceptance is compared too (EC points, Ed25519 encodings).
#![no_main]

use arbitrary::Arbitrary;
use fuzz_support::check::Budget;
use fuzz_support::keys;
use fuzz_support::reference::{self, Hash};
use identity_crypto::{EcCurve, EcPublicKey, Ed25519PublicKey, HashAlg, RsaPublicKey};
use libfuzzer_sys::fuzz_target;
use rsa::traits::PublicKeyParts;
use rsa::BigUint;

#[derive(Debug, Arbitrary)]
enum Sig {
    Valid,
    FlipBit(u16),
    SetByte(u16, u8),
    Truncate(u16),
    Extend(u8),
    /// ECDSA: s replaced by n − s (the other valid signature); RSA/Ed25519: + 1.
    Negate,
    Zero,
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Case {
    Rsa {
        key: u8,
        hash: u8,
        pss: bool,
        msg: Vec<u8>,
        seed: u64,
        sig: Sig,
    },
    RsaRawKey {
        n: Vec<u8>,
        e: u32,
        hash: u8,
        pss: bool,
        msg: Vec<u8>,
        sig: Vec<u8>,
    },
    Ec {
        p384: bool,
        scalar: Vec<u8>,
        msg: Vec<u8>,
        sig: Sig,
    },
    EcPoint {
        p384: bool,
        x: Vec<u8>,
        y: Vec<u8>,
        msg: Vec<u8>,
        sig: Vec<u8>,
    },
    Ed {
        seed: [u8; 32],
        msg: Vec<u8>,
        sig: Sig,
    },
    EdRaw {
        key: [u8; 32],
        msg: Vec<u8>,
        sig: Vec<u8>,
    },
}

const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
const P384_N: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973";

fn hash_of(h: u8) -> (HashAlg, Hash) {
    match h % 3 {
        0 => (HashAlg::Sha256, Hash::Sha256),
        1 => (HashAlg::Sha384, Hash::Sha384),
        _ => (HashAlg::Sha512, Hash::Sha512),
    }
}

fn be(n: &BigUint, len: usize) -> Vec<u8> {
    let b = n.to_bytes_be();
    let mut out = vec![0u8; len.saturating_sub(b.len())];
    out.extend_from_slice(&b);
    out
}

/// A valid signature changed as `how` says; `order` is the ECDSA group order, if any.
fn change(valid: Vec<u8>, how: &Sig, order: Option<&str>) -> Vec<u8> {
    let mut s = valid;
    let len = s.len().max(1);
    match how {
        Sig::Valid => {}
        Sig::FlipBit(at) => {
            if let Some(b) = s.get_mut(usize::from(*at / 8) % len) {
                *b ^= 1 << (at % 8);
            }
        }
        Sig::SetByte(at, v) => {
            if let Some(b) = s.get_mut(usize::from(*at) % len) {
                *b = *v;
            }
        }
        Sig::Truncate(at) => s.truncate(usize::from(*at) % len),
        Sig::Extend(b) => s.push(*b),
        Sig::Negate => match order.and_then(|o| BigUint::parse_bytes(o.as_bytes(), 16)) {
            Some(n) => {
                let half = s.len() / 2;
                let (r, sv) = s.split_at(half);
                let sv = BigUint::from_bytes_be(sv);
                if sv < n {
                    s = [r.to_vec(), be(&(&n - &sv), half)].concat();
                }
            }
            None => {
                let v = BigUint::from_bytes_be(&s) + 1u32;
                s = be(&v, s.len());
            }
        },
        Sig::Zero => s.iter_mut().for_each(|b| *b = 0),
        Sig::Raw(raw) => s = raw.clone(),
    }
    s
}

fn same(what: &str, ours: bool, theirs: bool, detail: &dyn std::fmt::Debug) {
    assert_eq!(
        ours, theirs,
        "{what}: identity-crypto says {ours}, the reference {theirs}: {detail:?}"
    );
}

fuzz_target!(
    init: fuzz_support::seeds::write_if_asked("crypto_diff"),
    |case: Case| {
    let mut budget = Budget::new();
    match &case {
        Case::Rsa { key, hash, pss, msg, seed, sig } => {
            let k = keys::keys();
            let private = &k.rsa[usize::from(*key) % k.rsa.len()];
            let public = private.to_public_key();
            let (ours_hash, ref_hash) = hash_of(*hash);
            let valid = reference::rsa_sign(private, ref_hash, *pss, msg, *seed);
            let s = change(valid, sig, None);
            let n = public.n().to_bytes_be();
            let e = public.e().to_bytes_be();
            let ours = budget.run(|| {
                let key = RsaPublicKey::new(&n, &e).expect("harness key");
                if *pss {
                    key.verify_pss(ours_hash, msg, &s)
                } else {
                    key.verify_pkcs1v15(ours_hash, msg, &s)
                }
            });
            let theirs = reference::rsa_verify(&public, ref_hash, *pss, msg, &s);
            same("RSA", ours, theirs, &case);
            if matches!(sig, Sig::Valid) {
                assert!(ours, "a valid RSA signature was refused: {case:?}");
            }
        }
        Case::RsaRawKey { n, e, hash, pss, msg, sig } => {
            // Up to 4096 bits, as in a JWKS (`jwks::MAX_RSA_BITS`).
            if n.len() > 512 {
                return;
            }
            // Only e = 65537 is accepted (the filter's keys): any other exponent is refused, and
            // the fuzzed modulus is then tried with 65537.
            if *e != 65537 {
                assert!(
                    budget
                        .run(|| RsaPublicKey::with_min_bits(n, &e.to_be_bytes(), 512))
                        .is_err(),
                    "an RSA key with e = {e} was accepted: {case:?}"
                );
            }
            let e = 65537u32.to_be_bytes();
            let Ok(key) = budget.run(|| RsaPublicKey::with_min_bits(n, &e, 512)) else {
                return;
            };
            let (ours_hash, ref_hash) = hash_of(*hash);
            let ours = budget.run(|| {
                if *pss {
                    key.verify_pss(ours_hash, msg, sig)
                } else {
                    key.verify_pkcs1v15(ours_hash, msg, sig)
                }
            });
            let Ok(reference) = rsa::RsaPublicKey::new_with_max_size(
                BigUint::from_bytes_be(n),
                BigUint::from_bytes_be(&e),
                8192,
            ) else {
                return;
            };
            let theirs = reference::rsa_verify(&reference, ref_hash, *pss, msg, sig);
            same("RSA (fuzzed key)", ours, theirs, &case);
        }
        Case::Ec { p384, scalar, msg, sig } => {
            let (sec1, valid, curve, order) = if *p384 {
                let Ok(sk) = p384::ecdsa::SigningKey::from_slice(scalar) else {
                    return;
                };
                use p384::ecdsa::signature::Signer;
                let s: p384::ecdsa::Signature = sk.sign(msg);
                let point = sk.verifying_key().to_sec1_point(false);
                (point.as_bytes().to_vec(), s.to_bytes().to_vec(), EcCurve::P384, P384_N)
            } else {
                let Ok(sk) = p256::ecdsa::SigningKey::from_slice(scalar) else {
                    return;
                };
                use p256::ecdsa::signature::Signer;
                let s: p256::ecdsa::Signature = sk.sign(msg);
                let point = sk.verifying_key().to_sec1_point(false);
                (point.as_bytes().to_vec(), s.to_bytes().to_vec(), EcCurve::P256, P256_N)
            };
            let s = change(valid, sig, Some(order));
            let ours = budget.run(|| {
                EcPublicKey::from_sec1(curve, &sec1)
                    .expect("a reference public key is a valid point")
                    .verify(msg, &s)
            });
            let theirs = if *p384 {
                reference::p384_verify(&sec1, msg, &s)
            } else {
                reference::p256_verify(&sec1, msg, &s)
            };
            same("ECDSA", ours, theirs, &case);
            if matches!(sig, Sig::Valid | Sig::Negate) {
                assert!(ours, "a valid ECDSA signature was refused: {case:?}");
            }
        }
        Case::EcPoint { p384, x, y, msg, sig } => {
            let curve = if *p384 { EcCurve::P384 } else { EcCurve::P256 };
            let ours_key = budget.run(|| EcPublicKey::new(curve, x, y));
            let len = curve.field_len();
            let sec1 = [&[4u8][..], x, y].concat();
            let theirs_key = x.len() == len
                && y.len() == len
                && if *p384 {
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).is_ok()
                } else {
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).is_ok()
                };
            same("EC point", ours_key.is_ok(), theirs_key, &case);
            if let Ok(key) = ours_key {
                let ours = budget.run(|| key.verify(msg, sig));
                let theirs = if *p384 {
                    reference::p384_verify(&sec1, msg, sig)
                } else {
                    reference::p256_verify(&sec1, msg, sig)
                };
                same("ECDSA (fuzzed point)", ours, theirs, &case);
            }
        }
        Case::Ed { seed, msg, sig } => {
            use ed25519_dalek::Signer;
            let sk = ed25519_dalek::SigningKey::from_bytes(seed);
            let pk = sk.verifying_key().to_bytes();
            let s = change(sk.sign(msg).to_bytes().to_vec(), sig, None);
            let ours = budget.run(|| Ed25519PublicKey::new(&pk).is_ok_and(|k| k.verify(msg, &s)));
            let theirs = reference::ed25519_verify(&pk, msg, &s);
            same("Ed25519", ours, theirs, &case);
            if matches!(sig, Sig::Valid) {
                assert!(ours, "a valid Ed25519 signature was refused: {case:?}");
            }
        }
        Case::EdRaw { key, msg, sig } => {
            let ours_key = budget.run(|| Ed25519PublicKey::new(key));
            let theirs_key = ed25519_dalek::VerifyingKey::from_bytes(key).is_ok();
            same("Ed25519 key", ours_key.is_ok(), theirs_key, &case);
            let ours = budget.run(|| ours_key.is_ok_and(|k| k.verify(msg, sig)));
            let theirs = reference::ed25519_verify(key, msg, sig);
            same("Ed25519 (fuzzed key)", ours, theirs, &case);
        }
    }
    budget.finish_for(&case);
});
