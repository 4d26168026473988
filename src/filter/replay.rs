//! DPoP proofs recorded in the host's shared data, so that a proof used at one worker is refused
//! at the others (`dpop.shared_replay`).
//!
//! Only in Envoy and Istio: there shared data never traps, from any context. In Kong it traps
//! without an `shm_kv` zone, and requests are also decided inside call-response callbacks (after
//! a key fetch), where a trap would let the paused request through: each worker keeps its own
//! cache there (`dpop::ReplayCache`), a limit the docs state.
//!
//! Memory is fixed: `replay_cache_entries / BUCKET_ENTRIES` buckets (one shared-data entry
//! each, never more), each holding up to [`BUCKET_ENTRIES`] proofs as 24-byte records (the
//! 16-byte replay key, then the Unix second it expires, little endian). A full bucket forgets its
//! proof that expires first. Buckets are updated with compare-and-swap, retried a few times; a
//! bucket that cannot be read or written is skipped (the worker's own cache still applies).

use super::host::{Host, HostKind, CAS_MISMATCH};
use crate::dpop::{DpopMode, ReplayKey, ReplayStore};
use crate::engine::Engine;

/// Proofs per bucket.
pub const BUCKET_ENTRIES: usize = 16;
const RECORD: usize = 24;
const ATTEMPTS: usize = 4;

/// The shared-data replay store of one request.
pub struct SharedReplay<'a, H: Host> {
    host: &'a H,
    buckets: u64,
}

impl<'a, H: Host> SharedReplay<'a, H> {
    /// The store, when shared data may be used for proofs: `dpop.shared_replay`, a provider that
    /// checks DPoP, and a host known (from a request: `known`) to be Envoy.
    pub fn new(host: &'a H, known: Option<HostKind>, engine: &Engine) -> Option<Self> {
        let config = &engine.config;
        let dpop = config
            .providers
            .iter()
            .any(|p| p.dpop.mode != DpopMode::Off);
        let envoy = known.is_some_and(|kind| kind == HostKind::Envoy);
        (config.dpop.shared_replay && dpop && envoy).then(|| SharedReplay {
            host,
            buckets: buckets(config.dpop.replay_cache_entries),
        })
    }
}

/// Buckets for `entries` proofs (at least one).
pub fn buckets(entries: usize) -> u64 {
    (entries.div_ceil(BUCKET_ENTRIES)).max(1) as u64
}

/// The shared-data key of `key`'s bucket.
pub fn bucket_name(key: &ReplayKey, buckets: u64) -> String {
    let mut head = [0u8; 8];
    for (slot, byte) in head.iter_mut().zip(key.iter()) {
        *slot = *byte;
    }
    let bucket = u64::from_le_bytes(head) % buckets.max(1);
    format!("identity_filter.dpop.{bucket}")
}

impl<H: Host> ReplayStore for SharedReplay<'_, H> {
    fn seen(&self, key: &ReplayKey, until: u64, now: u64) -> bool {
        let name = bucket_name(key, self.buckets);
        for _ in 0..ATTEMPTS {
            let (value, cas) = match self.host.get_shared(&name) {
                Ok(read) => read,
                Err(_) => return false,
            };
            if value.is_none() {
                // Create the bucket first, so that every update below is a compare-and-swap.
                if self.host.set_shared(&name, &[], None).is_err() {
                    return false;
                }
                continue;
            }
            let (seen, records) = update(value.as_deref().unwrap_or(&[]), key, until, now);
            if seen {
                return true;
            }
            match self.host.set_shared(&name, &records, cas) {
                Ok(()) => return false,
                Err(CAS_MISMATCH) => continue,
                Err(_) => return false,
            }
        }
        false
    }
}

/// A bucket's records with `key` added (expired ones dropped; when full, the one expiring
/// first), or `true` when `key` is there and alive.
pub fn update(bucket: &[u8], key: &ReplayKey, until: u64, now: u64) -> (bool, Vec<u8>) {
    let mut records: Vec<(ReplayKey, u64)> = Vec::with_capacity(BUCKET_ENTRIES);
    for chunk in bucket.chunks_exact(RECORD) {
        let (k, u) = chunk.split_at(16);
        let mut rk = [0u8; 16];
        rk.copy_from_slice(k);
        let mut ub = [0u8; 8];
        ub.copy_from_slice(u);
        let expires = u64::from_le_bytes(ub);
        if expires < now {
            continue;
        }
        if rk == *key {
            return (true, Vec::new());
        }
        records.push((rk, expires));
    }
    while records.len() >= BUCKET_ENTRIES {
        let first = records
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, u))| *u)
            .map(|(i, _)| i);
        match first {
            Some(i) => {
                records.remove(i);
            }
            None => break,
        }
    }
    records.push((*key, until));
    let mut out = Vec::with_capacity(records.len() * RECORD);
    for (k, u) in records {
        out.extend_from_slice(&k);
        out.extend_from_slice(&u.to_le_bytes());
    }
    (false, out)
}
