//! Host glue: the only code that talks to the proxy (Envoy, Istio, Kong). One way down:
//! - this module: the root and HTTP contexts; it gathers a request's facts;
//! - `remote_keys`: the fetches the key store asks for, requests waiting for keys, and the keys
//!   a request is decided with (inline and fetched);
//! - `state`: what a configured root context shares with its requests, and deciding one with the
//!   instance's caches (the pure [`crate::decide`](mod@crate::decide));
//! - `answer`: applying a decision (header changes or a local answer, counters, decision log);
//! - `host`, `metrics`, `replay`: the host interface and the host's profile, counters, DPoP
//!   proofs in shared data.
//!
//! Everything here is written against the small [`Host`] interface and compiled natively too, so
//! the glue's decisions are tested against two host behaviours, Envoy's and ngx_wasm_module's
//! (`tests.rs`). Only `wasm.rs` (wasm32) binds it to proxy-wasm.
//!
//! Rules kept here, each because a host punishes breaking it (docs/kong.md, ../shared/HOSTS.md):
//! - `on_configure` never returns `false` (Kong's whole filter-chain rebuild would fail).
//! - No property is read from a root context; the host is probed there with a harmless call
//!   ([`host::probe_kind`]) and confirmed by the first request ([`host::request_kind`]).
//! - What a host cannot do is never asked of it: in ngx_wasm_module a root context never acts on
//!   a request (waiting is `own_fetch`), client-sent managed headers are refused rather than
//!   stripped (`headers.spoofed_headers: auto`), and shared data is used only where a zone is
//!   known to exist and never while a request of this instance is paused (a trap there would
//!   let the paused request through).
//! - Every host call goes through [`Host`], whose wasm implementation never panics.

mod answer;
mod host;
mod metrics;
mod remote_keys;
mod replay;
mod state;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "wasm32")]
mod wasm;

use std::cell::Cell;
use std::rc::Rc;

use crate::config::CertificateSource;
use crate::decide::Decision;
use crate::engine::{self, Engine};
use crate::mtls::PeerCertificate;
use crate::token::RequestFacts;

use answer::{conclude, refuse, respond};
use host::{Host, HostKind, Level, Profile};
use metrics::Metrics;
use remote_keys::RemoteKeys;
#[cfg(test)]
use state::paused_requests;
pub use state::Verdict;
use state::{set_paused, State};

/// A configured root context: what its requests share, and its remote keys (which use that).
struct Configured {
    state: State,
    /// Remote keys (`jwks_uri`, `discovery`): fetches, key state, waiting requests. Set up with
    /// every engine: `None` only for a configuration that failed.
    keys: Option<RemoteKeys>,
}

/// One configured filter (a root context).
pub struct Root {
    id: u32,
    state: Option<Rc<Configured>>,
    /// The tick period is set once per root context (Kong traps on a second call).
    ticking: bool,
}

impl Root {
    pub fn new(id: u32) -> Root {
        Root {
            id,
            state: None,
            ticking: false,
        }
    }

