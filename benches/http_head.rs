//! The per-request byte work: parsing request and response heads, writing the heads sent
//! each way, decoding a chunked body; and, for the README's "why httparse" section, our
//! request-head parser against monoio-http 0.3.12's h1 request decoder and against bare
//! httparse on the same bytes.
//!
//! ```text
//! cargo bench --bench http_head            # full run
//! cargo bench --bench http_head -- --quick
//! ```

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use monoio_codec::{Decoded, Decoder};
use monoio_http::h1::codec::decoder::{DirectWrapper, GenericHeadDecoder, RequestHeadDecoder};
use ringgate::config::{HeaderEdits, PathMatch, RouteConfig};
use ringgate::http::{ChunkEvent, ChunkedDecoder, RequestHead, ResponseHead};
use ringgate::pipeline::forward::{client_framing, client_response, upstream_request, Peer};

/// What curl or wrk sends: 8 headers.
const CURL_GET: &[u8] = b"GET /api/v1/users/12345?include=orders HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Accept-Encoding: gzip, deflate\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl\r\n\
X-Request-ID: 7f3c9a2e4b1d4e8f9a6b5c4d3e2f1a0b\r\n\
Connection: keep-alive\r\n\
X-Forwarded-For: 203.0.113.9\r\n\r\n";

/// What a browser sends: 20 headers, cookies included.
const BROWSER_GET: &[u8] = b"GET /app/dashboard/settings?tab=profile&lang=en HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-User: ?1\r\n\
Sec-Fetch-Dest: document\r\n\
Referer: https://www.example.com/app/dashboard\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n\
Cookie: session=4f2a9c1e7b3d5f6a8c0e2b4d6f8a1c3e; theme=dark; _ga=GA1.2.1234567890.1700000000\r\n\
If-None-Match: W/\"5e-1a2b3c4d\"\r\n\
If-Modified-Since: Tue, 14 May 2024 10:00:00 GMT\r\n\
Priority: u=0, i\r\n\r\n";

/// A typical JSON API response head: 8 headers.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.24.0\r\n\
Date: Tue, 14 May 2024 10:00:00 GMT\r\n\
Content-Type: application/json\r\n\
Content-Length: 128\r\n\
Connection: keep-alive\r\n\
Cache-Control: no-cache\r\n\
ETag: \"5e-1a2b3c4d\"\r\n\
Vary: Accept-Encoding\r\n\r\n";

const MAX_HEAD: usize = 8192;
const MAX_HEADERS: usize = 100;

fn route() -> RouteConfig {
    RouteConfig {
        request_headers: HeaderEdits {
            add: vec![("X-Gateway".into(), "ringgate".into())],
            remove: vec!["authorization".into()],
        },
        ..RouteConfig::new("users", PathMatch::Prefix("/api".into()))
    }
}

/// monoio-http's server-side head decoder with the framing decision, without the payload
/// channel: the part comparable to `RequestHead::parse`.
type MonoioHead =
    GenericHeadDecoder<monoio_http::common::request::Request, RequestHeadDecoder, DirectWrapper>;

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let mut head = RequestHead::default();
    for (name, bytes) in [
        ("request_curl_8", CURL_GET),
        ("request_browser_20", BROWSER_GET),
    ] {
        assert_eq!(head.parse(bytes, MAX_HEAD, MAX_HEADERS), Ok(true));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| head.parse(black_box(bytes), MAX_HEAD, MAX_HEADERS))
        });
    }
    let mut resp = ResponseHead::default();
    assert_eq!(resp.parse(RESPONSE, MAX_HEAD, MAX_HEADERS, false), Ok(true));
    g.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    g.bench_function("response_8", |b| {
        b.iter(|| resp.parse(black_box(RESPONSE), MAX_HEAD, MAX_HEADERS, false))
    });
    g.finish();
}

