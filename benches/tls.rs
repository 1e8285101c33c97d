//! The TLS costs on the gateway's side, with the very server configuration a worker
//! uses (`ServerTls::server_config`: the SNI resolver, the ticketer, the session
//! cache), the client on the same thread in memory. Only the server's calls are timed
//! (`iter_custom`), so each figure is what one handshake or one record costs a worker:
//!
//! - `handshake/full/{ecdsa_p256,rsa_2048}`: a TLS 1.3 handshake with no session.
//! - `handshake/resumed/ecdsa_p256`: a TLS 1.3 handshake resuming with a ticket.
//! - `sign/rsa_2048_pss` and `sign/ecdsa_p256`: ring's signature alone, the floor of a
//!   full handshake (compare `openssl speed rsa2048 ecdsap256`, which is what nginx's
//!   OpenSSL pays).
//!
//! `cargo bench --bench tls`

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ringgate::tls::pki::{CertSpec, TestCa};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

const RSA_KEY: &str = include_str!("../tests/keys/test-only-rs256.key.pem");

/// The worker's server configuration for a certificate of `spec`, and a client
/// configuration trusting its CA.
fn configs(spec: CertSpec) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let ca = TestCa::new("bench CA").unwrap();
    let leaf = ca.issue(&spec).unwrap();
    let dir = std::env::temp_dir().join(format!("ringgate-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let text = format!(
        "[server]\nlisten = []\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\n\
         [[server.tls.certificates]]\nserver_names = [\"gw.test\"]\n\
         cert_file = \"{}\"\nkey_file = \"{}\"\n\
         [[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1:9\"]\n\
         [[routes]]\nid = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nauth = \"none\"\n",
        cert.display(),
        key.display()
    );
    let cfg = ringgate::config::Config::parse(&text, "bench.toml").unwrap();
    let server = cfg.tls.as_ref().unwrap().server_config().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der.clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(ringgate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let _ = std::fs::remove_dir_all(&dir);
    (server, Arc::new(client))
}

/// One handshake in memory; returns the time spent in the server's calls.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> Duration {
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut c = ClientConnection::new(client.clone(), "gw.test".try_into().unwrap()).unwrap();
    let mut in_server = Duration::ZERO;
    let mut buf = Vec::with_capacity(16 * 1024);
    // A request after the handshake, so the server's last flight (tickets) is made.
    c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    loop {
        buf.clear();
        c.write_tls(&mut buf).unwrap();
        let t = Instant::now();
        if !buf.is_empty() {
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().unwrap();
        }
        let mut got = [0u8; 64];
        let served = matches!(s.reader().read(&mut got), Ok(n) if n > 0);
        buf.clear();
        s.write_tls(&mut buf).unwrap();
        in_server += t.elapsed();
        if !buf.is_empty() {
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets().unwrap();
        }
        if served && !s.is_handshaking() {
            // The client takes the tickets.
            return in_server;
        }
    }
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    let (ecdsa, ecdsa_client) = configs(CertSpec::server(&["gw.test"]));
    let (rsa, rsa_client) = configs(CertSpec::server(&["gw.test"]).key_pem(RSA_KEY));
    // No session: a fresh client configuration (its own, empty store) each time.
    let fresh = |client: &Arc<ClientConfig>| {
        let mut c = (**client).clone();
        c.resumption = rustls::client::Resumption::disabled();
        Arc::new(c)
    };
    for (name, server, client) in [
        ("full/ecdsa_p256", &ecdsa, fresh(&ecdsa_client)),
        ("full/rsa_2048", &rsa, fresh(&rsa_client)),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|n| (0..n).map(|_| handshake(server, &client)).sum())
        });
    }
    // Resumed: the client keeps its tickets; one full handshake first fills its store.
    handshake(&ecdsa, &ecdsa_client);
    g.bench_function("resumed/ecdsa_p256", |b| {
        b.iter_custom(|n| (0..n).map(|_| handshake(&ecdsa, &ecdsa_client)).sum())
    });
    g.finish();
}

/// ring's signatures alone: what a full handshake cannot go below.
fn signatures(c: &mut Criterion) {
    use ring::rand::SystemRandom;
    use ring::signature::{
        EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, RSA_PSS_SHA256,
    };
    use rustls_pki_types::pem::PemObject;
    let rng = SystemRandom::new();
    let msg = [7u8; 130];
    let mut g = c.benchmark_group("sign");
    let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(RSA_KEY.as_bytes()).unwrap();
    let rsa = RsaKeyPair::from_pkcs8(der.secret_der()).unwrap();
    let mut sig = vec![0u8; rsa.public().modulus_len()];
    g.bench_function("rsa_2048_pss", |b| {
        b.iter(|| {
            rsa.sign(&RSA_PSS_SHA256, &rng, black_box(&msg), &mut sig)
                .unwrap()
        })
    });
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let ec =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    g.bench_function("ecdsa_p256", |b| {
        b.iter(|| ec.sign(&rng, black_box(&msg)).unwrap())
    });
    g.finish();
}

/// One 16 KiB record's encryption, the bulk of a keep-alive HTTPS response: ring's
/// AES-GCM alone (the floor of any rustls record), and rustls's whole record path as
/// the gateway drives it (unbuffered `encrypt`: rustls copies the plaintext into a
/// record of its own, seals it, and copies the record into our buffer). Compare
/// `openssl speed -evp aes-256-gcm -bytes 16384`, what nginx's OpenSSL pays.
fn records(c: &mut Criterion) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
    let mut g = c.benchmark_group("record_16k");
    g.throughput(criterion::Throughput::Bytes(16384));
    let mut data = vec![7u8; 16384];
    for (name, alg) in [
        ("ring_aes_256_gcm", &AES_256_GCM),
        ("ring_aes_128_gcm", &AES_128_GCM),
    ] {
        let key = LessSafeKey::new(UnboundKey::new(alg, &vec![1u8; alg.key_len()]).unwrap());
        g.bench_function(name, |b| {
            b.iter(|| {
                let nonce = Nonce::assume_unique_for_key([0u8; 12]);
                key.seal_in_place_separate_tag(nonce, Aad::from([23u8, 3, 3, 64, 17]), &mut data)
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, handshakes, signatures, records);
criterion_main!(benches);
