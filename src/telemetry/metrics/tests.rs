//! WorkerMetrics against a real worker state (`Local`) and pipeline, built from a
//! configuration file's text: slots by route id across reloads, snapshots, windows.

use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::pipeline::local::Local;
use crate::ratelimit::{KeySecret, Limiter};
use crate::telemetry::access_log::Sink;

fn config(routes: &[&str]) -> Config {
    let mut text = String::from(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[[upstreams]]\nname = \"users\"\nservers = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n",
    );
    for r in routes {
        text.push_str(&format!(
            "[[routes]]\nid = \"{r}\"\npath_prefix = \"/{r}\"\nupstream = \"users\"\nauth = \"none\"\n"
        ));
    }
    Config::parse(&text, "test.toml").unwrap()
}

fn local(cfg: Config) -> Local {
    let limits = cfg.limits.clone();
    let auth = cfg.auth_keys.clone();
    let limiter = Limiter::new(0, 1, &limits, KeySecret::random());
    Local::new(0, Arc::new(cfg), Sink::Off, limits, limiter, &auth, 1)
}

fn request(route: u32, status: u16, now_s: u64) -> Request {
    Request {
        observed: Observed {
            route,
            method: 0,
            bytes_in: 10,
            bytes_out: 20,
            rejected_plan: None,
            auth_reason: None,
        },
        status,
        latency_us: 1_500,
        cache: None,
        now_s,
    }
}

fn requests_of(s: &WorkerSnapshot, id: &str) -> Option<u64> {
    s.routes
        .iter()
        .find(|r| &*r.id == id)
        .map(|r| r.counts.total())
}

#[test]
fn counts_follow_the_route_id_across_a_reload_that_reorders_routes() {
    let w = local(config(&["a", "b"]));
    let m = &w.metrics;
    let pl = w.pipeline();
    let now = 1_700_000_000;
    let a = m.route_slot(&pl, 0);
    let b = m.route_slot(&pl, 1);
    assert_ne!(a, b);
    m.record(&request(a, 200, now));
    m.record(&request(b, 503, now));
    m.record(&request(b, 200, now));
    // Reload: "b" first, "a" gone, "c" new.
    let next = crate::pipeline::stack::Pipeline::build(
        Arc::new(config(&["b", "c"])),
        pl.limits.clone(),
        &w.cfg.auth_keys,
        Some(&pl),
    );
    w.set_pipeline(next);
    let new = w.pipeline();
    assert_eq!(m.route_slot(&new, 0), b, "b keeps its slot");
    // A request still running on the old pipeline ends after the reload.
    m.record(&request(a, 200, now));
    let s = m.snapshot(&w);
    assert_eq!(requests_of(&s, "b"), Some(2));
    assert_eq!(
        requests_of(&s, "c"),
        Some(0),
        "new routes are exported at 0"
    );
    assert_eq!(
        requests_of(&s, "a"),
        None,
        "a retired route is not exported"
    );
    assert!(m.route_window(&new, "a", Period::M1, now).is_none());
    // Requests routed nowhere count under "".
    m.record(&request(NO_ROUTE_SLOT, 404, now));
    assert_eq!(requests_of(&m.snapshot(&w), ""), Some(1));
    // The old pipeline's slots still resolve (by id) for requests routed on it.
    assert_eq!(m.route_slot(&pl, 0), a);
    drop(new);
}

#[test]
fn a_snapshot_has_every_server_with_its_breaker() {
    let w = local(config(&["a"]));
    let m = &w.metrics;
    let pl = w.pipeline();
    let s0 = m.server_slot(&pl, 0, 0);
    let s1 = m.server_slot(&pl, 0, 1);
    m.attempt_done(s0, 2_000);
    m.attempt_failed(s1, &ProxyError::ConnectTimeout);
    m.attempt_failed(s1, &ProxyError::ClientClosed);
    pl.upstreams[0].servers[1].healthy.set(false);
    let snap = m.snapshot(&w);
    assert_eq!(snap.servers.len(), 2);
    let (a, b) = (&snap.servers[0], &snap.servers[1]);
    assert_eq!((&*a.server, a.healthy), ("127.0.0.1:9001", true));
    assert_eq!(a.counts.duration.count(), 1);
    assert_eq!((&*b.server, b.healthy), ("127.0.0.1:9002", false));
    let timeout = names::UPSTREAM_ERROR_KINDS
        .iter()
        .position(|k| *k == "connect_timeout")
        .unwrap();
    assert_eq!(b.counts.errors[timeout], 1);
    assert_eq!(
        b.counts.errors.iter().sum::<u64>(),
        1,
        "the client leaving is not the server's"
    );
    assert_eq!(b.circuit, CircuitState::Closed);
}

#[test]
fn route_windows_merge_across_workers() {
    let now = 1_700_000_000;
    let workers = [local(config(&["a"])), local(config(&["a"]))];
    let mut parts = Vec::new();
    for (i, w) in workers.iter().enumerate() {
        let slot = w.metrics.route_slot(&w.pipeline(), 0);
        for k in 0..10 {
            w.metrics
                .record(&request(slot, if k < i * 3 { 500 } else { 200 }, now));
        }
        parts.push(
            w.metrics
                .route_window(&w.pipeline(), "a", Period::M5, now + 1)
                .unwrap(),
        );
    }
    let s = route_summary("a", parts, Period::M5);
    assert_eq!((s.total_requests, s.failed_requests), (20, 3));
    assert_eq!(s.avg_latency_ms, 1.5);
    assert!((s.p99_latency_ms - 1.5).abs() / 1.5 < 0.01);
}

#[test]
fn nothing_is_recorded_when_metrics_are_off() {
    let mut cfg = config(&["a"]);
    cfg.metrics.enabled = false;
    let w = local(cfg);
    let m = &w.metrics;
    let slot = m.route_slot(&w.pipeline(), 0);
    m.record(&request(slot, 200, 1));
    let s = m.snapshot(&w);
    assert!(s.routes.is_empty());
    assert_eq!(m.window_bytes(), 0);
}

#[test]
fn a_snapshot_renders_and_parses() {
    let w = local(config(&["a"]));
    let m = &w.metrics;
    let slot = m.route_slot(&w.pipeline(), 0);
    m.record(&request(slot, 200, 1_700_000_000));
    let text = render_prometheus(
        &[m.snapshot(&w)],
        &ProcessInfo {
            workers: 1,
            version: "t".into(),
            driver: "epoll".into(),
            cluster: None,
        },
    );
    assert!(text
        .contains("ringgate_requests_total{route=\"a\",method=\"GET\",status_class=\"2xx\"} 1\n"));
    render::tests::check_with_python(&text, &["a"]);
}
