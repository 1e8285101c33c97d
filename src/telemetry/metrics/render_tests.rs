use super::*;
use crate::telemetry::metrics::snapshot::{CircuitState, RouteSnapshot, ServerSnapshot};

fn info() -> ProcessInfo {
    ProcessInfo {
        workers: 2,
        version: "0.1.0".into(),
        driver: "io_uring".into(),
        cluster: None,
    }
}

fn route(id: &str, get_2xx: u64, latencies_us: &[u64]) -> RouteSnapshot {
    let mut counts = RouteCounts::default();
    counts.requests[0][1] = get_2xx;
    for &us in latencies_us {
        counts.duration.record(us);
    }
    counts.bytes_in = 100;
    counts.bytes_out = 1000;
    RouteSnapshot {
        id: Arc::from(id),
        counts,
        rejections: vec![(Arc::from("free"), 0, 3)],
    }
}

fn worker(i: usize, routes: Vec<RouteSnapshot>) -> WorkerSnapshot {
    let mut counts = ServerCounts::default();
    counts.duration.record(2_000);
    counts.errors[0] = 1;
    WorkerSnapshot {
        worker: i,
        counters: CounterValues {
            open_plain: 3,
            connections_plain: 10,
            retries: 1,
            ..CounterValues::default()
        },
        routes,
        servers: vec![ServerSnapshot {
            upstream: Arc::from("users"),
            server: Arc::from("127.0.0.1:9001"),
            counts,
            healthy: i == 0,
            circuit: if i == 0 {
                CircuitState::Closed
            } else {
                CircuitState::Open
            },
        }],
        cache: crate::cache::Stats {
            entries: 2,
            bytes: 500,
            evictions: 1,
            ..Default::default()
        },
        mirrors: vec![(Arc::from("shadow"), [5, 1, 2])],
    }
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value as V;
    let found: Vec<_> = s
        .samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:?}");
    match &found[0].value {
        V::Counter(v) | V::Gauge(v) | V::Untyped(v) => *v,
        other => panic!("{metric}: {other:?}"),
    }
}

#[test]
fn workers_are_summed_and_the_text_parses() {
    let snaps = [
        worker(0, vec![route("users", 5, &[300, 700, 2_000])]),
        worker(1, vec![route("users", 2, &[90_000_000])]),
    ];
    let text = render_prometheus(&snaps, &info());
    let s = parse(&text);
    let users = [
        ("route", "users"),
        ("method", "GET"),
        ("status_class", "2xx"),
    ];
    assert_eq!(value(&s, "ringgate_requests_total", &users), 7.0);
    assert_eq!(
        value(&s, "ringgate_received_bytes_total", &[("route", "users")]),
        200.0
    );
    assert_eq!(
        value(&s, "ringgate_sent_bytes_total", &[("route", "users")]),
        2000.0
    );
    let rej = [("route", "users"), ("plan", "free"), ("kind", "rate")];
    assert_eq!(value(&s, "ringgate_ratelimit_rejections_total", &rej), 6.0);
    assert_eq!(
        value(&s, "ringgate_connections_open", &[("transport", "plain")]),
        6.0
    );
    assert_eq!(
        value(&s, "ringgate_connections_total", &[("transport", "plain")]),
        20.0
    );
    assert_eq!(value(&s, "ringgate_cache_stored_bytes", &[]), 1000.0);
    assert_eq!(value(&s, "ringgate_cache_entries", &[]), 4.0);
    assert_eq!(value(&s, "ringgate_cache_evictions_total", &[]), 2.0);
    assert_eq!(value(&s, "ringgate_upstream_retries_total", &[]), 2.0);
    assert_eq!(value(&s, "ringgate_workers", &[]), 2.0);
    let build = [("version", "0.1.0"), ("driver", "io_uring")];
    assert_eq!(value(&s, "ringgate_build_info", &build), 1.0);
    let srv = [("upstream", "users"), ("server", "127.0.0.1:9001")];
    let err = [srv[0], srv[1], ("kind", "connect")];
    assert_eq!(value(&s, "ringgate_upstream_errors_total", &err), 2.0);
    let w1 = [srv[0], srv[1], ("worker", "1")];
    assert_eq!(value(&s, "ringgate_upstream_healthy", &w1), 0.0);
    let open = [srv[0], srv[1], ("worker", "1"), ("state", "open")];
    assert_eq!(value(&s, "ringgate_upstream_circuit_state", &open), 1.0);
    let closed = [srv[0], srv[1], ("worker", "1"), ("state", "closed")];
    assert_eq!(value(&s, "ringgate_upstream_circuit_state", &closed), 0.0);
    for (result, n) in [("ok", 10.0), ("failed", 2.0), ("dropped", 4.0)] {
        let l = [("upstream", "shadow"), ("result", result)];
        assert_eq!(value(&s, "ringgate_mirror_requests_total", &l), n);
    }

    // The duration histogram: cumulative buckets, sum in seconds, count.
    let h = s
        .samples
        .iter()
        .find(|x| x.metric == "ringgate_request_duration_seconds")
        .expect("histogram");
    let prometheus_parse::Value::Histogram(b) = &h.value else {
        panic!("{h:?}");
    };
    let at = |le: f64| b.iter().find(|c| c.less_than == le).unwrap().count;
    assert_eq!(at(0.0005), 1.0, "300 us");
    assert_eq!(at(0.001), 2.0, "and 700 us");
    assert_eq!(at(0.0025), 3.0, "and 2 ms");
    assert_eq!(at(60.0), 3.0, "90 s is over the last bound");
    assert_eq!(at(f64::INFINITY), 4.0);
    assert!(text.contains("ringgate_request_duration_seconds_count{route=\"users\"} 4\n"));
    assert!(text.contains("ringgate_request_duration_seconds_sum{route=\"users\"} 90.003\n"));
    assert!(
        text.contains("# TYPE ringgate_requests_total counter\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
}

#[test]
fn route_ids_are_escaped_as_label_values() {
    let id = "we\"ird\\route\nnext";
    let text = render_prometheus(&[worker(0, vec![route(id, 1, &[10])])], &info());
    assert!(
        text.contains(r#"ringgate_sent_bytes_total{route="we\"ird\\route\nnext"} 1000"#),
        "{text}"
    );
    // Nothing breaks out of its line: every line is a comment or a whole sample.
    for line in text.lines() {
        assert!(
            line.starts_with('#') || line.starts_with("ringgate_"),
            "{line}"
        );
    }
    check_with_python(&text, &[id]);
}

#[test]
fn the_content_type_is_the_text_formats() {
    assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
}

/// The reference parser (Python's `prometheus_client`, Debian's
/// python3-prometheus-client, which `.ci/run` installs): the text parses, every
/// family and its samples, and `routes` come back unescaped as route labels. Where it
/// is not installed the check is skipped, except in CI.
pub(crate) fn check_with_python(text: &str, routes: &[&str]) {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
routes = set()
n = 0
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        n += 1
        if "route" in s.labels:
            routes.add(s.labels["route"])
print(json.dumps({"samples": n, "routes": sorted(routes)}))
"#;
    let python = "/usr/bin/python3";
    let probe = std::process::Command::new(python)
        .args(["-c", "import prometheus_client.parser"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have python3-prometheus-client"
        );
        eprintln!("python3-prometheus-client not installed: reference parser check skipped");
        return;
    }
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the reference parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(got["samples"].as_u64().unwrap() > 10);
    let found: Vec<String> = got["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    for r in routes {
        assert!(found.iter().any(|f| f == r), "{r:?} not in {found:?}");
    }
}
