//! DPoP (RFC 9449): tokens bound to a key the client proves it holds, with a signed proof (the
//! `DPoP` request header) on every request.
//!
//! A provider's `dpop.mode` says what is asked: `off` (no DPoP processing), `allowed` (a token
//! bound with `cnf.jkt`, a request with the `DPoP` scheme or one that sends a proof is checked;
//! plain bearer tokens keep working) or `required` (every token must be DPoP-bound and sent with
//! the `DPoP` scheme). The proof is checked as RFC 9449 §4.3 lists, on every request (cached
//! identities included), by [`check`]: one `DPoP` header; `typ` `dpop+jwt`; an asymmetric
//! algorithm of the provider's `dpop.algorithms`; a public `jwk` without private members; the
//! signature under that key; `htm`, `htu` and `iat`; `ath` (the access token's hash); the token's
//! `cnf.jkt` equal to the key's RFC 7638 thumbprint; and last a `jti` not seen inside the `iat`
//! window ([`ReplayCache`], per worker, and a [`ReplayStore`] the host glue may add). Server
//! nonces (`DPoP-Nonce`) are not issued or checked.

use std::num::NonZeroUsize;
use std::rc::Rc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use lru::LruCache;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::claims::Claims;
use crate::config::{ConfigError, Provider};
use crate::identity::{Identity, TokenBinding};
use crate::jose::Algorithm;
use crate::jwks::{KeySet, Origin, MIN_RSA_BITS};
use crate::reason::{Denial, Reason};
use crate::token::{Found, RequestFacts};
use crate::verify;

/// The request header that carries the proof.
pub const PROOF_HEADER: &str = "dpop";
/// Largest accepted proof in bytes (a proof with a 4096-bit RSA key is about 1.5 KiB).
pub const MAX_PROOF_BYTES: usize = 8192;
/// JWK members that only a private (or symmetric) key has: a proof carrying one is refused.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Request-level DPoP settings (the top-level `dpop` object).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DpopConfig {
    /// The scheme and host clients send requests to, e.g. `https://api.example.com` (a port
    /// when not the scheme's default; no path, query or fragment). A proof's `htu` must equal
    /// this followed by the request's path. Set it when a load balancer or TLS terminator sits
    /// in front of the proxy (the proxy then sees another scheme or host than the client).
    /// Default: none, the URI is rebuilt from the request: the scheme from `:scheme` (`https`
    /// when the host gives none) and the host from `:authority` in Envoy and Istio, from the
    /// `host` header in Kong (whose `:authority` is nginx's `server_name:port`).
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// Most proofs (`jti` and key thumbprint) remembered per worker to refuse replays; each is
    /// kept until its `iat` leaves the provider's `dpop.max_age_seconds` window. When full, the
    /// oldest is forgotten first (a proof forgotten early could be replayed inside its window):
    /// size it to the proofs expected per window (requests per second times
    /// `max_age_seconds`). About 100 bytes each. Default 10000.
    #[serde(default = "default_replay_entries")]
    #[schemars(range(min = 1, max = 1000000))]
    pub replay_cache_entries: usize,
    /// Also record proofs in the host's shared data, so a proof used at one worker is refused at
    /// the others: Envoy and Istio only (as many entries again, in fixed buckets that never grow).
    /// Kong: not used (its shared data can trap without an `shm_kv` zone, and requests are also
    /// decided in call-response callbacks), so each worker has its own cache there and a proof
    /// could be replayed once at each other worker inside its window. Default `true`.
    #[serde(default = "default_true")]
    pub shared_replay: bool,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            public_base_url: None,
            replay_cache_entries: default_replay_entries(),
            shared_replay: true,
        }
    }
}

fn default_replay_entries() -> usize {
    10_000
}
fn default_true() -> bool {
    true
}
fn default_max_age() -> u64 {
    300
}

