//! What a configured root context shares with its requests ([`State`]: the engine, the caches,
//! the counters, the host's [`Profile`] once the first request settled it), the requests paused
//! right now, and deciding one request with the instance's caches ([`decide()`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use super::host::{self, Host, HostKind, Profile};
use super::metrics::Metrics;
use super::replay::SharedReplay;
use crate::authenticate::{Ask, Caches};
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

/// Record whether request `id` is paused by the filter.
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

/// What a configured root context hands to its requests (its remote keys aside, which use this):
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
        let profile = host::resolve(host, engine, kind);
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

/// Decide a request, with DPoP proofs also recorded in shared data where that is safe
/// ([`SharedReplay`]).
pub fn decide(
    host: &impl Host,
    state: &State,
    engine: &Engine,
    keys: &dyn KeySource,
    facts: &RequestFacts,
    now_ms: &dyn Fn() -> u64,
    peer_certificate: &dyn Fn() -> PeerCertificate,
) -> Decision {
    let known = state.known_profile().map(|p| p.kind);
    let shared = SharedReplay::new(host, known, engine);
    let ask = Ask {
        now: &|| now_ms() / 1000,
        peer_certificate,
        shared: shared.as_ref().map(|s| s as &dyn crate::dpop::ReplayStore),
    };
    let mut caches = state.caches.borrow_mut();
    decide::decide_with(engine, keys, &mut caches, facts, &ask)
}
