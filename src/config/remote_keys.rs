//! `remote_keys`: host-level settings of remote key fetching, for all providers.

use schemars::JsonSchema;
use serde::Deserialize;

use super::ConfigError;

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

fn default_tick_ms() -> u64 {
    100
}

impl RemoteKeysConfig {
    /// `remote_keys`: the timer's period within its bounds.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(10..=60_000).contains(&self.tick_ms) {
            return Err(ConfigError::new(
                "remote_keys.tick_ms",
                "must be between 10 and 60000",
            ));
        }
        Ok(())
    }
}
