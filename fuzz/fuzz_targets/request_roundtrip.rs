//! Parse a request head, write the upstream head with `forward::upstream_request`, parse
//! that again: it must parse, carry no hop-by-hop header, and keep the method, target,
//! host and body framing: see `tests/hostile/roundtrip.rs`.
#![no_main]

#[path = "../../tests/hostile/mod.rs"]
mod hostile;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hostile::roundtrip::check(data);
});
