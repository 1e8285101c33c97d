//! Quotas: a plan's `daily_quota` and `monthly_quota`, requests per caller per UTC
//! calendar day and month, counted per worker next to the buckets and kept in step
//! across workers by the same gossip.
//!
//! # Where they are checked
//!
//! In the rate-limit stage, through [`super::Limiter::check_quota`]: the quota is read
//! first; a caller over quota is refused without touching the bucket (a refused
//! request costs no token); otherwise the bucket decides, and only a request the bucket
//! admits is counted against the quota (a request the bucket refuses costs no quota).
//! So every admission of a plan with a quota is one bucket admission and one quota
//! count, and the gossip batch of admitted counts per key ([`super::Batch`]) is exactly
//! what the quotas of the other workers must be charged: [`Quotas::add_remote`] folds
//! each batch entry into the receiving worker's counts. A route's own `rate_limit`
//! replaces the plan on that route, so it has no quota.
//!
//! # Keys and periods
//!
//! A count is keyed like the bucket (the plan's name and the caller's key, as a keyed
//! 64-bit fingerprint) with a tag for the period, and stored in a table of the
//! buckets' kind (`table.rs`: 16 bytes an entry, 16 shards) as `period_end_day << 40 | count`: the UTC day on which the period ends
//! (the day after for a daily count, the first of the next month for a monthly one).
//! A count whose end is past is zero, and the sweep (one shard per 50 ms tick, the
//! same as the buckets') drops it. Counts are at most [`MAX_QUOTA`] (40 bits).
//! Calendar arithmetic is done on Unix seconds ([`Period`]: days = secs / 86400,
//! months from Howard Hinnant's civil-from-days); every function takes the time as
//! an argument, so the rollover is tested without waiting.
//!
//! # The bound across workers
//!
//! A remote count is folded into the period current when it arrives. With `W`
//! workers and `L` the gossip latency of the module above (`L < 2S`), the requests
//! admitted for one key in one period across the node are at most
//!
//! ```text
//!     Q + (W-1) × (floor(L/T) + burst + 1)
//! ```
//!
//! since a worker refuses once its own count (its admissions plus every other
//! worker's older than `L`) reaches `Q`, and in the last `L` every other worker admits
//! at most what its bucket allows in `L`. With 2 workers, the default 20 ms sync and
//! the free plan, that is `Q + 11`. Admissions just before the period ends that
//! arrive on another worker after it count in the next period there: a worker may
//! refuse up to that many early in a new period, never admit more.
//!
//! # Memory
//!
//! One entry per (caller, plan, period kind) with a quota, at most
//! `max_keys_per_worker` per worker (the buckets' cap). When the table is full of
//! live counts, one shard is swept for room, and if none is freed the new key is
//! counted in one shared overflow entry per plan and period (like the buckets'
//! overflow: a flood of new keys is limited as a whole). While the *bucket* table is
//! full, a new key's admissions are gossiped under the buckets' overflow key, so other
//! workers charge them to the plan's shared quota entry rather than the caller's: the
//! cross-worker bound above, like the buckets', assumes the tables are not full.
//!
//! # Reloads
//!
//! Counts are named by plan name and key, like the buckets: a reload that changes a
//! plan's quota keeps what each caller has used today and this month, and judges it
//! against the new quota; a plan whose quotas become 0 stops counting (its entries
//! expire with their period).
//!
//! # Cluster
//!
//! Without `[cluster]` the counts are this node's, in memory, and lost on restart.
//! With it (`crate::cluster`, "Quotas") the node's sync thread adds its admissions
//! (the drained batches, [`super::Limiter::drain_consumed`]) to counters in Redis and
//! hands the cluster's counts back, which [`Quotas::raise_to`] folds in; other nodes'
//! admissions also arrive as remote counts like another worker's. The bound above
//! then holds with `N × W` for `W` and the cluster's latency `L_c` for `L`.

use super::key::KeySecret;
use super::table::Table;
use super::{Plan, RateLimitConfig};

