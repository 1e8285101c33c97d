//! `[server.limits]` and `max_connections`: oversized heads (431), oversized bodies
//! (413), slow heads (408), idle connections, request timeouts (504).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Small limits so that every case is cheap and fast.
const LIMITS: &str = "[server.limits]
max_header_bytes = 1024
max_headers = 10
max_body_bytes = 1000
header_read_timeout_ms = 300
idle_timeout_ms = 300
request_timeout_ms = 5000
";

fn limited(driver: IoDriver, origin: &Origin) -> Gw {
    Gw::start(driver, &simple_config(origin, LIMITS))
}

/// Send `bytes` on a fresh connection; expect a JSON error with `status`, then close.
fn expect_rejection(gw: &Gw, bytes: &[u8], status: u16) -> Response {
    let mut c = gw.client();
    c.send(bytes);
    let resp = c.read_response();
    resp.assert_json_error(status);
    assert!(resp.connection_has("close"), "{}", resp.head);
    c.assert_closed();
    resp
}

both_drivers! {
    fn head_over_max_header_bytes_is_431(driver) {
        let origin = Origin::echo();
        let gw = limited(driver, &origin);
        let req = Req::get("/").header("X-Big", &"a".repeat(1100));
        expect_rejection(&gw, &req.bytes(), 431);
        assert_eq!(origin.connections(), 0);
        // Just under the limit is fine.
        let ok = Req::get("/").header("X-Big", &"a".repeat(900));
        assert!(ok.bytes().len() < 1024);
        assert_eq!(gw.send(&ok).status, 200);
    }

    fn request_line_over_max_header_bytes_is_414(driver) {
        // RFC 9112 3: a request-target longer than the server will parse gets 414, as
        // nginx answers; a head whose request line fits but whose headers do not is 431.
        let origin = Origin::echo();
        let gw = limited(driver, &origin);
        let target = format!("/{}", "p".repeat(2000));
        let resp = expect_rejection(&gw, &Req::get(&target).bytes(), 414);
        assert!(resp.head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{}", resp.head);
        assert_eq!(resp.json()["error"], "uri_too_long");
        let fits = format!("/{}", "p".repeat(900));
        let req = Req::get(&fits).header("X-Big", &"a".repeat(200));
        expect_rejection(&gw, &req.bytes(), 431);
        assert_eq!(origin.connections(), 0);
    }

    fn too_many_headers_is_431(driver) {
        let origin = Origin::echo();
        let gw = limited(driver, &origin);
        let mut req = Req::get("/");
        for i in 0..11 {
            req = req.header(&format!("X-H{i}"), "v");
        }
        expect_rejection(&gw, &req.bytes(), 431);
        assert_eq!(origin.connections(), 0);
        // Exactly max_headers is accepted.
        let mut req = Req::get("/");
        for i in 0..9 {
            req = req.header(&format!("X-H{i}"), "v");
        }
        assert_eq!(gw.send(&req).status, 200);
    }

    fn declared_body_over_limit_is_413_without_contacting_origin(driver) {
        let origin = Origin::echo();
        let gw = limited(driver, &origin);
        // Only the head: a client that sent the whole body would see a reset instead.
        let head = Req::post("/", vec![b'x'; 1001]).head_bytes();
        expect_rejection(&gw, &head, 413);
        assert_eq!(origin.connections(), 0, "origin was contacted");
        let resp = gw.send(&Req::post("/", vec![b'x'; 1000]));
        assert_eq!(resp.status, 200, "a body of exactly max_body_bytes is allowed");
    }

    fn expect_continue_over_limit_gets_413_not_100(driver) {
        let origin = Origin::echo();
        let gw = limited(driver, &origin);
        let head = Req::post("/", vec![b'x'; 5000]).header("Expect", "100-continue").head_bytes();
        let resp = expect_rejection(&gw, &head, 413);
        assert!(!resp.head.contains("100 Continue"));
        assert_eq!(origin.connections(), 0);
    }

    fn chunked_body_over_limit_is_413(driver) {
        let origin = Origin::echo();
        let gw = limited(driver, &origin);
        let big = vec![b'y'; 600];
        let req = Req::post("/", "").chunked(&[&big, &big]);
        let mut c = gw.client();
        c.send(req.head_bytes());
        // Whether the gateway stops reading before the second chunk is its choice.
        c.try_send(req.body_bytes());
        let resp = c.read_response();
        resp.assert_json_error(413);
        c.assert_closed();
        assert!(origin.requests().is_empty(), "origin received a complete request");
    }

    fn per_route_max_body_bytes(driver) {
        let origin = Origin::echo();
        let toml = fill(
            &format!(
                "{LIMITS}
[[upstreams]]
name = \"app\"
servers = [\"{{origin}}\"]

[[routes]]
id = \"small\"
path_prefix = \"/small\"
upstream = \"app\"
max_body_bytes = 10

[[routes]]
id = \"big\"
path_prefix = \"/big\"
upstream = \"app\"
max_body_bytes = 5000
"
            ),
            &[("origin", origin.addr())],
        );
        let gw = Gw::start(driver, &toml);
        assert_eq!(gw.send(&Req::post("/small", "0123456789")).status, 200);
        expect_rejection(&gw, &Req::post("/small", "0123456789a").head_bytes(), 413);
        // The route's limit may be above the server's.
        let resp = gw.send(&Req::post("/big", vec![b'z'; 3000]));
        assert_eq!(resp.status, 200);
        assert_eq!(origin.last_request().body.len(), 3000);
        // Streamed (chunked) bodies obey the route's limit too.
        let mut c = gw.client();
        c.send(Req::post("/small", "").chunked(&[b"0123456789", b"a"]).bytes());
        c.read_response().assert_json_error(413);
        assert_eq!(origin.requests().len(), 2);
    }

    fn stalled_head_is_408_and_closed(driver) {
        let origin = Origin::echo();
        let gw = limited(driver, &origin);
        let mut c = gw.client();
        let t = Instant::now();
        c.send(b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-Slow: ");
        let resp = c.read_response();
        let waited = t.elapsed();
        resp.assert_json_error(408);
        c.assert_closed();
        assert!(waited >= Duration::from_millis(250), "408 after only {waited:?}");
        assert!(waited < Duration::from_secs(3), "408 only after {waited:?}");
        assert_eq!(origin.connections(), 0);
    }

    fn dribbled_head_is_408(driver) {
        // A byte every 50 ms keeps the socket busy but the head is never done: the
        // header clock must not restart on every read.
        let origin = Origin::echo();
        let gw = limited(driver, &origin);
        let mut c = gw.client();
        let mut writer = c.stream().try_clone().unwrap();
        let t = Instant::now();
        let drip = std::thread::spawn(move || {
            use std::io::Write;
            let head = b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-Slow: ";
            for b in head.iter().chain([b'a'; 40].iter()) {
                if writer.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let resp = c.read_response();
        resp.assert_json_error(408);
        assert!(t.elapsed() < Duration::from_millis(2000), "408 only after {:?}", t.elapsed());
        let _ = drip.join();
    }

    fn silent_connection_is_closed(driver) {
        // A connection that never sends a byte is on the header-read clock from accept
        // (not the idle one, 10 times longer here): closed once it runs out, not before,
        // and not much after.
        let origin = Origin::echo();
        let toml = simple_config(
            &origin,
            "[server.limits]\nheader_read_timeout_ms = 500\nidle_timeout_ms = 5000\n",
        );
        let gw = Gw::start(driver, &toml);
        let mut c = gw.client();
        let t = Instant::now();
        let rest = c.read_until_close();
        let took = t.elapsed();
        assert!(
            rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
        // The gateway's clock starts at accept, which is no earlier than our connect
        // returned; timers fire on whole milliseconds.
        assert!(took >= Duration::from_millis(490), "closed after only {took:?}");
        assert!(took < Duration::from_millis(900), "closed only after {took:?}");
        assert_eq!(origin.connections(), 0);
    }

    fn idle_keep_alive_connection_is_closed(driver) {
        let origin = Origin::echo();
        let gw = limited(driver, &origin);
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/")).status, 200);
        let idle = c.time_until_closed();
        assert!(idle >= Duration::from_millis(250), "closed after only {idle:?}");
        assert!(idle < Duration::from_secs(3), "closed only after {idle:?}");
    }

    fn request_timeout_is_504(driver) {
        let origin = Origin::start(|_| Reply::ok("late").delay_ms(1500));
        let toml = simple_config(
            &origin,
            "[server.limits]\nrequest_timeout_ms = 300\n",
        );
        let gw = Gw::start(driver, &toml);
        let mut c = gw.client();
        let t = Instant::now();
        let resp = c.request(&Req::get("/slow"));
        resp.assert_json_error(504);
        assert!(t.elapsed() < Duration::from_millis(1400), "504 only after {:?}", t.elapsed());
        assert!(t.elapsed() >= Duration::from_millis(250));
        c.assert_closed();
    }

    fn route_timeout_overrides_request_timeout(driver) {
        let origin = Origin::start(|_| Reply::ok("late").delay_ms(900));
        let toml = fill(
            "[[upstreams]]
name = \"app\"
servers = [\"{origin}\"]

[[routes]]
id = \"hurried\"
path_prefix = \"/hurried\"
upstream = \"app\"
timeout_ms = 200

[[routes]]
id = \"patient\"
path_prefix = \"/\"
upstream = \"app\"
",
            &[("origin", origin.addr())],
        );
        let gw = Gw::start(driver, &toml);
        let t = Instant::now();
        gw.send(&Req::get("/hurried")).assert_json_error(504);
        assert!(t.elapsed() < Duration::from_millis(800), "504 only after {:?}", t.elapsed());
        let resp = gw.send(&Req::get("/patient"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "late");
    }
}

both_drivers! {
    fn max_connections_refuses_the_excess(driver) {
        let origin = Origin::echo();
        let gw = Gw::start_workers(
            driver,
            2,
            &simple_config(&origin, "[server]\nmax_connections = 2\n"),
        );
        let mut a = gw.client();
        let mut b = gw.client();
        // Both are served (and therefore counted) before the third arrives.
        assert_eq!(a.request(&Req::get("/a")).status, 200);
        assert_eq!(b.request(&Req::get("/b")).status, 200);
        assert_eq!(gw.gateway().refused_connections(), 0);

        let mut third = gw.client();
        let t = Instant::now();
        third.try_send(Req::get("/c").bytes());
        third.assert_closed();
        assert!(t.elapsed() < Duration::from_secs(1), "refusal took {:?}", t.elapsed());
        assert!(gw.gateway().refused_connections() >= 1);
        assert!(!origin.requests().iter().any(|r| r.target == "/c"));

        // The two admitted connections are unaffected.
        assert_eq!(a.request(&Req::get("/a2")).status, 200);
        // Once one leaves, a new connection is admitted again.
        drop(b);
        let mut admitted = None;
        wait_until("a slot to free up", || {
            let mut c = gw.client();
            if !c.try_send(Req::get("/d").bytes()) {
                return false;
            }
            match c.try_read_response("GET") {
                Ok(resp) => {
                    admitted = Some(resp);
                    true
                }
                Err(_) => false,
            }
        });
        assert_eq!(admitted.unwrap().status, 200);
    }
}

both_drivers! {
    fn stalled_second_request_is_408(driver) {
        // The header clock also runs for later requests on a kept-alive connection.
        let origin = Origin::echo();
        let gw = limited(driver, &origin);
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/first")).status, 200);
        c.send(b"GET /second HTTP/1.1\r\nHost: gw.test\r\n");
        let t = Instant::now();
        c.read_response().assert_json_error(408);
        assert!(t.elapsed() < Duration::from_secs(3), "408 only after {:?}", t.elapsed());
        c.assert_closed();
        assert_eq!(origin.requests().len(), 1);
    }
}
