//! Route keys that match, answer or reshape at the edge, end to end: `path_template`
//! feeding templates (an upstream's `request_headers` with `${path:...}`), `rewrite`
//! with capture groups and the query kept, `content_type` matching, `respond` after
//! auth and rate limits, upstream `request_headers` with an `${env:...}` secret that
//! reaches the origin but never the access log or `ringgate check`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::tokens::api_key_digest;
use common::*;

const KEY: &str = "edge-routes-test-key";

/// Each origin answers with its name, the target it received and its `X-User`.
fn origin(name: &'static str) -> Origin {
    Origin::start(move |r| {
        Reply::ok(format!(
            "{name} {} {}",
            r.target,
            r.header("x-user").unwrap_or("-")
        ))
    })
}

fn config(media: &Origin, control: &Origin, rest: &Origin) -> String {
    let text = format!(
        r#"
[auth.api_keys]
header = "X-API-Key"
[[auth.api_keys.keys]]
id = "k1"
sha256 = "{digest}"
user = "svc-edge"
tenant = "acme"

[[upstreams]]
name = "profiles"
servers = ["{{control}}"]
request_headers = {{ "X-User" = "${{path:user_id}}", "X-Trace" = "${{request_id}}/${{user}}/${{query:v}}" }}

[[upstreams]]
name = "media"
servers = ["{{media}}"]

[[upstreams]]
name = "control"
servers = ["{{control}}"]

[[upstreams]]
name = "rest"
servers = ["{{rest}}"]

[[routes]]
id = "profile"
path_template = "/api/profile/{{user_id}}"
upstream = "profiles"
auth = "optional"

[[routes]]
id = "v1"
path_prefix = "/v1"
rewrite = {{ pattern = "^/v1/(?P<svc>[a-z]+)/(.*)$", replace = "/api/${{svc}}/$2" }}
upstream = "rest"
auth = "none"

[[routes]]
id = "media"
path_prefix = "/upload"
content_type = ["video/*", "audio/*"]
upstream = "media"
auth = "none"

[[routes]]
id = "control"
path_prefix = "/upload"
content_type = ["application/json"]
upstream = "control"
auth = "none"

[[routes]]
id = "ping"
path_exact = "/ping"
respond = {{ status = 200, body = "pong", content_type = "text/plain" }}
auth = "none"
response_headers = {{ add = {{ "X-Edge" = "1" }} }}

[[routes]]
id = "guarded"
path_exact = "/guarded"
respond = {{ status = 202, body = "accepted at the edge" }}
auth = "required"
rate_limit = {{ requests_per_minute = 1, burst = 1, key_by = "user" }}

[[routes]]
id = "rest"
path_prefix = "/"
upstream = "rest"
auth = "none"
"#,
        digest = api_key_digest(KEY),
    );
    fill(
        &text,
        &[
            ("media", media.addr()),
            ("control", control.addr()),
            ("rest", rest.addr()),
        ],
    )
}

struct World {
    media: Origin,
    control: Origin,
    rest: Origin,
    gw: Gw,
}

fn world(driver: IoDriver) -> World {
    let (media, control, rest) = (origin("media"), origin("control"), origin("rest"));
    let gw = Gw::start(driver, &config(&media, &control, &rest));
    World {
        media,
        control,
        rest,
        gw,
    }
}

