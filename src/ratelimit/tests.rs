//! The cross-worker bound ([`admitted_bound`]): a deterministic simulation of 2 and 4
//! workers on a simulated clock, with adversarial traffic, checking every window; and
//! real threads hammering one key through real channels.

use std::time::{Duration, Instant};

use super::*;

/// The spec's plans, plus one fast enough that the latency term dominates.
fn cfg(sync: Duration) -> RateLimitConfig {
    RateLimitConfig::new(
        &[
            ("free", 60, 10),
            ("pro", 600, 100),
            ("enterprise", 6000, 1000),
            ("fast", 60_000, 5),
            ("paced", 3000, 0),
        ],
        "free",
        KeyKind::Tenant,
        sync,
    )
    .unwrap()
}

/// Where requests land: `(ms, worker) -> requests sent to that worker in that ms`.
type Traffic = dyn FnMut(u64, usize) -> u32;

struct Run {
    /// Admission times in ms, sorted.
    admitted: Vec<u64>,
    debt_capped: u64,
}

/// `workers` workers on a 1 ms simulated clock for `ms` ms; worker `w` exchanges when
/// `(t + w × sync/workers) % sync == 0`, so the phases are staggered and some pairs see
/// almost the full `2 × sync` of latency. `gossip = false` never exchanges.
fn simulate(
    workers: usize,
    plan: &Plan,
    cfg: &RateLimitConfig,
    ms: u64,
    gossip: bool,
    traffic: &mut Traffic,
) -> Run {
    let sync = cfg.sync_interval.as_millis() as u64;
    let mut eps = Mesh::new(workers).into_endpoints();
    let mut ls: Vec<Limiter> = eps.iter().map(|e| e.limiter(cfg)).collect();
    let t0 = Instant::now() + Duration::from_secs(1);
    let key = bucket_key(
        &cfg.key,
        Some(&Caller {
            user: "alice",
            tenant: Some("acme"),
            api_key_id: None,
        }),
        "192.0.2.1".parse().unwrap(),
        None,
    );
    let mut admitted = Vec::new();
    for t in 0..ms {
        let now = t0 + Duration::from_millis(t);
        for w in 0..workers {
            if gossip && (t + w as u64 * sync / workers as u64) % sync == 0 {
                eps[w].exchange(&mut ls[w], now);
            }
            // A refusal changes nothing, so sending n requests = sending until refused.
            for _ in 0..traffic(t, w) {
                if !ls[w].check(&key, plan, now).allowed {
                    break;
                }
                admitted.push(t);
            }
        }
    }
    Run {
        admitted,
        debt_capped: ls.iter().map(|l| l.stats().debt_capped).sum(),
    }
}

/// The most admissions in any closed interval `[x, x + window]` (ms).
fn max_in_window(sorted: &[u64], window: u64) -> u64 {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] > window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best as u64
}

/// Small deterministic generator for traffic patterns.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn patterns(workers: usize) -> Vec<(&'static str, Box<Traffic>)> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    vec![
        // Every worker, every millisecond, as many as it will take.
        ("hammer", Box::new(|_, _| u32::MAX)),
        // Random bursts on random workers.
        (
            "random",
            Box::new(move |_, _| match rng.next() % 100 {
                0..=96 => 0,
                97 | 98 => 3,
                _ => u32::MAX,
            }),
        ),
        // One worker at a time, moving on every 7 ms: each fresh worker has not yet
        // heard of the last one's admissions.
        (
            "rotate",
            Box::new(move |t, w| {
                if (t / 7) as usize % workers == w {
                    u32::MAX
                } else {
                    0
                }
            }),
        ),
        // Quiet for 30 s, then everyone at once, again and again (full buckets everywhere).
        (
            "pulses",
            Box::new(|t, _| if t % 30_000 < 50 { u32::MAX } else { 0 }),
        ),
    ]
}

