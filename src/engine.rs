//! The configuration parsed once (like Envoy's `filter_config`): inline key sets, the issuer
//! index, the managed headers and the assertion signer, and how a denial is rendered. Nothing
//! here changes after `on_configure`; what changes between requests is in
//! [`crate::authenticate::Caches`] and the key store.

use std::collections::HashMap;

use crate::assertion::Signer;
use crate::config::{Config, ConfigError, Provider};
use crate::headers;
use crate::jwks::{KeySet, Origin, WeakKey};
use crate::keystore::{KeySource, KeyState};
use crate::reason::{self, Denial, Reason, Response};

/// The configuration, parsed once, with everything the request path needs prepared.
#[derive(Debug)]
pub struct Engine {
    pub config: Config,
    /// Inline keys per provider, in `config.providers` order (`None`: fetched, see `keystore`).
    keys: Vec<Option<KeySet>>,
    by_issuer: HashMap<String, usize>,
    /// Providers whose issuer is a pattern (`{tenant}`), in configuration order.
    patterns: Vec<usize>,
    /// Headers that belong to the filter: removed from (or refused in) every request.
    pub(crate) managed: headers::Managed,
    /// Mints the signed assertion, when configured.
    pub(crate) signer: Option<Signer>,
}

/// The inline key sets; a provider whose keys are fetched has none here (see
/// [`crate::keystore::KeyView`]).
impl KeySource for Engine {
    fn keys(&self, provider: usize) -> KeyState<'_> {
        match self.keys.get(provider) {
            Some(Some(set)) => KeyState::Ready(set),
            _ => KeyState::Unavailable,
        }
    }
}

impl Engine {
    /// Prepare a validated configuration; inline key sets are parsed here, and an unusable key
    /// is a configuration error naming its path (an RSA key shorter than the provider's
    /// `min_rsa_bits` is skipped instead: see [`Engine::weak_keys`]).
    pub fn new(config: Config) -> Result<Engine, ConfigError> {
        let mut keys = Vec::with_capacity(config.providers.len());
        let mut by_issuer = HashMap::new();
        let mut patterns = Vec::new();
        for (i, p) in config.providers.iter().enumerate() {
            let set = match &p.jwks {
                Some(jwks) => Some(
                    KeySet::parse_with(jwks, Origin::Inline, min_rsa_bits(p)).map_err(|e| {
                        let path = if e.path.is_empty() {
                            format!("providers[{i}].jwks")
                        } else {
                            format!("providers[{i}].jwks.{}", e.path)
                        };
                        ConfigError::new(path, e.message)
                    })?,
                ),
                None => None,
            };
            keys.push(set);
            if crate::issuer::is_pattern(&p.issuer) {
                patterns.push(i);
            } else {
                by_issuer.insert(p.issuer.clone(), i);
            }
        }
        let managed = headers::managed(&config);
        let signer = match &config.headers.assertion {
            Some(a) => Some(Signer::new(a, "headers.assertion")?),
            None => None,
        };
        Ok(Engine {
            config,
            keys,
            by_issuer,
            patterns,
            managed,
            signer,
        })
    }

    /// Inline RSA keys skipped for being shorter than their provider's `min_rsa_bits`: the
    /// provider and its skipped keys.
    pub fn weak_keys(&self) -> Vec<(&Provider, &[WeakKey])> {
        self.config
            .providers
            .iter()
            .zip(&self.keys)
            .filter_map(|(p, set)| Some((p, set.as_ref()?.weak_keys())))
            .filter(|(_, weak)| !weak.is_empty())
            .collect()
    }

    /// Parse, validate and prepare a configuration document.
    pub fn from_json(bytes: &[u8]) -> Result<Engine, ConfigError> {
        Engine::new(Config::from_json(bytes)?)
    }

    /// The provider of a token's (unverified) `iss`, and for an issuer pattern the tenant it
    /// names. A tenant that is not listed is `issuer_unknown`, like an unknown issuer.
    pub(crate) fn provider_for<'t>(
        &self,
        iss: &'t str,
    ) -> Result<(usize, Option<&'t str>), Reason> {
        if let Some(i) = self.by_issuer.get(iss) {
            return Ok((*i, None));
        }
        for &i in &self.patterns {
            let Some(p) = self.config.providers.get(i) else {
                continue;
            };
            if crate::issuer::tenant_of(&p.issuer, iss).is_some() {
                return match crate::issuer::accepts(p, iss) {
                    Some(tenant) => Ok((i, tenant)),
                    None => Err(Reason::IssuerUnknown),
                };
            }
        }
        Err(Reason::IssuerUnknown)
    }

    /// Render a denial as this configuration says.
    pub fn render(&self, denial: &Denial) -> Response {
        let errors = &self.config.errors;
        reason::render(
            denial,
            errors.detail,
            errors.realm.as_deref(),
            &errors.reason_header,
        )
    }
}

/// A provider's `min_rsa_bits` as a size (it is bounded to 1024–4096 by validation).
pub fn min_rsa_bits(provider: &Provider) -> usize {
    usize::try_from(provider.min_rsa_bits).unwrap_or(crate::jwks::MIN_RSA_BITS)
}

/// The answer to every request while the configuration is invalid.
pub fn config_invalid_response() -> Response {
    reason::render(
        &Denial::new(Reason::ConfigInvalid),
        reason::Detail::Reason,
        None,
        crate::config::DEFAULT_REASON_HEADER,
    )
}
