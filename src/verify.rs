//! Token verification, in this order: structure ([`Jws::parse`]), algorithm (the provider's
//! allow-list), key (by algorithm and `kid`), signature (the chosen key's own algorithm over
//! the signing input, [`crate::crypto`] / HMAC), then the registered and required claims.
//! Claims are never judged before the signature verifies. Time is passed in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::claims::{self, ClaimPath, Claims};
use crate::config::Provider;
use crate::jose::Algorithm;
use crate::jwks::KeySet;
use crate::reason::Reason;

/// A compact JWS split and decoded, not yet verified.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    /// The header's `alg`, as sent (unverified; checked against the provider's allow-list).
    pub alg: String,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// The payload, decoded but unverified: read only to choose the provider by `iss`.
    pub payload: Claims,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

impl<'a> Jws<'a> {
    /// Split and decode a compact JWS: exactly three base64url parts (no padding), a header and
    /// a payload that are JSON objects without duplicate keys, a string `alg`, a string `kid` if
    /// any, a `typ` (if any) of `JWT` or `*+JWT`, and no `crit`. Anything else: `TokenMalformed`.
    pub fn parse(token: &'a str) -> Result<Jws<'a>, Reason> {
        let Parts {
            signing_input,
            header,
            payload,
            signature,
        } = Parts::split(token).ok_or(Reason::TokenMalformed)?;
        let header = decode_object(header)?;
        let payload = decode_object(payload)?;
        let signature = decode_part(signature)?;
        let alg = header_alg(&header)?;
        reject_critical(&header)?;
        check_type(&header)?;
        let kid = header_kid(&header)?;
        Ok(Jws {
            alg,
            kid,
            payload,
            signing_input,
            signature,
        })
    }

    /// The unverified `iss` claim, for choosing a provider.
    pub fn issuer(&self) -> Option<&str> {
        self.payload.get("iss").and_then(|v| v.as_str())
    }
}

/// The three base64url parts of a compact JWS, not yet decoded.
pub(crate) struct Parts<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
}

impl<'a> Parts<'a> {
    /// Exactly three `.`-separated parts, or `None`.
    pub(crate) fn split(token: &'a str) -> Option<Parts<'a>> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        if payload.contains('.') {
            return None;
        }
        Some(Parts {
            signing_input,
            header,
            payload,
            signature,
        })
    }
}

/// One base64url part, strictly: no padding, no stray characters, canonical trailing bits.
pub(crate) fn decode_part(part: &str) -> Result<Vec<u8>, Reason> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Reason::TokenMalformed)
}

/// A base64url part holding a JSON object with no duplicate keys at any depth.
pub(crate) fn decode_object(part: &str) -> Result<Map<String, Value>, Reason> {
    match serde_json::from_slice::<UniqueKeys>(&decode_part(part)?) {
        Ok(UniqueKeys(Value::Object(object))) => Ok(object),
        _ => Err(Reason::TokenMalformed),
    }
}

/// The header's `alg` must be a string (whether it is acceptable is decided by [`verify`]).
pub(crate) fn header_alg(header: &Map<String, Value>) -> Result<String, Reason> {
    match header.get("alg") {
        Some(Value::String(alg)) => Ok(alg.clone()),
        _ => Err(Reason::TokenMalformed),
    }
}

/// We understand no critical header extension (RFC 7515 §4.1.11), so any `crit` is refused.
pub(crate) fn reject_critical(header: &Map<String, Value>) -> Result<(), Reason> {
    if header.contains_key("crit") {
        return Err(Reason::TokenMalformed);
    }
    Ok(())
}

/// A `typ`, when present, says JWT: `JWT` or `<something>+JWT` (e.g. `at+jwt`), any case. This
/// is also jwt-simple's rule, so the refusal is ours and explicit.
fn check_type(header: &Map<String, Value>) -> Result<(), Reason> {
    match header.get("typ") {
        None => Ok(()),
        Some(Value::String(typ)) => {
            let upper = typ.to_ascii_uppercase();
            if upper == "JWT" || upper.ends_with("+JWT") {
                Ok(())
            } else {
                Err(Reason::TokenMalformed)
            }
        }
        Some(_) => Err(Reason::TokenMalformed),
    }
}

/// The header's `kid`, which must be a string when present.
fn header_kid(header: &Map<String, Value>) -> Result<Option<String>, Reason> {
    match header.get("kid") {
        None => Ok(None),
        Some(Value::String(kid)) => Ok(Some(kid.clone())),
        Some(_) => Err(Reason::TokenMalformed),
    }
}

/// Verify a parsed token against a provider and its keys at `now` (Unix seconds): algorithm,
/// key, signature, then claims. Returns the verified claims.
pub fn verify(
    jws: &Jws<'_>,
    provider: &Provider,
    keys: &KeySet,
    now: u64,
) -> Result<Claims, Reason> {
    let alg = allowed_algorithm(&jws.alg, &provider.algorithms)?;
    verify_signature(jws, alg, keys)?;
    check_claims(&jws.payload, provider, now)?;
    Ok(jws.payload.clone())
}

/// The token's `alg` must be a known algorithm in the provider's allow-list (empty list: every
/// asymmetric algorithm). `none` and unknown names are never allowed.
pub fn allowed_algorithm(name: &str, allowed: &[Algorithm]) -> Result<Algorithm, Reason> {
    let alg = Algorithm::from_name(name).ok_or(Reason::AlgorithmNotAllowed)?;
    let allowed = if allowed.is_empty() {
        &Algorithm::ASYMMETRIC[..]
    } else {
        allowed
    };
    if !allowed.contains(&alg) {
        return Err(Reason::AlgorithmNotAllowed);
    }
    Ok(alg)
}

/// Check the signature with the keys that may serve `alg` (and the token's `kid`, if it names
/// one): none → `KeyNotFound`; every candidate fails → `SignatureInvalid`. Each key verifies
/// with its own algorithm (the one it was selected for) over `header.payload` as sent.
fn verify_signature(jws: &Jws<'_>, alg: Algorithm, keys: &KeySet) -> Result<(), Reason> {
    let mut candidates = keys.select(alg, jws.kid.as_deref()).peekable();
    if candidates.peek().is_none() {
        return Err(Reason::KeyNotFound);
    }
    if !signature_length_fits(alg, jws.signature.len()) {
        return Err(Reason::SignatureInvalid);
    }
    let signing_input = jws.signing_input.as_bytes();
    if candidates.any(|key| key.verify_signature(signing_input, &jws.signature)) {
        Ok(())
    } else {
        Err(Reason::SignatureInvalid)
    }
}

/// A signature of the wrong size cannot verify. Sizes are fixed except for RSA (the modulus').
pub fn signature_length_fits(alg: Algorithm, len: usize) -> bool {
    let expected = match alg {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        Algorithm::ES256 | Algorithm::EdDSA | Algorithm::HS512 => 64,
        Algorithm::ES384 => 96,
        _ => return true,
    };
    len == expected
}

