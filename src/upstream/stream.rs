//! [`UpStream`]: the connection type of the upstream client, one type for every kind of
//! transport it will speak. Today that is plain TCP; TLS to upstreams (a later issue)
//! becomes a second variant, and everything above this type (the pool, the client,
//! proxying, refresh, health checks) stays as it is.
//!
//! What only a plain socket can do is asked for through [`UpStream::tcp`]: splicing a
//! body between two sockets in the kernel, peeking at a pooled connection, and a second
//! handle to listen for an early answer. A TLS stream answers `None` there and takes the
//! ordinary read and write path.

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;

/// A connection to an upstream server.
#[derive(Debug)]
pub enum UpStream {
    Plain(TcpStream),
}

impl UpStream {
    /// The plain TCP socket under this stream, if it is one (`None` for TLS).
    #[inline]
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            UpStream::Plain(s) => Some(s),
        }
    }

    /// Has the server closed or reset this idle connection, or sent bytes nobody
    /// asked for? (See [`crate::http::sock::peer_closed`]; for TLS, a pending
    /// close_notify counts as bytes.)
    #[inline]
    pub fn peer_closed(&self) -> bool {
        match self {
            UpStream::Plain(s) => crate::http::sock::peer_closed(s),
        }
    }

    /// The plain TCP socket, mutably, for splice(2).
    #[inline]
    pub fn tcp_mut(&mut self) -> Option<&mut TcpStream> {
        match self {
            UpStream::Plain(s) => Some(s),
        }
    }
}

impl AsyncReadRent for UpStream {
    #[inline]
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Plain(s) => s.read(buf).await,
        }
    }

    #[inline]
    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Plain(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for UpStream {
    #[inline]
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Plain(s) => s.write(buf).await,
        }
    }

    #[inline]
    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Plain(s) => s.writev(buf).await,
        }
    }

    #[inline]
    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            UpStream::Plain(s) => s.flush().await,
        }
    }

    #[inline]
    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            UpStream::Plain(s) => s.shutdown().await,
        }
    }
}
