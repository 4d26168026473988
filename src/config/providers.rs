//! `providers`: the trusted token issuers, how their tokens are checked and where their keys
//! come from.

use schemars::JsonSchema;
use serde::Deserialize;

use super::headers::{check_claim_headers, ClaimHeader};
use super::{default_true, within, within_usize, ConfigError};
use crate::claims::ClaimPath;
use crate::jose::Algorithm;

/// Default allowed clock skew for `exp`, `nbf` and `iat`.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;

/// `providers[].certificate_bound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateBound {
    /// Bound tokens are checked against the certificate; unbound tokens are accepted.
    #[default]
    Allowed,
    /// Only certificate-bound tokens are accepted (`certificate_required` otherwise).
    Required,
}

/// A trusted token issuer and how its tokens are checked.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// A short name, used in logs and metrics. Must be unique.
    pub name: String,
    /// The exact `iss` value of this issuer's tokens, or a pattern with one `{tenant}` path
    /// segment for a multi-tenant issuer (`https://login.microsoftonline.com/{tenant}/v2.0`),
    /// which then needs `tenants`. No `iss` may match two providers.
    pub issuer: String,
    /// With an issuer pattern: the tenants accepted, as they appear in `iss` (compared
    /// exactly). A token of another tenant gets 401 `issuer_unknown`. The matched tenant is the
    /// caller's tenant (a tenant claim of `identity.tenant`, when the token has one, must name
    /// the same tenant). Required, non-empty, with a pattern (`"*"` is not accepted: anyone can
    /// create a tenant of a public multi-tenant IdP); not allowed without one. Default: none.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Accepted audiences; a token passes when any of its audiences (see `audience_claims`) is
    /// listed. Empty (the default) means the audience is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The claims (claim paths) that hold the token's audiences: its audiences are every string
    /// found in any of them (a string, or the strings of an array). E.g. `["client_id"]` for
    /// Cognito access tokens, which carry no `aud`. At least one. Default `["aud"]`.
    #[serde(default = "default_audience_claims")]
    pub audience_claims: Vec<ClaimPath>,
    /// Inline JSON Web Key Set (RFC 7517) with the issuer's keys: RSA, EC P-256/P-384, OKP
    /// Ed25519 and, for HS algorithms only, `oct` secrets. Exactly one of `jwks`, `jwks_uri`
    /// and `discovery: true` gives the keys. Default: none.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub jwks: Option<serde_json::Value>,
    /// URL of the issuer's JWKS (`https://idp.example.com/keys`), fetched through `upstream`:
    /// its host (and port) is sent as `:authority`, its path and query as `:path`; TLS is the
    /// upstream's business. Remote key sets skip unusable keys and never accept `oct` keys.
    /// Default: none.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// OIDC discovery: fetch `<issuer>/.well-known/openid-configuration` through `upstream`,
    /// require its `issuer` to equal `issuer`, then fetch its `jwks_uri` (through the same
    /// upstream, with that URL's host as `:authority`). Default `false`.
    #[serde(default)]
    pub discovery: bool,
    /// Where key fetches go: an Envoy cluster name (Istio: e.g.
    /// `outbound|443||idp.example.com`); under Kong a `host:port` or IP. Required with
    /// `jwks_uri` or `discovery`. Default: none.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Timeout of one fetch in milliseconds (Kong applies it to connect, send and read
    /// separately). Default 5000.
    #[serde(default = "default_fetch_timeout_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub fetch_timeout_ms: u64,
    /// Shortest refresh interval in seconds: a smaller `Cache-Control: max-age` (or
    /// `no-cache`/`no-store`) is raised to it. Default 60.
    #[serde(default = "default_min_refresh_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub min_refresh_seconds: u64,
    /// Longest refresh interval in seconds: a larger `max-age` is lowered to it, and it is the
    /// interval when the answer has no `max-age`. Default 600.
    #[serde(default = "default_max_refresh_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_refresh_seconds: u64,
    /// Smallest time in seconds between two refetches caused by tokens whose `kid` is not in
    /// the key set (per provider and worker), so junk `kid`s cannot flood the IdP. Default 30.
    #[serde(default = "default_refetch_min_interval_seconds")]
    #[schemars(range(max = 86400))]
    pub refetch_min_interval_seconds: u64,
    /// While fetches fail, the last good key set stays in use for this many seconds after its
    /// refresh came due; then requests get 503 `keys_unavailable`. Default 86400.
    #[serde(default = "default_max_stale_seconds")]
    #[schemars(range(max = 2592000))]
    pub max_stale_seconds: u64,
    /// How long, in milliseconds, a request that arrives before the issuer's keys are known
    /// waits (paused) for them before it is answered 503 `keys_unavailable`. 0 never waits.
    /// Default 3000.
    #[serde(default = "default_cold_start_wait_ms")]
    #[schemars(range(max = 60000))]
    pub cold_start_wait_ms: u64,
    /// Largest accepted body of a JWKS or discovery answer in bytes; a larger one is a failed
    /// fetch. Default 262144.
    #[serde(default = "default_max_response_bytes")]
    #[schemars(range(min = 64, max = 1048576))]
    pub max_response_bytes: usize,
    /// Allowed signing algorithms. The algorithm never comes from the token alone: a token whose
    /// `alg` is not listed here is refused. Default: RS256, RS384, RS512, PS256, PS384, PS512,
    /// ES256, ES384, EdDSA. HS256/384/512 must be listed explicitly and need an `oct` key.
    #[serde(default)]
    pub algorithms: Vec<Algorithm>,
    /// Smallest RSA modulus, in bits, of this issuer's keys (1024–4096). A shorter RSA key in
    /// the key set, inline or fetched, is skipped (logged once per read, counted in
    /// `identity_filter.keys.weak_skipped`); tokens it signed get 401 `key_not_found`, the rest
    /// of the set works. The upper bound is the largest RSA key accepted at all; below 1024 bits
    /// keys have been factored publicly. Default 2048.
    #[serde(default = "default_min_rsa_bits")]
    #[schemars(range(min = 1024, max = 4096))]
    pub min_rsa_bits: u64,
    /// Allowed clock skew in seconds for `exp`, `nbf` and `iat`. Default 60.
    #[serde(default = "default_clock_skew")]
    #[schemars(range(max = 3600))]
    pub clock_skew_seconds: u64,
    /// Largest accepted token lifetime (`exp - iat`, or `exp - now` without `iat`) in seconds.
    /// Default: no limit.
    #[serde(default)]
    #[schemars(range(min = 1, max = 31536000))]
    pub max_lifetime_seconds: Option<u64>,
    /// Refuse tokens without `exp`. Default `true`.
    #[serde(default = "default_true")]
    pub require_expiration: bool,
    /// Claims (claim paths) that must be present, e.g. `["sub", "realm_access.roles"]`.
    #[serde(default)]
    pub require_claims: Vec<ClaimPath>,
    /// How this issuer's claims map onto the normalized caller (subject, roles, groups,
    /// scopes, tenant). Default: `sub`, `roles`, `groups`, `scope` + `scp`, no tenant.
    #[serde(default)]
    pub identity: IdentityMapping,
    /// Claim headers for this issuer's tokens, in the shape of `headers.claims`; when set, it
    /// replaces `headers.claims` for them (`[]`: none). Every header named here is managed
    /// like `headers.claims`: stripped from (or refused in) every request, whichever issuer
    /// sent it. Default: none (`headers.claims` applies).
    #[serde(default)]
    pub claim_headers: Option<Vec<ClaimHeader>>,
    /// Certificate-bound tokens (RFC 8705): `allowed` (the default): a token whose `cnf` holds
    /// `x5t#S256` is accepted only with the client certificate of that SHA-256 (see
    /// `client_certificate`), a token without it as a bearer token; `required`: a token without
    /// `x5t#S256` is refused (401 `certificate_required`). A bound token is never accepted
    /// without its certificate, whatever this says.
    #[serde(default)]
    pub certificate_bound: CertificateBound,
    /// DPoP (RFC 9449) for this issuer's tokens: `mode` (`off`, `allowed`, `required`), proof
    /// `algorithms`, `max_age_seconds`. Default: `allowed` (bound tokens and sent proofs are
    /// checked, plain bearer tokens keep working).
    #[serde(default)]
    pub dpop: crate::dpop::ProviderDpop,
}

