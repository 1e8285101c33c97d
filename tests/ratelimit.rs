//! Rate limiting end to end, on both I/O drivers: which plan a request is held to (token
//! claim, API key, `default_plan`, a route's forced plan), what a bucket is per (`user`,
//! `tenant`, `api_key`, `ip`, `header:<Name>`: two callers that must share a bucket and
//! one that must not), the 429 and the rate-limit headers, routes that are not limited,
//! and the cross-worker bound with two workers kept in step by gossip (for plans, and
//! for a route's own limit: the rest of those is in `tests/route_limit.rs`). The
//! assertions on headers and 429s are in `common/limits.rs`.
//!
//! The plans refill slowly (one request every 5 to 20 s) so that no refill can happen
//! while a test runs: every count asserted here is exact. Only the cross-worker test
//! uses a fast plan, since it measures admissions over time.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::limits::*;
use common::tokens::*;
use common::*;
use serde_json::{json, Value};

/// API keys in clear. `key_pro` and `key_pro_2` belong to the same user and tenant.
const KEY_PRO: &str = "rl-e2e-key-pro-0001";
const KEY_PRO_2: &str = "rl-e2e-key-pro-0002";
const KEY_PLAIN: &str = "rl-e2e-key-plain-0003";
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// (name, requests_per_minute, burst): a full bucket admits burst + 1.
const FREE: Limit = Limit::plan("free", 6, 1);
const PRO: Limit = Limit::plan("pro", 12, 3);
const BATCH: Limit = Limit::plan("batch", 3, 2);

/// `/req` required, `/opt` optional, `/open` none, `/batch` required with plan batch
/// forced, `/anon-batch` none with plan batch forced; `/dead` (required) leads to an
/// upstream where nothing listens.
const ROUTES: &str = r#"
[[routes]]
id = "required"
path_prefix = "/req"
upstream = "app"
auth = "required"

[[routes]]
id = "optional"
path_prefix = "/opt"
upstream = "app"
auth = "optional"

[[routes]]
id = "open"
path_prefix = "/open"
upstream = "app"
auth = "none"

[[routes]]
id = "batch"
path_prefix = "/batch"
upstream = "app"
auth = "required"
plan = "batch"

[[routes]]
id = "anon-batch"
path_prefix = "/anon-batch"
upstream = "app"
auth = "none"
plan = "batch"

[[routes]]
id = "dead"
path_prefix = "/dead"
upstream = "dead"
auth = "required"
"#;

struct World {
    keys: Keyring,
    origin: Origin,
    gw: Gw,
}

impl World {
    /// `[rate_limit] key = key`, `headers = headers`.
    fn start(driver: IoDriver, key: &str, headers: bool) -> World {
        World::start_with(driver, key, headers, "")
    }

    /// The same, after `top` (e.g. a `[server]` table).
    fn start_with(driver: IoDriver, key: &str, headers: bool, top: &str) -> World {
        let keys = Keyring::new();
        let origin = Origin::start(|_| Reply::ok("ok"));
        let template = format!(
            r#"{top}
[auth.jwt]
leeway_s = 5
{jwt_keys}
[auth.api_keys]
[[auth.api_keys.keys]]
id = "key_pro"
sha256 = "{pro}"
user = "svc"
tenant = "acme"
plan = "pro"
[[auth.api_keys.keys]]
id = "key_pro_2"
sha256 = "{pro2}"
user = "svc"
tenant = "acme"
plan = "pro"
[[auth.api_keys.keys]]
id = "key_plain"
sha256 = "{plain}"
user = "svc-plain"
tenant = "acme"

[rate_limit]
default_plan = "free"
key = "{key}"
sync_interval_ms = 20
headers = {headers}

{free}{pro_plan}{batch}
[[upstreams]]
name = "app"
servers = ["{{origin}}"]
[[upstreams]]
name = "dead"
servers = ["{{dead}}"]
{ROUTES}"#,
            jwt_keys = keys.jwt_keys_toml(),
            pro = api_key_digest(KEY_PRO),
            pro2 = api_key_digest(KEY_PRO_2),
            plain = api_key_digest(KEY_PLAIN),
            free = FREE.plan_toml(),
            pro_plan = PRO.plan_toml(),
            batch = BATCH.plan_toml(),
        );
        let subs = [("origin", origin.addr()), ("dead", dead_addr())];
        let gw = Gw::start(driver, &fill(&template, &subs));
        World { keys, origin, gw }
    }

