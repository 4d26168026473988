//! JSON Web Key Sets (RFC 7517): keys are parsed once into verifiers (the [`crate::crypto`]
//! keys, with their precomputed constants, for RSA, EC and Ed25519; an HMAC key for `oct`), and a
//! token's keys are chosen by algorithm and `kid`.
//!
//! Reading a fetched set is bounded: at most [`MAX_KEYS`] keys, each checked cheaply (sizes,
//! exponent, odd modulus, EC point on the curve) and prepared (Montgomery constants, point
//! tables, Ed25519 decompression: up to 0.85 ms a key in wasm32) only when a token first needs
//! it. A hostile set of 1,300 P-384 keys took 1.1 s to read when every key was prepared at once.
//! Inline keys are prepared when the configuration loads, so an unusable one is an error there.
//! Key strength is one policy for both: an RSA key shorter than the provider's `min_rsa_bits`
//! is skipped (and reported, see [`KeySet::weak_keys`]), inline or fetched.
//!
//! A key's type decides which algorithms it may serve: RSA → RS*/PS*, EC P-256 → ES256, EC P-384
//! → ES384, OKP Ed25519 → EdDSA, `oct` → HS* only. A JWK's own `alg` narrows that to one; `use`
//! other than `sig`, or `key_ops` without `verify`, takes the key out of verification.

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use serde_json::{Map, Value};

use crate::crypto::{
    self, EcCurve, EcPublicKey, EcVerifier, Ed25519PublicKey, Ed25519Verifier, HashAlg, HmacKey,
    RsaPublicKey, RsaVerifier,
};
use crate::jose::Algorithm;

/// Smallest accepted RSA modulus by default (a provider's `min_rsa_bits`).
pub const MIN_RSA_BITS: usize = 2048;
/// Lowest `min_rsa_bits` a provider may configure: 768- and 829-bit moduli have been factored
/// publicly, and no identity provider publishes keys shorter than 1024 bits.
pub const LOWEST_MIN_RSA_BITS: usize = 1024;
/// Largest accepted RSA modulus.
pub const MAX_RSA_BITS: usize = 4096;
/// Most entries a key set's `keys` array may have (usable or not). Identity providers publish a
/// handful; the bound keeps the work of reading a set small whatever its size in bytes.
pub const MAX_KEYS: usize = 100;

/// Where a key set came from decides how strictly it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Written in the configuration: any unusable key is an error naming its path (an RSA key
    /// shorter than `min_rsa_bits` is skipped, as in a fetched set).
    Inline,
    /// Fetched from an issuer: unusable keys (and every `oct` key) are skipped; an error only
    /// when none is usable.
    Remote,
}

/// A key set parse error, with the path of the offending field inside the JWKS (`keys[1].n`;
/// empty for the document itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    /// Path of the offending field, relative to the JWKS document.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl JwksError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        JwksError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "invalid key set: {}", self.message)
        } else {
            write!(f, "invalid key set at {}: {}", self.path, self.message)
        }
    }
}

/// A parsed key set: one `Verifier` per (usable key, algorithm it may serve).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    verifiers: Vec<Verifier>,
    keys: usize,
    fingerprint: u64,
    weak: Vec<WeakKey>,
}

/// An RSA key left out of a set because its modulus is shorter than the provider's
/// `min_rsa_bits` (inline and fetched sets alike): tokens it signed get `key_not_found`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakKey {
    /// Where it is in the set (`keys[1]`).
    pub path: String,
    pub kid: Option<String>,
    pub bits: usize,
}

impl std::fmt::Display for WeakKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(kid) = &self.kid {
            write!(f, " (kid {kid:?})")?;
        }
        write!(f, ": RSA modulus has {} bits", self.bits)
    }
}

impl KeySet {
    /// Read a JWKS document (`{"keys": [...]}`) with the default [`MIN_RSA_BITS`].
    pub fn parse(value: &Value, origin: Origin) -> Result<KeySet, JwksError> {
        KeySet::parse_with(value, origin, MIN_RSA_BITS)
    }

    /// Read a JWKS document (`{"keys": [...]}`). See [`Origin`] for how unusable keys are treated;
    /// an RSA key shorter than `min_rsa_bits` is skipped whatever the origin (see
    /// [`KeySet::weak_keys`]).
    pub fn parse_with(
        value: &Value,
        origin: Origin,
        min_rsa_bits: usize,
    ) -> Result<KeySet, JwksError> {
        let min_rsa_bits = min_rsa_bits.clamp(LOWEST_MIN_RSA_BITS, MAX_RSA_BITS);
        let document = value
            .as_object()
            .ok_or_else(|| JwksError::new("", "must be a JWKS object with a `keys` array"))?;
        let keys = match document.get("keys") {
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(JwksError::new("keys", "must be an array")),
            None => return Err(JwksError::new("keys", "is required")),
        };
        if keys.len() > MAX_KEYS {
            return Err(JwksError::new(
                "keys",
                format!("has {} keys; at most {MAX_KEYS} are accepted", keys.len()),
            ));
        }
        let mut set = KeySet::default();
        let mut canonical = Vec::new();
        for (i, jwk) in keys.iter().enumerate() {
            let at = format!("keys[{i}]");
            if let Some(bits) = weak_rsa_bits(jwk, &at, min_rsa_bits) {
                let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
                set.weak.push(WeakKey {
                    path: at,
                    kid,
                    bits,
                });
                continue;
            }
            let parsed = match origin {
                Origin::Remote if jwk.get("kty").and_then(Value::as_str) == Some("oct") => continue,
                Origin::Remote => parse_key(jwk, &at, Prepare::OnFirstUse, min_rsa_bits)
                    .ok()
                    .flatten(),
                Origin::Inline => parse_key(jwk, &at, Prepare::Now, min_rsa_bits)?,
            };
            if let Some(key) = parsed {
                key.write_canonical(&mut canonical);
                set.verifiers.extend(key.verifiers);
                set.keys += 1;
            }
        }
        if origin == Origin::Remote && set.keys == 0 {
            let message = match set.weak.len() {
                0 => "no usable signature verification key".to_string(),
                n => format!(
                    "no usable signature verification key ({n} RSA key(s) shorter than \
                     min_rsa_bits {min_rsa_bits} skipped)"
                ),
            };
            return Err(JwksError::new("keys", message));
        }
        set.fingerprint = fingerprint_of(&canonical);
        Ok(set)
    }

    /// Number of keys whose precomputed form has been built (fetched keys are prepared when a
    /// token first needs them) (tests).
    #[cfg(test)]
    pub fn prepared(&self) -> usize {
        let mut seen: Vec<*const LazyKey> = Vec::new();
        for v in &self.verifiers {
            let key = Arc::as_ptr(&v.jwk);
            if v.jwk.is_prepared() && !seen.contains(&key) {
                seen.push(key);
            }
        }
        seen.len()
    }

    /// RSA keys skipped for being shorter than the provider's `min_rsa_bits`, in set order.
    pub fn weak_keys(&self) -> &[WeakKey] {
        &self.weak
    }

    /// Number of usable keys (JWKs, not algorithms).
    pub fn len(&self) -> usize {
        self.keys
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// True when some key may verify tokens signed with `alg` (tests).
    #[cfg(test)]
    pub fn has_algorithm(&self, alg: Algorithm) -> bool {
        self.verifiers.iter().any(|v| v.alg == alg)
    }

    /// The keys that may verify a token with algorithm `alg` and header `kid`: only keys able to
    /// serve `alg`, and when the token names a `kid`, only those with that `kid`. In set order.
    pub fn select<'s>(
        &'s self,
        alg: Algorithm,
        kid: Option<&'s str>,
    ) -> impl Iterator<Item = &'s Verifier> + 's {
        self.verifiers
            .iter()
            .filter(move |v| v.alg == alg && (kid.is_none() || v.kid.as_deref() == kid))
    }

