//! The filter's configuration: one JSON document, the same for Envoy, Istio and Kong.
//!
//! Parsing is strict: unknown fields and wrong types are errors naming their path
//! (`providers[0].audiences`). Every field is documented where it is declared, with its default.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::claims::ClaimPath;
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
    #[schemars(length(min = 1))]
    pub providers: Vec<Provider>,
    /// Where to look for the token, in order. Default: `Authorization: Bearer <token>`.
    /// When several locations hold different tokens the request is refused (`token_ambiguous`).
    #[serde(default = "default_token_sources")]
    #[schemars(length(min = 1))]
    pub token_sources: Vec<TokenSource>,
    /// Largest accepted token in bytes, checked before any parsing (`token_too_large`). Default 8192.
    #[serde(default = "default_max_token_bytes")]
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

/// `client_certificate`: where the certificate a certificate-bound token must match is read.
/// Only the source named here is trusted; any other header is ignored.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificateConfig {
    /// `connection` (the default): the TLS connection the host terminates (Envoy and Istio:
    /// the attribute `connection.sha256_peer_certificate_digest`; Kong's host does not expose
    /// it, so there certificate-bound tokens are refused with 500 `certificate_unavailable`);
    /// `xfcc`: the `Hash` (else `Cert`) of the last element of `x-forwarded-client-cert`, the
    /// element the nearest proxy added: Envoy's own connection manager with
    /// `forward_client_cert_details: SANITIZE_SET` (or `APPEND_FORWARD`), or a trusted proxy in
    /// front that always replaces the header; `header`: the header named in `header`, carrying
    /// the certificate as PEM, URL-encoded or not (nginx `$ssl_client_escaped_cert`), set by a
    /// trusted TLS terminator that always replaces the client's copy. With `xfcc` and `header`
    /// the header belongs to the filter: it is removed before the request goes upstream.
    #[serde(default)]
    pub source: CertificateSource,
    /// The header with `source: header` (required then, not allowed otherwise). Not a
    /// token-source header, not a header the filter sets.
    #[serde(default)]
    pub header: Option<String>,
}

/// `client_certificate.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    /// The host's TLS connection.
    #[default]
    Connection,
    /// `x-forwarded-client-cert`, last element.
    Xfcc,
    /// A configured header with a (URL-encoded) PEM certificate.
    Header,
}

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

/// Host-level settings of remote key fetching (see docs/remote-keys.md).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteKeysConfig {
    /// Share fetched key sets between workers through the host's shared data, so one worker
    /// fetches and the others adopt its result. Envoy and Istio: supported. Kong: only with an
    /// `shm_kv` zone (`nginx_wasm_shm_kv`, Kong 3.7+), since without one the shared-data calls
    /// trap; the filter uses shared data there only once a request has read the zone's setting
    /// (`kong.configuration.nginx_wasm_shm_kv`), never while a request waits on a callback, and
    /// otherwise fetches per worker (logged once). Default `false`: every worker fetches on its
    /// own.
    #[serde(default)]
    pub shared_data: bool,
    /// How a request that needs keys not yet fetched waits for them (on a cold start, up to the
    /// provider's `cold_start_wait_ms`; for the refetch an unknown `kid` triggers):
    /// `auto` (the default): `resume` in Envoy and Istio, `own_fetch` in Kong, chosen from the
    /// host the filter runs in; `resume` (Envoy, Istio): it pauses, one fetch per provider runs
    /// from the root context, and every waiter is resumed through `proxy_set_effective_context`
    /// (Kong's ngx_wasm_module ignores that call and would crash its worker, so there `resume`
    /// is taken as `own_fetch`, with a warning); `own_fetch`: the request pauses on a fetch of
    /// its own (at most 4 per provider at once, and per unknown-`kid` episode), so the host
    /// resumes it when the answer comes; `none`: it is answered at once (503
    /// `keys_unavailable`, or 401 `key_not_found` while a refetch runs in the background).
    /// Default `auto`.
    #[serde(default)]
    pub waiting: WaitMode,
    /// Period of the timer that starts fetches (refresh, retries, refetches) and answers
    /// requests that waited too long, in milliseconds (10–60000). A refetch for an unknown
    /// `kid` starts on the next tick. Default 100.
    #[serde(default = "default_tick_ms")]
    #[schemars(range(min = 10, max = 60000))]
    pub tick_ms: u64,
}

impl Default for RemoteKeysConfig {
    fn default() -> Self {
        RemoteKeysConfig {
            shared_data: false,
            waiting: WaitMode::default(),
            tick_ms: default_tick_ms(),
        }
    }
}

