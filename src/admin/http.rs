//! The admin listener's HTTP/1.1: requests read whole (head up to [`MAX_HEAD`], body
//! up to [`MAX_BODY`], by `Content-Length` or chunked), answers written whole. It runs
//! on the admin thread's own blocking sockets, one short-lived thread per connection,
//! at most [`MAX_CONNECTIONS`] at once: the admin API serves operators and scrapers,
//! not traffic, and never touches a worker's loop. The head is parsed with httparse
//! (as the public listeners' parser is), and the same smuggling shapes are refused:
//! both `Content-Length` and `Transfer-Encoding`, a `Transfer-Encoding` other than
//! `chunked`, two different lengths.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::http::chunked::{ChunkEvent, ChunkedDecoder};

/// Largest request head.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (a route, a purge: small JSON).
pub const MAX_BODY: usize = 1024 * 1024;
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection that sends nothing for this long is closed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests per connection, at most.
pub const MAX_REQUESTS: usize = 1000;

/// One request, read whole.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    /// The path without its query, percent-decoding left to the handlers.
    pub path: String,
    pub query: String,
    /// (lower-cased name, value).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The client's `X-Request-ID`, or one made up.
    pub request_id: String,
    pub keep_alive: bool,
}

impl Request {
    pub fn header(&self, lname: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == lname)
            .map(|(_, v)| &v[..])
    }

    /// The value of query parameter `name`, if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Extra header lines, each ending in CRLF.
    pub headers: String,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
            headers: String::new(),
        }
    }

    /// The gateway's error shape: `{"error", "message", "request_id"}`.
    pub fn error(status: u16, message: &str, request_id: &str) -> Response {
        Response::error_with(status, message, request_id, serde_json::Map::new())
    }

    /// As [`Response::error`], with more fields (say, the invalid field's name).
    pub fn error_with(
        status: u16,
        message: &str,
        request_id: &str,
        more: serde_json::Map<String, serde_json::Value>,
    ) -> Response {
        let mut v = serde_json::json!({
            "error": crate::http::generated::status_text(status).1,
            "message": message,
            "request_id": request_id,
        });
        if let Some(o) = v.as_object_mut() {
            o.extend(more);
        }
        Response::json(status, &v)
    }
}

/// Why a request could not be read: answered with this status (and the connection
/// closed), or, for `None`, closed without an answer (the peer left or idled out).
#[derive(Debug)]
pub struct ReadError(pub Option<(u16, &'static str)>);

/// Read one request from `s`; `buf` keeps bytes that arrived after it (pipelining).
pub fn read_request<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> Result<Request, ReadError> {
    let head_end = loop {
        if let Some(i) = memchr::memmem::find(buf, b"\r\n\r\n") {
            if i + 4 > MAX_HEAD {
                return Err(ReadError(Some((431, "request head too large"))));
            }
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError(Some((431, "request head too large"))));
        }
        if fill(s, buf)? == 0 {
            return Err(ReadError(None));
        }
    };
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(&buf[..head_end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(ReadError(Some((400, "malformed request head"))))
        }
    }
    let target = parsed.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: parsed.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        keep_alive: parsed.version == Some(1),
        ..Request::default()
    };
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for h in parsed.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or(ReadError(Some((400, "invalid Content-Length"))))?;
                if length.is_some_and(|l| l != n) {
                    return Err(ReadError(Some((400, "conflicting Content-Length"))));
                }
                length = Some(n);
            }
            "transfer-encoding" => {
                if !h.value.eq_ignore_ascii_case(b"chunked") || chunked {
                    return Err(ReadError(Some((501, "only Transfer-Encoding: chunked"))));
                }
                chunked = true;
            }
            "connection" => {
                let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                if v.split(',').any(|t| t.trim() == "close") {
                    req.keep_alive = false;
                } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                    req.keep_alive = true;
                }
            }
            _ => {}
        }
        req.headers.push((name, h.value.to_vec()));
    }
    if chunked && length.is_some() {
        return Err(ReadError(Some((
            400,
            "both Content-Length and Transfer-Encoding",
        ))));
    }
    buf.drain(..head_end);
    if chunked {
        req.body = read_chunked(s, buf)?;
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(ReadError(Some((413, "request body too large"))));
        }
        while buf.len() < n {
            if fill(s, buf)? == 0 {
                return Err(ReadError(None));
            }
        }
        req.body = buf.drain(..n).collect();
    }
    Ok(req)
}

