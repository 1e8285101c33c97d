//! Harness shared by the end-to-end tests; every test file declares `mod common;` and
//! uses only the public API of `ringgate`.
//!
//! - [`Origin`]: a real HTTP/1.1 origin server on 127.0.0.1:0 (std::net, one thread per
//!   connection, keep-alive) that records every request it receives and answers with
//!   whatever its handler returns ([`Reply`]): a normal, chunked or close-delimited
//!   response, after a delay, raw bytes, or a hang-up.
//! - [`Gw`]: a gateway started through the public API from a TOML template, with the
//!   listener, worker count, I/O driver and logging forced; shut down and joined on drop.
//! - [`Client`] and [`Req`]: a raw-socket HTTP/1.1 client with read timeouts, so that a
//!   hung gateway fails a test instead of hanging it.
//! - [`both_drivers!`]: runs a test body once on io_uring and once on epoll.
//!
//! Nothing here sleeps to wait for readiness: [`Gateway::start`] returns once workers
//! accept, and origins signal recorded requests through a condition variable.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use ringgate::config::{Config, IoDriver};
pub use ringgate::runtime::Gateway;

pub mod limits;
pub mod process;
pub mod redis_server;
pub mod tls;
pub mod tokens;

/// How long a client or a waiting helper waits before declaring the gateway hung.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The Host header [`Req`] sends unless told otherwise.
pub const HOST: &str = "gw.test";

// ---------------------------------------------------------------------------------
// Running a test on both drivers
// ---------------------------------------------------------------------------------

/// `both_drivers! { fn name(driver) { ... } }` expands to `mod name { #[test] fn
/// io_uring() ; #[test] fn epoll() }`, each running the body with that driver. Attributes
/// written before `fn` (such as `#[ignore = "..."]`) apply to both tests.
#[macro_export]
macro_rules! both_drivers {
    ($($(#[$meta:meta])* fn $name:ident($driver:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[allow(unused_variables)]
            fn run($driver: $crate::common::IoDriver) $body

            #[test]
            $(#[$meta])*
            fn io_uring() {
                if $crate::common::driver_available($crate::common::IoDriver::IoUring) {
                    run($crate::common::IoDriver::IoUring)
                }
            }

            #[test]
            $(#[$meta])*
            fn epoll() {
                run($crate::common::IoDriver::Epoll)
            }
        }
    )*};
}

/// io_uring may be forbidden (seccomp, sysctl). The io_uring variant of a test is then
/// skipped with a note, unless `RINGGATE_REQUIRE_URING=1` makes that a failure.
pub fn driver_available(driver: IoDriver) -> bool {
    if driver != IoDriver::IoUring {
        return true;
    }
    match ringgate::runtime::driver::probe_uring(64) {
        Ok(()) => true,
        Err(e) => {
            if std::env::var("RINGGATE_REQUIRE_URING").as_deref() == Ok("1") {
                panic!(
                    "io_uring is not available here: {e} (RINGGATE_REQUIRE_URING=1 makes \
                     this a failure; .ci/run sets it when the kernel offers io_uring)"
                );
            }
            eprintln!("skipped: io_uring is not available here ({e})");
            false
        }
    }
}

fn driver_name(driver: IoDriver) -> &'static str {
    match driver {
        IoDriver::IoUring => "io_uring",
        IoDriver::Epoll => "epoll",
        IoDriver::Auto => "auto",
    }
}

// ---------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*), for large bodies.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// FNV-1a, to compare large bodies without printing them.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A port on 127.0.0.1 where nothing listens (bound once by us, then released).
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// An address whose connection attempts hang: a listener that never accepts, its
/// accept queue filled up, so the kernel drops further SYNs (a connect timeout on
/// loopback). Keep it alive for as long as the address is used.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

pub fn blackhole() -> Blackhole {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    // std listens with a backlog of 128; stop at the first attempt that hangs.
    for _ in 0..10_000 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
            Ok(s) => queued.push(s),
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                return Blackhole {
                    addr,
                    _listener: listener,
                    _queued: queued,
                };
            }
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue never filled up");
}

