//! `token_sources` and `max_token_bytes`: where the token is looked for, and its largest size.

use schemars::JsonSchema;
use serde::Deserialize;

use super::headers::check_header_name;
use super::{within_usize, ConfigError};

/// Default maximum token size in bytes, checked before any parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;

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

pub(super) fn default_token_sources() -> Vec<TokenSource> {
    vec![TokenSource {
        header: Some("authorization".into()),
        prefix: Some("Bearer ".into()),
        query: None,
        cookie: None,
    }]
}
pub(super) fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}

/// `token_sources`: at least one, each naming exactly one place; `max_token_bytes` within its
/// bounds.
pub(super) fn validate(sources: &[TokenSource], max_token_bytes: usize) -> Result<(), ConfigError> {
    if sources.is_empty() {
        return Err(ConfigError::new(
            "token_sources",
            "at least one token source is required",
        ));
    }
    for (i, s) in sources.iter().enumerate() {
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
    within_usize("max_token_bytes", max_token_bytes, bounds::MAX_TOKEN_BYTES)?;
    Ok(())
}

/// Inclusive bounds of `max_token_bytes`, the same as the `range(...)` of its schema (see
/// [`super::within`]).
mod bounds {
    pub const MAX_TOKEN_BYTES: (u64, u64) = (1, 65_536);
}
