//! The cache stage end to end, as a client and the origin see it (status, `X-Cache`,
//! body, and how many requests reached the origin):
//!
//! - MISS then HIT without the upstream, Age and X-Cache; HEAD from a GET entry, 304
//!   for a matching If-None-Match; tenant isolation (API keys of two tenants);
//!   no-store / private / Set-Cookie never stored, request no-store and no-cache;
//!   concurrent misses coalesced into one fill; stale-if-error; an unsafe method
//!   dropping the URI's entries.
//! - Expiry: by the response's `max-age`, and by the route's `ttl_s` when the response
//!   says nothing.
//! - The byte budget: a cache with room for a few entries evicts the oldest and keeps
//!   the one asked for over and over; a body over `max_object_bytes` is served whole
//!   but not stored.
//! - Variants: the response's `Vary`, the route's `vary`, and `Vary: *` (never
//!   served from the cache).
//! - A response cut short by the upstream (Content-Length or chunked) is never stored.
//! - Bodies larger than one socket read (Content-Length and chunked) are stored whole.
//! - stale-while-revalidate: the stale answer at once, the refresh in the background.

mod common;

use common::*;

const KEY_A: &str = "cache-test-key-tenant-a";
const KEY_B: &str = "cache-test-key-tenant-b";

fn sha256_hex(s: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

/// The origin answers "<n>" (a counter) with the Cache-Control its path asks for.
fn counting_origin() -> Origin {
    let n = std::sync::atomic::AtomicUsize::new(0);
    Origin::start(move |r| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut reply = Reply::ok(format!("{i}")).header("ETag", "\"v1\"");
        reply = match r.target.as_str() {
            t if t.starts_with("/nostore") => reply.header("Cache-Control", "no-store"),
            t if t.starts_with("/private") => reply.header("Cache-Control", "private"),
            t if t.starts_with("/cookie") => reply.header("Set-Cookie", "s=1"),
            t if t.starts_with("/slow") => {
                reply.header("Cache-Control", "max-age=60").delay_ms(300)
            }
            _ => reply.header("Cache-Control", "max-age=60"),
        };
        reply
    })
}

/// Fresh for one second, then servable on error for a minute; only the first request
/// gets an answer, every later one a hang-up.
fn failing_after_first() -> Origin {
    let n = std::sync::atomic::AtomicUsize::new(0);
    Origin::start(move |_| {
        if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::ok("kept").header("Cache-Control", "max-age=1, stale-if-error=60")
        } else {
            Reply::hang_up()
        }
    })
}

fn gateway(driver: IoDriver, origin: &Origin) -> Gw {
    let toml = fill(
        &format!(
            "[[auth.api_keys.keys]]\nid = \"a\"\nsha256 = \"{}\"\nuser = \"ua\"\ntenant = \"ta\"\n\
             [[auth.api_keys.keys]]\nid = \"b\"\nsha256 = \"{}\"\nuser = \"ub\"\ntenant = \"tb\"\n\
             [plans.free]\nrequests_per_minute = 60000\nburst = 1000\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{{origin}}\"]\n\
             [[routes]]\nid = \"t\"\npath_prefix = \"/t\"\nupstream = \"app\"\n\
             auth = \"required\"\ncache = {{ ttl_s = 30 }}\n\
             [[routes]]\nid = \"c\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
             auth = \"none\"\ncache = {{ ttl_s = 30 }}\n",
            sha256_hex(KEY_A),
            sha256_hex(KEY_B)
        ),
        &[("origin", origin.addr())],
    );
    Gw::start(driver, &toml)
}

/// A gateway without auth: `[cache]` set to `cache` (nothing: the defaults), then the
/// routes `(path_prefix, cache table)` in this order, then a catch-all `ttl_s = 30`.
fn routes_gateway(driver: IoDriver, origin: &Origin, cache: &str, routes: &[(&str, &str)]) -> Gw {
    let mut toml = String::new();
    if !cache.is_empty() {
        toml.push_str(&format!("[cache]\nenabled = true\n{cache}\n"));
    }
    toml.push_str("[[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n");
    for (i, (prefix, table)) in routes.iter().enumerate() {
        toml.push_str(&format!(
            "[[routes]]\nid = \"r{i}\"\npath_prefix = \"{prefix}\"\nupstream = \"app\"\n\
             cache = {{ {table} }}\n"
        ));
    }
    toml.push_str(
        "[[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
         cache = { ttl_s = 30 }\n",
    );
    Gw::start(driver, &fill(&toml, &[("origin", origin.addr())]))
}

