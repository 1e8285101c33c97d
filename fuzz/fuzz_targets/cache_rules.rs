//! The response cache on a request's and a response's header bytes: two flag bytes
//! (credentials, tenant, shared route, route vary and ttl, cache size; when the entry is
//! looked at, upstream delay, more inserts, a body one byte too long), request header
//! lines, 0x00, a response head. `storable`, `Entry::build`, `write_head`,
//! `write_not_modified`, `conditional`/`not_modified`, `freshen`, the keys and the
//! store's bookkeeping must agree with RFC 9111 and with each other: see
//! `tests/hostile/cache.rs`.
#![no_main]

#[path = "../../tests/hostile/mod.rs"]
mod hostile;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hostile::cache::check(data);
});
