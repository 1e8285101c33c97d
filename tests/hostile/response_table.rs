//! The response-head table: framing and connection reuse per RFC 9112 6.3, heads the
//! gateway must refuse, and reason phrases relayed byte for byte. Test-only: declared by
//! `tests/parser_hostile.rs`.

use ringgate::http::{BodyFraming, HeadError};

use super::hostile::{self, response};

#[test]
fn response_framing_shapes() {
    use BodyFraming::{Chunked, Empty, Length, UntilClose};
    let cases: &[(&str, &[u8], bool, BodyFraming, bool)] = &[
        // (name, head, answers HEAD, body, upstream connection reusable)
        (
            "length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            false,
            Length(5),
            true,
        ),
        (
            "TE wins over CL, never reused",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            Chunked,
            false,
        ),
        (
            "chunked not last: until close",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            false,
            UntilClose,
            false,
        ),
        (
            "gzip then chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            Chunked,
            true,
        ),
        (
            "no length: until close",
            b"HTTP/1.1 200 OK\r\n\r\n",
            false,
            UntilClose,
            false,
        ),
        (
            "HEAD with length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            true,
            Empty,
            true,
        ),
        (
            "304 with length",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            false,
            Empty,
            true,
        ),
        (
            "204",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            false,
            Empty,
            true,
        ),
        (
            "1xx",
            b"HTTP/1.1 103 Early Hints\r\n\r\n",
            false,
            Empty,
            true,
        ),
        (
            "HTTP/1.0 keep-alive",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
            Length(1),
            true,
        ),
        (
            "HTTP/1.0 default close",
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            false,
            Length(1),
            false,
        ),
        (
            "TE identity (no coding) with a length",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n",
            false,
            Length(2),
            true,
        ),
        (
            "TE identity, chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity, chunked\r\n\r\n",
            false,
            Chunked,
            true,
        ),
        (
            "TE empty: until close",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 2\r\n\r\n",
            false,
            UntilClose,
            false,
        ),
        (
            "HTTP/1.2 is read as 1.1 (RFC 9112 2.3)",
            b"HTTP/1.2 200 OK\r\nContent-Length: 1\r\n\r\n",
            false,
            Length(1),
            true,
        ),
        (
            "bare LF from an upstream is tolerated",
            b"HTTP/1.1 200 OK\nContent-Length: 1\n\n",
            false,
            Length(1),
            true,
        ),
    ];
    for &(name, input, head_request, body, keep_alive) in cases {
        let _ = response::check(input);
        let p = response::parse(input, head_request)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"))
            .unwrap_or_else(|| panic!("{name}: incomplete"));
        assert_eq!((p.body, p.keep_alive), (body, keep_alive), "{name}");
    }
    for (name, input) in [
        (
            "conflicting lengths",
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
        ),
        (
            "signed length",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
        ),
        ("obs-fold", b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n"),
        ("NUL", b"HTTP/1.1 200 OK\r\nX-A: \0\r\n\r\n"),
        ("two-digit status", b"HTTP/1.1 20 OK\r\n\r\n"),
        (
            "HTTP/1.10",
            b"HTTP/1.10 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        ("HTTP/2", b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n"),
        (
            "HTTP/1.2x",
            b"HTTP/1.2x 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        // Written back to the client as "HTTP/1.1 42 ...": not a status line.
        (
            "status below 100",
            b"HTTP/1.1 042 Odd\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "status above 599",
            b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n",
        ),
    ] {
        let _ = response::check(input);
        assert!(
            matches!(response::parse(input, false), Err(HeadError::Malformed(_))),
            "{name}"
        );
    }
}

/// The reason phrase is relayed byte for byte and never runs past its line. httparse
/// reports a missing or non-UTF-8 reason as a static "", which once became a span
/// computed from unrelated pointers (`fuzz/artifacts-kept/response_head/`).
#[test]
fn response_reason_phrases() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", b""),
        (b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", b""),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"OK"),
        (
            b"HTTP/1.1 200 Gr\xfc\xdfe\r\nContent-Length: 0\r\n\r\n",
            b"Gr\xfc\xdfe",
        ),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", b"OK"),
        (b"HTTP/1.1 200\nContent-Length: 0\n\n", b""),
        (
            b"\r\n\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            b"Created",
        ),
        (
            b"HTTP/1.1 200 a\tb  \r\nContent-Length: 0\r\n\r\n",
            b"a\tb  ",
        ),
    ];
    for &(input, reason) in cases {
        let _ = response::check(input);
        let p = response::parse(input, false).unwrap().unwrap();
        assert_eq!(p.reason.get(input), reason, "{}", hostile::show(input));
    }
}