/// Runs every plan and traffic pattern for `workers` and checks windows of one sync
/// interval, one second and one minute against the bound.
fn check_bound(workers: usize) {
    let cfg = cfg(Duration::from_millis(20));
    let latency = cfg.sync_interval * 2;
    for plan in &cfg.plans {
        for (name, mut traffic) in patterns(workers) {
            let run = simulate(workers, plan, &cfg, 150_000, true, &mut *traffic);
            assert_eq!(
                run.debt_capped, 0,
                "{} {name}: the floor was reached",
                plan.name
            );
            for window in [20, 1_000, 60_000] {
                let seen = max_in_window(&run.admitted, window);
                let bound = admitted_bound(plan, workers, latency, Duration::from_millis(window));
                eprintln!(
                    "{workers} {:>10} {name:>6} {window:>5} ms: {seen:>5} <= {bound}",
                    plan.name
                );
                assert!(
                    seen <= bound,
                    "{workers} workers, {} {name}, {window} ms: {seen} > bound {bound}",
                    plan.name
                );
            }
            // Not stingy either: hammered for 150 s, at least the sustained rate.
            if name == "hammer" {
                let floor = 150_000 * u64::from(plan.requests_per_minute) / 60_000;
                assert!(
                    run.admitted.len() as u64 >= floor,
                    "{} hammer: too few",
                    plan.name
                );
            }
        }
    }
}

#[test]
fn bound_holds_for_two_simulated_workers() {
    check_bound(2);
}

#[test]
fn bound_holds_for_four_simulated_workers() {
    check_bound(4);
}

#[test]
fn bound_is_nearly_reached_and_gossip_is_what_keeps_it() {
    // Four workers, the free plan, everyone bursting at once then hammering. Over one
    // second the bound is reached (less one: every worker spends its full bucket of 11
    // before hearing of the others, 44 against 1 + 11 + 3 × 11 = 45) ...
    let cfg = cfg(Duration::from_millis(20));
    let plan = &cfg.plans[0];
    let latency = cfg.sync_interval * 2;
    let run = simulate(4, plan, &cfg, 600_000, true, &mut |_, _| u32::MAX);
    let second = max_in_window(&run.admitted, 1_000);
    assert_eq!(admitted_bound(plan, 4, latency, Duration::from_secs(1)), 45);
    assert_eq!(second, 44);
    // ... while over a minute, hammered, those bursts are paid back as debt, so the total
    // stays well under the bound (71 + 3 × 11 = 104), near one bucket's 71.
    let minute = max_in_window(&run.admitted, 60_000);
    assert_eq!(admitted_bound(plan, 4, latency, WINDOW), 104);
    assert!((71..=75).contains(&minute), "{minute}");
    // ... and over ten minutes the overshoot does not grow: it is a one-off, not a rate.
    let ten = run.admitted.len() as u64;
    assert!(ten <= admitted_bound(plan, 4, cfg.sync_interval * 2, WINDOW * 10));
    assert!(ten <= 600 + 11 + 33, "{ten}");
    // Without gossip, every worker has the whole allowance: four times the plan.
    let alone = simulate(4, plan, &cfg, 600_000, false, &mut |_, _| u32::MAX);
    assert!(
        alone.admitted.len() as u64 > 4 * 600,
        "{}",
        alone.admitted.len()
    );
}

#[test]
fn a_slower_sync_loosens_the_bound_as_predicted() {
    // With S = 200 ms the fast plan (1 per ms) may admit up to 400 more per other
    // worker: the simulation stays within that, and does exceed the 20 ms bound.
    let slow = cfg(Duration::from_millis(200));
    let plan = slow.plan(slow.plan_id("fast").unwrap());
    // Both workers hammer from a cold start: each admits at the full rate until the
    // other's first batch arrives, 100-300 ms later.
    let run = simulate(2, plan, &slow, 3_000, true, &mut |_, _| u32::MAX);
    let seen = max_in_window(&run.admitted, 1_000);
    let loose = admitted_bound(plan, 2, slow.sync_interval * 2, Duration::from_secs(1));
    let tight = admitted_bound(plan, 2, Duration::from_millis(40), Duration::from_secs(1));
    eprintln!("S = 200 ms: {seen} in a second; bound {loose}, bound at S = 20 ms {tight}");
    assert!(seen <= loose, "{seen} > {loose}");
    assert!(
        seen > tight,
        "{seen} <= {tight}: the latency term is not exercised"
    );
}

