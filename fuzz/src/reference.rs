//! Signing and verification with independent libraries (RustCrypto `rsa`, `p256`, `p384`,
//! `ed25519-dalek`, `hmac`): the harness signs its tokens here, and judges every signature the
//! filter accepted here, from the JWK alone.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use rsa::sha2 as sha2_10;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, Pss};
use serde_json::Value;

use crate::keys::{keys, Alg, HMAC_SECRET};
use crate::SplitMix;

/// The hash of an RSA algorithm, for `rsa` 0.9 (its own `sha2` 0.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn digest(self, msg: &[u8]) -> Vec<u8> {
        use sha2_10::Digest;
        match self {
            Hash::Sha256 => sha2_10::Sha256::digest(msg).to_vec(),
            Hash::Sha384 => sha2_10::Sha384::digest(msg).to_vec(),
            Hash::Sha512 => sha2_10::Sha512::digest(msg).to_vec(),
        }
    }

    fn pkcs1v15(self) -> Pkcs1v15Sign {
        match self {
            Hash::Sha256 => Pkcs1v15Sign::new::<sha2_10::Sha256>(),
            Hash::Sha384 => Pkcs1v15Sign::new::<sha2_10::Sha384>(),
            Hash::Sha512 => Pkcs1v15Sign::new::<sha2_10::Sha512>(),
        }
    }

    /// PSS as JWS uses it: MGF1 over the same hash, salt as long as the hash.
    fn pss(self) -> Pss {
        match self {
            Hash::Sha256 => Pss::new_with_salt::<sha2_10::Sha256>(32),
            Hash::Sha384 => Pss::new_with_salt::<sha2_10::Sha384>(48),
            Hash::Sha512 => Pss::new_with_salt::<sha2_10::Sha512>(64),
        }
    }

    /// The hash of an RS*/PS* algorithm, and whether it is PSS.
    pub fn of(alg: Alg) -> Option<(Hash, bool)> {
        Some(match alg {
            Alg::RS256 => (Hash::Sha256, false),
            Alg::RS384 => (Hash::Sha384, false),
            Alg::RS512 => (Hash::Sha512, false),
            Alg::PS256 => (Hash::Sha256, true),
            Alg::PS384 => (Hash::Sha384, true),
            Alg::PS512 => (Hash::Sha512, true),
            _ => return None,
        })
    }
}

/// RSA signature (PKCS#1 v1.5, or PSS with a salt from `seed`) with `rsa`.
pub fn rsa_sign(key: &rsa::RsaPrivateKey, hash: Hash, pss: bool, msg: &[u8], seed: u64) -> Vec<u8> {
    let digest = hash.digest(msg);
    let mut rng = SplitMix(seed);
    let sig = if pss {
        key.sign_with_rng(&mut rng, hash.pss(), &digest)
    } else {
        key.sign(hash.pkcs1v15(), &digest)
    };
    sig.expect("the harness can sign")
}

/// RSA verification with `rsa` (JWS's encodings: exact-length signatures, PSS salt = hLen).
pub fn rsa_verify(key: &rsa::RsaPublicKey, hash: Hash, pss: bool, msg: &[u8], sig: &[u8]) -> bool {
    let digest = hash.digest(msg);
    // `rsa` reads the signature as a number: make it refuse what is not exactly k bytes.
    if sig.len() != key.size() {
        return false;
    }
    if pss {
        key.verify(hash.pss(), &digest, sig).is_ok()
    } else {
        key.verify(hash.pkcs1v15(), &digest, sig).is_ok()
    }
}

/// ECDSA P-256 / SHA-256, `r ‖ s`, with `p256`.
pub fn p256_verify(sec1: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier;
    let (Ok(key), Ok(sig)) = (
        p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1),
        p256::ecdsa::Signature::from_slice(sig),
    ) else {
        return false;
    };
    key.verify(msg, &sig).is_ok()
}

/// ECDSA P-384 / SHA-384, `r ‖ s`, with `p384`.
pub fn p384_verify(sec1: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use p384::ecdsa::signature::Verifier;
    let (Ok(key), Ok(sig)) = (
        p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1),
        p384::ecdsa::Signature::from_slice(sig),
    ) else {
        return false;
    };
    key.verify(msg, &sig).is_ok()
}

