//! Rolling windows for the route-metrics API (`GET /api/v1/metrics/routes/{id}?period=`):
//! per route and per worker, request counts and a latency sketch for the last minute
//! up to the last hour, merged across workers when asked for ([`route_summary`]).
//!
//! # Slots
//!
//! Time is cut into slots aligned on the Unix clock, the same on every worker so that
//! their slots merge one to one. A route's [`Window`] holds:
//!
//! - the **current 10-second slot**, live: its counts and a dense DDSketch that every
//!   request is added to;
//! - the **current minute**, live: the complete 10-second slots of this minute merged
//!   (a sketch merge once per 10 s, never per request);
//! - the last **6 complete 10-second slots**, packed (serves `1m`);
//! - the last **N complete minutes**, packed (serves `5m`, `15m`, `1h`), N the largest
//!   period `metrics.latency_window_s` allows (60 at the default 3600 s; 0 when only
//!   `1m` is allowed, and then no minute is kept at all).
//!
//! A period's window ends now and starts at the boundary of the slot that holds
//! `now - period`: `1m` covers the last 60 to 70 s, `5m` the last 5 to 6 minutes, `1h`
//! the last 60 to 61 minutes. Slots roll over lazily, when a request or a query for the
//! route finds the clock past the current slot, so an idle route costs no work; a
//! route with no traffic in a slot keeps no slot for it.
//!
//! # The sketch, and why not HdrHistogram
//!
//! Latencies go into a DDSketch (crate `sketches-ddsketch`) with relative accuracy
//! [`ALPHA`] = 0.8 %: every quantile it returns is within 0.8 % of the exact value at
//! that rank (the API promises 1 %), whatever the distribution, and sketches merge
//! exactly (merging workers' or slots' sketches gives the sketch of all their values).
//! HdrHistogram with 2 significant digits gives a similar bound (0.78 %) but with 128
//! buckets per doubling where DDSketch needs 43, and a dense array over the whole
//! trackable range per histogram (13 KiB at u32 counts for 1 µs to 1 h); a past slot
//! packed as DDSketch's own sparse encoding (key deltas and var-int counts, about
//! 2-3 bytes per non-empty bucket plus a 60-byte header) is what makes an hour of
//! 1-minute slots affordable for many routes.
//!
//! # Memory bound (per worker)
//!
//! Per route that saw traffic: two live sketches (dense over the keys seen, in steps
//! of 128 8-byte bins: 1-2 KiB for latencies within a factor of 16, at most 16 KiB)
//! plus at most `6 + N` packed slots of 48 bytes of counts and `60 + 3 × b` bytes of
//! sketch, `b` the buckets the slot's latencies fall in: at most the slot's request
//! count, and at most 43 per doubling of latency spread (1,500 between 1 µs and 1 h).
//! `cargo bench --bench metrics` measures it after an hour of log-normal latencies
//! (median 5 ms, spread over about ten doublings): **23 KiB per route at 2 req/s
//! (22.7 MiB for 1,000 routes), 59 KiB per route at 50 req/s**, so ~60 MiB per worker
//! for 1,000 such busy routes; past a few requests per bucket it no longer grows with
//! the rate. The worst case, every slot of every route spread over the whole range,
//! is 66 × 4.6 KiB = 300 KiB per route.

use std::collections::VecDeque;

use serde::Serialize;
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

/// Width of the fine slots (serving `1m`).
pub const FINE_S: u64 = 10;
/// Width of the coarse slots (serving `5m`, `15m`, `1h`).
pub const MINUTE_S: u64 = 60;
const FINE_PER_MINUTE: u64 = MINUTE_S / FINE_S;
/// Complete fine slots kept: one minute.
const FINE_KEPT: u64 = FINE_PER_MINUTE;

/// The sketches' relative accuracy: a quantile is within this fraction of the exact
/// value at its rank.
pub const ALPHA: f64 = 0.008;

/// The sketches' configuration. Bins 2048 and minimum 1e-9 are the crate's defaults,
/// which a decoded sketch gets: only sketches of equal configuration merge.
fn sketch_config() -> SketchConfig {
    SketchConfig::new(ALPHA, 2048, 1e-9)
}

/// A period of the route-metrics API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    M1,
    M5,
    M15,
    H1,
}

/// Why a `period` was refused (the API answers 400 with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("period {0:?} is not one of 1m, 5m, 15m, 1h")]
    Unknown(String),
    #[error("period {period} is longer than metrics.latency_window_s = {window_s}")]
    BeyondWindow { period: &'static str, window_s: u64 },
}

impl Period {
    pub const ALL: [Period; 4] = [Period::M1, Period::M5, Period::M15, Period::H1];

    pub fn secs(self) -> u64 {
        match self {
            Period::M1 => 60,
            Period::M5 => 300,
            Period::M15 => 900,
            Period::H1 => 3600,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::M1 => "1m",
            Period::M5 => "5m",
            Period::M15 => "15m",
            Period::H1 => "1h",
        }
    }

