//! The per-worker memory of verified tokens, so that an RS256 or ES256 token costs one
//! signature check per worker rather than one per request.
//!
//! [`GenCache`] is keyed by the credential's own bytes: the map hashes them with
//! hashbrown's randomly seeded hasher (cheap next to SHA-256, and not floodable), and
//! a lookup compares the full bytes, so a hash collision can never hand one caller's
//! identity to another credential. Each entry carries the last second at which it may
//! be served (`valid_through`), checked against the caller's clock on every lookup.
//!
//! Bounded two ways: entries and bytes (the credentials themselves plus a fixed
//! overhead each). Eviction is generational: new entries go into `young`; when it is
//! full, `young` becomes `old` and the previous `old` is dropped whole; a hit in `old`
//! moves the entry back into `young`. That is an approximate LRU with O(1) work per
//! operation and no per-entry bookkeeping, and it never holds more than twice one
//! generation's bound.

use std::mem;

use hashbrown::HashMap;

/// Bytes charged to an entry beyond the credential itself: the map slot, the boxed key
/// header and the value (roughly; an [`super::Identity`] is shared, not copied).
const ENTRY_OVERHEAD: usize = 96;

pub(crate) struct GenCache<V> {
    young: HashMap<Box<[u8]>, Slot<V>>,
    old: HashMap<Box<[u8]>, Slot<V>>,
    young_bytes: usize,
    /// Per generation: the whole cache holds at most twice these.
    max_entries: usize,
    max_bytes: usize,
}

struct Slot<V> {
    value: V,
    valid_through: u64,
}

impl<V: Clone> GenCache<V> {
    /// A cache of at most `max_entries` entries and about `max_bytes` bytes; zero
    /// entries disables it (every insert is dropped).
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        GenCache {
            young: HashMap::new(),
            old: HashMap::new(),
            young_bytes: 0,
            max_entries: max_entries / 2,
            max_bytes: max_bytes / 2,
        }
    }

    /// The value stored for `key`, if it is still valid at `now`. An entry found past
    /// its time is removed.
    pub(crate) fn get(&mut self, key: &[u8], now: u64) -> Option<V> {
        if let Some(slot) = self.young.get(key) {
            if now <= slot.valid_through {
                return Some(slot.value.clone());
            }
            if let Some((k, _)) = self.young.remove_entry(key) {
                self.young_bytes -= cost(&k);
            }
            return None;
        }
        let (k, slot) = self.old.remove_entry(key)?;
        if now > slot.valid_through {
            return None;
        }
        let value = slot.value.clone();
        self.put(k, slot);
        Some(value)
    }

    /// Remember `value` for `key` until `valid_through` (inclusive).
    pub(crate) fn insert(&mut self, key: &[u8], value: V, valid_through: u64) {
        if self.max_entries == 0 || cost(key) > self.max_bytes {
            return;
        }
        self.old.remove(key);
        if let Some(slot) = self.young.get_mut(key) {
            *slot = Slot {
                value,
                valid_through,
            };
            return;
        }
        self.put(
            key.into(),
            Slot {
                value,
                valid_through,
            },
        );
    }

    fn put(&mut self, key: Box<[u8]>, slot: Slot<V>) {
        let cost = cost(&key);
        if self.young.len() >= self.max_entries || self.young_bytes + cost > self.max_bytes {
            // `old` is dropped whole; `young` starts again with `old`'s allocation.
            mem::swap(&mut self.young, &mut self.old);
            self.young.clear();
            self.young_bytes = 0;
        }
        self.young_bytes += cost;
        self.young.insert(key, slot);
    }

    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

fn cost(key: &[u8]) -> usize {
    key.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_until_valid_through_then_drops() {
        let mut c = GenCache::new(10, 1 << 20);
        c.insert(b"tok", 7u32, 100);
        assert_eq!(c.get(b"tok", 99), Some(7));
        assert_eq!(c.get(b"tok", 100), Some(7));
        assert_eq!(c.get(b"tok", 101), None);
        assert_eq!(c.len(), 0, "an expired entry is removed when found");
        assert_eq!(c.get(b"tok", 50), None);
    }

    #[test]
    fn full_bytes_compared_not_a_prefix_or_hash() {
        let mut c = GenCache::new(10, 1 << 20);
        c.insert(b"token-a", 1u32, 100);
        assert_eq!(c.get(b"token-b", 0), None);
        assert_eq!(c.get(b"token-", 0), None);
        assert_eq!(c.get(b"token-a", 0), Some(1));
    }

    #[test]
    fn bounded_by_entries_and_recent_entries_survive() {
        let mut c = GenCache::new(100, 1 << 20);
        c.insert(b"hot", 0u32, u64::MAX);
        for i in 0..1_000u32 {
            c.insert(format!("cold-{i}").as_bytes(), i, u64::MAX);
            // A key in use is promoted on each hit and never falls out.
            assert_eq!(c.get(b"hot", 0), Some(0));
            assert!(c.len() <= 100, "len {} after {i}", c.len());
        }
        assert_eq!(c.get(b"cold-0", 0), None, "the oldest entries were dropped");
        assert_eq!(c.get(b"cold-999", 0), Some(999));
    }

    #[test]
    fn bounded_by_bytes() {
        let per = cost(&[0; 1000]);
        let mut c = GenCache::new(10_000, 10 * per);
        for i in 0..100u8 {
            c.insert(&[i; 1000], i, u64::MAX);
            assert!(c.young_bytes <= 5 * per);
            assert!(c.len() <= 10);
        }
    }

    #[test]
    fn zero_entries_disables() {
        let mut c = GenCache::new(0, 1 << 20);
        c.insert(b"tok", 1u32, u64::MAX);
        assert_eq!(c.get(b"tok", 0), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn reinsert_replaces_instead_of_duplicating() {
        let mut c = GenCache::new(4, 1 << 20);
        c.insert(b"a", 1u32, 10);
        c.insert(b"b", 2, 10);
        c.insert(b"c", 3, 10); // rotates: a, b are now old
        c.insert(b"a", 4, 20);
        assert_eq!(c.get(b"a", 15), Some(4));
        assert_eq!(c.len(), 3);
    }
}
