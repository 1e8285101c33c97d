//! The per-worker limiter: one GCRA theoretical arrival time (TAT) per (plan, key)
//! fingerprint in a table of hashbrown maps the worker owns ([`super::table`]), the counts admitted since the last
//! gossip round, and the arithmetic of [`Decision`]s. See the module above for the
//! semantics of a plan and the cross-worker bound.

use std::time::{Duration, Instant};

use hashbrown::HashMap;

use super::gossip::{Batch, BatchEntry};
use super::key::{BuildFingerprint, KeySecret};
use super::quota::{unix_now, QuotaState, Quotas};
use super::table::{Table, SHARDS};
use super::{Plan, PlanId, RateLimitConfig, WINDOW};

/// While the key table is full, one shard is swept for room at most this often (every
/// shard once a second); in between, new keys go to the overflow buckets instead of each
/// paying for a sweep.
const FORCED_SWEEP_GAP_NS: u64 = 1_000_000_000 / SHARDS as u64;

/// The outcome of one [`Limiter::check`], and everything the headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'p> {
    pub allowed: bool,
    /// The plan's `requests_per_minute`: `q` of `RateLimit-Policy`, `X-RateLimit-Limit`.
    pub limit: u32,
    /// Requests this worker would admit right now, after this one: at most `burst`
    /// after an admitted request, `burst + 1` for a full bucket, 0 when refused. `r` of
    /// `RateLimit`, `X-RateLimit-Remaining`.
    pub remaining: u32,
    /// Admitted: until the bucket is full again (all `burst + 1` available) if no
    /// further request arrives. Refused: until a request will be admitted (the same
    /// moment as `retry_after`, so the effective window never ends after Retry-After).
    /// `t` of `RateLimit` and `X-RateLimit-Reset`, in seconds rounded up.
    pub reset_after: Duration,
    /// Refused only: until a request will be admitted.
    pub retry_after: Option<Duration>,
    /// The plan's name.
    pub policy: &'p str,
    /// [`WINDOW`]: `w` of `RateLimit-Policy`.
    pub window: Duration,
}

/// What happened inside a limiter, for the worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimiterStats {
    /// Requests of new keys charged to an overflow bucket because the table was full.
    pub overflowed: u64,
    /// Remote counts for unknown keys dropped because the table was full.
    pub remote_dropped: u64,
    /// Remote charges cut at the debt floor (gossip later than the bound assumes).
    pub debt_capped: u64,
    /// Idle keys evicted.
    pub evicted: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    plan: PlanId,
    /// The plan's [`super::name_hash`], which names it across configurations.
    plan_hash: u64,
    count: u32,
}

/// Per-plan constants the limiter needs for remote charges.
#[derive(Debug, Clone, Copy)]
struct PlanParams {
    /// [`super::name_hash`] of the plan's name (a route limit's name holds its route,
    /// rate and burst).
    name_hash: u64,
    emission_ns: u64,
    /// The deepest a remote charge may push a TAT ahead of now: `W × (L + (burst+1)·T)`.
    debt_cap_ns: u64,
    /// The key that new keys share when the table is full.
    overflow: u64,
}

fn plan_params(
    workers: usize,
    cfg: &RateLimitConfig,
    secret: &KeySecret,
    remote: Option<(usize, Duration)>,
) -> Vec<PlanParams> {
    let mut latency_ns = nanos(cfg.sync_interval).saturating_mul(2);
    let mut workers = workers;
    if let Some((buckets, latency)) = remote {
        workers = buckets;
        latency_ns = latency_ns.max(nanos(latency));
    }
    cfg.plans
        .iter()
        .chain(&cfg.route_limits)
        .map(|p| PlanParams {
            name_hash: p.name_hash,
            emission_ns: p.emission_ns,
            debt_cap_ns: (workers.max(1) as u64).saturating_mul(
                latency_ns.saturating_add(p.capacity().saturating_mul(p.emission_ns)),
            ),
            overflow: secret.fingerprint(p.name_hash, b"\0overflow"),
        })
        .collect()
}

