//! Upstreams: balancing, connection failures and timeouts, retries, pooled connections
//! (reuse, staleness, expiry), and broken responses.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// One upstream "app" over `servers` (TOML array items, with `{name}` placeholders),
/// with `extra` keys, behind a catch-all route.
fn upstream_config(servers: &str, extra: &str, subs: &[(&str, std::net::SocketAddr)]) -> String {
    fill(
        &format!(
            "[[upstreams]]\nname = \"app\"\nservers = [{servers}]\n{extra}\n\n\
             [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n"
        ),
        subs,
    )
}

fn two_servers(driver: IoDriver, a: &Origin, b: &Origin, extra: &str) -> Gw {
    let toml = upstream_config(
        "\"{a}\", \"{b}\"",
        extra,
        &[("a", a.addr()), ("b", b.addr())],
    );
    Gw::start(driver, &toml)
}

/// Bodies of `n` GETs on one connection.
fn bodies(gw: &Gw, n: usize, req: &Req) -> Vec<String> {
    let mut c = gw.client();
    (0..n)
        .map(|_| {
            let resp = c.request(req);
            assert_eq!(resp.status, 200, "{}", resp.text());
            resp.text()
        })
        .collect()
}

both_drivers! {
    fn round_robin_alternates(driver) {
        let (a, b) = (Origin::named("a"), Origin::named("b"));
        let gw = two_servers(driver, &a, &b, "balance = \"round_robin\"");
        let got = bodies(&gw, 10, &Req::get("/"));
        for pair in got.windows(2) {
            assert_ne!(pair[0], pair[1], "not alternating: {got:?}");
        }
        assert_eq!((a.requests().len(), b.requests().len()), (5, 5));
    }

    fn weighted_round_robin(driver) {
        let (a, b) = (Origin::named("a"), Origin::named("b"));
        let toml = upstream_config(
            "{ address = \"{a}\", weight = 3 }, { address = \"{b}\", weight = 1 }",
            "",
            &[("a", a.addr()), ("b", b.addr())],
        );
        let gw = Gw::start(driver, &toml);
        let got = bodies(&gw, 40, &Req::get("/"));
        assert_eq!(got.iter().filter(|s| *s == "a").count(), 30, "{got:?}");
        // Smooth: never more than three of "a" in a row.
        assert!(!got.join("").contains("aaaa"), "{got:?}");
    }

    fn hash_on_header_is_sticky(driver) {
        let origins = [Origin::named("a"), Origin::named("b"), Origin::named("c")];
        let toml = upstream_config(
            "\"{a}\", \"{b}\", \"{c}\"",
            "balance = \"hash:X-User\"",
            &[("a", origins[0].addr()), ("b", origins[1].addr()), ("c", origins[2].addr())],
        );
        let gw = Gw::start(driver, &toml);
        let mut c = gw.client();
        let mut first_choice = std::collections::HashMap::new();
        for round in 0..3 {
            for user in 0..30 {
                let resp = c.request(&Req::get("/").header("X-User", &format!("user-{user}")));
                assert_eq!(resp.status, 200);
                let prev = first_choice.entry(user).or_insert_with(|| resp.text());
                assert_eq!(*prev, resp.text(), "user-{user} moved in round {round}");
            }
        }
        let used: std::collections::HashSet<&String> = first_choice.values().collect();
        assert!(used.len() >= 2, "30 users all hashed to one server: {used:?}");
    }

    fn least_request_avoids_the_busy_server(driver) {
        let slow = |name: &'static str| Origin::start(move |_| Reply::ok(name).delay_ms(800));
        let (a, b) = (slow("a"), slow("b"));
        let gw = two_servers(driver, &a, &b, "balance = \"least_request\"");
        let mut first = gw.client();
        first.send(Req::get("/1").bytes());
        // The first request is in flight at one origin ...
        wait_until("the first request to arrive", || a.requests().len() + b.requests().len() == 1);
        let busy = if a.requests().is_empty() { "b" } else { "a" };
        // ... so the second must go to the other one.
        let second = gw.send(&Req::get("/2"));
        assert_eq!(second.status, 200);
        assert_ne!(second.text(), busy);
        assert_eq!(first.read_response().text(), busy);
    }

    fn random_two_uses_both_servers(driver) {
        let (a, b) = (Origin::named("a"), Origin::named("b"));
        let gw = two_servers(driver, &a, &b, "balance = \"random_two\"");
        let got = bodies(&gw, 200, &Req::get("/"));
        let on_a = got.iter().filter(|s| *s == "a").count();
        assert!((40..=160).contains(&on_a), "a got {on_a} of 200");
    }

    fn connection_refused_is_502(driver) {
        let toml = upstream_config("\"{dead}\"", "", &[("dead", dead_addr())]);
        let gw = Gw::start(driver, &toml);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/"));
        assert_eq!(resp.assert_json_error(502), "bad_gateway");
        // HEAD gets the same status and no body.
        let mut c = gw.client();
        assert_eq!(c.request(&Req::head("/")).status, 502);
    }

    fn connect_timeout_is_502(driver) {
        let hole = blackhole();
        let extra = "connect_timeout_ms = 200\nretries = 0";
        let toml = upstream_config("\"{hole}\"", extra, &[("hole", hole.addr)]);
        let gw = Gw::start(driver, &toml);
        let t = Instant::now();
        let resp = gw.send(&Req::get("/"));
        resp.assert_json_error(502);
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(150), "502 after only {took:?}");
        assert!(took < Duration::from_millis(900), "502 only after {took:?}");
    }

    fn response_timeout_is_504(driver) {
        let origin = Origin::start(|_| Reply::ok("late").delay_ms(1000));
        let toml = upstream_config("\"{o}\"", "response_timeout_ms = 200", &[("o", origin.addr())]);
        let gw = Gw::start(driver, &toml);
        let t = Instant::now();
        let resp = gw.send(&Req::get("/"));
        assert_eq!(resp.assert_json_error(504), "gateway_timeout");
        assert!(t.elapsed() < Duration::from_millis(900), "504 only after {:?}", t.elapsed());
        assert_eq!(origin.requests().len(), 1, "a single server is never tried twice");
    }

    fn get_is_retried_on_the_next_server(driver) {
        let live = Origin::named("live");
        let toml = upstream_config(
            "{ address = \"{dead}\", weight = 5 }, \"{live}\"",
            "retries = 1",
            &[("dead", dead_addr()), ("live", live.addr())],
        );
        let gw = Gw::start(driver, &toml);
        let got = bodies(&gw, 6, &Req::get("/"));
        assert!(got.iter().all(|s| s == "live"), "{got:?}");
        assert_eq!(live.requests().len(), 6, "each GET reached the live server once");
    }

    fn get_is_retried_after_a_hang_up(driver) {
        let (a, b) = (Origin::start(|_| Reply::hang_up()), Origin::named("b"));
        let gw = two_servers(driver, &a, &b, "retries = 1");
        let resp = gw.send(&Req::get("/"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "b");
        assert_eq!(a.requests().len(), 1);
        assert_eq!(b.requests().len(), 1);
    }

    fn post_is_not_retried(driver) {
        // The first pick is the heavier server: the dead one, then the one hanging up.
        let b = Origin::named("b");
        let toml = upstream_config(
            "{ address = \"{dead}\", weight = 5 }, \"{b}\"",
            "retries = 1",
            &[("dead", dead_addr()), ("b", b.addr())],
        );
        let gw = Gw::start(driver, &toml);
        gw.send(&Req::post("/", "pay once")).assert_json_error(502);
        assert!(b.requests().is_empty(), "POST was retried");

        let a = Origin::start(|_| Reply::hang_up());
        let toml = upstream_config(
            "{ address = \"{a}\", weight = 5 }, \"{b}\"",
            "retries = 1",
            &[("a", a.addr()), ("b", b.addr())],
        );
        let gw = Gw::start(driver, &toml);
        gw.send(&Req::post("/", "pay once")).assert_json_error(502);
        assert_eq!(a.requests().len(), 1);
        assert!(b.requests().is_empty(), "POST was retried");
    }

    fn retries_never_hit_the_same_server_twice(driver) {
        let a = Origin::start(|_| Reply::hang_up());
        let toml = upstream_config("\"{a}\"", "retries = 3", &[("a", a.addr())]);
        let gw = Gw::start(driver, &toml);
        gw.send(&Req::get("/")).assert_json_error(502);
        assert_eq!(a.requests().len(), 1);
    }

    fn stale_pooled_connection_is_retried(driver) {
        // The origin drops each connection right after its first response, without
        // saying so, as an origin with a short keep-alive timeout does.
        let origin = Origin::start(|_| Reply::ok("fresh").close_after());
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/1")).status, 200);
        origin.wait_closed(1);
        let resp = c.request(&Req::get("/2"));
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.text(), "fresh");
        assert_eq!(origin.requests().len(), 2);
        assert_eq!(origin.connections(), 2);
    }

    fn pooled_connections_expire(driver) {
        // No sleep decides this: the gateway closing the idle pooled connection (its
        // idle sweep, which the origin sees as EOF) is the event waited for.
        let origin = Origin::echo();
        let toml = upstream_config("\"{o}\"", "idle_timeout_ms = 100", &[("o", origin.addr())]);
        let gw = Gw::start(driver, &toml);
        let mut c = gw.client();
        assert_eq!(c.request(&Req::get("/")).status, 200);
        assert_eq!(c.request(&Req::get("/")).status, 200);
        let pooled_at = Instant::now();
        assert_eq!(origin.connections(), 1);
        origin.wait_closed(1);
        let idle = pooled_at.elapsed();
        // (Less the moment between the pool taking it back and our reading the answer.)
        assert!(idle >= Duration::from_millis(90), "closed after only {idle:?} idle");
        assert_eq!(c.request(&Req::get("/")).status, 200);
        assert_eq!(origin.connections(), 2, "an expired connection was reused");
    }

    fn max_idle_zero_disables_pooling(driver) {
        let origin = Origin::echo();
        let toml = upstream_config("\"{o}\"", "max_idle_per_worker = 0", &[("o", origin.addr())]);
        let gw = Gw::start(driver, &toml);
        bodies(&gw, 3, &Req::get("/"));
        assert_eq!(origin.connections(), 3);
    }

    fn malformed_responses_are_502(driver) {
        for raw in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Le",
        ] {
            let origin = Origin::start(move |_| Reply::raw(raw));
            let gw = Gw::simple(driver, &origin);
            let mut c = gw.client();
            let resp = c.try_read_after(&Req::get("/"));
            let what = String::from_utf8_lossy(raw);
            match resp {
                Ok(resp) => {
                    resp.assert_json_error(502);
                    assert!(resp.connection_has("close"), "{what}: {}", resp.head);
                    c.assert_closed();
                }
                Err(e) => panic!("{what}: {e:?}"),
            }
        }
    }

    fn invalid_chunked_body_before_anything_was_sent_is_502(driver) {
        // Head and broken body arrive together: nothing has gone to the client yet, so
        // the gateway can still answer 502 (RFC 9110 15.6.3) instead of a bare close.
        let origin = Origin::start(|_| {
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
            Reply::raw(format!("{head}zz\r\nabc\r\n0\r\n\r\n"))
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        match c.try_read_after(&Req::get("/")) {
            Ok(resp) => {
                resp.assert_json_error(502);
                c.assert_closed();
            }
            Err((e, got)) => panic!("no response ({e:?}), got {:?}", String::from_utf8_lossy(&got)),
        }
    }

    fn invalid_chunk_mid_body_cuts_the_client_off(driver) {
        // Once part of the body was relayed, the only signal left is the close; the
        // last chunk must not be sent.
        let origin = Origin::start(|_| {
            let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            let big = vec![b'x'; 40_000];
            raw.extend_from_slice(format!("{:x}\r\n", big.len()).as_bytes());
            raw.extend_from_slice(&big);
            raw.extend_from_slice(b"\r\nzz\r\nabc\r\n0\r\n\r\n");
            Reply::raw(raw)
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        match c.try_read_after(&Req::get("/")) {
            Err((Ended::Closed, got)) => {
                assert!(!got.ends_with(b"0\r\n\r\n"), "a broken body was completed");
            }
            Err((Ended::Bad(e), _)) => panic!("the gateway relayed broken framing: {e}"),
            other => panic!("expected a cut-off response, got {other:?}"),
        }
    }

    fn interim_responses_are_relayed_to_http11_clients_only(driver) {
        // RFC 9110 15.2: a proxy forwards 1xx responses, without their hop-by-hop
        // fields; not to HTTP/1.0 clients, and not a 100 the gateway did not ask for.
        let origin = Origin::start(|_| {
            Reply::raw(
                &b"HTTP/1.1 100 Continue\r\n\r\n\
                   HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\
                   Connection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n\
                   HTTP/1.1 102 Processing\r\n\r\n\
                   HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
            )
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        for _ in 0..2 {
            c.send(Req::get("/").bytes());
            let hints = c.read_response();
            assert_eq!(hints.status, 103, "{}", hints.head);
            assert!(hints.head.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{}", hints.head);
            assert_eq!(hints.header("link"), Some("</s.css>; rel=preload"));
            for hop in ["connection", "x-hop", "keep-alive"] {
                assert!(!hints.has(hop), "{hop} relayed: {}", hints.head);
            }
            assert!(hints.body.is_empty());
            let processing = c.read_response();
            assert_eq!(processing.status, 102, "{}", processing.head);
            let resp = c.read_response();
            assert_eq!(resp.status, 200, "{}", resp.head);
            assert_eq!(resp.text(), "ok");
        }
        // An HTTP/1.0 client gets the final response only.
        let mut old = gw.client();
        let resp = old.request(&Req::get("/").http10());
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert_eq!(resp.text(), "ok");
        old.assert_closed();
        assert_eq!(origin.requests().len(), 3);
    }

    fn later_http1_minor_version_from_the_upstream_is_read_as_11(driver) {
        // RFC 9112 2.3, as nginx does; the connection stays in the pool as 1.1's would.
        let origin =
            Origin::start(|_| Reply::raw(&b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).keep_open());
        let gw = Gw::simple(driver, &origin);
        for _ in 0..2 {
            let resp = gw.send(&Req::get("/"));
            assert_eq!(resp.status, 200, "{}", resp.head);
            assert!(resp.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", resp.head);
            assert_eq!(resp.text(), "ok");
        }
        assert_eq!(origin.connections(), 1);
    }

    fn transfer_encoding_identity_is_no_coding(driver) {
        // "identity" was withdrawn from HTTP/1.1; an origin that still sends it means no
        // coding at all. As nginx does, its Content-Length frames the body.
        let origin = Origin::start(|_| {
            Reply::raw(
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nok"[..],
            )
            .keep_open()
        });
        let gw = Gw::simple(driver, &origin);
        for _ in 0..2 {
            let resp = gw.send(&Req::get("/"));
            assert_eq!(resp.status, 200, "{}", resp.head);
            assert_eq!(resp.header("content-length"), Some("2"), "{}", resp.head);
            assert!(!resp.has("transfer-encoding"), "{}", resp.head);
            assert_eq!(resp.text(), "ok");
        }
        assert_eq!(origin.connections(), 1);
    }

    fn truncated_length_body_closes_the_client(driver) {
        let origin = Origin::start(|_| {
            Reply::raw(&b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"[..])
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        match c.try_read_after(&Req::get("/")) {
            Err((Ended::Closed, got)) => {
                let got = String::from_utf8_lossy(&got).into_owned();
                assert!(got.starts_with("HTTP/1.1 200"), "{got}");
                assert!(got.ends_with("\r\n\r\n0123456789"), "{got}");
            }
            other => panic!("expected a cut-off response, got {other:?}"),
        }
    }

    fn truncated_chunked_body_is_not_completed(driver) {
        let origin = Origin::start(|_| {
            Reply::raw(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"[..])
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        match c.try_read_after(&Req::get("/")) {
            Err((Ended::Closed, got)) => {
                let got = String::from_utf8_lossy(&got).into_owned();
                assert!(got.contains("hello"), "{got}");
                assert!(!got.ends_with("0\r\n\r\n"), "a truncated body was completed: {got}");
            }
            other => panic!("expected a cut-off response, got {other:?}"),
        }
    }

    fn ambiguous_framing_is_never_reused(driver) {
        // Transfer-Encoding wins over Content-Length (RFC 9112 6.3), but the
        // connection cannot be trusted afterwards.
        let origin = Origin::start(|_| {
            Reply::new(200)
                .header("Content-Length", "3")
                .chunked(&[b"abc"], &[])
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        for _ in 0..2 {
            let resp = c.request(&Req::get("/"));
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), "abc");
            let both = resp.has("content-length") && resp.has("transfer-encoding");
            assert!(!both, "{}", resp.head);
        }
        assert_eq!(origin.connections(), 2);
    }
}

both_drivers! {
    fn upstream_connection_close_is_honoured(driver) {
        // The origin says close but leaves the socket open: reusing it would be wrong
        // even though it would happen to work.
        let origin = Origin::start(|_| Reply::ok("bye").header("Connection", "close"));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        for _ in 0..2 {
            let resp = c.request(&Req::get("/"));
            assert_eq!(resp.text(), "bye");
            assert!(!resp.connection_has("close"), "{}", resp.head);
        }
        assert_eq!(origin.connections(), 2);
    }

    fn http10_upstream_response_is_not_reused(driver) {
        let origin = Origin::start(|_| {
            Reply::raw(&b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).keep_open()
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        for _ in 0..2 {
            let resp = c.request(&Req::get("/"));
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), "ok");
            assert_eq!(resp.version, "HTTP/1.1");
        }
        assert_eq!(origin.connections(), 2);
    }
}

both_drivers! {
    fn transfer_codings_other_than_chunked_are_not_dropped(driver) {
        // The gateway does not decode gzip, so it must not strip the label either:
        // the client would take the compressed bytes for the content.
        let gz: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03compressed-ish";
        let origin = Origin::start(move |_| {
            let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec();
            raw.extend_from_slice(format!("{:x}\r\n", gz.len()).as_bytes());
            raw.extend_from_slice(gz);
            raw.extend_from_slice(b"\r\n0\r\n\r\n");
            Reply::raw(raw).keep_open()
        });
        let gw = Gw::simple(driver, &origin);
        let resp = gw.send(&Req::get("/"));
        if resp.status == 200 {
            let te = resp.all("transfer-encoding").join(", ").to_ascii_lowercase();
            assert!(
                te.contains("gzip") || resp.body != gz,
                "gzip bytes relayed as plain content; Transfer-Encoding: {te:?}\n{}",
                resp.head
            );
        } else {
            resp.assert_json_error(502);
        }
    }

    fn hash_without_the_header_still_balances(driver) {
        let (a, b) = (Origin::named("a"), Origin::named("b"));
        let gw = two_servers(driver, &a, &b, "balance = \"hash:X-User\"");
        let got = bodies(&gw, 10, &Req::get("/"));
        assert_eq!(got.len(), 10);
        assert_eq!(a.requests().len() + b.requests().len(), 10);
    }
}
