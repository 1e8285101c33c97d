//! RFC 9111 rules of the response cache that `tests/cache.rs` leaves out, end to end: for
//! each, what a client sees (status, `X-Cache`, `Age`, body) and how many requests reached
//! the origin. The origin answers as each request asks it to (see [`scripted_origin`]),
//! so a test states the response it is about next to the request.
//!
//! - Freshness lifetime: `s-maxage` over `max-age` over `Expires` over the route's
//!   `ttl_s` (with an `Age` from the origin standing in for time passing, so no test
//!   sleeps); an invalid `Expires` is in the past. A route without `ttl_s`
//!   (`cache = {}`) stores only responses with explicit freshness.
//! - Any status with explicit freshness is stored (302 with its `Location`, 307, 403,
//!   500); without it, only the heuristically cacheable ones (404 and 301 by the
//!   route's `ttl_s`; not 302, 500 or 201).
//! - Fields named by `Connection`, `no-cache="..."` and `private="..."` are not stored.
//! - Conditional requests answered from a fresh entry: `If-Modified-Since` against
//!   `Last-Modified`, `If-None-Match` with `*`, a list, a weak tag, no match, and its
//!   precedence over `If-Modified-Since`.
//! - Age: the origin's `Age` and `Date` count into the age served and into freshness.
//! - Keys and credentials: JWT callers keyed by tenant (users of one tenant share,
//!   tenants do not, anonymous callers have their own entries); on a `shared = true`
//!   route a response to a request with credentials is stored only with `public`,
//!   `s-maxage` or `must-revalidate` (RFC 9111 3.5).
//! - The route's `methods`, HEAD misses, and the request's `max-age`, `min-fresh`,
//!   `max-stale`, `Pragma: no-cache` and `only-if-cached`.
//! - Invalidation by unsafe methods: only the request's URI, only on a 2xx or 3xx, for
//!   every tenant.
//! - `stale-if-error` standing in for an upstream 500, 502, 503 or 504 answer; a stale
//!   entry dropped when the origin's new answer may not be stored; a stale entry
//!   revalidated with its `ETag` or `Last-Modified`, and freshened by a 304, which
//!   updates the stored fields but not those that describe the stored body
//!   (`Content-Encoding`, `Content-Length`, the validators), and does not update an
//!   entry whose validators it contradicts.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use common::tokens::*;
use common::*;
use serde_json::json;

/// API keys of tenants `ta` and `tb`, in clear (the config holds their digests).
const KEY_A: &str = "cache-rules-key-tenant-a";
const KEY_B: &str = "cache-rules-key-tenant-b";

/// The request header naming the status the origin is to answer with.
const STATUS: &str = "X-Reply-Status";

/// `(path_prefix, auth, cache table)` of the gateway's routes, in order.
const ROUTES: [(&str, &str, &str); 8] = [
    // Keyed by the caller's tenant.
    ("/tenant", "required", "ttl_s = 30"),
    ("/shared", "required", "ttl_s = 30, shared = true"),
    ("/anyone", "optional", "ttl_s = 30, shared = true"),
    // Tenant or anonymous.
    ("/maybe", "optional", "ttl_s = 30"),
    ("/get-only", "none", "ttl_s = 30, methods = [\"GET\"]"),
    ("/ttl1", "none", "ttl_s = 1"),
    // No ttl_s: only what the origin marks fresh.
    ("/origin-fresh", "none", ""),
    ("/", "none", "ttl_s = 30"),
];

/// The origin answers "<n>" (a counter over all its requests) with the status named by
/// the request's `X-Reply-Status` (200 without one) and one header field per `X-Reply:
/// Name: value` line of the request. A request that reaches the origin again gets the
/// same kind of answer.
fn scripted_origin() -> Origin {
    let n = AtomicUsize::new(0);
    Origin::start(move |r| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let status = r
            .header(STATUS)
            .map_or(200, |s| s.parse().expect("a status"));
        let mut reply = Reply::new(status).body(format!("{i}"));
        for field in r.all("x-reply") {
            let (name, value) = field.split_once(':').expect("X-Reply: Name: value");
            reply = reply.header(name.trim(), value.trim());
        }
        reply
    })
}

/// A GET of `path` asking the origin for a 200 with these header fields.
fn ask(path: &str, fields: &[&str]) -> Req {
    fields
        .iter()
        .fold(Req::get(path), |req, f| req.header("X-Reply", f))
}

/// The gateway of [`ROUTES`] in front of a [`scripted_origin`], trusting HS256 tokens
/// (kid `hs-1`) and the API keys [`KEY_A`] (tenant `ta`) and [`KEY_B`] (tenant `tb`).
struct World {
    keys: Keyring,
    origin: Origin,
    gw: Gw,
}

impl World {
    fn start(driver: IoDriver) -> World {
        let keys = Keyring::new();
        let origin = scripted_origin();
        let mut toml = format!(
            "[auth.jwt]\n\
             [[auth.jwt.keys]]\nkid = \"hs-1\"\nalgorithm = \"HS256\"\nsecret_env = \"{}\"\n\
             [[auth.api_keys.keys]]\nid = \"a\"\nsha256 = \"{}\"\nuser = \"ua\"\ntenant = \"ta\"\n\
             [[auth.api_keys.keys]]\nid = \"b\"\nsha256 = \"{}\"\nuser = \"ub\"\ntenant = \"tb\"\n\
             [plans.free]\nrequests_per_minute = 60000\nburst = 1000\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{{origin}}\"]\n",
            keys.hs_env,
            api_key_digest(KEY_A),
            api_key_digest(KEY_B),
        );
        for (i, (prefix, auth, cache)) in ROUTES.iter().enumerate() {
            toml.push_str(&format!(
                "[[routes]]\nid = \"r{i}\"\npath_prefix = \"{prefix}\"\nupstream = \"app\"\n\
                 auth = \"{auth}\"\ncache = {{ {cache} }}\n"
            ));
        }
        let gw = Gw::start(driver, &fill(&toml, &[("origin", origin.addr())]));
        World { keys, origin, gw }
    }