/// What a provider asks of DPoP (`providers[].dpop.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DpopMode {
    /// No DPoP processing: the `DPoP` header is ignored and a bound token is taken as a bearer
    /// token (its `binding` is `none`).
    Off,
    /// A bound token (`cnf.jkt`), a token sent with the `DPoP` scheme, or a request with a
    /// `DPoP` header is checked; plain bearer tokens keep working.
    #[default]
    Allowed,
    /// Only DPoP-bound tokens sent with the `DPoP` scheme and a valid proof pass.
    Required,
}

/// A provider's DPoP settings (`providers[].dpop`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderDpop {
    /// `off`, `allowed` or `required` (see docs/configuration.md, "DPoP"). Default `allowed`.
    #[serde(default)]
    pub mode: DpopMode,
    /// Proof signing algorithms accepted (asymmetric only; HS* are refused). Default: RS256,
    /// RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA. Sent as `algs` in the `DPoP`
    /// challenge of a refusal.
    #[serde(default)]
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be, in seconds (1–3600); a proof may also be up to the
    /// provider's `clock_skew_seconds` ahead of the clock. Its `jti` is remembered as long.
    /// Default 300.
    #[serde(default = "default_max_age")]
    #[schemars(range(min = 1, max = 3600))]
    pub max_age_seconds: u64,
}

impl Default for ProviderDpop {
    fn default() -> Self {
        ProviderDpop {
            mode: DpopMode::default(),
            algorithms: Vec::new(),
            max_age_seconds: default_max_age(),
        }
    }
}

impl ProviderDpop {
    /// The accepted proof algorithms (the default list when none is configured).
    pub fn algorithms(&self) -> &[Algorithm] {
        if self.algorithms.is_empty() {
            &Algorithm::ASYMMETRIC
        } else {
            &self.algorithms
        }
    }

    /// `providers[i].dpop`: bounds, and no HMAC algorithm.
    pub fn check(&self, i: usize) -> Result<(), ConfigError> {
        let at = |field: &str| format!("providers[{i}].dpop.{field}");
        if !(1..=3600).contains(&self.max_age_seconds) {
            return Err(ConfigError::new(
                at("max_age_seconds"),
                "must be between 1 and 3600",
            ));
        }
        for (k, alg) in self.algorithms.iter().enumerate() {
            if alg.is_hmac() {
                return Err(ConfigError::new(
                    at(&format!("algorithms[{k}]")),
                    "a DPoP proof is signed with an asymmetric key: HS* cannot be used",
                ));
            }
        }
        Ok(())
    }
}

impl DpopConfig {
    /// `dpop`: bounds, and a `public_base_url` that is a scheme and host only.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000).contains(&self.replay_cache_entries) {
            return Err(ConfigError::new(
                "dpop.replay_cache_entries",
                "must be between 1 and 1000000",
            ));
        }
        if let Some(url) = &self.public_base_url {
            let ok = !url.contains(['?', '#'])
                && normalize_uri(url).is_some_and(|n| {
                    n.split_once("://")
                        .is_some_and(|(_, rest)| rest.find('/') == Some(rest.len() - 1))
                });
            if !ok {
                return Err(ConfigError::new(
                    "dpop.public_base_url",
                    "must be `http://` or `https://` and a host (and port), without a path, \
                     query or fragment, e.g. `https://api.example.com`",
                ));
            }
        }
        Ok(())
    }
}

/// How a verified token is bound, as far as DPoP goes: `Dpop` for a token with `cnf.jkt` of a
/// provider that does not turn DPoP off (such a token passes only with a valid proof).
pub fn binding(provider: &Provider, claims: &Claims) -> TokenBinding {
    if provider.dpop.mode != DpopMode::Off && bound_key(claims).is_some() {
        TokenBinding::Dpop
    } else {
        TokenBinding::None
    }
}

/// The token's `cnf.jkt`, whatever its type.
fn bound_key(claims: &Claims) -> Option<&Value> {
    claims.get("cnf")?.as_object()?.get("jkt")
}

