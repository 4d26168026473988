//! Host side of remote keys: dispatches the fetches the [`KeyStore`] asks for (from the root
//! context: `on_tick` and `on_http_call_response`, never `on_configure`), hands the answers back,
//! logs state changes, counts fetches, shares key sets between workers (optional), and wakes
//! requests waiting for keys.
//!
//! Waking a waiter (`resume`, Envoy): a paused HTTP context is reached from the root context with
//! `proxy_set_effective_context(id)`; the request is decided again there (its facts were kept)
//! and then resumed (`proxy_continue_stream`) or answered (`proxy_send_local_response`), once.
//! The effective context is set back to the root after each waiter. A waiter whose stream ended
//! is forgotten in `on_log`/`on_done`; if one slips through, `set_effective_context` fails for
//! the unknown id and the waiter is dropped without any other host call. Kong's ngx_wasm_module
//! ignores `set_effective_context`, and answering or resuming from the root context there
//! crashes the worker: in that host waiting is `own_fetch` (a waiting request pauses on a fetch
//! of its own, at most 4 per provider at once, delivered to its own context) and the root
//! context never acts on a request ([`HostKind::wakes_from_root`]).
//!
//! Shared data (`remote_keys.shared_data`) is read and written only from `on_tick`, only when
//! the profile allows it, and in ngx_wasm_module only while no request of the instance is paused:
//! a trap there (no `shm_kv` zone) would otherwise let paused requests through. Key sets to
//! publish wait in a queue until then.
//!
//! Why not fetch from the waiting request's own context: Envoy cancels a context's calls when
//! its stream ends, so one impatient client would cancel the fetch every other request waits on,
//! and N waiters would mean N fetches. One root-owned fetch per provider avoids both.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::answer::{conclude, refuse};
use super::host::{Host, HostKind, Level, MetricKind, CAS_MISMATCH};
use super::metrics::report_weak_keys;
use super::state::{self, paused_requests, set_paused, State, Verdict};
use crate::config::{Config, WaitMode};
use crate::decide::Decision;
use crate::engine::{self, Engine};
use crate::fetch::{self, Answer, FetchError, Target};
use crate::jwks::KeySet;
use crate::keystore::{
    Completion, FetchStart, Fetched, KeyState, KeyStore, KeyView, Status, Step, Wait, Waiter,
    Waiters, TIMEOUT_GRACE_MS,
};
use crate::mtls::PeerCertificate;
use crate::reason::Reason;
use crate::token::RequestFacts;

/// How a request that needs keys waits.
pub(super) enum Waiting {
    /// Registered: the root context resumes or answers it.
    Resumed,
    /// On a fetch of its own (`own_fetch`): keep this with the request.
    Own(OwnCall),
}

/// A fetch a waiting request owns (`own_fetch`), and what is needed to decide it afterwards.
pub(super) struct OwnCall {
    token: u32,
    provider: usize,
    step: Step,
    facts: RequestFacts,
}

impl OwnCall {
    /// The host's token of the fetch.
    pub(super) fn token(&self) -> u32 {
        self.token
    }
}

/// A fetch dispatched and not answered yet.
#[derive(Debug, Clone, Copy)]
struct Call {
    provider: usize,
    fetch_id: u64,
    step: Step,
}

