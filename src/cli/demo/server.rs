//! The demo backends' HTTP/1.1 server: [`DemoServices::start`] binds the three services
//! (users, orders, products) on 127.0.0.1 and serves each on background threads, one per
//! connection, each connection a loop of: read a request ([`request`](super::request)),
//! ask [`services`](super::services) for the response, write it (here, in one write).
//!
//! The services are upstreams, not part of the gateway's own hot path, so they choose
//! plainness over speed: blocking std sockets, one thread per connection, bodies
//! collected whole (and bounded). They still speak HTTP/1.1 properly (keep-alive,
//! pipelining, chunked request bodies, `Expect: 100-continue`, HEAD, `Connection:
//! close`, refusing the shapes of request smuggling), because the gateway's upstream
//! side is exercised against them and a sloppy backend would hide its bugs.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use super::request::{
    expects_continue, framing, persistence, read_chunked, read_head, Conn, Framing, Persist,
    ReqError,
};
use super::services::{self, Service};

/// Per service: each connection is a thread, so the count must be bounded.
const MAX_CONNECTIONS: usize = 256;
/// Longer than the gateway's default upstream `idle_timeout_ms` (60 s) so that the gateway,
/// not the backend, closes idle pooled connections: a backend that closes first races with
/// a request the gateway is just sending on that connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The three running services. Dropping it stops them too, so a panicking test does not
/// leave threads behind; [`DemoServices::stop`] says so explicitly.
pub struct DemoServices {
    addrs: DemoAddrs,
    shutdown: Arc<AtomicBool>,
    acceptors: Vec<JoinHandle<()>>,
}

/// Where each service listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoAddrs {
    pub users: SocketAddr,
    pub orders: SocketAddr,
    pub products: SocketAddr,
}

impl DemoServices {
    /// Bind the three services (ports given; 0 = OS chooses) on 127.0.0.1 and serve them on
    /// background threads. Returns once all are bound, so they accept connections at once.
    pub fn start(
        users_port: u16,
        orders_port: u16,
        products_port: u16,
    ) -> io::Result<DemoServices> {
        // Bind all three before spawning anything: a port in use then fails cleanly, with
        // nothing left running.
        let bind = |port| TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let listeners = [
            (Service::Users, bind(users_port)?),
            (Service::Orders, bind(orders_port)?),
            (Service::Products, bind(products_port)?),
        ];
        let mut services = DemoServices {
            addrs: DemoAddrs {
                users: listeners[0].1.local_addr()?,
                orders: listeners[1].1.local_addr()?,
                products: listeners[2].1.local_addr()?,
            },
            shutdown: Arc::new(AtomicBool::new(false)),
            acceptors: Vec::with_capacity(3),
        };
        for (service, listener) in listeners {
            let shared = Arc::new(Shared {
                service,
                shutdown: Arc::clone(&services.shutdown),
                next_user_id: AtomicU64::new(services::FIRST_NEW_USER_ID),
                conns: Mutex::new(HashMap::new()),
            });
            // On error `services` is dropped, which stops the acceptors already running.
            let acceptor = thread::Builder::new()
                .name(format!("demo-{}", service.name()))
                .spawn(move || accept_loop(listener, shared))?;
            services.acceptors.push(acceptor);
        }
        Ok(services)
    }

    /// Where the services listen (the OS-chosen ports when 0 was given).
    pub fn addrs(&self) -> DemoAddrs {
        self.addrs
    }

    /// Stop accepting, close every connection, and join all threads.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for DemoServices {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for addr in [self.addrs.users, self.addrs.orders, self.addrs.products] {
            // accept() has no timeout: a connection of our own wakes it to see the flag.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        for acceptor in self.acceptors.drain(..) {
            let _ = acceptor.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Accepting and serving connections
// ---------------------------------------------------------------------------------------

/// What one service's threads share.
pub(super) struct Shared {
    pub(super) service: Service,
    pub(super) shutdown: Arc<AtomicBool>,
    pub(super) next_user_id: AtomicU64,
    /// Open connections by number, so that stopping can shut their sockets down and wake
    /// threads blocked in read(). A Mutex is fine here: this is a demo backend, not the
    /// gateway's hot path.
    conns: Mutex<HashMap<u64, TcpStream>>,
}

/// A poisoned lock only means another connection thread panicked; the map is still usable.
fn lock(conns: &Mutex<HashMap<u64, TcpStream>>) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
    conns.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    loop {
        let accepted = listener.accept();
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        // Join the threads of finished connections so the list stays as long as the open ones.
        let (finished, running) = workers.into_iter().partition(|w| w.is_finished());
        workers = running;
        for worker in finished {
            let _ = worker.join();
        }
        match accepted {
            Ok((stream, peer)) => {
                next_id += 1;
                if let Some(worker) = spawn_connection(stream, peer, &shared, next_id) {
                    workers.push(worker);
                }
            }
            // Usually out of file descriptors: back off rather than spin on the error.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    // Shutting a socket down makes a read() blocked on it return, so every thread ends.
    for stream in lock(&shared.conns).values() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    for worker in workers {
        let _ = worker.join();
    }
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    id: u64,
) -> Option<JoinHandle<()>> {
    {
        let mut conns = lock(&shared.conns);
        if conns.len() >= MAX_CONNECTIONS {
            // Refuse rather than queue: threads stay bounded and the client learns why.
            let busy = Response::error(503, "overloaded", "too many connections to this service");
            let _ = write_response(&mut &stream, shared.service, &busy, false, Persist::Close);
            return None;
        }
        conns.insert(id, stream.try_clone().ok()?);
    }
    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("demo-{}-conn", shared.service.name()))
        .spawn(move || {
            serve_connection(stream, peer, &thread_shared);
            lock(&thread_shared.conns).remove(&id);
        });
    match spawned {
        Ok(worker) => Some(worker),
        Err(_) => {
            lock(&shared.conns).remove(&id);
            None
        }
    }
}

fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    // The timeouts bound how long a silent or stalled client can hold this thread.
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::with_capacity(8192),
    };
    while !shared.shutdown.load(Ordering::SeqCst) {
        match exchange(&mut conn, peer, shared) {
            Ok(Persist::Close) => return,
            Ok(_) => {}
            Err(err) => {
                if let Some(resp) = err.response() {
                    let sent = write_response(
                        &mut conn.stream,
                        shared.service,
                        &resp,
                        false,
                        Persist::Close,
                    );
                    if sent.is_ok() {
                        conn.linger_close();
                    }
                }
                return;
            }
        }
    }
}

