//! The glue against two host behaviours: Envoy's, and ngx_wasm_module's as measured in Kong 3.9's
//! host (../shared/HOSTS.md, "Kong's host as measured"). One test per measured fact.
//!
//! [`Mock`] plays the host. With [`HostKind::Ngx`] it does what that host does: a removed or
//! replaced request header still reaches the upstream; `proxy_set_effective_context` is ignored
//! and answering or resuming from the root context crashes the worker; an answered call carries
//! `:dispatch_status: ok`; shared data without an `shm_kv` zone traps, and a trap while a request
//! is paused lets that request through; `:authority` is `server_name:port`. The mock records
//! crashes and traps instead of dying, and the tests assert there are none.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{json, Value};

use super::host::{Header, Host, HostError, HostKind, Level, MetricKind, BAD_ARGUMENT};
use super::{paused_requests, Request, Root, Verdict};
use crate::jwks::test_keys;

const ROOT: u32 = 1;
/// Unix ms; tokens are issued at `NOW / 1000`.
const NOW: u64 = 1_800_000_000_000;
const ISSUER: &str = "https://idp.test";

/// A local response: status, headers, body.
type Local = (u32, Vec<(String, String)>, Vec<u8>);

/// What happened to a request, as the client and the upstream see it.
#[derive(Debug, Default, Clone)]
struct Stream {
    /// Headers as the client sent them (what nginx forwards in Kong).
    client: Vec<Header>,
    /// Headers as the filter sees them after its changes.
    view: Vec<Header>,
    response: Option<Local>,
    /// Let go on (returned `Continue`, or resumed while paused, or let through by a trap).
    upstream: bool,
    paused: bool,
}

#[derive(Debug, Clone)]
struct Call {
    token: u32,
    context: u32,
    upstream: String,
    path: String,
}

/// A call answer to deliver.
#[derive(Debug, Clone, Default)]
struct Answer {
    headers: Vec<Header>,
    body: Vec<u8>,
}

struct Mock {
    kind: HostKind,
    /// ngx: an `shm_kv` zone exists (Kong's `nginx_wasm_shm_kv`).
    zone: bool,
    now: Cell<u64>,
    current: Cell<u32>,
    streams: RefCell<HashMap<u32, Stream>>,
    calls: RefCell<Vec<Call>>,
    next_token: Cell<u32>,
    answer: RefCell<Answer>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    logs: RefCell<Vec<(Level, String)>>,
    /// Host-level failures the filter must never cause.
    crashes: RefCell<Vec<String>>,
    traps: RefCell<Vec<String>>,
    properties_read: RefCell<Vec<(u32, String)>>,
    /// The hex SHA-256 of the client certificate of the connections (Envoy's
    /// `connection.sha256_peer_certificate_digest`; ngx_wasm_module does not implement it).
    peer_digest: RefCell<Option<String>>,
    /// Host calls by kind (the proxy-wasm function each stands for), since the last
    /// [`Mock::take_calls`].
    counted: RefCell<BTreeMap<&'static str, usize>>,
    /// Counter values by metric name, as the host holds them.
    metrics: RefCell<Vec<(String, u64)>>,
}

impl Mock {
    fn new(kind: HostKind) -> Mock {
        Mock {
            kind,
            zone: false,
            now: Cell::new(NOW),
            current: Cell::new(ROOT),
            streams: RefCell::new(HashMap::new()),
            calls: RefCell::new(Vec::new()),
            next_token: Cell::new(100),
            answer: RefCell::new(Answer::default()),
            shared: RefCell::new(HashMap::new()),
            logs: RefCell::new(Vec::new()),
            crashes: RefCell::new(Vec::new()),
            traps: RefCell::new(Vec::new()),
            properties_read: RefCell::new(Vec::new()),
            peer_digest: RefCell::new(None),
            counted: RefCell::new(BTreeMap::new()),
            metrics: RefCell::new(Vec::new()),
        }
    }

    fn envoy() -> Mock {
        Mock::new(HostKind::Envoy)
    }

    fn ngx() -> Mock {
        Mock::new(HostKind::Ngx)
    }

    fn count(&self, call: &'static str) {
        *self.counted.borrow_mut().entry(call).or_default() += 1;
    }

