//! RSA signature verification (RSASSA-PKCS1-v1_5 and RSASSA-PSS, RFC 8017) over a lean,
//! variable-time Montgomery exponentiation tuned for wasm32.
//!
//! Verification handles public data only (the key, the message, the signature), so nothing here
//! needs to be constant-time. The arithmetic uses 32-bit limbs: wasm32 multiplies u32×u32→u64 in
//! one instruction but has no 64×64→128 multiply. Montgomery multiplication is the fused CIOS
//! form (one pass per multiplier limb, two carry chains); squaring computes each cross product
//! once and then reduces. For e = 65537 a verification costs one conversion into Montgomery form,
//! 16 squarings and one multiplication; the last multiplication is by the plain signature, which
//! leaves the result out of Montgomery form without a further step.

use super::{CryptoError, HashAlg};
use sha2::Digest;

/// Largest modulus accepted, in bits.
pub const MAX_MODULUS_BITS: usize = 8192;
/// Smallest modulus accepted by [`RsaPublicKey::new`], in bits (NIST SP 800-131A, RFC 7518 §3.3).
pub const DEFAULT_MIN_MODULUS_BITS: usize = 2048;
/// Largest public exponent accepted (a JWK `e` is 65537 in practice; 3 is the smallest allowed).
pub const MAX_PUBLIC_EXPONENT: u64 = (1 << 32) - 1;

const MAX_LIMBS: usize = MAX_MODULUS_BITS / 32;
const MAX_BYTES: usize = MAX_MODULUS_BITS / 8;
const LO: u64 = 0xffff_ffff;

/// An RSA public key with its Montgomery constants computed once, at key-load time.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// The modulus, little-endian 32-bit limbs, no zero top limb.
    n: Vec<u32>,
    /// R² mod n with R = 2^(32·limbs), in limbs.
    r2: Vec<u32>,
    /// −n⁻¹ mod 2³².
    n0inv: u32,
    /// The public exponent (odd, 3 ≤ e ≤ 2³²−1).
    e: u64,
    /// Length of the modulus in bits.
    bits: usize,
    /// Length of the modulus in bytes (`k` in RFC 8017).
    len: usize,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("bits", &self.bits)
            .field("e", &self.e)
            .finish_non_exhaustive()
    }
}

impl RsaPublicKey {
    /// A key from its big-endian modulus and exponent (as in a JWK's `n` and `e`, decoded).
    /// Leading zero bytes are ignored. Rejects moduli under 2048 bits or over 8192 bits, even
    /// moduli, and exponents that are even, below 3 or above 2³²−1.
    pub fn new(n_be: &[u8], e_be: &[u8]) -> Result<Self, CryptoError> {
        Self::with_min_bits(n_be, e_be, DEFAULT_MIN_MODULUS_BITS)
    }

    /// As [`RsaPublicKey::new`] with another lower bound on the modulus size, in bits.
    pub fn with_min_bits(n_be: &[u8], e_be: &[u8], min_bits: usize) -> Result<Self, CryptoError> {
        let n_be = strip_leading_zeros(n_be);
        let e_be = strip_leading_zeros(e_be);
        let len = n_be.len();
        let bits = match n_be.first() {
            Some(&top) => 8 * len - top.leading_zeros() as usize,
            None => 0,
        };
        if bits < min_bits.max(2) {
            return Err(CryptoError::KeyTooSmall);
        }
        if bits > MAX_MODULUS_BITS {
            return Err(CryptoError::KeyTooLarge);
        }
        if n_be.last().is_none_or(|b| b & 1 == 0) {
            return Err(CryptoError::EvenModulus);
        }
        if e_be.len() > 8 {
            return Err(CryptoError::BadExponent);
        }
        let e = e_be.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if e < 3 || e & 1 == 0 || e > MAX_PUBLIC_EXPONENT {
            return Err(CryptoError::BadExponent);
        }
        let mut n = vec![0u32; len.div_ceil(4)];
        be_bytes_to_limbs(n_be, &mut n);
        let n0 = n.first().copied().unwrap_or(1);
        let n0inv = inverse_mod_2_32(n0).wrapping_neg();
        let r2 = r_squared_mod(&n, bits);
        Ok(RsaPublicKey {
            n,
            r2,
            n0inv,
            e,
            bits,
            len,
        })
    }