    /// A stable digest (same input, same value, across runs and builds) of the usable keys,
    /// their `kid`s and algorithms, in set order: it changes when the effective key set does.
    /// For cache invalidation only; not a security boundary.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// A key ready to verify tokens of one algorithm.
#[derive(Clone)]
pub struct Verifier {
    kid: Option<String>,
    alg: Algorithm,
    /// The JWK's key, shared by the verifiers of one JWK.
    jwk: Arc<LazyKey>,
    /// This algorithm's view of it, made on first use (`None`: the key cannot be prepared).
    key: OnceLock<Option<PublicKey>>,
}

/// One JWK's checked material, prepared into its [`KeyMaterial`] at most once.
struct LazyKey {
    kind: Kind,
    material: Vec<u8>,
    built: OnceLock<Option<KeyMaterial>>,
}

impl LazyKey {
    fn get(&self) -> Option<&KeyMaterial> {
        self.built
            .get_or_init(|| build_material(self.kind, &self.material).ok())
            .as_ref()
    }

    /// Whether the precomputed form has been built (tests).
    #[cfg(test)]
    fn is_prepared(&self) -> bool {
        self.built.get().is_some()
    }
}

/// When a key's precomputed form is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prepare {
    /// While the set is read (inline keys: an unusable key is a configuration error).
    Now,
    /// When a token first needs it (fetched keys), after cheap checks while the set is read.
    OnFirstUse,
}

impl std::fmt::Debug for Verifier {
    // Key material (an HMAC secret, for `oct` keys) is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A verifier's key and the one way it verifies; nothing in a token chooses among these.
#[derive(Clone)]
enum PublicKey {
    /// RSASSA-PKCS1-v1_5 (RS*) with this hash. The key (and its Montgomery constants) is
    /// shared by the verifiers of one JWK.
    RsaPkcs1(Arc<RsaPublicKey>, HashAlg),
    /// RSASSA-PSS (PS*) with this hash, MGF1 over it and a salt as long as its output.
    RsaPss(Arc<RsaPublicKey>, HashAlg),
    /// ECDSA (ES256 for a P-256 key, ES384 for a P-384 key), `r ‖ s` signatures.
    Ec(Arc<EcPublicKey>),
    /// Ed25519 (EdDSA), strict verification.
    Ed25519(Ed25519PublicKey),
    /// HMAC (HS256/384/512: the key's hash), the tag over the signing input compared in
    /// constant time. Boxed: its hash states are the largest key here, and most sets have none.
    Hmac(Box<HmacKey>),
}

/// One JWK's key in the form its verifiers use, built once per JWK.
enum KeyMaterial {
    Rsa(Arc<RsaPublicKey>),
    Ec(Arc<EcPublicKey>),
    Ed25519(Ed25519PublicKey),
    Oct(Vec<u8>),
}

impl Verifier {
    /// The key's `kid`, if it has one (tests).
    #[cfg(test)]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this verifier checks (tests).
    #[cfg(test)]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Verify `signature` (the decoded third part of a compact JWS) over `signing_input` (the
    /// ASCII bytes `base64url(header).base64url(payload)`) with this verifier's one algorithm.
    /// Only the signature is checked: the caller matched the token's `alg` to this verifier's
    /// algorithm when it selected it, and judges the claims.
    /// The key is prepared on the first call; a key that cannot be prepared verifies nothing.
    pub fn verify_signature(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        let key = self
            .key
            .get_or_init(|| self.jwk.get().and_then(|m| verifier_key(self.alg, m)));
        let Some(key) = key else {
            return false;
        };
        match key {
            PublicKey::RsaPkcs1(key, hash) => {
                RsaVerifier::verify_pkcs1v15(&**key, *hash, signing_input, signature)
            }
            PublicKey::RsaPss(key, hash) => {
                RsaVerifier::verify_pss(&**key, *hash, signing_input, signature)
            }
            PublicKey::Ec(key) => EcVerifier::verify(&**key, signing_input, signature),
            PublicKey::Ed25519(key) => Ed25519Verifier::verify(key, signing_input, signature),
            PublicKey::Hmac(key) => key.verify(signing_input, signature),
        }
    }
}

/// The kinds of key we support, by `kty` (and `crv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
    Oct,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rsa => "RSA",
            Kind::P256 => "EC P-256",
            Kind::P384 => "EC P-384",
            Kind::Ed25519 => "OKP Ed25519",
            Kind::Oct => "oct",
        }
    }

    /// Algorithm confusion is impossible by construction: only `oct` keys serve HS*, and `oct`
    /// keys serve nothing else.
    fn algorithms(self) -> &'static [Algorithm] {
        use Algorithm::*;
        match self {
            Kind::Rsa => &[RS256, RS384, RS512, PS256, PS384, PS512],
            Kind::P256 => &[ES256],
            Kind::P384 => &[ES384],
            Kind::Ed25519 => &[EdDSA],
            Kind::Oct => &[HS256, HS384, HS512],
        }
    }
}

/// One usable JWK: its verifiers and the bytes that identify it for the fingerprint.
struct ParsedKey {
    kind: Kind,
    material: Vec<u8>,
    verifiers: Vec<Verifier>,
}

impl ParsedKey {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(self.kind.name().as_bytes());
        field(&self.material);
        for v in &self.verifiers {
            field(v.alg.name().as_bytes());
            field(v.kid.as_deref().unwrap_or("").as_bytes());
            field(&[u8::from(v.kid.is_some())]);
        }
    }
}

/// A JWK's public parameters are base64url; padding is tolerated (some issuers send it).
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parse one JWK strictly. `Ok(None)`: a well-formed key that is not for verification.
fn parse_key(
    jwk: &Value,
    at: &str,
    prepare: Prepare,
    min_rsa_bits: usize,
) -> Result<Option<ParsedKey>, JwksError> {
    let jwk = jwk
        .as_object()
        .ok_or_else(|| JwksError::new(at, "must be a JSON object"))?;
    if !is_for_verification(jwk, at)? {
        return Ok(None);
    }
    let kid = optional_str(jwk, at, "kid")?.map(str::to_string);
    let declared = match optional_str(jwk, at, "alg")? {
        None => None,
        Some(name) => Some(Algorithm::from_name(name).ok_or_else(|| {
            JwksError::new(field(at, "alg"), format!("unsupported algorithm `{name}`"))
        })?),
    };
    let kty = optional_str(jwk, at, "kty")?
        .ok_or_else(|| JwksError::new(field(at, "kty"), "is required"))?;
    let (kind, material) = match kty {
        "RSA" => (Kind::Rsa, rsa_material(jwk, at, min_rsa_bits)?),
        "EC" => ec_material(jwk, at)?,
        "OKP" => (Kind::Ed25519, okp_material(jwk, at)?),
        "oct" => (Kind::Oct, bytes(jwk, at, "k")?),
        other => {
            return Err(JwksError::new(
                field(at, "kty"),
                format!("unsupported key type `{other}`"),
            ))
        }
    };
    let algorithms = served_algorithms(kind, declared, material.len(), at)?;
    let unusable = |_| {
        let (name, what) = match kind {
            Kind::Rsa => ("n", "not a usable RSA public key"),
            Kind::P256 | Kind::P384 => ("x", "`x`, `y` is not a point on the curve"),
            Kind::Ed25519 => ("x", "not a valid Ed25519 public key"),
            Kind::Oct => ("k", "not a usable HMAC secret"),
        };
        JwksError::new(field(at, name), what)
    };
    let jwk = Arc::new(LazyKey {
        kind,
        material: material.clone(),
        built: OnceLock::new(),
    });
    match prepare {
        Prepare::Now => {
            let built = build_material(kind, &material).map_err(unusable)?;
            let _ = jwk.built.set(Some(built));
        }
        Prepare::OnFirstUse => check_material(kind, &material).map_err(unusable)?,
    }
    let verifiers = algorithms
        .into_iter()
        .map(|alg| Verifier {
            kid: kid.clone(),
            alg,
            jwk: jwk.clone(),
            key: OnceLock::new(),
        })
        .collect();
    Ok(Some(ParsedKey {
        kind,
        material,
        verifiers,
    }))
}

