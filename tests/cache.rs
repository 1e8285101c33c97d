//! The cache stage end to end: MISS then HIT without the upstream, Age and X-Cache,
//! HEAD from a GET entry, 304 for a matching If-None-Match, tenant isolation (API keys
//! of two tenants), no-store / private / Set-Cookie never stored, request no-store and
//! no-cache, and an unsafe method dropping the URI's entries.

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
        assert_eq!(c.request(&Req::post("/u", "x")).status, 200);
        let after = c.request(&Req::get("/u"));
        assert_eq!(after.header("x-cache"), Some("MISS"));
        assert_eq!(after.text(), "2");
    }
}