    /// Length of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Length of the modulus (and of every valid signature) in bytes.
    pub fn size(&self) -> usize {
        self.len
    }

    /// RSASSA-PKCS1-v1_5 verification (RS256/RS384/RS512): the signature must be exactly as long
    /// as the modulus, below it, and its public-key image must equal, byte for byte, the one
    /// encoding `0x00 0x01 FF…FF 0x00 DigestInfo(hash) H(msg)` (at least 8 bytes of `FF`).
    pub fn verify_pkcs1v15(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool {
        let mut digest = [0u8; 64];
        let digest = hash.digest_into(msg, &mut digest);
        self.verify_pkcs1v15_prehashed(hash.digest_info_prefix(), digest, sig)
    }

    /// PKCS#1 v1.5 with a message digest already computed and the DER prefix of its
    /// `DigestInfo` (the encoding before the digest octets).
    pub(crate) fn verify_pkcs1v15_prehashed(
        &self,
        digest_info_prefix: &[u8],
        digest: &[u8],
        sig: &[u8],
    ) -> bool {
        let mut em = [0u8; MAX_BYTES];
        let Some(em) = self.public_op(sig, &mut em) else {
            return false;
        };
        let t_len = digest_info_prefix.len() + digest.len();
        // k ≥ tLen + 11: at least 8 bytes of padding.
        let Some(ps_len) = em.len().checked_sub(t_len + 3) else {
            return false;
        };
        if ps_len < 8 {
            return false;
        }
        let (head, rest) = em.split_at(2);
        let (ps, rest) = rest.split_at(ps_len);
        let (sep, rest) = rest.split_at(1);
        let (prefix, d) = rest.split_at(digest_info_prefix.len());
        head == [0x00, 0x01]
            && ps.iter().all(|&b| b == 0xff)
            && sep == [0x00]
            && prefix == digest_info_prefix
            && d == digest
    }

    /// RSASSA-PSS verification as JWS specifies it (PS256/PS384/PS512, RFC 7518 §3.5): MGF1
    /// over the same hash and a salt as long as the hash.
    pub fn verify_pss(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_pss_with_salt_len(hash, msg, sig, hash.output_len())
    }

    /// RSASSA-PSS verification (RFC 8017 §8.1.2) with MGF1 over `hash` and an exact salt length.
    /// Every byte is checked: the `0xbc` trailer, the zero leading bits, the zero padding, the
    /// `0x01` separator and the recomputed hash.
    pub fn verify_pss_with_salt_len(
        &self,
        hash: HashAlg,
        msg: &[u8],
        sig: &[u8],
        salt_len: usize,
    ) -> bool {
        match hash {
            HashAlg::Sha256 => self.verify_pss_with::<sha2::Sha256>(msg, sig, salt_len),
            HashAlg::Sha384 => self.verify_pss_with::<sha2::Sha384>(msg, sig, salt_len),
            HashAlg::Sha512 => self.verify_pss_with::<sha2::Sha512>(msg, sig, salt_len),
        }
    }

    fn verify_pss_with<D: Digest>(&self, msg: &[u8], sig: &[u8], salt_len: usize) -> bool {
        let m_hash = D::digest(msg);
        self.verify_pss_prehashed(&m_hash, sig, salt_len, &Mgf1::<D, D>::default())
    }

    /// PSS with a message hash already computed and the hash/mask functions given by `params`.
    pub(crate) fn verify_pss_prehashed(
        &self,
        m_hash: &[u8],
        sig: &[u8],
        salt_len: usize,
        params: &dyn PssParams,
    ) -> bool {
        let mut buf = [0u8; MAX_BYTES];
        let Some(full) = self.public_op(sig, &mut buf) else {
            return false;
        };
        // RSAVP1 output as emLen = ceil((modBits − 1) / 8) bytes: when modBits ≡ 1 (mod 8) the
        // k-byte integer must have a zero first byte, which is then dropped.
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        let Some(extra) = full.len().checked_sub(em_len) else {
            return false;
        };
        let (lead, em) = full.split_at_mut(extra);
        if lead.iter().any(|&b| b != 0) {
            return false;
        }
        emsa_pss_verify(em, em_bits, m_hash, salt_len, params)
    }

    /// RSAVP1: `sig^e mod n` as `k` big-endian bytes in `out`, or `None` when the signature is
    /// not `k` bytes long or not below the modulus.
    fn public_op<'a>(&self, sig: &[u8], out: &'a mut [u8; MAX_BYTES]) -> Option<&'a mut [u8]> {
        if sig.len() != self.len {
            return None;
        }
        let limbs = self.n.len();
        let n = &self.n[..];
        let mut s_buf = [0u32; MAX_LIMBS];
        let s = s_buf.get_mut(..limbs)?;
        be_bytes_to_limbs(sig, s);
        if !less_than(s, n) {
            return None;
        }
        let s = &*s;
        let mut x_buf = [0u32; MAX_LIMBS + 1];
        let mut y_buf = [0u32; MAX_LIMBS + 1];
        let mut s_mont_buf = [0u32; MAX_LIMBS + 1];
        let x = x_buf.get_mut(..=limbs)?;
        let y = y_buf.get_mut(..=limbs)?;
        let s_mont = s_mont_buf.get_mut(..=limbs)?;
        // sR mod n
        mont_mul(s_mont, s, &self.r2, n, self.n0inv);
        let s_mont = s_mont.get(..limbs)?;
        // Left to right over the bits of e below the top one, except the lowest (e is odd):
        // x stays s^(prefix of e) · R.
        let e_bits = 64 - self.e.leading_zeros() as usize;
        let (mut cur, mut other) = (x, y);
        cur.get_mut(..limbs)?.copy_from_slice(s_mont);
        for bit in (1..e_bits.saturating_sub(1)).rev() {
            mont_sqr(other, cur.get(..limbs)?, n, self.n0inv);
            std::mem::swap(&mut cur, &mut other);
            if (self.e >> bit) & 1 == 1 {
                mont_mul(other, cur.get(..limbs)?, s_mont, n, self.n0inv);
                std::mem::swap(&mut cur, &mut other);
            }
        }
        // Last bit (always 1): square, then multiply by the plain s, which removes the R factor:
        // s^(e−1)·R · s · R⁻¹ = s^e mod n.
        mont_sqr(other, cur.get(..limbs)?, n, self.n0inv);
        mont_mul(cur, other.get(..limbs)?, s, n, self.n0inv);
        let out = out.get_mut(..self.len)?;
        limbs_to_be_bytes(cur.get(..limbs)?, out);
        Some(out)
    }
}

