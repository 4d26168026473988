//! Host glue: the only code that talks to the proxy (Envoy, Istio, Kong). It gathers request
//! facts, calls the pure [`crate::decide`], and applies the decision.
//!
//! Everything here is written against the small [`Host`] interface and compiled natively too, so
//! the glue's decisions are tested against two host behaviours, Envoy's and ngx_wasm_module's
//! (`tests.rs`). Only `wasm.rs` (wasm32) binds it to proxy-wasm.
//!
//! Rules kept here, each because a host punishes breaking it (docs/kong.md, ../shared/HOSTS.md):
//! - `on_configure` never returns `false` (Kong's whole filter-chain rebuild would fail).
//! - No property is read from a root context; the host is probed there with a harmless call
//!   ([`host::probe_kind`]) and confirmed by the first request ([`host::request_kind`]).
//! - What a host cannot do is never asked of it: in ngx_wasm_module a root context never acts on
//!   a request (waiting is `own_fetch`), client-sent managed headers are refused rather than
//!   stripped (`headers.spoofed_headers: auto`), and shared data is used only where a zone is
//!   known to exist and never while a request of this instance is paused (a trap there would
//!   let the paused request through).
//! - Every host call goes through [`Host`], whose wasm implementation never panics.

mod host;
mod keys;
mod metrics;
mod replay;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "wasm32")]
mod wasm;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;

use crate::config::{CertificateBound, CertificateSource, SpoofPolicy, WaitMode};
use crate::decide::{self, Decision, Engine, RequestFacts};
use crate::headers::HeaderOp;
use crate::mtls::PeerCertificate;
use crate::reason::{Denial, Reason, Response};

use host::{Host, HostKind, Level};
use metrics::Metrics;

thread_local! {
    /// HTTP contexts of this instance paused by the filter (waiting for keys). A trap while any
    /// is paused would, in Kong, let it through: host calls that can trap wait until none is.
    static PAUSED: RefCell<BTreeSet<u32>> = const { RefCell::new(BTreeSet::new()) };
}

fn set_paused(id: u32, paused: bool) {
    PAUSED.with(|p| {
        let mut p = p.borrow_mut();
        if paused {
            p.insert(id);
        } else {
            p.remove(&id);
        }
    });
}

/// Requests of this instance paused by the filter right now.
pub fn paused_requests() -> usize {
    PAUSED.with(|p| p.borrow().len())
}

/// What the filter answers a host callback for request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Pause,
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

/// What a configured root context hands to its requests.
pub struct State {
    pub engine: Option<Engine>,
    metrics: Metrics,
    /// Remote keys (`jwks_uri`, `discovery`): fetches, key state, waiting requests.
    keys: Option<keys::RemoteKeys>,
    /// The host as probed in `on_configure` (a guess; the first request decides).
    probed: HostKind,
    profile: Cell<Option<Profile>>,
}

impl State {
    /// The profile, established by the first request that asks (it reads properties, so never
    /// call this from a root context).
    pub fn profile(&self, host: &impl Host, engine: &Engine) -> Profile {
        if let Some(p) = self.profile.get() {
            return p;
        }
        let kind = match (self.probed, host::request_kind(host)) {
            (HostKind::Envoy, HostKind::Envoy) => HostKind::Envoy,
            _ => HostKind::Ngx,
        };
        let profile = resolve(host, engine, kind);
        if let Some(k) = &self.keys {
            k.set_wait(profile.wait);
        }
        self.profile.set(Some(profile));
        profile
    }

    /// The profile when a request already established it.
    pub fn known_profile(&self) -> Option<Profile> {
        self.profile.get()
    }

    /// The host kind as far as known: the profile's, else the probe's.
    fn kind(&self) -> HostKind {
        self.profile.get().map_or(self.probed, |p| p.kind)
    }
}

