//! ECDSA verification on P-256 and P-384, variable time (verification handles public data only),
//! shaped for wasm32 like [`super::bigint`]: field elements are N limbs of W bits (9 × 29 for
//! P-256, 14 × 28 for P-384) in Montgomery form, so a product column of u64 absorbs every
//! partial product without carry handling, and Montgomery multiplication is a fully unrolled
//! product scan.
//!
//! Verification computes u1·G + u2·Q (u1 = z·s⁻¹, u2 = r·s⁻¹ mod n) as one multi-scalar
//! multiplication over eight scalars: u1 and u2 are each cut into [`PIECES`] (4) pieces of
//! `piece` bits (64 for P-256, 96 for P-384), u = Σ u_j·2^(j·piece), and piece j of u1 (of u2)
//! is written in wNAF (`piece` + 1 signed odd digits at most) over a table of the odd multiples
//! [1, 3, …]·2^(j·piece)·G (·Q), affine: window 7 for G (32 multiples a piece, built once per
//! process, i.e. per Wasm VM, by [`p256`] / [`p384`]), window 5 for Q (8 a piece, built when
//! the key is parsed). One accumulator, Jacobian, walks the digit positions from the top: it is
//! doubled once per position (not while it is still the point at infinity, so at most `piece`
//! doublings, a quarter of a plain double-and-add's), then each of the eight scalars whose digit
//! there is nonzero adds its table point (negated, y → −y, for a negative digit) with a mixed
//! Jacobian + affine addition. The result's x-coordinate is compared without a field inversion:
//! x(R) mod n = r ⟺ X = r·Z² or, when r + n < p, X = (r + n)·Z² (mod p), since x(R) < p < 2n.
//! The one modular inverse per verification, s⁻¹ mod n, is a binary extended Euclid.

use std::sync::OnceLock;

/// A field element (or scalar): N little-endian limbs of W bits, value < 2^(W·N).
type Fe<const N: usize> = [u64; N];

/// Arithmetic modulo an odd prime m < 2^(W·N − 5) in Montgomery form (R = 2^(W·N)).
/// Elements are kept in [0, 2m) with normalized limbs.
#[derive(Clone, Debug)]
struct Field<const N: usize> {
    m: Fe<N>,
    m2: Fe<N>,
    /// −m⁻¹ mod 2^W.
    minv: u64,
    w: u32,
    mask: u64,
    /// R² mod m.
    r2: Fe<N>,
}

