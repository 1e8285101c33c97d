//! Owned-buffer I/O helpers over monoio's rent-style API: every read appends into the
//! spare capacity of a `Vec<u8>` the caller owns and gets back, every write hands a
//! buffer (or a slice of one) to the kernel and returns it, so buffers are reused for the
//! life of a connection. They take any monoio stream (a client's `TcpStream`, an
//! upstream's [`crate::upstream::stream::UpStream`]); splicing needs plain sockets.

use std::io;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Read once, appending to `buf`; grows the buffer to leave at least `min_spare` bytes
/// of room. Returns the number of bytes read (0 = end of stream).
pub async fn read_append(
    stream: &mut impl AsyncReadRent,
    buf: &mut Vec<u8>,
    min_spare: usize,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let cap = owned.capacity();
    let (res, slice) = stream.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    res
}

/// Write all of `buf`.
pub async fn write_all(stream: &mut impl AsyncWriteRent, buf: &mut Vec<u8>) -> io::Result<()> {
    let owned = std::mem::take(buf);
    let (res, owned) = stream.write_all(owned).await;
    *buf = owned;
    res.map(|_| ())
}

/// Write `body[from..]`, a body shared with the cache, without copying it (see
/// [`super::shared_body`]).
pub async fn write_shared(
    stream: &mut impl AsyncWriteRent,
    body: std::rc::Rc<[u8]>,
    from: usize,
) -> io::Result<()> {
    if from >= body.len() {
        return Ok(());
    }
    let (res, _) = stream
        .write_all(super::shared_body::SharedBody(body).slice(from..))
        .await;
    res.map(|_| ())
}

/// Write `buf[from..to]`.
pub async fn write_range(
    stream: &mut impl AsyncWriteRent,
    buf: &mut Vec<u8>,
    from: usize,
    to: usize,
) -> io::Result<()> {
    if from >= to {
        return Ok(());
    }
    let owned = std::mem::take(buf);
    let (res, slice) = stream.write_all(owned.slice(from..to)).await;
    *buf = slice.into_inner();
    res.map(|_| ())
}

/// Which side of a splice failed.
#[derive(Debug)]
pub enum SpliceError {
    /// The source ended before `n` bytes.
    Eof,
    Source(io::Error),
    Dest(io::Error),
}

/// A pipe pair used to move bytes socket -> pipe -> socket inside the kernel.
pub struct SplicePipe {
    read: monoio::net::Pipe,
    write: monoio::net::Pipe,
}

impl SplicePipe {
    pub fn new() -> io::Result<SplicePipe> {
        let (read, write) = monoio::net::unix::new_pipe()?;
        Ok(SplicePipe { read, write })
    }
}

/// Move exactly `n` bytes from `src` to `dst` without copying them through user space.
/// On error the pipe may hold bytes: drop it rather than reuse it.
pub async fn splice_exact(
    src: &mut TcpStream,
    dst: &mut TcpStream,
    mut n: u64,
    pipe: &mut SplicePipe,
) -> Result<(), SpliceError> {
    use monoio::io::splice::{SpliceDestination, SpliceSource};
    const STEP: u64 = 1 << 20;
    while n > 0 {
        let want = n.min(STEP) as u32;
        let got = src
            .splice_to_pipe(&mut pipe.write, want)
            .await
            .map_err(SpliceError::Source)?;
        if got == 0 {
            return Err(SpliceError::Eof);
        }
        let mut left = got;
        while left > 0 {
            let put = dst
                .splice_from_pipe(&mut pipe.read, left)
                .await
                .map_err(SpliceError::Dest)?;
            if put == 0 {
                return Err(SpliceError::Dest(io::ErrorKind::WriteZero.into()));
            }
            left -= put;
        }
        n -= got as u64;
    }
    Ok(())
}
