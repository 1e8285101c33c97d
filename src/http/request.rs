//! Request-head parsing: httparse does the tokenising, and this module adds the checks
//! a proxy needs that httparse (and the monoio-http decoder) leave out, so that every
//! request-smuggling shape is refused before a byte is forwarded: bare LF and NUL in the
//! head, Content-Length with Transfer-Encoding, differing or non-numeric lengths, any
//! transfer coding but a single `chunked`, obs-fold, whitespace before a colon (those
//! two httparse already refuses for requests), targets that are neither origin-form nor
//! absolute-form, a missing or repeated Host.
//!
//! [`RequestHead`] is reused for every request of a connection: its vectors keep their
//! capacity, so parsing allocates nothing in the steady state.

use super::header::{
    is_token, list_items, parse_content_length, trim_ows, HeaderKind, HeaderPos, HeaderSlots, Span,
};
use super::HeadError;

/// How a message body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Responses only: the body runs until the upstream closes the connection.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Connect,
    Other,
}

impl Method {
    fn classify(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// RFC 9110 9.2.2: the methods a proxy may repeat after a failure.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// A parsed request head: offsets into the buffer it was parsed from.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub method_span: Span,
    /// Path and query as received (origin-form), or the path part of an absolute-form
    /// target (may then be empty, meaning "/", or start with '?').
    pub target: Span,
    /// Authority of an absolute-form target, else the Host header value (trimmed).
    pub host: Span,
    pub absolute_form: bool,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    pub headers: Vec<HeaderPos>,
    /// Bytes of the head including the final empty line.
    pub head_len: usize,
    pub body: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Header names listed in Connection (other than close / keep-alive): hop-by-hop.
    pub conn_tokens: Vec<Span>,
    pub request_id: Option<Span>,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            method: Method::Get,
            method_span: Span::default(),
            target: Span::default(),
            host: Span::default(),
            absolute_form: false,
            version_minor: 1,
            headers: Vec::with_capacity(32),
            head_len: 0,
            body: BodyFraming::Empty,
            keep_alive: true,
            expect_continue: false,
            conn_tokens: Vec::new(),
            request_id: None,
        }
    }
}

