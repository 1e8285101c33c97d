//! The key table of one limiter: fingerprint -> TAT, split into [`SHARDS`] hashbrown maps
//! so that the idle sweep can visit one shard per tick instead of stalling the worker
//! for the whole table (about 5 ms per million keys).
//!
//! The shard is taken from bits 32..36 of the fingerprint: hashbrown places an entry by
//! the low bits and tags it with the top seven, so both stay fully random inside a shard.

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use super::key::BuildFingerprint;

pub(crate) const SHARDS: usize = 16;

pub(crate) struct Table {
    shards: [HashMap<u64, u64, BuildFingerprint>; SHARDS],
    len: usize,
    /// The shard the next [`Table::sweep_next`] visits.
    next: usize,
}

#[inline]
fn shard_of(fp: u64) -> usize {
    (fp >> 32) as usize & (SHARDS - 1)
}

impl Table {
    pub(crate) fn new() -> Table {
        Table {
            shards: std::array::from_fn(|_| HashMap::default()),
            len: 0,
            next: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Entries the shards can hold without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.shards.iter().map(HashMap::capacity).sum()
    }

    pub(crate) fn get(&self, fp: u64) -> Option<u64> {
        self.shards[shard_of(fp)].get(&fp).copied()
    }

    pub(crate) fn contains(&self, fp: u64) -> bool {
        self.shards[shard_of(fp)].contains_key(&fp)
    }

    /// The TAT of `fp`, inserted as `init` when absent.
    #[inline]
    pub(crate) fn slot(&mut self, fp: u64, init: u64) -> &mut u64 {
        match self.shards[shard_of(fp)].entry(fp) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                self.len += 1;
                v.insert(init)
            }
        }
    }

    /// Drop the entries of one shard whose TAT is `<= now` (full buckets); shrink the
    /// shard if it is left mostly empty. Returns how many were dropped.
    fn sweep(&mut self, shard: usize, now: u64) -> usize {
        let map = &mut self.shards[shard];
        let before = map.len();
        map.retain(|_, tat| *tat > now);
        let len = map.len();
        if map.capacity() > 1024 && len < map.capacity() / 8 {
            map.shrink_to(len * 2);
        }
        self.len -= before - len;
        before - len
    }

    /// Sweep the next shard, round-robin.
    pub(crate) fn sweep_next(&mut self, now: u64) -> usize {
        let shard = self.next;
        self.next = (shard + 1) % SHARDS;
        self.sweep(shard, now)
    }

    pub(crate) fn sweep_all(&mut self, now: u64) -> usize {
        (0..SHARDS).map(|s| self.sweep(s, now)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_spread_and_sweeps_count() {
        let mut t = Table::new();
        // Fingerprints that differ only in bits 32..36 land in every shard.
        for s in 0..SHARDS as u64 {
            *t.slot(s << 32 | 7, 10) += 1;
            *t.slot(s << 32 | 8, 20) += 1;
        }
        assert_eq!(t.len(), 2 * SHARDS);
        assert!(t.shards.iter().all(|m| m.len() == 2));
        assert_eq!(t.get(3 << 32 | 7), Some(11));
        assert!(t.contains(3 << 32 | 8) && !t.contains(3 << 32 | 9));
        // Sweeping at 11 drops the TAT-11 entry of one shard at a time.
        assert_eq!(t.sweep_next(11), 1);
        assert_eq!(t.sweep_next(11), 1);
        assert_eq!(t.len(), 2 * SHARDS - 2);
        assert_eq!(t.sweep_all(11), SHARDS - 2);
        assert_eq!(t.sweep_all(21), SHARDS);
        assert_eq!(t.len(), 0);
    }
}
