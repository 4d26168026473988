//! The harness's signing keys (fixed: RSA from `src/keys/*.pem`, generated with `openssl
//! genpkey` for the fuzz targets only; EC and Ed25519 from fixed scalars), their public JWKs,
//! and the configurations of the request targets, which trust them.

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

/// The issuer of the first provider of every configuration here.
pub const ISSUER: &str = "https://issuer.fuzz";
/// A second issuer (HS256 allowed, an `oct` key and one EC key).
pub const ISSUER_HS: &str = "https://hs.fuzz";
/// The audience the first provider requires.
pub const AUDIENCE: &str = "api";
/// The HMAC secret of the second provider (64 bytes).
pub const HMAC_SECRET: &[u8] = b"fuzz-only hmac secret: sixty-four bytes long for HS256, ok......";
/// The assertion's HS256 secret.
pub const ASSERTION_SECRET: &str = "fuzz-assertion-secret-fuzz-assertion-secret";

/// The JWS algorithms the harness signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Alg {
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
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
        }
    }

    pub fn from_name(name: &str) -> Option<Alg> {
        ALL.iter().copied().find(|a| a.name() == name)
    }

    /// The `kid` of the harness key that signs with this algorithm (`rsa` picks one of the
    /// RSA keys).
    pub fn kid(self, rsa: usize) -> &'static str {
        match self {
            Alg::ES256 => "ec-256",
            Alg::ES384 => "ec-384",
            Alg::EdDSA => "ed",
            Alg::HS256 => "hs",
            _ => RSA_KIDS[rsa % RSA_KIDS.len()],
        }
    }

    /// The issuer whose configuration trusts this algorithm.
    pub fn issuer(self) -> &'static str {
        if self == Alg::HS256 {
            ISSUER_HS
        } else {
            ISSUER
        }
    }
}

pub const ALL: [Alg; 10] = [
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
    Alg::ES256,
    Alg::ES384,
    Alg::EdDSA,
    Alg::HS256,
];

/// RSA keys: 2048 bits, 2049 bits (emLen = k − 1 in PSS) and 3072 bits.
pub const RSA_KIDS: [&str; 3] = ["rsa-2048", "rsa-2049", "rsa-3072"];
const RSA_PEMS: [&str; 3] = [
    include_str!("keys/rsa2048.pem"),
    include_str!("keys/rsa2049.pem"),
    include_str!("keys/rsa3072.pem"),
];

/// Every signing key of the harness.
pub struct Keys {
    pub rsa: Vec<rsa::RsaPrivateKey>,
    pub p256: p256::ecdsa::SigningKey,
    pub p384: p384::ecdsa::SigningKey,
    pub ed: ed25519_dalek::SigningKey,
}

/// The keys, built once per process.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: RSA_PEMS
            .iter()
            .map(|pem| rsa::RsaPrivateKey::from_pkcs8_pem(pem).expect("harness RSA key"))
            .collect(),
        p256: p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).expect("harness P-256 key"),
        p384: p384::ecdsa::SigningKey::from_slice(&[0x22; 48]).expect("harness P-384 key"),
        ed: ed25519_dalek::SigningKey::from_bytes(&[0x33; 32]),
    })
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Public JWK of an EC key (`x`, `y` from the uncompressed SEC1 point).
fn ec_jwk(crv: &str, kid: &str, sec1: &[u8], len: usize) -> Value {
    let x = sec1.get(1..1 + len).unwrap_or_default();
    let y = sec1.get(1 + len..).unwrap_or_default();
    json!({"kty": "EC", "crv": crv, "kid": kid, "x": b64(x), "y": b64(y)})
}

/// The public JWKs of the first provider: the three RSA keys, P-256, P-384 and Ed25519.
pub fn public_jwks() -> Value {
    let k = keys();
    let mut list: Vec<Value> = k
        .rsa
        .iter()
        .zip(RSA_KIDS)
        .map(|(key, kid)| {
            json!({"kty": "RSA", "kid": kid, "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
        })
        .collect();
    let p256 = k.p256.verifying_key().to_sec1_point(false);
    list.push(ec_jwk("P-256", "ec-256", p256.as_bytes(), 32));
    let p384 = k.p384.verifying_key().to_sec1_point(false);
    list.push(ec_jwk("P-384", "ec-384", p384.as_bytes(), 48));
    list.push(json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(k.ed.verifying_key().as_bytes())}));
    json!({ "keys": list })
}

/// The second provider's keys: the HMAC secret and the P-256 key.
pub fn hs_jwks() -> Value {
    let p256 = keys().p256.verifying_key().to_sec1_point(false);
    json!({"keys": [
        {"kty": "oct", "kid": "hs", "k": b64(HMAC_SECRET)},
        ec_jwk("P-256", "ec-256", p256.as_bytes(), 32),
    ]})
}

