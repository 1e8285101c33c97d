//! Demo backends for `ringgate demo`: three small HTTP/1.1 JSON services (users, orders,
//! products) that run inside the gateway's process on 127.0.0.1, so the gateway has
//! something real to proxy. [`DemoServices::start`] binds them and serves them on
//! background threads; [`instructions`] is the text printed afterwards, curl lines to try
//! through the gateway as configured by `config/demo.toml`.
//!
//! They are upstreams, not part of the gateway's own hot path, so they choose plainness
//! over speed: blocking std sockets, one thread per connection, bodies collected whole (and
//! bounded). They still speak HTTP/1.1 properly (keep-alive, pipelining, chunked request
//! bodies, `Expect: 100-continue`, HEAD, `Connection: close`), because the gateway's
//! upstream side is exercised against them and a sloppy backend would hide its bugs.
//! `/echo` on every service answers with the request exactly as it arrived, which shows
//! what the gateway forwarded.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Ports that `config/demo.toml` expects the services on.
pub const USERS_PORT: u16 = 19001;
pub const ORDERS_PORT: u16 = 19002;
pub const PRODUCTS_PORT: u16 = 19003;

const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A chunk-size line with its extensions; real clients send a few bytes.
const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// Per service: each connection is a thread, so the count must be bounded.
const MAX_CONNECTIONS: usize = 256;
/// Longer than the gateway's default upstream `idle_timeout_ms` (60 s) so that the gateway,
/// not the backend, closes idle pooled connections: a backend that closes first races with
/// a request the gateway is just sending on that connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const SLOW_DEFAULT_MS: u64 = 2000;
const SLOW_MAX_MS: u64 = 10_000;
/// Deep enough for any real document, shallow enough that recursion cannot overflow.
const MAX_JSON_DEPTH: usize = 64;

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
                next_user_id: AtomicU64::new(USERS.len() as u64 + 1),
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

/// The text printed after start: what to try, as curl lines that work as printed against
/// gateway address `gw`.
/// Credentials `ringgate demo` made up for this run, printed for the curl lines.
pub struct DemoCredentials {
    /// Free plan, scope users:read.
    pub free_token: String,
    /// Pro plan, scopes users:read and orders:read.
    pub pro_token: String,
    pub api_key: String,
}

/// The demo's published API key (config/demo.toml holds only its SHA-256).
pub const DEMO_API_KEY: &str = "rg_demo_key_7f3c9a2e4b1d4e8f";
/// Where `ringgate demo` puts the secret it signs its tokens with.
pub const DEMO_SECRET_ENV: &str = "RINGGATE_DEMO_JWT_SECRET";

