//! A client connection: wait for a request, read its head (under the idle,
//! header-read and size limits), hand it to [`super::proxy::handle`], and loop while
//! the connection may be kept alive. Malformed heads are answered with a JSON error and
//! the connection is closed: after a framing error nothing later on the connection can
//! be trusted.
//!
//! A connection lives in two states. **Idle** ([`Idle`]): its socket and its peer's
//! address, waiting for readability with no buffer and no read posted, so a sleeping
//! keep-alive connection costs a few hundred bytes (see [`idle_state_bytes`]).
//! **Busy** ([`Downstream`]): once bytes arrive it takes its buffers from the worker's
//! pool ([`crate::http::buffers`]) and its request state, on the heap for as long as
//! it stays busy. After each exchange it keeps them for `buffer_hold` with a read
//! posted for the next request, as a busy connection wants (one operation per
//! request); if none comes by then the read is cancelled (its buffer comes back, with
//! any bytes that raced the cancel) and the connection goes idle again, giving the
//! buffers back.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;
use monoio::time::Instant;
use rustls::server::UnbufferedServerConnection;

use super::forward::Peer;
use super::proxy;
use crate::http::buffers;
use crate::http::generated::write_error;
use crate::http::io::{read_append, write_all};
use crate::http::{RequestHead, ResponseHead};
use crate::pipeline::local::Local;
use crate::task::deadline::Sleep;
use crate::tls::stream::TlsStream;

/// What a client read of a request body asks room for (the buffer grows to it);
/// heads are read into what the pool gave, [`buffers::LARGE`].
pub const READ_BUF: usize = 16 * 1024;

/// A client's connection: plain TCP or TLS.
pub type ClientStream = crate::tls::stream::Stream<UnbufferedServerConnection>;

/// What a client connection keeps while it waits for a request: its socket and who is
/// at the other end. No buffer, no request state.
pub struct Idle {
    stream: ClientStream,
    addr: IpAddr,
}

/// A busy client connection: its socket, its buffers (from the worker's pool) and the
/// current request's state, reused by every request until it goes idle.
pub struct Downstream {
    pub stream: ClientStream,
    /// Bytes read from the client and not consumed yet.
    pub rbuf: Vec<u8>,
    /// Bytes for the client (response heads, small bodies, re-framed chunks).
    pub obuf: Vec<u8>,
    /// Bytes for the upstream (request head, small bodies, re-framed chunks).
    pub ubuf: Vec<u8>,
    pub peer: Peer,
    /// The current request's state as the stages see it (reused by each request).
    pub cx: super::context::RequestCtx,
    /// Cancels the read posted between requests when `buffer_hold` runs out.
    canceller: Canceller,
}

impl Downstream {
    fn busy(w: &Local, idle: Idle) -> Downstream {
        let addr = idle.addr;
        let https = idle.stream.tls().is_some();
        let client_cert = idle.stream.tls().and_then(|t| t.peer_cert.clone());
        Downstream {
            stream: idle.stream,
            rbuf: buffers::large(),
            // Response heads and small bodies: it grows when a response needs more
            // (a re-framed chunked body, a cached body copied in).
            obuf: buffers::small(),
            ubuf: buffers::small(),
            peer: Peer {
                addr,
                ip: addr.to_string(),
                trusted: w
                    .cfg
                    .server
                    .trusted_proxies
                    .iter()
                    .any(|n| n.contains(&addr)),
                https,
                client_cert,
            },
            cx: Default::default(),
            canceller: Canceller::new(),
        }
    }

    /// Give the buffers back to the worker's pool (a TLS stream's too).
    fn release(&mut self) {
        self.stream.release();
        buffers::give(&mut self.rbuf);
        buffers::give(&mut self.obuf);
        buffers::give(&mut self.ubuf);
    }

    fn idle(mut self) -> Idle {
        self.release();
        Idle {
            stream: self.stream,
            addr: self.peer.addr,
        }
    }
}

enum HeadRead {
    /// Close without answering (client left, idle timeout, shutdown).
    Close,
    /// Nothing came within `buffer_hold` of the last exchange (then): go idle.
    Quiet(Instant),
    /// Answer with this status and message, then close.
    Reject(u16, String),
}

