use super::*;

fn ok(latency_us: u64) -> Sample {
    Sample {
        status: 200,
        latency_us,
        rate_limited: false,
        cache: CacheLook::None,
    }
}

/// Exact value at rank floor(q (n - 1)) of sorted `v`, the rank the sketch reports.
fn exact(v: &[u64], q: f64) -> f64 {
    v[(q * (v.len() - 1) as f64) as usize] as f64
}

fn summary(windows: &mut [&mut Window], now: u64, p: Period) -> RouteSummary {
    let parts = windows
        .iter_mut()
        .map(|w| RouteWindow {
            route_id: "r".into(),
            period: p,
            parts: w.parts(now, p),
        })
        .collect();
    route_summary("r", parts, p)
}

/// Log-normal-ish latencies (median ~5 ms, a long tail to seconds) from a seeded
/// generator, spread over `secs` seconds from `t0`.
fn latencies(rng: &mut fastrand::Rng, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            // Sum of uniforms ~ normal; exp gives the long right tail.
            let z: f64 = (0..6).map(|_| rng.f64()).sum::<f64>() - 3.0;
            (5_000.0 * (1.2 * z).exp()).max(1.0) as u64
        })
        .collect()
}

#[test]
fn p95_and_p99_are_within_one_percent_of_the_exact_values_merged_across_workers_and_slots() {
    for seed in [1, 2, 3, 42] {
        let mut rng = fastrand::Rng::with_seed(seed);
        let t0 = 1_700_000_000;
        let mut a = Window::new(3600, t0);
        let mut b = Window::new(3600, t0);
        let mut all = Vec::new();
        // 40 minutes of traffic on two workers: live slots, packed 10 s slots and
        // packed minutes all take part in the hour.
        for i in 0..2400u64 {
            for (k, lat) in latencies(&mut rng, 20).into_iter().enumerate() {
                let w = if k % 3 == 0 { &mut a } else { &mut b };
                w.record(t0 + i, &ok(lat));
                all.push(lat);
            }
        }
        let now = t0 + 2399;
        all.sort_unstable();
        let s = summary(&mut [&mut a, &mut b], now, Period::H1);
        assert_eq!(s.total_requests, all.len() as u64);
        for (q, got) in [(0.95, s.p95_latency_ms), (0.99, s.p99_latency_ms)] {
            let want = exact(&all, q) / 1000.0;
            let err = (got - want).abs() / want;
            assert!(err < 0.01, "seed {seed} q {q}: {got} ms vs exact {want} ms");
        }
        let avg = all.iter().sum::<u64>() as f64 / all.len() as f64 / 1000.0;
        assert!(
            (s.avg_latency_ms - avg).abs() < 0.001,
            "the average is exact"
        );
    }
}

#[test]
fn windows_roll_with_the_clock() {
    let t0 = 1_700_000_000 - 1_700_000_000 % 60; // a minute boundary
    let mut w = Window::new(3600, t0);
    w.record(t0 + 1, &ok(1000));
    w.record(t0 + 2, &ok(3000));
    let count = |w: &mut Window, now, p| summary(&mut [w], now, p).total_requests;
    assert_eq!(count(&mut w, t0 + 5, Period::M1), 2, "the live slot counts");
    // 1m covers the last 60 to 70 s: the slot [t0, t0+10) is in until t0+70.
    assert_eq!(count(&mut w, t0 + 69, Period::M1), 2);
    assert_eq!(count(&mut w, t0 + 70, Period::M1), 0);
    assert_eq!(count(&mut w, t0 + 70, Period::M5), 2, "kept in its minute");
    // 5m covers the last 5 to 6 minutes: minute [t0, t0+60) is in until t0+360.
    assert_eq!(count(&mut w, t0 + 359, Period::M5), 2);
    assert_eq!(count(&mut w, t0 + 360, Period::M5), 0);
    assert_eq!(count(&mut w, t0 + 360, Period::M15), 2);
    assert_eq!(count(&mut w, t0 + 3659, Period::H1), 2);
    assert_eq!(count(&mut w, t0 + 3660, Period::H1), 0);
    assert!(w.past_minutes.is_empty(), "dropped after the hour");
    assert!(w.past_fine.is_empty());
}