fn read_chunked<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> Result<Vec<u8>, ReadError> {
    let mut dec = ChunkedDecoder::new();
    let mut body = Vec::new();
    loop {
        let mut at = 0;
        while at < buf.len() {
            match dec.step(&buf[at..]) {
                Ok((used, ev)) => {
                    if let ChunkEvent::Data(r) = &ev {
                        body.extend_from_slice(&buf[at + r.start..at + r.end]);
                        if body.len() > MAX_BODY {
                            return Err(ReadError(Some((413, "request body too large"))));
                        }
                    }
                    at += used;
                    if matches!(ev, ChunkEvent::Done) {
                        buf.drain(..at);
                        return Ok(body);
                    }
                    if used == 0 {
                        break;
                    }
                }
                Err(_) => return Err(ReadError(Some((400, "invalid chunked body")))),
            }
        }
        buf.drain(..at);
        if fill(s, buf)? == 0 {
            return Err(ReadError(None));
        }
    }
}

/// Read more into `buf`; 0 at end of stream.
fn fill<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> Result<usize, ReadError> {
    let mut chunk = [0u8; 8192];
    match s.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(_) => Err(ReadError(None)),
    }
}

/// Write `r` (with `Connection: close` unless `keep_alive`).
pub fn write_response(
    s: &mut TcpStream,
    r: &Response,
    request_id: &str,
    keep_alive: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let (reason, _) = crate::http::generated::status_text(r.status);
    let reason = match r.status {
        200 => "OK",
        201 => "Created",
        _ => reason,
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nDate: {}\r\nCache-Control: no-store\r\n",
        r.status,
        r.content_type,
        r.body.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    )
    .into_bytes();
    if !request_id.is_empty() {
        out.extend_from_slice(b"X-Request-ID: ");
        out.extend_from_slice(request_id.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(r.headers.as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    s.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` given to the reader `step` bytes at a time.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn read_all(data: &[u8], step: usize) -> Vec<Result<Request, Option<u16>>> {
        let mut r = Trickle(data, step);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_request(&mut r, &mut buf) {
                Ok(req) => out.push(Ok(req)),
                Err(ReadError(e)) => {
                    if let Some((status, _)) = e {
                        out.push(Err(Some(status)));
                    }
                    return out;
                }
            }
        }
    }

    #[test]
    fn pipelined_requests_with_both_framings_byte_by_byte() {
        let data = b"POST /a?x=1 HTTP/1.1\r\nContent-Length: 3\r\nX-Request-ID: r1\r\n\r\nabc\
GET /b HTTP/1.0\r\n\r\n\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1;x=y\r\n!\r\n0\r\nT: v\r\n\r\n";
        for step in [1, 7, 4096] {
            let got = read_all(data, step);
            assert_eq!(got.len(), 3, "step {step}");
            let a = got[0].as_ref().unwrap();
            assert_eq!(
                (a.method.as_str(), a.path.as_str(), a.param("x")),
                ("POST", "/a", Some("1"))
            );
            assert_eq!(a.body, b"abc");
            assert!(a.keep_alive);
            let b = got[1].as_ref().unwrap();
            assert!(!b.keep_alive, "HTTP/1.0 closes");
            assert_eq!(got[2].as_ref().unwrap().body, b"hi!");
        }
    }

    #[test]
    fn hostile_shapes_are_refused_with_their_status() {
        for (data, status) in [
            (
                &b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"[..],
                400,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\na", 400),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413),
        ] {
            let got = read_all(data, 3);
            assert_eq!(
                got.last().map(|r| r.as_ref().err().copied()),
                Some(Some(Some(status))),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
        // An endless head is cut at the limit, an endless chunked body too.
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 100, b'a');
        assert_eq!(
            read_all(&long, 4096).last().unwrap().as_ref().err(),
            Some(&Some(431))
        );
        let mut big = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..200 {
            big.extend_from_slice(b"2000\r\n");
            big.extend(std::iter::repeat_n(b'x', 0x2000));
            big.extend_from_slice(b"\r\n");
        }
        assert_eq!(
            read_all(&big, 65536).last().unwrap().as_ref().err(),
            Some(&Some(413))
        );
    }
}
