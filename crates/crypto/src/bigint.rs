//! Variable-time Montgomery arithmetic modulo an odd RSA modulus, shaped for wasm32.
//!
//! wasm32 has a native u32×u32→u64 multiply (`i64.mul` on zero-extended operands) but no
//! 64×64→128 one and no carry flag, so textbook 32-bit-limb Montgomery multiplication spends
//! most of its time propagating carries, one dependent add-and-shift per product. Here the limbs
//! are w = 28 bits (27 above ~3,500-bit moduli): a product is below 2^2w and a u64 column can
//! absorb every product that lands on it (≤ 2L of them) without overflowing, so carries are
//! propagated once per limb instead of once per product. Each row of the multiplication and of
//! the reduction is then a plain `t[i..] += x · y[..]` loop with independent iterations, which
//! pipelines well and which LLVM vectorizes (natively, and in wasm when SIMD is enabled).
//!
//! With R = 2^(w·L) > 4n, values stay in [0, 2n) between operations (no per-operation final
//! subtraction); one conditional subtraction at the end yields the canonical result.
//!
//! Nothing here handles secrets: timing depends on the (public) exponent and operands.

/// Largest modulus, in bits.
pub const MAX_BITS: usize = 8192;
/// Zero limbs kept before and after each operand, so that the four-row loops below can read
/// b[j − 3 .. j] for any j without bounds arithmetic.
const PAD: usize = 3;
/// Limbs for the largest modulus at the smallest limb width (27 bits), with R > 4n, rounded up
/// to a multiple of 4.
const MAX_LIMBS: usize = (MAX_BITS + 2).div_ceil(27).next_multiple_of(4);
/// Largest limb count for which 28-bit limbs cannot overflow a u64 column (2L·2^56 + carry),
/// as a multiple of 4.
const MAX_LIMBS_W28: usize = 124;
/// Length of a padded operand buffer.
const BUF: usize = MAX_LIMBS + 2 * PAD;

/// An odd modulus n ≥ 3 with its Montgomery constants.
#[derive(Clone, PartialEq, Eq)]
pub struct Modulus {
    /// n in little-endian w-bit limbs, padded: PAD zeros, L limbs, PAD zeros.
    n: Vec<u32>,
    /// R² mod n, R = 2^(w·L), padded like `n`.
    r2: Vec<u32>,
    /// −n⁻¹ mod 2^w.
    n0inv: u32,
    /// Limb width in bits.
    w: u32,
    /// Number of limbs L (a multiple of 4).
    l: usize,
}

/// Column sums of one product (2L words), and the buffers of a Karatsuba squaring.
struct Scratch {
    t: [u64; 2 * MAX_LIMBS],
    /// Column sums of (lo + hi)², 2h words.
    mid: [u64; 2 * MAX_LIMBS],
    /// lo, hi and lo + hi, padded like an operand.
    lo: [u32; BUF],
    hi: [u32; BUF],
    sum: [u32; BUF],
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            t: [0u64; 2 * MAX_LIMBS],
            mid: [0u64; 2 * MAX_LIMBS],
            lo: [0u32; BUF],
            hi: [0u32; BUF],
            sum: [0u32; BUF],
        }
    }
}

impl Modulus {
    /// Precompute the constants for the odd modulus `n_be` (big-endian, no leading zero byte)
    /// of `bits` bits. `None` if n is even, below 3 or above `MAX_BITS`.
    pub fn new(n_be: &[u8], bits: usize) -> Option<Modulus> {
        if !(2..=MAX_BITS).contains(&bits) || n_be.last().is_none_or(|b| b & 1 == 0) {
            return None;
        }
        // R = 2^(wL) > 4n: wL ≥ bits + 2.
        let (w, l) = match (bits + 2).div_ceil(28).next_multiple_of(4) {
            l if l <= MAX_LIMBS_W28 => (28u32, l),
            _ => (27u32, (bits + 2).div_ceil(27).next_multiple_of(4)),
        };
        let mut n = vec![0u32; l + 2 * PAD];
        from_be_bytes(n_be, w, n.get_mut(PAD..PAD + l)?);
        let mask = (1u32 << w) - 1;
        let n0 = n.get(PAD).copied()?;
        let n0inv = inverse_mod_2_32(n0).wrapping_neg() & mask;
        let mut m = Modulus {
            n,
            r2: Vec::new(),
            n0inv,
            w,
            l,
        };
        m.r2 = m.compute_r2(bits)?;
        Some(m)
    }

