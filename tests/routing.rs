//! Routing: segment-aware prefixes, exact paths, methods, hosts (with wildcards),
//! headers, file order, strip_prefix, weighted splits, header edits, 404, 405.

mod common;

use common::*;

/// Routes tag the request with `X-Route` (a request_headers edit) and the origin
/// answers "<route> <target>", so every response says which route matched.
fn tagging_origin() -> Origin {
    Origin::start(|r| {
        Reply::ok(format!(
            "{} {}",
            r.header("x-route").unwrap_or("-"),
            r.target
        ))
    })
}

/// `routes` is a list of `[[routes]]` bodies without `upstream`; each gets
/// `upstream = "app"` and an `X-Route` tag equal to its id.
fn routed(driver: IoDriver, origin: &Origin, routes: &[(&str, &str)]) -> Gw {
    let mut toml = String::from("[[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n");
    for (id, body) in routes {
        toml.push_str(&format!(
            "\n[[routes]]\nid = \"{id}\"\nupstream = \"app\"\n{body}\n\
             request_headers = {{ add = {{ \"X-Route\" = \"{id}\" }} }}\n"
        ));
    }
    Gw::start(driver, &fill(&toml, &[("origin", origin.addr())]))
}

/// Which route served `req` ("404" when none did, "405 <Allow>" when routes matched
/// all but the method).
fn route_of(c: &mut Client, req: &Req) -> String {
    let resp = c.request(req);
    match resp.status {
        200 => resp.text().split(' ').next().unwrap().to_owned(),
        404 => {
            resp.assert_json_error(404);
            assert_eq!(resp.header("allow"), None, "{}", resp.head);
            "404".to_owned()
        }
        405 => {
            assert_eq!(resp.assert_json_error(405), "method_not_allowed");
            format!("405 {}", resp.header("allow").expect("405 without Allow"))
        }
        s => panic!("unexpected status {s}: {}", resp.text()),
    }
}