    /// `1m`, `5m`, `15m` or `1h`, and no longer than `window_s`.
    pub fn parse(s: &str, window_s: u64) -> Result<Period, PeriodError> {
        let p = Period::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| PeriodError::Unknown(s.to_owned()))?;
        if p.secs() > window_s {
            return Err(PeriodError::BeyondWindow {
                period: p.as_str(),
                window_s,
            });
        }
        Ok(p)
    }
}

/// Complete minutes a window keeps for `window_s`: those of the longest period it
/// allows beyond `1m`.
pub fn minutes_kept(window_s: u64) -> u64 {
    Period::ALL
        .into_iter()
        .filter(|p| *p != Period::M1 && p.secs() <= window_s)
        .map(|p| p.secs() / MINUTE_S)
        .max()
        .unwrap_or(0)
}

/// Exact counts of one slot (or of a whole window, added up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    /// Status 400 and above (a client that left before any answer counts as 499).
    pub failed: u64,
    /// 429 from the rate-limit stage.
    pub rate_limited: u64,
    /// Answered from the cache (`HIT` or `STALE`).
    pub cache_hits: u64,
    /// Looked up in the cache: hits, stale answers and misses (not bypasses).
    pub cache_lookups: u64,
    /// Sum of latencies, microseconds (the exact average).
    pub latency_us: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.total += o.total;
        self.failed += o.failed;
        self.rate_limited += o.rate_limited;
        self.cache_hits += o.cache_hits;
        self.cache_lookups += o.cache_lookups;
        self.latency_us += o.latency_us;
    }
}

/// The cache's part in a request, for the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLook {
    Hit,
    Miss,
    /// Not looked up (a route without cache, a bypass).
    None,
}

/// What a window records of one request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub status: u16,
    pub latency_us: u64,
    pub rate_limited: bool,
    pub cache: CacheLook,
}

/// A live slot: counts and a dense sketch.
struct Live {
    counts: Counts,
    sketch: DDSketch,
}

impl Live {
    fn new() -> Live {
        Live {
            counts: Counts::default(),
            sketch: DDSketch::new(sketch_config()),
        }
    }

    fn pack(&self, id: u64) -> Packed {
        Packed {
            id,
            counts: self.counts,
            sketch: self.sketch.to_java_bytes().into_boxed_slice(),
        }
    }

    fn merge(&mut self, o: &Live) {
        self.counts.add(&o.counts);
        // Same configuration on both sides: cannot fail.
        let _ = self.sketch.merge(&o.sketch);
    }

    fn clear(&mut self) {
        *self = Live::new();
    }
}

/// A complete slot, packed: its counts and its sketch in DDSketch's sparse encoding.
#[derive(Debug, Clone)]
pub struct Packed {
    /// Slot number: Unix seconds / slot width.
    pub id: u64,
    pub counts: Counts,
    pub sketch: Box<[u8]>,
}

/// One route's rolling window on one worker (see the module doc).
pub struct Window {
    fine_id: u64,
    fine: Live,
    /// The minute `minute`'s complete fine slots belong to.
    minute_id: u64,
    minute: Live,
    past_fine: VecDeque<Packed>,
    past_minutes: VecDeque<Packed>,
    keep_minutes: u64,
}

impl Window {
    /// An empty window keeping enough for the periods `window_s` allows.
    pub fn new(window_s: u64, now_s: u64) -> Window {
        Window {
            fine_id: now_s / FINE_S,
            fine: Live::new(),
            minute_id: now_s / MINUTE_S,
            minute: Live::new(),
            past_fine: VecDeque::new(),
            past_minutes: VecDeque::new(),
            keep_minutes: minutes_kept(window_s),
        }
    }

    /// Record one request that ended at `now_s`.
    #[inline]
    pub fn record(&mut self, now_s: u64, s: &Sample) {
        self.roll(now_s);
        let c = &mut self.fine.counts;
        c.total += 1;
        c.failed += u64::from(s.status >= 400 || s.status == 0);
        c.rate_limited += u64::from(s.rate_limited);
        match s.cache {
            CacheLook::Hit => {
                c.cache_hits += 1;
                c.cache_lookups += 1;
            }
            CacheLook::Miss => c.cache_lookups += 1,
            CacheLook::None => {}
        }
        c.latency_us += s.latency_us;
        // A latency under 1 µs does not happen; 1 keeps it out of the zero bucket.
        self.fine.sketch.add(s.latency_us.max(1) as f64);
    }

    /// Close the slots that `now_s` is past. A clock that went back keeps the current
    /// slot.
    pub fn roll(&mut self, now_s: u64) {
        let f = now_s / FINE_S;
        if f <= self.fine_id {
            return;
        }
        if self.fine.counts.total > 0 {
            let m = self.fine_id / FINE_PER_MINUTE;
            if m != self.minute_id {
                self.close_minute(m);
            }
            self.past_fine.push_back(self.fine.pack(self.fine_id));
            if self.keep_minutes > 0 {
                self.minute.merge(&self.fine);
            }
            self.fine.clear();
        }
        self.fine_id = f;
        if f / FINE_PER_MINUTE != self.minute_id {
            self.close_minute(f / FINE_PER_MINUTE);
        }
        while self.past_fine.front().is_some_and(|p| p.id + FINE_KEPT < f) {
            self.past_fine.pop_front();
        }
        let m = f / FINE_PER_MINUTE;
        while self
            .past_minutes
            .front()
            .is_some_and(|p| p.id + self.keep_minutes < m)
        {
            self.past_minutes.pop_front();
        }
    }