    fn mask(&self) -> u64 {
        (1u64 << self.w) - 1
    }

    /// The L value limbs of a padded operand.
    fn value<'a>(&self, x: &'a [u32]) -> Option<&'a [u32]> {
        x.get(PAD..PAD + self.l)
    }

    fn value_mut<'a>(&self, x: &'a mut [u32]) -> Option<&'a mut [u32]> {
        x.get_mut(PAD..PAD + self.l)
    }

    /// `out` = s^e mod n as big-endian bytes (`out.len()` of them), for s (big-endian bytes) < n
    /// and odd e ≥ 3. `None` if a length is out of range.
    pub fn pow_be(&self, s_be: &[u8], e: u64, out: &mut [u8]) -> Option<()> {
        if e < 3 || e & 1 == 0 {
            return None;
        }
        let len = self.l + 2 * PAD;
        let mut scratch = Scratch::new();
        let mut s_buf = [0u32; BUF];
        let mut sm_buf = [0u32; BUF];
        let mut x_buf = [0u32; BUF];
        let mut y_buf = [0u32; BUF];
        let s = s_buf.get_mut(..len)?;
        from_be_bytes(s_be, self.w, self.value_mut(s)?);
        let s = &*s;
        let sm = sm_buf.get_mut(..len)?;
        // s·R mod n (in [0, 2n))
        self.mul(sm, s, &self.r2, &mut scratch)?;
        let sm = &*sm;
        let x = x_buf.get_mut(..len)?;
        let y = y_buf.get_mut(..len)?;
        x.copy_from_slice(sm);
        // Left to right over the bits of e below the top one, except the lowest (e is odd):
        // x = s^(prefix of e) · R.
        let e_bits = 64 - e.leading_zeros();
        for bit in (1..e_bits - 1).rev() {
            self.sqr(y, x, &mut scratch)?;
            if (e >> bit) & 1 == 1 {
                self.mul(x, y, sm, &mut scratch)?;
            } else {
                x.copy_from_slice(y);
            }
        }
        // Last bit (1): square, then multiply by the plain s, which also drops the factor R:
        // s^(e−1)·R · s · R⁻¹ = s^e (mod n).
        self.sqr(y, x, &mut scratch)?;
        self.mul(x, y, s, &mut scratch)?;
        let x = self.value_mut(x)?;
        self.reduce_once(x)?;
        to_be_bytes(x, self.w, out);
        Some(())
    }

    /// `out = a·b·R⁻¹ mod n` in [0, 2n), for a, b in [0, 2n) (padded operands).
    ///
    /// Rows go four at a time, t[k] += a_i·b_(k−i) + a_(i+1)·b_(k−i−1) + a_(i+2)·b_(k−i−2) +
    /// a_(i+3)·b_(k−i−3), with the three b limbs of the previous step kept in registers, so
    /// each step loads one limb and one column word for four products.
    fn mul(&self, out: &mut [u32], a: &[u32], b: &[u32], s: &mut Scratch) -> Option<()> {
        let l = self.l;
        let t = s.t.get_mut(..2 * l)?;
        t.fill(0);
        // b_0 … b_(L−1) followed by PAD zeros.
        let b_tail = b.get(PAD..l + 2 * PAD)?;
        for (i, a4) in (0..).step_by(4).zip(self.value(a)?.chunks_exact(4)) {
            let &[a0, a1, a2, a3] = a4 else {
                return None;
            };
            let (a0, a1, a2, a3) = (a0 as u64, a1 as u64, a2 as u64, a3 as u64);
            let (mut p1, mut p2, mut p3) = (0u64, 0u64, 0u64);
            for (tk, &bk) in t.get_mut(i..i + l + PAD)?.iter_mut().zip(b_tail) {
                let bk = bk as u64;
                *tk += a0 * bk + a1 * p1 + a2 * p2 + a3 * p3;
                (p3, p2, p1) = (p2, p1, bk);
            }
        }
        self.reduce(t, out)
    }

    /// `out = a²·R⁻¹ mod n` in [0, 2n), for a in [0, 2n) (padded operand).
    ///
    /// For larger moduli, one level of Karatsuba: with a = lo + hi·B (B = 2^(w·h)),
    /// a² = lo² + ((lo + hi)² − lo² − hi²)·B + hi²·B², three squarings of about half the size
    /// instead of one of the full size. The subtraction is done on column sums, where each
    /// column of (lo + hi)² is at least the sum of the same columns of lo² and hi², so the
    /// result is exactly the schoolbook column sums and no carry is ever propagated. The limbs
    /// of lo + hi have w + 1 bits; a column of its square holds at most h products below
    /// 2^(2w+2), which must fit in a u64.
    fn sqr(&self, out: &mut [u32], a: &[u32], s: &mut Scratch) -> Option<()> {
        let l = self.l;
        let h = (l / 2).next_multiple_of(4);
        let karatsuba = l >= 32 && h < 1 << (62 - 2 * self.w as usize);
        if !karatsuba {
            square_cols(a, l, s.t.get_mut(..2 * l)?)?;
            return self.reduce(s.t.get_mut(..2 * l)?, out);
        }
        let hl = l - h;
        let av = self.value(a)?;
        let (a_lo, a_hi) = av.split_at(h);
        let lo = s.lo.get_mut(..h + 2 * PAD)?;
        let hi = s.hi.get_mut(..h + 2 * PAD)?;
        let sum = s.sum.get_mut(..h + 2 * PAD)?;
        lo.get_mut(PAD..PAD + h)?.copy_from_slice(a_lo);
        // hi has hl ≤ h limbs; the rest of its buffer stays zero.
        hi.get_mut(PAD..PAD + hl)?.copy_from_slice(a_hi);
        for ((x, &y), &z) in sum
            .get_mut(PAD..PAD + h)?
            .iter_mut()
            .zip(lo.get(PAD..PAD + h)?)
            .zip(hi.get(PAD..PAD + h)?)
        {
            *x = y + z;
        }
        let t = s.t.get_mut(..2 * l)?;
        let (t_lo, t_hi) = t.split_at_mut(2 * h);
        square_cols(lo, h, t_lo)?;
        square_cols(hi, hl, t_hi)?;
        let mid = s.mid.get_mut(..2 * h)?;
        square_cols(sum, h, mid)?;
        for (m, &x) in mid.iter_mut().zip(&*t_lo) {
            *m -= x;
        }
        for (m, &x) in mid.iter_mut().zip(&*t_hi) {
            *m -= x;
        }
        for (x, &m) in t.get_mut(h..3 * h)?.iter_mut().zip(&*mid) {
            *x += m;
        }
        self.reduce(t, out)
    }

    /// Montgomery reduction of the column sums `t` (2L words) into the padded `out`:
    /// t·R⁻¹ mod n in [0, 2n). Four rows at a time: their multipliers m_i … m_(i+3) are found
    /// one after another (each needs the previous rows' contributions to its column), then the
    /// rest of the four rows is added in one pass, as in [`Modulus::mul`].
    fn reduce(&self, t: &mut [u64], out: &mut [u32]) -> Option<()> {
        let l = self.l;
        let w = self.w;
        let mask = self.mask();
        let nv = self.value(&self.n)?;
        let &[n0, n1, n2, n3] = nv.get(..4)? else {
            return None;
        };
        let (n0, n1, n2, n3) = (n0 as u64, n1 as u64, n2 as u64, n3 as u64);
        // n_4 … n_(L−1) followed by PAD zeros.
        let n_tail = self.n.get(PAD + 4..l + 2 * PAD)?;
        let n0inv = self.n0inv;
        // m for the column value v (carry included), and the carry into the next column:
        // v + m·n0 ≡ 0 (mod 2^w); split to stay within u64.
        let row = |v: u64| {
            let m = ((v as u32).wrapping_mul(n0inv) as u64) & mask;
            (m, (v >> w) + (((v & mask) + m * n0) >> w))
        };
        let mut carry = 0u64;
        for i in (0..l).step_by(4) {
            // The four head columns, with the contributions of these rows to them.
            let &[h0, h1, h2, h3] = t.get(i..i + 4)? else {
                return None;
            };
            let (m0, c) = row(h0 + carry);
            let (m1, c) = row(h1 + m0 * n1 + c);
            let (m2, c) = row(h2 + m0 * n2 + m1 * n1 + c);
            let (m3, c) = row(h3 + m0 * n3 + m1 * n2 + m2 * n1 + c);
            carry = c;
            let (mut p1, mut p2, mut p3) = (n3, n2, n1);
            for (tk, &x) in t.get_mut(i + 4..i + l + PAD)?.iter_mut().zip(n_tail) {
                let x = x as u64;
                *tk += m0 * x + m1 * p1 + m2 * p2 + m3 * p3;
                (p3, p2, p1) = (p2, p1, x);
            }
        }
        let high = t.get(l..2 * l)?;
        for (o, &tk) in self.value_mut(out)?.iter_mut().zip(high) {
            let v = tk + carry;
            *o = (v & mask) as u32;
            carry = v >> w;
        }
        Some(())
    }

    /// x ← x − n if x ≥ n (x < 2n), on the value limbs.
    fn reduce_once(&self, x: &mut [u32]) -> Option<()> {
        let n = self.value(&self.n)?;
        if !less_than(x, n) {
            sub_in_place(x, n, self.w);
        }
        Some(())
    }

    /// R² mod n: R mod n by doubling, then a left-to-right binary powering of 2 in the
    /// Montgomery domain (squarings plus doublings) up to 2^(w·L)·R = R² (mod n).
    fn compute_r2(&self, bits: usize) -> Option<Vec<u32>> {
        let l = self.l;
        let w = self.w as usize;
        let mut x = vec![0u32; l + 2 * PAD];
        let mut y = vec![0u32; l + 2 * PAD];
        // x = 2^(bits−1) < n, doubled up to 2^(wL) = R mod n.
        *self.value_mut(&mut x)?.get_mut((bits - 1) / w)? = 1 << ((bits - 1) % w);
        for _ in bits - 1..w * l {
            self.double(self.value_mut(&mut x)?)?;
        }
        // x = Mont(1) = R mod n. Now Mont(2^E) = 2^E·R with E = w·L, from its top bit.
        let e = w * l;
        let e_bits = usize::BITS - e.leading_zeros();
        self.double(self.value_mut(&mut x)?)?; // Mont(2)
        let mut scratch = Scratch::new();
        for bit in (0..e_bits - 1).rev() {
            self.sqr(&mut y, &x, &mut scratch)?;
            self.reduce_once(self.value_mut(&mut y)?)?;
            std::mem::swap(&mut x, &mut y);
            if (e >> bit) & 1 == 1 {
                self.double(self.value_mut(&mut x)?)?;
            }
        }
        Some(x)
    }

    /// x ← 2x mod n, for x < n (value limbs).
    fn double(&self, x: &mut [u32]) -> Option<()> {
        let mask = self.mask() as u32;
        let mut carry = 0u32;
        for limb in x.iter_mut() {
            let v = (*limb << 1) | carry;
            carry = v >> self.w;
            *limb = v & mask;
        }
        // 2x < 2n < R: no carry out of the top limb.
        self.reduce_once(x)
    }
}

