//! Response-cache hot paths: a hit (request Cache-Control read, key built, looked up,
//! conditional checked, head written: what the pipeline does per cached request) on a
//! random one of 10,000 entries (cold CPU caches, as in a real cache) and on one key
//! over and over (warm), a hit on a Vary'd entry, a miss, the head-time
//! storability check plus building the entry, insert (replacing an entry, and into a
//! full cache, evicting), a coalesced fill, and storing a large body in memory or in
//! a file. Before the benches it prints the eviction-policy comparison (hit rates of
//! LRU, S3-FIFO, TinyLFU+LRU, W-TinyLFU on Zipf, Zipf with a scan, and a shifting
//! hot set).
//!
//! `cargo bench --bench cache`

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ringgate::cache::{
    primary_key, sim, storable, Audience, Body, BodyFiles, Cache, Entry, FillOutcome, FillTicket,
    Fills, KeyParts, Lookup, ReqDirectives, RequestFacts, ResponseParts, SpanHeaders, XCache,
};
use ringgate::config::RouteCache;
use ringgate::http::{HeaderKind, HeaderPos, Span};

// The gateway's allocator: entries are allocated and freed on every insert and
// eviction, so the allocator is part of what is measured.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A typical API response head: spans into its bytes, as the gateway parses it.
struct Head {
    buf: Vec<u8>,
    headers: Vec<HeaderPos>,
}

impl Head {
    fn new(fields: &[(&str, &str)]) -> Head {
        let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
        let mut headers = Vec::new();
        for (n, v) in fields {
            let ns = buf.len();
            buf.extend_from_slice(n.as_bytes());
            buf.extend_from_slice(b": ");
            let vs = buf.len();
            buf.extend_from_slice(v.as_bytes());
            headers.push(HeaderPos {
                name: Span {
                    start: ns as u32,
                    end: (ns + n.len()) as u32,
                },
                value: Span {
                    start: vs as u32,
                    end: buf.len() as u32,
                },
                kind: HeaderKind::classify(n.as_bytes()),
            });
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b"\r\n");
        Head { buf, headers }
    }

    fn parts(&self) -> ResponseParts<'_> {
        ResponseParts {
            status: 200,
            reason: &self.buf[13..15],
            buf: &self.buf,
            headers: &self.headers,
        }
    }
}

const BODY: usize = 2048;

fn api_head(vary: bool) -> Head {
    let mut f = vec![
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", "2048"),
        (
            "Cache-Control",
            "public, max-age=300, stale-while-revalidate=30",
        ),
        ("ETag", "\"5f1a-7c2e9b\""),
        ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("Last-Modified", "Sun, 06 Nov 1994 08:00:00 GMT"),
        ("X-Request-Id", "0d8e2f6a-5b1c-4c7e-9f3a-2b6d8e1f0a9c"),
        ("Connection", "keep-alive"),
    ];
    if vary {
        f.push(("Vary", "Accept-Encoding"));
    }
    Head::new(&f)
}

fn route() -> RouteCache {
    RouteCache {
        ttl: Some(Duration::from_secs(300)),
        methods: vec!["GET".into(), "HEAD".into()],
        vary: Vec::new(),
        shared: false,
    }
}

fn facts() -> RequestFacts<'static> {
    RequestFacts {
        method: b"GET",
        directives: ReqDirectives::default(),
        credentials: true,
        tenant_keyed: true,
    }
}

const UNIX_NOW: u64 = 784_111_777;

fn entry(head: &Head, body: &Rc<[u8]>, now: Instant) -> Entry {
    let st = storable(&facts(), &route(), &head.parts(), UNIX_NOW).unwrap();
    Entry::build(st, &head.parts(), body.clone(), now, now, &[]).unwrap()
}

fn key_of(out: &mut Vec<u8>, target: &[u8]) {
    primary_key(
        out,
        &KeyParts {
            method: b"GET",
            host: b"api.example.com",
            target,
            audience: Audience::Tenant(b"acme"),
        },
    );
}

