//! Raw bytes as a request, in a text form a seed can be written in:
//!
//! ```text
//! <control byte><time byte>GET /path?query api.test
//! authorization: Bearer eyJ...
//! cookie: session=...
//! ```
//!
//! The control byte picks the configuration (low bits) and whether the host refuses
//! client-sent identity headers (`0x80`, as in Kong); the time byte moves "now" around the
//! harness's [`crate::NOW`]. Bytes are read as (lossy) UTF-8, as the host hands strings over.

use identity_filter::RequestFacts;

/// A request line or header value as a host hands it to the filter: Envoy's and Kong's HTTP
/// codecs refuse control characters in header values and paths, so they never reach the
/// filter (and the filter's rewritten `cookie` / `:path`, which keep the client's other
/// cookies and parameters, cannot carry any).
pub fn as_host_delivers(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// One decoded input of the raw request target.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub config: usize,
    pub now: u64,
    pub facts: RequestFacts,
}

/// "Now" for a time byte: before, around and well after the tokens' lifetimes.
pub fn now_for(t: u8) -> u64 {
    let offset = i64::from(t as i8) * 97;
    crate::NOW.saturating_add_signed(offset)
}

pub fn parse(data: &[u8]) -> RawRequest {
    let (control, rest) = data.split_first().map_or((0, data), |(c, r)| (*c, r));
    let (time, rest) = rest.split_first().map_or((0, rest), |(t, r)| (*t, r));
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let mut parts = first.splitn(3, ' ');
    let method = as_host_delivers(parts.next().unwrap_or_default());
    let path = as_host_delivers(parts.next().unwrap_or("/"));
    let authority = as_host_delivers(parts.next().unwrap_or("api.test"));
    let headers = lines
        .map(|line| match line.split_once(':') {
            Some((name, value)) => (as_host_delivers(name), as_host_delivers(value.trim_start())),
            None => (as_host_delivers(line), String::new()),
        })
        .collect();
    RawRequest {
        config: usize::from(control & 0x7f),
        now: now_for(time),
        facts: RequestFacts {
            method,
            path,
            authority,
            scheme: "https".into(),
            headers,
            nonce: "fuzz-nonce-1".into(),
            reject_spoofed: control & 0x80 != 0,
            peer_certificate: Default::default(),
        },
    }
}

/// The inverse of [`parse`], for writing seeds.
pub fn encode(config: u8, time: u8, facts: &RequestFacts) -> Vec<u8> {
    let mut out = vec![config | if facts.reject_spoofed { 0x80 } else { 0 }, time];
    out.extend_from_slice(
        format!("{} {} {}", facts.method, facts.path, facts.authority).as_bytes(),
    );
    for (name, value) in &facts.headers {
        out.extend_from_slice(format!("\n{name}: {value}").as_bytes());
    }
    out
}
