//! Proxy header semantics: hop-by-hop headers removed in both directions (RFC 9110
//! 7.6.1), X-Forwarded-For/-Proto/-Host, X-Request-ID.

mod common;

use common::*;

/// Hop-by-hop names that must never cross the gateway.
const HOP_BY_HOP: &[&str] = &["keep-alive", "te", "upgrade", "proxy-connection", "trailer"];

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

both_drivers! {
    fn request_hop_by_hop_headers_are_removed(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(
            &Req::get("/")
                .header("Connection", "X-Foo, close")
                .header("X-Foo", "1")
                .header("Keep-Alive", "timeout=5")
                .header("TE", "trailers")
                .header("Upgrade", "h2c")
                .header("Proxy-Connection", "keep-alive")
                .header("Trailer", "X-Checksum")
                .header("X-Kept", "yes"),
        );
        assert_eq!(resp.status, 200);
        assert!(resp.connection_has("close"), "{}", resp.head);
        c.assert_closed();
        let r = origin.only_request();
        for name in HOP_BY_HOP.iter().chain(&["x-foo"]) {
            assert!(!r.has(name), "origin received {name}: {:?}", r.headers);
        }
        for v in r.all("connection") {
            assert!(!v.to_ascii_lowercase().contains("x-foo"), "Connection: {v}");
        }
        assert_eq!(r.header("x-kept"), Some("yes"));
    }

    fn connection_tokens_are_matched_case_insensitively(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let resp = gw.send(
            &Req::get("/")
                .header("Connection", "x-one,  X-TWO ")
                .header("X-One", "1")
                .header("x-two", "2")
                .header("X-Three", "3"),
        );
        assert_eq!(resp.status, 200);
        let r = origin.only_request();
        assert!(!r.has("x-one") && !r.has("x-two"), "{:?}", r.headers);
        assert_eq!(r.header("x-three"), Some("3"));
    }

    fn response_hop_by_hop_headers_are_removed(driver) {
        let origin = Origin::start(|_| {
            Reply::ok("body")
                .header("Connection", "X-Bar")
                .header("X-Bar", "secret")
                .header("Keep-Alive", "timeout=5")
                .header("Upgrade", "h2c")
                .header("Proxy-Connection", "keep-alive")
                .header("X-Kept", "yes")
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "body");
        for name in HOP_BY_HOP.iter().chain(&["x-bar"]) {
            assert!(!resp.has(name), "client received {name}:\n{}", resp.head);
        }
        for v in resp.all("connection") {
            assert!(!v.to_ascii_lowercase().contains("x-bar"), "Connection: {v}");
        }
        assert_eq!(resp.header("x-kept"), Some("yes"));
        // The origin's Connection header did not end the client's connection.
        assert_eq!(c.request(&Req::get("/")).status, 200);
    }

    fn a_response_without_date_gets_the_gateways(driver) {
        // RFC 9110 6.6.1: a proxy with a clock adds Date when the origin sent none; an
        // origin's own Date is relayed unchanged, once.
        let origin = Origin::start(|r| {
            if r.target == "/dated" {
                Reply::ok("x").header("Date", "Sun, 06 Nov 1994 08:49:37 GMT")
            } else {
                Reply::ok("x")
            }
        });
        let gw = Gw::simple(driver, &origin);
        let before = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
        let resp = gw.send(&Req::get("/"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.all("date").len(), 1, "{}", resp.head);
        let date = httpdate::parse_http_date(resp.header("date").unwrap()).expect("an HTTP-date");
        assert!(date >= before, "{}", resp.head);
        assert!(date <= std::time::SystemTime::now() + std::time::Duration::from_secs(2));
        let resp = gw.send(&Req::get("/dated"));
        assert_eq!(resp.all("date"), ["Sun, 06 Nov 1994 08:49:37 GMT"], "{}", resp.head);
        // A route that sets Date itself gets its own, once.
        let toml = fill(
            "[[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\n\
             [[routes]]\nid = \"d\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
             response_headers.add = { \"Date\" = \"Mon, 07 Nov 1994 08:49:37 GMT\" }\n",
            &[("origin", origin.addr())],
        );
        let gw = Gw::start(driver, &toml);
        let resp = gw.send(&Req::get("/"));
        assert_eq!(resp.all("date"), ["Mon, 07 Nov 1994 08:49:37 GMT"], "{}", resp.head);
    }

    fn x_forwarded_headers_replace_an_untrusted_peers(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let resp = gw.send(
            &Req::get("/")
                .host("api.example.com:8080")
                .header("X-Forwarded-For", "6.6.6.6")
                .header("X-Forwarded-For", "7.7.7.7")
                .header("X-Forwarded-Proto", "https")
                .header("X-Forwarded-Host", "evil.example"),
        );
        assert_eq!(resp.status, 200);
        let r = origin.only_request();
        assert_eq!(r.all("x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(r.all("x-forwarded-proto"), ["http"]);
        assert_eq!(r.all("x-forwarded-host"), ["api.example.com:8080"]);
        assert_eq!(r.all("host"), ["api.example.com:8080"]);
    }

    fn x_forwarded_for_is_extended_for_a_trusted_proxy(driver) {
        let origin = Origin::echo();
        let gw = Gw::start(
            driver,
            &simple_config(&origin, "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n"),
        );
        let resp = gw.send(
            &Req::get("/")
                .header("X-Forwarded-For", "1.2.3.4")
                .header("X-Forwarded-Proto", "https"),
        );
        assert_eq!(resp.status, 200);
        let r = origin.only_request();
        assert_eq!(r.all("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
        assert_eq!(r.all("x-forwarded-proto"), ["https"]);
        assert_eq!(r.all("x-forwarded-host"), [HOST]);

        // Several fields from the trusted proxy are merged into one list, in order.
        let resp = gw.send(
            &Req::get("/")
                .header("X-Forwarded-For", "1.1.1.1, 2.2.2.2")
                .header("X-Forwarded-For", "3.3.3.3"),
        );
        assert_eq!(resp.status, 200);
        let r = origin.last_request();
        assert_eq!(r.all("x-forwarded-for"), ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"]);
        assert_eq!(r.all("x-forwarded-proto"), ["http"]);
    }

    fn trusted_proxy_without_xff_gets_the_peer_address(driver) {
        let origin = Origin::echo();
        let gw = Gw::start(
            driver,
            &simple_config(&origin, "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n"),
        );
        assert_eq!(gw.send(&Req::get("/")).status, 200);
        assert_eq!(origin.only_request().all("x-forwarded-for"), ["127.0.0.1"]);
    }

    fn request_id_is_generated_when_absent(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let first = c.request(&Req::get("/"));
        let second = c.request(&Req::get("/"));
        let ids: Vec<String> = [&first, &second]
            .iter()
            .map(|r| {
                let v = r.all("x-request-id");
                assert_eq!(v.len(), 1, "{}", r.head);
                v[0].to_owned()
            })
            .collect();
        for id in &ids {
            assert!(is_hex32(id), "not 32 hex digits: {id:?}");
        }
        assert_ne!(ids[0], ids[1], "request ids repeat");
        let seen: Vec<String> = origin
            .requests()
            .iter()
            .map(|r| {
                assert_eq!(r.all("x-request-id").len(), 1);
                r.header("x-request-id").unwrap().to_owned()
            })
            .collect();
        assert_eq!(seen, ids, "origin and client see different ids");
    }

    fn request_id_is_passed_through_when_present(driver) {
        let origin = Origin::start(|_| Reply::ok("x").header("X-Request-ID", "from-origin"));
        let gw = Gw::simple(driver, &origin);
        let resp = gw.send(&Req::get("/").header("X-Request-ID", "client-id-123"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.all("x-request-id"), ["client-id-123"]);
        assert_eq!(origin.only_request().all("x-request-id"), ["client-id-123"]);
    }

    fn end_to_end_headers_keep_order_and_repeats(driver) {
        let origin = Origin::start(|_| {
            Reply::ok("x")
                .header("Set-Cookie", "a=1")
                .header("Set-Cookie", "b=2")
                .header("Cache-Control", "no-store")
        });
        let gw = Gw::simple(driver, &origin);
        let resp = gw.send(
            &Req::get("/")
                .header("Accept", "text/plain")
                .header("X-Multi", "one")
                .header("X-Multi", "two")
                .header("Cookie", "k=v"),
        );
        assert_eq!(resp.all("set-cookie"), ["a=1", "b=2"]);
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        let r = origin.only_request();
        assert_eq!(r.all("x-multi"), ["one", "two"]);
        assert_eq!(r.header("accept"), Some("text/plain"));
        assert_eq!(r.header("cookie"), Some("k=v"));
    }
}

both_drivers! {
    fn obs_text_header_values_are_forwarded_verbatim(driver) {
        // RFC 9110 5.5: field values may hold obs-text (0x80-0xFF); they are opaque.
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        c.send(b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-Name: caf\xe9 \xff\r\n\r\n");
        assert_eq!(c.read_response().status, 200);
        let raw = origin.only_request().raw;
        let needle = b"X-Name: caf\xe9 \xff\r\n";
        assert!(
            raw.windows(needle.len()).any(|w| w == needle),
            "{:?}",
            String::from_utf8_lossy(&raw)
        );
    }
}

both_drivers! {
    fn odd_request_ids_are_escaped_or_replaced(driver) {
        let origin = Origin::echo();
        let toml = fill(
            "[[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\n\
             [[routes]]\nid = \"only\"\npath_prefix = \"/only\"\nupstream = \"app\"\nauth = \"none\"\n",
            &[("origin", origin.addr())],
        );
        let gw = Gw::start(driver, &toml);
        let mut c = gw.client();
        // Quotes and backslashes survive the JSON error body intact.
        let resp = c.request(&Req::get("/x").header("X-Request-ID", "a\"b\\c</script>"));
        resp.assert_json_error(404);
        assert_eq!(resp.json()["request_id"], "a\"b\\c</script>");
        // An absurdly long id is not trusted: a fresh one is generated.
        let long = "x".repeat(300);
        let resp = c.request(&Req::get("/only").header("X-Request-ID", &long));
        assert_eq!(resp.status, 200);
        let id = resp.header("x-request-id").unwrap();
        assert_ne!(id, long);
        assert_eq!(origin.only_request().all("x-request-id"), [id]);
    }
}
