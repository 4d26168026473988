//! What a configured root context shares with its requests ([`State`]), how this host behaves
//! ([`Profile`], settled by the first request), the requests paused right now, and deciding one
//! request with the instance's caches ([`decide`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use super::host::{self, Host, HostKind, Level};
use super::metrics::Metrics;
use super::replay::SharedReplay;
use crate::authenticate::{Ask, Caches};
use crate::config::{CertificateBound, CertificateSource, SpoofPolicy, WaitMode};
use crate::decide::{self, Decision};
use crate::engine::Engine;
use crate::keystore::KeySource;
use crate::mtls::PeerCertificate;
use crate::token::RequestFacts;

thread_local! {
    /// HTTP contexts of this instance paused by the filter (waiting for keys). A trap while any
    /// is paused would, in Kong, let it through: host calls that can trap wait until none is.
    static PAUSED: RefCell<BTreeSet<u32>> = const { RefCell::new(BTreeSet::new()) };
}

pub fn set_paused(id: u32, paused: bool) {
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

/// What a configured root context hands to its requests, but the remote keys (which use it):
/// the engine, the instance's caches, the counters, and how this host behaves.
pub struct State {
    pub engine: Option<Engine>,
    /// What the request path remembers between requests (verified tokens, DPoP proofs).
    pub caches: RefCell<Caches>,
    pub metrics: Metrics,
    /// The host as probed in `on_configure` (a guess; the first request decides).
    pub probed: HostKind,
    profile: Cell<Option<Profile>>,
}

impl State {
    pub fn new(engine: Option<Engine>, metrics: Metrics, probed: HostKind) -> State {
        // Without an engine every request is refused before it is decided: no cache is used.
        let caches = engine
            .as_ref()
            .map_or_else(Caches::default, |e| Caches::new(&e.config));
        State {
            engine,
            caches: RefCell::new(caches),
            metrics,
            probed,
            profile: Cell::new(None),
        }
    }

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
        self.profile.set(Some(profile));
        profile
    }

    /// The profile when a request already established it.
    pub fn known_profile(&self) -> Option<Profile> {
        self.profile.get()
    }

    /// The host kind as far as known: the profile's, else the probe's.
    pub fn kind(&self) -> HostKind {
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

/// Decide a request, with DPoP proofs also recorded in shared data where that is safe
/// ([`replay::SharedReplay`]).
pub fn decide(
    host: &impl Host,
    state: &State,
    engine: &Engine,
    keys: &dyn KeySource,
    facts: &RequestFacts,
    now_ms: &dyn Fn() -> u64,
    peer_certificate: &dyn Fn() -> PeerCertificate,
) -> Decision {
    let envoy = state
        .known_profile()
        .is_some_and(|p| p.kind == HostKind::Envoy);
    let shared = SharedReplay::new(host, envoy, engine);
    let ask = Ask {
        now: &|| now_ms() / 1000,
        peer_certificate,
        shared: shared.as_ref().map(|s| s as &dyn crate::dpop::ReplayStore),
    };
    let mut caches = state.caches.borrow_mut();
    decide::decide_with(engine, keys, &mut caches, facts, &ask)
}