/// Ed25519 (strict, RFC 8032 with canonical encodings) with `ed25519-dalek`.
pub fn ed25519_verify(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(key) else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&key) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
        return false;
    };
    key.verify_strict(msg, &sig).is_ok()
}

/// HMAC-SHA-256/384/512 tag (`bits`), with `hmac`.
fn hmac_tag(bits: u32, secret: &[u8], msg: &[u8]) -> Vec<u8> {
    fn tag<D: hmac::EagerHash>(secret: &[u8], msg: &[u8]) -> Vec<u8>
    where
        hmac::Hmac<D>: KeyInit + Mac,
    {
        let mut mac = <hmac::Hmac<D> as KeyInit>::new_from_slice(secret).expect("any key length");
        Mac::update(&mut mac, msg);
        mac.finalize().into_bytes().to_vec()
    }
    match bits {
        384 => tag::<sha2::Sha384>(secret, msg),
        512 => tag::<sha2::Sha512>(secret, msg),
        _ => tag::<sha2::Sha256>(secret, msg),
    }
}

/// Sign `msg` with the harness key for `alg`.
pub fn sign(alg: Alg, rsa: usize, msg: &[u8], seed: u64) -> Vec<u8> {
    let k = keys();
    match alg {
        Alg::ES256 => {
            use p256::ecdsa::signature::Signer;
            let sig: p256::ecdsa::Signature = k.p256.sign(msg);
            sig.to_bytes().to_vec()
        }
        Alg::ES384 => {
            use p384::ecdsa::signature::Signer;
            let sig: p384::ecdsa::Signature = k.p384.sign(msg);
            sig.to_bytes().to_vec()
        }
        Alg::EdDSA => {
            use ed25519_dalek::Signer;
            k.ed.sign(msg).to_bytes().to_vec()
        }
        Alg::HS256 => hmac_tag(256, HMAC_SECRET, msg),
        _ => {
            let (hash, pss) = Hash::of(alg).expect("an RSA algorithm");
            let key = k.rsa.get(rsa % k.rsa.len()).expect("an RSA key");
            rsa_sign(key, hash, pss, msg, seed)
        }
    }
}

fn member(jwk: &Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(jwk.get(name)?.as_str()?).ok()
}

/// Does `sig` verify over `msg` with this JWK and algorithm (a JWS `alg` name), according to
/// the reference libraries? Only the key material and its type are read (not `use`, `alg`,
/// `kid`).
pub fn verify_with_jwk(jwk: &Value, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    if let Some(bits) = alg.strip_prefix("HS") {
        let bits = bits.parse().unwrap_or(0);
        return kty == "oct"
            && matches!(bits, 256 | 384 | 512)
            && member(jwk, "k").is_some_and(|k| hmac_tag(bits, &k, msg) == sig);
    }
    let Some(alg) = Alg::from_name(alg) else {
        return false;
    };
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
    match (alg, kty, crv) {
        (Alg::ES256 | Alg::ES384, "EC", _) => {
            let (Some(x), Some(y)) = (member(jwk, "x"), member(jwk, "y")) else {
                return false;
            };
            let sec1 = [&[4u8][..], &x, &y].concat();
            match (alg, crv) {
                (Alg::ES256, "P-256") => p256_verify(&sec1, msg, sig),
                (Alg::ES384, "P-384") => p384_verify(&sec1, msg, sig),
                _ => false,
            }
        }
        (Alg::EdDSA, "OKP", "Ed25519") => {
            member(jwk, "x").is_some_and(|x| ed25519_verify(&x, msg, sig))
        }
        (_, "RSA", _) => {
            let Some((hash, pss)) = Hash::of(alg) else {
                return false;
            };
            let (Some(n), Some(e)) = (member(jwk, "n"), member(jwk, "e")) else {
                return false;
            };
            let key = rsa::RsaPublicKey::new_with_max_size(
                BigUint::from_bytes_be(&n),
                BigUint::from_bytes_be(&e),
                8192,
            );
            key.is_ok_and(|key| rsa_verify(&key, hash, pss, msg, sig))
        }
        _ => false,
    }
}
