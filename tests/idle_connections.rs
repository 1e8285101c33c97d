//! Connections that wait: a keep-alive connection gives its buffers back once it has
//! been quiet for `buffer_hold` and waits for readability with none (issue 14). What a
//! client sees must not change: requests after the hand-back, pipelined requests that
//! straddle it, and heads that trickle in across it are all served.
//!
//! `buffer_hold_ms` is short here so the hand-back happens within the test; the
//! sleeps are the quiet time under test, not waits for readiness.

mod common;

use std::time::Duration;

use common::*;

/// Longer than `buffer_hold_ms` below, with margin for a loaded machine.
const QUIET: Duration = Duration::from_millis(300);

fn config(origin: &Origin) -> String {
    simple_config(
        origin,
        "[server]\nmax_connections = 10000\n\n[server.limits]\nbuffer_hold_ms = 50\n",
    )
}

/// Raise this process's soft descriptor limit to its hard limit: the test holds both
/// ends of every connection.
fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        lim.current = Some(max);
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile)
        .current
        .unwrap_or(want)
        .min(want)
}

both_drivers! {
    fn thousands_of_idle_connections_then_a_request_on_each(driver) {
        // Both ends of each connection are in this process, plus the origin's side
        // of the upstream pool.
        let n = ((raise_nofile(2 * 1500 + 512) - 512) / 2) as usize;
        assert!(n >= 200, "only {n} connections fit in the descriptor limit");
        eprintln!("{n} idle connections");
        let origin = Origin::echo();
        let gw = Gw::start(driver, &config(&origin));
        // Half make a request and go quiet; half connect and say nothing at first.
        let mut clients: Vec<Client> = (0..n).map(|_| gw.client()).collect();
        for (i, c) in clients.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
            let resp = c.request(&Req::get(&format!("/first/{i}")));
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), format!("GET /first/{i}"));
        }
        std::thread::sleep(QUIET);
        for (i, c) in clients.iter_mut().enumerate() {
            let resp = c.request(&Req::get(&format!("/after/{i}")));
            assert_eq!(resp.status, 200, "connection {i}");
            assert_eq!(resp.text(), format!("GET /after/{i}"));
            assert!(!resp.connection_has("close"));
        }
        // Idle again, then once more on every connection.
        std::thread::sleep(QUIET);
        for (i, c) in clients.iter_mut().enumerate().rev() {
            let resp = c.request(&Req::post(&format!("/again/{i}"), format!("body {i}")));
            assert_eq!(resp.status, 200, "connection {i}");
            assert_eq!(resp.text(), format!("POST /again/{i}"));
        }
        let reqs = origin.requests();
        assert_eq!(reqs.len(), n.div_ceil(2) + 2 * n);
        let post = reqs.iter().find(|r| r.target == "/again/7").unwrap();
        assert_eq!(post.body, b"body 7");
    }
}

both_drivers! {
    fn pipelined_requests_across_the_buffer_hand_back(driver) {
        let origin = Origin::echo();
        let gw = Gw::start(driver, &config(&origin));
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/one")).text(), "GET /one");
        std::thread::sleep(QUIET);
        // Three requests in one write, the first read after the hand-back.
        let mut burst = Req::get("/two").bytes();
        burst.extend(Req::post("/three", "3333").bytes());
        burst.extend(Req::get("/four").bytes());
        c.send(&burst);
        assert_eq!(c.read_response().text(), "GET /two");
        assert_eq!(c.read_response().text(), "POST /three");
        assert_eq!(c.read_response().text(), "GET /four");
        // A request plus the start of the next, whose rest comes after the hold: the
        // buffered half must survive.
        let next = Req::get("/six").bytes();
        let mut first = Req::get("/five").bytes();
        first.extend_from_slice(&next[..7]);
        c.send(&first);
        assert_eq!(c.read_response().text(), "GET /five");
        std::thread::sleep(QUIET);
        c.send(&next[7..]);
        assert_eq!(c.read_response().text(), "GET /six");
        let targets: Vec<String> = origin.requests().into_iter().map(|r| r.target).collect();
        assert_eq!(targets, ["/one", "/two", "/three", "/four", "/five", "/six"]);
        // Garbage after the hand-back is answered as on a busy connection: 400, closed,
        // nothing forwarded.
        std::thread::sleep(QUIET);
        c.send(b"\x16\x03\x01 not http at all\r\n\r\n");
        c.read_response().assert_json_error(400);
        c.assert_closed();
        assert_eq!(origin.requests().len(), 6);
    }
}

both_drivers! {
    fn a_head_that_arrives_one_byte_at_a_time_across_the_hold(driver) {
        let origin = Origin::echo();
        let gw = Gw::start(driver, &config(&origin));
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/warm")).status, 200);
        std::thread::sleep(QUIET);
        // Each byte comes after a pause longer than `buffer_hold`, on a connection
        // that went idle, and then on a fresh one.
        let head = b"GET /slow HTTP/1.1\r\nHost: gw.test\r\n\r\n";
        for mut client in [c, gw.client()] {
            for b in head {
                client.send([*b]);
                std::thread::sleep(Duration::from_millis(70));
            }
            let resp = client.read_response();
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), "GET /slow");
        }
        assert_eq!(origin.requests().len(), 3);
    }
}
