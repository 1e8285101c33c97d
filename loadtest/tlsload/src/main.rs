//! `tlsload`: the TLS client of `loadtest/tls.sh` (rustls on ring, std threads).
//!
//! ```text
//! tlsload run   --addr HOST:PORT --mode full|resume [--conns C] [--duration S] [--path P] ...
//! tlsload idle  --addr HOST:PORT --n N [--threads T] [--path P] ...
//! tlsload probe --addr HOST:PORT ...
//! common: --sni NAME (localhost)  --tls 1.2|1.3|any (any)  --suite TLS13_AES_128_GCM_SHA256
//! ```
//!
//! `run`: C threads, each making one request per new TCP + TLS connection
//! (`Connection: close`) until the time is up, and printing what wrk prints (latency
//! percentiles, `N requests in Ts`, `Requests/sec`, non-2xx and socket errors) so that
//! `lt.py record` reads it, plus how many handshakes were full and how many resumed, as
//! the client saw them (`HandshakeKind`: rustls says `Resumed` only when the server
//! accepted the offered ticket or session id).
//!  - `full`: no session store at all, so every handshake is full (no ticket or session
//!    id is ever offered);
//!  - `resume`: an in-memory session store per thread; each connection offers a ticket
//!    received on an earlier connection of its thread (so each thread's first connection
//!    is a full handshake, and only that one).
//!
//! The client does not verify the server's certificate nor its handshake signature (a
//! no-op verifier): the server's work is the same either way, and the client's core,
//! shared with the origin, is left free to keep the server busy.
//!
//! `idle`: open N connections (full handshakes), one keep-alive GET on each, read the
//! whole response, then drop the client's TLS state and keep only the sockets; print
//! `ready N` and hold them until killed. The server sees N idle TLS connections.
//!
//! `probe`: one full handshake, then one offering the ticket it got; prints the protocol
//! version, cipher suite, key-exchange group and whether the second one resumed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
    StreamOwned,
};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct NoVerify(Vec<SignatureScheme>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

#[derive(Clone)]
struct Opts {
    cmd: String,
    addr: SocketAddr,
    sni: ServerName<'static>,
    path: String,
    mode: String,
    conns: usize,
    duration: Duration,
    n: usize,
    threads: usize,
    tls: String,
    suite: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: tlsload run|idle|probe --addr HOST:PORT [--mode full|resume] [--conns C] \
         [--duration S] [--n N] [--threads T] [--path /] [--sni localhost] [--tls 1.2|1.3|any] \
         [--suite NAME]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_else(|| usage());
    let mut o = Opts {
        cmd,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        sni: ServerName::try_from("localhost").unwrap(),
        path: "/".into(),
        mode: "full".into(),
        conns: 16,
        duration: Duration::from_secs(10),
        n: 1000,
        threads: 8,
        tls: "any".into(),
        suite: None,
    };
    let mut have_addr = false;
    while let Some(k) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        let num = |v: &str| v.parse::<usize>().unwrap_or_else(|_| usage());
        match k.as_str() {
            "--addr" => {
                o.addr = v
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .unwrap_or_else(|| usage());
                have_addr = true;
            }
            "--sni" => o.sni = ServerName::try_from(v).unwrap_or_else(|_| usage()),
            "--path" => o.path = v,
            "--mode" => o.mode = v,
            "--conns" => o.conns = num(&v).max(1),
            "--duration" => {
                o.duration = Duration::from_secs_f64(v.parse().unwrap_or_else(|_| usage()))
            }
            "--n" => o.n = num(&v),
            "--threads" => o.threads = num(&v).max(1),
            "--tls" => o.tls = v,
            "--suite" => o.suite = Some(v),
            _ => usage(),
        }
    }
    if !have_addr || !matches!(o.mode.as_str(), "full" | "resume") {
        usage();
    }
    o
}

fn config(o: &Opts, resume: bool) -> Arc<ClientConfig> {
    // ring: the provider ringgate uses (deprecated only for lacking post-quantum groups).
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    // As OpenSSL's clients and browsers: X25519 first (its key share is the one sent).
    // rustls 0.23.48's ring provider lists secp384r1 first, which no common client does.
    provider.kx_groups = vec![
        rustls::crypto::ring::kx_group::X25519,
        rustls::crypto::ring::kx_group::SECP256R1,
        rustls::crypto::ring::kx_group::SECP384R1,
    ];
    if let Some(name) = &o.suite {
        provider
            .cipher_suites
            .retain(|s| format!("{:?}", s.suite()).eq_ignore_ascii_case(name));
        if provider.cipher_suites.is_empty() {
            eprintln!("tlsload: no cipher suite named {name}");
            std::process::exit(2);
        }
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match o.tls.as_str() {
        "1.2" => &[&rustls::version::TLS12],
        "1.3" => &[&rustls::version::TLS13],
        "any" => &[&rustls::version::TLS13, &rustls::version::TLS12],
        _ => usage(),
    };
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let provider: Arc<CryptoProvider> = Arc::new(provider);
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap_or_else(|e| {
            eprintln!("tlsload: {e}");
            std::process::exit(2)
        })
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(schemes)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = if resume {
        Resumption::in_memory_sessions(1024)
    } else {
        Resumption::disabled()
    };
    Arc::new(cfg)
}

#[derive(Debug)]
enum Fail {
    Connect,
    Read,
    Write,
    Timeout,
}

fn classify(e: &io::Error, writing: bool) -> Fail {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Fail::Timeout,
        _ if writing => Fail::Write,
        _ => Fail::Read,
    }
}

