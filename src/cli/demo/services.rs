//! What the demo services answer, given a request the [server](super::server) has read:
//! their resources (users with POST to create one, orders, products with ETags and
//! `Cache-Control` so the gateway's cache has something to store, `/slow?ms=N`, `/fail`,
//! `/health`), their data, and `/echo` on every service, which answers with the request
//! exactly as it arrived and so shows what the gateway forwarded. Bodies are JSON,
//! built and checked with serde_json.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::request::Request;
use super::server::{Response, Shared};

/// The three services; each runs on its own port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Service {
    Users,
    Orders,
    Products,
}

impl Service {
    pub(super) fn name(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Orders => "orders",
            Service::Products => "products",
        }
    }
}

/// `/slow` without `?ms=`.
const SLOW_DEFAULT_MS: u64 = 2000;
/// Longer asks are cut to this.
const SLOW_MAX_MS: u64 = 10_000;
/// The id the first user created by POST gets: the one after the built-in users'.
pub(super) const FIRST_NEW_USER_ID: u64 = USERS.len() as u64 + 1;

/// What a path names on a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource<'a> {
    Health,
    Users,
    User(&'a str),
    Slow,
    Fail,
    Orders,
    Order(&'a str),
    Products,
    Product(&'a str),
}

impl<'a> Resource<'a> {
    fn find(service: Service, path: &'a str) -> Option<Resource<'a>> {
        if path == "/health" {
            return Some(Resource::Health);
        }
        match (service, path) {
            (Service::Users, "/users") => Some(Resource::Users),
            (Service::Users, "/slow") => Some(Resource::Slow),
            (Service::Users, "/fail") => Some(Resource::Fail),
            (Service::Users, _) => item(path, "/users/").map(Resource::User),
            (Service::Orders, "/orders") => Some(Resource::Orders),
            (Service::Orders, _) => item(path, "/orders/").map(Resource::Order),
            (Service::Products, "/products") => Some(Resource::Products),
            (Service::Products, _) => item(path, "/products/").map(Resource::Product),
        }
    }

    /// The methods it answers, in the form of an `Allow` header.
    fn allow(self) -> &'static str {
        match self {
            Resource::Users => "GET, HEAD, POST",
            _ => "GET, HEAD",
        }
    }
}

/// The id in `prefix{id}`: one non-empty segment.
fn item<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The response to `req`, a complete request to `shared.service`.
pub(super) fn handle(shared: &Shared, req: &Request) -> Response {
    let (path, query) = req.path_and_query();
    // Any method: /echo exists to show exactly what arrived, whatever it was.
    if path == "/echo" || path.starts_with("/echo/") {
        return echo(shared.service, req);
    }
    let Some(resource) = Resource::find(shared.service, path) else {
        let message = format!("no {path} on the {} service", shared.service.name());
        return Response::error(404, "not_found", &message);
    };
    let allow = resource.allow();
    if !allow.split(", ").any(|m| m == req.method) {
        let message = format!("{} is not allowed on {path}", req.method);
        return Response::error(405, "method_not_allowed", &message).header("Allow", allow);
    }
    match resource {
        Resource::Health => Response::json(200, "{\"status\":\"ok\"}".to_owned()),
        Resource::Users if req.method == "POST" => create_user(shared, req),
        Resource::Users => Response::json(200, list(USERS)),
        Resource::User(id) => one(USERS, id, "user"),
        Resource::Slow => slow(shared, query),
        Resource::Fail => Response::error(500, "internal", "this endpoint always fails (demo)"),
        Resource::Orders => Response::json(200, list(ORDERS)),
        Resource::Order(id) => one(ORDERS, id, "order"),
        Resource::Products => cacheable(req, Response::json(200, list(PRODUCTS))),
        Resource::Product(id) => cacheable(req, one(PRODUCTS, id, "product")),
    }
}

/// What `/echo` answers: the request as the service received it. A struct rather than
/// `json!`, whose object sorts its keys, so that the fields come in this order.
#[derive(Serialize)]
struct Echo<'a> {
    service: &'static str,
    method: &'a str,
    /// The target exactly as sent: path and query.
    path: &'a str,
    version: String,
    peer: String,
    /// `[name, value]` pairs in arrival order, names as sent.
    headers: Vec<(&'a str, Cow<'a, str>)>,
    body_bytes: usize,
    /// The body as received: inline when it is JSON (byte for byte, so that a body the
    /// gateway rewrote shows exactly as rewritten), else as a string when it is UTF-8
    /// text; absent when empty, binary or over [`ECHO_BODY_MAX`] bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<EchoBody<'a>>,
}

/// [`Echo::body`].
#[derive(Serialize)]
#[serde(untagged)]
enum EchoBody<'a> {
    Json(&'a serde_json::value::RawValue),
    Text(&'a str),
}

/// The largest body `/echo` shows (its size is always shown).
const ECHO_BODY_MAX: usize = 64 * 1024;

impl<'a> EchoBody<'a> {
    fn of(body: &'a [u8]) -> Option<EchoBody<'a>> {
        if body.is_empty() || body.len() > ECHO_BODY_MAX {
            return None;
        }
        if let Ok(raw) = serde_json::from_slice(body) {
            return Some(EchoBody::Json(raw));
        }
        std::str::from_utf8(body).ok().map(EchoBody::Text)
    }
}

fn echo(service: Service, req: &Request) -> Response {
    let echo = Echo {
        service: service.name(),
        method: &req.method,
        path: &req.target,
        version: format!("HTTP/1.{}", req.minor),
        peer: req.peer.to_string(),
        headers: req
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value)))
            .collect(),
        body_bytes: req.body.len(),
        body: EchoBody::of(&req.body),
    };
    Response::json(200, to_json(&echo))
}