/// How requests wait for keys (`remote_keys.waiting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitMode {
    /// `resume` in Envoy and Istio, `own_fetch` in Kong (from the host the filter runs in).
    #[default]
    Auto,
    /// Pause; the root context's fetch resumes every waiter (Envoy, Istio).
    Resume,
    /// Pause on a fetch the request makes itself (Kong).
    OwnFetch,
    /// Never wait.
    None,
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
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema, PartialEq, Eq)]
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
    /// Conditions on the verified caller. Default: none (any valid token). Refused with 403
    /// `insufficient_scope` when only scopes are missing, 403 `forbidden` otherwise.
    #[serde(default)]
    pub require: Option<Requirement>,
    /// Compute and log this rule's decision, and send it upstream in `headers.report_header`,
    /// but let the request pass. Default `false`.
    #[serde(default)]
    pub report_only: bool,
}

/// Conditions on the caller. Every field that is set must hold (they are and-ed); `any_of`
/// and `all_of` nest further requirements.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// At least one of these requirements holds.
    #[serde(default)]
    pub any_of: Option<Vec<Requirement>>,
    /// Every one of these requirements holds.
    #[serde(default)]
    pub all_of: Option<Vec<Requirement>>,
    /// Conditions on the caller's roles.
    #[serde(default)]
    pub roles: Option<SetCondition>,
    /// Conditions on the caller's groups.
    #[serde(default)]
    pub groups: Option<SetCondition>,
    /// Conditions on the caller's scopes (a failure here alone is `insufficient_scope`).
    #[serde(default)]
    pub scopes: Option<SetCondition>,
    /// The token's issuer (its `iss`) is one of these. In an `any_of` branch, `issuers` and
    /// `providers` are the branch's gate: a denial reports the failure of the branches whose
    /// gate holds for the caller (`insufficient_scope` naming the scopes when those failed only
    /// on scopes), not of branches meant for other issuers.
    #[serde(default)]
    pub issuers: Option<Vec<String>>,
    /// The token was issued by one of these providers (`providers[].name`); a gate like
    /// `issuers`.
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    /// The caller's tenant is one of these.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// The caller's tenant equals this named segment of the rule's `path_template`
    /// (e.g. `tenant` for `/t/{tenant}/runs`).
    #[serde(default)]
    pub tenant_from_path: Option<String>,
    /// Conditions on single claims; all must hold.
    #[serde(default)]
    pub claims: Vec<ClaimCondition>,
}

/// A condition on a list of strings. With both fields, both must hold.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCondition {
    /// The caller holds at least one of these.
    #[serde(default)]
    pub any_of: Vec<String>,
    /// The caller holds every one of these.
    #[serde(default)]
    pub all_of: Vec<String>,
}

/// A condition on one claim. Exactly one of `equals`, `in`, `equals_segment`. For an array
/// claim, the condition holds when any element satisfies it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimCondition {
    /// A claim path (`email_verified`, `org.id`, `["kubernetes.io", "namespace"]`).
    pub claim: ClaimPath,
    /// The claim equals this JSON value.
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    /// The claim equals one of these JSON values.
    #[serde(rename = "in", default)]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// The claim (as text) equals this named segment of the rule's `path_template`.
    #[serde(default)]
    pub equals_segment: Option<String>,
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
    /// Path template with named segments, e.g. `/api/deployments/{name}/runs`: each `{name}`
    /// matches exactly one non-empty segment and is captured for conditions.
    #[serde(default)]
    pub path_template: Option<String>,
    /// Hosts (the `:authority` without port, case-insensitive); `*.example.com` matches any
    /// subdomain. Empty (the default) means any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// HTTP methods (upper case). Empty (the default) means any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Compare this rule's path ASCII case-insensitively. Default: `paths.ignore_case`.
    #[serde(default)]
    pub ignore_case: Option<bool>,
    /// Provider names (`providers[].name`): the rule applies only to a request whose token was
    /// verified and issued by one of them. Rules are still taken in order: when the first rule
    /// whose path, method and host fit is gated this way, the token is verified first (no
    /// token: 401 `token_missing`; a bad one: its 401), then the first fitting rule that is
    /// not gated or is gated to the token's provider decides (none: `default`). Cannot be
    /// combined with `allow_anonymous`. Empty (the default) means any caller.
    #[serde(default)]
    pub providers: Vec<String>,
}

/// What happens to requests no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
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

/// The verified-token cache: a repeated token skips the signature check (time claims and the
/// route's policy are still checked on every request).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Most tokens kept (least recently used go first); 0 turns the cache off. Default 1024.
    #[serde(default = "default_cache_entries")]
    #[schemars(range(max = 100000))]
    pub max_entries: usize,
    /// Longest an entry is kept, in seconds; never past the token's `exp` plus skew. Default 300.
    #[serde(default = "default_cache_ttl")]
    #[schemars(range(max = 86400))]
    pub max_ttl_seconds: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: default_cache_entries(),
            max_ttl_seconds: default_cache_ttl(),
        }
    }
}

