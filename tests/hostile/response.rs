//! `ResponseHead::parse` invariants, and the round trip through
//! `forward::client_response`: whatever an upstream sends that the gateway accepts, the
//! head it writes to the client must parse again, with the same status and reason, no
//! hop-by-hop header, one X-Request-ID, and framing that matches the body it will send.

use ringgate::http::{BodyFraming, HeadError, HeaderPos, ResponseHead, Span};
use ringgate::pipeline::forward::{client_framing, client_response, ClientFraming};

use super::{
    check_header_lines, content_length, ensure, items, simple_route, token, HOP_BY_HOP, LIMITS,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub status: u16,
    pub reason: Span,
    pub version_minor: u8,
    pub headers: Vec<HeaderPos>,
    pub head_len: usize,
    pub body: BodyFraming,
    pub keep_alive: bool,
    pub conn_tokens: Vec<Span>,
    pub extra_codings: bool,
    pub te_values: Vec<Span>,
}

impl Parsed {
    pub fn of(h: &ResponseHead) -> Parsed {
        Parsed {
            status: h.status,
            reason: h.reason,
            version_minor: h.version_minor,
            headers: h.headers.clone(),
            head_len: h.head_len,
            body: h.body,
            keep_alive: h.keep_alive,
            conn_tokens: h.conn_tokens.clone(),
            extra_codings: h.extra_codings,
            te_values: h.te_values.clone(),
        }
    }
}

pub type Outcome = Result<Option<Parsed>, HeadError>;

pub fn parse_with(
    head: &mut ResponseHead,
    buf: &[u8],
    (max_head, max_n): (usize, usize),
    head_request: bool,
) -> Outcome {
    match head.parse(buf, max_head, max_n, head_request) {
        Ok(true) => Ok(Some(Parsed::of(head))),
        Ok(false) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parse with a fresh head under the largest limits.
pub fn parse(buf: &[u8], head_request: bool) -> Outcome {
    parse_with(
        &mut ResponseHead::default(),
        buf,
        LIMITS[LIMITS.len() - 1],
        head_request,
    )
}

fn dirty_head() -> ResponseHead {
    let mut h = ResponseHead::default();
    let prev: &[u8] = b"HTTP/1.0 299 Something Long Here\r\nConnection: keep-alive, X-Old\r\n\
        X-Old: 1\r\nTransfer-Encoding: gzip\r\nContent-Length: 12\r\n\r\n";
    assert_eq!(h.parse(prev, 8192, 100, false), Ok(true));
    h
}

/// Run every response check on `input`, as the answer to a HEAD and to anything else;
/// returns the outcome (not HEAD) under the largest limits.
pub fn check(input: &[u8]) -> Outcome {
    let mut out = None;
    for head_request in [false, true] {
        let mut results = Vec::with_capacity(LIMITS.len());
        for &limits in &LIMITS {
            let fresh = parse_with(&mut ResponseHead::default(), input, limits, head_request);
            let reused = parse_with(&mut dirty_head(), input, limits, head_request);
            ensure(
                fresh == reused,
                "a reused ResponseHead parses like a fresh one",
                input,
            );
            if let Ok(Some(p)) = &fresh {
                invariants(input, p, limits, head_request);
                split_points(input, p, limits, head_request);
                roundtrip(input, p, head_request);
            }
            results.push(fresh);
        }
        let big = results[results.len() - 1].clone();
        for (r, &(max_head, max_n)) in results.iter().zip(&LIMITS) {
            match (r, &big) {
                (Ok(Some(p)), Ok(Some(b))) => ensure(p == b, "same head under every limit", input),
                (Ok(Some(_)), _) => ensure(false, "accepted under a small limit only", input),
                (_, Ok(Some(b))) => ensure(
                    b.head_len > max_head || b.headers.len() > max_n,
                    "refused under a limit the head fits",
                    input,
                ),
                _ => {}
            }
        }
        if !head_request {
            out = Some(big);
        }
    }
    out.unwrap_or(Ok(None))
}

fn split_points(input: &[u8], p: &Parsed, limits: (usize, usize), head_request: bool) {
    let hl = p.head_len;
    let exact = parse_with(
        &mut ResponseHead::default(),
        &input[..hl],
        limits,
        head_request,
    );
    ensure(
        exact.as_ref() == Ok(&Some(p.clone())),
        "the head alone parses the same",
        input,
    );
    for cut in [0, 1, hl / 2, hl.saturating_sub(2), hl - 1] {
        let r = parse_with(
            &mut ResponseHead::default(),
            &input[..cut],
            limits,
            head_request,
        );
        if r != Ok(None) {
            panic!(
                "invariant broken: the first {cut} bytes of an acceptable response head gave \
                 {r:?}, not Ok(false)\n  input: {}",
                super::show(input)
            );
        }
    }
}

fn named<'a>(buf: &'a [u8], headers: &[HeaderPos], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.get(buf).eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.get(buf))
        .collect()
}