/// Sign a demo token (HS256, kid demo-hs256, valid 24 h) the way config/demo.toml
/// expects it.
pub fn mint_token(secret: &str, user: &str, tenant: &str, plan: &str, scope: &str) -> String {
    let _ = crate::auth::crypto::install();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "iss": "ringgate-demo",
        "aud": "ringgate-demo",
        "sub": user,
        "tenant": tenant,
        "plan": plan,
        "scope": scope,
        "iat": now,
        "exp": now + 24 * 3600,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("demo-hs256".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

/// The text printed after start: what to try, as curl lines that work as printed
/// (after the `export` lines) against gateway address `gw`.
pub fn instructions(gw: SocketAddr, creds: &DemoCredentials) -> String {
    let bearer = |var: &str, path: &str| {
        format!(
            "curl -i -H \"Authorization: Bearer ${var}\" {}",
            url(gw, path)
        )
    };
    let tries: Vec<(&str, String)> = vec![
        (
            "No credential on a protected route: 401 with WWW-Authenticate: Bearer",
            format!("curl -i {}", url(gw, "/api/users")),
        ),
        (
            "The pro user's token: 200, with RateLimit-Policy/RateLimit headers (plan pro)",
            bearer("PRO", "/api/users"),
        ),
        (
            "One user: 200 (an unknown id, such as 9, gets the backend's own not-found JSON)",
            bearer("PRO", "/api/users/2"),
        ),
        (
            "The free token lacks the orders:read scope: 403 insufficient_scope",
            bearer("FREE", "/api/orders"),
        ),
        (
            "The API key (plan pro, scopes users:read orders:read) works too: 200",
            format!("curl -i -H \"X-API-Key: $KEY\" {}", url(gw, "/api/orders")),
        ),
        (
            "A forged token: 401 with error=\"invalid_token\"",
            format!(
                "curl -i -H 'Authorization: Bearer not.a.token' {}",
                url(gw, "/api/users")
            ),
        ),
        (
            "The free plan (60/min, burst 10): 11 quick requests per worker at most, then 429",
            format!(
                "for i in $(seq 30); do curl -s -o /dev/null -w '%{{http_code}}\\n' \
                 -H \"Authorization: Bearer $FREE\" {}; done",
                url(gw, "/api/users")
            ),
        ),
        (
            "What the backend received: X-User-ID, X-Tenant-ID, X-User-Plan, X-User-Scopes, \
             no Authorization",
            bearer("PRO", "/api/echo"),
        ),
        (
            "A cached product, asked twice on one connection: X-Cache: MISS, then HIT (each worker has its own cache)",
            format!(
                "curl -si -w '\\n' {0} {0} | grep -E '^HTTP|^X-Cache|^Age'",
                url(gw, "/api/products/2")
            ),
        ),
        (
            "Create a user: 201 and the body echoed back with a new id (not stored)",
            format!(
                "curl -i -H \"Authorization: Bearer $PRO\" -H 'Content-Type: application/json' \
                 -d '{{\"name\":\"Grace\"}}' {}",
                url(gw, "/api/users")
            ),
        ),
        (
            "A slow backend: 200 after half a second",
            format!("curl -i {}", url(gw, "/api/slow?ms=500")),
        ),
        (
            "A failing backend: its 500 JSON passed through",
            format!("curl -i {}", url(gw, "/api/fail")),
        ),
        (
            "Slower than the route's 3 s timeout: the gateway answers 504",
            format!("curl -i {}", url(gw, "/api/slow?ms=8000")),
        ),
        (
            "No route matches: the gateway's own 404 JSON",
            format!("curl -i {}", url(gw, "/nope")),
        ),
    ];
    let mut text = format!(
        "ringgate demo: gateway on http://{gw}, demo backends (users, orders, products) \
         running in this process behind it.\n\
         First, in your shell (tokens signed for this run, valid 24 h):\n\n\
         export FREE='{}'\nexport PRO='{}'\nexport KEY='{}'\n\nThen try:\n\n",
        creds.free_token, creds.pro_token, creds.api_key
    );
    for (what, line) in tries {
        text.push_str(&format!("# {what}\n{line}\n\n"));
    }
    text
}

/// A URL as a shell word: single-quoted when it holds characters the shell would expand
/// (`?` and `[]` glob, `&` backgrounds).
fn url(gw: SocketAddr, path: &str) -> String {
    let url = format!("http://{gw}{path}");
    if url.contains(['?', '*', '[', ']', '&']) {
        format!("'{url}'")
    } else {
        url
    }
}

// ---------------------------------------------------------------------------------------
// Accepting and serving connections
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Users,
    Orders,
    Products,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Orders => "orders",
            Service::Products => "products",
        }
    }
}

/// What one service's threads share.
struct Shared {
    service: Service,
    shutdown: Arc<AtomicBool>,
    next_user_id: AtomicU64,
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
    let resp = handle(shared, &req);
    let head_only = req.method == "HEAD";
    write_response(&mut conn.stream, shared.service, &resp, head_only, persist)?;
    Ok(persist)
}

