//! The upstream client: the one way the gateway talks to an origin, for proxying,
//! background cache refresh and active health checks alike (mirroring and fan-out
//! will use it too).
//!
//! - [`checkout`]: a connection to a server, from the per-worker pool (each one peeked
//!   at for liveness, see [`super::UpstreamState::take_idle`]) or newly opened.
//! - [`send`]: the request bytes.
//! - [`read_head`]: the next response head, interim (1xx) ones reported one by one so
//!   that the proxy can relay them and the others step over them.
//! - [`read_whole`]: a whole body, bounded, for callers that keep it (refresh).
//! - [`discard`]: a body read and dropped, for callers that want only the connection
//!   back (mirroring).
//! - [`fetch`]: all of the above for a request whose bytes are all in memory, with the
//!   pool's guarantee: a reused connection that fails before any answer byte is
//!   replaced once by a new one.
//!
//! The proxy streams bodies itself (it re-frames them for the client and can splice),
//! but it checks out, sends, reads heads and treats dead pooled connections through
//! these same functions.

use std::time::Duration;

use monoio::time::Instant;

use super::pool::{connect, ConnectError, UpConn, UP_BUF};
use super::UpstreamState;
use crate::http::io::{read_append, write_all};
use crate::http::{BodyFraming, ChunkEvent, ChunkedDecoder, ResponseHead};

/// Why an exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream connect timed out")]
    ConnectTimeout,
    #[error("upstream connect failed: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake with the upstream failed: {0}")]
    Tls(std::io::Error),
    #[error("upstream I/O error: {0}")]
    Io(std::io::Error),
    #[error("upstream closed the connection before responding")]
    Closed,
    #[error("upstream response timed out")]
    Timeout,
    #[error("invalid response from upstream: {0}")]
    BadResponse(&'static str),
    #[error("upstream body truncated")]
    Truncated,
    #[error("upstream body larger than allowed")]
    TooLarge,
}

impl UpstreamError {
    /// A failure on a reused connection before any byte of an answer: the origin
    /// closed it while it idled, and the request may go again on a new one.
    pub fn is_stale(&self, conn: &UpConn) -> bool {
        conn.reused
            && conn.buf.is_empty()
            && matches!(self, UpstreamError::Closed | UpstreamError::Io(_))
    }
}

impl From<ConnectError> for UpstreamError {
    fn from(e: ConnectError) -> UpstreamError {
        match e {
            ConnectError::Timeout => UpstreamError::ConnectTimeout,
            ConnectError::Io(e) => UpstreamError::Connect(e),
            ConnectError::Tls(e) => UpstreamError::Tls(e),
        }
    }
}

/// Limits on what an upstream may send in a head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_bytes: usize,
    pub max_headers: usize,
}

impl HeadLimits {
    /// The server's request-head limits, never below what upstream heads need (an
    /// origin's response heads are not the client's to bound).
    pub fn from(limits: &crate::config::Limits) -> HeadLimits {
        HeadLimits {
            max_bytes: limits.max_header_bytes.max(UP_BUF),
            max_headers: limits.max_headers.max(128),
        }
    }
}

/// A connection to server `si` of `up`: an idle pooled one unless `fresh`, else a new
/// one. A pooled connection comes back with `reused` set.
pub async fn checkout(
    up: &UpstreamState,
    si: usize,
    now: Instant,
    fresh: bool,
) -> Result<UpConn, UpstreamError> {
    let server = &up.cfg.servers[si];
    if !fresh {
        if let Some(pooled) = up.take_idle(si, now) {
            let mut conn = pooled.conn;
            conn.reused = true;
            return Ok(conn);
        }
    }
    let tls = match server.tls {
        false => None,
        true => Some(up.tls_to(si).ok_or(UpstreamError::BadResponse(
            "no TLS settings for this https:// server",
        ))?),
    };
    Ok(connect(server.addr, up.cfg.connect_timeout, tls).await?)
}

/// Write all of `bytes` (kept intact, so the request can be sent again).
pub async fn send(conn: &mut UpConn, bytes: &mut Vec<u8>) -> Result<(), UpstreamError> {
    conn.buf.clear();
    write_all(&mut conn.stream, bytes)
        .await
        .map_err(UpstreamError::Io)
}

/// What [`read_head`] found at the front of `conn.buf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// An interim response (1xx other than 101): the caller relays it or not, then
    /// drains `resp.head_len` bytes and reads the next head.
    Interim,
    /// The final response head.
    Final,
}