/// The hash and mask generation functions of an EMSA-PSS verification.
pub(crate) trait PssParams {
    /// Output length of the hash, `hLen`.
    fn h_len(&self) -> usize;
    /// `out` = Hash(0x00 × 8 ‖ m_hash ‖ salt); `out` is `hLen` bytes long.
    fn hash_m_prime(&self, m_hash: &[u8], salt: &[u8], out: &mut [u8]);
    /// XOR `MGF(seed, out.len())` into `out`.
    fn mask(&self, seed: &[u8], out: &mut [u8]);
}

/// PSS with hash `H` and MGF1 over hash `M` (the same one for JWS).
pub(crate) struct Mgf1<H, M>(std::marker::PhantomData<(H, M)>);

impl<H, M> Default for Mgf1<H, M> {
    fn default() -> Self {
        Mgf1(std::marker::PhantomData)
    }
}

impl<H: Digest, M: Digest> PssParams for Mgf1<H, M> {
    fn h_len(&self) -> usize {
        <H as Digest>::output_size()
    }

    fn hash_m_prime(&self, m_hash: &[u8], salt: &[u8], out: &mut [u8]) {
        let h = H::new()
            .chain_update([0u8; 8])
            .chain_update(m_hash)
            .chain_update(salt)
            .finalize();
        for (o, b) in out.iter_mut().zip(h.iter()) {
            *o = *b;
        }
    }