/// A proof's identity in replay caches: the first 128 bits of SHA-256 over the key's
/// thumbprint and the `jti` (so one client's `jti`s never collide with another's).
pub type ReplayKey = [u8; 16];

/// Where proofs are also recorded (shared data between workers, given by the host glue).
pub trait ReplayStore {
    /// Whether `key` was recorded and is still alive at `now`; if not, record it until `until`
    /// (Unix seconds).
    fn seen(&self, key: &ReplayKey, until: u64, now: u64) -> bool;
}

/// The per-worker record of proofs seen: at most `capacity` entries, the oldest forgotten first.
/// It also keeps the keys of recent proofs, prepared ([`ProofKeys`]).
pub struct ReplayCache {
    entries: LruCache<ReplayKey, u64>,
    capacity: usize,
    evicted: u64,
    keys: ProofKeys,
}

/// How many clients' proof keys a worker keeps prepared.
pub const PROOF_KEYS: usize = 64;

/// Prepared proof keys, by the proof's protected header as sent (base64url: its `typ`, `alg`
/// and `jwk`). A client signs every proof with its one key, so its header repeats from proof to
/// proof: decoding and checking that header, reading its key and preparing it (an EC key's
/// tables: most of a proof check's cost) is done once, not per proof. Equal header bytes mean an
/// equal header, so a hit is the key and algorithm the proof names.
pub struct ProofKeys {
    entries: LruCache<String, Rc<ProofKey>>,
}

struct ProofKey {
    /// The header's `alg`, as sent (checked against the provider's list on every proof).
    alg: String,
    thumbprint: String,
    keys: KeySet,
}

impl ProofKeys {
    fn new() -> ProofKeys {
        ProofKeys {
            entries: LruCache::new(NonZeroUsize::MIN.saturating_add(PROOF_KEYS - 1)),
        }
    }

    /// The prepared key of a proof whose header segment is `header`: from an earlier proof, or
    /// read now (RFC 9449 §4.3 steps 4, 5 and 7: a JSON object, `typ` `dpop+jwt`, a string
    /// `alg`, no `crit`, a public `jwk` of a known type). `None`: the header is not a proof's.
    fn get(&mut self, header: &str) -> Option<Rc<ProofKey>> {
        if let Some(key) = self.entries.get(header) {
            return Some(Rc::clone(key));
        }
        let decoded = verify::decode_object(header).ok()?;
        verify::reject_critical(&decoded).ok()?;
        match decoded.get("typ").and_then(Value::as_str) {
            Some(typ) if typ.eq_ignore_ascii_case("dpop+jwt") => {}
            _ => return None,
        }
        let alg = verify::header_alg(&decoded).ok()?;
        let Some(Value::Object(jwk)) = decoded.get("jwk") else {
            return None;
        };
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return None;
        }
        let thumbprint = thumbprint(jwk)?;
        let set = serde_json::json!({ "keys": [Value::Object(jwk.clone())] });
        let keys = KeySet::parse_with(&set, Origin::Inline, MIN_RSA_BITS).ok()?;
        let key = Rc::new(ProofKey {
            alg,
            thumbprint,
            keys,
        });
        self.entries.put(header.to_string(), Rc::clone(&key));
        Some(key)
    }
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("evicted", &self.evicted)
            .finish()
    }
}

