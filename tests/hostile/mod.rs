//! Invariant checks for the parsers of network bytes, written once and driven from two
//! places: `tests/parser_hostile.rs` (stable toolchain, seeds + a deterministic mutation
//! loop + a table of hostile cases) and the cargo-fuzz targets in `fuzz/fuzz_targets/`,
//! which include this directory with `#[path = "../../tests/hostile/mod.rs"]`.
//!
//! Every `check` function takes arbitrary bytes, must never panic on its own, and panics
//! (with the input in hex) when the gateway breaks an invariant: a span outside the head,
//! a body framing that contradicts the headers, a result that depends on how the bytes
//! were split across reads, a forwarded head that does not parse again.
//!
//! The `*_table.rs` files beside this one hold the explicit hostile cases; they are
//! test-only, declared by `tests/parser_hostile.rs` and not here, so the fuzz targets do
//! not compile them. Only the public API of the `ringgate` library is used.

#![allow(dead_code)]

pub mod cache;
pub mod chunked;
pub mod client_cert;
pub mod request;
pub mod response;
pub mod roundtrip;

use ringgate::config::{PathMatch, RouteConfig};

/// (max_head, max_headers) pairs every input is parsed with. The last is the largest:
/// anything accepted under a smaller limit must be accepted under it with the same result.
/// 200 headers is over the parser's stack array (128), so its heap path is exercised too.
pub const LIMITS: [(usize, usize); 3] = [(96, 3), (8192, 100), (65536, 200)];

/// Render bytes for a panic message: hex (to paste into a file) and a lossy string.
pub fn show(b: &[u8]) -> String {
    let mut hex = String::with_capacity(b.len() * 2);
    for x in b {
        hex.push_str(&format!("{x:02x}"));
    }
    format!("hex={hex} text={:?}", String::from_utf8_lossy(b))
}

/// Panic with the input attached when `cond` is false.
#[track_caller]
pub fn ensure(cond: bool, what: &str, input: &[u8]) {
    if !cond {
        panic!("invariant broken: {what}\n  input: {}", show(input));
    }
}

/// A route with every option at its neutral value: what the serialisers need.
pub fn simple_route(id: &str, prefix: &str) -> RouteConfig {
    RouteConfig::new(id, PathMatch::Prefix(prefix.to_string()))
}

/// Header names the gateway must never forward, in either direction.
pub const HOP_BY_HOP: [&[u8]; 7] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"transfer-encoding",
];

/// Split a list-valued header into trimmed, non-empty items (RFC 9110 5.6.1), written
/// here independently of the library's helper.
pub fn items(v: &[u8]) -> Vec<&[u8]> {
    v.split(|&b| b == b',')
        .map(ows_trim)
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn ows_trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// Content-Length as RFC 9110 8.6 allows it: digits, or a list of identical digit runs.
pub fn content_length(v: &[u8]) -> Option<u64> {
    let mut out = None;
    for item in v.split(|&b| b == b',') {
        let item = ows_trim(item);
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(item).ok()?.parse().ok()?;
        if out.is_some_and(|o| o != n) {
            return None;
        }
        out = Some(n);
    }
    out
}

/// A field name token (RFC 9110 5.6.2).
pub fn token(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// Where each header line sits: `name ":" OWS value OWS EOL`, with EOL CRLF (or a bare
/// LF when `bare_lf_ok`). Checks every span is inside `head_len`, in order, and that the
/// bytes between them are exactly what the grammar allows: nothing could hide a second
/// line inside a value. `start` is where the first header line begins; returns where the
/// line after the last header begins.
pub fn check_header_lines(
    buf: &[u8],
    head_len: usize,
    headers: &[ringgate::http::HeaderPos],
    start: usize,
    bare_lf_ok: bool,
) -> usize {
    let mut prev_end = start;
    for h in headers {
        let (ns, ne) = (h.name.start as usize, h.name.end as usize);
        let (vs, ve) = (h.value.start as usize, h.value.end as usize);
        ensure(
            ns == prev_end,
            "each header line starts where the last ended",
            buf,
        );
        ensure(
            ns < ne && ne < vs && vs <= ve && ve <= head_len,
            &format!("header spans inside the head ({h:?}, head_len {head_len})"),
            buf,
        );
        ensure(token(&buf[ns..ne]), "header name is a token", buf);
        ensure(
            h.kind == ringgate::http::HeaderKind::classify(&buf[ns..ne]),
            "header kind matches its name",
            buf,
        );
        ensure(buf[ne] == b':', "colon right after the name", buf);
        ensure(
            buf[ne + 1..vs].iter().all(|&c| c == b' ' || c == b'\t'),
            "only OWS between colon and value",
            buf,
        );
        let value = &buf[vs..ve];
        ensure(
            !value.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0),
            "no CR, LF or NUL in a value",
            buf,
        );
        let mut j = ve;
        while j < head_len && (buf[j] == b' ' || buf[j] == b'\t') {
            j += 1;
        }
        let eol = if buf[j..].starts_with(b"\r\n") {
            2
        } else if bare_lf_ok && buf[j..].starts_with(b"\n") {
            1
        } else {
            0
        };
        ensure(eol > 0, "value followed by OWS and a line end", buf);
        prev_end = j + eol;
        ensure(prev_end <= head_len, "header line inside the head", buf);
    }
    prev_end
}
