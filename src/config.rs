//! The filter's configuration: one JSON document, the same for Envoy, Istio and Kong.
//!
//! Parsing is strict: unknown fields and wrong types are errors naming their path
//! (`providers[0].audiences`). Every field is documented where it is declared, with its default.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::reason::Detail;

/// Default maximum token size in bytes, checked before any parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Default allowed clock skew for `exp`, `nbf` and `iat`.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// Default name of the response header that carries a denial's reason code.
pub const DEFAULT_REASON_HEADER: &str = "x-identity-reason";

/// The whole configuration document.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Token issuers the filter trusts. A token is matched to a provider by its `iss` claim.
    pub providers: Vec<Provider>,
    /// Where to look for the token, in order. Default: `Authorization: Bearer <token>`.
    /// When several locations hold different tokens the request is refused (`token_ambiguous`).
    #[serde(default = "default_token_sources")]
    pub token_sources: Vec<TokenSource>,
    /// Largest accepted token in bytes, checked before any parsing (`token_too_large`). Default 8192.
    #[serde(default = "default_max_token_bytes")]
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
    /// Counters by outcome and reason. Kong 3.4–3.7 trap on metric calls: set `enabled: false` there.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// One structured log line per decision.
    #[serde(default)]
    pub log: LogConfig,
}

/// A trusted token issuer and how its tokens are checked.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// A short name, used in logs and metrics. Must be unique.
    pub name: String,
    /// The exact `iss` value of this issuer's tokens. Must be unique across providers.
    pub issuer: String,
    /// Accepted `aud` values; a token passes when any of its audiences is listed. Empty (the
    /// default) means the audience is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Inline JSON Web Key Set (RFC 7517) with the issuer's keys: RSA, EC P-256/P-384, OKP
    /// Ed25519 and, for HS algorithms only, `oct` secrets.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub jwks: serde_json::Value,
    /// Allowed signing algorithms. The algorithm never comes from the token alone: a token whose
    /// `alg` is not listed here is refused. Default: RS256, RS384, RS512, PS256, PS384, PS512,
    /// ES256, ES384, EdDSA. HS256/384/512 must be listed explicitly and need an `oct` key.
    #[serde(default)]
    pub algorithms: Vec<Algorithm>,
    /// Allowed clock skew in seconds for `exp`, `nbf` and `iat`. Default 60.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// Largest accepted token lifetime (`exp - iat`, or `exp - now` without `iat`) in seconds.
    /// Default: no limit.
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
    /// Refuse tokens without `exp`. Default `true`.
    #[serde(default = "default_true")]
    pub require_expiration: bool,
    /// Claims (dotted paths) that must be present, e.g. `["sub", "realm_access.roles"]`.
    #[serde(default)]
    pub require_claims: Vec<String>,
}

/// A JWS signing algorithm (RFC 7518, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
pub enum Algorithm {
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
    HS384,
    HS512,
}

impl Algorithm {
    /// The default allow-list: every asymmetric algorithm.
    pub const ASYMMETRIC: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// Parse a JOSE `alg` value; `None` for anything unknown (including `none`).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ASYMMETRIC
            .iter()
            .chain([Algorithm::HS256, Algorithm::HS384, Algorithm::HS512].iter())
            .copied()
            .find(|a| a.name() == name)
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }
}

/// One place a token may be found. Exactly one of `header`, `query`, `cookie` is set.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenSource {
    /// A request header name (case-insensitive), e.g. `authorization`.
    #[serde(default)]
    pub header: Option<String>,
    /// With `header`: the value's prefix before the token, matched ASCII case-insensitively,
    /// e.g. `"Bearer "`. Default: none (the whole value is the token).
    #[serde(default)]
    pub prefix: Option<String>,
    /// A query parameter name, e.g. `access_token`.
    #[serde(default)]
    pub query: Option<String>,
    /// A cookie name.
    #[serde(default)]
    pub cookie: Option<String>,
}

/// A route rule: which requests it covers and what they need.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for logs and the reason header. Default: `rules[<index>]`.
    #[serde(default)]
    pub name: Option<String>,
    /// Which requests this rule covers. An empty match covers every request.
    #[serde(rename = "match", default)]
    pub route: RouteMatch,
    /// Let requests without a token through (a token that is sent must still be valid, and its
    /// identity is then injected). Default `false`: a valid token is required.
    #[serde(default)]
    pub allow_anonymous: bool,
}