    /// Requests the origin has received.
    fn fetched(&self) -> usize {
        self.origin.requests().len()
    }

    /// A bearer token for `user` of `tenant`, valid for five minutes.
    fn token(&self, user: &str, tenant: &str) -> String {
        let claims = json!({"sub": user, "tenant": tenant, "exp": now() + 300});
        self.keys.mint(Algorithm::HS256, Some("hs-1"), &claims)
    }
}

fn bearer(req: Req, token: &str) -> Req {
    req.header("Authorization", &format!("Bearer {token}"))
}

fn x_cache(r: &Response) -> &str {
    r.header("x-cache").unwrap_or("(none)")
}

/// "<status> <X-Cache> [<body>]": what a client sees of a response, as one string.
fn seen(r: &Response) -> String {
    format!("{} {} [{}]", r.status, x_cache(r), r.text())
}

/// The response's `Age`, which must be there.
fn age(r: &Response) -> u64 {
    let v = r
        .header("age")
        .unwrap_or_else(|| panic!("no Age: {}", r.head));
    v.parse()
        .unwrap_or_else(|_| panic!("Age {v:?} is not delta-seconds"))
}

/// An HTTP-date `secs` seconds ago (negative: ahead).
fn date_ago(secs: i64) -> String {
    let now = SystemTime::now();
    let t = if secs >= 0 {
        now - Duration::from_secs(secs.unsigned_abs())
    } else {
        now + Duration::from_secs(secs.unsigned_abs())
    };
    httpdate::fmt_http_date(t)
}

const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

