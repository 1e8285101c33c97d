//! [`Cache`]: one worker's entries, byte-bounded, with the eviction policy.
//!
//! Layout, chosen so that a hit touches few cache lines and an eviction few more: a
//! slab of primary records (one per primary key: the key, its Vary names, the head of
//! its chain of variants), a slab of entry slots (one per variant, chained through the
//! slab, each holding its record's index, its variant key and its `Entry`), and one
//! compact `HashTable` of record indices (4 bytes a bucket, so it mostly stays in the
//! CPU's caches). Keys are compared in full (a hash collision never serves one key's
//! entry for another); the hash is computed once per call and shared by the table
//! and the policy. A hit is: the table's probe, the record and its key's bytes, the
//! slot, the entry. An eviction finds the record from its slot, and takes it out of
//! the table by index, without reading any other record.
//!
//! The same table serves invalidation, which must find every record of a URI
//! whatever its method class and audience: a key's hash ([`Cache::key_hash`]) is its
//! URI's hash in all but its top [`LANE_BITS`] bits, which are mixed with the hash of
//! the rest of the key (method class and audience). The records of one URI thus have one of
//! 2^`LANE_BITS` hashes, and [`Cache::invalidate`] asks the table for each of them.
//! With hashbrown, whose bucket comes from a hash's low bits and whose control tag
//! from its top seven, the records of a URI start their probes in one place and are
//! told apart by their tags, so many tenants' entries for one URI cost a lookup
//! little; correctness rests only on `iter_hash` returning every entry inserted with
//! that hash. A second table by URI, which this replaces, cost a miss two more cold
//! probes (its insert and, at eviction, its removal).

use std::hash::BuildHasher;
use std::time::Instant;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::body::Body;
use super::entry::Entry;
use super::key::{uri_key, uri_prefix, variant_key, RequestHeaders};
use super::policy::{Policy, S3Fifo};
use super::rules::ReqDirectives;
use super::{NotStorable, Stats};

/// The most variants kept under one primary key; past it the oldest goes, so that a
/// client cycling through `Accept` values cannot make lookups walk long chains.
pub const MAX_VARIANTS: usize = 16;

/// Bytes charged per entry on top of its keys, head, body and Vary names: the slot
/// (with the `Entry` inline), the primary record and its bucket in the table (with
/// the table's spare room), the policy's node, and the `Rc` counts and allocator
/// rounding of the allocations an entry makes.
pub const ENTRY_OVERHEAD: usize =
    std::mem::size_of::<Slot>() + std::mem::size_of::<Primary>() + 8 + 32 + 5 * 16;

const NIL: u32 = u32::MAX;

/// The top bits of a key's hash that come from its method class and audience (see
/// the module's notes); the others are its URI's.
const LANE_BITS: u32 = 7;
const URI_BITS: u64 = u64::MAX >> LANE_BITS;

/// What a lookup found.
/// What a lookup found: the entry itself, borrowed from the cache (a hit is answered
/// without copying or counting anything; clone the entry to keep it past the borrow).
#[derive(Debug, Clone)]
pub enum Lookup<'a> {
    /// Fresh and acceptable to the client: answer from it (`X-Cache: HIT`; check
    /// [`Entry::not_modified`] for a 304).
    Hit(&'a Entry),
    /// Stored but not fresh (or not acceptable as it is); [`StaleUse`] says what may be
    /// done with it.
    Stale(&'a Entry, StaleUse),
    /// Nothing stored for this request: go upstream, then maybe insert.
    Miss,
    /// The request said `no-store`: go upstream, store nothing (`X-Cache: BYPASS`).
    Bypass,
}

/// What may be done with a stale entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleUse {
    /// Inside `stale-while-revalidate`: answer from it now (`X-Cache: STALE`) and
    /// refresh it in the background (one refresh per key: use the fill registry).
    ServeAndRevalidate,
    /// The client's `max-stale` accepts it: answer from it (`X-Cache: STALE`).
    Serve,
    /// Go upstream (conditionally, with its validators, if it has any). If the
    /// upstream fails and [`Entry::serves_on_error`] holds at that moment, answer from
    /// it (`X-Cache: STALE`).
    Revalidate,
}

