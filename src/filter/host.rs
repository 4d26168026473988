//! The small host interface the glue talks through, and what is known about each host.
//!
//! Every host call the filter makes goes through [`Host`]. The WebAssembly implementation
//! (`wasm.rs`) calls the proxy-wasm ABI directly and turns every status into a value (the SDK's
//! own wrappers panic on statuses they do not expect, and a panic is a trap: in Kong, a trap in
//! a call-response callback lets the paused request through). The tests implement it twice, with
//! Envoy's behaviour and with ngx_wasm_module's (Kong's) as measured (see `tests.rs`).
//!
//! What differs between the hosts is one value, [`HostKind`], learnt without ever reading a
//! property in a root context:
//! - in `on_configure`, [`probe_kind`]: `proxy_set_effective_context` with an id no context has.
//!   Envoy refuses it (`BadArgument`); ngx_wasm_module ignores the call and answers `Ok`. Nothing
//!   else happens in either host.
//! - in the first request of each root context, [`request_kind`]: the property
//!   `ngx.nginx_version` (an nginx variable, readable only under ngx_wasm_module). This is the
//!   authoritative signal; when the two disagree, the host is taken to be ngx_wasm_module, the
//!   choice that can never fail open.
//!
//! The first request also settles the configuration's `auto` choices for that host
//! ([`resolve`], a [`Profile`]).

use std::time::Duration;

use crate::config::{CertificateBound, CertificateSource, SpoofPolicy, WaitMode};
use crate::engine::Engine;

/// A proxy-wasm status other than `Ok` (1 `NotFound`, 2 `BadArgument`, 8 `CasMismatch`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

#[cfg(test)]
pub const BAD_ARGUMENT: HostError = HostError(2);
pub const CAS_MISMATCH: HostError = HostError(8);

/// Log levels of `proxy_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// Metric kinds of `proxy_define_metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
}

/// One request or call-answer header: name and raw value (not always UTF-8).
pub type Header = (String, Vec<u8>);

/// The host calls the filter makes. Calls about "the request" act on the current (effective)
/// HTTP context; calls about "the call answer" read the answer being delivered.
pub trait Host {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> u64;
    fn log(&self, level: Level, message: &str);
    /// A property of the current HTTP context (`None` when absent or refused). Never called from
    /// a root context: on Kong 3.9 and older that can crash the worker.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// 16 random bytes (WASI `random_get`), `None` when the host has no randomness.
    fn random(&self) -> Option<[u8; 16]>;

    fn request_headers(&self) -> Vec<Header>;
    /// Replace (`Some`) or remove (`None`) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// Answer the request locally.
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Let a paused request go on.
    fn resume_request(&self);

    /// Start an HTTP call; its answer is delivered to the context that is current now.
    fn dispatch(
        &self,
        upstream: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u32, HostError>;
    fn call_headers(&self) -> Result<Vec<Header>, HostError>;
    fn call_header(&self, name: &str) -> Option<Vec<u8>>;
    fn call_body(&self, size: usize) -> Vec<u8>;

    /// Make context `id` the current one (from a root context, to act on a waiting request).
    fn set_effective_context(&self, id: u32) -> Result<(), HostError>;

    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Add `by` to counter `id`.
    fn increment_metric(&self, id: u32, by: u64);
    fn record_metric(&self, id: u32, value: u64);

    fn set_tick_period(&self, period: Duration);
}

/// The two proxy-wasm hosts the filter knows, by what they do differently (../shared/HOSTS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// Envoy and Istio.
    Envoy,
    /// Kong's ngx_wasm_module (nginx).
    Ngx,
}

/// A context id no host gives out; [`probe_kind`] asks for it.
pub const PROBE_CONTEXT_ID: u32 = u32::MAX;