both_drivers! {
    fn path_template_feeds_upstream_templates(driver) {
        let w = world(driver);
        let mut c = w.gw.client();
        let r = c.request(
            &Req::get("/api/profile/u-42?v=7")
                .header("X-Request-ID", "rid-9")
                .header("X-API-Key", KEY),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "control /api/profile/u-42?v=7 u-42");
        let got = w.control.last_request();
        assert_eq!(got.all("x-user"), ["u-42"]);
        assert_eq!(got.header("x-trace"), Some("rid-9/svc-edge/7"));
        // A client's own X-User is replaced, not sent alongside.
        let r = c.request(&Req::get("/api/profile/bob").header("X-User", "mallory"));
        assert_eq!(r.text(), "control /api/profile/bob bob");
        assert_eq!(w.control.last_request().all("x-user"), ["bob"]);
        // One segment only, and not empty: other paths go on down the list.
        assert_eq!(c.request(&Req::get("/api/profile/bob/x")).text(), "rest /api/profile/bob/x -");
        assert_eq!(c.request(&Req::get("/api/profile/")).text(), "rest /api/profile/ -");
    }

    fn rewrite_keeps_the_query(driver) {
        let w = world(driver);
        let mut c = w.gw.client();
        assert_eq!(
            c.request(&Req::get("/v1/users/7/orders?limit=5&sort=-id")).text(),
            "rest /api/users/7/orders?limit=5&sort=-id -"
        );
        assert_eq!(c.request(&Req::get("/v1/users/")).text(), "rest /api/users/ -");
        // The pattern does not match: the target goes as received.
        assert_eq!(c.request(&Req::get("/v1/7?q=1")).text(), "rest /v1/7?q=1 -");
        // Applied to the normalised path routing matched.
        assert_eq!(c.request(&Req::get("/v1/x/../orders/%61")).text(), "rest /api/orders/a -");
        assert_eq!(w.rest.requests().len(), 4);
    }

    fn content_type_picks_the_route(driver) {
        let w = world(driver);
        let mut c = w.gw.client();
        let post = |ct: Option<&str>| {
            let r = Req::post("/upload/x", "data");
            match ct {
                Some(ct) => r.header("Content-Type", ct),
                None => r,
            }
        };
        assert_eq!(c.request(&post(Some("video/mp4"))).text(), "media /upload/x -");
        assert_eq!(c.request(&post(Some("Audio/MPEG; rate=44100"))).text(), "media /upload/x -");
        assert_eq!(
            c.request(&post(Some("application/json; charset=utf-8"))).text(),
            "control /upload/x -"
        );
        assert_eq!(c.request(&post(Some("text/plain"))).text(), "rest /upload/x -");
        assert_eq!(c.request(&post(None)).text(), "rest /upload/x -");
        assert_eq!(w.media.requests().len(), 2);
        assert_eq!(w.media.last_request().body, b"data");
    }

    fn respond_at_the_edge(driver) {
        let w = world(driver);
        let mut c = w.gw.client();
        let r = c.request(&Req::get("/ping").header("X-Request-ID", "rid-ping"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "pong");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.header("content-length"), Some("4"));
        assert_eq!(r.header("x-request-id"), Some("rid-ping"));
        assert_eq!(r.header("x-edge"), Some("1"));
        assert!(r.has("date"));
        let h = c.request(&Req::head("/ping"));
        assert_eq!((h.status, h.body.len()), (200, 0));
        assert_eq!(h.header("content-length"), Some("4"));
        // A body that came whole is dropped and the connection kept.
        let r = c.request(&Req::post("/ping", "ignored body"));
        assert_eq!(r.text(), "pong");
        assert!(!r.connection_has("close"));
        assert_eq!(c.request(&Req::get("/ping")).text(), "pong");
        // No origin saw any of it.
        assert_eq!(w.rest.requests().len() + w.control.requests().len() + w.media.requests().len(), 0);
    }

    fn respond_after_auth_and_rate_limits(driver) {
        let w = world(driver);
        let mut c = w.gw.client();
        let r = c.request(&Req::get("/guarded"));
        assert_eq!(r.status, 401, "{}", r.text());
        let keyed = Req::get("/guarded").header("X-API-Key", KEY);
        let r = c.request(&keyed);
        assert_eq!((r.status, r.text().as_str()), (202, "accepted at the edge"));
        assert!(r.has("ratelimit") || r.has("x-ratelimit-limit"), "{}", r.head);
        let refused = (0..5).map(|_| c.request(&keyed).status).find(|s| *s != 202);
        assert_eq!(refused, Some(429));
        assert_eq!(w.rest.requests().len(), 0);
    }

    fn respond_with_a_body_still_arriving_closes(driver) {
        let w = world(driver);
        let mut c = w.gw.client();
        // Content-Length announces more than is sent: the answer comes at once, then
        // the connection closes (lingering) since the body cannot be skipped.
        c.send(b"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial");
        let r = c.read_response();
        assert_eq!(r.text(), "pong");
        assert!(r.connection_has("close"), "{}", r.head);
    }
}

/// The `${env:...}` secret reaches the origin, and neither the access log nor
/// `ringgate check` shows it.
#[test]
fn env_secrets_reach_the_upstream_only() {
    const SECRET: &str = "tok-9f8e7d6c5b4a-never-logged";
    let origin = Origin::echo();
    let dir = common::tls::TempDir::new("edge-secret");
    let log = dir.path("access.log").display().to_string();
    let text = fill(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [log]\naccess_log = \"{log}\"\n\
             [[upstreams]]\nname = \"cdn\"\nservers = [\"{{origin}}\"]\n\
             request_headers = {{ Authorization = \"Bearer ${{env:RG_EDGE_TEST_TOKEN}}\" }}\n\
             [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"cdn\"\nauth = \"none\"\n"
        ),
        &[("origin", origin.addr())],
    );
    let path = dir.path("gw.toml").display().to_string();
    std::fs::write(&path, &text).unwrap();

    let check = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["check", "--config", &path])
        .env("RG_EDGE_TEST_TOKEN", SECRET)
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{shown}");
    assert!(!shown.contains(SECRET), "check shows the secret: {shown}");
    // Unset: a config error naming the variable, not a start with an empty token.
    let unset = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["check", "--config", &path])
        .env_remove("RG_EDGE_TEST_TOKEN")
        .output()
        .unwrap();
    assert!(!unset.status.success());
    let err = String::from_utf8_lossy(&unset.stderr);
    assert!(
        err.contains("${env:RG_EDGE_TEST_TOKEN}") && err.contains("not set"),
        "{err}"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["--config", &path])
        .env("RG_EDGE_TEST_TOKEN", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = listening_addr(&mut child);
    let mut c = Client::connect(addr);
    let r = c.request(&Req::get("/files/a").header("Authorization", "Bearer client-own"));
    assert_eq!(r.status, 200);
    let got = origin.only_request();
    assert_eq!(got.all("authorization"), [format!("Bearer {SECRET}")]);
    drop(c);
    // The log line is written after the response; wait for it, then look.
    wait_until("the access log line", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/files/a"))
    });
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logged.contains(SECRET),
        "secret in the access log: {logged}"
    );
}

fn listening_addr(child: &mut std::process::Child) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no start line");
        if let Some(rest) = line.split("listening on ").nth(1) {
            return rest.split([',', ' ']).next().unwrap().parse().unwrap();
        }
    }
}
