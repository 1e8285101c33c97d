//! Quotas end to end, on both I/O drivers: a plan's `daily_quota` held across two
//! workers within the documented bound, then 429 with `Retry-After` until UTC midnight
//! and the quota in `RateLimit-Policy`; callers counted apart; a plan without a quota
//! unchanged; `monthly_quota` with `Retry-After` until the first of next month; a
//! request the bucket refuses costs no quota; the keys' validation. Callers are
//! anonymous (routes with `auth = "none"` and a forced plan), so keyed by IP.
//!
//! The day and month arithmetic and the rollover itself are tested on an injected clock
//! in `src/ratelimit/quota.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use ringgate::ratelimit::quota::{civil_from_days, days_from_civil};

const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SYNC_MS: u64 = 20;

/// `daily`: the cross-worker plan (T = 10 ms, 5 at once, 20 a day); `small`: 3 a day
/// with a bucket that never limits; `monthly`: 3 a month; `plain`: no quota; `paced`:
/// one a second, 3 a day.
fn template() -> String {
    format!(
        r#"
[rate_limit]
default_plan = "plain"
key = "ip"
sync_interval_ms = {SYNC_MS}
headers = true

[plans.daily]
requests_per_minute = 6000
burst = 4
daily_quota = 20

[plans.small]
requests_per_minute = 6000
burst = 1000
daily_quota = 3

[plans.monthly]
requests_per_minute = 6000
burst = 1000
monthly_quota = 3

[plans.plain]
requests_per_minute = 6000
burst = 1000
daily_quota = 0

[plans.paced]
requests_per_minute = 60
burst = 0
daily_quota = 3

[[upstreams]]
name = "app"
servers = ["{{origin}}"]

[[routes]]
id = "daily"
path_prefix = "/daily/"
upstream = "app"
auth = "none"
plan = "daily"

[[routes]]
id = "small"
path_prefix = "/small/"
upstream = "app"
auth = "none"
plan = "small"

[[routes]]
id = "monthly"
path_prefix = "/monthly/"
upstream = "app"
auth = "none"
plan = "monthly"

[[routes]]
id = "plain"
path_prefix = "/plain/"
upstream = "app"
auth = "none"
plan = "plain"

[[routes]]
id = "paced"
path_prefix = "/paced/"
upstream = "app"
auth = "none"
plan = "paced"
"#
    )
}

