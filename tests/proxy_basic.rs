//! Basic proxying: methods, byte-exact targets, keep-alive on both sides, HTTP/1.0
//! clients, pipelining.

mod common;

use common::*;

both_drivers! {
    fn get_is_forwarded(driver) {
        let origin = Origin::start(|_| Reply::ok("hello").header("X-Origin", "yes"));
        let gw = Gw::simple(driver, &origin);
        let resp = gw.send(&Req::get("/hello"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "hello");
        assert_eq!(resp.header("x-origin"), Some("yes"));
        assert_eq!(resp.header("content-length"), Some("5"));
        let r = origin.only_request();
        assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/hello"));
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.all("host"), [HOST]);
        assert!(r.body.is_empty());
        assert!(!r.has("content-length"), "GET without body got a length: {r:?}");
    }

    fn path_and_query_are_forwarded_byte_for_byte(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        for target in [
            "/a%2Fb/c;v=1/d",
            "/search?a=1&b=%20&c=%2F&d=%zz",
            "/x/../y/./z?",
            "/%E2%82%AC/~user/!$&'()*+,;=:@?q=a/b?c",
            "//double//slash",
        ] {
            let resp = c.request(&Req::get(target));
            assert_eq!(resp.status, 200, "{target}");
            assert_eq!(origin.last_request().target, target);
        }
    }

    fn post_body_is_forwarded(driver) {
        let origin = Origin::start(|r| Reply::new(201).body(format!("got {}", r.body.len())));
        let gw = Gw::simple(driver, &origin);
        let req = Req::post("/items", "{\"name\":\"x\"}")
            .header("Content-Type", "application/json");
        let resp = gw.send(&req);
        assert_eq!(resp.status, 201);
        assert_eq!(resp.text(), "got 12");
        let r = origin.only_request();
        assert_eq!(r.method, "POST");
        assert_eq!(r.body, b"{\"name\":\"x\"}");
        assert_eq!(r.header("content-length"), Some("12"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(!r.chunked);
    }

    fn head_gets_headers_without_body(driver) {
        let origin = Origin::start(|_| Reply::ok("0123456789"));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::head("/doc"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-length"), Some("10"));
        assert_eq!(origin.only_request().method, "HEAD");
        // Had the gateway sent a body, it would be read as the next response's head.
        let next = c.request(&Req::get("/doc"));
        assert_eq!(next.status, 200);
        assert_eq!(next.text(), "0123456789");
    }

    fn keep_alive_reuses_one_upstream_connection(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        for i in 0..3 {
            let resp = c.request(&Req::get(&format!("/n/{i}")));
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), format!("GET /n/{i}"));
            assert!(!resp.connection_has("close"), "{}", resp.head);
        }
        assert_eq!(origin.requests().len(), 3);
        assert_eq!(origin.connections(), 1, "upstream connection was not reused");
        // A second client connection shares the worker's pool.
        assert_eq!(gw.send(&Req::get("/other")).status, 200);
        assert_eq!(origin.connections(), 1, "pool not shared across client connections");
    }

    fn http10_client_gets_close(driver) {
        let origin = Origin::start(|_| Reply::ok("old"));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/").http10());
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "old");
        assert!(resp.connection_has("close"), "{}", resp.head);
        c.assert_closed();
        let r = origin.only_request();
        assert_eq!(r.version, "HTTP/1.1", "the gateway speaks HTTP/1.1 upstream");
        assert_eq!(r.header("host"), Some(HOST));
    }

    fn http10_keep_alive_stays_open(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        for path in ["/one", "/two"] {
            let resp = c.request(&Req::get(path).http10().header("Connection", "keep-alive"));
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), format!("GET {path}"));
            assert!(resp.connection_has("keep-alive"), "{}", resp.head);
            assert_eq!(resp.header("content-length"), Some(&*format!("{}", 4 + path.len())));
        }
        assert_eq!(origin.requests().len(), 2);
    }

    fn http10_without_host_still_sends_host_upstream(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let resp = gw.send(&Req::get("/legacy").http10().no_host());
        assert_eq!(resp.status, 200);
        let r = origin.only_request();
        assert_eq!(r.version, "HTTP/1.1");
        // RFC 9112 3.2: an HTTP/1.1 request MUST carry Host (empty when there is no
        // authority); a strict origin answers 400 otherwise.
        assert_eq!(r.all("host").len(), 1, "origin got no Host: {:?}", r.headers);
    }

    fn later_http1_minor_versions_are_served_as_http11(driver) {
        // RFC 9112 2.3: a higher minor version is processed as the highest one implemented
        // (nginx does the same); a different major version is 505.
        let origin = Origin::start(|r| {
            Reply::ok(format!("{} {} {}", r.method, r.target, String::from_utf8_lossy(&r.body)))
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        for _ in 0..2 {
            let resp = c.request(&Req::post("/minor", "abc").version("HTTP/1.2"));
            assert_eq!(resp.status, 200, "{}", resp.head);
            assert_eq!(resp.version, "HTTP/1.1");
            assert_eq!(resp.text(), "POST /minor abc");
            assert!(!resp.connection_has("close"), "kept alive as 1.1: {}", resp.head);
        }
        let r = origin.last_request();
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.body, b"abc");
        assert_eq!(origin.requests().len(), 2);
        let resp = gw.send(&Req::get("/").version("HTTP/1.10"));
        resp.assert_json_error(400);
        let resp = gw.send(&Req::get("/").version("HTTP/2.0"));
        resp.assert_json_error(505);
        assert_eq!(origin.requests().len(), 2);
    }

    fn pipelined_requests_are_answered_in_order(driver) {
        let origin =
            Origin::start(|r| Reply::ok(format!("{} {} {}", r.method, r.target, r.body.len())));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let mut all = Req::get("/first").bytes();
        all.extend(Req::post("/second", "abcdef").bytes());
        all.extend(Req::get("/third").bytes());
        c.send(all);
        assert_eq!(c.read_response().text(), "GET /first 0");
        assert_eq!(c.read_response().text(), "POST /second 6");
        assert_eq!(c.read_response().text(), "GET /third 0");
        let targets: Vec<String> = origin.requests().into_iter().map(|r| r.target).collect();
        assert_eq!(targets, ["/first", "/second", "/third"]);
    }

    fn client_connection_close_is_honoured(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/bye").header("Connection", "close"));
        assert_eq!(resp.status, 200);
        assert!(resp.connection_has("close"), "{}", resp.head);
        c.assert_closed();
    }

    fn upstream_status_and_reason_are_relayed(driver) {
        let origin = Origin::start(|_| Reply::new(503).body("down").header("Retry-After", "5"));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/"));
        assert_eq!(resp.status, 503);
        assert_eq!(resp.reason, "Service Unavailable");
        assert_eq!(resp.header("retry-after"), Some("5"));
        assert_eq!(resp.text(), "down");
        // An origin error is not a gateway error: the connection stays usable.
        assert_eq!(c.request(&Req::get("/")).status, 503);
    }
}

both_drivers! {
    fn two_workers_serve_concurrent_clients(driver) {
        let origin = Origin::echo();
        let gw = Gw::start_workers(driver, 2, &simple_config(&origin, ""));
        let addr = gw.addr;
        let threads: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    for i in 0..10 {
                        let path = format!("/t{t}/r{i}");
                        let resp = c.request(&Req::get(&path));
                        assert_eq!(resp.status, 200);
                        assert_eq!(resp.text(), format!("GET {path}"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(origin.requests().len(), 80);
        // Each worker pools its own upstream connections: at most one per client here.
        assert!(origin.connections() <= 8, "{} upstream connections", origin.connections());
    }
}

both_drivers! {
    fn half_closed_client_still_gets_its_response(driver) {
        let origin = Origin::start(|_| Reply::ok("for you").delay_ms(100));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        c.send(Req::get("/").bytes());
        c.stream().shutdown(std::net::Shutdown::Write).unwrap();
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "for you");
        c.assert_closed();
    }
}