impl<const N: usize> Field<N> {
    fn new(m_be: &[u8], w: u32) -> Option<Self> {
        let m = from_be::<N>(m_be, w)?;
        let mask = (1u64 << w) - 1;
        let m0 = m.first().copied()?;
        // Newton iteration for m0⁻¹ mod 2^64 (3 correct bits to start, doubling each step).
        let mut inv = m0;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(m0.wrapping_mul(inv)));
        }
        let mut f = Field {
            m,
            m2: [0; N],
            minv: inv.wrapping_neg() & mask,
            w,
            mask,
            r2: [0; N],
        };
        f.m2 = f.add_raw(&m, &m);
        // R² mod m by doubling 1 (2·W·N times), reducing below m each time.
        let mut x = [0u64; N];
        *x.first_mut()? = 1;
        for _ in 0..2 * w as usize * N {
            x = f.add_raw(&x, &x);
            if !lt(&x, &f.m) {
                x = f.sub_raw(&x, &f.m);
            }
        }
        f.r2 = x;
        Some(f)
    }

    /// a + b with normalized limbs (no reduction).
    #[inline(always)]
    fn add_raw(&self, a: &Fe<N>, b: &Fe<N>) -> Fe<N> {
        let mut r = [0u64; N];
        let mut carry = 0u64;
        for ((ri, &ai), &bi) in r.iter_mut().zip(a).zip(b) {
            let v = ai + bi + carry;
            *ri = v & self.mask;
            carry = v >> self.w;
        }
        r
    }

    /// a − b for a ≥ b, normalized limbs.
    #[inline(always)]
    fn sub_raw(&self, a: &Fe<N>, b: &Fe<N>) -> Fe<N> {
        let mut r = [0u64; N];
        let mut borrow = 0u64;
        for ((ri, &ai), &bi) in r.iter_mut().zip(a).zip(b) {
            let v = ai.wrapping_sub(bi).wrapping_sub(borrow);
            borrow = v >> 63;
            *ri = v & self.mask;
        }
        r
    }

    /// (a + b) mod m in [0, 2m), for a, b in [0, 2m).
    #[inline(never)]
    fn add(&self, a: &Fe<N>, b: &Fe<N>) -> Fe<N> {
        let s = self.add_raw(a, b);
        if lt(&s, &self.m2) {
            s
        } else {
            self.sub_raw(&s, &self.m2)
        }
    }

    /// (a − b) mod m in [0, 2m), for a, b in [0, 2m).
    #[inline(never)]
    fn sub(&self, a: &Fe<N>, b: &Fe<N>) -> Fe<N> {
        if lt(a, b) {
            self.sub_raw(&self.add_raw(a, &self.m2), b)
        } else {
            self.sub_raw(a, b)
        }
    }

    /// The canonical representative in [0, m) of x in [0, 2m).
    fn canonical(&self, x: &Fe<N>) -> Fe<N> {
        if lt(x, &self.m) {
            *x
        } else {
            self.sub_raw(x, &self.m)
        }
    }

    fn eq(&self, a: &Fe<N>, b: &Fe<N>) -> bool {
        self.canonical(a) == self.canonical(b)
    }

    fn is_zero(&self, a: &Fe<N>) -> bool {
        self.canonical(a) == [0u64; N]
    }

    /// a·b·R⁻¹ mod m in [0, 2m), for a·b < m·R (e.g. a, b < 2m). Operand scanning with every
    /// loop bound a constant, so that the whole product unrolls into straight-line code over
    /// locals: t[i + j] += a_i·b_j into u64 columns (no carries), then the reduction. Not
    /// inlined: one copy per field keeps the module small at no measurable cost.
    #[inline(never)]
    fn mul(&self, a: &Fe<N>, b: &Fe<N>) -> Fe<N> {
        let mut t = [[0u64; N]; 2];
        for (i, &ai) in a.iter().enumerate() {
            for (j, &bj) in b.iter().enumerate() {
                add_at(&mut t, i + j, ai * bj);
            }
        }
        self.reduce(t)
    }

    /// a²·R⁻¹ mod m in [0, 2m): as `mul`, with each cross product computed once (doubled).
    #[inline(never)]
    fn sqr(&self, a: &Fe<N>) -> Fe<N> {
        let mut t = [[0u64; N]; 2];
        for (i, &ai) in a.iter().enumerate() {
            let ai2 = 2 * ai;
            for (j, &aj) in a.iter().enumerate() {
                if j > i {
                    add_at(&mut t, i + j, ai2 * aj);
                }
            }
            add_at(&mut t, 2 * i, ai * ai);
        }
        self.reduce(t)
    }

    /// Montgomery reduction of the 2N column sums: for each i, q_i makes column i ≡ 0
    /// (mod 2^W), q_i·m is added and column i's carry moves to column i + 1.
    #[inline(always)]
    fn reduce(&self, mut t: [[u64; N]; 2]) -> Fe<N> {
        for i in 0..N {
            let ti = get_at(&t, i);
            let qi = ti.wrapping_mul(self.minv) & self.mask;
            for (j, &mj) in self.m.iter().enumerate() {
                if j > 0 {
                    add_at(&mut t, i + j, qi * mj);
                }
            }
            let m0 = self.m.first().copied().unwrap_or(0);
            // ti + qi·m0 ≡ 0 (mod 2^W); split to stay within u64.
            let carry = (ti >> self.w) + (((ti & self.mask) + qi * m0) >> self.w);
            add_at(&mut t, i + 1, carry);
        }
        let [_, high] = t;
        let mut r = [0u64; N];
        let mut carry = 0u64;
        for (ri, &hi) in r.iter_mut().zip(high.iter()) {
            let v = hi + carry;
            *ri = v & self.mask;
            carry = v >> self.w;
        }
        r
    }

    /// Into Montgomery form: x·R mod m, for x < 2^(W·N − 5).
    fn to_mont(&self, x: &Fe<N>) -> Fe<N> {
        self.mul(x, &self.r2)
    }

    /// Out of Montgomery form, canonical in [0, m).
    fn out_of_mont(&self, x: &Fe<N>) -> Fe<N> {
        let mut one = [0u64; N];
        if let Some(o) = one.first_mut() {
            *o = 1;
        }
        self.canonical(&self.mul(x, &one))
    }

    /// x⁻¹ mod m for canonical x in [1, m) (plain integers), by the binary extended Euclidean
    /// algorithm; `None` for x = 0 (or not invertible).
    fn inv_plain(&self, x: &Fe<N>) -> Option<Fe<N>> {
        if *x == [0u64; N] {
            return None;
        }
        let mut one = [0u64; N];
        *one.first_mut()? = 1;
        let (mut u, mut v) = (*x, self.m);
        let (mut x1, mut x2) = (one, [0u64; N]);
        let mut steps = 0usize;
        while u != one && v != one {
            steps += 1;
            if steps > 4 * self.w as usize * N || u == [0u64; N] || v == [0u64; N] {
                return None;
            }
            while is_even(&u) {
                u = self.half(&u);
                x1 = self.half_mod(&x1);
            }
            while is_even(&v) {
                v = self.half(&v);
                x2 = self.half_mod(&x2);
            }
            if lt(&u, &v) {
                v = self.sub_raw(&v, &u);
                x2 = self.sub_mod_plain(&x2, &x1);
            } else {
                u = self.sub_raw(&u, &v);
                x1 = self.sub_mod_plain(&x1, &x2);
            }
        }
        Some(if u == one { x1 } else { x2 })
    }

    fn half(&self, x: &Fe<N>) -> Fe<N> {
        let mut r = [0u64; N];
        let mut high = 0u64;
        for (ri, &xi) in r.iter_mut().zip(x.iter()).rev() {
            *ri = (xi >> 1) | (high << (self.w - 1));
            high = xi & 1;
        }
        r
    }

    /// x/2 mod m for x < m.
    fn half_mod(&self, x: &Fe<N>) -> Fe<N> {
        if is_even(x) {
            self.half(x)
        } else {
            self.half(&self.add_raw(x, &self.m))
        }
    }

    /// (a − b) mod m for a, b < m.
    fn sub_mod_plain(&self, a: &Fe<N>, b: &Fe<N>) -> Fe<N> {
        if lt(a, b) {
            self.sub_raw(&self.add_raw(a, &self.m), b)
        } else {
            self.sub_raw(a, b)
        }
    }

    /// Montgomery-form inverse: (xR)⁻¹·R² = x⁻¹·R.
    fn inv(&self, x: &Fe<N>) -> Option<Fe<N>> {
        let plain = self.out_of_mont(x);
        Some(self.to_mont(&self.inv_plain(&plain)?))
    }
}