/// A created user: the posted object's members after the id the service assigned.
#[derive(Serialize)]
struct Created {
    id: u64,
    #[serde(flatten)]
    members: Map<String, Value>,
}

/// Echoes the posted object back with a new id. Nothing is stored: the demo stays
/// stateless. Without the check that the body is one JSON object, a bad body would be
/// echoed into an invalid JSON response.
fn create_user(shared: &Shared, req: &Request) -> Response {
    let members: Map<String, Value> = match serde_json::from_slice(&req.body) {
        Ok(members) => members,
        Err(e) => {
            let message = format!("body must be one JSON object: {e}");
            return Response::error(400, "invalid_json", &message);
        }
    };
    if members.contains_key("id") {
        return Response::error(422, "invalid_user", "id is assigned by the server");
    }
    let id = shared.next_user_id.fetch_add(1, Ordering::Relaxed);
    Response::json(201, to_json(&Created { id, members }))
}

/// serde_json fails to serialise only a map whose keys are not strings, which these
/// types do not hold.
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn slow(shared: &Shared, query: &str) -> Response {
    let ms = match query.split('&').find_map(|kv| kv.strip_prefix("ms=")) {
        None => SLOW_DEFAULT_MS,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) => ms.min(SLOW_MAX_MS),
            Err(_) => return Response::error(400, "bad_request", "ms must be whole milliseconds"),
        },
    };
    let deadline = Instant::now() + Duration::from_millis(ms);
    // Short naps so that stopping the services is not held up by a 10 s request.
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() || shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
    Response::json(200, json!({ "slept_ms": ms }).to_string())
}