/// Replace each `{name}` in `template` with its address.
pub fn fill(template: &str, subs: &[(&str, SocketAddr)]) -> String {
    let mut out = template.to_owned();
    for (name, addr) in subs {
        out = out.replace(&format!("{{{name}}}"), &addr.to_string());
    }
    assert!(
        !out.contains("{origin}"),
        "unfilled placeholder in template:\n{out}"
    );
    out
}

/// Poll `cond` until it holds or `IO_TIMEOUT` passes (a readiness wait, not a sleep).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn lookup<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn parse_header_lines(lines: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(lines)
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.to_owned(), v.trim().to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

// ---------------------------------------------------------------------------------
// Reading HTTP/1.1 off a socket (shared by the client and the origin)
// ---------------------------------------------------------------------------------

/// How reading stopped short.
#[derive(Debug)]
pub enum Ended {
    /// End of stream (or a reset).
    Closed,
    /// No byte within the read timeout.
    TimedOut,
    /// The peer broke the framing.
    Bad(String),
}

/// Header fields (or trailer fields) as received: (name, value), in order.
pub type Fields = Vec<(String, String)>;

/// Sees every chunk of bytes read from a socket.
type Tap = Box<dyn FnMut(&[u8]) + Send>;

/// A socket with a read buffer. Everything consumed since the last
/// [`Wire::take_consumed`] is kept, so a caller can see the raw bytes of one message.
struct Wire {
    stream: TcpStream,
    /// A TLS session over `stream` (a client of the gateway's TLS listener).
    tls: Option<Box<rustls::ClientConnection>>,
    buf: Vec<u8>,
    pos: usize,
    consumed: Vec<u8>,
    /// Called with every chunk of bytes read (the origin logs them all).
    tap: Option<Tap>,
}