/// Claim paths of the normalized caller. A dotted string reaches into objects
/// (`realm_access.roles`), the longest claim name first at every level, so names with dots
/// are found (`https://example.com/roles`, `kubernetes.io.namespace`); an array names each
/// key explicitly (`["kubernetes.io", "namespace"]`). Lists take every string found under any
/// listed path; a space-delimited string (OAuth `scope`) becomes a list.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityMapping {
    /// The subject claim. Default `sub`.
    #[serde(default = "default_subject_claim")]
    pub subject: ClaimPath,
    /// Role claims. Default `["roles"]`.
    #[serde(default = "default_roles_claims")]
    pub roles: Vec<ClaimPath>,
    /// Group claims. Default `["groups"]`.
    #[serde(default = "default_groups_claims")]
    pub groups: Vec<ClaimPath>,
    /// Scope claims. Default `["scope", "scp"]`.
    #[serde(default = "default_scopes_claims")]
    pub scopes: Vec<ClaimPath>,
    /// Tenant claims; the first that holds a string (or number) wins. Default: none.
    #[serde(default)]
    pub tenant: Vec<ClaimPath>,
}

impl Default for IdentityMapping {
    fn default() -> Self {
        IdentityMapping {
            subject: default_subject_claim(),
            roles: default_roles_claims(),
            groups: default_groups_claims(),
            scopes: default_scopes_claims(),
            tenant: Vec::new(),
        }
    }
}

