//! `cors = { .. }` on routes, end to end (Fetch standard, "CORS protocol"):
//!
//! - A preflight from an allowed origin is answered 204 at the edge with the allowed
//!   origin, methods, requested headers and max age, before auth (no credential), and
//!   never reaches the origin; it finds a route whose `methods` lack OPTIONS.
//! - A preflight from a disallowed origin, or asking for a disallowed method or header,
//!   is 403 JSON without any CORS field, and never reaches the origin either.
//! - `credentials = true`: the origin echoed (also for `origins = ["*"]`), never `*`.
//! - Actual responses: `Access-Control-Allow-Origin`, `-Expose-Headers`,
//!   `Vary: Origin`; the upstream's own CORS fields are replaced; a disallowed origin
//!   gets `Vary: Origin` and no CORS field.
//! - Cached responses: a HIT for another origin carries that origin's fields.
//! - Gateway-generated errors (401) carry the CORS fields.

mod common;

use common::*;

const APP: &str = "https://app.example.com";

fn gateway(driver: IoDriver, origin: &Origin) -> Gw {
    let toml = fill(
        "[cache]\nenabled = true\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\
         [[routes]]\nid = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\n\
         methods = [\"GET\", \"POST\", \"DELETE\"]\nauth = \"required\"\n\
         cors = { origins = [\"https://app.example.com\", \"http://localhost:3000\"], \
         methods = [\"GET\", \"POST\"], headers = [\"Authorization\", \"Content-Type\"], \
         expose = [\"X-Request-ID\", \"X-Total\"], max_age_s = 600 }\n\
         [[routes]]\nid = \"cred\"\npath_prefix = \"/cred\"\nupstream = \"app\"\nauth = \"none\"\n\
         cors = { origins = [\"*\"], credentials = true, headers = [\"*\"] }\n\
         [[routes]]\nid = \"any\"\npath_prefix = \"/any\"\nupstream = \"app\"\nauth = \"none\"\n\
         cors = { origins = [\"*\"] }\n\
         [[routes]]\nid = \"cached\"\npath_prefix = \"/cached\"\nupstream = \"app\"\n\
         auth = \"none\"\ncache = { ttl_s = 30 }\n\
         cors = { origins = [\"https://a.example\", \"https://b.example\"] }\n\
         [[routes]]\nid = \"plain\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        &[("origin", origin.addr())],
    );
    Gw::start(driver, &toml)
}

/// The origin answers with CORS fields of its own, which the gateway must replace.
fn origin() -> Origin {
    Origin::start(|_| {
        Reply::ok("{\"ok\":true}")
            .header("Content-Type", "application/json")
            .header("Access-Control-Allow-Origin", "https://evil.example")
            .header("Cache-Control", "max-age=60")
    })
}

fn preflight(path: &str, origin: &str, method: &str, headers: Option<&str>) -> Req {
    let mut r = Req::new("OPTIONS", path)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method);
    if let Some(h) = headers {
        r = r.header("Access-Control-Request-Headers", h);
    }
    r
}

fn assert_no_cors_fields(r: &Response) {
    for (name, _) in &r.headers {
        assert!(
            !name.to_ascii_lowercase().starts_with("access-control-"),
            "unexpected {name}:\n{}",
            r.head
        );
    }
}