/// Settle the configuration's `auto` choices for this host, and say once what was chosen and
/// what this host cannot do.
fn resolve(host: &impl Host, engine: &Engine, kind: HostKind) -> Profile {
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

/// One configured filter (a root context).
pub struct Root {
    id: u32,
    state: Option<Rc<State>>,
    /// The tick period is set once per root context (Kong traps on a second call).
    ticking: bool,
}

impl Root {
    pub fn new(id: u32) -> Root {
        Root {
            id,
            state: None,
            ticking: false,
        }
    }

    /// Configure from the plugin configuration. Always `true`: a bad configuration is logged
    /// with its field path and every request is answered 500 `config_invalid`.
    pub fn on_configure(&mut self, host: &impl Host, bytes: &[u8]) -> bool {
        let probed = host::probe_kind(host, self.id);
        let engine = match Engine::from_json(bytes) {
            Ok(engine) => {
                host.log(
                    Level::Info,
                    &format!(
                        "identity filter configured: {} provider(s), {} rule(s)",
                        engine.config.providers.len(),
                        engine.config.rules.len()
                    ),
                );
                Some(engine)
            }
            Err(e) => {
                host.log(
                    Level::Error,
                    &format!(
                        "identity filter: {e}; every request will be refused with 500 \
                         config_invalid"
                    ),
                );
                None
            }
        };
        let metrics_enabled = engine.as_ref().is_some_and(|e| e.config.metrics.enabled);
        if let Some(old) = self.state.take() {
            old.metrics.flush(host);
            if let (Some(k), Some(e)) = (&old.keys, &old.engine) {
                k.abandon(host, &old, e);
            }
        }
        let keys = engine
            .as_ref()
            .map(|e| keys::RemoteKeys::new(host, &e.config, self.id, metrics_enabled));
        let metrics = Metrics::define(host, metrics_enabled);
        // Fetches start on the first tick, never here; counted requests reach the host on a
        // tick too. One period, `remote_keys.tick_ms`, for both.
        let period = engine
            .as_ref()
            .filter(|_| {
                metrics.enabled() || keys.as_ref().is_some_and(|k| k.tick_period().is_some())
            })
            .map(|e| std::time::Duration::from_millis(e.config.remote_keys.tick_ms));
        if let Some(period) = period {
            if !self.ticking {
                host.set_tick_period(period);
                self.ticking = true;
            }
        }
        if let Some(e) = &engine {
            for (p, weak) in e.weak_keys() {
                report_weak_keys(host, &metrics, &p.name, weak, decide::min_rsa_bits(p));
            }
        }
        self.state = Some(Rc::new(State {
            engine,
            metrics,
            keys,
            probed,
            profile: Cell::new(None),
        }));
        true
    }

    pub fn on_tick(&self, host: &impl Host) {
        if let Some(state) = &self.state {
            state.metrics.flush(host);
            if let (Some(k), Some(e)) = (&state.keys, &state.engine) {
                if k.tick_period().is_some() {
                    k.on_tick(host, state, e);
                }
            }
        }
    }

    /// An answer to one of the root context's fetches.
    pub fn on_call_response(
        &self,
        host: &impl Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        if let Some(state) = &self.state {
            if let (Some(k), Some(e)) = (&state.keys, &state.engine) {
                k.on_response(host, state, e, token, num_headers, body_size);
            }
        }
    }

    pub fn new_request(&self, id: u32) -> Request {
        Request {
            id,
            state: self.state.clone(),
            own: None,
        }
    }

    /// The configured state (tests).
    #[cfg(test)]
    pub fn state(&self) -> Option<&Rc<State>> {
        self.state.as_ref()
    }
}

/// One request (an HTTP context).
pub struct Request {
    id: u32,
    state: Option<Rc<State>>,
    /// A key fetch this request waits on (`own_fetch` waiting).
    own: Option<keys::OwnCall>,
}

impl Request {
    pub fn on_request_headers(&mut self, host: &impl Host) -> Verdict {
        let Some(state) = self.state.clone() else {
            return respond(host, &decide::config_invalid_response());
        };
        // `on_configure` sets up remote keys with every engine: neither means a configuration
        // that failed.
        let (Some(engine), Some(keys)) = (&state.engine, &state.keys) else {
            return respond(host, &decide::config_invalid_response());
        };
        let profile = state.profile(host, engine);
        let mut facts = facts(host, engine, &profile);
        // The clock is read only if the decision needs it (a token was found), and once.
        let clock = Cell::new(None);
        let now_ms = || match clock.get() {
            Some(ms) => ms,
            None => {
                let ms = host.now_ms();
                clock.set(Some(ms));
                ms
            }
        };
        // The client certificate, likewise: only for a certificate-bound token.
        let peer = || peer_certificate(host, profile.kind);
        let decision = match keys.decide(host, &state, engine, &facts, &now_ms, &peer) {
            Decision::NeedKeys(provider) => {
                // Decided again later, maybe from the root context, where no property is read:
                // the certificate is read now.
                if facts.peer_certificate == PeerCertificate::Unread {
                    facts.peer_certificate = peer();
                }
                return match keys.wait(host, self.id, provider, facts, now_ms()) {
                    Ok(keys::Waiting::Resumed) => {
                        set_paused(self.id, true);
                        Verdict::Pause
                    }
                    Ok(keys::Waiting::Own(call)) => {
                        self.own = Some(call);
                        set_paused(self.id, true);
                        Verdict::Pause
                    }
                    Err(reason) => refuse(host, &state, engine, reason),
                };
            }
            decision => decision,
        };
        conclude(host, &state, engine, decision)
    }

    /// An answer to this request's own fetch (`own_fetch` waiting).
    pub fn on_call_response(
        &mut self,
        host: &impl Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        if let Some(state) = self.state.clone() {
            keys::own_response(
                host,
                &state,
                self.id,
                &mut self.own,
                token,
                num_headers,
                body_size,
            );
        }
    }

    /// The stream ended (`on_log`, `on_done`): a request waiting for keys must not be woken.
    pub fn on_done(&mut self) {
        set_paused(self.id, false);
        if let Some(state) = self.state.clone() {
            if let Some(k) = &state.keys {
                k.forget(self.id);
            }
            keys::own_cancel(&state, &mut self.own);
        }
    }
}

/// Decide a request, with DPoP proofs also recorded in shared data where that is safe
/// ([`replay::SharedReplay`]).
fn decide_request(
    host: &impl Host,
    state: &State,
    engine: &Engine,
    keys: &dyn decide::KeySource,
    facts: &RequestFacts,
    now_ms: &dyn Fn() -> u64,
    peer_certificate: &dyn Fn() -> PeerCertificate,
) -> Decision {
    let shared = replay::SharedReplay::new(host, state, engine);
    let shared = shared.as_ref().map(|s| s as &dyn crate::dpop::ReplayStore);
    let ask = decide::Ask {
        now: &|| now_ms() / 1000,
        peer_certificate,
    };
    decide::decide_with(engine, keys, shared, facts, &ask)
}

/// The request's facts: headers, and the host the client asked for from the header this host
/// puts it in.
fn facts(host: &impl Host, engine: &Engine, profile: &Profile) -> RequestFacts {
    let mut facts = RequestFacts {
        reject_spoofed: profile.reject_spoofed,
        ..RequestFacts::default()
    };
    let (mut authority, mut host_header) = (None, None);
    let headers = host.request_headers();
    facts.headers.reserve_exact(headers.len());
    for (name, value) in headers {
        // Valid UTF-8 (almost always) is taken as it is; anything else is converted lossily.
        let value = String::from_utf8(value)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        match name.as_str() {
            ":method" => facts.method = value,
            ":path" => facts.path = value,
            ":authority" => authority = Some(value),
            ":scheme" => facts.scheme = value,
            n if n.starts_with(':') => {}
            _ => {
                let mut name = name;
                name.make_ascii_lowercase();
                if name == "host" && host_header.is_none() {
                    host_header = Some(value.clone());
                }
                facts.headers.push((name, value));
            }
        }
    }
    facts.authority = if profile.kind.authority_from_host_header() {
        host_header.or(authority)
    } else {
        authority.or(host_header)
    }
    .unwrap_or_default();
    if engine.config.client_certificate.source == CertificateSource::Connection {
        // Read when a certificate-bound token needs it (`decide::Ask`), not on every request.
        facts.peer_certificate = PeerCertificate::Unread;
    }
    // Randomness is only needed to mint an assertion.
    if engine.config.headers.assertion.is_some() {
        facts.unique = unique(host);
    }
    facts
}

/// The client certificate of the downstream connection (`client_certificate.source:
/// connection`). Envoy: the attribute `connection.sha256_peer_certificate_digest` (hex; absent
/// without TLS or without a client certificate). ngx_wasm_module does not implement that
/// attribute (it logs "NYI") and exposes no other, so there it is unavailable: certificate-bound
/// tokens are refused (`certificate_unavailable`), never accepted without their certificate.
fn peer_certificate(host: &impl Host, kind: HostKind) -> PeerCertificate {
    if kind != HostKind::Envoy {
        return PeerCertificate::Unavailable;
    }
    match host.property(&["connection", "sha256_peer_certificate_digest"]) {
        Some(v) if !v.is_empty() => match String::from_utf8(v) {
            Ok(hex) => PeerCertificate::Sha256Hex(hex),
            Err(_) => PeerCertificate::None,
        },
        _ => PeerCertificate::None,
    }
}

/// 128 random bits as hex; time-based if the host has no randomness.
fn unique(host: &impl Host) -> String {
    let bytes = host.random().unwrap_or_else(|| {
        let t = u128::from(host.now_ms()).wrapping_mul(1_000_003);
        t.to_le_bytes()
    });
    let digit = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut out = String::with_capacity(32);
    for b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 15));
    }
    out
}