/// The largest quota a plan may have (counts are 40 bits of an entry).
pub const MAX_QUOTA: u64 = (1 << COUNT_BITS) - 1;
const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = MAX_QUOTA;
const DAY_SECS: u64 = 86_400;
/// Tags that make a day count and a month count of one key two entries.
const DAY_TAG: u64 = 0x9e37_79b9_7f4a_7c15;
const MONTH_TAG: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// A quota period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    /// The name of the period in `RateLimit-Policy` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// `(first day, day after the last)` of the period that holds `unix_secs`, in days
    /// since 1970-01-01 (UTC).
    pub fn bounds(self, unix_secs: u64) -> (u64, u64) {
        let day = unix_secs / DAY_SECS;
        match self {
            Period::Day => (day, day + 1),
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(y, m, 1), days_from_civil(ny, nm, 1))
            }
        }
    }

    /// Seconds from `unix_secs` until the period rolls over (at least 1).
    pub fn secs_left(self, unix_secs: u64) -> u64 {
        (self.bounds(unix_secs).1 * DAY_SECS - unix_secs).max(1)
    }

    /// The period's length in seconds: `w` of `RateLimit-Policy`.
    pub fn window_secs(self, unix_secs: u64) -> u64 {
        let (start, end) = self.bounds(unix_secs);
        (end - start) * DAY_SECS
    }
}

/// `(year, month 1..=12, day 1..=31)` of a day counted from 1970-01-01 (proleptic
/// Gregorian; H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
pub fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Days from 1970-01-01 to `y-m-d` (year at least 1970).
pub fn days_from_civil(y: u64, m: u32, d: u32) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let m = u64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + u64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One quota as the headers show it, after the request it was checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaItem {
    pub period: Period,
    /// The plan's quota: `q`.
    pub limit: u64,
    /// Requests left in the period: `r`.
    pub remaining: u64,
    /// Seconds until the period rolls over: `t`, and `Retry-After` when exhausted.
    pub reset_secs: u64,
    /// The period's length in seconds: `w`.
    pub window_secs: u64,
}

/// The quotas of one request: up to one daily and one monthly item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaState {
    pub items: [Option<QuotaItem>; 2],
    /// The request was refused for quota (an admitted request may leave a quota at 0).
    pub refused: bool,
}

impl QuotaState {
    pub fn items(&self) -> impl Iterator<Item = &QuotaItem> {
        self.items.iter().flatten()
    }

    /// The exhausted quota that rolls over last (a request is admitted again only
    /// when every exhausted quota has), if any.
    pub fn exceeded(&self) -> Option<&QuotaItem> {
        self.items()
            .filter(|q| q.remaining == 0)
            .max_by_key(|q| q.reset_secs)
    }
}

#[derive(Debug, Clone, Copy)]
struct QuotaParams {
    name_hash: u64,
    daily: u64,
    monthly: u64,
}

/// One worker's quota counts. Not shared: each [`super::Limiter`] owns one.
pub struct Quotas {
    table: Table,
    plans: Vec<QuotaParams>,
    max_keys: usize,
    overflow_secret: KeySecret,
    /// Remote counts dropped because the table was full.
    pub remote_dropped: u64,
}

impl Quotas {
    pub(crate) fn new(cfg: &RateLimitConfig, secret: KeySecret) -> Quotas {
        Quotas {
            table: Table::new(),
            plans: params(cfg),
            max_keys: cfg.max_keys_per_worker.max(1),
            overflow_secret: secret,
            remote_dropped: 0,
        }
    }

    pub(crate) fn reconfigure(&mut self, cfg: &RateLimitConfig) {
        self.plans = params(cfg);
        self.max_keys = cfg.max_keys_per_worker.max(1);
    }

