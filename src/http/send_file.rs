//! [`send_file`]: write part of a file to a client socket with `sendfile(2)`, the
//! file's pages handed to the socket by reference instead of copied. Used for cached
//! bodies kept in memory-backed files ([`crate::cache::BodyFile`]); see there for
//! why, and the README's cache section for what it saves per 1 MiB hit.
//!
//! monoio has no sendfile operation, so the call is made directly on the socket's
//! descriptor, with the socket non-blocking, and monoio is asked only to wait for the
//! socket to take more (`TcpStream::writable`, a poll operation on either driver).
//! Under io_uring monoio's sockets are blocking (the ring does the waiting), so the
//! socket is made non-blocking for the send and put back afterwards: a blocking
//! `sendfile` to a slow client would stall every connection of the worker.
//!
//! `sendfile` takes no `MSG_NOSIGNAL`: a send to a client that has gone raises
//! SIGPIPE, which the Rust runtime sets to ignored before `main` in every Rust binary,
//! so the call fails with `EPIPE` and only that connection ends
//! (`tests/cache_bodies.rs` hangs up on hits mid-body).

use std::io;
use std::os::fd::BorrowedFd;

use monoio::net::TcpStream;
use rustix::io::Errno;

use super::sock::socket_fd;

/// Send bytes `0..len` of `file` to `stream`. `blocking_socket` says the stream's
/// socket is in blocking mode (monoio's io_uring driver): it is switched to
/// non-blocking for the send, and back.
pub async fn send_file(
    stream: &mut TcpStream,
    file: BorrowedFd<'_>,
    len: usize,
    blocking_socket: bool,
) -> io::Result<()> {
    if blocking_socket {
        rustix::io::ioctl_fionbio(socket_fd(stream), true)?;
    }
    let sent = send_all(stream, file, len).await;
    if blocking_socket {
        // The socket is going to be closed anyway if this fails.
        let restored = rustix::io::ioctl_fionbio(socket_fd(stream), false);
        sent?;
        restored?;
        return Ok(());
    }
    sent
}

async fn send_all(stream: &TcpStream, file: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    let mut offset = 0u64;
    let end = len as u64;
    while offset < end {
        let left = usize::try_from(end - offset).unwrap_or(usize::MAX);
        match rustix::fs::sendfile(socket_fd(stream), file, Some(&mut offset), left) {
            // The file is shorter than said (it is sealed, so it cannot shrink: this
            // is a bug, not a client's doing); never loop on it.
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(Errno::AGAIN) => stream.writable(false).await?,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The piece of a file read and encrypted at a time by [`send_file_tls`].
pub const TLS_CHUNK: usize = 16 * 1024;

/// Send bytes `0..len` of `file` over a TLS stream, which sendfile cannot do (the
/// bytes must be encrypted in user space; with kernel TLS, [`send_file`] would do).
/// The file is read a record's worth at a time into one 16 KiB buffer and encrypted
/// from there: the whole body is never copied, and memory stays at one chunk.
pub async fn send_file_tls(
    stream: &mut impl monoio::io::AsyncWriteRent,
    file: BorrowedFd<'_>,
    len: usize,
) -> io::Result<()> {
    let mut chunk = vec![0u8; TLS_CHUNK.min(len)];
    let mut offset = 0usize;
    while offset < len {
        let want = (len - offset).min(chunk.len());
        let n = loop {
            match rustix::io::pread(file, &mut chunk[..want], offset as u64) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => break n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        super::io::write_range(stream, &mut chunk, 0, n).await?;
        offset += n;
    }
    Ok(())
}
