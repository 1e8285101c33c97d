//! Metrics: what recording costs a request, what a scrape costs a worker (the
//! snapshot, run on the worker) and the admin thread (merge and render), and how much
//! memory an hour of route windows holds.
//!
//! - `record`: one request's record (route slot, counters, bucket, window) as the
//!   metrics stage does it, with the clock read the stage makes;
//! - `snapshot/1000_routes`: one worker's snapshot of 1,000 routes (the worker stalls
//!   for this long per scrape);
//! - `render/2x1000_routes`: merging two workers' snapshots and writing the text;
//! - `route_summary/1h_2_workers`: the route-metrics API's merge of one busy route's
//!   hour on two workers (`route_window` on each, then `route_summary`).
//!
//! It also prints the windows' memory for 1,000 routes after an hour of traffic
//! (log-normal latencies, median 5 ms), and for one route at 50 req/s.
//!
//! ```text
//! cargo bench --bench metrics
//! cargo bench --bench metrics -- --quick
//! ```

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use ringgate::config::Config;
use ringgate::pipeline::local::Local;
use ringgate::ratelimit::{KeySecret, Limiter};
use ringgate::telemetry::access_log::Sink;
use ringgate::telemetry::metrics::{
    render_prometheus, route_summary, Observed, Period, ProcessInfo, Request,
};

const ROUTES: usize = 1000;
const T0: u64 = 1_700_000_000;

fn config(routes: usize) -> Config {
    let mut text = String::from(
        "[log]\naccess_log = \"off\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n[[upstreams]]\nname = \"users\"\nservers = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n",
    );
    for r in 0..routes {
        text.push_str(&format!(
            "[[routes]]\nid = \"svc{r}\"\npath_prefix = \"/svc{r}\"\nupstream = \"users\"\nauth = \"none\"\n"
        ));
    }
    Config::parse(&text, "bench.toml").unwrap()
}

fn worker(id: usize, routes: usize) -> Local {
    let cfg = config(routes);
    let limits = cfg.limits.clone();
    let auth = cfg.auth_keys.clone();
    let limiter = Limiter::new(id, 2, &limits, KeySecret::random());
    Local::new(id, Arc::new(cfg), Sink::Off, limits, limiter, &auth, 2)
}

/// Log-normal-ish latency in microseconds, median 5 ms.
fn latency(rng: &mut fastrand::Rng) -> u64 {
    let z: f64 = (0..6).map(|_| rng.f64()).sum::<f64>() - 3.0;
    (5_000.0 * (1.2 * z).exp()).max(1.0) as u64
}

fn request(route: u32, status: u16, latency_us: u64, now_s: u64) -> Request {
    Request {
        observed: Observed {
            route,
            method: 0,
            bytes_in: 300,
            bytes_out: 2_000,
            rejected_plan: None,
            auth_reason: None,
        },
        status,
        latency_us,
        cache: Some(0),
        now_s,
    }
}

/// `per_route_per_s` requests on every route for each second of `[T0, T0 + secs)`.
fn fill(w: &Local, secs: u64, per_route_per_s: usize, rng: &mut fastrand::Rng) {
    let pl = w.pipeline();
    let slots: Vec<u32> = (0..pl.routes.len())
        .map(|i| w.metrics.route_slot(&pl, i))
        .collect();
    for s in 0..secs {
        for &slot in &slots {
            for _ in 0..per_route_per_s {
                let status = if rng.u8(..100) < 2 { 503 } else { 200 };
                w.metrics
                    .record(&request(slot, status, latency(rng), T0 + s));
            }
        }
    }
}

fn memory_report() {
    let mut rng = fastrand::Rng::with_seed(7);
    let w = worker(0, ROUTES);
    let start = std::time::Instant::now();
    fill(&w, 3600, 2, &mut rng);
    let bytes = w.metrics.window_bytes();
    eprintln!(
        "windows after 1 h, {ROUTES} routes x 2 req/s (7.2 M requests, filled in {:.1} s): {:.1} MiB, {:.1} KiB per route",
        start.elapsed().as_secs_f64(),
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / 1024.0 / ROUTES as f64,
    );
}

fn bench(c: &mut Criterion) {
    memory_report();

    let w = worker(0, ROUTES);
    let pl = w.pipeline();
    let mut rng = fastrand::Rng::with_seed(1);
    let lat: Vec<u64> = (0..4096).map(|_| latency(&mut rng)).collect();
    let mut i = 0usize;
    let started = std::time::Instant::now();
    c.bench_function("record", |b| {
        b.iter(|| {
            i += 1;
            let slot = w.metrics.route_slot(&pl, i % 64);
            // The stage reads the clock once for the duration.
            let us = started.elapsed().as_micros() as u64 & 0xffff;
            let mut r = request(
                slot,
                200,
                lat[i & 4095] + (us & 1),
                T0 + (i / 200_000) as u64,
            );
            r.latency_us = black_box(r.latency_us);
            w.metrics.record(&r)
        })
    });

    // Two workers, each with 1,000 routes that saw traffic for 10 minutes.
    let workers = [worker(0, ROUTES), worker(1, ROUTES)];
    for w in &workers {
        fill(w, 600, 1, &mut rng);
    }
    c.bench_function("snapshot/1000_routes", |b| {
        b.iter(|| black_box(workers[0].metrics.snapshot(&workers[0])))
    });
    let snaps: Vec<_> = workers.iter().map(|w| w.metrics.snapshot(w)).collect();
    let info = ProcessInfo {
        workers: 2,
        version: "bench".into(),
        driver: "io_uring".into(),
        cluster: None,
    };
    let text = render_prometheus(&snaps, &info);
    eprintln!(
        "/metrics for 2 workers x {ROUTES} routes: {} KiB, {} lines",
        text.len() / 1024,
        text.lines().count()
    );
    c.bench_function("render/2x1000_routes", |b| {
        b.iter(|| black_box(render_prometheus(&snaps, &info)))
    });

    // One busy route, a full hour on two workers.
    let busy = [worker(0, 1), worker(1, 1)];
    for w in &busy {
        fill(w, 3600, 50, &mut rng);
    }
    eprintln!(
        "window of one route after 1 h at 50 req/s: {:.1} KiB",
        busy[0].metrics.window_bytes() as f64 / 1024.0
    );
    let now = T0 + 3599;
    c.bench_function("route_window/1h_busy_route", |b| {
        b.iter(|| {
            black_box(
                busy[0]
                    .metrics
                    .route_window(&busy[0].pipeline(), "svc0", Period::H1, now),
            )
        })
    });
    c.bench_function("route_summary/1h_2_workers", |b| {
        b.iter(|| {
            let parts = busy
                .iter()
                .map(|w| {
                    w.metrics
                        .route_window(&w.pipeline(), "svc0", Period::H1, now)
                        .unwrap()
                })
                .collect();
            black_box(route_summary("svc0", parts, Period::H1))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
