//! identity-crypto: signature verification for the identity filter's JWS algorithms, RS256/384/512,
//! PS256/384/512, ES256, ES384 and EdDSA (Ed25519), and HMAC for HS256/384/512. Pure functions
//! over raw key material (big-endian `n`/`e`, `x`/`y`, the 32-byte Ed25519 key, the HMAC
//! secret): parsing JWKs into those bytes is the filter's (`src/jwks.rs`).
//!
//! * RSA: a hand-written, variable-time Montgomery exponentiation on 28-bit limbs with lazy
//!   carries (`bigint`), tuned for wasm32, with exact PKCS#1 v1.5 encoding comparison and
//!   strict PSS checks (`rsa`).
//! * ECDSA P-256/P-384: hand-written wasm32-tuned field and curve arithmetic (`nist`), keys
//!   parsed once with precomputed tables (`ec`).
//! * Ed25519: `ed25519-dalek`'s strict verification (`ed25519`).
//! * HMAC-SHA-256/384/512: RustCrypto's `hmac` over `sha2`, tags compared in constant time
//!   (`hmac`); it also signs the filter's HS256 identity assertion.
//!
//! Keys are parsed once (at key-set load) into structs holding their precomputed constants; a
//! verification then takes the message and the raw JWS signature and returns a plain `bool`.
//!
//! The filter verifies through the traits of [`backend`] ([`RsaVerifier`], [`EcVerifier`],
//! [`Ed25519Verifier`]) with the key types of [`Selected`]: this crate's own arithmetic
//! ([`Native`]), or, with the cargo feature `rustcrypto` (off by default), RustCrypto's `rsa`,
//! `p256` and `p384` (`RustCrypto`), a one-switch fallback.
//!
//! Only the generality the filter uses: RSA keys have the public exponent 65537 and moduli of
//! at most 4096 bits ([`MAX_MODULUS_BITS`]), as the filter's key parsing requires; ECDSA is
//! P-256 with SHA-256 and P-384 with SHA-384.
//!
//! Tests: every primitive against Project Wycheproof's verification vectors
//! (`src/wycheproof_tests.rs`) and the openssl-made JWS vectors in `tests/vectors/openssl/`
//! (`src/tests.rs`); with `--features rustcrypto`, both backends on the same vectors
//! (`src/backend.rs`). crypto-bench (a workspace member) times it; the fuzz targets
//! `crypto_diff` and `bigint_diff` compare it with RustCrypto.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod backend;
mod bigint;
mod ec;
mod ed25519;
mod hmac;
mod nist;
mod rsa;
#[cfg(feature = "rustcrypto")]
mod rustcrypto;

pub use backend::{Backend, EcVerifier, Ed25519Verifier, Native, RsaVerifier, Selected};
pub use bigint::Modulus;
pub use ec::{build_curve_tables, EcCurve, EcPublicKey};
pub use ed25519::Ed25519PublicKey;
pub use hmac::HmacKey;
pub use rsa::{RsaPublicKey, MAX_MODULUS_BITS, RSA_PUBLIC_EXPONENT};
#[cfg(feature = "rustcrypto")]
pub use rustcrypto::{RustCrypto, RustCryptoEcKey, RustCryptoRsaKey};

#[cfg(test)]
use ec::{verify_es256, verify_es384};
#[cfg(test)]
use ed25519::verify_ed25519;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wycheproof_tests;

use sha2::Digest;

/// A key that cannot be used for verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The RSA modulus is shorter than the minimum (2048 bits by default).
    KeyTooSmall,
    /// The RSA modulus is longer than 4096 bits ([`MAX_MODULUS_BITS`]).
    KeyTooLarge,
    /// The RSA modulus is even (not a product of odd primes).
    EvenModulus,
    /// The RSA public exponent is not 65537 ([`RSA_PUBLIC_EXPONENT`]).
    BadExponent,
    /// The elliptic-curve point is not on the curve, is the identity, or is badly encoded.
    BadPoint,
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CryptoError::KeyTooSmall => "RSA modulus too small",
            CryptoError::KeyTooLarge => "RSA modulus too large",
            CryptoError::EvenModulus => "RSA modulus is even",
            CryptoError::BadExponent => "RSA public exponent is not 65537",
            CryptoError::BadPoint => "public key is not a valid curve point",
        })
    }
}

impl std::error::Error for CryptoError {}

/// The SHA-2 hash of an RSA signature algorithm (RS256/PS256 → `Sha256`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// Output length in bytes (also the PSS salt length JWS requires).
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// DER encoding of `DigestInfo` up to the digest octets (RFC 8017 §9.2, note 1).
    pub(crate) fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            HashAlg::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            HashAlg::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            HashAlg::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    /// Hash `msg` into `out`, returning the digest (the first [`HashAlg::len`] bytes).
    pub(crate) fn digest_into<'a>(self, msg: &[u8], out: &'a mut [u8; 64]) -> &'a [u8] {
        fn put<'a, D: Digest>(msg: &[u8], out: &'a mut [u8; 64]) -> &'a [u8] {
            let d = D::digest(msg);
            let n = d.len().min(64);
            for (o, b) in out.iter_mut().zip(d.iter()) {
                *o = *b;
            }
            out.get(..n).unwrap_or_default()
        }
        match self {
            HashAlg::Sha256 => put::<sha2::Sha256>(msg, out),
            HashAlg::Sha384 => put::<sha2::Sha384>(msg, out),
            HashAlg::Sha512 => put::<sha2::Sha512>(msg, out),
        }
    }
}
