//! Header bookkeeping shared by request and response heads: a parsed header is kept as
//! byte offsets into the connection's own read buffer (no copy, no allocation per
//! request), tagged once at parse time with the [`HeaderKind`] the proxy cares about, so
//! forwarding never compares header names a second time.

/// Header slots kept on the stack when the configured limit allows; larger limits fall
/// back to one heap array per parse.
const STACK_HEADERS: usize = 128;

/// Uninitialised header slots for httparse, `max_headers` of them.
pub(crate) struct HeaderSlots<'b> {
    stack: [std::mem::MaybeUninit<httparse::Header<'b>>; STACK_HEADERS],
    heap: Vec<std::mem::MaybeUninit<httparse::Header<'b>>>,
    n: usize,
}

impl<'b> HeaderSlots<'b> {
    pub(crate) fn new(max_headers: usize) -> Self {
        let mut heap = Vec::new();
        if max_headers > STACK_HEADERS {
            heap.resize_with(max_headers, std::mem::MaybeUninit::uninit);
        }
        HeaderSlots {
            stack: [const { std::mem::MaybeUninit::uninit() }; STACK_HEADERS],
            heap,
            n: max_headers,
        }
    }

    pub(crate) fn get(&mut self) -> &mut [std::mem::MaybeUninit<httparse::Header<'b>>] {
        if self.n <= STACK_HEADERS {
            &mut self.stack[..self.n]
        } else {
            &mut self.heap[..]
        }
    }
}

/// Byte range `[start, end)` into the buffer the head was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub fn of(buf: &[u8], part: &[u8]) -> Span {
        // httparse hands out sub-slices of its input, except for empty values, which
        // may point anywhere (a static ""): those become an empty span.
        let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        if start > buf.len() || buf.len() - start < part.len() {
            return Span::default();
        }
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// The headers the gateway treats specially. Everything else is `Other` and is forwarded
/// as is (unless `Connection` names it, or a route removes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    /// Hop-by-hop headers that are dropped in both directions without looking at them:
    /// Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade.
    HopByHop,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XRequestId,
    Authorization,
    /// X-User-ID, X-Tenant-ID, X-User-Plan, X-User-Scopes: set by the gateway from a
    /// verified identity; a client's own are always dropped so they cannot be forged.
    Identity,
    /// Date: a response without one gets the gateway's (RFC 9110 6.6.1).
    Date,
    /// traceparent (W3C Trace Context): replaced by the gateway's when tracing is on.
    TraceParent,
}

impl HeaderKind {
    /// Classify a header name (case-insensitive). Switching on the length first keeps
    /// this to at most two short comparisons for any name.
    #[inline]
    pub fn classify(name: &[u8]) -> HeaderKind {
        let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name.len() {
            2 if eq("te") => HeaderKind::HopByHop,
            4 if eq("host") => HeaderKind::Host,
            4 if eq("date") => HeaderKind::Date,
            6 if eq("expect") => HeaderKind::Expect,
            7 if eq("trailer") => HeaderKind::HopByHop,
            7 if eq("upgrade") => HeaderKind::HopByHop,
            9 if eq("x-user-id") => HeaderKind::Identity,
            10 if eq("connection") => HeaderKind::Connection,
            10 if eq("keep-alive") => HeaderKind::HopByHop,
            11 if eq("x-tenant-id") || eq("x-user-plan") => HeaderKind::Identity,
            11 if eq("traceparent") => HeaderKind::TraceParent,
            12 if eq("x-request-id") => HeaderKind::XRequestId,
            13 if eq("authorization") => HeaderKind::Authorization,
            13 if eq("x-user-scopes") => HeaderKind::Identity,
            20 if eq("x-client-cert-sha256") => HeaderKind::Identity,
            21 if eq("x-client-cert-subject") => HeaderKind::Identity,
            14 if eq("content-length") => HeaderKind::ContentLength,
            15 if eq("x-forwarded-for") => HeaderKind::XForwardedFor,
            16 if eq("proxy-connection") => HeaderKind::HopByHop,
            16 if eq("x-forwarded-host") => HeaderKind::XForwardedHost,
            17 if eq("transfer-encoding") => HeaderKind::TransferEncoding,
            17 if eq("x-forwarded-proto") => HeaderKind::XForwardedProto,
            _ => HeaderKind::Other,
        }
    }
}

/// One header of a parsed head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPos {
    pub name: Span,
    pub value: Span,
    pub kind: HeaderKind,
}

/// Trim optional whitespace (SP / HTAB) on both sides.
#[inline]
pub fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Iterate the comma-separated elements of a list-valued header, trimmed, skipping
/// empty elements (RFC 9110 5.6.1).
pub fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

/// Parse a Content-Length value: one or more identical decimal numbers separated by
/// commas (RFC 9110 8.6 lets a recipient accept "42, 42"). Signs, blanks, other
/// characters, differing values and overflow are all errors.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    let mut out: Option<u64> = None;
    let mut any = false;
    for item in v.split(|&b| b == b',') {
        let item = trim_ows(item);
        if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut n: u64 = 0;
        for &d in item {
            n = n.checked_mul(10)?.checked_add((d - b'0') as u64)?;
        }
        match out {
            Some(prev) if prev != n => return None,
            _ => out = Some(n),
        }
        any = true;
    }
    if any {
        out
    } else {
        None
    }
}

/// Is `name` a valid RFC 9110 token (header field name, method)?
pub fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_is_case_insensitive() {
        assert_eq!(
            HeaderKind::classify(b"Content-Length"),
            HeaderKind::ContentLength
        );
        assert_eq!(
            HeaderKind::classify(b"TRANSFER-ENCODING"),
            HeaderKind::TransferEncoding
        );
        assert_eq!(HeaderKind::classify(b"te"), HeaderKind::HopByHop);
        assert_eq!(
            HeaderKind::classify(b"Proxy-Connection"),
            HeaderKind::HopByHop
        );
        assert_eq!(
            HeaderKind::classify(b"X-Forwarded-For"),
            HeaderKind::XForwardedFor
        );
        assert_eq!(HeaderKind::classify(b"X-Custom"), HeaderKind::Other);
        assert_eq!(HeaderKind::classify(b"DATE"), HeaderKind::Date);
        assert_eq!(HeaderKind::classify(b"data"), HeaderKind::Other);
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b" 42 "), Some(42));
        assert_eq!(parse_content_length(b"42, 42"), Some(42));
        assert_eq!(parse_content_length(b"42, 43"), None);
        assert_eq!(parse_content_length(b"+42"), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"0x10"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"4 2"), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
        assert_eq!(parse_content_length(b"18446744073709551615"), None);
    }

    #[test]
    fn lists_and_tokens() {
        let items: Vec<&[u8]> = list_items(b" close ,, X-Foo,").collect();
        assert_eq!(items, vec![&b"close"[..], &b"X-Foo"[..]]);
        assert!(is_token(b"X-Request-ID"));
        assert!(!is_token(b"X Request"));
        assert!(!is_token(b""));
    }
}