/// A field of the normalized caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityField {
    Subject,
    Issuer,
    Provider,
    Roles,
    Groups,
    Scopes,
    Tenant,
    /// How the token is bound to its sender: `dpop`, `mtls` or `none`.
    Binding,
}

fn default_clock_skew() -> u64 {
    DEFAULT_CLOCK_SKEW_SECONDS
}

fn default_subject_claim() -> ClaimPath {
    ClaimPath::name("sub")
}
fn default_roles_claims() -> Vec<ClaimPath> {
    vec![ClaimPath::name("roles")]
}
fn default_groups_claims() -> Vec<ClaimPath> {
    vec![ClaimPath::name("groups")]
}
fn default_scopes_claims() -> Vec<ClaimPath> {
    vec![ClaimPath::name("scope"), ClaimPath::name("scp")]
}
fn default_audience_claims() -> Vec<ClaimPath> {
    vec![ClaimPath::name("aud")]
}

fn default_fetch_timeout_ms() -> u64 {
    5000
}
fn default_min_refresh_seconds() -> u64 {
    60
}
fn default_max_refresh_seconds() -> u64 {
    600
}
fn default_refetch_min_interval_seconds() -> u64 {
    30
}
fn default_max_stale_seconds() -> u64 {
    86400
}
fn default_cold_start_wait_ms() -> u64 {
    3000
}
fn default_max_response_bytes() -> usize {
    262_144
}
fn default_min_rsa_bits() -> u64 {
    crate::jwks::MIN_RSA_BITS as u64
}

impl Provider {
    /// An issuer pattern has a tenant allow-list; an exact issuer has none.
    fn check_tenants(&self, i: usize) -> Result<(), ConfigError> {
        let at = |field: &str| format!("providers[{i}].{field}");
        if !crate::issuer::is_pattern(&self.issuer) {
            if !self.tenants.is_empty() {
                return Err(ConfigError::new(
                    at("tenants"),
                    "only allowed with an issuer pattern (`{tenant}` in `issuer`)",
                ));
            }
            return Ok(());
        }
        crate::issuer::check_pattern(&self.issuer)
            .map_err(|m| ConfigError::new(at("issuer"), m))?;
        if self.tenants.is_empty() {
            return Err(ConfigError::new(
                at("tenants"),
                "is required with an issuer pattern: list the tenants to accept",
            ));
        }
        for (k, t) in self.tenants.iter().enumerate() {
            let message = if t == "*" {
                "`*` is not accepted: list the tenants (anyone can create a tenant)"
            } else if t.is_empty() || t.contains(['/', '{', '}']) || t.chars().any(char::is_control)
            {
                "must be a non-empty path segment"
            } else {
                continue;
            };
            return Err(ConfigError::new(at(&format!("tenants[{k}]")), message));
        }
        Ok(())
    }

    /// Whether this provider's keys are fetched (`jwks_uri` or `discovery`).
    pub fn is_remote(&self) -> bool {
        self.jwks_uri.is_some() || self.discovery
    }

    /// Exactly one key source, and the fetch settings it needs.
    fn check_key_source(&self, i: usize) -> Result<(), ConfigError> {
        let at = |field: &str| format!("providers[{i}].{field}");
        let sources = [self.jwks.is_some(), self.jwks_uri.is_some(), self.discovery];
        if sources.iter().filter(|b| **b).count() != 1 {
            return Err(ConfigError::new(
                format!("providers[{i}]"),
                "set exactly one of `jwks`, `jwks_uri`, `discovery: true`",
            ));
        }
        if let Some(jwks) = &self.jwks {
            if !jwks.is_object() {
                return Err(ConfigError::new(
                    at("jwks"),
                    "must be a JWKS object with a `keys` array",
                ));
            }
            return Ok(());
        }
        if let Some(uri) = &self.jwks_uri {
            crate::fetch::Target::parse(uri).map_err(|m| ConfigError::new(at("jwks_uri"), m))?;
        }
        if self.discovery {
            crate::fetch::Target::discovery(&crate::issuer::discovery_issuer(self)).map_err(
                |m| {
                    ConfigError::new(
                        at("discovery"),
                        format!("needs an http(s) URL as `issuer`: {m}"),
                    )
                },
            )?;
        }
        match &self.upstream {
            None => {
                return Err(ConfigError::new(
                    at("upstream"),
                    "is required with `jwks_uri` or `discovery`",
                ))
            }
            Some(u) if u.trim().is_empty() => {
                return Err(ConfigError::new(at("upstream"), "must not be empty"))
            }
            Some(_) => {}
        }
        if self.max_refresh_seconds < self.min_refresh_seconds {
            return Err(ConfigError::new(
                at("max_refresh_seconds"),
                "must not be less than `min_refresh_seconds`",
            ));
        }
        Ok(())
    }

