//! ECDSA verification for ES256 (P-256 + SHA-256) and ES384 (P-384 + SHA-384) with JWS's raw
//! `r ‖ s` signatures (64 and 96 bytes), on the RustCrypto `p256`/`p384` crates: measured in
//! wasm32 they meet the targets (see `crypto-bench/`), so nothing is hand-written here.
//!
//! Keys are parsed once: the point is decoded and checked to be on the curve (and not the
//! identity) at key-load time. A signature is rejected unless it is exactly `2 × field size`
//! bytes with `0 < r, s < n`.

use super::CryptoError;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::Verifier;

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

/// A parsed ECDSA public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EcPublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl EcPublicKey {
    /// A key from its affine coordinates, big-endian, each exactly [`EcCurve::field_len`] bytes
    /// (as a JWK's `x` and `y` must be, RFC 7518 §6.2.1.2). The point must be on the curve.
    pub fn new(curve: EcCurve, x: &[u8], y: &[u8]) -> Result<Self, CryptoError> {
        let len = curve.field_len();
        if x.len() != len || y.len() != len {
            return Err(CryptoError::BadPoint);
        }
        let mut sec1 = [0u8; 1 + 2 * 48];
        let Some(sec1) = sec1.get_mut(..1 + 2 * len) else {
            return Err(CryptoError::BadPoint);
        };
        for (o, b) in sec1
            .iter_mut()
            .zip(std::iter::once(&0x04).chain(x).chain(y))
        {
            *o = *b;
        }
        Self::from_sec1(curve, sec1)
    }

    /// A key from its SEC1 encoding (uncompressed `04 ‖ x ‖ y`, or compressed).
    pub fn from_sec1(curve: EcCurve, sec1: &[u8]) -> Result<Self, CryptoError> {
        match curve {
            EcCurve::P256 => {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).map(EcPublicKey::P256)
            }
            EcCurve::P384 => {
                p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1).map(EcPublicKey::P384)
            }
        }
        .map_err(|_| CryptoError::BadPoint)
    }

    /// The key's curve.
    pub fn curve(&self) -> EcCurve {
        match self {
            EcPublicKey::P256(_) => EcCurve::P256,
            EcPublicKey::P384(_) => EcCurve::P384,
        }
    }

    /// Verify a JWS ECDSA signature (`r ‖ s`): ES256 for a P-256 key, ES384 for a P-384 key.
    pub fn verify(&self, msg: &[u8], sig_rs: &[u8]) -> bool {
        match self {
            EcPublicKey::P256(k) => p256::ecdsa::Signature::from_slice(sig_rs)
                .is_ok_and(|sig| k.verify(msg, &sig).is_ok()),
            EcPublicKey::P384(k) => p384::ecdsa::Signature::from_slice(sig_rs)
                .is_ok_and(|sig| k.verify(msg, &sig).is_ok()),
        }
    }

    /// Verify `r ‖ s` over a digest computed by the caller (any hash: the digest is truncated
    /// or padded to the order's length as ECDSA specifies).
    pub fn verify_prehashed(&self, digest: &[u8], sig_rs: &[u8]) -> bool {
        match self {
            EcPublicKey::P256(k) => p256::ecdsa::Signature::from_slice(sig_rs)
                .is_ok_and(|sig| k.verify_prehash(digest, &sig).is_ok()),
            EcPublicKey::P384(k) => p384::ecdsa::Signature::from_slice(sig_rs)
                .is_ok_and(|sig| k.verify_prehash(digest, &sig).is_ok()),
        }
    }
}

/// ES256 in one call: `pubkey_xy` is `x ‖ y` (64 bytes), `sig_rs` is `r ‖ s` (64 bytes).
/// Parses the key on every call: keep an [`EcPublicKey`] to verify many tokens.
pub fn verify_es256(pubkey_xy: &[u8], msg: &[u8], sig_rs: &[u8]) -> bool {
    verify_xy(EcCurve::P256, pubkey_xy, msg, sig_rs)
}

/// ES384 in one call: `pubkey_xy` is `x ‖ y` (96 bytes), `sig_rs` is `r ‖ s` (96 bytes).
pub fn verify_es384(pubkey_xy: &[u8], msg: &[u8], sig_rs: &[u8]) -> bool {
    verify_xy(EcCurve::P384, pubkey_xy, msg, sig_rs)
}

fn verify_xy(curve: EcCurve, pubkey_xy: &[u8], msg: &[u8], sig_rs: &[u8]) -> bool {
    if pubkey_xy.len() != 2 * curve.field_len() {
        return false;
    }
    let (x, y) = pubkey_xy.split_at(curve.field_len());
    EcPublicKey::new(curve, x, y).is_ok_and(|k| k.verify(msg, sig_rs))
}