/// Column k of a 2N-column sum held as two halves.
#[inline(always)]
fn add_at<const N: usize>(t: &mut [[u64; N]; 2], k: usize, v: u64) {
    let [lo, hi] = t;
    if let Some(x) = lo.get_mut(k) {
        *x += v;
    } else if let Some(x) = hi.get_mut(k - N) {
        *x += v;
    }
}

#[inline(always)]
fn get_at<const N: usize>(t: &[[u64; N]; 2], k: usize) -> u64 {
    let [lo, hi] = t;
    lo.get(k).or_else(|| hi.get(k - N)).copied().unwrap_or(0)
}

fn is_even<const N: usize>(x: &Fe<N>) -> bool {
    x.first().is_none_or(|l| l & 1 == 0)
}

/// a < b for normalized limbs.
fn lt<const N: usize>(a: &Fe<N>, b: &Fe<N>) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// Big-endian bytes into N W-bit limbs; `None` if the value does not fit.
fn from_be<const N: usize>(bytes: &[u8], w: u32) -> Option<Fe<N>> {
    let mask = (1u64 << w) - 1;
    let mut out = [0u64; N];
    let mut acc = 0u64;
    let mut nbits = 0u32;
    let mut limbs = out.iter_mut();
    for &b in bytes.iter().rev() {
        acc |= u64::from(b) << nbits;
        nbits += 8;
        if nbits >= w {
            *limbs.next()? = acc & mask;
            acc >>= w;
            nbits -= w;
        }
    }
    if acc != 0 {
        *limbs.next()? = acc;
    }
    Some(out)
}