    /// Pack the current minute (if anything is in it) and start minute `next`.
    fn close_minute(&mut self, next: u64) {
        if self.minute.counts.total > 0 {
            self.past_minutes
                .push_back(self.minute.pack(self.minute_id));
            self.minute.clear();
        }
        self.minute_id = next;
    }

    /// The slots that make up `period` at `now_s` (see the module doc), packed. Cheap
    /// for the worker: the live slots are encoded, the packed ones copied.
    pub fn parts(&mut self, now_s: u64, period: Period) -> Vec<Packed> {
        self.roll(now_s);
        let f = self.fine_id;
        let mut out = Vec::new();
        if self.fine.counts.total > 0 {
            out.push(self.fine.pack(f));
        }
        match period {
            Period::M1 => out.extend(
                self.past_fine
                    .iter()
                    .filter(|p| p.id + FINE_KEPT >= f)
                    .cloned(),
            ),
            _ => {
                let m = f / FINE_PER_MINUTE;
                let k = period.secs() / MINUTE_S;
                if self.minute_id == m && self.minute.counts.total > 0 {
                    out.push(self.minute.pack(m));
                }
                out.extend(self.past_minutes.iter().filter(|p| p.id + k >= m).cloned());
            }
        }
        out
    }

    /// Bytes this window holds on the heap (an estimate for the live sketches: their
    /// bins).
    pub fn heap_bytes(&self) -> usize {
        let packed = |q: &VecDeque<Packed>| {
            q.iter()
                .map(|p| p.sketch.len() + std::mem::size_of::<Packed>())
                .sum::<usize>()
        };
        (self.fine.sketch.length() + self.minute.sketch.length()) * 8
            + packed(&self.past_fine)
            + packed(&self.past_minutes)
    }
}

/// One worker's part of a route's window for a period: sent to the admin thread, which
/// merges the workers' parts with [`route_summary`].
#[derive(Debug, Clone)]
pub struct RouteWindow {
    pub route_id: String,
    pub period: Period,
    pub parts: Vec<Packed>,
}

/// The route-metrics API's answer. The eight fields after `period` are the contract.
/// Successful means status below 400; failed, 400 and above (429 included: it is also
/// a `rate_limit_hit`), as management APIs count them. Latencies are over every
/// request of the period, in milliseconds rounded to the microsecond; p95 and p99 are
/// the values at ranks `floor(q × (n - 1))` within 0.8 %. `cache_hit_rate` is answers
/// from the cache (`HIT`, `STALE`) over lookups (those and `MISS`), 0 without any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSummary {
    pub route_id: String,
    pub period: &'static str,
    pub total_requests: u64,
    pub successful_requests: u64,
    pub failed_requests: u64,
    pub avg_latency_ms: f64,
    pub p95_latency_ms: f64,
    pub p99_latency_ms: f64,
    pub rate_limit_hits: u64,
    pub cache_hit_rate: f64,
}

/// Merge the workers' windows of one route into the API's answer (on the admin
/// thread: decoding and merging sketches is the heavy part).
pub fn route_summary(route_id: &str, windows: Vec<RouteWindow>, period: Period) -> RouteSummary {
    let mut counts = Counts::default();
    let mut sketch: Option<DDSketch> = None;
    for part in windows.iter().flat_map(|w| &w.parts) {
        counts.add(&part.counts);
        // Our own encoding: a part that would not decode is left out of the
        // percentiles (its counts still count).
        let Ok(s) = DDSketch::from_java_bytes(&part.sketch) else {
            continue;
        };
        match &mut sketch {
            None => sketch = Some(s),
            Some(acc) => {
                let _ = acc.merge(&s);
            }
        }
    }
    let ms = |us: f64| (us / 1000.0 * 1000.0).round() / 1000.0;
    let q = |q: f64| {
        sketch
            .as_ref()
            .and_then(|s| s.quantile(q).ok().flatten())
            .map_or(0.0, ms)
    };
    let avg = match counts.total {
        0 => 0.0,
        n => ms(counts.latency_us as f64 / n as f64),
    };
    let hit_rate = match counts.cache_lookups {
        0 => 0.0,
        n => (counts.cache_hits as f64 / n as f64 * 10_000.0).round() / 10_000.0,
    };
    RouteSummary {
        route_id: route_id.to_owned(),
        period: period.as_str(),
        total_requests: counts.total,
        successful_requests: counts.total - counts.failed,
        failed_requests: counts.failed,
        avg_latency_ms: avg,
        p95_latency_ms: q(0.95),
        p99_latency_ms: q(0.99),
        rate_limit_hits: counts.rate_limited,
        cache_hit_rate: hit_rate,
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
