//! Per-issuer key state for remote key sets (`jwks_uri`, `discovery`): a pure state machine.
//! Time (Unix milliseconds) and randomness come in as arguments; the host glue dispatches the
//! fetches it asks for, hands back the results, logs the [`Event`]s and wakes the [`Waiters`].
//!
//! ```text
//!            fetch ok                     refresh due, fetch fails
//!   Empty ───────────► Fresh ◄──────────────────────────────────► Stale
//!     │ fails            ▲  fetch ok                                │ max_stale passes
//!     ▼                  │                                          ▼
//!  Unavailable ──────────┴──────────────────────────────────── Unavailable
//! ```
//! - A key set is used until `refresh_at + max_stale`; `refresh_at` comes from
//!   `Cache-Control: max-age`, clamped to `[min_refresh, max_refresh]`.
//! - One fetch per provider is in flight at a time. A failed fetch is retried with exponential
//!   backoff (1 s doubling, capped at `min(60 s, max_refresh)`) and jitter (50–100 % of the
//!   delay). A bad answer never replaces a good key set.
//! - A token with an unknown `kid` may trigger an immediate refetch, at most once per
//!   `refetch_min_interval`, never while retries are backing off.
//! - A request that finds no usable key set waits for the fetch in flight (or about to start)
//!   when `cold_start_wait > 0`, and is answered 503 `keys_unavailable` otherwise.
//!
//! The store is generic over the key set type so the state machine is tested without keys.

use crate::config::{Config, Provider, WaitMode};
use crate::fetch::{self, FetchError, Target};
use crate::jwks::KeySet;

/// First retry delay after a failed fetch.
pub const BACKOFF_BASE_MS: u64 = 1_000;
/// Longest retry delay (further capped by `max_refresh`).
pub const BACKOFF_CAP_MS: u64 = 60_000;
/// A fetch the host has not answered this long after its timeout is given up.
pub const TIMEOUT_GRACE_MS: u64 = 2_000;
/// Most requests waiting for keys at once (per worker and filter configuration).
pub const MAX_WAITERS: usize = 4_096;
/// `own_fetch` waiting: most request-owned fetches per provider in flight at once, and per
/// unknown-`kid` refetch episode.
pub const MAX_OWN_FETCHES: u32 = 4;

/// The numbers of one provider's remote key source, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub fetch_timeout_ms: u64,
    pub min_refresh_ms: u64,
    pub max_refresh_ms: u64,
    pub refetch_min_interval_ms: u64,
    pub max_stale_ms: u64,
    pub cold_start_wait_ms: u64,
}

impl Settings {
    pub fn of(p: &Provider) -> Settings {
        Settings {
            fetch_timeout_ms: p.fetch_timeout_ms,
            min_refresh_ms: p.min_refresh_seconds.saturating_mul(1000),
            max_refresh_ms: p.max_refresh_seconds.saturating_mul(1000),
            refetch_min_interval_ms: p.refetch_min_interval_seconds.saturating_mul(1000),
            max_stale_ms: p.max_stale_seconds.saturating_mul(1000),
            cold_start_wait_ms: p.cold_start_wait_ms,
        }
    }

    fn backoff_ms(&self, failures: u32, rand: u32) -> u64 {
        let cap = BACKOFF_CAP_MS.min(self.max_refresh_ms).max(BACKOFF_BASE_MS);
        let exp = failures.saturating_sub(1).min(20);
        let delay = BACKOFF_BASE_MS.saturating_mul(1u64 << exp).min(cap);
        // Jitter: 50–100 % of the delay, so workers and filters do not retry in step.
        delay / 2 + (delay / 2) * u64::from(rand % 1024) / 1023
    }
}

/// The state of one provider's keys, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No key set yet, and no fetch has failed.
    Empty,
    /// A key set from the last fetch, which succeeded.
    Fresh,
    /// A key set still in use, but the last fetch failed.
    Stale,
    /// No usable key set: fetches failed, or the stale set outlived `max_stale`.
    Unavailable,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Empty => "empty",
            Status::Fresh => "fresh",
            Status::Stale => "stale",
            Status::Unavailable => "unavailable",
        }
    }
}

/// A change of a provider's [`Status`], to be logged once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub provider: usize,
    pub from: Status,
    pub to: Status,
    pub detail: String,
}

/// Which document a fetch gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Discovery,
    Jwks,
}

/// A fetch the glue must dispatch now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchStart {
    pub provider: usize,
    /// Identifies this fetch in [`KeyStore::complete`]; a result for an older id is ignored.
    pub id: u64,
    pub step: Step,
    pub target: Target,
}

/// What a completed step brought.
#[derive(Debug)]
pub enum Fetched<S> {
    /// The discovery document's (checked) `jwks_uri`.
    Discovered(Target),
    /// A usable key set and the answer's `max-age`.
    Keys { keys: S, max_age: Option<u64> },
}

/// The result of [`KeyStore::complete`].
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    /// The result belonged to no fetch in flight (late, or timed out): nothing changed.
    Ignored,
    /// Discovery succeeded: dispatch this JWKS fetch next.
    Next(FetchStart),
    /// The fetch ended (with keys or not): wake the provider's waiters.
    Done,
}

/// What a request that needs keys should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Pause and wait for the fetch in flight or about to start.
    Join,
    /// Do not wait: answer now (`key_not_found` with a usable set, else `keys_unavailable`).
    Refuse,
}

/// A key set in use.
#[derive(Debug)]
pub struct Good<S> {
    pub keys: S,
    pub fetched_at: u64,
    pub refresh_at: u64,
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    step: Step,
    started_at: u64,
}

#[derive(Debug)]
enum Source {
    Jwks(Target),
    Discovery { document: Target, issuer: String },
}

/// One provider's remote keys.
#[derive(Debug)]
pub struct Remote<S> {
    settings: Settings,
    source: Source,
    discovered: Option<Target>,
    good: Option<Good<S>>,
    status: Status,
    fetch: Option<InFlight>,
    /// Earliest time of the next attempt after failures (0: no backoff).
    next_attempt_at: u64,
    failures: u32,
    refetch_wanted: bool,
    last_refetch_at: Option<u64>,
    /// `own_fetch` waiting: request-owned fetches in flight, and fetches of the current
    /// unknown-`kid` episode (the refetch that `last_refetch_at` records).
    own_fetches: u32,
    episode_fetches: u32,
}

