//! The eviction-policy comparison: the real [`Cache`] under each [`Policy`], driven by
//! synthetic request streams, hit rates out. Used by a unit test (which asserts the
//! chosen policy's margins) and printed by `cargo bench --bench cache`.
//!
//! Objects have 64 sizes from 512 B to 32 KiB (log-uniform, fixed per key), so the
//! comparison is byte-weighted like the cache; every miss is filled. Workloads:
//!
//! * **zipf**: keys drawn from a Zipf(0.9) popularity over `keys` objects;
//! * **zipf+scan**: the same stream with a one-pass scan of `requests / 4` keys that
//!   are never asked for again interleaved 1:1 through its middle half (a crawler, a
//!   bulk export, a cache-busting client);
//! * **shifting**: Zipf(0.9) whose hot set moves to new keys twenty times over the
//!   run (new items become popular, old ones fade).
//!
//! The hit rate counted is over the Zipf requests only (a scan request can never hit),
//! so the workloads' numbers are comparable.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::entry::Entry;
use super::key::{primary_key, Audience, KeyParts};
use super::policy::{Lru, Policy, S3Fifo, TinyLfu, WTinyLfu};
use super::rules::ReqDirectives;
use super::store::{Cache, Lookup};

/// A deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over `0..n` by inverse CDF.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        cdf.iter_mut().for_each(|c| *c /= sum);
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut SplitMix) -> u64 {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u64
    }
}

/// Objects come in 64 sizes, 512 B to 32 KiB, spaced log-uniformly.
const SIZE_CLASSES: u64 = 64;

fn size_class(key: u64) -> usize {
    (SplitMix(key ^ 0x5EED).next_u64() % SIZE_CLASSES) as usize
}

fn class_size(class: usize) -> usize {
    (512.0 * 64f64.powf(class as f64 / (SIZE_CLASSES - 1) as f64)) as usize
}

/// Size of object `key` (fixed per key).
pub fn object_size(key: u64) -> usize {
    class_size(size_class(key))
}

/// A request stream: (key, counts toward the hit rate).
pub type Stream = Vec<(u64, bool)>;

/// Zipf(0.9) over `keys` objects.
pub fn zipf_stream(keys: usize, requests: usize, seed: u64) -> Stream {
    let z = Zipf::new(keys, 0.9);
    let mut rng = SplitMix(seed);
    (0..requests).map(|_| (z.sample(&mut rng), true)).collect()
}

/// [`zipf_stream`] with a one-pass scan of `requests / 4` new keys interleaved 1:1
/// through the middle half.
pub fn scan_stream(keys: usize, requests: usize, seed: u64) -> Stream {
    let zipf = zipf_stream(keys, requests, seed);
    let (start, end) = (requests / 4, requests * 3 / 4);
    let mut scan = (keys as u64)..(keys + requests / 4) as u64;
    let mut out = Vec::with_capacity(requests + keys);
    for (i, r) in zipf.into_iter().enumerate() {
        if (start..end).contains(&i) && i % 2 == 0 {
            if let Some(k) = scan.next() {
                out.push((k, false));
            }
        }
        out.push(r);
    }
    out
}

/// Zipf(0.9) whose hot set moves: every `requests / 20` requests the ranks map to
/// keys `keys / 20` further on (new items become popular, old ones fade).
pub fn shift_stream(keys: usize, requests: usize, seed: u64) -> Stream {
    let z = Zipf::new(keys, 0.9);
    let mut rng = SplitMix(seed);
    let phase = (requests / 20).max(1);
    (0..requests)
        .map(|i| (z.sample(&mut rng) + (i / phase * (keys / 20)) as u64, true))
        .collect()
}