/// `use` other than `sig`, or `key_ops` without `verify`: the key is not for verification.
fn is_for_verification(jwk: &Map<String, Value>, at: &str) -> Result<bool, JwksError> {
    if let Some(key_use) = optional_str(jwk, at, "use")? {
        if key_use != "sig" {
            return Ok(false);
        }
    }
    match jwk.get("key_ops") {
        None => Ok(true),
        Some(Value::Array(ops)) => {
            let mut verify = false;
            for op in ops {
                let op = op.as_str().ok_or_else(|| {
                    JwksError::new(field(at, "key_ops"), "must be an array of strings")
                })?;
                verify |= op == "verify";
            }
            Ok(verify)
        }
        Some(_) => Err(JwksError::new(
            field(at, "key_ops"),
            "must be an array of strings",
        )),
    }
}

/// The algorithms a key serves: those of its kind, narrowed to its own `alg` if it has one. An
/// HMAC secret must be at least as long as the hash (RFC 7518 §3.2).
fn served_algorithms(
    kind: Kind,
    declared: Option<Algorithm>,
    material_len: usize,
    at: &str,
) -> Result<Vec<Algorithm>, JwksError> {
    if let Some(alg) = declared {
        if !kind.algorithms().contains(&alg) {
            let message = format!(
                "`{}` cannot be used with an {} key",
                alg.name(),
                kind.name()
            );
            return Err(JwksError::new(field(at, "alg"), message));
        }
    }
    let fits = |alg: Algorithm| kind != Kind::Oct || material_len >= hmac_min_bytes(alg);
    let algorithms: Vec<Algorithm> = kind
        .algorithms()
        .iter()
        .copied()
        .filter(|a| declared.is_none_or(|d| d == *a))
        .filter(|a| fits(*a))
        .collect();
    if algorithms.is_empty() {
        let needed = hmac_min_bytes(declared.unwrap_or(Algorithm::HS256));
        return Err(JwksError::new(
            field(at, "k"),
            format!("HMAC secret has {material_len} bytes; at least {needed} are required"),
        ));
    }
    Ok(algorithms)
}

fn hmac_min_bytes(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

/// A verification RSA key whose modulus is shorter than `min_bits`: its size in bits. Keys
/// that are malformed or not for verification are left to [`parse_key`].
fn weak_rsa_bits(jwk: &Value, at: &str, min_bits: usize) -> Option<usize> {
    let jwk = jwk.as_object()?;
    if jwk.get("kty").and_then(Value::as_str) != Some("RSA")
        || !is_for_verification(jwk, at).ok()?
    {
        return None;
    }
    let bits = bit_length(&bytes(jwk, at, "n").ok()?);
    (bits > 0 && bits < min_bits).then_some(bits)
}

/// RSA `n` and `e`, checked for size (`min_bits` to 4096 bits) and exponent (65537).
/// Material: `n`.
fn rsa_material(jwk: &Map<String, Value>, at: &str, min_bits: usize) -> Result<Vec<u8>, JwksError> {
    let n = bytes(jwk, at, "n")?;
    let e = bytes(jwk, at, "e")?;
    let n = trim_leading_zeros(&n).to_vec();
    let bits = bit_length(&n);
    if bits < min_bits {
        return Err(JwksError::new(
            field(at, "n"),
            format!("RSA modulus has {bits} bits; at least {min_bits} are required"),
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(JwksError::new(
            field(at, "n"),
            format!("RSA modulus has {bits} bits; at most {MAX_RSA_BITS} are supported"),
        ));
    }
    if trim_leading_zeros(&e) != [1, 0, 1] {
        return Err(JwksError::new(
            field(at, "e"),
            "RSA exponent must be 65537 (`AQAB`)",
        ));
    }
    Ok(n)
}

/// EC `crv`, `x`, `y`. Material: the SEC1 uncompressed point `0x04 || x || y`.
fn ec_material(jwk: &Map<String, Value>, at: &str) -> Result<(Kind, Vec<u8>), JwksError> {
    let crv = optional_str(jwk, at, "crv")?
        .ok_or_else(|| JwksError::new(field(at, "crv"), "is required"))?;
    let (kind, size) = match crv {
        "P-256" => (Kind::P256, 32),
        "P-384" => (Kind::P384, 48),
        other => {
            return Err(JwksError::new(
                field(at, "crv"),
                format!("unsupported curve `{other}`"),
            ))
        }
    };
    let mut point = vec![0x04];
    for name in ["x", "y"] {
        let coordinate = bytes(jwk, at, name)?;
        if coordinate.len() != size {
            return Err(JwksError::new(
                field(at, name),
                format!("must be {size} bytes for {crv}"),
            ));
        }
        point.extend_from_slice(&coordinate);
    }
    Ok((kind, point))
}

/// OKP `crv` (Ed25519 only) and `x`. Material: `x`.
fn okp_material(jwk: &Map<String, Value>, at: &str) -> Result<Vec<u8>, JwksError> {
    match optional_str(jwk, at, "crv")? {
        Some("Ed25519") => {}
        Some(other) => {
            return Err(JwksError::new(
                field(at, "crv"),
                format!("unsupported curve `{other}`"),
            ))
        }
        None => return Err(JwksError::new(field(at, "crv"), "is required")),
    }
    let x = bytes(jwk, at, "x")?;
    if x.len() != 32 {
        return Err(JwksError::new(
            field(at, "x"),
            "must be 32 bytes for Ed25519",
        ));
    }
    Ok(x)
}

/// An Ed25519 private JWK (`kty` `OKP`, `crv` `Ed25519`, `d`, `x`; `alg` `EdDSA` and `use`
/// `sig` if present): its 32-byte seed and public key `x`, both decoded, not yet checked to
/// belong together (the caller derives `x` from the seed and compares).
pub fn ed25519_private_jwk(jwk: &Value, at: &str) -> Result<([u8; 32], [u8; 32]), JwksError> {
    let jwk = jwk
        .as_object()
        .ok_or_else(|| JwksError::new(at, "must be a JWK object"))?;
    if optional_str(jwk, at, "kty")? != Some("OKP") {
        return Err(JwksError::new(field(at, "kty"), "must be `OKP`"));
    }
    if !matches!(
        optional_str(jwk, at, "alg")?,
        None | Some("EdDSA" | "Ed25519")
    ) {
        return Err(JwksError::new(field(at, "alg"), "must be `EdDSA`"));
    }
    if !matches!(optional_str(jwk, at, "use")?, None | Some("sig")) {
        return Err(JwksError::new(field(at, "use"), "must be `sig`"));
    }
    let x: [u8; 32] = okp_material(jwk, at)?
        .try_into()
        .map_err(|_| JwksError::new(field(at, "x"), "must be 32 bytes for Ed25519"))?;
    let d: [u8; 32] = bytes(jwk, at, "d")?
        .try_into()
        .map_err(|_| JwksError::new(field(at, "d"), "must be 32 bytes for Ed25519"))?;
    Ok((d, x))
}

/// A JWK's key, parsed once from its material (see the `*_material` functions): RSA `n` (the
/// exponent was checked to be 65537), the SEC1 point `04 ‖ x ‖ y`, the Ed25519 `x`, or the
/// HMAC secret.
fn build_material(kind: Kind, material: &[u8]) -> Result<KeyMaterial, crypto::CryptoError> {
    const E: [u8; 3] = [1, 0, 1];
    Ok(match kind {
        // The size was checked against the provider's `min_rsa_bits` when the key was read.
        Kind::Rsa => KeyMaterial::Rsa(Arc::new(<RsaPublicKey as RsaVerifier>::with_min_bits(
            material,
            &E,
            LOWEST_MIN_RSA_BITS,
        )?)),
        Kind::P256 => KeyMaterial::Ec(Arc::new(<EcPublicKey as EcVerifier>::from_sec1(
            EcCurve::P256,
            material,
        )?)),
        Kind::P384 => KeyMaterial::Ec(Arc::new(<EcPublicKey as EcVerifier>::from_sec1(
            EcCurve::P384,
            material,
        )?)),
        Kind::Ed25519 => {
            KeyMaterial::Ed25519(<Ed25519PublicKey as Ed25519Verifier>::new(material)?)
        }
        Kind::Oct => KeyMaterial::Oct(material.to_vec()),
    })
}

/// The checks of [`build_material`] that cost microseconds, without building anything: RSA
/// sizes and exponent were checked when the material was read, here the modulus must be odd;
/// an EC point must be on its curve. Ed25519 and HMAC keys are taken as they are (an Ed25519
/// encoding that is not a point fails on first use and verifies nothing).
fn check_material(kind: Kind, material: &[u8]) -> Result<(), crypto::CryptoError> {
    match kind {
        Kind::Rsa if material.last().is_none_or(|b| b & 1 == 0) => {
            Err(crypto::CryptoError::EvenModulus)
        }
        Kind::P256 => <EcPublicKey as EcVerifier>::check_sec1(EcCurve::P256, material),
        Kind::P384 => <EcPublicKey as EcVerifier>::check_sec1(EcCurve::P384, material),
        _ => Ok(()),
    }
}

/// The verifier key for `alg` from a JWK's parsed key; `None` when the key cannot serve `alg`
/// (which [`Kind::algorithms`] already rules out).
fn verifier_key(alg: Algorithm, key: &KeyMaterial) -> Option<PublicKey> {
    Some(match (alg, key) {
        (Algorithm::RS256, KeyMaterial::Rsa(k)) => PublicKey::RsaPkcs1(k.clone(), HashAlg::Sha256),
        (Algorithm::RS384, KeyMaterial::Rsa(k)) => PublicKey::RsaPkcs1(k.clone(), HashAlg::Sha384),
        (Algorithm::RS512, KeyMaterial::Rsa(k)) => PublicKey::RsaPkcs1(k.clone(), HashAlg::Sha512),
        (Algorithm::PS256, KeyMaterial::Rsa(k)) => PublicKey::RsaPss(k.clone(), HashAlg::Sha256),
        (Algorithm::PS384, KeyMaterial::Rsa(k)) => PublicKey::RsaPss(k.clone(), HashAlg::Sha384),
        (Algorithm::PS512, KeyMaterial::Rsa(k)) => PublicKey::RsaPss(k.clone(), HashAlg::Sha512),
        (Algorithm::ES256, KeyMaterial::Ec(k)) if EcVerifier::curve(&**k) == EcCurve::P256 => {
            PublicKey::Ec(k.clone())
        }
        (Algorithm::ES384, KeyMaterial::Ec(k)) if EcVerifier::curve(&**k) == EcCurve::P384 => {
            PublicKey::Ec(k.clone())
        }
        (Algorithm::EdDSA, KeyMaterial::Ed25519(k)) => PublicKey::Ed25519(k.clone()),
        (Algorithm::HS256, KeyMaterial::Oct(k)) => {
            PublicKey::Hmac(Box::new(HmacKey::new(HashAlg::Sha256, k)?))
        }
        (Algorithm::HS384, KeyMaterial::Oct(k)) => {
            PublicKey::Hmac(Box::new(HmacKey::new(HashAlg::Sha384, k)?))
        }
        (Algorithm::HS512, KeyMaterial::Oct(k)) => {
            PublicKey::Hmac(Box::new(HmacKey::new(HashAlg::Sha512, k)?))
        }
        _ => return None,
    })
}

fn field(at: &str, name: &str) -> String {
    format!("{at}.{name}")
}

/// An optional string member; present with another type is an error.
fn optional_str<'a>(
    jwk: &'a Map<String, Value>,
    at: &str,
    name: &str,
) -> Result<Option<&'a str>, JwksError> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwksError::new(field(at, name), "must be a string")),
    }
}

