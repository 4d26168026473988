//! JOSE (RFC 7515, RFC 7518, RFC 8037) names shared by the configuration, key sets (`jwks`),
//! token verification (`verify`) and DPoP proofs (`dpop`): the signing algorithms. Their own
//! module, so that none of these depends on another for them (`config` → `fetch` → `jwks` no
//! longer leads back to `config`).

use schemars::JsonSchema;
use serde::Deserialize;

/// A JWS signing algorithm (RFC 7518, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Algorithm {
    /// The default allow-list: every asymmetric algorithm.
    pub const ASYMMETRIC: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// Parse a JOSE `alg` value; `None` for anything unknown (including `none`).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ASYMMETRIC
            .iter()
            .chain([Algorithm::HS256, Algorithm::HS384, Algorithm::HS512].iter())
            .copied()
            .find(|a| a.name() == name)
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for a in Algorithm::ASYMMETRIC {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        assert_eq!(Algorithm::from_name("HS256"), Some(Algorithm::HS256));
        assert_eq!(Algorithm::from_name("none"), None);
        assert_eq!(Algorithm::from_name("rs256"), None);
    }
}
