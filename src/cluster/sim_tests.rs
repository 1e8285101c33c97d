//! The N nodes × W workers bound (`crate::ratelimit`, "Across nodes") on a simulated
//! clock: each worker's admissions reach its node's other workers within `2 S` and the
//! other nodes' workers within `L_c`, the latency `[cluster]` gives; every window of the
//! run stays within [`admitted_bound`] for `N × W` buckets and `L_c`. Without the
//! cross-node charges it does not (so the check can fail).

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
