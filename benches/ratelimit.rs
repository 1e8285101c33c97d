//! Rate-limit hot paths: a check on a known key (admitted and refused), a check that
//! inserts a new key, building a key, writing the headers, the stage's whole decision
//! for a plan and for a route's own limit, gossip (charging a 1,000-key batch, a whole
//! exchange round), the idle sweep of a million keys (whole and one shard), the memory
//! a million keys take, measured with a counting global allocator and printed, and
//! what a reload costs each worker with 1,000 routes of their own limits.
//!
//! `cargo bench --bench ratelimit`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;

use ringgate::config::{PathMatch, RouteConfig, RouteRateLimit};
use ringgate::ratelimit::{
    bucket_key, write_headers, Batch, Caller, KeyKind, KeySecret, Limiter, Mesh, RateLimitConfig,
};

/// System allocator that keeps a count of live bytes, for the memory figure.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MILLION: u64 = 1_000_000;

fn cfg() -> RateLimitConfig {
    // "bench": T = 1 µs, so a key checked once per 1,024 µs is always admitted.
    RateLimitConfig::new(
        &[
            ("free", 60, 10),
            ("pro", 600, 100),
            ("bench", 60_000_000, 1000),
        ],
        "free",
        KeyKind::Tenant,
        Duration::from_millis(20),
    )
    .unwrap()
}

fn key(i: u64) -> [u8; 9] {
    let mut k = [b't'; 9];
    k[1..].copy_from_slice(&i.to_be_bytes());
    k
}

fn bench_check(c: &mut Criterion) {
    let cfg = cfg();
    let bench = cfg.plan(cfg.plan_id("bench").unwrap());
    let free = cfg.plan(cfg.default_plan);
    let mut g = c.benchmark_group("check");

    let mut l = Limiter::new(0, 4, &cfg, KeySecret::random());
    let t0 = Instant::now();
    let keys: Vec<[u8; 9]> = (0..1024).map(key).collect();
    let mut i = 0u64;
    g.bench_function("hit_admitted", |b| {
        b.iter(|| {
            i += 1;
            let now = t0 + Duration::from_micros(i);
            let d = l.check(&keys[(i & 1023) as usize], bench, now);
            if i & 0xffff == 0 {
                black_box(l.drain_consumed());
            }
            black_box(d.allowed)
        })
    });

    let mut l = Limiter::new(0, 4, &cfg, KeySecret::random());
    let now = Instant::now();
    while l.check(b"thot", free, now).allowed {}
    g.bench_function("hit_refused", |b| {
        b.iter(|| black_box(l.check(black_box(b"thot"), free, now).allowed))
    });

    // New keys into a growing table (rehashes included), the gossip record drained every
    // 20,000 keys as a worker's round would.
    g.bench_function("new_key_insert", |b| {
        b.iter_custom(|iters| {
            let mut l = Limiter::new(0, 4, &cfg, KeySecret::random());
            let now = Instant::now();
            let start = Instant::now();
            for n in 0..iters {
                black_box(l.check(&key(n), free, now).allowed);
                if n % 20_000 == 0 {
                    black_box(l.drain_consumed());
                }
            }
            start.elapsed()
        })
    });

    let caller = Caller {
        user: "alice",
        tenant: Some("acme-corporation"),
        api_key_id: None,
    };
    let ip = "192.0.2.1".parse().unwrap();
    g.bench_function("bucket_key", |b| {
        b.iter(|| {
            black_box(bucket_key(
                &KeyKind::Tenant,
                Some(black_box(&caller)),
                ip,
                None,
            ))
        })
    });
    let d = l.check(b"tacme", free, t0);
    g.bench_function("write_headers", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            write_headers(&mut out, black_box(&d), false);
            black_box(out.len())
        })
    });
    let mut l = Limiter::new(0, 4, &cfg, KeySecret::random());
    let mut i = 0u64;
    g.bench_function("bucket_key+check+headers", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            i += 1;
            let k = bucket_key(&KeyKind::Tenant, Some(&caller), ip, None);
            let d = l.check(&k, bench, t0 + Duration::from_micros(i * 1024));
            out.clear();
            write_headers(&mut out, &d, false);
            black_box(out.len())
        })
    });
    bench_stage_paths(&mut g, &caller, ip);
    g.finish();
}

/// `n` routes, each limited at 60,000,000 a minute (T = 1 µs, like the "bench" plan)
/// with a burst of 1,000 (the plan's 1,000 above the rate is 1,001), per user.
fn limited_routes(n: usize) -> Vec<RouteConfig> {
    (0..n)
        .map(|i| RouteConfig {
            rate_limit: Some(RouteRateLimit {
                enabled: true,
                requests_per_minute: 60_000_000,
                burst: 1001,
                key: KeyKind::User,
            }),
            ..RouteConfig::new(&format!("r{i}"), PathMatch::Prefix(format!("/r{i}")))
        })
        .collect()
}