#[test]
fn a_query_right_after_a_minute_boundary_sees_the_minute_before() {
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;
    let mut w = Window::new(3600, t0);
    for s in 0..60 {
        w.record(t0 + s, &ok(100 + s));
    }
    // Still in the live minute, then packed: the count does not jump.
    assert_eq!(
        summary(&mut [&mut w], t0 + 59, Period::M5).total_requests,
        60
    );
    assert_eq!(
        summary(&mut [&mut w], t0 + 60, Period::M5).total_requests,
        60
    );
    assert_eq!(
        summary(&mut [&mut w], t0 + 60, Period::M1).total_requests,
        60
    );
    w.record(t0 + 61, &ok(7));
    let s = summary(&mut [&mut w], t0 + 61, Period::M15);
    assert_eq!(s.total_requests, 61);
}

#[test]
fn counts_statuses_limits_and_cache_exactly() {
    let t0 = 1_700_000_000;
    let mut a = Window::new(3600, t0);
    let mut b = Window::new(3600, t0);
    let sample = |status, rate_limited, cache| Sample {
        status,
        latency_us: 2_000,
        rate_limited,
        cache,
    };
    for _ in 0..7 {
        a.record(t0, &sample(200, false, CacheLook::Hit));
    }
    for _ in 0..3 {
        b.record(t0 + 12, &sample(200, false, CacheLook::Miss));
    }
    b.record(t0 + 13, &sample(429, true, CacheLook::None));
    b.record(t0 + 14, &sample(502, false, CacheLook::None));
    a.record(t0 + 15, &sample(0, false, CacheLook::None));
    a.record(t0 + 16, &sample(304, false, CacheLook::Hit));
    let s = summary(&mut [&mut a, &mut b], t0 + 20, Period::M1);
    assert_eq!(
        (
            s.total_requests,
            s.successful_requests,
            s.failed_requests,
            s.rate_limit_hits
        ),
        (14, 11, 3, 1)
    );
    assert_eq!(s.cache_hit_rate, 0.7273, "8 hits of 11 lookups");
    assert_eq!(s.avg_latency_ms, 2.0);
    let json = serde_json::to_value(&s).unwrap();
    let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "avg_latency_ms",
            "cache_hit_rate",
            "failed_requests",
            "p95_latency_ms",
            "p99_latency_ms",
            "period",
            "rate_limit_hits",
            "route_id",
            "successful_requests",
            "total_requests"
        ]
    );
}

#[test]
fn an_empty_window_says_zero() {
    let s = route_summary("r", Vec::new(), Period::M5);
    assert_eq!(s.total_requests, 0);
    assert_eq!(s.p99_latency_ms, 0.0);
    assert_eq!(s.cache_hit_rate, 0.0);
    assert_eq!(s.period, "5m");
}

#[test]
fn periods_parse_up_to_the_window() {
    assert_eq!(Period::parse("15m", 3600), Ok(Period::M15));
    assert_eq!(
        Period::parse("1h", 900).unwrap_err().to_string(),
        "period 1h is longer than metrics.latency_window_s = 900"
    );
    assert!(matches!(
        Period::parse("2h", 3600),
        Err(PeriodError::Unknown(_))
    ));
    assert_eq!(minutes_kept(3600), 60);
    assert_eq!(minutes_kept(1000), 15);
    assert_eq!(minutes_kept(60), 0);
}

#[test]
fn a_short_window_keeps_no_minutes() {
    let t0 = 1_700_000_000;
    let mut w = Window::new(60, t0);
    for s in 0..600 {
        w.record(t0 + s, &ok(500));
    }
    assert!(w.past_minutes.is_empty());
    assert!(w.past_fine.len() <= FINE_KEPT as usize);
    assert_eq!(
        summary(&mut [&mut w], t0 + 599, Period::M1).total_requests,
        70
    );
}
