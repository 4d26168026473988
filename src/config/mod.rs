//! The filter's configuration: one JSON document, the same for Envoy, Istio and Kong.
//!
//! Parsing is strict: unknown fields and wrong types are errors naming their path
//! (`providers[0].audiences`). Every field is documented where it is declared, with its default.
//!
//! One file per section, each with its types, their defaults and its `validate` beside its
//! fields (the bounds of its numbers too): `providers`, `tokens` (`token_sources`,
//! `max_token_bytes`), `rules` (and `default`), `headers` (and the assertion), `errors`,
//! `metrics`, `log`, `cache`, `remote_keys`, `client_certificate`; `paths` and `dpop` are
//! declared by the modules that read them (`crate::path`, `crate::dpop`). This file keeps the
//! top-level document: parsing, the checks in their order, the one normalization of header
//! names, and the error type.

use schemars::JsonSchema;
use serde::Deserialize;

mod cache;
mod client_certificate;
mod errors;
mod headers;
mod log;
mod metrics;
mod providers;
mod remote_keys;
mod rules;
#[cfg(test)]
mod tests;
mod tokens;

pub use cache::CacheConfig;
pub use client_certificate::{CertificateSource, ClientCertificateConfig};
pub use errors::{ErrorsConfig, DEFAULT_REASON_HEADER};
pub use headers::{AssertionConfig, HeadersConfig, SpoofPolicy};
pub use log::LogConfig;
pub use metrics::MetricsConfig;
pub use providers::{CertificateBound, IdentityField, Provider};
pub use remote_keys::{RemoteKeysConfig, WaitMode};
pub use rules::{ClaimCondition, DefaultAction, Requirement, RouteMatch, Rule, SetCondition};
pub use tokens::TokenSource;

/// The whole configuration document.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Token issuers the filter trusts. A token is matched to a provider by its `iss` claim.
    #[schemars(length(min = 1))]
    pub providers: Vec<Provider>,
    /// Where to look for the token, in order. Default: `Authorization: Bearer <token>`.
    /// When several locations hold different tokens the request is refused (`token_ambiguous`).
    #[serde(default = "tokens::default_token_sources")]
    #[schemars(length(min = 1))]
    pub token_sources: Vec<TokenSource>,
    /// Largest accepted token in bytes, checked before any parsing (`token_too_large`). Default 8192.
    #[serde(default = "tokens::default_max_token_bytes")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_token_bytes: usize,
    /// Route rules; the first whose `match` fits the request decides. Default: none.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// What happens to a request no rule matches. Default `deny`.
    #[serde(default)]
    pub default: DefaultAction,
    /// Identity headers sent upstream and headers stripped from the client's request.
    #[serde(default)]
    pub headers: HeadersConfig,
    /// How denials are reported to the client.
    #[serde(default)]
    pub errors: ErrorsConfig,
    /// Let CORS preflight requests (OPTIONS with `Origin` and `Access-Control-Request-Method`)
    /// pass without a token. Identity headers are still stripped. Default `false`.
    #[serde(default)]
    pub cors_preflight: bool,
    /// Report-only for every rule and the default: decisions are computed, logged and sent
    /// upstream in `headers.report_header`, but no request is refused. Default `false`.
    #[serde(default)]
    pub report_only: bool,
    /// Counters by outcome and reason. Kong 3.4–3.7 trap on metric calls: set `enabled: false` there.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// One structured log line per decision.
    #[serde(default)]
    pub log: LogConfig,
    /// The verified-token cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// How remote keys (`jwks_uri`, `discovery`) are fetched and waited for, for all providers.
    #[serde(default)]
    pub remote_keys: RemoteKeysConfig,
    /// How request paths are matched: rules see one canonical form of the path (see
    /// docs/configuration.md, "Paths").
    #[serde(default)]
    pub paths: crate::path::PathsConfig,
    /// Where the client certificate of certificate-bound tokens (RFC 8705, `cnf["x5t#S256"]`)
    /// comes from. Default: the host's own TLS connection (`source: connection`).
    #[serde(default)]
    pub client_certificate: ClientCertificateConfig,
    /// DPoP (RFC 9449) settings of the request: the public URI proofs name and the replay
    /// cache. Each provider's `dpop` says what its tokens need.
    #[serde(default)]
    pub dpop: crate::dpop::DpopConfig,
}

fn default_true() -> bool {
    true
}

/// `value` within the inclusive `(min, max)`, or an error naming the field. Every numeric field
/// is checked against bounds kept beside it in its section (`bounds` there), the same as the
/// `range(...)` of its schema (the tests drive each with 0, its bound and `u64::MAX`). Nothing
/// is allocated in proportion to a configured number, and no later arithmetic on one can
/// overflow.
fn within(at: impl Into<String>, value: u64, (min, max): (u64, u64)) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            at,
            format!("must be between {min} and {max}"),
        ))
    }
}

fn within_usize(at: impl Into<String>, value: usize, range: (u64, u64)) -> Result<(), ConfigError> {
    within(at, u64::try_from(value).unwrap_or(u64::MAX), range)
}

/// A configuration error: the field's path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(
                f,
                "invalid configuration at {}: {}",
                self.path, self.message
            )
        }
    }
}

/// A deserialization error's message. A JSON syntax error keeps its line and column (the text is
/// not JSON, so no field path can name the place); a type error names its field path instead.
fn json_message(e: &serde_json::Error) -> String {
    let message = strip_position(&e.to_string());
    if e.is_syntax() || e.is_eof() {
        format!("{message} (line {}, column {})", e.line(), e.column())
    } else {
        message
    }
}

impl Config {
    /// Parse and validate a configuration document.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let mut config: Config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::new(path, json_message(&inner))
        })?;
        de.end()
            .map_err(|e| ConfigError::new("", json_message(&e)))?;
        config.validate()?;
        config.normalize();
        Ok(config)
    }

    /// Request header names in one form, lower case, decided once here: every comparison and
    /// every header the filter sets uses it.
    fn normalize(&mut self) {
        let lower = |s: &mut String| *s = s.to_ascii_lowercase();
        for c in &mut self.headers.claims {
            lower(&mut c.header);
        }
        for p in &mut self.providers {
            for c in p.claim_headers.iter_mut().flatten() {
                lower(&mut c.header);
            }
        }
        self.headers.strip.iter_mut().for_each(lower);
        lower(&mut self.headers.report_header);
        if let Some(a) = &mut self.headers.assertion {
            lower(&mut a.header);
            lower(&mut a.request_id_header);
        }
        for t in &mut self.token_sources {
            if let Some(h) = &mut t.header {
                lower(h);
            }
        }
        if let Some(h) = &mut self.client_certificate.header {
            lower(h);
        }
    }

    /// Checks serde cannot express, section by section; the first error found is reported, so
    /// the sections are checked in this order. Keys are checked when they are loaded (see
    /// `jwks`).
    fn validate(&self) -> Result<(), ConfigError> {
        providers::validate(&self.providers)?;
        tokens::validate(&self.token_sources, self.max_token_bytes)?;
        rules::validate(&self.rules)?;
        self.headers.validate()?;
        self.errors.validate()?;
        self.headers.check_reserved_prefix()?;
        self.remote_keys.validate()?;
        self.cache.validate()?;
        self.dpop.check()?;
        rules::check_paths(&self.rules)?;
        rules::check_provider_names(&self.rules, &self.providers)?;
        self.client_certificate.validate(self)?;
        Ok(())
    }
}

/// serde_json appends " at line L column C"; the path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