/// Read until `conn.buf` starts with a complete response head, parsed into `resp`, or
/// `deadline` passes. A 101 is refused: the request asked for no upgrade (see
/// [`read_head_as`]).
pub async fn read_head(
    conn: &mut UpConn,
    resp: &mut ResponseHead,
    limits: HeadLimits,
    head_request: bool,
    deadline: Instant,
) -> Result<Head, UpstreamError> {
    read_head_as(conn, resp, limits, head_request, deadline, false).await
}

/// [`read_head`] for a request that asked for a protocol upgrade when `upgrade` is
/// set: then a 101 is its final head (the bytes after it belong to the new protocol;
/// `crate::pipeline::upgrade`). Without it a 101 is a broken answer (502): nothing
/// was asked for, and nothing after it could be read as HTTP.
pub async fn read_head_as(
    conn: &mut UpConn,
    resp: &mut ResponseHead,
    limits: HeadLimits,
    head_request: bool,
    deadline: Instant,
    upgrade: bool,
) -> Result<Head, UpstreamError> {
    loop {
        if !conn.buf.is_empty() {
            match resp.parse(
                &conn.buf,
                limits.max_bytes,
                limits.max_headers,
                head_request,
            ) {
                Ok(true) if resp.status == 101 && upgrade => return Ok(Head::Final),
                Ok(true) if resp.status == 101 => {
                    return Err(UpstreamError::BadResponse(
                        "101 Switching Protocols to a request that asked for no upgrade",
                    ))
                }
                Ok(true) if (100..200).contains(&resp.status) => return Ok(Head::Interim),
                Ok(true) => return Ok(Head::Final),
                Ok(false) => {}
                Err(_) => return Err(UpstreamError::BadResponse("malformed response head")),
            }
        }
        let n = match monoio::time::timeout_at(
            deadline,
            read_append(
                &mut conn.stream,
                &mut conn.buf,
                crate::http::buffers::HEAD_SPARE,
            ),
        )
        .await
        {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                return Err(if conn.buf.is_empty() {
                    UpstreamError::Io(e)
                } else {
                    UpstreamError::BadResponse("connection failed mid-head")
                })
            }
            Err(_) => return Err(UpstreamError::Timeout),
        };
        if n == 0 {
            return Err(if conn.buf.is_empty() {
                UpstreamError::Closed
            } else {
                UpstreamError::BadResponse("truncated response head")
            });
        }
    }
}

/// The final head, stepping over interim ones.
pub async fn read_final_head(
    conn: &mut UpConn,
    resp: &mut ResponseHead,
    limits: HeadLimits,
    head_request: bool,
    deadline: Instant,
) -> Result<(), UpstreamError> {
    while read_head(conn, resp, limits, head_request, deadline).await? == Head::Interim {
        conn.buf.drain(..resp.head_len);
    }
    Ok(())
}

/// The whole body of the response whose head `resp` is at the front of `conn.buf`,
/// at most `limit` bytes, and whether the connection may be pooled again. A
/// close-delimited body cannot be told from a truncated one: it is refused.
pub async fn read_whole(
    conn: &mut UpConn,
    resp: &ResponseHead,
    limit: usize,
    deadline: Instant,
) -> Result<(Vec<u8>, bool), UpstreamError> {
    match resp.body {
        BodyFraming::Empty => {
            let clean = conn.buf.len() == resp.head_len;
            Ok((Vec::new(), resp.keep_alive && clean))
        }
        BodyFraming::Length(n) => {
            if n > limit as u64 {
                return Err(UpstreamError::TooLarge);
            }
            let end = resp.head_len + n as usize;
            while conn.buf.len() < end {
                read_more(conn, deadline).await?;
            }
            let clean = conn.buf.len() == end;
            Ok((
                conn.buf[resp.head_len..end].to_vec(),
                resp.keep_alive && clean,
            ))
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut body = Vec::new();
            let mut pos = resp.head_len;
            loop {
                while pos < conn.buf.len() {
                    let (used, ev) = dec
                        .step(&conn.buf[pos..])
                        .map_err(|_| UpstreamError::BadResponse("invalid chunked body"))?;
                    let base = pos;
                    pos += used;
                    match ev {
                        ChunkEvent::Data(d) => {
                            if body.len() + d.len() > limit {
                                return Err(UpstreamError::TooLarge);
                            }
                            body.extend_from_slice(&conn.buf[base + d.start..base + d.end]);
                        }
                        ChunkEvent::Done => {
                            let clean = pos == conn.buf.len();
                            return Ok((body, resp.keep_alive && clean));
                        }
                        _ => {}
                    }
                }
                // Keep the head (the caller may still read it); drop consumed chunks.
                conn.buf.truncate(resp.head_len);
                pos = resp.head_len;
                read_more(conn, deadline).await?;
            }
        }
        BodyFraming::UntilClose => Err(UpstreamError::BadResponse(
            "close-delimited body cannot be kept",
        )),
    }
}