    /// Configure from the plugin configuration. Always `true`: a bad configuration is logged
    /// with its field path and every request is answered 500 `config_invalid`.
    pub fn on_configure(&mut self, host: &impl Host, bytes: &[u8]) -> bool {
        let probed = host::probe_kind(host, self.id);
        let engine = match Engine::from_json(bytes) {
            Ok(engine) => {
                host.log(
                    Level::Info,
                    &format!(
                        "identity filter configured: {} provider(s), {} rule(s)",
                        engine.config.providers.len(),
                        engine.config.rules.len()
                    ),
                );
                Some(engine)
            }
            Err(e) => {
                host.log(
                    Level::Error,
                    &format!(
                        "identity filter: {e}; every request will be refused with 500 \
                         config_invalid"
                    ),
                );
                None
            }
        };
        let metrics_enabled = engine.as_ref().is_some_and(|e| e.config.metrics.enabled);
        if let Some(old) = self.state.take() {
            old.state.metrics.flush(host);
            if let (Some(k), Some(e)) = (&old.keys, &old.state.engine) {
                k.abandon(host, &old.state, e);
            }
        }
        let keys = engine
            .as_ref()
            .map(|e| RemoteKeys::new(host, &e.config, self.id, metrics_enabled));
        let metrics = Metrics::define(host, metrics_enabled);
        // Fetches start on the first tick, never here; counted requests reach the host on a
        // tick too. One period, `remote_keys.tick_ms`, for both.
        let period = engine
            .as_ref()
            .filter(|_| {
                metrics.enabled() || keys.as_ref().is_some_and(|k| k.tick_period().is_some())
            })
            .map(|e| std::time::Duration::from_millis(e.config.remote_keys.tick_ms));
        if let Some(period) = period {
            if !self.ticking {
                host.set_tick_period(period);
                self.ticking = true;
            }
        }
        if let Some(e) = &engine {
            for (p, weak) in e.weak_keys() {
                metrics::report_weak_keys(host, &metrics, &p.name, weak, engine::min_rsa_bits(p));
            }
        }
        self.state = Some(Rc::new(Configured {
            state: State::new(engine, metrics, probed),
            keys,
        }));
        true
    }

    pub fn on_tick(&self, host: &impl Host) {
        if let Some(c) = &self.state {
            c.state.metrics.flush(host);
            if let (Some(k), Some(e)) = (&c.keys, &c.state.engine) {
                if k.tick_period().is_some() {
                    k.on_tick(host, &c.state, e);
                }
            }
        }
    }

    /// An answer to one of the root context's fetches.
    pub fn on_call_response(
        &self,
        host: &impl Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        if let Some(c) = &self.state {
            if let (Some(k), Some(e)) = (&c.keys, &c.state.engine) {
                k.on_response(host, &c.state, e, token, num_headers, body_size);
            }
        }
    }

    pub fn new_request(&self, id: u32) -> Request {
        Request {
            id,
            state: self.state.clone(),
            own: None,
        }
    }

    /// The configured state (tests).
    #[cfg(test)]
    pub fn state(&self) -> Option<&State> {
        self.state.as_ref().map(|c| &c.state)
    }
}

/// One request (an HTTP context).
pub struct Request {
    id: u32,
    state: Option<Rc<Configured>>,
    /// A key fetch this request waits on (`own_fetch` waiting).
    own: Option<remote_keys::OwnCall>,
}

impl Request {
    pub fn on_request_headers(&mut self, host: &impl Host) -> Verdict {
        let Some(configured) = self.state.clone() else {
            return respond(host, &engine::config_invalid_response());
        };
        let state = &configured.state;
        // `on_configure` sets up remote keys with every engine: neither means a configuration
        // that failed.
        let (Some(engine), Some(keys)) = (&state.engine, &configured.keys) else {
            return respond(host, &engine::config_invalid_response());
        };
        let first = state.known_profile().is_none();
        let profile = state.profile(host, engine);
        if first {
            keys.set_wait(profile.wait);
        }
        let mut facts = facts(host, engine, &profile);
        // The clock is read only if the decision needs it (a token was found), and once.
        let clock = Cell::new(None);
        let now_ms = || match clock.get() {
            Some(ms) => ms,
            None => {
                let ms = host.now_ms();
                clock.set(Some(ms));
                ms
            }
        };
        // The client certificate, likewise: only for a certificate-bound token.
        let peer = || peer_certificate(host, profile.kind);
        let decision = match keys.decide(host, state, engine, &facts, &now_ms, &peer) {
            Decision::NeedKeys(provider) => {
                // Decided again later, maybe from the root context, where no property is read:
                // the certificate is read now.
                if facts.peer_certificate == PeerCertificate::Unread {
                    facts.peer_certificate = peer();
                }
                return match keys.wait(host, self.id, provider, facts, now_ms()) {
                    Ok(remote_keys::Waiting::Resumed) => {
                        set_paused(self.id, true);
                        Verdict::Pause
                    }
                    Ok(remote_keys::Waiting::Own(call)) => {
                        self.own = Some(call);
                        set_paused(self.id, true);
                        Verdict::Pause
                    }
                    Err(reason) => refuse(host, state, engine, reason),
                };
            }
            decision => decision,
        };
        conclude(host, state, engine, decision)
    }

