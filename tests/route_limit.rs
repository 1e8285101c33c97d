//! A route's own `rate_limit = { enabled, requests_per_minute, burst, key_by }`, end to
//! end on both I/O drivers: a route limited at N a minute with burst B admits exactly B
//! then answers 429 with the headers of policy `route:ID`; it replaces the caller's plan
//! on that route and leaves their plan (and every other route) alone; `key_by` `user`
//! against `ip`; anonymous callers by IP; `enabled = false` is the plan; a reload that
//! keeps the limit keeps the bucket, one that changes it starts a fresh one.
//!
//! Every limit refills slowly (one request every 10 to 15 s), so the counts are exact.
//! The route limit's counts crossing workers by gossip are tested in `tests/ratelimit.rs`
//! (`gossip_charges_route_limit_admissions_once_on_the_other_worker`).

mod common;

use std::net::Ipv4Addr;

use common::limits::*;
use common::tokens::*;
use common::*;
use serde_json::json;

const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

const FREE: Limit = Limit::plan("free", 6, 1);
const PRO: Limit = Limit::plan("pro", 12, 3);
/// `/users`: 6 a minute, 3 at once, per user (the default key_by), though the plans are
/// keyed by tenant and the route forces plan `pro`.
const USERS: Limit = Limit::route("route:users", 6, 3);
/// `/search`: per IP.
const SEARCH: Limit = Limit::route("route:search", 6, 2);
/// `/public`: `auth = "none"`, so every caller is anonymous: per IP.
const PUBLIC: Limit = Limit::route("route:public", 4, 2);

/// The routes, with `{users}` the `/users` route's limit and `{extra}` routes listed
/// before it.
const ROUTES: &str = r#"{extra}
[[routes]]
id = "users"
path_prefix = "/users"
upstream = "app"
auth = "required"
plan = "pro"
rate_limit = {users}

[[routes]]
id = "orders"
path_prefix = "/orders"
upstream = "app"
auth = "required"

[[routes]]
id = "search"
path_prefix = "/search"
upstream = "app"
auth = "required"
rate_limit = { requests_per_minute = 6, burst = 2, key_by = "ip" }

[[routes]]
id = "public"
path_prefix = "/public"
upstream = "app"
auth = "none"
rate_limit = { enabled = true, requests_per_minute = 4, burst = 2, key_by = "user" }

[[routes]]
id = "off"
path_prefix = "/off"
upstream = "app"
auth = "required"
plan = "pro"
rate_limit = { enabled = false, requests_per_minute = 6, burst = 1 }

[[routes]]
id = "open"
path_prefix = "/open"
upstream = "app"
auth = "none"
rate_limit = { enabled = false, requests_per_minute = 6 }
"#;

const USERS_LIMIT: &str = "{ requests_per_minute = 6, burst = 3 }";

struct World {
    keys: Keyring,
    origin: Origin,
    gw: Gw,
}

impl World {
    fn start(driver: IoDriver) -> World {
        let keys = Keyring::new();
        let origin = Origin::start(|_| Reply::ok("ok"));
        let template = config(&keys, &origin, USERS_LIMIT, "");
        let gw = Gw::start(driver, &template);
        World { keys, origin, gw }
    }

    /// A token for `sub` of tenant acme, five minutes valid, with `extra` claims.
    fn token(&self, sub: &str, extra: serde_json::Value) -> String {
        let mut claims = json!({"sub": sub, "tenant": "acme", "exp": now() + 300});
        for (k, v) in extra.as_object().expect("claims object") {
            claims[k] = v.clone();
        }
        self.keys.mint(Algorithm::HS256, Some("hs-1"), &claims)
    }

    fn received(&self) -> usize {
        self.origin.requests().len()
    }

    /// Reload with `/users` limited by `users` and the routes `extra` before it.
    fn reload(&self, users: &str, extra: &str) {
        let template = config(&self.keys, &self.origin, users, extra);
        let text = without_auth(&render_config(&template, self.gw.driver, 1));
        let cfg = Config::parse(&text, "reload.toml")
            .unwrap_or_else(|e| panic!("config rejected: {e}\n{text}"));
        let restart = self.gw.gateway().reload(cfg).expect("reload applied");
        assert!(restart.is_empty(), "{restart:?}");
    }
}

fn config(keys: &Keyring, origin: &Origin, users: &str, extra: &str) -> String {
    let routes = ROUTES.replace("{users}", users).replace("{extra}", extra);
    let template = format!(
        "[auth.jwt]\nleeway_s = 5\n{jwt}\n\
         [rate_limit]\ndefault_plan = \"free\"\nkey = \"tenant\"\nsync_interval_ms = 20\n\
         headers = true\n\n{free}{pro}\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{{origin}}\"]\n{routes}",
        jwt = keys.jwt_keys_toml(),
        free = FREE.plan_toml(),
        pro = PRO.plan_toml(),
    );
    fill(&template, &[("origin", origin.addr())])
}

