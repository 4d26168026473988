//! `cache`: the verified-token cache.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{within, within_usize, ConfigError};

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

impl CacheConfig {
    /// `cache`: every number within its bounds.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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

/// Inclusive bounds of the cache's numeric fields, the same as the `range(...)` of their schema
/// (see [`super::within`]).
mod bounds {
    pub const CACHE_MAX_ENTRIES: (u64, u64) = (0, 100_000);
    pub const CACHE_MAX_TTL_SECONDS: (u64, u64) = (0, 86_400);
}
