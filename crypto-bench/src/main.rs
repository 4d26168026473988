//! Times each signature verification of identity-crypto (crates/crypto, the new path) against
//! jwt-simple's pure-Rust `verify_token` (the old path) on the openssl-made vectors in
//! `crates/crypto/tests/vectors/openssl/jws_signatures.json`. The same program runs natively and
//! as wasm32-wasip1 under Wasmtime (see run.py).
//!
//! Usage: crypto-bench [--quick] [--filter SUBSTRING] [--count N]
//! Prints one line per case: `RESULT <tab> target <tab> case <tab> median µs <tab> min µs <tab>
//! iterations`, timed in thread CPU time (so time the machine spends on other work is not
//! counted): natively with clock_gettime(CLOCK_THREAD_CPUTIME_ID); in wasm through the import
//! `bench.thread_cpu_ns`, which run.py provides (WASI preview 1 in Wasmtime has no CPU clock).

#![allow(dead_code, unused_imports)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use identity_crypto as crypto;

use jwt_simple::prelude::*;

mod cpu;
use cpu::cpu_ns;

const VECTORS: &str = include_str!("../../crates/crypto/tests/vectors/openssl/jws_signatures.json");

struct Case {
    name: String,
    run: Box<dyn FnMut() -> bool>,
    /// A run on a corrupted signature (must return false), when meaningful.
    bad: Option<Box<dyn FnMut() -> bool>>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn b64u(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn corrupt(sig: &[u8]) -> Vec<u8> {
    let mut s = sig.to_vec();
    let mid = s.len() / 2;
    s[mid] ^= 0x10;
    s
}

fn cases() -> Vec<Case> {
    let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let mut out = Vec::new();
    for e in v["entries"].as_array().unwrap() {
        let alg = e["alg"].as_str().unwrap().to_string();
        let msg = e["msg"].as_str().unwrap().as_bytes().to_vec();
        let sig = hex(e["sig"].as_str().unwrap());
        let bad_sig = corrupt(&sig);
        let token = format!("{}.{}", e["msg"].as_str().unwrap(), b64u(&sig));
        let label = match e.get("bits").and_then(|b| b.as_u64()) {
            Some(bits) if bits != 2048 => format!("{alg}-{bits}"),
            _ => alg.clone(),
        };
        match alg.as_str() {
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
                let n = hex(e["n"].as_str().unwrap());
                let ee = hex(e["e"].as_str().unwrap());
                let hash = match &alg[2..] {
                    "256" => crypto::HashAlg::Sha256,
                    "384" => crypto::HashAlg::Sha384,
                    _ => crypto::HashAlg::Sha512,
                };
                let pss = alg.starts_with("PS");
                let key = crypto::RsaPublicKey::new(&n, &ee).unwrap();
                let (k1, m1, s1) = (key.clone(), msg.clone(), sig.clone());
                let (k2, m2) = (key, msg.clone());
                out.push(Case {
                    name: format!("{label} new"),
                    run: Box::new(move || {
                        if pss {
                            k1.verify_pss(hash, &m1, &s1)
                        } else {
                            k1.verify_pkcs1v15(hash, &m1, &s1)
                        }
                    }),
                    bad: Some(Box::new(move || {
                        if pss {
                            k2.verify_pss(hash, &m2, &bad_sig)
                        } else {
                            k2.verify_pkcs1v15(hash, &m2, &bad_sig)
                        }
                    })),
                });
                let (n2, e2) = (n.clone(), ee.clone());
                out.push(Case {
                    name: format!("{label} key-load new"),
                    run: Box::new(move || crypto::RsaPublicKey::new(&n2, &e2).is_ok()),
                    bad: None,
                });
                let t = token.clone();
                let old: Box<dyn FnMut() -> bool> = match alg.as_str() {
                    "RS256" => {
                        let k = RS256PublicKey::from_components(&n, &ee).unwrap();
                        Box::new(move || k.verify_token::<NoCustomClaims>(&t, None).is_ok())
                    }
                    "RS384" => {
                        let k = RS384PublicKey::from_components(&n, &ee).unwrap();
                        Box::new(move || k.verify_token::<NoCustomClaims>(&t, None).is_ok())
                    }
                    "RS512" => {
                        let k = RS512PublicKey::from_components(&n, &ee).unwrap();
                        Box::new(move || k.verify_token::<NoCustomClaims>(&t, None).is_ok())
                    }
                    "PS256" => {
                        let k = PS256PublicKey::from_components(&n, &ee).unwrap();
                        Box::new(move || k.verify_token::<NoCustomClaims>(&t, None).is_ok())
                    }
                    "PS384" => {
                        let k = PS384PublicKey::from_components(&n, &ee).unwrap();
                        Box::new(move || k.verify_token::<NoCustomClaims>(&t, None).is_ok())
                    }
                    _ => {
                        let k = PS512PublicKey::from_components(&n, &ee).unwrap();
                        Box::new(move || k.verify_token::<NoCustomClaims>(&t, None).is_ok())
                    }
                };
                out.push(Case {
                    name: format!("{label} old (jwt-simple verify_token)"),
                    run: old,
                    bad: None,
                });
            }
            "ES256" | "ES384" => {
                let x = hex(e["x"].as_str().unwrap());
                let y = hex(e["y"].as_str().unwrap());
                let curve = if alg == "ES256" {
                    crypto::EcCurve::P256
                } else {
                    crypto::EcCurve::P384
                };
                let key = crypto::EcPublicKey::new(curve, &x, &y).unwrap();
                let (k1, m1, s1) = (key.clone(), msg.clone(), sig.clone());
                let (k2, m2) = (key, msg.clone());
                out.push(Case {
                    name: format!("{label} new"),
                    run: Box::new(move || k1.verify(&m1, &s1)),
                    bad: Some(Box::new(move || k2.verify(&m2, &bad_sig))),
                });
                let (x2, y2) = (x.clone(), y.clone());
                out.push(Case {
                    name: format!("{label} key-load new"),
                    run: Box::new(move || crypto::EcPublicKey::new(curve, &x2, &y2).is_ok()),
                    bad: None,
                });
                out.push(Case {
                    name: format!("{label} curve tables (once per VM, at first key)"),
                    run: Box::new(move || std::hint::black_box(crypto::build_curve_tables(curve))),
                    bad: None,
                });
                let mut sec1 = vec![4u8];
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                #[cfg(feature = "alt")]
                {
                    let (m, s2, k1) = (msg.clone(), sig.clone(), sec1.clone());
                    let run: Box<dyn FnMut() -> bool> = if alg == "ES256" {
                        use p256_13::ecdsa::signature::Verifier;
                        let vk = p256_13::ecdsa::VerifyingKey::from_sec1_bytes(&k1).unwrap();
                        let sg = p256_13::ecdsa::Signature::from_slice(&s2).unwrap();
                        Box::new(move || vk.verify(&m, &sg).is_ok())
                    } else {
                        use p384_13::ecdsa::signature::Verifier;
                        let vk = p384_13::ecdsa::VerifyingKey::from_sec1_bytes(&k1).unwrap();
                        let sg = p384_13::ecdsa::Signature::from_slice(&s2).unwrap();
                        Box::new(move || vk.verify(&m, &sg).is_ok())
                    };
                    out.push(Case {
                        name: format!("{label} p256/p384 0.13"),
                        run,
                        bad: None,
                    });
                }
                let t = token.clone();
                let old: Box<dyn FnMut() -> bool> = if alg == "ES256" {
                    let k = ES256PublicKey::from_bytes(&sec1).unwrap();
                    Box::new(move || k.verify_token::<NoCustomClaims>(&t, None).is_ok())
                } else {
                    let k = ES384PublicKey::from_bytes(&sec1).unwrap();
                    Box::new(move || k.verify_token::<NoCustomClaims>(&t, None).is_ok())
                };
                out.push(Case {
                    name: format!("{label} old (jwt-simple verify_token)"),
                    run: old,
                    bad: None,
                });
            }
            "EdDSA" => {
                let x = hex(e["x"].as_str().unwrap());
                let key = crypto::Ed25519PublicKey::new(&x).unwrap();
                let (k1, m1, s1) = (key.clone(), msg.clone(), sig.clone());
                let (k2, m2) = (key, msg.clone());
                out.push(Case {
                    name: format!("{label} new"),
                    run: Box::new(move || k1.verify(&m1, &s1)),
                    bad: Some(Box::new(move || k2.verify(&m2, &bad_sig))),
                });
                #[cfg(feature = "alt")]
                {
                    let pk = ed25519_compact::PublicKey::from_slice(&x).unwrap();
                    let s = ed25519_compact::Signature::from_slice(&sig).unwrap();
                    let m = msg.clone();
                    out.push(Case {
                        name: format!("{label} ed25519-compact"),
                        run: Box::new(move || pk.verify(&m, &s).is_ok()),
                        bad: None,
                    });
                }
                let t = token.clone();
                let k = jwt_simple::prelude::Ed25519PublicKey::from_bytes(&x).unwrap();
                out.push(Case {
                    name: format!("{label} old (jwt-simple verify_token)"),
                    run: Box::new(move || k.verify_token::<NoCustomClaims>(&t, None).is_ok()),
                    bad: None,
                });
            }
            other => panic!("unknown alg {other}"),
        }
        if alg == "RS256" && e["bits"].as_u64() == Some(2048) {
            // The JWT layer's own cost (split, base64, JSON claims, time checks) next to a
            // negligible HMAC: what jwt-simple adds around any signature check.
            let key = HS256Key::from_bytes(b"0123456789abcdef0123456789abcdef");
            let claims: JWTClaims<serde_json::Value> = serde_json::from_slice(
                &jwt_simple::reexports::ct_codecs::Base64UrlSafeNoPadding::decode_to_vec(
                    e["msg"].as_str().unwrap().split('.').nth(1).unwrap(),
                    None,
                )
                .map_err(|_| ())
                .unwrap(),
            )
            .unwrap();
            let t = key.authenticate(claims).unwrap();
            out.push(Case {
                name: "HS256 old (jwt-simple verify_token: JWT layer cost)".to_string(),
                run: Box::new(move || key.verify_token::<NoCustomClaims>(&t, None).is_ok()),
                bad: None,
            });
            let m = msg.clone();
            out.push(Case {
                name: "SHA-256 of the signing input".to_string(),
                run: Box::new(move || {
                    use sha2::Digest;
                    std::hint::black_box(sha2::Sha256::digest(&m)).len() == 32
                }),
                bad: None,
            });
        }
    }
    out
}

fn time_case(case: &mut Case, budget_ms: f64) -> (f64, f64, u64) {
    // Warm up for about budget/4 (lets V8 tier up from its baseline compiler).
    let t = cpu_ns();
    while ((cpu_ns() - t) as f64) < budget_ms / 4.0 * 1e6 {
        for _ in 0..4 {
            std::hint::black_box((case.run)());
        }
    }
    // Calibrate: iterations for one batch of about budget/7.
    let mut iters = 1u64;
    loop {
        let t = cpu_ns();
        for _ in 0..iters {
            std::hint::black_box((case.run)());
        }
        let el = (cpu_ns() - t) as f64 / 1e6;
        if el > budget_ms / 7.0 || iters > 1 << 24 {
            break;
        }
        iters = if el < 0.01 {
            iters * 16
        } else {
            ((iters as f64) * (budget_ms / 7.0) / el).ceil() as u64 + 1
        };
    }
    let mut samples = Vec::new();
    for _ in 0..5 {
        let t = cpu_ns();
        for _ in 0..iters {
            std::hint::black_box((case.run)());
        }
        samples.push((cpu_ns() - t) as f64 / 1e3 / iters as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (samples[2], samples[0], iters * 5)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let filter = args
        .iter()
        .position(|a| a == "--filter")
        .and_then(|i| args.get(i + 1).cloned());
    let budget_ms = if quick { 60.0 } else { 400.0 };
    let target = if cfg!(target_arch = "wasm32") {
        "wasm32"
    } else {
        "native"
    };
    // --count N: run each selected case N times untimed (for instruction/fuel counting).
    let count = args
        .iter()
        .position(|a| a == "--count")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<u64>().ok());
    let mut failures = 0;
    for mut case in cases() {
        if let Some(f) = &filter {
            if !case.name.contains(f.as_str()) {
                continue;
            }
        }
        if !(case.run)() {
            println!("FAIL\t{}\tvalid signature rejected", case.name);
            failures += 1;
            continue;
        }
        if let Some(bad) = case.bad.as_mut() {
            if bad() {
                println!("FAIL\t{}\tcorrupted signature accepted", case.name);
                failures += 1;
                continue;
            }
        }
        if let Some(n) = count {
            let mut ok = 0u64;
            for _ in 0..n {
                ok += u64::from(std::hint::black_box((case.run)()));
            }
            println!("COUNT\t{target}\t{}\t{ok}", case.name);
            continue;
        }
        let (median, min, n) = time_case(&mut case, budget_ms);
        println!(
            "RESULT\t{target}\t{}\t{median:.2}\t{min:.2}\t{n}",
            case.name
        );
    }
    if failures > 0 {
        std::process::exit(1);
    }
}