fn x_cache(r: &Response) -> &str {
    r.header("x-cache").unwrap_or("(none)")
}

/// The origin answers "<n>" (a counter): fresh for one second by its own `max-age`,
/// except under `/ttl1`, where it sends no Cache-Control (the route's `ttl_s` rules).
fn expiring_origin() -> Origin {
    let n = std::sync::atomic::AtomicUsize::new(0);
    Origin::start(move |r| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let reply = Reply::ok(format!("{i}"));
        if r.target.starts_with("/ttl1") {
            reply
        } else {
            reply.header("Cache-Control", "max-age=1")
        }
    })
}

/// The body [`sized_origin`] sends for `target`: 8 KiB under `/big`, else 4 KiB,
/// its bytes drawn from the target (each key has its own body).
fn sized_body(target: &str) -> Vec<u8> {
    let kib = if target.starts_with("/big") { 8 } else { 4 };
    pattern(kib * 1024, checksum(target.as_bytes()))
}

/// The origin answers [`sized_body`], fresh for a minute.
fn sized_origin() -> Origin {
    Origin::start(|r| Reply::ok(sized_body(&r.target)).header("Cache-Control", "max-age=60"))
}

/// `[cache]` with room for four 4 KiB entries (head, keys and bookkeeping included:
/// 512 bytes is well over what the head and keys of one take), never five: an entry
/// costs at least its body and `ENTRY_OVERHEAD`. One worker, so the whole budget is
/// its share. Objects over 6 KiB are refused.
const SMALL_BUDGET: usize = 4 * (4096 + ringgate::cache::ENTRY_OVERHEAD + 512);
const SMALL_MAX_OBJECT: usize = 6 * 1024;

fn small_cache_gateway(driver: IoDriver, origin: &Origin) -> Gw {
    let cache = format!("max_bytes = {SMALL_BUDGET}\nmax_object_bytes = {SMALL_MAX_OBJECT}\n");
    routes_gateway(driver, origin, &cache, &[])
}

/// The origin answers with the request's Accept-Language, or under `/accept` its
/// Accept ("-" when absent), fresh for a minute. `/lang` says `Vary: Accept-Language`,
/// `/star` says `Vary: *`, `/accept` sends no Vary (its route has `vary = ["Accept"]`).
fn varying_origin() -> Origin {
    Origin::start(|r| {
        let t = r.target.as_str();
        let echoed = if t.starts_with("/accept") {
            "accept"
        } else {
            "accept-language"
        };
        let reply = Reply::ok(r.header(echoed).unwrap_or("-").to_owned())
            .header("Cache-Control", "max-age=60");
        match t {
            t if t.starts_with("/lang") => reply.header("Vary", "Accept-Language"),
            t if t.starts_with("/star") => reply.header("Vary", "*"),
            _ => reply,
        }
    })
}

/// The first request for each path is answered with a body cut short, then the
/// connection closed: under `/cl` a `Content-Length: 100` head with 10 bytes of body,
/// under `/chunked` one whole chunk and half of the next (no last chunk). Every later
/// request gets "complete" (Content-Length), fresh for a minute.
fn truncating_origin() -> Origin {
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    Origin::start(move |r| {
        if !seen.lock().unwrap().insert(r.target.clone()) {
            return Reply::ok("complete").header("Cache-Control", "max-age=60");
        }
        let head = |framing: &str| {
            format!("HTTP/1.1 200 OK\r\n{framing}\r\nCache-Control: max-age=60\r\n\r\n")
        };
        let bytes = if r.target.starts_with("/chunked") {
            head("Transfer-Encoding: chunked") + "a\r\n0123456789\r\n14\r\n01234"
        } else {
            head("Content-Length: 100") + "0123456789"
        };
        Reply::raw(bytes)
    })
}

/// The response to `req` must not be a complete 200: either the connection ends
/// before the body does, or the gateway answers with an error of its own. Nothing of
/// it may say HIT.
fn assert_cut_short(c: &mut Client, req: &Req) {
    match c.try_read_after(req) {
        Err((_, got)) => {
            let got = String::from_utf8_lossy(&got).to_ascii_lowercase();
            assert!(!got.contains("x-cache: hit"), "{got}");
        }
        Ok(r) => {
            assert!(
                r.status >= 500,
                "a cut-short body was answered as complete: {r:#?}"
            );
            assert_ne!(x_cache(&r), "HIT", "{}", r.head);
        }
    }
}

