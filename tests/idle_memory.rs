//! What an idle keep-alive connection (plain, and TLS) costs in heap memory, exactly: this test binary
//! counts every allocation (its global allocator wraps the system's), runs a gateway
//! in-process, opens connections that each make one request and go quiet, and divides
//! the growth of live heap bytes by the connection count. Issue 14's bound is 1 KiB
//! per idle connection; `loadtest/conns.sh` measures the whole process's resident
//! memory against nginx's.
//!
//! One test, both drivers one after the other: the counter is process-wide, so nothing
//! else may run beside it. The client and the origin here allocate nothing per
//! connection (raw sockets, stack buffers) so that what grows is the gateway's.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use common::*;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Live allocations by size, in 8-byte steps up to 8 KiB (the last counts the rest):
/// printed when the bound is broken, to say what grew.
static BY_SIZE: [AtomicIsize; 1025] = [const { AtomicIsize::new(0) }; 1025];

thread_local! {
    /// Allocations of this thread count. The test's own thread turns it off: its TLS
    /// clients allocate per connection, and only the gateway's workers are measured.
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

fn count(size: usize, n: isize) {
    if !COUNTED.with(|c| c.get()) {
        return;
    }
    LIVE.fetch_add(size as isize * n, Ordering::Relaxed);
    BY_SIZE[(size / 8).min(1024)].fetch_add(n, Ordering::Relaxed);
}

fn by_size() -> Vec<isize> {
    BY_SIZE.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter only observes the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const CONNECTIONS: usize = 1200;
const WARM: usize = 200;
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// An origin that answers every request head with `RESPONSE`, allocating nothing per
/// request.
fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut have = 0;
                loop {
                    match conn.read(&mut buf[have..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        if conn.write_all(RESPONSE).is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                }
            });
        }
    });
    addr
}

fn get(conn: &mut impl ReadWrite) {
    conn.write_all(b"GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let mut have = 0;
    while !buf[..have].ends_with(b"\r\n\r\nok") {
        let n = match conn.read(&mut buf[have..]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap(),
        };
        assert!(n > 0, "the gateway closed the connection");
        have += n;
    }
    assert!(buf.starts_with(b"HTTP/1.1 200 "));
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A TLS server certificate for "gw.test" and a client configuration trusting it.
struct Tls {
    _dir: common::tls::TempDir,
    table: String,
    client: std::sync::Arc<rustls::ClientConfig>,
}

fn tls_setup() -> Tls {
    let ca = common::tls::Ca::new("idle CA");
    let dir = common::tls::TempDir::new("idle-tls");
    let (cert, key) = ca.server(&["gw.test"]).write(&dir.0, "gw");
    Tls {
        table: format!(
            "[server.tls]\nlisten = [\"127.0.0.1:0\"]\n[[server.tls.certificates]]\n\
             server_names = [\"gw.test\"]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        client: common::tls::client_config(&ca, &["http/1.1"], &[], None),
        _dir: dir,
    }
}

/// A connection to the gateway that has made one request: plain, or TLS.
fn connect(gw: &Gw, tls: Option<&Tls>) -> Box<dyn ReadWrite> {
    match tls {
        None => {
            let c = TcpStream::connect(gw.addr).unwrap();
            c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let mut c: Box<dyn ReadWrite> = Box::new(c);
            get(&mut c);
            c
        }
        Some(t) => {
            let tcp = TcpStream::connect(gw.gateway().tls_addrs()[0]).unwrap();
            tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let session =
                rustls::ClientConnection::new(t.client.clone(), common::tls::name("gw.test"))
                    .unwrap();
            let mut c: Box<dyn ReadWrite> = Box::new(rustls::StreamOwned::new(session, tcp));
            get(&mut c);
            c
        }
    }
}

/// Heap bytes per idle connection on `driver`, plain or TLS.
fn idle_cost(driver: IoDriver, origin: SocketAddr, tls: Option<&Tls>) -> f64 {
    let toml = format!(
        "[server]\nmax_connections = 10000\n\n[server.limits]\nbuffer_hold_ms = 50\n\n{}\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\n\
         [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n",
        tls.map_or("", |t| t.table.as_str())
    );
    let gw = Gw::start(driver, &toml);
    let mut conns: Vec<Box<dyn ReadWrite>> = Vec::with_capacity(CONNECTIONS);
    // Warm: the upstream connection, the worker's tables, and the buffer pool, which
    // fills up (to its bound) as these give their buffers back.
    for _ in 0..WARM {
        conns.push(connect(&gw, tls));
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = LIVE.load(Ordering::Relaxed);
    let sizes_before = by_size();
    for _ in WARM..CONNECTIONS {
        conns.push(connect(&gw, tls));
    }
    // Quiet for longer than `buffer_hold_ms`: every connection gives its buffers back.
    std::thread::sleep(Duration::from_millis(500));
    let after = LIVE.load(Ordering::Relaxed);
    let grew: Vec<String> = by_size()
        .iter()
        .zip(sizes_before)
        .enumerate()
        .filter(|(_, (a, b))| **a - *b >= (CONNECTIONS / 20) as isize)
        .map(|(i, (a, b))| format!("{} x {}-{} B", a - b, i * 8, i * 8 + 7))
        .collect();
    eprintln!("{driver:?}: allocations that grew: {}", grew.join(", "));
    // Each connection still works.
    for c in conns.iter_mut().step_by(97) {
        get(c);
    }
    drop(conns);
    drop(gw);
    (after - before) as f64 / (CONNECTIONS - WARM) as f64
}

#[test]
fn an_idle_keep_alive_connection_costs_under_a_kibibyte_of_heap() {
    COUNTED.with(|c| c.set(false));
    let origin = origin();
    let tls = tls_setup();
    for driver in [IoDriver::IoUring, IoDriver::Epoll] {
        if !driver_available(driver) {
            continue;
        }
        let bytes = idle_cost(driver, origin, None);
        eprintln!("{driver:?}: {bytes:.0} heap bytes per idle keep-alive connection");
        assert!(
            bytes <= 1024.0,
            "{driver:?}: {bytes:.0} bytes per idle connection"
        );
        let bytes = idle_cost(driver, origin, Some(&tls));
        eprintln!("{driver:?}: {bytes:.0} heap bytes per idle keep-alive TLS connection");
        // rustls's state: its connection (1,088 bytes inline, in our 1,280-byte
        // TLS stream), the two AES-GCM keys (560 bytes each), the traffic state
        // (640); about 4 KiB in all at this writing. No buffer.
        assert!(
            bytes <= 5120.0,
            "{driver:?}: {bytes:.0} bytes per idle TLS connection"
        );
    }
}
