//! Origins as real ones behave, beyond the happy path: they close idle keep-alive
//! connections, restart, drop a connection just as a request arrives on it, answer
//! before the request body is done. nginx in front of the same origins loses no
//! request in any of these; neither may the gateway.

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// One upstream over `origin` (with `extra` upstream keys) behind a catch-all route.
fn config(origin: SocketAddr, extra: &str, route_extra: &str) -> String {
    format!(
        "[[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n{extra}\n\n\
         [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n{route_extra}\n"
    )
}

/// Each method in turn, with a body where the method usually has one; the first is a
/// GET, so that the POST after it is the one that meets a pooled connection.
fn mixed(i: usize) -> Req {
    match i % 4 {
        0 => Req::get("/p"),
        1 => Req::post("/p", format!("post {i}")),
        2 => Req::new("PUT", "/p").body(format!("put {i}")),
        _ => Req::new("DELETE", "/p"),
    }
}

/// "METHOD body" as the origin saw it.
fn echo_method_body(r: &Recorded) -> Reply {
    Reply::ok(format!("{} {}", r.method, String::from_utf8_lossy(&r.body)))
}

/// Send request `i` of [`mixed`]: it must get 200 and the origin's echo of it.
fn send_mixed(client: &mut Client, i: usize) {
    let req = mixed(i);
    let resp = client.request(&req);
    assert_eq!(
        resp.status,
        200,
        "request {i} ({}): {}",
        req.method,
        resp.text()
    );
    let echo = format!(
        "{} {}",
        req.method,
        String::from_utf8_lossy(&req.body_bytes())
    );
    assert_eq!(resp.text(), echo);
}

