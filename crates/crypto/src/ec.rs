//! ECDSA verification for ES256 (P-256 + SHA-256) and ES384 (P-384 + SHA-384) with JWS's raw
//! `r ‖ s` signatures (64 and 96 bytes), on the wasm32-tuned arithmetic of [`super::nist`].
//! (The `p256`/`p384` crates, measured first, take 550 µs / 2,100 µs per verification under
//! V8: see `crypto-bench/`.)
//!
//! Keys are parsed once: the point is checked to be on the curve (coordinates below p; the
//! identity cannot be encoded as affine coordinates) and its tables of odd multiples are built
//! at key-load time. A signature is rejected unless it is exactly `2 × field size` bytes with
//! `0 < r, s < n`.

use super::nist::{self, Key, P256_LIMBS, P384_LIMBS};
use super::CryptoError;
use sha2::Digest;

/// The curve of an ECDSA key (JWK `crv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcCurve {
    /// P-256, used with SHA-256 (ES256).
    P256,
    /// P-384, used with SHA-384 (ES384).
    P384,
}

impl EcCurve {
    /// Length of one coordinate (and of `r` and of `s`) in bytes.
    pub fn field_len(self) -> usize {
        match self {
            EcCurve::P256 => 32,
            EcCurve::P384 => 48,
        }
    }
}

/// Builds a curve's constants and generator tables from scratch, as the first key on that curve
/// does once per process (per Wasm VM): crypto-bench's "curve tables" rows time it. True when
/// built (always, for the two fixed curves). Not used by the filter.
#[doc(hidden)]
pub fn build_curve_tables(curve: EcCurve) -> bool {
    match curve {
        EcCurve::P256 => nist::build_p256().is_some(),
        EcCurve::P384 => nist::build_p384().is_some(),
    }
}

/// A parsed ECDSA public key with its precomputed tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcPublicKey(Inner);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Inner {
    P256(Box<Key<P256_LIMBS>>),
    P384(Box<Key<P384_LIMBS>>),
}

impl EcPublicKey {
    /// A key from its affine coordinates, big-endian, each exactly [`EcCurve::field_len`] bytes
    /// (as a JWK's `x` and `y` must be, RFC 7518 §6.2.1.2). The point must be on the curve.
    pub fn new(curve: EcCurve, x: &[u8], y: &[u8]) -> Result<Self, CryptoError> {
        match curve {
            EcCurve::P256 => nist::p256()
                .and_then(|c| c.key(x, y))
                .map(|k| EcPublicKey(Inner::P256(Box::new(k)))),
            EcCurve::P384 => nist::p384()
                .and_then(|c| c.key(x, y))
                .map(|k| EcPublicKey(Inner::P384(Box::new(k)))),
        }
        .ok_or(CryptoError::BadPoint)
    }

    /// A key from its uncompressed SEC1 encoding `04 ‖ x ‖ y`.
    pub fn from_sec1(curve: EcCurve, sec1: &[u8]) -> Result<Self, CryptoError> {
        let len = curve.field_len();
        match sec1.split_first() {
            Some((0x04, xy)) if xy.len() == 2 * len => {
                let (x, y) = xy.split_at(len);
                Self::new(curve, x, y)
            }
            _ => Err(CryptoError::BadPoint),
        }
    }

    /// Check an uncompressed SEC1 point `04 ‖ x ‖ y` without preparing the key: on the curve
    /// (coordinates below p). Microseconds, where [`Self::from_sec1`] also builds the tables
    /// (about 0.85 ms for P-384 in wasm32).
    pub fn check_sec1(curve: EcCurve, sec1: &[u8]) -> Result<(), CryptoError> {
        let len = curve.field_len();
        let valid = match sec1.split_first() {
            Some((0x04, xy)) if xy.len() == 2 * len => {
                let (x, y) = xy.split_at(len);
                match curve {
                    EcCurve::P256 => nist::p256().is_some_and(|c| c.is_point(x, y)),
                    EcCurve::P384 => nist::p384().is_some_and(|c| c.is_point(x, y)),
                }
            }
            _ => false,
        };
        if valid {
            Ok(())
        } else {
            Err(CryptoError::BadPoint)
        }
    }

    /// The key's curve.
    pub fn curve(&self) -> EcCurve {
        match self.0 {
            Inner::P256(_) => EcCurve::P256,
            Inner::P384(_) => EcCurve::P384,
        }
    }

    /// Verify a JWS ECDSA signature (`r ‖ s`): ES256 for a P-256 key, ES384 for a P-384 key.
    pub fn verify(&self, msg: &[u8], sig_rs: &[u8]) -> bool {
        match self.0 {
            Inner::P256(_) => self.verify_prehashed(&sha2::Sha256::digest(msg), sig_rs),
            Inner::P384(_) => self.verify_prehashed(&sha2::Sha384::digest(msg), sig_rs),
        }
    }

    /// Verify `r ‖ s` over a digest computed by the caller (any hash: the digest is truncated
    /// to the order's length as ECDSA specifies).
    pub fn verify_prehashed(&self, digest: &[u8], sig_rs: &[u8]) -> bool {
        match &self.0 {
            Inner::P256(k) => nist::p256().is_some_and(|c| c.verify(k, digest, sig_rs)),
            Inner::P384(k) => nist::p384().is_some_and(|c| c.verify(k, digest, sig_rs)),
        }
    }
}

/// ES256 in one call: `pubkey_xy` is `x ‖ y` (64 bytes), `sig_rs` is `r ‖ s` (64 bytes).
/// Parses the key on every call: keep an [`EcPublicKey`] to verify many tokens (tests).
#[cfg(test)]
pub fn verify_es256(pubkey_xy: &[u8], msg: &[u8], sig_rs: &[u8]) -> bool {
    verify_xy(EcCurve::P256, pubkey_xy, msg, sig_rs)
}

/// ES384 in one call: `pubkey_xy` is `x ‖ y` (96 bytes), `sig_rs` is `r ‖ s` (96 bytes).
#[cfg(test)]
pub fn verify_es384(pubkey_xy: &[u8], msg: &[u8], sig_rs: &[u8]) -> bool {
    verify_xy(EcCurve::P384, pubkey_xy, msg, sig_rs)
}

#[cfg(test)]
fn verify_xy(curve: EcCurve, pubkey_xy: &[u8], msg: &[u8], sig_rs: &[u8]) -> bool {
    if pubkey_xy.len() != 2 * curve.field_len() {
        return false;
    }
    let (x, y) = pubkey_xy.split_at(curve.field_len());
    EcPublicKey::new(curve, x, y).is_ok_and(|k| k.verify(msg, sig_rs))
}