/// Marks a product response cacheable for 30 s with a strong ETag, and answers a matching
/// If-None-Match with 304. Only successful responses: an error is not worth caching.
fn cacheable(req: &Request, resp: Response) -> Response {
    if resp.status != 200 {
        return resp;
    }
    // Derived from the bytes, so equal bodies get equal tags, across restarts too.
    let etag = format!("\"{:016x}\"", fnv1a(resp.body.as_bytes()));
    let matched = req.header_list("if-none-match").iter().any(|tag| {
        // If-None-Match uses the weak comparison (RFC 9110 section 13.1.2).
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
    });
    let resp = if matched {
        Response::json(304, String::new())
    } else {
        resp
    };
    resp.header("Cache-Control", "public, max-age=30")
        .header("ETag", etag)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The data, written as the JSON the client receives, keyed by id. Orders refer to users
/// and products by id, as a real schema would.
type Records = [(u32, &'static str)];

const USERS: &Records = &[
    (
        1,
        r#"{"id":1,"name":"Ada Lovelace","email":"ada@example.com"}"#,
    ),
    (
        2,
        r#"{"id":2,"name":"Grace Hopper","email":"grace@example.com"}"#,
    ),
    (
        3,
        r#"{"id":3,"name":"Alan Turing","email":"alan@example.com"}"#,
    ),
];

const ORDERS: &Records = &[
    (
        1,
        r#"{"id":1,"user_id":1,"product_id":2,"quantity":1,"status":"shipped"}"#,
    ),
    (
        2,
        r#"{"id":2,"user_id":2,"product_id":1,"quantity":3,"status":"processing"}"#,
    ),
    (
        3,
        r#"{"id":3,"user_id":1,"product_id":3,"quantity":2,"status":"delivered"}"#,
    ),
    (
        4,
        r#"{"id":4,"user_id":3,"product_id":1,"quantity":1,"status":"cancelled"}"#,
    ),
];

const PRODUCTS: &Records = &[
    (
        1,
        r#"{"id":1,"name":"Analytical Engine","price_cents":1999900,"stock":2}"#,
    ),
    (
        2,
        r#"{"id":2,"name":"Punched cards, box of 500","price_cents":1250,"stock":140}"#,
    ),
    (
        3,
        r#"{"id":3,"name":"Difference Engine No. 2","price_cents":4500000,"stock":1}"#,
    ),
];

fn list(records: &Records) -> String {
    let items: Vec<&str> = records.iter().map(|(_, json)| *json).collect();
    format!("[{}]", items.join(","))
}

fn one(records: &Records, id: &str, what: &str) -> Response {
    let found = id
        .parse::<u32>()
        .ok()
        .and_then(|n| records.iter().find(|(key, _)| *key == n));
    match found {
        Some((_, json)) => Response::json(200, (*json).to_owned()),
        None => Response::error(404, "not_found", &format!("no {what} with id {id}")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::server::DemoServices;
    use super::super::test_client::{get, request, Client};
    use super::*;

    #[test]
    fn users_list_item_and_missing_item() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let users = demo.addrs().users;

        let all = get(users, "/users");
        assert_eq!(all.status, 200);
        assert_eq!(all.header("server"), Some("ringgate-demo/users"));
        assert_eq!(all.header("content-type"), Some("application/json"));
        let date = all.header("date").unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert!(all.body.starts_with("[{\"id\":1,\"name\":\"Ada Lovelace\""));
        assert_eq!(all.body.matches("\"email\"").count(), 3);

        let grace = get(users, "/users/2");
        assert_eq!(grace.status, 200);
        assert_eq!(
            grace.body,
            r#"{"id":2,"name":"Grace Hopper","email":"grace@example.com"}"#
        );

        for missing in ["/users/9", "/users/abc"] {
            let reply = get(users, missing);
            assert_eq!(reply.status, 404, "{missing}");
            assert!(reply.body.starts_with("{\"error\":\"not_found\""));
        }
        demo.stop();
    }

    #[test]
    fn orders_and_products_have_their_own_data_and_server_header() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let orders = get(demo.addrs().orders, "/orders");
        assert_eq!(orders.status, 200);
        assert_eq!(orders.header("server"), Some("ringgate-demo/orders"));
        assert!(orders.body.contains("\"user_id\":2"));
        let order = get(demo.addrs().orders, "/orders/3");
        assert!(order.body.starts_with("{\"id\":3,\"user_id\":1,"));

        let products = get(demo.addrs().products, "/products");
        assert_eq!(products.status, 200);
        assert_eq!(products.header("server"), Some("ringgate-demo/products"));
        assert_eq!(products.header("cache-control"), Some("public, max-age=30"));
        assert!(products.header("etag").is_some());

        for addr in [
            demo.addrs().users,
            demo.addrs().orders,
            demo.addrs().products,
        ] {
            let health = get(addr, "/health");
            assert_eq!(
                (health.status, health.body.as_str()),
                (200, "{\"status\":\"ok\"}")
            );
        }
        demo.stop();
    }

    #[test]
    fn product_etag_answers_if_none_match_with_304() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let products = demo.addrs().products;
        let first = get(products, "/products/1");
        let etag = first.header("etag").unwrap().to_owned();
        let mut client = Client::new(products);
        client.send(&format!(
            "GET /products/1 HTTP/1.1\r\nHost: d\r\nIf-None-Match: \"x\", W/{etag}\r\n\r\n"
        ));
        let again = client.reply(false);
        assert_eq!(again.status, 304);
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert_eq!(again.header("content-length"), None);
        assert_eq!(again.body, "");
        // No body bytes were sent: the next response on the connection parses cleanly.
        client.send("GET /products/2 HTTP/1.1\r\nHost: d\r\nIf-None-Match: \"x\"\r\n\r\n");
        let other = client.reply(false);
        assert_eq!(other.status, 200);
        assert_ne!(other.header("etag"), Some(etag.as_str()));
        assert_eq!(get(products, "/products/7").header("cache-control"), None);
        demo.stop();
    }

    #[test]
    fn post_user_with_content_length_and_chunked_bodies() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let users = demo.addrs().users;
        let body = r#"{"name":"Grace","tags":["navy",1.5e3,null,true]}"#;
        let created = request(
            users,
            &format!(
                "POST /users HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(created.status, 201);
        assert_eq!(
            created.body,
            r#"{"id":4,"name":"Grace","tags":["navy",1500.0,null,true]}"#
        );

        // Chunks split mid-token, an extension, upper-case hex and a trailer.
        let chunked = request(
            users,
            "POST /users HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\n{\"na\r\n9;ext=1\r\nme\":\"Lin\"\r\nA\r\n, \"x\":{} }\r\n0\r\nX-Trailer: t\r\n\r\n",
        );
        assert_eq!(chunked.status, 201);
        assert_eq!(chunked.body, r#"{"id":5,"name":"Lin","x":{}}"#);

        let empty = request(
            users,
            "POST /users HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n\r\n{}",
        );
        assert_eq!((empty.status, empty.body.as_str()), (201, "{\"id\":6}"));
        demo.stop();
    }

    #[test]
    fn post_user_rejects_bad_json_and_a_client_chosen_id() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let post = |body: &str| {
            let raw = format!(
                "POST /users HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            request(demo.addrs().users, &raw)
        };
        let bad = post("{\"name\":");
        assert_eq!(bad.status, 400);
        assert!(bad.body.starts_with("{\"error\":\"invalid_json\""));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        for body in ["[1]", "", "{} {}", "{\"a\":01}", "{\"a\":\"\u{1}\"}", &deep] {
            assert_eq!(post(body).status, 400, "{body:?}");
        }
        assert_eq!(post("{\"id\":7,\"name\":\"x\"}").status, 422);
        // The member's name decoded, as any JSON reader would see it.
        assert_eq!(post("{\"\\u0069d\":7}").status, 422);
        demo.stop();
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let nope = get(demo.addrs().products, "/nope");
        assert_eq!(nope.status, 404);
        assert_eq!(
            nope.body,
            r#"{"error":"not_found","message":"no /nope on the products service"}"#
        );
        // Each service has only its own resources.
        assert_eq!(get(demo.addrs().orders, "/users").status, 404);

        let delete = request(
            demo.addrs().users,
            "DELETE /users HTTP/1.1\r\nHost: d\r\n\r\n",
        );
        assert_eq!(delete.status, 405);
        assert_eq!(delete.header("allow"), Some("GET, HEAD, POST"));
        assert!(delete.body.starts_with("{\"error\":\"method_not_allowed\""));
        let post = request(
            demo.addrs().orders,
            "POST /orders/1 HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            (post.status, post.header("allow")),
            (405, Some("GET, HEAD"))
        );
        demo.stop();
    }

    #[test]
    fn echo_reflects_the_request_as_received() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let reply = request(
            demo.addrs().users,
            "PUT /echo/deep?x=1&y=%20 HTTP/1.1\r\nHost: demo\r\nX-Request-ID: abc-1\r\n\
             X-Forwarded-For: 10.0.0.1\r\nX-Quote: say \"hi\"\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(reply.status, 200);
        let body = &reply.body;
        assert!(body.starts_with(
            r#"{"service":"users","method":"PUT","path":"/echo/deep?x=1&y=%20","version":"HTTP/1.1","peer":"127.0.0.1:"#
        ));
        assert!(body.ends_with(
            r#""headers":[["Host","demo"],["X-Request-ID","abc-1"],["X-Forwarded-For","10.0.0.1"],["X-Quote","say \"hi\""],["Content-Length","5"]],"body_bytes":5,"body":"hello"}"#
        ));
        // A JSON body appears inline, byte for byte (key order, spacing); none, no field.
        let json = r#"{"b": 1,"a":[true]}"#;
        let reply = request(
            demo.addrs().users,
            &format!(
                "POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            ),
        );
        assert!(
            reply.body.ends_with(&format!(",\"body\":{json}}}")),
            "{}",
            reply.body
        );
        let orders_echo = request(
            demo.addrs().orders,
            "OPTIONS /echo HTTP/1.1\r\nHost: d\r\n\r\n",
        );
        assert!(orders_echo.body.contains("\"method\":\"OPTIONS\""));
        assert!(
            !orders_echo.body.contains("\"body\""),
            "{}",
            orders_echo.body
        );
        demo.stop();
    }

    #[test]
    fn slow_and_fail() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let started = Instant::now();
        let slow = get(demo.addrs().users, "/slow?ms=30");
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(
            (slow.status, slow.body.as_str()),
            (200, "{\"slept_ms\":30}")
        );
        assert_eq!(get(demo.addrs().users, "/slow?ms=soon").status, 400);
        let fail = get(demo.addrs().users, "/fail");
        assert_eq!(fail.status, 500);
        assert!(fail.body.starts_with("{\"error\":\"internal\""));
        demo.stop();
    }

    #[test]
    fn records_are_json_objects_under_their_own_id() {
        for (id, json) in USERS.iter().chain(ORDERS).chain(PRODUCTS) {
            let record: Map<String, Value> = serde_json::from_str(json).unwrap();
            assert_eq!(record["id"], *id, "{json}");
            assert!(json.starts_with(&format!("{{\"id\":{id},")), "{json}");
        }
    }
}
