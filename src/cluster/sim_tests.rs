//! The N nodes × W workers bound (`crate::ratelimit`, "Across nodes") on a simulated
//! clock: each worker's admissions reach its node's other workers within `2 S` and the
//! other nodes' workers within `L_c`, the latency `[cluster]` gives; every window of the
//! run stays within [`admitted_bound`] for `N × W` buckets and `L_c`. Without the
//! cross-node charges it does not (so the check can fail). Quotas likewise, with the
//! counter in Redis and a node restarting: the period's admissions stay within
//! `Q + (N×W − 1 + W) × (floor(L_c/T) + burst + 1)`; without the counter the
//! restarted node starts the quota over.

use std::time::{Duration, Instant};

use crate::ratelimit::{admitted_bound, Batch, KeyKind, KeySecret, Limiter, RateLimitConfig};

const NODES: usize = 3;
const WORKERS: usize = 2;
const S: u64 = 20;
/// `2 S + 2 C` with `C = 100 ms` (Redis round trips folded in).
const L_C: u64 = 2 * S + 2 * 100;

type Traffic<'a> = &'a dyn Fn(u64, usize) -> u32;

fn max_in_window(sorted: &[u64], window: u64) -> u64 {
    let (mut best, mut lo) = (0, 0);
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] > window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best as u64
}

/// Admission times (ms) for `ms` ms of `traffic(t, bucket)` requests per ms.
#[allow(clippy::needless_range_loop)] // `w` indexes the limiters and names the sender
fn simulate(cross_node: bool, ms: u64, traffic: Traffic) -> Vec<u64> {
    let cfg = RateLimitConfig::new(
        &[("fast", 6000, 5)],
        "fast",
        KeyKind::User,
        Duration::from_millis(S),
    )
    .unwrap();
    let plan = &cfg.plans[0];
    let secret = KeySecret::keyed([7; 16]);
    let n = NODES * WORKERS;
    let mut ls: Vec<Limiter> = (0..n)
        .map(|i| {
            let mut l = Limiter::new(i % WORKERS, WORKERS, &cfg, secret.clone());
            l.set_remote(&cfg, 64 * WORKERS, Duration::from_millis(L_C));
            l
        })
        .collect();
    // (deliver at ms, to bucket, batch)
    let mut queue: Vec<(u64, usize, Batch)> = Vec::new();
    let t0 = Instant::now() + Duration::from_secs(1);
    let mut admitted = Vec::new();
    for t in 0..ms {
        let now = t0 + Duration::from_millis(t);
        let mut i = 0;
        while i < queue.len() {
            if queue[i].0 <= t {
                let (_, to, b) = queue.swap_remove(i);
                ls[to].apply_remote(&b, now);
            } else {
                i += 1;
            }
        }
        for w in 0..n {
            // Staggered rounds, as in `ratelimit::tests`.
            if (t + w as u64 * S / n as u64) % S == 0 {
                let own = ls[w].drain_consumed();
                if !own.is_empty() {
                    for to in (0..n).filter(|&to| to != w) {
                        let same_node = to / WORKERS == w / WORKERS;
                        // Drained up to S after admission: arrival within 2 S (same
                        // node) or L_c (another node).
                        let delay = if same_node { S } else { L_C - S };
                        if same_node || cross_node {
                            queue.push((t + delay, to, own.clone()));
                        }
                    }
                }
            }
            for _ in 0..traffic(t, w) {
                if !ls[w].check(b"ualice", plan, now).allowed {
                    break;
                }
                admitted.push(t);
            }
        }
    }
    admitted
}

fn bound(window_ms: u64) -> u64 {
    let cfg = RateLimitConfig::new(
        &[("fast", 6000, 5)],
        "fast",
        KeyKind::User,
        Duration::from_millis(S),
    )
    .unwrap();
    admitted_bound(
        &cfg.plans[0],
        NODES * WORKERS,
        Duration::from_millis(L_C),
        Duration::from_millis(window_ms),
    )
}

#[test]
fn n_nodes_of_w_workers_stay_within_the_bound() {
    let patterns: [(&str, Traffic); 3] = [
        ("everyone always", &|_, _| 1000),
        ("bursts every 500 ms", &|t, _| {
            if t % 500 < 5 {
                1000
            } else {
                0
            }
        }),
        ("one node, then another", &|t, w| {
            u32::from((t / 700) as usize % NODES == w / WORKERS) * 1000
        }),
    ];
    for (name, traffic) in patterns {
        let run = simulate(true, 6000, traffic);
        for window in [100, 1000, 5000] {
            let got = max_in_window(&run, window);
            let b = bound(window);
            assert!(got <= b, "{name}: {got} admitted in {window} ms, bound {b}");
        }
    }
    // Without the other nodes' counts, each node admits a whole allowance.
    let run = simulate(false, 6000, &|_, _| 1000);
    let got = max_in_window(&run, 5000);
    assert!(got > bound(5000), "{got} without cross-node charges");
}

