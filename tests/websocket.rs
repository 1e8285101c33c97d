//! WebSocket relaying (`websocket = true`), end to end on both drivers, with a real
//! WebSocket implementation on both ends (tungstenite: a client, and an echo origin on
//! a std thread): text and binary echoes (one frame > 64 KiB) through the gateway,
//! frames the client sent with its handshake, a close from each side, the handshake
//! refused by auth or the route's rate limit without reaching the origin, an upgrade
//! the origin declines, the upgrade not performed on a route without `websocket`, a
//! 101 nobody asked for, a handshake with a body, the relay counted in `/metrics` and
//! in `max_connections` while open, its access-log line, a quiet relay closed by the
//! idle timeout and at the end of the graceful-shutdown drain, and TLS on either side
//! (a wss client, an https:// origin).

// tungstenite's error and handshake types are its own, and large.
#![allow(clippy::result_large_err)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls::{client_config, Ca, TempDir};
use common::tokens::api_key_digest;
use common::*;
use tungstenite::handshake::client::Request;
use tungstenite::handshake::server::{Request as ServerRequest, Response as ServerResponse};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

const KEY: &str = "websocket-test-key";
const WAIT: Duration = Duration::from_secs(10);

/// What the WebSocket origin saw.
#[derive(Debug)]
enum Seen {
    /// A handshake: its target and header fields (lower-cased names).
    Handshake(String, Vec<(String, String)>),
    /// A message it received (and echoed, on `/ws/echo`).
    Message(Message),
    /// The client's close frame.
    ClientClosed(Option<CloseFrame>),
    /// The connection ended (after a close handshake or not).
    Ended,
}

/// A WebSocket origin: every connection is accepted with tungstenite. On `/ws/echo`
/// messages are echoed; on `/ws/bye` the origin answers the first message with a
/// close of its own; on `/ws/quiet` it only waits. Offers "chat" when asked.
struct WsOrigin {
    addr: SocketAddr,
    seen: Receiver<Seen>,
}

impl WsOrigin {
    fn start() -> WsOrigin {
        WsOrigin::serving(None)
    }

    /// With `tls`, connections are served over TLS with this configuration.
    fn serving(tls: Option<Arc<rustls::ServerConfig>>) -> WsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (tx, tls) = (tx.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve_ws(Retry(stream), tx),
                    Some(cfg) => {
                        let conn = rustls::ServerConnection::new(cfg).unwrap();
                        serve_ws(Retry(rustls::StreamOwned::new(conn, stream)), tx)
                    }
                });
            }
        });
        WsOrigin { addr, seen }
    }

    fn next(&self) -> Seen {
        self.seen
            .recv_timeout(WAIT)
            .expect("the WebSocket origin saw nothing")
    }

    /// Nothing more arrives within a short while (for "the origin saw nothing").
    fn nothing_more(&self) {
        if let Ok(s) = self.seen.recv_timeout(Duration::from_millis(200)) {
            panic!("the origin saw {s:?}");
        }
    }
}

fn serve_ws(stream: impl Read + Write, tx: Sender<Seen>) {
    let mut target = String::new();
    let callback = |req: &ServerRequest, mut resp: ServerResponse| {
        target = req.uri().to_string();
        let fields = req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let _ = tx.send(Seen::Handshake(target.clone(), fields));
        if target.ends_with("/deny") {
            let mut no = tungstenite::handshake::server::ErrorResponse::new(Some("denied".into()));
            *no.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
            return Err(no);
        }
        if req.headers().get("sec-websocket-protocol").is_some() {
            resp.headers_mut()
                .insert("Sec-WebSocket-Protocol", "chat".parse().unwrap());
        }
        resp.headers_mut()
            .insert("X-Origin", "ws-origin".parse().unwrap());
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else {
        let _ = tx.send(Seen::Ended);
        return;
    };
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                let _ = tx.send(Seen::ClientClosed(frame));
                // tungstenite queued the reply; flush it, then the client closes.
                while ws.read().is_ok() {}
                break;
            }
            // Measuring: echoed, not reported.
            Ok(m) if target.ends_with("/bench") => {
                if ws.send(m).is_err() {
                    break;
                }
            }
            Ok(m) if m.is_text() || m.is_binary() => {
                let _ = tx.send(Seen::Message(m.clone()));
                if target.ends_with("/bye") {
                    let _ = ws.close(Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: "origin done".into(),
                    }));
                } else if !target.ends_with("/quiet") && ws.send(m).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = tx.send(Seen::Ended);
}