struct Done {
    status: u16,
    bytes: usize,
    kind: Option<HandshakeKind>,
    negotiated: String,
    stream: StreamOwned<ClientConnection, TcpStream>,
}

/// One request on a new connection: connect, handshake (driven by the first write),
/// send the request, read the whole response (by Content-Length). With `close`, asks
/// for `Connection: close` and reads on to the server's close.
fn exchange(o: &Opts, cfg: &Arc<ClientConfig>, close: bool) -> Result<Done, Fail> {
    let sock = TcpStream::connect_timeout(&o.addr, IO_TIMEOUT).map_err(|_| Fail::Connect)?;
    let _ = sock.set_nodelay(true);
    let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
    let _ = sock.set_write_timeout(Some(IO_TIMEOUT));
    let conn = ClientConnection::new(cfg.clone(), o.sni.clone()).map_err(|_| Fail::Connect)?;
    let mut s = StreamOwned::new(conn, sock);
    let host = match &o.sni {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        _ => o.addr.ip().to_string(),
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n{}\r\n",
        o.path,
        host,
        if close { "Connection: close\r\n" } else { "" }
    );
    s.write_all(req.as_bytes()).map_err(|e| classify(&e, true))?;
    s.flush().map_err(|e| classify(&e, true))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0usize;
    let (head_end, status, length) = loop {
        if have == buf.len() {
            return Err(Fail::Read);
        }
        let n = s.read(&mut buf[have..]).map_err(|e| classify(&e, false))?;
        if n == 0 {
            return Err(Fail::Read);
        }
        have += n;
        if let Some(end) = find(&buf[..have], b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or(Fail::Read)?;
            let length = head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(Fail::Read)?;
            break (end + 4, status, length);
        }
    };
    let mut body = have - head_end;
    while body < length {
        let n = s.read(&mut buf).map_err(|e| classify(&e, false))?;
        if n == 0 {
            return Err(Fail::Read);
        }
        body += n;
    }
    let c = &s.conn;
    // As OpenSSL names them (TLSv1.3 TLS_AES_256_GCM_SHA384 X25519), to compare.
    let negotiated = format!(
        "{} {} {} alpn={}",
        c.protocol_version()
            .map_or("-".into(), |v| format!("{v:?}").replace('_', ".")),
        c.negotiated_cipher_suite()
            .map_or("-".into(), |s| format!("{:?}", s.suite()).replace("TLS13_", "TLS_")),
        c.negotiated_key_exchange_group()
            .map_or("-".into(), |g| format!("{:?}", g.name())),
        c.alpn_protocol()
            .map_or("-".into(), |a| String::from_utf8_lossy(a).into_owned())
    );
    let kind = c.handshake_kind();
    Ok(Done {
        status,
        bytes: head_end + length,
        kind,
        negotiated,
        stream: s,
    })
}