/// Why a request could not be served.
#[derive(Debug, PartialEq, Eq)]
enum ReqError {
    /// Socket error or timeout: nothing can be sent.
    Io,
    /// The client closed the connection, between requests or in the middle of one.
    Closed,
    Bad(&'static str),
    HeadTooLarge,
    BodyTooLarge,
    Unsupported(&'static str),
}

impl From<io::Error> for ReqError {
    fn from(_: io::Error) -> ReqError {
        ReqError::Io
    }
}

impl ReqError {
    /// The one place a request error becomes a response. The connection is closed after
    /// it in every case: once framing is in doubt, the next request cannot be found.
    fn response(&self) -> Option<Response> {
        let (status, code, message) = match self {
            ReqError::Io | ReqError::Closed => return None,
            ReqError::Bad(why) => (400, "bad_request", *why),
            ReqError::HeadTooLarge => (431, "head_too_large", "request head over 64 KiB"),
            ReqError::BodyTooLarge => (413, "body_too_large", "request body over 1 MiB"),
            ReqError::Unsupported(why) => (501, "not_implemented", *why),
        };
        Some(Response::error(status, code, message))
    }
}

/// A connection's socket and the bytes read from it but not yet consumed (the next
/// pipelined request may already be there).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads more bytes into `buf`; the end of the stream is [`ReqError::Closed`].
    fn fill(&mut self) -> Result<(), ReqError> {
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReqError::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
    }

    /// Moves exactly `n` body bytes to `out`.
    fn read_exact_into(&mut self, mut n: usize, out: &mut Vec<u8>) -> Result<(), ReqError> {
        loop {
            let take = n.min(self.buf.len());
            out.extend_from_slice(&self.buf[..take]);
            self.consume(take);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill()?;
        }
    }

    /// One CRLF-terminated line without its CRLF, at most `limit` bytes. A bare LF or CR is
    /// refused: lenient line endings are how request smuggling starts.
    fn read_line(&mut self, limit: usize) -> Result<Vec<u8>, ReqError> {
        loop {
            if let Some(lf) = self.buf.iter().position(|&b| b == b'\n') {
                let line = &self.buf[..lf];
                let Some(line) = line.strip_suffix(b"\r") else {
                    return Err(ReqError::Bad("line not ended by CRLF"));
                };
                if line.len() > limit || line.contains(&b'\r') {
                    return Err(ReqError::Bad("malformed line in chunked body"));
                }
                let line = line.to_vec();
                self.consume(lf + 1);
                return Ok(line);
            }
            if self.buf.len() > limit + 1 {
                return Err(ReqError::Bad("line too long in chunked body"));
            }
            self.fill()?;
        }
    }

    /// Closes after an error response without losing it: closing a socket that still has
    /// unread request bytes makes the kernel send RST, which can destroy the response
    /// before the client reads it. So stop writing, then drain for a bounded while.
    fn linger_close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(500)));
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut sink = [0u8; 8192];
        let mut drained = 0;
        while drained < MAX_BODY_BYTES && Instant::now() < deadline {
            match self.stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// A request as received, body included.
struct Request {
    method: String,
    /// The request target exactly as sent: path and query.
    target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    minor: u8,
    /// In arrival order, names as sent; values are bytes since HTTP does not promise UTF-8.
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    peer: SocketAddr,
}

impl Request {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The comma-separated elements of every `name` field, trimmed, case kept.
    fn header_list(&self, name: &str) -> Vec<String> {
        self.header_values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|item| String::from_utf8_lossy(item.trim_ascii()).into_owned())
            .filter(|item| !item.is_empty())
            .collect()
    }

    fn path_and_query(&self) -> (&str, &str) {
        let mut target = self.target.as_str();
        // Absolute form (RFC 9112 section 3.2.2) comes from clients that take us for a proxy.
        if let Some(rest) = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))
        {
            target = rest.find('/').map_or("/", |i| &rest[i..]);
        }
        target.split_once('?').unwrap_or((target, ""))
    }
}

fn read_head(conn: &mut Conn, peer: SocketAddr) -> Result<Request, ReqError> {
    loop {
        if !conn.buf.is_empty() {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut slots);
            match parsed.parse(&conn.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    if len > MAX_HEAD_BYTES {
                        return Err(ReqError::HeadTooLarge);
                    }
                    let req = request_from(&parsed, peer)?;
                    conn.consume(len);
                    return Ok(req);
                }
                Ok(httparse::Status::Partial) if conn.buf.len() > MAX_HEAD_BYTES => {
                    return Err(ReqError::HeadTooLarge)
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return Err(ReqError::HeadTooLarge),
                Err(_) => return Err(ReqError::Bad("malformed request head")),
            }
        }
        conn.fill()?;
    }
}

