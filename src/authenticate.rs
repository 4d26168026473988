//! Who is calling: the token found in the request, verified (the verified-token cache, the
//! provider its `iss` names, that provider's keys, the signature and registered claims), then
//! bound to the connection's certificate (`mtls`) and to the request's DPoP proof (`dpop`).
//! Like Envoy's jwt_authn authenticator, it reads keys from a [`KeySource`] and never fetches
//! them: a provider whose keys are still coming is [`Outcome::NeedKeys`].
//!
//! What is remembered between requests (verified tokens, DPoP proofs seen) is [`Caches`], which
//! the caller owns and passes in: the functions here keep no state of their own.

use std::rc::Rc;

use crate::cache::TokenCache;
use crate::config::{Config, Provider};
use crate::dpop::{self, ReplayCache, ReplayStore};
use crate::engine::Engine;
use crate::identity::Identity;
use crate::keystore::{KeySource, KeyState};
use crate::mtls::PeerCertificate;
use crate::reason::{Denial, Reason};
use crate::token::{Found, RequestFacts};
use crate::verify::{self, Jws};

/// What one filter instance remembers between requests, sized by its configuration: the
/// verified tokens and the DPoP proofs seen. The request path is single-threaded per instance.
#[derive(Debug)]
pub struct Caches {
    tokens: TokenCache,
    proofs: ReplayCache,
}

impl Caches {
    pub fn new(config: &Config) -> Caches {
        Caches {
            tokens: TokenCache::new(config.cache.max_entries, config.cache.max_ttl_seconds),
            proofs: ReplayCache::new(config.dpop.replay_cache_entries),
        }
    }

    /// Verified-token cache (entries, hits, misses), for tests.
    #[cfg(test)]
    pub fn cache_stats(&self) -> (usize, u64, u64) {
        let (hits, misses) = self.tokens.stats();
        (self.tokens.len(), hits, misses)
    }

    /// The identity cached for a token (tests).
    #[cfg(test)]
    pub(crate) fn cached_identity(&self, token: &str) -> Option<Rc<Identity>> {
        self.tokens.peek(token).map(|e| Rc::clone(&e.identity))
    }
}

/// Caches that hold nothing (a configuration that failed decides no request).
impl Default for Caches {
    fn default() -> Caches {
        Caches {
            tokens: TokenCache::new(0, 0),
            proofs: ReplayCache::new(0),
        }
    }
}

/// Why a caller could not be established.
pub enum Outcome {
    Deny(Denial),
    /// Wait for the keys of provider `index`, then decide again.
    NeedKeys(usize),
}

/// What the request path asks of the host, only when it needs it: a request without a token asks
/// nothing, a token that is not certificate-bound never asks for the certificate.
pub struct Ask<'a> {
    /// Unix seconds.
    pub now: &'a dyn Fn() -> u64,
    /// The connection's client certificate, when the facts hold [`PeerCertificate::Unread`].
    pub peer_certificate: &'a dyn Fn() -> PeerCertificate,
    /// Where DPoP proofs are also recorded (the host's shared data), so that a proof used at one
    /// worker is refused at the others.
    pub shared: Option<&'a dyn ReplayStore>,
}

/// The caller of a request whose token was found: the token verified ([`verify_token`]), then
/// its certificate binding (RFC 8705, on every request: a cached token too), then its DPoP
/// proof (`sent_path` is the path as the client sent it: a proof's `htu` names it).
pub fn caller(
    engine: &Engine,
    keys: &dyn KeySource,
    caches: &mut Caches,
    found: &Found,
    facts: &RequestFacts,
    sent_path: &str,
    ask: &Ask<'_>,
) -> Result<Rc<Identity>, Outcome> {
    let config = &engine.config;
    let now = (ask.now)();
    let (provider, who) = verify_token(engine, keys, &mut caches.tokens, &found.token, now)
        .map_err(|e| match e {
            Failure::Deny(reason) => Outcome::Deny(Denial::new(reason)),
            Failure::NeedKeys(index) => Outcome::NeedKeys(index),
        })?;
    certificate(config, &who, facts, ask.peer_certificate)
        .map_err(|reason| Outcome::Deny(Denial::new(reason)))?;
    if let Some(provider) = config.providers.get(provider) {
        let mut proofs = dpop::Checker {
            config: &config.dpop,
            cache: &mut caches.proofs,
            shared: ask.shared,
        };
        proofs
            .check(provider, found, &who, facts, sent_path, now)
            .map_err(Outcome::Deny)?;
    }
    Ok(who)
}