/// One worker's response cache.
pub struct Cache<P: Policy = S3Fifo> {
    hasher: DefaultHashBuilder,
    /// Indices into `records`, by [`Cache::key_hash`].
    table: HashTable<u32>,
    records: Vec<Primary>,
    free_records: Vec<u32>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    policy: P,
    scratch: Vec<u8>,
    bytes: usize,
    max_bytes: usize,
    max_object_bytes: usize,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Primary {
    key: Box<[u8]>,
    hash: u64,
    vary: Box<[Box<[u8]>]>,
    /// First slot of the chain of variants, newest first.
    first: u32,
    variants: u32,
}

#[derive(Debug)]
struct Slot {
    entry: Option<Entry>,
    /// Its primary record.
    record: u32,
    /// Next variant of the same primary key.
    next: u32,
    variant: Box<[u8]>,
    charge: usize,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            entry: None,
            record: NIL,
            next: NIL,
            variant: Box::default(),
            charge: 0,
        }
    }
}

impl Cache<S3Fifo> {
    /// A cache of at most `max_bytes` (this worker's share of `[cache] max_bytes`) that
    /// refuses bodies over `max_object_bytes`.
    pub fn new(max_bytes: usize, max_object_bytes: usize) -> Cache<S3Fifo> {
        Cache::with_policy(max_bytes, max_object_bytes)
    }
}

impl<P: Policy> Cache<P> {
    /// A cache with another eviction policy (for the comparison).
    pub fn with_policy(max_bytes: usize, max_object_bytes: usize) -> Cache<P> {
        Cache {
            hasher: DefaultHashBuilder::default(),
            table: HashTable::new(),
            records: Vec::new(),
            free_records: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            policy: P::new(max_bytes),
            scratch: Vec::with_capacity(256),
            bytes: 0,
            max_bytes,
            max_object_bytes,
            stats: Stats::default(),
        }
    }