both_drivers! {
    fn an_allowed_preflight_is_answered_at_the_edge_without_credentials(driver) {
        let up = origin();
        let gw = gateway(driver, &up);
        let mut c = gw.client();
        // No credential on a `required` route, and OPTIONS is not among its methods.
        let r = c.request(&preflight("/api/items", APP, "POST", Some("content-type, Authorization")));
        assert_eq!(r.status, 204, "{}", r.head);
        assert_eq!(r.header("access-control-allow-origin"), Some(APP));
        assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("content-type, Authorization")
        );
        assert_eq!(r.header("access-control-max-age"), Some("600"));
        assert!(!r.has("access-control-allow-credentials"));
        for v in ["Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"] {
            assert!(r.lists("vary", v), "Vary lacks {v}: {}", r.head);
        }
        assert!(r.body.is_empty());
        // The connection stays usable, and the origin never saw a preflight.
        let again = c.request(&preflight("/api/items", "http://localhost:3000", "GET", None));
        assert_eq!(again.status, 204);
        assert_eq!(again.header("access-control-allow-origin"), Some("http://localhost:3000"));
        assert!(!again.has("access-control-allow-headers"));
        assert!(up.requests().is_empty(), "{:?}", up.requests());
    }

    fn a_refused_preflight_gets_no_cors_fields_and_never_reaches_the_origin(driver) {
        let up = origin();
        let gw = gateway(driver, &up);
        let mut c = gw.client();
        for (req, why) in [
            (preflight("/api/x", "https://evil.example", "GET", None), "origin"),
            // A prefix of an allowed origin is another origin.
            (preflight("/api/x", "https://app.example.com.evil", "GET", None), "origin"),
            (preflight("/api/x", APP, "DELETE", None), "method"),
            (preflight("/api/x", APP, "GET", Some("content-type, x-secret")), "header"),
        ] {
            let r = c.request(&req);
            r.assert_json_error(403);
            assert!(r.json()["message"].as_str().unwrap().contains(why), "{}", r.text());
            assert_no_cors_fields(&r);
            assert!(r.lists("vary", "Origin"), "{}", r.head);
        }
        assert!(up.requests().is_empty(), "{:?}", up.requests());
    }

    fn credentials_echo_the_origin_and_never_send_a_star(driver) {
        let up = origin();
        let gw = gateway(driver, &up);
        let mut c = gw.client();
        let o = "https://anyone.example";
        let r = c.request(&preflight("/cred", o, "GET", Some("X-Anything")));
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-origin"), Some(o));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.header("access-control-allow-headers"), Some("X-Anything"));
        let r = c.request(&Req::get("/cred/x").header("Origin", o));
        assert_eq!(r.status, 200);
        assert_eq!(r.all("access-control-allow-origin"), vec![o]);
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        // An opaque origin is never echoed with credentials.
        let r = c.request(&Req::get("/cred/x").header("Origin", "null"));
        assert_no_cors_fields(&r);
        // Without credentials, `*` may be sent.
        let r = c.request(&Req::get("/any/x").header("Origin", o));
        assert_eq!(r.all("access-control-allow-origin"), vec!["*"]);
        assert!(!r.has("access-control-allow-credentials"));
    }

    fn actual_responses_carry_the_gateways_fields_not_the_upstreams(driver) {
        let up = origin();
        let gw = gateway(driver, &up);
        let mut c = gw.client();
        let r = c.request(&Req::get("/any/x").header("Origin", APP));
        assert_eq!(r.status, 200);
        assert_eq!(r.all("access-control-allow-origin"), vec!["*"], "{}", r.head);
        assert!(r.lists("vary", "Origin"));
        // A disallowed origin: Vary, and nothing else of CORS (the upstream's dropped).
        let r = c.request(&Req::get("/cached/y").header("Origin", "https://evil.example"));
        assert_eq!(r.status, 200);
        assert_no_cors_fields(&r);
        assert!(r.lists("vary", "Origin"));
        // A route without `cors` relays the upstream's fields untouched.
        let r = c.request(&Req::get("/elsewhere").header("Origin", APP));
        assert_eq!(r.header("access-control-allow-origin"), Some("https://evil.example"));
        assert!(!r.lists("vary", "Origin"));
        // The preflight of a route without cors goes upstream like any OPTIONS.
        let before = up.requests().len();
        c.request(&preflight("/elsewhere", APP, "GET", None));
        assert_eq!(up.requests().len(), before + 1);
    }

    fn a_cached_response_gets_each_origins_own_fields(driver) {
        let up = origin();
        let gw = gateway(driver, &up);
        let mut c = gw.client();
        let a = c.request(&Req::get("/cached/z").header("Origin", "https://a.example"));
        assert_eq!(a.header("x-cache"), Some("MISS"));
        assert_eq!(a.all("access-control-allow-origin"), vec!["https://a.example"]);
        let b = c.request(&Req::get("/cached/z").header("Origin", "https://b.example"));
        assert_eq!(b.header("x-cache"), Some("HIT"), "{}", b.head);
        assert_eq!(b.all("access-control-allow-origin"), vec!["https://b.example"]);
        assert!(b.lists("vary", "Origin"));
        let none = c.request(&Req::get("/cached/z"));
        assert_eq!(none.header("x-cache"), Some("HIT"));
        assert_no_cors_fields(&none);
        assert!(none.lists("vary", "Origin"));
        assert_eq!(up.requests().len(), 1);
    }

    fn gateway_errors_carry_cors_fields_so_the_page_can_read_them(driver) {
        let up = origin();
        let gw = gateway(driver, &up);
        let mut c = gw.client();
        let r = c.request(&Req::get("/api/items").header("Origin", APP));
        r.assert_json_error(401);
        assert_eq!(r.header("access-control-allow-origin"), Some(APP));
        assert_eq!(r.header("access-control-expose-headers"), Some("X-Request-ID, X-Total"));
        assert!(r.lists("vary", "Origin"));
        let r = c.request(&Req::get("/api/items").header("Origin", "https://evil.example"));
        r.assert_json_error(401);
        assert_no_cors_fields(&r);
        assert!(up.requests().is_empty());
    }
}

#[test]
fn cors_and_compress_mistakes_name_the_key_and_line() {
    let base = "[[upstreams]]\nname = \"app\"\nservers = [\"127.0.0.1:1\"]\n\
                [[routes]]\nid = \"r\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    for (line, expect) in [
        (
            "cors = { origins = [\"app.example.com\"] }",
            "routes.\"r\".cors.origins[0]",
        ),
        (
            "cors = { origins = [\"https://a.example/\"] }",
            "scheme://host[:port]",
        ),
        ("cors = { origins = [] }", "at least one origin"),
        (
            "cors = { origins = [\"*\"], methods = [\"get\"] }",
            "routes.\"r\".cors.methods[0]",
        ),
        (
            "cors = { origins = [\"*\"], headers = [\"bad header\"] }",
            "routes.\"r\".cors.headers[0]",
        ),
        ("cors = { origins = [\"*\"], colour = 1 }", "colour"),
        (
            "compress = { algorithms = [\"lz4\"] }",
            "routes.\"r\".compress.algorithms[0]",
        ),
        (
            "compress = { types = [\"json\"] }",
            "routes.\"r\".compress.types[0]",
        ),
    ] {
        let text = format!("{base}{line}\n");
        let err = ringgate::config::Config::parse(&text, "t.toml")
            .err()
            .unwrap_or_else(|| panic!("accepted: {line}"))
            .to_string();
        assert!(err.contains(expect), "{line}: {err}");
        assert!(err.contains("t.toml:8"), "{line}: {err}");
    }
}