/// Read and drop the response whose head `resp` is at the front of `conn.buf`, head
/// and body (mirroring: the answer is not wanted, only the connection). Bytes after
/// it (the next answer on a pipelined connection) stay at the front of `conn.buf`.
/// Returns whether the connection can carry another exchange: not when the body is
/// close-delimited, or longer than `limit` (reading it would cost more than a new
/// connection; the connection is given up instead), or the upstream said close.
pub async fn discard(
    conn: &mut UpConn,
    resp: &ResponseHead,
    limit: u64,
    deadline: Instant,
) -> Result<bool, UpstreamError> {
    match resp.body {
        BodyFraming::Empty => {
            conn.buf.drain(..resp.head_len);
            Ok(resp.keep_alive)
        }
        BodyFraming::Length(n) if n > limit => Ok(false),
        BodyFraming::Length(n) => {
            let (mut left, mut at) = (n, resp.head_len);
            loop {
                let have = (conn.buf.len() - at) as u64;
                if have >= left {
                    conn.buf.drain(..at + left as usize);
                    return Ok(resp.keep_alive);
                }
                left -= have;
                conn.buf.clear();
                at = 0;
                read_more(conn, deadline).await?;
            }
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut pos = resp.head_len;
            loop {
                while pos < conn.buf.len() {
                    let (used, ev) = dec
                        .step(&conn.buf[pos..])
                        .map_err(|_| UpstreamError::BadResponse("invalid chunked body"))?;
                    pos += used;
                    if let ChunkEvent::Done = ev {
                        conn.buf.drain(..pos);
                        return Ok(resp.keep_alive);
                    }
                }
                if dec.body_bytes > limit {
                    return Ok(false);
                }
                conn.buf.clear();
                pos = 0;
                read_more(conn, deadline).await?;
            }
        }
        BodyFraming::UntilClose => Ok(false),
    }
}

async fn read_more(conn: &mut UpConn, deadline: Instant) -> Result<(), UpstreamError> {
    match monoio::time::timeout_at(
        deadline,
        read_append(&mut conn.stream, &mut conn.buf, UP_BUF),
    )
    .await
    {
        Ok(Ok(0)) => Err(UpstreamError::Truncated),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(UpstreamError::Io(e)),
        Err(_) => Err(UpstreamError::Timeout),
    }
}

/// A whole response: its head bytes and its body.
#[derive(Debug)]
pub struct Whole {
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

/// Send `request` (all in memory) to server `si` and read the whole response (body at
/// most `limit`), within `timeout` from the request's end to the last byte. A pooled
/// connection that fails before any answer byte is replaced once by a new one; a
/// clean connection goes back to the pool. `resp` holds the parsed head.
pub async fn fetch(
    up: &UpstreamState,
    si: usize,
    request: &mut Vec<u8>,
    resp: &mut ResponseHead,
    limits: HeadLimits,
    limit: usize,
    timeout: Duration,
) -> Result<Whole, UpstreamError> {
    let mut fresh = false;
    loop {
        let mut conn = checkout(up, si, Instant::now(), fresh).await?;
        let got = async {
            send(&mut conn, request).await?;
            let deadline = Instant::now() + timeout;
            read_final_head(&mut conn, resp, limits, false, deadline).await?;
            read_whole(&mut conn, resp, limit, deadline).await
        }
        .await;
        match got {
            Ok((body, reusable)) => {
                let head = conn.buf[..resp.head_len].to_vec();
                if reusable {
                    conn.buf.clear();
                    up.put_idle(si, conn, Instant::now());
                }
                return Ok(Whole { head, body });
            }
            Err(e) if !fresh && e.is_stale(&conn) => fresh = true,
            Err(e) => return Err(e),
        }
    }
}