impl<S> Remote<S> {
    fn new(settings: Settings, source: Source) -> Remote<S> {
        Remote {
            settings,
            source,
            discovered: None,
            good: None,
            status: Status::Empty,
            fetch: None,
            next_attempt_at: 0,
            failures: 0,
            refetch_wanted: false,
            last_refetch_at: None,
            own_fetches: 0,
            episode_fetches: 0,
        }
    }

    /// `own_fetch`: a request without a usable key set may fetch itself now.
    fn own_cold_allowed(&self, now: u64) -> bool {
        self.settings.cold_start_wait_ms > 0
            && (self.fetch.is_some() || !self.in_backoff(now))
            && self.own_fetches < MAX_OWN_FETCHES
    }

    /// `own_fetch`: a token with an unknown `kid` may fetch now: a new refetch episode, or one
    /// more fetch in the current episode (which lasts one fetch timeout).
    fn own_refetch_allowed(&self, now: u64) -> bool {
        if self.own_fetches >= MAX_OWN_FETCHES {
            return false;
        }
        if refetch_allowed(self, now) {
            return true;
        }
        let episode = self
            .settings
            .fetch_timeout_ms
            .saturating_add(TIMEOUT_GRACE_MS);
        self.last_refetch_at
            .is_some_and(|at| now.saturating_sub(at) <= episode)
            && self.episode_fetches < MAX_OWN_FETCHES
    }

    fn usable(&self, now: u64) -> Option<&Good<S>> {
        self.good
            .as_ref()
            .filter(|g| now <= g.refresh_at.saturating_add(self.settings.max_stale_ms))
    }

    fn in_backoff(&self, now: u64) -> bool {
        now < self.next_attempt_at
    }

    /// A fetch is in flight, or will start within the cold-start wait.
    fn coming(&self, now: u64) -> bool {
        self.fetch.is_some()
            || self.next_attempt_at <= now.saturating_add(self.settings.cold_start_wait_ms)
    }

    fn due(&self, now: u64) -> bool {
        if self.fetch.is_some() || self.in_backoff(now) {
            return false;
        }
        match &self.good {
            None => true,
            Some(g) => self.refetch_wanted || now >= g.refresh_at,
        }
    }
}

/// One slot per configured provider, in `config.providers` order.
#[derive(Debug)]
enum Slot<S> {
    /// Keys written in the configuration (held by the [`crate::engine::Engine`]).
    Inline,
    Remote(Box<Remote<S>>),
}

/// The key state of every provider of one configuration.
#[derive(Debug)]
pub struct KeyStore<S = KeySet> {
    slots: Vec<Slot<S>>,
    events: Vec<Event>,
    next_id: u64,
    /// `remote_keys.waiting: own_fetch`: waiting requests fetch for themselves.
    own: bool,
}

impl<S> KeyStore<S> {
    /// Remote slots for providers with `jwks_uri` or `discovery`; the configuration is validated,
    /// so a URL that does not parse leaves the provider without keys (never a panic).
    pub fn new(config: &Config) -> KeyStore<S> {
        let slots = config
            .providers
            .iter()
            .map(|p| {
                let source = if let Some(uri) = &p.jwks_uri {
                    Target::parse(uri).ok().map(Source::Jwks)
                } else if p.discovery {
                    // A pattern's document is its first tenant's (see `issuer::discovery_issuer`).
                    let issuer = crate::issuer::discovery_issuer(p).into_owned();
                    Target::discovery(&issuer)
                        .ok()
                        .map(|document| Source::Discovery { document, issuer })
                } else {
                    return Slot::Inline;
                };
                match source {
                    Some(source) => Slot::Remote(Box::new(Remote::new(Settings::of(p), source))),
                    None => Slot::Inline,
                }
            })
            .collect();
        KeyStore {
            slots,
            events: Vec::new(),
            next_id: 1,
            own: config.remote_keys.waiting == WaitMode::OwnFetch,
        }
    }

    /// `own_fetch` waiting on or off, once the glue knows the host (`remote_keys.waiting: auto`).
    pub fn set_own(&mut self, own: bool) {
        self.own = own;
    }

    /// Whether any provider fetches its keys.
    pub fn has_remote(&self) -> bool {
        self.slots.iter().any(|s| matches!(s, Slot::Remote(_)))
    }

    pub fn is_remote(&self, provider: usize) -> bool {
        matches!(self.slots.get(provider), Some(Slot::Remote(_)))
    }

    fn remote(&self, provider: usize) -> Option<&Remote<S>> {
        match self.slots.get(provider) {
            Some(Slot::Remote(r)) => Some(r),
            _ => None,
        }
    }

    fn remote_mut(&mut self, provider: usize) -> Option<&mut Remote<S>> {
        match self.slots.get_mut(provider) {
            Some(Slot::Remote(r)) => Some(r),
            _ => None,
        }
    }

    pub fn status(&self, provider: usize) -> Option<Status> {
        self.remote(provider).map(|r| r.status)
    }

    pub fn settings(&self, provider: usize) -> Option<Settings> {
        self.remote(provider).map(|r| r.settings)
    }

    /// The key set in use and when it was fetched.
    pub fn good(&self, provider: usize) -> Option<&Good<S>> {
        self.remote(provider).and_then(|r| r.good.as_ref())
    }

    /// Age of the key set in use, in milliseconds.
    pub fn age_ms(&self, provider: usize, now: u64) -> Option<u64> {
        self.good(provider)
            .map(|g| now.saturating_sub(g.fetched_at))
    }

    /// Whether a fetch is in flight.
    pub fn fetching(&self, provider: usize) -> bool {
        self.remote(provider).is_some_and(|r| r.fetch.is_some())
    }

