//! The chunked decoder: the first byte chooses where the rest is split in two; decoding
//! whole, split and byte by byte must give the same body, trailers, completeness or
//! error: see `tests/hostile/chunked.rs`.
#![no_main]

#[path = "../../tests/hostile/mod.rs"]
mod hostile;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hostile::chunked::check(data);
});
