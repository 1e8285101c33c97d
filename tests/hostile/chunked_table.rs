//! The chunked-body table: every refusal with its error, the limits on extensions and
//! trailers, and every split point of valid messages. Test-only: declared by
//! `tests/parser_hostile.rs`.

use ringgate::http::chunked::decode_all;
use ringgate::http::ChunkError;

use super::hostile::chunked;

#[test]
fn chunked_refusals() {
    use ChunkError::*;
    // n bytes of extension after the ';'.
    let ext = |n: usize| format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(n)).into_bytes();
    let trailer = |n: usize| format!("0\r\nX: {}\r\n\r\n", "t".repeat(n - 3)).into_bytes();
    let many_trailers = {
        let mut v = b"0\r\n".to_vec();
        for i in 0..800 {
            v.extend_from_slice(format!("X-Trailer-{i:04}: vvvvvv\r\n").as_bytes());
        }
        v.extend_from_slice(b"\r\n");
        v
    };
    let cases: Vec<(&str, Vec<u8>, ChunkError)> = vec![
        (
            "negative size",
            b"-5\r\nhello\r\n0\r\n\r\n".to_vec(),
            BadSize,
        ),
        ("plus sign", b"+5\r\nhello\r\n0\r\n\r\n".to_vec(), BadSize),
        ("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n".to_vec(), BadSize),
        (
            "leading space",
            b" 5\r\nhello\r\n0\r\n\r\n".to_vec(),
            BadSize,
        ),
        (
            "empty size line",
            b"\r\nhello\r\n0\r\n\r\n".to_vec(),
            BadSize,
        ),
        ("non-hex digit", b"g\r\n".to_vec(), BadSize),
        (
            "junk after size",
            b"5 x\r\nhello\r\n0\r\n\r\n".to_vec(),
            BadSize,
        ),
        (
            "bare LF after size",
            b"5\nhello\r\n0\r\n\r\n".to_vec(),
            BadSize,
        ),
        (
            "17 hex digits",
            b"10000000000000000\r\n".to_vec(),
            SizeOverflow,
        ),
        (
            "17 digits, leading zeros",
            b"00000000000000005\r\n".to_vec(),
            SizeOverflow,
        ),
        (
            "CR not followed by LF",
            b"5\rhello\r\n".to_vec(),
            BadFraming,
        ),
        (
            "data not followed by CRLF",
            b"5\r\nhelloXX0\r\n\r\n".to_vec(),
            BadFraming,
        ),
        (
            "data followed by bare LF",
            b"5\r\nhello\n0\r\n\r\n".to_vec(),
            BadFraming,
        ),
        (
            "data followed by CR only",
            b"5\r\nhello\rX".to_vec(),
            BadFraming,
        ),
        (
            "bare LF in extension",
            b"5;a\nhello\r\n".to_vec(),
            BadFraming,
        ),
        (
            "NUL in extension",
            b"5;a\0\r\nhello\r\n".to_vec(),
            BadFraming,
        ),
        ("oversized extension", ext(4097), ExtensionTooLong),
        ("final line not CRLF", b"0\r\n\rX".to_vec(), BadFraming),
        (
            "trailer with bare LF",
            b"0\r\nA: 1\nB: 2\r\n\r\n".to_vec(),
            BadTrailer,
        ),
        (
            "trailer CR without LF",
            b"0\r\nA: 1\rB\r\n\r\n".to_vec(),
            BadTrailer,
        ),
        (
            "trailer with NUL",
            b"0\r\nA: \0\r\n\r\n".to_vec(),
            BadTrailer,
        ),
        ("oversized trailer line", trailer(16385), BadTrailer),
        ("oversized trailer section", many_trailers, BadTrailer),
    ];
    let mut failures = Vec::new();
    for (name, msg, want) in &cases {
        for at in 0..=msg.len() {
            chunked::check_split(msg, at).ok();
        }
        let got = decode_all(&[msg]);
        if got != Err(*want) {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // Right at the limits: accepted.
    for msg in [ext(4096), trailer(16384)] {
        let d = chunked::check_split(&msg, msg.len() / 2).unwrap();
        assert!(d.complete);
    }
}

#[test]
fn chunked_every_split_point_gives_the_same_body() {
    let messages: &[(&[u8], &[u8], usize)] = &[
        (
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
            b"hello world",
            1,
        ),
        (
            b"1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n",
            b"0123456789abcdef0123456789abcde",
            0,
        ),
        (
            b"3 \t;a=b;c\r\nabc\r\n0;last\r\nA: 1\r\nB:\r\n\r\n",
            b"abc",
            2,
        ),
        (
            b"000A\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
            b"0123456789",
            0,
        ),
    ];
    for &(msg, body, n_trailers) in messages {
        for at in 0..=msg.len() {
            let d = chunked::check_split(msg, at).unwrap();
            assert!(d.complete);
            assert_eq!(d.body, body);
            assert_eq!(d.trailers.len(), n_trailers);
        }
    }
    // 64 KiB in 4 KiB chunks, cut at a spread of points.
    let mut big = Vec::new();
    for i in 0..16u8 {
        big.extend_from_slice(b"1000\r\n");
        big.extend(std::iter::repeat_n(b'a' + i, 4096));
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(b"0\r\n\r\n");
    for at in (0..=big.len()).step_by(997) {
        let d = chunked::check_split(&big, at).unwrap();
        assert_eq!(d.body.len(), 65536);
    }
}
