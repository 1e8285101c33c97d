//! `tls::client_cert_info` on arbitrary bytes (what a client presents as its
//! certificate): never panics, and what it returns is safe as a header value and true
//! to the input (see `tests/hostile/client_cert.rs`).
#![no_main]

#[path = "../../tests/hostile/mod.rs"]
mod hostile;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hostile::client_cert::check(data);
});