    /// Entries held (a key with both quotas holds two).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    fn param(&self, name_hash: u64) -> Option<QuotaParams> {
        self.plans
            .iter()
            .find(|p| p.name_hash == name_hash)
            .copied()
    }

    /// The count of `fp` (the bucket's fingerprint) in the current `period`.
    fn count(&self, fp: u64, period: Period, unix_secs: u64) -> u64 {
        let end = period.bounds(unix_secs).1;
        match self.table.get(tagged(fp, period)) {
            Some(v) if v >> COUNT_BITS == end => v & COUNT_MASK,
            _ => 0,
        }
    }

    /// The quotas of `plan` for the key `fp` as they stand, with `admitting` more
    /// requests counted.
    pub(crate) fn state(&self, fp: u64, plan: &Plan, unix_secs: u64, admitting: u64) -> QuotaState {
        let mut out = QuotaState::default();
        for (i, (period, limit)) in [
            (Period::Day, plan.daily_quota),
            (Period::Month, plan.monthly_quota),
        ]
        .into_iter()
        .enumerate()
        {
            if limit == 0 {
                continue;
            }
            let used = self.count(fp, period, unix_secs) + admitting;
            out.items[i] = Some(QuotaItem {
                period,
                limit,
                remaining: limit.saturating_sub(used),
                reset_secs: period.secs_left(unix_secs),
                window_secs: period.window_secs(unix_secs),
            });
        }
        out
    }

    /// The entry `fp` is counted in: its own when it exists or there is room for it;
    /// when the table is full of live counts, the plan's shared overflow entry.
    pub(crate) fn key(&mut self, fp: u64, plan_hash: u64, unix_secs: u64) -> u64 {
        let both = [tagged(fp, Period::Day), tagged(fp, Period::Month)];
        if self.table.len() + 2 <= self.max_keys || both.iter().any(|&f| self.table.contains(f)) {
            return fp;
        }
        self.sweep_step(unix_secs);
        if self.table.len() + 2 <= self.max_keys {
            fp
        } else {
            self.overflow_secret
                .fingerprint(plan_hash, b"\0quota-overflow")
        }
    }

    /// Count `n` admissions of `plan` for `fp` (from [`Quotas::key`]) in the current
    /// periods.
    pub(crate) fn admit(&mut self, fp: u64, plan: &Plan, n: u64, unix_secs: u64) {
        if plan.daily_quota == 0 && plan.monthly_quota == 0 {
            return;
        }
        self.add(fp, plan.daily_quota, plan.monthly_quota, n, unix_secs);
    }

    fn add(&mut self, fp: u64, daily: u64, monthly: u64, n: u64, unix_secs: u64) {
        for (period, limit) in [(Period::Day, daily), (Period::Month, monthly)] {
            if limit == 0 {
                continue;
            }
            let end = period.bounds(unix_secs).1;
            let slot = self.table.slot(tagged(fp, period), end << COUNT_BITS);
            let count = if *slot >> COUNT_BITS == end {
                *slot & COUNT_MASK
            } else {
                0
            };
            *slot = end << COUNT_BITS | count.saturating_add(n).min(COUNT_MASK);
        }
    }

    /// Fold `count` admissions another worker made for the plan named by `plan_hash`
    /// into the current periods (entries of plans without a quota are ignored).
    pub fn add_remote(&mut self, fp: u64, plan_hash: u64, count: u64, unix_secs: u64) {
        let Some(p) = self.param(plan_hash) else {
            return;
        };
        if !self.room_for(
            &[tagged(fp, Period::Day), tagged(fp, Period::Month)],
            unix_secs,
        ) {
            return;
        }
        self.add(fp, p.daily, p.monthly, count, unix_secs);
    }

    /// Whether a remote count for these entries fits: one of them is held already, or
    /// the table has room for them all (after sweeping a shard if not). Counted in
    /// `remote_dropped` when it does not.
    fn room_for(&mut self, entries: &[u64], unix_secs: u64) -> bool {
        let fits = |q: &Quotas| q.table.len() + entries.len() <= q.max_keys;
        if fits(self) || entries.iter().any(|&f| self.table.contains(f)) {
            return true;
        }
        self.sweep_step(unix_secs);
        if fits(self) {
            return true;
        }
        self.remote_dropped += 1;
        false
    }

    /// Raise the count of `fp` in the current `period` to `total` (a total learned
    /// from elsewhere, e.g. a cluster store, that already includes this worker's own).
    pub fn raise_to(
        &mut self,
        fp: u64,
        plan_hash: u64,
        period: Period,
        total: u64,
        unix_secs: u64,
    ) {
        let Some(p) = self.param(plan_hash) else {
            return;
        };
        let current = self.count(fp, period, unix_secs);
        if total > current && self.room_for(&[tagged(fp, period)], unix_secs) {
            let (d, m) = match period {
                Period::Day => (p.daily, 0),
                Period::Month => (0, p.monthly),
            };
            self.add(fp, d, m, total - current, unix_secs);
        }
    }

    /// Drop the counts of past periods in one shard of the table.
    pub fn sweep_step(&mut self, unix_secs: u64) -> usize {
        // Alive while the period's end day is after today.
        let today = unix_secs / DAY_SECS;
        self.table.sweep_next(((today + 1) << COUNT_BITS) - 1)
    }
}

fn tagged(fp: u64, period: Period) -> u64 {
    fp ^ match period {
        Period::Day => DAY_TAG,
        Period::Month => MONTH_TAG,
    }
}