/// Request matching. All given conditions must hold.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Exact path (without the query string).
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix, matched segment-wise: `/api` covers `/api` and `/api/x`, not `/apix`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// HTTP methods (upper case). Empty (the default) means any method.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// What happens to requests no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    /// Refuse with 403 `forbidden` (rule `default`).
    #[default]
    Deny,
    /// Require a valid token.
    Authenticated,
    /// Allow, with identity injected when a valid token is sent.
    Anonymous,
}

/// Identity headers.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadersConfig {
    /// Claims copied into request headers. Default: none.
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
}

impl Default for HeadersConfig {
    fn default() -> Self {
        HeadersConfig {
            claims: Vec::new(),
            strip: Vec::new(),
            forward_token: false,
        }
    }
}

/// One claim → header mapping.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimHeader {
    /// A claim path: a top-level name (`sub`) or dotted path into objects (`realm_access.roles`).
    /// Strings are copied as they are, numbers and booleans as text, arrays joined with `,`,
    /// objects as compact JSON. A value with control characters is never written.
    pub claim: String,
    /// The request header to set, e.g. `x-identity-subject`.
    pub header: String,
}

/// Denials.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorsConfig {
    /// Body of a denial: `none` (empty), `reason` (`{"error": code, "status": n}`) or `message`
    /// (adds a fixed human message and the denying rule). Default `reason`.
    #[serde(default)]
    pub detail: Detail,
    /// `realm` attribute of `WWW-Authenticate`. Default: none.
    #[serde(default)]
    pub realm: Option<String>,
    /// Response header carrying the reason code of every denial. Default `x-identity-reason`.
    #[serde(default = "default_reason_header")]
    pub reason_header: String,
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        ErrorsConfig {
            detail: Detail::default(),
            realm: None,
            reason_header: default_reason_header(),
        }
    }
}

/// Metrics.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Define and increment counters. Default `true`. Must be `false` on Kong 3.4–3.7.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}

/// Decision logs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Log one JSON line per decision (who, route, decision, reason) at info level. Default `true`.
    #[serde(default = "default_true")]
    pub decisions: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { decisions: true }
    }
}

fn default_token_sources() -> Vec<TokenSource> {
    vec![TokenSource {
        header: Some("authorization".into()),
        prefix: Some("Bearer ".into()),
        query: None,
        cookie: None,
    }]
}
fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}
fn default_clock_skew() -> u64 {
    DEFAULT_CLOCK_SKEW_SECONDS
}
fn default_true() -> bool {
    true
}
fn default_reason_header() -> String {
    DEFAULT_REASON_HEADER.to_string()
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
            write!(f, "invalid configuration at {}: {}", self.path, self.message)
        }
    }
}