pub fn invariants(buf: &[u8], p: &Parsed, (max_head, max_n): (usize, usize), head_request: bool) {
    let hl = p.head_len;
    ensure(
        hl <= buf.len() && hl <= max_head,
        "head_len within input and limit",
        buf,
    );
    let head = &buf[..hl];
    ensure(
        head.ends_with(b"\n\r\n") || head.ends_with(b"\n\n"),
        "head ends with an empty line",
        buf,
    );
    ensure(!head.contains(&0), "no NUL in an accepted head", buf);
    ensure(
        p.headers.len() <= max_n,
        "no more headers than max_headers",
        buf,
    );
    ensure(p.version_minor <= 1, "HTTP/1.0 or 1.1", buf);

    // Status line: HTTP/1.x SP 3DIGIT [SP reason] EOL, after any empty lines.
    let mut s = 0;
    while head[s..].starts_with(b"\r\n") || head[s..].starts_with(b"\n") {
        s += if head[s] == b'\r' { 2 } else { 1 };
    }
    let line = &head[s..];
    // HTTP/1.2 to 1.9 are read as 1.1, the highest minor version we implement.
    let version_ok = match line.get(..9) {
        Some(b"HTTP/1.0 ") => p.version_minor == 0,
        Some([b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'1'..=b'9', b' ']) => p.version_minor == 1,
        _ => false,
    };
    ensure(version_ok, "status line starts with the version", buf);
    let code = &line[9..12];
    ensure(
        code.iter().all(u8::is_ascii_digit),
        "three status digits",
        buf,
    );
    let n = code.iter().fold(0u16, |n, d| n * 10 + (d - b'0') as u16);
    ensure(p.status == n, "status as on the status line", buf);
    let (rs, re) = (p.reason.start as usize, p.reason.end as usize);
    ensure(
        rs <= re && re < hl && rs >= s + 12,
        "reason inside the status line",
        buf,
    );
    let reason = &buf[rs..re];
    ensure(
        !reason.iter().any(|&c| c == b'\r' || c == b'\n'),
        "no line break in the reason",
        buf,
    );
    let eol = if buf[re..].starts_with(b"\r\n") { 2 } else { 1 };
    ensure(
        buf[re + eol - 1] == b'\n',
        "status line ends at the reason",
        buf,
    );
    let end = check_header_lines(buf, hl, &p.headers, re + eol, true);
    ensure(
        (end + 2 == hl && buf[end] == b'\r') || end + 1 == hl,
        "the empty line follows the last header",
        buf,
    );

    // Framing (RFC 9112 6.3) and whether the upstream connection may be reused.
    let conn: Vec<&[u8]> = named(buf, &p.headers, "connection")
        .into_iter()
        .flat_map(items)
        .collect();
    let close = conn.iter().any(|t| t.eq_ignore_ascii_case(b"close"));
    let ka = conn.iter().any(|t| t.eq_ignore_ascii_case(b"keep-alive"));
    let mut want_ka = if p.version_minor == 1 {
        !close
    } else {
        ka && !close
    };
    let cls = named(buf, &p.headers, "content-length");
    let tes = named(buf, &p.headers, "transfer-encoding");
    let all_codings: Vec<&[u8]> = tes.iter().flat_map(|v| items(v)).collect();
    // "identity" is no coding: Transfer-Encoding fields listing only it count as absent.
    let codings: Vec<&[u8]> = all_codings
        .iter()
        .copied()
        .filter(|c| !c.eq_ignore_ascii_case(b"identity"))
        .collect();
    let only_identity = codings.is_empty() && !all_codings.is_empty();
    let te_counts = !tes.is_empty() && !only_identity;
    let no_body =
        head_request || (100..200).contains(&p.status) || p.status == 204 || p.status == 304;
    let want_body = if no_body {
        BodyFraming::Empty
    } else if te_counts {
        let chunked = codings
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        if !cls.is_empty() || !chunked {
            want_ka = false;
        }
        if chunked {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        }
    } else if let Some(first) = cls.first() {
        match content_length(first) {
            Some(0) | None => BodyFraming::Empty,
            Some(n) => BodyFraming::Length(n),
        }
    } else {
        want_ka = false;
        BodyFraming::UntilClose
    };
    if !cls.is_empty() {
        // Checked whatever the status and Transfer-Encoding: a bad length is never relayed.
        let n = content_length(cls[0]);
        ensure(
            n.is_some() && cls.iter().all(|v| content_length(v) == n),
            "Content-Length valid and consistent",
            buf,
        );
    }
    ensure(
        p.body == want_body,
        "response framing per RFC 9112 6.3",
        buf,
    );
    ensure(p.keep_alive == want_ka, "upstream keep-alive decision", buf);
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
    let te_values: Vec<&[u8]> = p.te_values.iter().map(|s| s.get(buf)).collect();
    ensure(
        te_values == tes,
        "te_values are the Transfer-Encoding values",
        buf,
    );
    let extra = codings.iter().any(|c| !c.eq_ignore_ascii_case(b"chunked"));
    ensure(
        p.extra_codings == extra,
        "extra_codings: a coding other than chunked",
        buf,
    );
}