enum Failure {
    Deny(Reason),
    NeedKeys(usize),
}

/// Whether the caller's token may be used with the request's client certificate (`mtls`).
fn certificate(
    config: &Config,
    who: &Identity,
    facts: &RequestFacts,
    read: &dyn Fn() -> PeerCertificate,
) -> Result<(), Reason> {
    match config.providers.iter().find(|p| p.name == who.provider) {
        Some(provider) => {
            crate::mtls::check(&config.client_certificate, provider, who, facts, read)
        }
        None => Err(Reason::IssuerUnknown),
    }
}

/// A token's identity: from the cache (time and registered claims checked again), or parsed,
/// its provider chosen by the unverified `iss`, then verified fully and cached.
fn verify_token(
    engine: &Engine,
    keys: &dyn KeySource,
    cache: &mut TokenCache,
    token: &str,
    now: u64,
) -> Result<(usize, Rc<Identity>), Failure> {
    let fingerprint = |i: usize| match keys.keys(i) {
        KeyState::Ready(set) => Some(set.fingerprint()),
        _ => None,
    };
    let cache_key = (engine.config.cache.max_entries > 0).then_some(token);
    if let Some(key) = &cache_key {
        if let Some(hit) = cache.get(key, now, fingerprint) {
            // A hit skips the signature only: the time and registered claims are checked again.
            let provider = engine
                .config
                .providers
                .get(hit.provider)
                .ok_or(Failure::Deny(Reason::IssuerUnknown))?;
            verify::check_claims(&hit.identity.claims, provider, now).map_err(Failure::Deny)?;
            return Ok((hit.provider, hit.identity));
        }
    }
    let jws = Jws::parse(token).map_err(Failure::Deny)?;
    let issuer = jws.issuer().ok_or(Failure::Deny(Reason::IssuerUnknown))?;
    let (index, tenant) = engine.provider_for(issuer).map_err(Failure::Deny)?;
    let provider = engine
        .config
        .providers
        .get(index)
        .ok_or(Failure::Deny(Reason::IssuerUnknown))?;
    let set = match keys.keys(index) {
        KeyState::Ready(set) => set,
        KeyState::Pending => return Err(Failure::NeedKeys(index)),
        KeyState::Unavailable => return Err(Failure::Deny(Reason::KeysUnavailable)),
    };
    let claims = match verify::verify(&jws, provider, set, now) {
        Ok(claims) => claims,
        // Key rotation: a kid we do not know yet may be in a refetched set.
        Err(Reason::KeyNotFound) if keys.may_refetch(index) => {
            return Err(Failure::NeedKeys(index))
        }
        Err(reason) => return Err(Failure::Deny(reason)),
    };
    let expires = claims
        .get("exp")
        .and_then(serde_json::Value::as_f64)
        .map(|e| e.max(0.0) as u64);
    let identity = identity(provider, claims, token, issuer, tenant)?;
    if let Some(key) = cache_key {
        let until = expires.map(|exp| exp.saturating_add(provider.clock_skew_seconds));
        cache.put(key, index, set.fingerprint(), identity.clone(), until, now);
    }
    Ok((index, identity))
}

/// The caller named by verified `claims`, with its token binding (DPoP, certificate) and, for
/// an issuer pattern, its tenant.
fn identity(
    provider: &Provider,
    claims: crate::claims::Claims,
    token: &str,
    issuer: &str,
    tenant: Option<&str>,
) -> Result<Rc<Identity>, Failure> {
    let mut identity = Identity::from_claims(provider, claims);
    identity.binding = dpop::binding(provider, &identity.claims);
    if identity.binding == crate::identity::TokenBinding::Dpop {
        identity.token_hash = Some(dpop::token_hash(token));
    }
    crate::mtls::bind(&mut identity);
    if let Some(tenant) = tenant {
        // An issuer pattern: the tenant is the one `iss` names, and the caller's issuer is that
        // concrete `iss`. A tenant claim (`identity.tenant`) that names another tenant makes
        // the token contradict itself: it is not trusted.
        if identity.tenant.as_deref().is_some_and(|t| t != tenant) {
            return Err(Failure::Deny(Reason::IssuerUnknown));
        }
        identity.tenant = Some(tenant.to_string());
        identity.issuer = issuer.to_string();
    }
    Ok(Rc::new(identity))
}
