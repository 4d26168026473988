//! The signed identity assertion: a compact JWT minted by the filter for each allowed request
//! with a verified caller. It carries the normalized identity and is bound to the request
//! (method, path, request id), so a downstream service trusts it with one local key and needs
//! nothing from the identity provider. The format is documented in docs/identity-contract.md.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;

use crate::config::{AssertionConfig, ConfigError};
use crate::crypto::{HashAlg, HmacKey};
use crate::headers::HeaderOp;
use crate::identity::Identity;
use crate::reason::Response;
use crate::token::RequestFacts;

/// Version of the assertion's claim set (the `v` claim).
pub const CONTRACT_VERSION: u32 = 1;

enum SigningKey {
    /// HMAC-SHA-256 (crates/crypto/src/hmac.rs), keyed once at configuration.
    Hs256(Box<HmacKey>),
    /// Signed with ed25519-dalek from a key expanded once at configuration (jwt-simple's
    /// EdDSA signing rebuilds its signing state on every call: about 226 µs a request under
    /// Wasmtime, docs/benchmarks-wasmtime.md). The private JWK is read with the JWK helpers of
    /// src/jwks.rs.
    EdDsa(Box<ed25519_dalek::SigningKey>),
}

/// Mints assertions with the first configured key; publishes the EdDSA public keys.
pub struct Signer {
    pub config: AssertionConfig,
    key: SigningKey,
    /// The JWKS document served at `jwks_path`.
    jwks: Option<String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

/// What the request binds the assertion to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Binding<'a> {
    pub method: &'a str,
    /// The request path without its query string.
    pub path: &'a str,
    pub id: &'a str,
}

/// The assertion's claim set (docs/identity-contract.md): the registered claims, then ours, in
/// the order and form of jwt-simple's `JWTClaims` (`nbf` is never set); the tests compare the
/// two.
#[derive(Serialize)]
struct Claims<'a> {
    iat: u64,
    exp: u64,
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    aud: &'a str,
    jti: &'a str,
    v: u32,
    idp: &'a str,
    provider: &'a str,
    roles: &'a [String],
    groups: &'a [String],
    scopes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    binding: &'static str,
    req: &'a Binding<'a>,
}

impl Signer {
    /// Load the keys of a validated assertion configuration (`at` is its path, for errors).
    pub fn new(config: &AssertionConfig, at: &str) -> Result<Signer, ConfigError> {
        let mut signing: Option<SigningKey> = None;
        let mut public = Vec::new();
        for (i, k) in config.keys.iter().enumerate() {
            let here = format!("{at}.keys[{i}]");
            let key = match (&k.secret, &k.private_jwk) {
                (Some(secret), _) => {
                    let key =
                        HmacKey::new(HashAlg::Sha256, secret.as_bytes()).ok_or_else(|| {
                            ConfigError::new(format!("{here}.secret"), "is not a usable HMAC key")
                        })?;
                    SigningKey::Hs256(Box::new(key))
                }
                (None, Some(jwk)) => {
                    let at = format!("{here}.private_jwk");
                    let (seed, x) = crate::jwks::ed25519_private_jwk(jwk, &at)
                        .map_err(|e| ConfigError::new(e.path, e.message))?;
                    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                    if key.verifying_key().as_bytes() != &x {
                        return Err(ConfigError::new(
                            format!("{at}.x"),
                            "is not the public key of `d`",
                        ));
                    }
                    public.push(serde_json::json!({
                        "kty": "OKP",
                        "crv": "Ed25519",
                        "alg": "EdDSA",
                        "use": "sig",
                        "kid": k.kid,
                        "x": URL_SAFE_NO_PAD.encode(x),
                    }));
                    SigningKey::EdDsa(Box::new(key))
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        here,
                        "set exactly one of `secret`, `private_jwk`",
                    ))
                }
            };
            if i == 0 {
                signing = Some(key);
            }
        }
        let key = signing.ok_or_else(|| {
            ConfigError::new(format!("{at}.keys"), "at least one key is required")
        })?;
        let jwks = config
            .jwks_path
            .as_ref()
            .map(|_| serde_json::json!({ "keys": public }).to_string());
        Ok(Signer {
            config: config.clone(),
            key,
            jwks,
        })
    }

    /// The signing key's id.
    pub fn kid(&self) -> &str {
        self.config
            .keys
            .first()
            .map(|k| k.kid.as_str())
            .unwrap_or_default()
    }

    /// Mint an assertion for `who`, bound to the request, issued at `now` with id `jti`.
    /// `None` only if signing itself fails.
    pub fn mint(
        &self,
        who: &Identity,
        binding: &Binding<'_>,
        jti: &str,
        now: u64,
    ) -> Option<String> {
        // Time comes from the host, not from a library's clock.
        let claims = Claims {
            iat: now,
            exp: now.saturating_add(self.config.lifetime_seconds),
            iss: &self.config.issuer,
            sub: who.subject.as_deref(),
            aud: &self.config.audience,
            jti,
            v: CONTRACT_VERSION,
            idp: &who.issuer,
            provider: &who.provider,
            roles: &who.roles,
            groups: &who.groups,
            scopes: &who.scopes,
            tenant: who.tenant.as_deref(),
            binding: who.binding.as_str(),
            req: binding,
        };
        match &self.key {
            SigningKey::Hs256(k) => compact_jws("HS256", self.kid(), &claims, |input| k.tag(input)),
            SigningKey::EdDsa(k) => compact_jws("EdDSA", self.kid(), &claims, |input| {
                use ed25519_dalek::Signer as _;
                k.sign(input).to_bytes().to_vec()
            }),
        }
    }

    /// The local answer for `GET <jwks_path>`, when this request asks for it.
    pub fn jwks_response(&self, method: &str, path: &str) -> Option<Response> {
        let (wanted, body) = (self.config.jwks_path.as_deref()?, self.jwks.as_ref()?);
        if path != wanted || !(method == "GET" || method == "HEAD") {
            return None;
        }
        Some(Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "max-age=300".into()),
            ],
            body: body.clone().into_bytes(),
        })
    }
}