impl Wire {
    fn new(stream: TcpStream) -> Wire {
        Wire {
            stream,
            tls: None,
            buf: Vec::new(),
            pos: 0,
            consumed: Vec::new(),
            tap: None,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn fill(&mut self) -> Result<(), Ended> {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut tmp = [0u8; 64 * 1024];
        let got = match &mut self.tls {
            Some(tls) => match rustls::Stream::new(&mut **tls, &mut self.stream).read(&mut tmp) {
                // A TCP end without close_notify is an end all the same here.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
            None => self.stream.read(&mut tmp),
        };
        match got {
            Ok(0) => Err(Ended::Closed),
            Ok(n) => {
                if let Some(tap) = &mut self.tap {
                    tap(&tmp[..n]);
                }
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(())
            }
            Err(e) => match e.kind() {
                ErrorKind::Interrupted => Ok(()),
                ErrorKind::WouldBlock | ErrorKind::TimedOut => Err(Ended::TimedOut),
                _ => Err(Ended::Closed),
            },
        }
    }

    fn consume(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        self.consumed.extend_from_slice(&out);
        out
    }

    /// Bytes consumed since the last call.
    fn take_consumed(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.consumed)
    }

    fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, Ended> {
        while self.available().len() < n {
            self.fill()?;
        }
        Ok(self.consume(n))
    }

    /// Up to and including the next `delim`.
    fn read_through(&mut self, delim: &[u8]) -> Result<Vec<u8>, Ended> {
        let mut scanned: usize = 0;
        loop {
            let avail = self.available();
            let from = scanned.saturating_sub(delim.len());
            if let Some(i) = find(&avail[from..], delim) {
                return Ok(self.consume(from + i + delim.len()));
            }
            scanned = avail.len();
            self.fill()?;
        }
    }

    /// A message head (through the empty line), as (first line, headers).
    fn read_head(&mut self) -> Result<(String, Vec<(String, String)>), Ended> {
        let head = self.read_through(b"\r\n\r\n")?;
        let text = &head[..head.len() - 4];
        let line_end = find(text, b"\r\n").unwrap_or(text.len());
        let first = String::from_utf8_lossy(&text[..line_end]).into_owned();
        let headers = parse_header_lines(text.get(line_end + 2..).unwrap_or(b""));
        Ok((first, headers))
    }

    /// A chunked body: (data, trailers).
    fn read_chunked(&mut self) -> Result<(Vec<u8>, Fields), Ended> {
        let mut body = Vec::new();
        loop {
            let line = self.read_through(b"\r\n")?;
            let line = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
            let size_text = line.split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| Ended::Bad(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&self.read_exact(size)?);
            if self.read_exact(2)? != b"\r\n" {
                return Err(Ended::Bad(format!(
                    "chunk of {size} bytes not followed by CRLF"
                )));
            }
        }
        let mut trailers = Vec::new();
        loop {
            let line = self.read_through(b"\r\n")?;
            if line.len() == 2 {
                return Ok((body, trailers));
            }
            trailers.extend(parse_header_lines(&line[..line.len() - 2]));
        }
    }

    /// Everything until the peer closes; `Err` only on a timeout.
    fn read_to_close(&mut self) -> Result<Vec<u8>, Ended> {
        loop {
            match self.fill() {
                Ok(()) => {}
                Err(Ended::Closed) => {
                    let n = self.available().len();
                    return Ok(self.consume(n));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The origin server
// ---------------------------------------------------------------------------------

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Which accepted connection it came on (0, 1, ... in accept order).
    pub conn: usize,
    pub method: String,
    pub target: String,
    /// As written on the request line, e.g. "HTTP/1.1".
    pub version: String,
    /// In order, as received.
    pub headers: Vec<(String, String)>,
    /// After de-chunking.
    pub body: Vec<u8>,
    pub chunked: bool,
    pub trailers: Vec<(String, String)>,
    /// The bytes of this request as received (head, body and its framing).
    pub raw: Vec<u8>,
}

impl Recorded {
    /// The first value of this header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        lookup(&self.headers, name).first().copied()
    }

    /// Every value of this header, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        lookup(&self.headers, name)
    }

    pub fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }
}

#[derive(Debug, Clone)]
enum ReplyBody {
    /// No framing headers and no body (204, 304, or a test that writes its own).
    None,
    Length(Vec<u8>),
    Chunked(Vec<Vec<u8>>, Vec<(String, String)>),
    UntilClose(Vec<u8>),
    /// These bytes verbatim, then close.
    Raw(Vec<u8>),
    /// Close without answering.
    HangUp,
}

/// What the origin answers.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: ReplyBody,
    delay: Duration,
    /// Close the connection after this response without announcing it, as an origin
    /// that drops an idle keep-alive connection does.
    close_after: bool,
    /// Raw replies: keep the connection open afterwards instead of closing it.
    keep_open: bool,
}

impl Reply {
    /// A response with this status and an empty body (`Content-Length: 0`).
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Length(Vec::new()),
            delay: Duration::ZERO,
            close_after: false,
            keep_open: false,
        }
    }

