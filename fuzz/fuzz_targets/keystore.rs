//! Fetch answers driving the key store: a sequence of host events (time passing, ticks,
//! fetches started, answers with fuzzed status / headers / bodies interpreted as the glue does
//! in `src/filter/remote_keys.rs`, late answers, waits, request-owned fetches, key sets shared by
//! other workers) and requests decided with the store's keys. Checked after every step:
//! no panic; a failed or ignored answer never replaces or changes the key set in use; a late
//! answer is ignored; one fetch per provider at a time; status events chain and match the
//! store; keys are `Ready` only in status fresh or stale; requests keep `check::decide_all`'s
//! invariants (against the JWKS documents the store installed); time budget.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use fuzz_support::keys::{self, Alg};
use fuzz_support::{check, NOW};
use identity_filter::{
    min_rsa_bits, parse_remote_keys, Answer, Caches, Completion, Engine, FetchError, Fetched,
    KeySet, KeyState, KeyStore, KeyView, RequestFacts, Status, Step, Wait,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const DISCOVERY_ISSUER: &str = "https://disc.fuzz";

#[derive(Debug, Arbitrary)]
enum Body {
    /// The harness keys, all or a subset (bit mask over the six keys).
    Keys(u8),
    /// A discovery document: right or wrong issuer, a usable `jwks_uri` or not.
    Discovery {
        issuer_ok: bool,
        uri: Option<String>,
    },
    Raw(Vec<u8>),
    Empty,
}

#[derive(Debug, Arbitrary)]
struct Reply {
    /// `None`: a failed call (no headers; maybe Kong's `:dispatch_status`).
    status: Option<u16>,
    cache_control: Option<String>,
    dispatch_status: Option<String>,
    body: Body,
    /// Announce another body size than the real one.
    size_delta: Option<i16>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Advance(u16),
    Tick(u32),
    StartDue,
    Start(bool),
    /// Answer fetch number `n` (modulo those in flight).
    Answer(u8, Reply),
    /// An answer to a fetch id that is not in flight.
    Late(bool, u8),
    Wait(bool),
    OwnDone(bool, Reply),
    OwnCancel(bool),
    Adopt(bool, u8, u16, u16),
    Request {
        provider: bool,
        alg: Alg,
        kid: Option<String>,
        exp: i8,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    own_fetch: bool,
    cold_start_wait: bool,
    ops: Vec<Op>,
}

fn config(own_fetch: bool, cold_start_wait: bool) -> Value {
    let wait = if cold_start_wait { 3000 } else { 0 };
    json!({
        "providers": [
            {"name": "uri", "issuer": keys::ISSUER, "jwks_uri": "https://idp.fuzz/keys", "upstream": "idp",
             "cold_start_wait_ms": wait, "min_refresh_seconds": 1, "max_refresh_seconds": 30,
             "refetch_min_interval_seconds": 2, "max_stale_seconds": 60, "max_response_bytes": 4096},
            {"name": "disc", "issuer": DISCOVERY_ISSUER, "discovery": true, "upstream": "idp",
             "cold_start_wait_ms": wait, "max_stale_seconds": 5}
        ],
        "default": "authenticated",
        "headers": {"claims": [{"claim": "sub", "header": "x-identity-subject"}]},
        "remote_keys": {"waiting": if own_fetch { "own_fetch" } else { "resume" }}
    })
}

fn body_bytes(body: &Body) -> Vec<u8> {
    match body {
        Body::Keys(mask) => {
            let all = keys::public_jwks();
            let list: Vec<Value> = all["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .filter(|(i, _)| *mask == 0 || mask & (1 << i) != 0)
                .map(|(_, k)| k.clone())
                .collect();
            json!({ "keys": list }).to_string().into_bytes()
        }
        Body::Discovery { issuer_ok, uri } => {
            let issuer = if *issuer_ok {
                DISCOVERY_ISSUER
            } else {
                "https://other.fuzz"
            };
            let mut doc = json!({"issuer": issuer});
            if let Some(uri) = uri {
                doc["jwks_uri"] = json!(uri);
            } else {
                doc["jwks_uri"] = json!("https://idp.fuzz/disc-keys");
            }
            doc.to_string().into_bytes()
        }
        Body::Raw(b) => b.clone(),
        Body::Empty => Vec::new(),
    }
}

/// The answer as the host would deliver it (`read_answer` in the glue), its JSON, if any.
fn answer(reply: &Reply, max: usize) -> (Answer, Option<Value>) {
    let body = body_bytes(&reply.body);
    let size = match reply.size_delta {
        Some(d) => body.len().saturating_add_signed(isize::from(d)),
        None => body.len(),
    };
    let Some(status) = reply.status else {
        let headers: Vec<(String, Vec<u8>)> = reply
            .dispatch_status
            .iter()
            .map(|v| (":dispatch_status".to_string(), v.clone().into_bytes()))
            .collect();
        return (Answer::from_headers(&headers, 0), None);
    };
    let mut headers = vec![(":status".to_string(), status.to_string().into_bytes())];
    if let Some(cc) = &reply.cache_control {
        headers.push(("Cache-Control".to_string(), cc.clone().into_bytes()));
    }
    let mut a = Answer::from_headers(&headers, size);
    if size > 0 && size <= max {
        a.body = body.clone();
    }
    let json = serde_json::from_slice(&a.body).ok();
    (a, json)
}

/// How many keys an operation may load (its time budget is per key, or one request).
fn keys_in(op: &Op) -> usize {
    let body = match op {
        Op::Answer(_, r) | Op::OwnDone(_, r) => body_bytes(&r.body),
        Op::Adopt(_, mask, _, _) => body_bytes(&Body::Keys(*mask)),
        _ => return 1,
    };
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("keys").and_then(Value::as_array).map(Vec::len))
        .unwrap_or(1)
}

struct World {
    store: KeyStore,
    cached: Engine,
    /// The cached engine's caches.
    caches: Caches,
    uncached: Engine,
    now: u64,
    /// Fetches in flight: (provider, id, step).
    flights: Vec<(usize, u64, Step)>,
    /// JWKS documents by key-set fingerprint (to judge accepted tokens independently).
    docs: HashMap<u64, Value>,
    statuses: [Status; 2],
    budget: check::Budget,
}

impl World {
    fn min_rsa_bits(&self, p: usize) -> usize {
        self.cached
            .config
            .providers
            .get(p)
            .map_or(2048, min_rsa_bits)
    }

    fn max_bytes(&self, p: usize) -> usize {
        self.cached
            .config
            .providers
            .get(p)
            .map_or(0, |p| p.max_response_bytes)
    }

    /// Read an answer as the glue does.
    fn interpret(
        &mut self,
        p: usize,
        step: Step,
        reply: &Reply,
    ) -> Result<Fetched<KeySet>, FetchError> {
        let max = self.max_bytes(p);
        let min_rsa_bits = self.min_rsa_bits(p);
        let (answer, json) = answer(reply, max);
        let issuer = self
            .store
            .discovery_issuer(p)
            .unwrap_or_default()
            .to_string();
        let result = self.budget.run(|| match step {
            Step::Discovery => answer
                .discovered_jwks(max, &issuer)
                .map(Fetched::Discovered),
            Step::Jwks => answer
                .key_set(max, min_rsa_bits)
                .map(|(keys, _)| Fetched::Keys {
                    keys,
                    max_age: answer.max_age(),
                }),
        });
        if let (Ok(Fetched::Keys { keys, .. }), Some(json)) = (&result, json) {
            self.docs.insert(keys.fingerprint(), json);
        }
        result
    }

    fn good(&self, p: usize) -> Option<(u64, u64, u64)> {
        self.store
            .good(p)
            .map(|g| (g.keys.fingerprint(), g.fetched_at, g.refresh_at))
    }

    fn invariants(&mut self) {
        for event in self.store.take_events() {
            let p = event.provider;
            let before = self.statuses.get(p).copied();
            assert_ne!(event.from, event.to, "event without a change: {event:?}");
            assert_eq!(before, Some(event.from), "event does not chain: {event:?}");
            if let Some(s) = self.statuses.get_mut(p) {
                *s = event.to;
            }
        }
        for p in 0..2 {
            let status = self.store.status(p);
            assert_eq!(
                status,
                self.statuses.get(p).copied(),
                "status without an event"
            );
            if let KeyState::Ready(_) = self.store.keys(p, self.now) {
                assert!(
                    matches!(status, Some(Status::Fresh | Status::Stale)),
                    "keys ready in status {status:?}"
                );
            }
        }
    }

    fn request(&mut self, provider: bool, alg: Alg, kid: &Option<String>, exp: i8) {
        let issuer = if provider {
            DISCOVERY_ISSUER
        } else {
            keys::ISSUER
        };
        let kid = kid.clone().unwrap_or_else(|| alg.kid(0).to_string());
        let exp = NOW.saturating_add_signed(i64::from(exp) * 60);
        let claims = json!({"iss": issuer, "sub": "s", "exp": exp, "iat": NOW - 10});
        let token = keys::sign_token(alg, 0, &json!({"alg": alg.name(), "kid": kid}), &claims, 1);
        let facts = RequestFacts {
            method: "GET".into(),
            path: "/".into(),
            authority: "api.test".into(),
            scheme: "https".into(),
            headers: vec![("authorization".into(), format!("Bearer {token}"))],
            nonce: String::new(),
            reject_spoofed: false,
            peer_certificate: Default::default(),
        };
        let now = self.now;
        let now_ms = &move || now;
        let cached = KeyView {
            inline: &self.cached,
            store: &self.store,
            now_ms,
        };
        let uncached = KeyView {
            inline: &self.uncached,
            store: &self.store,
            now_ms,
        };
        let store = &self.store;
        let docs = &self.docs;
        let jwks = |p: usize| {
            let fp = store.good(p)?.keys.fingerprint();
            docs.get(&fp).cloned()
        };
        check::decide_all(
            (&self.cached, &mut self.caches),
            &self.uncached,
            Some((&cached, &uncached)),
            &facts,
            now / 1000,
            &jwks,
        );
    }

    fn step(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Advance(ms) => self.now += u64::from(*ms) * 11,
            Op::Tick(rand) => {
                let _ = self.budget.run(|| self.store.tick(now, *rand));
                self.flights.retain(|(p, _, _)| self.store.fetching(*p));
            }
            Op::StartDue => {
                for p in self.budget.run(|| self.store.due(now)) {
                    self.start(p);
                }
            }
            Op::Start(p) => self.start(usize::from(*p)),
            Op::Answer(n, reply) => {
                if self.flights.is_empty() {
                    return;
                }
                let i = usize::from(*n) % self.flights.len();
                let (p, id, step) = self.flights.remove(i);
                let before = self.good(p);
                let result = self.interpret(p, step, reply);
                let failed = result.is_err();
                let c = self
                    .budget
                    .run(|| self.store.complete(p, id, result, now, 7));
                if let Completion::Next(next) = &c {
                    self.flights.push((p, next.id, next.step));
                }
                if failed || c == Completion::Ignored {
                    assert_eq!(
                        before,
                        self.good(p),
                        "a failed or ignored answer changed the key set"
                    );
                }
            }
            Op::Late(p, back) => {
                let p = usize::from(*p);
                let current = self.flights.iter().find(|f| f.0 == p).map(|f| f.1);
                let id = current
                    .unwrap_or(1_000)
                    .saturating_sub(u64::from(*back) + 1);
                let before = self.good(p);
                let keys = KeySet::default();
                let c = self.budget.run(|| {
                    self.store.complete(
                        p,
                        id,
                        Ok(Fetched::Keys {
                            keys,
                            max_age: None,
                        }),
                        now,
                        1,
                    )
                });
                assert_eq!(
                    c,
                    Completion::Ignored,
                    "an answer to fetch {id}, not in flight, was used"
                );
                assert_eq!(before, self.good(p), "a late answer changed the key set");
            }
            Op::Wait(p) => {
                let _: Wait = self.budget.run(|| self.store.wait(usize::from(*p), now));
            }
            Op::OwnDone(p, reply) => {
                let p = usize::from(*p);
                let Some((step, _)) = self.store.own_target(p) else {
                    return;
                };
                let before = self.good(p);
                let result = self.interpret(p, step, reply);
                let failed = result.is_err();
                let _ = self.budget.run(|| self.store.own_done(p, result, now, 3));
                if failed {
                    assert_eq!(
                        before,
                        self.good(p),
                        "a failed own fetch changed the key set"
                    );
                }
            }
            Op::OwnCancel(p) => self.budget.run(|| self.store.own_cancel(usize::from(*p))),
            Op::Adopt(p, mask, age, refresh) => {
                let p = usize::from(*p);
                let min_rsa_bits = self.min_rsa_bits(p);
                let body = body_bytes(&Body::Keys(*mask));
                let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
                    return;
                };
                let Ok(keys) = parse_remote_keys(&doc, min_rsa_bits) else {
                    return;
                };
                self.docs.insert(keys.fingerprint(), doc);
                let fetched_at = now.saturating_sub(u64::from(*age) * 10);
                let refresh_at = fetched_at + u64::from(*refresh) * 10;
                let _ = self
                    .budget
                    .run(|| self.store.adopt(p, keys, fetched_at, refresh_at, now));
            }
            Op::Request {
                provider,
                alg,
                kid,
                exp,
            } => self.request(*provider, *alg, kid, *exp),
        }
    }

    fn start(&mut self, p: usize) {
        let fetching = self.store.fetching(p);
        let now = self.now;
        let started = self.budget.run(|| self.store.start(p, now));
        if fetching {
            assert!(started.is_none(), "a second fetch started for provider {p}");
        }
        if let Some(s) = started {
            self.flights.retain(|f| f.0 != p);
            self.flights.push((p, s.id, s.step));
        }
    }
}

fuzz_target!(
    init: fuzz_support::seeds::write_if_asked("keystore"),
    |input: Input| {
    let doc = config(input.own_fetch, input.cold_start_wait);
    let mut budget = check::Budget::new();
    let cached = budget.run(|| Engine::from_json(doc.to_string().as_bytes()));
    let plain = keys::without_cache(&doc).to_string();
    let uncached = budget.run(|| Engine::from_json(plain.as_bytes()));
    let (Ok(cached), Ok(uncached)) = (cached, uncached) else {
        panic!("harness config is valid");
    };
    let store = KeyStore::new(&cached.config);
    let caches = Caches::new(&cached.config);
    let mut world = World {
        store,
        cached,
        caches,
        uncached,
        now: NOW * 1000,
        flights: Vec::new(),
        docs: HashMap::new(),
        statuses: [Status::Empty, Status::Empty],
        budget,
    };
    std::mem::take(&mut world.budget).finish();
    for op in input.ops.iter().take(64) {
        world.budget = check::Budget::for_units(check::KEY_UNITS * keys_in(op));
        world.step(op);
        world.invariants();
        std::mem::take(&mut world.budget).finish_for(op);
    }
});