/// N W-bit limbs into exactly `out.len()` big-endian bytes.
fn to_be<const N: usize>(x: &Fe<N>, w: u32, out: &mut [u8]) {
    let mut acc = 0u64;
    let mut nbits = 0u32;
    let mut it = x.iter();
    for o in out.iter_mut().rev() {
        if nbits < 8 {
            acc |= it.next().copied().unwrap_or(0) << nbits;
            nbits += w;
        }
        *o = acc as u8;
        acc >>= 8;
        nbits -= 8;
    }
}

/// An affine point (Montgomery-form coordinates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Affine<const N: usize> {
    x: Fe<N>,
    y: Fe<N>,
}

/// A Jacobian point (x = X/Z², y = Y/Z³); `inf` marks the point at infinity.
#[derive(Clone, Copy, Debug)]
struct Jacobian<const N: usize> {
    x: Fe<N>,
    y: Fe<N>,
    z: Fe<N>,
    inf: bool,
}

/// Window of the wNAF digits for the key's tables (8 odd multiples each).
const W_KEY: u32 = 5;
/// Window for the generator's tables (32 odd multiples each, built once).
const W_GEN: u32 = 7;
/// Scalars are cut into this many pieces of `piece` bits: u = Σ u_j·2^(j·piece).
const PIECES: usize = 4;

/// A short Weierstrass curve y² = x³ − 3x + b over F_p with prime order n.
#[derive(Debug)]
pub(crate) struct Curve<const N: usize> {
    fp: Field<N>,
    fnn: Field<N>,
    /// b in Montgomery form.
    b: Fe<N>,
    /// Bytes of a coordinate, of r and of s; also the bit length of n divided by 8.
    len: usize,
    /// Bits per scalar piece: ⌈bits(n) / PIECES⌉.
    piece: usize,
    /// n and p as big-endian bytes.
    n_be: Vec<u8>,
    p_be: Vec<u8>,
    /// Odd multiples [1, 3, 5, …]·2^(j·piece)·G for each piece j.
    gen_tables: Vec<Vec<Affine<N>>>,
}

/// A public key: odd multiples [1, 3, 5, …]·2^(j·piece)·Q for each piece j, affine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key<const N: usize> {
    tables: Vec<Vec<Affine<N>>>,
}

impl<const N: usize> Curve<N> {
    fn new(p: &str, n: &str, b: &str, gx: &str, gy: &str, w: u32) -> Option<Self> {
        let p_be = hex(p)?;
        let n_be = hex(n)?;
        let fp = Field::<N>::new(&p_be, w)?;
        let fnn = Field::<N>::new(&n_be, w)?;
        let len = p_be.len();
        let b = fp.to_mont(&from_be(&hex(b)?, w)?);
        let mut c = Curve {
            fp,
            fnn,
            b,
            len,
            piece: (8 * len).div_ceil(PIECES),
            n_be,
            p_be,
            gen_tables: Vec::new(),
        };
        let g = c.point(&hex(gx)?, &hex(gy)?)?;
        c.gen_tables = c.tables(&g, W_GEN)?;
        Some(c)
    }

    /// Parse and check an affine point given as big-endian coordinates of `len` bytes each:
    /// both below p and y² = x³ − 3x + b.
    fn point(&self, x: &[u8], y: &[u8]) -> Option<Affine<N>> {
        if x.len() != self.len || y.len() != self.len {
            return None;
        }
        if x >= self.p_be.as_slice() || y >= self.p_be.as_slice() {
            return None;
        }
        let f = &self.fp;
        let x = f.to_mont(&from_be(x, f.w)?);
        let y = f.to_mont(&from_be(y, f.w)?);
        let x3 = f.mul(&f.sqr(&x), &x);
        let three_x = f.add(&f.add(&x, &x), &x);
        let rhs = f.add(&f.sub(&x3, &three_x), &self.b);
        f.eq(&f.sqr(&y), &rhs).then_some(Affine { x, y })
    }

