//! `headers`: identity headers set upstream, headers stripped from the client's request, the
//! signed assertion.

use schemars::JsonSchema;
use serde::Deserialize;

use super::providers::IdentityField;
use super::ConfigError;
use crate::claims::ClaimPath;

/// Identity headers.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadersConfig {
    /// Claims copied into request headers, for tokens of providers without their own
    /// `claim_headers`. Default: none.
    #[serde(default)]
    pub claims: Vec<ClaimHeader>,
    /// Further request headers always removed from the client's request (any route, allowed or
    /// not), e.g. headers an upstream trusts. Every header the filter may set is removed anyway.
    #[serde(default)]
    pub strip: Vec<String>,
    /// Forward the original token upstream. Default `false`: it is removed from wherever it
    /// was found (header, query parameter or cookie).
    #[serde(default)]
    pub forward_token: bool,
    /// Request header carrying a report-only decision upstream
    /// (`allow; rule=<name>` or `deny; reason=<code>; rule=<name>`). Default `x-identity-report`.
    #[serde(default = "default_report_header")]
    pub report_header: String,
    /// The signed identity assertion for downstream services. Default: none.
    #[serde(default)]
    pub assertion: Option<AssertionConfig>,
    /// Every request header whose name starts with this prefix belongs to the filter: it is
    /// stripped (or refused, see `spoofed_headers`) like the headers the filter sets, whatever
    /// is configured. Token-source headers and the assertion's request id header are never
    /// counted. Lower case; empty turns the prefix off. Default `x-identity-`.
    #[serde(default = "default_reserved_prefix")]
    pub reserved_prefix: String,
    /// What happens to a request that carries a header the filter manages (a claim header, the
    /// assertion or report header, a `strip` entry, or a name under `reserved_prefix`):
    /// `strip` removes it before the request goes on (right where the host really removes
    /// headers: Envoy, Istio); `reject` answers 400 `identity_header_spoofed` before any other
    /// work, also on anonymous routes and in report-only mode (Kong's host forwards a removed
    /// header anyway, so refusing is the only way to keep client-sent identity from the
    /// upstream); `auto` (the default) is `reject` in Kong and `strip` in Envoy and Istio, from
    /// the host the filter runs in.
    #[serde(default)]
    pub spoofed_headers: SpoofPolicy,
}

/// `headers.spoofed_headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpoofPolicy {
    /// `reject` in Kong, `strip` in Envoy and Istio.
    #[default]
    Auto,
    /// Remove the client's managed headers and go on.
    Strip,
    /// Answer 400 `identity_header_spoofed`.
    Reject,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        HeadersConfig {
            claims: Vec::new(),
            strip: Vec::new(),
            forward_token: false,
            report_header: default_report_header(),
            assertion: None,
            reserved_prefix: default_reserved_prefix(),
            spoofed_headers: SpoofPolicy::default(),
        }
    }
}

/// The signed assertion: a compact JWT minted by the filter for each allowed request with a
/// verified caller, carrying the normalized identity and bound to the request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionConfig {
    /// Request header that carries it. Default `x-identity-assertion`.
    #[serde(default = "default_assertion_header")]
    pub header: String,
    /// Its `iss`. Default `identity-filter`.
    #[serde(default = "default_assertion_issuer")]
    pub issuer: String,
    /// Its `aud`: the downstream service.
    pub audience: String,
    /// Seconds from `iat` to `exp`. Default 60.
    #[serde(default = "default_assertion_lifetime")]
    #[schemars(range(min = 1, max = 3600))]
    pub lifetime_seconds: u64,
    /// Signing keys; the first signs, all are published (EdDSA) so keys can rotate.
    pub keys: Vec<AssertionKey>,
    /// With EdDSA keys: a local path (e.g. `/.well-known/identity-filter/jwks.json`) the filter
    /// answers itself with the JWKS of its public keys. Default: not served.
    #[serde(default)]
    pub jwks_path: Option<String>,
    /// Request header holding the request id the assertion is bound to. When the request has
    /// none, the filter generates one and sets this header. Default `x-request-id`.
    #[serde(default = "default_request_id_header")]
    pub request_id_header: String,
}

/// One assertion signing key: exactly one of `secret` (HS256) or `private_jwk` (EdDSA).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionKey {
    /// Key id, sent as `kid`.
    pub kid: String,
    /// HS256 shared secret (its UTF-8 bytes; at least 32).
    #[serde(default)]
    pub secret: Option<String>,
    /// EdDSA private key as an OKP Ed25519 JWK (`{"kty":"OKP","crv":"Ed25519","d":..,"x":..}`).
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub private_jwk: Option<serde_json::Value>,
}

