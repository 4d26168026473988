//! Host glue: the only code that talks to the proxy (Envoy, Istio, Kong) through proxy-wasm.
//! It gathers request facts, calls the pure [`crate::decide`], and applies the decision.
//!
//! Portability rules kept here (see docs/kong.md): `on_configure` never returns `false`; no
//! property is read from the root context; `proxy_get_log_level` is never called; metrics are
//! defined only when enabled; header values are read as bytes (the SDK's string getters panic
//! on non-UTF-8 values); local responses always set `content-type` when they have a body.

mod metrics;

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::decide::{self, Decision, Engine, RequestFacts};
use crate::headers::HeaderOp;
use crate::reason::Response;

use metrics::Metrics;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { state: None }) });
}}

/// What a configured root context hands to its requests.
struct State {
    engine: Option<Engine>,
    metrics: Metrics,
}

struct Root {
    state: Option<Rc<State>>,
}

fn log(level: LogLevel, message: &str) {
    // The SDK's `log` panics on an unexpected host status; hosts return Ok for valid levels.
    let _ = hostcalls::log(level, message);
}

impl Context for Root {}

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
        self.state = Some(Rc::new(State {
            engine,
            metrics: Metrics::define(metrics_enabled),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            state: self.state.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    state: Option<Rc<State>>,
}

impl Context for Request {}

impl Request {
    fn facts(&self) -> RequestFacts {
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
        facts.unique = self.unique();
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

    fn respond(&self, response: &Response) -> Action {
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
        self.send_http_response(response.status, headers, body);
        Action::Pause
    }

    fn apply(&self, ops: &[HeaderOp]) {
        for op in ops {
            match op {
                HeaderOp::Remove(name) => self.set_http_request_header(name, None),
                HeaderOp::Set(name, value) => self.set_http_request_header(name, Some(value)),
            }
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return self.respond(&decide::config_invalid_response());
        };
        let Some(engine) = &state.engine else {
            return self.respond(&decide::config_invalid_response());
        };
        let facts = self.facts();
        let decision = decide::decide(engine, engine, &facts, self.now());
        match decision {
            Decision::Allow { ops, log: entry } => {
                self.apply(&ops);
                state.metrics.allowed();
                if entry.report_only && entry.reason.is_some() {
                    state.metrics.would_deny();
                }
                if engine.config.log.decisions {
                    log(LogLevel::Info, &entry.to_json());
                }
                Action::Continue
            }
            Decision::Deny { response, log: entry } => {
                if let Some(reason) = entry.reason {
                    state.metrics.denied(reason);
                }
                if engine.config.log.decisions {
                    log(LogLevel::Info, &entry.to_json());
                }
                self.respond(&response)
            }
            Decision::Serve(response) => self.respond(&response),
            Decision::NeedKeys(_) => {
                let denial = crate::reason::Denial::new(crate::reason::Reason::KeysUnavailable);
                state.metrics.denied(denial.reason);
                self.respond(&engine.render(&denial))
            }
        }
    }
}
