//! `http::traceparent::parse` on arbitrary bytes (a client's `traceparent` field):
//! never panics; what it accepts is lower-case hex of the right shape, and written
//! back as version 00 it reads back the same.
#![no_main]

use ringgate::http::traceparent::{parse, write, LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(t) = parse(data) else { return };
    assert!(t.trace_id != [0; 16]);
    let mut out = [0u8; LEN];
    write(&mut out, &t.trace_id, 0x0123_4567_89ab_cdef, t.flags);
    assert_eq!(parse(&out), Some(t));
    assert!(out.iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase() || *b == b'-'));
});