/// One worker's buckets. Not `Sync`, never shared: each worker owns one.
pub struct Limiter {
    worker: usize,
    workers: usize,
    epoch: Instant,
    secret: KeySecret,
    /// Fingerprint -> TAT in nanoseconds since `epoch`.
    buckets: Table,
    /// Fingerprint -> admitted since the last [`Limiter::drain_consumed`].
    pending: HashMap<u64, Pending, BuildFingerprint>,
    plans: Vec<PlanParams>,
    max_keys: usize,
    /// When a full table last forced a sweep.
    last_forced_ns: Option<u64>,
    stats: LimiterStats,
    /// The plans' daily and monthly counts ([`super::quota`]).
    quotas: Quotas,
    /// `[cluster]`: the buckets kept in step (all nodes' workers) and their latency,
    /// for the debt floor (see [`Limiter::set_remote`]).
    remote: Option<(usize, Duration)>,
}

impl Limiter {
    /// The limiter of worker `worker` out of `workers`. Every worker must get the same
    /// `secret` (see [`super::Endpoint::secret`]) and exchange every
    /// `cfg.sync_interval`.
    pub fn new(worker: usize, workers: usize, cfg: &RateLimitConfig, secret: KeySecret) -> Limiter {
        Limiter {
            worker,
            workers,
            epoch: Instant::now(),
            plans: plan_params(workers, cfg, &secret, None),
            quotas: Quotas::new(cfg, secret.clone()),
            secret,
            buckets: Table::new(),
            pending: HashMap::default(),
            max_keys: cfg.max_keys_per_worker.max(1),
            last_forced_ns: None,
            stats: LimiterStats::default(),
            remote: None,
        }
    }

    /// `[cluster]`: charges also come from other nodes, `buckets` buckets in all kept
    /// in step with latency up to `latency`; the debt floor becomes
    /// `buckets × (latency + (burst+1)·T)`, so that it does not cut their counts.
    pub fn set_remote(&mut self, cfg: &RateLimitConfig, buckets: usize, latency: Duration) {
        self.remote = Some((buckets.max(self.workers), latency));
        self.plans = plan_params(self.workers, cfg, &self.secret, self.remote);
    }

    /// Take a reloaded configuration: new plan parameters, the buckets kept. A bucket
    /// is named by its plan's name and its key, so every caller keeps what it has used
    /// of a plan that is still there (at that plan's new rate); the buckets of removed
    /// plans expire as idle ones do. Counts other workers sent before they reloaded
    /// and that arrive after this one did are charged by plan number: for one gossip
    /// interval around a reload that reorders plans, they may be charged at another
    /// plan's rate. Routes' own limits are named by route id and limit
    /// ([`super::route`]): a route whose limit did not change keeps its buckets. They
    /// are numbered after the plans, so adding or removing a limited route renumbers
    /// the ones after it, with the same one-interval caveat.
    pub fn reconfigure(&mut self, cfg: &RateLimitConfig) {
        self.plans = plan_params(self.workers, cfg, &self.secret, self.remote);
        self.max_keys = cfg.max_keys_per_worker.max(1);
        self.quotas.reconfigure(cfg);
    }

    /// The quota counts (for a cluster sync, and for tests).
    pub fn quotas(&mut self) -> &mut Quotas {
        &mut self.quotas
    }

