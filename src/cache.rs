//! The verified-token cache: a bounded LRU map from a token (the whole token, compared byte for
//! byte) to the identity it verified to. Hashing the token with the map's fast seeded hasher and
//! comparing it in full is as exact as a SHA-256 key and much cheaper: with SHA-256 the cached
//! request path under Wasmtime (Kong's runtime) took about 18 µs, this way about 8 µs
//! (docs/benchmarks-wasmtime.md). Tokens over [`MAX_CACHED_TOKEN_BYTES`] are not cached (as in
//! Envoy's jwt_authn), which bounds the memory to that times `max_entries`. A hit skips parsing
//! and the signature check only: the caller re-checks the time claims (and every other registered
//! claim) and applies the route's policy as for any request. Entries die with the token's `exp`
//! (plus skew) or `max_ttl_seconds`, whichever comes first, and are ignored once the issuer's key
//! set changes (its fingerprint differs).

use std::rc::Rc;

use lru::LruCache;

use crate::identity::Identity;

/// Tokens larger than this are verified every time, never cached.
pub const MAX_CACHED_TOKEN_BYTES: usize = 4096;

/// A cache key: the token itself.
pub type Key = Box<str>;

/// One verified token.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index of the provider that verified it.
    pub provider: usize,
    /// Fingerprint of that provider's key set at verification time.
    pub keys: u64,
    pub identity: Rc<Identity>,
    /// Unix seconds after which the entry is dropped.
    pub until: u64,
}

