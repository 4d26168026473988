//! The invariants every target checks, each a panic naming what broke.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use identity_filter::{
    decide, decide_with_keys, find_token, Algorithm, Caches, Config, Decision, Engine, HeaderOp,
    KeySource, Provider, RequestFacts,
};
use serde_json::Value;

use crate::reference;

/// The time budget of the filter's work on one input, in milliseconds: `FUZZ_BUDGET_MS`,
/// default 10.
pub fn budget_ms() -> u64 {
    static MS: OnceLock<u64> = OnceLock::new();
    *MS.get_or_init(|| {
        std::env::var("FUZZ_BUDGET_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10)
    })
}

/// Budget units per key loaded (a request decision is one unit).
pub const KEY_UNITS: usize = 1;

/// How much slower the instrumented fuzz build is allowed to be than the budget
/// (`FUZZ_SLOWDOWN`, default 3). Coverage counters and compare tracing make the signature
/// arithmetic ~30x slower than native here (ES384: 0.24 ms native, 7-10 ms instrumented; one
/// P-384 key load 0.35 ms native, ~12 ms instrumented), so 10 ms x 3 is still a much tighter
/// bound than 10 ms native, and anything super-linear still shows.
pub fn slowdown() -> u32 {
    static X: OnceLock<u32> = OnceLock::new();
    *X.get_or_init(|| {
        std::env::var("FUZZ_SLOWDOWN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
    })
}

/// CPU time of this thread: what the code under test costs, unaffected by other processes
/// sharing the machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Time spent in the filter's code: for one request decision, or for loading keys (a JWKS, a
/// configuration), [`budget_ms`] per key. Only calls into `identity_filter` are timed (not the
/// harness's signing or reference checks); [`Budget::finish`] fails the input when their sum
/// is over the budget. `FUZZ_REPORT_TIME=1` prints every measurement.
#[derive(Debug)]
pub struct Budget {
    spent: Duration,
    /// Requests decided or keys loaded: the budget is [`budget_ms`] for each (at least one).
    units: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

/// Lazily built state of the filter (curve tables) and of the harness (keys, configurations),
/// built once before the first measurement so that no input pays for it.
fn warm_up() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        use identity_filter::{KeySet, Origin};
        for jwks in [crate::keys::public_jwks(), crate::keys::hs_jwks()] {
            KeySet::parse(&jwks, Origin::Inline).expect("harness keys parse");
        }
        let _ = crate::keys::configs();
    });
}

impl Budget {
    pub fn new() -> Budget {
        warm_up();
        Budget {
            spent: Duration::ZERO,
            units: 1,
        }
    }

    /// A budget for work that loads `units` keys (at least one unit).
    pub fn for_units(units: usize) -> Budget {
        Budget {
            units: u32::try_from(units.max(1)).unwrap_or(u32::MAX),
            ..Budget::new()
        }
    }

    /// Run (and time) one call into the filter.
    pub fn run<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = thread_cpu();
        let out = f();
        self.spent += thread_cpu().saturating_sub(start);
        out
    }

    /// Run (and time) a call without side effects (a parse, an uncached decision) for `units`
    /// keys or requests. Over budget, it is run twice more and the fastest run counts: a
    /// measurement disturbed by the machine's other work is not a slow input.
    pub fn pure<T>(units: usize, input: &dyn std::fmt::Debug, f: impl Fn() -> T) -> T {
        let mut budget = Budget::for_units(units);
        let out = budget.run(&f);
        let limit = Duration::from_millis(budget_ms()) * slowdown() * budget.units;
        for _ in 0..2 {
            if budget.spent <= limit {
                break;
            }
            let mut again = Budget::for_units(units);
            again.run(&f);
            budget.spent = budget.spent.min(again.spent);
        }
        budget.finish_for(input);
        out
    }

    pub fn spent(&self) -> Duration {
        self.spent
    }

    /// Panic when the input took longer than the budget.
    pub fn finish(self) {
        self.finish_for(&"");
    }

    /// [`Budget::finish`], naming the input in the message.
    pub fn finish_for(self, input: &dyn std::fmt::Debug) {
        let limit = Duration::from_millis(budget_ms()) * slowdown() * self.units;
        if std::env::var_os("FUZZ_REPORT_TIME").is_some() {
            eprintln!(
                "time: {:.3} ms for {} unit(s)",
                self.spent.as_secs_f64() * 1000.0,
                self.units
            );
        }
        assert!(
            self.spent <= limit,
            "SLOW INPUT: the filter spent {:.3} ms of CPU time on {} request(s)/key(s) (budget {} ms each, x{} in the instrumented build) {input:?}",
            self.spent.as_secs_f64() * 1000.0,
            self.units,
            budget_ms(),
            slowdown()
        );
    }
}

