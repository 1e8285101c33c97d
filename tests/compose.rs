//! API composition end to end (`compose` routes): one `GET /api/profile/{user_id}`
//! answered from three real origins (users, orders, preferences) fetched in
//! parallel; each part failing in turn (an optional part takes its default, a
//! required one fails the answer with 502, or 504 when it is too slow), the parts
//! running concurrently (measured), a required failure not waiting for the others,
//! the composed answer cached like any response, and the config errors.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// How a test origin answers, switched while the gateway runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Status500,
    NotJson,
    /// Valid JSON without the field the part picks.
    NoItems,
    HangUp,
    /// Answers after this many milliseconds.
    Slow(u64),
}

type Switch = Arc<Mutex<Mode>>;

/// The id in a target `/users/<id>...`.
fn user_id(target: &str) -> String {
    target
        .trim_start_matches("/users/")
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned()
}

fn service(answer: fn(&Recorded) -> String) -> (Origin, Switch) {
    let mode: Switch = Arc::new(Mutex::new(Mode::Ok));
    let m = mode.clone();
    let origin = Origin::start(move |r| {
        let json = |body: String| Reply::ok(body).header("Content-Type", "application/json");
        match *m.lock().unwrap() {
            Mode::Ok => json(answer(r)),
            Mode::Status500 => Reply::new(500)
                .header("Content-Type", "application/json")
                .body(r#"{"error":"boom"}"#),
            Mode::NotJson => Reply::ok("<html>oops</html>"),
            Mode::NoItems => json(r#"{"total":0}"#.to_owned()),
            Mode::HangUp => Reply::hang_up(),
            Mode::Slow(ms) => json(answer(r)).delay_ms(ms),
        }
    });
    (origin, mode)
}

struct Services {
    users: Origin,
    orders: Origin,
    prefs: Origin,
    users_mode: Switch,
    orders_mode: Switch,
    prefs_mode: Switch,
}

fn services() -> Services {
    let (users, users_mode) =
        service(|r| format!(r#"{{"id":"{}","name":"Ada"}}"#, user_id(&r.target)));
    // Eight orders: the part keeps five.
    let (orders, orders_mode) = service(|r| {
        let items: Vec<String> = (1..=8)
            .map(|i| format!(r#"{{"id":{i},"user":"{}"}}"#, user_id(&r.target)))
            .collect();
        format!(r#"{{"items": [{}], "total": 8}}"#, items.join(", "))
    });
    let (prefs, prefs_mode) = service(|_| r#"{"theme":"dark"}"#.to_owned());
    Services {
        users,
        orders,
        prefs,
        users_mode,
        orders_mode,
        prefs_mode,
    }
}

/// The spec's three parts on a route `id` at `/<prefix>/profile/{user_id}`.
fn route(id: &str, prefix: &str, extra: &str) -> String {
    format!(
        r#"
[[routes]]
id = "{id}"
path_template = "/{prefix}/profile/{{user_id}}"
{extra}
compose = [
  {{ name = "user", upstream = "users", path = "/users/${{path:user_id}}", required = true }},
  {{ name = "recent_orders", upstream = "orders", path = "/users/${{path:user_id}}/orders", pick = "items", limit = 5, default = [] }},
  {{ name = "preferences", upstream = "prefs", path = "/users/${{path:user_id}}/prefs", default = {{}} }},
]
"#
    )
}

const KEY: &str = "compose-test-key";

fn config(users: SocketAddr, orders: SocketAddr, prefs: SocketAddr) -> String {
    let mut text = format!(
        "[auth.api_keys]\nheader = \"X-API-Key\"\n[[auth.api_keys.keys]]\nid = \"k1\"\n\
         sha256 = \"{}\"\nuser = \"svc-profile\"\ntenant = \"acme\"\n\n",
        common::tokens::api_key_digest(KEY)
    );
    for (name, addr) in [("users", users), ("orders", orders), ("prefs", prefs)] {
        text.push_str(&format!(
            "[[upstreams]]\nname = \"{name}\"\nservers = [\"{addr}\"]\n\n"
        ));
    }
    text.push_str(&route("profile", "api", "timeout_ms = 3000"));
    text.push_str(&route("fast", "fast", "timeout_ms = 400"));
    text.push_str(&route("cached", "cached", "cache = { ttl_s = 60 }"));
    text.push_str(&route("secure", "secure", "auth = \"required\""));
    text.push_str(&route(
        "zipped",
        "zipped",
        "compress = { types = [\"application/json\"], min_bytes = 64 }",
    ));
    text
}

fn gateway(driver: IoDriver, s: &Services) -> Gw {
    Gw::start(
        driver,
        &config(s.users.addr(), s.orders.addr(), s.prefs.addr()),
    )
}

fn five_orders(user: &str) -> String {
    let items: Vec<String> = (1..=5)
        .map(|i| format!(r#"{{"id":{i},"user":"{user}"}}"#))
        .collect();
    format!("[{}]", items.join(", "))
}

const PREFS: &str = r#"{"theme":"dark"}"#;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

both_drivers! {
    fn composes_three_parts_in_order_with_pick_and_limit(driver) {
        let s = services();
        let gw = gateway(driver, &s);
        let mut c = gw.client();
        let resp = c.request(
            &Req::get("/api/profile/u-7")
                .header("X-Request-ID", "rid-compose-1")
                .header("traceparent", TRACEPARENT),
        );
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.header("x-request-id"), Some("rid-compose-1"));
        assert_eq!(
            resp.header("content-length"),
            Some(resp.body.len().to_string().as_str())
        );
        // Exact bytes: the parts in config order, each as its origin wrote it, the
        // orders cut to five.
        assert_eq!(
            resp.text(),
            format!(
                r#"{{"user":{{"id":"u-7","name":"Ada"}},"recent_orders":{},"preferences":{PREFS}}}"#,
                five_orders("u-7")
            )
        );
        assert_eq!(resp.json()["recent_orders"].as_array().unwrap().len(), 5);
        // What each origin received: a GET of its own path, with the request's id.
        for (origin, target) in [
            (&s.users, "/users/u-7"),
            (&s.orders, "/users/u-7/orders"),
            (&s.prefs, "/users/u-7/prefs"),
        ] {
            let r = origin.only_request();
            assert_eq!(r.method, "GET");
            assert_eq!(r.target, target);
            assert_eq!(r.header("x-request-id"), Some("rid-compose-1"));
            assert_eq!(r.header("host"), Some(HOST));
            assert_eq!(r.header("accept"), Some("application/json"));
            assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"));
            // The caller's trace, continued with the gateway's span.
            let tp = r.header("traceparent").unwrap_or_default();
            assert!(tp.starts_with(&TRACEPARENT[..36]) && tp != TRACEPARENT, "{tp}");
            assert!(r.body.is_empty() && !r.has("content-length"), "{r:?}");
        }
        // A value that needs its encoding keeps it, and stays one segment.
        let resp = c.request(&Req::get("/api/profile/a%20b%2Fc"));
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert_eq!(s.users.last_request().target, "/users/a%20b%2Fc");
        assert_eq!(s.orders.last_request().target, "/users/a%20b%2Fc/orders");
        // HEAD: the same head, no body.
        let get = c.request(&Req::get("/api/profile/u-8"));
        let head = c.request(&Req::head("/api/profile/u-8"));
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), get.header("content-length"));
        assert_eq!(s.users.last_request().method, "GET", "parts are GETs for a HEAD too");
        // Other methods: 405 naming what the route answers; the connection stays.
        let resp = c.request(&Req::post("/api/profile/u-7", "{}"));
        resp.assert_json_error(405);
        assert_eq!(resp.header("allow"), Some("GET, HEAD"));
        assert_eq!(c.request(&Req::get("/api/profile/u-9")).status, 200);
    }

    fn each_part_failing_in_turn(driver) {
        let s = services();
        let gw = gateway(driver, &s);
        let mut c = gw.client();
        let user = r#"{"id":"u-1","name":"Ada"}"#;
        let answer = |orders: &str, prefs: &str| {
            format!(r#"{{"user":{user},"recent_orders":{orders},"preferences":{prefs}}}"#)
        };
        let get = |c: &mut Client| c.request(&Req::get("/api/profile/u-1"));

        // Optional preferences down: its default, {}.
        *s.prefs_mode.lock().unwrap() = Mode::HangUp;
        let resp = get(&mut c);
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert_eq!(resp.text(), answer(&five_orders("u-1"), "{}"));
        *s.prefs_mode.lock().unwrap() = Mode::Ok;

        // Orders failing in each way: its default, [].
        for mode in [Mode::Status500, Mode::NotJson, Mode::NoItems, Mode::HangUp] {
            *s.orders_mode.lock().unwrap() = mode;
            let resp = get(&mut c);
            assert_eq!(resp.status, 200, "{mode:?}: {}", resp.head);
            assert_eq!(resp.text(), answer("[]", PREFS), "{mode:?}");
        }
        *s.orders_mode.lock().unwrap() = Mode::Ok;
        assert_eq!(get(&mut c).text(), answer(&five_orders("u-1"), PREFS));

        // The required user failing: 502 naming the part; the connection stays usable.
        for mode in [Mode::Status500, Mode::NotJson, Mode::HangUp] {
            *s.users_mode.lock().unwrap() = mode;
            let resp = get(&mut c);
            assert_eq!(resp.assert_json_error(502), "bad_gateway", "{mode:?}");
            let message = resp.json()["message"].as_str().unwrap().to_owned();
            assert!(message.contains("required part user failed"), "{mode:?}: {message}");
        }
        *s.users_mode.lock().unwrap() = Mode::Ok;
        assert_eq!(get(&mut c).status, 200);

        // The required user slower than the route's 400 ms: 504 at the timeout.
        *s.users_mode.lock().unwrap() = Mode::Slow(2_000);
        let started = Instant::now();
        let resp = c.request(&Req::get("/fast/profile/u-1"));
        let took = started.elapsed();
        assert_eq!(resp.assert_json_error(504), "gateway_timeout");
        assert!(resp.json()["message"].as_str().unwrap().contains("required part user failed"));
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_millis(1_500),
            "answered after {took:?}"
        );
    }

    fn a_required_failure_does_not_wait_for_the_other_parts(driver) {
        let s = services();
        let gw = gateway(driver, &s);
        *s.users_mode.lock().unwrap() = Mode::Status500;
        *s.orders_mode.lock().unwrap() = Mode::Slow(1_500);
        *s.prefs_mode.lock().unwrap() = Mode::Slow(1_500);
        let started = Instant::now();
        let resp = gw.client().request(&Req::get("/api/profile/u-2"));
        let took = started.elapsed();
        resp.assert_json_error(502);
        assert!(took < Duration::from_millis(1_000), "waited {took:?}");
        // The orders request was under way, and its connection is closed rather than
        // pooled half-read: the next request opens another.
        s.orders.wait_requests(1);
        s.orders.wait_closed(1);
        *s.users_mode.lock().unwrap() = Mode::Ok;
        *s.orders_mode.lock().unwrap() = Mode::Ok;
        *s.prefs_mode.lock().unwrap() = Mode::Ok;
        let resp = gw.client().request(&Req::get("/api/profile/u-2"));
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert_eq!(resp.json()["recent_orders"].as_array().unwrap().len(), 5);
        assert_eq!(s.orders.connections(), 2);
    }

    fn services_that_are_down(driver) {
        let s = services();
        // Preferences refuse connections: its default.
        let gw = Gw::start(driver, &config(s.users.addr(), s.orders.addr(), dead_addr()));
        let resp = gw.client().request(&Req::get("/api/profile/u-3"));
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert_eq!(resp.json()["preferences"], serde_json::json!({}));
        assert_eq!(resp.json()["user"]["id"], "u-3");
        drop(gw);
        // The user service refuses connections: 502 naming the part.
        let gw = Gw::start(driver, &config(dead_addr(), s.orders.addr(), s.prefs.addr()));
        let resp = gw.client().request(&Req::get("/api/profile/u-3"));
        resp.assert_json_error(502);
        let message = resp.json()["message"].as_str().unwrap().to_owned();
        assert!(message.starts_with("required part user failed: "), "{message}");
    }

    fn parts_are_fetched_in_parallel(driver) {
        let s = services();
        let gw = gateway(driver, &s);
        let mut c = gw.client();
        // Warm: connections to all three are pooled, so connects are not measured.
        assert_eq!(c.request(&Req::get("/api/profile/u-4")).status, 200);
        for m in [&s.users_mode, &s.orders_mode, &s.prefs_mode] {
            *m.lock().unwrap() = Mode::Slow(300);
        }
        let started = Instant::now();
        let resp = c.request(&Req::get("/api/profile/u-4"));
        let took = started.elapsed();
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert_eq!(resp.json()["preferences"]["theme"], "dark");
        // One after the other would take 900 ms.
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(700),
            "three 300 ms parts took {took:?}"
        );
    }

    fn composed_routes_are_protected_and_carry_the_identity(driver) {
        let s = services();
        let gw = gateway(driver, &s);
        let mut c = gw.client();
        c.request(&Req::get("/secure/profile/u-1")).assert_json_error(401);
        assert!(s.users.requests().is_empty(), "no part fetched for a refused caller");
        let resp = c.request(&Req::get("/secure/profile/u-1").header("X-API-Key", KEY));
        assert_eq!(resp.status, 200, "{}", resp.head);
        for origin in [&s.users, &s.orders, &s.prefs] {
            let r = origin.only_request();
            assert_eq!(r.header("x-user-id"), Some("svc-profile"));
            assert_eq!(r.header("x-tenant-id"), Some("acme"));
            assert!(!r.has("x-api-key"), "the credential stays at the gateway");
        }
    }

    fn composed_answers_are_compressed_on_routes_that_say_so(driver) {
        use std::io::Read as _;
        let s = services();
        let gw = gateway(driver, &s);
        let mut c = gw.client();
        let plain = c.request(&Req::get("/zipped/profile/u-1"));
        assert_eq!(plain.status, 200, "{}", plain.head);
        assert!(!plain.has("content-encoding"));
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
        let zipped = c.request(&Req::get("/zipped/profile/u-1").header("Accept-Encoding", "gzip"));
        assert_eq!(zipped.header("content-encoding"), Some("gzip"), "{}", zipped.head);
        let mut body = Vec::new();
        flate2::read::GzDecoder::new(&zipped.body[..])
            .read_to_end(&mut body)
            .unwrap();
        assert_eq!(body, plain.body);
    }

    fn a_trusted_proxys_forwarding_fields_reach_every_part(driver) {
        let s = services();
        let text = format!(
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n{}",
            config(s.users.addr(), s.orders.addr(), s.prefs.addr())
        );
        let gw = Gw::start(driver, &text);
        let resp = gw.client().request(
            &Req::get("/api/profile/u-1")
                .header("X-Forwarded-For", "203.0.113.9")
                .header("X-Forwarded-Proto", "https")
                .header("X-Forwarded-Host", "api.example.com"),
        );
        assert_eq!(resp.status, 200, "{}", resp.head);
        for origin in [&s.users, &s.orders, &s.prefs] {
            let r = origin.only_request();
            assert_eq!(r.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
            assert_eq!(r.all("x-forwarded-proto"), ["https"]);
            assert_eq!(r.all("x-forwarded-host"), ["api.example.com"]);
        }
    }

    fn composed_answers_are_cached(driver) {
        let s = services();
        let gw = gateway(driver, &s);
        let mut c = gw.client();
        let first = c.request(&Req::get("/cached/profile/u-5"));
        assert_eq!(first.status, 200, "{}", first.head);
        assert_eq!(first.header("x-cache"), Some("MISS"));
        let second = c.request(&Req::get("/cached/profile/u-5"));
        assert_eq!(second.status, 200, "{}", second.head);
        assert_eq!(second.header("x-cache"), Some("HIT"));
        assert_eq!(second.body, first.body);
        assert_eq!(second.header("content-type"), Some("application/json"));
        // No part was fetched again.
        for origin in [&s.users, &s.orders, &s.prefs] {
            assert_eq!(origin.requests().len(), 1);
        }
        // Another user is another entry.
        let other = c.request(&Req::get("/cached/profile/u-6"));
        assert_eq!(other.header("x-cache"), Some("MISS"));
        assert_eq!(other.json()["user"]["id"], "u-6");
        // A route without cache composes every time.
        c.request(&Req::get("/api/profile/u-5"));
        c.request(&Req::get("/api/profile/u-5"));
        assert_eq!(s.users.requests().len(), 4);
    }
}

/// The error `Config::parse` gives for a configuration with `route`.
fn config_error(route: &str) -> String {
    let text = format!(
        "[[upstreams]]\nname = \"users\"\nservers = [\"127.0.0.1:1\"]\n\n\
         [[routes]]\nid = \"p\"\npath_template = \"/p/{{user_id}}\"\nauth = \"none\"\n{route}\n"
    );
    match Config::parse(&text, "t.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn compose_mistakes_are_config_errors_with_key_and_line() {
    let part = |p: &str| format!("compose = [\n  {p},\n]");
    let e = config_error(&part(r#"{ name = "u", upstream = "nope", path = "/u" }"#));
    assert!(
        e.contains("t.toml:10")
            && e.contains("compose[0].upstream")
            && e.contains("no upstream has this name"),
        "{e}"
    );
    let e = config_error(
        "compose = [\n  { name = \"u\", upstream = \"users\", path = \"/a\" },\n  { name = \"u\", upstream = \"users\", path = \"/b\" },\n]",
    );
    assert!(
        e.contains("t.toml:11")
            && e.contains("compose[1].name")
            && e.contains("already used at line 10"),
        "{e}"
    );
    let e = config_error(&part(
        r#"{ name = "u", upstream = "users", path = "/u/${path:id}" }"#,
    ));
    assert!(
        e.contains("t.toml:10") && e.contains("compose[0].path") && e.contains("{id}"),
        "{e}"
    );
    let e = config_error(&format!(
        "upstream = \"users\"\n{}",
        part(r#"{ name = "u", upstream = "users", path = "/u" }"#)
    ));
    assert!(
        e.contains("t.toml:10") && e.contains("compose") && e.contains("not both of these"),
        "{e}"
    );
    let e = config_error(&part(
        r#"{ name = "u", upstream = "users", path = "/u x" }"#,
    ));
    assert!(
        e.contains("compose[0].path") && e.contains("percent-encoded"),
        "{e}"
    );
    let e = config_error(&part(
        r#"{ name = "u", upstream = "users", path = "/u", limit = 0 }"#,
    ));
    assert!(
        e.contains("compose[0].limit") && e.contains("greater than 0"),
        "{e}"
    );
    let e = config_error(&part(
        r#"{ name = "u", upstream = "users", path = "/u", pick = "a..b" }"#,
    ));
    assert!(e.contains("compose[0].pick"), "{e}");
    let e = config_error(&part(
        r#"{ name = "u", upstream = "users", path = "/u", required = true, default = {} }"#,
    ));
    assert!(
        e.contains("compose[0].default") && e.contains("never takes its default"),
        "{e}"
    );
    let e = config_error(&format!(
        "methods = [\"GET\", \"POST\"]\n{}",
        part(r#"{ name = "u", upstream = "users", path = "/u" }"#)
    ));
    assert!(
        e.contains("t.toml:9") && e.contains("methods[1]") && e.contains("GET and HEAD"),
        "{e}"
    );
    let e = config_error("compose = []");
    assert!(e.contains("at least one part"), "{e}");
    let e = config_error(&part(
        r#"{ name = "u", upstream = "users", path = "/u", color = 1 }"#,
    ));
    assert!(e.contains("t.toml:10") && e.contains("color"), "{e}");
    // A valid one, with every key: accepted.
    let text = "[[upstreams]]\nname = \"users\"\nservers = [\"127.0.0.1:1\"]\n\
                [[routes]]\nid = \"p\"\npath_template = \"/p/{user_id}\"\nauth = \"none\"\n\
                methods = [\"GET\"]\n\
                compose = [{ name = \"u\", upstream = \"users\", path = \"/u/${path:user_id}?x=1\", pick = \"a.b\", limit = 3, default = { n = [1, 2.5, \"x\"] } }]\n";
    Config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
}
