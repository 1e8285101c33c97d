//! `ResponseHead::parse` on arbitrary bytes, as the answer to a HEAD and to anything
//! else, and the head `forward::client_response` writes from it parsed again: see
//! `tests/hostile/response.rs`.
#![no_main]

#[path = "../../tests/hostile/mod.rs"]
mod hostile;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hostile::response::check(data);
});
