//! The compression stage, on routes with `compress = { .. }`: responses of the listed
//! media types, at least `min_bytes` long, that the upstream sent without a
//! `Content-Encoding`, are compressed on the way to a client that accepts one of the
//! route's `algorithms`, while they stream (the I/O driver's `proxy/compressed.rs`).
//!
//! - The coding is chosen in the routed phase ([`negotiate`]), from `Accept-Encoding`
//!   (RFC 9110 12.5.3: q-values, `*`, `identity`; among equal q-values the route's
//!   order), before the request head's buffer is reused for the body. HEAD, requests
//!   with `Range`, and HTTP/1.0 clients (no chunked framing to end a body of unknown
//!   length but a close) are never compressed. No `Accept-Encoding` at all means
//!   identity (RFC 9110 allows any coding then, but clients that do not ask, such as
//!   curl without `--compressed`, cannot decode one).
//! - On the response ([`eligible`]): not 1xx, 204, 206 or 304; no `Content-Encoding`,
//!   `Content-Range`, `Cache-Control: no-transform` or transfer coding of its own; a
//!   listed type (`type/*` matches, parameters ignored); a `Content-Length` of at least
//!   `min_bytes`. A chunked or close-delimited body (length unknown) is compressed: it
//!   is usually large, and a small one costs little.
//! - A compressed response has `Content-Encoding`, `Vary: Accept-Encoding`, no
//!   `Content-Length` (chunked), and a strong `ETag` made weak (`W/`): the bytes differ
//!   from the identity representation's. An eligible response sent uncompressed also
//!   gets `Vary: Accept-Encoding`, so a shared cache downstream keeps them apart.
//! - The cache stores the identity body (one copy; what the upstream sent) and a hit
//!   is compressed on the way out ([`compress_answer`]), whole, with a
//!   `Content-Length`: the stored copy is at most `cache.max_object_bytes` and is in
//!   memory. A hit whose body was moved into a file (sent with sendfile, see
//!   `crate::cache::body`) is served identity, with `Vary: Accept-Encoding`: reading
//!   it back into memory to compress it would undo what the file is for.
//! - Memory per compressed stream is bounded by the encoders' settings ([`Encoder`]).

use std::io::Write;

use crate::config::{Coding, RouteCompress};
use crate::http::header::{list_items, trim_ows};
use crate::http::{BodyFraming, Method, RequestHead, ResponseHead};

/// gzip (deflate) level: 1-9. Measured in `benches/compress.rs` (see the README).
pub const GZIP_LEVEL: u32 = 4;
/// Brotli quality: 0-11.
pub const BROTLI_QUALITY: u32 = 3;
/// Brotli window: 2^18 = 256 KiB (the default 2^22 would let one stream hold 4 MiB).
pub const BROTLI_LGWIN: u32 = 18;
/// zstd level: 1-19 (negative: faster).
pub const ZSTD_LEVEL: i32 = 1;
/// zstd window: 2^18 = 256 KiB (the level's own would be up to 2^19-2^21 on long
/// bodies).
pub const ZSTD_WINDOW_LOG: u32 = 18;

/// The coding for this request's response, if it may be compressed at all.
pub fn negotiate(cfg: &RouteCompress, head: &RequestHead, buf: &[u8]) -> Option<Coding> {
    if head.method == Method::Head || head.version_minor == 0 {
        return None;
    }
    let mut accept = None::<Vec<&[u8]>>;
    for h in &head.headers {
        let name = h.name.get(buf);
        if name.eq_ignore_ascii_case(b"range") {
            return None;
        }
        if name.eq_ignore_ascii_case(b"accept-encoding") {
            accept.get_or_insert_with(Vec::new).push(h.value.get(buf));
        }
    }
    choose(&cfg.algorithms, &accept?)
}

/// RFC 9110 12.5.3 over the `Accept-Encoding` values: each coding of `algorithms`
/// gets its own q-value, else `*`'s, else 0; the highest non-zero wins, ties going to
/// the earlier in `algorithms` (the server's preference).
pub fn choose(algorithms: &[Coding], values: &[&[u8]]) -> Option<Coding> {
    let mut best: Option<(Coding, u16)> = None;
    for &coding in algorithms {
        let (mut own, mut star) = (None, None);
        for v in values {
            for item in list_items(v) {
                let (token, q) = coding_and_q(item);
                if token.eq_ignore_ascii_case(coding.token().as_bytes())
                    || (coding == Coding::Gzip && token.eq_ignore_ascii_case(b"x-gzip"))
                {
                    own = Some(own.map_or(q, |o: u16| o.max(q)));
                } else if token == b"*" {
                    star = Some(q);
                }
            }
        }
        let q = own.or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(c, _)| c)
}