    /// [`Limiter::check`] with the plan's quotas at `unix_secs` ([`super::quota`]): a
    /// key over quota is refused without taking a token (the returned decision is the
    /// bucket's [`Limiter::peek`], not allowed and without a `retry_after`, and the
    /// state is `refused`, its [`QuotaState::exceeded`] saying which quota);
    /// otherwise the bucket decides, and only an admitted request is counted.
    pub fn check_quota<'p>(
        &mut self,
        key: &[u8],
        plan: &'p Plan,
        now: Instant,
        unix_secs: u64,
    ) -> (Decision<'p>, QuotaState) {
        if plan.daily_quota == 0 && plan.monthly_quota == 0 {
            return (self.check(key, plan, now), QuotaState::default());
        }
        let fp = self.secret.fingerprint(plan.name_hash, key);
        let fp = self.quotas.key(fp, plan.name_hash, unix_secs);
        let before = self.quotas.state(fp, plan, unix_secs, 0);
        if before.exceeded().is_some() {
            let mut d = self.peek(key, plan, now);
            // Refused for quota: the wait is the quota's, not the bucket's.
            d.allowed = false;
            d.retry_after = None;
            return (
                d,
                QuotaState {
                    refused: true,
                    ..before
                },
            );
        }
        let d = self.check(key, plan, now);
        if !d.allowed {
            return (d, before);
        }
        self.quotas.admit(fp, plan, 1, unix_secs);
        (d, self.quotas.state(fp, plan, unix_secs, 0))
    }

    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.len() == 0
    }

    /// Entries the key table holds without growing (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.buckets.capacity()
    }

    pub fn stats(&self) -> LimiterStats {
        self.stats
    }

    fn ns(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.epoch))
    }

    /// Decide on one request for `key` under `plan` at `now`: admitted requests take one
    /// token (TAT += T) and are recorded for the next gossip round; refused ones change
    /// nothing.
    pub fn check<'p>(&mut self, key: &[u8], plan: &'p Plan, now: Instant) -> Decision<'p> {
        let now_ns = self.ns(now);
        let mut fp = self.secret.fingerprint(plan.name_hash, key);
        if self.buckets.len() >= self.max_keys && !self.buckets.contains(fp) {
            self.make_room(now_ns);
            if self.buckets.len() >= self.max_keys {
                self.stats.overflowed += 1;
                fp = self
                    .plans
                    .get(plan.id.index())
                    .map_or(fp ^ u64::MAX, |p| p.overflow);
            }
        }
        let slot = self.buckets.slot(fp, now_ns);
        let tat = (*slot).max(now_ns);
        let ahead = tat - now_ns;
        if ahead <= plan.tolerance_ns {
            let new_tat = tat + plan.emission_ns;
            *slot = new_tat;
            // Counted for the gossip only when someone drains it: a lone worker
            // without `[cluster]` never does, and the map would keep every key.
            if self.workers > 1 || self.remote.is_some() {
                let p = self.pending.entry(fp).or_insert(Pending {
                    plan: plan.id,
                    plan_hash: plan.name_hash,
                    count: 0,
                });
                p.count = p.count.saturating_add(1);
            }
            let ahead = new_tat - now_ns;
            Decision {
                allowed: true,
                limit: plan.requests_per_minute,
                remaining: remaining(plan, ahead),
                reset_after: Duration::from_nanos(ahead),
                retry_after: None,
                policy: &plan.name,
                window: WINDOW,
            }
        } else {
            let wait = Duration::from_nanos(ahead - plan.tolerance_ns);
            Decision {
                allowed: false,
                limit: plan.requests_per_minute,
                remaining: 0,
                reset_after: wait,
                retry_after: Some(wait),
                policy: &plan.name,
                window: WINDOW,
            }
        }
    }

    /// What `check` would say, without taking a token or creating a bucket.
    pub fn peek<'p>(&self, key: &[u8], plan: &'p Plan, now: Instant) -> Decision<'p> {
        let now_ns = self.ns(now);
        let fp = self.secret.fingerprint(plan.name_hash, key);
        let ahead = self
            .buckets
            .get(fp)
            .map_or(0, |tat| tat.saturating_sub(now_ns));
        let allowed = ahead <= plan.tolerance_ns;
        let wait = Duration::from_nanos(ahead.saturating_sub(plan.tolerance_ns));
        Decision {
            allowed,
            limit: plan.requests_per_minute,
            remaining: remaining(plan, ahead),
            reset_after: if allowed {
                Duration::from_nanos(ahead)
            } else {
                wait
            },
            retry_after: (!allowed).then_some(wait),
            policy: &plan.name,
            window: WINDOW,
        }
    }

    /// The counts admitted since the previous call, to send to the other workers.
    pub fn drain_consumed(&mut self) -> Batch {
        Batch {
            from: self.worker,
            entries: self
                .pending
                .drain()
                .map(|(fingerprint, p)| BatchEntry {
                    fingerprint,
                    plan: p.plan,
                    plan_hash: p.plan_hash,
                    count: p.count,
                })
                .collect(),
        }
    }

    /// Charge another worker's admitted counts to this worker's buckets. This may put a
    /// bucket into debt (TAT beyond now + τ: refused until paid back), never deeper than
    /// the plan's floor `W × (L + (burst+1)·T)`. A plan is known by its name's hash: a
    /// batch sent just before or after a reload (workers take a new configuration on
    /// their own ticks, and adding a route's limit shifts the positions of the others)
    /// charges the plan it was counted for, at this configuration's rate; entries naming
    /// a plan this limiter does not know are ignored. Counts are also charged to the
    /// plans' quotas, except a batch from [`super::SHARE_CHARGE`].
    pub fn apply_remote(&mut self, batch: &Batch, now: Instant) {
        let now_ns = self.ns(now);
        let unix_secs = unix_now();
        let quotas = batch.from != super::SHARE_CHARGE;
        for e in &batch.entries {
            if quotas {
                self.quotas
                    .add_remote(e.fingerprint, e.plan_hash, u64::from(e.count), unix_secs);
            }
            let p = match self.plans.get(e.plan.index()) {
                Some(p) if p.name_hash == e.plan_hash => *p,
                _ => match self.plans.iter().find(|p| p.name_hash == e.plan_hash) {
                    Some(p) => *p,
                    None => continue,
                },
            };
            if self.buckets.len() >= self.max_keys && !self.buckets.contains(e.fingerprint) {
                self.make_room(now_ns);
                if self.buckets.len() >= self.max_keys {
                    self.stats.remote_dropped += 1;
                    continue;
                }
            }
            let slot = self.buckets.slot(e.fingerprint, now_ns);
            let charged = (*slot)
                .max(now_ns)
                .saturating_add(u64::from(e.count).saturating_mul(p.emission_ns));
            let floor = now_ns.saturating_add(p.debt_cap_ns);
            if charged > floor {
                self.stats.debt_capped += 1;
                *slot = floor;
            } else {
                *slot = charged;
            }
        }
    }

    /// Drop every bucket that is full again (TAT <= now): for GCRA a missing key and a
    /// full bucket are the same state, so this loses nothing. Returns how many were
    /// dropped. O(keys), about 5 ms per million: the worker's tick should rather call
    /// [`Limiter::evict_idle_step`].
    pub fn evict_idle(&mut self, now: Instant) -> usize {
        let evicted = self.buckets.sweep_all(self.ns(now));
        self.stats.evicted += evicted as u64;
        evicted
    }

    /// [`Limiter::evict_idle`] for one of the 16 shards of the table, the next in turn.
    /// Called from the worker's 50 ms tick, it visits every key every 0.8 s, pausing the
    /// worker for about 0.3 ms per million keys each time.
    pub fn evict_idle_step(&mut self, now: Instant) -> usize {
        let evicted = self.buckets.sweep_next(self.ns(now));
        self.stats.evicted += evicted as u64;
        self.quotas.sweep_step(unix_now());
        evicted
    }

    /// The table is full and a new key arrived: sweep a shard, unless one was swept for
    /// that reason recently.
    fn make_room(&mut self, now_ns: u64) {
        if self
            .last_forced_ns
            .is_none_or(|last| now_ns.saturating_sub(last) >= FORCED_SWEEP_GAP_NS)
        {
            self.last_forced_ns = Some(now_ns);
            let evicted = self.buckets.sweep_next(now_ns);
            self.stats.evicted += evicted as u64;
        }
    }
}