both_drivers! {
    fn s_maxage_rules_over_max_age_and_max_age_over_the_route_ttl(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // max-age=0 alone: never fresh, not stored (the route's ttl_s = 30 does not apply).
        let max0 = ask("/f/max0", &["Cache-Control: max-age=0"]);
        assert_eq!(seen(&c.request(&max0)), "200 MISS [0]");
        assert_eq!(seen(&c.request(&max0)), "200 MISS [1]", "max-age=0 was served");
        // ... but s-maxage=60 is what a shared cache goes by.
        let smax = ask("/f/smax", &["Cache-Control: max-age=0, s-maxage=60"]);
        assert_eq!(seen(&c.request(&smax)), "200 MISS [2]");
        assert_eq!(seen(&c.request(&smax)), "200 HIT [2]", "s-maxage=60 not honoured");
        // And the other way round: s-maxage=0 over max-age=60.
        let smax0 = ask("/f/smax0", &["Cache-Control: s-maxage=0, max-age=60"]);
        assert_eq!(seen(&c.request(&smax0)), "200 MISS [3]");
        assert_eq!(seen(&c.request(&smax0)), "200 MISS [4]", "max-age beat s-maxage=0");
        // Thirty seconds old on arrival: stale by s-maxage=10 despite max-age=60.
        let aged = ask("/f/aged", &["Age: 30", "Cache-Control: max-age=60, s-maxage=10"]);
        assert_eq!(seen(&c.request(&aged)), "200 MISS [5]");
        assert_eq!(seen(&c.request(&aged)), "200 MISS [6]", "max-age beat s-maxage=10");
        assert_eq!(w.fetched(), 7);
        // Five seconds old on arrival, on a route with ttl_s = 1: max-age=60 keeps it
        // fresh, while without Cache-Control the route's one second has passed.
        let fresh = ask("/ttl1/max", &["Age: 5", "Cache-Control: max-age=60"]);
        assert_eq!(seen(&c.request(&fresh)), "200 MISS [7]");
        assert_eq!(seen(&c.request(&fresh)), "200 HIT [7]", "the route ttl beat max-age");
        let by_ttl = ask("/ttl1/none", &["Age: 5"]);
        assert_eq!(seen(&c.request(&by_ttl)), "200 MISS [8]");
        assert_eq!(seen(&c.request(&by_ttl)), "200 MISS [9]", "served past the route ttl");
        // The same response under the catch-all route (ttl_s = 30) is fresh.
        let by_ttl30 = ask("/f/ttl30", &["Age: 5"]);
        assert_eq!(seen(&c.request(&by_ttl30)), "200 MISS [10]");
        assert_eq!(seen(&c.request(&by_ttl30)), "200 HIT [10]");
        assert_eq!(w.fetched(), 11);
    }

    fn expires_is_below_max_age_and_above_the_route_ttl(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let past = format!("Expires: {LAST_MODIFIED}");
        let future = format!("Expires: {}", date_ago(-120));
        // Expires in the past beats the route's ttl_s = 30: not stored.
        let expired = ask("/e/past", &[&past]);
        assert_eq!(seen(&c.request(&expired)), "200 MISS [0]");
        assert_eq!(seen(&c.request(&expired)), "200 MISS [1]", "the route ttl beat Expires");
        // An invalid Expires ("0") means already expired (RFC 9111 5.3).
        let zero = ask("/e/zero", &["Expires: 0"]);
        assert_eq!(seen(&c.request(&zero)), "200 MISS [2]");
        assert_eq!(seen(&c.request(&zero)), "200 MISS [3]", "Expires: 0 was fresh");
        // Expires two minutes ahead: fresh.
        let ahead = ask("/e/future", &[&future]);
        assert_eq!(seen(&c.request(&ahead)), "200 MISS [4]");
        assert_eq!(seen(&c.request(&ahead)), "200 HIT [4]");
        // max-age=60 beats an Expires in the past.
        let both = ask("/e/both", &[&past, "Cache-Control: max-age=60"]);
        assert_eq!(seen(&c.request(&both)), "200 MISS [5]");
        assert_eq!(seen(&c.request(&both)), "200 HIT [5]", "Expires beat max-age");
        assert_eq!(w.fetched(), 6);
    }

    fn statuses_are_stored_by_explicit_freshness_or_heuristically(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // Stored: 404 and 301 by their max-age or, without one, by the route's ttl_s
        // (heuristically cacheable); 302, 307, 403 and 500 by their max-age (RFC 9111 3:
        // any status with explicit freshness).
        let stored: [(&str, u16, &[&str]); 8] = [
            ("/s/404-max", 404, &["Cache-Control: max-age=60"]),
            ("/s/404-ttl", 404, &[]),
            ("/s/301-max", 301, &["Location: /elsewhere", "Cache-Control: max-age=60"]),
            ("/s/301-ttl", 301, &["Location: /elsewhere"]),
            ("/s/302-max", 302, &["Location: /elsewhere", "Cache-Control: max-age=60"]),
            ("/s/307-max", 307, &["Location: /elsewhere", "Cache-Control: max-age=60"]),
            ("/s/403-max", 403, &["Cache-Control: max-age=60"]),
            ("/s/500-max", 500, &["Cache-Control: max-age=60"]),
        ];
        for (n, (path, status, fields)) in stored.into_iter().enumerate() {
            let req = ask(path, fields).header(STATUS, &status.to_string());
            let miss = c.request(&req);
            assert_eq!(seen(&miss), format!("{status} MISS [{n}]"), "{path}");
            let hit = c.request(&req);
            assert_eq!(seen(&hit), format!("{status} HIT [{n}]"), "{path}: {}", hit.head);
            if fields.iter().any(|f| f.starts_with("Location")) {
                assert_eq!(hit.header("location"), Some("/elsewhere"), "{path}");
            }
            assert_eq!(w.fetched(), n + 1, "{path}");
        }
        // Not stored without explicit freshness (not heuristically cacheable, so the
        // route's ttl_s does not apply), even when `public` allows storing: 302, 500,
        // 201. And never a 206 (no range support here), max-age or not.
        let not_stored: [(&str, u16, &[&str]); 5] = [
            ("/s/302", 302, &["Location: /elsewhere"]),
            ("/s/302-public", 302, &["Location: /elsewhere", "Cache-Control: public"]),
            ("/s/500", 500, &[]),
            ("/s/201", 201, &[]),
            ("/s/206-max", 206, &["Content-Range: bytes 0-0/10", "Cache-Control: max-age=60"]),
        ];
        for (path, status, fields) in not_stored {
            let req = ask(path, fields).header(STATUS, &status.to_string());
            for _ in 0..2 {
                let before = w.fetched();
                let r = c.request(&req);
                assert_eq!(seen(&r), format!("{status} MISS [{before}]"), "{path}");
                assert_eq!(w.fetched(), before + 1, "{path} was answered from the cache");
            }
        }
    }

    fn a_route_without_ttl_stores_only_what_the_origin_marks_fresh(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let past = format!("Last-Modified: {LAST_MODIFIED}");
        let future = format!("Expires: {}", date_ago(-120));
        // Without freshness information: asked of the origin every time. A
        // Last-Modified gives no heuristic freshness either.
        let bare: [(&str, &[&str]); 3] = [
            ("/origin-fresh/none", &[]),
            ("/origin-fresh/lm", &[&past]),
            ("/origin-fresh/public", &["Cache-Control: public"]),
        ];
        for (path, fields) in bare {
            for _ in 0..2 {
                let before = w.fetched();
                let r = c.request(&ask(path, fields));
                assert_eq!(seen(&r), format!("200 MISS [{before}]"), "{path}");
                assert_eq!(w.fetched(), before + 1, "{path} was answered from the cache");
            }
        }
        // With it: stored, and served from the cache.
        let fresh: [(&str, &[&str]); 3] = [
            ("/origin-fresh/max", &["Cache-Control: max-age=60"]),
            ("/origin-fresh/smax", &["Cache-Control: s-maxage=60"]),
            ("/origin-fresh/expires", &[&future]),
        ];
        for (path, fields) in fresh {
            let n = w.fetched();
            assert_eq!(seen(&c.request(&ask(path, fields))), format!("200 MISS [{n}]"), "{path}");
            let hit = c.request(&ask(path, fields));
            assert_eq!(seen(&hit), format!("200 HIT [{n}]"), "{path}: {}", hit.head);
            assert_eq!(w.fetched(), n + 1, "{path}");
        }
        // A redirect the origin marks fresh is stored too; one it does not, is not.
        let n = w.fetched();
        let found = ask("/origin-fresh/302", &["Location: /there", "Cache-Control: max-age=60"])
            .header(STATUS, "302");
        assert_eq!(seen(&c.request(&found)), format!("302 MISS [{n}]"));
        let hit = c.request(&found);
        assert_eq!(seen(&hit), format!("302 HIT [{n}]"), "{}", hit.head);
        assert_eq!(hit.header("location"), Some("/there"));
        let plain = ask("/origin-fresh/302-plain", &["Location: /there"]).header(STATUS, "302");
        assert_eq!(seen(&c.request(&plain)), format!("302 MISS [{}]", n + 1));
        assert_eq!(seen(&c.request(&plain)), format!("302 MISS [{}]", n + 2));
        assert_eq!(w.fetched(), n + 3);
    }

    fn fields_named_by_connection_or_qualified_directives_are_not_stored(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let conn = ask(
            "/conn",
            &["Connection: X-Secret", "X-Secret: 1", "X-Kept: 1", "Cache-Control: max-age=60"],
        );
        for want in ["200 MISS [0]", "200 HIT [0]"] {
            let r = c.request(&conn);
            assert_eq!(seen(&r), want);
            // A hop-by-hop field goes neither to the client nor into the cache.
            assert!(!r.has("x-secret"), "{want}: {}", r.head);
            assert!(!r.connection_has("x-secret"), "{want}: {}", r.head);
            assert_eq!(r.header("x-kept"), Some("1"), "{want}: {}", r.head);
        }
        // no-cache="X-Nc" and private="X-Pv": the fields reach the client that asked,
        // but a shared cache does not store them (RFC 9111 5.2.2.4, 5.2.2.7).
        let qualified = ask(
            "/qualified",
            &[
                "Cache-Control: max-age=60, no-cache=\"X-Nc\", private=\"X-Pv\"",
                "X-Nc: 1",
                "X-Pv: 1",
                "X-Kept: 1",
            ],
        );
        let miss = c.request(&qualified);
        assert_eq!(seen(&miss), "200 MISS [1]");
        assert_eq!(miss.header("x-nc"), Some("1"), "{}", miss.head);
        assert_eq!(miss.header("x-pv"), Some("1"), "{}", miss.head);
        let hit = c.request(&qualified);
        assert_eq!(seen(&hit), "200 HIT [1]", "qualified no-cache/private is storable");
        assert!(!hit.has("x-nc"), "a no-cache=\"X-Nc\" field was stored: {}", hit.head);
        assert!(!hit.has("x-pv"), "a private=\"X-Pv\" field was stored: {}", hit.head);
        assert_eq!(hit.header("x-kept"), Some("1"), "{}", hit.head);
        assert_eq!(w.fetched(), 2);
    }

    fn conditional_requests_are_answered_from_a_fresh_entry(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let last_modified = format!("Last-Modified: {LAST_MODIFIED}");
        let doc = || {
            ask("/cond", &["Cache-Control: max-age=60", "ETag: \"v1\"", &last_modified])
        };
        assert_eq!(seen(&c.request(&doc())), "200 MISS [0]");
        let not_modified = [
            ("If-Modified-Since", LAST_MODIFIED),
            ("If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT"),
            ("If-None-Match", "*"),
            ("If-None-Match", "\"x\", \"v1\""),
            ("If-None-Match", "W/\"v1\""),
        ];
        for (name, value) in not_modified {
            let r = c.request(&doc().header(name, value));
            assert_eq!(seen(&r), "304 HIT []", "{name}: {value}");
            assert_eq!(r.header("etag"), Some("\"v1\""), "{name}: {value}: {}", r.head);
            assert!(r.has("age"), "{name}: {value}: {}", r.head);
        }
        let modified = [
            ("If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT"),
            ("If-Modified-Since", "not a date"),
            ("If-None-Match", "\"x\""),
        ];
        for (name, value) in modified {
            let r = c.request(&doc().header(name, value));
            assert_eq!(seen(&r), "200 HIT [0]", "{name}: {value}");
        }
        // If-None-Match decides when present: If-Modified-Since is not looked at.
        let both = doc()
            .header("If-None-Match", "\"x\"")
            .header("If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT");
        assert_eq!(seen(&c.request(&both)), "200 HIT [0]");
        assert_eq!(w.fetched(), 1);
    }

    fn the_age_a_response_arrives_with_counts(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // Age: 30 of max-age=60: fresh, and served at least thirty seconds old.
        let aged = ask("/age/30", &["Age: 30", "Cache-Control: max-age=60"]);
        assert_eq!(seen(&c.request(&aged)), "200 MISS [0]");
        let hit = c.request(&aged);
        assert_eq!(seen(&hit), "200 HIT [0]");
        assert!((30..60).contains(&age(&hit)), "{}", hit.head);
        // Age: 100 of max-age=60: stale on arrival, never a hit.
        let stale = ask("/age/100", &["Age: 100", "Cache-Control: max-age=60"]);
        assert_eq!(seen(&c.request(&stale)), "200 MISS [1]");
        assert_eq!(seen(&c.request(&stale)), "200 MISS [2]", "a stale entry was a HIT");
        // The same by Date: generated forty seconds ago (the worker's clock may lag by
        // a tick), or a hundred.
        let date = format!("Date: {}", date_ago(40));
        let dated = ask("/age/date40", &[&date, "Cache-Control: max-age=60"]);
        assert_eq!(seen(&c.request(&dated)), "200 MISS [3]");
        let hit = c.request(&dated);
        assert_eq!(seen(&hit), "200 HIT [3]");
        assert!((38..60).contains(&age(&hit)), "{}", hit.head);
        let date = format!("Date: {}", date_ago(100));
        let old = ask("/age/date100", &[&date, "Cache-Control: max-age=60"]);
        assert_eq!(seen(&c.request(&old)), "200 MISS [4]");
        assert_eq!(seen(&c.request(&old)), "200 MISS [5]", "a stale entry was a HIT");
        assert_eq!(w.fetched(), 6);
    }

    fn jwt_callers_share_entries_within_their_tenant_only(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let (u1, u2, u3) = (w.token("u1", "ta"), w.token("u2", "ta"), w.token("u3", "tb"));
        // A plain max-age=60: keyed by tenant, it needs no permission to be shared.
        let doc = |token: &str| {
            bearer(ask("/tenant/doc", &["Cache-Control: max-age=60"]), token)
        };
        assert_eq!(seen(&c.request(&doc(&u1))), "200 MISS [0]");
        assert_eq!(seen(&c.request(&doc(&u2))), "200 HIT [0]", "another user of ta");
        let other = c.request(&doc(&u3));
        assert_eq!(seen(&other), "200 MISS [1]", "tenant tb got tenant ta's entry");
        assert_eq!(seen(&c.request(&doc(&u3))), "200 HIT [1]");
        assert_eq!(seen(&c.request(&doc(&u1))), "200 HIT [0]");
        assert_eq!(w.fetched(), 2);
        // auth = "optional": callers without credentials have an entry of their own.
        let maybe = || ask("/maybe/doc", &["Cache-Control: max-age=60"]);
        assert_eq!(seen(&c.request(&maybe())), "200 MISS [2]");
        let tenant = c.request(&bearer(maybe(), &u1));
        assert_eq!(seen(&tenant), "200 MISS [3]", "tenant ta got the anonymous entry");
        assert_eq!(seen(&c.request(&maybe())), "200 HIT [2]");
        assert_eq!(seen(&c.request(&bearer(maybe(), &u2))), "200 HIT [3]");
        assert_eq!(w.fetched(), 4);
    }

    fn a_shared_route_shares_a_response_to_credentials_only_when_it_allows(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let with_key = |req: Req, key: &str| req.header("X-API-Key", key);
        // public, s-maxage or must-revalidate: one entry for both tenants (RFC 9111 3.5).
        let allowing = [
            "Cache-Control: public, max-age=60",
            "Cache-Control: s-maxage=60",
            "Cache-Control: max-age=60, must-revalidate",
        ];
        for (n, cc) in allowing.into_iter().enumerate() {
            let req = ask(&format!("/shared/{n}"), &[cc]);
            let a = c.request(&with_key(req.clone(), KEY_A));
            assert_eq!(seen(&a), format!("200 MISS [{n}]"), "{cc}");
            let b = c.request(&with_key(req, KEY_B));
            assert_eq!(seen(&b), format!("200 HIT [{n}]"), "{cc}: not shared");
        }
        assert_eq!(w.fetched(), 3);
        // A plain max-age=60, or nothing (the route's ttl_s): not stored at all.
        let not_allowing: [(&str, &[&str]); 2] = [
            ("/shared/plain", &["Cache-Control: max-age=60"]),
            ("/shared/ttl", &[]),
        ];
        for (path, fields) in not_allowing {
            for key in [KEY_A, KEY_B, KEY_A] {
                let before = w.fetched();
                let r = c.request(&with_key(ask(path, fields), key));
                assert_eq!(seen(&r), format!("200 MISS [{before}]"), "{path}: stored");
                assert_eq!(w.fetched(), before + 1, "{path}");
            }
        }
        // A response to a request without credentials is shared with everyone.
        let open = || ask("/anyone/doc", &["Cache-Control: max-age=60"]);
        assert_eq!(seen(&c.request(&open())), "200 MISS [9]");
        assert_eq!(seen(&c.request(&with_key(open(), KEY_A))), "200 HIT [9]");
        assert_eq!(seen(&c.request(&with_key(open(), KEY_B))), "200 HIT [9]");
        assert_eq!(w.fetched(), 10);
    }

    fn the_route_methods_and_head_misses(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // methods = ["GET"]: GET is cached, HEAD always goes upstream, marked BYPASS
        // (and leaves the GET entry alone).
        assert_eq!(seen(&c.request(&Req::get("/get-only/x"))), "200 MISS [0]");
        assert_eq!(seen(&c.request(&Req::get("/get-only/x"))), "200 HIT [0]");
        let head = c.request(&Req::head("/get-only/x"));
        assert_eq!(head.status, 200);
        assert_eq!(x_cache(&head), "BYPASS", "{}", head.head);
        assert_eq!(w.fetched(), 2, "HEAD was answered from the cache");
        assert_eq!(w.origin.last_request().method, "HEAD");
        assert_eq!(seen(&c.request(&Req::get("/get-only/x"))), "200 HIT [0]");
        // The default (GET and HEAD): a HEAD miss is filled with a GET, as nginx's
        // proxy_cache_convert_head does, and answered from the entry (MISS: the
        // upstream was asked); GET and HEAD then hit it.
        let head = c.request(&Req::head("/both/x"));
        assert_eq!((head.status, x_cache(&head)), (200, "MISS"), "{}", head.head);
        assert_eq!(head.header("content-length"), Some("1"), "{}", head.head);
        assert!(head.body.is_empty());
        assert_eq!(w.fetched(), 3);
        assert_eq!(w.origin.last_request().method, "GET");
        assert_eq!(seen(&c.request(&Req::get("/both/x"))), "200 HIT [2]");
        let head = c.request(&Req::head("/both/x"));
        assert_eq!((head.status, x_cache(&head)), (200, "HIT"), "{}", head.head);
        assert_eq!(w.fetched(), 3);
        // The GET's answer may not be stored: the HEAD goes upstream itself after it.
        let no_store = Req::head("/both/ns").header("X-Reply", "Cache-Control: no-store");
        let head = c.request(&no_store);
        assert_eq!((head.status, x_cache(&head)), (200, "MISS"), "{}", head.head);
        assert!(head.body.is_empty());
        let asked: Vec<String> = w.origin.requests()[3..]
            .iter()
            .map(|r| r.method.clone())
            .collect();
        assert_eq!(asked, ["GET", "HEAD"]);
        // Filled by a HEAD, a Vary'd entry is stored under the HEAD's own values.
        let vary = |r: Req, accept: &str| {
            r.header("X-Reply", "Vary: Accept")
                .header("Accept", accept)
        };
        let head = c.request(&vary(Req::head("/both/v"), "text/a"));
        assert_eq!((head.status, x_cache(&head)), (200, "MISS"), "{}", head.head);
        assert_eq!(w.origin.last_request().method, "GET");
        let fetched = w.fetched();
        let get_a = c.request(&vary(Req::get("/both/v"), "text/a"));
        assert_eq!(x_cache(&get_a), "HIT", "{}", get_a.head);
        let get_b = c.request(&vary(Req::get("/both/v"), "text/b"));
        assert_eq!(x_cache(&get_b), "MISS", "{}", get_b.head);
        assert_eq!(w.fetched(), fetched + 1);
    }

    fn request_max_age_min_fresh_max_stale_and_pragma(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // Thirty seconds old on arrival, fresh for thirty more.
        let aged = |cc: Option<&str>| {
            let req = ask("/r/aged", &["Age: 30", "Cache-Control: max-age=60"]);
            match cc {
                Some(cc) => req.header("Cache-Control", cc),
                None => req,
            }
        };
        assert_eq!(seen(&c.request(&aged(None))), "200 MISS [0]");
        assert_eq!(seen(&c.request(&aged(Some("max-age=60")))), "200 HIT [0]");
        assert_eq!(seen(&c.request(&aged(Some("min-fresh=20")))), "200 HIT [0]");
        // Too old for the client, or not fresh for long enough: fetched again (and the
        // new answer stored in place of the old).
        assert_eq!(seen(&c.request(&aged(Some("max-age=10")))), "200 MISS [1]");
        assert_eq!(seen(&c.request(&aged(Some("min-fresh=40")))), "200 MISS [2]");
        assert_eq!(seen(&c.request(&aged(Some("max-age=0")))), "200 MISS [3]");
        assert_eq!(seen(&c.request(&aged(None))), "200 HIT [3]");
        // Pragma: no-cache is no-cache when the request has no Cache-Control, and is
        // ignored when it has one (RFC 9111 5.4).
        let pragma = aged(None).header("Pragma", "no-cache");
        assert_eq!(seen(&c.request(&pragma)), "200 MISS [4]");
        let pragma = aged(Some("max-age=60")).header("Pragma", "no-cache");
        assert_eq!(seen(&c.request(&pragma)), "200 HIT [4]");
        assert_eq!(w.fetched(), 5);
        // Stale by forty seconds on arrival: served (STALE) to a client that accepts
        // that much staleness, and not older than it asks.
        let stale = |cc: Option<&str>| {
            let req = ask("/r/stale", &["Age: 100", "Cache-Control: max-age=60"]);
            match cc {
                Some(cc) => req.header("Cache-Control", cc),
                None => req,
            }
        };
        assert_eq!(seen(&c.request(&stale(None))), "200 MISS [5]");
        let r = c.request(&stale(Some("max-stale=60")));
        assert_eq!(seen(&r), "200 STALE [5]");
        assert!(age(&r) >= 100, "{}", r.head);
        assert_eq!(seen(&c.request(&stale(Some("max-stale")))), "200 STALE [5]");
        assert_eq!(w.fetched(), 6);
        assert_eq!(seen(&c.request(&stale(Some("max-stale=10")))), "200 MISS [6]");
        let too_old = stale(Some("max-stale=60, max-age=50"));
        assert_eq!(seen(&c.request(&too_old)), "200 MISS [7]");
        assert_eq!(seen(&c.request(&stale(None))), "200 MISS [8]");
        assert_eq!(w.fetched(), 9);
        // must-revalidate, and s-maxage (proxy-revalidate), forbid serving stale.
        let revalidating = ["max-age=60, must-revalidate", "s-maxage=60"];
        for (n, cc) in revalidating.into_iter().enumerate() {
            let path = format!("/r/must/{n}");
            let cc_line = format!("Cache-Control: {cc}");
            let req = ask(&path, &["Age: 100", &cc_line]);
            assert_eq!(seen(&c.request(&req)), format!("200 MISS [{}]", 9 + 2 * n));
            let r = c.request(&req.header("Cache-Control", "max-stale=1000"));
            assert_eq!(seen(&r), format!("200 MISS [{}]", 10 + 2 * n), "{cc}: served stale");
        }
        assert_eq!(w.fetched(), 13);
    }

    fn only_if_cached_never_goes_upstream(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let doc = |path: &str| ask(path, &["Cache-Control: max-age=60"]);
        assert_eq!(seen(&c.request(&doc("/oic/stored"))), "200 MISS [0]");
        let hit = c.request(&doc("/oic/stored").header("Cache-Control", "only-if-cached"));
        assert_eq!(seen(&hit), "200 HIT [0]");
        assert_eq!(w.fetched(), 1);
        // Nothing stored: 504, and the origin is not asked (RFC 9111 5.2.1.7; the
        // gateway's ReqDirectives::only_if_cached says "answer from the cache or with
        // 504, never from the upstream").
        let r = c.request(&doc("/oic/absent").header("Cache-Control", "only-if-cached"));
        assert_eq!(w.fetched(), 1, "only-if-cached went upstream: {}", r.head);
        assert_eq!(r.status, 504, "{}", r.head);
    }

    fn an_unsafe_method_drops_its_own_uri_and_only_on_success(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let get = |c: &mut Client, path: &str| seen(&c.request(&ask(path, &[])));
        assert_eq!(get(&mut c, "/inv/a"), "200 MISS [0]");
        assert_eq!(get(&mut c, "/inv/b"), "200 MISS [1]");
        assert_eq!(get(&mut c, "/inv/a?x=1"), "200 MISS [2]");
        // POST /inv/a succeeds: /inv/a goes, /inv/b and /inv/a?x=1 (other URIs) stay.
        assert_eq!(c.request(&Req::post("/inv/a", "x")).status, 200);
        assert_eq!(get(&mut c, "/inv/a"), "200 MISS [4]");
        assert_eq!(get(&mut c, "/inv/b"), "200 HIT [1]");
        assert_eq!(get(&mut c, "/inv/a?x=1"), "200 HIT [2]");
        assert_eq!(w.fetched(), 5);
        // An unsafe request that fails (5xx, 4xx) drops nothing.
        for status in ["500", "404"] {
            let r = c.request(&Req::post("/inv/b", "x").header(STATUS, status));
            assert_eq!(r.status.to_string(), status);
            assert_eq!(get(&mut c, "/inv/b"), "200 HIT [1]", "a failed POST ({status})");
        }
        let r = c.request(&Req::new("DELETE", "/inv/a?x=1").header(STATUS, "404"));
        assert_eq!(r.status, 404);
        assert_eq!(get(&mut c, "/inv/a?x=1"), "200 HIT [2]", "a failed DELETE");
        assert_eq!(w.fetched(), 8);
        // A 3xx is a success: a PUT answered 303 drops the entry.
        let r = c.request(&Req::new("PUT", "/inv/b").body("x").header(STATUS, "303"));
        assert_eq!(r.status, 303);
        assert_eq!(get(&mut c, "/inv/b"), "200 MISS [9]");
        assert_eq!(w.fetched(), 10);
    }

    fn an_unsafe_request_drops_the_uri_for_every_tenant(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let get = |c: &mut Client, key: &str| {
            seen(&c.request(&ask("/tenant/inv", &[]).header("X-API-Key", key)))
        };
        assert_eq!(get(&mut c, KEY_A), "200 MISS [0]");
        assert_eq!(get(&mut c, KEY_B), "200 MISS [1]");
        assert_eq!(get(&mut c, KEY_A), "200 HIT [0]");
        assert_eq!(get(&mut c, KEY_B), "200 HIT [1]");
        // Tenant b changes the resource: tenant a's copy of it goes too.
        let post = Req::post("/tenant/inv", "x").header("X-API-Key", KEY_B);
        assert_eq!(c.request(&post).status, 200);
        assert_eq!(get(&mut c, KEY_A), "200 MISS [3]");
        assert_eq!(get(&mut c, KEY_B), "200 MISS [4]");
        assert_eq!(w.fetched(), 5);
    }

    fn stale_if_error_stands_in_for_an_upstream_5xx_answer(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // Stale on arrival (Age over max-age), but usable on error for a minute.
        let fields = ["Cache-Control: max-age=60, stale-if-error=600", "Age: 100"];
        assert_eq!(seen(&c.request(&ask("/sie", &fields))), "200 MISS [0]");
        for (i, status) in ["500", "502", "503", "504"].iter().enumerate() {
            let r = c.request(&ask("/sie", &fields).header(STATUS, status));
            assert_eq!(seen(&r), "200 STALE [0]", "upstream {status}: {}", r.head);
            assert_eq!(w.fetched(), i + 2, "the upstream is asked first");
            c = w.gw.client();
        }
        // Other errors are the origin's answer, passed on.
        let r = c.request(&ask("/sie", &fields).header(STATUS, "501"));
        assert_eq!(r.status, 501, "{}", r.head);
        // Without stale-if-error, a 500 is passed on as it is.
        let plain = ["Cache-Control: max-age=60", "Age: 100"];
        assert_eq!(c.request(&ask("/sie-none", &plain)).status, 200);
        let r = c.request(&ask("/sie-none", &plain).header(STATUS, "500"));
        assert_eq!(r.status, 500, "{}", r.head);
    }

    fn a_stale_entry_goes_when_its_new_answer_may_not_be_stored(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // Stale on arrival; servable under max-stale.
        let old = ["Cache-Control: max-age=60", "Age: 100"];
        assert_eq!(seen(&c.request(&ask("/gone", &old))), "200 MISS [0]");
        let stale = |c: &mut Client| {
            c.request(&Req::get("/gone").header("Cache-Control", "max-stale=3600"))
        };
        assert_eq!(seen(&stale(&mut c)), "200 STALE [0]");
        // The origin's new answer says no-store: it is passed on, and the old entry
        // is dropped with it.
        let r = c.request(&ask("/gone", &["Cache-Control: no-store"]));
        assert_eq!(seen(&r), "200 MISS [1]");
        let after = stale(&mut c);
        assert_eq!(x_cache(&after), "MISS", "the dropped entry was served: {}", after.head);
        assert_eq!(w.fetched(), 3);
    }

    fn a_stale_entry_is_revalidated_with_its_validators(driver) {
        let origin = validating_origin();
        let gw = Gw::start(driver, &fill(
            "[[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\
             [[routes]]\nid = \"c\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
             auth = \"none\"\ncache = { ttl_s = 30 }\n",
            &[("origin", origin.addr())],
        ));
        let mut c = gw.client();
        for (path, validator) in [("/etag", "if-none-match"), ("/date", "if-modified-since")] {
            let first = c.request(&Req::get(path));
            assert_eq!(seen(&first), "200 MISS [0]", "{path}");
            // Too old for this request (Age 30 > max-age=10): asked again, conditionally;
            // the origin's 304 confirms the stored body.
            let again = c.request(&Req::get(path).header("Cache-Control", "max-age=10"));
            assert_eq!(seen(&again), "200 MISS [0]", "{path}: {}", again.head);
            let asked = origin.last_request();
            assert!(asked.header(validator).is_some(), "{path}: no {validator} upstream");
            assert!(age(&again) < 30, "{path}: the 304 restarted the age: {}", again.head);
            // The freshened entry is served from the cache again.
            assert_eq!(seen(&c.request(&Req::get(path))), "200 HIT [0]", "{path}");
        }
        assert_eq!(origin.requests().len(), 4);
        // A client's own conditional goes upstream as it is, without the cache's.
        let own = Req::get("/etag")
            .header("Cache-Control", "no-cache")
            .header("If-None-Match", "\"other\"");
        assert_eq!(c.request(&own).status, 200);
        assert_eq!(origin.requests().len(), 5);
        assert_eq!(origin.last_request().header("if-none-match"), Some("\"other\""));
    }

    fn a_304_updates_the_entry_but_not_the_fields_of_its_body(driver) {
        let origin = recoding_origin();
        let gw = Gw::start(driver, &fill(
            "[[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\
             [[routes]]\nid = \"c\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
             auth = \"none\"\ncache = { ttl_s = 30 }\n",
            &[("origin", origin.addr())],
        ));
        let mut c = gw.client();
        let first = c.request(&Req::get("/recode"));
        assert_eq!(seen(&first), "200 MISS [plain body]");
        assert_eq!(first.header("x-custom"), Some("old"));
        // Too old for this request (Age 30 > max-age=10): revalidated. The origin's 304
        // says Content-Encoding: gzip and Content-Length: 999 about a body it does not
        // send, and brings new metadata.
        let again = c.request(&Req::get("/recode").header("Cache-Control", "max-age=10"));
        let asked = origin.last_request();
        assert_eq!(asked.header("if-none-match"), Some("\"v1\""), "not revalidated");
        // The freshened entry, as the client gets it now and on later hits: the stored
        // body with its own length and (absent) coding and its validators; the 304's
        // Cache-Control and X-Custom.
        let hit = c.request(&Req::get("/recode"));
        for (r, x) in [(&again, "MISS"), (&hit, "HIT")] {
            assert_eq!(seen(r), format!("200 {x} [plain body]"), "{}", r.head);
            assert_eq!(r.all("content-length"), ["10"], "{}", r.head);
            assert!(!r.has("content-encoding"), "{}", r.head);
            assert!(!r.has("content-range"), "{}", r.head);
            assert_eq!(r.all("etag"), ["\"v1\""], "{}", r.head);
            assert_eq!(r.all("last-modified"), [LAST_MODIFIED], "{}", r.head);
            assert_eq!(r.all("x-custom"), ["new"], "{}", r.head);
            assert_eq!(r.all("cache-control"), ["max-age=120"], "{}", r.head);
            assert_eq!(r.all("x-from-304"), ["1"], "{}", r.head);
            assert_eq!(r.header("content-type"), Some("text/plain"), "{}", r.head);
        }
        assert!(age(&hit) < 30, "the 304 did not restart the age: {}", hit.head);
        // The 304's max-age=120 is the entry's lifetime now: fresh for 90 s more,
        // which the old max-age=60 could not be.
        let long = c.request(&Req::get("/recode").header("Cache-Control", "min-fresh=90"));
        assert_eq!(seen(&long), "200 HIT [plain body]", "{}", long.head);
        assert_eq!(origin.requests().len(), 2);

        // A 304 whose ETag contradicts the stored one is about another representation:
        // the client still gets the stored response the origin confirmed, but the entry
        // is not updated (RFC 9111 4.3.4); it is dropped, and fetched whole next time.
        assert_eq!(seen(&c.request(&Req::get("/retag"))), "200 MISS [plain body]");
        let r = c.request(&Req::get("/retag").header("Cache-Control", "max-age=10"));
        assert_eq!(origin.last_request().header("if-none-match"), Some("\"v1\""));
        assert_eq!(seen(&r), "200 MISS [plain body]", "{}", r.head);
        assert_eq!(r.all("etag"), ["\"v1\""], "{}", r.head);
        assert_eq!(r.all("x-custom"), ["old"], "{}", r.head);
        let next = c.request(&Req::get("/retag"));
        assert_eq!(x_cache(&next), "MISS", "the contradicted entry was kept: {}", next.head);
        assert_eq!(origin.last_request().header("if-none-match"), None);
        assert_eq!(origin.requests().len(), 5);
    }

    fn a_hit_has_its_own_request_id_and_one_date(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // The origin echoes a request ID and sends a Date no cache can read.
        let fields = ["Cache-Control: max-age=60", "X-Request-ID: filled-by-1", "Date: yesterday"];
        let first = c.request(&ask("/rid", &fields).header("X-Request-ID", "client-1"));
        assert_eq!(seen(&first), "200 MISS [0]");
        assert_eq!(first.all("x-request-id"), ["client-1"]);
        let hit = c.request(&ask("/rid", &fields).header("X-Request-ID", "client-2"));
        assert_eq!(seen(&hit), "200 HIT [0]");
        assert_eq!(hit.all("x-request-id"), ["client-2"], "{}", hit.head);
        let dates = hit.all("date");
        assert_eq!(dates.len(), 1, "{}", hit.head);
        assert!(httpdate::parse_http_date(dates[0]).is_ok(), "{}", hit.head);
        // A valid Date named by no-cache="Date" is still the one the entry keeps.
        let date = httpdate::fmt_http_date(SystemTime::now());
        let date_field = format!("Date: {date}");
        let named = ["Cache-Control: max-age=60, no-cache=\"Date\"", date_field.as_str()];
        assert_eq!(seen(&c.request(&ask("/named", &named))), "200 MISS [1]");
        let hit = c.request(&ask("/named", &named));
        assert_eq!(x_cache(&hit), "HIT");
        assert_eq!(hit.all("date"), [date.as_str()], "{}", hit.head);
    }
}

