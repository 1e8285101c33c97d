//! Metrics over real sockets, on both drivers: requests of known statuses through two
//! workers, then `GET /metrics` (parsed with a Prometheus text parser) and the
//! route-metrics API must show exactly what was sent; scrapes while traffic flows;
//! `[metrics]` switched off.
//!
//! A request is recorded just after its last byte is written, so a scrape that
//! follows the client's last response may run first on that worker: each test waits
//! (polling, no sleep) until the totals it sent are in, then checks every value.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::tokens::unique;
use common::*;
use serde_json::Value;

fn admin(gw: &Gw) -> SocketAddr {
    gw.gateway().admin_addr().expect("an admin listener")
}

const TOKEN: &str = "metrics-test-token";

/// An admin token variable of this test's own, set before the gateway starts (the
/// route-metrics API needs the token; `/metrics` does not while it is unset).
fn token_env() -> String {
    let name = format!("RG_TEST_METRICS_{}_{}", std::process::id(), unique());
    std::env::set_var(&name, TOKEN);
    name
}

fn get(addr: SocketAddr, path: &str) -> Response {
    let req = Req::get(path).header("Authorization", &format!("Bearer {TOKEN}"));
    Client::connect(addr).request(&req)
}

fn scrape(gw: &Gw) -> prometheus_parse::Scrape {
    let r = get(admin(gw), "/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of the one sample of `metric` with these labels (0 when there is none).
fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value as V;
    let found: Vec<_> = s
        .samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .collect();
    assert!(found.len() <= 1, "{metric} {labels:?}: {found:?}");
    match found.first().map(|x| &x.value) {
        None => 0.0,
        Some(V::Counter(v) | V::Gauge(v) | V::Untyped(v)) => *v,
        Some(V::Histogram(b)) => b.iter().map(|c| c.count).fold(0.0, f64::max),
        Some(other) => panic!("{metric}: {other:?}"),
    }
}

fn requests(s: &prometheus_parse::Scrape, route: &str, class: &str) -> f64 {
    let l = [("route", route), ("method", "GET"), ("status_class", class)];
    value(s, "ringgate_requests_total", &l)
}

/// All of `ringgate_requests_total`.
fn total(s: &prometheus_parse::Scrape) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == "ringgate_requests_total")
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// An origin that answers by path: `/api/ok` 200, `/api/gone` 404, `/api/boom` 500,
/// `/cached` 200 fresh for a minute, anything else 200.
fn origin() -> Origin {
    Origin::start(|r| match r.target.as_str() {
        "/api/gone" => Reply::new(404).body("gone"),
        "/api/boom" => Reply::new(500).body("boom"),
        "/cached" => Reply::ok("cached body").header("Cache-Control", "max-age=60"),
        _ => Reply::ok("ok"),
    })
}

/// Routes: `api` (/api), `cached` (/cached, cached), `limited` (/limited, plan
/// `tiny`: one request a minute), `locked` (/locked, auth required), `down` (/down,
/// a server nothing listens on), and a route whose id needs escaping.
fn config(origin: &Origin, dead: SocketAddr, env: &str, metrics: &str) -> String {
    fill(
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"{env}\"\n{metrics}\n\
             [plans.free]\nrequests_per_minute = 600\n\
             [plans.tiny]\nrequests_per_minute = 1\nburst = 0\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{{origin}}\"]\n\
             [[upstreams]]\nname = \"dead\"\nservers = [\"{{dead}}\"]\nretries = 0\n\
             [[routes]]\nid = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\nauth = \"none\"\n\
             [[routes]]\nid = \"cached\"\npath_prefix = \"/cached\"\nupstream = \"app\"\nauth = \"none\"\ncache = {{}}\n\
             [[routes]]\nid = \"limited\"\npath_prefix = \"/limited\"\nupstream = \"app\"\nauth = \"none\"\nplan = \"tiny\"\n\
             [[routes]]\nid = \"locked\"\npath_prefix = \"/locked\"\nupstream = \"app\"\nauth = \"required\"\n\
             [[routes]]\nid = \"down\"\npath_prefix = \"/down\"\nupstream = \"dead\"\nauth = \"none\"\n\
             [[routes]]\nid = \"we\\\"ird\"\npath_prefix = \"/weird\"\nupstream = \"app\"\nauth = \"none\"\n"
        ),
        &[("origin", origin.addr()), ("dead", dead)],
    )
}