/// Root-context guess (see the module docs): Envoy refuses an unknown context id,
/// ngx_wasm_module ignores the call. `root_id` is set back in case a host obeyed.
pub fn probe_kind(host: &impl Host, root_id: u32) -> HostKind {
    match host.set_effective_context(PROBE_CONTEXT_ID) {
        Err(_) => HostKind::Envoy,
        Ok(()) => {
            let _ = host.set_effective_context(root_id);
            HostKind::Ngx
        }
    }
}

/// Request-context detection (authoritative): `ngx.nginx_version` is readable only in nginx.
pub fn request_kind(host: &impl Host) -> HostKind {
    match host.property(&["ngx", "nginx_version"]) {
        Some(v) if !v.is_empty() => HostKind::Ngx,
        _ => HostKind::Envoy,
    }
}

impl HostKind {
    /// Whether a request header the filter removes or replaces is really gone upstream. In
    /// ngx_wasm_module nginx forwards the client's header anyway (and `:path` rewrites are lost).
    pub fn removes_headers(self) -> bool {
        self == HostKind::Envoy
    }

    /// Whether a root context can act on a waiting request through
    /// `proxy_set_effective_context`. In ngx_wasm_module the call is ignored, and answering or
    /// resuming "that" request from the root context crashes the worker (signal 11).
    pub fn wakes_from_root(self) -> bool {
        self == HostKind::Envoy
    }

    /// Whether the host the client asked for is read from the `host` header first: in
    /// ngx_wasm_module `:authority` is nginx's `server_name:port`, the client's host is in
    /// `host`; Envoy folds `Host` into `:authority`, which is read first there.
    pub fn authority_from_host_header(self) -> bool {
        self == HostKind::Ngx
    }

    pub fn name(self) -> &'static str {
        match self {
            HostKind::Envoy => "envoy",
            HostKind::Ngx => "ngx_wasm_module",
        }
    }
}

/// How one configured root context behaves in the host it runs in, known from its first
/// request (see `host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub kind: HostKind,
    /// Refuse client-sent managed headers (`headers.spoofed_headers` resolved).
    pub reject_spoofed: bool,
    /// `remote_keys.waiting` resolved: `Resume`, `OwnFetch` or `None`.
    pub wait: WaitMode,
    /// Shared data may be used (`remote_keys.shared_data`, and a zone where Kong needs one).
    pub shared: bool,
}

/// Settle the configuration's `auto` choices for this host, and say once what was chosen and
/// what this host cannot do.
pub fn resolve(host: &impl Host, engine: &Engine, kind: HostKind) -> Profile {
    let config = &engine.config;
    let reject_spoofed = match config.headers.spoofed_headers {
        SpoofPolicy::Auto => !kind.removes_headers(),
        SpoofPolicy::Strip => {
            if !kind.removes_headers() {
                host.log(
                    Level::Warn,
                    "identity filter: headers.spoofed_headers is `strip`, but this host forwards \
                     removed request headers: client-sent identity headers reach the upstream; \
                     use `auto` or `reject`",
                );
            }
            false
        }
        SpoofPolicy::Reject => true,
    };
    let wait = match (config.remote_keys.waiting, kind.wakes_from_root()) {
        (WaitMode::Auto, true) => WaitMode::Resume,
        (WaitMode::Auto, false) => WaitMode::OwnFetch,
        (WaitMode::Resume, false) => {
            host.log(
                Level::Warn,
                "identity filter: remote_keys.waiting `resume` cannot work in this host (a root \
                 context cannot resume a request); using `own_fetch`",
            );
            WaitMode::OwnFetch
        }
        (mode, _) => mode,
    };
    let remote = config.providers.iter().any(|p| p.is_remote());
    let shared = config.remote_keys.shared_data
        && remote
        && match kind {
            HostKind::Envoy => true,
            HostKind::Ngx => {
                let zone = host
                    .property(&["kong", "configuration", "nginx_wasm_shm_kv"])
                    .is_some_and(|v| !v.is_empty());
                if !zone {
                    host.log(
                        Level::Warn,
                        "identity filter: remote_keys.shared_data is on, but no shm_kv zone is \
                         known (Kong: set nginx_wasm_shm_kv in kong.conf); every worker fetches \
                         its own keys",
                    );
                }
                zone
            }
        };
    if !kind.removes_headers() && !config.headers.forward_token {
        host.log(
            Level::Warn,
            "identity filter: headers.forward_token is false, but this host cannot remove the \
             token from the request: the upstream receives it (decision logs say \
             token_removed: false)",
        );
    }
    if kind != HostKind::Envoy && config.client_certificate.source == CertificateSource::Connection
    {
        let required = config
            .providers
            .iter()
            .any(|p| p.certificate_bound == CertificateBound::Required);
        host.log(
            if required { Level::Error } else { Level::Info },
            "identity filter: client_certificate.source is `connection`, but this host does not \
             expose the client certificate of the connection: certificate-bound tokens are \
             refused (500 certificate_unavailable); behind a TLS terminator that sets a header, \
             use source `header` or `xfcc`",
        );
    }
    host.log(
        Level::Info,
        &format!(
            "identity filter: host {}; spoofed headers: {}; waiting: {}; shared data: {}",
            kind.name(),
            if reject_spoofed { "reject" } else { "strip" },
            match wait {
                WaitMode::Resume => "resume",
                WaitMode::OwnFetch => "own_fetch",
                _ => "none",
            },
            if shared { "on" } else { "off" },
        ),
    );
    Profile {
        kind,
        reject_spoofed,
        wait,
        shared,
    }
}

