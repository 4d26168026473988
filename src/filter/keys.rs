//! Host side of remote keys: dispatches the fetches the [`KeyStore`] asks for (from the root
//! context: `on_tick` and `on_http_call_response`, never `on_configure`), hands the answers back,
//! logs state changes, counts fetches, shares key sets between workers (optional), and wakes
//! requests waiting for keys.
//!
//! Waking a waiter: a paused HTTP context is reached from the root context with
//! `proxy_set_effective_context(id)`; the request is decided again there (its facts were kept)
//! and then resumed (`proxy_continue_stream`) or answered (`proxy_send_local_response`), once.
//! The effective context is set back to the root after each waiter. A waiter whose stream ended
//! is forgotten in `on_log`/`on_done`; if one slips through, `set_effective_context` fails for
//! the unknown id and the waiter is dropped without any other host call. Kong's ngx_wasm_module
//! accepts `set_effective_context` but ignores it, hence `remote_keys.waiting: own_fetch` there:
//! a waiting request then pauses on a fetch of its own (at most 4 per provider at once), which
//! the host delivers to that request's context like any callout.
//!
//! Why not fetch from the waiting request's own context: Envoy cancels a context's calls when
//! its stream ends, so one impatient client would cancel the fetch every other request waits on,
//! and N waiters would mean N fetches. One root-owned fetch per provider avoids both.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType, MetricType, Status as HostStatus};
use serde_json::{json, Value};

use crate::config::{Config, WaitMode};
use crate::decide::{self, Decision, Engine, RequestFacts};
use crate::fetch::{self, Answer, FetchError, Target};
use crate::jwks::KeySet;
use crate::keystore::{
    Completion, FetchStart, Fetched, KeyState, KeyStore, KeyView, Status, Step, Wait, Waiter,
    Waiters, TIMEOUT_GRACE_MS,
};
use crate::reason::Reason;

use super::{conclude, log, refuse, State};

/// Unix time in milliseconds.
pub(super) fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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

/// `own_fetch`: a call answered in a request's own context. Not ours (another token): ignored.
pub(super) fn own_response(
    state: &Rc<State>,
    own: &mut Option<OwnCall>,
    token: u32,
    num_headers: usize,
    body_size: usize,
) {
    let Some(call) = own.take_if(|c| c.token == token) else {
        return;
    };
    if let (Some(keys), Some(engine)) = (&state.keys, &state.engine) {
        *own = keys.own_answer(state, engine, call, num_headers, body_size);
    }
}

