//! A client connection: read a request head (under the idle, header-read and size
//! limits), hand the request to [`super::proxy::handle`], and loop while the connection
//! may be kept alive. Malformed heads are answered with a JSON error and the connection
//! is closed: after a framing error nothing later on the connection can be trusted.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::net::TcpStream;
use monoio::time::Instant;

use super::forward::Peer;
use super::proxy;
use crate::http::generated::write_error;
use crate::http::io::{read_append, write_all};
use crate::http::{RequestHead, ResponseHead};
use crate::pipeline::local::Local;

/// Read-buffer growth step (and initial capacity) for client connections.
pub const READ_BUF: usize = 16 * 1024;

/// One client connection's buffers, reused by every request on it.
pub struct Downstream {
    pub stream: TcpStream,
    /// Bytes read from the client and not consumed yet.
    pub rbuf: Vec<u8>,
    /// Bytes for the client (response heads, small bodies, re-framed chunks).
    pub obuf: Vec<u8>,
    /// Bytes for the upstream (request head, small bodies, re-framed chunks).
    pub ubuf: Vec<u8>,
    pub peer: Peer,
    /// The current request's state as the stages see it (reused by each request).
    pub cx: super::context::RequestCtx,
}

enum HeadRead {
    /// Close without answering (client left, idle timeout, shutdown).
    Close,
    /// Answer with this status and message, then close.
    Reject(u16, String),
}

pub async fn serve(w: &Rc<Local>, stream: TcpStream, peer: SocketAddr) {
    let ip = peer.ip().to_canonical();
    let mut c = Downstream {
        stream,
        rbuf: Vec::with_capacity(READ_BUF),
        obuf: Vec::with_capacity(READ_BUF),
        ubuf: Vec::with_capacity(2048),
        cx: Default::default(),
        peer: Peer {
            addr: ip,
            ip: ip.to_string(),
            trusted: w.cfg.server.trusted_proxies.iter().any(|n| n.contains(&ip)),
        },
    };
    let mut head = RequestHead::default();
    let mut resp = ResponseHead::default();
    let mut first = true;
    loop {
        match read_head(w, &mut c, &mut head, first).await {
            Ok(()) => {}
            Err(HeadRead::Close) => return,
            Err(HeadRead::Reject(status, message)) => {
                c.cx.request_id.clear();
                w.new_request_id(&mut c.cx.request_id);
                c.obuf.clear();
                let date = *w.date.borrow();
                write_error(
                    &mut c.obuf,
                    status,
                    &message,
                    &c.cx.request_id,
                    &date,
                    true,
                    false,
                    b"",
                );
                w.counters.count_status(status);
                let _ = write_all(&mut c.stream, &mut c.obuf).await;
                return;
            }
        }
        first = false;
        let keep = proxy::handle(w, &mut c, &mut head, &mut resp).await;
        if !keep || w.shutdown.is_set() {
            if c.cx.linger {
                linger(&mut c).await;
            }
            return;
        }
    }
}

/// How long a lingering close waits for the client in all, and between two reads
/// (nginx's `lingering_time` and `lingering_timeout`).
const LINGER_TIME: Duration = Duration::from_secs(30);
const LINGER_IDLE: Duration = Duration::from_secs(5);

/// Close a connection whose client may still be sending a request body that was
/// answered early (a 413, a 401, an origin's early answer). Closing a socket with
/// unread bytes makes the kernel reset the connection, and a reset can destroy the
/// answer before the client has read it. So the gateway half-closes (the client sees
/// the answer end), then reads and discards what still comes, until the client
/// closes, goes quiet for `LINGER_IDLE`, or `LINGER_TIME` has passed, as nginx's
/// lingering close does. Shutdown's hard stop ends it too (the task is dropped).
async fn linger(c: &mut Downstream) {
    use monoio::io::AsyncWriteRent;
    if c.stream.shutdown().await.is_err() {
        return;
    }
    let end = Instant::now() + LINGER_TIME;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        c.rbuf.clear();
        let read = read_append(&mut c.stream, &mut c.rbuf, READ_BUF);
        match monoio::time::timeout(left.min(LINGER_IDLE), read).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// Read until `head` holds a complete request head at the start of `c.rbuf`.
async fn read_head(
    w: &Rc<Local>,
    c: &mut Downstream,
    head: &mut RequestHead,
    first: bool,
) -> Result<(), HeadRead> {
    let limits = &w.cfg.server.limits;
    // The header-read clock starts at the first byte of the head (bytes already
    // buffered by pipelining count), or at accept for a connection's first request.
    let mut head_deadline =
        (first || !c.rbuf.is_empty()).then(|| Instant::now() + limits.header_read_timeout);
    loop {
        if !c.rbuf.is_empty() {
            match head.parse(&c.rbuf, limits.max_header_bytes, limits.max_headers) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(HeadRead::Reject(e.status(), e.to_string())),
            }
        }
        let res = if c.rbuf.is_empty() {
            // Nothing of a request yet: idle (or not yet started). Shutdown closes it.
            let wait = match head_deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => limits.idle_timeout,
            };
            monoio::select! {
                r = read_append(&mut c.stream, &mut c.rbuf, READ_BUF) => r,
                _ = monoio::time::sleep(wait) => return Err(HeadRead::Close),
                _ = w.shutdown.wait() => return Err(HeadRead::Close),
            }
        } else {
            // Started here, at the first read that left the head incomplete (a head
            // that arrives whole in one read, the usual case, never reads the clock).
            let d =
                *head_deadline.get_or_insert_with(|| Instant::now() + limits.header_read_timeout);
            match monoio::time::timeout_at(d, read_append(&mut c.stream, &mut c.rbuf, READ_BUF))
                .await
            {
                Ok(r) => r,
                Err(_) => {
                    return Err(HeadRead::Reject(
                        408,
                        "the request head was not received in time".into(),
                    ))
                }
            }
        };
        if let Ok(0) | Err(_) = res {
            return Err(HeadRead::Close);
        }
    }
}
