//! The request-head table: every smuggling and malformed shape with the status the
//! gateway must answer, the 431 limits, heads arriving in pieces, and the same shapes
//! through monoio-http 0.3.12's h1 decoder (the table the README quotes). Test-only:
//! declared by `tests/parser_hostile.rs`, not by `mod.rs`, so the fuzz targets skip it.

use bytes::BytesMut;
use monoio_codec::{Decoded, Decoder};
use monoio_http::h1::codec::decoder::{DirectWrapper, GenericHeadDecoder, RequestHeadDecoder};
use ringgate::http::{BodyFraming, HeadError, RequestHead};

use super::hostile::{self, request};
use super::seeds;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Body(BodyFraming),
    Status(u16),
}

fn outcome(input: &[u8]) -> Option<Want> {
    match request::check(input) {
        Ok(Some(p)) => Some(Want::Body(p.body)),
        Ok(None) => None,
        Err(e) => Some(Want::Status(e.status())),
    }
}

const GET: &str = "GET / HTTP/1.1\r\nHost: a\r\n";

/// (name, request bytes, what the gateway must answer).
fn request_cases() -> Vec<(&'static str, String, Want)> {
    use BodyFraming::{Chunked, Empty, Length};
    let ok = Want::Body;
    let bad = Want::Status(400);
    vec![
        // Content-Length and Transfer-Encoding together, either order.
        (
            "CL then TE",
            format!("{GET}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            bad,
        ),
        (
            "TE then CL",
            format!("{GET}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            bad,
        ),
        (
            "CL 0 with TE",
            format!("{GET}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            bad,
        ),
        // Content-Length values.
        (
            "differing CL headers",
            format!("{GET}Content-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            bad,
        ),
        (
            "differing CL list",
            format!("{GET}Content-Length: 5, 6\r\n\r\n"),
            bad,
        ),
        (
            "identical CL headers",
            format!("{GET}Content-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            ok(Length(5)),
        ),
        (
            "identical CL list",
            format!("{GET}Content-Length: 5, 5\r\n\r\n"),
            ok(Length(5)),
        ),
        (
            "CL with OWS",
            format!("{GET}Content-Length: \t5 \r\n\r\n"),
            ok(Length(5)),
        ),
        (
            "CL zero",
            format!("{GET}Content-Length: 0\r\n\r\n"),
            ok(Empty),
        ),
        (
            "signed CL +",
            format!("{GET}Content-Length: +5\r\n\r\n"),
            bad,
        ),
        (
            "signed CL -",
            format!("{GET}Content-Length: -5\r\n\r\n"),
            bad,
        ),
        ("hex CL", format!("{GET}Content-Length: 0x5\r\n\r\n"), bad),
        (
            "decimal point CL",
            format!("{GET}Content-Length: 5.0\r\n\r\n"),
            bad,
        ),
        ("empty CL", format!("{GET}Content-Length: \r\n\r\n"), bad),
        (
            "CL list with blank item",
            format!("{GET}Content-Length: 5,\r\n\r\n"),
            bad,
        ),
        (
            "CL inner space",
            format!("{GET}Content-Length: 1 0\r\n\r\n"),
            bad,
        ),
        (
            "CL overflow",
            format!("{GET}Content-Length: 18446744073709551616\r\n\r\n"),
            bad,
        ),
        (
            "CL u64 max is too long",
            format!("{GET}Content-Length: 18446744073709551615\r\n\r\n"),
            bad,
        ),
        // Transfer-Encoding: a single final chunked only, HTTP/1.1 only.
        (
            "TE chunked",
            format!("{GET}Transfer-Encoding: chunked\r\n\r\n"),
            ok(Chunked),
        ),
        (
            "TE Chunked case",
            format!("{GET}Transfer-Encoding: ChUnKeD\r\n\r\n"),
            ok(Chunked),
        ),
        (
            "TE tab OWS",
            format!("{GET}Transfer-Encoding:\tchunked\t\r\n\r\n"),
            ok(Chunked),
        ),
        (
            "TE gzip",
            format!("{GET}Transfer-Encoding: gzip\r\n\r\n"),
            bad,
        ),
        (
            "TE identity",
            format!("{GET}Transfer-Encoding: identity\r\n\r\n"),
            bad,
        ),
        (
            "TE xchunked",
            format!("{GET}Transfer-Encoding: xchunked\r\n\r\n"),
            bad,
        ),
        (
            "TE chunkedx",
            format!("{GET}Transfer-Encoding: chunkedx\r\n\r\n"),
            bad,
        ),
        (
            "TE chunked, gzip",
            format!("{GET}Transfer-Encoding: chunked, gzip\r\n\r\n"),
            bad,
        ),
        (
            "TE gzip, chunked",
            format!("{GET}Transfer-Encoding: gzip, chunked\r\n\r\n"),
            bad,
        ),
        (
            "TE chunked, chunked",
            format!("{GET}Transfer-Encoding: chunked, chunked\r\n\r\n"),
            bad,
        ),
        (
            "two TE headers",
            format!("{GET}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            bad,
        ),
        (
            "TE chunked then identity",
            format!("{GET}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"),
            bad,
        ),
        ("TE empty", format!("{GET}Transfer-Encoding: \r\n\r\n"), bad),
        (
            "TE vertical tab",
            format!("{GET}Transfer-Encoding: \x0bchunked\r\n\r\n"),
            bad,
        ),
        (
            "TE quoted",
            format!("{GET}Transfer-Encoding: \"chunked\"\r\n\r\n"),
            bad,
        ),
        (
            "TE on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            bad,
        ),
        // Line structure.
        ("obs-fold", format!("{GET}X-A: one\r\n two\r\n\r\n"), bad),
        (
            "obs-fold tab",
            format!("{GET}X-A: one\r\n\ttwo\r\n\r\n"),
            bad,
        ),
        (
            "obs-fold hiding TE",
            format!("{GET}X-A: one\r\n Transfer-Encoding: chunked\r\n\r\n"),
            bad,
        ),
        (
            "space before colon",
            format!("{GET}Transfer-Encoding : chunked\r\n\r\n"),
            bad,
        ),
        (
            "tab before colon",
            format!("{GET}Content-Length\t: 5\r\n\r\n"),
            bad,
        ),
        (
            "leading space first header",
            "GET / HTTP/1.1\r\n Host: a\r\n\r\n".into(),
            bad,
        ),
        (
            "bare LF after request line",
            "GET / HTTP/1.1\nHost: a\r\n\r\n".into(),
            bad,
        ),
        ("bare LF after header", format!("{GET}X-A: 1\n\r\n"), bad),
        (
            "bare LF everywhere",
            "GET / HTTP/1.1\nHost: a\n\n".into(),
            bad,
        ),
        ("bare CR", "GET / HTTP/1.1\rHost: a\r\n\r\n".into(), bad),
        ("CR inside value", format!("{GET}X-A: 1\r2\r\n\r\n"), bad),
        ("NUL in value", format!("{GET}X-A: a\0b\r\n\r\n"), bad),
        ("NUL in name", format!("{GET}X-\0A: b\r\n\r\n"), bad),
        (
            "NUL in target",
            "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n".into(),
            bad,
        ),
        ("empty header name", format!("{GET}: x\r\n\r\n"), bad),
        (
            "two spaces after method",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n".into(),
            bad,
        ),
        (
            "leading empty lines",
            format!("\r\n\r\n{GET}\r\n"),
            ok(Empty),
        ),
        // Request targets.
        (
            "asterisk-form",
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n".into(),
            bad,
        ),
        (
            "authority-form",
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".into(),
            bad,
        ),
        (
            "absolute-form",
            "GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n".into(),
            ok(Empty),
        ),
        (
            "absolute-form userinfo",
            "GET http://user@example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n".into(),
            bad,
        ),
        (
            "absolute-form ftp",
            "GET ftp://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n".into(),
            bad,
        ),
        (
            "absolute-form empty authority",
            "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n".into(),
            bad,
        ),
        (
            "relative target",
            "GET x/y HTTP/1.1\r\nHost: a\r\n\r\n".into(),
            bad,
        ),
        // Host.
        ("missing Host on 1.1", "GET / HTTP/1.1\r\n\r\n".into(), bad),
        (
            "missing Host on 1.0",
            "GET / HTTP/1.0\r\n\r\n".into(),
            ok(Empty),
        ),
        ("two Hosts", format!("{GET}Host: a\r\n\r\n"), bad),
        ("two Hosts differing", format!("{GET}HOST: b\r\n\r\n"), bad),
        (
            "two Hosts on 1.0",
            "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n".into(),
            bad,
        ),
        ("empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n".into(), bad),
        (
            "Host with space",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n".into(),
            bad,
        ),
        (
            "Host with userinfo",
            "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n".into(),
            bad,
        ),
        (
            "Host with path",
            "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n".into(),
            bad,
        ),
        (
            "Host with backslash",
            "GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n".into(),
            bad,
        ),
        (
            "Host IPv6 and port",
            "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n".into(),
            ok(Empty),
        ),
        // Versions.
        (
            "HTTP/2.0",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n".into(),
            Want::Status(505),
        ),
        (
            "HTTP/3",
            "GET / HTTP/3.0\r\nHost: a\r\n\r\n".into(),
            Want::Status(505),
        ),
        (
            "lower-case version",
            "GET / http/1.1\r\nHost: a\r\n\r\n".into(),
            bad,
        ),
        ("no version", "GET /\r\nHost: a\r\n\r\n".into(), bad),
        // RFC 9112 2.3: a 1.x minor version above 1 is processed as 1.1.
        (
            "HTTP/1.2",
            "GET / HTTP/1.2\r\nHost: a\r\n\r\n".into(),
            ok(Empty),
        ),
        (
            "HTTP/1.9",
            "GET / HTTP/1.9\r\nHost: a\r\n\r\n".into(),
            ok(Empty),
        ),
        (
            "empty line, then HTTP/1.2",
            "\r\nGET / HTTP/1.2\r\nHost: a\r\n\r\n".into(),
            ok(Empty),
        ),
        (
            "HTTP/1.10",
            "GET / HTTP/1.10\r\nHost: a\r\n\r\n".into(),
            bad,
        ),
        (
            "HTTP/1.2x",
            "GET / HTTP/1.2x\r\nHost: a\r\n\r\n".into(),
            bad,
        ),
        (
            "HTTP/1.2 SP",
            "GET / HTTP/1.2 \r\nHost: a\r\n\r\n".into(),
            bad,
        ),
        (
            "HTTP/1.2 without Host",
            "GET / HTTP/1.2\r\nX: a\r\n\r\n".into(),
            bad,
        ),
        // Expect.
        (
            "Expect 100-continue",
            format!("{GET}Expect: 100-continue\r\nContent-Length: 1\r\n\r\n"),
            ok(Length(1)),
        ),
        (
            "Expect other",
            format!("{GET}Expect: 200-ok\r\n\r\n"),
            Want::Status(417),
        ),
    ]
}

#[test]
fn request_smuggling_and_malformed_shapes() {
    let mut failures = Vec::new();
    for (name, input, want) in request_cases() {
        let got = outcome(input.as_bytes());
        if got != Some(want) {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn with_headers(n: usize) -> Vec<u8> {
    let mut v = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 1..n {
        v.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    v.extend_from_slice(b"\r\n");
    v
}

#[test]
fn too_many_headers_is_431() {
    let at = |input: &[u8]| {
        request::parse_with(&mut RequestHead::default(), input, 8192, 100).map(|p| p.is_some())
    };
    assert_eq!(at(&with_headers(100)), Ok(true));
    assert_eq!(at(&with_headers(101)), Err(HeadError::TooManyHeaders));
    assert_eq!(HeadError::TooManyHeaders.status(), 431);
    // Past the parser's stack array, under the largest limit (heap path).
    assert!(matches!(request::check(&with_headers(200)), Ok(Some(_))));
    assert_eq!(
        request::check(&with_headers(201)),
        Err(HeadError::TooManyHeaders)
    );
}

#[test]
fn head_over_the_limit_is_431() {
    let sized = |len: usize| {
        let base = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n".len();
        let mut v = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
        v.resize(len - 4, b'p');
        v.extend_from_slice(b"\r\n\r\n");
        assert!(len > base);
        v
    };
    let at = |input: &[u8]| {
        request::parse_with(&mut RequestHead::default(), input, 8192, 100).map(|p| p.is_some())
    };
    assert_eq!(at(&sized(8192)), Ok(true));
    assert_eq!(at(&sized(8193)), Err(HeadError::TooLarge));
    // A head that never ends: 431 as soon as max_head bytes are in, not a wait forever.
    let endless = vec![b'a'; 8192];
    let mut endless_head = b"GET / HTTP/1.1\r\nX-Endless: ".to_vec();
    endless_head.extend_from_slice(&endless);
    assert_eq!(at(&endless_head[..8191]), Ok(false));
    assert_eq!(at(&endless_head), Err(HeadError::TooLarge));
    assert_eq!(HeadError::TooLarge.status(), 431);
    let _ = request::check(&sized(8193));
}

/// Valid heads cut at every byte: `Ok(false)` until the last byte arrives, then the same
/// result as in one read, also when the same `RequestHead` is reused across the reads as
/// a connection does.
#[test]
fn partial_heads_wait_then_parse_the_same() {
    let mut inputs: Vec<Vec<u8>> = seeds("request_head")
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| matches!(request::parse(b), Ok(Some(_))))
        .collect();
    inputs.push(with_headers(40));
    assert!(inputs.len() >= 10);
    for input in inputs {
        let whole = request::parse(&input).unwrap().unwrap();
        let mut reused = RequestHead::default();
        for cut in 0..whole.head_len {
            let r = request::parse_with(&mut reused, &input[..cut], 65536, 200);
            assert_eq!(r, Ok(None), "cut at {cut}: {}", hostile::show(&input));
        }
        let last = request::parse_with(&mut reused, &input[..whole.head_len], 65536, 200);
        assert_eq!(last, Ok(Some(whole.clone())));
        let again = request::parse_with(&mut reused, &input, 65536, 200);
        assert_eq!(again, Ok(Some(whole)));
    }
}

// ---------------------------------------------------------------------------------------
// monoio-http 0.3.12's h1 request decoder on the same shapes (for the README)

type MonoioHead =
    GenericHeadDecoder<monoio_http::common::request::Request, RequestHeadDecoder, DirectWrapper>;

/// What monoio-http's server-side head decoder (head + framing decision) does with `input`.
fn monoio_outcome(input: &[u8]) -> String {
    use monoio_http::common::body::StreamHint;
    let mut buf = BytesMut::from(input);
    match MonoioHead::default().decode(&mut buf) {
        Ok(Decoded::Some((head, payload))) => {
            let cl = head
                .headers
                .get("content-length")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            match (payload.hint(), cl) {
                (StreamHint::Fixed, Some(cl)) => format!("accepted, length {cl}"),
                (StreamHint::Stream, _) => "accepted, chunked".into(),
                _ => "accepted, no body".into(),
            }
        }
        Ok(_) => "waits for more".into(),
        Err(_) => "refused".into(),
    }
}

/// Under the default limits (`config/gateway.toml`: 16 KiB, 100 headers).
fn ringgate_outcome(input: &[u8]) -> String {
    match request::parse_with(&mut RequestHead::default(), input, 16384, 100) {
        Ok(Some(p)) => match p.body {
            BodyFraming::Length(n) => format!("accepted, length {n}"),
            BodyFraming::Chunked => "accepted, chunked".into(),
            _ => "accepted, no body".into(),
        },
        Ok(None) => "waits for more".into(),
        Err(e) => format!("{}", e.status()),
    }
}

/// Prints the table the README quotes (`cargo test --test parser_hostile monoio --
/// --nocapture`) and pins the rows it relies on.
#[test]
fn monoio_http_decoder_on_hostile_shapes() {
    let mut cases: Vec<(&str, Vec<u8>)> = request_cases()
        .into_iter()
        .map(|(n, s, _)| (n, s.into_bytes()))
        .collect();
    cases.push((
        "TE identity then chunked",
        format!("{GET}Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes(),
    ));
    cases.push(("97 headers", with_headers(97)));
    cases.push(("101 headers", with_headers(101)));
    let mut endless = b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: ".to_vec();
    endless.resize(1 << 20, b'a');
    cases.push(("1 MiB head, no end yet", endless));
    let mut table = String::from("| shape | ringgate | monoio-http 0.3.12 |\n|---|---|---|\n");
    let mut rows = std::collections::HashMap::new();
    for (name, input) in &cases {
        let (ours, theirs) = (ringgate_outcome(input), monoio_outcome(input));
        table.push_str(&format!("| {name} | {ours} | {theirs} |\n"));
        rows.insert(*name, theirs);
    }
    println!("{table}");
    for (name, want) in [
        ("CL then TE", "accepted, chunked"),
        ("differing CL headers", "accepted, length 5"),
        ("TE on HTTP/1.0", "accepted, chunked"),
        ("bare LF after request line", "accepted, no body"),
        ("missing Host on 1.1", "accepted, no body"),
        ("two Hosts differing", "accepted, no body"),
        ("TE identity then chunked", "accepted, no body"),
        ("1 MiB head, no end yet", "waits for more"),
    ] {
        assert_eq!(rows[name], want, "{name}");
    }
}