    /// State changes since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn set_status(&mut self, provider: usize, to: Status, detail: String) {
        let Some(r) = self.remote_mut(provider) else {
            return;
        };
        let from = r.status;
        if from == to {
            return;
        }
        r.status = to;
        self.events.push(Event {
            provider,
            from,
            to,
            detail,
        });
    }

    /// Housekeeping at `now`: give up fetches the host never answered (returns their
    /// providers: their waiters must be woken) and retire key sets past `max_stale`.
    pub fn tick(&mut self, now: u64, rand: u32) -> Vec<usize> {
        let mut timed_out = Vec::new();
        for p in 0..self.slots.len() {
            let Some(r) = self.remote(p) else { continue };
            if let Some(f) = &r.fetch {
                let limit = r.settings.fetch_timeout_ms.saturating_add(TIMEOUT_GRACE_MS);
                if now.saturating_sub(f.started_at) > limit {
                    let id = f.id;
                    self.fail(p, id, FetchError::Timeout, now, rand);
                    timed_out.push(p);
                }
            }
            let Some(r) = self.remote_mut(p) else {
                continue;
            };
            if r.good.is_some() && r.usable(now).is_none() {
                r.good = None;
                let max_stale = r.settings.max_stale_ms / 1000;
                self.set_status(
                    p,
                    Status::Unavailable,
                    format!("key set dropped: stale for more than max_stale_seconds ({max_stale})"),
                );
            }
        }
        timed_out
    }

    /// Providers whose fetch should start now: no key set, refresh due, or a refetch wanted,
    /// and no fetch in flight and no backoff.
    pub fn due(&self, now: u64) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|p| self.remote(*p).is_some_and(|r| r.due(now)))
            .collect()
    }

    /// Start a fetch for `provider` (the glue dispatches it). `None` if one is in flight.
    pub fn start(&mut self, provider: usize, now: u64) -> Option<FetchStart> {
        let id = self.next_id;
        let r = self.remote_mut(provider)?;
        if r.fetch.is_some() {
            return None;
        }
        let (step, target) = match (&r.source, &r.discovered) {
            (Source::Jwks(t), _) => (Step::Jwks, t.clone()),
            // Rediscover after a failure, in case the jwks_uri moved.
            (Source::Discovery { .. }, Some(t)) if r.failures == 0 => (Step::Jwks, t.clone()),
            (Source::Discovery { document, .. }, _) => (Step::Discovery, document.clone()),
        };
        r.fetch = Some(InFlight {
            id,
            step,
            started_at: now,
        });
        r.refetch_wanted = false;
        self.next_id += 1;
        Some(FetchStart {
            provider,
            id,
            step,
            target,
        })
    }

    /// The issuer a discovery document must name, for providers using discovery.
    pub fn discovery_issuer(&self, provider: usize) -> Option<&str> {
        match &self.remote(provider)?.source {
            Source::Discovery { issuer, .. } => Some(issuer),
            Source::Jwks(_) => None,
        }
    }

    /// Hand back the result of fetch `id`. A bad answer never replaces a good key set.
    pub fn complete(
        &mut self,
        provider: usize,
        id: u64,
        result: Result<Fetched<S>, FetchError>,
        now: u64,
        rand: u32,
    ) -> Completion {
        let current = self
            .remote(provider)
            .and_then(|r| r.fetch.as_ref())
            .map(|f| (f.id, f.step));
        let Some((current_id, step)) = current else {
            return Completion::Ignored;
        };
        if current_id != id {
            return Completion::Ignored;
        }
        match (step, result) {
            (_, Err(e)) => {
                self.fail(provider, id, e, now, rand);
                Completion::Done
            }
            (Step::Discovery, Ok(Fetched::Discovered(target))) => {
                let next_id = self.next_id;
                let Some(r) = self.remote_mut(provider) else {
                    return Completion::Ignored;
                };
                r.discovered = Some(target.clone());
                r.fetch = Some(InFlight {
                    id: next_id,
                    step: Step::Jwks,
                    started_at: now,
                });
                self.next_id += 1;
                Completion::Next(FetchStart {
                    provider,
                    id: next_id,
                    step: Step::Jwks,
                    target,
                })
            }
            (Step::Jwks, Ok(Fetched::Keys { keys, max_age })) => {
                if let Some(r) = self.remote_mut(provider) {
                    r.fetch = None;
                }
                self.install(provider, keys, now, max_age.map(|s| s.saturating_mul(1000)));
                Completion::Done
            }
            (_, Ok(_)) => {
                // A document of the wrong kind for this step: a bug in the glue, not the IdP.
                self.fail(provider, id, FetchError::NotJson, now, rand);
                Completion::Done
            }
        }
    }

    /// Use `keys`, fetched at `fetched_at` (here or, through shared data, by another worker).
    fn install(&mut self, provider: usize, keys: S, fetched_at: u64, max_age_ms: Option<u64>) {
        let Some(r) = self.remote_mut(provider) else {
            return;
        };
        let s = r.settings;
        let interval = fetch::refresh_interval(max_age_ms, s.min_refresh_ms, s.max_refresh_ms);
        r.good = Some(Good {
            keys,
            fetched_at,
            refresh_at: fetched_at.saturating_add(interval),
        });
        r.failures = 0;
        r.next_attempt_at = 0;
        self.set_status(
            provider,
            Status::Fresh,
            format!("key set fetched; next refresh in {}s", interval / 1000),
        );
    }

    /// Adopt a key set another worker fetched (shared data), if it is newer than ours. A fetch
    /// in flight here is left to finish (its result is then newer still). Returns whether adopted.
    pub fn adopt(
        &mut self,
        provider: usize,
        keys: S,
        fetched_at: u64,
        refresh_at: u64,
        now: u64,
    ) -> bool {
        let Some(r) = self.remote_mut(provider) else {
            return false;
        };
        if r.good.as_ref().is_some_and(|g| g.fetched_at >= fetched_at) {
            return false;
        }
        if now > refresh_at.saturating_add(r.settings.max_stale_ms) {
            return false;
        }
        r.good = Some(Good {
            keys,
            fetched_at,
            refresh_at,
        });
        r.failures = 0;
        r.next_attempt_at = 0;
        self.set_status(
            provider,
            Status::Fresh,
            "key set shared by another worker".into(),
        );
        true
    }

    fn fail(&mut self, provider: usize, id: u64, error: FetchError, now: u64, rand: u32) {
        let Some(r) = self.remote_mut(provider) else {
            return;
        };
        if r.fetch.as_ref().map(|f| f.id) != Some(id) {
            return;
        }
        r.fetch = None;
        self.note_failure(provider, error, now, rand);
    }

    /// Count a failed fetch: back off, and become stale or unavailable.
    fn note_failure(&mut self, provider: usize, error: FetchError, now: u64, rand: u32) {
        let Some(r) = self.remote_mut(provider) else {
            return;
        };
        r.failures = r.failures.saturating_add(1);
        let delay = r.settings.backoff_ms(r.failures, rand);
        r.next_attempt_at = now.saturating_add(delay);
        let to = if r.usable(now).is_some() {
            Status::Stale
        } else {
            Status::Unavailable
        };
        let detail = format!(
            "fetch failed: {} ({error}); retry in {:.1}s",
            error.code(),
            delay as f64 / 1000.0
        );
        self.set_status(provider, to, detail);
    }

    /// A request needs `provider`'s keys (cold start) or a refetch (unknown `kid`): may it wait?
    /// Joining a refetch records it, so the rate limit counts it.
    pub fn wait(&mut self, provider: usize, now: u64) -> Wait {
        let Some(r) = self.remote_mut(provider) else {
            return Wait::Refuse;
        };
        if r.usable(now).is_none() {
            let own = self.own;
            let Some(r) = self.remote_mut(provider) else {
                return Wait::Refuse;
            };
            if own {
                if !r.own_cold_allowed(now) {
                    return Wait::Refuse;
                }
                r.own_fetches += 1;
                return Wait::Join;
            }
            return if r.settings.cold_start_wait_ms > 0 && r.coming(now) {
                Wait::Join
            } else {
                Wait::Refuse
            };
        }
        if self.own {
            let Some(r) = self.remote_mut(provider) else {
                return Wait::Refuse;
            };
            if !r.own_refetch_allowed(now) {
                return Wait::Refuse;
            }
            if refetch_allowed(r, now) {
                r.last_refetch_at = Some(now);
                r.episode_fetches = 0;
            }
            r.episode_fetches += 1;
            r.own_fetches += 1;
            return Wait::Join;
        }
        let Some(r) = self.remote_mut(provider) else {
            return Wait::Refuse;
        };
        if r.fetch.is_some() || r.refetch_wanted {
            return Wait::Join;
        }
        if !refetch_allowed(r, now) {
            return Wait::Refuse;
        }
        r.refetch_wanted = true;
        r.last_refetch_at = Some(now);
        Wait::Join
    }

    /// Keys of `provider` as the request path sees them.
    pub fn keys(&self, provider: usize, now: u64) -> KeyState<'_, S> {
        let Some(r) = self.remote(provider) else {
            return KeyState::Unavailable;
        };
        let joinable = if self.own {
            r.own_cold_allowed(now)
        } else {
            r.settings.cold_start_wait_ms > 0 && r.coming(now)
        };
        match r.usable(now) {
            Some(g) => KeyState::Ready(&g.keys),
            None if joinable => KeyState::Pending,
            None => KeyState::Unavailable,
        }
    }

    /// Whether a token with an unknown `kid` may wait for a refetch now.
    pub fn may_refetch(&self, provider: usize, now: u64) -> bool {
        let own = self.own;
        self.remote(provider).is_some_and(|r| {
            r.usable(now).is_some()
                && if own {
                    r.own_refetch_allowed(now)
                } else {
                    r.fetch.is_some() || r.refetch_wanted || refetch_allowed(r, now)
                }
        })
    }

    /// `own_fetch`: what the request that joined (its [`KeyStore::wait`] was `Join`) fetches.
    pub fn own_target(&self, provider: usize) -> Option<(Step, Target)> {
        let r = self.remote(provider)?;
        Some(match (&r.source, &r.discovered) {
            (Source::Jwks(t), _) => (Step::Jwks, t.clone()),
            (Source::Discovery { .. }, Some(t)) => (Step::Jwks, t.clone()),
            (Source::Discovery { document, .. }, None) => (Step::Discovery, document.clone()),
        })
    }

    /// `own_fetch`: a request-owned fetch step ended. `Some(target)`: discovery succeeded,
    /// fetch this JWKS next (the slot is kept). A key set is used when it is newer than ours;
    /// a failure counts (backoff, state) but never replaces a good key set.
    pub fn own_done(
        &mut self,
        provider: usize,
        result: Result<Fetched<S>, FetchError>,
        now: u64,
        rand: u32,
    ) -> Option<Target> {
        let r = self.remote_mut(provider)?;
        if let Ok(Fetched::Discovered(t)) = &result {
            r.discovered = Some(t.clone());
            return Some(t.clone());
        }
        r.own_fetches = r.own_fetches.saturating_sub(1);
        match result {
            Ok(Fetched::Keys { keys, max_age }) => {
                self.install(provider, keys, now, max_age.map(|s| s.saturating_mul(1000)))
            }
            Ok(Fetched::Discovered(_)) => {}
            Err(e) => {
                if matches!(e, FetchError::IssuerMismatch(_) | FetchError::NoJwksUri) {
                    r.discovered = None;
                }
                self.note_failure(provider, e, now, rand)
            }
        }
        None
    }

    /// `own_fetch`: the request that owned a fetch is gone before its answer.
    pub fn own_cancel(&mut self, provider: usize) {
        if let Some(r) = self.remote_mut(provider) {
            r.own_fetches = r.own_fetches.saturating_sub(1);
        }
    }
}