/// Quotas on the same simulated cluster, with the Redis counter: every worker's
/// drained admissions are added to it within `C` of the drain (the node's next round),
/// and the total comes back to that node's workers `S` later (their next round), as
/// [`super::Update::apply`] raises them. Node 1 restarts at `restart_at` (its limiters
/// new and empty). Every bucket asks all the time. Returns the requests admitted: in
/// all, and after the restart.
#[allow(clippy::needless_range_loop)] // `w` indexes the limiters and names the sender
fn simulate_quota(quota: u64, redis: bool, restart_at: u64) -> (u64, u64) {
    use crate::ratelimit::quota::unix_now;
    use crate::ratelimit::Period;
    const C: u64 = 100;
    let mut cfg = RateLimitConfig::new(
        &[("fast", 6000, 5)],
        "fast",
        KeyKind::User,
        Duration::from_millis(S),
    )
    .unwrap();
    cfg.plans[0].daily_quota = quota;
    let plan = cfg.plans[0].clone();
    let secret = KeySecret::keyed([7; 16]);
    let fp = secret.fingerprint(plan.name_hash, b"ualice");
    let n = NODES * WORKERS;
    let fresh = |i: usize| {
        let mut l = Limiter::new(i % WORKERS, WORKERS, &cfg, secret.clone());
        l.set_remote(&cfg, 64 * WORKERS, Duration::from_millis(L_C));
        l
    };
    let mut ls: Vec<Limiter> = (0..n).map(fresh).collect();
    // Charges: (deliver at ms, to bucket, batch); Redis: (add at ms, node, count) and
    // totals (deliver at ms, to node, total).
    let mut charges: Vec<(u64, usize, Batch)> = Vec::new();
    let mut adds: Vec<(u64, usize, u64)> = Vec::new();
    let mut totals: Vec<(u64, usize, u64)> = Vec::new();
    let mut in_redis = 0;
    let unix = unix_now();
    let t0 = Instant::now() + Duration::from_secs(1);
    let (mut admitted, mut before) = (0, 0);
    // Long enough for the restarted node's buckets (100/s) to spend a whole quota.
    for t in 0..restart_at + 5000 {
        let now = t0 + Duration::from_millis(t);
        if t == restart_at {
            before = admitted;
            for (w, l) in ls.iter_mut().enumerate().skip(WORKERS).take(WORKERS) {
                *l = fresh(w);
            }
            // What it had not pushed is lost with it.
            adds.retain(|&(_, node, _)| node != 1);
        }
        charges.retain(|(at, to, b)| {
            if *at > t {
                return true;
            }
            ls[*to].apply_remote(b, now);
            false
        });
        adds.retain(|&(at, node, count)| {
            if at > t {
                return true;
            }
            in_redis += count;
            totals.push((t + S, node, in_redis));
            false
        });
        totals.retain(|&(at, node, total)| {
            if at > t {
                return true;
            }
            for l in &mut ls[node * WORKERS..(node + 1) * WORKERS] {
                l.quotas()
                    .raise_to(fp, plan.name_hash, Period::Day, total, unix);
            }
            false
        });
        for w in 0..n {
            if (t + w as u64 * S / n as u64) % S == 0 {
                let own = ls[w].drain_consumed();
                if !own.is_empty() {
                    if redis {
                        let count = own.entries.iter().map(|e| u64::from(e.count)).sum();
                        adds.push((t + C, w / WORKERS, count));
                    }
                    for to in (0..n).filter(|&to| to != w) {
                        let delay = if to / WORKERS == w / WORKERS {
                            S
                        } else {
                            L_C - S
                        };
                        charges.push((t + delay, to, own.clone()));
                    }
                }
            }
            while ls[w].check_quota(b"ualice", &plan, now, unix).0.allowed {
                admitted += 1;
            }
        }
    }
    (admitted, admitted - before)
}

#[test]
fn a_quota_holds_across_nodes_and_a_restart_with_the_redis_counts() {
    let quota = 300;
    // Per bucket not yet told: floor(L_c/T) + burst + 1 = 24 + 5 + 1.
    let slack = L_C / 10 + 5 + 1;
    let n = (NODES * WORKERS) as u64;
    // The cross-worker bound, plus the restarted node's buckets (new, knowing
    // nothing until the reply to their first push).
    let bound = quota + (n - 1) * slack + WORKERS as u64 * slack;
    let (got, after) = simulate_quota(quota, true, 4000);
    assert!(got <= bound, "{got} admitted, bound {bound}");
    assert!(got >= quota, "{got} admitted: less than the quota");
    assert!(
        after <= WORKERS as u64 * slack,
        "{after} admitted after the restart"
    );
    // Without the counts in Redis the restarted node starts the quota over (it
    // hears of nobody else's admissions: they are all refused by then).
    let (got, after) = simulate_quota(quota, false, 4000);
    assert!(
        after >= quota / 2,
        "{got} admitted without Redis, {after} after the restart"
    );
}
