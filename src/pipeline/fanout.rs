//! Fan-out routes (`fanout = { upstreams, require, timeout_ms }`): the request body is
//! streamed to every destination at once, in bounded memory, and the client gets 200
//! with a JSON summary of each destination's answer when `require` of them answered
//! 2xx, else 502 with the same summary. The I/O driver (`super::proxy`) calls
//! [`serve`] at the one point where it would otherwise pick an upstream: after the
//! request phase (auth, rate limits), so a fan-out route is protected like any other.
//!
//! Each destination is an upstream of the configuration, with its own server choice
//! (balancer, health, circuit breaker), pool, timeouts and `request_headers`; its
//! request head is the one `forward` writes for a proxied request (rewrite or
//! `strip_prefix`, forwarding fields). They are connected to concurrently; a
//! destination that cannot be reached is dropped before any of the body is read, and
//! if too few are left to meet `require` the client is answered 502 at once (an
//! `Expect: 100-continue` client then never sends its body).
//!
//! # The body and its bound
//!
//! The body is read from the client in pieces of at most [`CHUNK`] bytes, each into
//! one buffer that is written to all live destinations from the same allocation (an
//! `Rc<Vec<u8>>`, which monoio accepts as a write buffer: one reference per write, no
//! copy per destination). The next piece is read from the client while the current one
//! is being written, and no further: the client is not read while any live destination
//! has not taken the piece before. So a fan-out holds at most two pieces (2 x
//! [`CHUNK`] = 256 KiB) in user space, plus the client connection's read buffer
//! (chunked bodies are decoded from it: one read of up to [`CHUNK`], so at most about
//! 2 x [`CHUNK`] of capacity, given back at the end), whatever the body's size and
//! however slow one destination is; beyond that only the kernel's socket buffers hold
//! bytes. The price is that the whole fan-out moves at the pace of its slowest live
//! destination: a faster one cannot run ahead by more than a piece without memory
//! growing with the lag.
//!
//! Framing: a Content-Length body goes to every destination with the same
//! Content-Length, byte for byte. A chunked body is decoded (and so validated: a
//! malformed one is refused with 400 rather than handed on to several origins) and
//! re-chunked, one chunk per piece read, its trailers dropped as the proxy drops them;
//! passing the client's framing through verbatim would hand bytes nobody checked to
//! every destination.
//!
//! # Failures
//!
//! A destination whose write fails, or that answers before the body is done (an early
//! 413 is seen through a second handle on its socket, as `proxy` watches a streamed
//! upload), is dropped from the stream with its answer (status) or error as its
//! result; the others go on. An early 2xx that keeps the connection open is not a
//! refusal: that destination is sent the rest, and its answer stands. When those still live (or already answered 2xx) can no
//! longer meet `require`, the fan-out stops: 502 with the summary, and the client
//! connection closes with a lingering close since its body was not read to its end.
//! After the body, each destination's final head is read within its upstream's
//! `response_timeout`, and its body drained (up to [`DRAIN_LIMIT`]); the connection
//! goes back to the pool only when the response was read whole. `timeout_ms` bounds
//! the whole fan-out: a destination that has not answered by then is a timeout in the
//! summary. Each destination's result is recorded in its server's circuit breaker and
//! metrics (`ringgate_fanout_destinations_total{upstream,server,result}`, and the
//! per-server metrics of a proxied attempt: an answer's duration, a failure's kind)
//! and in the access log (the `upstream` field lists `name:status` or `name:error`
//! for each destination).

mod body;
mod report;

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::conn::Downstream;
use super::error::ProxyError;
use super::forward;
use super::local::Local;
use super::outbound;
use super::stack::{self, Pipeline, Route, Target};
use crate::config::{Respond, RouteTarget};
use crate::http::buffers::LARGE;
use crate::http::generated::write_error;
use crate::http::io::write_all;
use crate::http::sock;
use crate::http::{BodyFraming, ChunkedDecoder, Method, RequestHead, ResponseHead};
use crate::telemetry::Held;
use crate::upstream::client::{self, HeadLimits};
use crate::upstream::pool::{UpConn, UP_BUF};
use crate::upstream::UpstreamState;
use body::{BodyError, BodyIn, SIZE_LINE};
use report::{log_summary, record, summary_json};