    /// 200 with this body and its Content-Length.
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(200).body(body)
    }

    /// These bytes verbatim, then close (malformed or truncated responses).
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            body: ReplyBody::Raw(bytes.into()),
            ..Reply::new(200)
        }
    }

    /// Close the connection without answering.
    pub fn hang_up() -> Reply {
        Reply {
            body: ReplyBody::HangUp,
            ..Reply::new(200)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = ReplyBody::Length(body.into());
        self
    }

    /// No Content-Length, no Transfer-Encoding, no body.
    pub fn no_body(mut self) -> Reply {
        self.body = ReplyBody::None;
        self
    }

    /// `Transfer-Encoding: chunked`, one chunk per element, then the trailers.
    pub fn chunked(mut self, chunks: &[&[u8]], trailers: &[(&str, &str)]) -> Reply {
        self.body = ReplyBody::Chunked(
            chunks.iter().map(|c| c.to_vec()).collect(),
            trailers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self
    }

    /// No length: the body ends when the origin closes the connection.
    pub fn until_close(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = ReplyBody::UntilClose(body.into());
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Reply {
        self.delay = Duration::from_millis(ms);
        self
    }

    /// For [`Reply::raw`]: keep the connection open after the bytes.
    pub fn keep_open(mut self) -> Reply {
        self.keep_open = true;
        self
    }

    pub fn close_after(mut self) -> Reply {
        self.close_after = true;
        self
    }

    /// Serialise for a request with this method; returns (bytes, close afterwards).
    fn encode(&self, method: &str) -> (Vec<u8>, bool) {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        let has_length = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
        let head_only = method == "HEAD";
        let mut body = Vec::new();
        let mut close = self.close_after;
        match &self.body {
            ReplyBody::None => {}
            ReplyBody::Length(b) => {
                if !has_length {
                    out.push_str(&format!("Content-Length: {}\r\n", b.len()));
                }
                body.extend_from_slice(b);
            }
            ReplyBody::Chunked(chunks, trailers) => {
                out.push_str("Transfer-Encoding: chunked\r\n");
                for c in chunks.iter().filter(|c| !c.is_empty()) {
                    body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    body.extend_from_slice(c);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n");
                for (n, v) in trailers {
                    body.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                }
                body.extend_from_slice(b"\r\n");
            }
            ReplyBody::UntilClose(b) => {
                out.push_str("Connection: close\r\n");
                body.extend_from_slice(b);
                close = true;
            }
            ReplyBody::Raw(b) => return (b.clone(), !self.keep_open),
            ReplyBody::HangUp => return (Vec::new(), true),
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&body);
        }
        (bytes, close)
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

#[derive(Default)]
struct OriginState {
    requests: Vec<Recorded>,
    /// Every byte received, on every connection, complete requests or not.
    raw: Vec<u8>,
    /// Framing errors in what the gateway sent.
    errors: Vec<String>,
}

struct OriginShared {
    state: Mutex<OriginState>,
    changed: Condvar,
    accepted: AtomicUsize,
    closed: AtomicUsize,
    stop: AtomicBool,
    handler: Box<Handler>,
    /// A connection with no request for this long is closed, as Node's server does
    /// with idle keep-alive connections after 5 s.
    idle: Duration,
    /// A handle on every open connection (by accept order), so that a test can drop
    /// them all at once.
    live: Mutex<HashMap<usize, TcpStream>>,
}

impl OriginShared {
    fn lock(&self) -> MutexGuard<'_, OriginState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live_conns(&self) -> MutexGuard<'_, HashMap<usize, TcpStream>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A recording HTTP/1.1 origin on 127.0.0.1; stops accepting when dropped.
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<OriginShared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Origin {
    /// An origin answering every request with `handler`.
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Origin {
        Origin::start_idle(Duration::from_secs(20), handler)
    }

    /// An origin that closes a keep-alive connection once it has been idle for `idle`
    /// (no byte of a next request), without a word, as most origin servers do.
    pub fn start_idle(
        idle: Duration,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(OriginShared {
            state: Mutex::new(OriginState::default()),
            changed: Condvar::new(),
            accepted: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            handler: Box::new(handler),
            idle,
            live: Mutex::new(HashMap::new()),
        });
        let sh = shared.clone();
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let id = sh.accepted.fetch_add(1, Ordering::SeqCst);
                if let Ok(copy) = stream.try_clone() {
                    sh.live_conns().insert(id, copy);
                }
                let sh = sh.clone();
                std::thread::spawn(move || {
                    serve_origin_conn(&sh, stream, id);
                    // The last handle: the socket closes now, as it did before.
                    sh.live_conns().remove(&id);
                    sh.closed.fetch_add(1, Ordering::SeqCst);
                    sh.changed.notify_all();
                });
            }
        });
        Origin {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// An origin answering 200 with `name` as the body (to tell origins apart).
    pub fn named(name: &'static str) -> Origin {
        Origin::start(move |_| Reply::ok(name))
    }

    /// An origin answering 200 with "METHOD target" as the body.
    pub fn echo() -> Origin {
        Origin::start(|r| Reply::ok(format!("{} {}", r.method, r.target)))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> MutexGuard<'_, OriginState> {
        self.shared.lock()
    }

    /// Every complete request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// The only request received; panics unless exactly one arrived.
    pub fn only_request(&self) -> Recorded {
        let reqs = self.requests();
        assert_eq!(
            reqs.len(),
            1,
            "origin got {} requests: {reqs:#?}",
            reqs.len()
        );
        reqs.into_iter().next().unwrap()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Recorded {
        self.requests().pop().expect("origin received no request")
    }

    /// Every byte received on every connection, including incomplete requests.
    pub fn raw_received(&self) -> Vec<u8> {
        self.state().raw.clone()
    }

    /// Framing errors in what the gateway sent (should always be empty).
    pub fn errors(&self) -> Vec<String> {
        self.state().errors.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections that have ended (either side closed).
    pub fn closed(&self) -> usize {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Block until at least `n` requests were recorded; returns them.
    pub fn wait_requests(&self, n: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut st = self.state();
        while st.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {n} requests at the origin (got {})",
                st.requests.len()
            );
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.requests.clone()
    }

    /// Close every connection at once, as an origin that restarts does; returns once
    /// all of them have ended. The listener stays, as a restarted origin's would.
    pub fn drop_connections(&self) {
        for c in self.shared.live_conns().values() {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.wait_closed(self.connections());
    }

    /// Block until at least `n` connections have ended.
    pub fn wait_closed(&self, n: usize) {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut st = self.state();
        while self.closed() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {n} closed connections"
            );
            st = self
                .shared
                .changed
                .wait_timeout(st, left.min(Duration::from_millis(20)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Serve one origin connection until either side closes it.
fn serve_origin_conn(sh: &Arc<OriginShared>, stream: TcpStream, conn: usize) {
    let _ = stream.set_read_timeout(Some(sh.idle));
    let _ = stream.set_nodelay(true);
    let mut w = Wire::new(stream);
    let tap_sh = sh.clone();
    w.tap = Some(Box::new(move |bytes: &[u8]| {
        tap_sh.lock().raw.extend_from_slice(bytes);
    }));
    loop {
        let rec = match read_request(&mut w, conn) {
            Ok(rec) => rec,
            Err(Ended::Bad(e)) => {
                sh.lock().errors.push(e);
                return;
            }
            Err(_) => return,
        };
        let client_close = rec
            .all("connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("close"));
        sh.lock().requests.push(rec.clone());
        sh.changed.notify_all();

        let reply = (sh.handler)(&rec);
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        let (bytes, close) = reply.encode(&rec.method);
        if w.stream.write_all(&bytes).is_err() {
            return;
        }
        if close || client_close {
            let _ = w.stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// One request off an origin connection, body de-chunked.
fn read_request(w: &mut Wire, conn: usize) -> Result<Recorded, Ended> {
    w.take_consumed();
    let (line, headers) = w.read_head()?;
    let mut parts = line.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let version = parts.next().unwrap_or("").to_owned();
    let chunked = lookup(&headers, "transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = lookup(&headers, "content-length")
        .first()
        .map(|v| v.parse::<usize>());
    let (body, trailers) = match (chunked, length) {
        (true, Some(_)) => {
            return Err(Ended::Bad(format!(
                "request with Content-Length and Transfer-Encoding: {line}"
            )))
        }
        (true, None) => w.read_chunked()?,
        (false, Some(Ok(n))) => (w.read_exact(n)?, Vec::new()),
        (false, Some(Err(_))) => return Err(Ended::Bad(format!("bad Content-Length: {line}"))),
        (false, None) => (Vec::new(), Vec::new()),
    };
    Ok(Recorded {
        conn,
        method,
        target,
        version,
        headers,
        body,
        chunked,
        trailers,
        raw: w.take_consumed(),
    })
}

// ---------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------

/// A running gateway; shut down and joined when dropped.
pub struct Gw {
    gw: Option<Gateway>,
    pub addr: SocketAddr,
    pub driver: IoDriver,
}

/// The configuration text actually given to the gateway: `template` with the listener,
/// workers, pinning, driver and logging forced, the admin listener moved off its fixed
/// port, and a short graceful-shutdown bound unless the template sets one.
pub fn render_config(template: &str, driver: IoDriver, workers: usize) -> String {
    let mut server = format!(
        "listen = [\"127.0.0.1:0\"]\nworkers = {workers}\npin_workers = false\n\
         io_driver = \"{}\"\n",
        driver_name(driver)
    );
    if !template.contains("graceful_shutdown_s") {
        server.push_str("graceful_shutdown_s = 2\n");
    }
    let log = "access_log = \"off\"\nlevel = \"error\"\n";
    let admin = "listen = \"127.0.0.1:0\"\n";
    let mut out = String::new();
    let (mut has_server, mut has_log, mut has_admin) = (false, false, false);
    for line in template.lines() {
        out.push_str(line);
        out.push('\n');
        match line.trim() {
            "[server]" => {
                out.push_str(&server);
                has_server = true;
            }
            "[log]" => {
                out.push_str(log);
                has_log = true;
            }
            "[admin]" => has_admin = true,
            _ => {}
        }
    }
    let mut prefix = String::new();
    if !has_server {
        prefix.push_str(&format!("[server]\n{server}\n"));
    }
    if !has_log {
        prefix.push_str(&format!("[log]\n{log}\n"));
    }
    if !has_admin {
        prefix.push_str(&format!("[admin]\n{admin}\n"));
    }
    prefix + &out
}

/// One upstream "app" with the origin and one catch-all route, after `top` (which may
/// hold `[server]` and `[server.limits]` tables).
pub fn simple_config(origin: &Origin, top: &str) -> String {
    fill(
        &format!(
            "{top}\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{{origin}}\"]\n\n\
             [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n"
        ),
        &[("origin", origin.addr())],
    )
}

/// Routes default to `auth = "required"`; the proxy tests are about proxying, so every
/// route that does not say otherwise gets `auth = "none"`.
pub fn without_auth(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[[routes]]" {
            let block = lines[i + 1..]
                .iter()
                .take_while(|l| !l.trim_start().starts_with('['));
            if !block.clone().any(|l| l.trim_start().starts_with("auth")) {
                out.push_str("auth = \"none\"\n");
            }
        }
    }
    out
}

impl Gw {
    /// Start a one-worker gateway from `template` (already filled).
    pub fn start(driver: IoDriver, template: &str) -> Gw {
        Gw::start_workers(driver, 1, template)
    }

    pub fn start_workers(driver: IoDriver, workers: usize, template: &str) -> Gw {
        let text = without_auth(&render_config(template, driver, workers));
        let cfg = Config::parse(&text, "test.toml")
            .unwrap_or_else(|e| panic!("test config rejected: {e}\n---\n{text}"));
        let gw = Gateway::start(cfg).unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        Gw {
            addr: gw.addrs()[0],
            gw: Some(gw),
            driver,
        }
    }

    /// A gateway in front of one origin with a catch-all route.
    pub fn simple(driver: IoDriver, origin: &Origin) -> Gw {
        Gw::start(driver, &simple_config(origin, ""))
    }

    pub fn gateway(&self) -> &Gateway {
        self.gw.as_ref().expect("gateway already stopped")
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Send one request on a fresh connection and read its response.
    pub fn send(&self, req: &Req) -> Response {
        self.client().request(req)
    }

    /// Ask the workers to drain (non-blocking).
    pub fn shutdown(&self) {
        self.gateway().shutdown();
    }

    /// Shut down and wait for the workers; returns how long the wait took.
    pub fn stop(&mut self) -> Duration {
        let gw = self.gw.take().expect("gateway already stopped");
        gw.shutdown();
        let t = Instant::now();
        gw.join();
        t.elapsed()
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown();
            gw.join();
        }
    }
}

// ---------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------

/// A request to send; `bytes()` serialises it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send the body as these chunks (with `Transfer-Encoding: chunked`).
    chunks: Option<Vec<Vec<u8>>>,
    trailers: Vec<(String, String)>,
}

impl Req {
    pub fn new(method: &str, target: &str) -> Req {
        Req {
            method: method.to_owned(),
            target: target.to_owned(),
            version: "HTTP/1.1".to_owned(),
            headers: vec![("Host".to_owned(), HOST.to_owned())],
            body: Vec::new(),
            chunks: None,
            trailers: Vec::new(),
        }
    }

    pub fn get(target: &str) -> Req {
        Req::new("GET", target)
    }

    pub fn head(target: &str) -> Req {
        Req::new("HEAD", target)
    }

    /// A POST with this body and its Content-Length.
    pub fn post(target: &str, body: impl Into<Vec<u8>>) -> Req {
        Req::new("POST", target).body(body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replace the Host header.
    pub fn host(self, host: &str) -> Req {
        self.no_host().header("Host", host)
    }

    pub fn no_host(mut self) -> Req {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
        self
    }

    pub fn http10(mut self) -> Req {
        self.version = "HTTP/1.0".to_owned();
        self
    }

    pub fn version(mut self, version: &str) -> Req {
        self.version = version.to_owned();
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = body.into();
        self.chunks = None;
        self
    }

    pub fn chunked(mut self, chunks: &[&[u8]]) -> Req {
        self.chunks = Some(chunks.iter().map(|c| c.to_vec()).collect());
        self
    }

    pub fn trailer(mut self, name: &str, value: &str) -> Req {
        self.trailers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The head only (with the framing headers the body needs).
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.target, self.version);
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        let explicit = self.headers.iter().any(|(n, _)| {
            n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
        });
        if !explicit {
            if self.chunks.is_some() {
                out.push_str("Transfer-Encoding: chunked\r\n");
            } else if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT") {
                out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
            }
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// The body as it goes on the wire (chunk framing included).
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.chunks {
            None => self.body.clone(),
            Some(chunks) => {
                let mut out = Vec::new();
                for c in chunks.iter().filter(|c| !c.is_empty()) {
                    out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n");
                for (n, v) in &self.trailers {
                    out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                out
            }
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.head_bytes();
        out.extend_from_slice(&self.body_bytes());
        out
    }
}

/// A response as the client received it.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body came with chunked framing.
    pub chunked: bool,
    pub trailers: Vec<(String, String)>,
    /// The head as text, for failure messages.
    pub head: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        lookup(&self.headers, name).first().copied()
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        lookup(&self.headers, name)
    }

    pub fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Does `Connection` list this token?
    pub fn connection_has(&self, token: &str) -> bool {
        self.lists("connection", token)
    }

    /// Does any `name` field (a comma-separated list) hold this token?
    pub fn lists(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// Assert a gateway-generated error: this status, a JSON body
    /// `{"error","message","request_id"}` whose request_id is the `X-Request-ID` header.
    /// Returns the error code.
    pub fn assert_json_error(&self, status: u16) -> String {
        assert_eq!(
            self.status, status,
            "unexpected status; response:\n{self:#?}"
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.head
        );
        let v = self.json();
        let code = v["error"].as_str().expect("`error` is a string");
        assert!(!code.is_empty(), "empty error code");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "`message` missing: {v}"
        );
        let rid = v["request_id"].as_str().expect("`request_id` is a string");
        assert!(!rid.is_empty(), "empty request_id");
        assert_eq!(self.header("x-request-id"), Some(rid), "{}", self.head);
        code.to_owned()
    }
}

/// A raw HTTP/1.1 client over one connection; responses to pipelined requests are read
/// one after the other from the same buffer.
pub struct Client {
    wire: Wire,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("cannot connect to the gateway at {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            wire: Wire::new(stream),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.wire.stream
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.write(bytes.as_ref())
            .unwrap_or_else(|e| panic!("write to the gateway failed: {e}"));
    }

    /// Write what the gateway accepts; `false` if it closed the connection meanwhile.
    pub fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> bool {
        self.write(bytes.as_ref()).is_ok()
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.wire.tls {
            Some(tls) => {
                let mut s = rustls::Stream::new(&mut **tls, &mut self.wire.stream);
                s.write_all(bytes)?;
                s.flush()
            }
            None => self.wire.stream.write_all(bytes),
        }
    }

    /// A TLS connection to the gateway's TLS listener at `addr`, the handshake done:
    /// `Err` with rustls's reason when it fails.
    pub fn try_connect_tls(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        sni: &str,
    ) -> Result<Client, std::io::Error> {
        let mut c = Client::connect(addr);
        let mut tls =
            rustls::ClientConnection::new(config, tls::name(sni)).map_err(std::io::Error::other)?;
        while tls.is_handshaking() {
            tls.complete_io(&mut c.wire.stream)?;
        }
        c.wire.tls = Some(Box::new(tls));
        Ok(c)
    }

    pub fn connect_tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>, sni: &str) -> Client {
        Client::try_connect_tls(addr, config, sni)
            .unwrap_or_else(|e| panic!("TLS handshake with {addr} failed: {e}"))
    }

    /// The TLS session (after [`Client::connect_tls`]).
    pub fn tls(&self) -> &rustls::ClientConnection {
        self.wire.tls.as_deref().expect("not a TLS client")
    }

    /// Send the request and read its response.
    pub fn request(&mut self, req: &Req) -> Response {
        self.send(req.bytes());
        self.read_response_for(&req.method)
    }

    /// Send the request and read its response, which may be cut short.
    pub fn try_read_after(&mut self, req: &Req) -> Result<Response, (Ended, Vec<u8>)> {
        self.send(req.bytes());
        self.try_read_response(&req.method)
    }

    /// Read the next response to a GET (or any request whose response has a body).
    pub fn read_response(&mut self) -> Response {
        self.read_response_for("GET")
    }

    pub fn read_response_for(&mut self, method: &str) -> Response {
        self.try_read_response(method).unwrap_or_else(|(e, got)| {
            panic!(
                "no complete response ({e:?}); received {:?}",
                String::from_utf8_lossy(&got)
            )
        })
    }

    /// The next response, or why it is incomplete together with the bytes of it that
    /// did arrive.
    pub fn try_read_response(&mut self, method: &str) -> Result<Response, (Ended, Vec<u8>)> {
        self.wire.take_consumed();
        match self.read_response_inner(method) {
            Ok(resp) => Ok(resp),
            Err(e) => {
                let pending = self.wire.available().len();
                self.wire.consume(pending);
                Err((e, self.wire.take_consumed()))
            }
        }
    }

    fn read_response_inner(&mut self, method: &str) -> Result<Response, Ended> {
        let (status_line, headers) = self.wire.read_head()?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_owned();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Ended::Bad(format!("bad status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or("").to_owned();
        let mut resp = Response {
            version,
            status,
            reason,
            head: String::from_utf8_lossy(&self.wire.consumed).into_owned(),
            headers,
            body: Vec::new(),
            chunked: false,
            trailers: Vec::new(),
        };
        let no_body =
            method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
        if no_body {
            return Ok(resp);
        }
        let chunked = resp
            .all("transfer-encoding")
            .last()
            .is_some_and(|v| v.to_ascii_lowercase().trim_end().ends_with("chunked"));
        if chunked {
            let (body, trailers) = self.wire.read_chunked()?;
            resp.body = body;
            resp.trailers = trailers;
            resp.chunked = true;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| Ended::Bad(format!("bad Content-Length {len:?}")))?;
            resp.body = self.wire.read_exact(len)?;
        } else {
            resp.body = self.wire.read_to_close()?;
        }
        Ok(resp)
    }

    /// Everything until the gateway closes the connection; panics on a timeout.
    pub fn read_until_close(&mut self) -> Vec<u8> {
        self.wire.read_to_close().unwrap_or_else(|e| {
            panic!(
                "connection still open after {IO_TIMEOUT:?} ({e:?}); got {:?}",
                String::from_utf8_lossy(self.wire.available())
            )
        })
    }

    /// The gateway closed the connection (EOF or reset) and sent nothing more.
    pub fn assert_closed(&mut self) {
        let rest = self.read_until_close();
        assert!(
            rest.is_empty(),
            "expected the connection to close, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Time until the gateway closes the connection; asserts nothing else arrives.
    pub fn time_until_closed(&mut self) -> Duration {
        let t = Instant::now();
        self.assert_closed();
        t.elapsed()
    }
}