impl ReplayCache {
    /// An empty cache (it grows with use: nothing is allocated in proportion to `capacity`).
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            entries: LruCache::unbounded(),
            capacity: capacity.max(1),
            evicted: 0,
            keys: ProofKeys::new(),
        }
    }

    /// Whether `key` is recorded and alive at `now`; if not, record it until `until`.
    pub fn seen(&mut self, key: &ReplayKey, until: u64, now: u64) -> bool {
        if self.entries.peek(key).is_some_and(|u| *u >= now) {
            return true;
        }
        while let Some((_, u)) = self.entries.peek_lru() {
            if *u >= now {
                break;
            }
            self.entries.pop_lru();
        }
        if self.entries.len() >= self.capacity && !self.entries.contains(key) {
            self.entries.pop_lru();
            self.evicted += 1;
        }
        self.entries.put(*key, until);
        false
    }

    /// Entries held, and entries forgotten before they expired (the cache was full) (tests).
    #[cfg(test)]
    pub fn stats(&self) -> (usize, u64) {
        (self.entries.len(), self.evicted)
    }
}

/// The proof checks of one request, with the instance's replay cache
/// ([`crate::authenticate::Caches`]) and the glue's shared store.
pub struct Checker<'a> {
    pub config: &'a DpopConfig,
    pub cache: &'a mut ReplayCache,
    pub shared: Option<&'a dyn ReplayStore>,
}

impl Checker<'_> {
    /// Check the DPoP side of a request whose token verified to `claims` under `provider`.
    /// `path` is the request's path as sent (without the query). `Ok` when the request may go
    /// on; the refusal names the reason and the accepted algorithms.
    pub fn check(
        &mut self,
        provider: &Provider,
        found: &Found,
        who: &Identity,
        facts: &RequestFacts,
        path: &str,
        now: u64,
    ) -> Result<(), Denial> {
        let policy = &provider.dpop;
        check(self, provider, found, who, facts, path, now).map_err(|reason| Denial {
            algs: policy.algorithms().iter().map(|a| a.name()).collect(),
            ..Denial::new(reason)
        })
    }

    fn seen(&mut self, key: &ReplayKey, until: u64, now: u64) -> bool {
        let local = self.cache.seen(key, until, now);
        local || self.shared.is_some_and(|s| s.seen(key, until, now))
    }
}

fn check(
    checker: &mut Checker<'_>,
    provider: &Provider,
    found: &Found,
    who: &Identity,
    facts: &RequestFacts,
    path: &str,
    now: u64,
) -> Result<(), Reason> {
    let policy = &provider.dpop;
    if policy.mode == DpopMode::Off {
        return Ok(());
    }
    let jkt = bound_key(&who.claims);
    let mut proofs = facts.header_values(PROOF_HEADER);
    let (first, second) = (proofs.next(), proofs.next());
    if jkt.is_none() && !found.dpop_scheme && first.is_none() {
        // A plain bearer token.
        return match policy.mode {
            DpopMode::Required => Err(Reason::DpopRequired),
            _ => Ok(()),
        };
    }
    // No downgrade: a bound token counts only with the `DPoP` scheme.
    if jkt.is_some() && !found.dpop_scheme {
        return Err(Reason::DpopRequired);
    }
    if jkt.is_none() && policy.mode == DpopMode::Required {
        return Err(Reason::DpopRequired);
    }
    let proof = match (first, second) {
        (None, _) => return Err(Reason::DpopProofMissing),
        (Some(_), Some(_)) => return Err(Reason::DpopProofInvalid),
        (Some(proof), None) => proof,
    };
    let uri = target_uri(checker.config, facts, path);
    let request = Target {
        method: &facts.method,
        uri: uri.as_deref(),
    };
    let proof = {
        let keys = &mut checker.cache.keys;
        verify_proof(
            proof,
            policy,
            provider.clock_skew_seconds,
            &request,
            now,
            keys,
        )?
    };
    // `ath`: a bound token's hash is kept with its (cached) identity.
    let hash = who.token_hash.unwrap_or_else(|| token_hash(&found.token));
    if proof.ath != Some(hash) {
        return Err(Reason::DpopAthMismatch);
    }
    match jkt {
        Some(Value::String(jkt)) if *jkt == proof.thumbprint => {}
        // A proof sent next to an unbound bearer token (`allowed`): checked, binds nothing.
        None if !found.dpop_scheme => {}
        _ => return Err(Reason::DpopKeyMismatch),
    }
    if checker.seen(&proof.replay_key, proof.until, now) {
        return Err(Reason::DpopProofReplayed);
    }
    Ok(())
}

