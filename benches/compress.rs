//! Response compression (`pipeline::compress::Encoder`), as the gateway runs it per
//! response: an encoder made, an 8 KiB JSON body pushed through it in the 4 KiB
//! pieces an upstream read gives, the stream finished. Each algorithm at the level the
//! gateway uses and at alternatives around it; criterion prints the throughput (MiB/s
//! of identity input), and the compressed sizes are printed before the benches.
//! µs per KiB = 1000 / (KiB/s / 1000), i.e. 976.6 / (MiB/s).
//!
//! `cargo bench --bench compress -- --quick`

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringgate::pipeline::compress::{
    Encoder, BROTLI_QUALITY, GZIP_LEVEL, ZSTD_LEVEL, ZSTD_WINDOW_LOG,
};

/// The gateway's allocator, counting: the most bytes one encoder holds at once is
/// printed before the benches (the per-stream memory the README states).
#[global_allocator]
static GLOBAL: Counting = Counting;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

/// The peak of live heap bytes while `f` runs, above what was live before it.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed) - base
}

/// About `n` bytes of an API's JSON: objects of mixed fields with varied values (ids,
/// names, timestamps, floats), so it compresses like real output, not like a repeat.
fn json(n: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(17);
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima",
    ];
    let mut s = String::from("{\"items\":[");
    let mut i = 0u64;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":\"{:016x}\",\"seq\":{i},\"name\":\"{} {}\",\"created_at\":\"2026-12-06T{:02}:{:02}:{:02}.{:03}Z\",\"price\":{}.{:02},\"tags\":[\"{}\",\"{}\"],\"active\":{}}},",
            rng.u64(..),
            words[rng.usize(..words.len())],
            words[rng.usize(..words.len())],
            rng.u8(..24),
            rng.u8(..60),
            rng.u8(..60),
            rng.u16(..1000),
            rng.u32(..10_000),
            rng.u8(..100),
            words[rng.usize(..words.len())],
            words[rng.usize(..words.len())],
            rng.bool(),
        ));
        i += 1;
    }
    s.truncate(n - 3);
    s.push_str("]}");
    s.into_bytes()
}

fn run(make: &dyn Fn() -> Encoder, body: &[u8]) -> usize {
    let mut enc = make();
    let mut out = 0;
    for piece in body.chunks(4096) {
        enc.push(piece).unwrap();
        let o = enc.output();
        out += o.len();
        o.clear();
    }
    out + enc.finish().unwrap().len()
}

fn benches(c: &mut Criterion) {
    type Make = Box<dyn Fn() -> Encoder>;
    let variants: Vec<(String, Make)> = vec![
        (
            format!("gzip-{GZIP_LEVEL} (chosen)"),
            Box::new(|| Encoder::gzip(GZIP_LEVEL)),
        ),
        ("gzip-1".into(), Box::new(|| Encoder::gzip(1))),
        ("gzip-6".into(), Box::new(|| Encoder::gzip(6))),
        (
            format!("br-{BROTLI_QUALITY} (chosen)"),
            Box::new(|| Encoder::brotli(BROTLI_QUALITY)),
        ),
        ("br-4".into(), Box::new(|| Encoder::brotli(4))),
        ("br-5".into(), Box::new(|| Encoder::brotli(5))),
        (
            format!("zstd-{ZSTD_LEVEL} (chosen)"),
            Box::new(|| Encoder::zstd(ZSTD_LEVEL)),
        ),
        ("zstd-3".into(), Box::new(|| Encoder::zstd(3))),
    ];
    for size in [4 * 1024, 16 * 1024] {
        let body = json(size);
        for (name, make) in &variants {
            let z = run(make.as_ref(), &body);
            println!(
                "{name:>16} on {} KiB: {z} bytes ({:.1} % of {})",
                size / 1024,
                100.0 * z as f64 / body.len() as f64,
                body.len()
            );
        }
    }
    // Memory of one stream: a 1 MiB body through each encoder, peak heap above the
    // body itself.
    let big = json(1024 * 1024);
    for (name, make) in &variants {
        let peak = peak_of(|| {
            black_box(run(make.as_ref(), &big));
        });
        println!(
            "{name:>16}: peak {} KiB per stream (1 MiB body)",
            peak / 1024
        );
    }
    // zstd's context is allocated by the C library, outside the counting allocator:
    // its own accounting, for the same body and settings.
    let mut cctx = zstd::zstd_safe::CCtx::create();
    use zstd::zstd_safe::CParameter;
    cctx.set_parameter(CParameter::CompressionLevel(ZSTD_LEVEL))
        .unwrap();
    cctx.set_parameter(CParameter::WindowLog(ZSTD_WINDOW_LOG))
        .unwrap();
    let mut dst: Vec<u8> = Vec::with_capacity(big.len());
    cctx.compress2(&mut dst, &big).unwrap();
    println!(
        "  zstd-{ZSTD_LEVEL} (chosen): C context {} KiB (ZSTD_sizeof_CCtx, 1 MiB body)",
        cctx.sizeof() / 1024
    );
    let body = json(8 * 1024);
    let mut g = c.benchmark_group("compress_8KiB_json");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for (name, make) in &variants {
        g.bench_function(name.as_str(), |b| {
            b.iter(|| black_box(run(make.as_ref(), black_box(&body))))
        });
    }
    g.finish();
}

criterion_group!(compress, benches);
criterion_main!(compress);
