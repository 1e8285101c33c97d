//! `compress = { .. }` on routes, end to end: each algorithm's output, decoded by a
//! real decoder here, is the origin's body byte for byte (Content-Length and large
//! chunked bodies); `Accept-Encoding` q-values, `*` and `identity;q=0`; what is left
//! alone (small bodies, other types, bodies already encoded, no-transform, HEAD, 204,
//! 304, Range); the ETag weakened; and the cache: one identity copy, served compressed
//! to a client that accepts it and identity to one that does not, and identity from a
//! file-backed entry.

mod common;

use std::io::Read;

use common::*;

/// JSON of about `n` bytes, compressible like real API output.
fn json(n: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user-{i}\",\"email\":\"user{i}@example.com\",\"active\":{},\"score\":{}}},",
            i % 3 == 0,
            (i * 7919) % 1000
        ));
        i += 1;
    }
    s.pop();
    s.push(']');
    s.into_bytes()
}

fn origin() -> Origin {
    Origin::start(|r| {
        let path = r.target.split('?').next().unwrap_or("");
        let tail = path.rsplit('/').next().unwrap_or("");
        match tail {
            "big" => Reply::ok(json(20_000))
                .header("Content-Type", "application/json; charset=utf-8")
                .header("ETag", "\"v1\""),
            "chunked" => {
                let body = json(300_000);
                let parts: Vec<&[u8]> = body.chunks(7_000).collect();
                Reply::new(200)
                    .header("Content-Type", "text/plain")
                    .chunked(&parts, &[])
            }
            "small" => Reply::ok(json(500)).header("Content-Type", "application/json"),
            "image" => Reply::ok(json(20_000)).header("Content-Type", "image/png"),
            "gz" => Reply::ok(gzip(&json(20_000)))
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip"),
            "notransform" => Reply::ok(json(20_000))
                .header("Content-Type", "application/json")
                .header("Cache-Control", "no-transform"),
            "empty" => Reply::new(204).header("Content-Type", "application/json"),
            "notmodified" => Reply::new(304).header("ETag", "\"v1\"").no_body(),
            "cached" => Reply::ok(json(20_000))
                .header("Content-Type", "application/json")
                .header("ETag", "\"c1\"")
                .header("Cache-Control", "max-age=60"),
            "cachedsmall" => Reply::ok(json(4_000))
                .header("Content-Type", "application/json")
                .header("Cache-Control", "max-age=60"),
            "cachedfile" => Reply::ok(json(40_000))
                .header("Content-Type", "application/json")
                .header("Cache-Control", "max-age=60"),
            _ => Reply::ok("?").header("Content-Type", "text/plain"),
        }
    })
}

