//! `metrics`: counters by outcome and reason.

use schemars::JsonSchema;
use serde::Deserialize;

use super::default_true;

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
