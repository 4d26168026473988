//! Host glue: the only code that talks to the proxy (Envoy, Istio, Kong) through proxy-wasm.
//! It gathers request facts, calls the pure [`crate::decide`], and applies the decision.
//!
//! Portability rules kept here (see docs/kong.md): `on_configure` never returns `false`; no
//! property is read from the root context; `proxy_get_log_level` is never called; metrics are
//! defined only when enabled; header values are read as bytes (the SDK's string getters panic
//! on non-UTF-8 values); local responses always set `content-type` when they have a body.

mod keys;
mod metrics;

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

use crate::decide::{self, Decision, Engine, RequestFacts};
use crate::headers::HeaderOp;
use crate::reason::{Denial, Reason, Response};

use metrics::Metrics;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, state: None, ticking: false })
    });
}}

/// What a configured root context hands to its requests.
struct State {
    engine: Option<Engine>,
    metrics: Metrics,
    /// Remote keys (`jwks_uri`, `discovery`): fetches, key state, waiting requests.
    keys: Option<keys::RemoteKeys>,
}

struct Root {
    id: u32,
    state: Option<Rc<State>>,
    /// The tick period is set once per root context (Kong traps on a second call).
    ticking: bool,
}

fn log(level: LogLevel, message: &str) {
    // The SDK's `log` panics on an unexpected host status; hosts return Ok for valid levels.
    let _ = hostcalls::log(level, message);
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(state) = self.state.clone() {
            if let (Some(k), Some(e)) = (&state.keys, &state.engine) {
                k.on_response(&state, e, token_id, num_headers, body_size);
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let (engine, metrics_enabled) = match Engine::from_json(&bytes) {
            Ok(engine) => {
                let enabled = engine.config.metrics.enabled;
                log(
                    LogLevel::Info,
                    &format!(
                        "identity filter configured: {} provider(s), {} rule(s)",
                        engine.config.providers.len(),
                        engine.config.rules.len()
                    ),
                );
                (Some(engine), enabled)
            }
            Err(e) => {
                // Never return false: Kong's whole filter-chain rebuild would fail. Every
                // request is answered 500 config_invalid instead.
                log(LogLevel::Error, &format!("identity filter: {e}; every request will be refused with 500 config_invalid"));
                (None, false)
            }
        };
        if let Some(old) = self.state.take() {
            if let (Some(k), Some(e)) = (&old.keys, &old.engine) {
                k.abandon(&old, e);
            }
        }
        let keys = engine
            .as_ref()
            .map(|e| keys::RemoteKeys::new(&e.config, self.id, metrics_enabled));
        // Fetches start on the first tick, never here.
        if let Some(period) = keys.as_ref().and_then(|k| k.tick_period()) {
            if !self.ticking {
                self.set_tick_period(period);
                self.ticking = true;
            }
        }
        self.state = Some(Rc::new(State {
            engine,
            metrics: Metrics::define(metrics_enabled),
            keys,
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(state) = self.state.clone() {
            if let (Some(k), Some(e)) = (&state.keys, &state.engine) {
                k.on_tick(&state, e);
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            id: context_id,
            state: self.state.clone(),
            own: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    id: u32,
    state: Option<Rc<State>>,
    /// A key fetch this request waits on (`remote_keys.waiting: own_fetch`).
    own: Option<keys::OwnCall>,
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(state) = self.state.clone() {
            keys::own_response(&state, &mut self.own, token_id, num_headers, body_size);
        }
    }

    fn on_done(&mut self) -> bool {
        self.forget();
        true
    }
}

impl Request {
    /// The stream ended: a request waiting for keys must not be woken any more.
    fn forget(&mut self) {
        if let Some(state) = self.state.clone() {
            if let Some(k) = &state.keys {
                k.forget(self.id);
            }
            keys::own_cancel(&state, &mut self.own);
        }
    }
}

impl Request {
    fn facts(&self, engine: &Engine) -> RequestFacts {
        let mut facts = RequestFacts::default();
        for (name, value) in self.get_http_request_headers_bytes() {
            let value = String::from_utf8_lossy(&value).into_owned();
            match name.as_str() {
                ":method" => facts.method = value,
                ":path" => facts.path = value,
                ":authority" => facts.authority = value,
                n if n.starts_with(':') => {}
                _ => facts.headers.push((name.to_ascii_lowercase(), value)),
            }
        }
        if facts.authority.is_empty() {
            facts.authority = facts.header("host").unwrap_or_default().to_string();
        }
        // Randomness is only needed to mint an assertion.
        if engine.config.headers.assertion.is_some() {
            facts.unique = self.unique();
        }
        facts
    }

    /// 128 random bits as hex (WASI `random_get`); time-based if the host has no randomness.
    fn unique(&self) -> String {
        let mut bytes = [0u8; 16];
        if getrandom::getrandom(&mut bytes).is_err() {
            let nanos = self
                .get_current_time()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            bytes = nanos.to_le_bytes();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn now(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Answer the current (effective) HTTP context locally.
fn respond(response: &Response) -> Action {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let body = if response.body.is_empty() {
        None
    } else {
        Some(response.body.as_slice())
    };
    let _ = hostcalls::send_http_response(response.status, headers, body);
    Action::Pause
}

/// Change the current (effective) HTTP context's request headers.
fn apply(ops: &[HeaderOp]) {
    for op in ops {
        let _ = match op {
            HeaderOp::Remove(name) => {
                hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)
            }
            HeaderOp::Set(name, value) => {
                hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
            }
        };
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return respond(&decide::config_invalid_response());
        };
        let Some(engine) = &state.engine else {
            return respond(&decide::config_invalid_response());
        };
        let facts = self.facts(engine);
        let decision = match &state.keys {
            Some(keys) => {
                let now = keys::now_ms();
                match keys.decide(engine, &facts, now) {
                    Decision::NeedKeys(provider) => {
                        return match keys.wait(self.id, provider, facts, now) {
                            Ok(keys::Waiting::Resumed) => Action::Pause,
                            Ok(keys::Waiting::Own(call)) => {
                                self.own = Some(call);
                                Action::Pause
                            }
                            Err(reason) => refuse(&state, engine, reason),
                        };
                    }
                    decision => decision,
                }
            }
            None => decide::decide(engine, engine, &facts, self.now()),
        };
        conclude(&state, engine, decision)
    }

    fn on_log(&mut self) {
        self.forget();
    }
}

/// Apply a decision to the current (effective) HTTP context. `Continue`: let the request go on
/// (a paused request must then be resumed); `Pause`: it was answered.
fn conclude(state: &State, engine: &Engine, decision: Decision) -> Action {
    match decision {
        Decision::Allow { ops, log: entry } => {
            apply(&ops);
            state.metrics.allowed();
            if entry.report_only && entry.reason.is_some() {
                state.metrics.would_deny();
            }
            if engine.config.log.decisions {
                log(LogLevel::Info, &entry.to_json());
            }
            Action::Continue
        }
        Decision::Deny {
            response,
            log: entry,
        } => {
            if let Some(reason) = entry.reason {
                state.metrics.denied(reason);
            }
            if engine.config.log.decisions {
                log(LogLevel::Info, &entry.to_json());
            }
            respond(&response)
        }
        Decision::Serve(response) => respond(&response),
        Decision::NeedKeys(_) => refuse(state, engine, Reason::KeysUnavailable),
    }
}

/// Refuse the current (effective) HTTP context with `reason` (a request that cannot get keys).
fn refuse(state: &State, engine: &Engine, reason: Reason) -> Action {
    let denial = Denial::new(reason);
    state.metrics.denied(reason);
    respond(&engine.render(&denial))
}
