//! Large cached bodies, moved at their first hit into memory-backed files and sent
//! from them with sendfile(2) (`[cache] file_min_bytes`), end to end on both drivers:
//!
//! - a hit is byte for byte the body the origin sent, on a keep-alive connection
//!   that goes on serving (small hits, HEAD, 304, HTTP/1.0) afterwards, with the
//!   file store on and off;
//! - a client that does not read does not hold up the worker's other clients (the
//!   send never blocks the worker);
//! - clients that hang up in the middle of a body cost no one else anything;
//! - an entry dropped (by an unsafe request) while it is still being sent arrives
//!   whole and unchanged, and its URI is then filled afresh;
//! - the paths that copy a stored body into the response (stale-if-error, and a
//!   revalidation answered 304) read a file body whole.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::*;

const BIG: usize = 3 * 1024 * 1024;
/// Larger than what loopback socket buffers hold, even with the reader's receive
/// buffer small, so a send to a client that does not read stays in flight.
const HUGE: usize = 24 * 1024 * 1024;

/// The origin's body for `target`, version `v`: its bytes drawn from both, so every
/// key and version differs. `/huge...` is [`HUGE`] bytes, `/small...` 100, the rest
/// [`BIG`].
fn body_for(target: &str, v: usize) -> Vec<u8> {
    let len = if target.starts_with("/huge") {
        HUGE
    } else if target.starts_with("/small") {
        100
    } else {
        BIG
    };
    pattern(len, checksum(target.as_bytes()) ^ ((v as u64) << 8))
}

/// Answers GETs with [`body_for`] (version = how many GETs of that path came before),
/// fresh for a minute, with an ETag; a request with If-None-Match gets 304; POSTs get
/// 204. `/sie...` is fresh for a second and may then be served stale on error for a
/// minute; after its first answer the origin hangs up on it. `/reval...` is fresh for
/// a second and revalidated with 304 after its first answer.
fn origin() -> Origin {
    let gets: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    Origin::start(move |r| {
        if r.method == "POST" {
            return Reply::new(204).no_body();
        }
        let path = r.target.split('?').next().unwrap_or("").to_owned();
        let v = {
            let mut g = gets.lock().unwrap();
            let n = g.entry(path.clone()).or_insert(0);
            *n += 1;
            *n - 1
        };
        if path.starts_with("/sie") {
            if v > 0 {
                return Reply::hang_up();
            }
            return Reply::ok(body_for(&path, 0))
                .header("Cache-Control", "max-age=1, stale-if-error=60");
        }
        if path.starts_with("/reval") {
            if r.header("if-none-match").is_some() {
                return Reply::new(304)
                    .no_body()
                    .header("ETag", "\"r\"")
                    .header("Cache-Control", "max-age=1");
            }
            return Reply::ok(body_for(&path, 0))
                .header("ETag", "\"r\"")
                .header("Cache-Control", "max-age=1");
        }
        Reply::ok(body_for(&path, v))
            .header("Cache-Control", "max-age=60")
            .header("ETag", &format!("\"{v}\""))
    })
}

fn gateway(driver: IoDriver, origin: &Origin, file_min_bytes: u64) -> Gw {
    let toml = fill(
        &format!(
            "[cache]\nenabled = true\nmax_bytes = 268435456\nmax_object_bytes = 33554432\n\
             file_min_bytes = {file_min_bytes}\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{{origin}}\"]\n\
             [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
             cache = {{ ttl_s = 30 }}\n"
        ),
        &[("origin", origin.addr())],
    );
    Gw::start(driver, &toml)
}

fn x_cache(r: &Response) -> &str {
    r.header("x-cache").unwrap_or("(none)")
}

fn assert_body(r: &Response, want: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.head);
    assert_eq!(r.body.len(), want.len(), "{what}: length; {}", r.head);
    assert!(r.body == want, "{what}: the bytes differ");
    assert_eq!(
        r.header("content-length"),
        Some(want.len().to_string().as_str()),
        "{what}"
    );
}