fn gateway(driver: IoDriver, origin: &Origin) -> Gw {
    let toml = fill(
        "[cache]\nenabled = true\nfile_min_bytes = 32768\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\
         [[routes]]\nid = \"cached\"\npath_prefix = \"/c\"\nupstream = \"app\"\n\
         cache = { ttl_s = 30 }\n\
         compress = { types = [\"application/json\", \"text/*\"], min_bytes = 1024, \
         algorithms = [\"br\", \"zstd\", \"gzip\"] }\n\
         [[routes]]\nid = \"gz-only\"\npath_prefix = \"/g\"\nupstream = \"app\"\n\
         compress = { algorithms = [\"gzip\"] }\n\
         [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
         compress = { types = [\"application/json\", \"text/*\"], min_bytes = 1024, \
         algorithms = [\"br\", \"zstd\", \"gzip\"] }\n",
        &[("origin", origin.addr())],
    );
    Gw::start(driver, &toml)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The body as the client's decoder for its `Content-Encoding` sees it.
fn decoded(r: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    match r.header("content-encoding") {
        None => return r.body.clone(),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&r.body[..])
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(&r.body[..], 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("zstd") => out = zstd::decode_all(&r.body[..]).unwrap(),
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

fn get(path: &str, accept: &str) -> Req {
    Req::get(path).header("Accept-Encoding", accept)
}

both_drivers! {
    fn each_algorithm_decodes_to_the_origins_body(driver) {
        let up = origin();
        let gw = gateway(driver, &up);
        let mut c = gw.client();
        for (accept, coding) in [("br", "br"), ("zstd", "zstd"), ("gzip", "gzip")] {
            for (path, body) in [("/x/big", json(20_000)), ("/x/chunked", json(300_000))] {
                let r = c.request(&get(path, accept));
                assert_eq!(r.status, 200);
                assert_eq!(r.header("content-encoding"), Some(coding), "{}", r.head);
                assert!(!r.has("content-length"), "{}", r.head);
                assert!(r.chunked);
                assert!(r.lists("vary", "Accept-Encoding"));
                assert!(r.body.len() < body.len() / 3, "{path} {coding}: {}", r.body.len());
                assert!(decoded(&r) == body, "{path} {coding}: decoded body differs");
            }
        }
        // The ETag is weakened on a compressed response, kept on an identity one.
        let r = c.request(&get("/x/big", "gzip"));
        assert_eq!(r.header("etag"), Some("W/\"v1\""));
        let r = c.request(&Req::get("/x/big"));
        assert_eq!(r.header("etag"), Some("\"v1\""));
        assert!(!r.has("content-encoding"));
        assert!(r.lists("vary", "Accept-Encoding"), "{}", r.head);
        assert_eq!(r.body, json(20_000));
    }

    fn q_values_pick_the_coding(driver) {
        let up = origin();
        let gw = gateway(driver, &up);
        let mut c = gw.client();
        for (accept, expect) in [
            ("gzip;q=0.5, br;q=0.9", Some("br")),
            ("gzip;q=1, br;q=0.9", Some("gzip")),
            ("gzip, zstd, br", Some("br")),
            ("zstd, gzip", Some("zstd")),
            ("*", Some("br")),
            ("br;q=0, *;q=0.1", Some("zstd")),
            ("identity;q=0, *;q=0", None),
            ("identity;q=0, gzip", Some("gzip")),
            ("deflate", None),
            ("", None),
        ] {
            let r = c.request(&get("/x/big", accept));
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-encoding"), expect, "{accept}");
            assert_eq!(decoded(&r), json(20_000), "{accept}");
        }
        // The route's own list: only gzip there.
        let r = c.request(&get("/g/big", "br, gzip;q=0.1"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
    }

    fn what_must_be_left_alone_is(driver) {
        let up = origin();
        let gw = gateway(driver, &up);
        let mut c = gw.client();
        let all = "br, zstd, gzip";
        // Under min_bytes, another type, no-transform.
        for path in ["/x/small", "/x/image", "/x/notransform"] {
            let r = c.request(&get(path, all));
            assert_eq!(r.status, 200);
            assert!(!r.has("content-encoding"), "{path}: {}", r.head);
            assert!(r.has("content-length"), "{path}");
        }
        // Already gzip: relayed as sent, never compressed twice.
        let r = c.request(&get("/x/gz", all));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.body, gzip(&json(20_000)));
        assert_eq!(decoded(&r), json(20_000));
        // HEAD, Range, 204, 304.
        let r = c.request(&Req::head("/x/big").header("Accept-Encoding", all));
        assert!(!r.has("content-encoding"), "{}", r.head);
        assert_eq!(r.header("content-length"), Some(json(20_000).len().to_string().as_str()));
        let r = c.request(&get("/x/big", all).header("Range", "bytes=0-99"));
        assert!(!r.has("content-encoding"), "{}", r.head);
        let r = c.request(&get("/x/empty", all));
        assert_eq!(r.status, 204);
        assert!(!r.has("content-encoding"));
        let r = c.request(&get("/x/notmodified", all).header("If-None-Match", "\"v1\""));
        assert_eq!(r.status, 304);
        assert!(!r.has("content-encoding"));
        // An HTTP/1.0 client gets identity (no chunked framing to end the body).
        let r = c.request(&get("/x/big", all).http10());
        assert!(!r.has("content-encoding"), "{}", r.head);
        assert_eq!(r.body, json(20_000));
    }

    fn the_cache_keeps_one_identity_copy_and_compresses_on_the_way_out(driver) {
        let up = origin();
        let gw = gateway(driver, &up);
        let mut c = gw.client();
        for path in ["/c/cached", "/c/cachedsmall"] {
            let body = if path.ends_with("small") { json(4_000) } else { json(20_000) };
            let miss = c.request(&get(path, "zstd"));
            assert_eq!(miss.header("x-cache"), Some("MISS"));
            assert_eq!(miss.header("content-encoding"), Some("zstd"));
            assert_eq!(decoded(&miss), body);
            for (accept, coding) in [("br", Some("br")), ("gzip", Some("gzip")), ("identity", None)] {
                let hit = c.request(&get(path, accept));
                assert_eq!(hit.header("x-cache"), Some("HIT"), "{}", hit.head);
                assert_eq!(hit.header("content-encoding"), coding, "{path} {accept}");
                assert!(hit.lists("vary", "Accept-Encoding"), "{}", hit.head);
                assert!(decoded(&hit) == body, "{path} {accept}");
                if coding.is_some() && path == "/c/cached" {
                    assert_eq!(hit.header("etag"), Some("W/\"c1\""));
                    assert_eq!(
                        hit.header("content-length"),
                        Some(hit.body.len().to_string().as_str())
                    );
                }
            }
            let plain = c.request(&Req::get(path));
            assert!(!plain.has("content-encoding"));
            assert_eq!(plain.body, body);
        }
        assert_eq!(up.requests().len(), 2);
        // A body moved into a file (at its first hit) is then served identity.
        let body = json(40_000);
        assert_eq!(decoded(&c.request(&get("/c/cachedfile", "br"))), body);
        let first_hit = c.request(&get("/c/cachedfile", "br"));
        assert_eq!(first_hit.header("content-encoding"), Some("br"));
        assert_eq!(decoded(&first_hit), body);
        let from_file = c.request(&get("/c/cachedfile", "br"));
        assert_eq!(from_file.header("x-cache"), Some("HIT"));
        assert!(!from_file.has("content-encoding"), "{}", from_file.head);
        assert!(from_file.lists("vary", "Accept-Encoding"));
        assert_eq!(from_file.body, body);
    }
}