impl Config {
    /// Parse and validate a configuration document.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let config: Config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::new(path, strip_position(&inner.to_string()))
        })?;
        de.end()
            .map_err(|e| ConfigError::new("", strip_position(&e.to_string())))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks serde cannot express. Keys are checked when they are loaded (see `jwks`).
    fn validate(&self) -> Result<(), ConfigError> {
        if self.providers.is_empty() {
            return Err(ConfigError::new("providers", "at least one provider is required"));
        }
        for (i, p) in self.providers.iter().enumerate() {
            let at = |field: &str| format!("providers[{i}].{field}");
            if p.name.trim().is_empty() {
                return Err(ConfigError::new(at("name"), "must not be empty"));
            }
            if p.issuer.is_empty() {
                return Err(ConfigError::new(at("issuer"), "must not be empty"));
            }
            for (j, q) in self.providers.iter().enumerate().take(i) {
                if q.name == p.name {
                    return Err(ConfigError::new(at("name"), format!("duplicates providers[{j}].name")));
                }
                if q.issuer == p.issuer {
                    return Err(ConfigError::new(at("issuer"), format!("duplicates providers[{j}].issuer")));
                }
            }
            if !p.jwks.is_object() {
                return Err(ConfigError::new(at("jwks"), "must be a JWKS object with a `keys` array"));
            }
            for (k, claim) in p.require_claims.iter().enumerate() {
                check_claim_path(claim).map_err(|m| ConfigError::new(at(&format!("require_claims[{k}]")), m))?;
            }
        }
        if self.token_sources.is_empty() {
            return Err(ConfigError::new("token_sources", "at least one token source is required"));
        }
        for (i, s) in self.token_sources.iter().enumerate() {
            let at = format!("token_sources[{i}]");
            let set = [s.header.is_some(), s.query.is_some(), s.cookie.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if set != 1 {
                return Err(ConfigError::new(at, "set exactly one of `header`, `query`, `cookie`"));
            }
            if s.prefix.is_some() && s.header.is_none() {
                return Err(ConfigError::new(format!("{at}.prefix"), "only allowed with `header`"));
            }
            if let Some(h) = &s.header {
                check_header_name(h).map_err(|m| ConfigError::new(format!("{at}.header"), m))?;
            }
            for (name, v) in [("query", &s.query), ("cookie", &s.cookie)] {
                if let Some(v) = v {
                    if v.is_empty() {
                        return Err(ConfigError::new(format!("{at}.{name}"), "must not be empty"));
                    }
                }
            }
        }
        if self.max_token_bytes == 0 {
            return Err(ConfigError::new("max_token_bytes", "must be greater than 0"));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = |field: &str| format!("rules[{i}].{field}");
            if r.route.path.is_some() && r.route.path_prefix.is_some() {
                return Err(ConfigError::new(at("match"), "set at most one of `path`, `path_prefix`"));
            }
            for (field, v) in [("path", &r.route.path), ("path_prefix", &r.route.path_prefix)] {
                if let Some(v) = v {
                    if !v.starts_with('/') {
                        return Err(ConfigError::new(at(&format!("match.{field}")), "must start with `/`"));
                    }
                }
            }
            for (k, m) in r.route.methods.iter().enumerate() {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(ConfigError::new(
                        at(&format!("match.methods[{k}]")),
                        "must be an upper-case HTTP method such as GET",
                    ));
                }
            }
        }
        for (i, c) in self.headers.claims.iter().enumerate() {
            let at = |field: &str| format!("headers.claims[{i}].{field}");
            check_claim_path(&c.claim).map_err(|m| ConfigError::new(at("claim"), m))?;
            check_header_name(&c.header).map_err(|m| ConfigError::new(at("header"), m))?;
        }
        for (i, h) in self.headers.strip.iter().enumerate() {
            check_header_name(h).map_err(|m| ConfigError::new(format!("headers.strip[{i}]"), m))?;
        }
        check_header_name(&self.errors.reason_header)
            .map_err(|m| ConfigError::new("errors.reason_header", m))?;
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

/// A header name we may set or strip: an HTTP token, not a pseudo-header, not hop-by-hop.
pub fn check_header_name(name: &str) -> Result<(), String> {
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

/// A dotted claim path with no empty segment.
pub fn check_claim_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!("`{path}` is not a claim path (names separated by `.`)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "providers": [{"name": "dev", "issuer": "https://issuer.test", "jwks": {"keys": []}}]
        })
    }

    fn parse(v: &serde_json::Value) -> Result<Config, ConfigError> {
        Config::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(&minimal()).unwrap();
        assert_eq!(c.max_token_bytes, 8192);
        assert_eq!(c.token_sources, default_token_sources());
        assert_eq!(c.default, DefaultAction::Deny);
        assert_eq!(c.providers[0].clock_skew_seconds, 60);
        assert!(c.providers[0].require_expiration);
        assert!(c.metrics.enabled);
        assert!(c.log.decisions);
        assert!(!c.headers.forward_token);
        assert_eq!(c.errors.reason_header, "x-identity-reason");
        assert_eq!(c.errors.detail, Detail::Reason);
    }

    #[test]
    fn unknown_field_names_its_path() {
        let mut v = minimal();
        v["providers"][0]["audience"] = "x".into();
        let e = parse(&v).unwrap_err();
        assert_eq!(e.path, "providers[0].audience");
        assert!(e.message.contains("unknown field `audience`"), "{}", e.message);
    }

    #[test]
    fn wrong_type_names_its_path() {
        let mut v = minimal();
        v["providers"][0]["clock_skew_seconds"] = "60".into();
        let e = parse(&v).unwrap_err();
        assert_eq!(e.path, "providers[0].clock_skew_seconds");
        assert!(e.to_string().starts_with("invalid configuration at providers[0].clock_skew_seconds"));
    }

    #[test]
    fn unknown_algorithm_is_refused() {
        let mut v = minimal();
        v["providers"][0]["algorithms"] = serde_json::json!(["none"]);
        let e = parse(&v).unwrap_err();
        assert_eq!(e.path, "providers[0].algorithms[0]");
    }

    #[test]
    fn not_json_is_an_error_not_a_panic() {
        let e = Config::from_json(b"{not json").unwrap_err();
        assert!(!e.message.is_empty());
        let e = Config::from_json(b"").unwrap_err();
        assert!(!e.message.is_empty());
        let e = Config::from_json(b"{\"providers\": []} trailing").unwrap_err();
        assert!(!e.message.is_empty());
    }

    #[test]
    fn providers_are_required() {
        let e = parse(&serde_json::json!({"providers": []})).unwrap_err();
        assert_eq!(e.path, "providers");
        let e = parse(&serde_json::json!({})).unwrap_err();
        assert!(e.message.contains("providers"));
    }

    #[test]
    fn duplicate_issuers_are_refused() {
        let mut v = minimal();
        let p = v["providers"][0].clone();
        let mut q = p.clone();
        q["name"] = "other".into();
        v["providers"] = serde_json::json!([p, q]);
        let e = parse(&v).unwrap_err();
        assert_eq!(e.path, "providers[1].issuer");
    }

    #[test]
    fn token_source_needs_exactly_one_location() {
        let mut v = minimal();
        v["token_sources"] = serde_json::json!([{"header": "x", "query": "y"}]);
        assert_eq!(parse(&v).unwrap_err().path, "token_sources[0]");
        v["token_sources"] = serde_json::json!([{}]);
        assert_eq!(parse(&v).unwrap_err().path, "token_sources[0]");
        v["token_sources"] = serde_json::json!([{"query": "t", "prefix": "x"}]);
        assert_eq!(parse(&v).unwrap_err().path, "token_sources[0].prefix");
    }

    #[test]
    fn bad_header_names_are_refused() {
        let mut v = minimal();
        v["headers"] = serde_json::json!({"claims": [{"claim": "sub", "header": "x sub"}]});
        assert_eq!(parse(&v).unwrap_err().path, "headers.claims[0].header");
        v["headers"] = serde_json::json!({"claims": [{"claim": "a..b", "header": "x-sub"}]});
        assert_eq!(parse(&v).unwrap_err().path, "headers.claims[0].claim");
        v["headers"] = serde_json::json!({"strip": ["Host"]});
        assert_eq!(parse(&v).unwrap_err().path, "headers.strip[0]");
    }

    #[test]
    fn rule_match_is_checked() {
        let mut v = minimal();
        v["rules"] = serde_json::json!([{"match": {"path": "/a", "path_prefix": "/b"}}]);
        assert_eq!(parse(&v).unwrap_err().path, "rules[0].match");
        v["rules"] = serde_json::json!([{"match": {"path_prefix": "api"}}]);
        assert_eq!(parse(&v).unwrap_err().path, "rules[0].match.path_prefix");
        v["rules"] = serde_json::json!([{"match": {"methods": ["get"]}}]);
        assert_eq!(parse(&v).unwrap_err().path, "rules[0].match.methods[0]");
        v["rules"] = serde_json::json!([{"match": {"paths": "/"}}]);
        assert_eq!(parse(&v).unwrap_err().path, "rules[0].match.paths");
    }

    #[test]
    fn algorithm_names_round_trip() {
        for a in Algorithm::ASYMMETRIC {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        assert_eq!(Algorithm::from_name("HS256"), Some(Algorithm::HS256));
        assert_eq!(Algorithm::from_name("none"), None);
        assert_eq!(Algorithm::from_name("rs256"), None);
    }
}