/// `t` (2l words) = the column sums of a², for a (l limbs, a multiple of 4) padded with PAD
/// zeros on each side. Four rows i … i + 3 at a time: the products within the block
/// a_i … a_(i+3) (squares, and cross products once with 2·a_r as the multiplier) in straight
/// code, then the cross products with the limbs above the block in one pass, as in
/// [`Modulus::mul`] with the window starting empty.
fn square_cols(a: &[u32], l: usize, t: &mut [u64]) -> Option<()> {
    t.fill(0);
    let av = a.get(PAD..PAD + l)?;
    for (i, a4) in (0..).step_by(4).zip(av.chunks_exact(4)) {
        let &[a0, a1, a2, a3] = a4 else {
            return None;
        };
        let (a0, a1, a2, a3) = (a0 as u64, a1 as u64, a2 as u64, a3 as u64);
        let (d0, d1, d2) = (2 * a0, 2 * a1, 2 * a2);
        let d3 = 2 * a3;
        let head: &mut [u64; 7] = t.get_mut(2 * i..2 * i + 7)?.try_into().ok()?;
        head[0] += a0 * a0;
        head[1] += d0 * a1;
        head[2] += d0 * a2 + a1 * a1;
        head[3] += d0 * a3 + d1 * a2;
        head[4] += d1 * a3 + a2 * a2;
        head[5] += d2 * a3;
        head[6] += a3 * a3;
        if i + 4 >= l {
            break;
        }
        // Columns 2i + 4 onwards: partners a_(i+4) … (zeros past l − 1).
        let (mut p1, mut p2, mut p3) = (0u64, 0u64, 0u64);
        let t_body = t.get_mut(2 * i + 4..i + l + PAD)?;
        let a_body = a.get(i + 4 + PAD..l + 2 * PAD)?;
        for (tk, &x) in t_body.iter_mut().zip(a_body) {
            let x = x as u64;
            *tk += d0 * x + d1 * p1 + d2 * p2 + d3 * p3;
            (p3, p2, p1) = (p2, p1, x);
        }
    }
    Some(())
}

