//! Compact hash indexes for the job table.
//!
//! * Jobs are keyed by their handle number with a multiplicative hash.
//! * The (function, unique) index stores only a 64-bit keyed hash → handle;
//!   the bytes stay in the job itself. A hash collision between different
//!   keys (rare) goes to a small exact side table, so lookups stay correct.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hasher for integer keys: one multiply (spreads sequential handles).
#[derive(Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64)
    }
    fn finish(&self) -> u64 {
        // Fold the well-mixed high half into the low bits used for buckets.
        self.0 ^ (self.0 >> 32)
    }
}

/// A HashMap keyed by integers with [`IntHasher`].
pub(crate) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Keyed 64-bit hash of (function id, key bytes).
fn key_hash(seed: u64, fid: u32, key: &[u8]) -> u64 {
    const M: u64 = 0xD6E8_FEB8_6659_FD93;
    let mut h = seed ^ ((fid as u64) << 32 | key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ v).wrapping_mul(M);
        h ^= h >> 31;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(M);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(M);
    h ^ (h >> 29)
}

/// (function, unique key) → job handle.
pub(crate) struct UniqueIndex {
    seed: u64,
    primary: IntMap<u64, u64>,
    /// Keys whose hash collided with a different key: fid bytes ++ key → handle.
    collisions: HashMap<Vec<u8>, u64>,
}

fn exact_key(fid: u32, key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + key.len());
    v.extend_from_slice(&fid.to_le_bytes());
    v.extend_from_slice(key);
    v
}

impl UniqueIndex {
    pub(crate) fn new() -> UniqueIndex {
        // A per-process random seed (from std's randomly keyed SipHash).
        let seed = {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
        };
        UniqueIndex {
            seed,
            primary: IntMap::default(),
            collisions: HashMap::new(),
        }
    }

    /// The handle stored for (fid, key); `matches(h)` must say whether job
    /// `h` really has that function and key.
    pub(crate) fn get(&self, fid: u32, key: &[u8], matches: impl Fn(u64) -> bool) -> Option<u64> {
        let hash = key_hash(self.seed, fid, key);
        if let Some(&h) = self.primary.get(&hash) {
            if matches(h) {
                return Some(h);
            }
        }
        if self.collisions.is_empty() {
            None
        } else {
            self.collisions.get(&exact_key(fid, key)).copied()
        }
    }

    /// Points (fid, key) at `h`; `matches(old)` says whether the current
    /// holder of the hash slot has the same key (then it is replaced).
    pub(crate) fn insert(&mut self, fid: u32, key: &[u8], h: u64, matches: impl Fn(u64) -> bool) {
        let hash = key_hash(self.seed, fid, key);
        match self.primary.get_mut(&hash) {
            None => {
                self.primary.insert(hash, h);
            }
            Some(old) if matches(*old) => *old = h,
            Some(_) => {
                self.collisions.insert(exact_key(fid, key), h);
            }
        }
    }

    /// Removes (fid, key) if it still points at `h`.
    pub(crate) fn remove(&mut self, fid: u32, key: &[u8], h: u64) {
        let hash = key_hash(self.seed, fid, key);
        if self.primary.get(&hash) == Some(&h) {
            self.primary.remove(&hash);
        } else if !self.collisions.is_empty() {
            let k = exact_key(fid, key);
            if self.collisions.get(&k) == Some(&h) {
                self.collisions.remove(&k);
            }
        }
        shrink(&mut self.primary);
    }
}

/// Gives memory back once a map is mostly empty (amortised O(1)).
pub(crate) fn shrink<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(
    m: &mut HashMap<K, V, S>,
) {
    let cap = m.capacity();
    if cap > 4096 && m.len() * 8 < cap {
        m.shrink_to(m.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collisions_stay_exact() {
        let mut idx = UniqueIndex::new();
        // Force a "collision" by claiming the slot holder never matches.
        idx.insert(1, b"a", 10, |_| false);
        idx.insert(1, b"a", 11, |_| false);
        assert_eq!(idx.get(1, b"a", |h| h == 10), Some(10));
        assert_eq!(idx.get(1, b"a", |_| false), Some(11));
        idx.remove(1, b"a", 11);
        assert_eq!(idx.get(1, b"a", |_| false), None);
        assert_eq!(idx.get(2, b"a", |_| false), None);
    }
}