/// A required base64url member, decoded.
fn bytes(jwk: &Map<String, Value>, at: &str, name: &str) -> Result<Vec<u8>, JwksError> {
    let text = optional_str(jwk, at, name)?
        .ok_or_else(|| JwksError::new(field(at, name), "is required"))?;
    let decoded = JWK_BASE64
        .decode(text)
        .map_err(|_| JwksError::new(field(at, name), "must be base64url"))?;
    if decoded.is_empty() {
        return Err(JwksError::new(field(at, name), "must not be empty"));
    }
    Ok(decoded)
}

fn trim_leading_zeros(x: &[u8]) -> &[u8] {
    let first = x.iter().position(|&b| b != 0).unwrap_or(x.len());
    x.get(first..).unwrap_or_default()
}

fn bit_length(x: &[u8]) -> usize {
    let x = trim_leading_zeros(x);
    match x.first() {
        None => 0,
        Some(&top) => (x.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// HMAC-SHA256 under a fixed label, truncated to 64 bits: stable and not reversible (an `oct`
/// secret is part of the input).
fn fingerprint_of(canonical: &[u8]) -> u64 {
    let tag = HmacKey::new(HashAlg::Sha256, b"identity-filter/jwks-fingerprint/v1")
        .map(|key| key.tag(canonical))
        .unwrap_or_default();
    let mut first = [0u8; 8];
    for (out, byte) in first.iter_mut().zip(tag.iter()) {
        *out = *byte;
    }
    u64::from_be_bytes(first)
}

/// Fixed test keys, generated once with `openssl genpkey` for these tests only, and their JWKs.
#[cfg(test)]
pub(crate) mod test_keys {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jwt_simple::prelude::{
        ECDSAP256PublicKeyLike, ECDSAP384PublicKeyLike, ES256KeyPair, ES384KeyPair,
    };
    use jwt_simple::prelude::{Ed25519KeyPair, RS256KeyPair};
    use serde_json::{json, Value};

    pub const RSA_1: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDOzIXbLjQ8iKjm
iVyv2PoFQnQpY13sZCmuVzQ+QzHukBtssbZE+Awxp8FAZcMQdScuGLuya2BwXHdq
39JmAbMdlVgqV+AB5UlZ8DUdds5lN+aQFk9zvV0QC/XtN6P+2fZYs+4h59gm+8gY
BmzTQiIziIdMu1S71M8jmyCA7WN2WgtctN9bWwqz67Bg6dxHMN9nzTMric/g5/II
uqqJqRnkua2u5dGQ9j2/vgUzDYVsXQgW7Ay01uJa0OOKtYSEdpMeZrVF6EqbSCSo
kFKgZSjKNuNjopLc1TzI7CLP9UOHJeZJ1o93bNCGfspzPoieHWyTnBtelJzxnRoH
UIyABRjPAgMBAAECggEAATqwSn0yEDKiR0qaF57bMJOvVqnFuXXzzKLvxlqmUYLK
yDsvrvhVZXK/Iw6d/cimTHjdQxVj9e27ryZrB0kBVWJQSDCKVueDUNWQEbdMtGzG
RSl58yNzIsOOqbHBQAuEots3mF4IU2Tur7wyK9OhgTiPfbeUtMPEzO0bs16vrek7
kHvRGN08oF7jZ5xdZucN2t1fY5DueN3rjB/j+q84hFpsudKlw1UYYN8/GqJo8p7u
ro3cNQ/3KT5s7IhScXA42KsKM4TFHMOQAVMN6hnNXLD57Pha1tZgp+5OlXQvj2cb
PyoCdFKmQW/+qd0Mg5PB0ELy99Bm5YG+M1FociCnYQKBgQD2fssNRhVjb1RwmOX/
o4+YRgJSM8ZAK1yeGf4tsLHDbbnFxPJ5pefR4wIK/8dwgsI0nQ9+vg51daEs63W8
PPobWqa9jF31qox5sTeQtxD/uj8rJY9BbO1PXa6rsZuouj57p87iESaKoPcQADoK
IrKF+TgBi1YFqv0U/RMnhU8SLwKBgQDWxeDlZySEIq9qD8uSgMGKuQelc6XGIVVs
mV6bWv3ckamxodfjal7WAHzdZWCJOl0putEl0K6mX9iIEQ9BJlnSs+/FSaH/kEW5
dIvpJIqUUaPQh0d+3Z+HgdyZ4byfcr6bbv8ZWEdwu+meaZUivP8KwUavmQDMLtV2
QFR3BE/bYQKBgAXi3zxw6P/X379Ul2F0aXBsc4+89sX/gxWvbzduGcCd9Sq42kV3
ZcLIVfsnQn74UGTrPzx6k2PQrEmjUctt9VcD4ilymafNK8+YIMiO5pQEwY9pNTON
w1j61rn44suzrtxLFJCncjErSNsT9k7Zp0O1wNWgmyxFegevR27RKyM3AoGAOXsU
SdFlEIhH8lbv4PHc2sfSqBFfmLtrJXmWvHWJ4/KIPCZYpWDeqN/Qi2CKia+5J2X8
e+ZyF80nIqOONZ2SBLZrwZ2HYeK3Bn+OwoMpI7EF6tWJ6QZfn+C9reGgnfwTz33R
gHMEC8P/LoqLg5SZncNEq9KDSCJwtwlYkdHxnYECgYAK/uK69hv6FMZI3MhsjbqD
rgk/DmtvRfEmtS2zjaonwcATG9Mg1YgObaSK+7Hhp32czCPAAZJ1kOJe8dz3coes
8zo3wuvpqv3+yhEon5G7qyfy8x07GcWGKLrsIzoWwIGPMmP8eGemD6r9IIsj+TwQ
2E7pUL5DHvW4F6pWZw3oPw==
-----END PRIVATE KEY-----";

    pub const RSA_2: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDumu0bT3bXCtNR
BCMpVaDtScfxYUMVgEpNkLaAzGmvMnT6CZKWdZmN0od3L0ZRqhD4rZm+Y2zvbx5c
+Mq+uS6+/In7VGh2zhvu07ULHn7fcDgZFc+0a1eIHP0pCPPE4smgeLIqqDF2usk6
JUMfbnT2podiIdzF56htiK/hRP++Yb1zhk0FOWMczKY43EehkpEU32+CqeJ0bzqk
JfuqpFT7pKD3gnxZypP3jdwbIJV2ku7Bx441nE24Ua2ptLcZwQHBw5BRDMMnWoxp
cPCWfEo/9SCpGsy0qzAt0q4gHZfLfSCEtOy6dQUdvo0iT7GubM41wCN/qymkuKm3
Yn6BY3N9AgMBAAECggEAZhIhd0rloDVx05kM/5wxZQDohxJf8703S/opkGyhk0Bm
+SWKL1Isd5aFu88d6kZxzyfYerEmw0CKQSRu+urWG/6Fel4P+C7QlTi8nH6VsLjd
TqHdgiVfQwt/owPA4EtSDJNFSGk+C7f46CZTkgkbAP6ZMLoiqwigLQdJkfkF3Gc4
9yqRVpYB/l5qIfrygyI4FOffpjuvliZ5SJ0QcxUl3e8ZpypHpUwpn0M74EK75Rwk
w8frL9q2X8OXik7tbChx4D5ieXMFOksJtpRUr/a9BlboCmEpMMFWUCQXaVCUq09I
8d/Jui2wVLdzrlj83Io4zd2Ar9dmZtFwpue5LbHxwwKBgQD8bfKLy41PtIVZ0j+D
edmVzaMKmAutPOgQ+Cjkf53yyWORpgAOhR4x2v82JUrqalCFYOFeELbwvGcZtiA+
spY5/8hYXKM6pCDx7Pta+wcJVzfaaHLpUWQrlKCfCdcNFR9d5u+G4BQPKTXwzQos
e/4XVNzNOySbvNlxxpT85gBH6wKBgQDx+uuwYG0+JJIm76dlJeTrV9GYINdOswFS
V305gBYj2zcPb0cv39MM5i1cw5WOVy+PrivDnvWRtCY61MMes3p6UXVwUtpAsmBj
dcLYpqdVi4z67Q/JsXILPwZoB/ZcN4YoxDdZyno2lleGwyRj3hmLNRNcyxxZyqKR
ns8/5PwANwKBgHWfned6IAzF52VlTOcsvjDJs3FaTAabXN+bYyKmPKlHIjhaC6i4
ast8anOGiRQWGhMsg5dbXoNqpvgaH4hXmxzHjUlvUTggBqH0dWN9mVfG5mXFSdZi
cLTF+tpgsW6NKyKMW4yTmYU/BL2CLX1xAYNJreGL75EKPKCBkicN3Y+lAoGARpAc
QJ+t24xAjlgeYVGOks5WEV2qS4nJneBjZOwkCKq5QKf7g0tquP06Ry3Fo+9qsCRj
ILVu+OEmsMswZviBg7/TVkDi4jDiCL7jZdgbPcfnAZk1nGRBVGQ5kwaXYcbTOXoW
hfmUb+yhc2veZbzzh/OfRNT53HlJtNsxpnk4vzsCgYEAj/a8ZjeGOsTAURvN5BX4
WAjRgpKkkY1W1tfxnpVA4lAy5wkh2J6j+UpYiIIjf2ztR7j8VP1CUyv0ORCl6c7g
tyB8arVMzP0rLPVfhvJJPryaYAo7hgLkfAvb3xTX5X8XrvnFeijgOp4UzS3ovm/j
M1Y4YoZ+/9ABEdvdD0+2AKE=
-----END PRIVATE KEY-----";

    pub const P256: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgwd1E249itzXXo3RP
vvYqF0rEq3wG+wMxgPqXsjXRRDihRANCAATl7H93h9SKeEPSI5NP+7K5rp/3YR+i
7xpXdtcr+FftwM97ZL1gm6dFkPn6WsqrmQVA25QKR1Lcn8JLFgr2tfkm
-----END PRIVATE KEY-----";

    pub const P384: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDA4SOYzSIXxAHrprmY7
WxnkJ7e/a7vGwb+MQXA/8hK0taiBQI75y1MTz/mtYd1+w+ihZANiAATsIs2CroCj
DXEVI8gVQ34rlLqkbIHY6URFEXxYII3fBrsWUwN7t+7s2xB+GngqU3JFe8Fjq7BQ
Z+WajrXdQiZzxoQ/bzLjLEb+mdF+B/j/wKroypW88tRTTNbDRsLj26I=
-----END PRIVATE KEY-----";

    pub const ED25519: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIGXfc6DEQRBVOtlXYtMnlUQM1XH8yH2cBYDxLZohwkn+
-----END PRIVATE KEY-----";

    /// 64 bytes: long enough for HS256, HS384 and HS512.
    pub const HMAC_SECRET: &[u8] =
        b"test-only hmac secret, 64 bytes long, for HS256, HS384 and HS512";

    pub fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Add members (`kid`, `alg`, `use`, ...) to a JWK.
    pub fn with(mut jwk: Value, members: Value) -> Value {
        for (k, v) in members.as_object().unwrap() {
            jwk[k] = v.clone();
        }
        jwk
    }

    pub fn rsa_jwk(pem: &str) -> Value {
        let c = RS256KeyPair::from_pem(pem)
            .unwrap()
            .public_key()
            .to_components();
        json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
    }

    pub fn p256_jwk() -> Value {
        let point = ES256KeyPair::from_pem(P256)
            .unwrap()
            .public_key()
            .public_key()
            .to_bytes_uncompressed();
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
    }

    pub fn p384_jwk() -> Value {
        let point = ES384KeyPair::from_pem(P384)
            .unwrap()
            .public_key()
            .public_key()
            .to_bytes_uncompressed();
        json!({"kty": "EC", "crv": "P-384", "x": b64(&point[1..49]), "y": b64(&point[49..])})
    }

    /// A token of `issuer` for subject `alice`, signed with [`ED25519`], issued at `now` for
    /// 600 seconds, with `claims` added.
    pub fn sign_ed25519(issuer: &str, now: u64, claims: Value) -> String {
        use jwt_simple::prelude::EdDSAKeyPairLike;
        let pair = Ed25519KeyPair::from_pem(ED25519).unwrap();
        pair.sign(claim_set(issuer, now, claims)).unwrap()
    }

    /// `claims` with `iss` `issuer`, `sub` `alice`, `iat` `now` and `exp` 600 s later.
    fn claim_set(
        issuer: &str,
        now: u64,
        claims: Value,
    ) -> jwt_simple::prelude::JWTClaims<serde_json::Map<String, Value>> {
        use jwt_simple::prelude::{Claims, Duration, UnixTimeStamp};
        let custom = claims.as_object().unwrap().clone();
        let mut c = Claims::with_custom_claims(custom, Duration::from_secs(600))
            .with_issuer(issuer)
            .with_subject("alice");
        c.issued_at = Some(UnixTimeStamp::from_secs(now));
        c.expires_at = Some(UnixTimeStamp::from_secs(now + 600));
        c.invalid_before = None;
        c
    }

    /// [`sign_ed25519`] with RS256 and [`RSA_1`] (header `kid` `rsa-1`).
    pub fn sign_rs256(issuer: &str, now: u64, claims: Value) -> String {
        use jwt_simple::prelude::RSAKeyPairLike;
        let pair = RS256KeyPair::from_pem(RSA_1).unwrap().with_key_id("rsa-1");
        pair.sign(claim_set(issuer, now, claims)).unwrap()
    }

    pub fn ed25519_jwk() -> Value {
        let x = Ed25519KeyPair::from_pem(ED25519)
            .unwrap()
            .public_key()
            .to_bytes();
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&x)})
    }

    pub fn oct_jwk(secret: &[u8]) -> Value {
        json!({"kty": "oct", "k": b64(secret)})
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;
    use serde_json::json;
    use Algorithm::*;

    fn inline(keys: Value) -> Result<KeySet, JwksError> {
        KeySet::parse(&json!({ "keys": keys }), Origin::Inline)
    }

    fn remote(keys: Value) -> Result<KeySet, JwksError> {
        KeySet::parse(&json!({ "keys": keys }), Origin::Remote)
    }

    fn inline_error(keys: Value) -> JwksError {
        inline(keys).unwrap_err()
    }

    fn algorithms(set: &KeySet) -> Vec<Algorithm> {
        [
            RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512,
        ]
        .into_iter()
        .filter(|a| set.has_algorithm(*a))
        .collect()
    }

    #[test]
    fn every_supported_key_type_is_read() {
        let set = inline(json!([
            rsa_jwk(RSA_1),
            p256_jwk(),
            p384_jwk(),
            ed25519_jwk(),
            oct_jwk(HMAC_SECRET)
        ]))
        .unwrap();
        assert_eq!(set.len(), 5);
        assert!(!set.is_empty());
        assert_eq!(algorithms(&set).len(), 12);
    }

    #[test]
    fn key_type_decides_algorithms() {
        let only = |jwk: Value| algorithms(&inline(json!([jwk])).unwrap());
        assert_eq!(
            only(rsa_jwk(RSA_1)),
            vec![RS256, RS384, RS512, PS256, PS384, PS512]
        );
        assert_eq!(only(p256_jwk()), vec![ES256]);
        assert_eq!(only(p384_jwk()), vec![ES384]);
        assert_eq!(only(ed25519_jwk()), vec![EdDSA]);
        assert_eq!(only(oct_jwk(HMAC_SECRET)), vec![HS256, HS384, HS512]);
    }

    #[test]
    fn hmac_secret_length_limits_its_algorithms() {
        let only = |secret: &[u8]| algorithms(&inline(json!([oct_jwk(secret)])).unwrap());
        assert_eq!(only(&[7; 32]), vec![HS256]);
        assert_eq!(only(&[7; 48]), vec![HS256, HS384]);
        let e = inline_error(json!([oct_jwk(&[7; 31])]));
        assert_eq!(e.path, "keys[0].k");
        assert!(e.message.contains("31 bytes"), "{}", e.message);
        let e = inline_error(json!([with(oct_jwk(&[7; 32]), json!({"alg": "HS512"}))]));
        assert_eq!(e.path, "keys[0].k");
    }

    #[test]
    fn jwk_alg_narrows_to_that_algorithm() {
        let set = inline(json!([with(rsa_jwk(RSA_1), json!({"alg": "PS384"}))])).unwrap();
        assert_eq!(algorithms(&set), vec![PS384]);
    }

    #[test]
    fn jwk_alg_of_another_key_type_is_refused_inline_and_skipped_remote() {
        for (jwk, alg) in [
            (rsa_jwk(RSA_1), "HS256"),
            (p256_jwk(), "ES384"),
            (oct_jwk(HMAC_SECRET), "RS256"),
        ] {
            let e = inline_error(json!([with(jwk.clone(), json!({ "alg": alg }))]));
            assert_eq!(e.path, "keys[0].alg", "{alg}");
            assert!(e.message.contains("cannot be used"), "{}", e.message);
        }
        let set = remote(json!([
            with(rsa_jwk(RSA_1), json!({"alg": "HS256"})),
            p256_jwk()
        ]))
        .unwrap();
        assert_eq!(algorithms(&set), vec![ES256]);
    }

    #[test]
    fn unknown_jwk_alg_is_refused_inline() {
        let e = inline_error(json!([with(rsa_jwk(RSA_1), json!({"alg": "RSA-OAEP"}))]));
        assert_eq!(e.path, "keys[0].alg");
        let e = inline_error(json!([with(p256_jwk(), json!({"alg": "none"}))]));
        assert_eq!(e.path, "keys[0].alg");
    }

    #[test]
    fn use_other_than_sig_is_not_for_verification() {
        let keys = json!([
            with(rsa_jwk(RSA_1), json!({"use": "enc", "kid": "e"})),
            with(p256_jwk(), json!({"use": "sig"}))
        ]);
        for set in [inline(keys.clone()).unwrap(), remote(keys).unwrap()] {
            assert_eq!(set.len(), 1);
            assert_eq!(algorithms(&set), vec![ES256]);
            assert_eq!(set.select(RS256, Some("e")).count(), 0);
        }
    }

    #[test]
    fn key_ops_without_verify_is_not_for_verification() {
        let set = inline(json!([
            with(rsa_jwk(RSA_1), json!({"key_ops": ["encrypt"]})),
            with(p256_jwk(), json!({"key_ops": ["sign", "verify"]})),
        ]))
        .unwrap();
        assert_eq!(algorithms(&set), vec![ES256]);
        let e = inline_error(json!([with(p256_jwk(), json!({"key_ops": "verify"}))]));
        assert_eq!(e.path, "keys[0].key_ops");
        let e = inline_error(json!([with(p256_jwk(), json!({"key_ops": [1]}))]));
        assert_eq!(e.path, "keys[0].key_ops");
    }

    #[test]
    fn a_short_rsa_key_is_skipped_inline_and_remote_alike() {
        let small = json!({"kty": "RSA", "kid": "old", "n": b64(&[0xcb; 128]), "e": "AQAB"});
        let good = with(rsa_jwk(RSA_1), json!({"kid": "new"}));
        for origin in [Origin::Inline, Origin::Remote] {
            let set =
                KeySet::parse(&json!({"keys": [small.clone(), good.clone()]}), origin).unwrap();
            assert_eq!(set.len(), 1);
            assert_eq!(set.select(RS256, Some("old")).count(), 0);
            assert_eq!(set.select(RS256, Some("new")).count(), 1);
            assert_eq!(
                set.weak_keys(),
                [WeakKey {
                    path: "keys[0]".into(),
                    kid: Some("old".into()),
                    bits: 1024
                }]
            );
            assert_eq!(
                set.weak_keys()[0].to_string(),
                "keys[0] (kid \"old\"): RSA modulus has 1024 bits"
            );
        }
        // Alone: an inline set is empty (every token gets `key_not_found`); a fetched one is a
        // failed fetch that says why.
        assert!(inline(json!([small.clone()])).unwrap().is_empty());
        let e = remote(json!([small])).unwrap_err();
        assert_eq!(e.path, "keys");
        assert!(e.message.contains("min_rsa_bits 2048"), "{}", e.message);
    }

    #[test]
    fn min_rsa_bits_admits_a_shorter_key_within_its_bounds() {
        let small = json!({"kty": "RSA", "n": b64(&[0xcb; 128]), "e": "AQAB"});
        let doc = json!({"keys": [small]});
        let set = KeySet::parse_with(&doc, Origin::Inline, 1024).unwrap();
        assert_eq!((set.len(), set.weak_keys().len()), (1, 0));
        assert_eq!(set.prepared(), 1, "an inline key is prepared at once");
        // Below the lowest bound, the bound holds.
        let tiny = json!({"keys": [{"kty": "RSA", "n": b64(&[0xcb; 64]), "e": "AQAB"}]});
        let set = KeySet::parse_with(&tiny, Origin::Inline, 512).unwrap();
        assert_eq!((set.len(), set.weak_keys()[0].bits), (0, 512));
        // A 2048-bit key is weak under min_rsa_bits 3072.
        let set =
            KeySet::parse_with(&json!({"keys": [rsa_jwk(RSA_1)]}), Origin::Inline, 3072).unwrap();
        assert_eq!((set.len(), set.weak_keys()[0].bits), (0, 2048));
    }

    #[test]
    fn a_short_key_that_is_not_for_signatures_is_not_reported() {
        let small = json!({"kty": "RSA", "use": "enc", "n": b64(&[0xcb; 128]), "e": "AQAB"});
        let set = inline(json!([small])).unwrap();
        assert!(set.is_empty() && set.weak_keys().is_empty());
    }

    #[test]
    fn rsa_exponent_must_be_65537() {
        let e = inline_error(json!([with(rsa_jwk(RSA_1), json!({"e": "Aw"}))]));
        assert_eq!(e.path, "keys[0].e");
    }

    #[test]
    fn inline_errors_name_the_field() {
        let cases = [
            (
                json!([p256_jwk(), {"kty": "RSA", "e": "AQAB"}]),
                "keys[1].n",
            ),
            (json!(["not a key"]), "keys[0]"),
            (json!([{"n": "AQAB"}]), "keys[0].kty"),
            (json!([{"kty": "DSA"}]), "keys[0].kty"),
            (json!([{"kty": 1}]), "keys[0].kty"),
            (json!([with(p256_jwk(), json!({"kid": 7}))]), "keys[0].kid"),
            (
                json!([with(p256_jwk(), json!({"use": false}))]),
                "keys[0].use",
            ),
            (
                json!([with(p256_jwk(), json!({"crv": "P-521"}))]),
                "keys[0].crv",
            ),
            (
                json!([with(p256_jwk(), json!({"x": "not base64!"}))]),
                "keys[0].x",
            ),
            (
                json!([with(p256_jwk(), json!({"y": b64(&[1; 31])}))]),
                "keys[0].y",
            ),
            (
                json!([with(p256_jwk(), json!({"x": b64(&[1; 32])}))]),
                "keys[0].x",
            ),
            (json!([with(p384_jwk(), json!({"y": ""}))]), "keys[0].y"),
            (
                json!([with(ed25519_jwk(), json!({"crv": "X25519"}))]),
                "keys[0].crv",
            ),
            (
                json!([with(ed25519_jwk(), json!({"x": b64(&[1; 33])}))]),
                "keys[0].x",
            ),
            (json!([{"kty": "oct"}]), "keys[0].k"),
        ];
        for (keys, path) in cases {
            let e = inline_error(keys);
            assert_eq!(e.path, path, "{}", e.message);
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn document_must_be_an_object_with_a_keys_array() {
        for origin in [Origin::Inline, Origin::Remote] {
            assert_eq!(KeySet::parse(&json!([]), origin).unwrap_err().path, "");
            assert_eq!(KeySet::parse(&json!({}), origin).unwrap_err().path, "keys");
            assert_eq!(
                KeySet::parse(&json!({"keys": {}}), origin)
                    .unwrap_err()
                    .path,
                "keys"
            );
        }
    }

    #[test]
    fn empty_inline_set_is_allowed_empty_remote_set_is_not() {
        let set = inline(json!([])).unwrap();
        assert!(set.is_empty());
        assert_eq!(set.len(), 0);
        assert_eq!(remote(json!([])).unwrap_err().path, "keys");
    }

    #[test]
    fn remote_set_skips_unusable_keys() {
        let set = remote(json!([
            "junk",
            {"kty": "DSA"},
            {"kty": "RSA", "n": b64(&[0xcb; 128]), "e": "AQAB"},
            with(p256_jwk(), json!({"crv": "P-521"})),
            with(rsa_jwk(RSA_1), json!({"kid": "good"})),
        ]))
        .unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.select(RS256, Some("good")).count(), 1);
    }

    #[test]
    fn remote_set_never_accepts_oct_keys() {
        let set = remote(json!([oct_jwk(HMAC_SECRET), p256_jwk()])).unwrap();
        assert_eq!(algorithms(&set), vec![ES256]);
        assert_eq!(
            remote(json!([oct_jwk(HMAC_SECRET)])).unwrap_err().path,
            "keys"
        );
    }

    #[test]
    fn select_filters_by_algorithm_then_kid() {
        let set = inline(json!([
            with(rsa_jwk(RSA_1), json!({"kid": "a"})),
            with(rsa_jwk(RSA_2), json!({"kid": "b"})),
            rsa_jwk(RSA_2),
            with(p256_jwk(), json!({"kid": "a"})),
        ]))
        .unwrap();
        let kids = |alg, kid| {
            set.select(alg, kid)
                .map(|v| v.kid().map(str::to_string))
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(RS256, Some("b")), vec![Some("b".to_string())]);
        assert_eq!(
            kids(RS256, None),
            vec![Some("a".into()), Some("b".into()), None]
        );
        assert_eq!(kids(ES256, Some("a")), vec![Some("a".to_string())]);
        assert!(kids(ES256, Some("b")).is_empty());
        assert!(kids(HS256, None).is_empty());
        assert!(set.select(PS512, Some("a")).all(|v| v.algorithm() == PS512));
    }

    #[test]
    fn base64_padding_is_tolerated_in_jwks() {
        let mut jwk = ed25519_jwk();
        jwk["x"] = format!("{}=", jwk["x"].as_str().unwrap()).into();
        assert_eq!(inline(json!([jwk])).unwrap().len(), 1);
    }

    #[test]
    fn fingerprint_is_stable_and_follows_the_usable_keys() {
        let keys = json!([with(rsa_jwk(RSA_1), json!({"kid": "a"})), p256_jwk()]);
        let base = inline(keys.clone()).unwrap().fingerprint();
        assert_eq!(inline(keys.clone()).unwrap().fingerprint(), base);
        assert_eq!(remote(keys).unwrap().fingerprint(), base);
        let changed = [
            json!([with(rsa_jwk(RSA_1), json!({"kid": "b"})), p256_jwk()]),
            json!([with(rsa_jwk(RSA_2), json!({"kid": "a"})), p256_jwk()]),
            json!([
                with(rsa_jwk(RSA_1), json!({"kid": "a", "alg": "RS256"})),
                p256_jwk()
            ]),
            json!([with(rsa_jwk(RSA_1), json!({"kid": "a"}))]),
            json!([
                with(rsa_jwk(RSA_1), json!({"kid": "a"})),
                p256_jwk(),
                p384_jwk()
            ]),
        ];
        for keys in changed {
            assert_ne!(inline(keys).unwrap().fingerprint(), base);
        }
        let with_enc_key = json!([
            with(rsa_jwk(RSA_1), json!({"kid": "a"})),
            p256_jwk(),
            with(p384_jwk(), json!({"use": "enc"}))
        ]);
        assert_eq!(inline(with_enc_key).unwrap().fingerprint(), base);
    }

    #[test]
    fn fingerprint_does_not_depend_on_the_build() {
        // HMAC-SHA256 of the canonical bytes, computed independently (Python hmac).
        let set = inline(json!([with(oct_jwk(&[1; 32]), json!({"kid": "k"}))])).unwrap();
        assert_eq!(set.fingerprint(), 569874978190805420);
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let set = inline(json!([oct_jwk(HMAC_SECRET)])).unwrap();
        let shown = format!("{set:?}");
        assert!(shown.contains("HS256"), "{shown}");
        assert!(
            !shown.contains("secret") && !shown.contains(&b64(HMAC_SECRET)),
            "{shown}"
        );
    }
    #[test]
    fn ed25519_key_off_the_curve_is_refused_inline() {
        // y = 0x0202…02 has no x on the curve: not a public key at all.
        let off = with(ed25519_jwk(), json!({"x": b64(&[2; 32])}));
        let e = inline_error(json!([off]));
        assert_eq!(e.path, "keys[0].x");
        assert!(e.message.contains("Ed25519"), "{}", e.message);
    }

    #[test]
    fn a_fetched_ed25519_key_off_the_curve_verifies_nothing() {
        // Decompressing the point is the preparation, deferred to first use for fetched keys.
        let off = with(ed25519_jwk(), json!({"x": b64(&[2; 32])}));
        let set = remote(json!([off, p256_jwk()])).unwrap();
        let (input, signature) = signed_input(EdDSA);
        let verifier = set.select(EdDSA, None).next().unwrap();
        assert!(!verifier.verify_signature(input.as_bytes(), &signature));
    }

    #[test]
    fn a_fetched_ec_key_off_the_curve_is_skipped_when_read() {
        let mut y = vec![0u8; 48];
        y[47] = 1;
        let off = with(p384_jwk(), json!({"y": b64(&y)}));
        let set = remote(json!([off, p256_jwk()])).unwrap();
        assert_eq!(algorithms(&set), vec![ES256]);
    }

    #[test]
    fn a_fetched_even_rsa_modulus_is_skipped_when_read() {
        let mut n = vec![0xcb; 256];
        n[255] = 0x02;
        let set = remote(json!([{"kty": "RSA", "n": b64(&n), "e": "AQAB"}, p256_jwk()])).unwrap();
        assert_eq!(algorithms(&set), vec![ES256]);
    }

    #[test]
    fn fetched_keys_are_prepared_on_first_use() {
        let set = remote(json!([
            rsa_jwk(RSA_1),
            p256_jwk(),
            p384_jwk(),
            ed25519_jwk()
        ]))
        .unwrap();
        assert_eq!((set.len(), set.prepared()), (4, 0));
        let (input, signature) = signed_input(ES384);
        let verifier = set.select(ES384, None).next().unwrap();
        assert!(verifier.verify_signature(input.as_bytes(), &signature));
        assert_eq!(set.prepared(), 1);
    }

    #[test]
    fn the_verifiers_of_one_fetched_key_share_its_preparation() {
        let set = remote(json!([rsa_jwk(RSA_1)])).unwrap();
        for alg in [RS256, PS512] {
            let (input, signature) = signed_input(alg);
            let verifier = set.select(alg, None).next().unwrap();
            assert!(verifier.verify_signature(input.as_bytes(), &signature));
        }
        assert_eq!(set.prepared(), 1);
    }

    #[test]
    fn inline_keys_are_prepared_when_read() {
        let set = inline(json!([rsa_jwk(RSA_1), p384_jwk(), ed25519_jwk()])).unwrap();
        assert_eq!(set.prepared(), 3);
    }

    #[test]
    fn a_set_may_have_max_keys() {
        let keys: Vec<Value> = (0..MAX_KEYS)
            .map(|i| with(p384_jwk(), json!({"kid": format!("k{i}")})))
            .collect();
        assert_eq!(remote(json!(keys)).unwrap().len(), MAX_KEYS);
    }

    #[test]
    fn a_set_with_more_than_max_keys_is_refused_inline_and_remote() {
        // Found in the field: 1,300 P-384 keys (250 KB) took 1.1 s to read in Envoy.
        let keys: Vec<Value> = (0..=MAX_KEYS).map(|_| json!("junk")).collect();
        let e = inline_error(json!(keys.clone()));
        assert_eq!(e.path, "keys");
        assert_eq!(e.message, "has 101 keys; at most 100 are accepted");
        assert_eq!(remote(json!(keys)).unwrap_err(), e);
    }

    #[test]
    fn even_rsa_modulus_is_refused() {
        let mut n = vec![0xcb; 256];
        n[255] = 0x02;
        let e = inline_error(json!([{"kty": "RSA", "n": b64(&n), "e": "AQAB"}]));
        assert_eq!(e.path, "keys[0].n");
        assert!(e.message.contains("RSA"), "{}", e.message);
    }

    /// A signing input and its signature by the test key of `alg` (a token made by jwt-simple).
    fn signed_input(alg: Algorithm) -> (String, Vec<u8>) {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use jwt_simple::prelude::*;
        let claims = || Claims::create(Duration::from_secs(60)).with_subject("s");
        let token = match alg {
            RS256 => RS256KeyPair::from_pem(RSA_1).unwrap().sign(claims()),
            RS384 => RS384KeyPair::from_pem(RSA_1).unwrap().sign(claims()),
            RS512 => RS512KeyPair::from_pem(RSA_1).unwrap().sign(claims()),
            PS256 => PS256KeyPair::from_pem(RSA_1).unwrap().sign(claims()),
            PS384 => PS384KeyPair::from_pem(RSA_1).unwrap().sign(claims()),
            PS512 => PS512KeyPair::from_pem(RSA_1).unwrap().sign(claims()),
            ES256 => ES256KeyPair::from_pem(P256).unwrap().sign(claims()),
            ES384 => ES384KeyPair::from_pem(P384).unwrap().sign(claims()),
            EdDSA => Ed25519KeyPair::from_pem(ED25519).unwrap().sign(claims()),
            HS256 => HS256Key::from_bytes(HMAC_SECRET).authenticate(claims()),
            HS384 => HS384Key::from_bytes(HMAC_SECRET).authenticate(claims()),
            HS512 => HS512Key::from_bytes(HMAC_SECRET).authenticate(claims()),
        }
        .unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        (
            input.to_string(),
            URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
    }

    #[test]
    fn each_verifier_checks_its_own_algorithm_only() {
        let set = inline(json!([
            rsa_jwk(RSA_1),
            p256_jwk(),
            p384_jwk(),
            ed25519_jwk(),
            oct_jwk(HMAC_SECRET)
        ]))
        .unwrap();
        let all = [
            RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512,
        ];
        for signed in all {
            let (input, signature) = signed_input(signed);
            for verifier in &set.verifiers {
                let ok = verifier.verify_signature(input.as_bytes(), &signature);
                assert_eq!(
                    ok,
                    verifier.algorithm() == signed,
                    "{signed:?} by {verifier:?}"
                );
            }
            let verifier = set.select(signed, None).next().unwrap();
            let mut tampered = signature.clone();
            tampered[7] ^= 0x10;
            assert!(
                !verifier.verify_signature(input.as_bytes(), &tampered),
                "{signed:?}"
            );
            assert!(!verifier.verify_signature(format!("{input}x").as_bytes(), &signature));
            assert!(!verifier.verify_signature(input.as_bytes(), &signature[1..]));
            assert!(!verifier.verify_signature(input.as_bytes(), &[]));
        }
    }

    #[test]
    fn rsa_verifiers_of_one_key_share_it() {
        let set = inline(json!([rsa_jwk(RSA_1)])).unwrap();
        assert_eq!(set.verifiers.len(), 6);
        assert!(set
            .verifiers
            .iter()
            .all(|v| Arc::ptr_eq(&v.jwk, &set.verifiers[0].jwk)));
        let Some(KeyMaterial::Rsa(key)) = set.verifiers[0].jwk.get() else {
            panic!("not RSA")
        };
        assert_eq!(key.bits(), 2048);
    }

    #[test]
    fn mac_tags_are_compared_whole() {
        let set = inline(json!([oct_jwk(HMAC_SECRET)])).unwrap();
        for alg in [HS256, HS384, HS512] {
            let (input, tag) = signed_input(alg);
            let verifier = set.select(alg, None).next().unwrap();
            assert!(verifier.verify_signature(input.as_bytes(), &tag), "{alg:?}");
            let last = tag.len() - 1;
            let mut changed = tag.clone();
            changed[last] ^= 0x01;
            let mut extended = tag.clone();
            extended.push(0);
            let doubled = [tag.clone(), tag.clone()].concat();
            let refused: [&[u8]; 6] =
                [&changed, &tag[..last], &tag[..16], &extended, &doubled, &[]];
            for bad in refused {
                assert!(
                    !verifier.verify_signature(input.as_bytes(), bad),
                    "{alg:?}: {} bytes",
                    bad.len()
                );
            }
        }
        // A tag of another hash over the same input and secret is refused: HS512's first 32
        // bytes are not HS256's tag.
        let (input, tag512) = signed_input(HS512);
        let hs256 = set.select(HS256, None).next().unwrap();
        assert!(!hs256.verify_signature(input.as_bytes(), &tag512[..32]));
    }
}