both_drivers! {
    fn prefix_is_segment_aware(driver) {
        let origin = tagging_origin();
        let gw = routed(driver, &origin, &[
            ("users", "path_prefix = \"/api/users\""),
            ("dir", "path_prefix = \"/static/\""),
            ("rest", "path_prefix = \"/\""),
        ]);
        let mut c = gw.client();
        for (path, want) in [
            ("/api/users", "users"),
            ("/api/users/", "users"),
            ("/api/users/7", "users"),
            ("/api/users/7/orders", "users"),
            ("/api/users?x=1", "users"),
            ("/api/usersx", "rest"),
            ("/api/user", "rest"),
            ("/api", "rest"),
            ("/static/app.js", "dir"),
            ("/static/", "dir"),
            ("/staticx", "rest"),
            ("/", "rest"),
        ] {
            assert_eq!(route_of(&mut c, &Req::get(path)), want, "{path}");
        }
    }

    fn path_exact_ignores_the_query(driver) {
        let origin = tagging_origin();
        let gw = routed(driver, &origin, &[
            ("me", "path_exact = \"/api/users/me\""),
            ("users", "path_prefix = \"/api/users\""),
        ]);
        let mut c = gw.client();
        for (path, want) in [
            ("/api/users/me", "me"),
            ("/api/users/me?fields=name", "me"),
            ("/api/users/me/", "users"),
            ("/api/users/me/x", "users"),
            ("/api/users/meme", "users"),
            ("/elsewhere", "404"),
        ] {
            assert_eq!(route_of(&mut c, &Req::get(path)), want, "{path}");
        }
    }

    fn methods_filter_falls_through(driver) {
        let origin = tagging_origin();
        let gw = routed(driver, &origin, &[
            ("read", "path_prefix = \"/items\"\nmethods = [\"GET\", \"HEAD\"]"),
            ("write", "path_prefix = \"/items\"\nmethods = [\"POST\", \"PUT\"]"),
        ]);
        let mut c = gw.client();
        assert_eq!(route_of(&mut c, &Req::get("/items")), "read");
        assert_eq!(route_of(&mut c, &Req::post("/items", "x")), "write");
        assert_eq!(route_of(&mut c, &Req::new("PUT", "/items/1").body("y")), "write");
        assert_eq!(
            route_of(&mut c, &Req::new("DELETE", "/items/1")),
            "405 GET, HEAD, POST, PUT"
        );
        // Method names are case-sensitive (RFC 9110 9.1).
        assert_eq!(
            route_of(&mut c, &Req::new("get", "/items")),
            "405 GET, HEAD, POST, PUT"
        );
        let resp = c.request(&Req::head("/items"));
        assert_eq!(resp.status, 200);
        assert_eq!(origin.last_request().header("x-route"), Some("read"));
    }

    fn host_match_with_wildcard(driver) {
        let origin = tagging_origin();
        let gw = routed(driver, &origin, &[
            ("exact", "path_prefix = \"/\"\nhost = \"api.test\""),
            ("wild", "path_prefix = \"/\"\nhost = \"*.example.com\""),
        ]);
        let mut c = gw.client();
        for (host, want) in [
            ("api.test", "exact"),
            ("API.Test", "exact"),
            ("api.test:8080", "exact"),
            ("a.example.com", "wild"),
            ("a.b.example.com", "wild"),
            ("A.EXAMPLE.COM:443", "wild"),
            ("example.com", "404"),
            ("badexample.com", "404"),
            ("api.test.evil", "404"),
        ] {
            assert_eq!(route_of(&mut c, &Req::get("/").host(host)), want, "{host}");
        }
    }

    fn header_match(driver) {
        let origin = tagging_origin();
        let gw = routed(driver, &origin, &[
            (
                "canary",
                "path_prefix = \"/\"\nheaders = { \"X-Canary\" = \"1\", \"X-Tier\" = \"beta\" }",
            ),
            ("stable", "path_prefix = \"/\""),
        ]);
        let mut c = gw.client();
        let both = Req::get("/").header("X-Canary", "1").header("x-tier", "beta");
        assert_eq!(route_of(&mut c, &both), "canary");
        assert_eq!(route_of(&mut c, &Req::get("/").header("X-Canary", "1")), "stable");
        let wrong = Req::get("/").header("X-Canary", "2").header("X-Tier", "beta");
        assert_eq!(route_of(&mut c, &wrong), "stable");
        assert_eq!(route_of(&mut c, &Req::get("/")), "stable");
    }

    fn first_match_in_file_order_wins(driver) {
        let origin = tagging_origin();
        let gw = routed(driver, &origin, &[
            ("broad", "path_prefix = \"/a\""),
            ("narrow", "path_prefix = \"/a/b\""),
            ("catchall", "path_prefix = \"/\""),
            ("never", "path_prefix = \"/z\""),
        ]);
        let mut c = gw.client();
        assert_eq!(route_of(&mut c, &Req::get("/a/b/c")), "broad");
        assert_eq!(route_of(&mut c, &Req::get("/a")), "broad");
        assert_eq!(route_of(&mut c, &Req::get("/z")), "catchall");
    }

    fn strip_prefix_rewrites_the_path(driver) {
        let origin = tagging_origin();
        let gw = routed(driver, &origin, &[
            ("api", "path_prefix = \"/api/users\"\nstrip_prefix = \"/api\""),
            ("svc", "path_prefix = \"/svc\"\nstrip_prefix = \"/svc\""),
        ]);
        let mut c = gw.client();
        for (path, upstream_target) in [
            ("/api/users/7", "/users/7"),
            ("/api/users?x=1", "/users?x=1"),
            ("/svc", "/"),
            ("/svc/", "/"),
            ("/svc?q=%20", "/?q=%20"),
            ("/svc/v1/x", "/v1/x"),
        ] {
            let resp = c.request(&Req::get(path));
            assert_eq!(resp.status, 200, "{path}");
            assert_eq!(origin.last_request().target, upstream_target, "{path}");
        }
    }

    fn split_follows_weights(driver) {
        let a = Origin::named("a");
        let b = Origin::named("b");
        let toml = fill(
            "[[upstreams]]\nname = \"ua\"\nservers = [\"{a}\"]\n\n\
             [[upstreams]]\nname = \"ub\"\nservers = [\"{b}\"]\n\n\
             [[routes]]\nid = \"split\"\npath_prefix = \"/\"\n\
             split = [{ upstream = \"ua\", weight = 3 }, { upstream = \"ub\", weight = 1 }]\n",
            &[("a", a.addr()), ("b", b.addr())],
        );
        let gw = Gw::start(driver, &toml);
        let mut c = gw.client();
        let mut got_a = 0;
        for _ in 0..400 {
            let resp = c.request(&Req::get("/"));
            assert_eq!(resp.status, 200);
            if resp.text() == "a" {
                got_a += 1;
            }
        }
        assert_eq!(a.requests().len(), got_a);
        assert_eq!(a.requests().len() + b.requests().len(), 400);
        // Expected 300/100; the bounds are more than six standard deviations wide.
        assert!((240..=360).contains(&got_a), "a got {got_a} of 400");
    }

    fn header_edits_on_requests_and_responses(driver) {
        let origin = Origin::start(|_| {
            Reply::ok("x")
                .header("Server", "origin/1.0")
                .header("X-Internal", "secret")
                .header("X-Public", "yes")
        });
        let toml = fill(
            "[[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\n\
             [[routes]]\nid = \"edit\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
             request_headers.add = { \"X-Gateway\" = \"edge\" }\n\
             request_headers.remove = [\"Cookie\", \"x-secret\"]\n\
             response_headers.add = { \"X-Served-By\" = \"ringgate\" }\n\
             response_headers.remove = [\"server\", \"X-Internal\"]\n",
            &[("origin", origin.addr())],
        );
        let gw = Gw::start(driver, &toml);
        let resp = gw.send(
            &Req::get("/")
                .header("Cookie", "session=1")
                .header("X-SECRET", "s")
                .header("X-Other", "kept"),
        );
        assert_eq!(resp.status, 200);
        assert!(!resp.has("server") && !resp.has("x-internal"), "{}", resp.head);
        assert_eq!(resp.header("x-public"), Some("yes"));
        assert_eq!(resp.all("x-served-by"), ["ringgate"]);
        let r = origin.only_request();
        assert!(!r.has("cookie") && !r.has("x-secret"), "{:?}", r.headers);
        assert_eq!(r.header("x-other"), Some("kept"));
        assert_eq!(r.all("x-gateway"), ["edge"]);
    }

    fn no_route_is_404_json(driver) {
        let origin = tagging_origin();
        let gw = routed(driver, &origin, &[("only", "path_prefix = \"/only\"")]);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/nowhere"));
        let code = resp.assert_json_error(404);
        assert_eq!(code, "not_found");
        // A client-supplied request id is the one reported.
        let resp = c.request(&Req::get("/nowhere").header("X-Request-ID", "trace-42"));
        resp.assert_json_error(404);
        assert_eq!(resp.json()["request_id"], "trace-42");
        // HEAD gets the head of the same answer and no body.
        let resp = c.request(&Req::head("/nowhere"));
        assert_eq!(resp.status, 404);
        // The connection survived all three (no body was left unread).
        assert_eq!(route_of(&mut c, &Req::get("/only")), "only");
        assert_eq!(origin.requests().len(), 1);
    }

    fn wrong_method_is_405_with_allow(driver) {
        let origin = tagging_origin();
        let gw = routed(driver, &origin, &[
            ("read", "path_prefix = \"/items\"\nmethods = [\"GET\", \"HEAD\"]"),
            ("write", "path_prefix = \"/items\"\nmethods = [\"POST\", \"GET\"]"),
            ("admin", "path_prefix = \"/items\"\nhost = \"admin.test\"\nmethods = [\"DELETE\"]"),
            ("canary", "path_prefix = \"/items\"\nheaders = { \"X-Canary\" = \"1\" }\nmethods = [\"PATCH\"]"),
            ("special", "path_exact = \"/items/special\"\nmethods = [\"OPTIONS\"]"),
            ("getonly", "path_prefix = \"/g\"\nmethods = [\"GET\"]"),
        ]);
        let mut c = gw.client();
        // The JSON error, X-Request-ID, and Allow in file order without duplicates;
        // the routes whose host or header did not match are not in it.
        let resp = c.request(&Req::new("DELETE", "/items/1").header("X-Request-ID", "rid-405"));
        assert_eq!(resp.assert_json_error(405), "method_not_allowed");
        assert_eq!(resp.reason, "Method Not Allowed");
        assert_eq!(resp.header("allow"), Some("GET, HEAD, POST"), "{}", resp.head);
        assert_eq!(resp.json()["request_id"], "rid-405");
        assert_eq!(resp.header("x-request-id"), Some("rid-405"));
        // Host and header conditions that match bring their routes' methods in.
        let admin = Req::new("PUT", "/items/1").host("admin.test").body("x");
        assert_eq!(route_of(&mut c, &admin), "405 GET, HEAD, POST, DELETE");
        let canary = Req::new("PUT", "/items/1").header("X-Canary", "1").body("x");
        assert_eq!(route_of(&mut c, &canary), "405 GET, HEAD, POST, PATCH");
        // The gateway does not answer OPTIONS itself: a route must allow it.
        assert_eq!(
            route_of(&mut c, &Req::new("OPTIONS", "/items")),
            "405 GET, HEAD, POST"
        );
        assert_eq!(
            route_of(&mut c, &Req::new("OPTIONS", "/items/special")),
            "special"
        );
        assert_eq!(
            route_of(&mut c, &Req::get("/items/special")),
            "read"
        );
        // A route allowing GET does not take HEAD (methods match as written), and
        // says so; the HEAD answer has no body.
        let resp = c.request(&Req::head("/g/1"));
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header("allow"), Some("GET"), "{}", resp.head);
        assert!(resp.body.is_empty());
        // A path no route matches is still a 404, without Allow.
        assert_eq!(route_of(&mut c, &Req::new("DELETE", "/nowhere")), "404");
        assert_eq!(route_of(&mut c, &Req::new("DELETE", "/itemsx")), "404");
        // The connection survived every refusal, and the origin saw only the two
        // requests that were routed.
        assert_eq!(origin.requests().len(), 2);
        assert_eq!(route_of(&mut c, &Req::new("DELETE", "/items").host("admin.test")), "admin");
        assert_eq!(origin.requests().len(), 3);
    }

    fn no_route_with_unread_body_closes(driver) {
        let origin = tagging_origin();
        let gw = routed(driver, &origin, &[("only", "path_prefix = \"/only\"")]);
        let mut c = gw.client();
        // Body announced but not sent yet: the gateway cannot keep the connection.
        c.send(Req::post("/nowhere", vec![b'x'; 100]).head_bytes());
        let resp = c.read_response();
        resp.assert_json_error(404);
        assert!(resp.connection_has("close"), "{}", resp.head);
        c.assert_closed();
    }
}