both_drivers! {
    /// The origin closes every keep-alive connection after 1 s without a request (as
    /// Node's server does after 5 s). Each request comes after the origin closed the
    /// last one: none may go out on the closed connection, whatever its method.
    fn origin_closing_idle_connections_costs_no_request(driver) {
        let origin = Origin::start_idle(Duration::from_secs(1), echo_method_body);
        let gw = Gw::start(driver, &config(origin.addr(), "retries = 0", ""));
        let mut client = gw.client();
        for i in 0..4 {
            send_mixed(&mut client, i);
            assert_eq!(origin.requests().len(), i + 1, "each request reaches the origin once");
            // The origin drops the pooled connection after a second of quiet.
            origin.wait_closed(i + 1);
        }
        let conns: Vec<usize> = origin.requests().iter().map(|r| r.conn).collect();
        assert_eq!(conns, vec![0, 1, 2, 3], "a new connection for each request");
    }

    /// The same with requests 1.5 s apart, as the issue that found it sent them.
    fn requests_every_one_and_a_half_seconds_all_succeed(driver) {
        let origin = Origin::start_idle(Duration::from_secs(1), echo_method_body);
        let gw = Gw::start(driver, &config(origin.addr(), "", ""));
        let mut client = gw.client();
        for i in 0..4 {
            if i > 0 {
                // The scenario's pace, not a wait for readiness.
                std::thread::sleep(Duration::from_millis(1500));
            }
            send_mixed(&mut client, i);
        }
        assert_eq!(origin.requests().len(), 4);
    }

    /// An origin restart drops every pooled connection at once: the next requests,
    /// of every method, all succeed, each reaching the origin exactly once.
    fn origin_restart_costs_no_request(driver) {
        let origin = Origin::start(|r| echo_method_body(r).delay_ms(if r.target == "/slow" { 200 } else { 0 }));
        let gw = Gw::start(driver, &config(origin.addr(), "retries = 0", ""));
        // Four requests at once leave four connections in the pool.
        let addr = gw.addr;
        let warm: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || Client::connect(addr).request(&Req::get("/slow")).status))
            .collect();
        for t in warm {
            assert_eq!(t.join().unwrap(), 200);
        }
        assert_eq!(origin.connections(), 4, "four pooled connections");
        origin.drop_connections();
        let before = origin.requests().len();
        let mut client = gw.client();
        for i in 0..16 {
            send_mixed(&mut client, i);
            assert_eq!(origin.requests().len(), before + i + 1, "request {i} reached the origin once");
        }
    }

    /// A pooled connection the origin drops just as the next request arrives on it
    /// (its idle timer fired then: the peek before reuse saw it alive). Nothing of an
    /// answer came back, so the request goes once more on a new connection, for every
    /// method, and that does not use up `retries` (0 here).
    fn connection_dropped_as_the_request_arrives_is_retried_on_a_fresh_one(driver) {
        let seen: Mutex<HashMap<usize, usize>> = Mutex::new(HashMap::new());
        let origin = Origin::start(move |r| {
            let mut seen = seen.lock().unwrap();
            let n = seen.entry(r.conn).or_insert(0);
            *n += 1;
            if *n == 2 {
                // The second request on a connection: the origin hangs up instead.
                Reply::hang_up()
            } else {
                echo_method_body(r)
            }
        });
        let gw = Gw::start(driver, &config(origin.addr(), "retries = 0", ""));
        let mut client = gw.client();
        for i in 0..8 {
            send_mixed(&mut client, i);
        }
        // Every request but the first went out twice: on the pooled connection, where
        // the origin hung up, and on a new one, which then went to the pool.
        assert_eq!(origin.requests().len(), 15);
        assert_eq!(origin.connections(), 8);
    }

    /// A chunked body whose first bytes come with the head and are malformed is
    /// refused before the upstream is contacted at all.
    fn malformed_first_chunk_never_reaches_the_origin(driver) {
        let origin = Origin::echo();
        let gw = Gw::start(driver, &config(origin.addr(), "", ""));
        let mut client = gw.client();
        client.send(format!(
            "POST /up HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
        ));
        let resp = client.read_response();
        resp.assert_json_error(400);
        client.assert_closed();
        assert_eq!(origin.connections(), 0, "the origin was never contacted");
        assert!(origin.raw_received().is_empty());
    }

    /// An origin answers 413 (with `Connection: close`) as soon as it has the head of
    /// a 64 MiB upload, and stops reading. The client, still uploading slowly, gets
    /// the answer within a second and then a clean close, never a reset.
    fn early_answer_from_a_stalling_origin_reaches_the_uploading_client(driver) {
        let origin = EarlyOrigin::start(false);
        let gw = Gw::start(driver, &config(origin.addr, "", "max_body_bytes = 134217728"));
        let got = upload_slowly(&gw, "/upload", &[]);
        assert_eq!(got.status, 413, "{}", got.text);
        assert!(got.text.contains("\"too big\""), "the origin's body: {}", got.text);
        assert!(got.within < Duration::from_secs(1), "answer after {:?}", got.within);
        assert!(got.head.to_ascii_lowercase().contains("connection: close"), "{}", got.head);
        assert!(got.clean_close, "the connection was reset under the answer");
        assert!(got.sent < 64 << 20, "the upload was not taken to its end");
    }

    /// Interim answers while the body is on its way (a 100 the origin sends unasked, a
    /// 103) do not end the upload: the whole body still reaches the origin, and the
    /// client gets the 103 (once the body is through) and then the final answer on a
    /// connection kept alive. The origin sends them on the head and reads the 16 MiB
    /// body only 100 ms later, so they always arrive while the body is in flight.
    fn interim_answers_during_an_upload_do_not_cut_it(driver) {
        let origin = InterimOrigin::start();
        let gw = Gw::start(driver, &config(origin, "", "max_body_bytes = 33554432"));
        let body = pattern(16 << 20, 7);
        let mut client = gw.client();
        client.send(format!(
            "POST /up HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        client.send(&body);
        let hints = client.read_response();
        assert_eq!(hints.status, 103, "{}", hints.head);
        assert_eq!(hints.header("link"), Some("</s.css>; rel=preload"));
        let resp = client.read_response();
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.text(), format!("got {} bytes, checksum {}", body.len(), checksum(&body)));
        assert_eq!(resp.header("connection"), None, "kept alive: {}", resp.head);
        // The next request on the same connection gets its own hints and answer.
        client.send(Req::post("/up", "small").bytes());
        assert_eq!(client.read_response().status, 103);
        assert_eq!(client.read_response().text(), format!("got 5 bytes, checksum {}", checksum(b"small")));
    }

    /// The same when the origin closes right after answering (its kernel resets the
    /// connection, as it still holds unread body bytes).
    fn early_answer_from_a_closing_origin_reaches_the_uploading_client(driver) {
        let origin = EarlyOrigin::start(true);
        let gw = Gw::start(driver, &config(origin.addr, "", "max_body_bytes = 134217728"));
        let got = upload_slowly(&gw, "/upload", &[]);
        assert_eq!(got.status, 413, "{}", got.text);
        assert!(got.text.contains("\"too big\""), "{}", got.text);
        assert!(got.within < Duration::from_secs(1), "answer after {:?}", got.within);
        assert!(got.clean_close, "the connection was reset under the answer");
    }

    /// The gateway's own early answer (413 on a declared length over the route's
    /// limit) reaches a client that keeps sending, with a clean close.
    fn own_413_reaches_the_uploading_client(driver) {
        let origin = Origin::echo();
        let gw = Gw::start(driver, &config(origin.addr(), "", "max_body_bytes = 1048576"));
        let got = upload_slowly(&gw, "/upload", &[]);
        assert_eq!(got.status, 413, "{}", got.text);
        assert!(got.within < Duration::from_secs(1), "answer after {:?}", got.within);
        assert!(got.clean_close, "the connection was reset under the answer");
        assert_eq!(origin.connections(), 0);
    }

    /// Likewise the auth stage's 401 to an upload without credentials.
    fn own_401_reaches_the_uploading_client(driver) {
        let origin = Origin::echo();
        let template = format!(
            "[auth.api_keys]\nheader = \"x-api-key\"\n[[auth.api_keys.keys]]\nid = \"k\"\n\
             sha256 = \"{}\"\nuser = \"svc\"\n\n{}",
            "00".repeat(32),
            config(origin.addr(), "", "auth = \"required\"")
        );
        let gw = Gw::start(driver, &template);
        let got = upload_slowly(&gw, "/upload", &[]);
        assert_eq!(got.status, 401, "{}", got.text);
        assert!(got.within < Duration::from_secs(1), "answer after {:?}", got.within);
        assert!(got.clean_close, "the connection was reset under the answer");
        assert_eq!(origin.connections(), 0);
    }
}

