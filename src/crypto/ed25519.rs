//! Ed25519 verification (JWS `EdDSA` with `crv` = `Ed25519`, RFC 8037) on `ed25519-compact`.
//!
//! The crate rejects non-canonical `S` (≥ L), small-order and non-canonical public keys and
//! `R` encodings, which is what Wycheproof's vectors expect.

use super::CryptoError;

/// A parsed Ed25519 public key (32 bytes, RFC 8032 encoding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519PublicKey(ed25519_compact::PublicKey);

impl Ed25519PublicKey {
    /// A key from its 32-byte encoding (a JWK's `x`).
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        ed25519_compact::PublicKey::from_slice(key)
            .map(Ed25519PublicKey)
            .map_err(|_| CryptoError::BadPoint)
    }

    /// Verify a 64-byte signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        ed25519_compact::Signature::from_slice(sig).is_ok_and(|s| self.0.verify(msg, &s).is_ok())
    }
}

/// Ed25519 in one call: `pubkey` is 32 bytes, `sig` 64 bytes.
pub fn verify_ed25519(pubkey: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    Ed25519PublicKey::new(pubkey).is_ok_and(|k| k.verify(msg, sig))
}