const LARGE: usize = 200 * 1024;
const CHUNKED_TOTAL: usize = 100 * 1024;

fn large_body() -> Vec<u8> {
    pattern(LARGE, 7)
}

fn chunked_body() -> Vec<u8> {
    pattern(CHUNKED_TOTAL, 11)
}

/// The origin answers `/large` with a 200 KiB Content-Length body and `/chunks` with a
/// 100 KiB chunked one (chunks of 1 byte to 50 KiB), both fresh for a minute.
fn large_origin() -> Origin {
    Origin::start(|r| {
        let reply = Reply::new(200).header("Cache-Control", "max-age=60");
        if r.target.starts_with("/chunks") {
            let body = chunked_body();
            let cuts = [0, 1, 4097, 4097 + 16 * 1024 + 3, 50_484, CHUNKED_TOTAL];
            let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &body[w[0]..w[1]]).collect();
            reply.chunked(&chunks, &[])
        } else {
            reply.body(large_body())
        }
    })
}

/// Holds the origin's answer until the test opens it (bounded, so a failed test does
/// not leave the origin's thread waiting for ever).
#[derive(Clone, Default)]
struct Gate {
    open: std::sync::Arc<std::sync::Mutex<bool>>,
    changed: std::sync::Arc<std::sync::Condvar>,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }

    fn wait(&self) {
        let open = self.open.lock().unwrap();
        let _ = self
            .changed
            .wait_timeout_while(open, 2 * IO_TIMEOUT, |o| !*o);
    }
}

/// The origin answers "<n>" (a counter), fresh for one second and then servable while
/// it is revalidated for 30 seconds; its second answer waits for `gate`.
fn swr_origin(gate: Gate) -> Origin {
    let n = std::sync::atomic::AtomicUsize::new(0);
    Origin::start(move |_| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if i == 1 {
            gate.wait();
        }
        Reply::ok(format!("{i}")).header("Cache-Control", "max-age=1, stale-while-revalidate=30")
    })
}