/// `own_fetch`: the request is gone before its fetch was answered.
pub(super) fn own_cancel(state: &Rc<State>, own: &mut Option<OwnCall>) {
    if let (Some(call), Some(keys)) = (own.take(), &state.keys) {
        if let Ok(mut inner) = keys.inner.try_borrow_mut() {
            inner.store.own_cancel(call.provider);
        }
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
}

/// The remote-key runtime of one configured root context.
pub(super) struct RemoteKeys {
    inner: RefCell<Inner>,
    root_id: u32,
    mode: WaitMode,
    shared: bool,
    tick: Duration,
    /// Shared-data key prefix per provider (empty for inline providers).
    shared_keys: Vec<String>,
    names: Vec<String>,
    upstreams: Vec<String>,
    timeouts: Vec<Duration>,
    max_bytes: Vec<usize>,
}

fn metric(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

fn increment(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
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
    pub(super) fn new(config: &Config, root_id: u32, metrics_enabled: bool) -> RemoteKeys {
        let store = KeyStore::new(config);
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
                    ok: metric(MetricType::Counter, &format!("{base}.fetch_ok")),
                    failed: metric(MetricType::Counter, &format!("{base}.fetch_failed")),
                    failed_by: FetchError::CODES
                        .iter()
                        .filter_map(|c| {
                            Some((
                                *c,
                                metric(MetricType::Counter, &format!("{base}.fetch_failed.{c}"))?,
                            ))
                        })
                        .collect(),
                    age: metric(MetricType::Gauge, &format!("{base}.age_seconds")),
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
        let seed = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(root_id) << 32)
            | 1;
        RemoteKeys {
            inner: RefCell::new(Inner {
                store,
                waiters: Waiters::default(),
                facts: HashMap::new(),
                calls: HashMap::new(),
                metrics,
                rng: seed,
            }),
            root_id,
            mode: config.remote_keys.waiting,
            shared: config.remote_keys.shared_data,
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
        }
    }

    /// The tick period, when any provider fetches its keys.
    pub(super) fn tick_period(&self) -> Option<Duration> {
        self.inner.borrow().store.has_remote().then_some(self.tick)
    }

    /// Decide a request against inline and fetched keys.
    pub(super) fn decide(&self, engine: &Engine, facts: &RequestFacts, now_ms: u64) -> Decision {
        let inner = self.inner.borrow();
        let view = KeyView {
            engine,
            store: &inner.store,
            now_ms,
        };
        decide::decide(engine, &view, facts, now_ms / 1000)
    }

    /// A request needs `provider`'s keys (cold start) or a refetch (unknown `kid`). `Ok`: it was
    /// registered as a waiter and must pause; `Err`: answer it now with this reason.
    pub(super) fn wait(
        &self,
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
        match self.mode {
            WaitMode::None => Err(refusal),
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
                match self.dispatch_own(provider, &target) {
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

    fn log_events(&self) {
        let events = self.inner.borrow_mut().store.take_events();
        for e in events {
            let level = match e.to {
                Status::Fresh | Status::Empty => LogLevel::Info,
                Status::Stale => LogLevel::Warn,
                Status::Unavailable => LogLevel::Error,
            };
            let name = self
                .names
                .get(e.provider)
                .map(String::as_str)
                .unwrap_or_default();
            log(
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

    /// The timer: give up lost fetches, start due ones, answer waiters that waited too long.
    pub(super) fn on_tick(&self, state: &State, engine: &Engine) {
        let now = now_ms();
        let rand = self.rand();
        let timed_out = {
            let mut inner = self.inner.borrow_mut();
            let timed_out = inner.store.tick(now, rand);
            inner.calls.retain(|_, c| !timed_out.contains(&c.provider));
            timed_out
        };
        for p in &timed_out {
            self.count_failure(*p, &FetchError::Timeout);
        }
        self.log_events();
        for p in timed_out {
            self.wake(state, engine, p);
        }
        let due = self.inner.borrow().store.due(now);
        for p in due {
            if self.shared && self.adopt_shared(p, now) {
                self.log_events();
                self.wake(state, engine, p);
                continue;
            }
            if self.shared && !self.take_lease(p, now) {
                continue;
            }
            let start = self.inner.borrow_mut().store.start(p, now);
            if let Some(start) = start {
                self.dispatch(state, engine, start, now);
            }
        }
        self.expire_waiters(state, engine, now);
        self.record_ages(now);
    }

    fn record_ages(&self, now: u64) {
        let inner = self.inner.borrow();
        for (p, m) in inner.metrics.iter().enumerate() {
            if let (Some(id), Some(age)) = (m.age, inner.store.age_ms(p, now)) {
                let _ = hostcalls::record_metric(id, age / 1000);
            }
        }
    }

    fn expire_waiters(&self, state: &State, engine: &Engine, now: u64) {
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
            self.in_context(w.id, || {
                refuse(state, engine, reason);
            });
        }
    }

    /// Run `f` with `id` as the effective context, then return to the root. `false` if the
    /// context is gone (then `f` does not run).
    fn in_context(&self, id: u32, f: impl FnOnce()) -> bool {
        if hostcalls::set_effective_context(id).is_err() {
            let _ = hostcalls::set_effective_context(self.root_id);
            return false;
        }
        f();
        let _ = hostcalls::set_effective_context(self.root_id);
        true
    }

    /// Decide `provider`'s waiters again, now that its fetch ended.
    fn wake(&self, state: &State, engine: &Engine, provider: usize) {
        let waiters = self.inner.borrow_mut().waiters.take_provider(provider);
        let now = now_ms();
        for w in waiters {
            let Some(facts) = self.inner.borrow_mut().facts.remove(&w.id) else {
                continue;
            };
            let decision = self.decide(engine, &facts, now);
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
                self.in_context(w.id, || {
                    refuse(state, engine, reason);
                });
                continue;
            }
            self.in_context(w.id, || {
                if let Action::Continue = conclude(state, engine, decision) {
                    let _ = hostcalls::resume_http_request();
                }
            });
        }
    }

    /// Send provider `p`'s fetch request to its upstream, with its timeout.
    fn call(&self, p: usize, target: &Target) -> Result<u32, proxy_wasm::types::Status> {
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
        hostcalls::dispatch_http_call(
            upstream,
            target.request_headers(),
            None,
            Vec::new(),
            timeout,
        )
    }

    fn dispatch(&self, state: &State, engine: &Engine, start: FetchStart, now: u64) {
        let p = start.provider;
        match self.call(p, &start.target) {
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
                self.count_failure(p, &FetchError::Dispatch);
                let c = self.inner.borrow_mut().store.complete(
                    p,
                    start.id,
                    Err(FetchError::Dispatch),
                    now,
                    rand,
                );
                self.log_events();
                if c == Completion::Done {
                    self.wake(state, engine, p);
                }
            }
        }
    }

    fn count_failure(&self, provider: usize, error: &FetchError) {
        let inner = self.inner.borrow();
        if let Some(m) = inner.metrics.get(provider) {
            increment(m.failed);
            increment(
                m.failed_by
                    .iter()
                    .find(|(c, _)| *c == error.code())
                    .map(|(_, id)| *id),
            );
        }
    }

    fn count_success(&self, provider: usize) {
        let inner = self.inner.borrow();
        if let Some(m) = inner.metrics.get(provider) {
            increment(m.ok);
        }
    }

    /// An answer to one of our fetches (or, on Kong 3.9+, its failure).
    pub(super) fn on_response(
        &self,
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
        let now = now_ms();
        let (result, shared_doc) = self.interpret(p, call.step, num_headers, body_size);
        let rand = self.rand();
        let completion =
            self.inner
                .borrow_mut()
                .store
                .complete(p, call.fetch_id, result, now, rand);
        self.log_events();
        match completion {
            Completion::Ignored => {}
            Completion::Next(next) => self.dispatch(state, engine, next, now),
            Completion::Done => {
                if let (true, Some(doc)) = (self.shared, shared_doc) {
                    self.publish_shared(p, doc);
                }
                self.wake(state, engine, p);
            }
        }
    }

    /// Read and check the answer being delivered for `provider`'s `step`, and count it. The
    /// JSON of a good JWKS comes along, for sharing.
    fn interpret(
        &self,
        p: usize,
        step: Step,
        num_headers: usize,
        body_size: usize,
    ) -> (Result<Fetched<KeySet>, FetchError>, Option<Value>) {
        let max = self.max_bytes.get(p).copied().unwrap_or(0);
        let answer = read_answer(num_headers, body_size, max);
        let mut doc = None;
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
            Step::Jwks => answer.key_set(max).map(|(keys, json)| {
                doc = Some(json);
                Fetched::Keys {
                    keys,
                    max_age: answer.max_age(),
                }
            }),
        };
        match &result {
            Err(e) => self.count_failure(p, e),
            Ok(Fetched::Keys { .. }) => self.count_success(p),
            Ok(Fetched::Discovered(_)) => {}
        }
        (result, doc)
    }

    /// `own_fetch`: dispatch a fetch from the current HTTP context (the host delivers the
    /// answer to it, and Kong resumes it afterwards). `None` if the host refused.
    fn dispatch_own(&self, p: usize, target: &Target) -> Option<u32> {
        match self.call(p, target) {
            Ok(token) => Some(token),
            Err(_) => {
                self.count_failure(p, &FetchError::Dispatch);
                let rand = self.rand();
                let _ = self.inner.borrow_mut().store.own_done(
                    p,
                    Err(FetchError::Dispatch),
                    now_ms(),
                    rand,
                );
                self.log_events();
                None
            }
        }
    }

    /// `own_fetch`: the answer to a request's own fetch: the next step's call, or the
    /// request decided again and resumed or answered.
    fn own_answer(
        &self,
        state: &State,
        engine: &Engine,
        call: OwnCall,
        num_headers: usize,
        body_size: usize,
    ) -> Option<OwnCall> {
        let p = call.provider;
        let (result, doc) = self.interpret(p, call.step, num_headers, body_size);
        let rand = self.rand();
        let now = now_ms();
        let next = self.inner.borrow_mut().store.own_done(p, result, now, rand);
        self.log_events();
        if let Some(target) = next {
            if let Some(token) = self.dispatch_own(p, &target) {
                return Some(OwnCall {
                    token,
                    step: Step::Jwks,
                    ..call
                });
            }
        } else if let (true, Some(doc)) = (self.shared, doc) {
            self.publish_shared(p, doc);
        }
        let action = match self.decide(engine, &call.facts, now) {
            Decision::NeedKeys(p) => {
                refuse(state, engine, refusal(&self.inner.borrow().store, p, now))
            }
            decision => conclude(state, engine, decision),
        };
        if let Action::Continue = action {
            let _ = hostcalls::resume_http_request();
        }
        None
    }

    /// Write our fresh key set for the other workers.
    fn publish_shared(&self, provider: usize, jwks: Value) {
        let Some(key) = self.shared_keys.get(provider) else {
            return;
        };
        let (fetched_at, refresh_at) = {
            let inner = self.inner.borrow();
            match inner.store.good(provider) {
                Some(g) => (g.fetched_at, g.refresh_at),
                None => return,
            }
        };
        let entry = json!({"fetched_at": fetched_at, "refresh_at": refresh_at, "jwks": jwks});
        let _ = hostcalls::set_shared_data(
            &format!("{key}.set"),
            Some(entry.to_string().as_bytes()),
            None,
        );
        let _ = hostcalls::set_shared_data(
            &format!("{key}.at"),
            Some(fetched_at.to_string().as_bytes()),
            None,
        );
    }

    /// Use a newer key set another worker published. Returns whether one was adopted.
    fn adopt_shared(&self, provider: usize, now: u64) -> bool {
        let Some(key) = self.shared_keys.get(provider) else {
            return false;
        };
        let ours = self
            .inner
            .borrow()
            .store
            .good(provider)
            .map_or(0, |g| g.fetched_at);
        let at = match hostcalls::get_shared_data(&format!("{key}.at")) {
            Ok((Some(bytes), _)) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0),
            _ => return false,
        };
        if at <= ours {
            return false;
        }
        let entry = match hostcalls::get_shared_data(&format!("{key}.set")) {
            Ok((Some(bytes), _)) => serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            _ => return false,
        };
        let (Some(fetched_at), Some(refresh_at)) = (
            entry.get("fetched_at").and_then(serde_json::Value::as_u64),
            entry.get("refresh_at").and_then(serde_json::Value::as_u64),
        ) else {
            return false;
        };
        let Ok(keys) =
            fetch::parse_remote_keys(entry.get("jwks").unwrap_or(&serde_json::Value::Null))
        else {
            return false;
        };
        self.inner
            .borrow_mut()
            .store
            .adopt(provider, keys, fetched_at, refresh_at, now)
    }

    /// Take the per-provider fetch lease in shared data so that one worker fetches at a time.
    /// `false` while another worker holds it.
    fn take_lease(&self, provider: usize, now: u64) -> bool {
        let Some(key) = self.shared_keys.get(provider) else {
            return true;
        };
        let key = format!("{key}.lease");
        let read = |key: &str| match hostcalls::get_shared_data(key) {
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
            let _ = hostcalls::set_shared_data(&key, Some(b"0"), None);
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
        !matches!(
            hostcalls::set_shared_data(&key, Some(until.to_string().as_bytes()), cas),
            Err(HostStatus::CasMismatch)
        )
    }

    /// The configuration is being replaced: answer every waiter (they would wait forever).
    pub(super) fn abandon(&self, state: &State, engine: &Engine) {
        let waiters = {
            let mut inner = self.inner.borrow_mut();
            inner.facts.clear();
            inner.calls.clear();
            std::mem::take(&mut inner.waiters)
        };
        let mut waiters = waiters;
        for p in 0..self.names.len() {
            for w in waiters.take_provider(p) {
                self.in_context(w.id, || {
                    refuse(state, engine, Reason::KeysUnavailable);
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

/// Read the answer of the call being delivered. With no headers (a failed call) nothing else
/// is read: Envoy refuses header reads then, and the SDK would panic on that status.
fn read_answer(num_headers: usize, body_size: usize, max_bytes: usize) -> Answer {
    if num_headers == 0 {
        return Answer {
            dispatch_status: dispatch_status(),
            ..Answer::default()
        };
    }
    let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let mut answer = Answer::from_headers(&headers, body_size);
    if body_size > 0 && body_size <= max_bytes {
        answer.body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
    }
    answer
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> HostStatus;
}

/// Kong's `:dispatch_status` of a failed call, read without the SDK (which panics on any status
/// but Ok/NotFound; Envoy answers BadArgument when the call has no response).
fn dispatch_status() -> Option<String> {
    let key = ":dispatch_status";
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through our allocator (the SDK's
    // `proxy_on_memory_allocate`), which we take ownership of; on any other status nothing.
    unsafe {
        match proxy_get_header_map_value(
            MapType::HttpCallResponseHeaders,
            key.as_ptr(),
            key.len(),
            &mut data,
            &mut size,
        ) {
            HostStatus::Ok if !data.is_null() => {
                let bytes = Vec::from_raw_parts(data, size, size);
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => None,
        }
    }
}
