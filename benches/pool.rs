//! The pooled-connection liveness check (`ringgate::http::sock::peer_closed`): one
//! non-blocking `recv(MSG_PEEK)` paid by every request that reuses an upstream
//! connection. Measured on a live loopback connection (the usual answer, "would
//! block") and on one whose peer has closed.
//!
//! `cargo bench --bench pool`

use std::hint::black_box;
use std::net::{Shutdown, TcpListener};

use criterion::{criterion_group, criterion_main, Criterion};
use monoio::net::TcpStream;
use ringgate::http::sock::peer_closed;

fn liveness(c: &mut Criterion) {
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let live = TcpStream::connect_addr(addr).await.unwrap();
        let (_live_peer, _) = listener.accept().unwrap();
        let closed = TcpStream::connect_addr(addr).await.unwrap();
        let (closed_peer, _) = listener.accept().unwrap();
        closed_peer.shutdown(Shutdown::Write).unwrap();

        let mut g = c.benchmark_group("pool");
        g.bench_function("peer_closed/live", |b| {
            b.iter(|| assert!(!peer_closed(black_box(&live))))
        });
        g.bench_function("peer_closed/closed", |b| {
            b.iter(|| assert!(peer_closed(black_box(&closed))))
        });
        g.finish();
    });
}

criterion_group!(benches, liveness);
criterion_main!(benches);
