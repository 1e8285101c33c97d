//! `[cluster]`: what it costs a request and what it costs a round, without Redis.
//!
//! * `request`: a worker's rate-limit check (`Limiter::check`, and `check_quota` for a
//!   plan with a daily quota) on 256 keys in turn, with and without a cluster link
//!   attached to its gossip endpoint: the request path is the same code, so the two
//!   should not differ;
//! * `worker_round`: one gossip round of a node's only worker with the link attached
//!   (`Endpoint::exchange`: drain the admitted counts, hand them to the sync thread),
//!   after 1,000 and 10,000 keys were admitted; it runs every
//!   `rate_limit.sync_interval_ms` (20 ms) whatever the request rate;
//! * `sync_round`: the sync thread's part of a round, every `cluster.sync_interval_ms`
//!   (100 ms): the workers' counts merged and the pipeline written (`build`), against the
//!   same pipeline written with the client's `redis::Pipeline` as the thread did before
//!   (`build_with_redis_pipeline`: a formatted key and a `Cmd` per command, `INCRBY` and
//!   `PEXPIRE` for every key every round), and the replies taken (`apply`).
//!
//! `cargo bench --bench cluster`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use ringgate::cluster::{bench, ClusterConfig, OnRedisError};
use ringgate::ratelimit::{Batch, BatchEntry, KeyKind, Limiter, Mesh, RateLimitConfig};

fn cfg() -> RateLimitConfig {
    // "bench": T = 1 µs, so a key checked once per 256 µs is always admitted.
    let mut cfg = RateLimitConfig::new(
        &[("bench", 60_000_000, 1000), ("quota", 60_000_000, 1000)],
        "bench",
        KeyKind::ApiKey,
        Duration::from_millis(20),
    )
    .unwrap();
    cfg.plans[1].daily_quota = 1 << 40;
    cfg
}

fn cluster_cfg() -> Arc<ClusterConfig> {
    Arc::new(ClusterConfig::new(
        "redis://127.0.0.1:1/0".into(),
        "bench-node".into(),
        "bench".into(),
        Duration::from_millis(100),
        OnRedisError::Local,
    ))
}

fn key(i: u64) -> [u8; 9] {
    let mut k = [b'k'; 9];
    k[1..].copy_from_slice(&i.to_be_bytes());
    k
}

/// One worker's limiter, as the runtime builds it, with or without a link.
fn limiter(cfg: &RateLimitConfig, linked: bool) -> Limiter {
    let mut ep = Mesh::new(1).into_endpoints().pop().unwrap();
    if linked {
        ep.attach_cluster(bench::link(&cluster_cfg()).0);
    }
    ep.limiter(cfg)
}

fn bench_request(c: &mut Criterion) {
    let cfg = cfg();
    let keys: Vec<[u8; 9]> = (0..256).map(key).collect();
    let t0 = Instant::now();
    let mut g = c.benchmark_group("request");
    for (plan, name) in [(&cfg.plans[0], "check"), (&cfg.plans[1], "check_quota")] {
        for linked in [false, true] {
            let mut l = limiter(&cfg, linked);
            let mut i = 0u64;
            let id = BenchmarkId::new(name, if linked { "cluster" } else { "plain" });
            g.bench_function(id, |b| {
                b.iter(|| {
                    i += 1;
                    let now = t0 + Duration::from_micros(i);
                    let k = &keys[(i & 255) as usize];
                    let allowed = if plan.daily_quota > 0 {
                        l.check_quota(k, plan, now, 1_796_582_400).0.allowed
                    } else {
                        l.check(k, plan, now).allowed
                    };
                    // A worker's round drains the record every 20 ms.
                    if i & 0x3fff == 0 {
                        black_box(l.drain_consumed());
                    }
                    black_box(allowed)
                })
            });
        }
    }
    g.finish();
}