/// Counters and a gauge per provider (ids are `None` when metrics are off).
#[derive(Default)]
struct ProviderMetrics {
    ok: Option<u32>,
    failed: Option<u32>,
    failed_by: Vec<(&'static str, u32)>,
    age: Option<u32>,
}

struct Inner {
    store: KeyStore,
    waiters: Waiters,
    /// Facts of waiting requests, by context id, to decide them again.
    facts: HashMap<u32, RequestFacts>,
    calls: HashMap<u32, Call>,
    metrics: Vec<ProviderMetrics>,
    rng: u64,
    /// Fresh key sets (provider, JWKS) to publish in shared data when that is safe.
    publish: Vec<(usize, Value)>,
}

/// The remote-key runtime of one configured root context.
pub(super) struct RemoteKeys {
    inner: RefCell<Inner>,
    root_id: u32,
    /// `remote_keys.shared_data` as configured (whether it may be used now is decided when it
    /// would be: [`RemoteKeys::shared_now`]).
    shared_configured: bool,
    /// `remote_keys.waiting`, resolved once the host is known (`State::profile`).
    mode: Cell<WaitMode>,
    tick: Duration,
    /// Shared-data key prefix per provider (empty for inline providers).
    shared_keys: Vec<String>,
    names: Vec<String>,
    upstreams: Vec<String>,
    timeouts: Vec<Duration>,
    max_bytes: Vec<usize>,
    min_rsa_bits: Vec<usize>,
}

/// The certificate of a waiting request decided again: read before it started waiting
/// (`Request::on_request_headers`), so never asked here, where no property may be read.
fn unread() -> PeerCertificate {
    PeerCertificate::Unavailable
}

fn increment(host: &impl Host, id: Option<u32>) {
    if let Some(id) = id {
        host.increment_metric(id, 1);
    }
}

/// A metric-name-safe form of a provider name.
fn metric_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// FNV-1a, to name shared-data entries without `/` (Kong reads a `/` as a namespace).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl RemoteKeys {
    pub(super) fn new(
        host: &impl Host,
        config: &Config,
        root_id: u32,
        metrics_enabled: bool,
    ) -> RemoteKeys {
        let store = KeyStore::new(config);
        let metric = |kind: MetricKind, name: &str| host.define_metric(kind, name);
        let providers = &config.providers;
        let metrics = providers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if !metrics_enabled || !store.is_remote(i) {
                    return ProviderMetrics::default();
                }
                let base = format!("identity_filter.keys.{}", metric_name(&p.name));
                ProviderMetrics {
                    ok: metric(MetricKind::Counter, &format!("{base}.fetch_ok")),
                    failed: metric(MetricKind::Counter, &format!("{base}.fetch_failed")),
                    failed_by: FetchError::CODES
                        .iter()
                        .filter_map(|c| {
                            Some((
                                *c,
                                metric(MetricKind::Counter, &format!("{base}.fetch_failed.{c}"))?,
                            ))
                        })
                        .collect(),
                    age: metric(MetricKind::Gauge, &format!("{base}.age_seconds")),
                }
            })
            .collect();
        let shared_keys = providers
            .iter()
            .map(|p| {
                let source = p
                    .jwks_uri
                    .clone()
                    .unwrap_or_else(|| format!("discovery:{}", p.issuer));
                format!(
                    "identity_filter.keys.v1.{:016x}",
                    fnv1a(&format!("{}\n{source}", p.issuer))
                )
            })
            .collect();
        let seed = host.now_ms().wrapping_mul(1_000_003) ^ (u64::from(root_id) << 32) | 1;
        RemoteKeys {
            inner: RefCell::new(Inner {
                store,
                waiters: Waiters::default(),
                facts: HashMap::new(),
                calls: HashMap::new(),
                metrics,
                rng: seed,
                publish: Vec::new(),
            }),
            root_id,
            shared_configured: config.remote_keys.shared_data,
            mode: Cell::new(config.remote_keys.waiting),
            tick: Duration::from_millis(config.remote_keys.tick_ms),
            shared_keys,
            names: providers.iter().map(|p| p.name.clone()).collect(),
            upstreams: providers
                .iter()
                .map(|p| p.upstream.clone().unwrap_or_default())
                .collect(),
            timeouts: providers
                .iter()
                .map(|p| Duration::from_millis(p.fetch_timeout_ms))
                .collect(),
            max_bytes: providers.iter().map(|p| p.max_response_bytes).collect(),
            min_rsa_bits: providers.iter().map(engine::min_rsa_bits).collect(),
        }
    }

    /// The host is known: settle `waiting`.
    pub(super) fn set_wait(&self, mode: WaitMode) {
        self.mode.set(mode);
        self.inner
            .borrow_mut()
            .store
            .set_own(mode == WaitMode::OwnFetch);
    }

    /// Whether shared data may be used now (see the module docs). Before the first request the
    /// profile is unknown: only a host probed as Envoy may use it then.
    fn shared_now(&self, state: &State) -> bool {
        if !self.shared_configured {
            return false;
        }
        match state.known_profile() {
            Some(p) => p.shared && (p.kind == HostKind::Envoy || paused_requests() == 0),
            None => state.probed == HostKind::Envoy,
        }
    }

    /// The tick period, when any provider fetches its keys.
    pub(super) fn tick_period(&self) -> Option<Duration> {
        self.inner.borrow().store.has_remote().then_some(self.tick)
    }

    /// Decide a request against inline and fetched keys.
    pub(super) fn decide(
        &self,
        host: &impl Host,
        state: &State,
        engine: &Engine,
        facts: &RequestFacts,
        now_ms: &dyn Fn() -> u64,
        peer_certificate: &dyn Fn() -> PeerCertificate,
    ) -> Decision {
        let inner = self.inner.borrow();
        let view = KeyView {
            inline: engine,
            store: &inner.store,
            now_ms,
        };
        state::decide(host, state, engine, &view, facts, now_ms, peer_certificate)
    }

    /// A request needs `provider`'s keys (cold start) or a refetch (unknown `kid`). `Ok`: it was
    /// registered as a waiter and must pause; `Err`: answer it now with this reason.
    pub(super) fn wait(
        &self,
        host: &impl Host,
        id: u32,
        provider: usize,
        facts: RequestFacts,
        now: u64,
    ) -> Result<Waiting, Reason> {
        let mut inner = self.inner.borrow_mut();
        let joined = inner.store.wait(provider, now) == Wait::Join;
        let refusal = refusal(&inner.store, provider, now);
        if !joined {
            return Err(refusal);
        }
        match self.mode.get() {
            WaitMode::None | WaitMode::Auto => Err(refusal),
            WaitMode::Resume => {
                if !inner.waiters.add(Waiter {
                    id,
                    provider,
                    since: now,
                }) {
                    return Err(refusal);
                }
                inner.facts.insert(id, facts);
                Ok(Waiting::Resumed)
            }
            WaitMode::OwnFetch => {
                let target = inner.store.own_target(provider);
                drop(inner);
                let Some((step, target)) = target else {
                    self.inner.borrow_mut().store.own_cancel(provider);
                    return Err(refusal);
                };
                match self.dispatch_own(host, provider, &target) {
                    Some(token) => Ok(Waiting::Own(OwnCall {
                        token,
                        provider,
                        step,
                        facts,
                    })),
                    None => Err(refusal),
                }
            }
        }
    }

    /// The request's stream ended: forget it.
    pub(super) fn forget(&self, id: u32) {
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            inner.waiters.remove(id);
            inner.facts.remove(&id);
        }
    }

    fn rand(&self) -> u32 {
        let mut inner = self.inner.borrow_mut();
        // xorshift64: jitter only, not security.
        let mut x = inner.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        inner.rng = x;
        (x >> 32) as u32
    }

    fn log_events(&self, host: &impl Host) {
        let events = self.inner.borrow_mut().store.take_events();
        for e in events {
            let level = match e.to {
                Status::Fresh | Status::Empty => Level::Info,
                Status::Stale => Level::Warn,
                Status::Unavailable => Level::Error,
            };
            let name = self
                .names
                .get(e.provider)
                .map(String::as_str)
                .unwrap_or_default();
            host.log(
                level,
                &format!(
                    "identity filter: provider \"{name}\" keys {} -> {}: {}",
                    e.from.name(),
                    e.to.name(),
                    e.detail
                ),
            );
        }
    }

    /// The timer: give up lost fetches, start due ones, answer waiters that waited too long,
    /// and do the shared-data work that had to wait for a safe moment.
    pub(super) fn on_tick(&self, host: &impl Host, state: &State, engine: &Engine) {
        let now = host.now_ms();
        let rand = self.rand();
        let timed_out = {
            let mut inner = self.inner.borrow_mut();
            let timed_out = inner.store.tick(now, rand);
            inner.calls.retain(|_, c| !timed_out.contains(&c.provider));
            timed_out
        };
        for p in &timed_out {
            self.count_failure(host, *p, &FetchError::Timeout);
        }
        self.log_events(host);
        for p in timed_out {
            self.wake(host, state, engine, p);
        }
        let shared = self.shared_now(state);
        if shared {
            self.flush_publish(host);
        }
        let due = self.inner.borrow().store.due(now);
        for p in due {
            if shared && self.adopt_shared(host, p, now) {
                self.log_events(host);
                self.wake(host, state, engine, p);
                continue;
            }
            if shared && !self.take_lease(host, p, now) {
                continue;
            }
            let start = self.inner.borrow_mut().store.start(p, now);
            if let Some(start) = start {
                self.dispatch(host, state, engine, start, now);
            }
        }
        self.expire_waiters(host, state, engine, now);
        self.record_ages(host, now);
    }

    fn record_ages(&self, host: &impl Host, now: u64) {
        let inner = self.inner.borrow();
        for (p, m) in inner.metrics.iter().enumerate() {
            if let (Some(id), Some(age)) = (m.age, inner.store.age_ms(p, now)) {
                host.record_metric(id, age / 1000);
            }
        }
    }

    fn expire_waiters(&self, host: &impl Host, state: &State, engine: &Engine, now: u64) {
        let expired = {
            let mut inner = self.inner.borrow_mut();
            let Inner { store, waiters, .. } = &mut *inner;
            if waiters.is_empty() {
                return;
            }
            waiters.take_expired(now, |p| {
                let s = store.settings(p);
                match store.keys(p, now) {
                    // Waiting for a refetch: as long as the fetch may take.
                    KeyState::Ready(_) => s.map_or(0, |s| s.fetch_timeout_ms + TIMEOUT_GRACE_MS),
                    _ => s.map_or(0, |s| s.cold_start_wait_ms),
                }
            })
        };
        for w in expired {
            let facts = self.inner.borrow_mut().facts.remove(&w.id);
            if facts.is_none() {
                continue;
            }
            let reason = refusal(&self.inner.borrow().store, w.provider, now);
            self.in_context(host, state, w.id, || {
                refuse(host, state, engine, reason);
            });
        }
    }

    /// Run `f` with `id` as the effective context, then return to the root. `false` (and `f`
    /// does not run) if the context is gone, or if this host cannot act on a request from a root
    /// context at all (ngx_wasm_module: it would crash the worker).
    fn in_context(&self, host: &impl Host, state: &State, id: u32, f: impl FnOnce()) -> bool {
        set_paused(id, false);
        if !state.kind().wakes_from_root() {
            return false;
        }
        if host.set_effective_context(id).is_err() {
            let _ = host.set_effective_context(self.root_id);
            return false;
        }
        f();
        let _ = host.set_effective_context(self.root_id);
        true
    }

    /// Decide `provider`'s waiters again, now that its fetch ended.
    fn wake(&self, host: &impl Host, state: &State, engine: &Engine, provider: usize) {
        let waiters = self.inner.borrow_mut().waiters.take_provider(provider);
        let now = host.now_ms();
        for w in waiters {
            let Some(facts) = self.inner.borrow_mut().facts.remove(&w.id) else {
                continue;
            };
            let decision = self.decide(host, state, engine, &facts, &|| now, &unread);
            if let Decision::NeedKeys(p) = decision {
                // The fetch failed but another attempt comes within the wait: keep waiting.
                let mut inner = self.inner.borrow_mut();
                if inner.store.wait(p, now) == Wait::Join
                    && inner.waiters.add(Waiter { provider: p, ..w })
                {
                    inner.facts.insert(w.id, facts);
                    continue;
                }
                let reason = refusal(&inner.store, p, now);
                drop(inner);
                self.in_context(host, state, w.id, || {
                    refuse(host, state, engine, reason);
                });
                continue;
            }
            self.in_context(host, state, w.id, || {
                if let Verdict::Continue = conclude(host, state, engine, decision) {
                    host.resume_request();
                }
            });
        }
    }

    /// Send provider `p`'s fetch request to its upstream, with its timeout.
    fn call(
        &self,
        host: &impl Host,
        p: usize,
        target: &Target,
    ) -> Result<u32, super::host::HostError> {
        let upstream = self
            .upstreams
            .get(p)
            .map(String::as_str)
            .unwrap_or_default();
        let timeout = self
            .timeouts
            .get(p)
            .copied()
            .unwrap_or(Duration::from_secs(5));
        host.dispatch(upstream, &target.request_headers(), timeout)
    }

    fn dispatch(
        &self,
        host: &impl Host,
        state: &State,
        engine: &Engine,
        start: FetchStart,
        now: u64,
    ) {
        let p = start.provider;
        match self.call(host, p, &start.target) {
            Ok(token) => {
                self.inner.borrow_mut().calls.insert(
                    token,
                    Call {
                        provider: p,
                        fetch_id: start.id,
                        step: start.step,
                    },
                );
            }
            Err(_) => {
                let rand = self.rand();
                self.count_failure(host, p, &FetchError::Dispatch);
                let c = self.inner.borrow_mut().store.complete(
                    p,
                    start.id,
                    Err(FetchError::Dispatch),
                    now,
                    rand,
                );
                self.log_events(host);
                if c == Completion::Done {
                    self.wake(host, state, engine, p);
                }
            }
        }
    }

    fn count_failure(&self, host: &impl Host, provider: usize, error: &FetchError) {
        let inner = self.inner.borrow();
        if let Some(m) = inner.metrics.get(provider) {
            increment(host, m.failed);
            increment(
                host,
                m.failed_by
                    .iter()
                    .find(|(c, _)| *c == error.code())
                    .map(|(_, id)| *id),
            );
        }
    }

    fn min_rsa_bits(&self, provider: usize) -> usize {
        self.min_rsa_bits
            .get(provider)
            .copied()
            .unwrap_or(crate::jwks::MIN_RSA_BITS)
    }

    fn count_success(&self, host: &impl Host, provider: usize) {
        let inner = self.inner.borrow();
        if let Some(m) = inner.metrics.get(provider) {
            increment(host, m.ok);
        }
    }

    /// An answer to one of our fetches (or, on Kong 3.9+, its failure).
    pub(super) fn on_response(
        &self,
        host: &impl Host,
        state: &State,
        engine: &Engine,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(call) = self.inner.borrow_mut().calls.remove(&token) else {
            return;
        };
        let p = call.provider;
        let now = host.now_ms();
        let result = self.interpret(host, state, p, call.step, num_headers, body_size);
        let rand = self.rand();
        let completion =
            self.inner
                .borrow_mut()
                .store
                .complete(p, call.fetch_id, result, now, rand);
        self.log_events(host);
        match completion {
            Completion::Ignored => {}
            Completion::Next(next) => self.dispatch(host, state, engine, next, now),
            Completion::Done => self.wake(host, state, engine, p),
        }
    }

    /// Read and check the answer being delivered for `provider`'s `step`, and count it. The
    /// JSON of a good JWKS is queued for sharing (when shared data is configured).
    /// RSA keys skipped for their size are logged and counted here (not again when another
    /// worker adopts the set from shared data).
    fn interpret(
        &self,
        host: &impl Host,
        state: &State,
        p: usize,
        step: Step,
        num_headers: usize,
        body_size: usize,
    ) -> Result<Fetched<KeySet>, FetchError> {
        let max = self.max_bytes.get(p).copied().unwrap_or(0);
        let min_rsa_bits = self.min_rsa_bits(p);
        let answer = read_answer(host, num_headers, body_size, max);
        let result = match step {
            Step::Discovery => {
                let issuer = self
                    .inner
                    .borrow()
                    .store
                    .discovery_issuer(p)
                    .map(str::to_string)
                    .unwrap_or_default();
                answer
                    .discovered_jwks(max, &issuer)
                    .map(Fetched::Discovered)
            }
            Step::Jwks => answer.key_set(max, min_rsa_bits).map(|(keys, json)| {
                let name = self.names.get(p).map(String::as_str).unwrap_or_default();
                report_weak_keys(host, &state.metrics, name, keys.weak_keys(), min_rsa_bits);
                if self.shared_configured {
                    let mut inner = self.inner.borrow_mut();
                    inner.publish.retain(|(q, _)| *q != p);
                    inner.publish.push((p, json));
                }
                Fetched::Keys {
                    keys,
                    max_age: answer.max_age(),
                }
            }),
        };
        match &result {
            Err(e) => self.count_failure(host, p, e),
            Ok(Fetched::Keys { .. }) => self.count_success(host, p),
            Ok(Fetched::Discovered(_)) => {}
        }
        result
    }

    /// `own_fetch`: dispatch a fetch from the current HTTP context (the host delivers the
    /// answer to it, and Kong resumes it afterwards). `None` if the host refused.
    fn dispatch_own(&self, host: &impl Host, p: usize, target: &Target) -> Option<u32> {
        match self.call(host, p, target) {
            Ok(token) => Some(token),
            Err(_) => {
                self.count_failure(host, p, &FetchError::Dispatch);
                let rand = self.rand();
                let _ = self.inner.borrow_mut().store.own_done(
                    p,
                    Err(FetchError::Dispatch),
                    host.now_ms(),
                    rand,
                );
                self.log_events(host);
                None
            }
        }
    }

    /// `own_fetch`: the answer to a request's own fetch: the next step's call, or the request
    /// decided again and resumed or answered. No host call that can trap happens here (shared
    /// data waits for `on_tick`): in Kong a trap now would let this paused request through.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn own_answer(
        &self,
        host: &impl Host,
        state: &State,
        engine: &Engine,
        id: u32,
        call: OwnCall,
        num_headers: usize,
        body_size: usize,
    ) -> Option<OwnCall> {
        let p = call.provider;
        let result = self.interpret(host, state, p, call.step, num_headers, body_size);
        let rand = self.rand();
        let now = host.now_ms();
        let next = self.inner.borrow_mut().store.own_done(p, result, now, rand);
        self.log_events(host);
        if let Some(target) = next {
            if let Some(token) = self.dispatch_own(host, p, &target) {
                return Some(OwnCall {
                    token,
                    step: Step::Jwks,
                    ..call
                });
            }
        }
        set_paused(id, false);
        let verdict = match self.decide(host, state, engine, &call.facts, &|| now, &unread) {
            Decision::NeedKeys(p) => refuse(
                host,
                state,
                engine,
                refusal(&self.inner.borrow().store, p, now),
            ),
            decision => conclude(host, state, engine, decision),
        };
        if let Verdict::Continue = verdict {
            host.resume_request();
        }
        None
    }

    /// `own_fetch`: the request is gone before its fetch was answered.
    pub(super) fn own_cancel(&self, call: OwnCall) {
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            inner.store.own_cancel(call.provider);
        }
    }

    /// Write the fresh key sets waiting in the queue for the other workers.
    fn flush_publish(&self, host: &impl Host) {
        let queued = std::mem::take(&mut self.inner.borrow_mut().publish);
        for (provider, jwks) in queued {
            let Some(key) = self.shared_keys.get(provider) else {
                continue;
            };
            let (fetched_at, refresh_at) = {
                let inner = self.inner.borrow();
                match inner.store.good(provider) {
                    Some(g) => (g.fetched_at, g.refresh_at),
                    None => continue,
                }
            };
            let entry = json!({"fetched_at": fetched_at, "refresh_at": refresh_at, "jwks": jwks});
            let _ = host.set_shared(&format!("{key}.set"), entry.to_string().as_bytes(), None);
            let _ = host.set_shared(
                &format!("{key}.at"),
                fetched_at.to_string().as_bytes(),
                None,
            );
        }
    }

    /// Use a newer key set another worker published. Returns whether one was adopted.
    fn adopt_shared(&self, host: &impl Host, provider: usize, now: u64) -> bool {
        let Some(key) = self.shared_keys.get(provider) else {
            return false;
        };
        let ours = self
            .inner
            .borrow()
            .store
            .good(provider)
            .map_or(0, |g| g.fetched_at);
        let at = match host.get_shared(&format!("{key}.at")) {
            Ok((Some(bytes), _)) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0),
            _ => return false,
        };
        if at <= ours {
            return false;
        }
        let entry = match host.get_shared(&format!("{key}.set")) {
            Ok((Some(bytes), _)) => serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            _ => return false,
        };
        let (Some(fetched_at), Some(refresh_at)) = (
            entry.get("fetched_at").and_then(Value::as_u64),
            entry.get("refresh_at").and_then(Value::as_u64),
        ) else {
            return false;
        };
        let jwks = entry.get("jwks").unwrap_or(&Value::Null);
        let Ok(keys) = fetch::parse_remote_keys(jwks, self.min_rsa_bits(provider)) else {
            return false;
        };
        self.inner
            .borrow_mut()
            .store
            .adopt(provider, keys, fetched_at, refresh_at, now)
    }

    /// Take the per-provider fetch lease in shared data so that one worker fetches at a time.
    /// `false` while another worker holds it.
    fn take_lease(&self, host: &impl Host, provider: usize, now: u64) -> bool {
        let Some(key) = self.shared_keys.get(provider) else {
            return true;
        };
        let key = format!("{key}.lease");
        let read = |key: &str| match host.get_shared(key) {
            Ok((value, cas)) => Some((
                value.and_then(|b| String::from_utf8_lossy(&b).parse::<u64>().ok()),
                cas,
            )),
            Err(_) => None,
        };
        let Some(mut lease) = read(&key) else {
            return true;
        };
        if lease.0.is_none() {
            // Create it first so that taking it below is a compare-and-swap for every worker.
            let _ = host.set_shared(&key, b"0", None);
            match read(&key) {
                Some(l) => lease = l,
                None => return true,
            }
        }
        let (held_until, cas) = (lease.0.unwrap_or(0), lease.1);
        if held_until > now {
            return false;
        }
        let timeout = self
            .timeouts
            .get(provider)
            .map_or(5000, |d| d.as_millis() as u64);
        let until = now + timeout + TIMEOUT_GRACE_MS;
        host.set_shared(&key, until.to_string().as_bytes(), cas) != Err(CAS_MISMATCH)
    }

    /// The configuration is being replaced: answer every waiter (they would wait forever).
    pub(super) fn abandon(&self, host: &impl Host, state: &State, engine: &Engine) {
        let waiters = {
            let mut inner = self.inner.borrow_mut();
            inner.facts.clear();
            inner.calls.clear();
            std::mem::take(&mut inner.waiters)
        };
        let mut waiters = waiters;
        for p in 0..self.names.len() {
            for w in waiters.take_provider(p) {
                self.in_context(host, state, w.id, || {
                    refuse(host, state, engine, Reason::KeysUnavailable);
                });
            }
        }
    }
}

/// Why a request that cannot wait is refused: with a usable key set its `kid` is unknown.
fn refusal(store: &KeyStore, provider: usize, now: u64) -> Reason {
    match store.keys(provider, now) {
        KeyState::Ready(_) => Reason::KeyNotFound,
        _ => Reason::KeysUnavailable,
    }
}

/// Read the answer of the call being delivered. With no headers (a failed call) only Kong's
/// `:dispatch_status` is read: Envoy refuses header reads then.
fn read_answer(host: &impl Host, num_headers: usize, body_size: usize, max_bytes: usize) -> Answer {
    if num_headers == 0 {
        let status = host.call_header(":dispatch_status");
        let headers: Vec<(String, Vec<u8>)> = status
            .map(|v| (":dispatch_status".to_string(), v))
            .into_iter()
            .collect();
        return Answer::from_headers(&headers, 0);
    }
    let headers = host.call_headers().unwrap_or_default();
    let mut answer = Answer::from_headers(&headers, body_size);
    if body_size > 0 && body_size <= max_bytes {
        answer.body = host.call_body(body_size);
    }
    answer
}