/// One request and its response.
fn exchange(conn: &mut Conn, peer: SocketAddr, shared: &Shared) -> Result<Persist, ReqError> {
    let mut req = read_head(conn, peer)?;
    let framing = framing(&req)?;
    if framing != Framing::Length(0) && expects_continue(&req) && conn.buf.is_empty() {
        // Without it curl waits a second before sending a body over 1 KiB.
        conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    req.body = match framing {
        Framing::Length(len) => {
            let mut body = Vec::with_capacity(len);
            conn.read_exact_into(len, &mut body)?;
            body
        }
        Framing::Chunked => read_chunked(conn)?,
    };
    let persist = persistence(&req);
    let resp = services::handle(shared, &req);
    let head_only = req.method == "HEAD";
    write_response(&mut conn.stream, shared.service, &resp, head_only, persist)?;
    Ok(persist)
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

pub(super) struct Response {
    pub(super) status: u16,
    /// Beyond the ones every response gets (Date, Server, Content-Type, Content-Length).
    headers: Vec<(&'static str, String)>,
    pub(super) body: String,
}

impl Response {
    pub(super) fn json(status: u16, body: String) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub(super) fn error(status: u16, code: &str, message: &str) -> Response {
        let body = serde_json::json!({ "error": code, "message": message });
        Response::json(status, body.to_string())
    }

    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// Writes the whole response in one write. HEAD gets the same headers as GET, no body.
fn write_response(
    w: &mut impl Write,
    service: Service,
    resp: &Response,
    head_only: bool,
    persist: Persist,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status))?;
    // An origin server with a clock must send Date (RFC 9110 section 6.6.1).
    write!(
        out,
        "Date: {}\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    )?;
    write!(out, "Server: ringgate-demo/{}\r\n", service.name())?;
    out.extend_from_slice(b"Content-Type: application/json\r\n");
    // A 304 has no body; its Content-Length would have to be the 200's, so leave it out.
    let has_body = resp.status != 304;
    if has_body {
        write!(out, "Content-Length: {}\r\n", resp.body.len())?;
    }
    for (name, value) in &resp.headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    match persist {
        Persist::Close => out.extend_from_slice(b"Connection: close\r\n"),
        Persist::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persist::KeepAlive => {}
    }
    out.extend_from_slice(b"\r\n");
    if has_body && !head_only {
        out.extend_from_slice(resp.body.as_bytes());
    }
    w.write_all(&out)?;
    w.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::request::MAX_BODY_BYTES;
    use super::super::test_client::Client;
    use super::*;

    #[test]
    fn keep_alive_serves_two_requests_on_one_connection() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let mut client = Client::new(demo.addrs().users);
        client.send("GET /users/1 HTTP/1.1\r\nHost: d\r\n\r\n");
        let first = client.reply(false);
        assert_eq!(first.header("connection"), None);
        client.send("GET /users/3 HTTP/1.1\r\nHost: d\r\n\r\n");
        let second = client.reply(false);
        assert_eq!((first.status, second.status), (200, 200));
        assert!(first.body.contains("Ada"));
        assert!(second.body.contains("Alan Turing"));
        demo.stop();
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let mut client = Client::new(demo.addrs().orders);
        client.send(
            "GET /orders/1 HTTP/1.1\r\nHost: d\r\n\r\n\
             POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: 3\r\n\r\nabc\
             GET /orders/2 HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        );
        assert!(client.reply(false).body.starts_with("{\"id\":1,"));
        assert!(client
            .reply(false)
            .body
            .ends_with("\"body_bytes\":3,\"body\":\"abc\"}"));
        let last = client.reply(false);
        assert!(last.body.starts_with("{\"id\":2,"));
        assert_eq!(last.header("connection"), Some("close"));
        assert!(client.closed());
        demo.stop();
    }

    #[test]
    fn expect_100_continue_gets_an_interim_response() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let mut client = Client::new(demo.addrs().users);
        client.send(
            "POST /users HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
        );
        assert_eq!(client.reply(false).status, 100);
        client.send("{}");
        assert_eq!(client.reply(false).status, 201);
        demo.stop();
    }

    #[test]
    fn head_sends_the_headers_of_get_and_no_body() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let mut client = Client::new(demo.addrs().products);
        client.send("HEAD /products/1 HTTP/1.1\r\nHost: d\r\n\r\n");
        let head = client.reply(true);
        client.send("GET /products/1 HTTP/1.1\r\nHost: d\r\n\r\n");
        // Had HEAD sent a body, this would parse those bytes as the status line and fail.
        let get = client.reply(false);
        assert_eq!((head.status, get.status), (200, 200));
        let len = get.body.len().to_string();
        assert_eq!(head.header("content-length"), Some(len.as_str()));
        assert_eq!(head.header("etag"), get.header("etag"));
        demo.stop();
    }

    #[test]
    fn connection_close_and_http_1_0_close_after_the_response() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let users = demo.addrs().users;
        for raw in [
            "GET /health HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
            "GET /health HTTP/1.0\r\n\r\n",
        ] {
            let mut client = Client::new(users);
            client.send(raw);
            let reply = client.reply(false);
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("connection"), Some("close"));
            assert!(client.closed(), "{raw:?}");
        }
        // HTTP/1.0 asking for keep-alive gets it, confirmed in the response.
        let mut client = Client::new(users);
        client.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(client.reply(false).header("connection"), Some("keep-alive"));
        client.send("GET /users/1 HTTP/1.0\r\n\r\n");
        assert_eq!(client.reply(false).status, 200);
        assert!(client.closed());
        demo.stop();
    }

    #[test]
    fn malformed_and_oversized_requests_are_refused_and_closed() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let users = demo.addrs().users;
        let cases = [
            ("GARBAGE\r\n\r\n".to_owned(), 400),
            ("GET /users HTTP/1.1\r\n\r\n".to_owned(), 400),
            ("GET users HTTP/1.1\r\nHost: d\r\n\r\n".to_owned(), 400),
            (
                "POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: 1\r\n\
                 Transfer-Encoding: chunked\r\n\r\n"
                    .to_owned(),
                400,
            ),
            (
                "POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                    .to_owned(),
                400,
            ),
            (
                "POST /echo HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                    .to_owned(),
                501,
            ),
            (
                "POST /echo HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
                    .to_owned(),
                400,
            ),
            (
                "POST /echo HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n"
                    .to_owned(),
                400,
            ),
            (
                "POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: 1048577\r\n\r\n".to_owned(),
                413,
            ),
            (
                "POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: 99999999999999999999999\r\n\r\n"
                    .to_owned(),
                413,
            ),
            (
                "POST /echo HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n"
                    .to_owned(),
                413,
            ),
            (
                format!(
                    "GET /echo HTTP/1.1\r\nHost: d\r\nX-Big: {}\r\n\r\n",
                    "a".repeat(70_000)
                ),
                431,
            ),
        ];
        for (raw, status) in cases {
            let mut client = Client::new(users);
            client.send(&raw);
            let reply = client.reply(false);
            assert_eq!(reply.status, status, "{:?}", &raw[..raw.len().min(80)]);
            assert_eq!(reply.header("connection"), Some("close"));
            assert!(reply.body.starts_with("{\"error\":"));
            assert!(client.closed());
        }
        // Exactly the limit is fine.
        let mut client = Client::new(users);
        let body = "x".repeat(MAX_BODY_BYTES);
        client.send(&format!(
            "POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        assert!(client
            .reply(false)
            .body
            .ends_with("\"body_bytes\":1048576}"));
        demo.stop();
    }

    #[test]
    fn stop_closes_connections_joins_threads_and_frees_the_ports() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let addrs = demo.addrs();
        // An idle keep-alive connection and a request asleep in /slow must not hold stop up.
        let mut idle = Client::new(addrs.users);
        idle.send("GET /health HTTP/1.1\r\nHost: d\r\n\r\n");
        assert_eq!(idle.reply(false).status, 200);
        let mut sleeper = Client::new(addrs.users);
        sleeper.send("GET /slow?ms=10000 HTTP/1.1\r\nHost: d\r\n\r\n");

        let started = Instant::now();
        demo.stop();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(idle.closed());
        for addr in [addrs.users, addrs.orders, addrs.products] {
            assert!(TcpStream::connect(addr).is_err(), "{addr} still accepts");
        }
    }

    #[test]
    fn start_fails_cleanly_when_a_port_is_taken() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        assert!(DemoServices::start(0, port, 0).is_err());
    }
}