/// Judge the claims of a token whose signature has verified, at `now` (Unix seconds), with the
/// provider's clock skew: the types of the registered claims, then `exp`, `nbf`, `iat`,
/// lifetime, `iss`, `aud`, then required claims.
pub fn check_claims(claims: &Claims, provider: &Provider, now: u64) -> Result<(), Reason> {
    check_claim_types(claims)?;
    let exp = numeric_date(claims, "exp")?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    let now = now as f64;
    let skew = provider.clock_skew_seconds as f64;
    check_expiration(exp, now, skew, provider.require_expiration)?;
    check_not_before(nbf, now, skew)?;
    check_issued_at(iat, now, skew)?;
    check_lifetime(exp, iat, now, provider.max_lifetime_seconds)?;
    check_issuer(claims, provider)?;
    check_audience(claims, &provider.audiences, &provider.audience_claims)?;
    check_required(claims, &provider.require_claims)
}

/// The registered claims that are not times must have their registered types (RFC 7519 §4.1;
/// `null` counts as absent, except for `aud`): `iss`, `sub`, `jti` (and OIDC's `nonce`) are
/// strings, `aud` is a string or an array of strings. Anything else is `TokenMalformed`, even
/// where no rule reads the claim: readers downstream would disagree on what it says. (The time
/// claims are typed by [`numeric_date`].)
fn check_claim_types(claims: &Claims) -> Result<(), Reason> {
    for name in ["iss", "sub", "jti", "nonce"] {
        match claims.get(name) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => return Err(Reason::TokenMalformed),
        }
    }
    match claims.get("aud") {
        None | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(Reason::TokenMalformed),
    }
}

/// A NumericDate claim: absent, or a JSON number (integer or not) that is not negative.
/// Anything else is malformed.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<f64>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(date) if date >= 0.0 => Ok(Some(date)),
            _ => Err(Reason::TokenMalformed),
        },
        Some(_) => Err(Reason::TokenMalformed),
    }
}

/// `now > exp + skew` → expired; no `exp` → `ClaimMissing` when the provider requires one.
fn check_expiration(exp: Option<f64>, now: f64, skew: f64, required: bool) -> Result<(), Reason> {
    match exp {
        None if required => Err(Reason::ClaimMissing),
        Some(exp) if now > exp + skew => Err(Reason::TokenExpired),
        _ => Ok(()),
    }
}

/// `nbf > now + skew` → not yet valid.
fn check_not_before(nbf: Option<f64>, now: f64, skew: f64) -> Result<(), Reason> {
    match nbf {
        Some(nbf) if nbf > now + skew => Err(Reason::TokenNotYetValid),
        _ => Ok(()),
    }
}

/// `iat > now + skew` → issued in the future, not yet valid.
fn check_issued_at(iat: Option<f64>, now: f64, skew: f64) -> Result<(), Reason> {
    match iat {
        Some(iat) if iat > now + skew => Err(Reason::TokenNotYetValid),
        _ => Ok(()),
    }
}

/// With a maximum lifetime: `exp - iat` (or `exp - now` without `iat`) above it → `TokenTooOld`.
/// A token without `exp` has no bounded lifetime and is refused too.
fn check_lifetime(
    exp: Option<f64>,
    iat: Option<f64>,
    now: f64,
    max: Option<u64>,
) -> Result<(), Reason> {
    let Some(max) = max else { return Ok(()) };
    match exp {
        Some(exp) if exp - iat.unwrap_or(now) <= max as f64 => Ok(()),
        _ => Err(Reason::TokenTooOld),
    }
}

/// `iss` must be exactly the provider's issuer, or match its pattern with a listed tenant.
fn check_issuer(claims: &Claims, provider: &Provider) -> Result<(), Reason> {
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if crate::issuer::accepts(provider, iss).is_some() => Ok(()),
        _ => Err(Reason::IssuerUnknown),
    }
}

/// With configured audiences, the token's audiences must include one of them. Its audiences are
/// the strings found in the audience claims (`aud` by default): a string, or the strings of an
/// array.
fn check_audience(
    claims: &Claims,
    audiences: &[String],
    audience_claims: &[ClaimPath],
) -> Result<(), Reason> {
    if audiences.is_empty() {
        return Ok(());
    }
    let listed = |aud: &Value| {
        aud.as_str()
            .is_some_and(|a| audiences.iter().any(|x| x == a))
    };
    let matches = audience_claims
        .iter()
        .filter_map(|path| path.lookup(claims))
        .any(|found| match found {
            Value::Array(items) => items.iter().any(listed),
            aud => listed(aud),
        });
    if !matches {
        return Err(Reason::AudienceMismatch);
    }
    Ok(())
}

/// Every required claim path must be present and not `null`.
fn check_required(claims: &Claims, required: &[ClaimPath]) -> Result<(), Reason> {
    for path in required {
        if claims::lookup(claims, path).is_none_or(Value::is_null) {
            return Err(Reason::ClaimMissing);
        }
    }
    Ok(())
}

/// A JSON value read like `serde_json::Value`, except that an object with a duplicate key (at
/// any depth) is an error: a token whose readers could disagree on a claim is malformed.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueKeys(value) = map.next_value()?;
            if object.insert(key, value).is_some() {
                return Err(A::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(object))
    }
}

/// jwt-simple's own token verification (signature and claims in one `verify_token`), for the
/// tests only: an independent second opinion that the
/// signature checks and [`check_claims`] refuse every token it refused, for the same reason.
#[cfg(test)]
mod library {
    use std::collections::HashSet;

    use jwt_simple::prelude::{Duration, UnixTimeStamp, VerificationOptions};
    use jwt_simple::JWTError;

    use crate::config::Provider;
    use crate::reason::Reason;

    /// Largest whole-second value jwt-simple's clock type (coarsetime, 32.32 fixed point) can hold.
    const LIBRARY_MAX_SECONDS: u64 = u32::MAX as u64;

    /// jwt-simple's options: our `now` (it never reads the clock), our skew instead of its 15-minute
    /// default, our issuer and audiences. Its size limits are lifted: ours apply before parsing.
    /// `now + skew` is kept within its clock's range so that its arithmetic cannot overflow.
    pub(super) fn library_options(
        provider: &Provider,
        now: u64,
        token_len: usize,
    ) -> VerificationOptions {
        let now = now.min(LIBRARY_MAX_SECONDS);
        let skew = provider.clock_skew_seconds.min(LIBRARY_MAX_SECONDS - now);
        VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            time_tolerance: Some(Duration::from_secs(skew)),
            accept_future: false,
            // A pattern's `iss` is checked by `check_issuer`, which runs on every token.
            allowed_issuers: (!crate::issuer::is_pattern(&provider.issuer))
                .then(|| HashSet::from([provider.issuer.clone()])),
            allowed_audiences: (!provider.audiences.is_empty())
                .then(|| provider.audiences.iter().cloned().collect()),
            max_validity: None,
            max_token_length: None,
            max_header_length: Some(token_len),
            ..VerificationOptions::default()
        }
    }

    /// What a jwt-simple error means for us.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) enum Failure {
        /// The signature does not verify with this key: try the next one.
        Signature,
        /// The signature verified; jwt-simple refused a claim.
        Claims(Reason),
        /// Header or claims jwt-simple cannot read (e.g. a non-string `sub`); no key can help.
        Malformed,
    }

    pub(super) fn classify(error: &jwt_simple::Error) -> Failure {
        match error.downcast_ref::<JWTError>() {
            Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag) => {
                Failure::Signature
            }
            Some(JWTError::TokenHasExpired) => Failure::Claims(Reason::TokenExpired),
            Some(JWTError::TokenNotValidYet | JWTError::ClockDrift) => {
                Failure::Claims(Reason::TokenNotYetValid)
            }
            Some(JWTError::TokenIsTooOld | JWTError::OldTokenReused) => {
                Failure::Claims(Reason::TokenTooOld)
            }
            Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
                Failure::Claims(Reason::IssuerUnknown)
            }
            Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
                Failure::Claims(Reason::AudienceMismatch)
            }
            _ => Failure::Malformed,
        }
    }
}