    /// A token for `sub`, five minutes valid, with `extra` claims (`plan`, `tenant`).
    fn token(&self, sub: &str, extra: Value) -> String {
        let mut claims = json!({"sub": sub, "exp": now() + 300});
        for (k, v) in extra.as_object().expect("claims object") {
            claims[k] = v.clone();
        }
        self.keys.mint(Algorithm::HS256, Some("hs-1"), &claims)
    }

    fn received(&self) -> usize {
        self.origin.requests().len()
    }
}

fn api_key(path: &str, key: &str) -> Req {
    Req::get(path).header("X-API-Key", key)
}

both_drivers! {
    fn every_limited_response_carries_the_headers(driver) {
        let w = World::start(driver, "user", true);
        let mut c = w.gw.client();
        // Refused credentials never reach the limiter (auth comes first).
        for _ in 0..3 {
            let resp = c.request(&bearer("/req", "not-a-token"));
            assert_eq!(resp.status, 401);
            assert_no_limit_headers(&resp);
        }
        let token = w.token("alice", json!({"plan": "pro"}));
        let req = bearer("/req", &token);
        let interval = PRO.interval();
        for k in 1..=PRO.capacity {
            let resp = c.request(&req);
            assert_eq!(resp.status, 200, "{resp:#?}");
            assert_eq!(resp.text(), "ok");
            let (remaining, reset) = assert_limit_headers(&resp, PRO);
            assert_eq!(remaining, PRO.capacity - k, "{}", resp.head);
            // Full again after k emission intervals (less the time that passed).
            let full = k * interval;
            assert!((full - 1..=full).contains(&reset), "request {k}: {}", resp.head);
            assert!(!resp.has("retry-after"), "{}", resp.head);
        }
        let resp = c.request(&req);
        let retry = assert_429(&resp, PRO);
        let (remaining, reset) = assert_limit_headers(&resp, PRO);
        assert_eq!((remaining, reset), (0, retry), "{}", resp.head);
        assert_eq!(w.received(), PRO.capacity as usize);

        // A caller on the default plan.
        let free = bearer("/req", &w.token("bob", json!({})));
        let resp = c.request(&free);
        assert_eq!(resp.status, 200);
        assert_eq!(assert_limit_headers(&resp, FREE), (1, FREE.interval()));
    }

    fn headers_off_leaves_only_retry_after(driver) {
        let w = World::start(driver, "user", false);
        let mut c = w.gw.client();
        let req = bearer("/req", &w.token("alice", json!({})));
        let (admitted, refused) = until_refused(&mut c, &req, 20);
        assert_eq!(admitted.len(), FREE.capacity as usize);
        for resp in &admitted {
            assert_no_limit_headers(resp);
        }
        assert_429(&refused, FREE);
        assert_no_limit_headers(&refused);
        assert_eq!(w.received(), FREE.capacity as usize);
    }

    fn plan_comes_from_route_then_identity_then_default(driver) {
        let w = World::start(driver, "user", true);
        let mut c = w.gw.client();
        // The token's plan claim.
        let pro = bearer("/req", &w.token("a", json!({"plan": "pro"})));
        assert_exhausts(&mut c, &pro, PRO);
        // No plan claim, or one naming no plan: default_plan.
        assert_exhausts(&mut c, &bearer("/req", &w.token("b", json!({}))), FREE);
        let unknown = w.token("c", json!({"plan": "platinum"}));
        assert_exhausts(&mut c, &bearer("/req", &unknown), FREE);
        // The API key's plan; a key without one: default_plan.
        assert_exhausts(&mut c, &api_key("/req", KEY_PRO), PRO);
        assert_exhausts(&mut c, &api_key("/req", KEY_PLAIN), FREE);
        // The route's plan wins over the caller's, in a bucket of its own.
        let d = w.token("d", json!({"plan": "pro"}));
        assert_exhausts(&mut c, &bearer("/batch", &d), BATCH);
        let resp = c.request(&bearer("/req", &d));
        assert_eq!(resp.status, 200);
        assert_eq!(assert_limit_headers(&resp, PRO).0, PRO.capacity - 1);
        let admitted = 2 * PRO.capacity as usize + 3 * FREE.capacity as usize + BATCH.capacity as usize + 1;
        assert_eq!(w.received(), admitted);
    }

    fn key_user_shares_a_bucket_per_user(driver) {
        let w = World::start(driver, "user", true);
        let alice = bearer("/req", &w.token("alice", json!({"tenant": "acme"})));
        assert_exhausts(&mut w.gw.client(), &alice, FREE);
        // Another token of alice's, even of another tenant: her bucket.
        let alice2 = bearer("/req", &w.token("alice", json!({"tenant": "globex"})));
        assert_refused(&mut w.gw.client(), &alice2, FREE);
        // Another user of her tenant: his own.
        let bob = bearer("/req", &w.token("bob", json!({"tenant": "acme"})));
        assert_exhausts(&mut w.gw.client(), &bob, FREE);
    }

    fn key_tenant_shares_a_bucket_per_tenant(driver) {
        let w = World::start(driver, "tenant", true);
        let alice = bearer("/req", &w.token("alice", json!({"tenant": "acme"})));
        assert_exhausts(&mut w.gw.client(), &alice, FREE);
        let bob = bearer("/req", &w.token("bob", json!({"tenant": "acme"})));
        assert_refused(&mut w.gw.client(), &bob, FREE);
        // The API key of tenant acme too (same plan: buckets are per plan and key).
        assert_refused(&mut w.gw.client(), &api_key("/req", KEY_PLAIN), FREE);
        let carol = bearer("/req", &w.token("carol", json!({"tenant": "globex"})));
        assert_exhausts(&mut w.gw.client(), &carol, FREE);
        // No tenant claim: the tenant is the user.
        let dave = bearer("/req", &w.token("dave", json!({})));
        assert_exhausts(&mut w.gw.client(), &dave, FREE);
    }

    fn key_api_key_shares_a_bucket_per_key(driver) {
        let w = World::start(driver, "api_key", true);
        assert_exhausts(&mut w.gw.client(), &api_key("/req", KEY_PRO), PRO);
        // The same key on another connection: its bucket.
        assert_refused(&mut w.gw.client(), &api_key("/req", KEY_PRO), PRO);
        // Another key of the same user and tenant: its own.
        assert_exhausts(&mut w.gw.client(), &api_key("/req", KEY_PRO_2), PRO);
        // A bearer token of that user is keyed by user, not by any key.
        let svc = bearer("/req", &w.token("svc", json!({"plan": "pro", "tenant": "acme"})));
        assert_exhausts(&mut w.gw.client(), &svc, PRO);
    }

    fn key_ip_shares_a_bucket_per_address(driver) {
        let w = World::start(driver, "ip", true);
        let alice = bearer("/req", &w.token("alice", json!({})));
        let bob = bearer("/req", &w.token("bob", json!({})));
        assert_exhausts(&mut w.gw.client(), &alice, FREE);
        assert_refused(&mut w.gw.client(), &bob, FREE);
        assert_exhausts(&mut Client::connect_from(w.gw.addr, OTHER_IP), &bob, FREE);
        let third = Ipv4Addr::new(127, 0, 0, 3);
        assert_admitted(&mut Client::connect_from(w.gw.addr, third), &alice, FREE);
        let r = w.origin.last_request();
        assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.3"));
    }

    fn key_header_shares_a_bucket_per_header_value(driver) {
        let w = World::start(driver, "header:X-Client", true);
        let alice = w.token("alice", json!({}));
        let bob = w.token("bob", json!({}));
        let with = |token: &str, client: &str| bearer("/req", token).header("X-Client", client);
        assert_exhausts(&mut w.gw.client(), &with(&alice, "app-1"), FREE);
        assert_refused(&mut w.gw.client(), &with(&bob, "app-1"), FREE);
        assert_exhausts(&mut w.gw.client(), &with(&alice, "app-2"), FREE);
        // Without the header: the user.
        assert_exhausts(&mut w.gw.client(), &bearer("/req", &alice), FREE);
        assert_admitted(&mut w.gw.client(), &bearer("/req", &bob), FREE);
    }

    fn anonymous_callers_are_limited_by_ip(driver) {
        let w = World::start(driver, "user", true);
        let anonymous = Req::get("/opt");
        assert_exhausts(&mut w.gw.client(), &anonymous, FREE);
        assert_refused(&mut w.gw.client(), &anonymous, FREE);
        assert_exhausts(&mut Client::connect_from(w.gw.addr, OTHER_IP), &anonymous, FREE);
        // A verified caller on the same route and address has a bucket of their own.
        let alice = bearer("/opt", &w.token("alice", json!({})));
        assert_exhausts(&mut w.gw.client(), &alice, FREE);
        assert_eq!(w.received(), 3 * FREE.capacity as usize);
    }

    fn auth_none_routes_are_limited_only_with_a_plan(driver) {
        let w = World::start(driver, "user", true);
        let mut c = w.gw.client();
        let token = w.token("alice", json!({}));
        for i in 0..3 * PRO.capacity as usize {
            let req = if i % 2 == 0 { bearer("/open", &token) } else { Req::get("/open") };
            let resp = c.request(&req);
            assert_eq!(resp.status, 200, "request {i}: {resp:#?}");
            assert_no_limit_headers(&resp);
            assert!(!resp.has("retry-after"), "{}", resp.head);
        }
        // A forced plan limits the route, by IP: credentials are not looked at there.
        assert_exhausts(&mut w.gw.client(), &bearer("/anon-batch", &token), BATCH);
        let other = bearer("/anon-batch", &w.token("bob", json!({})));
        assert_refused(&mut w.gw.client(), &other, BATCH);
        assert_admitted(&mut Client::connect_from(w.gw.addr, OTHER_IP), &other, BATCH);
    }
    fn behind_trusted_proxies_callers_are_limited_by_forwarded_ip(driver) {
        let top = "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n";
        let w = World::start_with(driver, "user", true, top);
        let a = Req::get("/opt").header("X-Forwarded-For", "203.0.113.7");
        // The right-most address that is not a trusted proxy is the caller.
        let b = Req::get("/opt").header("X-Forwarded-For", "203.0.113.7, 198.51.100.9, 127.0.0.5");
        assert_exhausts(&mut w.gw.client(), &a, FREE);
        assert_refused(&mut w.gw.client(), &a, FREE);
        assert_exhausts(&mut w.gw.client(), &b, FREE);
        // Without the header the proxy itself is the caller: a third bucket.
        assert_exhausts(&mut w.gw.client(), &Req::get("/opt"), FREE);
    }

    fn upstream_errors_on_limited_routes_keep_the_headers(driver) {
        let w = World::start(driver, "user", true);
        let req = bearer("/dead", &w.token("alice", json!({})));
        // The request was admitted (it took a token), then the upstream failed.
        let resp = w.gw.send(&req);
        assert_eq!(resp.assert_json_error(502), "bad_gateway");
        assert_eq!(assert_limit_headers(&resp, FREE), (1, FREE.interval()));
        let resp = w.gw.send(&req);
        assert_eq!(resp.assert_json_error(502), "bad_gateway");
        assert_eq!(assert_limit_headers(&resp, FREE).0, 0);
        assert_429(&w.gw.send(&req), FREE);
    }

    fn two_workers_stay_within_the_documented_bound(driver) {
        cross_worker_bound(driver);
    }

    fn gossip_charges_every_admission_once_on_the_other_worker(driver) {
        charged_exactly_once(driver, SLOW);
    }

    /// The same for a route's own limit: its counts travel in the same gossip.
    fn gossip_charges_route_limit_admissions_once_on_the_other_worker(driver) {
        charged_exactly_once(driver, ROUTE_SLOW);
    }
}

