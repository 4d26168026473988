//! What the fuzz targets (`fuzz_targets/*.rs`) share: the harness's own keys and the
//! configurations that trust them ([`keys`]), signing and independent verification with
//! RustCrypto ([`reference`]), raw bytes as a request ([`request`]), and the invariants checked
//! on every input ([`check`]): decisions are the same with and without the token cache, every
//! header the filter sets is free of control characters, a verified caller's token also
//! verifies with an independent library and has valid claims, and the filter's work on one
//! input stays within the time budget.
//!
//! Every check panics with a message naming the invariant: libFuzzer reports the panic as a
//! crash and writes the input to `fuzz/artifacts/<target>/`.

pub mod check;
pub mod keys;
pub mod reference;
pub mod request;
pub mod seeds;

/// The fixed "now" of the harness (Unix seconds); tokens are minted relative to it.
pub const NOW: u64 = 1_800_000_000;

/// A tiny deterministic generator (SplitMix64), for PSS salts and for choices derived from
/// fuzz input: the same input always does the same thing.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl rsa::rand_core::RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        SplitMix::next_u64(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let word = SplitMix::next_u64(self).to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(word.iter()) {
                *d = *s;
            }
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

// Only salts and blinding of signatures the harness itself makes: not a security boundary.
impl rsa::rand_core::CryptoRng for SplitMix {}