fn refetch_allowed<S>(r: &Remote<S>, now: u64) -> bool {
    if r.in_backoff(now) {
        return false;
    }
    match r.last_refetch_at {
        Some(at) => now.saturating_sub(at) >= r.settings.refetch_min_interval_ms,
        None => true,
    }
}

/// A provider's keys at one instant, as the request path sees them.
#[derive(Debug)]
pub enum KeyState<'a, S = KeySet> {
    Ready(&'a S),
    /// Not known yet; a fetch may bring them.
    Pending,
    /// None can be had.
    Unavailable,
}

/// Where the request path reads a provider's keys from: the inline sets
/// ([`crate::engine::Engine`]), or those and the fetched ones ([`KeyView`]).
pub trait KeySource {
    fn keys(&self, provider: usize) -> KeyState<'_>;

    /// Whether a token whose `kid` is not in the provider's (ready) key set may wait for a
    /// refetch instead of being refused `key_not_found` (rate-limited: [`KeyStore::wait`]).
    fn may_refetch(&self, _provider: usize) -> bool {
        false
    }
}

/// What the request path reads keys from at one instant: inline sets from `inline` (the
/// engine), remote sets from the [`KeyStore`].
pub struct KeyView<'a> {
    pub inline: &'a dyn KeySource,
    pub store: &'a KeyStore<KeySet>,
    /// Unix ms, read only when a remote provider's keys are looked at.
    pub now_ms: &'a dyn Fn() -> u64,
}