/// No control character (C0, DEL, C1) in a header value the filter sets, nor in a local
/// response's headers; header names are lower-case tokens.
pub fn headers_clean(decision: &Decision) {
    let check = |name: &str, value: &str| {
        assert!(
            !value.chars().any(char::is_control),
            "control character in header {name:?}: {value:?}"
        );
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
            "bad header name {name:?}"
        );
    };
    match decision {
        Decision::Allow { ops, .. } => {
            for op in ops {
                if let HeaderOp::Set(name, value) = op {
                    check(name, value);
                }
            }
        }
        Decision::Deny { response, .. } => {
            for (name, value) in &response.headers {
                check(name, value);
            }
        }
        Decision::Serve(response) => {
            for (name, value) in &response.headers {
                check(name, value);
            }
        }
        Decision::NeedKeys(_) => {}
    }
}

/// The provider that verified the caller of this decision (the decision log names it), if any.
pub fn verified_provider(decision: &Decision) -> Option<&str> {
    match decision {
        Decision::Allow { log, .. } | Decision::Deny { log, .. } => log.provider.as_deref(),
        _ => None,
    }
}

/// A verified caller's token, judged without the filter: its signature verifies with the
/// reference libraries under a key of the provider's key set (`jwks`; with the token's `kid`
/// when it names one), its `alg` is allowed, and its claims are valid at `now`.
pub fn independently_valid(
    config: &Config,
    facts: &RequestFacts,
    decision: &Decision,
    now: u64,
    jwks: &dyn Fn(usize) -> Option<Value>,
) {
    let Some(name) = verified_provider(decision) else {
        return;
    };
    let (index, provider) = config
        .providers
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == name)
        .unwrap_or_else(|| panic!("verified by unknown provider {name:?}"));
    let found = find_token(&config.token_sources, facts, config.max_token_bytes)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("a verified caller without a readable token: {decision:?}"));
    let keys = jwks(index).unwrap_or_else(|| panic!("verified by {name:?}, which has no keys"));
    if let Err(why) = judge(&found.token, provider, &keys, now) {
        panic!(
            "ACCEPTED TOKEN FAILS INDEPENDENT CHECK ({why}): provider {name:?}, token {:?}",
            found.token
        );
    }
}

fn decode_json(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| format!("base64: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("json: {e}"))
}

/// The reference verdict on a compact JWS (`Ok` when valid).
pub fn judge(token: &str, provider: &Provider, jwks: &Value, now: u64) -> Result<(), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err("not three parts".into());
    };
    let header = decode_json(header)?;
    let claims = decode_json(payload)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| format!("signature base64: {e}"))?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or("no alg")?;
    let allowed: Vec<&str> = if provider.algorithms.is_empty() {
        Algorithm::ASYMMETRIC.iter().map(|a| a.name()).collect()
    } else {
        provider.algorithms.iter().map(|a| a.name()).collect()
    };
    if !allowed.contains(&alg) {
        return Err(format!("alg {alg} not allowed"));
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let input_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    let input = token.get(..input_len).unwrap_or_default().as_bytes();
    let verifies = jwks
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|jwk| kid.is_none() || jwk.get("kid").and_then(Value::as_str) == kid)
        .any(|jwk| reference::verify_with_jwk(jwk, alg, input, &signature));
    if !verifies {
        return Err(format!("signature ({alg}, kid {kid:?}) does not verify"));
    }
    claims_valid(&claims, provider, now)
}

