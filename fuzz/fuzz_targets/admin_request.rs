//! `admin::http::read_request` on arbitrary bytes, delivered in pieces whose size the
//! first byte chooses (the admin listener reads whatever a socket gives): never
//! panics, never returns a body over `MAX_BODY` or a head over `MAX_HEAD`, and never
//! accepts a request that carries both `Content-Length` and `Transfer-Encoding`.
#![no_main]

use std::io::Read;

use ringgate::admin::http::{read_request, MAX_BODY, MAX_HEAD};

struct Pieces<'a>(&'a [u8], usize);

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(self.1).min(out.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else { return };
    let mut r = Pieces(rest, usize::from(step % 64) + 1);
    let mut buf = Vec::new();
    while let Ok(req) = read_request(&mut r, &mut buf) {
        assert!(req.body.len() <= MAX_BODY);
        let head: usize = req.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(head <= MAX_HEAD);
        let has = |n: &str| req.headers.iter().any(|(h, _)| h == n);
        assert!(!(has("content-length") && has("transfer-encoding")));
    }
});