/// The request targets' configurations, as JSON documents. Each trusts the harness keys and
/// covers other features: claim headers, the assertion (HS256 / EdDSA), token sources, rules,
/// report-only, lifetime limits, required claims.
pub fn configs() -> &'static [Value] {
    static CONFIGS: OnceLock<Vec<Value>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let main_provider = json!({
            "name": "main", "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": public_jwks(),
            "identity": {"tenant": ["tid"], "roles": ["roles", "realm_access.roles"]}
        });
        let hs_provider = json!({
            "name": "hs", "issuer": ISSUER_HS, "jwks": hs_jwks(),
            "algorithms": ["HS256", "ES256"], "clock_skew_seconds": 0
        });
        let claims = json!([
            {"claim": "sub", "header": "x-identity-subject"},
            {"claim": "email", "header": "x-identity-email"},
            {"claim": "profile.name", "header": "x-identity-name"},
            {"identity": "roles", "header": "x-identity-roles"},
            {"identity": "scopes", "header": "x-identity-scopes"},
            {"identity": "tenant", "header": "x-identity-tenant"},
            {"identity": "provider", "header": "x-identity-provider"}
        ]);
        let rules = json!([
            {"name": "public", "match": {"path_prefix": "/public"}, "allow_anonymous": true},
            {"name": "admin", "match": {"path_prefix": "/admin"}, "require": {"roles": {"any_of": ["admin"]}}},
            {"name": "tenant", "match": {"path_template": "/t/{tenant}/runs", "methods": ["GET", "POST"]},
             "require": {"tenant_from_path": "tenant", "scopes": {"all_of": ["runs:read"]}}},
            {"name": "claims", "match": {"path": "/claims", "hosts": ["api.test"]},
             "require": {"any_of": [{"claims": [{"claim": "email", "in": ["a@x.test", "b@x.test"]}]},
                                    {"issuers": [ISSUER_HS]}]}},
            {"name": "report", "match": {"path_prefix": "/report"}, "report_only": true,
             "require": {"groups": {"all_of": ["g1"]}}}
        ]);
        let ed_jwk = {
            let ed = ed25519_dalek::SigningKey::from_bytes(&[0x44; 32]);
            json!({"kty": "OKP", "crv": "Ed25519", "d": b64(ed.as_bytes()), "x": b64(ed.verifying_key().as_bytes())})
        };
        vec![
            json!({
                "providers": [main_provider, hs_provider],
                "token_sources": [
                    {"header": "authorization", "prefix": "Bearer "},
                    {"cookie": "session"},
                    {"query": "access_token"}
                ],
                "default": "authenticated",
                "rules": rules,
                "cors_preflight": true,
                "headers": {
                    "claims": claims,
                    "strip": ["x-user"],
                    "assertion": {"audience": "svc", "keys": [{"kid": "a1", "secret": ASSERTION_SECRET}]}
                },
                "errors": {"detail": "message", "realm": "fuzz"}
            }),
            json!({
                "providers": [
                    {"name": "main", "issuer": ISSUER, "jwks": public_jwks(), "max_lifetime_seconds": 3600,
                     "require_claims": ["sub"], "clock_skew_seconds": 30},
                    hs_provider
                ],
                "token_sources": [{"header": "x-token"}, {"header": "authorization", "prefix": "Bearer "}],
                "default": "deny",
                "report_only": true,
                "max_token_bytes": 4096,
                "headers": {
                    "claims": claims,
                    "forward_token": true,
                    "reserved_prefix": "x-id-",
                    "assertion": {"audience": "svc", "keys": [{"kid": "e1", "private_jwk": ed_jwk}],
                                  "jwks_path": "/.well-known/assertion-keys", "request_id_header": "x-req"}
                }
            }),
            json!({
                "providers": [main_provider, {
                    "name": "hs", "issuer": ISSUER_HS, "jwks": hs_jwks(), "algorithms": ["HS256", "ES256"],
                    "require_expiration": false
                }],
                "default": "anonymous",
                "rules": rules,
                "headers": {"claims": claims, "spoofed_headers": "reject"},
                "errors": {"detail": "none", "reason_header": "x-why"}
            }),
        ]
    })
}

/// A configuration with its token cache turned off (`cache.max_entries: 0`).
pub fn without_cache(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(obj) = c.as_object_mut() {
        let cache = obj.entry("cache").or_insert_with(|| json!({}));
        if let Some(cache) = cache.as_object_mut() {
            cache.insert("max_entries".into(), json!(0));
        }
    }
    c
}

/// A signed compact JWS: `header` and `claims` as given, signed by the harness key for `alg`
/// (`rsa` picks the RSA key), the PSS salt drawn from `seed`.
pub fn sign_token(alg: Alg, rsa: usize, header: &Value, claims: &Value, seed: u64) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = crate::reference::sign(alg, rsa, input.as_bytes(), seed);
    format!("{input}.{}", b64(&sig))
}
