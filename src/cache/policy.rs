//! Eviction policies, byte-weighted: which entry goes when an insert needs room.
//!
//! [`S3Fifo`] is the one the cache uses (the measurements that chose it are in the
//! module docs of [`super`]); [`Lru`], [`TinyLfu`] (TinyLFU admission in front of an
//! LRU) and [`WTinyLfu`] are kept as the baselines it was measured against, so that
//! the comparison can be re-run ([`super::sim`]).
//!
//! A policy tracks entries by the cache's slot id (a dense `u32`) in intrusive
//! doubly-linked queues over one `Vec<Node>`, so every operation is O(1) and
//! allocation-free once the vector has grown.

/// An eviction policy over entries identified by slot ids. `hash` is the hash of the
/// entry's primary key; `charge` its bytes in the budget.
pub trait Policy {
    /// Name in the comparison table.
    const NAME: &'static str;

    fn new(max_bytes: usize) -> Self;

    /// Every lookup, hit or miss, before the hit (if any) is known.
    fn on_access(&mut self, _hash: u64) {}

    /// Called before an insert that must evict `to_free` bytes: may refuse the newcomer.
    fn admit(&mut self, _hash: u64, _to_free: usize) -> bool {
        true
    }

    fn on_insert(&mut self, id: u32, hash: u64, charge: usize);

    fn on_hit(&mut self, id: u32);

    /// The cache removed `id` itself (replaced, invalidated).
    fn on_remove(&mut self, id: u32);

    /// Choose a victim and forget it; `None` only when nothing is tracked.
    fn evict(&mut self) -> Option<u32>;
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    prev: u32,
    next: u32,
    hash: u64,
    charge: usize,
    freq: u8,
    /// Which queue holds it: `NONE`, `SMALL` or `MAIN`.
    queue: u8,
}

const NONE: u8 = 0;
const SMALL: u8 = 1;
const MAIN: u8 = 2;

impl Default for Node {
    fn default() -> Node {
        Node {
            prev: NIL,
            next: NIL,
            hash: 0,
            charge: 0,
            freq: 0,
            queue: NONE,
        }
    }
}

/// Ends of one intrusive queue: new entries at the head, victims from the tail.
#[derive(Debug, Clone, Copy)]
struct Queue {
    head: u32,
    tail: u32,
    bytes: usize,
    len: usize,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            head: NIL,
            tail: NIL,
            bytes: 0,
            len: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Nodes(Vec<Node>);

impl Nodes {
    fn slot(&mut self, id: u32) -> &mut Node {
        let i = id as usize;
        if i >= self.0.len() {
            self.0.resize(i + 1, Node::default());
        }
        &mut self.0[i]
    }

    fn push_front(&mut self, q: &mut Queue, tag: u8, id: u32) {
        let head = q.head;
        let n = self.slot(id);
        n.prev = NIL;
        n.next = head;
        n.queue = tag;
        let charge = n.charge;
        if head != NIL {
            self.0[head as usize].prev = id;
        } else {
            q.tail = id;
        }
        q.head = id;
        q.bytes += charge;
        q.len += 1;
    }

    fn unlink(&mut self, q: &mut Queue, id: u32) {
        let Node {
            prev, next, charge, ..
        } = self.0[id as usize];
        if prev != NIL {
            self.0[prev as usize].next = next;
        } else {
            q.head = next;
        }
        if next != NIL {
            self.0[next as usize].prev = prev;
        } else {
            q.tail = prev;
        }
        let n = &mut self.0[id as usize];
        n.prev = NIL;
        n.next = NIL;
        n.queue = NONE;
        q.bytes -= charge;
        q.len -= 1;
    }

    fn set(&mut self, id: u32, hash: u64, charge: usize) {
        let n = self.slot(id);
        *n = Node {
            hash,
            charge,
            ..Node::default()
        };
    }
}

/// Least recently used: a hit moves the entry to the head; the tail goes.
#[derive(Debug, Default)]
pub struct Lru {
    nodes: Nodes,
    q: Queue,
}

impl Policy for Lru {
    const NAME: &'static str = "LRU";

