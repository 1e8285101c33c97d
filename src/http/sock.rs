//! The few socket calls monoio does not make for us, on a stream's own descriptor:
//! [`peer_closed`] (is a pooled upstream connection still usable?), [`watcher`] (a
//! second handle on a socket, to wait for its answer while the first handle is busy
//! sending), [`recv_now`] (read what is there, never wait) and [`accept_now`] (take
//! a waiting connection, never wait). Each is one system call; none changes what
//! monoio believes about the socket.
//!
//! The two `unsafe` blocks borrow a socket's descriptor: monoio's `TcpStream` and
//! `TcpListener` implement `AsRawFd` but not `AsFd`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use std::net::SocketAddr;

use monoio::net::{TcpListener, TcpStream};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SocketFlags};

/// The stream's descriptor, borrowed for as long as the stream is.
pub fn socket_fd(stream: &TcpStream) -> BorrowedFd<'_> {
    // SAFETY: `borrow_raw` needs the descriptor to stay open for the returned
    // lifetime. It is the stream's own descriptor, which monoio closes only when the
    // last handle to the stream's `SharedFd` is dropped; the stream is borrowed for
    // the whole lifetime of the `BorrowedFd` (the signature ties them), so it cannot
    // be dropped, and its descriptor cannot be closed, while the `BorrowedFd` is used.
    unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }
}

/// A listener's descriptor, borrowed for as long as the listener is.
fn listener_fd(listener: &TcpListener) -> BorrowedFd<'_> {
    // SAFETY: as for `socket_fd`: the listener's own descriptor, closed only when the
    // listener (which the signature keeps borrowed) is dropped.
    unsafe { BorrowedFd::borrow_raw(listener.as_raw_fd()) }
}

/// Take a connection waiting in `listener`'s backlog now, without waiting: `Ok(None)`
/// when none is. `nonblocking`: the new socket in non-blocking mode (the epoll driver
/// needs it; io_uring does its own waiting). One `accept4(2)`.
pub fn accept_now(
    listener: &TcpListener,
    nonblocking: bool,
) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    let mut flags = SocketFlags::CLOEXEC;
    if nonblocking {
        flags |= SocketFlags::NONBLOCK;
    }
    loop {
        match rustix::net::acceptfrom_with(listener_fd(listener), flags) {
            Ok((fd, addr)) => {
                let peer = addr
                    .and_then(|a| SocketAddr::try_from(a).ok())
                    .ok_or_else(|| io::Error::other("accepted a connection with no IP address"))?;
                let stream = TcpStream::from_std(std::net::TcpStream::from(fd))?;
                return Ok(Some((stream, peer)));
            }
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Has the peer of this idle connection closed or reset it, or sent something
/// nobody asked for? One non-blocking `recv(MSG_PEEK)`, which consumes nothing: an
/// idle HTTP/1.1 connection has nothing to read, so "would block" is the only answer
/// that leaves it usable. Bytes waiting (a 408 an origin sends before it closes an
/// idle connection, as nginx and Node do) make it unusable too: they would be read as
/// the answer to the next request.
pub fn peer_closed(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match rustix::net::recv(
        socket_fd(stream),
        &mut byte[..],
        RecvFlags::PEEK | RecvFlags::DONTWAIT,
    ) {
        Err(Errno::AGAIN) => false,
        Err(Errno::INTR) => peer_closed(stream),
        // 0: end of stream; 1: unsolicited bytes; any other error: reset or broken.
        _ => true,
    }
}

/// A second monoio handle on the same socket (a duplicated descriptor), so one task
/// can wait for the socket to become readable while another writes to it through
/// the first handle. Only `readable` and [`recv_now`] are used on it: they never
/// leave an operation holding a buffer, so the wait can be dropped at any time
/// without losing a byte.
pub fn watcher(stream: &TcpStream) -> io::Result<TcpStream> {
    let fd = rustix::io::fcntl_dupfd_cloexec(socket_fd(stream), 0)?;
    TcpStream::from_std(std::net::TcpStream::from(fd))
}

/// Append what the socket holds now to `buf` (with at least `min_spare` bytes of
/// room), without waiting: `Ok(None)` when nothing is there, `Ok(Some(0))` at end of
/// stream.
pub fn recv_now(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    min_spare: usize,
) -> io::Result<Option<usize>> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    loop {
        match rustix::net::recv(
            socket_fd(stream),
            rustix::buffer::spare_capacity(buf),
            RecvFlags::DONTWAIT,
        ) {
            Ok((n, _)) => return Ok(Some(n)),
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{Shutdown, TcpListener};

    use super::*;

    /// `peer_closed` on a live, a closed, a reset and a chatty peer; the watcher's
    /// reads.
    async fn peer_states() {
        {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();

            let ours = TcpStream::connect_addr(addr).await.unwrap();
            let (theirs, _) = listener.accept().unwrap();
            assert!(!peer_closed(&ours), "a live idle connection is usable");
            theirs.shutdown(Shutdown::Write).unwrap();
            // A FIN on loopback is queued before shutdown(2) returns.
            assert!(peer_closed(&ours), "a connection the peer closed is not");

            let ours = TcpStream::connect_addr(addr).await.unwrap();
            let (mut theirs, _) = listener.accept().unwrap();
            theirs
                .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
                .unwrap();
            assert!(peer_closed(&ours), "unsolicited bytes make it unusable");

            let ours = TcpStream::connect_addr(addr).await.unwrap();
            let (theirs, _) = listener.accept().unwrap();
            socket2::SockRef::from(&theirs)
                .set_linger(Some(std::time::Duration::ZERO))
                .unwrap();
            drop(theirs);
            assert!(peer_closed(&ours), "a reset connection is not usable");

            let ours = TcpStream::connect_addr(addr).await.unwrap();
            let (mut theirs, _) = listener.accept().unwrap();
            theirs.write_all(b"early").unwrap();
            let mut buf = Vec::new();
            let watch = watcher(&ours).unwrap();
            watch.readable(false).await.unwrap();
            assert_eq!(recv_now(&watch, &mut buf, 64).unwrap(), Some(5));
            assert_eq!(buf, b"early");
            assert_eq!(recv_now(&watch, &mut buf, 64).unwrap(), None);
            drop(watch);
            assert!(!peer_closed(&ours), "the watcher consumed what it read");
            theirs.shutdown(Shutdown::Write).unwrap();
            assert_eq!(recv_now(&ours, &mut buf, 64).unwrap(), Some(0));
        }
    }

    #[test]
    fn peer_states_epoll() {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(peer_states());
    }

    #[test]
    fn peer_states_io_uring() {
        if let Ok(mut rt) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().build() {
            rt.block_on(peer_states());
        }
    }
}