    /// The host calls counted so far, by kind; the count starts again.
    fn take_calls(&self) -> BTreeMap<&'static str, usize> {
        std::mem::take(&mut *self.counted.borrow_mut())
    }

    /// A counter's value as the host holds it (`None`: not defined).
    fn metric(&self, name: &str) -> Option<u64> {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    fn in_root(&self) -> bool {
        self.current.get() == ROOT
    }

    /// A trap: in ngx_wasm_module a paused request whose callback traps goes on upstream.
    fn trap(&self, what: &str) {
        self.traps.borrow_mut().push(format!(
            "{what} in context {} with {} paused",
            self.current.get(),
            paused_requests()
        ));
        if let Some(s) = self.streams.borrow_mut().get_mut(&self.current.get()) {
            if s.paused {
                s.upstream = true;
            }
        }
    }

    fn with_stream<T>(&self, f: impl FnOnce(&mut Stream) -> T) -> Option<T> {
        self.streams
            .borrow_mut()
            .get_mut(&self.current.get())
            .map(f)
    }

    /// The headers the upstream receives for request `id`.
    fn upstream_headers(&self, id: u32) -> Vec<(String, String)> {
        let streams = self.streams.borrow();
        let Some(s) = streams.get(&id) else {
            return Vec::new();
        };
        let text = |h: &Header| (h.0.clone(), String::from_utf8_lossy(&h.1).into_owned());
        match self.kind {
            HostKind::Envoy => s.view.iter().map(text).collect(),
            // nginx forwards the client's headers as they came (removed or replaced ones too),
            // next to what the filter set.
            HostKind::Ngx => s
                .client
                .iter()
                .chain(s.view.iter().filter(|h| !s.client.contains(h)))
                .map(text)
                .collect(),
        }
    }

    fn upstream_values(&self, id: u32, name: &str) -> Vec<String> {
        self.upstream_headers(id)
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect()
    }

    fn status(&self, id: u32) -> Option<u32> {
        self.streams
            .borrow()
            .get(&id)
            .and_then(|s| s.response.as_ref().map(|r| r.0))
    }

    fn response_header(&self, id: u32, name: &str) -> Option<String> {
        self.streams.borrow().get(&id).and_then(|s| {
            s.response
                .as_ref()
                .and_then(|r| r.1.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
        })
    }

    fn went_upstream(&self, id: u32) -> bool {
        self.streams.borrow().get(&id).is_some_and(|s| s.upstream)
    }

    fn calls_from(&self, context: u32) -> Vec<Call> {
        self.calls
            .borrow()
            .iter()
            .filter(|c| c.context == context)
            .cloned()
            .collect()
    }

    fn logged(&self, needle: &str) -> usize {
        self.logs
            .borrow()
            .iter()
            .filter(|(_, m)| m.contains(needle))
            .count()
    }

    fn assert_healthy(&self) {
        assert!(
            self.crashes.borrow().is_empty(),
            "worker crashed: {:?}",
            self.crashes.borrow()
        );
        assert!(
            self.traps.borrow().is_empty(),
            "instance trapped: {:?}",
            self.traps.borrow()
        );
        let root_reads: Vec<_> = self
            .properties_read
            .borrow()
            .iter()
            .filter(|(c, _)| *c == ROOT)
            .cloned()
            .collect();
        assert!(
            root_reads.is_empty(),
            "properties read in a root context: {root_reads:?}"
        );
    }
}

impl Host for Mock {
    fn now_ms(&self) -> u64 {
        self.count("get_current_time_nanoseconds");
        self.now.get()
    }

    fn log(&self, level: Level, message: &str) {
        self.count("log");
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.count("get_property");
        let path = path.join(".");
        self.properties_read
            .borrow_mut()
            .push((self.current.get(), path.clone()));
        match (self.kind, path.as_str()) {
            (HostKind::Ngx, "ngx.nginx_version") => Some(b"1.25.3".to_vec()),
            (HostKind::Envoy, "connection.sha256_peer_certificate_digest") => {
                self.peer_digest.borrow().clone().map(String::into_bytes)
            }
            (HostKind::Ngx, "kong.configuration.nginx_wasm_shm_kv") if self.zone => {
                Some(b"1m".to_vec())
            }
            _ => None,
        }
    }

    fn random(&self) -> Option<[u8; 16]> {
        self.count("random_get");
        Some([7; 16])
    }

    fn request_headers(&self) -> Vec<Header> {
        self.count("get_header_map_pairs");
        self.with_stream(|s| s.view.clone()).unwrap_or_default()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.count(if value.is_some() {
            "replace_header_map_value"
        } else {
            "remove_header_map_value"
        });
        self.with_stream(|s| {
            s.view.retain(|(n, _)| n != name);
            if let Some(v) = value {
                s.view.push((name.to_string(), v.as_bytes().to_vec()));
            }
        });
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        self.count("send_local_response");
        if self.in_root() {
            match self.kind {
                HostKind::Ngx => self
                    .crashes
                    .borrow_mut()
                    .push("send_response from root".into()),
                HostKind::Envoy => {}
            }
            return;
        }
        self.with_stream(|s| {
            s.response = Some((
                status,
                headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body.to_vec(),
            ));
            s.paused = false;
        });
    }

    fn resume_request(&self) {
        self.count("continue_stream");
        if self.in_root() {
            if self.kind == HostKind::Ngx {
                self.crashes.borrow_mut().push("resume from root".into());
            }
            return;
        }
        self.with_stream(|s| {
            s.upstream = true;
            s.paused = false;
        });
    }

    fn dispatch(
        &self,
        upstream: &str,
        headers: &[(&str, &str)],
        _timeout: Duration,
    ) -> Result<u32, HostError> {
        self.count("dispatch_http_call");
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let path = headers
            .iter()
            .find(|(n, _)| *n == ":path")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        self.calls.borrow_mut().push(Call {
            token,
            context: self.current.get(),
            upstream: upstream.to_string(),
            path,
        });
        Ok(token)
    }

    fn call_headers(&self) -> Result<Vec<Header>, HostError> {
        self.count("get_header_map_pairs (call)");
        let a = self.answer.borrow();
        if a.headers.is_empty() {
            return Err(BAD_ARGUMENT);
        }
        Ok(a.headers.clone())
    }

    fn call_header(&self, name: &str) -> Option<Vec<u8>> {
        self.count("get_header_map_value (call)");
        self.answer
            .borrow()
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn call_body(&self, size: usize) -> Vec<u8> {
        self.count("get_buffer_bytes");
        let a = self.answer.borrow();
        a.body.iter().take(size).copied().collect()
    }

    fn set_effective_context(&self, id: u32) -> Result<(), HostError> {
        self.count("set_effective_context");
        match self.kind {
            // ngx_wasm_module: accepted and ignored.
            HostKind::Ngx => Ok(()),
            HostKind::Envoy => {
                if id == ROOT || self.streams.borrow().contains_key(&id) {
                    self.current.set(id);
                    Ok(())
                } else {
                    Err(BAD_ARGUMENT)
                }
            }
        }
    }

    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        self.count("get_shared_data");
        if self.kind == HostKind::Ngx && !self.zone {
            self.trap("get_shared_data without shm_kv zone");
            return Err(HostError(10));
        }
        Ok(match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.count("set_shared_data");
        if self.kind == HostKind::Ngx && !self.zone {
            self.trap("set_shared_data without shm_kv zone");
            return Err(HostError(10));
        }
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        if let (Some(want), Some(have)) = (cas, current) {
            if want != have {
                return Err(super::host::CAS_MISMATCH);
            }
        }
        let next = current.unwrap_or(0) + 1;
        shared.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    fn define_metric(&self, _kind: MetricKind, name: &str) -> Option<u32> {
        self.count("define_metric");
        let mut metrics = self.metrics.borrow_mut();
        let id = match metrics.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                metrics.push((name.to_string(), 0));
                metrics.len() - 1
            }
        };
        u32::try_from(id).ok()
    }

    fn increment_metric(&self, id: u32, by: u64) {
        self.count("increment_metric");
        if let Some((_, v)) = self.metrics.borrow_mut().get_mut(id as usize) {
            *v += by;
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        self.count("record_metric");
        if let Some((_, v)) = self.metrics.borrow_mut().get_mut(id as usize) {
            *v = value;
        }
    }

    fn set_tick_period(&self, _period: Duration) {
        self.count("set_tick_period");
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the glue like a host
// ---------------------------------------------------------------------------------------------

struct Harness {
    host: Mock,
    root: Root,
    requests: HashMap<u32, Request>,
    next_id: u32,
}

impl Harness {
    fn new(host: Mock, config: Value) -> Harness {
        let mut root = Root::new(ROOT);
        host.current.set(ROOT);
        assert!(root.on_configure(&host, config.to_string().as_bytes()));
        Harness {
            host,
            root,
            requests: HashMap::new(),
            next_id: 10,
        }
    }

    /// A client request: `headers` as sent; returns its context id.
    fn send(&mut self, path: &str, headers: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let client_host = headers
            .iter()
            .find(|(n, _)| *n == "host")
            .map_or("api.test", |(_, v)| *v);
        let mut all: Vec<Header> = vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            (":scheme".into(), b"https".to_vec()),
        ];
        match self.host.kind {
            HostKind::Envoy => all.push((":authority".into(), client_host.as_bytes().to_vec())),
            HostKind::Ngx => {
                all.push((":authority".into(), b"kong:8000".to_vec()));
                all.push(("host".into(), client_host.as_bytes().to_vec()));
            }
        }
        for (n, v) in headers.iter().filter(|(n, _)| *n != "host") {
            all.push((n.to_string(), v.as_bytes().to_vec()));
        }
        let stream = Stream {
            client: all.clone(),
            view: all,
            ..Stream::default()
        };
        self.host.streams.borrow_mut().insert(id, stream);
        let mut request = self.root.new_request(id);
        self.host.current.set(id);
        let verdict = request.on_request_headers(&self.host);
        self.host.current.set(ROOT);
        if let Some(s) = self.host.streams.borrow_mut().get_mut(&id) {
            match verdict {
                Verdict::Continue => s.upstream = true,
                Verdict::Pause => s.paused = s.response.is_none(),
            }
        }
        self.requests.insert(id, request);
        id
    }

    fn tick(&mut self) {
        self.host.current.set(ROOT);
        self.root.on_tick(&self.host);
    }

    fn advance(&mut self, ms: u64) {
        self.host.now.set(self.host.now.get() + ms);
    }

    /// Deliver the answer of `call` to the context that dispatched it.
    fn deliver(&mut self, call: &Call, answer: Answer) {
        let num_headers = answer.headers.len();
        let body_size = answer.body.len();
        *self.host.answer.borrow_mut() = answer;
        self.host.current.set(call.context);
        if call.context == ROOT {
            self.root
                .on_call_response(&self.host, call.token, num_headers, body_size);
        } else if let Some(r) = self.requests.get_mut(&call.context) {
            r.on_call_response(&self.host, call.token, num_headers, body_size);
        }
        self.host.current.set(ROOT);
    }

    fn end(&mut self, id: u32) {
        if let Some(mut r) = self.requests.remove(&id) {
            self.host.current.set(id);
            r.on_done();
            self.host.current.set(ROOT);
        }
    }
}

fn jwks() -> Value {
    json!({"keys": [test_keys::ed25519_jwk()]})
}

fn token(claims: Value) -> String {
    test_keys::sign_ed25519(ISSUER, NOW / 1000, claims)
}

fn bearer() -> String {
    format!("Bearer {}", token(json!({"roles": ["reader"]})))
}

/// An inline-key configuration with a claim header and an anonymous health route.
fn inline(extra: Value) -> Value {
    let mut v = json!({
        "providers": [{"name": "idp", "issuer": ISSUER, "jwks": jwks()}],
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "allow_anonymous": true},
            {"name": "admin", "match": {"path_prefix": "/admin", "hosts": ["admin.test"]},
             "require": {"roles": {"any_of": ["admin"]}}}
        ],
        "default": "authenticated",
        "headers": {"claims": [{"claim": "sub", "header": "x-identity-subject"}]},
    });
    merge(&mut v, extra);
    v
}

/// A configuration whose keys come from `jwks_uri`.
fn remote(remote_keys: Value) -> Value {
    json!({
        "providers": [{"name": "idp", "issuer": ISSUER, "jwks_uri": "https://idp.test/keys",
                       "upstream": "127.0.0.1:9443", "cold_start_wait_ms": 3000}],
        "default": "authenticated",
        "headers": {"claims": [{"claim": "sub", "header": "x-identity-subject"}]},
        "remote_keys": remote_keys,
    })
}

fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
}