    /// For each piece j, the odd multiples [1, 3, …, 2^(w−1) − 1]·B_j of B_j = 2^(j·piece)·P,
    /// affine (two batched inversions in all).
    fn tables(&self, p: &Affine<N>, w: u32) -> Option<Vec<Vec<Affine<N>>>> {
        let mut bases = Vec::with_capacity(2 * PIECES);
        let mut cur = self.jacobian_of(p);
        for j in 0..PIECES {
            if j > 0 {
                for _ in 0..self.piece {
                    cur = self.double(&cur);
                }
            }
            bases.push(cur);
            bases.push(self.double(&cur));
        }
        let bases = self.batch_affine(&bases)?;
        let count = 1usize << (w - 2);
        let mut all = Vec::with_capacity(PIECES * count);
        for pair in bases.chunks_exact(2) {
            let (base, twice) = match pair {
                [b, t] => (b, t),
                _ => return None,
            };
            let mut c = self.jacobian_of(base);
            all.push(c);
            for _ in 1..count {
                c = self.add_affine(&c, twice);
                all.push(c);
            }
        }
        let all = self.batch_affine(&all)?;
        Some(all.chunks(count).map(<[Affine<N>]>::to_vec).collect())
    }

    /// Affine forms of Jacobian points with one field inversion (Montgomery's trick);
    /// `None` if a point is at infinity.
    fn batch_affine(&self, pts: &[Jacobian<N>]) -> Option<Vec<Affine<N>>> {
        let f = &self.fp;
        if pts.iter().any(|p| p.inf || f.is_zero(&p.z)) {
            return None;
        }
        // prefix[i] = Z_0 · … · Z_i
        let mut prefix = Vec::with_capacity(pts.len());
        let mut acc = f.to_mont(&one());
        for p in pts {
            acc = f.mul(&acc, &p.z);
            prefix.push(acc);
        }
        let mut inv = f.inv(&acc)?;
        let mut out = vec![
            Affine {
                x: [0; N],
                y: [0; N]
            };
            pts.len()
        ];
        for i in (0..pts.len()).rev() {
            let p = pts.get(i)?;
            // Z_i⁻¹ = (Z_0 … Z_i)⁻¹ · (Z_0 … Z_(i−1))
            let zi = match i.checked_sub(1) {
                Some(j) => f.mul(&inv, prefix.get(j)?),
                None => inv,
            };
            inv = f.mul(&inv, &p.z);
            let zi2 = f.sqr(&zi);
            *out.get_mut(i)? = Affine {
                x: f.canonical(&f.mul(&p.x, &zi2)),
                y: f.canonical(&f.mul(&p.y, &f.mul(&zi2, &zi))),
            };
        }
        Some(out)
    }

    fn jacobian_of(&self, p: &Affine<N>) -> Jacobian<N> {
        Jacobian {
            x: p.x,
            y: p.y,
            z: self.fp.to_mont(&one()),
            inf: false,
        }
    }

