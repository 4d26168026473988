//! `errors`: how denials are reported to the client.

use schemars::JsonSchema;
use serde::Deserialize;

use super::headers::check_header_name;
use super::ConfigError;
use crate::reason::Detail;

/// Default name of the response header that carries a denial's reason code.
pub const DEFAULT_REASON_HEADER: &str = "x-identity-reason";

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

fn default_reason_header() -> String {
    DEFAULT_REASON_HEADER.to_string()
}

impl ErrorsConfig {
    /// `errors`: the reason header is a header name the filter may set.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check_header_name(&self.reason_header)
            .map_err(|m| ConfigError::new("errors.reason_header", m))
    }
}