fn config(ws: &WsOrigin, plain: &Origin, top: &str) -> String {
    let text = format!(
        r#"{top}
[auth.api_keys]
header = "X-API-Key"
[[auth.api_keys.keys]]
id = "k1"
sha256 = "{digest}"
user = "svc-ws"
tenant = "acme"

[[upstreams]]
name = "ws"
servers = ["{{ws}}"]

[[upstreams]]
name = "plain"
servers = ["{{plain}}"]

[[routes]]
id = "ws"
path_prefix = "/ws"
upstream = "ws"
websocket = true
auth = "none"

[[routes]]
id = "secure"
path_prefix = "/secure"
upstream = "ws"
websocket = true
auth = "required"

[[routes]]
id = "limited"
path_prefix = "/limited"
upstream = "ws"
websocket = true
auth = "none"
rate_limit = {{ requests_per_minute = 1, burst = 1, key_by = "ip" }}

[[routes]]
id = "plain"
path_prefix = "/"
upstream = "plain"
auth = "none"
"#,
        digest = api_key_digest(KEY),
    );
    fill(&text, &[("ws", ws.addr), ("plain", plain.addr())])
}

struct World {
    ws: WsOrigin,
    plain: Origin,
    gw: Gw,
}

fn world(driver: IoDriver, top: &str) -> World {
    let ws = WsOrigin::start();
    let plain = Origin::start(|r| match r.target.as_str() {
        "/switch" => Reply::raw(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        ),
        _ => Reply::ok("plain answer"),
    });
    let gw = Gw::start(driver, &config(&ws, &plain, top));
    World { ws, plain, gw }
}

type Ws = WebSocket<Retry<TcpStream>>;

/// A stream whose reads and writes are tried again when a signal interrupts them
/// (the gateway runs in this process), as `std::io::Read::read_exact` would.
struct Retry<S>(S);

impl<S: Read> Read for Retry<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

impl<S: Write> Write for Retry<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.0.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A WebSocket handshake through the gateway to `path`, with extra request fields.
fn connect(
    gw: &Gw,
    path: &str,
    fields: &[(&str, &str)],
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let stream = TcpStream::connect(gw.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    handshake(Retry(stream), &format!("ws://{}{path}", gw.addr), fields)
}

/// A WebSocket handshake on `stream` (plain or TLS) for `url`.
fn handshake<S: Read + Write>(
    stream: S,
    url: &str,
    fields: &[(&str, &str)],
) -> Result<(WebSocket<S>, tungstenite::handshake::client::Response), tungstenite::Error> {
    let host = url.split('/').nth(2).unwrap().to_owned();
    let mut b = Request::builder()
        .uri(url)
        .header("Host", host)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        );
    for (n, v) in fields {
        b = b.header(*n, *v);
    }
    match tungstenite::client(b.body(()).unwrap(), stream) {
        Ok(ok) => Ok(ok),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(e) => panic!("handshake interrupted: {e}"),
    }
}