/// The request a proof must be for.
pub struct Target<'a> {
    pub method: &'a str,
    /// The request's URI without query, normalized ([`normalize_uri`]); `None` when it cannot
    /// be built (no host), which no `htu` matches.
    pub uri: Option<&'a str>,
}

/// A proof whose signature, typ, algorithm, key, `htm`, `htu` and `iat` were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's key.
    pub thumbprint: String,
    /// The proof's `ath`, decoded (`None`: not the base64url of 32 bytes, so it matches no
    /// token).
    pub ath: Option<[u8; 32]>,
    pub replay_key: ReplayKey,
    /// Unix seconds until which the proof's `iat` is inside the window.
    pub until: u64,
}

/// Check one proof (RFC 9449 §4.3 steps 2–11 but `ath` and the replay, which the caller does):
/// every failure is `dpop_proof_invalid`. Its key comes from `keys` when the same header was
/// seen before.
fn verify_proof(
    proof: &str,
    policy: &ProviderDpop,
    clock_skew_seconds: u64,
    request: &Target<'_>,
    now: u64,
    keys: &mut ProofKeys,
) -> Result<Proof, Reason> {
    const INVALID: Reason = Reason::DpopProofInvalid;
    if proof.len() > MAX_PROOF_BYTES {
        return Err(INVALID);
    }
    let verify::Parts {
        signing_input,
        header,
        payload,
        signature,
    } = verify::Parts::split(proof.trim()).ok_or(INVALID)?;
    let key = keys.get(header).ok_or(INVALID)?;
    let alg = verify::allowed_algorithm(&key.alg, policy.algorithms()).map_err(|_| INVALID)?;
    if alg.is_hmac() {
        return Err(INVALID);
    }
    let claims = verify::decode_object(payload).map_err(|_| INVALID)?;
    let signature = verify::decode_part(signature).map_err(|_| INVALID)?;
    if !verify::signature_length_fits(alg, signature.len()) {
        return Err(INVALID);
    }
    if !key
        .keys
        .select(alg, None)
        .any(|k| k.verify_signature(signing_input.as_bytes(), &signature))
    {
        return Err(INVALID);
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str).ok_or(INVALID);
    if text("htm")? != request.method {
        return Err(INVALID);
    }
    let htu = normalize_uri(text("htu")?);
    if htu.is_none() || htu.as_deref() != request.uri {
        return Err(INVALID);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite())
        .ok_or(INVALID)?;
    let oldest = now.saturating_sub(policy.max_age_seconds) as f64;
    let newest = now.saturating_add(clock_skew_seconds) as f64;
    if iat < oldest || iat > newest {
        return Err(INVALID);
    }
    let jti = text("jti")?;
    if jti.is_empty() {
        return Err(INVALID);
    }
    let ath = decode_ath(text("ath")?);
    let thumbprint = key.thumbprint.clone();
    let mut hash = Sha256::new();
    hash.update(thumbprint.as_bytes());
    hash.update([0u8]);
    hash.update(jti.as_bytes());
    let digest = hash.finalize();
    let mut replay_key = [0u8; 16];
    for (slot, byte) in replay_key.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    Ok(Proof {
        thumbprint,
        ath,
        replay_key,
        until: (iat.max(0.0) as u64).saturating_add(policy.max_age_seconds),
    })
}

/// The RFC 7638 thumbprint of a public JWK: SHA-256 over its required members (EC: `crv`,
/// `kty`, `x`, `y`; RSA: `e`, `kty`, `n`; OKP: `crv`, `kty`, `x`) in that order, as JSON without
/// whitespace, base64url. `None` for another `kty` or a missing (or non-string) member.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut json = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            json.push(',');
        }
        json.push_str(&serde_json::to_string(name).ok()?);
        json.push(':');
        json.push_str(&serde_json::to_string(value).ok()?);
    }
    json.push('}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes())))
}

