//! Upstream connections: a socket plus the read buffer that travels with it, so a reused
//! connection costs no allocation. Connections are established with a timeout and
//! TCP_NODELAY, and only ever pooled after a clean, fully read response.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::net::TcpStream;
use monoio::time::Instant;

use super::stream::UpStream;

/// What an upstream read of a response body asks room for (the buffer grows to it);
/// heads are read into what the pool gave, [`crate::http::buffers::LARGE`].
pub const UP_BUF: usize = 16 * 1024;

#[derive(Debug)]
pub struct UpConn {
    pub stream: UpStream,
    /// From the worker's buffer pool; given back while the connection idles in the
    /// upstream pool ([`UpConn::idle`]) and taken again when it is checked out.
    pub buf: Vec<u8>,
    /// Came from the pool: a failure before any response byte may just mean the origin
    /// closed it while idle, and is retried on a fresh connection.
    pub reused: bool,
}

#[derive(Debug)]
pub struct PooledConn {
    pub conn: UpConn,
    pub since: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out")]
    Timeout,
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
}

pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<UpConn, ConnectError> {
    let stream = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Err(_) => return Err(ConnectError::Timeout),
    };
    stream.set_nodelay(true)?;
    Ok(UpConn {
        stream: UpStream::Plain(stream),
        buf: crate::http::buffers::large(),
        reused: false,
    })
}
