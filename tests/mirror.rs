//! Request mirroring (`mirror = ["shadow"]`) end to end, on both drivers: the mirror
//! gets an exact copy (method, target, headers, body byte for byte, in memory, streamed
//! or chunked), and nothing it does (dead, stalled, answering 500 or garbage, too slow
//! to keep up) changes the client's response or its latency; copies past the in-flight
//! bound or the body bound are dropped and counted in `/metrics`; requests refused
//! before going upstream are not copied; a failing primary does not stop the copy.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::tokens::api_key_digest;
use common::*;

const API_KEY: &str = "mirror-test-key";

/// A gateway with a primary `app` and a mirror `shadow`: route `/m` mirrors, `/auth`
/// mirrors but needs an API key, `/plain` does not mirror. `server` is added to
/// `[server]`.
fn gateway(driver: IoDriver, primary: SocketAddr, shadow: SocketAddr, server: &str) -> Gw {
    let toml = format!(
        "[server]\n{server}\n\
         [[auth.api_keys.keys]]\nid = \"k\"\nsha256 = \"{}\"\nuser = \"u\"\ntenant = \"t\"\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{{primary}}\"]\nresponse_timeout_ms = 3000\n\
         [[upstreams]]\nname = \"shadow\"\nservers = [\"{{shadow}}\"]\nresponse_timeout_ms = 3000\n\
         connect_timeout_ms = 3000\n\
         request_headers = {{ \"X-Mirror\" = \"shadow\" }}\n\
         [[routes]]\nid = \"auth\"\npath_prefix = \"/auth\"\nupstream = \"app\"\nauth = \"required\"\n\
         mirror = [\"shadow\"]\n\
         [[routes]]\nid = \"plain\"\npath_prefix = \"/plain\"\nupstream = \"app\"\n\
         [[routes]]\nid = \"m\"\npath_prefix = \"/\"\nupstream = \"app\"\nmirror = [\"shadow\"]\n",
        api_key_digest(API_KEY)
    );
    Gw::start(
        driver,
        &fill(&toml, &[("primary", primary), ("shadow", shadow)]),
    )
}

