//! `rules` and `default`: which requests each rule covers and what it asks of the caller.

use schemars::JsonSchema;
use serde::Deserialize;

use super::providers::Provider;
use super::ConfigError;
use crate::claims::ClaimPath;

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

/// Rule paths are written in canonical form (see `path`): requests are matched on it.
pub(super) fn check_paths(rules: &[Rule]) -> Result<(), ConfigError> {
    for (i, r) in rules.iter().enumerate() {
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

/// `match.providers` and `require.providers` name configured providers; a provider-gated
/// rule is not anonymous.
pub(super) fn check_provider_names(
    rules: &[Rule],
    providers: &[Provider],
) -> Result<(), ConfigError> {
    for (i, r) in rules.iter().enumerate() {
        check_provider_list(
            providers,
            &r.route.providers,
            &format!("rules[{i}].match.providers"),
        )?;
        if r.allow_anonymous && !r.route.providers.is_empty() {
            return Err(ConfigError::new(
                format!("rules[{i}].allow_anonymous"),
                "cannot be combined with `match.providers` (the rule applies only to \
                     verified tokens of those providers)",
            ));
        }
        if let Some(req) = &r.require {
            check_requirement_providers(providers, req, &format!("rules[{i}].require"))?;
        }
    }
    Ok(())
}

fn check_provider_list(
    providers: &[Provider],
    names: &[String],
    at: &str,
) -> Result<(), ConfigError> {
    match names
        .iter()
        .enumerate()
        .find(|(_, n)| !providers.iter().any(|p| &p.name == *n))
    {
        Some((k, name)) => Err(ConfigError::new(
            format!("{at}[{k}]"),
            format!("`{name}` is not the name of a provider"),
        )),
        None => Ok(()),
    }
}

fn check_requirement_providers(
    providers: &[Provider],
    req: &Requirement,
    at: &str,
) -> Result<(), ConfigError> {
    if let Some(names) = &req.providers {
        check_provider_list(providers, names, &format!("{at}.providers"))?;
    }
    for (field, list) in [("any_of", &req.any_of), ("all_of", &req.all_of)] {
        for (i, r) in list.iter().flatten().enumerate() {
            check_requirement_providers(providers, r, &format!("{at}.{field}[{i}]"))?;
        }
    }
    Ok(())
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

/// `rules`: each rule's match (one path form, hosts, methods) and requirement tree.
pub(super) fn validate(rules: &[Rule]) -> Result<(), ConfigError> {
    for (i, r) in rules.iter().enumerate() {
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
    Ok(())
}
