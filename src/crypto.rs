//! The signature crate (`identity-crypto`, crates/crypto) as the filter uses it: key types from
//! the backend its `rustcrypto` feature selects ([`identity_crypto::Selected`]: the crate's own
//! arithmetic by default, RustCrypto's with `--features rustcrypto`), verified through the
//! crate's verifier traits (`src/jwks.rs`), and HMAC for HS* and the identity assertion.

use identity_crypto::{Backend, Selected};
pub(crate) use identity_crypto::{
    CryptoError, EcCurve, EcVerifier, Ed25519Verifier, HashAlg, HmacKey, RsaVerifier,
};

/// An RSA public key of the selected backend.
pub(crate) type RsaPublicKey = <Selected as Backend>::Rsa;
/// An ECDSA P-256 / P-384 public key of the selected backend.
pub(crate) type EcPublicKey = <Selected as Backend>::Ec;
/// An Ed25519 public key of the selected backend.
pub(crate) type Ed25519PublicKey = <Selected as Backend>::Ed25519;