#[test]
fn threads_hammering_one_key_stay_within_bound() {
    use std::sync::{Arc, Barrier};

    const WORKERS: usize = 4;
    const RUN: Duration = Duration::from_secs(1);
    let sync = Duration::from_millis(20);
    let cfg = Arc::new(cfg(sync));
    // 50/s without burst, and 1000/s with a burst of 5: one key under each.
    let plans = [cfg.plan_id("paced").unwrap(), cfg.plan_id("fast").unwrap()];
    let barrier = Arc::new(Barrier::new(WORKERS));
    let handles: Vec<_> = Mesh::new(WORKERS)
        .into_endpoints()
        .into_iter()
        .map(|mut ep| {
            let cfg = Arc::clone(&cfg);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut limiter = ep.limiter(&cfg);
                let mut admitted = [Vec::new(), Vec::new()];
                let (mut max_gap, mut max_exchange) = (Duration::ZERO, Duration::ZERO);
                barrier.wait();
                let start = Instant::now();
                let mut last = start;
                loop {
                    let now = Instant::now();
                    if now - start > RUN {
                        break;
                    }
                    if now - last >= sync {
                        ep.exchange(&mut limiter, now);
                        max_gap = max_gap.max(now - last);
                        max_exchange = max_exchange.max(now.elapsed());
                        last = now;
                    }
                    for (i, id) in plans.iter().enumerate() {
                        if limiter.check(b"tacme", cfg.plan(*id), now).allowed {
                            admitted[i].push(now);
                        }
                    }
                    std::thread::yield_now();
                }
                (admitted, max_gap, max_exchange)
            })
        })
        .collect();
    let mut admitted = [Vec::new(), Vec::new()];
    let (mut gap, mut exchange) = (Duration::ZERO, Duration::ZERO);
    for h in handles {
        let (a, g, x) = h.join().unwrap();
        for (all, mine) in admitted.iter_mut().zip(a) {
            all.extend(mine);
        }
        gap = gap.max(g);
        exchange = exchange.max(x);
    }
    // A request admitted at s is sent at the sender's next round (<= s + gap + exchange)
    // and charged at the receiver's next round after that (<= another gap + exchange).
    let latency = (gap + exchange) * 2;
    for (id, mut times) in plans.into_iter().zip(admitted) {
        let plan = cfg.plan(id);
        times.sort();
        let first = times[0];
        let micros: Vec<u64> = times
            .iter()
            .map(|t| (*t - first).as_micros() as u64)
            .collect();
        for window in [Duration::from_millis(100), RUN] {
            let seen = max_in_window(&micros, window.as_micros() as u64);
            let bound = admitted_bound(plan, WORKERS, latency, window);
            eprintln!(
                "{} {window:?}: {seen} <= {bound} (latency {latency:?})",
                plan.name
            );
            assert!(
                seen <= bound,
                "{} {window:?}: {seen} admitted > bound {bound} (latency {latency:?})",
                plan.name
            );
        }
        let total = micros.len() as u64;
        let alone = admitted_bound(plan, 1, Duration::ZERO, RUN);
        assert!(
            total >= alone / 2,
            "{}: only {total}: no hammering",
            plan.name
        );
        if latency < Duration::from_millis(200) {
            assert!(
                total < 2 * alone,
                "{}: {total}: gossip had no effect",
                plan.name
            );
        }
    }
}