    /// 2P (dbl-2001-b, a = −3): 3M + 5S.
    #[inline(never)]
    fn double(&self, p: &Jacobian<N>) -> Jacobian<N> {
        let f = &self.fp;
        if p.inf || f.is_zero(&p.y) {
            return Jacobian { inf: true, ..*p };
        }
        let delta = f.sqr(&p.z);
        let gamma = f.sqr(&p.y);
        let beta = f.mul(&p.x, &gamma);
        let t = f.mul(&f.sub(&p.x, &delta), &f.add(&p.x, &delta));
        let alpha = f.add(&f.add(&t, &t), &t);
        let beta2 = f.add(&beta, &beta);
        let beta4 = f.add(&beta2, &beta2);
        let beta8 = f.add(&beta4, &beta4);
        let x3 = f.sub(&f.sqr(&alpha), &beta8);
        let yz = f.add(&p.y, &p.z);
        let z3 = f.sub(&f.sub(&f.sqr(&yz), &gamma), &delta);
        let g2 = f.sqr(&gamma);
        let g4 = f.add(&g2, &g2);
        let g8 = f.add(&g4, &g4);
        let y3 = f.sub(&f.mul(&alpha, &f.sub(&beta4, &x3)), &f.add(&g8, &g8));
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
            inf: false,
        }
    }

    /// P + Q for Jacobian P and affine Q (madd-2007-bl): 7M + 4S, with the exceptional cases
    /// (P at infinity, P = Q, P = −Q) handled.
    #[inline(never)]
    fn add_affine(&self, p: &Jacobian<N>, q: &Affine<N>) -> Jacobian<N> {
        if p.inf {
            return self.jacobian_of(q);
        }
        let f = &self.fp;
        let z1z1 = f.sqr(&p.z);
        let u2 = f.mul(&q.x, &z1z1);
        let s2 = f.mul(&q.y, &f.mul(&p.z, &z1z1));
        let h = f.sub(&u2, &p.x);
        let s = f.sub(&s2, &p.y);
        if f.is_zero(&h) {
            return if f.is_zero(&s) {
                self.double(p)
            } else {
                Jacobian { inf: true, ..*p }
            };
        }
        let hh = f.sqr(&h);
        let i = f.add(&hh, &hh);
        let i = f.add(&i, &i);
        let j = f.mul(&h, &i);
        let r = f.add(&s, &s);
        let v = f.mul(&p.x, &i);
        let x3 = f.sub(&f.sub(&f.sqr(&r), &j), &f.add(&v, &v));
        let y1j = f.mul(&p.y, &j);
        let y3 = f.sub(&f.mul(&r, &f.sub(&v, &x3)), &f.add(&y1j, &y1j));
        let zh = f.add(&p.z, &h);
        let z3 = f.sub(&f.sub(&f.sqr(&zh), &z1z1), &hh);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
            inf: false,
        }
    }

    /// Whether big-endian coordinates are a point on the curve: the check of [`Self::key`]
    /// without building its tables (a few field operations).
    pub(crate) fn is_point(&self, x: &[u8], y: &[u8]) -> bool {
        self.point(x, y).is_some()
    }

    /// Parse a public key from big-endian coordinates (each exactly `len` bytes).
    pub(crate) fn key(&self, x: &[u8], y: &[u8]) -> Option<Key<N>> {
        let q = self.point(x, y)?;
        Some(Key {
            tables: self.tables(&q, W_KEY)?,
        })
    }

    /// Verify `r ‖ s` over a message digest (truncated to the bit length of n if longer).
    pub(crate) fn verify(&self, key: &Key<N>, digest: &[u8], sig: &[u8]) -> bool {
        self.verify_inner(key, digest, sig).unwrap_or(false)
    }

    fn verify_inner(&self, key: &Key<N>, digest: &[u8], sig: &[u8]) -> Option<bool> {
        if sig.len() != 2 * self.len {
            return Some(false);
        }
        let (r_be, s_be) = sig.split_at(self.len);
        let zero = vec![0u8; self.len];
        let n_be = self.n_be.as_slice();
        if r_be >= n_be || s_be >= n_be || r_be == zero.as_slice() || s_be == zero.as_slice() {
            return Some(false);
        }
        let fnn = &self.fnn;
        let w = fnn.w;
        // z: the leftmost bits of the digest, as many as n has (n's length is a whole number
        // of bytes for P-256 and P-384), reduced mod n.
        let z_be = digest.get(..digest.len().min(self.len))?;
        let z = from_be::<N>(z_be, w)?;
        let r = from_be::<N>(r_be, w)?;
        let s = from_be::<N>(s_be, w)?;
        let s_inv = fnn.inv_plain(&s)?;
        // u = x·s⁻¹ mod n: (x·R)·s⁻¹·R⁻¹, all plain.
        let u1 = fnn.canonical(&fnn.mul(&fnn.to_mont(&z), &s_inv));
        let u2 = fnn.canonical(&fnn.mul(&fnn.to_mont(&r), &s_inv));
        let mut u1_be = vec![0u8; self.len];
        let mut u2_be = vec![0u8; self.len];
        to_be(&u1, w, &mut u1_be);
        to_be(&u2, w, &mut u2_be);
        let mut digits = Vec::with_capacity(2 * PIECES);
        let mut tables = Vec::with_capacity(2 * PIECES);
        for (u_be, (tabs, win)) in [
            (&u1_be, (&self.gen_tables, W_GEN)),
            (&u2_be, (&key.tables, W_KEY)),
        ] {
            for (j, table) in tabs.iter().enumerate() {
                digits.push(wnaf(
                    &scalar_piece(u_be, j * self.piece, self.piece),
                    win,
                    self.piece,
                ));
                tables.push(table);
            }
        }
        let mut acc = Jacobian {
            x: [0; N],
            y: [0; N],
            z: [0; N],
            inf: true,
        };
        for i in (0..=self.piece).rev() {
            if !acc.inf {
                acc = self.double(&acc);
            }
            for (d, table) in digits.iter().zip(&tables) {
                let digit = d.get(i).copied().unwrap_or(0);
                if digit != 0 {
                    let pt = table.get((digit.unsigned_abs() as usize - 1) / 2)?;
                    acc = if digit > 0 {
                        self.add_affine(&acc, pt)
                    } else {
                        self.add_affine(&acc, &self.neg(pt))
                    };
                }
            }
        }
        if acc.inf || self.fp.is_zero(&acc.z) {
            return Some(false);
        }
        // x(R) mod n == r ⟺ x(R) ∈ {r, r + n} (x < p < 2n): check X == x·Z² for those x.
        let f = &self.fp;
        let z2 = f.sqr(&acc.z);
        let rm = f.to_mont(&from_be::<N>(r_be, f.w)?);
        if f.eq(&acc.x, &f.mul(&rm, &z2)) {
            return Some(true);
        }
        let r_plus_n = fnn.add_raw(&r, &fnn.m);
        let p = from_be::<N>(&self.p_be, f.w)?;
        if lt(&r_plus_n, &p) {
            let rm = f.to_mont(&r_plus_n);
            return Some(f.eq(&acc.x, &f.mul(&rm, &z2)));
        }
        Some(false)
    }

    fn neg(&self, p: &Affine<N>) -> Affine<N> {
        Affine {
            x: p.x,
            y: self.fp.sub(&[0u64; N], &p.y),
        }
    }
}