/// The most body bytes read from the client at once, and so the size of each piece
/// written to the destinations. Two pieces exist at a time (see the module docs).
pub const CHUNK: usize = 128 * 1024;
/// A destination's response body is drained up to this much (the summary keeps only
/// its status); a larger one costs its connection, not memory.
pub const DRAIN_LIMIT: usize = 64 * 1024;

/// A destination's result.
enum Outcome {
    /// It answered with this status (2xx counts towards `require`).
    Status(u16),
    Failed(ProxyError),
}

/// One destination of a fan-out.
struct Dest<'a> {
    name: &'a str,
    ui: usize,
    up: &'a UpstreamState,
    /// The server chosen, once chosen.
    si: Option<usize>,
    /// The balancer's hash key (`hash_header`), when the upstream has one.
    hash_key: Option<Vec<u8>>,
    /// Its request head, then nothing.
    head: Vec<u8>,
    conn: Option<UpConn>,
    /// A second handle on a plain TCP connection, to see an early answer while a
    /// write waits (`sock::watcher`).
    watcher: Option<TcpStream>,
    resp: ResponseHead,
    /// Body bytes (payload, not chunk framing) it took.
    sent: u64,
    /// It answered 2xx, keeping the connection, before the body was done: it takes
    /// the rest, and its answer (in `conn.buf`) is read by `finish`.
    early_ok: bool,
    /// `None` while it is live.
    outcome: Option<Outcome>,
    started: Instant,
    _in_flight: Option<Held<'a, u32>>,
}

impl Dest<'_> {
    fn live(&self) -> bool {
        self.outcome.is_none()
    }

    fn ok(&self) -> bool {
        matches!(self.outcome, Some(Outcome::Status(s)) if (200..300).contains(&s))
    }

    fn fail(&mut self, e: ProxyError) {
        self.conn = None;
        self.watcher = None;
        self.outcome = Some(Outcome::Failed(e));
    }

    /// An answer: the status is its result; its connection is closed unless
    /// `finish` pools it.
    fn answered(&mut self) {
        self.watcher = None;
        self.outcome = Some(Outcome::Status(self.resp.status));
    }

    /// Pick a server, connect (or reuse a pooled connection) and send the head. A
    /// pooled connection that fails at once is replaced by a new one, once.
    async fn open(&mut self, now: Instant) {
        let up = self.up;
        let load = |i: usize| up.servers[i].in_flight.get();
        let Some(si) = up
            .balancer
            .pick(&|i| up.available(i, now), &load, self.hash_key.as_deref())
        else {
            return self.fail(ProxyError::NoServer);
        };
        self.si = Some(si);
        self._in_flight = Some(Held::new(&up.servers[si].in_flight));
        let mut fresh = false;
        loop {
            let mut conn = match client::checkout(up, si, now, fresh).await {
                Ok(conn) => conn,
                Err(e) => return self.fail(e.into()),
            };
            match client::send(&mut conn, &mut self.head).await {
                Ok(()) => {
                    self.watcher = conn.stream.tcp().and_then(|t| sock::watcher(t).ok());
                    self.conn = Some(conn);
                    self.head = Vec::new();
                    return;
                }
                Err(e) if !fresh && e.is_stale(&conn) => fresh = true,
                Err(e) => return self.fail(e.into()),
            }
        }
    }

    /// Write `piece[start..]` (`payload` body bytes), unless the destination answers
    /// first.
    async fn write(&mut self, piece: Rc<Vec<u8>>, start: usize, payload: u64, x: &Exch) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let UpConn { stream, buf, .. } = conn;
        // The write (which borrows the connection) ends with this block.
        let written = {
            let mut write = std::pin::pin!(stream.write_all(piece.slice(start..)));
            let watcher = match self.early_ok {
                true => None,
                false => self.watcher.as_ref(),
            };
            match watcher {
                Some(watcher) => {
                    let first = {
                        let answer =
                            std::pin::pin!(wait_final_head(watcher, buf, &mut self.resp, x));
                        monoio::select! {
                            // The piece first: when both are ready, it went through.
                            biased;
                            r = &mut write => Ok(r.0),
                            r = answer => Err(r),
                        }
                    };
                    match first {
                        // A 2xx that keeps the connection open does not refuse the rest
                        // (a client stops sending for an error or an answer that
                        // closes, RFC 9112): the origin goes on reading it, so the body
                        // goes on, and the answer waits in `conn.buf` for `finish`.
                        Err(Ok(()))
                            if (200..300).contains(&self.resp.status) && self.resp.keep_alive =>
                        {
                            self.early_ok = true;
                            Ok(write.await.0)
                        }
                        other => other,
                    }
                }
                None => Ok(write.await.0),
            }
        };
        match written {
            Ok(Ok(_)) => self.sent += payload,
            Ok(Err(e)) if self.early_ok => self.fail(ProxyError::UpstreamIo(e)),
            // It stopped taking the body, perhaps because it answered and closed:
            // what it sent before that is its answer.
            Ok(Err(e)) => {
                self.watcher = None;
                let deadline = Instant::now() + self.up.cfg.response_timeout;
                match client::read_final_head(conn, &mut self.resp, x.limits, x.head_only, deadline)
                    .await
                {
                    Ok(()) => self.answered(),
                    Err(_) => self.fail(ProxyError::UpstreamIo(e)),
                }
            }
            // An answer before the body was done: its result; the rest is not sent.
            Err(Ok(())) => self.answered(),
            Err(Err(e)) => self.fail(e),
        }
        if self.outcome.is_some() {
            self.conn = None;
        }
    }

    /// The body is sent: read the final head, drain the body, pool the connection
    /// when the response was read whole.
    async fn finish(&mut self, x: &Exch) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        // The watcher's descriptor goes first: the connection may be pooled.
        self.watcher = None;
        let deadline = Instant::now() + self.up.cfg.response_timeout;
        if !self.early_ok {
            if let Err(e) =
                client::read_final_head(conn, &mut self.resp, x.limits, x.head_only, deadline).await
            {
                return self.fail(e.into());
            }
        }
        self.outcome = Some(Outcome::Status(self.resp.status));
        let reusable = matches!(
            client::read_whole(conn, &self.resp, DRAIN_LIMIT, deadline).await,
            Ok((_, true))
        );
        let conn = self.conn.take();
        if let (true, Some(mut conn), Some(si)) = (reusable, conn, self.si) {
            conn.buf.clear();
            self.up.put_idle(si, conn, Instant::now());
        }
    }
}

