//! Times reading a fetched JWKS the way the filter does (`fetch::Answer::key_set`: the size
//! and JSON token budget, `serde_json` into a `Value`, then the key set), and for comparison
//! reading it as an inline set (every key prepared at once). Built with `--features jwks`; run by `crypto-bench/jwks_parse.py`, which
//! generates the key sets and runs this under Wasmtime.
//!
//! Usage: jwks-parse FILE... ; prints per file
//! `JWKS <tab> file <tab> bytes <tab> remote median ms <tab> remote min ms <tab> inline median ms
//! <tab> outcome`, in thread CPU time (the `bench.thread_cpu_ns` import in wasm).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use identity_filter::{Answer, KeySet, Origin, MIN_RSA_BITS};
use serde_json::Value;

#[path = "../cpu.rs"]
mod cpu;
use cpu::cpu_ns;

/// The bound of `providers[].max_response_bytes`.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

fn median_min(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (samples[samples.len() / 2], samples[0])
}

fn main() {
    for path in std::env::args().skip(1) {
        let body = std::fs::read(&path).unwrap();
        let mut outcome = String::new();
        let mut remote = Vec::new();
        for _ in 0..11 {
            let answer = Answer {
                status: Some(200),
                body_size: body.len(),
                body: body.clone(),
                ..Answer::default()
            };
            let t = cpu_ns();
            let result = answer
                .key_set(MAX_RESPONSE_BYTES, MIN_RSA_BITS)
                .map(|(set, _)| set.len())
                .map_err(|e| e.to_string());
            remote.push((cpu_ns() - t) as f64 / 1e6);
            outcome = match result {
                Ok(n) => format!("ok: {n} keys"),
                Err(e) => format!("refused: {e}"),
            };
        }
        let mut inline = Vec::new();
        for _ in 0..3 {
            let t = cpu_ns();
            let doc: Value = serde_json::from_slice(&body).unwrap();
            let _ = std::hint::black_box(KeySet::parse(&doc, Origin::Inline));
            inline.push((cpu_ns() - t) as f64 / 1e6);
        }
        let (median, min) = median_min(remote);
        let (inline_median, _) = median_min(inline);
        let name = path.rsplit('/').next().unwrap_or(&path);
        println!(
            "JWKS\t{name}\t{}\t{median:.3}\t{min:.3}\t{inline_median:.3}\t{outcome}",
            body.len()
        );
    }
}