impl KeySource for KeyView<'_> {
    fn keys(&self, provider: usize) -> KeyState<'_> {
        if self.store.is_remote(provider) {
            self.store.keys(provider, (self.now_ms)())
        } else {
            self.inline.keys(provider)
        }
    }

    fn may_refetch(&self, provider: usize) -> bool {
        self.store.may_refetch(provider, (self.now_ms)())
    }
}

/// A request paused until its provider's keys come (or its wait runs out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    /// The HTTP context id.
    pub id: u32,
    pub provider: usize,
    /// When it started waiting (Unix ms); kept when it waits again after a failed fetch.
    pub since: u64,
}

/// Requests waiting for keys. Each leaves exactly once: woken, timed out, or gone.
#[derive(Debug, Default)]
pub struct Waiters {
    list: Vec<Waiter>,
}

impl Waiters {
    /// Register a waiter (replacing an entry with the same id). `false` when full.
    pub fn add(&mut self, waiter: Waiter) -> bool {
        self.list.retain(|w| w.id != waiter.id);
        if self.list.len() >= MAX_WAITERS {
            return false;
        }
        self.list.push(waiter);
        true
    }

    /// Forget a request (its stream ended). Returns whether it was waiting.
    pub fn remove(&mut self, id: u32) -> bool {
        let before = self.list.len();
        self.list.retain(|w| w.id != id);
        self.list.len() != before
    }

    #[cfg(test)]
    pub fn contains(&self, id: u32) -> bool {
        self.list.iter().any(|w| w.id == id)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Remove and return the waiters of `provider`.
    pub fn take_provider(&mut self, provider: usize) -> Vec<Waiter> {
        let (taken, kept) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|w| w.provider == provider);
        self.list = kept;
        taken
    }

    /// Remove and return the waiters that have waited `wait_ms(provider)` or longer.
    pub fn take_expired(&mut self, now: u64, wait_ms: impl Fn(usize) -> u64) -> Vec<Waiter> {
        let (taken, kept) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|w| now.saturating_sub(w.since) >= wait_ms(w.provider));
        self.list = kept;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: u64 = 1_700_000_000_000;