/// What the traffic below sends, by route and status class.
struct Sent {
    api_2xx: usize,
    api_4xx: usize,
    api_5xx: usize,
    limited_429: usize,
    limited_2xx: usize,
    cached: usize,
    unrouted: usize,
    locked: usize,
    down: usize,
    api_bytes_in: usize,
}

fn traffic(gw: &Gw) -> Sent {
    let mut c = gw.client();
    let mut api_bytes_in = 0;
    let raw = |c: &mut Client, path: &str, want: u16| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nX-Test: metrics\r\n\r\n");
        c.send(&req);
        assert_eq!(c.read_response().status, want, "{path}");
        req.len()
    };
    for _ in 0..7 {
        api_bytes_in += raw(&mut c, "/api/ok", 200);
    }
    for _ in 0..3 {
        api_bytes_in += raw(&mut c, "/api/gone", 404);
    }
    for _ in 0..2 {
        api_bytes_in += raw(&mut c, "/api/boom", 500);
    }
    // One connection, so one worker and its cache: a miss, then hits.
    for _ in 0..5 {
        assert_eq!(c.request(&Req::get("/cached")).status, 200);
    }
    let (mut limited_429, mut limited_2xx) = (0, 0);
    for _ in 0..5 {
        match gw.send(&Req::get("/limited")).status {
            429 => limited_429 += 1,
            200 => limited_2xx += 1,
            s => panic!("/limited: {s}"),
        }
    }
    assert!(limited_429 >= 3, "one a minute per worker at most");
    for _ in 0..4 {
        assert_eq!(gw.send(&Req::get("/nowhere")).status, 404);
    }
    for _ in 0..2 {
        assert_eq!(gw.send(&Req::get("/locked")).status, 401);
    }
    for _ in 0..3 {
        assert_eq!(gw.send(&Req::get("/down")).status, 502);
    }
    assert_eq!(gw.send(&Req::get("/weird")).status, 200);
    Sent {
        api_2xx: 7,
        api_4xx: 3,
        api_5xx: 2,
        limited_429,
        limited_2xx,
        cached: 5,
        unrouted: 4,
        locked: 2,
        down: 3,
        api_bytes_in,
    }
}

fn sent_total(s: &Sent) -> usize {
    s.api_2xx
        + s.api_4xx
        + s.api_5xx
        + s.limited_429
        + s.limited_2xx
        + s.cached
        + s.unrouted
        + s.locked
        + s.down
        + 1
}

