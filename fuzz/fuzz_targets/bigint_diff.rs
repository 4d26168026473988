//! The Montgomery exponentiation behind RSA (`crates/crypto/src/bigint.rs`, `Modulus::pow_be`)
//! against `num-bigint-dig`'s `modpow` (the `rsa` crate's big integers): s^e mod n for odd
//! moduli of 2 to 4096 bits (what a JWKS may hold; both limb widths, 28 bits and, above ~3,500
//! bits, 27), bases below n, exponents up to 2^32 − 1 (odd ≥ 3 computed, others refused); shapes that stress carries (all-ones limbs, n = 2^k ± 1, s = n − 1) are offered to the
//! fuzzer besides raw bytes. Invalid arguments must be refused, not computed.
#![no_main]

use arbitrary::Arbitrary;
use fuzz_support::check::Budget;
use identity_crypto::Modulus;
use identity_filter::MAX_RSA_BITS;
use libfuzzer_sys::fuzz_target;
use rsa::BigUint;

#[derive(Debug, Arbitrary)]
enum Shape {
    Raw,
    /// 2^bits − 1 − raw (many all-ones limbs).
    Ones(u16),
    /// 2^bits + 1.
    PowPlusOne(u16),
    /// 2^bits − 1.
    PowMinusOne(u16),
}

#[derive(Debug, Arbitrary)]
enum Base {
    Raw(Vec<u8>),
    NMinus(u8),
    Small(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    shape: Shape,
    n: Vec<u8>,
    base: Base,
    e: u32,
}

fn modulus(shape: &Shape, raw: &[u8]) -> BigUint {
    let pow = |bits: u16| BigUint::from(1u32) << (usize::from(bits) % (MAX_RSA_BITS + 8));
    match shape {
        Shape::Raw => BigUint::from_bytes_be(raw),
        Shape::Ones(bits) => {
            let top = pow(*bits);
            let r = BigUint::from_bytes_be(raw);
            if r < top {
                top - 1u32 - r
            } else {
                r
            }
        }
        Shape::PowPlusOne(bits) => pow(*bits) + 1u32,
        Shape::PowMinusOne(bits) => pow(*bits) - 1u32,
    }
}

fuzz_target!(
    init: fuzz_support::seeds::write_if_asked("bigint_diff"),
    |input: Input| {
    let n = modulus(&input.shape, &input.n);
    let n_be = n.to_bytes_be();
    let n_be: Vec<u8> = if n == BigUint::from(0u32) { Vec::new() } else { n_be };
    let bits = n.bits();
    if bits > MAX_RSA_BITS {
        return;
    }
    let e = u64::from(input.e);
    let mut budget = Budget::new();
    let m = budget.run(|| Modulus::new(&n_be, bits));
    let valid = bits >= 2 && n_be.last().is_some_and(|b| b & 1 == 1);
    assert_eq!(m.is_some(), valid, "Modulus::new({bits} bits) accepted: {}", m.is_some());
    let Some(m) = m else {
        return;
    };
    let s = match &input.base {
        Base::Raw(raw) => BigUint::from_bytes_be(raw) % &n,
        Base::NMinus(k) => {
            let k = BigUint::from(*k);
            if k < n {
                &n - k - 1u32
            } else {
                BigUint::from(0u32)
            }
        }
        Base::Small(v) => BigUint::from(*v) % &n,
    };
    let s_be = {
        let b = s.to_bytes_be();
        let mut v = vec![0u8; n_be.len().saturating_sub(b.len())];
        v.extend_from_slice(&b);
        v
    };
    let mut out = vec![0u8; n_be.len()];
    let ours = budget.run(|| m.pow_be(&s_be, e, &mut out));
    budget.finish_for(&(bits, e));
    if e < 3 || e & 1 == 0 {
        assert!(ours.is_none(), "even or small exponent {e} was not refused");
        return;
    }
    assert!(ours.is_some(), "pow_be refused valid arguments: {input:?}");
    let expected = s.modpow(&BigUint::from(e), &n);
    let got = BigUint::from_bytes_be(&out);
    assert_eq!(got, expected, "s^e mod n differs from the reference: {input:?}");
});