    /// Every numeric field within its bounds (whatever the key source).
    fn check_bounds(&self, i: usize) -> Result<(), ConfigError> {
        let at = |field: &str| format!("providers[{i}].{field}");
        within(
            at("fetch_timeout_ms"),
            self.fetch_timeout_ms,
            bounds::FETCH_TIMEOUT_MS,
        )?;
        within(
            at("min_refresh_seconds"),
            self.min_refresh_seconds,
            bounds::REFRESH_SECONDS,
        )?;
        within(
            at("max_refresh_seconds"),
            self.max_refresh_seconds,
            bounds::REFRESH_SECONDS,
        )?;
        within(
            at("refetch_min_interval_seconds"),
            self.refetch_min_interval_seconds,
            bounds::REFETCH_MIN_INTERVAL_SECONDS,
        )?;
        within(
            at("max_stale_seconds"),
            self.max_stale_seconds,
            bounds::MAX_STALE_SECONDS,
        )?;
        within(
            at("cold_start_wait_ms"),
            self.cold_start_wait_ms,
            bounds::COLD_START_WAIT_MS,
        )?;
        within_usize(
            at("max_response_bytes"),
            self.max_response_bytes,
            bounds::MAX_RESPONSE_BYTES,
        )?;
        within(
            at("clock_skew_seconds"),
            self.clock_skew_seconds,
            bounds::CLOCK_SKEW_SECONDS,
        )?;
        within(at("min_rsa_bits"), self.min_rsa_bits, bounds::MIN_RSA_BITS)?;
        if let Some(lifetime) = self.max_lifetime_seconds {
            within(
                at("max_lifetime_seconds"),
                lifetime,
                bounds::MAX_LIFETIME_SECONDS,
            )?;
        }
        Ok(())
    }
}

/// `providers`: at least one; names and issuers unique, and no `iss` that could match two; each
/// provider's own checks.
pub(super) fn validate(providers: &[Provider]) -> Result<(), ConfigError> {
    if providers.is_empty() {
        return Err(ConfigError::new(
            "providers",
            "at least one provider is required",
        ));
    }
    for (i, p) in providers.iter().enumerate() {
        let at = |field: &str| format!("providers[{i}].{field}");
        if p.name.trim().is_empty() {
            return Err(ConfigError::new(at("name"), "must not be empty"));
        }
        if p.issuer.is_empty() {
            return Err(ConfigError::new(at("issuer"), "must not be empty"));
        }
        for (j, q) in providers.iter().enumerate().take(i) {
            if q.name == p.name {
                return Err(ConfigError::new(
                    at("name"),
                    format!("duplicates providers[{j}].name"),
                ));
            }
            if q.issuer == p.issuer {
                return Err(ConfigError::new(
                    at("issuer"),
                    format!("duplicates providers[{j}].issuer"),
                ));
            }
            if crate::issuer::overlap(&q.issuer, &p.issuer) {
                return Err(ConfigError::new(
                    at("issuer"),
                    format!("one `iss` could match both this and providers[{j}].issuer"),
                ));
            }
        }
        p.check_tenants(i)?;
        p.check_bounds(i)?;
        p.dpop.check(i)?;
        p.check_key_source(i)?;
        if p.audience_claims.is_empty() {
            return Err(ConfigError::new(
                at("audience_claims"),
                "name at least one claim (the default is `[\"aud\"]`)",
            ));
        }
        if let Some(list) = &p.claim_headers {
            check_claim_headers(list, &at("claim_headers"))?;
        }
    }
    Ok(())
}

/// Inclusive bounds of a provider's numeric fields, the same as the `range(...)` of their schema
/// (see [`super::within`]).
mod bounds {
    pub const FETCH_TIMEOUT_MS: (u64, u64) = (1, 60_000);
    pub const REFRESH_SECONDS: (u64, u64) = (1, 86_400);
    pub const REFETCH_MIN_INTERVAL_SECONDS: (u64, u64) = (0, 86_400);
    pub const MAX_STALE_SECONDS: (u64, u64) = (0, 2_592_000);
    pub const COLD_START_WAIT_MS: (u64, u64) = (0, 60_000);
    pub const MAX_RESPONSE_BYTES: (u64, u64) = (64, 1_048_576);
    pub const CLOCK_SKEW_SECONDS: (u64, u64) = (0, 3_600);
    /// `jwks::LOWEST_MIN_RSA_BITS` to `jwks::MAX_RSA_BITS`.
    pub const MIN_RSA_BITS: (u64, u64) = (1_024, 4_096);
    pub const MAX_LIFETIME_SECONDS: (u64, u64) = (1, 31_536_000);
}
