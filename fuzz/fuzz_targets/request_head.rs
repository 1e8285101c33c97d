//! `RequestHead::parse` on arbitrary bytes under several limits: never panics, and every
//! accepted head satisfies the invariants in `tests/hostile/request.rs` (spans inside
//! the head, one Host on HTTP/1.1, never a length with chunked, consistent lengths, the
//! same result however the bytes are split or the head reused).
#![no_main]

#[path = "../../tests/hostile/mod.rs"]
mod hostile;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hostile::request::check(data);
});
