//! `floor LISTEN UPSTREAM`: a bare TCP forwarder on one io_uring, with no HTTP at all.
//!
//! It exists to measure a floor, not to serve anyone: the least CPU per proxied request
//! that any proxy built on io_uring can spend on this kernel. Each accepted client gets
//! its own upstream connection, and bytes are copied each way as they come, with the
//! cheapest io_uring set-up there is:
//! - one ring, `SINGLE_ISSUER | COOP_TASKRUN | DEFER_TASKRUN`;
//! - one multishot accept, and one multishot receive per socket (armed once, not per
//!   read), into a ring of provided buffers;
//! - one send per received buffer, straight from that buffer, which goes back to the
//!   buffer ring when the send completes;
//! - every submission batched into the wait for the next completion.
//!
//! What a proxy does on top (parsing, routing, header rewriting) only adds to this. The
//! loadtest runs it as the `floor` target beside nginx (`loadtest/README.md`).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

const BUFS: u16 = 4096;
const BUF_LEN: usize = 16 * 1024;
const GROUP: u16 = 0;

const ACCEPT: u64 = 1 << 62;
const RECV: u64 = 2 << 62;
const SEND: u64 = 3 << 62;
const TAG: u64 = 3 << 62;

/// Buffers the kernel picks from for receives, returned by us after each send.
struct BufRing {
    ring: *mut types::BufRingEntry,
    data: Vec<u8>,
    tail: u16,
}

impl BufRing {
    fn new(uring: &IoUring) -> io::Result<BufRing> {
        let bytes = usize::from(BUFS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, checked for failure below; it is never
        // unmapped, so the pointer stays valid for the life of the process.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ring` is a page-aligned mapping of BUFS entries, as the call
        // requires, and it outlives the io_uring (both live until the process exits).
        unsafe {
            uring
                .submitter()
                .register_buf_ring(ring as u64, BUFS, GROUP)?
        };
        let mut r = BufRing {
            ring: ring.cast(),
            data: vec![0; usize::from(BUFS) * BUF_LEN],
            tail: 0,
        };
        for bid in 0..BUFS {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    fn buf(&self, bid: u16) -> *const u8 {
        self.data[usize::from(bid) * BUF_LEN..].as_ptr()
    }

    /// Queue buffer `bid` for the kernel; `publish` makes the queued ones visible.
    fn push(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (BUFS - 1));
        // SAFETY: idx < BUFS, inside the mapping; the kernel reads only entries below
        // the published tail, and this one is at or past it until `publish`.
        let e = unsafe { &mut *self.ring.add(idx) };
        e.set_addr(self.buf(bid) as u64);
        e.set_len(BUF_LEN as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail is the u16 at byte 14 of the ring (it overlays the first
        // entry's reserved field), 2-byte aligned in a page-aligned mapping; the kernel
        // reads it concurrently, so it is stored atomically with release ordering.
        let tail = unsafe { &*(self.ring.cast::<u8>().add(14) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

fn push(uring: &mut IoUring, sqe: squeue::Entry) {
    // SAFETY: every buffer an entry points at (the ring's data) lives as long as the
    // process, and a buffer is not reused before its send completes.
    while unsafe { uring.submission().push(&sqe) }.is_err() {
        uring.submit().expect("submit");
    }
}

fn recv(fd: RawFd) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd), GROUP)
        .build()
        .user_data(RECV | fd as u64)
}

fn close(peer: &mut HashMap<RawFd, RawFd>, fd: RawFd) {
    if let Some(other) = peer.remove(&fd) {
        peer.remove(&other);
        // SAFETY: both descriptors are ours and each is closed once: they are removed
        // from the map before closing, so a late completion finds neither.
        unsafe {
            libc::close(fd);
            libc::close(other);
        }
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: floor LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    }
    let upstream: SocketAddr = args[2].parse().expect("upstream address");
    let listener = TcpListener::bind(&args[1])?;
    let mut uring = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_defer_taskrun()
        .setup_cqsize(16384)
        .build(4096)?;
    let mut bufs = BufRing::new(&uring)?;
    let mut peer: HashMap<RawFd, RawFd> = HashMap::new();
    let lfd = listener.as_raw_fd();
    push(
        &mut uring,
        opcode::AcceptMulti::new(types::Fd(lfd))
            .build()
            .user_data(ACCEPT),
    );
    let mut done = Vec::with_capacity(4096);
    loop {
        uring.submit_and_wait(1)?;
        done.clear();
        done.extend(
            uring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(data, res, flags) in &done {
            match data & TAG {
                ACCEPT => {
                    if res < 0 {
                        continue;
                    }
                    if !cqueue::more(flags) {
                        push(
                            &mut uring,
                            opcode::AcceptMulti::new(types::Fd(lfd))
                                .build()
                                .user_data(ACCEPT),
                        );
                    }
                    let up = TcpStream::connect(upstream)?;
                    up.set_nodelay(true)?;
                    let up = up.into_raw_fd();
                    let one: libc::c_int = 1;
                    // SAFETY: `res` is the socket just accepted; the option value is a
                    // live c_int of the size passed.
                    unsafe {
                        libc::setsockopt(
                            res,
                            libc::IPPROTO_TCP,
                            libc::TCP_NODELAY,
                            (&one as *const libc::c_int).cast(),
                            std::mem::size_of::<libc::c_int>() as u32,
                        );
                    }
                    peer.insert(res, up);
                    peer.insert(up, res);
                    push(&mut uring, recv(res));
                    push(&mut uring, recv(up));
                }
                RECV => {
                    let fd = (data & !TAG) as RawFd;
                    if res == -libc::ENOBUFS {
                        push(&mut uring, recv(fd));
                        continue;
                    }
                    if res <= 0 {
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            bufs.push(bid);
                        }
                        close(&mut peer, fd);
                        continue;
                    }
                    let bid = cqueue::buffer_select(flags).expect("a provided buffer");
                    match peer.get(&fd) {
                        Some(&to) => push(
                            &mut uring,
                            opcode::Send::new(types::Fd(to), bufs.buf(bid), res as u32)
                                .build()
                                .user_data(SEND | u64::from(bid) | (u64::from(res as u32) << 16)),
                        ),
                        None => bufs.push(bid),
                    }
                    if !cqueue::more(flags) && peer.contains_key(&fd) {
                        push(&mut uring, recv(fd));
                    }
                }
                _ => {
                    // A send finished: its buffer goes back to the kernel. On loopback a
                    // send of at most 16 KiB is never short; if one were, the forwarder
                    // would be wrong, so say so rather than measure it.
                    let bid = (data & 0xffff) as u16;
                    let len = ((data >> 16) & 0xffff_ffff) as i32;
                    if res >= 0 && res != len {
                        eprintln!("floor: short send ({res} of {len} bytes)");
                        std::process::exit(1);
                    }
                    bufs.push(bid);
                }
            }
        }
        bufs.publish();
    }
}