/// A gateway started from `template` with `workers` workers and its access log written
/// to `log_path` (Gw forces `access_log = "off"`): the log says which worker answered.
fn start_logged(template: &str, driver: IoDriver, workers: usize, log_path: &str) -> Gateway {
    let text = without_auth(&render_config(template, driver, workers)).replace(
        "access_log = \"off\"",
        &format!("access_log = \"{log_path}\""),
    );
    assert!(text.contains(log_path), "{text}");
    let cfg = Config::parse(&text, "logged.toml")
        .unwrap_or_else(|e| panic!("test config rejected: {e}\n---\n{text}"));
    Gateway::start(cfg).unwrap_or_else(|e| panic!("gateway did not start: {e}"))
}

/// The worker that logged the request for `path` (waits for the worker's next flush).
fn logged_worker(log_path: &str, path: &str) -> u64 {
    let mut worker = None;
    wait_until(&format!("{path} in the access log"), || {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        worker = log.lines().find_map(|line| {
            let entry: Value = serde_json::from_str(line).ok()?;
            (entry["path"] == path).then(|| entry["worker"].as_u64().expect("worker"))
        });
        worker.is_some()
    });
    worker.unwrap()
}

/// Send `req` on `c` until the worker behind `c` reports a bucket charged with exactly
/// every admission so far (`RateLimit` r = capacity - admitted); each poll is itself an
/// admission, counted in `admitted`. Returns the polls sent. Fails after 5 s, which a
/// count charged twice or never always reaches (see [`charged_exactly_once`]).
fn poll_until_charged(c: &mut Client, req: &Req, limit: Limit, admitted: &mut u64) -> u64 {
    let cap = limit.capacity;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut polls = 0;
    loop {
        let resp = c.request(req);
        assert_eq!(resp.status, 200, "{resp:#?}");
        *admitted += 1;
        polls += 1;
        let (remaining, _) = assert_limit_headers(&resp, limit);
        let expected = cap.saturating_sub(*admitted);
        if remaining == expected {
            return polls;
        }
        assert!(
            Instant::now() < deadline,
            "after {polls} polls over 5 s this worker's bucket holds {} charges for {} \
             admissions: {}",
            cap - remaining,
            *admitted,
            if remaining < expected {
                "a count charged more than once"
            } else {
                "a count never charged"
            }
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// 1 a minute, so nothing refills while the test runs; 5000 at once, more than 5 s of
/// polling every 5 ms in both directions, so nothing the test sends is ever refused.
const SLOW: Limit = Limit::plan("slow", 1, 4999);

/// The route "limited"'s own limit in [`charged_exactly_once`]: 2 a minute and 2880 at
/// once (a day's worth, the most a route allows at that rate): the same reasons.
const ROUTE_SLOW: Limit = Limit::route("route:limited", 2, 2880);

/// Exact, whatever the timing: one admission on worker X, then polls on worker Y until
/// Y's bucket holds exactly every admission (its own polls plus X's one). Charged
/// twice, Y's bucket would hold its polls + 2, never polls + 1; never charged, its
/// polls alone: either way the wait fails. Then the same the other way round, with Y's
/// total made odd first, so that twice Y's arrivals can never equal it. Which worker
/// serves a connection is read from the access log, not guessed. (The simulated unit
/// tests in `src/ratelimit/` catch the same faults: see `cross_worker_bound`.)
/// `limit` is the plan `SLOW` (the default plan) or the route's own `ROUTE_SLOW`.
fn charged_exactly_once(driver: IoDriver, limit: Limit) {
    let keys = Keyring::new();
    let origin = Origin::start(|_| Reply::ok("ok"));
    let dir = TempDir::new("gossip-once");
    let log_path = dir.path("access.log");
    let own = match limit.policy.strip_prefix("route:") {
        Some(_) => format!(
            "rate_limit = {{ requests_per_minute = {}, burst = {} }}\n",
            limit.rpm, limit.capacity
        ),
        None => String::new(),
    };
    let template = fill(
        &format!(
            r#"
[auth.jwt]
{jwt_keys}
[rate_limit]
default_plan = "{name}"
key = "user"
sync_interval_ms = 20
headers = true

{plan}
[[upstreams]]
name = "app"
servers = ["{{origin}}"]

[[routes]]
id = "probe"
path_prefix = "/probe/"
upstream = "app"
auth = "none"

[[routes]]
id = "limited"
path_prefix = "/api/"
upstream = "app"
auth = "required"
{own}"#,
            jwt_keys = keys.jwt_keys_toml(),
            name = SLOW.policy,
            plan = SLOW.plan_toml(),
        ),
        &[("origin", origin.addr())],
    );
    let gw = start_logged(&template, driver, 2, &log_path);
    let addr = gw.addrs()[0];

    // One connection on each worker: SO_REUSEPORT spreads connections by their
    // addresses, so open them until both workers have answered one (unlimited route).
    let mut conns: Vec<Client> = Vec::new();
    let mut first_on: BTreeMap<u64, usize> = BTreeMap::new();
    while first_on.len() < 2 {
        assert!(conns.len() < 64, "64 connections, all on one worker");
        let i = conns.len();
        let path = format!("/probe/{i}");
        let mut c = Client::connect(addr);
        assert_eq!(c.request(&Req::get(&path)).status, 200);
        assert!(!c.request(&Req::get(&path)).has("ratelimit"));
        conns.push(c);
        first_on.entry(logged_worker(&log_path, &path)).or_insert(i);
    }
    let (x, y) = (first_on[&0], first_on[&1]);

    let token = keys.mint(
        Algorithm::HS256,
        Some("hs-1"),
        &json!({"sub": "once", "exp": now() + 300}),
    );
    let req = bearer("/api/once", &token);
    let cap = limit.capacity;
    let mut admitted = 0;
    // X admits one and charges it to itself once, at once.
    let resp = conns[x].request(&req);
    assert_eq!(resp.status, 200, "{resp:#?}");
    admitted += 1;
    assert_eq!(assert_limit_headers(&resp, limit).0, cap - admitted);
    // Y is charged X's one admission, exactly once.
    let mut on_y = poll_until_charged(&mut conns[y], &req, limit, &mut admitted);
    if on_y % 2 == 0 {
        assert_eq!(conns[y].request(&req).status, 200);
        admitted += 1;
        on_y += 1;
    }
    // X is charged Y's (odd) number of admissions, exactly once each.
    let on_x = poll_until_charged(&mut conns[x], &req, limit, &mut admitted);
    assert_eq!(admitted, 1 + on_y + on_x);
    let probes = 2 * conns.len() as u64;
    drop(conns);
    gw.shutdown();
    gw.join();
    assert_eq!(origin.requests().len() as u64, admitted + probes);
}

/// One identity hammers a 2-worker gateway over 16 connections (which SO_REUSEPORT
/// spreads over both workers) for 1.5 s. The total admitted must stay within
/// `ratelimit::admitted_bound` and must not fall below what one bucket alone admits in
/// that time (less the refill a lagging charge may cost): without gossip it would be
/// about twice one bucket's allowance, which the upper bound always catches.
///
/// Counts charged twice are not caught here reliably, and cannot be: they admit 26 to
/// 33 in this run against an accepted 31..=42, because how much a lagging charge costs
/// depends on when the timers fire and which worker each request lands on, and a lower
/// bound tight enough to refuse 33 would refuse correct runs on a busy machine. Exact
/// charging is tested instead, deterministically: end to end by
/// `gossip_charges_every_admission_once_on_the_other_worker` (one count, and an odd
/// number of counts, must appear exactly once in the other worker's bucket), and on a
/// simulated clock by `ratelimit::gossip::tests::counts_reach_every_other_worker_once`,
/// `ratelimit::gossip::tests::a_full_inbox_holds_counts_back_without_losing_any` and
/// `ratelimit::tests::bound_is_nearly_reached_and_gossip_is_what_keeps_it` (each fails
/// when the gossip applies counts twice, and when it does not apply them).
fn cross_worker_bound(driver: IoDriver) {
    const RPM: u32 = 1200; // T = 50 ms
    const BURST: u32 = 4;
    const SYNC_MS: u64 = 20;
    const RUN: Duration = Duration::from_millis(1500);
    let keys = Keyring::new();
    let origin = Origin::start(|_| Reply::ok("ok"));
    let dir = TempDir::new("xworker");
    let log_path = dir.path("access.log");
    let template = fill(
        &format!(
            r#"
[auth.jwt]
{jwt_keys}
[rate_limit]
default_plan = "fast"
key = "user"
sync_interval_ms = {SYNC_MS}
headers = true

[plans.fast]
requests_per_minute = {RPM}
burst = {BURST}

[[upstreams]]
name = "app"
servers = ["{{origin}}"]

[[routes]]
id = "required"
path_prefix = "/"
upstream = "app"
auth = "required"
"#,
            jwt_keys = keys.jwt_keys_toml(),
        ),
        &[("origin", origin.addr())],
    );
    // Gw forces `access_log = "off"`; this test reads the log to see which worker
    // answered each request.
    let text = without_auth(&render_config(&template, driver, 2)).replace(
        "access_log = \"off\"",
        &format!("access_log = \"{log_path}\""),
    );
    assert!(text.contains(&log_path), "{text}");
    let cfg = Config::parse(&text, "cross-worker.toml")
        .unwrap_or_else(|e| panic!("test config rejected: {e}\n---\n{text}"));
    let gw = Gateway::start(cfg).unwrap_or_else(|e| panic!("gateway did not start: {e}"));
    let addr = gw.addrs()[0];

    let claims = json!({"sub": "hammer", "exp": now() + 300});
    let token = keys.mint(Algorithm::HS256, Some("hs-1"), &claims);
    let req = bearer("/", &token);
    let mut clients: Vec<Client> = (0..16).map(|_| Client::connect(addr)).collect();
    let (mut admitted, mut refused) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < RUN {
        for c in &mut clients {
            let resp = c.request(&req);
            match resp.status {
                200 => admitted += 1,
                429 => refused += 1,
                _ => panic!("unexpected response: {resp:#?}"),
            }
        }
    }
    let elapsed = started.elapsed();
    drop(clients);
    gw.shutdown();
    gw.join();

    // Who admitted what, from the access log (flushed at shutdown).
    let log = std::fs::read_to_string(&log_path).expect("access log written");
    let mut per_worker: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {line}"));
        let worker = entry["worker"].as_u64().expect("worker is a number");
        let counts = per_worker.entry(worker).or_default();
        match entry["status"].as_u64() {
            Some(200) => counts.0 += 1,
            Some(429) => counts.1 += 1,
            other => panic!("unexpected status {other:?} in {line}"),
        }
    }
    let logged: (u64, u64) = per_worker
        .values()
        .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
    assert_eq!(
        logged,
        (admitted, refused),
        "access log disagrees: {per_worker:?}"
    );
    assert_eq!(origin.requests().len() as u64, admitted);

    let cfg = ringgate::ratelimit::RateLimitConfig::new(
        &[("fast", RPM, BURST)],
        "fast",
        ringgate::ratelimit::KeyKind::User,
        Duration::from_millis(SYNC_MS),
    )
    .unwrap();
    let plan = &cfg.plans[0];
    let t = plan.emission_interval();
    // Each worker exchanges every S, so a count reaches the other within 2S; the margin
    // covers timers firing late on a busy test machine.
    let latency = Duration::from_millis(2 * SYNC_MS + 60);
    let upper = ringgate::ratelimit::admitted_bound(plan, 2, latency, elapsed);
    let one_bucket = ringgate::ratelimit::admitted_bound(plan, 1, Duration::ZERO, elapsed);
    // A charge that arrives late costs at most `latency` of refill, and the last slot of
    // the run may be left unused.
    let lag = (latency.as_nanos() / t.as_nanos()) as u64 + 2;
    let lower = one_bucket - lag;
    eprintln!(
        "cross-worker ({driver:?}): {admitted} admitted, {refused} refused in {elapsed:?}; \
         per worker (admitted, refused): {per_worker:?}; \
         one bucket {one_bucket}, accepted range {lower}..={upper}"
    );
    assert!(
        per_worker.len() == 2 && per_worker.values().all(|c| c.0 > 0),
        "both workers must admit requests: {per_worker:?}"
    );
    assert!(
        admitted <= upper,
        "{admitted} admitted in {elapsed:?}, above the bound {upper}: {per_worker:?}"
    );
    assert!(
        admitted >= lower,
        "{admitted} admitted in {elapsed:?}, below one bucket's {one_bucket} - {lag}"
    );
}