fn bench_worker_round(c: &mut Criterion) {
    let cfg = cfg();
    let plan = &cfg.plans[0];
    let mut g = c.benchmark_group("worker_round");
    for n in [1_000u64, 10_000] {
        let mut ep = Mesh::new(1).into_endpoints().pop().unwrap();
        let (link, sync_end) = bench::link(&cluster_cfg());
        ep.attach_cluster(link);
        let mut l = ep.limiter(&cfg);
        let now = Instant::now();
        let mut t = 0u64;
        g.bench_function(BenchmarkId::new("exchange_with_link", n), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: the worker admits n keys; the sync thread takes the batch.
                    t += 1;
                    let now = now + Duration::from_secs(t);
                    for k in 0..n {
                        l.check(&key(k), plan, now);
                    }
                    let start = Instant::now();
                    black_box(ep.exchange(&mut l, now));
                    timed += start.elapsed();
                    while let Ok(b) = sync_end.try_recv() {
                        assert_eq!(b.len() as u64, n);
                    }
                }
                timed
            })
        });
    }
    g.finish();
}

/// The round as the sync thread wrote it before, with the client's pipeline.
fn build_with_redis_pipeline(prefix: &str, pending: &[BatchEntry], now_ms: u64) -> Vec<u8> {
    let window_ms = 1000;
    let cur = now_ms / window_ms;
    let ttl_ms = window_ms * 3;
    let hb_ms = 1000;
    let mut pipe = redis::pipe();
    let mut order = Vec::with_capacity(pending.len());
    for e in pending {
        let k = format!(
            "{prefix}rl:{:016x}:{:016x}:{cur}",
            e.plan_hash, e.fingerprint
        );
        pipe.cmd("INCRBY").arg(&k).arg(e.count);
        pipe.cmd("PEXPIRE").arg(&k).arg(ttl_ms).ignore();
        order.push((e.fingerprint, e.plan, e.plan_hash, cur, e.count));
    }
    let nodes = format!("{prefix}nodes");
    pipe.cmd("ZADD")
        .arg(&nodes)
        .arg(now_ms)
        .arg("bench-node")
        .ignore();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(&nodes)
        .arg("-inf")
        .arg(now_ms - hb_ms)
        .ignore();
    pipe.cmd("PEXPIRE").arg(&nodes).arg(hb_ms * 2).ignore();
    pipe.cmd("ZCARD").arg(&nodes);
    black_box(order);
    pipe.get_packed_pipeline()
}

fn bench_sync_round(c: &mut Criterion) {
    let cfg = cfg();
    let plan = &cfg.plans[0];
    let mut g = c.benchmark_group("sync_round");
    let now_ms = 1_796_582_400_000;
    for n in [1_000u64, 10_000] {
        // The counts one worker sends in a round: every key once.
        let mut l = limiter(&cfg, true);
        let now = Instant::now();
        for k in 0..n {
            l.check(&key(k), plan, now);
        }
        let fresh: Batch = l.drain_consumed();
        // Steady state: every key followed, its counter's expiry set in this window.
        let mut round = bench::Round::new(cluster_cfg());
        let (_, replies) = round.build(&fresh.entries, now_ms);
        let ones = vec![redis::Value::Int(1); replies];
        round.apply(&ones);
        let (bytes, replies) = round.build(&fresh.entries, now_ms + 100);
        assert_eq!(replies as u64, n + 4);
        let old = build_with_redis_pipeline("ringgate:{bench}:", &fresh.entries, now_ms);
        println!(
            "sync round, {n} keys: {bytes} bytes in {replies} commands; \
             with redis::Pipeline as before: {} bytes in {} commands",
            old.len(),
            2 * n + 4
        );
        g.bench_function(BenchmarkId::new("build", n), |b| {
            b.iter(|| black_box(round.build(black_box(&fresh.entries), now_ms + 100)))
        });
        g.bench_function(BenchmarkId::new("build_with_redis_pipeline", n), |b| {
            b.iter(|| {
                black_box(build_with_redis_pipeline(
                    "ringgate:{bench}:",
                    black_box(&fresh.entries),
                    now_ms,
                ))
            })
        });
        let values = vec![redis::Value::Int(1); replies];
        g.bench_function(BenchmarkId::new("apply", n), |b| {
            b.iter(|| black_box(round.apply(black_box(&values))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_request, bench_worker_round, bench_sync_round);
criterion_main!(benches);