    fn new(_max_bytes: usize) -> Lru {
        Lru::default()
    }

    fn on_insert(&mut self, id: u32, hash: u64, charge: usize) {
        self.nodes.set(id, hash, charge);
        self.nodes.push_front(&mut self.q, MAIN, id);
    }

    fn on_hit(&mut self, id: u32) {
        if self.q.head != id {
            self.nodes.unlink(&mut self.q, id);
            self.nodes.push_front(&mut self.q, MAIN, id);
        }
    }

    fn on_remove(&mut self, id: u32) {
        self.nodes.unlink(&mut self.q, id);
    }

    fn evict(&mut self) -> Option<u32> {
        let id = self.q.tail;
        if id == NIL {
            return None;
        }
        self.nodes.unlink(&mut self.q, id);
        Some(id)
    }
}

/// S3-FIFO (Yang et al., SOSP 2023), weighted by bytes: a small FIFO (10% of the
/// budget) that new entries enter, a main FIFO, and a ghost FIFO of the hashes of
/// entries recently evicted from the small one. An entry hit while in the small queue
/// moves to the main one when it reaches the tail; one never hit is evicted (a
/// one-hit wonder, such as every entry of a scan, never reaches main). Main is a CLOCK
/// with a 2-bit counter: a hit entry at the tail is reinserted with its count lowered.
/// An insert whose hash is in the ghost queue goes straight to main. A hit only
/// bumps a counter: no list moves, unlike LRU.
#[derive(Debug)]
pub struct S3Fifo {
    nodes: Nodes,
    small: Queue,
    main: Queue,
    ghost: Ghost,
    small_target: usize,
}

impl Policy for S3Fifo {
    const NAME: &'static str = "S3-FIFO";

    fn new(max_bytes: usize) -> S3Fifo {
        S3Fifo {
            nodes: Nodes::default(),
            small: Queue::default(),
            main: Queue::default(),
            ghost: Ghost::default(),
            small_target: max_bytes / 10,
        }
    }

    fn on_insert(&mut self, id: u32, hash: u64, charge: usize) {
        self.nodes.set(id, hash, charge);
        if self.ghost.take(hash) {
            self.nodes.push_front(&mut self.main, MAIN, id);
        } else {
            self.nodes.push_front(&mut self.small, SMALL, id);
        }
    }

    fn on_hit(&mut self, id: u32) {
        let n = &mut self.nodes.0[id as usize];
        n.freq = (n.freq + 1).min(3);
    }

    fn on_remove(&mut self, id: u32) {
        match self.nodes.0[id as usize].queue {
            SMALL => self.nodes.unlink(&mut self.small, id),
            MAIN => self.nodes.unlink(&mut self.main, id),
            _ => {}
        }
    }

    fn evict(&mut self) -> Option<u32> {
        loop {
            if self.small.len > 0 && (self.small.bytes >= self.small_target || self.main.len == 0) {
                let id = self.small.tail;
                self.nodes.unlink(&mut self.small, id);
                let n = &mut self.nodes.0[id as usize];
                if n.freq > 0 {
                    n.freq = 0;
                    self.nodes.push_front(&mut self.main, MAIN, id);
                    continue;
                }
                let cap = self.main.len + self.small.len + 1;
                self.ghost.push(n.hash, cap);
                return Some(id);
            }
            let id = self.main.tail;
            if id == NIL {
                return None;
            }
            self.nodes.unlink(&mut self.main, id);
            let n = &mut self.nodes.0[id as usize];
            if n.freq > 0 {
                n.freq -= 1;
                self.nodes.push_front(&mut self.main, MAIN, id);
                continue;
            }
            return Some(id);
        }
    }
}

/// Hashes of recently evicted entries, about as many as there are live entries: a
/// direct-mapped table of 32-bit fingerprints (a hash's low bits pick the slot, its
/// high bits are the fingerprint), sized to the power of two at or above the live
/// count. A newer eviction landing on the same slot overwrites an older one, so what
/// is remembered is roughly the last table-size evictions, as with the paper's FIFO,
/// at one memory access per push or take instead of a hash map's several (the
/// ghost is touched on every insert and every eviction). A fingerprint collision
/// only sends a newcomer to the main queue.
#[derive(Debug, Default)]
struct Ghost {
    tags: Vec<u32>,
}

impl Ghost {
    fn push(&mut self, hash: u64, cap: usize) {
        if self.tags.len() < cap {
            // Growing forgets what was remembered: rare (the table doubles), and a
            // ghost is only ever a hint.
            self.tags = vec![0; cap.next_power_of_two().max(64)];
        }
        let (i, tag) = self.slot(hash);
        self.tags[i] = tag;
    }