#[test]
fn from_config_reads_the_reference_file() {
    let spec = include_str!("../../../shared/spec/gateway.toml");
    // The reference file's HS256 key reads JWT_SECRET: a placeholder stands in.
    let env = |_: &str| Some(std::ffi::OsString::from("s".repeat(32)));
    let cfg = crate::config::Config::parse_with_env(spec, "gateway.toml", &env).unwrap();
    let rl = RateLimitConfig::from_config(&cfg).unwrap();
    let plans: Vec<(&str, u32, u32)> = rl
        .plans
        .iter()
        .map(|p| (p.name.as_str(), p.requests_per_minute, p.burst))
        .collect();
    assert_eq!(
        plans,
        [
            ("free", 60, 10),
            ("pro", 600, 100),
            ("enterprise", 6000, 1000)
        ]
    );
    assert_eq!(rl.plan(rl.default_plan).name, "free");
    assert_eq!(rl.key, KeyKind::Tenant);
    assert_eq!(rl.sync_interval, Duration::from_millis(20));
    assert!(rl.headers);
    assert_eq!(rl.max_keys_per_worker, DEFAULT_MAX_KEYS);
    // Plan selection: route, else identity, else the default.
    let pro = rl.plan_id("pro");
    let ent = rl.plan_id("enterprise");
    assert_eq!(rl.select(None, None).name, "free");
    assert_eq!(rl.select(None, pro).name, "pro");
    assert_eq!(rl.select(ent, pro).name, "enterprise");
    assert_eq!(rl.plan_id("gold"), None);
}

#[test]
fn typed_config_rejects_what_cannot_work() {
    let s = Duration::from_millis(20);
    let new = |plans: &[(&str, u32, u32)], default: &str, sync| {
        RateLimitConfig::new(plans, default, KeyKind::Ip, sync).map(|_| ())
    };
    assert_eq!(new(&[], "a", s), Err(RateLimitError::NoPlans));
    assert_eq!(
        new(&[("a", 0, 1)], "a", s),
        Err(RateLimitError::ZeroRate("a".into()))
    );
    assert_eq!(
        new(&[("a", 1, u32::MAX)], "a", s),
        Err(RateLimitError::BurstTooLarge("a".into()))
    );
    assert_eq!(
        new(&[("a", 1, 0), ("a", 2, 0)], "a", s),
        Err(RateLimitError::DuplicatePlan("a".into()))
    );
    assert_eq!(
        new(&[("a", 1, 0)], "b", s),
        Err(RateLimitError::UnknownPlan("b".into()))
    );
    assert_eq!(
        new(&[("a", 1, 0)], "a", Duration::ZERO),
        Err(RateLimitError::ZeroSyncInterval)
    );
    assert_eq!(new(&[("a", u32::MAX, u32::MAX)], "a", s), Ok(()));
}

/// A lone worker without `[cluster]` has no one to gossip to and never drains its
/// admitted counts: it must not keep them (one entry per key ever seen, for good).
#[test]
fn a_lone_worker_keeps_no_counts_for_gossip() {
    let cfg = cfg(Duration::from_millis(20));
    let plan = &cfg.plans[0];
    let now = Instant::now();
    let mut alone = Limiter::new(0, 1, &cfg, KeySecret::random());
    let mut paired = Limiter::new(0, 2, &cfg, KeySecret::random());
    for k in 0..1000u32 {
        let key = k.to_be_bytes();
        assert!(alone.check(&key, plan, now).allowed);
        assert!(paired.check(&key, plan, now).allowed);
    }
    assert!(alone.drain_consumed().is_empty());
    assert_eq!(paired.drain_consumed().len(), 1000);
    // With a cluster link (other nodes to tell), a lone worker counts again.
    alone.set_remote(&cfg, 64, Duration::from_millis(300));
    assert!(alone.check(b"k", plan, now).allowed);
    assert_eq!(alone.drain_consumed().len(), 1);
}
