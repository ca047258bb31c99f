//! A small in-memory cache of recently verified tokens, so that repeated
//! calls with the same token (20 concurrent sessions, each doing
//! req/hello/update/release) do not each pay for PBKDF2.
//!
//! Keys are SHA-256 digests of tokens, never the tokens themselves. Entries
//! expire after a fixed time; the cache holds a bounded number of them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ring::digest::{digest, SHA256};

use super::Principal;

/// A bounded, time-limited map from token digests to principals.
#[derive(Debug)]
pub(crate) struct VerifiedCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    ttl: Duration,
    capacity: usize,
}

#[derive(Debug)]
struct Entry {
    principal: Principal,
    inserted: Instant,
}

/// The SHA-256 of `token`.
fn key(token: &str) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    k
}

impl VerifiedCache {
    /// A cache keeping at most `capacity` entries (at least one), each for
    /// `ttl`.
    pub(crate) fn new(capacity: usize, ttl: Duration) -> VerifiedCache {
        VerifiedCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// The map; a panic elsewhere while holding the lock leaves it usable
    /// (every operation keeps it consistent).
    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The principal `token` was verified as, if that happened less than
    /// the TTL ago.
    pub(crate) fn get(&self, token: &str) -> Option<Principal> {
        self.get_at(token, Instant::now())
    }

    fn get_at(&self, token: &str, now: Instant) -> Option<Principal> {
        let k = key(token);
        let mut map = self.lock();
        match map.get(&k) {
            Some(e) if now.saturating_duration_since(e.inserted) < self.ttl => {
                Some(e.principal.clone())
            }
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Remembers that `token` verified as `principal`. When full, expired
    /// entries go first, then the oldest.
    pub(crate) fn insert(&self, token: &str, principal: Principal) {
        self.insert_at(token, principal, Instant::now());
    }

    fn insert_at(&self, token: &str, principal: Principal, now: Instant) {
        let k = key(token);
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&k) {
            let ttl = self.ttl;
            map.retain(|_, e| now.saturating_duration_since(e.inserted) < ttl);
            if map.len() >= self.capacity {
                if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.inserted).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(
            k,
            Entry {
                principal,
                inserted: now,
            },
        );
    }

    /// How many entries are held (expired ones included until evicted).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(s: &str) -> Principal {
        Principal {
            subject: s.to_owned(),
            scopes: vec![],
        }
    }

    #[test]
    fn hit_miss_and_expiry() {
        let c = VerifiedCache::new(4, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(c.get_at("a", t0), None);
        c.insert_at("a", who("alice"), t0);
        assert_eq!(
            c.get_at("a", t0 + Duration::from_secs(59)),
            Some(who("alice"))
        );
        assert_eq!(c.get_at("b", t0), None);
        assert_eq!(c.get_at("a", t0 + Duration::from_secs(60)), None);
        assert_eq!(c.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn bounded() {
        let c = VerifiedCache::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for (i, t) in ["a", "b", "c"].iter().enumerate() {
            c.insert_at(t, who(t), t0 + Duration::from_secs(i as u64));
        }
        c.insert_at("d", who("d"), t0 + Duration::from_secs(10));
        assert_eq!(c.len(), 3);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(c.get_at("a", later), None, "the oldest was evicted");
        for t in ["b", "c", "d"] {
            assert_eq!(c.get_at(t, later), Some(who(t)));
        }
        // Expired entries are evicted before live ones.
        let much_later = t0 + Duration::from_secs(65);
        c.insert_at("e", who("e"), much_later);
        c.insert_at("f", who("f"), much_later);
        assert_eq!(c.get_at("d", much_later), Some(who("d")));
        assert_eq!(c.get_at("e", much_later), Some(who("e")));
        assert_eq!(c.get_at("f", much_later), Some(who("f")));
    }
}