/// `a < b` for equal-length little-endian limb slices.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` for a ≥ b, w-bit limbs.
fn sub_in_place(a: &mut [u32], b: &[u32], w: u32) {
    let mask = (1u32 << w) - 1;
    let mut borrow = 0u32;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = x.wrapping_sub(y).wrapping_sub(borrow);
        borrow = d >> 31;
        *x = d & mask;
    }
}

/// n0⁻¹ mod 2³² for odd n0 (Newton iteration: each step doubles the number of correct bits).
fn inverse_mod_2_32(n0: u32) -> u32 {
    let mut x = n0; // correct to 3 bits: n0·n0 ≡ 1 (mod 8)
    for _ in 0..4 {
        x = x.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(x)));
    }
    x
}

/// Big-endian bytes into little-endian w-bit limbs; bits beyond `out` are dropped.
fn from_be_bytes(bytes: &[u8], w: u32, out: &mut [u32]) {
    out.fill(0);
    let mask = (1u64 << w) - 1;
    let mut acc = 0u64;
    let mut nbits = 0u32;
    let mut limbs = out.iter_mut();
    for &b in bytes.iter().rev() {
        acc |= u64::from(b) << nbits;
        nbits += 8;
        if nbits >= w {
            if let Some(o) = limbs.next() {
                *o = (acc & mask) as u32;
            }
            acc >>= w;
            nbits -= w;
        }
    }
    if let Some(o) = limbs.next() {
        *o = acc as u32;
    }
}