fn scrape(gw: &Gw) -> prometheus_parse::Scrape {
    let admin = gw.gateway().admin_addr().expect("an admin listener");
    let r = Client::connect(admin).request(&Req::get("/metrics"));
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// `ringgate_mirror_requests_total{upstream="shadow", result}`.
fn mirrored(gw: &Gw, result: &str) -> f64 {
    let s = scrape(gw);
    s.samples
        .iter()
        .filter(|x| {
            x.metric == "ringgate_mirror_requests_total"
                && x.labels.get("upstream") == Some("shadow")
                && x.labels.get("result") == Some(result)
        })
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Wait (polling the admin API, no sleep-for-readiness) until the counter reaches `n`.
fn wait_mirrored(gw: &Gw, result: &str, n: f64) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while mirrored(gw, result) < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} mirror copies {result}: ok {}, failed {}, dropped {}",
            mirrored(gw, "ok"),
            mirrored(gw, "failed"),
            mirrored(gw, "dropped")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The fields both copies must share, as the primary got them.
fn same_request(primary: &Recorded, copy: &Recorded) {
    assert_eq!(copy.method, primary.method);
    assert_eq!(copy.target, primary.target);
    assert_eq!(copy.body, primary.body);
    for name in [
        "host",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "content-type",
        "x-custom",
        "content-length",
    ] {
        assert_eq!(copy.header(name), primary.header(name), "{name}");
    }
}

both_drivers! {
    fn the_mirror_gets_an_exact_copy(driver) {
        let (app, shadow) = (Origin::echo(), Origin::echo());
        let gw = gateway(driver, app.addr(), shadow.addr(), "");
        let mut c = gw.client();

        // A small body, in memory with the head.
        let body = br#"{"reading": 21.5, "unit": "C"}"#.to_vec();
        let req = Req::post("/ingest/v1?device=7&x=%20y", body.clone())
            .header("Content-Type", "application/json")
            .header("X-Custom", "one")
            .header("X-Request-ID", "req-mirror-1");
        let resp = c.request(&req);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "POST /ingest/v1?device=7&x=%20y");
        let copy = &shadow.wait_requests(1)[0];
        let got = app.only_request();
        same_request(&got, copy);
        assert_eq!(copy.body, body);
        assert_eq!(copy.header("x-request-id"), Some("req-mirror-1"));
        assert_eq!(copy.header("host"), Some(HOST));
        // The mirror upstream's own request_headers, not the primary's.
        assert_eq!(copy.header("x-mirror"), Some("shadow"));
        assert!(!got.has("x-mirror"));

        // A GET with no body.
        c.request(&Req::get("/items?page=2").header("X-Custom", "two"));
        let copy = &shadow.wait_requests(2)[1];
        same_request(&app.wait_requests(2)[1], copy);
        assert_eq!(copy.method, "GET");
        assert!(copy.body.is_empty());

        // A body too large to travel with the head: streamed, copied as relayed.
        let big = pattern(300 * 1024, 7);
        let resp = c.request(&Req::post("/upload", big.clone()).header("X-Custom", "big"));
        assert_eq!(resp.status, 200);
        let copy = &shadow.wait_requests(3)[2];
        assert_eq!(copy.body.len(), big.len());
        assert_eq!(checksum(&copy.body), checksum(&big));
        same_request(&app.wait_requests(3)[2], copy);

        // Chunked from the client: chunked to both, the same bytes.
        let resp = c.request(
            &Req::new("POST", "/chunks").chunked(&[b"hello ", b"mirrored ", b"world"]),
        );
        assert_eq!(resp.status, 200);
        let copy = &shadow.wait_requests(4)[3];
        let got = &app.wait_requests(4)[3];
        assert_eq!(copy.body, b"hello mirrored world");
        assert_eq!(got.body, copy.body);
        assert!(copy.chunked && got.chunked);

        // A route without `mirror` is not copied.
        c.request(&Req::get("/plain/x"));
        app.wait_requests(5);
        wait_mirrored(&gw, "ok", 4.0);
        assert_eq!(shadow.requests().len(), 4);
        assert!(shadow.errors().is_empty(), "{:?}", shadow.errors());
        assert_eq!(mirrored(&gw, "dropped"), 0.0);
        assert_eq!(mirrored(&gw, "failed"), 0.0);
    }

    fn many_concurrent_copies_arrive_whole_on_a_few_connections(driver) {
        let (app, shadow) = (Origin::echo(), Origin::echo());
        let gw = gateway(driver, app.addr(), shadow.addr(), "mirror_max_in_flight = 1000");
        let addr = gw.addr;
        let clients: Vec<_> = (0..16)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    for i in 0..20 {
                        let body = format!("client {t} request {i}");
                        let resp = c.request(&Req::post(&format!("/c/{t}/{i}"), body));
                        assert_eq!(resp.status, 200);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let copies = shadow.wait_requests(320);
        wait_mirrored(&gw, "ok", 320.0);
        assert_eq!(copies.len(), 320);
        let mut seen: Vec<_> = copies
            .iter()
            .map(|r| {
                let (t, i) = r.target[3..].split_once('/').unwrap();
                assert_eq!(r.body, format!("client {t} request {i}").as_bytes());
                (t.parse::<u32>().unwrap(), i.parse::<u32>().unwrap())
            })
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 320, "each request copied exactly once");
        // Copies share a few connections per worker (pipelined when they queue up).
        assert!(shadow.connections() <= 8, "{} connections", shadow.connections());
        assert!(shadow.errors().is_empty(), "{:?}", shadow.errors());
        assert_eq!(mirrored(&gw, "failed") + mirrored(&gw, "dropped"), 0.0);
    }

    fn a_reload_changes_the_mirrors(driver) {
        let (app, one, two) = (Origin::echo(), Origin::echo(), Origin::echo());
        let config = |mirror: &str| {
            let text = fill(
                &format!(
                    "[[upstreams]]\nname = \"app\"\nservers = [\"{{app}}\"]\n\
                     [[upstreams]]\nname = \"one\"\nservers = [\"{{one}}\"]\n\
                     [[upstreams]]\nname = \"two\"\nservers = [\"{{two}}\"]\n\
                     [[routes]]\nid = \"m\"\npath_prefix = \"/\"\nupstream = \"app\"\n{mirror}\n"
                ),
                &[("app", app.addr()), ("one", one.addr()), ("two", two.addr())],
            );
            text
        };
        let gw = Gw::start(driver, &config("mirror = [\"one\"]"));
        let reload = |text: &str| {
            let text = without_auth(&render_config(text, driver, 1));
            let cfg = Config::parse(&text, "reload.toml").unwrap();
            gw.gateway().reload(cfg).expect("reload applied");
        };
        gw.send(&Req::get("/first"));
        assert_eq!(one.wait_requests(1)[0].target, "/first");
        reload(&config("mirror = [\"two\", \"app\"]"));
        gw.send(&Req::get("/second"));
        assert_eq!(two.wait_requests(1)[0].target, "/second");
        // The route's own upstream as a mirror: it gets the request twice.
        let got = app.wait_requests(3);
        assert_eq!(got.iter().filter(|r| r.target == "/second").count(), 2);
        reload(&config(""));
        gw.send(&Req::get("/third"));
        gw.send(&Req::get("/marker"));
        app.wait_requests(5);
        assert_eq!(one.requests().len(), 1);
        assert_eq!(two.requests().len(), 1);
        assert_eq!(app.requests().iter().filter(|r| r.target == "/third").count(), 1);
    }

    fn a_dead_mirror_changes_nothing_for_the_client(driver) {
        let app = Origin::echo();
        let gw = gateway(driver, app.addr(), dead_addr(), "");
        let mut c = gw.client();
        for i in 0..20 {
            let t = Instant::now();
            let resp = c.request(&Req::post(&format!("/d/{i}"), format!("body {i}")));
            assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), format!("POST /d/{i}"));
            assert_eq!(app.last_request().body, format!("body {i}").as_bytes());
        }
        wait_mirrored(&gw, "failed", 20.0);
        assert_eq!(mirrored(&gw, "ok"), 0.0);
    }

    fn a_stalled_mirror_neither_slows_the_client_nor_queues_without_bound(driver) {
        let app = Origin::echo();
        // Answers each copy after 2 s.
        let shadow = Origin::start(|_| Reply::ok("late").delay_ms(2000));
        let gw = gateway(driver, app.addr(), shadow.addr(), "mirror_max_in_flight = 4");
        let mut c = gw.client();
        let started = Instant::now();
        for i in 0..20 {
            let t = Instant::now();
            let resp = c.request(&Req::post(&format!("/s/{i}"), "x".repeat(100)));
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "request {i} took {:?} while the mirror stalls",
                t.elapsed()
            );
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), format!("POST /s/{i}"));
        }
        // All twenty answered before the first copy was answered.
        assert!(started.elapsed() < Duration::from_millis(2000), "{:?}", started.elapsed());
        // Four copies under way at once, the other sixteen dropped and counted.
        let copies = shadow.wait_requests(4);
        assert_eq!(mirrored(&gw, "dropped"), 16.0);
        assert_eq!(copies.len(), 4);
        // The first four (on four connections, so in any order).
        let mut targets: Vec<_> = copies.iter().map(|r| r.target.as_str()).collect();
        targets.sort();
        assert_eq!(targets, ["/s/0", "/s/1", "/s/2", "/s/3"]);
        // Once they are answered, the bound lets copies through again.
        wait_mirrored(&gw, "ok", 4.0);
        c.request(&Req::get("/after"));
        assert_eq!(shadow.wait_requests(5)[4].target, "/after");
        assert_eq!(app.requests().len(), 21);
    }

    fn a_mirror_that_never_accepts_does_not_slow_the_client(driver) {
        let app = Origin::echo();
        let hole = blackhole();
        let gw = gateway(driver, app.addr(), hole.addr, "mirror_max_in_flight = 2");
        let mut c = gw.client();
        for i in 0..6 {
            let t = Instant::now();
            let resp = c.request(&Req::get(&format!("/h/{i}")));
            assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
            assert_eq!(resp.text(), format!("GET /h/{i}"));
        }
        // Two copies wait on their connect; the others were dropped.
        wait_mirrored(&gw, "dropped", 4.0);
        assert_eq!(mirrored(&gw, "failed"), 0.0);
    }

    fn a_mirror_answering_500_or_garbage_changes_nothing(driver) {
        let app = Origin::echo();
        let n = std::sync::atomic::AtomicUsize::new(0);
        let shadow = Origin::start(move |_| {
            match n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 3 {
                0 => Reply::new(500).body("broken"),
                1 => Reply::raw("NOT HTTP AT ALL\r\n\r\n"),
                _ => Reply::hang_up(),
            }
        });
        let gw = gateway(driver, app.addr(), shadow.addr(), "");
        let mut c = gw.client();
        for i in 0..9 {
            let resp = c.request(&Req::post(&format!("/g/{i}"), "payload"));
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), format!("POST /g/{i}"));
            assert!(!resp.has("x-mirror"));
        }
        wait_mirrored(&gw, "failed", 9.0);
        assert_eq!(mirrored(&gw, "ok"), 0.0);
    }

    fn requests_refused_before_the_upstream_are_not_mirrored(driver) {
        let (app, shadow) = (Origin::echo(), Origin::echo());
        let gw = gateway(driver, app.addr(), shadow.addr(), "");
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/auth/secret")).status, 401);
        // The same route with the key: copied, with the credential stripped as for the
        // primary.
        let resp = c.request(&Req::get("/auth/ok").header("X-API-Key", API_KEY));
        assert_eq!(resp.status, 200);
        let copy = &shadow.wait_requests(1)[0];
        assert_eq!(copy.target, "/auth/ok");
        assert!(!copy.has("x-api-key"));
        assert_eq!(copy.header("x-user-id"), Some("u"));
        // A body over the route's limit is refused (413) before going anywhere.
        drop(c);
        let gw2 = gateway(driver, app.addr(), shadow.addr(), "[server.limits]\nmax_body_bytes = 10");
        let resp = gw2.send(&Req::post("/too/big", "x".repeat(100)));
        assert_eq!(resp.status, 413);
        gw2.send(&Req::get("/marker"));
        assert_eq!(shadow.wait_requests(2)[1].target, "/marker");
        assert_eq!(shadow.requests().len(), 2);
        assert_eq!(app.requests().len(), 2);
    }

    fn a_failing_primary_still_sends_the_copy(driver) {
        // As nginx's mirror subrequest: the copy goes whatever the main request's fate.
        let shadow = Origin::echo();
        let gw = gateway(driver, dead_addr(), shadow.addr(), "");
        let resp = gw.send(&Req::post("/fails", "data"));
        resp.assert_json_error(502);
        let copy = &shadow.wait_requests(1)[0];
        assert_eq!(copy.target, "/fails");
        assert_eq!(copy.body, b"data");
    }

    fn bodies_over_the_mirror_bound_are_not_copied(driver) {
        let (app, shadow) = (Origin::echo(), Origin::echo());
        let gw = gateway(driver, app.addr(), shadow.addr(), "mirror_max_body_bytes = 1000");
        let mut c = gw.client();
        // Declared too large: not copied; the primary gets it whole.
        let big = pattern(5000, 1);
        assert_eq!(c.request(&Req::post("/big", big.clone())).status, 200);
        assert_eq!(app.last_request().body, big);
        // Chunked, growing past the bound while it streams: the copy is given up.
        let chunks: Vec<Vec<u8>> = (0..4).map(|i| pattern(600, i)).collect();
        let refs: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
        assert_eq!(c.request(&Req::new("POST", "/chunked").chunked(&refs)).status, 200);
        assert_eq!(app.last_request().body, chunks.concat());
        // Within the bound: copied.
        assert_eq!(c.request(&Req::post("/small", "fits")).status, 200);
        assert_eq!(shadow.wait_requests(1)[0].target, "/small");
        assert_eq!(mirrored(&gw, "dropped"), 2.0);
        wait_mirrored(&gw, "ok", 1.0);
        assert_eq!(shadow.requests().len(), 1);
    }
}