/// Serve one client connection to its end.
///
/// Not an `async fn`: its arguments would be kept in the future twice (as arguments
/// and as locals). The block below captures the idle state once and uses it in place.
pub fn serve(
    w: Rc<Local>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
) -> impl Future<Output = ()> {
    let addr = peer.ip().to_canonical();
    // A TLS connection's session is made here, its handshake run first thing in the
    // task: the state is built once, outside the future, and used in place.
    let (stream, usable) = if tls {
        match crate::pipeline::tls::session(&w) {
            Some(session) => (
                ClientStream::Tls(Box::new(TlsStream::new(stream, session))),
                true,
            ),
            None => (ClientStream::Plain(stream), false),
        }
    } else {
        (ClientStream::Plain(stream), true)
    };
    let mut conn = Idle { stream, addr };
    // The first request's head must be whole within `header_read_timeout` of accept;
    // later ones must begin within `idle_timeout` of the last exchange.
    let mut until = Instant::now() + w.cfg.server.limits.header_read_timeout;
    async move {
        if !usable {
            return;
        }
        if let ClientStream::Tls(t) = &mut conn.stream {
            // Boxed like the busy state: the handshake's state is gone once it ends.
            if !Box::pin(crate::pipeline::tls::handshake(&w, t, addr)).await {
                return;
            }
        }
        let mut first = true;
        loop {
            // Shutdown ends the wait through its deadline: the worker expires every
            // deadline when it begins to shut down (`Deadlines::expire_all`), so an
            // idle connection has one registration, not two.
            if w.shutdown.is_set() {
                return;
            }
            // A TLS connection may hold bytes already read (the request sent with
            // the handshake's last flight): no wait then.
            let ready = conn.stream.has_buffered()
                || Readable {
                    ready: conn.stream.socket().readable(false),
                    timer: w.deadlines.sleep_until(until),
                }
                .await;
            if !ready {
                return;
            }
            // Boxed: the request path's state is on the heap only while the
            // connection is busy, and the idle connection's future stays small.
            let head_deadline = first.then_some(until);
            first = false;
            match Box::pin(busy(&w, Downstream::busy(&w, conn), head_deadline)).await {
                Some((idle, since)) => {
                    conn = idle;
                    until = since + w.cfg.server.limits.idle_timeout;
                }
                None => return,
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// An idle connection's wait, holding nothing but the socket: until it is
    /// readable (bytes, end of stream or an error: the read that follows tells which)
    /// or the deadline passes. Written out rather than with `select!`, whose state is
    /// twice the size.
    struct Readable<'a, R> {
        #[pin]
        ready: R,
        timer: Sleep<'a>,
    }
}

impl<R: Future<Output = std::io::Result<()>>> Future for Readable<'_, R> {
    /// True when readable, false when the deadline passed first.
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        if let Poll::Ready(r) = this.ready.poll(cx) {
            return Poll::Ready(r.is_ok());
        }
        Pin::new(this.timer).poll(cx).map(|()| false)
    }
}

/// The size of an idle connection's state: the future of [`serve`], which the worker
/// spawns as the connection's task, while it waits in [`Readable`].
pub fn idle_state_bytes() -> usize {
    fn output_size<F, A, B, C, D, R>(_: &F) -> usize
    where
        F: Fn(A, B, C, D) -> R,
    {
        std::mem::size_of::<R>()
    }
    output_size(&serve)
}