/// Messages of every kind and size (one of 200 KiB, several reads each way) echo
/// through `c`, and the origin saw each.
fn echo_all<S: Read + Write>(c: &mut WebSocket<S>, ws: &WsOrigin) {
    let messages = [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary(pattern(200 * 1024, 7)),
        Message::text("x".repeat(70 * 1024)),
        Message::text("last"),
    ];
    for m in &messages {
        c.send(m.clone()).unwrap();
        let back = c.read().unwrap();
        assert_eq!(&back, m, "echoed as sent");
        match ws.next() {
            Seen::Message(got) => assert_eq!(&got, m),
            other => panic!("expected the message at the origin, got {other:?}"),
        }
    }
}

/// The client closes: the origin sees its close frame, the close handshake
/// completes, and both ends close.
fn client_close<S: Read + Write>(mut c: WebSocket<S>, ws: &WsOrigin) {
    c.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "client done".into(),
    }))
    .unwrap();
    match ws.next() {
        Seen::ClientClosed(Some(f)) => {
            assert_eq!(f.code, CloseCode::Normal);
            assert_eq!(f.reason.as_str(), "client done");
        }
        other => panic!("expected the client's close at the origin, got {other:?}"),
    }
    loop {
        match c.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("the close handshake did not complete: {e}"),
        }
    }
    assert!(matches!(ws.next(), Seen::Ended));
}

/// The response of a handshake that was not switched.
fn refused(r: Result<(Ws, impl std::fmt::Debug), tungstenite::Error>) -> (u16, String) {
    match r {
        Err(tungstenite::Error::Http(resp)) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or(b"")).into_owned(),
        ),
        Ok((_, resp)) => panic!("the handshake was switched: {resp:?}"),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn handshake_seen(ws: &WsOrigin) -> (String, Vec<(String, String)>) {
    match ws.next() {
        Seen::Handshake(target, fields) => (target, fields),
        other => panic!("expected a handshake, got {other:?}"),
    }
}

fn scrape_value(gw: &Gw, metric: &str) -> Option<f64> {
    let admin = gw.gateway().admin_addr().expect("an admin listener");
    let r = Client::connect(admin).request(&Req::get("/metrics"));
    assert_eq!(r.status, 200);
    r.text().lines().find_map(|l| {
        let (name, v) = l.split_once(' ')?;
        (name == metric).then(|| v.trim().parse().unwrap())
    })
}