both_drivers! {
    fn a_route_limit_admits_its_burst_then_refuses_with_its_headers(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // The token's plan claim, like the route's forced plan, is not what counts here.
        let alice = w.token("alice", json!({"plan": "pro"}));
        let req = bearer("/users/7", &alice);
        for k in 1..=USERS.capacity {
            let resp = c.request(&req);
            assert_eq!(resp.status, 200, "{resp:#?}");
            let (remaining, reset) = assert_limit_headers(&resp, USERS);
            assert_eq!(remaining, USERS.capacity - k, "{}", resp.head);
            let full = k * USERS.interval();
            assert!((full - 1..=full).contains(&reset), "request {k}: {}", resp.head);
            assert!(!resp.has("retry-after"), "{}", resp.head);
        }
        let resp = c.request(&req);
        let retry = assert_429(&resp, USERS);
        assert_eq!(assert_limit_headers(&resp, USERS), (0, retry), "{}", resp.head);
        assert_eq!(
            resp.json()["message"],
            "rate limit of route \"users\" exceeded"
        );
        assert_eq!(w.received(), USERS.capacity as usize);

        // Alice's other routes are not affected: her plan's bucket was never charged.
        assert_exhausts(&mut c, &bearer("/orders", &alice), PRO);
        // Keyed by user, not by the plans' tenant: bob of acme has his own.
        let bob = w.token("bob", json!({}));
        assert_exhausts(&mut w.gw.client(), &bearer("/users", &bob), USERS);
        // ... while on the plan's routes he shares acme's (free) bucket with nobody yet.
        assert_exhausts(&mut w.gw.client(), &bearer("/orders", &bob), FREE);
        let carol = w.token("carol", json!({}));
        assert_refused(&mut w.gw.client(), &bearer("/orders", &carol), FREE);
        assert_admitted(&mut w.gw.client(), &bearer("/users", &carol), USERS);
    }

    fn key_by_ip_and_key_by_user(driver) {
        let w = World::start(driver);
        let alice = w.token("alice", json!({}));
        let bob = w.token("bob", json!({}));
        // key_by = "ip": one bucket per address, whoever calls.
        assert_exhausts(&mut w.gw.client(), &bearer("/search", &alice), SEARCH);
        assert_refused(&mut w.gw.client(), &bearer("/search", &bob), SEARCH);
        let mut other = Client::connect_from(w.gw.addr, OTHER_IP);
        assert_exhausts(&mut other, &bearer("/search", &bob), SEARCH);
        // key_by = "user" (the default): one bucket per user, wherever they call from.
        assert_exhausts(&mut w.gw.client(), &bearer("/users", &alice), USERS);
        assert_refused(&mut other, &bearer("/users", &alice), USERS);
        assert_admitted(&mut w.gw.client(), &bearer("/users", &bob), USERS);
        let r = w.origin.last_request();
        assert_eq!(r.header("x-user-id"), Some("bob"));
    }

    fn anonymous_callers_are_limited_by_ip_on_an_open_route(driver) {
        let w = World::start(driver);
        assert_exhausts(&mut w.gw.client(), &Req::get("/public"), PUBLIC);
        // Credentials are not read on an `auth = "none"` route: still that address.
        let alice = w.token("alice", json!({}));
        assert_refused(&mut w.gw.client(), &bearer("/public", &alice), PUBLIC);
        let mut other = Client::connect_from(w.gw.addr, OTHER_IP);
        assert_exhausts(&mut other, &Req::get("/public"), PUBLIC);
        assert_eq!(w.received(), 2 * PUBLIC.capacity as usize);
    }

    fn enabled_false_leaves_the_plan(driver) {
        let w = World::start(driver);
        // `/off` forces plan pro and has its own limit switched off: the plan applies.
        let alice = w.token("alice", json!({}));
        assert_exhausts(&mut w.gw.client(), &bearer("/off", &alice), PRO);
        // `/open` (auth none, no plan, own limit off) is not limited at all.
        let mut c = w.gw.client();
        for i in 0..3 * USERS.capacity {
            let resp = c.request(&Req::get("/open"));
            assert_eq!(resp.status, 200, "request {i}: {resp:#?}");
            assert_no_limit_headers(&resp);
        }
    }

    fn a_reload_keeps_an_unchanged_route_limit_and_restarts_a_changed_one(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let alice = bearer("/users", &w.token("alice", json!({})));
        assert_exhausts(&mut c, &alice, USERS);

        // A limited route added in front (every route limit is renumbered), the same
        // limit on /users: alice is still limited, on a connection that outlived it.
        let extra = "[[routes]]\nid = \"new\"\npath_prefix = \"/new\"\nupstream = \"app\"\n\
                     rate_limit = { requests_per_minute = 60, burst = 5, key_by = \"ip\" }\n";
        w.reload(USERS_LIMIT, extra);
        assert_refused(&mut c, &alice, USERS);
        assert_exhausts(&mut c, &Req::get("/new"), Limit::route("route:new", 60, 5));

        // A raised burst: every caller starts with a full bucket of the new size.
        w.reload("{ requests_per_minute = 6, burst = 5 }", "");
        assert_exhausts(&mut c, &alice, Limit::route("route:users", 6, 5));

        // Switched off: the route's forced plan again.
        w.reload("{ enabled = false, requests_per_minute = 6, burst = 5 }", "");
        assert_exhausts(&mut c, &alice, PRO);
    }
}