    /// An answer to this request's own fetch (`own_fetch` waiting).
    pub fn on_call_response(
        &mut self,
        host: &impl Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(c) = self.state.clone() else {
            return;
        };
        // Not ours (another token): ignored.
        let Some(call) = self.own.take_if(|call| call.token() == token) else {
            return;
        };
        if let (Some(keys), Some(engine)) = (&c.keys, &c.state.engine) {
            self.own = keys.own_answer(
                host,
                &c.state,
                engine,
                self.id,
                call,
                num_headers,
                body_size,
            );
        }
    }

    /// The stream ended (`on_log`, `on_done`): a request waiting for keys must not be woken.
    pub fn on_done(&mut self) {
        set_paused(self.id, false);
        if let Some(k) = self.state.as_ref().and_then(|c| c.keys.as_ref()) {
            k.forget(self.id);
            if let Some(call) = self.own.take() {
                k.own_cancel(call);
            }
        }
    }
}

/// The request's facts: headers, and the host the client asked for from the header this host
/// puts it in.
fn facts(host: &impl Host, engine: &Engine, profile: &Profile) -> RequestFacts {
    let mut facts = RequestFacts {
        reject_spoofed: profile.reject_spoofed,
        ..RequestFacts::default()
    };
    let (mut authority, mut host_header) = (None, None);
    let headers = host.request_headers();
    facts.headers.reserve_exact(headers.len());
    for (name, value) in headers {
        // Valid UTF-8 (almost always) is taken as it is; anything else is converted lossily.
        let value = String::from_utf8(value)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        match name.as_str() {
            ":method" => facts.method = value,
            ":path" => facts.path = value,
            ":authority" => authority = Some(value),
            ":scheme" => facts.scheme = value,
            n if n.starts_with(':') => {}
            _ => {
                let mut name = name;
                name.make_ascii_lowercase();
                if name == "host" && host_header.is_none() {
                    host_header = Some(value.clone());
                }
                facts.headers.push((name, value));
            }
        }
    }
    facts.authority = if profile.kind.authority_from_host_header() {
        host_header.or(authority)
    } else {
        authority.or(host_header)
    }
    .unwrap_or_default();
    if engine.config.client_certificate.source == CertificateSource::Connection {
        // Read when a certificate-bound token needs it (`authenticate::Ask`), not on every request.
        facts.peer_certificate = PeerCertificate::Unread;
    }
    // Randomness is only needed to mint an assertion.
    if engine.config.headers.assertion.is_some() {
        facts.nonce = nonce(host);
    }
    facts
}

/// The client certificate of the downstream connection (`client_certificate.source:
/// connection`). Envoy: the attribute `connection.sha256_peer_certificate_digest` (hex; absent
/// without TLS or without a client certificate). ngx_wasm_module does not implement that
/// attribute (it logs "NYI") and exposes no other, so there it is unavailable: certificate-bound
/// tokens are refused (`certificate_unavailable`), never accepted without their certificate.
fn peer_certificate(host: &impl Host, kind: HostKind) -> PeerCertificate {
    if kind != HostKind::Envoy {
        return PeerCertificate::Unavailable;
    }
    match host.property(&["connection", "sha256_peer_certificate_digest"]) {
        Some(v) if !v.is_empty() => match String::from_utf8(v) {
            Ok(hex) => PeerCertificate::Sha256Hex(hex),
            Err(_) => PeerCertificate::None,
        },
        _ => PeerCertificate::None,
    }
}

/// 128 random bits as hex; time-based if the host has no randomness.
fn nonce(host: &impl Host) -> String {
    let bytes = host.random().unwrap_or_else(|| {
        let t = u128::from(host.now_ms()).wrapping_mul(1_000_003);
        t.to_le_bytes()
    });
    let digit = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut out = String::with_capacity(32);
    for b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 15));
    }
    out
}