/// What a slowly uploading client saw.
struct Upload {
    status: u16,
    head: String,
    text: String,
    /// From the head sent to the whole answer read.
    within: Duration,
    /// The gateway closed with a FIN, not a reset.
    clean_close: bool,
    /// Body bytes the client managed to send.
    sent: usize,
}

/// POST a 64 MiB body at about 16 MiB/s (64 KiB every 4 ms) while reading the answer;
/// stop sending once the answer is read, then read to the end of the connection.
fn upload_slowly(gw: &Gw, target: &str, headers: &[(&str, &str)]) -> Upload {
    const TOTAL: usize = 64 << 20;
    let stream = TcpStream::connect(gw.addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut head = format!("POST {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {TOTAL}\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = stream.try_clone().unwrap();
    writer.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_w = stop.clone();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < TOTAL && !stop_w.load(Ordering::SeqCst) {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
            std::thread::sleep(Duration::from_millis(4));
        }
        let _ = writer.shutdown(Shutdown::Write);
        sent
    });
    let mut reader = stream;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut answered: Option<(usize, usize, Duration)> = None;
    let mut clean_close = false;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                clean_close = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::ConnectionReset),
                    "reading the answer: {e}; got {:?}",
                    String::from_utf8_lossy(&got)
                );
                break;
            }
        }
        if answered.is_none() {
            if let Some(end) = find(&got, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if got.len() >= end + 4 + len {
                    answered = Some((end, len, started.elapsed()));
                    stop.store(true, Ordering::SeqCst);
                }
            }
        }
    }
    let sent = sender.join().unwrap();
    let (end, len, within) = answered.unwrap_or_else(|| {
        panic!(
            "no complete answer; got {:?}",
            String::from_utf8_lossy(&got)
        )
    });
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    Upload {
        status: head[9..12].parse().unwrap(),
        text: String::from_utf8_lossy(&got[end + 4..end + 4 + len]).into_owned(),
        head,
        within,
        clean_close,
        sent,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An origin that answers 413 as soon as it has a request's head, never reading the
/// body; then it either closes at once (`close`) or holds the connection without
/// reading for a while.
struct EarlyOrigin {
    addr: SocketAddr,
}

impl EarlyOrigin {
    fn start(close: bool) -> EarlyOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let body = "{\"error\": \"too big\"}";
                    let _ = stream.write_all(
                        format!(
                            "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    if !close {
                        std::thread::sleep(Duration::from_secs(3));
                    }
                });
            }
        });
        EarlyOrigin { addr }
    }
}

/// An origin that, as soon as it has a request's head, sends `100 Continue` (unasked)
/// and `103 Early Hints`, then reads the whole body and answers with its size and
/// checksum. Keep-alive.
fn interim_origin_conn(mut stream: TcpStream) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        if stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
            .is_err()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let reply = format!("got {len} bytes, checksum {}", checksum(&body));
        let _ = stream.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
                reply.len()
            )
            .as_bytes(),
        );
    }
}

struct InterimOrigin;

impl InterimOrigin {
    fn start() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                std::thread::spawn(move || interim_origin_conn(stream));
            }
        });
        addr
    }
}