fn target(i: u64) -> Vec<u8> {
    format!("/api/products/{i}?fields=name,price").into_bytes()
}

/// A request head's headers, as spans.
fn request_headers() -> Head {
    Head::new(&[
        ("Host", "api.example.com"),
        ("User-Agent", "bench/1.0"),
        ("Accept", "application/json"),
        ("Accept-Encoding", "gzip, br"),
        ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"),
    ])
}

const ENTRIES: u64 = 10_000;

fn filled(vary: bool, now: Instant) -> Cache {
    let mut c = Cache::new(256 << 20, 1 << 20);
    let head = api_head(vary);
    let body: Rc<[u8]> = vec![b'x'; BODY].into();
    let req = request_headers();
    let req = SpanHeaders {
        buf: &req.buf,
        headers: &req.headers,
    };
    let mut k = Vec::new();
    for i in 0..ENTRIES {
        key_of(&mut k, &target(i));
        c.insert(&k, &req, entry(&head, &body, now)).unwrap();
    }
    c
}

fn bench_lookup(c: &mut Criterion) {
    let now = Instant::now();
    let req_head = request_headers();
    let req = SpanHeaders {
        buf: &req_head.buf,
        headers: &req_head.headers,
    };
    let targets: Vec<Vec<u8>> = (0..ENTRIES).map(target).collect();
    for vary in [false, true] {
        let mut cache = filled(vary, now);
        let (mut key, mut out) = (Vec::with_capacity(256), Vec::with_capacity(1024));
        let mut i = 0usize;
        let name = if vary { "cache/hit_vary" } else { "cache/hit" };
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 7919) % ENTRIES as usize;
                let dirs = ReqDirectives::from_request(&req);
                key_of(&mut key, &targets[i]);
                match cache.lookup(&key, &req, &dirs, now) {
                    Lookup::Hit(e) => {
                        out.clear();
                        if !e.not_modified(&req) {
                            e.write_head(&mut out, now, XCache::Hit);
                        }
                        black_box((&out, e.body().len()));
                    }
                    _ => unreachable!(),
                }
            })
        });
    }
    // The same key every time: the instructions of a hit without the cache misses.
    let mut cache = filled(false, now);
    let (mut key, mut out) = (Vec::with_capacity(256), Vec::with_capacity(1024));
    c.bench_function("cache/hit_same_key", |b| {
        b.iter(|| {
            let dirs = ReqDirectives::from_request(&req);
            key_of(&mut key, &targets[42]);
            if let Lookup::Hit(e) = cache.lookup(&key, &req, &dirs, now) {
                out.clear();
                if !e.not_modified(&req) {
                    e.write_head(&mut out, now, XCache::Hit);
                }
                black_box((&out, e.body().len()));
            }
        })
    });
    let mut n = ENTRIES;
    c.bench_function("cache/miss", |b| {
        b.iter(|| {
            n += 1;
            key_of(&mut key, &target(n % (4 * ENTRIES) + ENTRIES));
            let dirs = ReqDirectives::from_request(&req);
            black_box(matches!(cache.lookup(&key, &req, &dirs, now), Lookup::Miss));
        })
    });
}

