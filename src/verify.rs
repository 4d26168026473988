//! Token verification: structure, algorithm, key, signature, then registered claims.
//! (Implementation in progress: see the interface below.)

use crate::claims::Claims;
use crate::config::Provider;
use crate::jwks::KeySet;
use crate::reason::Reason;

/// A compact JWS split and decoded, not yet verified.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    pub token: &'a str,
    pub alg: String,
    pub kid: Option<String>,
    /// The payload, decoded but unverified: read only to choose the provider by `iss`.
    pub payload: Claims,
}

impl<'a> Jws<'a> {
    pub fn parse(_token: &'a str) -> Result<Jws<'a>, Reason> {
        Err(Reason::TokenMalformed)
    }

    /// The unverified `iss` claim, for choosing a provider.
    pub fn issuer(&self) -> Option<&str> {
        self.payload.get("iss").and_then(|v| v.as_str())
    }
}

/// Verify a parsed token against a provider and its keys at `now` (Unix seconds).
pub fn verify(_jws: &Jws<'_>, _provider: &Provider, _keys: &KeySet, _now: u64) -> Result<Claims, Reason> {
    Err(Reason::SignatureInvalid)
}