/// `gzip;q=0.5` -> (`gzip`, 500). A q-value that is not one (RFC 9110 12.4.2) makes
/// the element unacceptable (0), rather than guessing.
fn coding_and_q(item: &[u8]) -> (&[u8], u16) {
    let mut parts = item.split(|&b| b == b';');
    let token = trim_ows(parts.next().unwrap_or_default());
    let mut q = 1000;
    for p in parts {
        let p = trim_ows(p);
        if p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=") {
            q = parse_q(&p[2..]).unwrap_or(0);
        }
    }
    (token, q)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_q(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| (d - b'0') as u16);
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether this response may be compressed (whatever the client accepts).
pub fn eligible(cfg: &RouteCompress, resp: &ResponseHead, buf: &[u8]) -> bool {
    if resp.status < 200 || matches!(resp.status, 204 | 206 | 304) || resp.extra_codings {
        return false;
    }
    match resp.body {
        BodyFraming::Empty => return false,
        BodyFraming::Length(n) if n < cfg.min_bytes.max(1) => return false,
        _ => {}
    }
    let mut typed = false;
    for h in &resp.headers {
        let (name, value) = (h.name.get(buf), h.value.get(buf));
        if name.eq_ignore_ascii_case(b"content-encoding")
            || name.eq_ignore_ascii_case(b"content-range")
        {
            return false;
        }
        if name.eq_ignore_ascii_case(b"cache-control")
            && list_items(value).any(|d| d.eq_ignore_ascii_case(b"no-transform"))
        {
            return false;
        }
        if name.eq_ignore_ascii_case(b"content-type") {
            typed = type_listed(&cfg.types, value);
        }
    }
    typed
}

/// `application/json; charset=utf-8` against `["application/json", "text/*"]`.
fn type_listed(types: &[String], value: &[u8]) -> bool {
    let essence = trim_ows(value.split(|&b| b == b';').next().unwrap_or_default());
    types.iter().any(|t| match t.strip_suffix('*') {
        Some(prefix) => {
            essence.len() > prefix.len()
                && essence[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        }
        None => essence.eq_ignore_ascii_case(t.as_bytes()),
    })
}

/// Make a strong `ETag` in the head `head[from..]` weak (`"x"` -> `W/"x"`).
pub fn weaken_etag(head: &mut Vec<u8>, from: usize) {
    let mut at = from;
    while let Some(end) = memchr::memchr(b'\n', &head[at..]).map(|i| at + i + 1) {
        let line = &head[at..end];
        if line.len() > 5 && line[..5].eq_ignore_ascii_case(b"etag:") {
            let value = at
                + 5
                + line[5..]
                    .iter()
                    .take_while(|&&b| b == b' ' || b == b'\t')
                    .count();
            if head.get(value) == Some(&b'"') {
                head.splice(value..value, *b"W/");
            }
            return;
        }
        at = end;
    }
}

/// A streaming compressor. Peak heap per stream at the levels above, measured on a
/// 1 MiB body by `benches/compress.rs` (counting allocator; zstd's C context by
/// `ZSTD_sizeof_CCtx`): see the README's "Compression" for the figures. Bounded by
/// the windows set here, not by the body's length.
pub struct Encoder(Inner);

enum Inner {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// At the levels this gateway uses.
    pub fn new(coding: Coding) -> Encoder {
        match coding {
            Coding::Gzip => Encoder::gzip(GZIP_LEVEL),
            Coding::Br => Encoder::brotli(BROTLI_QUALITY),
            Coding::Zstd => Encoder::zstd(ZSTD_LEVEL),
        }
    }

    pub fn gzip(level: u32) -> Encoder {
        let out = Vec::with_capacity(8 * 1024);
        Encoder(Inner::Gzip(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::new(level),
        )))
    }

    pub fn brotli(quality: u32) -> Encoder {
        let out = Vec::with_capacity(8 * 1024);
        Encoder(Inner::Br(Box::new(brotli::CompressorWriter::new(
            out,
            4096,
            quality,
            BROTLI_LGWIN,
        ))))
    }

    pub fn zstd(level: i32) -> Encoder {
        let out = Vec::with_capacity(8 * 1024);
        // Fails only on allocation failure inside the C library.
        let mut enc = zstd::stream::write::Encoder::new(out, level).expect("zstd context");
        let _ = enc.window_log(ZSTD_WINDOW_LOG);
        Encoder(Inner::Zstd(enc))
    }

    /// Compress `data`; what the encoder has produced so far is in [`Encoder::output`].
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.0 {
            Inner::Gzip(e) => e.write_all(data),
            Inner::Br(e) => e.write_all(data),
            Inner::Zstd(e) => e.write_all(data),
        }
    }

    /// The compressed bytes produced and not taken yet (the caller clears it).
    pub fn output(&mut self) -> &mut Vec<u8> {
        match &mut self.0 {
            Inner::Gzip(e) => e.get_mut(),
            Inner::Br(e) => e.get_mut(),
            Inner::Zstd(e) => e.get_mut(),
        }
    }

    /// End the stream: the rest of the compressed bytes.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self.0 {
            Inner::Gzip(e) => e.finish(),
            Inner::Br(e) => Ok(e.into_inner()),
            Inner::Zstd(e) => e.finish(),
        }
    }

    /// `data` compressed whole.
    pub fn whole(coding: Coding, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut e = Encoder::new(coding);
        e.push(data)?;
        e.finish()
    }
}

