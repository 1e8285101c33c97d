//! `RequestHead::parse` invariants. What an accepted head must look like, re-derived
//! from the raw bytes independently of the parser: spans inside the head, the request
//! line and every header line well formed, one Host on HTTP/1.1, never a length together
//! with chunked, lengths consistent, keep-alive and Expect as the headers say. Also:
//! the result does not depend on the limits (when the head fits them), on a previous use
//! of the same `RequestHead`, or on how the bytes were split across reads.

use ringgate::http::{BodyFraming, HeadError, HeaderPos, Method, RequestHead, Span};

use super::{check_header_lines, content_length, ensure, items, ows_trim, token, LIMITS};

/// Everything a parsed head holds, comparable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub method: Method,
    pub method_span: Span,
    pub target: Span,
    pub host: Span,
    pub absolute_form: bool,
    pub version_minor: u8,
    pub headers: Vec<HeaderPos>,
    pub head_len: usize,
    pub body: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub conn_tokens: Vec<Span>,
    pub request_id: Option<Span>,
}

impl Parsed {
    pub fn of(h: &RequestHead) -> Parsed {
        Parsed {
            method: h.method,
            method_span: h.method_span,
            target: h.target,
            host: h.host,
            absolute_form: h.absolute_form,
            version_minor: h.version_minor,
            headers: h.headers.clone(),
            head_len: h.head_len,
            body: h.body,
            keep_alive: h.keep_alive,
            expect_continue: h.expect_continue,
            conn_tokens: h.conn_tokens.clone(),
            request_id: h.request_id,
        }
    }
}

/// `Ok(None)`: incomplete (the parser said `Ok(false)`).
pub type Outcome = Result<Option<Parsed>, HeadError>;

pub fn parse_with(head: &mut RequestHead, buf: &[u8], max_head: usize, max_n: usize) -> Outcome {
    match head.parse(buf, max_head, max_n) {
        Ok(true) => Ok(Some(Parsed::of(head))),
        Ok(false) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parse with a fresh head under the largest limits.
pub fn parse(buf: &[u8]) -> Outcome {
    let (h, n) = LIMITS[LIMITS.len() - 1];
    parse_with(&mut RequestHead::default(), buf, h, n)
}

/// A head that already described another request, with every optional field set: a
/// connection reuses its `RequestHead`, so nothing may leak from one request to the next.
fn dirty_head() -> RequestHead {
    let mut h = RequestHead::default();
    let prev: &[u8] = b"POST http://old.example:81/x/y/z?q=1 HTTP/1.1\r\nHost: old.example:81\r\n\
        Connection: keep-alive, X-Old\r\nX-Old: 1\r\nX-Request-ID: old-id\r\n\
        Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(h.parse(prev, 8192, 100), Ok(true));
    h
}

/// Run every request check on `input`; returns the outcome under the largest limits.
pub fn check(input: &[u8]) -> Outcome {
    let mut results = Vec::with_capacity(LIMITS.len());
    for &(max_head, max_n) in &LIMITS {
        let fresh = parse_with(&mut RequestHead::default(), input, max_head, max_n);
        let reused = parse_with(&mut dirty_head(), input, max_head, max_n);
        ensure(
            fresh == reused,
            "a reused RequestHead parses like a fresh one",
            input,
        );
        match &fresh {
            Ok(Some(p)) => {
                invariants(input, p, max_head, max_n);
                split_points(input, p, max_head, max_n);
            }
            Ok(None) => ensure(
                input.len() < max_head,
                "Ok(false) only while under max_head",
                input,
            ),
            Err(HeadError::TooLarge) => ensure(
                input.len() >= max_head,
                "TooLarge only when max_head bytes are there",
                input,
            ),
            Err(HeadError::UriTooLong) => ensure(
                input.len() >= max_head && !input[..max_head].contains(&b'\n'),
                "UriTooLong only when max_head bytes hold no line end",
                input,
            ),
            Err(_) => {}
        }
        results.push(fresh);
    }
    let big = results[results.len() - 1].clone();
    for (r, &(max_head, max_n)) in results.iter().zip(&LIMITS) {
        match (r, &big) {
            (Ok(Some(p)), Ok(Some(b))) => {
                ensure(p == b, "same head under every limit it fits", input)
            }
            (Ok(Some(_)), _) => ensure(false, "accepted under a small limit only", input),
            (r, Ok(Some(b))) => {
                if b.head_len <= max_head && b.headers.len() <= max_n {
                    ensure(false, "refused under a limit the head fits", input);
                } else {
                    ensure(
                        matches!(
                            r,
                            Err(HeadError::TooLarge
                                | HeadError::TooManyHeaders
                                | HeadError::UriTooLong)
                        ),
                        "a head over a limit is 431, or 414 if its request line is",
                        input,
                    );
                }
            }
            _ => {}
        }
    }
    big
}

/// The head parses the same from exactly its own bytes, and no shorter prefix is taken
/// for a whole head or refused: a head that arrives in pieces must wait, not fail.
fn split_points(input: &[u8], p: &Parsed, max_head: usize, max_n: usize) {
    let hl = p.head_len;
    let exact = parse_with(&mut RequestHead::default(), &input[..hl], max_head, max_n);
    ensure(
        exact.as_ref() == Ok(&Some(p.clone())),
        "the head alone parses the same",
        input,
    );
    let mut cuts: Vec<usize> = if hl <= 64 {
        (0..hl).collect()
    } else {
        let mut v: Vec<usize> = (0..8).map(|k| k * hl / 8).collect();
        v.extend([1, hl / 2, hl - 2, hl - 1]);
        v
    };
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        let r = parse_with(&mut RequestHead::default(), &input[..cut], max_head, max_n);
        if r != Ok(None) {
            panic!(
                "invariant broken: the first {cut} bytes of an acceptable head gave {r:?}, \
                 not Ok(false)\n  input: {}",
                super::show(input)
            );
        }
    }
}

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

fn named<'a>(buf: &'a [u8], p: &Parsed, name: &str) -> Vec<&'a [u8]> {
    p.headers
        .iter()
        .filter(|h| h.name.get(buf).eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.get(buf))
        .collect()
}