/// The JOSE header of an assertion (RFC 7515 §4), members in this order.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'static str,
}

/// A compact JWS (RFC 7515 §7.1): `base64url(header).base64url(claims).base64url(signature)`,
/// the signature made by `sign` over the first two parts.
fn compact_jws(
    alg: &'static str,
    kid: &str,
    claims: &Claims<'_>,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Option<String> {
    let header = Header {
        alg,
        kid,
        typ: "JWT",
    };
    let mut out = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).ok()?);
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).ok()?));
    let signature = sign(out.as_bytes());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Some(out)
}

/// The headers that carry a minted assertion for `who`: the assertion header, and the request id
/// header when the request had none (its value is then the request's nonce, like the `jti`).
pub fn mint_headers(
    signer: &Signer,
    who: &Identity,
    facts: &RequestFacts,
    now: u64,
) -> Option<Vec<HeaderOp>> {
    let config = &signer.config;
    let mut ops = Vec::new();
    let id = match facts.header(&config.request_id_header) {
        Some(id) if !id.is_empty() => id,
        _ => {
            ops.push(HeaderOp::Set(
                config.request_id_header.clone(),
                facts.nonce.clone(),
            ));
            facts.nonce.as_str()
        }
    };
    let binding = Binding {
        method: &facts.method,
        path: facts.path_only(),
        id,
    };
    let token = signer.mint(who, &binding, &facts.nonce, now)?;
    ops.push(HeaderOp::Set(config.header.to_ascii_lowercase(), token));
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::{
        Duration, Ed25519KeyPair, Ed25519PublicKey, EdDSAPublicKeyLike, HS256Key, MACLike,
        NoCustomClaims, UnixTimeStamp, VerificationOptions,
    };
    use serde_json::json;

    fn config(keys: serde_json::Value, jwks_path: Option<&str>) -> AssertionConfig {
        serde_json::from_value(json!({"audience": "svc", "keys": keys, "jwks_path": jwks_path}))
            .unwrap()
    }

    fn who() -> Identity {
        Identity {
            subject: Some("alice".into()),
            issuer: "https://idp.test".into(),
            provider: "idp".into(),
            roles: vec!["admin".into()],
            groups: vec![],
            scopes: vec!["runs:write".into()],
            tenant: Some("acme".into()),
            binding: crate::identity::TokenBinding::Dpop,
            claims: Default::default(),
            token_hash: None,
        }
    }

    fn payload(token: &str) -> serde_json::Value {
        use base64::Engine;
        let part = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const BINDING: Binding<'static> = Binding {
        method: "POST",
        path: "/runs/hello/hello",
        id: "req-1",
    };

    #[test]
    fn hs256_assertion_carries_identity_and_binding() {
        let s = Signer::new(&config(json!([{"kid": "k1", "secret": SECRET}]), None), "a").unwrap();
        let token = s.mint(&who(), &BINDING, "jti-1", 1_700_000_000).unwrap();
        let key = HS256Key::from_bytes(SECRET.as_bytes());
        let opts = VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(1_700_000_010)),
            ..Default::default()
        };
        key.verify_token::<NoCustomClaims>(&token, Some(opts))
            .unwrap();
        let p = payload(&token);
        assert_eq!(p["iss"], "identity-filter");
        assert_eq!(p["aud"], "svc");
        assert_eq!(p["sub"], "alice");
        assert_eq!(p["idp"], "https://idp.test");
        assert_eq!(p["provider"], "idp");
        assert_eq!(p["roles"], json!(["admin"]));
        assert_eq!(p["scopes"], json!(["runs:write"]));
        assert_eq!(p["tenant"], "acme");
        assert_eq!(p["binding"], "dpop");
        assert_eq!(
            p["req"],
            json!({"method": "POST", "path": "/runs/hello/hello", "id": "req-1"})
        );
        assert_eq!(p["iat"], 1_700_000_000);
        assert_eq!(p["exp"], 1_700_000_060);
        assert_eq!(p["jti"], "jti-1");
        assert_eq!(p["v"], 1);
        assert!(p.get("nbf").is_none());
    }

    /// The identity part of the claims, in jwt-simple's form.
    #[derive(Serialize)]
    struct JwtSimpleCustom<'a> {
        v: u32,
        idp: &'a str,
        provider: &'a str,
        roles: &'a [String],
        groups: &'a [String],
        scopes: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        tenant: Option<&'a str>,
        binding: &'static str,
        req: &'a Binding<'a>,
    }

    /// The HS256 assertion jwt-simple mints, for comparison.
    fn jwt_simple_hs256(
        config: &AssertionConfig,
        who: &Identity,
        binding: &Binding<'_>,
        jti: &str,
        now: u64,
    ) -> String {
        use jwt_simple::prelude::Claims;
        let custom = JwtSimpleCustom {
            v: CONTRACT_VERSION,
            idp: &who.issuer,
            provider: &who.provider,
            roles: &who.roles,
            groups: &who.groups,
            scopes: &who.scopes,
            tenant: who.tenant.as_deref(),
            binding: who.binding.as_str(),
            req: binding,
        };
        let mut claims =
            Claims::with_custom_claims(custom, Duration::from_secs(config.lifetime_seconds))
                .with_issuer(&config.issuer)
                .with_audience(&config.audience)
                .with_jwt_id(jti);
        if let Some(sub) = &who.subject {
            claims = claims.with_subject(sub);
        }
        claims.issued_at = Some(UnixTimeStamp::from_secs(now));
        claims.expires_at = Some(UnixTimeStamp::from_secs(now + config.lifetime_seconds));
        claims.invalid_before = None;
        let key = &config.keys[0];
        HS256Key::from_bytes(key.secret.as_ref().unwrap().as_bytes())
            .with_key_id(&key.kid)
            .authenticate(claims)
            .unwrap()
    }

    #[test]
    fn hs256_assertion_matches_jwt_simple_byte_for_byte() {
        // HMAC is deterministic: the same header, claims and secret give the same token, so the
        // whole compact JWS (header, claims JSON and their order, base64url, tag) is compared.
        let mut anonymous = who();
        anonymous.subject = None;
        anonymous.tenant = None;
        anonymous.groups = vec!["g1".into(), "g \"2\"".into()];
        anonymous.binding = crate::identity::TokenBinding::None;
        let mut long_lived = config(
            json!([{"kid": "k-é", "secret": "s".repeat(100)}, {"kid": "k2", "secret": SECRET}]),
            None,
        );
        long_lived.lifetime_seconds = 3600;
        long_lived.issuer = "https://filter.test/ä".into();
        let configs = [
            config(json!([{"kid": "k1", "secret": SECRET}]), None),
            long_lived,
        ];
        let binding = Binding {
            method: "GET",
            path: "/a/ü?",
            id: "r\u{1}",
        };
        for c in &configs {
            let s = Signer::new(c, "a").unwrap();
            for w in [who(), anonymous.clone()] {
                for b in [&BINDING, &binding] {
                    for now in [0, 1_700_000_000, 4_000_000_000] {
                        let ours = s.mint(&w, b, "jti-1", now).unwrap();
                        assert_eq!(ours, jwt_simple_hs256(c, &w, b, "jti-1", now));
                    }
                }
            }
        }
        let token = Signer::new(&configs[0], "a")
            .unwrap()
            .mint(&who(), &BINDING, "j", 1)
            .unwrap();
        let header = URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        assert_eq!(header, br#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#);
    }

    #[test]
    fn eddsa_assertion_verifies_with_published_jwks() {
        let pair = Ed25519KeyPair::generate().with_key_id("ed1");
        let jwk: serde_json::Value = serde_json::from_str(&pair.to_jwk()).unwrap();
        let s = Signer::new(
            &config(json!([{"kid": "ed1", "private_jwk": jwk}]), Some("/jwks")),
            "a",
        )
        .unwrap();
        let token = s.mint(&who(), &BINDING, "j", 1_700_000_000).unwrap();
        let r = s.jwks_response("GET", "/jwks").unwrap();
        assert_eq!(r.status, 200);
        let jwks: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], "ed1");
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "private part must never be published"
        );
        let public = Ed25519PublicKey::from_jwk(&jwks["keys"][0].to_string()).unwrap();
        let opts = VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(1_700_000_001)),
            ..Default::default()
        };
        public
            .verify_token::<NoCustomClaims>(&token, Some(opts))
            .unwrap();
        // The header as JOSE libraries write it; the claims those of an HS256 assertion of the
        // same request (which match jwt-simple's byte for byte, see above).
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
            br#"{"alg":"EdDSA","kid":"ed1","typ":"JWT"}"#
        );
        let hs = Signer::new(&config(json!([{"kid": "k1", "secret": SECRET}]), None), "a")
            .unwrap()
            .mint(&who(), &BINDING, "j", 1_700_000_000)
            .unwrap();
        assert_eq!(hs.split('.').nth(1), Some(parts[1]));
        assert!(s.jwks_response("POST", "/jwks").is_none());
        assert!(s.jwks_response("GET", "/other").is_none());
    }

    #[test]
    fn private_jwk_whose_x_is_not_d_s_public_key_is_refused() {
        let pair = Ed25519KeyPair::generate();
        let other = Ed25519KeyPair::generate();
        let mut jwk: serde_json::Value = serde_json::from_str(&pair.to_jwk()).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(&other.to_jwk()).unwrap();
        jwk["x"] = theirs["x"].clone();
        let e = Signer::new(
            &config(json!([{"kid": "k", "private_jwk": jwk}]), None),
            "a",
        )
        .unwrap_err();
        assert_eq!(e.path, "a.keys[0].private_jwk.x");
        assert_eq!(e.message, "is not the public key of `d`");
    }

    #[test]
    fn private_jwk_fields_are_checked_one_by_one() {
        let pair = Ed25519KeyPair::generate();
        let good: serde_json::Value = serde_json::from_str(&pair.to_jwk()).unwrap();
        let cases = [
            ("kty", json!("EC"), "a.keys[0].private_jwk.kty"),
            ("crv", json!("X25519"), "a.keys[0].private_jwk.crv"),
            ("alg", json!("ES256"), "a.keys[0].private_jwk.alg"),
            ("use", json!("enc"), "a.keys[0].private_jwk.use"),
            ("d", json!("AAAA"), "a.keys[0].private_jwk.d"),
            ("d", json!("not base64!"), "a.keys[0].private_jwk.d"),
            ("x", json!(7), "a.keys[0].private_jwk.x"),
        ];
        for (name, value, path) in cases {
            let mut jwk = good.clone();
            jwk[name] = value.clone();
            let e = Signer::new(
                &config(json!([{"kid": "k", "private_jwk": jwk}]), None),
                "a",
            )
            .unwrap_err();
            assert_eq!(e.path, path, "{name} = {value}: {}", e.message);
        }
        let mut no_d = good.clone();
        no_d.as_object_mut().unwrap().remove("d");
        let e = Signer::new(
            &config(json!([{"kid": "k", "private_jwk": no_d}]), None),
            "a",
        )
        .unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("a.keys[0].private_jwk.d", "is required")
        );
        // The key jwt-simple (and so any JOSE library) exports is accepted as it is.
        assert!(Signer::new(
            &config(json!([{"kid": "k", "private_jwk": good}]), None),
            "a"
        )
        .is_ok());
    }

    #[test]
    fn bad_private_jwk_names_its_path() {
        let e = Signer::new(
            &config(json!([{"kid": "x", "private_jwk": {"kty": "OKP"}}]), None),
            "headers.assertion",
        )
        .unwrap_err();
        assert_eq!(e.path, "headers.assertion.keys[0].private_jwk.crv");
        assert_eq!(e.message, "is required");
        let e = Signer::new(
            &config(json!([{"kid": "x", "private_jwk": "a string"}]), None),
            "headers.assertion",
        )
        .unwrap_err();
        assert_eq!(e.path, "headers.assertion.keys[0].private_jwk");
    }
}