both_drivers! {
    fn miss_then_hit_without_the_upstream(driver) {
        let origin = counting_origin();
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        let first = c.request(&Req::get("/a?x=1"));
        assert_eq!(first.status, 200);
        assert_eq!(first.header("x-cache"), Some("MISS"));
        assert_eq!(first.text(), "0");
        let second = c.request(&Req::get("/a?x=1"));
        assert_eq!(second.status, 200);
        assert_eq!(second.header("x-cache"), Some("HIT"));
        assert_eq!(second.text(), "0");
        assert!(second.header("age").is_some());
        assert_eq!(origin.requests().len(), 1);
        // Another query is another entry.
        assert_eq!(c.request(&Req::get("/a?x=2")).header("x-cache"), Some("MISS"));
        assert_eq!(origin.requests().len(), 2);
    }

    fn head_and_conditional_requests_are_answered_from_a_get_entry(driver) {
        let origin = counting_origin();
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/h")).header("x-cache"), Some("MISS"));
        let head = c.request(&Req::head("/h"));
        assert_eq!(head.status, 200);
        assert_eq!(head.header("x-cache"), Some("HIT"));
        assert_eq!(head.header("content-length"), Some("1"));
        assert!(head.body.is_empty());
        let cond = c.request(&Req::get("/h").header("If-None-Match", "\"v1\""));
        assert_eq!(cond.status, 304);
        assert!(cond.body.is_empty());
        assert_eq!(origin.requests().len(), 1);
    }

    fn tenants_never_share_an_entry(driver) {
        let origin = counting_origin();
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        let a = |c: &mut Client| c.request(&Req::get("/t/x").header("X-API-Key", KEY_A));
        let b = |c: &mut Client| c.request(&Req::get("/t/x").header("X-API-Key", KEY_B));
        assert_eq!(a(&mut c).header("x-cache"), Some("MISS"));
        let rb = b(&mut c);
        assert_eq!(rb.header("x-cache"), Some("MISS"), "tenant b got tenant a's entry");
        assert_eq!(rb.text(), "1");
        assert_eq!(a(&mut c).text(), "0");
        assert_eq!(b(&mut c).text(), "1");
        assert_eq!(origin.requests().len(), 2);
    }

    fn what_a_shared_cache_must_not_store_is_not_stored(driver) {
        let origin = counting_origin();
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        for path in ["/nostore", "/private", "/cookie"] {
            for _ in 0..2 {
                assert_eq!(c.request(&Req::get(path)).header("x-cache"), Some("MISS"), "{path}");
            }
        }
        assert_eq!(origin.requests().len(), 6);
        // A request's no-store bypasses; its no-cache goes upstream again.
        assert_eq!(c.request(&Req::get("/r")).header("x-cache"), Some("MISS"));
        let bypass = c.request(&Req::get("/r").header("Cache-Control", "no-store"));
        assert_eq!(bypass.header("x-cache"), Some("BYPASS"));
        let again = c.request(&Req::get("/r").header("Cache-Control", "no-cache"));
        assert_eq!(again.header("x-cache"), Some("MISS"));
        assert_eq!(origin.requests().len(), 9);
    }

    fn concurrent_misses_reach_the_origin_once(driver) {
        let origin = counting_origin();
        let gw = gateway(driver, &origin);
        let addr = gw.addr;
        let threads: Vec<_> = (0..20)
            .map(|_| {
                std::thread::spawn(move || Client::connect(addr).request(&Req::get("/slow")))
            })
            .collect();
        let answers: Vec<Response> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for r in &answers {
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), "0", "every caller gets the one fetched response");
        }
        // One worker: one fill, however many asked while it was in flight.
        assert_eq!(origin.requests().len(), 1);
        let hits = answers.iter().filter(|r| r.header("x-cache") == Some("HIT")).count();
        assert!(hits >= 1, "waiters are answered from the cache");
    }

    fn stale_if_error_serves_the_old_answer_when_the_upstream_fails(driver) {
        let origin = failing_after_first();
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/e")).header("x-cache"), Some("MISS"));
        // Deliberately let the entry go stale (max-age=1): this sleep is the subject.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let r = gw.client().request(&Req::get("/e"));
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.header("x-cache"), Some("STALE"));
        assert_eq!(r.text(), "kept");
        assert!(origin.requests().len() >= 2, "the upstream was asked first");
    }

    fn an_unsafe_method_drops_the_entry(driver) {
        let origin = counting_origin();
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/u")).text(), "0");
        assert_eq!(c.request(&Req::get("/u")).header("x-cache"), Some("HIT"));
        let post = c.request(&Req::post("/u", "x"));
        assert_eq!((post.status, post.header("x-cache")), (200, Some("BYPASS")));
        let after = c.request(&Req::get("/u"));
        assert_eq!(after.header("x-cache"), Some("MISS"));
        assert_eq!(after.text(), "2");
    }
}