    /// Find the entry for a request: `primary` from [`super::primary_key`], `req` its
    /// headers (for the Vary values), `dirs` its Cache-Control.
    pub fn lookup<H: RequestHeaders + ?Sized>(
        &mut self,
        primary: &[u8],
        req: &H,
        dirs: &ReqDirectives,
        now: Instant,
    ) -> Lookup<'_> {
        if dirs.no_store {
            self.stats.bypasses += 1;
            return Lookup::Bypass;
        }
        let hash = self.key_hash(primary);
        self.policy.on_access(policy_hash(hash));
        let Some(ri) = self.find(hash, primary) else {
            self.stats.misses += 1;
            return Lookup::Miss;
        };
        let sid = self.variant_slot(ri, req);
        let Some(verdict) = self
            .slots
            .get(sid as usize)
            .and_then(|s| s.entry.as_ref())
            .map(|e| judge(e, dirs, now))
        else {
            self.stats.misses += 1;
            return Lookup::Miss;
        };
        match verdict {
            None => self.stats.hits += 1,
            Some(StaleUse::Revalidate) => self.stats.misses += 1,
            Some(_) => self.stats.stale_hits += 1,
        }
        if verdict != Some(StaleUse::Revalidate) {
            self.policy.on_hit(sid);
        }
        let Some(entry) = self.slots[sid as usize].entry.as_ref() else {
            unreachable!("found above");
        };
        match verdict {
            None => Lookup::Hit(entry),
            Some(u) => Lookup::Stale(entry, u),
        }
    }

    /// The entry stored for this request (as [`Cache::lookup`] finds it) gets `to` as
    /// its body, if its body is still `from`: the same bytes, kept elsewhere (a large
    /// body moved into a file after its first hit, [`super::BodyFiles::promote`]).
    /// Nothing else about the entry, its accounting or its place in the eviction
    /// order changes. Returns whether it was moved.
    pub fn rehome_body<H: RequestHeaders + ?Sized>(
        &mut self,
        primary: &[u8],
        req: &H,
        from: &Body,
        to: Body,
    ) -> bool {
        if from.len() != to.len() {
            return false;
        }
        let hash = self.key_hash(primary);
        let Some(ri) = self.find(hash, primary) else {
            return false;
        };
        let sid = self.variant_slot(ri, req);
        match self
            .slots
            .get_mut(sid as usize)
            .and_then(|s| s.entry.as_mut())
        {
            Some(e) if e.body().same(from) => {
                e.set_body(to);
                true
            }
            _ => false,
        }
    }

    /// Store `entry` for the request whose primary key is `primary` and whose headers
    /// are `req` (the Vary values are taken from them). Replaces the same variant, and
    /// drops every variant stored under other Vary names. Evicts until the budget
    /// holds it; refuses a body over `max_object_bytes` and anything the policy does
    /// not admit.
    pub fn insert<H: RequestHeaders + ?Sized>(
        &mut self,
        primary: &[u8],
        req: &H,
        mut entry: Entry,
    ) -> Result<(), NotStorable> {
        if entry.body().len() > self.max_object_bytes {
            self.stats.refused += 1;
            return Err(NotStorable::TooLarge);
        }
        variant_key(&mut self.scratch, &entry.vary, req);
        let variant: Box<[u8]> = self.scratch.as_slice().into();
        let charge = entry.charge() + primary.len() + variant.len() + ENTRY_OVERHEAD;
        if charge > self.max_bytes {
            self.stats.refused += 1;
            return Err(NotStorable::TooLarge);
        }
        let hash = self.key_hash(primary);
        if let Some(ri) = self.find(hash, primary) {
            let rec = &self.records[ri as usize];
            // What the new entry displaces: everything under other Vary names, else the
            // same variant, else the oldest one past the cap.
            let chain = chain(&self.slots, rec.first);
            let old: Vec<u32> = if *rec.vary != *entry.vary {
                chain
            } else if let Some(&same) = chain
                .iter()
                .find(|&&s| bytes_eq(&self.slots[s as usize].variant, &variant))
            {
                vec![same]
            } else if chain.len() >= MAX_VARIANTS {
                chain.last().copied().into_iter().collect()
            } else {
                Vec::new()
            };
            for sid in old {
                self.remove_slot(sid, true);
            }
        }
        if self.bytes + charge > self.max_bytes
            && !self
                .policy
                .admit(policy_hash(hash), self.bytes + charge - self.max_bytes)
        {
            self.stats.refused += 1;
            return Err(NotStorable::NotAdmitted);
        }
        while self.bytes + charge > self.max_bytes {
            let victim = self
                .policy
                .evict()
                .expect("bytes are charged: an entry exists");
            self.remove_slot(victim, false);
            self.stats.evictions += 1;
        }
        let sid = match self.free_slots.pop() {
            Some(sid) => sid,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let vary = std::mem::take(&mut entry.vary);
        let (ri, next) = match self.find(hash, primary) {
            Some(ri) => {
                let rec = &mut self.records[ri as usize];
                let next = rec.first;
                rec.first = sid;
                rec.variants += 1;
                (ri, next)
            }
            None => {
                let rec = Primary {
                    key: primary.into(),
                    hash,
                    vary: vary.into_boxed_slice(),
                    first: sid,
                    variants: 1,
                };
                let ri = match self.free_records.pop() {
                    Some(ri) => {
                        self.records[ri as usize] = rec;
                        ri
                    }
                    None => {
                        self.records.push(rec);
                        (self.records.len() - 1) as u32
                    }
                };
                let records = &self.records;
                self.table
                    .insert_unique(hash, ri, |&i| records[i as usize].hash);
                (ri, NIL)
            }
        };
        self.slots[sid as usize] = Slot {
            entry: Some(entry),
            record: ri,
            next,
            variant,
            charge,
        };
        self.policy.on_insert(sid, policy_hash(hash), charge);
        self.bytes += charge;
        self.stats.inserts += 1;
        debug_assert!(self.bytes <= self.max_bytes);
        Ok(())
    }

    /// Drop every entry for the URI `host` + `target` (all method classes, audiences
    /// and variants), as an unsafe request on it requires (see
    /// [`super::invalidates`]). Returns how many entries went.
    pub fn invalidate(&mut self, host: &[u8], target: &[u8]) -> usize {
        let mut uri = std::mem::take(&mut self.scratch);
        uri_key(&mut uri, host, target);
        let uri_hash = self.hasher.hash_one(&uri[..]) & URI_BITS;
        let mut dropped = 0;
        let records = &self.records;
        let mut under: Vec<u32> = (0..1u64 << LANE_BITS)
            .flat_map(|lane| self.table.iter_hash(uri_hash | lane << (64 - LANE_BITS)))
            .copied()
            .filter(|&i| uri_prefix(&records[i as usize].key) == &uri[..])
            .collect();
        // Each record has one hash, but a table may offer it under another too.
        under.sort_unstable();
        under.dedup();
        for ri in under {
            // Removing a record's last slot removes the record.
            for sid in chain(&self.slots, self.records[ri as usize].first) {
                self.remove_slot(sid, true);
                dropped += 1;
            }
        }
        self.scratch = uri;
        self.stats.invalidations += dropped as u64;
        dropped
    }

    /// Drop the entry a request would find (say, a stale one whose revalidation came
    /// back not storable). Returns whether there was one.
    pub fn remove<H: RequestHeaders + ?Sized>(&mut self, primary: &[u8], req: &H) -> bool {
        let hash = self.key_hash(primary);
        let Some(ri) = self.find(hash, primary) else {
            return false;
        };
        let rec = &self.records[ri as usize];
        variant_key(&mut self.scratch, &rec.vary, req);
        let found = links(&self.slots, rec.first)
            .find(|&s| bytes_eq(&self.slots[s as usize].variant, &self.scratch));
        if let Some(sid) = found {
            self.remove_slot(sid, true);
        }
        found.is_some()
    }

    /// Drop every entry whose primary key `matches` (an admin purge by URI, prefix or
    /// tenant). Returns how many entries went. Walks the whole table: an operator's
    /// call, never a request's.
    pub fn purge(&mut self, matches: &dyn Fn(&super::key::KeyView<'_>) -> bool) -> usize {
        let records = &self.records;
        let mut under: Vec<u32> = self
            .table
            .iter()
            .copied()
            .filter(|&i| super::key::view(&records[i as usize].key).is_some_and(|v| matches(&v)))
            .collect();
        under.sort_unstable();
        under.dedup();
        let mut dropped = 0;
        for ri in under {
            for sid in chain(&self.slots, self.records[ri as usize].first) {
                self.remove_slot(sid, true);
                dropped += 1;
            }
        }
        self.stats.invalidations += dropped as u64;
        dropped
    }

    /// Drop everything (a reload, an admin purge).
    pub fn clear(&mut self) {
        let stats = self.stats;
        *self = Cache::with_policy(self.max_bytes, self.max_object_bytes);
        self.stats = stats;
    }

    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.slots.len() - self.free_slots.len(),
            bytes: self.bytes,
            ..self.stats
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The record of a primary key.
    /// The slot of record `ri` whose variant matches `req`'s Vary values; `NIL` if
    /// none does.
    fn variant_slot<H: RequestHeaders + ?Sized>(&mut self, ri: u32, req: &H) -> u32 {
        let rec = &self.records[ri as usize];
        let mut sid = rec.first;
        if !rec.vary.is_empty() {
            variant_key(&mut self.scratch, &rec.vary, req);
            while sid != NIL && !bytes_eq(&self.slots[sid as usize].variant, &self.scratch) {
                sid = self.slots[sid as usize].next;
            }
        }
        sid
    }

    /// A primary key's hash: its URI's, with the top [`LANE_BITS`] bits mixed with
    /// the rest of the key's (see the module's notes). Mixed, not replaced: keys of
    /// one audience on different URIs keep different tags.
    fn key_hash(&self, primary: &[u8]) -> u64 {
        let uri = uri_prefix(primary);
        let rest = &primary[uri.len()..];
        self.hasher.hash_one(uri) ^ (self.hasher.hash_one(rest) & !URI_BITS)
    }

    fn find(&self, hash: u64, primary: &[u8]) -> Option<u32> {
        let records = &self.records;
        self.table
            .find(hash, |&i| *records[i as usize].key == *primary)
            .copied()
    }

    /// Remove an entry; `tracked`: the policy still tracks it (not an eviction).
    fn remove_slot(&mut self, sid: u32, tracked: bool) {
        if tracked {
            self.policy.on_remove(sid);
        }
        let slots = &mut self.slots;
        // Emptied in place (the entry is dropped where it lies, not moved out first).
        let slot = &mut slots[sid as usize];
        slot.entry = None;
        slot.variant = Box::default();
        let (ri, next, charge) = (slot.record, slot.next, slot.charge);
        (slot.record, slot.next, slot.charge) = (NIL, NIL, 0);
        let rec = &mut self.records[ri as usize];
        if rec.first == sid {
            rec.first = next;
        } else {
            let mut cur = rec.first;
            while slots[cur as usize].next != sid {
                cur = slots[cur as usize].next;
            }
            slots[cur as usize].next = next;
        }
        rec.variants -= 1;
        if rec.variants == 0 {
            let rec = std::mem::take(rec);
            // By index: only the tables' own buckets are read.
            let Ok(found) = self.table.find_entry(rec.hash, |&i| i == ri) else {
                unreachable!("a record is in the table");
            };
            found.remove();
            self.free_records.push(ri);
        }
        self.free_slots.push(sid);
        self.bytes -= charge;
    }
}

/// A key's hash as the eviction policy gets it: the audience's bits (the top ones,
/// [`Cache::key_hash`]) folded into the low ones too, which the policy's ghost table
/// indexes by, so that one URI's keys for different tenants do not share a ghost slot.
fn policy_hash(hash: u64) -> u64 {
    hash ^ hash >> (64 - LANE_BITS)
}

/// The slot ids of a chain of variants, newest first.
fn links(slots: &[Slot], first: u32) -> impl Iterator<Item = u32> + '_ {
    let live = |s: u32| (s != NIL).then_some(s);
    std::iter::successors(live(first), move |&s| live(slots[s as usize].next))
}