impl RequestHead {
    /// Parse a request head at the start of `buf`.
    ///
    /// `Ok(false)`: incomplete, read more. `Ok(true)`: `self` describes the head, which
    /// is `self.head_len` bytes long. Errors say which status to answer.
    pub fn parse(
        &mut self,
        buf: &[u8],
        max_head: usize,
        max_headers: usize,
    ) -> Result<bool, HeadError> {
        // Never look past the limit: a head that does not end within it is too large.
        let view = &buf[..buf.len().min(max_head)];
        let mut slots = HeaderSlots::new(max_headers);
        let slots = slots.get();
        let mut req = httparse::Request::new(&mut []);
        let status = match req.parse_with_uninit_headers(view, slots) {
            Ok(s) => s,
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
            Err(httparse::Error::Version) => {
                return match later_minor_version(view) {
                    // RFC 9112 2.3: a higher minor version of HTTP/1 is processed as the
                    // highest one we implement. httparse knows only 1.0 and 1.1, so parse
                    // a copy that says 1.1 (a rare path): the copy has the same layout,
                    // so every span it yields fits the original buffer too.
                    Some(at) => {
                        let mut copy = view.to_vec();
                        copy[at] = b'1';
                        self.parse(&copy, max_head, max_headers)
                    }
                    None => Err(version_error(view)),
                };
            }
            Err(e) => return Err(HeadError::Malformed(httparse_reason(e))),
        };
        let head_len = match status {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => {
                return if buf.len() < max_head {
                    Ok(false)
                } else if memchr::memchr(b'\n', view).is_none() {
                    // The request line alone does not fit: RFC 9112 3 asks for 414.
                    Err(HeadError::UriTooLong)
                } else {
                    Err(HeadError::TooLarge)
                };
            }
        };
        let head = &view[..head_len];
        check_line_endings(head)?;

        self.head_len = head_len;
        self.version_minor = req.version.unwrap_or(1);
        let method = req.method.unwrap_or("");
        self.method_span = Span::of(buf, method.as_bytes());
        self.method = Method::classify(method.as_bytes());
        self.headers.clear();
        self.conn_tokens.clear();
        self.request_id = None;
        self.expect_continue = false;
        self.absolute_form = false;

        let path = req.path.unwrap_or("").as_bytes();
        let path_span = Span::of(buf, path);
        match path.first() {
            Some(b'/') => self.target = path_span,
            _ => {
                let (authority, rest) = split_absolute(path).ok_or(HeadError::Malformed(
                    "request-target must be origin-form or absolute-form",
                ))?;
                self.absolute_form = true;
                self.host = Span::of(buf, authority);
                self.target = Span::of(buf, rest);
                if rest.is_empty() {
                    // "http://host" has an empty path: keep the span pointing at its end.
                    let end = path_span.end;
                    self.target = Span { start: end, end };
                }
            }
        }

        let mut host_seen = 0u32;
        let mut content_length: Option<u64> = None;
        let mut te_seen = false;
        let mut te_chunked_final = false;
        let mut connection_close = false;
        let mut connection_keep_alive = false;

        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            let kind = HeaderKind::classify(name);
            let value_span = Span::of(buf, h.value);
            self.headers.push(HeaderPos {
                name: Span::of(buf, name),
                value: value_span,
                kind,
            });
            match kind {
                HeaderKind::Host => {
                    host_seen += 1;
                    if !self.absolute_form {
                        self.host = Span::of(buf, trim_ows(h.value));
                    }
                }
                HeaderKind::ContentLength => {
                    let n = parse_content_length(h.value)
                        .ok_or(HeadError::Malformed("invalid Content-Length"))?;
                    if content_length.is_some_and(|prev| prev != n) {
                        return Err(HeadError::Malformed("conflicting Content-Length values"));
                    }
                    content_length = Some(n);
                }
                HeaderKind::TransferEncoding => {
                    for coding in list_items(h.value) {
                        if te_chunked_final || !coding.eq_ignore_ascii_case(b"chunked") {
                            // Anything after "chunked", or any other coding: the
                            // framing cannot be trusted, never forward it.
                            return Err(HeadError::Malformed("unsupported Transfer-Encoding"));
                        }
                        te_chunked_final = true;
                    }
                    te_seen = true;
                }
                HeaderKind::Connection => {
                    for token in list_items(h.value) {
                        if token.eq_ignore_ascii_case(b"close") {
                            connection_close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            connection_keep_alive = true;
                        } else if is_token(token) {
                            self.conn_tokens.push(Span::of(buf, token));
                        }
                    }
                }
                HeaderKind::Expect => {
                    if trim_ows(h.value).eq_ignore_ascii_case(b"100-continue") {
                        self.expect_continue = true;
                    } else {
                        return Err(HeadError::ExpectationFailed);
                    }
                }
                HeaderKind::XRequestId => {
                    let v = trim_ows(h.value);
                    if !v.is_empty() && v.len() <= 200 {
                        self.request_id = Some(Span::of(buf, v));
                    }
                }
                _ => {}
            }
        }