/// Serve requests while they keep coming: returns the connection to idle, with the
/// time its last exchange ended, or `None` when it is to be closed.
async fn busy(
    w: &Rc<Local>,
    mut c: Downstream,
    mut head_deadline: Option<Instant>,
) -> Option<(Idle, Instant)> {
    let _busy = crate::telemetry::Held::new(&w.counters.connections_busy);
    let mut head = RequestHead::default();
    let mut resp = ResponseHead::default();
    loop {
        match read_head(w, &mut c, &mut head, head_deadline.take()).await {
            Ok(()) => {}
            Err(HeadRead::Quiet(since)) => return Some((c.idle(), since)),
            Err(HeadRead::Close) => {
                c.release();
                return None;
            }
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
                c.release();
                return None;
            }
        }
        let keep = proxy::handle(w, &mut c, &mut head, &mut resp).await;
        if !keep || w.shutdown.is_set() {
            if c.cx.linger {
                linger(&mut c).await;
            }
            c.release();
            return None;
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
/// `head_deadline`: when the head must be whole (a connection's first request: the
/// clock started at accept).
async fn read_head(
    w: &Rc<Local>,
    c: &mut Downstream,
    head: &mut RequestHead,
    head_deadline: Option<Instant>,
) -> Result<(), HeadRead> {
    let limits = &w.cfg.server.limits;
    // The header-read clock starts at the first byte of the head (bytes already
    // buffered by pipelining count), or at accept for a connection's first request.
    let mut head_deadline = head_deadline
        .or_else(|| (!c.rbuf.is_empty()).then(|| Instant::now() + limits.header_read_timeout));
    loop {
        if !c.rbuf.is_empty() {
            match head.parse(&c.rbuf, limits.max_header_bytes, limits.max_headers) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(HeadRead::Reject(e.status(), e.to_string())),
            }
        }
        let res = match head_deadline {
            // Between requests: wait for the next one with the buffer, for a while.
            None => next_request(w, c).await?,
            // Nothing of the first request yet (the socket was readable: usually its
            // bytes are there). Nothing by the deadline closes without an answer.
            Some(d) if c.rbuf.is_empty() => monoio::select! {
                r = read_append(&mut c.stream, &mut c.rbuf, buffers::HEAD_SPARE) => r,
                _ = monoio::time::sleep_until(d) => return Err(HeadRead::Close),
                _ = w.shutdown.wait() => return Err(HeadRead::Close),
            },
            Some(d) => {
                match monoio::time::timeout_at(
                    d,
                    read_append(&mut c.stream, &mut c.rbuf, buffers::HEAD_SPARE),
                )
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
            }
        };
        if let Ok(0) | Err(_) = res {
            return Err(HeadRead::Close);
        }
        // Started here, at the first read that left the head incomplete (a head that
        // arrives whole in one read, the usual case, never reads the clock).
        head_deadline.get_or_insert_with(|| Instant::now() + limits.header_read_timeout);
    }
}

/// The read posted after an exchange, for the next request on a kept-alive
/// connection: it waits with the buffer for `buffer_hold` (and no longer than
/// `idle_timeout`). `Quiet` when nothing came by then: the read is cancelled and its
/// buffer comes back to `c.rbuf`, holding whatever bytes the cancel raced with.
async fn next_request(w: &Local, c: &mut Downstream) -> Result<std::io::Result<usize>, HeadRead> {
    let limits = &w.cfg.server.limits;
    let since = Instant::now();
    if limits.buffer_hold.is_zero() {
        return Err(HeadRead::Quiet(since));
    }
    let idle_end = since + limits.idle_timeout;
    let until = idle_end.min(since + limits.buffer_hold);
    if c.rbuf.capacity() < buffers::LARGE {
        c.rbuf.reserve(buffers::LARGE);
    }
    let buf = std::mem::take(&mut c.rbuf);
    let cap = buf.capacity();
    let read = c
        .stream
        .cancelable_read(buf.slice_mut(0..cap), c.canceller.handle());
    let mut read = std::pin::pin!(read);
    let ended = monoio::select! {
        r = &mut read => Some(r),
        _ = monoio::time::sleep_until(until) => None,
        // The read (and its buffer) is dropped: the connection closes.
        _ = w.shutdown.wait() => return Err(HeadRead::Close),
    };
    let timed_out = ended.is_none();
    let (res, slice) = match ended {
        Some(r) => r,
        None => {
            c.canceller = std::mem::take(&mut c.canceller).cancel();
            read.await
        }
    };
    c.rbuf = slice.into_inner();
    match res {
        Ok(n) => Ok(Ok(n)),
        // Cancelled (or failed as it was): the connection goes idle, or closes if
        // its idle time is over. A broken socket is found by the next wait.
        Err(_) if timed_out && until < idle_end => Err(HeadRead::Quiet(since)),
        Err(e) => Ok(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    /// What a sleeping connection keeps, besides its socket's kernel state: this
    /// future (inside its task) and a deadline entry. 272 bytes at this writing.
    #[test]
    fn an_idle_connection_is_small() {
        let n = super::idle_state_bytes();
        eprintln!("idle connection state: {n} bytes");
        assert!(n <= 320, "the idle connection's future grew to {n} bytes");
    }
}