/// Little-endian w-bit limbs into exactly `out.len()` big-endian bytes (higher bits dropped).
fn to_be_bytes(limbs: &[u32], w: u32, out: &mut [u8]) {
    let mut acc = 0u64;
    let mut nbits = 0u32;
    let mut it = limbs.iter();
    for o in out.iter_mut().rev() {
        if nbits < 8 {
            acc |= u64::from(it.next().copied().unwrap_or(0)) << nbits;
            nbits += w;
        }
        *o = acc as u8;
        acc >>= 8;
        nbits -= 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for test operands.
    struct Lcg(u64);
    impl Lcg {
        fn byte(&mut self) -> u8 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 56) as u8
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.byte()).collect()
        }
    }

    /// Reference a·b mod n: schoolbook base-256 arithmetic on big-endian bytes.
    fn mul_mod_ref(a: &[u8], b: &[u8], n: &[u8]) -> Vec<u8> {
        // product in base 256
        let mut p = vec![0u32; a.len() + b.len()];
        for (i, &x) in a.iter().rev().enumerate() {
            for (j, &y) in b.iter().rev().enumerate() {
                p[i + j] += u32::from(x) * u32::from(y);
            }
            // normalise occasionally to avoid overflow
            let mut c = 0u32;
            for v in p.iter_mut() {
                let t = *v + c;
                *v = t & 0xff;
                c = t >> 8;
            }
        }
        let prod: Vec<u8> = p.iter().rev().map(|&v| v as u8).collect();
        mod_ref(&prod, n)
    }

    /// x mod n by shift-and-subtract, big-endian bytes.
    fn mod_ref(x: &[u8], n: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; n.len() + 1];
        let mut padded = vec![0u8];
        padded.extend_from_slice(n);
        for &byte in x {
            for bit in (0..8).rev() {
                // r = 2r + bit
                let mut c = (byte >> bit) & 1;
                for v in r.iter_mut().rev() {
                    let t = (u16::from(*v) << 1) | u16::from(c);
                    *v = t as u8;
                    c = (t >> 8) as u8;
                }
                // if r >= n: r -= n
                if r >= padded {
                    let mut borrow = 0i16;
                    for (v, &m) in r.iter_mut().rev().zip(padded.iter().rev()) {
                        let t = i16::from(*v) - i16::from(m) - borrow;
                        *v = t.rem_euclid(256) as u8;
                        borrow = i16::from(t < 0);
                    }
                }
            }
        }
        r[1..].to_vec()
    }

    fn pow_ref(s: &[u8], e: u64, n: &[u8]) -> Vec<u8> {
        let mut result = mod_ref(&[1], n);
        for bit in (0..64 - e.leading_zeros()).rev() {
            result = mul_mod_ref(&result, &result, n);
            if (e >> bit) & 1 == 1 {
                result = mul_mod_ref(&result, s, n);
            }
        }
        result
    }

    fn random_modulus(g: &mut Lcg, bits: usize) -> Vec<u8> {
        let len = bits.div_ceil(8);
        let mut n = g.bytes(len);
        let top_bit = (bits - 1) % 8;
        n[0] &= ((1u16 << (top_bit + 1)) - 1) as u8;
        n[0] |= 1 << top_bit;
        n[len - 1] |= 1;
        n
    }

    #[test]
    fn byte_conversions_round_trip() {
        let mut g = Lcg(5);
        for w in [27u32, 28] {
            for len in [1usize, 2, 3, 7, 31, 256, 257] {
                let b = g.bytes(len);
                let mut limbs = vec![0u32; (len * 8).div_ceil(w as usize) + 1];
                from_be_bytes(&b, w, &mut limbs);
                assert!(limbs.iter().all(|&l| l < 1 << w));
                let mut back = vec![0u8; len];
                to_be_bytes(&limbs, w, &mut back);
                assert_eq!(b, back);
            }
        }
    }

    #[test]
    fn inverse_mod_2_32_is_an_inverse() {
        let mut g = Lcg(1);
        for _ in 0..1000 {
            let b = g.bytes(4);
            let x = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) | 1;
            assert_eq!(x.wrapping_mul(inverse_mod_2_32(x)), 1);
        }
    }

    #[test]
    fn pow_matches_reference_on_small_and_odd_sizes() {
        let mut g = Lcg(42);
        for bits in [
            2usize, 3, 8, 9, 27, 28, 29, 55, 56, 57, 64, 100, 127, 200, 255,
        ] {
            for _ in 0..4 {
                let n = random_modulus(&mut g, bits);
                if n == [1] || n == [0, 1] {
                    continue;
                }
                let m = Modulus::new(&n, bits).unwrap();
                let s = mod_ref(&g.bytes(n.len()), &n);
                for e in [3u64, 5, 17, 65537, 0xffff_ffff, 0x8000_0001] {
                    let mut out = vec![0u8; n.len()];
                    m.pow_be(&s, e, &mut out).unwrap();
                    assert_eq!(out, pow_ref(&s, e, &n), "bits {bits} e {e}");
                }
            }
        }
    }

    #[test]
    fn pow_matches_reference_on_rsa_sizes() {
        let mut g = Lcg(7);
        // 3470 bits is the largest with 28-bit limbs; 3471 switches to 27-bit limbs.
        for bits in [1024usize, 2048, 3072, 3470, 3471, 4096] {
            let n = random_modulus(&mut g, bits);
            let m = Modulus::new(&n, bits).unwrap();
            assert_eq!(m.w, if bits <= 3470 { 28 } else { 27 });
            // Extreme operands too: 0, 1, n − 1.
            let mut n_minus_1 = n.clone();
            *n_minus_1.last_mut().unwrap() -= 1;
            let mut one = vec![0u8; n.len()];
            *one.last_mut().unwrap() = 1;
            for s in [
                mod_ref(&g.bytes(n.len()), &n),
                n_minus_1,
                one,
                vec![0u8; n.len()],
            ] {
                // e = 65537 where the reference is quick enough; e = 3 runs the same code.
                let e = if bits <= 2048 { 65537 } else { 3 };
                let mut out = vec![0u8; n.len()];
                m.pow_be(&s, e, &mut out).unwrap();
                assert_eq!(out, pow_ref(&s, e, &n), "bits {bits}");
            }
        }
    }

    #[test]
    fn column_sums_do_not_overflow_at_the_largest_limb_counts() {
        // n = 2^bits − 1 has every limb at its maximum; with debug overflow checks on, any
        // column sum that exceeded u64 would panic. (n − 1)^e = (−1)^e = n − 1 for odd e, and
        // 2^e is checked against the reference where that is quick.
        // 3358 bits: L = 120, the largest Karatsuba half (h = 60) with 28-bit limbs.
        for bits in [2047usize, 2048, 3358, 3470, 3471, 4096] {
            let mut n = vec![0xffu8; bits.div_ceil(8)];
            n[0] = (((1u16 << ((bits - 1) % 8 + 1)) - 1) & 0xff) as u8;
            let m = Modulus::new(&n, bits).unwrap();
            if bits == 3358 {
                assert_eq!((m.w, m.l), (28, 120));
            }
            let mut s = n.clone();
            *s.last_mut().unwrap() -= 1;
            let mut out = vec![0u8; n.len()];
            m.pow_be(&s, 65537, &mut out).unwrap();
            assert_eq!(out, s, "bits {bits}");
            let mut two = vec![0u8; n.len()];
            *two.last_mut().unwrap() = 2;
            m.pow_be(&two, 3, &mut out).unwrap();
            assert_eq!(out.last(), Some(&8));
            if bits <= 2048 {
                m.pow_be(&two, 65537, &mut out).unwrap();
                assert_eq!(out, pow_ref(&two, 65537, &n));
            }
        }
    }

    #[test]
    fn largest_modulus_and_limits() {
        let n = vec![0xffu8; MAX_BITS / 8];
        let m = Modulus::new(&n, MAX_BITS).unwrap();
        // (n − 1)^e = (−1)^e = n − 1 for odd e.
        let mut s = n.clone();
        *s.last_mut().unwrap() -= 1;
        let mut out = vec![0u8; n.len()];
        m.pow_be(&s, 65537, &mut out).unwrap();
        assert_eq!(out, s);
        assert!(Modulus::new(&[0xff; MAX_BITS / 8 + 1], MAX_BITS + 8).is_none());
        assert!(Modulus::new(&[0x10], 5).is_none());
        assert!(m.pow_be(&s, 4, &mut out).is_none());
        assert!(m.pow_be(&s, 1, &mut out).is_none());
    }
}