/// `ath`: base64url of SHA-256 over the access token's ASCII (tests).
#[cfg(test)]
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(token_hash(token))
}

/// SHA-256 over the access token's ASCII (`ath` before base64url).
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A proof's `ath` as the 32 bytes it encodes (unpadded canonical base64url, 43 characters).
fn decode_ath(ath: &str) -> Option<[u8; 32]> {
    let mut decoded = [0u8; 32];
    (ath.len() == 43 && URL_SAFE_NO_PAD.decode_slice(ath, &mut decoded) == Ok(32))
        .then_some(decoded)
}

/// The request's URI without query, normalized: `public_base_url` (or `:scheme` and the host)
/// followed by `path` as sent.
pub fn target_uri(config: &DpopConfig, facts: &RequestFacts, path: &str) -> Option<String> {
    let base = match &config.public_base_url {
        Some(base) => base.trim_end_matches('/').to_string(),
        None if facts.authority.is_empty() => return None,
        None => {
            let scheme = if facts.scheme.is_empty() {
                "https"
            } else {
                &facts.scheme
            };
            format!("{scheme}://{}", facts.authority)
        }
    };
    if !path.starts_with('/') {
        return None;
    }
    normalize_uri(&format!("{base}{path}"))
}

/// An `http(s)` URI in the form compared with `htu` (RFC 9449 §4.3 step 9, with RFC 3986 §6's
/// syntax- and scheme-based normalization): query and fragment dropped, scheme and host lower
/// case, the scheme's default port dropped, an empty path as `/`. The path is kept as sent.
/// `None` for another scheme, an empty host or user information.
pub fn normalize_uri(uri: &str) -> Option<String> {
    let uri = uri.split(['#', '?']).next()?;
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) {
        return None;
    }
    let mut authority = authority.to_ascii_lowercase();
    if authority.ends_with(default_port) {
        authority.truncate(authority.len() - default_port.len());
    } else if authority.ends_with(':') {
        authority.pop();
    }
    if authority.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{authority}{path}"))
}

/// Proof keys and signing for the tests (the request path's and the host glue's).
#[cfg(test)]
pub(crate) mod test_proofs {
    use ed25519_dalek::Signer as _;
    use serde_json::{json, Value};

    use crate::jwks::test_keys::b64;

    /// The client's proof key (not the issuer's).
    pub fn client_key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
    }

    pub fn client_jwk(key: &ed25519_dalek::SigningKey) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes())})
    }

    /// The RFC 7638 thumbprint of `key`, as a bound token's `cnf.jkt`.
    pub fn jkt(key: &ed25519_dalek::SigningKey) -> String {
        super::thumbprint(client_jwk(key).as_object().unwrap()).unwrap()
    }

    /// A compact JWS over `header` and `payload`, signed with `key` (whatever `header` says).
    pub fn sign(key: &ed25519_dalek::SigningKey, header: &Value, payload: &Value) -> String {
        let mut out = b64(header.to_string().as_bytes());
        out.push('.');
        out.push_str(&b64(payload.to_string().as_bytes()));
        let signature = key.sign(out.as_bytes());
        out.push('.');
        out.push_str(&b64(&signature.to_bytes()));
        out
    }

    /// A proof by [`client_key`] for `method htu` with `token`, issued at `iat`.
    pub fn proof(token: &str, method: &str, htu: &str, jti: &str, iat: u64) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": client_jwk(&client_key())});
        let claims = json!({"jti": jti, "htm": method, "htu": htu, "iat": iat,
                            "ath": super::access_token_hash(token)});
        sign(&client_key(), &header, &claims)
    }
}

#[cfg(test)]
mod tests;