both_drivers! {
    fn metric_values_match_the_requests_sent(driver) {
        let origin = origin();
        let dead = dead_addr();
        let gw = Gw::start_workers(driver, 2, &config(&origin, dead, &token_env(), ""));
        let sent = traffic(&gw);
        let n = sent_total(&sent) as f64;
        let mut s = scrape(&gw);
        wait_until("every request recorded", || {
            s = scrape(&gw);
            total(&s) == n
        });
        assert_eq!(requests(&s, "api", "2xx"), sent.api_2xx as f64);
        assert_eq!(requests(&s, "api", "4xx"), sent.api_4xx as f64);
        assert_eq!(requests(&s, "api", "5xx"), sent.api_5xx as f64);
        assert_eq!(requests(&s, "cached", "2xx"), sent.cached as f64);
        assert_eq!(requests(&s, "limited", "4xx"), sent.limited_429 as f64);
        assert_eq!(requests(&s, "limited", "2xx"), sent.limited_2xx as f64);
        assert_eq!(requests(&s, "", "4xx"), sent.unrouted as f64, "unrouted under route \"\"");
        assert_eq!(requests(&s, "locked", "4xx"), sent.locked as f64);
        assert_eq!(requests(&s, "down", "5xx"), sent.down as f64);
        assert_eq!(requests(&s, "we\\\"ird", "2xx"), 1.0, "the parser leaves escapes as written");
        let api = [("route", "api")];
        assert_eq!(value(&s, "ringgate_request_duration_seconds", &api), 12.0, "+Inf bucket");
        assert_eq!(value(&s, "ringgate_received_bytes_total", &api), sent.api_bytes_in as f64);
        assert!(value(&s, "ringgate_sent_bytes_total", &api) > 12.0 * 100.0, "heads and bodies");
        let cache = |result| value(&s, "ringgate_cache_requests_total", &[("route", "cached"), ("result", result)]);
        assert_eq!((cache("miss"), cache("hit")), (1.0, 4.0));
        let rej = [("route", "limited"), ("plan", "tiny"), ("kind", "rate")];
        assert_eq!(value(&s, "ringgate_ratelimit_rejections_total", &rej), sent.limited_429 as f64);
        let auth = [("route", "locked"), ("reason", "no_credential")];
        assert_eq!(value(&s, "ringgate_auth_failures_total", &auth), sent.locked as f64);
        let app = origin.addr().to_string();
        let app = [("upstream", "app"), ("server", app.as_str())];
        // Every request that reached the origin: api, the cache's one miss, the
        // limited ones let through, the weird route.
        let upstream = (sent.api_2xx + sent.api_4xx + sent.api_5xx + 1 + sent.limited_2xx + 1) as f64;
        assert_eq!(value(&s, "ringgate_upstream_request_duration_seconds", &app), upstream);
        let dead = dead.to_string();
        let connect = [("upstream", "dead"), ("server", dead.as_str()), ("kind", "connect")];
        assert_eq!(value(&s, "ringgate_upstream_errors_total", &connect), sent.down as f64);
        for w in ["0", "1"] {
            let closed = [app[0], app[1], ("worker", w), ("state", "closed")];
            assert_eq!(value(&s, "ringgate_upstream_circuit_state", &closed), 1.0);
            let healthy = [app[0], app[1], ("worker", w)];
            assert_eq!(value(&s, "ringgate_upstream_healthy", &healthy), 1.0);
        }
        assert!(value(&s, "ringgate_connections_total", &[("transport", "plain")]) >= 15.0);
        assert_eq!(value(&s, "ringgate_connections_total", &[("transport", "tls")]), 0.0);
        assert_eq!(value(&s, "ringgate_workers", &[]), 2.0);
        assert_eq!(value(&s, "ringgate_cache_entries", &[]), 1.0);
        let build = [("version", env!("CARGO_PKG_VERSION"))];
        assert_eq!(value(&s, "ringgate_build_info", &build), 1.0);
    }

    fn the_route_metrics_api_answers_with_the_window_merged(driver) {
        let origin = origin();
        let cfg = config(&origin, dead_addr(), &token_env(), "[metrics]\nlatency_window_s = 900\n");
        let gw = Gw::start_workers(driver, 2, &cfg);
        let sent = traffic(&gw);
        let admin = admin(&gw);
        let mut j = Value::Null;
        wait_until("the api route's requests recorded", || {
            j = get(admin, "/api/v1/metrics/routes/api?period=1m").json();
            j["total_requests"] == 12
        });
        let mut keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, [
            "avg_latency_ms", "cache_hit_rate", "failed_requests", "p95_latency_ms",
            "p99_latency_ms", "period", "rate_limit_hits", "route_id",
            "successful_requests", "total_requests",
        ]);
        assert_eq!(j["route_id"], "api");
        assert_eq!(j["period"], "1m");
        assert_eq!(j["successful_requests"], sent.api_2xx);
        assert_eq!(j["failed_requests"], sent.api_4xx + sent.api_5xx);
        assert_eq!(j["rate_limit_hits"], 0);
        assert_eq!(j["cache_hit_rate"], 0.0);
        let (avg, p95, p99) = (
            j["avg_latency_ms"].as_f64().unwrap(),
            j["p95_latency_ms"].as_f64().unwrap(),
            j["p99_latency_ms"].as_f64().unwrap(),
        );
        assert!(avg > 0.0 && p95 >= avg * 0.5 && p99 >= p95 && p99 < 5_000.0, "{j}");

        let j = get(admin, "/api/v1/metrics/routes/limited?period=15m").json();
        assert_eq!(j["total_requests"], sent.limited_429 + sent.limited_2xx);
        assert_eq!(j["rate_limit_hits"], sent.limited_429);
        assert_eq!(j["failed_requests"], sent.limited_429);
        let j = get(admin, "/api/v1/metrics/routes/cached?period=5m").json();
        assert_eq!(j["cache_hit_rate"], 0.8, "4 hits of 5 lookups: {j}");
        // A route id is percent-decoded from the path.
        let j = get(admin, "/api/v1/metrics/routes/we%22ird").json();
        assert_eq!((j["total_requests"].clone(), j["period"].clone()), (1.into(), "15m".into()), "the longest period by default");

        let r = get(admin, "/api/v1/metrics/routes/nope?period=1m");
        assert_eq!(r.status, 404);
        let e = r.json();
        assert_eq!(e["error"], "not_found");
        assert!(e["message"].as_str().unwrap().contains("nope"));
        assert!(e["request_id"].as_str().is_some_and(|s| !s.is_empty()));
        for (period, needle) in [("2h", "not one of"), ("1h", "latency_window_s = 900")] {
            let r = get(admin, &format!("/api/v1/metrics/routes/api?period={period}"));
            assert_eq!(r.status, 400, "{period}");
            let e = r.json();
            assert_eq!(e["error"], "bad_request");
            assert!(e["message"].as_str().unwrap().contains(needle), "{e}");
        }
    }

    fn scrapes_while_traffic_flows_are_whole_and_never_go_back(driver) {
        let origin = Origin::echo();
        let gw = Gw::start_workers(driver, 2, &simple_config(&origin, "[admin]\nlisten = \"127.0.0.1:0\"\n"));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let addr = gw.addr;
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (stop, done) = (stop.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    while !stop.load(Ordering::Relaxed) {
                        assert_eq!(c.request(&Req::get("/load")).status, 200);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let mut last = 0.0;
        for _ in 0..20 {
            let s = scrape(&gw);
            let now = requests(&s, "all", "2xx");
            assert!(now >= last, "counters never go back: {now} after {last}");
            last = now;
        }
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let sent = done.load(Ordering::Relaxed) as f64;
        assert!(sent > 0.0);
        wait_until("every request recorded", || requests(&scrape(&gw), "all", "2xx") == sent);
    }

    fn metrics_switched_off_record_and_serve_nothing(driver) {
        let origin = Origin::echo();
        let admin_toml = format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"{}\"\n", token_env());
        let off = format!("{admin_toml}[metrics]\nenabled = false\n");
        let gw = Gw::start(driver, &simple_config(&origin, &off));
        assert_eq!(gw.send(&Req::get("/x")).status, 200);
        let r = get(admin(&gw), "/metrics");
        assert_eq!(r.status, 404);
        assert!(r.json()["message"].as_str().unwrap().contains("enabled = true"));
        assert_eq!(get(admin(&gw), "/api/v1/metrics/routes/all").status, 404);

        // prometheus = false: no /metrics, the route metrics still.
        let no_text = format!("{admin_toml}[metrics]\nprometheus = false\n");
        let gw = Gw::start(driver, &simple_config(&origin, &no_text));
        assert_eq!(gw.send(&Req::get("/x")).status, 200);
        assert_eq!(get(admin(&gw), "/metrics").status, 404);
        let mut j = Value::Null;
        wait_until("the request recorded", || {
            j = get(admin(&gw), "/api/v1/metrics/routes/all?period=1m").json();
            j["total_requests"] == 1
        });
    }
}