fn chain(slots: &[Slot], first: u32) -> Vec<u32> {
    links(slots, first).collect()
}

/// Slice equality that never calls `memcmp` for empty slices: the variant key is
/// empty for every entry without Vary, and glibc's AVX-512 `memcmp` given a length of
/// zero and Rust's dangling empty-slice pointer takes ~110 ns (a masked load from an
/// unmapped page), more than the rest of a hit.
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// Fresh and acceptable (`None`), or what may be done with it (RFC 9111 4.2, 5.2.1;
/// RFC 5861).
fn judge(entry: &Entry, dirs: &ReqDirectives, now: Instant) -> Option<StaleUse> {
    let age = entry.current_age(now);
    let fresh = entry.lifetime() > age;
    if dirs.no_cache {
        return Some(StaleUse::Revalidate);
    }
    if fresh {
        let max_age_ok = dirs.max_age.is_none_or(|m| age.as_secs() <= m);
        let min_fresh_ok = dirs
            .min_fresh
            .is_none_or(|m| (entry.lifetime() - age).as_secs() >= m);
        return if max_age_ok && min_fresh_ok {
            None
        } else {
            Some(StaleUse::Revalidate)
        };
    }
    if entry.must_revalidate() {
        return Some(StaleUse::Revalidate);
    }
    if dirs
        .max_stale
        .is_some_and(|m| entry.staleness(now).as_secs() <= m)
        && dirs.max_age.is_none_or(|m| age.as_secs() <= m)
    {
        return Some(StaleUse::Serve);
    }
    if entry.within_stale_while_revalidate(now) {
        return Some(StaleUse::ServeAndRevalidate);
    }
    Some(StaleUse::Revalidate)
}