/// What the rate-limit stage does per request once auth is done, as in
/// `pipeline/ratelimit.rs`: choose the plan and key kind, build the key, check, write
/// the headers. The plan path resolves the caller's plan claim by name; a route's own
/// limit was resolved when the pipeline was built and brings its own key kind.
fn bench_stage_paths(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    caller: &Caller<'_>,
    ip: std::net::IpAddr,
) {
    let routes = limited_routes(10);
    let cfg = Arc::new(cfg()).with_routes(&routes);
    let own = cfg.plan_of_route(&routes[3]);
    let claim = Some("bench");
    let t0 = Instant::now();
    for (name, route_plan) in [("stage_plan_path", None), ("stage_route_path", own)] {
        let mut l = Limiter::new(0, 4, &cfg, KeySecret::random());
        let mut i = 0u64;
        g.bench_function(name, |b| {
            let mut out = Vec::with_capacity(256);
            b.iter(|| {
                i += 1;
                let plan = match black_box(route_plan) {
                    Some(id) => cfg.plan(id),
                    None => cfg.select(None, black_box(claim).and_then(|p| cfg.plan_id(p))),
                };
                let kind = plan.key.as_ref().unwrap_or(&cfg.key);
                let k = bucket_key(kind, Some(caller), ip, None);
                let d = l.check(&k, plan, t0 + Duration::from_micros(i * 1024));
                out.clear();
                write_headers(&mut out, &d, false);
                black_box(out.len())
            })
        });
    }
}

/// A reload on one worker with 1,000 routes of their own limits: the plans rebuilt
/// from the routes when a limit changed, compared and kept when none did.
fn bench_reload(c: &mut Criterion) {
    let routes = limited_routes(1000);
    let base = Arc::new(cfg());
    let built = base.with_routes(&routes);
    let mut changed = routes.clone();
    changed[500].rate_limit.as_mut().unwrap().burst = 7;
    let mut g = c.benchmark_group("reload");
    g.bench_function("with_routes_1000_unchanged", |b| {
        b.iter(|| black_box(built.with_routes(black_box(&routes))))
    });
    g.bench_function("with_routes_1000_one_changed", |b| {
        b.iter(|| black_box(built.with_routes(black_box(&changed))))
    });
    g.finish();
}

fn bench_gossip(c: &mut Criterion) {
    let cfg = cfg();
    let pro = cfg.plan(cfg.plan_id("pro").unwrap());
    let mut g = c.benchmark_group("gossip");

    // A 1,000-key batch from worker 1, charged on worker 0 which knows those keys.
    let secret = KeySecret::random();
    let mut sender = Limiter::new(1, 2, &cfg, secret.clone());
    let now = Instant::now();
    for n in 0..1000 {
        sender.check(&key(n), pro, now);
        sender.check(&key(n), pro, now);
    }
    let batch: Batch = sender.drain_consumed();
    assert_eq!(batch.len(), 1000);
    let mut receiver = Limiter::new(0, 2, &cfg, secret);
    for n in 0..1000 {
        receiver.check(&key(n), pro, now);
    }
    let mut t = 0u64;
    g.bench_function("apply_remote_1000_keys", |b| {
        b.iter(|| {
            // Move the clock on so the buckets never reach the debt floor.
            t += 1;
            receiver.apply_remote(black_box(&batch), now + Duration::from_secs(t));
        })
    });

    // A whole round on one of 4 workers: drain 1,000 keys, send to 3, charge 3 batches.
    let mut eps = Mesh::new(4).into_endpoints();
    let mut ls: Vec<Limiter> = eps.iter().map(|e| e.limiter(&cfg)).collect();
    let mut t = 0u64;
    g.bench_function("exchange_round_1000_keys_4_workers", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                // Untimed: the three peers admit 1,000 keys each and send them.
                t += 1;
                let now = now + Duration::from_secs(t);
                for w in 1..4 {
                    for n in 0..1000 {
                        ls[w].check(&key(n), pro, now);
                    }
                    eps[w].exchange(&mut ls[w], now);
                }
                for n in 0..1000 {
                    ls[0].check(&key(n), pro, now);
                }
                let start = Instant::now();
                black_box(eps[0].exchange(&mut ls[0], now));
                timed += start.elapsed();
            }
            timed
        })
    });
    g.finish();
}

fn bench_million(c: &mut Criterion) {
    let cfg = cfg();
    let free = cfg.plan(cfg.default_plan);
    let t0 = Instant::now();

    // Memory: live heap bytes of a limiter holding one million keys.
    let before = LIVE.load(Ordering::Relaxed);
    let mut l = Limiter::new(0, 4, &cfg, KeySecret::random());
    for n in 0..MILLION {
        l.check(&key(n), free, t0);
        if n % 20_000 == 0 {
            drop(l.drain_consumed());
        }
    }
    drop(l.drain_consumed());
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    // hashbrown keeps 1/8 of its slots free: slots = capacity × 8/7; 17 bytes each.
    let slots = l.capacity() / 7 * 8;
    println!(
        "ratelimit memory: {} keys: {:.1} MiB live heap = {:.1} bytes per key \
         (table: {} slots x 17 B = {:.1} B/key)",
        l.len(),
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / l.len() as f64,
        slots,
        (slots * 17) as f64 / l.len() as f64,
    );

    // The idle sweep the tick runs: a million keys, none idle (the worst case).
    let mut g = c.benchmark_group("sweep");
    g.sample_size(10);
    g.bench_function("evict_idle_1m_keys_none_idle", |b| {
        b.iter(|| black_box(l.evict_idle(t0)))
    });
    g.bench_function("evict_idle_step_1m_keys_none_idle", |b| {
        b.iter(|| black_box(l.evict_idle_step(t0)))
    });
    g.finish();
    assert_eq!(l.len() as u64, MILLION);
}

criterion_group!(
    benches,
    bench_check,
    bench_reload,
    bench_gossip,
    bench_million
);
criterion_main!(benches);