/// What every destination's exchange shares.
struct Exch {
    limits: HeadLimits,
    head_only: bool,
}

/// Wait until `buf` holds a complete final response head, reading through `watcher`
/// without ever leaving a read in flight (as `proxy` does for a streamed upload).
async fn wait_final_head(
    watcher: &TcpStream,
    buf: &mut Vec<u8>,
    resp: &mut ResponseHead,
    x: &Exch,
) -> Result<(), ProxyError> {
    loop {
        let mut at = 0;
        while at < buf.len() {
            match resp.parse(
                &buf[at..],
                x.limits.max_bytes,
                x.limits.max_headers,
                x.head_only,
            ) {
                Ok(true) if (100..200).contains(&resp.status) && resp.status != 101 => {
                    at += resp.head_len
                }
                Ok(true) => {
                    buf.drain(..at);
                    return Ok(());
                }
                Ok(false) => break,
                Err(_) => return Err(ProxyError::UpstreamBadResponse("malformed response head")),
            }
        }
        watcher
            .readable(false)
            .await
            .map_err(ProxyError::UpstreamIo)?;
        match sock::recv_now(watcher, buf, UP_BUF) {
            Ok(Some(0)) => return Err(ProxyError::UpstreamClosed),
            Ok(_) => {}
            Err(e) => return Err(ProxyError::UpstreamIo(e)),
        }
    }
}

