//! HMAC-SHA-256/384/512 (RFC 2104; the JWS algorithms HS256/HS384/HS512) with RustCrypto's
//! `hmac` over the same `sha2` the rest of this module hashes with, so the module carries one
//! SHA-2 implementation.
//!
//! A key is set up once: the inner and outer padded keys are hashed when it is built, and each
//! tag then only hashes the message. Verification compares the whole tag in constant time
//! ([`Mac::verify_slice`]), and a tag of any other length than the hash's is refused.

use ::hmac::{Hmac, KeyInit, Mac};

use super::HashAlg;

/// An HMAC key for one hash, with its padded-key states computed.
#[derive(Clone)]
pub struct HmacKey(Keyed);

#[derive(Clone)]
enum Keyed {
    Sha256(Hmac<sha2::Sha256>),
    Sha384(Hmac<sha2::Sha384>),
    Sha512(Hmac<sha2::Sha512>),
}

impl std::fmt::Debug for HmacKey {
    // Nothing derived from the secret is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacKey")
            .field("hash", &self.hash())
            .finish_non_exhaustive()
    }
}

impl HmacKey {
    /// The key `secret` for HMAC over `hash`. HMAC takes secrets of any length (a longer one
    /// than the hash's block is hashed first); the minimum lengths JWS requires are the
    /// callers' to check. `None` only if the `hmac` crate refused the key, which it never does.
    pub fn new(hash: HashAlg, secret: &[u8]) -> Option<HmacKey> {
        Some(HmacKey(match hash {
            HashAlg::Sha256 => Keyed::Sha256(Hmac::new_from_slice(secret).ok()?),
            HashAlg::Sha384 => Keyed::Sha384(Hmac::new_from_slice(secret).ok()?),
            HashAlg::Sha512 => Keyed::Sha512(Hmac::new_from_slice(secret).ok()?),
        }))
    }

    /// The hash this key is for.
    pub fn hash(&self) -> HashAlg {
        match self.0 {
            Keyed::Sha256(_) => HashAlg::Sha256,
            Keyed::Sha384(_) => HashAlg::Sha384,
            Keyed::Sha512(_) => HashAlg::Sha512,
        }
    }

    /// The tag of `msg` ([`HashAlg::output_len`] bytes).
    pub fn tag(&self, msg: &[u8]) -> Vec<u8> {
        fn tag_with<M: Mac + Clone>(key: &M, msg: &[u8]) -> Vec<u8> {
            let mut mac = key.clone();
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
        match &self.0 {
            Keyed::Sha256(k) => tag_with(k, msg),
            Keyed::Sha384(k) => tag_with(k, msg),
            Keyed::Sha512(k) => tag_with(k, msg),
        }
    }

    /// Whether `tag` is the tag of `msg`: the full tag, compared in constant time.
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        fn verify_with<M: Mac + Clone>(key: &M, msg: &[u8], tag: &[u8]) -> bool {
            let mut mac = key.clone();
            mac.update(msg);
            mac.verify_slice(tag).is_ok()
        }
        match &self.0 {
            Keyed::Sha256(k) => verify_with(k, msg, tag),
            Keyed::Sha384(k) => verify_with(k, msg, tag),
            Keyed::Sha512(k) => verify_with(k, msg, tag),
        }
    }
}
