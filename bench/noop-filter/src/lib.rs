//! A proxy-wasm HTTP filter that does no work of its own: one root context, and per request an
//! HTTP context. With an empty configuration (or `{}`) its `on_http_request_headers` returns
//! `Continue` and makes no host call: the Wasm floor. Two other configurations make the host
//! calls the identity filter makes on a request, and nothing else, so that `make bench` can
//! price the host's side of those calls in the proxy itself:
//!
//! - `hostcalls <header>=<value>`: what a cached valid token costs the host: the request's header
//!   map read (`get_http_request_headers_bytes`), the clock read, `authorization` removed and
//!   `<header>: <value>` set;
//! - `deny`: what a missing token costs the host: the header map read, then a local 401 shaped
//!   like the identity filter's (`x-identity-reason`, `www-authenticate`, `cache-control`, a JSON
//!   body).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root(Mode::Pass)) });
}}

#[derive(Clone)]
enum Mode {
    Pass,
    HostCalls { header: String, value: String },
    Deny,
}

impl Mode {
    fn parse(config: &[u8]) -> Option<Mode> {
        let text = std::str::from_utf8(config).ok()?.trim();
        if text.is_empty() || text == "{}" {
            return Some(Mode::Pass);
        }
        if text == "deny" {
            return Some(Mode::Deny);
        }
        let (header, value) = text.strip_prefix("hostcalls ")?.split_once('=')?;
        Some(Mode::HostCalls {
            header: header.to_string(),
            value: value.to_string(),
        })
    }
}

struct Root(Mode);

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match Mode::parse(&config) {
            Some(mode) => {
                self.0 = mode;
                true
            }
            None => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request(self.0.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request(Mode);

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        match &self.0 {
            Mode::Pass => Action::Continue,
            Mode::HostCalls { header, value } => {
                let map = self.get_http_request_headers_bytes();
                let now = self.get_current_time();
                // Keep both reads (the identity filter uses them); nothing depends on them here.
                std::hint::black_box((map, now));
                self.set_http_request_header("authorization", None);
                self.set_http_request_header(header, Some(value));
                Action::Continue
            }
            Mode::Deny => {
                std::hint::black_box(self.get_http_request_headers_bytes());
                self.send_http_response(
                    401,
                    vec![
                        ("x-identity-reason", "token_missing"),
                        ("www-authenticate", "Bearer"),
                        ("cache-control", "no-store"),
                        ("content-type", "application/json"),
                    ],
                    Some(br#"{"error":"token_missing","status":401}"#),
                );
                Action::Pause
            }
        }
    }
}