/// The registered claims against the provider's settings, written from RFC 7519 and the
/// configuration reference, not from the filter's code.
pub fn claims_valid(claims: &Value, provider: &Provider, now: u64) -> Result<(), String> {
    let now = now as f64;
    let skew = provider.clock_skew_seconds as f64;
    let date = |name: &str| -> Result<Option<f64>, String> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(d) if d >= 0.0 => Ok(Some(d)),
                _ => Err(format!("{name} is not a NumericDate: {v}")),
            },
        }
    };
    let exp = date("exp")?;
    let nbf = date("nbf")?;
    let iat = date("iat")?;
    match exp {
        None if provider.require_expiration => return Err("no exp".into()),
        Some(exp) if now > exp + skew => return Err(format!("expired: exp {exp}, now {now}")),
        _ => {}
    }
    if let Some(nbf) = nbf.filter(|nbf| *nbf > now + skew) {
        return Err(format!("not yet valid: nbf {nbf}, now {now}"));
    }
    if let Some(iat) = iat.filter(|iat| *iat > now + skew) {
        return Err(format!("issued in the future: iat {iat}, now {now}"));
    }
    if let Some(max) = provider.max_lifetime_seconds {
        match exp {
            Some(exp) if exp - iat.unwrap_or(now) <= max as f64 => {}
            _ => return Err("lifetime over max_lifetime_seconds".into()),
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(provider.issuer.as_str()) {
        return Err(format!(
            "iss {:?} is not {:?}",
            claims.get("iss"),
            provider.issuer
        ));
    }
    if !provider.audiences.is_empty() {
        let listed = |v: &Value| {
            v.as_str()
                .is_some_and(|a| provider.audiences.iter().any(|x| x == a))
        };
        let ok = match claims.get("aud") {
            Some(Value::Array(items)) => items.iter().any(listed),
            Some(v) => listed(v),
            None => false,
        };
        if !ok {
            return Err(format!(
                "aud {:?} not in {:?}",
                claims.get("aud"),
                provider.audiences
            ));
        }
    }
    Ok(())
}

/// One request through a cached and an uncached engine, twice through the cached one (with its
/// `caches`): the decisions must be identical (but for the assertion's signature, see
/// [`comparable`]), and each must pass [`headers_clean`] and [`independently_valid`]; the
/// uncached decision (a full verification) must stay within one request's time budget. Keys
/// come from `keys` (cached, uncached), or from each engine's inline sets when `None`. Returns
/// the decision.
pub fn decide_all(
    (cached, caches): (&Engine, &mut Caches),
    uncached: &Engine,
    keys: Option<(&dyn KeySource, &dyn KeySource)>,
    facts: &RequestFacts,
    now: u64,
    jwks: &dyn Fn(usize) -> Option<Value>,
) -> Decision {
    let run = |engine: &Engine, keys: Option<&dyn KeySource>, caches: &mut Caches| match keys {
        Some(keys) => decide_with_keys(engine, keys, caches, facts, now),
        None => decide(engine, caches, facts, now),
    };
    let first = run(cached, keys.map(|k| k.0), caches);
    let again = run(cached, keys.map(|k| k.0), caches);
    // The timed one: the uncached engine decides with fresh caches on each run, so it has no
    // side effects and can be re-run.
    let plain = Budget::pure(1, facts, || {
        run(
            uncached,
            keys.map(|k| k.1),
            &mut Caches::new(&uncached.config),
        )
    });
    let norm = |d: &Decision| comparable(&cached.config, d);
    assert_eq!(
        norm(&first),
        norm(&plain),
        "CACHED AND UNCACHED DECISIONS DIFFER"
    );
    assert_eq!(
        norm(&first),
        norm(&again),
        "A CACHE HIT DECIDED OTHERWISE THAN THE MISS"
    );
    headers_clean(&first);
    independently_valid(&cached.config, facts, &first, now, jwks);
    first
}

/// A decision with the signature of its identity assertion left out. ed25519-dalek and HMAC sign
/// deterministically; the signature stays out of the comparison as a precaution (a hedged EdDSA
/// signer, which adds randomness, would make two mints of the same assertion differ there, and
/// only there).
fn comparable(config: &Config, decision: &Decision) -> Decision {
    let mut d = decision.clone();
    let Some(name) = config
        .headers
        .assertion
        .as_ref()
        .map(|a| a.header.to_ascii_lowercase())
    else {
        return d;
    };
    if let Decision::Allow { ops, .. } = &mut d {
        for op in ops.iter_mut() {
            if let HeaderOp::Set(n, v) = op {
                if *n == name {
                    if let Some((signed, _)) = v.rsplit_once('.') {
                        *v = signed.to_string();
                    }
                }
            }
        }
    }
    d
}

/// The inline JWKS of each provider of a configuration.
pub fn inline_jwks(config: &Config) -> impl Fn(usize) -> Option<Value> + '_ {
    move |i| config.providers.get(i).and_then(|p| p.jwks.clone())
}

thread_local! {
    /// The engines of the fixed configurations, built once per thread: (cached, its caches,
    /// uncached).
    static ENGINES: RefCell<Vec<(Engine, Caches, Engine)>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with the cached engine of fixed configuration `index` (of [`crate::keys::configs`]),
/// its caches, and the uncached engine. They live as long as the process, so the cached one's
/// token cache carries entries from earlier inputs: cache hits of tokens seen before are
/// compared with uncached decisions too (a failure may then need the inputs before it).
pub fn with_engines<T>(index: usize, f: impl FnOnce(&Engine, &mut Caches, &Engine) -> T) -> T {
    let configs = crate::keys::configs();
    let index = index % configs.len();
    ENGINES.with(|e| {
        let mut e = e.borrow_mut();
        if e.is_empty() {
            for c in configs {
                let load = |doc: &Value| {
                    Engine::from_json(doc.to_string().as_bytes()).expect("harness config is valid")
                };
                let cached = load(c);
                let caches = Caches::new(&cached.config);
                e.push((cached, caches, load(&crate::keys::without_cache(c))));
            }
        }
        let (cached, caches, uncached) = e.get_mut(index).expect("index in range");
        f(cached, caches, uncached)
    })
}