    fn mask(&self, seed: &[u8], out: &mut [u8]) {
        let h_len = <M as Digest>::output_size().max(1);
        for (counter, chunk) in (0u32..).zip(out.chunks_mut(h_len)) {
            let block = M::new()
                .chain_update(seed)
                .chain_update(counter.to_be_bytes())
                .finalize();
            for (o, b) in chunk.iter_mut().zip(block.iter()) {
                *o ^= *b;
            }
        }
    }
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2, steps 3–14) on `em` (emLen bytes; modified in place).
fn emsa_pss_verify(
    em: &mut [u8],
    em_bits: usize,
    m_hash: &[u8],
    salt_len: usize,
    params: &dyn PssParams,
) -> bool {
    let h_len = params.h_len();
    let em_len = em.len();
    if m_hash.len() != h_len || em_len < h_len + salt_len + 2 {
        return false;
    }
    let (rest, trailer) = em.split_at_mut(em_len - 1);
    if trailer != [0xbc] {
        return false;
    }
    let db_len = em_len - h_len - 1;
    let (db, h) = rest.split_at_mut(db_len);
    // The leftmost 8·emLen − emBits bits of maskedDB must be zero.
    let zero_bits = 8 * em_len - em_bits;
    let top_mask: u8 = if zero_bits >= 8 { 0 } else { 0xff >> zero_bits };
    let Some(first) = db.first_mut() else {
        return false;
    };
    if *first & !top_mask != 0 {
        return false;
    }
    params.mask(h, db);
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    // DB = PS (zeros) ‖ 0x01 ‖ salt
    let (ps_sep, salt) = db.split_at(db_len - salt_len);
    let Some((&sep, ps)) = ps_sep.split_last() else {
        return false;
    };
    if sep != 0x01 || ps.iter().any(|&b| b != 0) {
        return false;
    }
    let mut h2 = [0u8; 64];
    let Some(h2) = h2.get_mut(..h_len) else {
        return false;
    };
    params.hash_m_prime(m_hash, salt, h2);
    h2 == h
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let zeros = b.iter().take_while(|&&x| x == 0).count();
    b.get(zeros..).unwrap_or_default()
}

/// Big-endian bytes into little-endian limbs; `out` must be long enough (excess limbs zeroed).
fn be_bytes_to_limbs(bytes: &[u8], out: &mut [u32]) {
    out.fill(0);
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks(4)) {
        *limb = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    }
}

/// Little-endian limbs into exactly `out.len()` big-endian bytes (high limbs truncated).
fn limbs_to_be_bytes(limbs: &[u32], out: &mut [u8]) {
    for (i, byte) in out.iter_mut().rev().enumerate() {
        let limb = limbs.get(i / 4).copied().unwrap_or(0);
        *byte = (limb >> (8 * (i % 4))) as u8;
    }
}

/// `a < b` for equal-length limb slices.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` (mod 2^(32·len)), equal lengths.
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = d as u32;
        borrow = (d >> 63) & 1;
    }
}

/// n0⁻¹ mod 2³² for odd n0 (Newton iteration: each step doubles the correct low bits).
fn inverse_mod_2_32(n0: u32) -> u32 {
    let mut x = n0; // correct to 3 bits: n0·n0 ≡ 1 (mod 8)
    for _ in 0..4 {
        x = x.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(x)));
    }
    x
}

/// R² mod n, R = 2^(32·limbs), by doubling 2^(bits−1) (< n) modulo n.
fn r_squared_mod(n: &[u32], bits: usize) -> Vec<u32> {
    let limbs = n.len();
    let mut x = vec![0u32; limbs];
    let top = bits - 1;
    if let Some(l) = x.get_mut(top / 32) {
        *l = 1 << (top % 32);
    }
    for _ in top..2 * 32 * limbs {
        let mut carry = 0u32;
        for l in x.iter_mut() {
            let next = *l >> 31;
            *l = (*l << 1) | carry;
            carry = next;
        }
        if carry != 0 || !less_than(&x, n) {
            sub_in_place(&mut x, n);
        }
    }
    x
}

/// Finish a Montgomery product held in `t` (limbs + 1 words, value < 2n): reduce below n.
#[inline(always)]
fn final_reduce(t: &mut [u32], n: &[u32]) {
    if let Some((top, body)) = t.split_last_mut() {
        if *top != 0 || !less_than(body, n) {
            sub_in_place(body, n);
            *top = 0;
        }
    }
}