/// Requests admissible right now when the TAT is `ahead` past now.
fn remaining(plan: &Plan, ahead: u64) -> u32 {
    if ahead > plan.tolerance_ns {
        return 0;
    }
    let n = (plan.tolerance_ns - ahead) / plan.emission_ns + 1;
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The most requests admitted for one key, across `workers` workers, in any closed
/// interval of length `window`, when every admission is charged on every other worker
/// within `latency` (`2 × sync_interval` when each worker exchanges every
/// `sync_interval`):
///
/// `floor(window/T) + (burst+1) + (workers-1) × (floor(latency/T) + (burst+1))`.
///
/// The derivation is in the module documentation.
pub fn admitted_bound(plan: &Plan, workers: usize, latency: Duration, window: Duration) -> u64 {
    let t = plan.emission_ns;
    let b = plan.capacity();
    let others = workers.saturating_sub(1) as u64;
    nanos(window) / t + b + others * (nanos(latency) / t + b)
}

#[cfg(test)]
mod tests {
    use super::super::KeyKind;
    use super::*;

    fn cfg(plans: &[(&str, u32, u32)]) -> RateLimitConfig {
        RateLimitConfig::new(plans, plans[0].0, KeyKind::User, Duration::from_millis(20)).unwrap()
    }

    fn limiter(cfg: &RateLimitConfig) -> (Limiter, Instant) {
        let l = Limiter::new(0, 1, cfg, KeySecret::random());
        let t0 = l.epoch + Duration::from_secs(1);
        (l, t0)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn free_plan_bursts_eleven_then_one_per_second() {
        let cfg = cfg(&[("free", 60, 10)]);
        let plan = &cfg.plans[0];
        assert_eq!(plan.emission_interval(), Duration::from_secs(1));
        assert_eq!(plan.capacity(), 11);
        let (mut l, t0) = limiter(&cfg);
        for i in 0..11 {
            let d = l.check(b"ua", plan, t0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 10 - i);
            assert_eq!(d.reset_after, Duration::from_secs(u64::from(i) + 1));
        }
        let d = l.check(b"ua", plan, t0);
        assert!(!d.allowed);
        assert_eq!(
            (d.remaining, d.retry_after),
            (0, Some(Duration::from_secs(1)))
        );
        assert_eq!(d.reset_after, Duration::from_secs(1));
        // Half a second later: still half a second to wait.
        let d = l.check(b"ua", plan, t0 + ms(500));
        assert_eq!(d.retry_after, Some(ms(500)));
        // Then exactly one per second.
        for s in 1..=30u64 {
            let at = t0 + Duration::from_secs(s);
            assert!(l.check(b"ua", plan, at).allowed, "second {s}");
            assert!(!l.check(b"ua", plan, at).allowed, "second {s}, again");
        }
    }

    #[test]
    fn a_minute_admits_rate_plus_burst() {
        // Hammering every 10 ms for a minute from a full bucket: the closed interval
        // [0, 60 s] admits floor(60/T) + burst + 1 = 71, the half-open one 70.
        for (rpm, burst) in [(60, 10), (600, 100), (6000, 1000), (7, 0), (90, 3)] {
            let cfg = cfg(&[("p", rpm, burst)]);
            let plan = &cfg.plans[0];
            let (mut l, t0) = limiter(&cfg);
            let mut admitted = 0u64;
            let mut last = 0u64;
            for ms in (0..=60_000u64).step_by(10) {
                while l.check(b"k", plan, t0 + Duration::from_millis(ms)).allowed {
                    admitted += 1;
                    last = ms;
                }
            }
            let bound = admitted_bound(plan, 1, Duration::ZERO, WINDOW);
            assert!(admitted <= bound, "{rpm}/{burst}: {admitted} > {bound}");
            // And the limiter is not stingier than the plan: within one T of it.
            assert!(
                admitted + 1 >= bound,
                "{rpm}/{burst}: only {admitted} (last at {last} ms)"
            );
        }
    }

    #[test]
    fn zero_burst_is_strictly_paced() {
        let cfg = cfg(&[("p", 120, 0)]);
        let plan = &cfg.plans[0];
        let (mut l, t0) = limiter(&cfg);
        let d = l.check(b"k", plan, t0);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let d = l.check(b"k", plan, t0 + ms(100));
        assert_eq!(d.retry_after, Some(ms(400)));
        assert!(l.check(b"k", plan, t0 + ms(500)).allowed);
    }

    #[test]
    fn retry_after_for_slow_plans() {
        // 7 per minute: T = 8.571428572 s (rounded up to the nanosecond).
        let cfg = cfg(&[("slow", 7, 0)]);
        let plan = &cfg.plans[0];
        assert_eq!(
            plan.emission_interval(),
            Duration::from_nanos(8_571_428_572)
        );
        let (mut l, t0) = limiter(&cfg);
        assert!(l.check(b"k", plan, t0).allowed);
        let d = l.check(b"k", plan, t0 + Duration::from_secs(2));
        assert_eq!(d.retry_after, Some(Duration::from_nanos(6_571_428_572)));
    }

    #[test]
    fn peek_takes_nothing() {
        let cfg = cfg(&[("free", 60, 10)]);
        let plan = &cfg.plans[0];
        let (mut l, t0) = limiter(&cfg);
        let d = l.peek(b"k", plan, t0);
        assert_eq!(
            (d.allowed, d.remaining, d.reset_after),
            (true, 11, Duration::ZERO)
        );
        assert!(l.is_empty());
        l.check(b"k", plan, t0);
        assert_eq!(l.peek(b"k", plan, t0).remaining, 10);
        assert_eq!(l.peek(b"k", plan, t0).remaining, 10);
    }

    #[test]
    fn plans_and_keys_have_separate_buckets() {
        let cfg = cfg(&[("a", 60, 0), ("b", 60, 0)]);
        let (mut l, t0) = limiter(&cfg);
        assert!(l.check(b"k", &cfg.plans[0], t0).allowed);
        assert!(!l.check(b"k", &cfg.plans[0], t0).allowed);
        assert!(l.check(b"k", &cfg.plans[1], t0).allowed);
        assert!(l.check(b"j", &cfg.plans[0], t0).allowed);
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn idle_buckets_are_evicted_once_full_again() {
        let cfg = cfg(&[("free", 60, 10)]);
        let plan = &cfg.plans[0];
        let (mut l, t0) = limiter(&cfg);
        for i in 0..100u32 {
            l.check(&i.to_be_bytes(), plan, t0);
        }
        for _ in 0..4 {
            l.check(b"busy", plan, t0);
        }
        assert_eq!(l.len(), 101);
        // One token each: full again 1 s later; "busy" took 4 and needs 4 s.
        assert_eq!(l.evict_idle(t0 + ms(999)), 0);
        assert_eq!(l.evict_idle(t0 + ms(1000)), 100);
        assert_eq!(l.len(), 1);
        assert_eq!(l.peek(b"busy", plan, t0 + ms(1000)).remaining, 8);
        assert_eq!(l.evict_idle(t0 + ms(4000)), 1);
        assert!(l.is_empty());
        assert_eq!(l.stats().evicted, 101);
        // An evicted key starts again from a full bucket, exactly as if it had stayed.
        assert_eq!(l.check(b"busy", plan, t0 + ms(4000)).remaining, 10);
    }

    #[test]
    fn full_table_sends_new_keys_to_a_shared_overflow_bucket() {
        let mut cfg = cfg(&[("p", 60, 1)]);
        cfg.max_keys_per_worker = 3;
        let plan = &cfg.plans[0];
        let (mut l, t0) = limiter(&cfg);
        for k in [b"a", b"b", b"c"] {
            assert!(l.check(k, plan, t0).allowed);
        }
        // Full of active keys: new keys share one bucket of capacity 2 (burst 1).
        assert!(l.check(b"d", plan, t0).allowed);
        assert!(l.check(b"e", plan, t0).allowed);
        assert!(!l.check(b"f", plan, t0).allowed);
        assert_eq!(l.stats().overflowed, 3);
        // Known keys keep their own bucket.
        assert!(l.check(b"a", plan, t0).allowed);
        // Once the others are idle again, new keys get their own buckets: a full table
        // sweeps one shard for room at most every 1/16 s, so within a second every idle
        // key has been dropped.
        for step in 0..16 {
            let at = t0 + ms(2500 + 100 * step);
            l.check(format!("g{step}").as_bytes(), plan, at);
        }
        assert!(l.stats().overflowed < 3 + 16, "{:?}", l.stats());
        assert!(l.stats().evicted >= 3, "{:?}", l.stats());
        assert!(l.len() <= 3 + 1);
    }

    #[test]
    fn remote_counts_are_charged_and_floored() {
        let cfg = cfg(&[("free", 60, 10)]);
        let plan = &cfg.plans[0];
        let secret = KeySecret::random();
        let mut a = Limiter::new(0, 2, &cfg, secret.clone());
        let mut b = Limiter::new(1, 2, &cfg, secret);
        let t0 = a.epoch.max(b.epoch) + Duration::from_secs(1);
        for _ in 0..4 {
            assert!(a.check(b"k", plan, t0).allowed);
        }
        let batch = a.drain_consumed();
        assert_eq!(batch.entries.len(), 1);
        assert_eq!((batch.from, batch.entries[0].count), (0, 4));
        assert!(a.drain_consumed().is_empty());
        b.apply_remote(&batch, t0);
        assert_eq!(b.peek(b"k", plan, t0).remaining, 7);
        // Remote charges may go into debt: 15 more -> TAT 19 s ahead, 9 s to wait.
        let more = Batch {
            from: 0,
            entries: vec![BatchEntry {
                count: 15,
                ..batch.entries[0]
            }],
        };
        b.apply_remote(&more, t0);
        let d = b.check(b"k", plan, t0);
        assert_eq!(d.retry_after, Some(Duration::from_secs(9)));
        assert_eq!(b.stats().debt_capped, 0);
        // ... but never deeper than W × (L + (burst+1)·T) = 2 × (40 ms + 11 s) = 22.08 s.
        let huge = Batch {
            from: 0,
            entries: vec![BatchEntry {
                count: u32::MAX,
                ..batch.entries[0]
            }],
        };
        b.apply_remote(&huge, t0);
        assert_eq!(b.stats().debt_capped, 1);
        let d = b.peek(b"k", plan, t0);
        assert_eq!(d.retry_after, Some(Duration::from_millis(22_080 - 10_000)));
        // A batch from a configuration with more plans is ignored, not a panic.
        let alien = Batch {
            from: 0,
            entries: vec![BatchEntry {
                fingerprint: 1,
                plan: PlanId(9),
                plan_hash: 7,
                count: 1,
            }],
        };
        b.apply_remote(&alien, t0);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn a_batch_from_a_configuration_in_another_order_charges_its_own_plan() {
        // Worker a still runs [free, pro]; worker b took a reload that put pro first.
        let before = cfg(&[("free", 60, 10), ("pro", 600, 100)]);
        let after = cfg(&[("pro", 600, 100), ("free", 60, 10)]);
        let secret = KeySecret::random();
        let mut a = Limiter::new(0, 2, &before, secret.clone());
        let mut b = Limiter::new(1, 2, &after, secret);
        let t0 = a.epoch.max(b.epoch) + Duration::from_secs(1);
        for _ in 0..4 {
            assert!(a.check(b"k", &before.plans[0], t0).allowed);
        }
        let batch = a.drain_consumed();
        assert_eq!(batch.entries[0].plan, PlanId(0), "free, in a's order");
        b.apply_remote(&batch, t0);
        // Charged to free at free's rate (4 of 11), not to pro at pro's (4 of 101).
        assert_eq!(b.peek(b"k", &after.plans[1], t0).remaining, 7);
        assert_eq!(b.peek(b"k", &after.plans[0], t0).remaining, 101);
    }

    #[test]
    fn bound_formula() {
        let cfg = cfg(&[("free", 60, 10), ("pro", 600, 100)]);
        let l = Duration::from_millis(40);
        assert_eq!(admitted_bound(&cfg.plans[0], 1, l, WINDOW), 71);
        assert_eq!(admitted_bound(&cfg.plans[0], 4, l, WINDOW), 71 + 3 * 11);
        assert_eq!(admitted_bound(&cfg.plans[1], 2, l, WINDOW), 701 + 101);
    }
}
