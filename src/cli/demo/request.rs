//! Reading one request from a demo service's connection: the head (httparse, plus the
//! checks RFC 9112 asks of a server: one Host, a valid target), how the body is framed
//! (Content-Length or chunked, refusing the shapes of request smuggling: both at once,
//! differing lengths, codings other than a final `chunked`), the body itself, bounded,
//! and whether the connection stays open. [`ReqError`] is what can go wrong, and the one
//! place it becomes an error response.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::server::Response;

const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
pub(super) const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A chunk-size line with its extensions; real clients send a few bytes.
const MAX_CHUNK_LINE_BYTES: usize = 4096;

/// Why a request could not be served.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReqError {
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
    pub(super) fn response(&self) -> Option<Response> {
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
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
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
    pub(super) fn read_exact_into(
        &mut self,
        mut n: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ReqError> {
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
    pub(super) fn linger_close(&mut self) {
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
pub(super) struct Request {
    pub(super) method: String,
    /// The request target exactly as sent: path and query.
    pub(super) target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(super) minor: u8,
    /// In arrival order, names as sent; values are bytes since HTTP does not promise UTF-8.
    pub(super) headers: Vec<(String, Vec<u8>)>,
    pub(super) body: Vec<u8>,
    pub(super) peer: SocketAddr,
}

impl Request {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The comma-separated elements of every `name` field, trimmed, case kept.
    pub(super) fn header_list(&self, name: &str) -> Vec<String> {
        self.header_values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|item| String::from_utf8_lossy(item.trim_ascii()).into_owned())
            .filter(|item| !item.is_empty())
            .collect()
    }

    pub(super) fn path_and_query(&self) -> (&str, &str) {
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

pub(super) fn read_head(conn: &mut Conn, peer: SocketAddr) -> Result<Request, ReqError> {
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
pub(super) enum Framing {
    Length(usize),
    Chunked,
}

/// How the request body is delimited (RFC 9112 section 6.3), checked against the limits.
pub(super) fn framing(req: &Request) -> Result<Framing, ReqError> {
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
pub(super) fn read_chunked(conn: &mut Conn) -> Result<Vec<u8>, ReqError> {
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

pub(super) fn expects_continue(req: &Request) -> bool {
    req.minor == 1
        && req
            .header_values("expect")
            .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Persist {
    /// Send `Connection: close` and close after the response.
    Close,
    /// HTTP/1.1's default; nothing to announce.
    KeepAlive,
    /// An HTTP/1.0 client asked for keep-alive, which must be confirmed in the response.
    KeepAlive10,
}

pub(super) fn persistence(req: &Request) -> Persist {
    let options = req.header_list("connection");
    let has = |token: &str| options.iter().any(|o| o.eq_ignore_ascii_case(token));
    match (req.minor, has("close"), has("keep-alive")) {
        (_, true, _) => Persist::Close,
        (0, false, true) => Persist::KeepAlive10,
        (0, false, false) => Persist::Close,
        _ => Persist::KeepAlive,
    }
}