both_drivers! {
    fn entries_expire_by_max_age_and_by_the_route_ttl(driver) {
        let origin = expiring_origin();
        let gw = routes_gateway(driver, &origin, "", &[("/ttl1", "ttl_s = 1")]);
        let mut c = gw.client();
        // "/short": the response's max-age=1; "/ttl1/x": no Cache-Control, route ttl_s = 1.
        let paths = ["/short", "/ttl1/x"];
        let mut before = Vec::new();
        for path in paths {
            let miss = c.request(&Req::get(path));
            assert_eq!(miss.status, 200, "{path}");
            assert_eq!(x_cache(&miss), "MISS", "{path}");
            let hit = c.request(&Req::get(path));
            assert_eq!(x_cache(&hit), "HIT", "{path}");
            assert_eq!(hit.text(), miss.text(), "{path}");
            before.push(miss.text());
        }
        assert_eq!(origin.requests().len(), 2);
        // Expiry is the subject here: let both entries age past their one second (one
        // sleep for both).
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let mut c = gw.client();
        for (path, old) in paths.iter().zip(&before) {
            let r = c.request(&Req::get(path));
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(x_cache(&r), "MISS", "{path}: served after it expired");
            assert_ne!(&r.text(), old, "{path}: the expired body came back");
            // The new answer is stored in turn.
            let again = c.request(&Req::get(path));
            assert_eq!(x_cache(&again), "HIT", "{path}");
            assert_eq!(again.text(), r.text(), "{path}");
        }
        assert_eq!(origin.requests().len(), 4);
    }

    fn the_byte_budget_evicts_old_entries_and_keeps_a_hot_one(driver) {
        let origin = sized_origin();
        let gw = small_cache_gateway(driver, &origin);
        let mut c = gw.client();
        let mut get = |path: &str| {
            let r = c.request(&Req::get(path));
            assert_eq!(r.status, 200, "{path}: {}", r.head);
            assert!(r.body == sized_body(path), "{path}: wrong body");
            x_cache(&r).to_owned()
        };
        const N: usize = 10;
        assert_eq!(get("/hot"), "MISS");
        // Ten 4 KiB keys through a cache with room for four: each is fetched once, and
        // the hot key, asked for after each of them, stays.
        for i in 0..N {
            assert_eq!(get(&format!("/k/{i}")), "MISS", "/k/{i}");
            assert_eq!(get("/hot"), "HIT", "the hot key was evicted after /k/{i}");
        }
        assert_eq!(origin.requests().len(), 1 + N);
        // Again, newest first: the newest key is still there, the oldest is not. Every
        // key that hits now was held at the start of this pass, together with /hot.
        let mut hits = 0;
        for i in (0..N).rev() {
            let x = get(&format!("/k/{i}"));
            match x.as_str() {
                "HIT" => hits += 1,
                "MISS" => {}
                other => panic!("/k/{i}: X-Cache {other}"),
            }
            if i == N - 1 {
                assert_eq!(x, "HIT", "the newest entry went");
            }
            if i == 0 {
                assert_eq!(x, "MISS", "the oldest entry is still there");
            }
            assert_eq!(get("/hot"), "HIT", "the hot key was evicted after /k/{i}");
        }
        let room = SMALL_BUDGET / (4096 + ringgate::cache::ENTRY_OVERHEAD);
        assert!(hits < room, "{hits} keys and /hot were held at once in room for {room}");
        assert_eq!(origin.requests().len(), 1 + N + (N - hits), "every MISS went upstream");
    }

    fn a_body_over_max_object_bytes_is_served_whole_and_not_stored(driver) {
        let origin = sized_origin();
        let gw = small_cache_gateway(driver, &origin);
        let mut c = gw.client();
        assert!(sized_body("/big").len() > SMALL_MAX_OBJECT);
        for _ in 0..2 {
            let r = c.request(&Req::get("/big"));
            assert_eq!(r.status, 200);
            assert_eq!(x_cache(&r), "MISS");
            assert_eq!(r.body.len(), 8 * 1024);
            assert!(r.body == sized_body("/big"), "the large body was altered");
        }
        assert_eq!(origin.requests().len(), 2);
        // The same gateway stores a small one.
        assert_eq!(x_cache(&c.request(&Req::get("/small"))), "MISS");
        assert_eq!(x_cache(&c.request(&Req::get("/small"))), "HIT");
        assert_eq!(origin.requests().len(), 3);
    }

    fn each_value_of_a_vary_header_gets_its_own_entry(driver) {
        let origin = varying_origin();
        let gw = routes_gateway(driver, &origin, "", &[]);
        let mut c = gw.client();
        let mut get = |lang: Option<&str>| {
            let req = match lang {
                Some(l) => Req::get("/lang").header("Accept-Language", l),
                None => Req::get("/lang"),
            };
            let r = c.request(&req);
            assert_eq!(r.status, 200);
            (x_cache(&r).to_owned(), r.text())
        };
        assert_eq!(get(Some("en")), ("MISS".into(), "en".into()));
        assert_eq!(get(Some("fr-CH")), ("MISS".into(), "fr-CH".into()), "got en's entry");
        assert_eq!(get(None), ("MISS".into(), "-".into()), "no Accept-Language is a value too");
        assert_eq!(origin.requests().len(), 3);
        for _ in 0..2 {
            assert_eq!(get(Some("en")), ("HIT".into(), "en".into()));
            assert_eq!(get(Some("fr-CH")), ("HIT".into(), "fr-CH".into()));
            assert_eq!(get(None), ("HIT".into(), "-".into()));
        }
        assert_eq!(origin.requests().len(), 3);
    }

    fn a_route_vary_keeps_one_entry_per_value(driver) {
        let origin = varying_origin();
        let route = ("/accept", "ttl_s = 30, vary = [\"Accept\"]");
        let gw = routes_gateway(driver, &origin, "", &[route]);
        let mut c = gw.client();
        let mut get = |accept: &str| {
            let r = c.request(&Req::get("/accept/x").header("Accept", accept));
            assert_eq!(r.status, 200);
            (x_cache(&r).to_owned(), r.text())
        };
        let (json, text) = ("application/json", "text/plain");
        assert_eq!(get(json), ("MISS".into(), json.into()));
        assert_eq!(get(text), ("MISS".into(), text.into()), "got the JSON entry");
        assert_eq!(get(json), ("HIT".into(), json.into()));
        assert_eq!(get(text), ("HIT".into(), text.into()));
        assert_eq!(origin.requests().len(), 2);
    }

    fn vary_star_is_never_served_from_the_cache(driver) {
        let origin = varying_origin();
        let gw = routes_gateway(driver, &origin, "", &[]);
        let mut c = gw.client();
        for i in 1..=2 {
            let r = c.request(&Req::get("/star").header("Accept-Language", "en"));
            assert_eq!(r.status, 200);
            assert_eq!(x_cache(&r), "MISS", "request {i}");
            assert_eq!(r.text(), "en");
            assert_eq!(origin.requests().len(), i);
        }
    }

    fn a_content_length_body_cut_short_is_not_stored(driver) {
        let origin = truncating_origin();
        let gw = routes_gateway(driver, &origin, "", &[]);
        assert_cut_short(&mut gw.client(), &Req::get("/cl"));
        assert_eq!(origin.requests().len(), 1);
        // The connection was closed; on a new one the key goes upstream again.
        let mut c = gw.client();
        let r = c.request(&Req::get("/cl"));
        assert_eq!(r.status, 200);
        assert_eq!(x_cache(&r), "MISS", "the cut-short body was stored");
        assert_eq!(r.text(), "complete");
        assert_eq!(origin.requests().len(), 2);
        // The key is cacheable: the complete answer is stored.
        let hit = c.request(&Req::get("/cl"));
        assert_eq!((x_cache(&hit), hit.text().as_str()), ("HIT", "complete"));
        assert_eq!(origin.requests().len(), 2);
    }

    fn a_chunked_body_cut_short_is_not_stored(driver) {
        let origin = truncating_origin();
        let gw = routes_gateway(driver, &origin, "", &[]);
        assert_cut_short(&mut gw.client(), &Req::get("/chunked"));
        assert_eq!(origin.requests().len(), 1);
        let mut c = gw.client();
        let r = c.request(&Req::get("/chunked"));
        assert_eq!(r.status, 200);
        assert_eq!(x_cache(&r), "MISS", "the cut-short body was stored");
        assert_eq!(r.text(), "complete");
        assert_eq!(origin.requests().len(), 2);
        let hit = c.request(&Req::get("/chunked"));
        assert_eq!((x_cache(&hit), hit.text().as_str()), ("HIT", "complete"));
        assert_eq!(origin.requests().len(), 2);
    }

    fn a_body_larger_than_one_read_is_stored_whole(driver) {
        let origin = large_origin();
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        let want = checksum(&large_body());
        let miss = c.request(&Req::get("/large"));
        assert_eq!((miss.status, x_cache(&miss)), (200, "MISS"));
        assert_eq!(miss.body.len(), LARGE);
        assert_eq!(checksum(&miss.body), want);
        let hit = c.request(&Req::get("/large"));
        assert_eq!((hit.status, x_cache(&hit)), (200, "HIT"), "{}", hit.head);
        assert_eq!(hit.body.len(), LARGE);
        assert_eq!(checksum(&hit.body), want, "the stored body differs");
        assert_eq!(origin.requests().len(), 1);
    }

    fn a_chunked_body_larger_than_one_read_is_stored_whole(driver) {
        let origin = large_origin();
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        let want = checksum(&chunked_body());
        let miss = c.request(&Req::get("/chunks"));
        assert_eq!((miss.status, x_cache(&miss)), (200, "MISS"));
        assert_eq!(miss.body.len(), CHUNKED_TOTAL);
        assert_eq!(checksum(&miss.body), want);
        // The hit may be framed with Content-Length; its bytes must be the same.
        let hit = c.request(&Req::get("/chunks"));
        assert_eq!((hit.status, x_cache(&hit)), (200, "HIT"), "{}", hit.head);
        assert_eq!(hit.body.len(), CHUNKED_TOTAL);
        assert_eq!(checksum(&hit.body), want, "the stored body differs");
        assert_eq!(origin.requests().len(), 1);
    }

    fn stale_while_revalidate_answers_at_once_and_refreshes_behind(driver) {
        let gate = Gate::default();
        let origin = swr_origin(gate.clone());
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        let first = c.request(&Req::get("/swr"));
        assert_eq!((first.status, x_cache(&first), first.text().as_str()), (200, "MISS", "0"));
        // Staleness is the subject here: let the entry age past its max-age=1, well inside
        // its 30 s stale-while-revalidate window.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        // The origin holds its answer to the refresh until the gate opens: the stale answer
        // must come without waiting for it.
        let mut c = gw.client();
        let stale = c.try_read_after(&Req::get("/swr")).unwrap_or_else(|(e, got)| {
            panic!(
                "no answer while the refresh was held ({e:?}); got {:?}",
                String::from_utf8_lossy(&got)
            )
        });
        assert_eq!((stale.status, x_cache(&stale)), (200, "STALE"), "{}", stale.head);
        assert_eq!(stale.text(), "0");
        origin.wait_requests(2);
        gate.open();
        // Until the refresh is stored the stale answer goes on (and no other refresh
        // starts); then the new body is a HIT.
        let mut fresh = None;
        wait_until("the refreshed entry", || {
            let r = c.request(&Req::get("/swr"));
            match x_cache(&r) {
                "STALE" => assert_eq!(r.text(), "0"),
                "HIT" => fresh = Some(r),
                other => panic!("X-Cache {other} while refreshing: {}", r.head),
            }
            fresh.is_some()
        });
        assert_eq!(fresh.unwrap().text(), "1");
        assert_eq!(origin.requests().len(), 2, "one refresh");
    }

    fn a_background_refresh_asks_with_the_entrys_validators(driver) {
        // Unchanged at the origin: the refresh sends the stored ETag and gets a 304,
        // which freshens the entry without the body crossing again.
        let origin = Origin::start(|r| {
            let reply = if r.header("if-none-match") == Some("\"v1\"") {
                Reply::new(304).no_body()
            } else {
                Reply::ok("body-v1")
            };
            reply
                .header("Cache-Control", "max-age=1, stale-while-revalidate=30")
                .header("ETag", "\"v1\"")
        });
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        let first = c.request(&Req::get("/v"));
        assert_eq!((x_cache(&first), first.text().as_str()), ("MISS", "body-v1"));
        assert_eq!(origin.requests()[0].header("if-none-match"), None);
        // Staleness is the subject: let the entry age past max-age=1.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let stale = c.request(&Req::get("/v"));
        assert_eq!((x_cache(&stale), stale.text().as_str()), ("STALE", "body-v1"), "{}", stale.head);
        origin.wait_requests(2);
        assert_eq!(origin.requests()[1].header("if-none-match"), Some("\"v1\""));
        let mut fresh = None;
        wait_until("the freshened entry", || {
            let r = c.request(&Req::get("/v"));
            match x_cache(&r) {
                "STALE" => {}
                "HIT" => fresh = Some(r),
                other => panic!("X-Cache {other} while refreshing: {}", r.head),
            }
            fresh.is_some()
        });
        let fresh = fresh.unwrap();
        assert_eq!(fresh.text(), "body-v1");
        assert_eq!(fresh.header("etag"), Some("\"v1\""));
        let age: u64 = fresh.header("age").unwrap().parse().unwrap();
        assert!(age < 2, "the 304 did not restart the age: {}", fresh.head);
        assert_eq!(origin.requests().len(), 2, "one conditional refresh");
    }

    fn a_background_refresh_survives_a_pooled_connection_the_origin_closed(driver) {
        // Every answer is followed by a silent close: the pooled connection the refresh
        // takes first is dead, and the refresh must go on over a new one.
        let n = std::sync::atomic::AtomicUsize::new(0);
        let origin = Origin::start(move |_| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Reply::ok(format!("{i}"))
                .header("Cache-Control", "max-age=1, stale-while-revalidate=30")
                .close_after()
        });
        let gw = gateway(driver, &origin);
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/sc")).text(), "0");
        origin.wait_closed(1);
        // Staleness is the subject: let the entry age past max-age=1.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let stale = c.request(&Req::get("/sc"));
        assert_eq!((x_cache(&stale), stale.text().as_str()), ("STALE", "0"), "{}", stale.head);
        // That one request's refresh reaches the origin (no later request needed).
        origin.wait_requests(2);
        let mut fresh = None;
        wait_until("the refreshed entry", || {
            let r = c.request(&Req::get("/sc"));
            if x_cache(&r) == "HIT" {
                fresh = Some(r.text());
            }
            fresh.is_some()
        });
        assert_eq!(fresh.as_deref(), Some("1"));
    }
}