/// Serialise the client's head from an accepted upstream head and parse it again.
fn roundtrip(input: &[u8], p: &Parsed, head_request: bool) {
    let mut resp = ResponseHead::default();
    assert_eq!(
        resp.parse(input, usize::MAX, 256, head_request),
        Ok(true),
        "accepted under LIMITS, so under no limit"
    );
    let route = simple_route("r", "/");
    let framing = client_framing(&resp, 1);
    let mut out = Vec::new();
    client_response(
        &mut out,
        &resp,
        input,
        &route,
        b"rid-1",
        framing,
        resp.keep_alive,
        1,
        b"",
        b"Tue, 01 Dec 2026 05:30:00 GMT",
    );
    let mut again = ResponseHead::default();
    let r = again.parse(&out, out.len() + 1, 512, head_request);
    if r != Ok(true) || again.head_len != out.len() {
        panic!(
            "invariant broken: the head written to the client does not parse ({r:?})\n  \
             written: {}\n  input: {}",
            super::show(&out),
            super::show(input)
        );
    }
    let fail = |what: &str| -> ! {
        panic!(
            "invariant broken: client head: {what}\n  written: {}\n  input: {}",
            super::show(&out),
            super::show(input)
        )
    };
    if again.status != p.status {
        fail("status changed");
    }
    if again.reason.get(&out) != p.reason.get(input) {
        fail("reason changed");
    }
    for h in &again.headers {
        let name = h.name.get(&out).to_ascii_lowercase();
        let ours = matches!(
            &name[..],
            b"connection" | b"transfer-encoding" | b"content-length" | b"x-request-id"
        );
        if HOP_BY_HOP.contains(&&name[..]) && !ours {
            fail("hop-by-hop header forwarded");
        }
        if !ours
            && p.conn_tokens
                .iter()
                .any(|t| t.get(input).eq_ignore_ascii_case(&name))
        {
            fail("a header named by Connection forwarded");
        }
    }
    if named(&out, &again.headers, "x-request-id") != [&b"rid-1"[..]] {
        fail("not exactly one X-Request-ID");
    }
    // The upstream's Date fields as they were, or the gateway's when it sent none.
    let sent_dates = named(input, &resp.headers, "date");
    let dates = named(&out, &again.headers, "date");
    if sent_dates.is_empty() && dates != [&b"Tue, 01 Dec 2026 05:30:00 GMT"[..]] {
        fail("no Date added to a response without one");
    }
    if !sent_dates.is_empty() && dates != sent_dates {
        fail("the upstream's Date not relayed as it was");
    }
    let conn = named(&out, &again.headers, "connection");
    let want_conn: &[&[u8]] = if resp.keep_alive { &[] } else { &[b"close"] };
    if conn != want_conn {
        fail("Connection is not exactly what the gateway decided");
    }
    let want_body = match framing {
        ClientFraming::Length(n) => BodyFraming::Length(n),
        ClientFraming::Chunked => BodyFraming::Chunked,
        ClientFraming::None | ClientFraming::Close => BodyFraming::Empty,
    };
    if again.body != want_body {
        fail("framing differs from the body the gateway sends");
    }
}
