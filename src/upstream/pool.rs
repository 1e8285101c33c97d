//! Upstream connections: a socket plus the read buffer that travels with it, so a reused
//! connection costs no allocation. Connections are established with a timeout and
//! TCP_NODELAY, and only ever pooled after a clean, fully read response.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use monoio::net::TcpStream;
use monoio::time::Instant;
use rustls::client::UnbufferedClientConnection;
use rustls_pki_types::ServerName;

use super::stream::UpStream;
use crate::tls::stream::TlsStream;

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
    /// The TLS handshake failed (the rustls error is inside).
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
}

/// How to speak TLS to a server: the worker's client configuration for its upstream,
/// and the name sent as SNI and verified.
pub struct TlsTo<'a> {
    pub config: &'a Arc<rustls::ClientConfig>,
    pub name: &'a ServerName<'static>,
}

/// A new connection to `addr` (TLS when `tls` says so), connected and its handshake
/// done within `timeout`.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<TlsTo<'_>>,
) -> Result<UpConn, ConnectError> {
    let deadline = Instant::now() + timeout;
    let stream = match monoio::time::timeout_at(deadline, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Err(_) => return Err(ConnectError::Timeout),
    };
    stream.set_nodelay(true)?;
    let stream = match tls {
        None => UpStream::Plain(stream),
        Some(t) => {
            let session = UnbufferedClientConnection::new(t.config.clone(), t.name.clone())
                .map_err(|e| ConnectError::Tls(crate::tls::stream::tls_error(e)))?;
            let mut s = Box::new(TlsStream::new(stream, session));
            match monoio::time::timeout_at(deadline, s.handshake()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ConnectError::Tls(e)),
                Err(_) => return Err(ConnectError::Timeout),
            }
            UpStream::Tls(s)
        }
    };
    Ok(UpConn {
        stream,
        buf: crate::http::buffers::large(),
        reused: false,
    })
}