    fn take(&mut self, hash: u64) -> bool {
        if self.tags.is_empty() {
            return false;
        }
        let (i, tag) = self.slot(hash);
        let found = self.tags[i] == tag;
        if found {
            self.tags[i] = 0;
        }
        found
    }

    fn slot(&self, hash: u64) -> (usize, u32) {
        // Never 0, which marks an empty slot.
        (
            (hash as usize) & (self.tags.len() - 1),
            (hash >> 32) as u32 | 1,
        )
    }
}

/// TinyLFU admission (Einziger et al.) in front of an LRU: a count-min sketch of
/// 4-bit counters estimates how often each key was asked for recently (counters are
/// halved every `10 x width` accesses), and a newcomer that would push out entries is
/// admitted only if it is asked for more often than every one of them.
#[derive(Debug)]
pub struct TinyLfu {
    lru: Lru,
    sketch: Sketch,
}

impl Policy for TinyLfu {
    const NAME: &'static str = "TinyLFU+LRU";

    fn new(max_bytes: usize) -> TinyLfu {
        // Width from the number of entries of a typical (2 KiB) size the budget holds.
        let entries = (max_bytes / 2048).clamp(256, 1 << 22);
        TinyLfu {
            lru: Lru::default(),
            sketch: Sketch::new(entries.next_power_of_two()),
        }
    }

    fn on_access(&mut self, hash: u64) {
        self.sketch.add(hash);
    }

    fn admit(&mut self, hash: u64, to_free: usize) -> bool {
        let candidate = self.sketch.estimate(hash);
        let (mut id, mut freed, mut steps) = (self.lru.q.tail, 0, 0);
        while id != NIL && freed < to_free && steps < 16 {
            let n = self.lru.nodes.0[id as usize];
            if self.sketch.estimate(n.hash) >= candidate {
                return false;
            }
            freed += n.charge;
            id = n.prev;
            steps += 1;
        }
        true
    }

    fn on_insert(&mut self, id: u32, hash: u64, charge: usize) {
        self.lru.on_insert(id, hash, charge);
    }

    fn on_hit(&mut self, id: u32) {
        self.lru.on_hit(id);
    }

    fn on_remove(&mut self, id: u32) {
        self.lru.on_remove(id);
    }

    fn evict(&mut self) -> Option<u32> {
        self.lru.evict()
    }
}

#[derive(Debug)]
struct Sketch {
    /// Four rows of `width` counters, one byte each (saturating at 15).
    rows: Vec<u8>,
    mask: usize,
    added: usize,
}

impl Sketch {
    fn new(width: usize) -> Sketch {
        Sketch {
            rows: vec![0; width * 4],
            mask: width - 1,
            added: 0,
        }
    }

    fn index(&self, hash: u64, row: usize) -> usize {
        let h = hash
            .wrapping_mul(0x9E37_79B9_7F4A_7C15u64.wrapping_add(row as u64 * 0x632B_E59B))
            .rotate_left(17 * row as u32 + 7);
        row * (self.mask + 1) + (h as usize & self.mask)
    }

    fn add(&mut self, hash: u64) {
        for row in 0..4 {
            let i = self.index(hash, row);
            self.rows[i] = (self.rows[i] + 1).min(15);
        }
        self.added += 1;
        if self.added >= 10 * (self.mask + 1) {
            self.added = 0;
            self.rows.iter_mut().for_each(|c| *c >>= 1);
        }
    }

