//! Response-head parsing for what upstreams send back: status, headers tagged by kind,
//! and the body framing decided per RFC 9112 6.3 from the request method and status.
//! A response whose framing cannot be trusted (bad or conflicting Content-Length) is an
//! upstream error (502), never relayed.

use super::header::{
    is_token, list_items, parse_content_length, HeaderKind, HeaderPos, HeaderSlots, Span,
};
use super::request::{httparse_reason, BodyFraming};
use super::HeadError;

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Span,
    pub version_minor: u8,
    pub headers: Vec<HeaderPos>,
    pub head_len: usize,
    pub body: BodyFraming,
    /// The upstream lets us reuse the connection after this response.
    pub keep_alive: bool,
    pub conn_tokens: Vec<Span>,
    /// Transfer codings other than `chunked` were applied (e.g. "gzip, chunked"): the
    /// gateway does not decode them, so they must be passed on, labelled.
    pub extra_codings: bool,
    /// The Transfer-Encoding field values, for relaying those codings.
    pub te_values: Vec<Span>,
}

impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead {
            status: 0,
            reason: Span::default(),
            version_minor: 1,
            headers: Vec::with_capacity(32),
            head_len: 0,
            body: BodyFraming::Empty,
            keep_alive: true,
            conn_tokens: Vec::new(),
            extra_codings: false,
            te_values: Vec::new(),
        }
    }
}

impl ResponseHead {
    /// Parse a response head at the start of `buf`; `head_request` says whether it
    /// answers a HEAD (no body whatever the headers say). `Ok(false)`: need more bytes.
    pub fn parse(
        &mut self,
        buf: &[u8],
        max_head: usize,
        max_headers: usize,
        head_request: bool,
    ) -> Result<bool, HeadError> {
        let view = &buf[..buf.len().min(max_head)];
        let mut slots = HeaderSlots::new(max_headers);
        let slots = slots.get();
        let mut resp = httparse::Response::new(&mut []);
        let status = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, view, slots)
        {
            Ok(s) => s,
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
            Err(httparse::Error::Version) => {
                // RFC 9112 2.3: HTTP/1.2 to 1.9 are read as 1.1 (as nginx does). A copy
                // that says 1.1 has the same layout, so its spans fit `buf` too.
                let Some(at) = later_minor_version(view) else {
                    return Err(HeadError::Malformed(httparse_reason(
                        httparse::Error::Version,
                    )));
                };
                let mut copy = view.to_vec();
                copy[at] = b'1';
                return self.parse(&copy, max_head, max_headers, head_request);
            }
            Err(e) => return Err(HeadError::Malformed(httparse_reason(e))),
        };
        let head_len = match status {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => {
                return if buf.len() >= max_head {
                    Err(HeadError::TooLarge)
                } else {
                    Ok(false)
                };
            }
        };
        self.head_len = head_len;
        self.status = resp.code.unwrap_or(0);
        if !(100..=599).contains(&self.status) {
            return Err(HeadError::Malformed("invalid status code"));
        }
        self.version_minor = resp.version.unwrap_or(1);
        // httparse reports a reason phrase with obs-text as "" (not UTF-8): take the
        // bytes from the status line itself so they are relayed unchanged.
        let head = &view[..head_len];
        // httparse skips empty lines before the status line.
        let line_start = head
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .unwrap_or(0);
        let mut line_end = line_start + memchr::memchr(b'\n', &head[line_start..]).unwrap_or(0);
        if line_end > line_start && head[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        // "HTTP/1.1 200 " is 13 bytes; the reason phrase is the rest of the line.
        self.reason = if line_end > line_start + 13 {
            Span {
                start: (line_start + 13) as u32,
                end: line_end as u32,
            }
        } else {
            Span {
                start: line_end as u32,
                end: line_end as u32,
            }
        };
        self.headers.clear();
        self.conn_tokens.clear();
        self.te_values.clear();
        self.extra_codings = false;

        let mut content_length: Option<u64> = None;
        let mut te_seen = false;
        let mut only_identity = None;
        let mut chunked_final = false;
        let mut close = false;
        let mut keep_alive_token = false;
        for h in resp.headers.iter() {
            let name = h.name.as_bytes();
            let kind = HeaderKind::classify(name);
            self.headers.push(HeaderPos {
                name: Span::of(buf, name),
                value: Span::of(buf, h.value),
                kind,
            });
            match kind {
                HeaderKind::ContentLength => {
                    let n = parse_content_length(h.value)
                        .ok_or(HeadError::Malformed("invalid Content-Length from upstream"))?;
                    if content_length.is_some_and(|p| p != n) {
                        return Err(HeadError::Malformed(
                            "conflicting Content-Length from upstream",
                        ));
                    }
                    content_length = Some(n);
                }
                HeaderKind::TransferEncoding => {
                    te_seen = true;
                    self.te_values.push(Span::of(buf, h.value));
                    for coding in list_items(h.value) {
                        // "identity" (RFC 2616, withdrawn since) means no coding at
                        // all: fields of nothing else are as if absent, as nginx reads
                        // them.
                        if coding.eq_ignore_ascii_case(b"identity") {
                            only_identity.get_or_insert(true);
                            continue;
                        }
                        only_identity = Some(false);
                        chunked_final = coding.eq_ignore_ascii_case(b"chunked");
                        if !chunked_final {
                            self.extra_codings = true;
                        }
                    }
                }
                HeaderKind::Connection => {
                    for token in list_items(h.value) {
                        if token.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            keep_alive_token = true;
                        } else if is_token(token) {
                            self.conn_tokens.push(Span::of(buf, token));
                        }
                    }
                }
                _ => {}
            }
        }
        if only_identity == Some(true) {
            te_seen = false;
        }
        self.keep_alive = if self.version_minor == 1 {
            !close
        } else {
            keep_alive_token && !close
        };
        self.body = if head_request
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            BodyFraming::Empty
        } else if te_seen {
            if content_length.is_some() {
                // RFC 9112 6.3: Transfer-Encoding wins, but such a message may be an
                // attempt at smuggling: never reuse this connection afterwards.
                self.keep_alive = false;
            }
            if chunked_final {
                BodyFraming::Chunked
            } else {
                self.keep_alive = false;
                BodyFraming::UntilClose
            }
        } else {
            match content_length {
                Some(0) => BodyFraming::Empty,
                Some(n) => BodyFraming::Length(n),
                None => {
                    self.keep_alive = false;
                    BodyFraming::UntilClose
                }
            }
        };
        Ok(true)
    }
}

/// Where the minor digit is when the status line starts `HTTP/1.2 ` to `HTTP/1.9 `
/// (after the empty lines httparse skips), or ends right after that digit so far.
fn later_minor_version(buf: &[u8]) -> Option<usize> {
    let start = buf.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let line = &buf[start..];
    match line.get(..8)? {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor]
            if (b'2'..=b'9').contains(minor) && matches!(line.get(8), None | Some(b' ')) =>
        {
            Some(start + 7)
        }
        _ => None,
    }
}