fn default_cache_entries() -> usize {
    1024
}
fn default_cache_ttl() -> u64 {
    300
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
fn default_tick_ms() -> u64 {
    100
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
}

/// Inclusive bounds of every numeric field, the same as the `range(...)` of its schema (the
/// tests drive each with 0, its bound and `u64::MAX`). Nothing is allocated in proportion to a
/// configured number, and no later arithmetic on one can overflow.
pub mod bounds {
    pub const MAX_TOKEN_BYTES: (u64, u64) = (1, 65_536);
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
    pub const CACHE_MAX_ENTRIES: (u64, u64) = (0, 100_000);
    pub const CACHE_MAX_TTL_SECONDS: (u64, u64) = (0, 86_400);
}

/// `value` within the inclusive `(min, max)`, or an error naming the field.
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

impl Provider {
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

impl CacheConfig {
    fn check(&self) -> Result<(), ConfigError> {
        within_usize(
            "cache.max_entries",
            self.max_entries,
            bounds::CACHE_MAX_ENTRIES,
        )?;
        within(
            "cache.max_ttl_seconds",
            self.max_ttl_seconds,
            bounds::CACHE_MAX_TTL_SECONDS,
        )
    }
}

impl Config {
    /// Rule paths are written in canonical form (see `path`): requests are matched on it.
    fn check_rule_paths(&self) -> Result<(), ConfigError> {
        for (i, r) in self.rules.iter().enumerate() {
            for (field, value) in [
                ("path", &r.route.path),
                ("path_prefix", &r.route.path_prefix),
                ("path_template", &r.route.path_template),
            ] {
                if let Some(value) = value {
                    crate::path::check_rule_path(value)
                        .map_err(|m| ConfigError::new(format!("rules[{i}].match.{field}"), m))?;
                }
            }
        }
        Ok(())
    }
}

impl HeadersConfig {
    /// `reserved_prefix`: empty, or lower-case header-name characters.
    fn check_reserved_prefix(&self) -> Result<(), ConfigError> {
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

impl RemoteKeysConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if !(10..=60_000).contains(&self.tick_ms) {
            return Err(ConfigError::new(
                "remote_keys.tick_ms",
                "must be between 10 and 60000",
            ));
        }
        Ok(())
    }
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

    /// Checks serde cannot express. Keys are checked when they are loaded (see `jwks`).
    fn validate(&self) -> Result<(), ConfigError> {
        if self.providers.is_empty() {
            return Err(ConfigError::new(
                "providers",
                "at least one provider is required",
            ));
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
        if self.token_sources.is_empty() {
            return Err(ConfigError::new(
                "token_sources",
                "at least one token source is required",
            ));
        }
        for (i, s) in self.token_sources.iter().enumerate() {
            let at = format!("token_sources[{i}]");
            let set = [s.header.is_some(), s.query.is_some(), s.cookie.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if set != 1 {
                return Err(ConfigError::new(
                    at,
                    "set exactly one of `header`, `query`, `cookie`",
                ));
            }
            if s.prefix.is_some() && s.header.is_none() {
                return Err(ConfigError::new(
                    format!("{at}.prefix"),
                    "only allowed with `header`",
                ));
            }
            if let Some(h) = &s.header {
                check_header_name(h).map_err(|m| ConfigError::new(format!("{at}.header"), m))?;
            }
            for (name, v) in [("query", &s.query), ("cookie", &s.cookie)] {
                if let Some(v) = v {
                    if v.is_empty() {
                        return Err(ConfigError::new(
                            format!("{at}.{name}"),
                            "must not be empty",
                        ));
                    }
                }
            }
        }
        within_usize(
            "max_token_bytes",
            self.max_token_bytes,
            bounds::MAX_TOKEN_BYTES,
        )?;
        for (i, r) in self.rules.iter().enumerate() {
            let at = |field: &str| format!("rules[{i}].{field}");
            let paths = [&r.route.path, &r.route.path_prefix, &r.route.path_template];
            if paths.iter().filter(|p| p.is_some()).count() > 1 {
                return Err(ConfigError::new(
                    at("match"),
                    "set at most one of `path`, `path_prefix`, `path_template`",
                ));
            }
            let segments = match &r.route.path_template {
                Some(t) => {
                    template_names(t).map_err(|m| ConfigError::new(at("match.path_template"), m))?
                }
                None => Vec::new(),
            };
            for (k, h) in r.route.hosts.iter().enumerate() {
                if h.is_empty() || h.contains(['/', ' ', ':']) {
                    return Err(ConfigError::new(
                        at(&format!("match.hosts[{k}]")),
                        "must be a host name without port",
                    ));
                }
            }
            if let Some(req) = &r.require {
                if r.allow_anonymous {
                    return Err(ConfigError::new(
                        at("require"),
                        "cannot be combined with `allow_anonymous`",
                    ));
                }
                req.validate(&at("require"), &segments)?;
            }
            for (field, v) in [
                ("path", &r.route.path),
                ("path_prefix", &r.route.path_prefix),
            ] {
                if let Some(v) = v {
                    if !v.starts_with('/') {
                        return Err(ConfigError::new(
                            at(&format!("match.{field}")),
                            "must start with `/`",
                        ));
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
        check_claim_headers(&self.headers.claims, "headers.claims")?;
        check_header_name(&self.headers.report_header)
            .map_err(|m| ConfigError::new("headers.report_header", m))?;
        if let Some(a) = &self.headers.assertion {
            a.validate("headers.assertion")?;
        }
        for (i, h) in self.headers.strip.iter().enumerate() {
            check_header_name(h).map_err(|m| ConfigError::new(format!("headers.strip[{i}]"), m))?;
        }
        check_header_name(&self.errors.reason_header)
            .map_err(|m| ConfigError::new("errors.reason_header", m))?;
        self.headers.check_reserved_prefix()?;
        self.remote_keys.check()?;
        self.cache.check()?;
        self.dpop.check()?;
        self.check_rule_paths()?;
        self.check_provider_names()?;
        self.check_client_certificate()?;
        Ok(())
    }

    /// `client_certificate.header`: set exactly with `source: header`, a valid header name that
    /// is neither a token source nor a header the filter sets.
    fn check_client_certificate(&self) -> Result<(), ConfigError> {
        let at = "client_certificate.header";
        let c = &self.client_certificate;
        let name = match (c.source, &c.header) {
            (CertificateSource::Header, Some(name)) => name,
            (CertificateSource::Header, None) => {
                return Err(ConfigError::new(at, "required with `source: header`"))
            }
            (_, Some(_)) => return Err(ConfigError::new(at, "only allowed with `source: header`")),
            (_, None) => return Ok(()),
        };
        check_header_name(name).map_err(|m| ConfigError::new(at, m))?;
        let set_by_filter = self
            .headers
            .claims
            .iter()
            .chain(
                self.providers
                    .iter()
                    .flat_map(|p| p.claim_headers.iter().flatten()),
            )
            .map(|c| c.header.as_str())
            .chain([self.headers.report_header.as_str()])
            .chain(self.headers.assertion.iter().map(|a| a.header.as_str()));
        let tokens = self
            .token_sources
            .iter()
            .filter_map(|t| t.header.as_deref());
        if set_by_filter
            .chain(tokens)
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            return Err(ConfigError::new(
                at,
                format!("`{name}` is already a token source or a header the filter sets"),
            ));
        }
        Ok(())
    }

    /// `match.providers` and `require.providers` name configured providers; a provider-gated
    /// rule is not anonymous.
    fn check_provider_names(&self) -> Result<(), ConfigError> {
        for (i, r) in self.rules.iter().enumerate() {
            self.check_provider_list(&r.route.providers, &format!("rules[{i}].match.providers"))?;
            if r.allow_anonymous && !r.route.providers.is_empty() {
                return Err(ConfigError::new(
                    format!("rules[{i}].allow_anonymous"),
                    "cannot be combined with `match.providers` (the rule applies only to \
                     verified tokens of those providers)",
                ));
            }
            if let Some(req) = &r.require {
                self.check_requirement_providers(req, &format!("rules[{i}].require"))?;
            }
        }
        Ok(())
    }

    fn check_provider_list(&self, names: &[String], at: &str) -> Result<(), ConfigError> {
        match names
            .iter()
            .enumerate()
            .find(|(_, n)| !self.providers.iter().any(|p| &p.name == *n))
        {
            Some((k, name)) => Err(ConfigError::new(
                format!("{at}[{k}]"),
                format!("`{name}` is not the name of a provider"),
            )),
            None => Ok(()),
        }
    }

    fn check_requirement_providers(&self, req: &Requirement, at: &str) -> Result<(), ConfigError> {
        if let Some(names) = &req.providers {
            self.check_provider_list(names, &format!("{at}.providers"))?;
        }
        for (field, list) in [("any_of", &req.any_of), ("all_of", &req.all_of)] {
            for (i, r) in list.iter().flatten().enumerate() {
                self.check_requirement_providers(r, &format!("{at}.{field}[{i}]"))?;
            }
        }
        Ok(())
    }
}

impl Requirement {
    /// Check a requirement tree; `segments` are the names the rule's path template captures.
    fn validate(&self, at: &str, segments: &[String]) -> Result<(), ConfigError> {
        let mut any = false;
        for (field, list) in [("any_of", &self.any_of), ("all_of", &self.all_of)] {
            if let Some(list) = list {
                any = true;
                if list.is_empty() {
                    return Err(ConfigError::new(
                        format!("{at}.{field}"),
                        "must not be empty",
                    ));
                }
                for (i, r) in list.iter().enumerate() {
                    r.validate(&format!("{at}.{field}[{i}]"), segments)?;
                }
            }
        }
        for (field, set) in [
            ("roles", &self.roles),
            ("groups", &self.groups),
            ("scopes", &self.scopes),
        ] {
            if let Some(set) = set {
                any = true;
                if set.any_of.is_empty() && set.all_of.is_empty() {
                    return Err(ConfigError::new(
                        format!("{at}.{field}"),
                        "set `any_of` or `all_of`",
                    ));
                }
            }
        }
        for (field, list) in [
            ("issuers", &self.issuers),
            ("providers", &self.providers),
            ("tenants", &self.tenants),
        ] {
            if let Some(list) = list {
                any = true;
                if list.is_empty() {
                    return Err(ConfigError::new(
                        format!("{at}.{field}"),
                        "must not be empty",
                    ));
                }
            }
        }
        let segment_known = |name: &String, path: String| {
            if segments.contains(name) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    path,
                    format!("`{name}` is not a segment of the rule's `path_template`"),
                ))
            }
        };
        if let Some(name) = &self.tenant_from_path {
            any = true;
            segment_known(name, format!("{at}.tenant_from_path"))?;
        }
        for (i, c) in self.claims.iter().enumerate() {
            any = true;
            let here = format!("{at}.claims[{i}]");
            let set = [
                c.equals.is_some(),
                c.one_of.is_some(),
                c.equals_segment.is_some(),
            ];
            if set.iter().filter(|b| **b).count() != 1 {
                return Err(ConfigError::new(
                    here,
                    "set exactly one of `equals`, `in`, `equals_segment`",
                ));
            }
            if let Some(name) = &c.equals_segment {
                segment_known(name, format!("{here}.equals_segment"))?;
            }
        }
        if !any {
            return Err(ConfigError::new(
                at,
                "an empty requirement; remove it or add a condition",
            ));
        }
        Ok(())
    }
}

impl AssertionConfig {
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

/// The names captured by a path template (`/t/{tenant}/runs` → `["tenant"]`), or why it is not
/// a template.
pub fn template_names(template: &str) -> Result<Vec<String>, String> {
    if !template.starts_with('/') {
        return Err("must start with `/`".into());
    }
    let mut names: Vec<String> = Vec::new();
    for segment in template.split('/').skip(1) {
        if let Some(inner) = segment.strip_prefix('{') {
            let name = inner
                .strip_suffix('}')
                .filter(|n| {
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .ok_or_else(|| format!("`{segment}` is not a segment name like `{{name}}`"))?;
            if names.iter().any(|n| n == name) {
                return Err(format!("`{{{name}}}` appears twice"));
            }
            names.push(name.to_string());
        } else if segment.contains(['{', '}']) {
            return Err(format!(
                "`{segment}`: a named segment must be a whole segment"
            ));
        }
    }
    Ok(names)
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

/// Claim headers (`headers.claims`, `providers[].claim_headers`): exactly one of `claim` and
/// `identity` each (claim paths are checked as they are parsed), and a header name we may set.
fn check_claim_headers(list: &[ClaimHeader], at: &str) -> Result<(), ConfigError> {
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
    fn header_names_are_lower_cased_once_at_configuration() {
        let doc = r#"{"providers": [{"name": "p", "issuer": "i", "jwks": {"keys": []}}],
            "token_sources": [{"header": "X-Token"}],
            "headers": {"claims": [{"claim": "sub", "header": "X-Sub"}], "strip": ["X-User"],
                "report_header": "X-Report",
                "assertion": {"audience": "a", "header": "X-Assert", "request_id_header": "X-Req",
                    "keys": [{"kid": "k", "secret": "0123456789abcdef0123456789abcdef"}]}}}"#;
        let c = Config::from_json(doc.as_bytes()).unwrap();
        assert_eq!(c.headers.claims[0].header, "x-sub");
        assert_eq!(c.headers.strip, vec!["x-user"]);
        assert_eq!(c.headers.report_header, "x-report");
        let a = c.headers.assertion.unwrap();
        assert_eq!(
            (a.header.as_str(), a.request_id_header.as_str()),
            ("x-assert", "x-req")
        );
        assert_eq!(c.token_sources[0].header.as_deref(), Some("x-token"));
    }

    #[test]
    fn unknown_field_names_its_path() {
        let mut v = minimal();
        v["providers"][0]["audience"] = "x".into();
        let e = parse(&v).unwrap_err();
        assert_eq!(e.path, "providers[0].audience");
        assert!(
            e.message.contains("unknown field `audience`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn json_syntax_errors_name_line_and_column() {
        let e = Config::from_json(b"{\n  \"providers\": [\n    {\"name\": \"x\",}\n  ]\n}")
            .unwrap_err();
        assert_eq!(e.message, "trailing comma (line 3, column 18)");
        let e = Config::from_json(b"{\"providers\": [").unwrap_err();
        assert!(e.message.contains("(line 1, column 15)"), "{}", e.message);
        let mut text = serde_json::to_string(&minimal()).unwrap();
        text.push_str("\n x");
        let e = Config::from_json(text.as_bytes()).unwrap_err();
        assert!(e.message.contains("(line 2, column 2)"), "{}", e.message);
    }

    #[test]
    fn wrong_type_names_its_path() {
        let mut v = minimal();
        v["providers"][0]["clock_skew_seconds"] = "60".into();
        let e = parse(&v).unwrap_err();
        assert_eq!(e.path, "providers[0].clock_skew_seconds");
        assert!(e
            .to_string()
            .starts_with("invalid configuration at providers[0].clock_skew_seconds"));
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
        // Each names the syntax error with its line and column; the path is where parsing
        // stopped ("?": a key it could not read, ".": the document, "": after the document).
        let e = Config::from_json(b"{not json").unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("?", "key must be a string (line 1, column 2)")
        );
        let e = Config::from_json(b"").unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            (".", "EOF while parsing a value (line 1, column 0)")
        );
        let e = Config::from_json(b"{\"providers\": []} trailing").unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("", "trailing characters (line 1, column 19)")
        );
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
    fn claim_paths_take_both_forms_wherever_a_claim_is_named() {
        let v = serde_json::json!({
            "providers": [{
                "name": "k8s", "issuer": "https://kubernetes.default.svc.cluster.local",
                "jwks": {"keys": []},
                "audience_claims": ["aud", ["kubernetes.io", "audience"]],
                "require_claims": ["kubernetes.io.namespace", ["kubernetes.io", "pod", "uid"]],
                "identity": {
                    "subject": ["kubernetes.io", "serviceaccount", "name"],
                    "roles": ["kubernetes.io.serviceaccount.name"],
                    "tenant": [["kubernetes.io", "namespace"]]
                },
                "claim_headers": [{"claim": ["kubernetes.io", "namespace"], "header": "X-K8s-Namespace"}]
            }],
            "rules": [{"require": {"claims": [
                {"claim": "kubernetes.io.namespace", "equals": "flows"},
                {"claim": ["kubernetes.io", "serviceaccount", "name"], "equals": "worker"}
            ]}}],
            "headers": {"claims": [{"claim": ["https://example.com/roles"], "header": "x-roles"}]}
        });
        let c = parse(&v).unwrap();
        let p = &c.providers[0];
        assert_eq!(p.audience_claims.len(), 2);
        assert_eq!(
            p.require_claims[0],
            ClaimPath::dotted("kubernetes.io.namespace").unwrap()
        );
        assert_eq!(
            p.identity.subject,
            ClaimPath::keys(vec![
                "kubernetes.io".into(),
                "serviceaccount".into(),
                "name".into()
            ])
            .unwrap()
        );
        let own = p.claim_headers.as_ref().unwrap();
        assert_eq!(
            own[0].header, "x-k8s-namespace",
            "lower-cased like headers.claims"
        );

        for (path, value, at) in [
            (
                &["providers", "0", "require_claims"][..],
                serde_json::json!(["a..b"]),
                "providers[0].require_claims[0]",
            ),
            (
                &["providers", "0", "audience_claims"],
                serde_json::json!(["aud", []]),
                "providers[0].audience_claims[1]",
            ),
            (
                &["providers", "0", "identity", "roles"],
                serde_json::json!(["ok", "x."]),
                "providers[0].identity.roles[1]",
            ),
            (
                &["providers", "0", "identity", "subject"],
                serde_json::json!(["a", ""]),
                "providers[0].identity.subject",
            ),
            (
                &["providers", "0", "identity", "tenant"],
                serde_json::json!([7]),
                "providers[0].identity.tenant[0]",
            ),
            (
                &["providers", "0", "claim_headers"],
                serde_json::json!([{"claim": ".a", "header": "x"}]),
                "providers[0].claim_headers[0].claim",
            ),
            (
                &["headers", "claims"],
                serde_json::json!([{"claim": [], "header": "x"}]),
                "headers.claims[0].claim",
            ),
        ] {
            let mut bad = v.clone();
            let mut target = &mut bad;
            for step in &path[..path.len() - 1] {
                target = match step.parse::<usize>() {
                    Ok(i) => &mut target[i],
                    Err(_) => &mut target[*step],
                };
            }
            target[path[path.len() - 1]] = value;
            let e = parse(&bad).unwrap_err();
            assert_eq!(e.path, at, "{e}");
        }
        let mut bad = v.clone();
        bad["rules"][0]["require"]["claims"][0]["claim"] = serde_json::json!("");
        assert_eq!(
            parse(&bad).unwrap_err().path,
            "rules[0].require.claims[0].claim"
        );
    }

    #[test]
    fn audience_claims_default_to_aud_and_cannot_be_empty() {
        let c = parse(&minimal()).unwrap();
        assert_eq!(c.providers[0].audience_claims, vec![ClaimPath::name("aud")]);
        let mut v = minimal();
        v["providers"][0]["audience_claims"] = serde_json::json!([]);
        assert_eq!(parse(&v).unwrap_err().path, "providers[0].audience_claims");
    }

    #[test]
    fn provider_claim_headers_are_checked_like_the_global_ones() {
        let mut v = minimal();
        assert!(parse(&v).unwrap().providers[0].claim_headers.is_none());
        v["providers"][0]["claim_headers"] = serde_json::json!([]);
        let none = parse(&v).unwrap();
        assert_eq!(
            none.providers[0].claim_headers.as_ref().map(Vec::len),
            Some(0)
        );
        v["providers"][0]["claim_headers"] =
            serde_json::json!([{"claim": "sub", "identity": "subject", "header": "x-a"}]);
        assert_eq!(parse(&v).unwrap_err().path, "providers[0].claim_headers[0]");
        v["providers"][0]["claim_headers"] = serde_json::json!([{"header": "x-a"}]);
        assert_eq!(parse(&v).unwrap_err().path, "providers[0].claim_headers[0]");
        v["providers"][0]["claim_headers"] =
            serde_json::json!([{"claim": "sub", "header": "Host"}]);
        assert_eq!(
            parse(&v).unwrap_err().path,
            "providers[0].claim_headers[0].header"
        );
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
    fn provider_gates_name_configured_providers() {
        let mut v = minimal();
        v["rules"] = serde_json::json!([{"match": {"providers": ["dev", "okta"]}}]);
        let e = parse(&v).unwrap_err();
        assert_eq!(e.path, "rules[0].match.providers[1]");
        assert!(e.message.contains("`okta`"), "{}", e.message);
        v["rules"] =
            serde_json::json!([{"match": {"providers": ["dev"]}, "allow_anonymous": true}]);
        assert_eq!(parse(&v).unwrap_err().path, "rules[0].allow_anonymous");
        v["rules"] = serde_json::json!([{"require": {"any_of": [{"providers": ["nope"]}, {"providers": []}]}}]);
        assert_eq!(
            parse(&v).unwrap_err().path,
            "rules[0].require.any_of[1].providers"
        );
        v["rules"] = serde_json::json!([{"require": {"any_of": [{"providers": ["nope"]}]}}]);
        assert_eq!(
            parse(&v).unwrap_err().path,
            "rules[0].require.any_of[0].providers[0]"
        );
        v["rules"] = serde_json::json!([{"match": {"providers": ["dev"]}, "require": {"providers": ["dev"]}}]);
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn an_issuer_pattern_needs_a_tenant_list_and_no_overlap() {
        let entra = "https://login.microsoftonline.com/{tenant}/v2.0";
        let mut v = minimal();
        v["providers"][0]["issuer"] = entra.into();
        assert_eq!(parse(&v).unwrap_err().path, "providers[0].tenants");
        v["providers"][0]["tenants"] = serde_json::json!([]);
        assert_eq!(parse(&v).unwrap_err().path, "providers[0].tenants");
        v["providers"][0]["tenants"] = serde_json::json!(["acme", "*"]);
        let e = parse(&v).unwrap_err();
        assert_eq!(e.path, "providers[0].tenants[1]");
        assert!(e.message.contains("`*`"), "{}", e.message);
        v["providers"][0]["tenants"] = serde_json::json!(["a/b"]);
        assert_eq!(parse(&v).unwrap_err().path, "providers[0].tenants[0]");
        v["providers"][0]["tenants"] = serde_json::json!(["acme"]);
        assert!(parse(&v).is_ok());
        v["providers"][0]["issuer"] = "https://login.microsoftonline.com/x{tenant}/v2.0".into();
        assert_eq!(parse(&v).unwrap_err().path, "providers[0].issuer");
        // Tenants without a pattern.
        let mut w = minimal();
        w["providers"][0]["tenants"] = serde_json::json!(["acme"]);
        assert_eq!(parse(&w).unwrap_err().path, "providers[0].tenants");
        // An exact issuer the pattern also matches, or two patterns that meet.
        let pattern = serde_json::json!({"name": "entra", "issuer": entra, "tenants": ["acme"], "jwks": {"keys": []}});
        for other in [
            "https://login.microsoftonline.com/globex/v2.0",
            "https://login.microsoftonline.com/common/{tenant}",
        ] {
            let mut q = pattern.clone();
            q["name"] = "other".into();
            q["issuer"] = other.into();
            if !other.contains("{tenant}") {
                q.as_object_mut().unwrap().remove("tenants");
            }
            let doc = serde_json::json!({"providers": [pattern.clone(), q]});
            let e = parse(&doc).unwrap_err();
            assert_eq!(e.path, "providers[1].issuer", "{other}");
            assert!(e.message.contains("providers[0].issuer"), "{}", e.message);
        }
        let v1 = serde_json::json!({"name": "v1", "issuer": "https://sts.windows.net/{tenant}/", "tenants": ["acme"], "jwks": {"keys": []}});
        assert!(parse(&serde_json::json!({"providers": [pattern, v1]})).is_ok());
    }

    #[test]
    fn discovery_of_a_pattern_fetches_its_first_tenants_document() {
        let c = parse(&remote(serde_json::json!({
            "issuer": "https://login.microsoftonline.com/{tenant}/v2.0",
            "tenants": ["acme", "globex"], "jwks_uri": null, "discovery": true
        })))
        .unwrap();
        assert_eq!(
            crate::issuer::discovery_issuer(&c.providers[0]),
            "https://login.microsoftonline.com/acme/v2.0"
        );
    }

    fn remote(extra: serde_json::Value) -> serde_json::Value {
        let mut p = serde_json::json!({
            "name": "idp", "issuer": "https://idp.test",
            "jwks_uri": "https://idp.test/keys", "upstream": "idp"
        });
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                if v.is_null() {
                    p.remove(k);
                } else {
                    p.insert(k.clone(), v.clone());
                }
            }
        }
        serde_json::json!({"providers": [p]})
    }

    #[test]
    fn remote_key_fields_get_documented_defaults() {
        let c = parse(&remote(serde_json::json!({}))).unwrap();
        let p = &c.providers[0];
        assert!(p.is_remote());
        assert_eq!(p.jwks, None);
        assert!(!p.discovery);
        assert_eq!(p.fetch_timeout_ms, 5000);
        assert_eq!(p.min_refresh_seconds, 60);
        assert_eq!(p.max_refresh_seconds, 600);
        assert_eq!(p.refetch_min_interval_seconds, 30);
        assert_eq!(p.max_stale_seconds, 86400);
        assert_eq!(p.cold_start_wait_ms, 3000);
        assert_eq!(p.max_response_bytes, 262_144);
        assert_eq!(p.min_rsa_bits, 2048);
        assert!(!c.remote_keys.shared_data);
        assert_eq!(c.remote_keys.waiting, WaitMode::Auto);
        assert_eq!(c.remote_keys.tick_ms, 100);
    }

    #[test]
    fn exactly_one_key_source() {
        let both = remote(serde_json::json!({"jwks": {"keys": []}}));
        assert_eq!(parse(&both).unwrap_err().path, "providers[0]");
        let uri_and_discovery = remote(serde_json::json!({"discovery": true}));
        assert_eq!(parse(&uri_and_discovery).unwrap_err().path, "providers[0]");
        let none = remote(serde_json::json!({"jwks_uri": null}));
        assert_eq!(parse(&none).unwrap_err().path, "providers[0]");
        let discovery = remote(serde_json::json!({"jwks_uri": null, "discovery": true}));
        assert!(parse(&discovery).is_ok());
    }

    #[test]
    fn remote_keys_need_an_upstream_and_urls() {
        let e = parse(&remote(serde_json::json!({"upstream": null}))).unwrap_err();
        assert_eq!(e.path, "providers[0].upstream");
        let e = parse(&remote(serde_json::json!({"jwks_uri": "idp.test/keys"}))).unwrap_err();
        assert_eq!(e.path, "providers[0].jwks_uri");
        let e = parse(&remote(
            serde_json::json!({"jwks_uri": null, "discovery": true, "issuer": "idp"}),
        ))
        .unwrap_err();
        assert_eq!(e.path, "providers[0].discovery");
    }

    #[test]
    fn remote_key_numbers_are_checked() {
        for (field, value) in [
            ("fetch_timeout_ms", 0),
            ("min_refresh_seconds", 0),
            ("cold_start_wait_ms", 60_001),
            ("max_response_bytes", 10),
        ] {
            let e = parse(&remote(serde_json::json!({ field: value }))).unwrap_err();
            assert_eq!(e.path, format!("providers[0].{field}"));
        }
        let e = parse(&remote(
            serde_json::json!({"min_refresh_seconds": 100, "max_refresh_seconds": 10}),
        ))
        .unwrap_err();
        assert_eq!(e.path, "providers[0].max_refresh_seconds");
        let mut v = remote(serde_json::json!({}));
        v["remote_keys"] = serde_json::json!({"tick_ms": 5});
        assert_eq!(parse(&v).unwrap_err().path, "remote_keys.tick_ms");
        v["remote_keys"] = serde_json::json!({"waiting": "sometimes"});
        assert_eq!(parse(&v).unwrap_err().path, "remote_keys.waiting");
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