fn one<const N: usize>() -> Fe<N> {
    let mut o = [0u64; N];
    if let Some(x) = o.first_mut() {
        *x = 1;
    }
    o
}

/// Bits [from, from + len) of a big-endian scalar, as little-endian u64 words (len ≤ 256).
fn scalar_piece(be: &[u8], from: usize, len: usize) -> [u64; 4] {
    let mut out = [0u64; 4];
    for bit in 0..len {
        let pos = from + bit;
        let set = be
            .len()
            .checked_sub(1 + pos / 8)
            .and_then(|i| be.get(i))
            .is_some_and(|byte| (byte >> (pos % 8)) & 1 == 1);
        if set {
            if let Some(wd) = out.get_mut(bit / 64) {
                *wd |= 1 << (bit % 64);
            }
        }
    }
    out
}

/// wNAF digits (least significant first, `len + 1` of them) of k < 2^len: odd digits in
/// (−2^(w−1), 2^(w−1)), each nonzero digit followed by at least w − 1 zeros.
fn wnaf(k: &[u64; 4], w: u32, len: usize) -> Vec<i8> {
    let mut k = *k;
    let mut out = vec![0i8; len + 2];
    let window = 1i64 << w;
    for digit in out.iter_mut() {
        if k == [0u64; 4] {
            break;
        }
        if k[0] & 1 == 1 {
            let mut d = (k[0] & (window as u64 - 1)) as i64;
            if d >= window / 2 {
                d -= window;
            }
            *digit = d as i8;
            // k −= d
            if d > 0 {
                sub_small(&mut k, d as u64);
            } else {
                add_small(&mut k, d.unsigned_abs());
            }
        }
        // k >>= 1
        let mut carry = 0u64;
        for wd in k.iter_mut().rev() {
            let next = *wd & 1;
            *wd = (*wd >> 1) | (carry << 63);
            carry = next;
        }
    }
    out
}