/// `t[..limbs] = a·b·R⁻¹ mod n` (fused CIOS). `t` has limbs + 1 words; a, b < n.
#[inline(never)]
fn mont_mul(t: &mut [u32], a: &[u32], b: &[u32], n: &[u32], n0inv: u32) {
    t.fill(0);
    let Some((top, body)) = t.split_last_mut() else {
        return;
    };
    let (Some((&a0, a_rest)), Some((&n0, n_rest))) = (a.split_first(), n.split_first()) else {
        return;
    };
    let (a0, n0) = (u64::from(a0), u64::from(n0));
    for &bi in b {
        let bi = u64::from(bi);
        let Some((t0, t_rest)) = body.split_first_mut() else {
            return;
        };
        let p = u64::from(*t0) + a0 * bi;
        let mut c1 = p >> 32;
        let m = u64::from((p as u32).wrapping_mul(n0inv));
        let q = (p & LO) + m * n0;
        let mut c2 = q >> 32;
        let mut prev = t0;
        for ((tj, &aj), &nj) in t_rest.iter_mut().zip(a_rest).zip(n_rest) {
            let p = u64::from(*tj) + u64::from(aj) * bi + c1;
            c1 = p >> 32;
            let q = (p & LO) + m * u64::from(nj) + c2;
            c2 = q >> 32;
            *prev = q as u32;
            prev = tj;
        }
        let s = u64::from(*top) + c1 + c2;
        *prev = s as u32;
        *top = (s >> 32) as u32;
    }
    final_reduce(t, n);
}