both_drivers! {
    /// Text and binary messages (one of 200 KiB, several frames' worth of reads each
    /// way) echo through the gateway; the origin got the handshake with the upgrade
    /// fields and the client's Sec-WebSocket-* untouched; the client got the 101 with
    /// the origin's fields; then the client closes and the origin sees its close.
    fn echo_and_client_close(driver) {
        let w = world(driver, "");
        let (mut c, resp) = connect(&w.gw, "/ws/echo", &[("Sec-WebSocket-Protocol", "chat")])
            .expect("the handshake is switched");
        assert_eq!(resp.status().as_u16(), 101);
        assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
        assert_eq!(resp.headers()["x-origin"], "ws-origin");
        assert!(resp.headers().contains_key("x-request-id"));
        let (target, fields) = handshake_seen(&w.ws);
        assert_eq!(target, "/ws/echo");
        assert_eq!(field(&fields, "upgrade"), Some("websocket"));
        assert_eq!(field(&fields, "connection"), Some("Upgrade"));
        assert_eq!(field(&fields, "sec-websocket-version"), Some("13"));
        assert_eq!(field(&fields, "sec-websocket-protocol"), Some("chat"));
        assert!(field(&fields, "sec-websocket-key").is_some());
        assert!(field(&fields, "x-request-id").is_some());

        echo_all(&mut c, &w.ws);
        client_close(c, &w.ws);
        assert!(w.plain.requests().is_empty());
    }

    /// The origin closes: the client gets its close frame (code and reason), and the
    /// relay ends once both sides have closed; the relay was counted while it was open.
    fn origin_close_and_metrics(driver) {
        let w = world(driver, "");
        let (mut c, _) = connect(&w.gw, "/ws/bye", &[]).expect("switched");
        handshake_seen(&w.ws);
        wait_until("the relay counted as open", || {
            scrape_value(&w.gw, "ringgate_websockets_open") == Some(1.0)
        });
        assert_eq!(scrape_value(&w.gw, "ringgate_websockets_total"), Some(1.0));
        c.send(Message::text("bye?")).unwrap();
        match c.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::Away);
                assert_eq!(f.reason.as_str(), "origin done");
            }
            other => panic!("expected the origin's close, got {other:?}"),
        }
        loop {
            match c.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("the close handshake did not complete: {e}"),
            }
        }
        // The origin has closed its end; the relay ends when the client closes its own.
        assert_eq!(scrape_value(&w.gw, "ringgate_websockets_open"), Some(1.0));
        drop(c);
        wait_until("the relay no longer counted", || {
            scrape_value(&w.gw, "ringgate_websockets_open") == Some(0.0)
        });
    }

    /// A route with `auth = "required"`: a handshake without credentials gets the
    /// gateway's 401 JSON, and the origin never hears of it; with the key it is relayed.
    fn auth_refused(driver) {
        let w = world(driver, "");
        let (status, body) = refused(connect(&w.gw, "/secure/chat", &[]));
        assert_eq!(status, 401);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(json["error"].is_string() && json["request_id"].is_string(), "{body}");
        w.ws.nothing_more();

        let (mut c, _) = connect(&w.gw, "/secure/chat", &[("X-API-Key", KEY)]).expect("switched");
        let (_, fields) = handshake_seen(&w.ws);
        assert_eq!(field(&fields, "x-user-id"), Some("svc-ws"));
        assert_eq!(field(&fields, "x-api-key"), None, "the credential stays at the edge");
        c.send(Message::text("authorized")).unwrap();
        assert_eq!(c.read().unwrap(), Message::text("authorized"));
    }

    /// A route's rate limit charges handshakes like requests: the second within the
    /// minute gets 429 JSON and never reaches the origin; the first relay goes on.
    fn rate_limited(driver) {
        let w = world(driver, "");
        let (mut c, _) = connect(&w.gw, "/limited/echo", &[]).expect("the first is switched");
        handshake_seen(&w.ws);
        let (status, body) = refused(connect(&w.gw, "/limited/echo", &[]));
        assert_eq!(status, 429, "{body}");
        assert!(body.contains("\"error\""), "{body}");
        w.ws.nothing_more();
        c.send(Message::text("still relayed")).unwrap();
        assert_eq!(c.read().unwrap(), Message::text("still relayed"));
    }

    /// A relay is the client connection it came on: with `max_connections = 1` an open
    /// relay keeps a second connection out, and once it ends one is admitted again.
    fn counted_in_max_connections(driver) {
        let w = world(driver, "[server]\nmax_connections = 1\n");
        let (mut c, _) = connect(&w.gw, "/ws/echo", &[]).expect("switched");
        handshake_seen(&w.ws);
        let mut other = Client::connect(w.gw.addr);
        other.try_send(Req::get("/plain").bytes());
        assert!(other.time_until_closed() < Duration::from_secs(2), "refused at once");
        assert_eq!(w.gw.gateway().refused_connections(), 1);
        assert!(w.plain.requests().is_empty());
        c.send(Message::text("unaffected")).unwrap();
        assert_eq!(c.read().unwrap(), Message::text("unaffected"));
        drop(c);
        wait_until("a slot to free up", || {
            let mut c = Client::connect(w.gw.addr);
            c.try_send(Req::get("/later").bytes())
                && c.try_read_response("GET").is_ok_and(|r| r.status == 200)
        });
    }

    /// The access log has one line for a relay, written when it ends: status 101, the
    /// route, and the bytes the client received (the 101 and every echoed frame).
    fn access_log_line(driver) {
        let ws = WsOrigin::start();
        let plain = Origin::echo();
        let dir = TempDir::new("ws-log");
        let log = dir.path("access.log");
        let text = without_auth(&render_config(&config(&ws, &plain, ""), driver, 1))
            .replace("access_log = \"off\"", &format!("access_log = \"{}\"", log.display()));
        let cfg = ringgate::Config::parse(&text, "test.toml").unwrap();
        let gw = ringgate::Gateway::start(cfg).unwrap();
        let addr = gw.addrs()[0];
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let (mut c, _) = handshake(Retry(s), &format!("ws://{addr}/ws/echo"), &[]).unwrap();
        handshake_seen(&ws);
        let payload = 100_000;
        c.send(Message::binary(vec![7u8; payload])).unwrap();
        c.read().unwrap();
        assert!(matches!(ws.next(), Seen::Message(_)));
        client_close(c, &ws);
        gw.shutdown();
        gw.join();
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = &lines[0];
        assert_eq!(line["status"], 101, "{line}");
        assert_eq!(line["route"], "ws", "{line}");
        assert_eq!(line["path"], "/ws/echo", "{line}");
        let out = line["bytes_out"].as_u64().unwrap();
        // The 101 head, the echoed frame (payload + 4-byte header), the close frame.
        assert!(out > payload as u64 + 4 && out < payload as u64 + 1024, "{line}");
    }

    /// An origin that declines the upgrade: its answer is relayed as a response.
    fn declined_upgrade(driver) {
        let w = world(driver, "");
        let (status, body) = refused(connect(&w.gw, "/ws/deny", &[]));
        assert_eq!(status, 403);
        // The origin's body ends with its connection: the gateway sends it chunked,
        // and tungstenite's client hands over the body as it came.
        assert!(body.contains("\r\ndenied\r\n"), "{body:?}");
        assert!(matches!(handshake_seen(&w.ws), (t, _) if t == "/ws/deny"));
        assert_eq!(scrape_value(&w.gw, "ringgate_websockets_total"), Some(0.0));
    }

    /// A route without `websocket`: the upgrade is not performed. The origin gets a
    /// plain GET (no Upgrade, no upgrade in Connection) and the client its 200.
    fn no_upgrade_elsewhere(driver) {
        let w = world(driver, "");
        let (status, body) = refused(connect(&w.gw, "/chat", &[]));
        assert_eq!(status, 200);
        assert_eq!(body, "plain answer");
        let r = w.plain.only_request();
        assert!(!r.has("upgrade"), "{:?}", r.headers);
        assert!(
            r.all("connection").iter().all(|v| !v.to_ascii_lowercase().contains("upgrade")),
            "{:?}",
            r.headers
        );
        assert!(r.has("sec-websocket-key"), "end-to-end fields are forwarded");
    }

    /// An origin that answers 101 to a request that asked for no upgrade: 502.
    fn unasked_101_is_502(driver) {
        let w = world(driver, "");
        let r = w.gw.send(&Req::get("/switch"));
        r.assert_json_error(502);
    }

    /// A handshake with a body is refused (400) before anything goes upstream.
    fn handshake_with_body(driver) {
        let w = world(driver, "");
        let req = Req::new("GET", "/ws/echo")
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body("x");
        let r = w.gw.send(&req);
        r.assert_json_error(400);
        w.ws.nothing_more();
    }

    /// Frames the client sent in the same write as its handshake (before the 101) are
    /// relayed after it, not lost; a client's half-close reaches the origin.
    fn early_frames_and_half_close(driver) {
        let w = world(driver, "");
        let mut s = Retry(TcpStream::connect(w.gw.addr).unwrap());
        s.0.set_read_timeout(Some(WAIT)).unwrap();
        let mut bytes =
            b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\
             Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        .to_vec();
        // A masked text frame "early" (mask 0, so the payload reads as is).
        bytes.extend_from_slice(&[0x81, 0x85, 0, 0, 0, 0]);
        bytes.extend_from_slice(b"early");
        s.write_all(&bytes).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let end = |g: &[u8]| g.windows(4).position(|x| x == b"\r\n\r\n");
        while end(&got).is_none() || got.len() < end(&got).unwrap() + 4 + 7 {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let head_end = end(&got).unwrap() + 4;
        let head = String::from_utf8_lossy(&got[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        // RFC 6455 §1.3's example key and its accept value, computed by the origin.
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"), "{head}");
        assert!(lower.contains("upgrade: websocket\r\n"), "{head}");
        assert!(lower.contains("connection: upgrade\r\n"), "{head}");
        assert_eq!(&got[head_end..head_end + 7], b"\x81\x05early");
        assert!(matches!(handshake_seen(&w.ws), (t, _) if t == "/ws/echo"));
        assert!(matches!(w.ws.next(), Seen::Message(m) if m == Message::text("early")));
        // A FIN without a close frame: the origin's read ends, and so does the relay.
        s.0.shutdown(Shutdown::Write).unwrap();
        assert!(matches!(w.ws.next(), Seen::Ended));
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }

    /// No traffic either way for the server's `idle_timeout`: the relay is closed.
    fn idle_timeout_closes(driver) {
        let w = world(driver, "[server.limits]\nidle_timeout_ms = 300\n");
        let (mut c, _) = connect(&w.gw, "/ws/quiet", &[]).expect("switched");
        handshake_seen(&w.ws);
        let t = Instant::now();
        assert!(matches!(w.ws.next(), Seen::Ended));
        assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
        assert!(c.read().is_err(), "the client's side is closed too");
    }

    /// Shutdown with a quiet relay open: the drain waits for it until
    /// `graceful_shutdown_s`, then closes it; both ends see the connection end.
    fn shutdown_closes_a_quiet_relay(driver) {
        let mut w = world(driver, "[server]\ngraceful_shutdown_s = 1\n");
        let (mut c, _) = connect(&w.gw, "/ws/quiet", &[]).expect("switched");
        handshake_seen(&w.ws);
        c.send(Message::text("still here")).unwrap();
        assert!(matches!(w.ws.next(), Seen::Message(_)));
        let t = Instant::now();
        let took = w.gw.stop();
        assert!(took >= Duration::from_millis(900), "the drain waited: {took:?}");
        assert!(took < Duration::from_secs(5), "and no longer: {took:?}");
        assert!(matches!(w.ws.next(), Seen::Ended));
        match c.read() {
            Err(tungstenite::Error::Io(_))
            | Err(tungstenite::Error::ConnectionClosed)
            | Err(tungstenite::Error::Protocol(_)) => {}
            other => panic!("the client's connection should be closed, got {other:?}"),
        }
        assert!(t.elapsed() < WAIT);
    }

    /// A wss client (TLS to the gateway) to a plain origin, and a plain client to an
    /// https:// origin: the same echoes and close, through a TLS session on one side.
    fn over_tls(driver) {
        let ca = Ca::new("ws test CA");
        let dir = TempDir::new("ws-tls");
        let (cert, key) = ca.server(&["gw.test"]).write(&dir.0, "gw");
        let origin_leaf = ca.server(&["origin.test"]);
        let mut origin_cfg = rustls::ServerConfig::builder_with_provider(ringgate::tls::provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![origin_leaf.cert_der.clone()], origin_leaf.key())
            .unwrap();
        origin_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let plain_ws = WsOrigin::start();
        let tls_ws = WsOrigin::serving(Some(Arc::new(origin_cfg)));
        let ca_file = ca.write(&dir.0, "ca.pem");
        let text = format!(
            "[server]\n\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\n\
             [[server.tls.certificates]]\nserver_names = [\"gw.test\"]\n\
             cert_file = \"{}\"\nkey_file = \"{}\"\n\n\
             [[upstreams]]\nname = \"plain\"\nservers = [\"{}\"]\n\n\
             [[upstreams]]\nname = \"secure\"\nservers = [\"https://{}\"]\n\
             [upstreams.tls]\nserver_name = \"origin.test\"\nca_file = \"{}\"\n\n\
             [[routes]]\nid = \"to-tls\"\npath_prefix = \"/ws/tls\"\nupstream = \"secure\"\n\
             websocket = true\nauth = \"none\"\n\n\
             [[routes]]\nid = \"ws\"\npath_prefix = \"/ws\"\nupstream = \"plain\"\n\
             websocket = true\nauth = \"none\"\n",
            cert.display(),
            key.display(),
            plain_ws.addr,
            tls_ws.addr,
            ca_file.display(),
        );
        let gw = Gw::start(driver, &text);

        // wss:// to the gateway, plain to the origin.
        let addr = gw.gateway().tls_addrs()[0];
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let conn = rustls::ClientConnection::new(
            client_config(&ca, &["http/1.1"], &[], None),
            common::tls::name("gw.test"),
        )
        .unwrap();
        let (mut c, resp) = handshake(
            Retry(rustls::StreamOwned::new(conn, tcp)),
            "wss://gw.test/ws/echo",
            &[],
        )
        .expect("switched over TLS");
        assert_eq!(resp.status().as_u16(), 101);
        let (target, fields) = handshake_seen(&plain_ws);
        assert_eq!(target, "/ws/echo");
        assert_eq!(field(&fields, "x-forwarded-proto"), Some("https"));
        echo_all(&mut c, &plain_ws);
        client_close(c, &plain_ws);

        // Plain to the gateway, https:// to the origin.
        let (mut c, _) = connect(&gw, "/ws/tls/echo", &[]).expect("switched to a TLS origin");
        assert!(matches!(handshake_seen(&tls_ws), (t, _) if t == "/ws/tls/echo"));
        echo_all(&mut c, &tls_ws);
        client_close(c, &tls_ws);

        // The origin closes, over TLS.
        let (mut c, _) = connect(&gw, "/ws/tls/bye", &[]).expect("switched");
        handshake_seen(&tls_ws);
        c.send(Message::text("bye?")).unwrap();
        assert!(matches!(tls_ws.next(), Seen::Message(_)));
        match c.read() {
            Ok(Message::Close(Some(f))) => assert_eq!(f.reason.as_str(), "origin done"),
            other => panic!("expected the origin's close, got {other:?}"),
        }
    }

    /// Not a check: what the relay costs. Round trips of a 32-byte message, and
    /// 64 MiB echoed in 1 MiB messages, straight to the origin and through the
    /// gateway (one worker). Run with
    /// `cargo test --release --test websocket -- --ignored --nocapture measure`.
    #[ignore = "a measurement; run it on a quiet machine"]
    fn measure(driver) {
        let w = world(driver, "");
        let direct = |path: &str| {
            let s = TcpStream::connect(w.ws.addr).unwrap();
            handshake(Retry(s), &format!("ws://{}{path}", w.ws.addr), &[]).unwrap().0
        };
        let via = |path: &str| connect(&w.gw, path, &[]).unwrap().0;
        for (name, mut c) in [("direct", direct("/ws/bench")), ("gateway", via("/ws/bench"))] {
            let small = Message::text("x".repeat(32));
            let n = 20_000;
            let t = Instant::now();
            for _ in 0..n {
                c.send(small.clone()).unwrap();
                c.read().unwrap();
            }
            let rtt = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            let big = Message::binary(pattern(1 << 20, 3));
            let t = Instant::now();
            for _ in 0..64 {
                c.send(big.clone()).unwrap();
                c.read().unwrap();
            }
            let mbps = 64.0 * 2.0 / t.elapsed().as_secs_f64();
            println!("{driver:?} {name}: {rtt:.1} us per 32-byte round trip, {mbps:.0} MiB/s echoed (both ways)");
        }
    }
}