/// A raw client with a small receive buffer, that reads only when told to.
fn slow_reader(gw: &Gw, target: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&gw.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(&Req::get(target).bytes()).unwrap();
    s
}

/// Read the head of a Content-Length response from `s` (a little at a time): the
/// head, and the body bytes that came with it.
fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = buf.split_off(i + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), body);
        }
        let n = s.read(&mut chunk).expect("read the head");
        assert!(n > 0, "closed before the head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read the rest of a Content-Length response from `s`: `head` and the body bytes
/// that came with it from [`read_head`]; returns the whole body.
fn read_body(s: &mut TcpStream, head: &str, mut body: Vec<u8>) -> Vec<u8> {
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("a Content-Length");
    let mut chunk = vec![0u8; 256 * 1024];
    while body.len() < len {
        let n = s.read(&mut chunk).expect("read the body");
        assert!(n > 0, "closed after {} of {len} body bytes", body.len());
        body.extend_from_slice(&chunk[..n]);
    }
    body
}

both_drivers! {
    fn a_large_hit_is_the_stored_body_and_the_connection_goes_on(driver) {
        for file_min in [65_536, 0] {
            let origin = origin();
            let gw = gateway(driver, &origin, file_min);
            let mut c = gw.client();
            let want = body_for("/big", 0);
            let miss = c.request(&Req::get("/big"));
            assert_eq!(x_cache(&miss), "MISS");
            assert_body(&miss, &want, "miss");
            for i in 0..3 {
                let hit = c.request(&Req::get("/big"));
                assert_eq!(x_cache(&hit), "HIT", "file_min_bytes = {file_min}");
                assert_body(&hit, &want, &format!("hit {i}, file_min_bytes = {file_min}"));
            }
            // The same connection goes on: a small entry, HEAD, a 304.
            let small = c.request(&Req::get("/small"));
            assert_body(&small, &body_for("/small", 0), "small miss");
            let head = c.request(&Req::head("/big"));
            assert_eq!((head.status, x_cache(&head)), (200, "HIT"));
            assert_eq!(head.header("content-length"), Some(BIG.to_string().as_str()));
            assert!(head.body.is_empty());
            let cond = c.request(&Req::get("/big").header("If-None-Match", "\"0\""));
            assert_eq!((cond.status, cond.body.len()), (304, 0), "{}", cond.head);
            let hit = c.request(&Req::get("/big"));
            assert_body(&hit, &want, "hit after HEAD and 304");
            // HTTP/1.0: the body, then the gateway closes.
            let mut old = gw.client();
            let r10 = old.request(&Req::get("/big").http10());
            assert_eq!(x_cache(&r10), "HIT");
            assert_body(&r10, &want, "HTTP/1.0 hit");
            old.assert_closed();
            assert_eq!(origin.requests().len(), 2, "one fill each for /big and /small");
        }
    }

    fn a_client_that_does_not_read_holds_up_no_one_else(driver) {
        let origin = origin();
        let gw = gateway(driver, &origin, 65_536);
        let want = body_for("/huge", 0);
        assert_body(&gw.send(&Req::get("/huge")), &want, "miss");
        // The first hit moves the body into a file; the ones after are sent from it.
        assert_body(&gw.send(&Req::get("/huge")), &want, "first hit");
        // One worker: while its send to the stalled client waits, it must go on
        // serving everybody else, the same large entry included.
        let mut stalled = slow_reader(&gw, "/huge");
        let (head, early) = read_head(&mut stalled);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("X-Cache: HIT"), "{head}");
        let mut other = gw.client();
        assert_body(&other.request(&Req::get("/small")), &body_for("/small", 0), "small");
        let hit = other.request(&Req::get("/huge"));
        assert_eq!(x_cache(&hit), "HIT");
        assert_body(&hit, &want, "another client's hit");
        let body = read_body(&mut stalled, &head, early);
        assert!(body == want, "the stalled client's body differs");
    }

    fn an_entry_dropped_while_it_is_being_sent_arrives_unchanged(driver) {
        let origin = origin();
        let gw = gateway(driver, &origin, 65_536);
        let first = body_for("/huge", 0);
        assert_body(&gw.send(&Req::get("/huge")), &first, "miss");
        assert_body(&gw.send(&Req::get("/huge")), &first, "first hit: into a file");
        let mut stalled = slow_reader(&gw, "/huge");
        let (head, early) = read_head(&mut stalled);
        assert!(head.contains("X-Cache: HIT"), "{head}");
        // An unsafe request drops the entry (its file is closed once the send to the
        // stalled client is done with it); the next GET fills it with new bytes.
        let mut c = gw.client();
        assert_eq!(c.request(&Req::post("/huge", "x")).status, 204);
        let refilled = c.request(&Req::get("/huge"));
        assert_eq!(x_cache(&refilled), "MISS");
        let second = body_for("/huge", 1);
        assert_body(&refilled, &second, "the new fill");
        assert_body(&c.request(&Req::get("/huge")), &second, "a hit of the new fill");
        let body = read_body(&mut stalled, &head, early);
        assert!(body == first, "the dropped entry's bytes changed");
        assert_eq!(origin.requests().len(), 3, "GET, POST, GET");
    }

    fn a_client_that_hangs_up_mid_body_costs_no_one_else(driver) {
        let origin = origin();
        let gw = gateway(driver, &origin, 65_536);
        let want = body_for("/huge", 0);
        assert_body(&gw.send(&Req::get("/huge")), &want, "miss");
        assert_body(&gw.send(&Req::get("/huge")), &want, "first hit: into a file");
        // Several clients take the head and a little of the body, then hang up (with
        // unread data, so the gateway's next send meets a reset, not just a FIN).
        for _ in 0..4 {
            let mut gone = slow_reader(&gw, "/huge");
            let (head, _) = read_head(&mut gone);
            assert!(head.contains("X-Cache: HIT"), "{head}");
            drop(gone);
        }
        // The worker is still there and the entry intact.
        let mut c = gw.client();
        let hit = c.request(&Req::get("/huge"));
        assert_eq!(x_cache(&hit), "HIT");
        assert_body(&hit, &want, "after the hang-ups");
        assert_body(&c.request(&Req::get("/small")), &body_for("/small", 0), "small");
        assert_eq!(origin.requests().len(), 2, "the miss and /small");
    }

    fn stored_file_bodies_are_copied_whole_where_a_response_is_built(driver) {
        let origin = origin();
        let gw = gateway(driver, &origin, 65_536);
        let mut c = gw.client();
        let (sie, reval) = (body_for("/sie", 0), body_for("/reval", 0));
        for (path, want) in [("/sie", &sie), ("/reval", &reval)] {
            assert_body(&c.request(&Req::get(path)), want, "miss");
            let hit = c.request(&Req::get(path));
            assert_eq!(x_cache(&hit), "HIT", "{path}");
            assert_body(&hit, want, "first hit: into a file");
        }
        // Deliberately let both entries go stale (max-age=1): this sleep is the
        // subject.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        // stale-if-error: the origin hangs up; the stale entry is written whole.
        let stale = c.request(&Req::get("/sie"));
        assert_eq!(x_cache(&stale), "STALE", "{}", stale.head);
        assert_body(&stale, &sie, "served stale on error");
        // A revalidation the origin answers 304: the client gets the stored body.
        let mut c = gw.client();
        let again = c.request(&Req::get("/reval"));
        assert_body(&again, &reval, "revalidated");
        assert_eq!(origin.last_request().header("if-none-match"), Some("\"r\""));
        assert_body(&c.request(&Req::get("/small")), &body_for("/small", 0), "after");
    }
}