/// Parse a proxy-wasm header map: `u32` count, then per pair `u32` name and value lengths, then
/// each name and value followed by a NUL (little endian). `None` when malformed: the bytes come
/// from the host, and a bad map must not become a panic.
pub fn parse_map(bytes: &[u8]) -> Option<Vec<Header>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = u32_at(0)?;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    if data > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let name_len = u32_at(4 + i * 8)?;
        let value_len = u32_at(8 + i * 8)?;
        let name = bytes.get(data..data.checked_add(name_len)?)?;
        data = data.checked_add(name_len)?;
        (bytes.get(data) == Some(&0)).then_some(())?;
        data = data.checked_add(1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len)?;
        (bytes.get(data) == Some(&0)).then_some(())?;
        data = data.checked_add(1)?;
        let name = match std::str::from_utf8(name) {
            Ok(text) => text.to_string(),
            Err(_) => String::from_utf8_lossy(name).into_owned(),
        };
        out.push((name, value.to_vec()));
    }
    Some(out)
}

/// Serialize a header map for the host (the format [`parse_map`] reads).
pub fn serialize_map(map: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + map
        .iter()
        .map(|(n, v)| n.len() + v.len() + 10)
        .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (name, value) in map {
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in map {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// A property path as the ABI wants it: the parts joined by NUL.
pub fn property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_survives_a_round_trip() {
        let map = [(":path", "/a?b"), ("x-empty", ""), ("cookie", "a=1; b=2")];
        let parsed = parse_map(&serialize_map(&map)).unwrap();
        let back: Vec<(&str, &[u8])> = parsed
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            back,
            map.iter()
                .map(|(n, v)| (*n, v.as_bytes()))
                .collect::<Vec<_>>()
        );
        assert_eq!(parse_map(&[]), Some(Vec::new()));
    }

    #[test]
    fn a_malformed_map_is_none_not_a_panic() {
        let good = serialize_map(&[("a", "b"), ("cc", "dd")]);
        for cut in 0..good.len() {
            if cut == 0 {
                continue;
            }
            assert_eq!(parse_map(&good[..cut]), None, "cut at {cut}");
        }
        // A count that overflows, and lengths that point past the end.
        assert_eq!(parse_map(&u32::MAX.to_le_bytes()), None);
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_map(&bad), None);
    }

    #[test]
    fn property_paths_are_nul_joined() {
        assert_eq!(
            property_path(&["ngx", "nginx_version"]),
            b"ngx\0nginx_version"
        );
    }
}
