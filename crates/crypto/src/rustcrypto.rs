//! The RustCrypto backend (cargo feature `rustcrypto`): `rsa` 0.9 (with its own `sha2` 0.10),
//! `p256` / `p384` 0.14, and `ed25519-dalek`'s strict verification (the same as [`Native`]'s).
//! Keys are refused exactly as the native backend refuses them (the RSA checks are shared, the
//! EC encoding must be the uncompressed `04 ‖ x ‖ y`), and the encodings are JWS's: RSA
//! signatures exactly as long as the modulus, PSS salt = hLen with MGF1 over the same hash,
//! ECDSA `r ‖ s` of fixed size.
//!
//! [`Native`]: crate::Native

use rsa::sha2 as sha2_10;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, Pss};

use crate::backend::{Backend, EcVerifier, RsaVerifier};
use crate::rsa::{check_key, MAX_MODULUS_BITS};
use crate::{CryptoError, EcCurve, Ed25519PublicKey, HashAlg};

/// RustCrypto's verification, behind the same traits as [`crate::Native`].
#[derive(Debug, Clone, Copy)]
pub enum RustCrypto {}

impl Backend for RustCrypto {
    type Rsa = RustCryptoRsaKey;
    type Ec = RustCryptoEcKey;
    type Ed25519 = Ed25519PublicKey;
}

/// An `rsa` 0.9 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustCryptoRsaKey(rsa::RsaPublicKey);

fn digest(hash: HashAlg, msg: &[u8]) -> Vec<u8> {
    use sha2_10::Digest;
    match hash {
        HashAlg::Sha256 => sha2_10::Sha256::digest(msg).to_vec(),
        HashAlg::Sha384 => sha2_10::Sha384::digest(msg).to_vec(),
        HashAlg::Sha512 => sha2_10::Sha512::digest(msg).to_vec(),
    }
}

impl RsaVerifier for RustCryptoRsaKey {
    fn with_min_bits(n_be: &[u8], e_be: &[u8], min_bits: usize) -> Result<Self, CryptoError> {
        let (n_be, _bits) = check_key(n_be, e_be, min_bits)?;
        rsa::RsaPublicKey::new_with_max_size(
            BigUint::from_bytes_be(n_be),
            BigUint::from_bytes_be(e_be),
            MAX_MODULUS_BITS,
        )
        .map(RustCryptoRsaKey)
        .map_err(|_| CryptoError::KeyTooLarge)
    }

    fn bits(&self) -> usize {
        self.0.n().bits()
    }

    fn verify_pkcs1v15(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool {
        // `rsa` reads the signature as a number: refuse what is not exactly k bytes first.
        if sig.len() != self.0.size() {
            return false;
        }
        let scheme = match hash {
            HashAlg::Sha256 => Pkcs1v15Sign::new::<sha2_10::Sha256>(),
            HashAlg::Sha384 => Pkcs1v15Sign::new::<sha2_10::Sha384>(),
            HashAlg::Sha512 => Pkcs1v15Sign::new::<sha2_10::Sha512>(),
        };
        self.0.verify(scheme, &digest(hash, msg), sig).is_ok()
    }

    fn verify_pss(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != self.0.size() {
            return false;
        }
        let scheme = match hash {
            HashAlg::Sha256 => Pss::new_with_salt::<sha2_10::Sha256>(32),
            HashAlg::Sha384 => Pss::new_with_salt::<sha2_10::Sha384>(48),
            HashAlg::Sha512 => Pss::new_with_salt::<sha2_10::Sha512>(64),
        };
        self.0.verify(scheme, &digest(hash, msg), sig).is_ok()
    }
}

/// A `p256` or `p384` 0.14 ECDSA verifying key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RustCryptoEcKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl EcVerifier for RustCryptoEcKey {
    fn from_sec1(curve: EcCurve, sec1: &[u8]) -> Result<Self, CryptoError> {
        // Only the uncompressed form with coordinates of the field's length, as natively
        // (`from_sec1_bytes` alone would also take the compressed form).
        if sec1.first() != Some(&0x04) || sec1.len() != 1 + 2 * curve.field_len() {
            return Err(CryptoError::BadPoint);
        }
        match curve {
            EcCurve::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).map(Self::P256),
            EcCurve::P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1).map(Self::P384),
        }
        .map_err(|_| CryptoError::BadPoint)
    }

    fn check_sec1(curve: EcCurve, sec1: &[u8]) -> Result<(), CryptoError> {
        Self::from_sec1(curve, sec1).map(|_| ())
    }

    fn curve(&self) -> EcCurve {
        match self {
            Self::P256(_) => EcCurve::P256,
            Self::P384(_) => EcCurve::P384,
        }
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::P256(key) => {
                use p256::ecdsa::signature::Verifier;
                p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| key.verify(msg, &s).is_ok())
            }
            Self::P384(key) => {
                use p384::ecdsa::signature::Verifier;
                p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| key.verify(msg, &s).is_ok())
            }
        }
    }
}