fn bench_insert(c: &mut Criterion) {
    let now = Instant::now();
    let head = api_head(false);
    let body: Rc<[u8]> = vec![b'x'; BODY].into();
    let req_head = request_headers();
    let req = SpanHeaders {
        buf: &req_head.buf,
        headers: &req_head.headers,
    };
    c.bench_function("cache/storable+build", |b| {
        b.iter(|| black_box(entry(&head, &body, now)))
    });
    let targets: Vec<Vec<u8>> = (0..ENTRIES).map(target).collect();
    let mut key = Vec::with_capacity(256);

    // Replacing: every key already stored, plenty of room.
    let mut cache = filled(false, now);
    let mut i = 0usize;
    c.bench_function("cache/insert_replace", |b| {
        b.iter_batched(
            || entry(&head, &body, now),
            |e| {
                i = (i + 7919) % ENTRIES as usize;
                key_of(&mut key, &targets[i]);
                cache.insert(&key, &req, e).unwrap();
            },
            BatchSize::SmallInput,
        )
    });

    // An unsafe method's invalidation: every hash a key of the URI may have is asked
    // for (see `Cache::invalidate`). A URI with nothing stored, and one with an entry
    // (dropped, then stored again so that the next round finds one).
    c.bench_function("cache/invalidate_absent", |b| {
        b.iter(|| black_box(cache.invalidate(b"api.example.com", b"/api/none")))
    });
    c.bench_function("cache/invalidate_and_refill", |b| {
        b.iter_batched(
            || entry(&head, &body, now),
            |e| {
                i = (i + 7919) % ENTRIES as usize;
                key_of(&mut key, &targets[i]);
                assert_eq!(cache.invalidate(b"api.example.com", &targets[i]), 1);
                cache.insert(&key, &req, e).unwrap();
            },
            BatchSize::SmallInput,
        )
    });

    // New keys into a full cache: every insert evicts.
    let mut cache = Cache::new(8 << 20, 1 << 20);
    let mut n = 0u64;
    let fill = |cache: &mut Cache, n: u64, e: Entry, key: &mut Vec<u8>| {
        key_of(key, &target(n));
        cache.insert(key, &req, e).unwrap();
    };
    while cache.stats().evictions == 0 {
        n += 1;
        fill(&mut cache, n, entry(&head, &body, now), &mut key);
    }
    c.bench_function("cache/insert_evict", |b| {
        b.iter_batched(
            || entry(&head, &body, now),
            |e| {
                n += 1;
                fill(&mut cache, n, e, &mut key);
            },
            BatchSize::SmallInput,
        )
    });
    let s = cache.stats();
    assert!(s.bytes <= cache.max_bytes());
    println!(
        "insert_evict: {} entries, {} bytes of {}, {} evictions",
        s.entries,
        s.bytes,
        cache.max_bytes(),
        s.evictions
    );
}

fn bench_fill(c: &mut Criterion) {
    let fills = Fills::new();
    let key = b"\x0f\x00\x00\x00api.example.com/api/products/1";
    c.bench_function("cache/fill_lead_and_follow", |b| {
        b.iter(|| {
            let FillTicket::Leader(guard) = fills.begin(key) else {
                unreachable!()
            };
            let f = fills.begin(key);
            guard.finish(FillOutcome::Stored);
            black_box(f);
        })
    });
}

/// Keeping a large body: copied into memory (`Rc<[u8]>`, what a fill does), and moved
/// from memory into a sealed memfd (what a large entry's first hit does, after which
/// hits are sent with sendfile; `[cache] file_min_bytes`). Both include dropping it.
fn bench_body_store(c: &mut Criterion) {
    let files = BodyFiles::new(1, usize::MAX);
    for (name, len) in [("128k", 128 * 1024), ("1m", 1024 * 1024)] {
        let data = vec![7u8; len];
        c.bench_function(&format!("cache/body_store_memory_{name}"), |b| {
            b.iter(|| black_box(Body::from(&data[..])))
        });
        let body = Body::from(&data[..]);
        c.bench_function(&format!("cache/body_promote_to_file_{name}"), |b| {
            b.iter(|| black_box(files.promote(&body)))
        });
    }
}

fn policy_table(_: &mut Criterion) {
    let t = Instant::now();
    let rows = sim::compare(20_000, 400_000);
    println!(
        "\neviction policies, 20,000 objects (512 B - 32 KiB), 400,000 requests, \
         cache = 1% / 10% of their bytes ({:.1} s):\n{}",
        t.elapsed().as_secs_f64(),
        sim::table(&rows)
    );
}

criterion_group!(
    benches,
    policy_table,
    bench_lookup,
    bench_insert,
    bench_fill,
    bench_body_store
);
criterion_main!(benches);
