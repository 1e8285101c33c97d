//! Hostile input for the parsers of network bytes, on the stable toolchain: the same
//! invariant checks the fuzz targets run (`tests/hostile/`), driven over the committed
//! seeds in `fuzz/seeds/*` and the kept crash inputs in `fuzz/artifacts-kept/*`, over a
//! deterministic mutation loop of the seeds, and over tables of request-smuggling and
//! malformed shapes with the outcome each must have (`tests/hostile/*_table.rs`).

#[path = "hostile/chunked_table.rs"]
mod chunked_table;
mod hostile;
#[path = "hostile/request_table.rs"]
mod request_table;
#[path = "hostile/response_table.rs"]
mod response_table;

use std::path::{Path, PathBuf};

use hostile::{cache, chunked, client_cert, request, response, roundtrip};

// ---------------------------------------------------------------------------------------
// Seeds and mutations

fn seed_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(seed_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 10,
        "fuzz/seeds/{target} holds {} inputs",
        out.len()
    );
    out
}

/// Which check each seed directory feeds; the fuzz target of the same name runs it too.
fn run_check(target: &str, input: &[u8]) -> bool {
    match target {
        "request_head" => matches!(request::check(input), Ok(Some(_))),
        "response_head" => matches!(response::check(input), Ok(Some(_))),
        "chunked" => chunked::check(input).is_ok_and(|d| d.complete),
        "request_roundtrip" => roundtrip::check(input),
        "cache_rules" => cache::check(input),
        "client_cert" => client_cert::check(input),
        _ => unreachable!("no check for {target}"),
    }
}

const TARGETS: [&str; 6] = [
    "request_head",
    "response_head",
    "chunked",
    "request_roundtrip",
    "cache_rules",
    "client_cert",
];

/// The seeds the checks refuse (`run_check` is false: a head or body refused, a chunked
/// body incomplete, a response not storable), and why; every other seed is accepted.
/// A seed is there to reach a branch, so which branch it reaches is part of the test.
const REFUSED_SEEDS: &[(&str, &str, &str)] = &[
    ("request_head", "bare_lf", "request line ends in bare LF"),
    ("request_head", "http2_version", "HTTP/2.0 is not HTTP/1.x"),
    (
        "request_head",
        "obs_fold",
        "obsolete line folding is refused (RFC 9112 5.2)",
    ),
    (
        "request_head",
        "smuggle_cl_cl",
        "two differing Content-Length",
    ),
    (
        "request_head",
        "smuggle_cl_te",
        "Content-Length with Transfer-Encoding",
    ),
    (
        "request_head",
        "smuggle_te_te",
        "Transfer-Encoding not ending in chunked",
    ),
    (
        "response_head",
        "cl_conflict",
        "two differing Content-Length",
    ),
    ("chunked", "bare_lf_size", "a chunk size ended by a bare LF"),
    ("chunked", "hex_prefix", "0x before a chunk size"),
    ("chunked", "incomplete", "the last chunk never comes"),
    ("chunked", "missing_crlf", "chunk data not followed by CRLF"),
    ("chunked", "negative", "a negative chunk size"),
    ("chunked", "overflow", "a chunk size over 64 bits"),
    ("cache_rules", "no_store", "Cache-Control: no-store"),
    ("cache_rules", "set_cookie", "a response with Set-Cookie"),
    ("client_cert", "not_der", "text, not DER"),
    ("client_cert", "truncated", "a certificate cut short"),
];