fn params(cfg: &RateLimitConfig) -> Vec<QuotaParams> {
    cfg.plans
        .iter()
        .filter(|p| p.daily_quota > 0 || p.monthly_quota > 0)
        .map(|p| QuotaParams {
            name_hash: p.name_hash,
            daily: p.daily_quota,
            monthly: p.monthly_quota,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::KeyKind;
    use super::*;

    /// Unix seconds of `y-m-d h:00:00` UTC.
    fn at(y: u64, m: u32, d: u32, h: u64) -> u64 {
        days_from_civil(y, m, d) * DAY_SECS + h * 3600
    }

    #[test]
    fn civil_dates_round_trip_and_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2000-02-29 (a leap day of a century divisible by 400): day 11016.
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        // 2026-12-06 is 1796515200 / 86400.
        assert_eq!(days_from_civil(2026, 12, 6), 1_796_515_200 / DAY_SECS);
        for d in 0..200_000 {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn month_lengths_leap_years_and_year_rollover() {
        let days = |y, m| Period::Month.window_secs(at(y, m, 15, 12)) / DAY_SECS;
        assert_eq!(days(2026, 1), 31);
        assert_eq!(days(2026, 2), 28);
        assert_eq!(days(2024, 2), 29);
        assert_eq!(days(2000, 2), 29);
        assert_eq!(days(2100, 2), 28);
        assert_eq!(days(2026, 4), 30);
        assert_eq!(days(2026, 12), 31);
        // December rolls over into January of the next year.
        assert_eq!(
            Period::Month.bounds(at(2026, 12, 31, 23)),
            (days_from_civil(2026, 12, 1), days_from_civil(2027, 1, 1))
        );
        assert_eq!(Period::Month.secs_left(at(2026, 12, 31, 23)), 3600);
        assert_eq!(Period::Day.secs_left(at(2026, 12, 31, 23) + 1), 3599);
        assert_eq!(Period::Day.secs_left(at(2026, 12, 6, 0)), DAY_SECS);
        assert_eq!(Period::Day.window_secs(at(2026, 12, 6, 5)), DAY_SECS);
        // The last second of a leap February, and the first of March.
        let feb_end = at(2024, 3, 1, 0) - 1;
        assert_eq!(Period::Month.secs_left(feb_end), 1);
        assert_eq!(Period::Month.window_secs(feb_end), 29 * DAY_SECS);
        assert_eq!(Period::Month.window_secs(feb_end + 1), 31 * DAY_SECS);
    }

    fn cfg(daily: u64, monthly: u64, max_keys: usize) -> RateLimitConfig {
        let mut cfg = RateLimitConfig::new(
            &[("free", 60, 10), ("open", 60, 10)],
            "free",
            KeyKind::User,
            Duration::from_millis(20),
        )
        .unwrap();
        cfg.plans[0].daily_quota = daily;
        cfg.plans[0].monthly_quota = monthly;
        cfg.max_keys_per_worker = max_keys;
        cfg
    }

    #[test]
    fn counts_roll_over_with_the_day_and_the_month() {
        let cfg = cfg(3, 5, 100);
        let plan = &cfg.plans[0];
        let mut q = Quotas::new(&cfg, KeySecret::random());
        let t = at(2026, 1, 31, 22);
        q.admit(1, plan, 3, t);
        let s = q.state(1, plan, t, 0);
        assert_eq!(
            s.exceeded().map(|i| (i.period, i.reset_secs)),
            Some((Period::Day, 7200))
        );
        assert_eq!(s.items[1].unwrap().remaining, 2);
        // Another key is separate.
        assert!(q.state(2, plan, t, 0).exceeded().is_none());
        // The next day (and month): both counts start again.
        let t2 = at(2026, 2, 1, 0);
        let s = q.state(1, plan, t2, 0);
        assert_eq!(s.items[0].unwrap().remaining, 3);
        assert_eq!(s.items[1].unwrap().remaining, 5);
        assert_eq!(s.items[1].unwrap().window_secs, 28 * DAY_SECS);
        // Within a month, the monthly count survives the day's rollover.
        q.admit(1, plan, 3, t2);
        let t3 = at(2026, 2, 2, 1);
        q.admit(1, plan, 2, t3);
        let s = q.state(1, plan, t3, 0);
        assert_eq!(s.items[0].unwrap().remaining, 1);
        let over = s.exceeded().unwrap();
        assert_eq!(over.period, Period::Month);
        assert_eq!(over.reset_secs, at(2026, 3, 1, 0) - t3);
        // Sweeping at the next month drops everything.
        let t4 = at(2026, 3, 1, 0);
        let dropped: usize = (0..16).map(|_| q.sweep_step(t4)).sum();
        assert_eq!(dropped, 2);
        assert!(q.is_empty());
    }

    #[test]
    fn remote_counts_and_totals_fold_in() {
        let cfg = cfg(10, 0, 100);
        let plan = &cfg.plans[0];
        let mut q = Quotas::new(&cfg, KeySecret::random());
        let t = at(2026, 12, 6, 17);
        q.admit(7, plan, 2, t);
        q.add_remote(7, plan.name_hash, 3, t);
        assert_eq!(q.state(7, plan, t, 0).items[0].unwrap().remaining, 5);
        // A plan without quota: ignored.
        q.add_remote(7, cfg.plans[1].name_hash, 3, t);
        assert_eq!(q.len(), 1);
        // A total from elsewhere raises the count, never lowers it.
        q.raise_to(7, plan.name_hash, Period::Day, 9, t);
        assert_eq!(q.state(7, plan, t, 0).items[0].unwrap().remaining, 1);
        q.raise_to(7, plan.name_hash, Period::Day, 4, t);
        assert_eq!(q.state(7, plan, t, 0).items[0].unwrap().remaining, 1);
    }

    #[test]
    fn quota_holds_across_workers_through_the_gossip() {
        use super::super::Mesh;
        use std::time::Instant;
        let cfg = cfg(5, 0, 100);
        let plan = &cfg.plans[0];
        let mut eps = Mesh::new(2).into_endpoints();
        let mut ls: Vec<_> = eps.iter().map(|e| e.limiter(&cfg)).collect();
        let now = Instant::now();
        // Remote counts are folded in at the wall clock's day: use it throughout.
        let t = unix_now();
        for _ in 0..3 {
            assert!(ls[0].check_quota(b"k", plan, now, t).0.allowed);
        }
        eps[0].exchange(&mut ls[0], now);
        eps[1].exchange(&mut ls[1], now);
        // Worker 1 has heard of 3: two more, then refused until midnight.
        for left in [1, 0] {
            let (d, q) = ls[1].check_quota(b"k", plan, now, t);
            assert!(d.allowed && !q.refused && q.items[0].unwrap().remaining == left);
        }
        let (d, q) = ls[1].check_quota(b"k", plan, now, t);
        assert!(q.refused && !d.allowed && d.retry_after.is_none());
        let over = q.exceeded().expect("over quota");
        assert_eq!(over.reset_secs, Period::Day.secs_left(t));
        // Refused by quota: no token taken (the decision is the bucket as it stands).
        assert_eq!(d.remaining, ls[1].peek(b"k", plan, now).remaining);
        let before = d.remaining;
        ls[1].check_quota(b"k", plan, now, t);
        assert_eq!(ls[1].peek(b"k", plan, now).remaining, before);
        // And worker 0 refuses too once it hears of worker 1's two.
        eps[1].exchange(&mut ls[1], now);
        eps[0].exchange(&mut ls[0], now);
        assert!(ls[0].check_quota(b"k", plan, now, t).1.exceeded().is_some());
    }

    #[test]
    fn a_request_the_bucket_refuses_costs_no_quota() {
        use std::time::Instant;
        let cfg = cfg(100, 1000, 100);
        let plan = &cfg.plans[0];
        let mut l = super::super::Limiter::new(0, 1, &cfg, KeySecret::random());
        let now = Instant::now();
        let t = at(2026, 12, 6, 17);
        for _ in 0..11 {
            assert!(l.check_quota(b"k", plan, now, t).0.allowed);
        }
        for _ in 0..5 {
            let (d, q) = l.check_quota(b"k", plan, now, t);
            assert!(!d.allowed && d.retry_after.is_some());
            assert_eq!(q.items[0].unwrap().remaining, 89);
            assert_eq!(q.items[1].unwrap().remaining, 989);
        }
    }

    #[test]
    fn a_full_table_counts_new_keys_together() {
        let cfg = cfg(2, 0, 4);
        let plan = &cfg.plans[0];
        let mut q = Quotas::new(&cfg, KeySecret::random());
        let t = at(2026, 12, 6, 17);
        for k in 0..10u64 {
            let f = q.key(k << 40, plan.name_hash, t);
            q.admit(f, plan, 1, t);
        }
        // Keys past the cap share one count: the quota of 2 holds for them together.
        let f = q.key(50 << 40, plan.name_hash, t);
        assert_eq!(q.state(f, plan, t, 0).items[0].unwrap().remaining, 0);
        assert!(q.len() <= 4, "{}", q.len());
        q.add_remote(99 << 40, plan.name_hash, 1, t);
        assert!(q.len() <= 4);
        assert!(q.remote_dropped > 0);
        // The next day, the old counts make room.
        let t2 = t + DAY_SECS;
        for k in 20..22u64 {
            let f = q.key(k << 40, plan.name_hash, t2);
            assert_eq!(f, k << 40);
            q.admit(f, plan, 1, t2);
        }
        assert_eq!(
            q.state(21 << 40, plan, t2, 0).items[0].unwrap().remaining,
            1
        );
    }
}