fn request_from(parsed: &httparse::Request<'_, '_>, peer: SocketAddr) -> Result<Request, ReqError> {
    let target = parsed.path.unwrap_or_default();
    let form_ok = target.starts_with('/')
        || target == "*"
        || target.starts_with("http://")
        || target.starts_with("https://");
    if !form_ok {
        return Err(ReqError::Bad("invalid request target"));
    }
    let req = Request {
        method: parsed.method.unwrap_or_default().to_owned(),
        target: target.to_owned(),
        minor: parsed.version.unwrap_or(1),
        headers: parsed
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
        body: Vec::new(),
        peer,
    };
    // RFC 9112 section 3.2: an HTTP/1.1 request without exactly one Host gets a 400.
    if req.minor == 1 && req.header_values("host").count() != 1 {
        return Err(ReqError::Bad(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    Ok(req)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// How the request body is delimited (RFC 9112 section 6.3), checked against the limits.
fn framing(req: &Request) -> Result<Framing, ReqError> {
    let has_length = req.header_values("content-length").next().is_some();
    if req.header_values("transfer-encoding").next().is_some() {
        // Both at once is the classic request-smuggling shape: refuse rather than pick one.
        if has_length {
            return Err(ReqError::Bad("both Transfer-Encoding and Content-Length"));
        }
        if req.minor == 0 {
            return Err(ReqError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        let codings = req.header_list("transfer-encoding");
        if !codings
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
        {
            return Err(ReqError::Bad("chunked must be the final transfer coding"));
        }
        if codings.len() > 1 {
            return Err(ReqError::Unsupported(
                "only the chunked transfer coding is supported",
            ));
        }
        return Ok(Framing::Chunked);
    }
    let mut length: Option<u64> = None;
    for value in req.header_values("content-length") {
        // A list of equal values ("5, 5") is allowed; different ones are not.
        for item in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
                return Err(ReqError::Bad("invalid Content-Length"));
            }
            // All digits, so the only way to fail is a number past u64.
            let n = std::str::from_utf8(item)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(ReqError::BodyTooLarge)?;
            if length.is_some_and(|seen| seen != n) {
                return Err(ReqError::Bad("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    match usize::try_from(length.unwrap_or(0)) {
        Ok(n) if n <= MAX_BODY_BYTES => Ok(Framing::Length(n)),
        _ => Err(ReqError::BodyTooLarge),
    }
}

/// Decodes a chunked body (RFC 9112 section 7.1); extensions and trailers are discarded.
fn read_chunked(conn: &mut Conn) -> Result<Vec<u8>, ReqError> {
    let mut body = Vec::new();
    loop {
        let line = conn.read_line(MAX_CHUNK_LINE_BYTES)?;
        let size_field = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = parse_chunk_size(size_field.trim_ascii_end())?;
        if size == 0 {
            let mut trailer_bytes = 0;
            loop {
                let trailer = conn.read_line(MAX_HEAD_BYTES)?;
                if trailer.is_empty() {
                    return Ok(body);
                }
                trailer_bytes += trailer.len() + 2;
                if trailer_bytes > MAX_HEAD_BYTES {
                    return Err(ReqError::HeadTooLarge);
                }
            }
        }
        if size > MAX_BODY_BYTES - body.len() {
            return Err(ReqError::BodyTooLarge);
        }
        conn.read_exact_into(size, &mut body)?;
        if !conn.read_line(0)?.is_empty() {
            return Err(ReqError::Bad("chunk data not followed by CRLF"));
        }
    }
}

/// Hex digits only; a size past usize saturates, which the caller rejects as too large.
fn parse_chunk_size(field: &[u8]) -> Result<usize, ReqError> {
    if field.is_empty() {
        return Err(ReqError::Bad("missing chunk size"));
    }
    field.iter().try_fold(0usize, |size, &b| {
        let digit = char::from(b)
            .to_digit(16)
            .ok_or(ReqError::Bad("invalid chunk size"))?;
        Ok(size
            .checked_mul(16)
            .and_then(|s| s.checked_add(digit as usize))
            .unwrap_or(usize::MAX))
    })
}

fn expects_continue(req: &Request) -> bool {
    req.minor == 1
        && req
            .header_values("expect")
            .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// Send `Connection: close` and close after the response.
    Close,
    /// HTTP/1.1's default; nothing to announce.
    KeepAlive,
    /// An HTTP/1.0 client asked for keep-alive, which must be confirmed in the response.
    KeepAlive10,
}

fn persistence(req: &Request) -> Persist {
    let options = req.header_list("connection");
    let has = |token: &str| options.iter().any(|o| o.eq_ignore_ascii_case(token));
    match (req.minor, has("close"), has("keep-alive")) {
        (_, true, _) => Persist::Close,
        (0, false, true) => Persist::KeepAlive10,
        (0, false, false) => Persist::Close,
        _ => Persist::KeepAlive,
    }
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

struct Response {
    status: u16,
    /// Beyond the ones every response gets (Date, Server, Content-Type, Content-Length).
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Response {
    fn json(status: u16, body: String) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Response {
        let body = format!(
            "{{\"error\":{},\"message\":{}}}",
            json_str(code),
            json_str(message)
        );
        Response::json(status, body)
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
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
    write!(out, "Date: {}\r\n", http_date(SystemTime::now()))?;
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

/// IMF-fixdate (RFC 9110 section 5.6.7): an origin server with a clock must send Date.
fn http_date(now: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (a Thursday).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------
// The services: resources and their data
// ---------------------------------------------------------------------------------------

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

fn handle(shared: &Shared, req: &Request) -> Response {
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

fn echo(service: Service, req: &Request) -> Response {
    let headers: Vec<String> = req
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value);
            format!("[{},{}]", json_str(name), json_str(&value))
        })
        .collect();
    let body = format!(
        "{{\"service\":{},\"method\":{},\"path\":{},\"version\":\"HTTP/1.{}\",\
         \"peer\":\"{}\",\"headers\":[{}],\"body_bytes\":{}}}",
        json_str(service.name()),
        json_str(&req.method),
        json_str(&req.target),
        req.minor,
        req.peer,
        headers.join(","),
        req.body.len()
    );
    Response::json(200, body)
}

/// Echoes the posted object back with a new id. Nothing is stored: the demo stays stateless.
fn create_user(shared: &Shared, req: &Request) -> Response {
    let Ok(text) = std::str::from_utf8(&req.body) else {
        return Response::error(400, "invalid_json", "body is not UTF-8");
    };
    match check_json_object(text.as_bytes()) {
        Err(why) => Response::error(400, "invalid_json", why),
        Ok(true) => Response::error(422, "invalid_user", "id is assigned by the server"),
        Ok(false) => {
            let id = shared.next_user_id.fetch_add(1, Ordering::Relaxed);
            // The checker guarantees `{ ... }` inside JSON whitespace, so slicing off the
            // ASCII braces is safe.
            let object = text.trim_matches([' ', '\t', '\r', '\n']);
            let members = object[1..object.len() - 1].trim_matches([' ', '\t', '\r', '\n']);
            let sep = if members.is_empty() { "" } else { "," };
            Response::json(201, format!("{{\"id\":{id}{sep}{members}}}"))
        }
    }
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
    Response::json(200, format!("{{\"slept_ms\":{ms}}}"))
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

// ---------------------------------------------------------------------------------------
// JSON checking for POST /users
// ---------------------------------------------------------------------------------------

/// Checks that `s` is exactly one JSON object (RFC 8259) and says whether its top level has
/// an "id" member (as spelled, escapes not decoded). Without this check a bad body would be
/// echoed into an invalid JSON response.
fn check_json_object(s: &[u8]) -> Result<bool, &'static str> {
    let mut p = JsonCheck { s, i: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err("body must be a JSON object");
    }
    let has_id = p.object(0)?;
    p.ws();
    if p.i != s.len() {
        return Err("data after the JSON object");
    }
    Ok(has_id)
}

struct JsonCheck<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> JsonCheck<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), &'static str> {
        if depth > MAX_JSON_DEPTH {
            return Err("JSON nested too deeply");
        }
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(depth).map(drop),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err("invalid JSON value"),
        }
    }

    /// At `{`; returns whether a member is named "id".
    fn object(&mut self, depth: usize) -> Result<bool, &'static str> {
        self.i += 1;
        self.ws();
        if self.eat(b'}') {
            return Ok(false);
        }
        let mut has_id = false;
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err("expected a member name");
            }
            has_id |= self.string()? == b"id";
            self.ws();
            if !self.eat(b':') {
                return Err("expected ':' after a member name");
            }
            self.value(depth + 1)?;
            self.ws();
            if self.eat(b'}') {
                return Ok(has_id);
            }
            if !self.eat(b',') {
                return Err("expected ',' or '}' in an object");
            }
        }
    }

    /// At `[`.
    fn array(&mut self, depth: usize) -> Result<(), &'static str> {
        self.i += 1;
        self.ws();
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            self.value(depth + 1)?;
            self.ws();
            if self.eat(b']') {
                return Ok(());
            }
            if !self.eat(b',') {
                return Err("expected ',' or ']' in an array");
            }
        }
    }

    /// At `"`; returns the raw bytes between the quotes.
    fn string(&mut self) -> Result<&'a [u8], &'static str> {
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek() {
                None => return Err("unterminated string"),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(&self.s[start..self.i - 1]);
                }
                Some(b'\\') => match self.s.get(self.i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                    Some(b'u') => {
                        let hex = self.s.get(self.i + 2..self.i + 6);
                        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                            return Err("invalid \\u escape");
                        }
                        self.i += 6;
                    }
                    _ => return Err("invalid escape in string"),
                },
                Some(0..=0x1f) => return Err("control character in string"),
                Some(_) => self.i += 1,
            }
        }
    }

    fn number(&mut self) -> Result<(), &'static str> {
        self.eat(b'-');
        if !self.eat(b'0') && !self.digits() {
            return Err("invalid number");
        }
        if self.eat(b'.') && !self.digits() {
            return Err("invalid number");
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !self.digits() {
                return Err("invalid number");
            }
        }
        Ok(())
    }

    fn digits(&mut self) -> bool {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i > start
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), &'static str> {
        if self
            .s
            .get(self.i..)
            .is_some_and(|rest| rest.starts_with(word))
        {
            self.i += word.len();
            Ok(())
        } else {
            Err("invalid JSON literal")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response as a client sees it.
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// One client connection, keeping bytes read past the current response.
    struct Client {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        fn new(addr: SocketAddr) -> Client {
            let stream = TcpStream::connect(addr).unwrap();
            // A hung server fails the test instead of hanging it.
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            Client {
                stream,
                buf: Vec::new(),
            }
        }

        fn send(&mut self, raw: &str) {
            self.stream.write_all(raw.as_bytes()).unwrap();
        }

        fn fill(&mut self) -> usize {
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).unwrap();
            self.buf.extend_from_slice(&chunk[..n]);
            n
        }

        /// Reads one response; after HEAD (`head_request`) no body follows.
        fn reply(&mut self, head_request: bool) -> Reply {
            loop {
                let mut slots = [httparse::EMPTY_HEADER; 32];
                let mut parsed = httparse::Response::new(&mut slots);
                if let httparse::Status::Complete(len) = parsed.parse(&self.buf).unwrap() {
                    let status = parsed.code.unwrap();
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            let value = String::from_utf8(h.value.to_vec()).unwrap();
                            (h.name.to_owned(), value)
                        })
                        .collect();
                    self.buf.drain(..len);
                    let mut reply = Reply {
                        status,
                        headers,
                        body: String::new(),
                    };
                    let body_len = match reply.header("content-length") {
                        Some(n) if !head_request => n.parse().unwrap(),
                        _ => 0,
                    };
                    while self.buf.len() < body_len {
                        assert!(self.fill() > 0, "closed before the body ended");
                    }
                    let body: Vec<u8> = self.buf.drain(..body_len).collect();
                    reply.body = String::from_utf8(body).unwrap();
                    return reply;
                }
                assert!(self.fill() > 0, "closed before the response head ended");
            }
        }

        /// True when the server has closed and sent nothing more.
        fn closed(&mut self) -> bool {
            self.buf.is_empty() && self.fill() == 0
        }
    }

    fn request(addr: SocketAddr, raw: &str) -> Reply {
        let mut client = Client::new(addr);
        client.send(raw);
        client.reply(raw.starts_with("HEAD "))
    }

    fn get(addr: SocketAddr, target: &str) -> Reply {
        request(
            addr,
            &format!("GET {target} HTTP/1.1\r\nHost: demo\r\n\r\n"),
        )
    }

    #[test]
    fn users_list_item_and_missing_item() {
        let demo = DemoServices::start(0, 0, 0).unwrap();
        let users = demo.addrs().users;

        let all = get(users, "/users");
        assert_eq!(all.status, 200);
        assert_eq!(all.header("server"), Some("ringgate-demo/users"));
        assert_eq!(all.header("content-type"), Some("application/json"));
        assert_eq!(all.header("date").map(|d| d.ends_with(" GMT")), Some(true));
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
        assert!(client.reply(false).body.ends_with("\"body_bytes\":3}"));
        let last = client.reply(false);
        assert!(last.body.starts_with("{\"id\":2,"));
        assert_eq!(last.header("connection"), Some("close"));
        assert!(client.closed());
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
            r#"{"id":4,"name":"Grace","tags":["navy",1.5e3,null,true]}"#
        );

        // Chunks split mid-token, an extension, upper-case hex and a trailer.
        let chunked = request(
            users,
            "POST /users HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\n{\"na\r\n9;ext=1\r\nme\":\"Lin\"\r\nA\r\n, \"x\":{} }\r\n0\r\nX-Trailer: t\r\n\r\n",
        );
        assert_eq!(chunked.status, 201);
        assert_eq!(chunked.body, r#"{"id":5,"name":"Lin", "x":{}}"#);

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
        assert_eq!(post("[1]").status, 400);
        assert_eq!(post("").status, 400);
        assert_eq!(post("{\"id\":7,\"name\":\"x\"}").status, 422);
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
            r#""headers":[["Host","demo"],["X-Request-ID","abc-1"],["X-Forwarded-For","10.0.0.1"],["X-Quote","say \"hi\""],["Content-Length","5"]],"body_bytes":5}"#
        ));
        let orders_echo = request(
            demo.addrs().orders,
            "OPTIONS /echo HTTP/1.1\r\nHost: d\r\n\r\n",
        );
        assert!(orders_echo.body.contains("\"method\":\"OPTIONS\""));
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

    #[test]
    fn instructions_are_copy_pasteable_curl_lines() {
        let gw: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let creds = DemoCredentials {
            free_token: "f.t.k".into(),
            pro_token: "p.t.k".into(),
            api_key: DEMO_API_KEY.into(),
        };
        let text = instructions(gw, &creds);
        for line in [
            "export FREE='f.t.k'\n",
            "export KEY='rg_demo_key_7f3c9a2e4b1d4e8f'\n",
            "curl -i http://127.0.0.1:8080/api/users\n",
            "curl -i -H \"Authorization: Bearer $PRO\" http://127.0.0.1:8080/api/users/2\n",
            "curl -i -H \"Authorization: Bearer $FREE\" http://127.0.0.1:8080/api/orders\n",
            "curl -i -H \"X-API-Key: $KEY\" http://127.0.0.1:8080/api/orders\n",
            "curl -si -w '\\n' http://127.0.0.1:8080/api/products/2 http://127.0.0.1:8080/api/products/2 | grep -E '^HTTP|^X-Cache|^Age'\n",
            "curl -i 'http://127.0.0.1:8080/api/slow?ms=500'\n",
            "curl -i http://127.0.0.1:8080/api/fail\n",
            "curl -i 'http://127.0.0.1:8080/api/slow?ms=8000'\n",
            "curl -i http://127.0.0.1:8080/nope\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // Every curl line has a comment above it saying what to expect.
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with("curl") || l.starts_with("for "))
        {
            assert!(lines[i - 1].starts_with("# "), "{line}");
        }
        let v6 = instructions("[::1]:8080".parse().unwrap(), &creds);
        assert!(v6.contains("curl -i 'http://[::1]:8080/api/users'\n"));
    }

    #[test]
    fn demo_key_matches_the_digest_in_demo_toml() {
        let toml = include_str!("../config/demo.toml");
        let digest = ring::digest::digest(&ring::digest::SHA256, DEMO_API_KEY.as_bytes());
        assert!(toml.contains(&hex::encode(digest.as_ref())));
    }

    #[test]
    fn json_checker() {
        for ok in [
            "{}",
            " {\"a\":[1,-0.5,2e+3,\"\\u00e9\\n\",{\"b\":false}]} ",
            "{\"id2\":1}",
        ] {
            assert_eq!(check_json_object(ok.as_bytes()), Ok(false), "{ok}");
        }
        assert_eq!(check_json_object(b"{\"x\":{\"id\":1},\"id\":2}"), Ok(true));
        assert_eq!(check_json_object(b"{\"x\":{\"id\":1}}"), Ok(false));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        for bad in [
            "",
            "[]",
            "{",
            "{\"a\"}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":tru}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\u{1}\"}",
            "{} {}",
            "{\"a\":1,}",
            deep.as_str(),
        ] {
            assert!(check_json_object(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_are_valid_json_under_their_own_id() {
        for (id, json) in USERS.iter().chain(ORDERS).chain(PRODUCTS) {
            assert_eq!(check_json_object(json.as_bytes()), Ok(true), "{json}");
            assert!(json.starts_with(&format!("{{\"id\":{id},")), "{json}");
        }
    }

    #[test]
    fn http_date_is_imf_fixdate() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_825_600);
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 12:00:00 GMT");
    }
}