#[test]
fn every_seed_passes_the_fuzz_checks() {
    let mut wrong = Vec::new();
    let mut refused_seen = 0;
    for target in TARGETS {
        for (name, bytes) in seeds(target) {
            let refusal = REFUSED_SEEDS
                .iter()
                .find(|(t, n, _)| *t == target && *n == name);
            refused_seen += usize::from(refusal.is_some());
            let accepted = run_check(target, &bytes);
            if accepted == refusal.is_some() {
                let expected = match refusal {
                    Some((_, _, why)) => format!("refused ({why})"),
                    None => "accepted".to_owned(),
                };
                wrong.push(format!(
                    "{target}/{name}: expected {expected}, got {accepted}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "seeds with another outcome:\n{}",
        wrong.join("\n")
    );
    // A renamed or removed seed must not leave the table naming nothing.
    assert_eq!(
        refused_seen,
        REFUSED_SEEDS.len(),
        "REFUSED_SEEDS names a missing seed"
    );
}

/// Inputs that once broke a check (`fuzz/artifacts-kept/<target>/`): regressions now.
#[test]
fn every_kept_crash_passes_the_fuzz_checks() {
    let kept = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/artifacts-kept");
    let mut n = 0;
    for target in TARGETS {
        let Ok(dir) = std::fs::read_dir(kept.join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.unwrap().path();
            run_check(target, &std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "fuzz/artifacts-kept is empty");
}

/// xorshift64*: deterministic, so a failure here reproduces on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes and fragments that matter to HTTP framing: mutations built from them reach the
/// interesting branches far more often than random bytes do.
const BYTES: &[u8] = b"\r\n\0 \t:,;=/?#@\\\"0123456789aAfFxX-+.\x7f\x80\xff\x0b\x0c";
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n ",
    b"\r\n\r\n",
    b" ",
    b": ",
    b" :",
    b"Host: a\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: +5\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Connection: close, X-A\r\n",
    b"Connection: keep-alive\r\n",
    b"Expect: 100-continue\r\n",
    b"X-Request-ID: id\r\n",
    b"HTTP/1.0",
    b"HTTP/1.1",
    b"HTTP/2.0",
    b"http://h",
    b"chunked",
    b"0\r\n\r\n",
    b"ffffffffffffffff",
    b";ext",
];

fn mutate(rng: &mut Rng, base: &[u8], others: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = BYTES[rng.below(BYTES.len())];
            }
            2 => v.insert(at, BYTES[rng.below(BYTES.len())]),
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            4 => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            5 => {
                // Duplicate a run: repeated headers, repeated chunks.
                let end = (at + 1 + rng.below(48)).min(v.len());
                let run = v[at.min(end)..end].to_vec();
                v.splice(end..end, run);
            }
            6 => {
                // Splice in part of another seed of the same target.
                let (_, o) = &others[rng.below(others.len())];
                let s = rng.below(o.len() + 1);
                let e = (s + rng.below(64)).min(o.len());
                v.splice(at..at, o[s..e].iter().copied());
            }
            7 => v.truncate(at),
            _ => {
                // Change a case: header names and codings are case-insensitive.
                if let Some(b) = v.get_mut(at) {
                    b.make_ascii_uppercase();
                }
            }
        }
    }
    v
}

fn mutation_loop(target: &str, rounds: usize, seed: u64) {
    let base = seeds(target);
    let mut rng = Rng(seed);
    let mut accepted = 0;
    for _ in 0..rounds {
        let (_, s) = &base[rng.below(base.len())];
        let input = mutate(&mut rng, s, &base);
        if run_check(target, &input) {
            accepted += 1;
        }
    }
    // Mutations that only ever produce garbage would test nothing but the first error.
    assert!(
        accepted * 20 >= rounds,
        "{target}: only {accepted} of {rounds} mutations were accepted"
    );
}

#[test]
fn mutated_request_heads() {
    mutation_loop("request_head", 20_000, 0x5eed_0001);
}

#[test]
fn mutated_response_heads() {
    mutation_loop("response_head", 20_000, 0x5eed_0002);
}

#[test]
fn mutated_chunked_bodies() {
    mutation_loop("chunked", 20_000, 0x5eed_0003);
}

#[test]
fn mutated_request_roundtrips() {
    mutation_loop("request_roundtrip", 10_000, 0x5eed_0004);
}

#[test]
fn mutated_cache_exchanges() {
    mutation_loop("cache_rules", 10_000, 0x5eed_0005);
}

/// DER certificates: the HTTP-minded mutations above mostly break a length and stop
/// at the first tag; these keep the length and change bytes (to the ones a header
/// must never carry, to UTF-8 lead bytes, to random values), so the parser gets past
/// the framing into names, strings and extensions.
#[test]
fn mutated_client_certificates() {
    const VALUES: &[u8] = b"\r\n\0\x7f\x80\x85\xc2\xe2\xff,+\\\"#; =";
    let base = seeds("client_cert");
    let mut rng = Rng(0x5eed_0006);
    let (mut accepted, rounds) = (0, 20_000);
    for round in 0..rounds {
        let (_, s) = &base[rng.below(base.len())];
        let input = if round % 4 == 0 {
            mutate(&mut rng, s, &base)
        } else {
            let mut v = s.clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(v.len());
                v[i] = match rng.below(3) {
                    0 => VALUES[rng.below(VALUES.len())],
                    1 => v[i] ^ (1 << rng.below(8)),
                    _ => rng.next() as u8,
                };
            }
            v
        };
        accepted += usize::from(client_cert::check(&input));
    }
    assert!(
        accepted * 20 >= rounds,
        "only {accepted} of {rounds} mutations were taken as certificates"
    );
}