/// After a `Connection: close` response: read until the server closes (close_notify or
/// plain EOF), so that the server, not the client, closes first.
fn drain(mut s: StreamOwned<ClientConnection, TcpStream>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[derive(Default)]
struct Tally {
    lat_us: Vec<u32>,
    bytes: u64,
    non2xx: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
    full: u64,
    hrr: u64,
    resumed: u64,
    negotiated: Option<String>,
}

fn run(o: &Opts) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let o = Arc::new(o.clone());
    let handles: Vec<_> = (0..o.conns)
        .map(|_| {
            let (stop, o) = (stop.clone(), o.clone());
            std::thread::spawn(move || {
                // Each thread its own configuration, so its own session store: one
                // shared store would hold at most 8 TLS 1.3 tickets per server name
                // (rustls's limit), fewer than the threads that want one at once.
                let cfg = config(&o, o.mode == "resume");
                let mut t = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    match exchange(&o, &cfg, true) {
                        Ok(d) => {
                            t.lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            t.bytes += d.bytes as u64;
                            if !(200..400).contains(&d.status) {
                                t.non2xx += 1;
                            }
                            match d.kind {
                                Some(HandshakeKind::Resumed) => t.resumed += 1,
                                Some(HandshakeKind::FullWithHelloRetryRequest) => t.hrr += 1,
                                _ => t.full += 1,
                            }
                            if t.negotiated.is_none() {
                                t.negotiated = Some(d.negotiated.clone());
                            }
                            drain(d.stream);
                        }
                        Err(Fail::Connect) => t.connect += 1,
                        Err(Fail::Read) => t.read += 1,
                        Err(Fail::Write) => t.write += 1,
                        Err(Fail::Timeout) => t.timeout += 1,
                    }
                }
                t
            })
        })
        .collect();
    std::thread::sleep(o.duration);
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for h in handles {
        let t = h.join().expect("thread panicked");
        all.lat_us.extend(t.lat_us);
        all.bytes += t.bytes;
        all.non2xx += t.non2xx;
        all.connect += t.connect;
        all.read += t.read;
        all.write += t.write;
        all.timeout += t.timeout;
        all.full += t.full;
        all.hrr += t.hrr;
        all.resumed += t.resumed;
        if all.negotiated.is_none() {
            all.negotiated = t.negotiated;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    all.lat_us.sort_unstable();
    let n = all.lat_us.len();
    println!(
        "Running {:.0}s test @ tls://{}{} (tlsload, a new connection per request, mode {})",
        o.duration.as_secs_f64(),
        o.addr,
        o.path,
        o.mode
    );
    println!("  {} threads and {} connections", o.conns, o.conns);
    println!("  Latency Distribution");
    for p in [50, 75, 90, 99] {
        let v = if n == 0 {
            0
        } else {
            all.lat_us[((n * p).div_ceil(100)).clamp(1, n) - 1]
        };
        println!("     {p}%  {}", fmt_us(v));
    }
    println!(
        "  {} requests in {:.2}s, {:.2}MB read",
        n,
        secs,
        all.bytes as f64 / 1048576.0
    );
    if all.connect + all.read + all.write + all.timeout > 0 {
        println!(
            "  Socket errors: connect {}, read {}, write {}, timeout {}",
            all.connect, all.read, all.write, all.timeout
        );
    }
    if all.non2xx > 0 {
        println!("  Non-2xx or 3xx responses: {}", all.non2xx);
    }
    println!("Requests/sec: {:>10.2}", n as f64 / secs);
    let hs = all.full + all.hrr + all.resumed;
    println!(
        "Handshakes: {} full, {} full with HelloRetryRequest, {} resumed ({:.2}% resumed)",
        all.full,
        all.hrr,
        all.resumed,
        if hs == 0 { 0.0 } else { 100.0 * all.resumed as f64 / hs as f64 }
    );
    println!(
        "Negotiated: {}",
        all.negotiated.as_deref().unwrap_or("(no connection completed)")
    );
}

fn fmt_us(us: u32) -> String {
    let us = f64::from(us);
    if us < 1000.0 {
        format!("{us:.2}us")
    } else if us < 1e6 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

fn idle(o: &Opts) {
    let cfg = config(o, false);
    let next = Arc::new(AtomicUsize::new(0));
    let o = Arc::new(o.clone());
    let handles: Vec<_> = (0..o.threads)
        .map(|_| {
            let (cfg, next, o) = (cfg.clone(), next.clone(), o.clone());
            std::thread::spawn(move || {
                let mut socks = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < o.n {
                    match exchange(&o, &cfg, false) {
                        Ok(d) if d.status == 200 => {
                            // Keep the socket, drop the client's TLS state: nothing is
                            // sent, the server sees an idle keep-alive connection.
                            let (_conn, sock) = d.stream.into_parts();
                            socks.push(sock);
                        }
                        Ok(d) => return Err(format!("status {}", d.status)),
                        Err(e) => return Err(format!("{e:?} error")),
                    }
                }
                Ok(socks)
            })
        })
        .collect();
    let mut socks = Vec::new();
    for h in handles {
        match h.join().expect("thread panicked") {
            Ok(s) => socks.extend(s),
            Err(e) => {
                eprintln!("tlsload idle: a connection failed: {e} ({} open)", socks.len());
                std::process::exit(1);
            }
        }
    }
    println!("ready {}", socks.len());
    io::stdout().flush().ok();
    // Held until the process is killed (SIGTERM's default action closes them all).
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn probe(o: &Opts) {
    let cfg = config(o, true);
    for i in 0..2 {
        match exchange(o, &cfg, true) {
            Ok(d) => {
                let kind = d.kind;
                println!(
                    "connection {}: status {} handshake {:?} {}",
                    i + 1,
                    d.status,
                    kind.unwrap_or(HandshakeKind::Full),
                    d.negotiated
                );
                drain(d.stream);
            }
            Err(e) => {
                println!("connection {}: failed ({e:?})", i + 1);
                std::process::exit(1);
            }
        }
    }
}

fn main() {
    let o = parse_opts();
    match o.cmd.as_str() {
        "run" => run(&o),
        "idle" => idle(&o),
        "probe" => probe(&o),
        _ => usage(),
    }
}