/// A JWKS answer as each host delivers it: ngx_wasm_module adds `:dispatch_status: ok`.
fn keys_answer(kind: HostKind) -> Answer {
    let mut headers: Vec<Header> = vec![
        (":status".into(), b"200".to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
    ];
    if kind == HostKind::Ngx {
        headers.insert(0, (":dispatch_status".into(), b"ok".to_vec()));
    }
    Answer {
        headers,
        body: jwks().to_string().into_bytes(),
    }
}

// ---------------------------------------------------------------------------------------------
// Host detection
// ---------------------------------------------------------------------------------------------

#[test]
fn each_host_is_recognized_without_reading_a_property_in_a_root_context() {
    for kind in [HostKind::Envoy, HostKind::Ngx] {
        let mut h = Harness::new(Mock::new(kind), inline(json!({})));
        let id = h.send("/health", &[]);
        assert!(h.host.went_upstream(id));
        let profile = h.root.state().unwrap().known_profile().unwrap();
        assert_eq!(profile.kind, kind);
        assert_eq!(h.host.logged(&format!("host {}", kind.name())), 1);
        h.host.assert_healthy();
    }
}

#[test]
fn the_root_probe_is_harmless_in_both_hosts() {
    for kind in [HostKind::Envoy, HostKind::Ngx] {
        let host = Mock::new(kind);
        assert_eq!(super::host::probe_kind(&host, ROOT), kind);
        assert_eq!(host.current.get(), ROOT);
        host.assert_healthy();
    }
}

// ---------------------------------------------------------------------------------------------
// Fact: a successful call answer carries `:dispatch_status: ok`
// ---------------------------------------------------------------------------------------------

#[test]
fn remote_keys_arrive_in_both_hosts_although_ngx_marks_answers_dispatch_status_ok() {
    for kind in [HostKind::Envoy, HostKind::Ngx] {
        let mut h = Harness::new(Mock::new(kind), remote(json!({})));
        h.tick();
        let calls = h.host.calls_from(ROOT);
        assert_eq!(calls.len(), 1, "{kind:?}");
        assert_eq!(calls[0].upstream, "127.0.0.1:9443");
        assert_eq!(calls[0].path, "/keys");
        h.deliver(&calls[0], keys_answer(kind));
        let id = h.send("/api", &[("authorization", &bearer())]);
        assert!(
            h.host.went_upstream(id),
            "{kind:?}: {:?}",
            h.host.status(id)
        );
        assert_eq!(
            h.host.upstream_values(id, "x-identity-subject"),
            vec!["alice"]
        );
        h.host.assert_healthy();
    }
}

#[test]
fn a_failed_call_named_by_dispatch_status_is_a_fetch_failure() {
    let mut h = Harness::new(Mock::ngx(), remote(json!({"waiting": "none"})));
    h.tick();
    let call = h.host.calls_from(ROOT)[0].clone();
    let failure = Answer {
        headers: vec![(":dispatch_status".into(), b"timeout".to_vec())],
        body: Vec::new(),
    };
    // Kong 3.9 reports the failure with no other header: num_headers is then 1.
    h.deliver(&call, failure);
    assert_eq!(h.host.logged("fetch failed: network"), 1);
    let id = h.send("/api", &[("authorization", &bearer())]);
    assert_eq!(h.host.status(id), Some(503));
    h.host.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Fact: removing or replacing a request header does not reach the upstream (ngx)
// ---------------------------------------------------------------------------------------------

const SPOOFS: [(&str, &str); 4] = [
    ("x-identity-subject", "admin"),
    ("x-identity-assertion", "forged.jwt.value"),
    ("x-identity-report", "allow; rule=admin"),
    ("x-identity-tenant", "acme"),
];

#[test]
fn in_ngx_a_request_with_client_sent_identity_is_refused_before_any_other_work() {
    for (name, value) in SPOOFS {
        for path in ["/health", "/api"] {
            let mut h = Harness::new(Mock::ngx(), inline(json!({})));
            let id = h.send(path, &[(name, value), ("authorization", &bearer())]);
            assert!(
                !h.host.went_upstream(id),
                "{name} on {path} reached the upstream"
            );
            assert_eq!(h.host.status(id), Some(400));
            assert_eq!(
                h.host.response_header(id, "x-identity-reason").as_deref(),
                Some("identity_header_spoofed")
            );
            h.host.assert_healthy();
        }
    }
}

#[test]
fn in_envoy_client_sent_identity_is_stripped_and_never_reaches_the_upstream() {
    for (name, value) in SPOOFS {
        let mut h = Harness::new(Mock::envoy(), inline(json!({})));
        let id = h.send("/api", &[(name, value), ("authorization", &bearer())]);
        assert!(h.host.went_upstream(id));
        let got = h.host.upstream_values(id, name);
        if name == "x-identity-subject" {
            assert_eq!(got, vec!["alice"]);
        } else {
            assert!(got.is_empty(), "{name}: {got:?}");
        }
    }
}

#[test]
fn strip_in_ngx_would_let_spoofed_identity_through_so_it_is_warned_about() {
    let config = inline(json!({"headers": {
        "claims": [{"claim": "sub", "header": "x-identity-subject"}], "spoofed_headers": "strip"}}));
    let mut h = Harness::new(Mock::ngx(), config);
    let id = h.send(
        "/api",
        &[
            ("x-identity-subject", "admin"),
            ("authorization", &bearer()),
        ],
    );
    // The host's own behaviour, which is why `auto` chooses `reject` there.
    assert_eq!(
        h.host.upstream_values(id, "x-identity-subject"),
        vec!["admin".to_string(), "alice".to_string()]
    );
    assert_eq!(h.host.logged("spoofed_headers is `strip`"), 1);
}

#[test]
fn reject_can_be_chosen_in_envoy_too() {
    let config = inline(json!({"headers": {"spoofed_headers": "reject"}}));
    let mut h = Harness::new(Mock::envoy(), config);
    let id = h.send("/health", &[("X-Identity-Email", "a@b")]);
    assert_eq!(h.host.status(id), Some(400));
    let clean = h.send("/health", &[]);
    assert!(h.host.went_upstream(clean));
}

#[test]
fn in_ngx_the_decision_log_does_not_claim_the_token_was_removed() {
    let mut h = Harness::new(Mock::ngx(), inline(json!({})));
    let id = h.send("/api", &[("authorization", &bearer())]);
    assert!(h.host.went_upstream(id));
    // The token reaches the upstream in this host, whatever the filter asked for.
    assert_eq!(h.host.upstream_values(id, "authorization").len(), 1);
    assert_eq!(h.host.logged("\"token_removed\":false"), 1);
    assert_eq!(h.host.logged("forward_token is false"), 1);

    let mut e = Harness::new(Mock::envoy(), inline(json!({})));
    let id = e.send("/api", &[("authorization", &bearer())]);
    assert!(e.host.upstream_values(id, "authorization").is_empty());
    assert_eq!(e.host.logged("\"token_removed\":true"), 1);
}

// ---------------------------------------------------------------------------------------------
// Fact: set_effective_context from the root context, then resuming or answering, crashes (ngx)
// ---------------------------------------------------------------------------------------------

#[test]
fn in_ngx_cold_start_waiters_are_woken_by_their_own_fetch_never_from_the_root() {
    let mut h = Harness::new(Mock::ngx(), remote(json!({})));
    let a = h.send("/api", &[("authorization", &bearer())]);
    let b = h.send("/api", &[("authorization", &bearer())]);
    assert_eq!(h.host.status(a), None);
    assert_eq!(
        h.host.calls_from(a).len(),
        1,
        "a waits on a fetch of its own"
    );
    assert_eq!(h.host.calls_from(b).len(), 1);
    // The root's own fetch answers first: nobody may be woken from there.
    h.tick();
    for call in h.host.calls_from(ROOT) {
        h.deliver(&call, keys_answer(HostKind::Ngx));
    }
    assert!(!h.host.went_upstream(a) && !h.host.went_upstream(b));
    for id in [a, b] {
        let call = h.host.calls_from(id)[0].clone();
        h.deliver(&call, keys_answer(HostKind::Ngx));
        assert!(h.host.went_upstream(id));
    }
    // A waiter that outlives its wait is not answered from the root either.
    h.advance(10_000);
    h.tick();
    h.host.assert_healthy();
}

#[test]
fn in_ngx_an_explicit_resume_is_taken_as_own_fetch() {
    let mut h = Harness::new(Mock::ngx(), remote(json!({"waiting": "resume"})));
    let a = h.send("/api", &[("authorization", &bearer())]);
    assert_eq!(h.host.calls_from(a).len(), 1);
    assert_eq!(h.host.logged("`resume` cannot work in this host"), 1);
    h.advance(10_000);
    h.tick();
    h.host.assert_healthy();
}

#[test]
fn in_envoy_waiters_are_resumed_by_the_root_contexts_one_fetch() {
    let mut h = Harness::new(Mock::envoy(), remote(json!({})));
    let a = h.send("/api", &[("authorization", &bearer())]);
    let b = h.send("/api", &[("authorization", &bearer())]);
    assert!(h.host.calls_from(a).is_empty() && h.host.calls_from(b).is_empty());
    h.tick();
    let calls = h.host.calls_from(ROOT);
    assert_eq!(calls.len(), 1);
    h.deliver(&calls[0], keys_answer(HostKind::Envoy));
    assert!(h.host.went_upstream(a) && h.host.went_upstream(b));
    h.host.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Facts: a trap in a call-response callback lets the paused request through, and shared data
// without an shm_kv zone traps (ngx)
// ---------------------------------------------------------------------------------------------

fn bad_token() -> String {
    let mut t = token(json!({}));
    t.push('A');
    format!("Bearer {t}")
}

#[test]
fn in_ngx_shared_data_without_a_zone_never_traps_and_bad_tokens_stay_refused() {
    let mut h = Harness::new(Mock::ngx(), remote(json!({"shared_data": true})));
    let bad = h.send("/api", &[("authorization", &bad_token())]);
    let good = h.send("/api", &[("authorization", &bearer())]);
    for id in [bad, good] {
        let call = h.host.calls_from(id)[0].clone();
        h.deliver(&call, keys_answer(HostKind::Ngx));
    }
    for _ in 0..5 {
        h.tick();
        for call in h.host.calls_from(ROOT) {
            h.deliver(&call, keys_answer(HostKind::Ngx));
        }
        h.advance(700_000);
    }
    assert_eq!(h.host.status(bad), Some(401));
    assert!(!h.host.went_upstream(bad));
    assert!(h.host.went_upstream(good));
    assert_eq!(h.host.logged("no shm_kv zone is known"), 1);
    h.host.assert_healthy();
}

#[test]
fn in_ngx_with_a_zone_shared_data_is_used_only_while_no_request_is_paused() {
    let mut host = Mock::ngx();
    host.zone = true;
    let mut h = Harness::new(host, remote(json!({"shared_data": true})));
    let a = h.send("/api", &[("authorization", &bearer())]);
    // While `a` waits, the tick must not touch shared data.
    h.tick();
    assert!(h.host.shared.borrow().is_empty());
    let call = h.host.calls_from(a)[0].clone();
    h.deliver(&call, keys_answer(HostKind::Ngx));
    assert!(h.host.went_upstream(a));
    assert!(
        h.host.shared.borrow().is_empty(),
        "not written inside the callback"
    );
    h.tick();
    let shared = h.host.shared.borrow();
    assert!(
        shared.keys().any(|k| k.ends_with(".set")),
        "{:?}",
        shared.keys()
    );
    drop(shared);
    h.host.assert_healthy();
}

#[test]
fn in_envoy_shared_data_is_used_from_the_first_tick() {
    let mut h = Harness::new(Mock::envoy(), remote(json!({"shared_data": true})));
    h.tick();
    assert!(h.host.shared.borrow().keys().any(|k| k.ends_with(".lease")));
    let calls = h.host.calls_from(ROOT);
    h.deliver(&calls[0], keys_answer(HostKind::Envoy));
    h.tick();
    assert!(h.host.shared.borrow().keys().any(|k| k.ends_with(".set")));
    h.host.assert_healthy();
}

#[test]
fn a_request_that_ends_while_waiting_is_no_longer_counted_as_paused() {
    let mut h = Harness::new(Mock::ngx(), remote(json!({})));
    let a = h.send("/api", &[("authorization", &bearer())]);
    assert_eq!(paused_requests(), 1);
    h.end(a);
    assert_eq!(paused_requests(), 0);
    h.host.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// Fact: `:authority` is nginx's server_name:port; the client's host is in `host` (ngx)
// ---------------------------------------------------------------------------------------------

#[test]
fn host_rules_match_the_host_the_client_asked_for_in_both_hosts() {
    for kind in [HostKind::Envoy, HostKind::Ngx] {
        let mut h = Harness::new(Mock::new(kind), inline(json!({})));
        // The admin rule applies to admin.test only: a reader is refused there...
        let admin = h.send(
            "/admin/x",
            &[("host", "admin.test"), ("authorization", &bearer())],
        );
        assert_eq!(h.host.status(admin), Some(403), "{kind:?}");
        // ... and let through on another host, where the default (authenticated) applies.
        let other = h.send(
            "/admin/x",
            &[("host", "api.test"), ("authorization", &bearer())],
        );
        assert!(h.host.went_upstream(other), "{kind:?}");
        h.host.assert_healthy();
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration that cannot work
// ---------------------------------------------------------------------------------------------

#[test]
fn an_invalid_configuration_answers_500_in_both_hosts() {
    for kind in [HostKind::Envoy, HostKind::Ngx] {
        let mut h = Harness::new(Mock::new(kind), json!({"providers": []}));
        let id = h.send("/api", &[]);
        assert_eq!(h.host.status(id), Some(500));
        h.host.assert_healthy();
    }
}

// ---------------------------------------------------------------------------------------------
// Key strength
// ---------------------------------------------------------------------------------------------

#[test]
fn a_short_inline_rsa_key_is_logged_once_at_configuration_and_the_filter_serves() {
    let small = json!({"kty": "RSA", "kid": "old", "n": test_keys::b64(&[0xcb; 128]), "e": "AQAB"});
    let keys = json!({"keys": [small, test_keys::ed25519_jwk()]});
    let config = inline(json!({
        "providers": [{"name": "idp", "issuer": ISSUER, "jwks": keys}],
    }));
    for kind in [HostKind::Envoy, HostKind::Ngx] {
        let mut h = Harness::new(Mock::new(kind), config.clone());
        assert_eq!(
            h.host.logged(
                "provider \"idp\" key keys[0] (kid \"old\"): RSA modulus has 1024 bits \
                 (min_rsa_bits 2048): skipped"
            ),
            1
        );
        let bearer = bearer();
        let id = h.send("/x", &[("authorization", bearer.as_str())]);
        assert!(h.host.went_upstream(id), "the rest of the set works");
        h.host.assert_healthy();
    }
}

// ---------------------------------------------------------------------------------------------
// DPoP: the proof names the host the client asked for; proofs are shared between workers only
// where shared data is safe (Envoy)
// ---------------------------------------------------------------------------------------------

mod dpop {
    use super::*;
    use crate::dpop::test_proofs::{client_key, jkt, proof};

    fn bound() -> String {
        token(json!({"cnf": {"jkt": jkt(&client_key())}}))
    }

    fn config() -> Value {
        inline(json!({"headers": {"claims": [
            {"identity": "binding", "header": "x-identity-binding"}
        ]}}))
    }

    fn send(h: &mut Harness, token: &str, htu: &str, jti: &str) -> u32 {
        let p = proof(token, "GET", htu, jti, NOW / 1000);
        let auth = format!("DPoP {token}");
        h.send(
            "/api/runs?x=1",
            &[("host", "api.test"), ("authorization", &auth), ("dpop", &p)],
        )
    }

    /// A second worker's filter on the same host (its own memory, the host's shared data),
    /// taking the requests `h` sends until swapped back.
    fn swap_worker(h: &mut Harness, other: &mut Root) {
        std::mem::swap(&mut h.root, other);
    }

    fn second_worker(h: &Harness) -> Root {
        let mut root = Root::new(ROOT + 1);
        h.host.current.set(ROOT + 1);
        assert!(root.on_configure(&h.host, config().to_string().as_bytes()));
        h.host.current.set(ROOT);
        root
    }

    #[test]
    fn the_htu_is_the_host_the_client_asked_for_in_both_hosts() {
        for kind in [HostKind::Envoy, HostKind::Ngx] {
            let mut h = Harness::new(Mock::new(kind), config());
            let t = bound();
            let id = send(&mut h, &t, "https://api.test/api/runs", "a");
            assert!(h.host.went_upstream(id), "{kind:?}");
            assert_eq!(
                h.host.upstream_values(id, "x-identity-binding"),
                vec!["dpop".to_string()],
                "{kind:?}"
            );
            // Kong's `:authority` is nginx's server_name:port: a proof naming it is refused.
            let id = send(&mut h, &t, "https://kong:8000/api/runs", "b");
            assert_eq!(h.host.status(id), Some(401), "{kind:?}");
            assert_eq!(
                h.host.response_header(id, "x-identity-reason").as_deref(),
                Some("dpop_proof_invalid"),
                "{kind:?}"
            );
            h.host.assert_healthy();
        }
    }

    #[test]
    fn in_ngx_the_public_base_url_names_the_htu() {
        let mut c = config();
        merge(
            &mut c,
            json!({"dpop": {"public_base_url": "https://api.example.com"}}),
        );
        let mut h = Harness::new(Mock::ngx(), c);
        let id = send(&mut h, &bound(), "https://api.example.com/api/runs", "a");
        assert!(h.host.went_upstream(id));
        h.host.assert_healthy();
    }

    #[test]
    fn in_envoy_a_proof_used_at_one_worker_is_refused_at_another() {
        let mut h = Harness::new(Mock::envoy(), config());
        let t = bound();
        let first = send(&mut h, &t, "https://api.test/api/runs", "once");
        assert!(h.host.went_upstream(first));
        assert!(h
            .host
            .shared
            .borrow()
            .keys()
            .any(|k| k.starts_with("identity_filter.dpop.")));
        let mut other = second_worker(&h);
        swap_worker(&mut h, &mut other);
        let replay = send(&mut h, &t, "https://api.test/api/runs", "once");
        assert_eq!(
            h.host
                .response_header(replay, "x-identity-reason")
                .as_deref(),
            Some("dpop_proof_replayed")
        );
        let fresh = send(&mut h, &t, "https://api.test/api/runs", "twice");
        assert!(h.host.went_upstream(fresh));
        h.host.assert_healthy();
    }

    #[test]
    fn in_ngx_proofs_stay_per_worker_and_shared_data_is_never_touched() {
        let mut h = Harness::new(Mock::ngx(), config());
        let t = bound();
        let first = send(&mut h, &t, "https://api.test/api/runs", "once");
        assert!(h.host.went_upstream(first));
        let replay = send(&mut h, &t, "https://api.test/api/runs", "once");
        assert_eq!(
            h.host
                .response_header(replay, "x-identity-reason")
                .as_deref(),
            Some("dpop_proof_replayed")
        );
        // The documented limit: another worker has its own cache.
        let mut other = second_worker(&h);
        swap_worker(&mut h, &mut other);
        let elsewhere = send(&mut h, &t, "https://api.test/api/runs", "once");
        assert!(h.host.went_upstream(elsewhere));
        assert!(h.host.shared.borrow().is_empty());
        h.host.assert_healthy();
    }

    #[test]
    fn shared_buckets_are_bounded_and_drop_expired_proofs() {
        use crate::filter::replay::{update, BUCKET_ENTRIES};
        let mut bucket = Vec::new();
        for i in 0..(BUCKET_ENTRIES as u8 + 4) {
            let (seen, next) = update(&bucket, &[i; 16], 100 + u64::from(i), 50);
            assert!(!seen);
            bucket = next;
        }
        assert_eq!(bucket.len(), BUCKET_ENTRIES * 24);
        // The four expiring first were dropped; the newest are there.
        assert!(!update(&bucket, &[0; 16], 200, 50).0);
        assert!(update(&bucket, &[19; 16], 200, 50).0);
        // Once expired, a proof is forgotten.
        assert!(!update(&bucket, &[19; 16], 200, 120).0);
    }
}

// ---------------------------------------------------------------------------------------------
// Certificate-bound tokens (RFC 8705): which sources each host can give
// ---------------------------------------------------------------------------------------------

/// The SHA-256 (hex) and `x5t#S256` of the certificate in `crate::mtls`'s tests.
const CERT_HEX: &str = "07456eb1c06dc90693bd7f42dd282a1b95467ace748e82361529ce83c4bbbd00";
const CERT_X5T: &str = "B0VuscBtyQaTvX9C3SgqG5VGes50joI2FSnOg8S7vQA";
/// That certificate as nginx's `$ssl_client_escaped_cert` (URL-encoded PEM).
const CERT_ESCAPED: &str = "-----BEGIN%20CERTIFICATE-----%0AMIIBgjCCASmgAwIBAgIUOhmSD6vyYsFjjcDIbmfJQGpx6XwwCgYIKoZIzj0EAwIw%0AFzEVMBMGA1UEAwwMY2xpZW50LE89YTtiMB4XDTI2MTIwNjAwMDkzMVoXDTM2MTIw%0AMzAwMDkzMVowFzEVMBMGA1UEAwwMY2xpZW50LE89YTtiMFkwEwYHKoZIzj0CAQYI%0AKoZIzj0DAQcDQgAEnci4GTB%2FzASczuVfZuHCk0ctZxjpM1HKZ0lfFN7Wc0ScvTo7%0AiO34iJwGNltwKwc%2FwHdz5eDe8NvipssryO%2BCLqNTMFEwHQYDVR0OBBYEFAgP8rBi%0A9owR48z3o5lYVoVKvTX%2FMB8GA1UdIwQYMBaAFAgP8rBi9owR48z3o5lYVoVKvTX%2F%0AMA8GA1UdEwEB%2FwQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgEKabCbB3U%2FcJvzr2%0ArOjgQF0mHvKfhT%2FDG3vncOOUZnECIEKitwCi6%2BlNHp8spFiHMg2qvtXwDUHx%2BiYj%0APbAFc3Zn%0A-----END%20CERTIFICATE-----%0A";

fn bound_bearer() -> String {
    format!("Bearer {}", token(json!({"cnf": {"x5t#S256": CERT_X5T}})))
}

fn with_binding(extra: Value) -> Value {
    let mut v = inline(json!({"headers": {"claims": [
        {"claim": "sub", "header": "x-identity-subject"},
        {"identity": "binding", "header": "x-identity-binding"}]}}));
    merge(&mut v, extra);
    v
}

#[test]
fn in_envoy_the_connection_certificate_is_read_in_the_request_and_binds_the_token() {
    let mut h = Harness::new(Mock::envoy(), with_binding(json!({})));
    *h.host.peer_digest.borrow_mut() = Some(CERT_HEX.into());
    let id = h.send("/api", &[("authorization", &bound_bearer())]);
    assert!(h.host.went_upstream(id));
    assert_eq!(
        h.host.upstream_values(id, "x-identity-binding"),
        vec!["mtls"]
    );
    let read = h.host.properties_read.borrow().clone();
    assert!(read.contains(&(id, "connection.sha256_peer_certificate_digest".into())));
    assert!(read.iter().all(|(ctx, _)| *ctx != ROOT), "{read:?}");
    // Another connection without a certificate: the cached token is refused.
    *h.host.peer_digest.borrow_mut() = None;
    let id = h.send("/api", &[("authorization", &bound_bearer())]);
    assert_eq!(h.host.status(id), Some(401));
    assert_eq!(
        h.host.response_header(id, "x-identity-reason").as_deref(),
        Some("certificate_missing")
    );
    h.host.assert_healthy();
}

#[test]
fn in_envoy_the_certificate_is_read_only_for_a_bound_token_and_before_it_waits_for_keys() {
    let certificate_reads = |h: &Harness| {
        h.host
            .properties_read
            .borrow()
            .iter()
            .filter(|(_, p)| p == "connection.sha256_peer_certificate_digest")
            .count()
    };
    // Inline keys: an unbound token needs no certificate.
    let mut h = Harness::new(Mock::envoy(), with_binding(json!({})));
    let id = h.send("/api", &[("authorization", &bearer())]);
    assert!(h.host.went_upstream(id));
    assert_eq!(certificate_reads(&h), 0);
    // Remote keys: bound tokens wait for the fetch, woken from the root context, where no
    // property may be read: each was read in its own request before it waited.
    let mut h = Harness::new(Mock::envoy(), remote(json!({})));
    *h.host.peer_digest.borrow_mut() = Some(CERT_HEX.into());
    let bound = h.send("/api", &[("authorization", &bound_bearer())]);
    *h.host.peer_digest.borrow_mut() = None;
    let without = h.send("/api", &[("authorization", &bound_bearer())]);
    assert_eq!(certificate_reads(&h), 2);
    h.tick();
    let calls = h.host.calls_from(ROOT);
    assert_eq!(calls.len(), 1);
    h.deliver(&calls[0], keys_answer(HostKind::Envoy));
    assert!(h.host.went_upstream(bound));
    assert!(!h.host.went_upstream(without));
    assert_eq!(
        h.host
            .response_header(without, "x-identity-reason")
            .as_deref(),
        Some("certificate_missing")
    );
    assert_eq!(certificate_reads(&h), 2);
    h.host.assert_healthy();
}

#[test]
fn in_ngx_the_connection_source_is_unavailable_and_fails_closed() {
    // ngx_wasm_module does not implement `connection.sha256_peer_certificate_digest`, even on a
    // TLS connection with a client certificate.
    let mut host = Mock::ngx();
    *host.peer_digest.get_mut() = Some(CERT_HEX.into());
    let mut h = Harness::new(host, with_binding(json!({})));
    let id = h.send("/api", &[("authorization", &bound_bearer())]);
    assert!(!h.host.went_upstream(id));
    assert_eq!(h.host.status(id), Some(500));
    assert_eq!(
        h.host.response_header(id, "x-identity-reason").as_deref(),
        Some("certificate_unavailable")
    );
    assert_eq!(
        h.host.logged("client_certificate.source is `connection`"),
        1
    );
    assert!(h
        .host
        .properties_read
        .borrow()
        .iter()
        .all(|(_, p)| p != "connection.sha256_peer_certificate_digest"));
    // Tokens that are not bound still work.
    let id = h.send("/api", &[("authorization", &bearer())]);
    assert!(h.host.went_upstream(id));
    assert_eq!(
        h.host.upstream_values(id, "x-identity-binding"),
        vec!["none"]
    );
    // With a provider that requires bound tokens, the message is an error.
    let mut config = with_binding(json!({}));
    config["providers"][0]["certificate_bound"] = json!("required");
    let mut h = Harness::new(Mock::ngx(), config);
    let id = h.send("/api", &[("authorization", &bearer())]);
    assert_eq!(h.host.status(id), Some(401));
    assert!(h
        .host
        .logs
        .borrow()
        .iter()
        .any(|(l, m)| *l == Level::Error && m.contains("certificate_unavailable")));
    h.host.assert_healthy();
}

#[test]
fn the_header_forms_work_in_both_hosts() {
    let xfcc = format!("By=spiffe://terminator;Hash={CERT_HEX}");
    let forms = [
        (
            json!({"source": "xfcc"}),
            "x-forwarded-client-cert",
            xfcc.as_str(),
        ),
        (
            json!({"source": "header", "header": "x-ssl-client-cert"}),
            "x-ssl-client-cert",
            CERT_ESCAPED,
        ),
    ];
    for kind in [HostKind::Envoy, HostKind::Ngx] {
        for (source, name, value) in &forms {
            let config = with_binding(json!({"client_certificate": source}));
            let mut h = Harness::new(Mock::new(kind), config);
            // Set by the TLS terminator in front, as the only copy.
            let id = h.send("/api", &[(name, value), ("authorization", &bound_bearer())]);
            assert!(h.host.went_upstream(id), "{kind:?} {name}");
            assert_eq!(
                h.host.upstream_values(id, "x-identity-binding"),
                vec!["mtls"],
                "{kind:?} {name}"
            );
            // Envoy removes the header the filter consumed; nginx forwards it (it is the
            // terminator's own).
            let forwarded = h.host.upstream_values(id, name);
            match kind {
                HostKind::Envoy => assert!(forwarded.is_empty(), "{forwarded:?}"),
                HostKind::Ngx => assert_eq!(forwarded, vec![value.to_string()]),
            }
            // Another certificate, and none: refused with their reasons.
            let other = format!("Hash={}", "ab".repeat(32));
            let other = if *name == "x-forwarded-client-cert" {
                other
            } else {
                CERT_ESCAPED.replace("MIIBgjCC", "MIIBgjCD")
            };
            let id = h.send(
                "/api",
                &[(name, &other), ("authorization", &bound_bearer())],
            );
            assert_eq!(
                h.host.response_header(id, "x-identity-reason").as_deref(),
                Some("certificate_mismatch"),
                "{kind:?} {name}"
            );
            let id = h.send("/api", &[("authorization", &bound_bearer())]);
            assert_eq!(
                h.host.response_header(id, "x-identity-reason").as_deref(),
                Some("certificate_missing")
            );
            h.host.assert_healthy();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host calls per request: the budget
// ---------------------------------------------------------------------------------------------

/// What each request costs in host calls once the first request of the root context has learnt
/// the host (that one also reads `ngx.nginx_version`) and the token is in the cache. A change
/// that adds a host call to one of these paths fails here: raise a budget only knowingly.
mod host_calls {
    use super::*;

    const SUBJECT_HEADER: &str = "x-identity-subject";

    /// `make bench`'s configuration: one RS256 provider with an inline key, `sub` copied into a
    /// header, metrics on, decision logs off (on, each decision is one `proxy_log` more); and an
    /// anonymous route.
    fn config() -> Value {
        let mut jwk = test_keys::rsa_jwk(test_keys::RSA_1);
        merge(
            &mut jwk,
            json!({"kid": "rsa-1", "alg": "RS256", "use": "sig"}),
        );
        json!({
            "providers": [{"name": "idp", "issuer": ISSUER, "jwks": {"keys": [jwk]},
                           "algorithms": ["RS256"]}],
            "rules": [{"name": "health", "match": {"path": "/health"}, "allow_anonymous": true}],
            "default": "authenticated",
            "headers": {"claims": [{"claim": "sub", "header": SUBJECT_HEADER}]},
            "log": {"decisions": false},
            "metrics": {"enabled": true},
        })
    }

    fn rs256_bearer() -> String {
        format!(
            "Bearer {}",
            test_keys::sign_rs256(ISSUER, NOW / 1000, json!({}))
        )
    }

    fn calls(list: &[(&'static str, usize)]) -> BTreeMap<&'static str, usize> {
        list.iter().copied().collect()
    }

    /// The host calls of the second of two identical requests (the first learns the host and
    /// fills the cache), after checking it went as `upstream` says.
    fn second(
        h: &mut Harness,
        path: &str,
        headers: &[(&str, &str)],
        upstream: bool,
    ) -> BTreeMap<&'static str, usize> {
        let first = h.send(path, headers);
        assert_eq!(h.host.went_upstream(first), upstream);
        h.host.take_calls();
        let id = h.send(path, headers);
        assert_eq!(
            h.host.went_upstream(id),
            upstream,
            "status {:?}",
            h.host.status(id)
        );
        let counted = h.host.take_calls();
        h.end(id);
        assert!(
            h.host.take_calls().is_empty(),
            "the end of a request makes no host call"
        );
        h.host.assert_healthy();
        counted
    }

    #[test]
    fn a_cached_rs256_request_makes_four_host_calls_in_both_hosts() {
        for host in [Mock::envoy(), Mock::ngx()] {
            let kind = host.kind;
            let mut h = Harness::new(host, config());
            let token = rs256_bearer();
            let got = second(&mut h, "/api", &[("authorization", &token)], true);
            assert_eq!(
                got,
                calls(&[
                    // The request's headers, all of them in one map (never one call per header).
                    ("get_header_map_pairs", 1),
                    // The time, for the cached token's `exp` (and `nbf`, `iat`) check.
                    ("get_current_time_nanoseconds", 1),
                    // The token taken out (`headers.forward_token: false`). ngx_wasm_module
                    // forwards it anyway, but the filter chain sees it removed.
                    ("remove_header_map_value", 1),
                    // The claim header set.
                    ("replace_header_map_value", 1),
                    // Not here: the `allowed` counter (counted in the module, handed over on a
                    // tick), the profile (learnt once), a log line (decision logs off).
                ]),
                "{kind:?}"
            );
            let sub = h.host.upstream_values(h.next_id - 1, SUBJECT_HEADER);
            assert_eq!(sub, vec!["alice".to_string()], "{kind:?}");
            assert_eq!(
                h.root.state().map(|s| s.engine.as_ref().map(|_| s
                    .caches
                    .borrow()
                    .cache_stats()
                    .1)),
                Some(Some(1)),
                "{kind:?}: a cache hit"
            );
        }
    }

    #[test]
    fn a_missing_token_401_makes_two_host_calls_in_both_hosts() {
        for host in [Mock::envoy(), Mock::ngx()] {
            let kind = host.kind;
            let mut h = Harness::new(host, config());
            let got = second(&mut h, "/api", &[], false);
            assert_eq!(h.host.status(h.next_id - 1), Some(401), "{kind:?}");
            assert_eq!(
                got,
                calls(&[
                    ("get_header_map_pairs", 1),
                    // The 401 itself. No clock: without a token nothing is timed.
                    ("send_local_response", 1),
                ]),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn an_anonymous_request_without_a_token_makes_one_host_call_in_both_hosts() {
        for host in [Mock::envoy(), Mock::ngx()] {
            let kind = host.kind;
            let mut h = Harness::new(host, config());
            let got = second(&mut h, "/health", &[], true);
            // The headers, read once: no managed header to strip, no token, no clock.
            assert_eq!(got, calls(&[("get_header_map_pairs", 1)]), "{kind:?}");
        }
    }

    #[test]
    fn counts_reach_the_host_every_64_requests_or_on_the_tick_one_call_per_counter() {
        for host in [Mock::envoy(), Mock::ngx()] {
            let kind = host.kind;
            let mut h = Harness::new(host, config());
            assert_eq!(
                h.host.take_calls().get("set_tick_period"),
                Some(&1),
                "{kind:?}: a timer for the counts"
            );
            let token = rs256_bearer();
            for _ in 0..super::super::metrics::FLUSH_EVERY - 1 {
                h.send("/api", &[("authorization", &token)]);
            }
            assert_eq!(
                h.host.take_calls().get("increment_metric"),
                None,
                "{kind:?}"
            );
            assert_eq!(h.host.metric("identity_filter.allowed"), Some(0));
            h.send("/api", &[("authorization", &token)]);
            assert_eq!(
                h.host.take_calls().get("increment_metric"),
                Some(&1),
                "{kind:?}"
            );
            assert_eq!(
                h.host.metric("identity_filter.allowed"),
                Some(64),
                "{kind:?}"
            );

            h.send("/api", &[]);
            h.send("/api", &[]);
            h.send("/api", &[("authorization", &token)]);
            assert_eq!(
                h.host.metric("identity_filter.denied"),
                Some(0),
                "{kind:?}: not yet"
            );
            h.host.take_calls();
            h.tick();
            // One call per counter that moved: allowed, denied, denied.token_missing.
            assert_eq!(
                h.host.take_calls(),
                calls(&[("increment_metric", 3)]),
                "{kind:?}"
            );
            assert_eq!(
                h.host.metric("identity_filter.allowed"),
                Some(65),
                "{kind:?}"
            );
            assert_eq!(h.host.metric("identity_filter.denied"), Some(2), "{kind:?}");
            assert_eq!(
                h.host.metric("identity_filter.denied.token_missing"),
                Some(2),
                "{kind:?}"
            );
            // A quiet tick costs nothing (inline keys: no fetch work either).
            h.tick();
            assert!(h.host.take_calls().is_empty(), "{kind:?}");
            // A new configuration hands over what the old one counted.
            h.send("/api", &[]);
            assert!(h
                .root
                .on_configure(&h.host, config().to_string().as_bytes()));
            assert_eq!(h.host.metric("identity_filter.denied"), Some(3), "{kind:?}");
            h.host.assert_healthy();
        }
    }

    #[test]
    fn without_metrics_or_remote_keys_there_is_no_timer() {
        let mut c = config();
        merge(&mut c, json!({"metrics": {"enabled": false}}));
        let h = Harness::new(Mock::envoy(), c);
        assert_eq!(h.host.take_calls().get("set_tick_period"), None);
    }
}