#[cfg(test)]
use library::{classify, library_options, Failure};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::test_keys::*;
    use crate::jwks::{KeySet, Origin};
    use jwt_simple::prelude::{
        ECDSAP256KeyPairLike, ECDSAP384KeyPairLike, ES256KeyPair, ES384KeyPair, Ed25519KeyPair,
        EdDSAKeyPairLike, HS256Key, HS384Key, HS512Key, JWTClaims, MACLike, PS256KeyPair,
        PS384KeyPair, PS512KeyPair, RS256KeyPair, RS384KeyPair, RS512KeyPair, RSAKeyPairLike,
    };
    use serde_json::json;
    use Algorithm::*;

    const NOW: u64 = 1_700_000_000;
    const ISS: &str = "https://issuer.test";
    const ALL: [Algorithm; 12] = [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512,
    ];

    fn provider(extra: Value) -> Provider {
        let mut p = json!({"name": "test", "issuer": ISS, "jwks": {"keys": []}, "algorithms": ALL.map(|a| a.name())});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        serde_json::from_value(p).unwrap()
    }

    /// A valid payload at `NOW`; tests change what they are about.
    fn payload(changes: Value) -> Value {
        let mut p =
            json!({"iss": ISS, "sub": "alice", "aud": "api", "iat": NOW - 10, "exp": NOW + 600});
        for (k, v) in changes.as_object().unwrap() {
            match v {
                Value::Null => p.as_object_mut().unwrap().remove(k),
                v => p.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        p
    }

    /// One key of each type, each with a `kid`.
    fn keys() -> KeySet {
        KeySet::parse(
            &json!({"keys": [
                with(rsa_jwk(RSA_1), json!({"kid": "rsa"})),
                with(p256_jwk(), json!({"kid": "p256"})),
                with(p384_jwk(), json!({"kid": "p384"})),
                with(ed25519_jwk(), json!({"kid": "ed"})),
                with(oct_jwk(HMAC_SECRET), json!({"kid": "hmac"})),
            ]}),
            Origin::Inline,
        )
        .unwrap()
    }

    fn key_set(keys: Value) -> KeySet {
        KeySet::parse(&json!({ "keys": keys }), Origin::Inline).unwrap()
    }

    /// Sign `payload` with jwt-simple and the test key of `alg` (`RSA_1` for RSA).
    fn sign(alg: Algorithm, kid: Option<&str>, payload: &Value) -> String {
        sign_with(alg, RSA_1, kid, payload)
    }

    /// Sign with a chosen RSA key (other algorithms use their one test key).
    fn sign_with(alg: Algorithm, rsa: &str, kid: Option<&str>, payload: &Value) -> String {
        let claims = JWTClaims {
            issued_at: None,
            expires_at: None,
            invalid_before: None,
            issuer: None,
            subject: None,
            audiences: None,
            jwt_id: None,
            nonce: None,
            custom: payload.as_object().unwrap().clone(),
        };
        macro_rules! signed {
            ($key:expr, $method:ident) => {{
                let key = $key;
                match kid {
                    Some(kid) => key.with_key_id(kid).$method(claims).unwrap(),
                    None => key.$method(claims).unwrap(),
                }
            }};
        }
        match alg {
            RS256 => signed!(RS256KeyPair::from_pem(rsa).unwrap(), sign),
            RS384 => signed!(RS384KeyPair::from_pem(rsa).unwrap(), sign),
            RS512 => signed!(RS512KeyPair::from_pem(rsa).unwrap(), sign),
            PS256 => signed!(PS256KeyPair::from_pem(rsa).unwrap(), sign),
            PS384 => signed!(PS384KeyPair::from_pem(rsa).unwrap(), sign),
            PS512 => signed!(PS512KeyPair::from_pem(rsa).unwrap(), sign),
            ES256 => signed!(ES256KeyPair::from_pem(P256).unwrap(), sign),
            ES384 => signed!(ES384KeyPair::from_pem(P384).unwrap(), sign),
            EdDSA => signed!(Ed25519KeyPair::from_pem(ED25519).unwrap(), sign),
            HS256 => signed!(HS256Key::from_bytes(HMAC_SECRET), authenticate),
            HS384 => signed!(HS384Key::from_bytes(HMAC_SECRET), authenticate),
            HS512 => signed!(HS512Key::from_bytes(HMAC_SECRET), authenticate),
        }
    }

    /// A token from raw header and payload JSON text and a signature.
    fn raw_token(header: &str, payload: &str, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64(header.as_bytes()),
            b64(payload.as_bytes()),
            b64(signature)
        )
    }

    /// An HS256 token with any header, MAC'd with `secret`.
    fn hs256_token(header: &Value, payload: &Value, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        let tag = HS256Key::from_bytes(secret).authentication_tag(input.as_bytes());
        format!("{input}.{}", b64(&tag))
    }

    /// Replace a token's header, keeping its payload and signature.
    fn with_header(token: &str, header: &Value) -> String {
        let (_, rest) = token.split_once('.').unwrap();
        format!("{}.{rest}", b64(header.to_string().as_bytes()))
    }

    fn check(token: &str, provider: &Provider, keys: &KeySet) -> Result<Claims, Reason> {
        let jws = Jws::parse(token)?;
        verify(&jws, provider, keys, NOW)
    }

    fn run(token: &str) -> Result<Claims, Reason> {
        check(token, &provider(json!({})), &keys())
    }

    // ---- structure -------------------------------------------------------------------------

    #[test]
    fn parse_decodes_header_payload_and_signature() {
        let token = raw_token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"me","n":1}"#,
            b"sig",
        );
        let jws = Jws::parse(&token).unwrap();
        assert_eq!(jws.alg, "RS256");
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.payload["n"], 1);
        assert_eq!(jws.issuer(), Some("me"));
        assert_eq!(jws.signature, b"sig");
        assert_eq!(format!("{}.{}", jws.signing_input, b64(b"sig")), token);
    }

    #[test]
    fn parse_requires_exactly_three_parts() {
        let (h, p) = (b64(br#"{"alg":"RS256"}"#), b64(b"{}"));
        for token in [
            "",
            ".",
            "..",
            "...",
            "a",
            "a.b",
            &format!("{h}.{p}"),
            &format!("{h}.{p}.AA.AA"),
            &format!("{h}..{p}.AA"),
        ] {
            assert_eq!(
                Jws::parse(token).unwrap_err(),
                Reason::TokenMalformed,
                "{token:?}"
            );
        }
        assert!(
            Jws::parse(&format!("{h}.{p}.")).is_ok(),
            "an empty signature is well-formed"
        );
    }

    #[test]
    fn parse_requires_unpadded_base64url() {
        let token = raw_token(r#"{"alg":"RS256"}"#, "{}", b"\xfb\xff");
        assert!(Jws::parse(&token).is_ok());
        let (h, p, s) = (b64(br#"{"alg":"RS256"}"#), b64(b"{}"), b64(b"\xfb\xff"));
        for token in [
            format!("{h}=.{p}.{s}"),
            format!("{h}.{p}.{s}="),
            format!("{h}.{p}.+/8"),
            format!("{h}.{p} .{s}"),
            format!("{h}.{p}.{s}\n"),
            format!("{h}.{p}.A"),
        ] {
            assert_eq!(
                Jws::parse(&token).unwrap_err(),
                Reason::TokenMalformed,
                "{token:?}"
            );
        }
    }

    #[test]
    fn parse_requires_json_object_header_and_payload() {
        let ok_header = r#"{"alg":"RS256"}"#;
        for bad in [
            "[]",
            "1",
            r#""x""#,
            "null",
            "",
            "{",
            "{} x",
            "{\"a\":\"\\ud800\"}",
        ] {
            assert_eq!(
                Jws::parse(&raw_token(bad, "{}", b"s")).unwrap_err(),
                Reason::TokenMalformed,
                "{bad}"
            );
            assert_eq!(
                Jws::parse(&raw_token(ok_header, bad, b"s")).unwrap_err(),
                Reason::TokenMalformed,
                "{bad}"
            );
        }
        let not_utf8 = format!(
            "{}.{}.{}",
            b64(ok_header.as_bytes()),
            b64(b"{\"a\":\"\xff\xfe\"}"),
            b64(b"s")
        );
        assert_eq!(Jws::parse(&not_utf8).unwrap_err(), Reason::TokenMalformed);
    }

    #[test]
    fn parse_requires_a_string_alg() {
        for header in [
            "{}",
            r#"{"alg":1}"#,
            r#"{"alg":null}"#,
            r#"{"alg":["RS256"]}"#,
        ] {
            assert_eq!(
                Jws::parse(&raw_token(header, "{}", b"s")).unwrap_err(),
                Reason::TokenMalformed,
                "{header}"
            );
        }
    }

    #[test]
    fn parse_refuses_any_crit_header() {
        for header in [
            r#"{"alg":"RS256","crit":["exp"],"exp":1}"#,
            r#"{"alg":"RS256","crit":[]}"#,
        ] {
            assert_eq!(
                Jws::parse(&raw_token(header, "{}", b"s")).unwrap_err(),
                Reason::TokenMalformed,
                "{header}"
            );
        }
    }

    #[test]
    fn parse_refuses_duplicate_keys() {
        let cases = [
            (r#"{"alg":"RS256","alg":"HS256"}"#, "{}"),
            (r#"{"alg":"RS256","\u0061lg":"HS256"}"#, "{}"),
            (r#"{"alg":"RS256"}"#, r#"{"sub":"alice","sub":"admin"}"#),
            (
                r#"{"alg":"RS256"}"#,
                r#"{"realm":{"roles":[],"roles":["admin"]}}"#,
            ),
            (r#"{"alg":"RS256"}"#, r#"{"list":[{"a":1,"a":2}]}"#),
        ];
        for (header, payload) in cases {
            assert_eq!(
                Jws::parse(&raw_token(header, payload, b"s")).unwrap_err(),
                Reason::TokenMalformed,
                "{header} {payload}"
            );
        }
        assert!(Jws::parse(&raw_token(
            r#"{"alg":"RS256"}"#,
            r#"{"a":{"x":1},"b":{"x":1}}"#,
            b"s"
        ))
        .is_ok());
    }

    #[test]
    fn parse_requires_a_string_kid() {
        assert_eq!(
            Jws::parse(&raw_token(r#"{"alg":"RS256","kid":1}"#, "{}", b"s")).unwrap_err(),
            Reason::TokenMalformed
        );
    }

    #[test]
    fn parse_requires_typ_to_say_jwt() {
        for typ in [r#""JWT""#, r#""jwt""#, r#""at+jwt""#] {
            assert!(
                Jws::parse(&raw_token(
                    &format!(r#"{{"alg":"RS256","typ":{typ}}}"#),
                    "{}",
                    b"s"
                ))
                .is_ok(),
                "{typ}"
            );
        }
        for typ in [r#""JOSE""#, r#""JWE""#, "1", "null"] {
            let token = raw_token(&format!(r#"{{"alg":"RS256","typ":{typ}}}"#), "{}", b"s");
            assert_eq!(
                Jws::parse(&token).unwrap_err(),
                Reason::TokenMalformed,
                "{typ}"
            );
        }
    }

    #[test]
    fn odd_input_is_refused_for_the_reason_that_fits() {
        let huge = "A".repeat(1 << 20);
        let fixed = [
            String::new(),
            ".".repeat(100),
            format!("{huge}.{huge}.{huge}"),
            format!("{}.{huge}.", b64(br#"{"alg":"RS256"}"#)),
            "\u{0}.\u{0}.\u{0}".to_string(),
            "é.é.é".to_string(),
            raw_token("1", "2", b""),
            raw_token(
                r#"{"alg":"RS256"}"#,
                "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
                b"",
            ),
            raw_token(r#"{"alg":"RS256"}"#, &"[".repeat(10_000), b""),
            raw_token(r#"{"alg":"RS256"}"#, r#"{"exp":1e999}"#, b""),
            raw_token(
                r#"{"alg":"RS256"}"#,
                r#"{"exp":-1e308,"nbf":1e308,"iat":-0.0}"#,
                b"s",
            ),
            raw_token(
                r#"{"alg":"EdDSA","kid":"ed"}"#,
                &payload(json!({})).to_string(),
                &[0; 64],
            ),
            raw_token(
                r#"{"alg":"HS256","kid":"hmac","salt":"AA"}"#,
                &payload(json!({})).to_string(),
                &[0; 32],
            ),
        ];
        // A small deterministic generator over characters that matter to the parser.
        let alphabet: Vec<char> = "AQgw_-./+=\"{}[]:,0 é\u{0}eyJ".chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut random = Vec::new();
        for _ in 0..2_000 {
            let mut s = String::new();
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            for _ in 0..(state >> 58) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            random.push(s);
        }
        // Every one is refused, for the reason that fits, at any time: the structurally broken
        // ones as malformed, the well-formed ones with a made-up signature as invalid.
        let (p, k) = (provider(json!({})), keys());
        let verdict =
            |token: &str, now: u64| Jws::parse(token).and_then(|j| verify(&j, &p, &k, now));
        let malformed = fixed.len() - 3;
        for (i, token) in fixed.iter().enumerate() {
            let expected = if i < malformed {
                Reason::TokenMalformed
            } else {
                Reason::SignatureInvalid
            };
            for now in [NOW, u64::MAX] {
                assert_eq!(verdict(token, now).map(|_| ()), Err(expected), "fixed[{i}]");
            }
        }
        for token in &random {
            assert_eq!(
                verdict(token, NOW).map(|_| ()),
                Err(Reason::TokenMalformed),
                "{token:?}"
            );
        }
    }

    // ---- algorithm -------------------------------------------------------------------------

    #[test]
    fn every_algorithm_verifies() {
        let p = provider(json!({}));
        let keys = keys();
        for alg in ALL {
            let claims = check(&sign(alg, None, &payload(json!({}))), &p, &keys)
                .unwrap_or_else(|r| panic!("{alg:?}: {r:?}"));
            assert_eq!(Value::Object(claims), payload(json!({})), "{alg:?}");
        }
    }

    #[test]
    fn none_and_unknown_algorithms_are_not_allowed() {
        let body = payload(json!({})).to_string();
        for alg in ["none", "None", "rs256", "ES512", "Ed25519", "HS1", ""] {
            let token = raw_token(&json!({ "alg": alg }).to_string(), &body, b"");
            assert_eq!(
                run(&token).unwrap_err(),
                Reason::AlgorithmNotAllowed,
                "{alg}"
            );
        }
    }

    #[test]
    fn algorithm_must_be_in_the_provider_list() {
        let token = sign(RS256, Some("rsa"), &payload(json!({})));
        let p = provider(json!({"algorithms": ["ES256", "PS256"]}));
        assert_eq!(
            check(&token, &p, &keys()).unwrap_err(),
            Reason::AlgorithmNotAllowed
        );
        assert_eq!(allowed_algorithm("PS256", &p.algorithms), Ok(PS256));
    }

    #[test]
    fn default_algorithm_list_is_asymmetric_only() {
        let p = provider(json!({"algorithms": []}));
        assert!(check(&sign(ES256, None, &payload(json!({}))), &p, &keys()).is_ok());
        let hs = sign(HS256, Some("hmac"), &payload(json!({})));
        assert_eq!(
            check(&hs, &p, &keys()).unwrap_err(),
            Reason::AlgorithmNotAllowed
        );
    }

    #[test]
    fn rsa_public_key_used_as_hmac_secret_is_refused() {
        let public = RS256KeyPair::from_pem(RSA_1).unwrap().public_key();
        let n = public.to_components().n;
        let secrets = [
            public.to_pem().unwrap().into_bytes(),
            public.to_der().unwrap(),
            n,
        ];
        let p = provider(json!({"algorithms": ["RS256", "HS256"]}));
        let rsa_only = key_set(json!([with(rsa_jwk(RSA_1), json!({"kid": "rsa"}))]));
        let rsa_and_oct = key_set(json!([
            with(rsa_jwk(RSA_1), json!({"kid": "rsa"})),
            oct_jwk(HMAC_SECRET)
        ]));
        assert!(!rsa_only.has_algorithm(HS256));
        for secret in &secrets {
            for kid in [Some("rsa"), None] {
                let mut header = json!({"alg": "HS256", "typ": "JWT"});
                if let Some(kid) = kid {
                    header["kid"] = kid.into();
                }
                let token = hs256_token(&header, &payload(json!({})), secret);
                assert_eq!(
                    check(&token, &p, &rsa_only).unwrap_err(),
                    Reason::KeyNotFound
                );
                let expected = if kid.is_some() {
                    Reason::KeyNotFound
                } else {
                    Reason::SignatureInvalid
                };
                assert_eq!(check(&token, &p, &rsa_and_oct).unwrap_err(), expected);
            }
        }
    }

    #[test]
    fn swapping_alg_between_key_types_is_refused() {
        let es = sign(ES256, Some("p256"), &payload(json!({})));
        assert_eq!(
            run(&with_header(&es, &json!({"alg": "RS256", "kid": "p256"}))).unwrap_err(),
            Reason::KeyNotFound
        );
        assert_eq!(
            run(&with_header(&es, &json!({"alg": "RS256"}))).unwrap_err(),
            Reason::SignatureInvalid
        );
        assert_eq!(
            run(&with_header(&es, &json!({"alg": "ES384"}))).unwrap_err(),
            Reason::SignatureInvalid
        );
    }

    // ---- key ---------------------------------------------------------------------------------

    #[test]
    fn kid_chooses_the_key() {
        let set = key_set(json!([
            with(rsa_jwk(RSA_1), json!({"kid": "a"})),
            with(rsa_jwk(RSA_2), json!({"kid": "b"}))
        ]));
        let p = provider(json!({}));
        assert!(check(
            &sign_with(RS256, RSA_2, Some("b"), &payload(json!({}))),
            &p,
            &set
        )
        .is_ok());
        let mislabelled = sign_with(RS256, RSA_2, Some("a"), &payload(json!({})));
        assert_eq!(
            check(&mislabelled, &p, &set).unwrap_err(),
            Reason::SignatureInvalid
        );
        let unknown = sign_with(RS256, RSA_2, Some("c"), &payload(json!({})));
        assert_eq!(check(&unknown, &p, &set).unwrap_err(), Reason::KeyNotFound);
    }

    #[test]
    fn kid_of_a_key_of_another_type_is_key_not_found() {
        let token = sign(RS256, Some("p256"), &payload(json!({})));
        assert_eq!(run(&token).unwrap_err(), Reason::KeyNotFound);
    }

    #[test]
    fn without_kid_every_compatible_key_is_tried() {
        let set = key_set(json!([
            p256_jwk(),
            with(rsa_jwk(RSA_1), json!({"kid": "a"})),
            rsa_jwk(RSA_2)
        ]));
        let p = provider(json!({}));
        assert!(check(
            &sign_with(PS256, RSA_2, None, &payload(json!({}))),
            &p,
            &set
        )
        .is_ok());
        assert!(check(
            &sign_with(PS256, RSA_1, None, &payload(json!({}))),
            &p,
            &set
        )
        .is_ok());
        let only_one = key_set(json!([rsa_jwk(RSA_1)]));
        let by_other = sign_with(RS256, RSA_2, None, &payload(json!({})));
        assert_eq!(
            check(&by_other, &p, &only_one).unwrap_err(),
            Reason::SignatureInvalid
        );
    }

    #[test]
    fn no_key_for_the_algorithm_is_key_not_found() {
        let set = key_set(json!([rsa_jwk(RSA_1), p256_jwk()]));
        let token = sign(ES384, None, &payload(json!({})));
        assert_eq!(
            check(&token, &provider(json!({})), &set).unwrap_err(),
            Reason::KeyNotFound
        );
    }

    #[test]
    fn jwk_alg_limits_what_a_key_verifies() {
        let set = key_set(json!([with(rsa_jwk(RSA_1), json!({"alg": "PS256"}))]));
        let p = provider(json!({}));
        assert!(check(&sign(PS256, None, &payload(json!({}))), &p, &set).is_ok());
        assert_eq!(
            check(&sign(RS256, None, &payload(json!({}))), &p, &set).unwrap_err(),
            Reason::KeyNotFound
        );
    }

    #[test]
    fn encryption_key_is_not_used() {
        let set = key_set(json!([
            with(rsa_jwk(RSA_1), json!({"kid": "rsa", "use": "enc"})),
            p256_jwk()
        ]));
        let token = sign(RS256, Some("rsa"), &payload(json!({})));
        assert_eq!(
            check(&token, &provider(json!({})), &set).unwrap_err(),
            Reason::KeyNotFound
        );
    }

    #[test]
    fn remote_set_verifies_with_its_usable_keys_and_no_oct_key() {
        let set = KeySet::parse(
            &json!({"keys": [{"kty": "DSA"}, with(oct_jwk(HMAC_SECRET), json!({"kid": "hmac"})), with(rsa_jwk(RSA_1), json!({"kid": "rsa"}))]}),
            Origin::Remote,
        )
        .unwrap();
        let p = provider(json!({}));
        assert!(check(&sign(RS256, Some("rsa"), &payload(json!({}))), &p, &set).is_ok());
        assert_eq!(
            check(&sign(HS256, Some("hmac"), &payload(json!({}))), &p, &set).unwrap_err(),
            Reason::KeyNotFound
        );
        assert_eq!(
            check(&sign(HS256, None, &payload(json!({}))), &p, &set).unwrap_err(),
            Reason::KeyNotFound
        );
    }

    // ---- signature ---------------------------------------------------------------------------

    #[test]
    fn tampered_tokens_are_signature_invalid() {
        for alg in ALL {
            let token = sign(alg, None, &payload(json!({})));
            let (input, signature) = token.rsplit_once('.').unwrap();
            let (header, _) = input.split_once('.').unwrap();
            let forged = format!(
                "{header}.{}.{signature}",
                b64(payload(json!({"sub": "admin"})).to_string().as_bytes())
            );
            assert_eq!(
                run(&forged).unwrap_err(),
                Reason::SignatureInvalid,
                "{alg:?} payload"
            );
            let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
            bytes[5] ^= 1;
            assert_eq!(
                run(&format!("{input}.{}", b64(&bytes))).unwrap_err(),
                Reason::SignatureInvalid,
                "{alg:?} signature"
            );
            assert_eq!(
                run(&format!("{input}.")).unwrap_err(),
                Reason::SignatureInvalid,
                "{alg:?} empty"
            );
            assert_eq!(
                run(&format!("{input}.{}", b64(&bytes[..10]))).unwrap_err(),
                Reason::SignatureInvalid,
                "{alg:?} short"
            );
        }
    }

    #[test]
    fn claims_are_not_judged_before_the_signature_verifies() {
        let bad = [
            json!({"exp": NOW - 10_000}),
            json!({"nbf": NOW + 10_000}),
            json!({"iss": "https://evil.test"}),
            json!({"aud": "other"}),
            json!({"exp": "soon"}),
            json!({"sub": 1}),
        ];
        let p = provider(json!({"audiences": ["api"]}));
        for changes in bad {
            let good = sign(ES256, Some("p256"), &payload(json!({})));
            let signature = good.rsplit_once('.').unwrap().1;
            let header = good.split_once('.').unwrap().0;
            let forged = format!(
                "{header}.{}.{signature}",
                b64(payload(changes.clone()).to_string().as_bytes())
            );
            assert_eq!(
                check(&forged, &p, &keys()).unwrap_err(),
                Reason::SignatureInvalid,
                "{changes}"
            );
            let signed = sign(ES256, Some("p256"), &payload(changes.clone()));
            assert_ne!(
                check(&signed, &p, &keys()).unwrap_err(),
                Reason::SignatureInvalid,
                "{changes}"
            );
        }
    }

    #[test]
    fn key_is_chosen_before_claims_are_judged() {
        let token = sign(ES256, Some("nope"), &payload(json!({"exp": NOW - 10_000})));
        assert_eq!(run(&token).unwrap_err(), Reason::KeyNotFound);
    }

    // ---- claims, end to end ------------------------------------------------------------------

    #[test]
    fn signed_token_with_bad_claims_is_refused_with_the_claim_reason() {
        let p = provider(
            json!({"audiences": ["api"], "require_claims": ["sub"], "max_lifetime_seconds": 3600}),
        );
        let cases = [
            (json!({"exp": NOW - 61}), Reason::TokenExpired),
            (json!({"exp": null}), Reason::ClaimMissing),
            (json!({"nbf": NOW + 61}), Reason::TokenNotYetValid),
            (json!({"iat": NOW + 61}), Reason::TokenNotYetValid),
            (json!({"exp": NOW + 7200}), Reason::TokenTooOld),
            (json!({"iss": "https://other.test"}), Reason::IssuerUnknown),
            (json!({"aud": ["x", "y"]}), Reason::AudienceMismatch),
            (json!({"sub": null}), Reason::ClaimMissing),
            (json!({"exp": "tomorrow"}), Reason::TokenMalformed),
            (json!({"nbf": true}), Reason::TokenMalformed),
            (json!({"sub": 42}), Reason::TokenMalformed),
        ];
        for (changes, reason) in cases {
            for alg in [RS256, ES256, HS256] {
                let token = sign(alg, None, &payload(changes.clone()));
                assert_eq!(
                    check(&token, &p, &keys()).unwrap_err(),
                    reason,
                    "{alg:?} {changes}"
                );
            }
        }
        let ok = sign(
            EdDSA,
            Some("ed"),
            &payload(json!({"aud": ["x", "api"], "exp": (NOW + 600) as f64 + 0.5})),
        );
        assert!(check(&ok, &p, &keys()).is_ok());
    }

    #[test]
    fn no_skew_allows_no_time_outside_the_window() {
        let p = provider(json!({"clock_skew_seconds": 0}));
        let expired = sign(ES256, None, &payload(json!({"exp": NOW - 1})));
        assert_eq!(
            check(&expired, &p, &keys()).unwrap_err(),
            Reason::TokenExpired
        );
        let early = sign(ES256, None, &payload(json!({"nbf": NOW + 1})));
        assert_eq!(
            check(&early, &p, &keys()).unwrap_err(),
            Reason::TokenNotYetValid
        );
        // The window's own edges are inside it.
        let edges = sign(ES256, None, &payload(json!({"nbf": NOW, "exp": NOW})));
        assert_eq!(check(&edges, &p, &keys()).map(|_| ()), Ok(()));
    }

    #[test]
    fn extreme_times_and_skews_saturate() {
        // Time arithmetic saturates instead of overflowing: a skew of u64::MAX accepts any time,
        // no skew refuses a token outside its window, and a far `exp` (1e300) is never passed.
        let far = sign(ES256, None, &payload(json!({"exp": 1e300, "iat": 0})));
        let short = sign(
            ES256,
            None,
            &payload(json!({"iat": NOW, "nbf": NOW, "exp": NOW + 10})),
        );
        for (now, skew, short_verdict) in [
            (0, 0, Err(Reason::TokenNotYetValid)),
            (0, u64::MAX, Ok(())),
            (u64::MAX, 0, Err(Reason::TokenExpired)),
            (u64::MAX, u64::MAX, Ok(())),
            (NOW, u64::MAX, Ok(())),
        ] {
            let p = provider(json!({ "clock_skew_seconds": skew }));
            let at =
                |token: &str| verify(&Jws::parse(token).unwrap(), &p, &keys(), now).map(|_| ());
            assert_eq!(at(&far), Ok(()), "far exp at {now} with skew {skew}");
            assert_eq!(at(&short), short_verdict, "short at {now} with skew {skew}");
        }
        let far = sign(ES256, None, &payload(json!({"exp": 9_999_999_999u64})));
        assert!(check(&far, &provider(json!({})), &keys()).is_ok());
    }

    // ---- claims, rule by rule (no signature involved) ----------------------------------------

    fn claims_of(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    const N: f64 = NOW as f64;

    #[test]
    fn numeric_dates_must_be_numbers() {
        let c = claims_of(json!({"a": 1, "b": 1.5, "c": "1", "d": null, "e": [1]}));
        assert_eq!(numeric_date(&c, "a"), Ok(Some(1.0)));
        assert_eq!(numeric_date(&c, "b"), Ok(Some(1.5)));
        assert_eq!(numeric_date(&c, "z"), Ok(None));
        for bad in ["c", "d", "e"] {
            assert_eq!(numeric_date(&c, bad), Err(Reason::TokenMalformed), "{bad}");
        }
    }

    #[test]
    fn expiration_allows_skew_and_may_be_required() {
        assert_eq!(check_expiration(Some(N - 60.0), N, 60.0, true), Ok(()));
        assert_eq!(
            check_expiration(Some(N - 60.5), N, 60.0, true),
            Err(Reason::TokenExpired)
        );
        assert_eq!(
            check_expiration(Some(N - 1.0), N, 0.0, true),
            Err(Reason::TokenExpired)
        );
        assert_eq!(check_expiration(Some(N), N, 0.0, true), Ok(()));
        assert_eq!(
            check_expiration(None, N, 60.0, true),
            Err(Reason::ClaimMissing)
        );
        assert_eq!(check_expiration(None, N, 60.0, false), Ok(()));
    }

    #[test]
    fn not_before_allows_skew() {
        assert_eq!(check_not_before(Some(N + 60.0), N, 60.0), Ok(()));
        assert_eq!(
            check_not_before(Some(N + 60.5), N, 60.0),
            Err(Reason::TokenNotYetValid)
        );
        assert_eq!(check_not_before(None, N, 0.0), Ok(()));
    }

    #[test]
    fn issued_in_the_future_is_not_yet_valid() {
        assert_eq!(check_issued_at(Some(N + 60.0), N, 60.0), Ok(()));
        assert_eq!(
            check_issued_at(Some(N + 61.0), N, 60.0),
            Err(Reason::TokenNotYetValid)
        );
        assert_eq!(check_issued_at(None, N, 0.0), Ok(()));
    }

    #[test]
    fn lifetime_is_limited_when_configured() {
        assert_eq!(
            check_lifetime(Some(N + 3600.0), Some(N), N, Some(3600)),
            Ok(())
        );
        assert_eq!(
            check_lifetime(Some(N + 3601.0), Some(N), N, Some(3600)),
            Err(Reason::TokenTooOld)
        );
        assert_eq!(
            check_lifetime(Some(N + 3601.0), Some(N + 10.0), N, Some(3600)),
            Ok(())
        );
        assert_eq!(
            check_lifetime(Some(N + 3601.0), None, N, Some(3600)),
            Err(Reason::TokenTooOld)
        );
        assert_eq!(
            check_lifetime(Some(N + 3600.0), None, N, Some(3600)),
            Ok(())
        );
        assert_eq!(
            check_lifetime(None, Some(N), N, Some(3600)),
            Err(Reason::TokenTooOld)
        );
        assert_eq!(check_lifetime(None, None, N, None), Ok(()));
        assert_eq!(check_lifetime(Some(f64::MAX), Some(0.0), N, None), Ok(()));
    }

    #[test]
    fn issuer_must_match_exactly() {
        let p = provider(json!({}));
        assert_eq!(check_issuer(&claims_of(json!({ "iss": ISS })), &p), Ok(()));
        for iss in [
            json!({"iss": "https://issuer.test/"}),
            json!({"iss": 1}),
            json!({}),
        ] {
            assert_eq!(
                check_issuer(&claims_of(iss.clone()), &p),
                Err(Reason::IssuerUnknown),
                "{iss}"
            );
        }
    }

    fn paths(texts: &[&str]) -> Vec<ClaimPath> {
        texts
            .iter()
            .map(|t| ClaimPath::dotted(t).unwrap())
            .collect()
    }

    #[test]
    fn a_pattern_issuer_takes_listed_tenants_only() {
        let p = provider(json!({"issuer": "https://idp.test/{tenant}/v2.0", "tenants": ["acme"]}));
        let check = |iss: &str| check_issuer(&claims_of(json!({ "iss": iss })), &p);
        assert_eq!(check("https://idp.test/acme/v2.0"), Ok(()));
        for other in [
            "https://idp.test/globex/v2.0",
            "https://idp.test/{tenant}/v2.0",
            "https://idp.test//v2.0",
        ] {
            assert_eq!(check(other), Err(Reason::IssuerUnknown), "{other}");
        }
    }

    #[test]
    fn audience_must_name_a_configured_audience() {
        let audiences = ["api".to_string(), "web".to_string()];
        let aud = paths(&["aud"]);
        for claims in [
            json!({"aud": "web"}),
            json!({"aud": ["x", "api"]}),
            json!({"aud": [1, "api"]}),
        ] {
            assert_eq!(
                check_audience(&claims_of(claims.clone()), &audiences, &aud),
                Ok(()),
                "{claims}"
            );
        }
        for claims in [
            json!({"aud": "x"}),
            json!({"aud": []}),
            json!({"aud": ["x"]}),
            json!({"aud": 1}),
            json!({}),
        ] {
            assert_eq!(
                check_audience(&claims_of(claims.clone()), &audiences, &aud),
                Err(Reason::AudienceMismatch),
                "{claims}"
            );
        }
        assert_eq!(check_audience(&claims_of(json!({})), &[], &aud), Ok(()));
    }

    #[test]
    fn audiences_are_the_union_of_the_audience_claims() {
        let audiences = ["client-1".to_string()];
        let cognito = paths(&["aud", "client_id"]);
        for claims in [
            json!({"client_id": "client-1", "token_use": "access"}),
            json!({"aud": "client-1", "token_use": "id"}),
            json!({"aud": ["other"], "client_id": "client-1"}),
            json!({"aud": "other", "azp": "x", "client_id": ["client-1"]}),
        ] {
            assert_eq!(
                check_audience(&claims_of(claims.clone()), &audiences, &cognito),
                Ok(()),
                "{claims}"
            );
        }
        for claims in [
            json!({"client_id": "client-2"}),
            json!({"aud": "other"}),
            json!({"client_id": {"id": "client-1"}}),
            json!({"cid": "client-1"}),
        ] {
            assert_eq!(
                check_audience(&claims_of(claims.clone()), &audiences, &cognito),
                Err(Reason::AudienceMismatch),
                "{claims}"
            );
        }
        // Only the listed claims count: `aud` is not read when it is not listed.
        let client_only = paths(&["client_id"]);
        assert_eq!(
            check_audience(
                &claims_of(json!({"aud": "client-1"})),
                &audiences,
                &client_only
            ),
            Err(Reason::AudienceMismatch)
        );
        let nested = paths(&["kubernetes.io.audience"]);
        assert_eq!(
            check_audience(
                &claims_of(json!({"kubernetes.io": {"audience": "client-1"}})),
                &audiences,
                &nested
            ),
            Ok(())
        );
    }

    #[test]
    fn required_claims_must_be_present_and_not_null() {
        let required = paths(&["sub", "realm_access.roles"]);
        let ok = claims_of(json!({"sub": "a", "realm_access": {"roles": []}}));
        assert_eq!(check_required(&ok, &required), Ok(()));
        for c in [
            json!({"sub": "a"}),
            json!({"sub": null, "realm_access": {"roles": []}}),
            json!({"sub": "a", "realm_access": {"roles": null}}),
        ] {
            assert_eq!(
                check_required(&claims_of(c.clone()), &required),
                Err(Reason::ClaimMissing),
                "{c}"
            );
        }
        let dotted = paths(&["kubernetes.io.serviceaccount.name"]);
        let sa = claims_of(json!({"kubernetes.io": {"serviceaccount": {"name": "w"}}}));
        assert_eq!(check_required(&sa, &dotted), Ok(()));
    }

    #[test]
    fn check_claims_runs_every_rule() {
        let p = provider(json!({"audiences": ["api"], "require_claims": ["sub"]}));
        assert_eq!(
            check_claims(&claims_of(payload(json!({}))), &p, NOW),
            Ok(())
        );
        assert_eq!(
            check_claims(&claims_of(payload(json!({"iat": "x"}))), &p, NOW),
            Err(Reason::TokenMalformed)
        );
        assert_eq!(
            check_claims(&claims_of(payload(json!({"aud": "web"}))), &p, NOW),
            Err(Reason::AudienceMismatch)
        );
    }

    // ---- agreement with jwt-simple's verify_token (an independent second opinion) -----------

    /// jwt-simple's verdict on `token` with the test key of `alg`, with the options
    /// [`library_options`] gives it.
    fn library_verdict(alg: Algorithm, token: &str, p: &Provider) -> Result<(), Failure> {
        use jwt_simple::prelude::{
            ECDSAP256PublicKeyLike, ECDSAP384PublicKeyLike, EdDSAPublicKeyLike, NoCustomClaims,
            RSAPublicKeyLike,
        };
        let options = Some(library_options(p, NOW, token.len()));
        macro_rules! library {
            ($key:expr) => {
                $key.verify_token::<NoCustomClaims>(token, options)
                    .map(|_| ())
            };
        }
        let result = match alg {
            RS256 => library!(RS256KeyPair::from_pem(RSA_1).unwrap().public_key()),
            RS384 => library!(RS384KeyPair::from_pem(RSA_1).unwrap().public_key()),
            RS512 => library!(RS512KeyPair::from_pem(RSA_1).unwrap().public_key()),
            PS256 => library!(PS256KeyPair::from_pem(RSA_1).unwrap().public_key()),
            PS384 => library!(PS384KeyPair::from_pem(RSA_1).unwrap().public_key()),
            PS512 => library!(PS512KeyPair::from_pem(RSA_1).unwrap().public_key()),
            ES256 => library!(ES256KeyPair::from_pem(P256).unwrap().public_key()),
            ES384 => library!(ES384KeyPair::from_pem(P384).unwrap().public_key()),
            EdDSA => library!(Ed25519KeyPair::from_pem(ED25519).unwrap().public_key()),
            HS256 => library!(HS256Key::from_bytes(HMAC_SECRET)),
            HS384 => library!(HS384Key::from_bytes(HMAC_SECRET)),
            HS512 => library!(HS512Key::from_bytes(HMAC_SECRET)),
        };
        result.map_err(|e| classify(&e))
    }

    /// The verdict of jwt-simple and our rules combined: its signature check, then its claim
    /// parsing (a type error is `TokenMalformed`), then our claim rules, then its claim rules.
    fn combined_verdict(token: &str, alg: Algorithm, p: &Provider) -> Result<(), Reason> {
        let ours = || {
            let jws = Jws::parse(token)?;
            check_claims(&jws.payload, p, NOW)
        };
        match library_verdict(alg, token, p) {
            Err(Failure::Signature) => Err(Reason::SignatureInvalid),
            Err(Failure::Malformed) => Err(Reason::TokenMalformed),
            Err(Failure::Claims(reason)) => ours().and(Err(reason)),
            Ok(()) => ours(),
        }
    }

    #[test]
    fn verdicts_agree_with_jwt_simple_verify_token() {
        // (claim, value): `None` removes the claim from the valid payload; `Some(null)` sends null.
        let cases: Vec<(&str, Option<Value>)> = vec![
            ("exp", Some(json!(NOW - 61))),
            ("exp", Some(json!(NOW - 60))),
            ("exp", Some(json!((NOW + 600) as f64 + 0.5))),
            ("exp", Some(json!(1.5))),
            ("exp", Some(json!(-1))),
            ("exp", Some(json!(-1.5))),
            ("exp", Some(json!("soon"))),
            ("exp", Some(json!(true))),
            ("exp", Some(Value::Null)),
            ("exp", None),
            ("nbf", Some(json!(NOW + 61))),
            ("nbf", Some(json!(NOW + 60))),
            ("nbf", Some(json!(-1))),
            ("nbf", Some(json!("x"))),
            ("nbf", Some(Value::Null)),
            ("iat", Some(json!(NOW + 61))),
            ("iat", Some(json!(NOW + 60))),
            ("iat", Some(json!(-1))),
            ("iat", Some(json!(-1.5))),
            ("iat", Some(json!([1]))),
            ("iss", Some(json!("https://other.test"))),
            ("iss", Some(json!(1))),
            ("iss", Some(Value::Null)),
            ("iss", None),
            ("sub", Some(json!(1))),
            ("sub", Some(json!([]))),
            ("sub", Some(json!({}))),
            ("sub", Some(Value::Null)),
            ("sub", None),
            ("jti", Some(json!("id-1"))),
            ("jti", Some(json!(5))),
            ("jti", Some(Value::Null)),
            ("nonce", Some(json!("n"))),
            ("nonce", Some(json!(false))),
            ("aud", Some(json!("other"))),
            ("aud", Some(json!(["x", "api"]))),
            ("aud", Some(json!(["x"]))),
            ("aud", Some(json!([]))),
            ("aud", Some(json!([1, "api"]))),
            ("aud", Some(json!(1))),
            ("aud", Some(json!({}))),
            ("aud", Some(Value::Null)),
            ("aud", None),
            ("custom", Some(json!({"exp": "x", "sub": 1}))),
        ];
        let providers = [
            provider(json!({"audiences": ["api"]})),
            provider(json!({"require_expiration": false})),
        ];
        let keys = keys();
        for alg in [RS256, PS384, ES256, ES384, EdDSA, HS512] {
            for (claim, value) in &cases {
                let mut body = payload(json!({}));
                let object = body.as_object_mut().unwrap();
                match value {
                    Some(value) => object.insert(claim.to_string(), value.clone()),
                    None => object.remove(*claim),
                };
                let token = sign(alg, None, &body);
                let (input, signature) = token.rsplit_once('.').unwrap();
                let mut forged = URL_SAFE_NO_PAD.decode(signature).unwrap();
                forged[3] ^= 0x40;
                let forged = format!("{input}.{}", b64(&forged));
                for p in &providers {
                    for token in [&token, &forged] {
                        assert_eq!(
                            check(token, p, &keys).map(|_| ()),
                            combined_verdict(token, alg, p),
                            "{alg:?} {claim}: {value:?}, audiences {:?}",
                            p.audiences
                        );
                    }
                }
            }
        }
    }
}