/// Characters no Host value may carry on to an upstream or a route match.
fn bad_host_byte(c: u8) -> bool {
    c <= b' ' || c >= 0x7f || b"/@\\?#\"<>{}|^`".contains(&c)
}

/// Everything an accepted head promises, checked against the raw bytes.
pub fn invariants(buf: &[u8], p: &Parsed, max_head: usize, max_n: usize) {
    let hl = p.head_len;
    ensure(
        hl <= buf.len() && hl <= max_head,
        "head_len within input and limit",
        buf,
    );
    let head = &buf[..hl];
    ensure(
        head.ends_with(b"\r\n\r\n"),
        "head ends with an empty CRLF line",
        buf,
    );
    ensure(!head.contains(&0), "no NUL in an accepted head", buf);
    for (i, &c) in head.iter().enumerate() {
        if c == b'\n' {
            ensure(
                i > 0 && head[i - 1] == b'\r',
                "no bare LF in an accepted head",
                buf,
            );
        }
    }
    ensure(
        p.headers.len() <= max_n,
        "no more headers than max_headers",
        buf,
    );
    ensure(p.version_minor <= 1, "HTTP/1.0 or 1.1", buf);

    // Request line: [CRLF...] method SP target SP HTTP/1.x CRLF
    let (ms, me) = (p.method_span.start as usize, p.method_span.end as usize);
    ensure(ms < me && me < hl, "method span inside the head", buf);
    ensure(
        buf[..ms].chunks(2).all(|c| c == b"\r\n"),
        "only empty lines before the request line",
        buf,
    );
    let method = &buf[ms..me];
    ensure(token(method), "method is a token", buf);
    ensure(
        p.method == classify(method),
        "method classified by its bytes",
        buf,
    );
    ensure(buf[me] == b' ', "one SP after the method", buf);
    let line_end = me
        + head[me..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(0);
    let line = &buf[me + 1..line_end];
    ensure(
        line.len() > 9,
        "request line has a target and a version",
        buf,
    );
    let (raw_target, version) = line.split_at(line.len() - 9);
    // HTTP/1.2 to 1.9 are taken as 1.1, the highest minor version we implement.
    let version_ok = match version {
        b" HTTP/1.0" => p.version_minor == 0,
        [b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'1'..=b'9'] => p.version_minor == 1,
        _ => false,
    };
    ensure(version_ok, "version as on the request line", buf);
    ensure(
        raw_target.iter().all(|&c| c > b' ' && c != 0x7f),
        "no blank or control in the target",
        buf,
    );
    let (ts, te) = (p.target.start as usize, p.target.end as usize);
    let (rs, re) = (me + 1, me + 1 + raw_target.len());
    ensure(ts <= te, "target span ordered", buf);
    if p.absolute_form {
        let lower = raw_target.to_ascii_lowercase();
        ensure(
            lower.starts_with(b"http://") || lower.starts_with(b"https://"),
            "absolute-form is http(s)://",
            buf,
        );
        ensure(rs < ts, "authority before the path", buf);
        ensure(
            te == re,
            "the target runs to the end of the request-target",
            buf,
        );
        let t = &buf[ts..te];
        ensure(
            t.is_empty() || t[0] == b'/' || t[0] == b'?',
            "absolute-form path is empty or starts with / or ?",
            buf,
        );
        let (hs, he) = (p.host.start as usize, p.host.end as usize);
        ensure(
            rs < hs && hs < he && he <= ts,
            "authority inside the target",
            buf,
        );
        ensure(
            !buf[hs..he].contains(&b'@'),
            "no userinfo in the authority",
            buf,
        );
    } else {
        ensure(
            ts == rs && te == re,
            "origin-form target is the raw target",
            buf,
        );
        ensure(buf.get(ts) == Some(&b'/'), "origin-form starts with /", buf);
    }

    let end = check_header_lines(buf, hl, &p.headers, line_end + 2, false);
    ensure(end + 2 == hl, "the empty line follows the last header", buf);

    // Host: exactly one on HTTP/1.1, at most one on 1.0; the span is the authority of an
    // absolute-form target, else the trimmed Host value.
    let hosts = named(buf, p, "host");
    ensure(hosts.len() <= 1, "at most one Host", buf);
    if p.version_minor == 1 {
        ensure(hosts.len() == 1, "HTTP/1.1 has a Host", buf);
    }
    let host = p.host.get(buf);
    if p.absolute_form {
        // The authority wins over the Host header (RFC 9112 3.2.2).
    } else if let Some(v) = hosts.first() {
        ensure(host == ows_trim(v), "host is the trimmed Host value", buf);
    } else {
        ensure(host.is_empty(), "no Host, no host", buf);
    }
    if p.absolute_form || !hosts.is_empty() {
        ensure(!host.is_empty(), "a Host that is there is not empty", buf);
        ensure(
            !host.iter().any(|&c| bad_host_byte(c)),
            "no blank, control, /, @ or \\ in the host",
            buf,
        );
    }

    // Body framing (RFC 9112 6.3), refusing everything a smuggler could use.
    let cls = named(buf, p, "content-length");
    let tes = named(buf, p, "transfer-encoding");
    if !tes.is_empty() {
        ensure(
            cls.is_empty(),
            "never Content-Length with Transfer-Encoding",
            buf,
        );
        ensure(
            p.version_minor == 1,
            "Transfer-Encoding only on HTTP/1.1",
            buf,
        );
        let codings: Vec<&[u8]> = tes.iter().flat_map(|v| items(v)).collect();
        ensure(
            codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked"),
            "chunked is the one and only coding",
            buf,
        );
        ensure(
            p.body == BodyFraming::Chunked,
            "Transfer-Encoding means chunked",
            buf,
        );
    } else if !cls.is_empty() {
        let lens: Vec<Option<u64>> = cls.iter().map(|v| content_length(v)).collect();
        let n = lens[0];
        ensure(n.is_some(), "Content-Length is numeric", buf);
        ensure(
            lens.iter().all(|&l| l == n),
            "Content-Length values agree",
            buf,
        );
        let want = match n {
            Some(0) | None => BodyFraming::Empty,
            Some(n) => BodyFraming::Length(n),
        };
        ensure(
            p.body == want,
            "the body is as long as Content-Length says",
            buf,
        );
    } else {
        ensure(
            p.body == BodyFraming::Empty,
            "no framing header, no body",
            buf,
        );
    }

    // Connection: keep-alive decision and the hop-by-hop names it lists.
    let conn: Vec<&[u8]> = named(buf, p, "connection")
        .into_iter()
        .flat_map(items)
        .collect();
    let close = conn.iter().any(|t| t.eq_ignore_ascii_case(b"close"));
    let ka = conn.iter().any(|t| t.eq_ignore_ascii_case(b"keep-alive"));
    let want_ka = if p.version_minor == 1 {
        !close
    } else {
        ka && !close
    };
    ensure(
        p.keep_alive == want_ka,
        "keep-alive as Connection says",
        buf,
    );
    let listed: Vec<&[u8]> = conn
        .iter()
        .copied()
        .filter(|t| {
            token(t) && !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive")
        })
        .collect();
    let got: Vec<&[u8]> = p.conn_tokens.iter().map(|s| s.get(buf)).collect();
    ensure(
        got == listed,
        "conn_tokens are the names Connection lists",
        buf,
    );
    for s in &p.conn_tokens {
        ensure((s.end as usize) <= hl, "conn token inside the head", buf);
    }

    // Expect: only 100-continue gets through, and only HTTP/1.1 acts on it.
    let expects = named(buf, p, "expect");
    ensure(
        expects
            .iter()
            .all(|v| ows_trim(v).eq_ignore_ascii_case(b"100-continue")),
        "only Expect: 100-continue is accepted",
        buf,
    );
    ensure(
        p.expect_continue == (p.version_minor == 1 && !expects.is_empty()),
        "expect_continue on HTTP/1.1 with Expect",
        buf,
    );

    // X-Request-ID: the last usable one, trimmed, bounded.
    let want_id = named(buf, p, "x-request-id")
        .into_iter()
        .map(ows_trim)
        .rfind(|v| !v.is_empty() && v.len() <= 200);
    ensure(
        p.request_id.map(|s| s.get(buf)) == want_id,
        "request id is the last usable X-Request-ID",
        buf,
    );
}