    fn estimate(&self, hash: u64) -> u8 {
        (0..4)
            .map(|r| self.rows[self.index(hash, r)])
            .min()
            .unwrap_or(0)
    }
}

/// W-TinyLFU (Einziger et al.; Caffeine), weighted by bytes: new entries enter a small
/// LRU window (1% of the budget); the main area is a segmented LRU (probation, and
/// protected for entries hit while in probation, up to 80% of the budget). When the
/// window is over its share, its oldest entry duels the main area's victim and the one
/// the sketch says is asked for less often goes.
#[derive(Debug)]
pub struct WTinyLfu {
    nodes: Nodes,
    window: Queue,
    probation: Queue,
    protected: Queue,
    window_target: usize,
    main_target: usize,
    protected_target: usize,
    sketch: Sketch,
}

const WINDOW: u8 = 3;
const PROBATION: u8 = 4;
const PROTECTED: u8 = 5;

impl Policy for WTinyLfu {
    const NAME: &'static str = "W-TinyLFU";

    fn new(max_bytes: usize) -> WTinyLfu {
        let entries = (max_bytes / 2048).clamp(256, 1 << 22);
        WTinyLfu {
            nodes: Nodes::default(),
            window: Queue::default(),
            probation: Queue::default(),
            protected: Queue::default(),
            window_target: max_bytes / 100,
            main_target: max_bytes - max_bytes / 100,
            protected_target: max_bytes / 100 * 80,
            sketch: Sketch::new(entries.next_power_of_two()),
        }
    }

    fn on_access(&mut self, hash: u64) {
        self.sketch.add(hash);
    }

    fn on_insert(&mut self, id: u32, hash: u64, charge: usize) {
        self.nodes.set(id, hash, charge);
        self.nodes.push_front(&mut self.window, WINDOW, id);
    }

    fn on_hit(&mut self, id: u32) {
        match self.nodes.0[id as usize].queue {
            WINDOW => {
                self.nodes.unlink(&mut self.window, id);
                self.nodes.push_front(&mut self.window, WINDOW, id);
            }
            PROBATION => {
                self.nodes.unlink(&mut self.probation, id);
                self.nodes.push_front(&mut self.protected, PROTECTED, id);
                while self.protected.bytes > self.protected_target {
                    let t = self.protected.tail;
                    self.nodes.unlink(&mut self.protected, t);
                    self.nodes.push_front(&mut self.probation, PROBATION, t);
                }
            }
            PROTECTED => {
                self.nodes.unlink(&mut self.protected, id);
                self.nodes.push_front(&mut self.protected, PROTECTED, id);
            }
            _ => {}
        }
    }

    fn on_remove(&mut self, id: u32) {
        match self.nodes.0[id as usize].queue {
            WINDOW => self.nodes.unlink(&mut self.window, id),
            PROBATION => self.nodes.unlink(&mut self.probation, id),
            PROTECTED => self.nodes.unlink(&mut self.protected, id),
            _ => {}
        }
    }

    fn evict(&mut self) -> Option<u32> {
        loop {
            let main_victim = if self.probation.tail != NIL {
                self.probation.tail
            } else {
                self.protected.tail
            };
            let c = self.window.tail;
            if c != NIL && (self.window.bytes > self.window_target || main_victim == NIL) {
                self.nodes.unlink(&mut self.window, c);
                let charge = self.nodes.0[c as usize].charge;
                if self.probation.bytes + self.protected.bytes + charge <= self.main_target {
                    // Main has room: no duel.
                    self.nodes.push_front(&mut self.probation, PROBATION, c);
                    continue;
                }
                if main_victim == NIL {
                    return Some(c);
                }
                let (fc, fv) = (
                    self.sketch.estimate(self.nodes.0[c as usize].hash),
                    self.sketch
                        .estimate(self.nodes.0[main_victim as usize].hash),
                );
                if fc > fv {
                    self.on_remove(main_victim);
                    self.nodes.push_front(&mut self.probation, PROBATION, c);
                    return Some(main_victim);
                }
                return Some(c);
            }
            if main_victim == NIL {
                return None;
            }
            self.on_remove(main_victim);
            return Some(main_victim);
        }
    }
}
