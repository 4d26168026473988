//! The verifier interface the filter verifies through, and the backend it selects.
//!
//! A [`Backend`] names one key type per signature family; the traits say what the filter needs
//! from each: a key built once from its raw material (refused with a [`CryptoError`] as the
//! filter's key parsing expects), then verifications that return a plain `bool`. Two backends
//! implement it with the same contract (the same keys refused, the same verdicts):
//!
//! * [`Native`]: this crate's own arithmetic ([`RsaPublicKey`], [`EcPublicKey`],
//!   [`Ed25519PublicKey`]), the default;
//! * `RustCrypto` (cargo feature `rustcrypto`, off by default): RustCrypto's `rsa` 0.9, `p256`
//!   and `p384` 0.14, and the same `ed25519-dalek` strict verification, a one-switch fallback
//!   if the hand-written arithmetic is ever in doubt.
//!
//! [`Selected`] is the backend the feature picks; the filter's key types are its associated
//! types. The tests below (with `--features rustcrypto`) run the same vectors through both.

use crate::{CryptoError, EcCurve, EcPublicKey, Ed25519PublicKey, HashAlg, RsaPublicKey};

/// RSA verification keys: PKCS#1 v1.5 (RS256/384/512) and PSS (PS256/384/512, salt = hLen,
/// MGF1 over the message hash).
pub trait RsaVerifier: Sized + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// A key from its big-endian modulus and exponent (a JWK's decoded `n` and `e`; leading
    /// zero bytes ignored). Refused: a modulus under `min_bits` or over 4096 bits
    /// ([`crate::MAX_MODULUS_BITS`]), an even modulus, an exponent other than 65537.
    fn with_min_bits(n_be: &[u8], e_be: &[u8], min_bits: usize) -> Result<Self, CryptoError>;
    /// Length of the modulus in bits.
    fn bits(&self) -> usize;
    /// RSASSA-PKCS1-v1_5: the signature exactly as long as the modulus, the one canonical
    /// encoding of `DigestInfo(hash(msg))`.
    fn verify_pkcs1v15(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool;
    /// RSASSA-PSS as JWS uses it (RFC 7518 §3.5): MGF1 over `hash`, salt as long as the hash.
    fn verify_pss(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool;
}

/// ECDSA verification keys: ES256 (P-256, SHA-256) and ES384 (P-384, SHA-384), JWS's raw
/// `r ‖ s` signatures.
pub trait EcVerifier: Sized + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// A key from its uncompressed SEC1 encoding `04 ‖ x ‖ y` (each coordinate exactly the
    /// curve's field length); refused unless the point is on the curve.
    fn from_sec1(curve: EcCurve, sec1: &[u8]) -> Result<Self, CryptoError>;
    /// The checks of [`EcVerifier::from_sec1`] without preparing the key (it may be cheaper).
    fn check_sec1(curve: EcCurve, sec1: &[u8]) -> Result<(), CryptoError>;
    /// The key's curve.
    fn curve(&self) -> EcCurve;
    /// Verify `r ‖ s` over `msg` with the key's curve and hash.
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool;
}

/// Ed25519 verification keys (JWS `EdDSA`, RFC 8037), strict (RFC 8032 with canonical `S`,
/// no small-order keys or `R`).
pub trait Ed25519Verifier: Sized + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// A key from its 32-byte encoding (a JWK's `x`); refused unless it is a curve point.
    fn new(key: &[u8]) -> Result<Self, CryptoError>;
    /// Verify a 64-byte signature over `msg`.
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool;
}

/// A set of key types, one per signature family.
pub trait Backend {
    type Rsa: RsaVerifier;
    type Ec: EcVerifier;
    type Ed25519: Ed25519Verifier;
}

/// This crate's own arithmetic (the default).
#[derive(Debug, Clone, Copy)]
pub enum Native {}

impl Backend for Native {
    type Rsa = RsaPublicKey;
    type Ec = EcPublicKey;
    type Ed25519 = Ed25519PublicKey;
}

/// The backend the filter verifies with: [`Native`], or RustCrypto's with the `rustcrypto`
/// feature.
#[cfg(not(feature = "rustcrypto"))]
pub type Selected = Native;
/// The backend the filter verifies with: RustCrypto's (feature `rustcrypto`).
#[cfg(feature = "rustcrypto")]
pub type Selected = crate::RustCrypto;

impl RsaVerifier for RsaPublicKey {
    fn with_min_bits(n_be: &[u8], e_be: &[u8], min_bits: usize) -> Result<Self, CryptoError> {
        RsaPublicKey::with_min_bits(n_be, e_be, min_bits)
    }

    fn bits(&self) -> usize {
        RsaPublicKey::bits(self)
    }

    fn verify_pkcs1v15(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool {
        RsaPublicKey::verify_pkcs1v15(self, hash, msg, sig)
    }

    fn verify_pss(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool {
        RsaPublicKey::verify_pss(self, hash, msg, sig)
    }
}

impl EcVerifier for EcPublicKey {
    fn from_sec1(curve: EcCurve, sec1: &[u8]) -> Result<Self, CryptoError> {
        EcPublicKey::from_sec1(curve, sec1)
    }

    fn check_sec1(curve: EcCurve, sec1: &[u8]) -> Result<(), CryptoError> {
        EcPublicKey::check_sec1(curve, sec1)
    }

    fn curve(&self) -> EcCurve {
        EcPublicKey::curve(self)
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        EcPublicKey::verify(self, msg, sig)
    }
}

impl Ed25519Verifier for Ed25519PublicKey {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        Ed25519PublicKey::new(key)
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        Ed25519PublicKey::verify(self, msg, sig)
    }
}

// Two attributes, so that clippy sees a `cfg(test)` module (its test-code allowances).
#[cfg(feature = "rustcrypto")]
#[cfg(test)]
mod tests;