/// A bounded cache of verified tokens.
pub struct TokenCache {
    /// Grows with use up to `max_entries`: nothing is allocated in proportion to the setting.
    entries: Option<LruCache<Key, Entry>>,
    max_entries: usize,
    max_ttl: u64,
    hits: u64,
    misses: u64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.len())
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens (0 disables it), each kept at most `max_ttl`
    /// seconds. The map starts empty and grows as tokens are added (an `LruCache` created with
    /// its capacity would preallocate it all, and abort on an absurd one).
    pub fn new(max_entries: usize, max_ttl: u64) -> TokenCache {
        TokenCache {
            entries: (max_entries > 0).then(LruCache::unbounded),
            max_entries,
            max_ttl,
            hits: 0,
            misses: 0,
        }
    }

    /// The cache key of a token: the token (tests).
    #[cfg(test)]
    pub fn key(token: &str) -> Key {
        token.into()
    }

    /// The entry for a token at `now`, if one is still alive. `keys_now` gives the current
    /// key-set fingerprint of a provider; an entry verified under other keys is dropped.
    pub fn get(
        &mut self,
        key: &str,
        now: u64,
        keys_now: impl Fn(usize) -> Option<u64>,
    ) -> Option<Entry> {
        let entries = self.entries.as_mut()?;
        // One lookup: in wasm32 comparing the token (`memcmp`) goes byte by byte.
        let Some(entry) = entries.get(key).cloned() else {
            self.misses += 1;
            return None;
        };
        if now <= entry.until && keys_now(entry.provider) == Some(entry.keys) {
            self.hits += 1;
            return Some(entry);
        }
        entries.pop(key);
        self.misses += 1;
        None
    }

    /// The entry kept for a token, without counting or expiring it (tests).
    #[cfg(test)]
    pub fn peek(&self, key: &str) -> Option<&Entry> {
        self.entries.as_ref()?.peek(key)
    }

    /// Remember a verified token until `min(valid_until, now + max_ttl)`; `valid_until` is the
    /// token's `exp` plus the allowed skew.
    pub fn put(
        &mut self,
        key: &str,
        provider: usize,
        keys: u64,
        identity: Rc<Identity>,
        valid_until: Option<u64>,
        now: u64,
    ) {
        let Some(entries) = self.entries.as_mut() else {
            return;
        };
        if key.len() > MAX_CACHED_TOKEN_BYTES {
            return;
        }
        let cap = now.saturating_add(self.max_ttl);
        let until = valid_until.map_or(cap, |v| v.min(cap));
        if until > now {
            if !entries.contains(key) && entries.len() >= self.max_entries {
                entries.pop_lru();
            }
            entries.put(
                Key::from(key),
                Entry {
                    provider,
                    keys,
                    identity,
                    until,
                },
            );
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, LruCache::len)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (hits, misses) since start (tests).
    #[cfg(test)]
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(sub: &str) -> Rc<Identity> {
        Rc::new(Identity {
            subject: Some(sub.into()),
            issuer: "i".into(),
            provider: "p".into(),
            roles: vec![],
            groups: vec![],
            scopes: vec![],
            tenant: None,
            binding: Default::default(),
            claims: Default::default(),
            token_hash: None,
        })
    }

    fn same_keys(_: usize) -> Option<u64> {
        Some(7)
    }

    #[test]
    fn a_put_token_is_found_until_it_expires() {
        let mut c = TokenCache::new(10, 300);
        let k = TokenCache::key("tok");
        c.put(&k, 0, 7, identity("a"), Some(1_000 + 60), 900);
        assert_eq!(
            c.get(&k, 1_000, same_keys)
                .unwrap()
                .identity
                .subject
                .as_deref(),
            Some("a")
        );
        assert!(
            c.get(&k, 1_060, same_keys).is_some(),
            "skew extends the entry like verification"
        );
        assert!(c.get(&k, 1_061, same_keys).is_none());
        assert!(c.is_empty(), "a dead entry is dropped");
    }

    #[test]
    fn max_ttl_caps_long_lived_tokens() {
        let mut c = TokenCache::new(10, 300);
        let k = TokenCache::key("tok");
        c.put(&k, 0, 7, identity("a"), Some(100_000 + 60), 1_000);
        assert!(c.get(&k, 1_300, same_keys).is_some());
        assert!(c.get(&k, 1_301, same_keys).is_none());
        let k2 = TokenCache::key("no-exp");
        c.put(&k2, 0, 7, identity("b"), None, 1_000);
        assert!(c.get(&k2, 1_301, same_keys).is_none());
    }

    #[test]
    fn a_key_set_change_invalidates() {
        let mut c = TokenCache::new(10, 300);
        let k = TokenCache::key("tok");
        c.put(&k, 0, 7, identity("a"), Some(2_000), 1_000);
        assert!(c.get(&k, 1_001, |_| Some(8)).is_none());
        assert!(
            c.get(&k, 1_001, same_keys).is_none(),
            "dropped, not just skipped"
        );
        c.put(&k, 0, 7, identity("a"), Some(2_000), 1_000);
        assert!(
            c.get(&k, 1_001, |_| None).is_none(),
            "keys no longer available"
        );
    }

    #[test]
    fn size_is_bounded_least_recently_used_goes_first() {
        let mut c = TokenCache::new(3, 300);
        for i in 0..3 {
            c.put(
                &TokenCache::key(&format!("t{i}")),
                0,
                7,
                identity("x"),
                None,
                0,
            );
        }
        assert!(c.get(&TokenCache::key("t0"), 1, same_keys).is_some());
        c.put(&TokenCache::key("t3"), 0, 7, identity("x"), None, 0);
        assert_eq!(c.len(), 3);
        assert!(
            c.get(&TokenCache::key("t1"), 1, same_keys).is_none(),
            "t1 was least recently used"
        );
        assert!(c.get(&TokenCache::key("t0"), 1, same_keys).is_some());
        for i in 0..10_000 {
            c.put(
                &TokenCache::key(&format!("n{i}")),
                0,
                7,
                identity("x"),
                None,
                0,
            );
        }
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn a_huge_capacity_allocates_nothing_up_front() {
        // `LruCache::new(4_000_000_000)` aborted with "Hash table capacity overflow".
        let mut c = TokenCache::new(usize::MAX, 300);
        assert_eq!(c.len(), 0);
        let k = TokenCache::key("t");
        c.put(&k, 0, 7, identity("a"), None, 0);
        assert!(c.get(&k, 0, same_keys).is_some());
    }

    #[test]
    fn a_token_over_the_size_limit_is_never_cached() {
        let mut c = TokenCache::new(10, 300);
        let big = "t".repeat(MAX_CACHED_TOKEN_BYTES + 1);
        c.put(&big, 0, 7, identity("a"), None, 0);
        assert!(c.get(&big, 1, same_keys).is_none());
        let fits = "t".repeat(MAX_CACHED_TOKEN_BYTES);
        c.put(&fits, 0, 7, identity("a"), None, 0);
        assert!(c.get(&fits, 1, same_keys).is_some());
    }

    #[test]
    fn a_token_differing_in_one_byte_is_another_entry() {
        let mut c = TokenCache::new(10, 300);
        c.put("header.payload.signature", 0, 7, identity("a"), None, 0);
        assert!(c.get("header.payload.signaturf", 1, same_keys).is_none());
        assert!(c.get("header.payload.signature", 1, same_keys).is_some());
    }

    #[test]
    fn zero_entries_disables() {
        let mut c = TokenCache::new(0, 300);
        let k = TokenCache::key("t");
        c.put(&k, 0, 7, identity("a"), None, 0);
        assert!(c.get(&k, 0, same_keys).is_none());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn already_expired_tokens_are_not_stored() {
        let mut c = TokenCache::new(5, 300);
        c.put(&TokenCache::key("t"), 0, 7, identity("a"), Some(10), 20);
        assert!(c.is_empty());
    }
}