        if self.version_minor == 1 && host_seen == 0 {
            return Err(HeadError::Malformed("missing Host header"));
        }
        if host_seen > 1 {
            return Err(HeadError::Malformed("more than one Host header"));
        }
        if host_seen == 1 || self.absolute_form {
            let host = self.host.get(buf);
            if host.is_empty() || !host.iter().all(|&c| is_host_char(c)) {
                return Err(HeadError::Malformed("invalid Host"));
            }
        } else {
            self.host = Span::default();
        }
        if te_seen {
            if content_length.is_some() {
                return Err(HeadError::Malformed(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            if self.version_minor == 0 {
                return Err(HeadError::Malformed(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            if !te_chunked_final {
                return Err(HeadError::Malformed("unsupported Transfer-Encoding"));
            }
        }
        self.body = if te_seen {
            BodyFraming::Chunked
        } else {
            match content_length {
                Some(0) | None => BodyFraming::Empty,
                Some(n) => BodyFraming::Length(n),
            }
        };
        self.keep_alive = if self.version_minor == 1 {
            !connection_close
        } else {
            connection_keep_alive && !connection_close
        };
        if self.version_minor == 0 {
            // Expect is an HTTP/1.1 mechanism (RFC 9110 10.1.1).
            self.expect_continue = false;
        }
        Ok(true)
    }

    /// The header value of the first header with this (lower-case) name.
    pub fn header<'a>(&self, buf: &'a [u8], lname: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.get(buf).eq_ignore_ascii_case(lname.as_bytes()))
            .map(|h| h.value.get(buf))
    }

    /// Path of the target without the query.
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let t = self.target.get(buf);
        let p = match memchr::memchr(b'?', t) {
            Some(i) => &t[..i],
            None => t,
        };
        // An absolute-form target with an empty path ("http://host?q") means "/"
        // (RFC 9110 4.2.3).
        if p.is_empty() {
            b"/"
        } else {
            p
        }
    }

    /// Host without the port, as received.
    pub fn host_name<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        strip_port(self.host.get(buf))
    }
}

/// `"host:port"` -> `"host"`, `"[::1]:80"` -> `"[::1]"`.
pub fn strip_port(h: &[u8]) -> &[u8] {
    if h.first() == Some(&b'[') {
        return match memchr::memchr(b']', h) {
            Some(i) => &h[..=i],
            None => h,
        };
    }
    match memchr::memrchr(b':', h) {
        Some(i) => &h[..i],
        None => h,
    }
}

/// Characters allowed in a Host value: RFC 3986 reg-name / IP-literal plus ':' for the
/// port. Anything else (spaces, '/', '@', '\\', controls) is refused.
fn is_host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'.' | b'-'
                | b'_'
                | b'~'
                | b':'
                | b'['
                | b']'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// Split an absolute-form target "http://authority/path?q" into (authority, "/path?q").
fn split_absolute(t: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        &t[7..]
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        &t[8..]
    } else {
        return None;
    };
    let end = rest
        .iter()
        .position(|&c| c == b'/' || c == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains(&b'@') {
        return None;
    }
    Some((authority, &rest[end..]))
}

/// Every LF in the head must end a CRLF, and no NUL may appear: httparse tolerates bare
/// LF line endings, and a proxy that does while the origin does not can be smuggled past.
fn check_line_endings(head: &[u8]) -> Result<(), HeadError> {
    if memchr::memchr(0, head).is_some() {
        return Err(HeadError::Malformed("NUL byte in request head"));
    }
    for i in memchr::memchr_iter(b'\n', head) {
        if i == 0 || head[i - 1] != b'\r' {
            return Err(HeadError::Malformed("bare LF in request head"));
        }
    }
    Ok(())
}

/// Where the minor digit is when the request line (after the empty lines httparse
/// skips) ends in `HTTP/1.2` to `HTTP/1.9`.
fn later_minor_version(buf: &[u8]) -> Option<usize> {
    let start = buf.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let line_end = start + memchr::memchr(b'\n', &buf[start..]).unwrap_or(buf.len() - start);
    let line = &buf[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let at = line.len().checked_sub(1)?;
    let version = line.get(line.len().checked_sub(9)?..)?;
    match version {
        [b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor]
            if (b'2'..=b'9').contains(minor) =>
        {
            Some(at)
        }
        _ => None,
    }
}

fn version_error(buf: &[u8]) -> HeadError {
    // "HTTP/2.0" or "HTTP/3" on an HTTP/1 connection is a well-formed request we do not
    // speak (505); anything else in the version slot is garbage (400).
    let line_end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    let line = trim_ows(
        buf[..line_end]
            .strip_suffix(b"\r")
            .unwrap_or(&buf[..line_end]),
    );
    let v = line.rsplit(|&c| c == b' ').next().unwrap_or(b"");
    if v.len() >= 6 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() && v[5] != b'1' {
        HeadError::VersionNotSupported
    } else {
        HeadError::Malformed("invalid HTTP version")
    }
}

pub(crate) fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}