/// A cache answer in `out` (its head, then its body unless `body` is given apart),
/// rewritten for `coding` when [`eligible`]: the body compressed whole, with
/// `Content-Encoding`, `Vary: Accept-Encoding`, its new `Content-Length`, the ETag
/// weak. An eligible answer that is not compressed (`coding` is `None`, or its body is
/// in a file) gains `Vary: Accept-Encoding` only. Returns whether `body` was used (and
/// must not be written after `out`).
pub fn compress_answer(
    cfg: &RouteCompress,
    coding: Option<Coding>,
    out: &mut Vec<u8>,
    body: Option<&[u8]>,
) -> bool {
    let mut resp = ResponseHead::default();
    // The gateway's own head (the entry's fields as stored): no limit to enforce.
    if !matches!(resp.parse(out, out.len(), 1024, false), Ok(true)) || !eligible(cfg, &resp, out) {
        return false;
    }
    let head_end = resp.head_len;
    let identity = match body {
        Some(b) => b,
        None => &out[head_end..],
    };
    let compressed = match coding.map(|c| (c, Encoder::whole(c, identity))) {
        Some((c, Ok(z))) => Some((c, z)),
        _ => None,
    };
    let mut head = Vec::with_capacity(head_end + 64);
    head.extend_from_slice(&out[..head_end - 2]);
    head.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    let Some((coding, z)) = compressed else {
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(&out[head_end..]);
        *out = head;
        return false;
    };
    // The fields again, without the identity body's length.
    head.clear();
    let status_end = memchr::memchr(b'\n', out).map_or(0, |i| i + 1);
    head.extend_from_slice(&out[..status_end]);
    for h in &resp.headers {
        let name = h.name.get(out);
        if name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(h.value.get(out));
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"Content-Encoding: ");
    head.extend_from_slice(coding.token().as_bytes());
    head.extend_from_slice(b"\r\nVary: Accept-Encoding\r\nContent-Length: ");
    head.extend_from_slice(itoa::Buffer::new().format(z.len()).as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    weaken_etag(&mut head, status_end);
    head.extend_from_slice(&z);
    *out = head;
    body.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    const ALL: [Coding; 3] = [Br, Zstd, Gzip];

    #[test]
    fn accept_encoding_follows_rfc_9110() {
        let pick = |v: &str| choose(&ALL, &[v.as_bytes()]);
        assert_eq!(pick("gzip, deflate, br"), Some(Br));
        assert_eq!(pick("gzip;q=0.5, br;q=0.9"), Some(Br));
        assert_eq!(pick("gzip;q=1.0, br;q=0.9"), Some(Gzip));
        assert_eq!(pick("gzip, br;q=0"), Some(Gzip));
        assert_eq!(pick("x-gzip"), Some(Gzip));
        assert_eq!(pick("*"), Some(Br));
        assert_eq!(pick("*;q=0.5, zstd"), Some(Zstd));
        assert_eq!(pick("identity;q=0, *;q=0"), None);
        assert_eq!(pick("*;q=0, gzip"), Some(Gzip));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick(""), None);
        assert_eq!(pick("deflate"), None);
        assert_eq!(pick("gzip;q=2"), None);
        assert_eq!(pick("gzip;q=0.0001"), None);
        assert_eq!(pick("GZIP;Q=0.001"), Some(Gzip));
        assert_eq!(choose(&[Gzip, Br], &[b"br, gzip"]), Some(Gzip));
        assert_eq!(choose(&ALL, &[b"gzip;q=0.2", b"zstd;q=0.3"]), Some(Zstd));
    }

    #[test]
    fn types_ignore_parameters_and_match_wildcards() {
        let types = ["application/json".to_owned(), "text/*".to_owned()];
        assert!(type_listed(&types, b"application/json; charset=utf-8"));
        assert!(type_listed(&types, b"Text/HTML"));
        assert!(!type_listed(&types, b"text/"));
        assert!(!type_listed(&types, b"application/jsonx"));
        assert!(!type_listed(&types, b"image/png"));
    }

    #[test]
    fn etags_are_weakened_once() {
        let mut h = b"HTTP/1.1 200 OK\r\nETag: \"v1\"\r\n\r\n".to_vec();
        weaken_etag(&mut h, 0);
        assert_eq!(h, b"HTTP/1.1 200 OK\r\nETag: W/\"v1\"\r\n\r\n");
        weaken_etag(&mut h, 0);
        assert_eq!(h, b"HTTP/1.1 200 OK\r\nETag: W/\"v1\"\r\n\r\n");
    }
}