/// Await all of `futs` together (each polled when woken, in turn).
async fn join_all<F: Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futs.iter_mut().zip(outs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

/// Destinations live or already answered 2xx can still meet `require`.
fn can_meet(dests: &[Dest<'_>], require: usize) -> bool {
    dests.iter().filter(|d| d.live() || d.ok()).count() >= require
}

/// Connect, stream the body, read the answers. `Ok(false)`: stopped early, too few
/// destinations left to meet `require` (`body.done` says whether the body was read
/// to its end all the same).
async fn exchange(
    c: &mut Downstream,
    dests: &mut [Dest<'_>],
    body: &mut BodyIn,
    require: usize,
    expect_continue: bool,
    x: &Exch,
) -> Result<bool, BodyError> {
    let now = Instant::now();
    join_all(dests.iter_mut().map(|d| d.open(now))).await;
    if !can_meet(dests, require) {
        return Ok(false);
    }
    if expect_continue && c.rbuf.is_empty() && !body.done {
        // The client waits for our go-ahead (RFC 9110 10.1.1); the destinations
        // never saw Expect.
        c.obuf.clear();
        c.obuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        write_all(&mut c.stream, &mut c.obuf)
            .await
            .map_err(|_| BodyError {
                status: None,
                message: "client connection failed",
            })?;
    }
    let fresh = || Vec::with_capacity(CHUNK + SIZE_LINE + 8);
    // The buffer of the piece written last, for the next read.
    let mut spare = Vec::new();
    if !body.done {
        let (mut piece, mut start, mut payload) = body.next(c, fresh()).await?;
        loop {
            let shared = Rc::new(piece);
            let live = |d: &&mut Dest<'_>| d.live();
            if body.done {
                join_all(
                    dests
                        .iter_mut()
                        .filter(live)
                        .map(|d| d.write(shared.clone(), start, payload, x)),
                )
                .await;
                break;
            }
            // The next piece is read while this one is written, and no further.
            let next = match spare.capacity() {
                0 => fresh(),
                _ => std::mem::take(&mut spare),
            };
            let (_, read) = monoio::join!(
                join_all(dests.iter_mut().filter(live).map(|d| d.write(
                    shared.clone(),
                    start,
                    payload,
                    x
                )),),
                body.next(c, next),
            );
            // Every write is over: the piece's buffer is free again (unless a write
            // cut short still holds it, then a new one is made next time).
            if let Ok(v) = Rc::try_unwrap(shared) {
                spare = v;
            }
            (piece, start, payload) = read?;
            if !can_meet(dests, require) || !dests.iter().any(|d| d.live()) {
                return Ok(false);
            }
        }
    }
    join_all(dests.iter_mut().map(|d| d.finish(x))).await;
    Ok(true)
}

/// Serve a request on a fan-out route (`entry.target` is `Target::Fanout`), from its
/// parsed head to the client's answer and the access log. Returns whether the client
/// connection may be reused.
pub async fn serve(
    w: &Rc<Local>,
    pl: &Rc<Pipeline>,
    c: &mut Downstream,
    head: &RequestHead,
    entry: &Rc<Route>,
) -> bool {
    let (Target::Fanout(targets), RouteTarget::Fanout(fan)) = (&entry.target, &entry.cfg.target)
    else {
        return false;
    };
    let route = &entry.cfg;
    let started = c.cx.started;
    let head_only = head.method == Method::Head;
    let max = route
        .max_body_bytes
        .unwrap_or(w.cfg.server.limits.max_body_bytes);
    if let BodyFraming::Length(n) = head.body {
        if n > max {
            c.rbuf.drain(..head.head_len);
            return answer_error(w, c, route, 413, "request body too large", "", head_only).await;
        }
    }
    // A chunked body whose first bytes came with the head and are already broken is
    // refused before any destination is contacted.
    if head.body == BodyFraming::Chunked {
        if let Some((status, message)) =
            super::proxy::check_first_chunks(&c.rbuf[head.head_len..], max)
        {
            c.rbuf.drain(..head.head_len);
            return answer_error(w, c, route, status, message, "", head_only).await;
        }
    }
    // Each destination's head: as the proxy would send it to that upstream.
    let path = outbound::matched_path(head, &c.rbuf, &c.cx.path);
    let rewritten = match outbound::rewrite(route, head, &c.rbuf, path, &mut c.cx.rewritten) {
        Ok(done) => done,
        Err(e) => {
            c.rbuf.drain(..head.head_len);
            return answer_error(w, c, route, 500, &e.to_string(), "", head_only).await;
        }
    };
    let mut fields = Vec::new();
    let mut dests: Vec<Dest<'_>> = Vec::with_capacity(targets.len());
    for (ui, up) in targets {
        fields.clear();
        let buf = &c.rbuf;
        outbound::upstream_headers(
            &up.cfg.request_headers,
            &outbound::Facts {
                head,
                buf,
                path: outbound::matched_path(head, buf, &c.cx.path),
                route,
                request_id: &c.cx.request_id,
                client_ip: c.peer.addr,
                identity: c.cx.identity.as_deref(),
                default_plan: pl.cfg.rate_limit.default_plan.get_ref(),
            },
            &mut fields,
        );
        let o = forward::Outbound::for_request(pl, route, &c.peer, &c.cx, up, &fields, rewritten);
        let mut bytes = Vec::with_capacity(1024);
        forward::upstream_request(&mut bytes, head, buf, &o);
        dests.push(Dest {
            name: &up.cfg.name,
            ui: *ui,
            up,
            si: None,
            hash_key: up
                .balancer
                .hash_header()
                .and_then(|h| head.header(buf, h))
                .map(<[u8]>::to_vec),
            head: bytes,
            conn: None,
            watcher: None,
            resp: ResponseHead::default(),
            sent: 0,
            early_ok: false,
            outcome: None,
            started,
            _in_flight: None,
        });
    }
    let keep_alive = head.keep_alive;
    let expect_continue = head.expect_continue;
    let mut body = BodyIn {
        framing: head.body,
        remaining: match head.body {
            BodyFraming::Length(n) => n,
            _ => 0,
        },
        dec: ChunkedDecoder::new(),
        max,
        done: matches!(
            head.body,
            BodyFraming::Empty | BodyFraming::UntilClose | BodyFraming::Length(0)
        ),
        read: 0,
    };
    // The head is used: from here on only the body is in `c.rbuf`.
    c.rbuf.drain(..head.head_len);
    let x = Exch {
        limits: HeadLimits::from(&w.cfg.server.limits),
        head_only,
    };
    let ran = monoio::time::timeout_at(
        started + fan.timeout,
        exchange(c, &mut dests, &mut body, fan.require, expect_continue, &x),
    )
    .await;
    for d in dests.iter_mut().filter(|d| d.live()) {
        d.fail(match &ran {
            Ok(Ok(false)) => ProxyError::UpstreamBadResponse(
                "not sent the rest: too few destinations left to meet `require`",
            ),
            Ok(Err(_)) => ProxyError::UpstreamBadResponse("the client's body ended early"),
            _ => ProxyError::ResponseTimeout,
        });
    }
    // A chunked body grew the read buffer (to at most about 2 x CHUNK): back to its
    // usual size, so that the connection's pool can take it again.
    if c.rbuf.capacity() > LARGE && c.rbuf.len() <= LARGE {
        c.rbuf.shrink_to(LARGE);
    }
    record(w, pl, &dests);
    c.cx.observed.bytes_in += body.read;
    let summary = log_summary(&dests);
    match ran {
        Ok(Err(e)) => {
            c.cx.linger = true;
            match e.status {
                Some(status) => {
                    answer_error(w, c, route, status, e.message, &summary, head_only).await
                }
                None => {
                    stack::done(w, &mut c.cx, 400, false);
                    w.counters.count_status(400);
                    super::proxy::log(w, c, 400, &route.id, &summary, 0);
                    false
                }
            }
        }
        _ => {
            let ok = dests.iter().filter(|d| d.ok()).count();
            let status = if ok >= fan.require { 200 } else { 502 };
            let keep = keep_alive && body.done && !w.shutdown.is_set();
            c.cx.linger = !body.done;
            let json = summary_json(&dests, ok, fan.require);
            c.obuf.clear();
            let date = *w.date.borrow();
            super::respond::write(
                &mut c.obuf,
                &Respond {
                    status,
                    body: json.into_bytes().into(),
                    content_type: "application/json".to_owned(),
                },
                &route.response_headers,
                &c.cx.request_id,
                &date,
                &c.cx.extra,
                !keep,
                head_only,
            );
            let bytes = c.obuf.len() as u64;
            let written = write_all(&mut c.stream, &mut c.obuf).await.is_ok();
            c.cx.observed.bytes_out = bytes;
            stack::done(w, &mut c.cx, status, written && status == 200);
            w.counters.count_status(status);
            super::proxy::log(w, c, status, &route.id, &summary, bytes);
            keep && written
        }
    }
}

/// A JSON error for the client; the connection closes (lingering when the body was
/// not read).
#[allow(clippy::too_many_arguments)]
async fn answer_error(
    w: &Local,
    c: &mut Downstream,
    route: &crate::config::RouteConfig,
    status: u16,
    message: &str,
    summary: &str,
    head_only: bool,
) -> bool {
    c.cx.linger = true;
    c.obuf.clear();
    let date = *w.date.borrow();
    write_error(
        &mut c.obuf,
        status,
        message,
        &c.cx.request_id,
        &date,
        true,
        head_only,
        &c.cx.extra,
    );
    let bytes = c.obuf.len() as u64;
    let _ = write_all(&mut c.stream, &mut c.obuf).await;
    c.cx.observed.bytes_out = bytes;
    stack::done(w, &mut c.cx, status, false);
    w.counters.count_status(status);
    super::proxy::log(w, c, status, &route.id, summary, bytes);
    false
}
