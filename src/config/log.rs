//! `log`: decision logs.

use schemars::JsonSchema;
use serde::Deserialize;

use super::default_true;

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