fn bench_write(c: &mut Criterion) {
    let mut g = c.benchmark_group("write");
    let route = route();
    let peer = Peer {
        addr: "203.0.113.9".parse().unwrap(),
        ip: "203.0.113.9".into(),
        trusted: false,
        https: false,
        client_cert: None,
    };
    let mut out = Vec::with_capacity(4096);
    for (name, bytes) in [
        ("upstream_request_curl_8", CURL_GET),
        ("upstream_request_browser_20", BROWSER_GET),
    ] {
        let mut head = RequestHead::default();
        assert_eq!(head.parse(bytes, MAX_HEAD, MAX_HEADERS), Ok(true));
        let rid = b"7f3c9a2e4b1d4e8f9a6b5c4d3e2f1a0b";
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                upstream_request(
                    &mut out,
                    black_box(&head),
                    bytes,
                    &ringgate::pipeline::forward::Outbound {
                        route: &route,
                        peer: &peer,
                        request_id: rid,
                        upstream_host: "origin:8080",
                        identity: None,
                        strip_credentials: None,
                        extra_fields: b"",
                        traceparent: None,
                        target: None,
                        replaced: &[],
                    },
                );
                out.len()
            })
        });
    }
    let mut resp = ResponseHead::default();
    assert_eq!(resp.parse(RESPONSE, MAX_HEAD, MAX_HEADERS, false), Ok(true));
    let framing = client_framing(&resp, 1);
    g.bench_function("client_response_8", |b| {
        b.iter(|| {
            out.clear();
            client_response(
                &mut out,
                black_box(&resp),
                RESPONSE,
                &route,
                b"7f3c9a2e4b1d4e8f9a6b5c4d3e2f1a0b",
                framing,
                true,
                1,
                b"",
                b"Tue, 01 Dec 2026 05:30:00 GMT",
            );
            out.len()
        })
    });
    g.finish();
}

fn bench_chunked(c: &mut Criterion) {
    // 64 KiB in 16 chunks of 4 KiB, a last chunk and no trailers.
    let mut body = Vec::new();
    for i in 0..16u8 {
        body.extend_from_slice(b"1000\r\n");
        body.extend(std::iter::repeat_n(b'a' + i, 4096));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(65536));
    g.bench_function("decode_64k_in_4k_chunks", |b| {
        b.iter(|| {
            let input = black_box(&body[..]);
            let mut dec = ChunkedDecoder::new();
            let mut at = 0;
            let mut data = 0;
            while !dec.is_done() {
                let (n, ev) = dec.step(&input[at..]).unwrap();
                if let ChunkEvent::Data(r) = ev {
                    data += r.len();
                }
                at += n;
            }
            assert_eq!(data, 65536);
            at
        })
    });
    g.finish();
}

/// Our parser, monoio-http's decoder and bare httparse on the same bytes. httparse alone
/// does no proxy checks (Host, framing, bare LF...): the difference is what they cost.
fn bench_compare(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_head_decoder");
    for (name, bytes) in [("curl_8", CURL_GET), ("browser_20", BROWSER_GET)] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut head = RequestHead::default();
        g.bench_function(format!("ringgate/{name}"), |b| {
            b.iter(|| head.parse(black_box(bytes), MAX_HEAD, MAX_HEADERS))
        });
        g.bench_function(format!("httparse_only/{name}"), |b| {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            b.iter(|| {
                let mut req = httparse::Request::new(&mut slots);
                matches!(
                    req.parse(black_box(bytes)),
                    Ok(httparse::Status::Complete(_))
                )
            })
        });
        // The decoder consumes its input (`split_to`), so each iteration gets a fresh
        // BytesMut, made outside the measured time.
        let mut dec = MonoioHead::default();
        assert!(matches!(
            dec.decode(&mut BytesMut::from(bytes)),
            Ok(Decoded::Some(_))
        ));
        g.bench_function(format!("monoio_http/{name}"), |b| {
            b.iter_batched_ref(
                || BytesMut::from(bytes),
                |buf| matches!(dec.decode(buf), Ok(Decoded::Some(_))),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// The trace stage's work per request: read the client's `traceparent` and write the
/// gateway's (`src/pipeline/trace.rs`), against the ~17-21 µs a proxied request costs.
fn bench_traceparent(c: &mut Criterion) {
    use ringgate::http::traceparent::{parse, write, LEN};
    let mut g = c.benchmark_group("traceparent");
    let field = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut out = [0u8; LEN];
    g.bench_function("parse_and_write", |b| {
        b.iter(|| {
            let t = parse(std::hint::black_box(field)).unwrap();
            write(&mut out, &t.trace_id, 0x1234_5678, t.flags);
            std::hint::black_box(&out);
        })
    });
    let mut rng = fastrand::Rng::with_seed(7);
    g.bench_function("start_a_trace", |b| {
        b.iter(|| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&rng.u64(..).to_be_bytes());
            id[8..].copy_from_slice(&(rng.u64(..) | 1).to_be_bytes());
            write(&mut out, &id, rng.u64(..), 1);
            std::hint::black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_write,
    bench_chunked,
    bench_compare,
    bench_traceparent
);
criterion_main!(benches);