/// Replay `stream` through a cache of `max_bytes` under policy `P`: every miss is
/// filled. Returns the hit rate over the counted requests.
pub fn hit_rate<P: Policy>(stream: &[(u64, bool)], max_bytes: usize) -> f64 {
    let mut cache: Cache<P> = Cache::with_policy(max_bytes, usize::MAX);
    let bodies: Vec<Rc<[u8]>> = (0..SIZE_CLASSES as usize)
        .map(|c| vec![0u8; class_size(c)].into())
        .collect();
    let now = Instant::now();
    let dirs = ReqDirectives::default();
    let none: &[(&[u8], &[u8])] = &[];
    let (mut key, mut target) = (Vec::new(), Vec::new());
    let (mut hits, mut counted) = (0u64, 0u64);
    for &(k, counts) in stream {
        target.clear();
        target.extend_from_slice(b"/obj/");
        target.extend_from_slice(itoa::Buffer::new().format(k).as_bytes());
        let parts = KeyParts {
            method: b"GET",
            host: b"sim",
            target: &target,
            audience: Audience::Shared,
        };
        primary_key(&mut key, &parts);
        let hit = matches!(cache.lookup(&key, none, &dirs, now), Lookup::Hit(_));
        if counts {
            counted += 1;
            hits += u64::from(hit);
        }
        if !hit {
            let body = bodies[size_class(k)].clone();
            let e = Entry::synthetic(body, Duration::from_secs(3600), now);
            let _ = cache.insert(&key, none, e);
            assert!(cache.stats().bytes <= max_bytes);
        }
    }
    hits as f64 / counted.max(1) as f64
}

/// One cell of the comparison.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: &'static str,
    pub policy: &'static str,
    /// Cache size as a share of the bytes of all Zipf objects.
    pub cache_share: f64,
    pub hit_rate: f64,
}

/// Run every policy on every workload, with caches of 1% and 10% of the bytes of the
/// `keys` Zipf objects.
pub fn compare(keys: usize, requests: usize) -> Vec<Row> {
    let total: usize = (0..keys as u64).map(object_size).sum();
    let workloads = [
        ("zipf", zipf_stream(keys, requests, 1)),
        ("zipf+scan", scan_stream(keys, requests, 1)),
        ("shifting", shift_stream(keys, requests, 1)),
    ];
    let mut rows = Vec::new();
    for share in [0.01, 0.1] {
        let bytes = (total as f64 * share) as usize;
        for (name, stream) in &workloads {
            let mut row = |policy, hit_rate| {
                rows.push(Row {
                    workload: name,
                    policy,
                    cache_share: share,
                    hit_rate,
                })
            };
            row(Lru::NAME, hit_rate::<Lru>(stream, bytes));
            row(S3Fifo::NAME, hit_rate::<S3Fifo>(stream, bytes));
            row(TinyLfu::NAME, hit_rate::<TinyLfu>(stream, bytes));
            row(WTinyLfu::NAME, hit_rate::<WTinyLfu>(stream, bytes));
        }
    }
    rows
}

/// The comparison as a table: a row per workload and cache size, a column per policy.
pub fn table(rows: &[Row]) -> String {
    let mut policies: Vec<&str> = Vec::new();
    let mut lines: Vec<(&str, f64)> = Vec::new();
    for r in rows {
        if !policies.contains(&r.policy) {
            policies.push(r.policy);
        }
        if !lines.contains(&(r.workload, r.cache_share)) {
            lines.push((r.workload, r.cache_share));
        }
    }
    let mut s = format!("{:<16}", "workload  cache");
    for p in &policies {
        s.push_str(&format!("{p:>12}"));
    }
    s.push('\n');
    for (w, share) in lines {
        s.push_str(&format!("{w:<10}{:>5.0}% ", share * 100.0));
        for p in &policies {
            let r = rows
                .iter()
                .find(|r| r.workload == w && r.cache_share == share && r.policy == *p);
            match r {
                Some(r) => s.push_str(&format!("{:>11.1}%", r.hit_rate * 100.0)),
                None => s.push_str(&format!("{:>12}", "-")),
            }
        }
        s.push('\n');
    }
    s
}