#[test]
fn mirror_keys_are_checked_at_load() {
    let base = "[[upstreams]]\nname = \"app\"\nservers = [\"127.0.0.1:1\"]\n\
                [[upstreams]]\nname = \"shadow\"\nservers = [\"127.0.0.1:2\"]\n";
    let load = |route: &str| Config::parse(&format!("{base}[[routes]]\n{route}"), "m.toml");
    let ok = load("id = \"r\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\nmirror = [\"shadow\", \"app\"]\n")
        .unwrap();
    assert_eq!(ok.routes[0].mirror, vec![1, 0]);
    let err = load("id = \"r\"\npath_prefix = \"/\"\nupstream = \"app\"\nmirror = [\"nope\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routes.\"r\".mirror[0]") && err.contains("m.toml:"),
        "{err}"
    );
    let err = load(
        "id = \"r\"\npath_prefix = \"/\"\nupstream = \"app\"\nmirror = [\"shadow\", \"shadow\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("mirror[1]") && err.contains("twice"), "{err}");
    let err = load(
        "id = \"r\"\npath_prefix = \"/\"\nrespond = { status = 200 }\nmirror = [\"shadow\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("mirror") && err.contains("respond"), "{err}");
    // Routes that send their own requests: compose's GETs, fanout's destinations.
    let err = load(
        "id = \"r\"\npath_prefix = \"/\"\ncompose = [{ name = \"a\", upstream = \"app\", path = \"/a\" }]\nmirror = [\"shadow\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("mirror") && err.contains("compose"), "{err}");
    let err = load(
        "id = \"r\"\npath_prefix = \"/\"\nfanout = { upstreams = [\"app\", \"shadow\"] }\nmirror = [\"shadow\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("mirror") && err.contains("fanout"), "{err}");
    let err = Config::parse(
        &format!("[server]\nmirror_max_in_flight = 0\n{base}"),
        "m.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("server.mirror_max_in_flight"), "{err}");
}