fn add_small(k: &mut [u64; 4], v: u64) {
    let mut carry = v;
    for wd in k.iter_mut() {
        let (s, c) = wd.overflowing_add(carry);
        *wd = s;
        carry = u64::from(c);
    }
}

fn sub_small(k: &mut [u64; 4], v: u64) {
    let mut borrow = v;
    for wd in k.iter_mut() {
        let (s, b) = wd.overflowing_sub(borrow);
        *wd = s;
        borrow = u64::from(b);
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    b.chunks(2)
        .map(|c| {
            let d = |x: u8| (x as char).to_digit(16);
            match c {
                [h, l] => Some((d(*h)? * 16 + d(*l)?) as u8),
                _ => None,
            }
        })
        .collect()
}

/// P-256 limbs: 9 × 29 bits (R = 2^261).
pub(crate) const P256_LIMBS: usize = 9;
/// P-384 limbs: 14 × 28 bits (R = 2^392).
pub(crate) const P384_LIMBS: usize = 14;

/// The P-256 curve (SEC 2 / FIPS 186-5 parameters), built on first use (in each Wasm VM:
/// about 0.2 ms under V8 for the generator tables, 1 ms for P-384; see crypto-bench).
pub(crate) fn p256() -> Option<&'static Curve<P256_LIMBS>> {
    static CURVE: OnceLock<Option<Curve<P256_LIMBS>>> = OnceLock::new();
    CURVE.get_or_init(build_p256).as_ref()
}

/// Build P-256 with its generator tables (what `p256` caches).
pub(crate) fn build_p256() -> Option<Curve<P256_LIMBS>> {
    Curve::new(
        "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
        "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
        "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
        "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
        29,
    )
}

/// The P-384 curve, built on first use.
pub(crate) fn p384() -> Option<&'static Curve<P384_LIMBS>> {
    static CURVE: OnceLock<Option<Curve<P384_LIMBS>>> = OnceLock::new();
    CURVE.get_or_init(build_p384).as_ref()
}

/// Build P-384 with its generator tables (what `p384` caches).
pub(crate) fn build_p384() -> Option<Curve<P384_LIMBS>> {
    Curve::new(
        "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
        "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
        "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
        "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",
        "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f",
        28,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_build_and_generator_is_on_curve() {
        let c = p256().unwrap();
        assert_eq!(c.gen_tables.len(), PIECES);
        assert_eq!(c.gen_tables[0].len(), 32);
        assert_eq!(c.piece, 64);
        let c = p384().unwrap();
        assert_eq!(c.piece, 96);
    }

    #[test]
    fn field_mul_matches_reference() {
        let c = p256().unwrap();
        let f = &c.fp;
        // (p − 1)² ≡ 1
        let mut pm1 = c.p_be.clone();
        *pm1.last_mut().unwrap() -= 1;
        let x = f.to_mont(&from_be(&pm1, f.w).unwrap());
        assert_eq!(f.out_of_mont(&f.mul(&x, &x)), one());
        assert_eq!(f.out_of_mont(&f.sqr(&x)), one());
        let inv = f.inv(&x).unwrap();
        assert_eq!(f.out_of_mont(&f.mul(&inv, &x)), one());
    }

    #[test]
    fn wnaf_digits_recompose() {
        for w in [5u32, 7] {
            for k in [
                [0x1234_5678_9abc_def1u64, 0xffff, 0, 0],
                [u64::MAX, 0x7f, 0, 0],
                [1, 0, 0, 0],
            ] {
                let d = wnaf(&k, w, 80);
                let mut acc = 0i128;
                for (i, &di) in d.iter().enumerate() {
                    acc += i128::from(di) << i;
                }
                assert_eq!(acc, (i128::from(k[1]) << 64) + i128::from(k[0]));
                assert!(d
                    .iter()
                    .all(|&x| x == 0 || (x % 2 != 0 && x.abs() < 1 << (w - 1))));
                // at least w − 1 zeros after each nonzero digit
                for (i, &x) in d.iter().enumerate() {
                    if x != 0 {
                        assert!(d[i + 1..].iter().take(w as usize - 1).all(|&y| y == 0));
                    }
                }
            }
        }
    }
}