/// One warning line and one count per RSA key left out of a key set for its size.
fn report_weak_keys(
    host: &impl Host,
    metrics: &Metrics,
    provider: &str,
    weak: &[crate::jwks::WeakKey],
    min_rsa_bits: usize,
) {
    for key in weak {
        host.log(
            Level::Warn,
            &format!(
                "identity filter: provider \"{provider}\" key {key} (min_rsa_bits \
                 {min_rsa_bits}): skipped, its tokens get key_not_found"
            ),
        );
        metrics.weak_key_skipped(host);
    }
}

/// Answer the current (effective) HTTP context locally.
fn respond(host: &impl Host, response: &Response) -> Verdict {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    host.send_response(response.status, &headers, &response.body);
    Verdict::Pause
}

/// Change the current (effective) HTTP context's request headers.
fn apply(host: &impl Host, ops: &[HeaderOp]) {
    for op in ops {
        match op {
            HeaderOp::Remove(name) => host.set_request_header(name, None),
            HeaderOp::Set(name, value) => host.set_request_header(name, Some(value)),
        }
    }
}

/// Apply a decision to the current (effective) HTTP context. `Continue`: let the request go on
/// (a paused request must then be resumed); `Pause`: it was answered.
fn conclude(host: &impl Host, state: &State, engine: &Engine, decision: Decision) -> Verdict {
    match decision {
        Decision::Allow {
            ops,
            log: mut entry,
        } => {
            apply(host, &ops);
            state.metrics.allowed(host);
            if entry.report_only && entry.reason.is_some() {
                state.metrics.would_deny(host);
            }
            if !state.kind().removes_headers() && entry.token_removed == Some(true) {
                // The removal was asked for, but this host forwards the token anyway.
                entry.token_removed = Some(false);
            }
            if engine.config.log.decisions {
                host.log(Level::Info, &entry.to_json());
            }
            Verdict::Continue
        }
        Decision::Deny {
            response,
            log: entry,
        } => {
            if let Some(reason) = entry.reason {
                state.metrics.denied(host, reason);
            }
            if engine.config.log.decisions {
                host.log(Level::Info, &entry.to_json());
            }
            respond(host, &response)
        }
        Decision::Serve(response) => respond(host, &response),
        Decision::NeedKeys(_) => refuse(host, state, engine, Reason::KeysUnavailable),
    }
}

/// Refuse the current (effective) HTTP context with `reason` (a request that cannot get keys).
fn refuse(host: &impl Host, state: &State, engine: &Engine, reason: Reason) -> Verdict {
    let denial = Denial::new(reason);
    state.metrics.denied(host, reason);
    respond(host, &engine.render(&denial))
}