/// One claim → header mapping.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimHeader {
    /// A claim path: a top-level name (`sub`), a dotted path into objects
    /// (`realm_access.roles`, `kubernetes.io.namespace`) or an array of names
    /// (`["kubernetes.io", "namespace"]`). Strings are copied as they are, numbers and booleans
    /// as text, arrays joined with `,`, objects as compact JSON. A value with control characters
    /// is never written. Exactly one of `claim` and `identity`.
    #[serde(default)]
    pub claim: Option<ClaimPath>,
    /// A field of the normalized caller instead of a raw claim: `subject`, `issuer`,
    /// `provider`, `roles`, `groups`, `scopes` (lists joined with `,`) or `tenant`.
    #[serde(default)]
    pub identity: Option<IdentityField>,
    /// The request header to set, e.g. `x-identity-subject`.
    pub header: String,
}

fn default_report_header() -> String {
    "x-identity-report".to_string()
}
fn default_reserved_prefix() -> String {
    "x-identity-".to_string()
}
fn default_assertion_header() -> String {
    "x-identity-assertion".to_string()
}
fn default_assertion_issuer() -> String {
    "identity-filter".to_string()
}
fn default_assertion_lifetime() -> u64 {
    60
}
fn default_request_id_header() -> String {
    "x-request-id".to_string()
}

impl HeadersConfig {
    /// `headers`: claim headers, the report header, the assertion, the strip list (the reserved
    /// prefix is checked later, by [`HeadersConfig::check_reserved_prefix`]).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check_claim_headers(&self.claims, "headers.claims")?;
        check_header_name(&self.report_header)
            .map_err(|m| ConfigError::new("headers.report_header", m))?;
        if let Some(a) = &self.assertion {
            a.validate("headers.assertion")?;
        }
        for (i, h) in self.strip.iter().enumerate() {
            check_header_name(h).map_err(|m| ConfigError::new(format!("headers.strip[{i}]"), m))?;
        }
        Ok(())
    }

    /// `reserved_prefix`: empty, or lower-case header-name characters.
    pub(super) fn check_reserved_prefix(&self) -> Result<(), ConfigError> {
        let p = &self.reserved_prefix;
        if !p.is_empty() {
            check_header_name(p).map_err(|m| ConfigError::new("headers.reserved_prefix", m))?;
            if p.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(ConfigError::new(
                    "headers.reserved_prefix",
                    "must be lower case",
                ));
            }
        }
        Ok(())
    }
}

impl AssertionConfig {
    /// `headers.assertion` (at `at`): header names, audience, lifetime, keys, JWKS path.
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check_header_name(&self.header).map_err(|m| ConfigError::new(format!("{at}.header"), m))?;
        check_header_name(&self.request_id_header)
            .map_err(|m| ConfigError::new(format!("{at}.request_id_header"), m))?;
        if self.audience.is_empty() {
            return Err(ConfigError::new(
                format!("{at}.audience"),
                "must not be empty",
            ));
        }
        if self.lifetime_seconds == 0 || self.lifetime_seconds > 3600 {
            return Err(ConfigError::new(
                format!("{at}.lifetime_seconds"),
                "must be between 1 and 3600",
            ));
        }
        if self.keys.is_empty() {
            return Err(ConfigError::new(
                format!("{at}.keys"),
                "at least one key is required",
            ));
        }
        for (i, k) in self.keys.iter().enumerate() {
            let here = format!("{at}.keys[{i}]");
            if k.kid.is_empty() {
                return Err(ConfigError::new(format!("{here}.kid"), "must not be empty"));
            }
            match (&k.secret, &k.private_jwk) {
                (Some(secret), None) if secret.len() < 32 => {
                    return Err(ConfigError::new(
                        format!("{here}.secret"),
                        "must be at least 32 bytes",
                    ));
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(ConfigError::new(
                        here,
                        "set exactly one of `secret`, `private_jwk`",
                    ))
                }
            }
        }
        if let Some(path) = &self.jwks_path {
            if !path.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{at}.jwks_path"),
                    "must start with `/`",
                ));
            }
            if self.keys.iter().all(|k| k.private_jwk.is_none()) {
                return Err(ConfigError::new(
                    format!("{at}.jwks_path"),
                    "only EdDSA keys have a public JWKS",
                ));
            }
        }
        Ok(())
    }
}

/// A header name we may set or strip: an HTTP token, not a pseudo-header, not hop-by-hop.
pub(super) fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    let token = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!("`{name}` is not a valid header name"));
    }
    let lower = name.to_ascii_lowercase();
    if ["host", "content-length", "transfer-encoding", "connection"].contains(&lower.as_str()) {
        return Err(format!("`{name}` cannot be used here"));
    }
    Ok(())
}

/// Claim headers (`headers.claims`, `providers[].claim_headers`): exactly one of `claim` and
/// `identity` each (claim paths are checked as they are parsed), and a header name we may set.
pub(super) fn check_claim_headers(list: &[ClaimHeader], at: &str) -> Result<(), ConfigError> {
    for (i, c) in list.iter().enumerate() {
        if c.claim.is_some() == c.identity.is_some() {
            return Err(ConfigError::new(
                format!("{at}[{i}]"),
                "set exactly one of `claim`, `identity`",
            ));
        }
        check_header_name(&c.header)
            .map_err(|m| ConfigError::new(format!("{at}[{i}].header"), m))?;
    }
    Ok(())
}