fn start(driver: IoDriver, workers: usize) -> (Origin, Gw) {
    let origin = Origin::start(|_| Reply::ok("ok"));
    let gw = Gw::start_workers(
        driver,
        workers,
        &fill(&template(), &[("origin", origin.addr())]),
    );
    (origin, gw)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Seconds from `t` to the next 00:00 UTC.
fn to_midnight(t: u64) -> u64 {
    86_400 - t % 86_400
}

/// Seconds from `t` to the first of next month, 00:00 UTC, and the current month's
/// length in seconds.
fn to_next_month(t: u64) -> (u64, u64) {
    let (y, m, _) = civil_from_days(t / 86_400);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let start = days_from_civil(y, m, 1) * 86_400;
    let end = days_from_civil(ny, nm, 1) * 86_400;
    (end - t, end - start)
}

/// A 429 for exceeding `period`'s quota of `limit`: the JSON error, `Retry-After`
/// within a second of `expected(now)` and the same in `RateLimit`'s `t`, and the
/// quota's item in `RateLimit-Policy` with window `w`.
#[track_caller]
fn assert_over_quota(resp: &Response, period: &str, limit: u64, expected: u64, w: u64) {
    assert_eq!(resp.status, 429, "{resp:#?}");
    let body = resp.json();
    assert_eq!(body["error"], "too_many_requests", "{body}");
    assert_eq!(
        body["message"],
        format!("{period} quota of {limit} requests exceeded")
    );
    assert!(
        body["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    let retry: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        retry.abs_diff(expected) <= 1,
        "Retry-After {retry}, expected {expected} (the {period} period's end)"
    );
    let policy = resp.header("ratelimit-policy").expect("RateLimit-Policy");
    assert!(
        policy.contains(&format!("\"{period}\";q={limit};w={w}")),
        "{policy}"
    );
    assert_eq!(
        resp.header("ratelimit"),
        Some(format!("\"{period}\";r=0;t={retry}").as_str())
    );
}

both_drivers! {
    fn daily_quota_holds_across_two_workers(driver) {
        daily_across_workers(driver)
    }

    fn callers_have_separate_quotas_and_a_plan_without_one_is_unchanged(driver) {
        let (origin, gw) = start(driver, 1);
        for from in [Ipv4Addr::LOCALHOST, OTHER_IP] {
            let mut c = Client::connect_from(gw.addr, from);
            for left in (0..3).rev() {
                let resp = c.request(&Req::get("/small/x"));
                assert_eq!(resp.status, 200, "{resp:#?}");
                assert_eq!(
                    resp.header("ratelimit-policy"),
                    Some("\"small\";q=6000;w=60, \"daily\";q=3;w=86400")
                );
                // The quota is tighter than the bucket (1001 at once): it is shown.
                let t = to_midnight(unix_now());
                let shown = resp.header("ratelimit").unwrap().to_owned();
                let prefix = format!("\"daily\";r={left};t=");
                let secs: u64 = shown
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{shown}"))
                    .parse()
                    .unwrap();
                assert!(secs.abs_diff(t) <= 1, "{shown} vs {t}");
                assert_eq!(resp.header("x-ratelimit-limit"), Some("3"));
            }
            let now = unix_now();
            assert_over_quota(
                &c.request(&Req::get("/small/x")),
                "daily",
                3,
                to_midnight(now),
                86_400,
            );
        }
        assert_eq!(origin.requests().len(), 6);
        // No quota: 50 requests admitted, headers as before quotas.
        let mut c = gw.client();
        for _ in 0..50 {
            let resp = c.request(&Req::get("/plain/x"));
            assert_eq!(resp.status, 200, "{resp:#?}");
            assert_eq!(resp.header("ratelimit-policy"), Some("\"plain\";q=6000;w=60"));
            assert!(resp.header("ratelimit").unwrap().starts_with("\"plain\";r="));
        }
    }

    fn monthly_quota_lasts_until_the_first_of_next_month(driver) {
        let (origin, gw) = start(driver, 1);
        let mut c = gw.client();
        let (_, w) = to_next_month(unix_now());
        for _ in 0..3 {
            let resp = c.request(&Req::get("/monthly/x"));
            assert_eq!(resp.status, 200, "{resp:#?}");
            assert_eq!(
                resp.header("ratelimit-policy"),
                Some(format!("\"monthly\";q=6000;w=60, \"monthly\";q=3;w={w}").as_str())
            );
        }
        let now = unix_now();
        let (left, w) = to_next_month(now);
        let resp = c.request(&Req::get("/monthly/x"));
        assert_over_quota(&resp, "monthly", 3, left, w);
        // No daily item for a plan with only a monthly quota.
        assert!(!resp.header("ratelimit-policy").unwrap().contains("\"daily\""));
        assert_eq!(origin.requests().len(), 3);
    }

    fn a_request_the_bucket_refuses_costs_no_quota(driver) {
        // One a second, none at once above it, 3 a day: the six the bucket refuses in
        // between cost no quota, so the third admission is still admitted.
        let (origin, gw) = start(driver, 1);
        let mut c = gw.client();
        let mut wait = 0;
        for i in 0..3 {
            // Pacing, as Retry-After says (not waiting for readiness).
            std::thread::sleep(Duration::from_secs(wait));
            let resp = c.request(&Req::get("/paced/x"));
            assert_eq!(resp.status, 200, "admission {i}: {resp:#?}");
            if i == 2 {
                break;
            }
            for _ in 0..3 {
                let refused = c.request(&Req::get("/paced/x"));
                assert_eq!(refused.status, 429, "{refused:#?}");
                assert_eq!(refused.json()["message"], "rate limit of plan \"paced\" exceeded");
                wait = refused.header("retry-after").unwrap().parse().unwrap();
            }
        }
        let now = unix_now();
        assert_over_quota(
            &c.request(&Req::get("/paced/x")),
            "daily",
            3,
            to_midnight(now),
            86_400,
        );
        assert_eq!(origin.requests().len(), 3);
    }
}

/// 16 connections (spread over both workers by SO_REUSEPORT, which the access log
/// confirms) send round after round
/// until the first refusal for quota, then until every connection is refused for quota
/// (every worker has heard of the others). Admitted: at least the quota (no worker
/// refuses before its count, a subset of the total, reaches it) and at most
/// `Q + (W-1) × (floor(L/T) + burst + 1)` (`src/ratelimit/quota.rs`), with
/// `L` = 2 × sync plus a margin for late timers, as in `tests/ratelimit.rs`.
fn daily_across_workers(driver: IoDriver) {
    const Q: u64 = 20;
    let origin = Origin::start(|_| Reply::ok("ok"));
    let dir = common::tls::TempDir::new("quota-xworker");
    let log_path = dir.path("access.log").to_string_lossy().into_owned();
    // Gw forces `access_log = "off"`; the log says which worker answered.
    let text = without_auth(&render_config(
        &fill(&template(), &[("origin", origin.addr())]),
        driver,
        2,
    ))
    .replace(
        "access_log = \"off\"",
        &format!("access_log = \"{log_path}\""),
    );
    assert!(text.contains(&log_path), "{text}");
    let cfg = Config::parse(&text, "quota.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let gw = Gateway::start(cfg).unwrap_or_else(|e| panic!("gateway did not start: {e}"));
    let addr = gw.addrs()[0];
    let latency = Duration::from_millis(2 * SYNC_MS + 60);
    let t = Duration::from_millis(10);
    let bound = Q + (latency.as_nanos() / t.as_nanos()) as u64 + 5;
    let mut clients: Vec<Client> = (0..16).map(|_| Client::connect(addr)).collect();
    let mut admitted = 0u64;
    let mut over: BTreeSet<usize> = BTreeSet::new();
    let mut last_refusal = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while over.len() < clients.len() {
        assert!(
            Instant::now() < deadline,
            "{admitted} admitted, not all refused"
        );
        for (i, c) in clients.iter_mut().enumerate() {
            if over.contains(&i) {
                continue;
            }
            let resp = c.request(&Req::get("/daily/x"));
            match resp.status {
                200 => admitted += 1,
                429 if resp.json()["message"] == "daily quota of 20 requests exceeded" => {
                    assert!(admitted >= Q, "refused for quota after {admitted}");
                    over.insert(i);
                    last_refusal = Some((resp, unix_now()));
                }
                429 => {}
                _ => panic!("{resp:#?}"),
            }
        }
        // Pacing so the bucket (one per 10 ms) is not what refuses.
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(clients);
    gw.shutdown();
    gw.join();
    // Both workers must have admitted some (else this tests one worker's count).
    let log = std::fs::read_to_string(&log_path).expect("access log written");
    let mut per_worker: BTreeMap<u64, u64> = BTreeMap::new();
    for line in log.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
        if entry["status"] == 200 {
            *per_worker
                .entry(entry["worker"].as_u64().expect("worker"))
                .or_default() += 1;
        }
    }
    eprintln!(
        "daily quota {Q} on 2 workers ({driver:?}): {admitted} admitted {per_worker:?}, \
         bound {bound}"
    );
    assert_eq!(per_worker.values().sum::<u64>(), admitted, "{per_worker:?}");
    assert_eq!(
        per_worker.len(),
        2,
        "one worker admitted all: {per_worker:?}"
    );
    assert!(
        (Q..=bound).contains(&admitted),
        "{admitted} admitted, bound {bound}"
    );
    assert_eq!(origin.requests().len() as u64, admitted);
    let (resp, now) = last_refusal.unwrap();
    assert_over_quota(&resp, "daily", Q, to_midnight(now), 86_400);
}

/// Every quota key, rejected with its key and line.
#[test]
fn quota_keys_are_validated() {
    let base = "[server]\nlisten = [\"127.0.0.1:0\"]\n[plans.free]\nrequests_per_minute = 60\n";
    let tail = "[[upstreams]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n\
                [[routes]]\nid = \"r\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    for (key, value, needle) in [
        (
            "daily_quota",
            "1099511627776",
            "must be at most 1099511627775",
        ),
        (
            "monthly_quota",
            "1099511627776",
            "must be at most 1099511627775",
        ),
        ("daily_quota", "-1", ""),
        ("monthly_quota", "\"100\"", ""),
    ] {
        let text = format!("{base}{key} = {value}\n{tail}");
        let e = Config::parse(&text, "bad.toml")
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert_eq!(e.line(), Some(5), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(key) || needle.is_empty(), "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }
    // Accepted: 0 (none) and the largest.
    let text = format!("{base}daily_quota = 0\nmonthly_quota = 1099511627775\n{tail}");
    let cfg = Config::parse(&text, "ok.toml").unwrap_or_else(|e| panic!("{e}"));
    let plan = &cfg.limits.plans[0];
    assert_eq!(
        (plan.daily_quota, plan.monthly_quota),
        (0, 1_099_511_627_775)
    );
}
