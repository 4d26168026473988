//! RSA signature verification (RSASSA-PKCS1-v1_5 and RSASSA-PSS, RFC 8017) over the lean,
//! variable-time Montgomery exponentiation of [`super::bigint`], tuned for wasm32.
//!
//! Verification handles public data only (the key, the message, the signature), so nothing here
//! needs to be constant-time. The exponent is always 65537 (the only one accepted): a
//! verification costs one conversion into Montgomery form, 16 squarings and one multiplication
//! (by the plain signature, which leaves the result out of Montgomery form), then a
//! byte-for-byte comparison with the expected encoding.

use super::bigint::Modulus;
use super::{CryptoError, HashAlg};
use sha2::Digest;

/// Largest modulus accepted, in bits: the filter's key parsing takes at most 4096-bit keys
/// (`jwks::MAX_RSA_BITS`), so this crate does too (its arithmetic, `bigint`, goes further).
pub const MAX_MODULUS_BITS: usize = 4096;
/// Smallest modulus accepted by [`RsaPublicKey::new`], in bits (NIST SP 800-131A, RFC 7518 §3.3).
pub const DEFAULT_MIN_MODULUS_BITS: usize = 2048;
/// The one public exponent accepted, as in the filter's key parsing (a JWK `e` of `AQAB`).
pub const RSA_PUBLIC_EXPONENT: u64 = 65537;

const MAX_BYTES: usize = MAX_MODULUS_BITS / 8;

/// The checks of [`RsaPublicKey::with_min_bits`] (shared with the RustCrypto backend, so both
/// refuse the same keys): the modulus without leading zeros, and its length in bits.
pub(crate) fn check_key<'a>(
    n_be: &'a [u8],
    e_be: &[u8],
    min_bits: usize,
) -> Result<(&'a [u8], usize), CryptoError> {
    let n_be = strip_leading_zeros(n_be);
    let e_be = strip_leading_zeros(e_be);
    let bits = match n_be.first() {
        Some(&top) => 8 * n_be.len() - top.leading_zeros() as usize,
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
    if e != RSA_PUBLIC_EXPONENT {
        return Err(CryptoError::BadExponent);
    }
    Ok((n_be, bits))
}

/// An RSA public key with its Montgomery constants computed once, at key-load time.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// The modulus, big-endian, no leading zero byte.
    n_be: Vec<u8>,
    /// The modulus with its Montgomery constants.
    modulus: Modulus,
    /// Length of the modulus in bits.
    bits: usize,
    /// Length of the modulus in bytes (`k` in RFC 8017).
    len: usize,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("bits", &self.bits)
            .field("e", &RSA_PUBLIC_EXPONENT)
            .finish_non_exhaustive()
    }
}

impl RsaPublicKey {
    /// A key from its big-endian modulus and exponent (as in a JWK's `n` and `e`, decoded).
    /// Leading zero bytes are ignored. Rejects moduli under 2048 bits or over 4096 bits
    /// ([`MAX_MODULUS_BITS`]), even moduli, and any exponent but 65537 ([`RSA_PUBLIC_EXPONENT`]):
    /// the generality the filter uses, no more.
    pub fn new(n_be: &[u8], e_be: &[u8]) -> Result<Self, CryptoError> {
        Self::with_min_bits(n_be, e_be, DEFAULT_MIN_MODULUS_BITS)
    }

    /// As [`RsaPublicKey::new`] with another lower bound on the modulus size, in bits.
    pub fn with_min_bits(n_be: &[u8], e_be: &[u8], min_bits: usize) -> Result<Self, CryptoError> {
        let (n_be, bits) = check_key(n_be, e_be, min_bits)?;
        let len = n_be.len();
        let modulus = Modulus::new(n_be, bits).ok_or(CryptoError::EvenModulus)?;
        Ok(RsaPublicKey {
            n_be: n_be.to_vec(),
            modulus,
            bits,
            len,
        })
    }

    /// Length of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Length of the modulus (and of every valid signature) in bytes (tests).
    #[cfg(test)]
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
        // Same length, so the lexicographic order is the numeric one.
        if sig.len() != self.len || sig >= self.n_be.as_slice() {
            return None;
        }
        let out = out.get_mut(..self.len)?;
        self.modulus.pow_be(sig, RSA_PUBLIC_EXPONENT, out)?;
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