    fn config(extra: serde_json::Value) -> Config {
        let mut p = json!({
            "name": "idp", "issuer": "https://idp.test",
            "jwks_uri": "https://idp.test/keys", "upstream": "idp",
            "min_refresh_seconds": 10, "max_refresh_seconds": 100,
            "refetch_min_interval_seconds": 30, "max_stale_seconds": 1000,
            "cold_start_wait_ms": 2000,
        });
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                if v.is_null() {
                    p.remove(k);
                } else {
                    p.insert(k.clone(), v.clone());
                }
            }
        }
        let doc = json!({"providers": [p, {"name": "inline", "issuer": "https://inline.test", "jwks": {"keys": []}}]});
        Config::from_json(doc.to_string().as_bytes()).unwrap()
    }

    fn store(extra: serde_json::Value) -> KeyStore<&'static str> {
        KeyStore::new(&config(extra))
    }

    fn keys(k: &'static str, max_age: Option<u64>) -> Result<Fetched<&'static str>, FetchError> {
        Ok(Fetched::Keys { keys: k, max_age })
    }

    fn ready(s: &KeyStore<&'static str>, now: u64) -> Option<&'static str> {
        match s.keys(0, now) {
            KeyState::Ready(k) => Some(*k),
            _ => None,
        }
    }

    /// Start and complete one JWKS fetch at `now`.
    fn fetch(
        s: &mut KeyStore<&'static str>,
        now: u64,
        result: Result<Fetched<&'static str>, FetchError>,
    ) -> Completion {
        let f = s.start(0, now).expect("fetch starts");
        assert_eq!(f.step, Step::Jwks);
        s.complete(0, f.id, result, now, 0)
    }

    #[test]
    fn only_remote_providers_get_slots() {
        let s = store(json!({}));
        assert!(s.has_remote());
        assert!(s.is_remote(0));
        assert!(!s.is_remote(1));
        assert!(!s.is_remote(7));
        assert_eq!(s.status(0), Some(Status::Empty));
    }

    #[test]
    fn empty_store_is_due_at_once_and_pending() {
        let s = store(json!({}));
        assert_eq!(s.due(T0), vec![0]);
        assert!(matches!(s.keys(0, T0), KeyState::Pending));
    }

    #[test]
    fn cold_start_without_wait_is_unavailable() {
        let mut s = store(json!({"cold_start_wait_ms": 0}));
        assert!(matches!(s.keys(0, T0), KeyState::Unavailable));
        assert_eq!(s.wait(0, T0), Wait::Refuse);
    }

    #[test]
    fn first_fetch_makes_keys_fresh() {
        let mut s = store(json!({}));
        let f = s.start(0, T0).unwrap();
        assert_eq!(f.target.path, "/keys");
        assert_eq!(f.target.authority, "idp.test");
        assert!(s.fetching(0));
        assert_eq!(s.start(0, T0), None, "one fetch in flight at a time");
        assert_eq!(s.due(T0), Vec::<usize>::new());
        assert_eq!(
            s.complete(0, f.id, keys("k1", None), T0 + 5, 0),
            Completion::Done
        );
        assert_eq!(ready(&s, T0 + 5), Some("k1"));
        assert_eq!(s.status(0), Some(Status::Fresh));
        let events = s.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].from, events[0].to),
            (Status::Empty, Status::Fresh)
        );
        assert!(s.take_events().is_empty(), "events are handed out once");
    }

    #[test]
    fn refresh_follows_max_age_within_bounds() {
        let mut s = store(json!({}));
        fetch(&mut s, T0, keys("k1", Some(50)));
        assert_eq!(s.good(0).unwrap().refresh_at, T0 + 50_000);
        assert!(s.due(T0 + 49_999).is_empty());
        assert_eq!(s.due(T0 + 50_000), vec![0]);
        fetch(&mut s, T0, keys("k1", Some(1)));
        assert_eq!(
            s.good(0).unwrap().refresh_at,
            T0 + 10_000,
            "raised to min_refresh"
        );
        fetch(&mut s, T0, keys("k1", Some(99_999)));
        assert_eq!(
            s.good(0).unwrap().refresh_at,
            T0 + 100_000,
            "lowered to max_refresh"
        );
        fetch(&mut s, T0, keys("k1", None));
        assert_eq!(
            s.good(0).unwrap().refresh_at,
            T0 + 100_000,
            "max_refresh without max-age"
        );
    }

    #[test]
    fn successful_refresh_replaces_keys_without_an_event() {
        let mut s = store(json!({}));
        fetch(&mut s, T0, keys("k1", Some(10)));
        s.take_events();
        fetch(&mut s, T0 + 10_000, keys("k2", Some(10)));
        assert_eq!(ready(&s, T0 + 10_000), Some("k2"));
        assert!(s.take_events().is_empty(), "fresh -> fresh is not a change");
    }

    #[test]
    fn failed_first_fetch_is_unavailable_and_backs_off() {
        let mut s = store(json!({}));
        assert_eq!(
            fetch(&mut s, T0, Err(FetchError::Status(500))),
            Completion::Done
        );
        assert_eq!(s.status(0), Some(Status::Unavailable));
        let e = s.take_events();
        assert_eq!((e[0].from, e[0].to), (Status::Empty, Status::Unavailable));
        assert!(e[0].detail.contains("status"), "{}", e[0].detail);
        // rand 0: half the 1 s base delay.
        assert!(s.due(T0 + 499).is_empty());
        assert_eq!(s.due(T0 + 500), vec![0]);
        // Within the cold-start wait of the next attempt: requests may still wait.
        assert!(matches!(s.keys(0, T0 + 1), KeyState::Pending));
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        let s = Settings {
            fetch_timeout_ms: 1000,
            min_refresh_ms: 1000,
            max_refresh_ms: 600_000,
            refetch_min_interval_ms: 0,
            max_stale_ms: 0,
            cold_start_wait_ms: 0,
        };
        assert_eq!(s.backoff_ms(1, 0), 500);
        assert_eq!(s.backoff_ms(1, 1023), 1000);
        assert_eq!(s.backoff_ms(2, 1023), 2000);
        assert_eq!(s.backoff_ms(3, 1023), 4000);
        assert_eq!(s.backoff_ms(30, 1023), BACKOFF_CAP_MS);
        assert_eq!(s.backoff_ms(30, 0), BACKOFF_CAP_MS / 2);
        let short = Settings {
            max_refresh_ms: 5000,
            ..s
        };
        assert_eq!(short.backoff_ms(10, 1023), 5000, "capped by max_refresh");
    }

    #[test]
    fn repeated_failures_back_off_longer_and_log_once() {
        let mut s = store(json!({}));
        let mut now = T0;
        let mut delays = Vec::new();
        for _ in 0..4 {
            let f = s.start(0, now).unwrap();
            s.complete(0, f.id, Err(FetchError::NotJson), now, 1023);
            let next = (now..now + 100_000)
                .find(|t| !s.due(*t).is_empty())
                .unwrap();
            delays.push(next - now);
            now = next;
        }
        assert_eq!(delays, vec![1000, 2000, 4000, 8000]);
        assert_eq!(s.take_events().len(), 1, "unavailable is logged once");
    }

    #[test]
    fn bad_answer_never_replaces_good_keys() {
        let mut s = store(json!({}));
        fetch(&mut s, T0, keys("good", Some(10)));
        s.take_events();
        for e in [
            FetchError::Status(500),
            FetchError::NotJson,
            FetchError::TooLarge(1 << 20),
            FetchError::NoUsableKeys("x".into()),
            FetchError::Network(String::new()),
        ] {
            let now = T0 + 10_000 + 120_000 * s.failures_for_test();
            let f = s.start(0, now).unwrap();
            s.complete(0, f.id, Err(e), now, 0);
            assert_eq!(ready(&s, now), Some("good"));
        }
        assert_eq!(s.status(0), Some(Status::Stale));
        let e = s.take_events();
        assert_eq!(e.len(), 1, "fresh -> stale logged once: {e:?}");
        assert_eq!((e[0].from, e[0].to), (Status::Fresh, Status::Stale));
    }

    #[test]
    fn stale_keys_serve_until_max_stale_then_are_dropped() {
        let mut s = store(json!({}));
        fetch(&mut s, T0, keys("good", Some(10)));
        let due = T0 + 10_000;
        let f = s.start(0, due).unwrap();
        s.complete(0, f.id, Err(FetchError::Status(503)), due, 0);
        assert_eq!(
            ready(&s, due + 1_000_000),
            Some("good"),
            "usable until refresh_at + max_stale"
        );
        assert!(s.tick(due + 1_000_000, 0).is_empty());
        assert_eq!(s.status(0), Some(Status::Stale));
        assert_eq!(ready(&s, due + 1_000_001), None);
        s.take_events();
        s.tick(due + 1_000_001, 0);
        assert_eq!(s.status(0), Some(Status::Unavailable));
        assert!(s.good(0).is_none());
        let e = s.take_events();
        assert!(e[0].detail.contains("max_stale"), "{e:?}");
    }

    #[test]
    fn recovery_after_failures_is_fresh_and_resets_backoff() {
        let mut s = store(json!({}));
        fetch(&mut s, T0, Err(FetchError::Status(500)));
        let f = s.start(0, T0 + 1000).unwrap();
        s.complete(0, f.id, keys("k", Some(10)), T0 + 1000, 0);
        assert_eq!(s.status(0), Some(Status::Fresh));
        assert_eq!(s.failures_for_test(), 0);
        let e = s.take_events();
        assert_eq!(
            e.last().map(|e| (e.from, e.to)),
            Some((Status::Unavailable, Status::Fresh))
        );
    }

    #[test]
    fn late_or_unknown_results_are_ignored() {
        let mut s = store(json!({}));
        let f = s.start(0, T0).unwrap();
        assert_eq!(
            s.complete(0, f.id + 1, keys("x", None), T0, 0),
            Completion::Ignored
        );
        assert_eq!(
            s.complete(1, f.id, keys("x", None), T0, 0),
            Completion::Ignored
        );
        assert_eq!(
            s.complete(0, f.id, keys("k", None), T0, 0),
            Completion::Done
        );
        assert_eq!(
            s.complete(0, f.id, keys("late", None), T0, 0),
            Completion::Ignored
        );
        assert_eq!(ready(&s, T0), Some("k"));
    }

    #[test]
    fn unanswered_fetch_times_out_on_tick() {
        let mut s = store(json!({"fetch_timeout_ms": 1000}));
        let f = s.start(0, T0).unwrap();
        assert!(s.tick(T0 + 1000 + TIMEOUT_GRACE_MS, 0).is_empty());
        assert_eq!(s.tick(T0 + 1001 + TIMEOUT_GRACE_MS, 0), vec![0]);
        assert!(!s.fetching(0));
        assert_eq!(
            s.complete(0, f.id, keys("late", None), T0 + 5000, 0),
            Completion::Ignored
        );
        assert!(s.take_events()[0].detail.contains("timeout"));
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let mut s = store(json!({}));
        fetch(&mut s, T0, keys("k1", None));
        let now = T0 + 1000;
        assert!(s.may_refetch(0, now));
        assert_eq!(s.wait(0, now), Wait::Join);
        assert_eq!(s.due(now), vec![0], "a wanted refetch is due at once");
        assert!(s.may_refetch(0, now), "others join the wanted refetch");
        assert_eq!(s.wait(0, now), Wait::Join);
        let f = s.start(0, now).unwrap();
        assert_eq!(s.wait(0, now), Wait::Join, "and the fetch in flight");
        s.complete(0, f.id, keys("k2", None), now, 0);
        // Within refetch_min_interval (30 s): no new refetch.
        assert!(!s.may_refetch(0, now + 29_999));
        assert_eq!(s.wait(0, now + 29_999), Wait::Refuse);
        assert!(s.due(now + 29_999).is_empty());
        assert!(s.may_refetch(0, now + 30_000));
        assert_eq!(s.wait(0, now + 30_000), Wait::Join);
    }

    #[test]
    fn junk_kid_flood_causes_one_fetch_per_interval() {
        let mut s = store(json!({}));
        fetch(&mut s, T0, keys("k1", None));
        let mut fetches = 0;
        for ms in (0..95_000).step_by(10) {
            let now = T0 + 1 + ms;
            if s.may_refetch(0, now) {
                s.wait(0, now);
            }
            for p in s.due(now) {
                let f = s.start(p, now).unwrap();
                fetches += 1;
                s.complete(p, f.id, keys("k1", None), now, 0);
            }
        }
        // Refetches at 0, 30, 60, 90 s; the scheduled refresh (100 s) is not reached.
        assert_eq!(fetches, 4);
    }

    #[test]
    fn no_refetch_while_backing_off() {
        let mut s = store(json!({}));
        fetch(&mut s, T0, keys("k1", Some(10)));
        let f = s.start(0, T0 + 10_000).unwrap();
        s.complete(0, f.id, Err(FetchError::Status(500)), T0 + 10_000, 1023);
        assert!(!s.may_refetch(0, T0 + 10_500));
        assert_eq!(s.wait(0, T0 + 10_500), Wait::Refuse);
        assert!(s.may_refetch(0, T0 + 11_000));
    }

    #[test]
    fn cold_waiters_refused_when_next_attempt_is_beyond_the_wait() {
        let mut s = store(json!({"cold_start_wait_ms": 500}));
        let mut now = T0;
        for _ in 0..3 {
            let f = s.start(0, now).unwrap();
            s.complete(0, f.id, Err(FetchError::Status(500)), now, 1023);
            now = (now..now + 100_000)
                .find(|t| !s.due(*t).is_empty())
                .unwrap();
        }
        // Last delay 4 s: a request arriving just after the failure does not wait.
        let after = now - 4000 + 1;
        assert_eq!(s.wait(0, after), Wait::Refuse);
        assert!(matches!(s.keys(0, after), KeyState::Unavailable));
        assert_eq!(s.wait(0, now - 400), Wait::Join);
    }

    #[test]
    fn discovery_fetches_the_document_then_the_jwks() {
        let mut s = store(json!({"jwks_uri": null, "discovery": true}));
        assert_eq!(s.discovery_issuer(0), Some("https://idp.test"));
        let f = s.start(0, T0).unwrap();
        assert_eq!(f.step, Step::Discovery);
        assert_eq!(f.target.path, "/.well-known/openid-configuration");
        let next = match s.complete(
            0,
            f.id,
            Ok(Fetched::Discovered(
                Target::parse("https://keys.idp.test/jwks").unwrap(),
            )),
            T0,
            0,
        ) {
            Completion::Next(n) => n,
            other => panic!("expected next step, got {other:?}"),
        };
        assert_eq!(next.step, Step::Jwks);
        assert_eq!(next.target.authority, "keys.idp.test");
        assert!(s.fetching(0));
        assert_eq!(
            s.complete(0, next.id, keys("k", None), T0, 0),
            Completion::Done
        );
        // The jwks_uri is remembered: the next refresh goes straight to it.
        let again = s.start(0, T0 + 100_000).unwrap();
        assert_eq!(again.step, Step::Jwks);
    }

    #[test]
    fn discovery_mismatch_fails_and_rediscovers_next_time() {
        let mut s = store(json!({"jwks_uri": null, "discovery": true}));
        let f = s.start(0, T0).unwrap();
        let c = s.complete(
            0,
            f.id,
            Err(FetchError::IssuerMismatch("https://evil.test".into())),
            T0,
            0,
        );
        assert_eq!(c, Completion::Done);
        assert_eq!(s.status(0), Some(Status::Unavailable));
        assert!(s.take_events()[0].detail.contains("issuer_mismatch"));
        assert_eq!(s.start(0, T0 + 1000).unwrap().step, Step::Discovery);
    }

    #[test]
    fn shared_keys_from_another_worker_are_adopted_when_newer() {
        let mut s = store(json!({}));
        assert!(s.adopt(0, "shared", T0, T0 + 50_000, T0 + 10));
        assert_eq!(ready(&s, T0 + 10), Some("shared"));
        assert!(s.due(T0 + 10).is_empty());
        assert!(!s.adopt(0, "older", T0 - 1, T0 + 50_000, T0 + 10));
        assert!(!s.adopt(0, "expired", T0 + 1, T0 + 1, T0 + 2_000_000));
        assert_eq!(ready(&s, T0 + 10), Some("shared"));
    }

    #[test]
    fn waiters_leave_exactly_once() {
        let mut w = Waiters::default();
        assert!(w.add(Waiter {
            id: 1,
            provider: 0,
            since: T0
        }));
        assert!(w.add(Waiter {
            id: 2,
            provider: 1,
            since: T0
        }));
        assert!(w.add(Waiter {
            id: 3,
            provider: 0,
            since: T0 + 900
        }));
        assert!(
            w.add(Waiter {
                id: 3,
                provider: 0,
                since: T0 + 900
            }),
            "re-adding replaces"
        );
        assert_eq!(w.len(), 3);
        let expired = w.take_expired(T0 + 1000, |_| 1000);
        assert_eq!(expired.iter().map(|w| w.id).collect::<Vec<_>>(), vec![1, 2]);
        assert!(w.take_expired(T0 + 1000, |_| 1000).is_empty());
        assert!(w.remove(3));
        assert!(!w.remove(3));
        assert!(w.is_empty());
        w.add(Waiter {
            id: 4,
            provider: 0,
            since: T0,
        });
        w.add(Waiter {
            id: 5,
            provider: 1,
            since: T0,
        });
        assert_eq!(w.take_provider(0).len(), 1);
        assert!(w.take_provider(0).is_empty());
        assert!(w.contains(5));
    }

    #[test]
    fn waiters_are_bounded() {
        let mut w = Waiters::default();
        for id in 0..MAX_WAITERS as u32 {
            assert!(w.add(Waiter {
                id,
                provider: 0,
                since: T0
            }));
        }
        assert!(!w.add(Waiter {
            id: u32::MAX,
            provider: 0,
            since: T0
        }));
    }

    fn own_store(extra: serde_json::Value) -> KeyStore<&'static str> {
        let mut c = config(extra);
        c.remote_keys.waiting = WaitMode::OwnFetch;
        KeyStore::new(&c)
    }

    #[test]
    fn own_fetch_cold_start_allows_a_bounded_number_of_fetches() {
        let mut s = own_store(json!({}));
        assert!(matches!(s.keys(0, T0), KeyState::Pending));
        for _ in 0..MAX_OWN_FETCHES {
            assert_eq!(s.wait(0, T0), Wait::Join);
        }
        assert_eq!(
            s.wait(0, T0),
            Wait::Refuse,
            "at most MAX_OWN_FETCHES at once"
        );
        assert!(matches!(s.keys(0, T0), KeyState::Unavailable));
        s.own_cancel(0);
        assert_eq!(
            s.wait(0, T0),
            Wait::Join,
            "a cancelled fetch frees its slot"
        );
        assert_eq!(
            s.own_target(0).map(|(step, t)| (step, t.path)),
            Some((Step::Jwks, "/keys".to_string()))
        );
        assert_eq!(s.own_done(0, keys("k", None), T0 + 5, 0), None);
        assert_eq!(ready(&s, T0 + 5), Some("k"));
        assert_eq!(s.status(0), Some(Status::Fresh));
    }

    #[test]
    fn own_fetch_failure_backs_off_and_keeps_good_keys() {
        let mut s = own_store(json!({}));
        assert_eq!(s.wait(0, T0), Wait::Join);
        s.own_done(0, Err(FetchError::Status(500)), T0, 1023);
        assert_eq!(s.status(0), Some(Status::Unavailable));
        assert_eq!(s.wait(0, T0 + 10), Wait::Refuse, "no fetch during backoff");
        assert_eq!(s.wait(0, T0 + 1000), Wait::Join);
        s.own_done(0, keys("good", Some(10)), T0 + 1000, 0);
        let due = T0 + 11_000;
        assert_eq!(
            s.wait(0, due),
            Wait::Join,
            "unknown kid: a refetch episode starts"
        );
        s.own_done(0, Err(FetchError::NotJson), due, 0);
        assert_eq!(ready(&s, due), Some("good"));
        assert_eq!(s.status(0), Some(Status::Stale));
    }

    #[test]
    fn own_fetch_unknown_kid_episodes_are_rate_limited() {
        let mut s = own_store(json!({"fetch_timeout_ms": 1000}));
        assert_eq!(s.wait(0, T0), Wait::Join);
        s.own_done(0, keys("k1", None), T0, 0);
        let now = T0 + 1;
        let mut joined = 0;
        for i in 0..20 {
            if s.may_refetch(0, now + i) && s.wait(0, now + i) == Wait::Join {
                joined += 1;
                s.own_done(0, keys("k1", None), now + i, 0);
            }
        }
        assert_eq!(
            joined, MAX_OWN_FETCHES,
            "one episode: at most MAX_OWN_FETCHES fetches"
        );
        let later = now + 1000 + TIMEOUT_GRACE_MS + 1;
        assert!(!s.may_refetch(0, later), "episode over, interval not yet");
        assert_eq!(s.wait(0, later), Wait::Refuse);
        assert!(s.may_refetch(0, now + 30_000));
        assert!(
            s.due(now + 30_000).is_empty(),
            "own_fetch refetches never go through the root"
        );
    }

    #[test]
    fn own_fetch_discovery_keeps_the_slot_for_the_jwks_step() {
        let mut s = own_store(json!({"jwks_uri": null, "discovery": true}));
        assert_eq!(s.wait(0, T0), Wait::Join);
        assert_eq!(s.own_target(0).map(|(step, _)| step), Some(Step::Discovery));
        let jwks = Target::parse("https://idp.test/jwks").unwrap();
        assert_eq!(
            s.own_done(0, Ok(Fetched::Discovered(jwks.clone())), T0, 0),
            Some(jwks)
        );
        for _ in 1..MAX_OWN_FETCHES {
            assert_eq!(s.wait(0, T0), Wait::Join);
        }
        assert_eq!(
            s.wait(0, T0),
            Wait::Refuse,
            "the discovering request still holds its slot"
        );
        assert_eq!(s.own_target(0).map(|(step, _)| step), Some(Step::Jwks));
    }

    impl<S> KeyStore<S> {
        fn failures_for_test(&self) -> u64 {
            self.remote(0).map_or(0, |r| u64::from(r.failures))
        }
    }
}