/// A plain body "plain body" with ETag "v1", 30 s old with `max-age=60`. A request
/// with `If-None-Match: "v1"` gets a 304 that claims `Content-Encoding: gzip` and
/// `Content-Length: 999` and brings new metadata (on `/recode`), or names another
/// representation, ETag "v2" (on `/retag`).
fn recoding_origin() -> Origin {
    const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    Origin::start(|r| {
        if r.header("if-none-match") != Some("\"v1\"") {
            return Reply::ok("plain body")
                .header("ETag", "\"v1\"")
                .header("Last-Modified", LAST_MODIFIED)
                .header("Content-Type", "text/plain")
                .header("Cache-Control", "max-age=60")
                .header("Age", "30")
                .header("X-Custom", "old");
        }
        let reply = Reply::new(304)
            .no_body()
            .header("Content-Encoding", "gzip")
            .header("Content-Length", "999")
            .header("Content-Range", "bytes 0-998/999")
            .header("Cache-Control", "max-age=120")
            .header("X-Custom", "new")
            .header("X-From-304", "1");
        if r.target == "/retag" {
            reply.header("ETag", "\"v2\"")
        } else {
            reply
                .header("ETag", "\"v1\"")
                .header("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")
        }
    })
}

/// `/etag` carries an ETag, `/date` only a Last-Modified; both arrive 30 s old with
/// `max-age=60`, and a matching `If-None-Match` / `If-Modified-Since` gets a 304.
fn validating_origin() -> Origin {
    const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    Origin::start(|r| {
        let etag = r.target == "/etag";
        let matches = if etag {
            r.header("if-none-match") == Some("\"v1\"")
        } else {
            r.header("if-modified-since") == Some(LAST_MODIFIED)
        };
        let reply = if matches {
            Reply::new(304).no_body()
        } else {
            Reply::ok("0").header("Age", "30")
        };
        let reply = reply.header("Cache-Control", "max-age=60");
        if etag {
            reply.header("ETag", "\"v1\"")
        } else {
            reply.header("Last-Modified", LAST_MODIFIED)
        }
    })
}