/// `t[..limbs] = a²·R⁻¹ mod n`: the full square (each cross product computed once, then
/// doubled) followed by a Montgomery reduction. `t` has limbs + 1 words; a < n.
#[inline(never)]
fn mont_sqr(t: &mut [u32], a: &[u32], n: &[u32], n0inv: u32) {
    let limbs = a.len();
    let mut w_buf = [0u32; 2 * MAX_LIMBS + 1];
    let Some(w) = w_buf.get_mut(..2 * limbs + 1) else {
        return;
    };
    // Cross products a[i]·a[j], i < j, into w[i + j].
    let mut rest_w: &mut [u32] = w;
    let mut rest_a = a;
    while let Some((&ai, a_tail)) = rest_a.split_first() {
        // rest_w starts at w[2i]; cross products go to w[2i+1 ..].
        let Some((_, w_tail)) = std::mem::take(&mut rest_w).split_first_mut() else {
            return;
        };
        let ai = u64::from(ai);
        let mut c = 0u64;
        let mut w_it = w_tail.iter_mut();
        for (&aj, wk) in a_tail.iter().zip(w_it.by_ref()) {
            let p = u64::from(*wk) + ai * u64::from(aj) + c;
            *wk = p as u32;
            c = p >> 32;
        }
        if let Some(wk) = w_it.next() {
            *wk = c as u32;
        }
        // Advance to w[2(i+1)].
        let Some((_, w_next)) = w_tail.split_first_mut() else {
            return;
        };
        rest_w = w_next;
        rest_a = a_tail;
    }
    // Double the cross products and add the squares a[i]² at w[2i].
    let mut carry = 0u64;
    for (pair, &ai) in w.chunks_exact_mut(2).zip(a) {
        let sq = u64::from(ai) * u64::from(ai);
        if let [lo, hi] = pair {
            let v_lo = (u64::from(*lo) << 1) + (sq & LO) + carry;
            let v_hi = (u64::from(*hi) << 1) + (sq >> 32) + (v_lo >> 32);
            *lo = v_lo as u32;
            *hi = v_hi as u32;
            carry = v_hi >> 32;
        }
    }
    // Montgomery reduction of the 2·limbs-word w: add m·n·B^i for each i, then shift.
    let mut top_carry = 0u64;
    let mut rest_w: &mut [u32] = w;
    for _ in 0..limbs {
        let Some((w0, _)) = rest_w.split_first_mut() else {
            return;
        };
        let m = u64::from(w0.wrapping_mul(n0inv));
        let mut c = 0u64;
        let mut w_it = rest_w.iter_mut();
        // `n` first: zip must not pull an extra word from `w_it` when `n` runs out.
        for (&nk, wk) in n.iter().zip(w_it.by_ref()) {
            let p = u64::from(*wk) + m * u64::from(nk) + c;
            *wk = p as u32;
            c = p >> 32;
        }
        // Propagate c into w[i + limbs] together with the carry out of earlier rows.
        if let Some(wk) = w_it.next() {
            let p = u64::from(*wk) + c + top_carry;
            *wk = p as u32;
            top_carry = p >> 32;
        }
        let Some((_, w_next)) = std::mem::take(&mut rest_w).split_first_mut() else {
            return;
        };
        rest_w = w_next;
    }
    // Result: w[limbs .. 2·limbs] plus top_carry as the extra word.
    for (ti, wi) in t.iter_mut().zip(rest_w.iter()) {
        *ti = *wi;
    }
    if let Some(top) = t.last_mut() {
        *top = top_carry as u32;
    }
    final_reduce(t, n);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for test operands.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 32) as u32
        }
        fn limbs(&mut self, n: usize) -> Vec<u32> {
            (0..n).map(|_| self.next()).collect()
        }
    }

    fn to_u128(l: &[u32]) -> u128 {
        l.iter()
            .rev()
            .fold(0u128, |a, &x| (a << 32) | u128::from(x))
    }

    fn mulmod(a: u128, b: u128, n: u128) -> u128 {
        // a, b < n < 2^64: the product fits.
        (a * b) % n
    }

    #[test]
    fn inverse_mod_2_32_is_an_inverse() {
        let mut g = Lcg(1);
        for _ in 0..1000 {
            let x = g.next() | 1;
            assert_eq!(x.wrapping_mul(inverse_mod_2_32(x)), 1);
        }
    }

    #[test]
    fn mont_mul_matches_u128_for_two_limbs() {
        let mut g = Lcg(7);
        for _ in 0..2000 {
            let mut n = g.limbs(2);
            n[0] |= 1;
            n[1] |= 0x8000_0000;
            let nn = to_u128(&n);
            let a = to_u128(&g.limbs(2)) % nn;
            let b = to_u128(&g.limbs(2)) % nn;
            let al = [a as u32, (a >> 32) as u32];
            let bl = [b as u32, (b >> 32) as u32];
            let n0inv = inverse_mod_2_32(n[0]).wrapping_neg();
            let mut t = [0u32; 3];
            mont_mul(&mut t, &al, &bl, &n, n0inv);
            let r = to_u128(&t[..2]);
            assert!(r < nn);
            assert_eq!(t[2], 0);
            // r · R ≡ a · b (mod n), R = 2^64
            let r_mod = (1u128 << 64) % nn;
            assert_eq!(mulmod(r, r_mod, nn), mulmod(a, b, nn));
            let mut s = [0u32; 3];
            mont_sqr(&mut s, &al, &n, n0inv);
            assert_eq!(mulmod(to_u128(&s[..2]), r_mod, nn), mulmod(a, a, nn));
            assert_eq!(s[2], 0);
        }
    }

    #[test]
    fn mont_sqr_matches_mont_mul_for_all_sizes() {
        let mut g = Lcg(11);
        for limbs in [1usize, 2, 3, 5, 8, 17, 64, 96, 128] {
            for _ in 0..50 {
                let mut n = g.limbs(limbs);
                n[0] |= 1;
                if let Some(top) = n.last_mut() {
                    *top |= 0x8000_0000;
                }
                let mut a = g.limbs(limbs);
                // a < n
                if let Some(top) = a.last_mut() {
                    *top &= 0x7fff_ffff;
                }
                let n0inv = inverse_mod_2_32(n[0]).wrapping_neg();
                let mut x = vec![0u32; limbs + 1];
                let mut y = vec![0u32; limbs + 1];
                mont_mul(&mut x, &a, &a, &n, n0inv);
                mont_sqr(&mut y, &a, &n, n0inv);
                assert_eq!(x[..limbs], y[..limbs], "limbs {limbs}");
            }
        }
    }

    #[test]
    fn r_squared_is_right() {
        let mut g = Lcg(3);
        for _ in 0..200 {
            let mut n = g.limbs(2);
            n[0] |= 1;
            let nn = to_u128(&n);
            if nn < 3 {
                continue;
            }
            let bits = 128 - nn.leading_zeros() as usize;
            let r2 = r_squared_mod(&n, bits);
            let r_mod = (1u128 << 64) % nn;
            assert_eq!(to_u128(&r2), mulmod(r_mod, r_mod, nn));
        }
    }
}
