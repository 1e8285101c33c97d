//! The I/O driver of one request: route it, run the stages' phases (`super::stack`,
//! which knows their order; this module names no stage), pick a server, reuse or open
//! a connection through the upstream client (`crate::upstream::client`), send the
//! head (and a small body in the same write), stream a large or chunked body, read the
//! response head, and stream the response back, re-framed for the client. Retries happen only for idempotent requests whose body is still in
//! memory, only before any response byte arrived, and never to the same server twice.
//! A pooled connection is peeked at before reuse (see `UpstreamState::take_idle`); one
//! that still fails before any answer byte is replaced, once, by a newly opened one,
//! for any method whose body can still be sent again.
//!
//! A body that is streamed (not in memory with the head) is sent while the upstream
//! is listened to (`send_body_watching`): an answer that comes before the body is done
//! is relayed at once, and the client connection then closes with a lingering close
//! (`conn::linger`), as it does after any answer given before the body was read.
//!
//! A route with body rules (`json_match`, `validate`, `json_body`) is the exception to
//! streaming: its body is read whole, bounded, before the route is final, and sent
//! from memory with a Content-Length (`super::body`).
//!
//! The fast path (small request, small response) costs one read and one write on each
//! side: the body rides in the head's buffer, and the response body is appended to the
//! response head when it arrived with it.

use std::rc::Rc;
use std::time::SystemTime;

use monoio::time::Instant;

use super::compress;
use super::conn::{Downstream, READ_BUF};
use super::error::ProxyError;
use super::forward::{self, ClientFraming};
use super::outbound;
use super::route::MatchInput;
use super::stack::{self, Flow, Pipeline};
use crate::cache::Body;
use crate::config::RouteConfig;
use crate::http::generated::write_error;
use crate::http::io::{read_append, write_all, write_range};
use crate::http::send_file::{send_file, send_file_tls};
use crate::http::sock;
use crate::http::{BodyFraming, ChunkEvent, ChunkedDecoder, Method, RequestHead, ResponseHead};
use crate::pipeline::local::Local;
use crate::telemetry::access_log::Entry;
use crate::telemetry::metrics::names::method_index;
use crate::upstream::client::{self, Head, HeadLimits};
use crate::upstream::pool::{UpConn, UP_BUF};
use crate::upstream::stream::UpStream;
use crate::upstream::UpstreamState;

mod compressed;

/// Bodies up to this size travel in the same write as their head.
const INLINE_BODY: u64 = 64 * 1024;
/// Re-framed output is flushed once it holds this much.
const FLUSH_AT: usize = 32 * 1024;

/// What the exchange needs of the request after its head bytes are consumed.
#[derive(Clone, Copy)]
struct ReqMeta {
    method: Method,
    version_minor: u8,
    keep_alive: bool,
    expect_continue: bool,
    body: BodyFraming,
}

/// What the exchange reports back, also when it is cut short by the request timeout.
#[derive(Default)]
struct Progress {
    /// Some of the response was written to the client: errors can no longer be
    /// reported with a status, only by closing.
    resp_started: bool,
    /// The status the client got (a stale entry's, when one stood in for an error).
    status: u16,
    /// The status the upstream answered, for its circuit breaker.
    upstream_status: u16,
    bytes_out: u64,
    keep_client: bool,
    continue_sent: bool,
    server: Option<usize>,
    /// When the last attempt's response was complete (one clock read shared by the
    /// cache, the pool and the circuit breaker).
    done_at: Option<Instant>,
    /// The request body has been read from the client to its end (or it had none).
    /// When it has not and the connection closes, the close lingers (see
    /// `conn::linger`).
    body_done: bool,
    /// Some of the request body was taken from the client's buffer or socket: it can
    /// no longer be sent again on another connection.
    body_touched: bool,
    /// The upstream answered before the request body was all sent: the rest is not
    /// sent, and neither connection is reused.
    body_cut: bool,
    /// Bytes of a chunked request body taken from the client, framing included.
    chunked_in: u64,
    /// A WebSocket handshake's upstream connection, once its 101 reached the client:
    /// the relay (`super::upgrade`) takes it after the exchange.
    upgraded: Option<UpConn>,
}

/// Handle one parsed request. Returns whether the client connection may be reused.
pub async fn handle(
    w: &Rc<Local>,
    c: &mut Downstream,
    head: &mut RequestHead,
    resp: &mut ResponseHead,
) -> bool {
    let started = Instant::now();
    // The pipeline this request runs on to its end, whatever a reload does meanwhile.
    let pl = w.pipeline();
    let limits = &w.cfg.server.limits;
    crate::telemetry::inc(&w.counters.requests);
    let cx = &mut c.cx;
    cx.begin(started);
    cx.observed.method = method_index(head.method) as u8;
    cx.observed.bytes_in = head.head_len as u64;
    match head.request_id {
        Some(s) => cx.request_id.extend_from_slice(s.get(&c.rbuf)),
        None => w.new_request_id(&mut cx.request_id),
    }
    let mut meta = ReqMeta {
        method: head.method,
        version_minor: head.version_minor,
        keep_alive: head.keep_alive,
        expect_continue: head.expect_continue,
        body: head.body,
    };
    if w.log_sink.enabled() {
        cx.logline.extend_from_slice(head.method_span.get(&c.rbuf));
        cx.logline.push(b' ');
        cx.logline.extend_from_slice(head.path(&c.rbuf));
    }

    // Before routing: what applies to every request (a redirect to HTTPS).
    if let Err(a) = stack::arrival(w, &pl, &c.peer, head, &c.rbuf, &mut c.cx) {
        c.cx.extra.extend_from_slice(&a.headers);
        return reject(w, c, &meta, head, a.status, &a.message, None).await;
    }

    // Route.
    let cx = &mut c.cx;
    let (found, wrong_method) = {
        let buf = &c.rbuf;
        let lookup = |name: &str| head.header(buf, name);
        let mut path = head.path(buf);
        if crate::http::path::needs_normalizing(path) {
            // Match on the normalised path so "/public/../admin" meets the "/admin"
            // route's rules; the upstream still receives the bytes as sent.
            crate::http::path::normalize(path, &mut cx.path);
            path = &cx.path;
        }
        let input = MatchInput {
            method: head.method_span.get(buf),
            host: head.host_name(buf),
            path,
            header: &lookup,
        };
        let mut found = pl.router.find(&input);
        // A CORS preflight belongs to the route its actual request will take: looked
        // up with the method it asks about (a `methods = ["POST"]` route has no
        // OPTIONS), and taken when that route has `cors`.
        if let Some(asked) = super::cors::preflight_method(head, buf) {
            let actual = MatchInput {
                method: asked,
                ..input
            };
            if let Some(i) = pl.router.find(&actual) {
                if pl.routes[i].cfg.cors.is_some() {
                    found = Some(i);
                }
            }
        }
        // A miss: 405 with `Allow` when routes match all but the method, else 404.
        let allow = match found {
            Some(_) => Vec::new(),
            None => pl.router.allowed_methods(&input),
        };
        if !allow.is_empty() {
            cx.extra.extend_from_slice(b"Allow: ");
            cx.extra.extend_from_slice(allow.join(", ").as_bytes());
            cx.extra.extend_from_slice(b"\r\n");
        }
        (found, !allow.is_empty())
    };
    let Some(ri) = found else {
        let (status, message) = match wrong_method {
            true => (
                405,
                "no route allows this method here; see the Allow header",
            ),
            false => (404, "no route matches this request"),
        };
        return reject(w, c, &meta, head, status, message, None).await;
    };
    // A route with body rules: the body is read whole now, and the route chosen with
    // it (`super::body`); it is then forwarded from memory with a Content-Length.
    let mut held_body = None;
    let ri = match pl.routes[ri].cfg.body.is_some() {
        false => ri,
        // Bounded in time as the exchange is: a body trickled in never holds the
        // connection past the request timeout (408).
        true => match monoio::time::timeout_at(
            started + pl.routes[ri].cfg.timeout.unwrap_or(limits.request_timeout),
            super::body::choose(&pl, c, head, ri),
        )
        .await
        .unwrap_or_else(|_| Err(super::body::timed_out()))
        {
            Ok((ri, body)) => {
                c.cx.observed.bytes_in += body.len() as u64;
                meta.body = BodyFraming::Empty;
                held_body = Some(body);
                ri
            }
            Err(r) => {
                if r.body_read {
                    meta.body = BodyFraming::Empty;
                }
                return reject(w, c, &meta, head, r.status, &r.message, None).await;
            }
        },
    };
    let cx = &mut c.cx;
    let entry = pl.routes[ri].clone();
    cx.route = Some(entry.clone());
    cx.observed.route = w.metrics.route_slot(&pl, ri);
    let route = &entry.cfg;

    // The stages' request phase, in the order `stack` gives.
    let body_in_hand = match meta.body {
        BodyFraming::Empty => true,
        BodyFraming::Length(n) => (c.rbuf.len() - head.head_len) as u64 >= n,
        _ => false,
    };
    let keep_if_answered = meta.keep_alive && !w.shutdown.is_set() && body_in_hand;
    let input = stack::RequestIn {
        w,
        pl: &pl,
        route: &entry,
        head,
        buf: &c.rbuf,
        peer: &c.peer,
        keep_if_answered,
    };
    // Before the request phase: a CORS preflight is answered without credentials.
    let mut flow = stack::routed(&input, &mut c.cx, &mut c.obuf);
    // What arrival and the routed phase added stays on any refusal below (HSTS, the
    // CORS fields, so a browser can read a 401).
    let arrived = c.cx.extra.len();
    if matches!(flow, Flow::Next) {
        flow = stack::request(&input, &mut c.cx, &mut c.obuf).await;
    }
    match flow {
        Flow::Next => {}
        Flow::Reject(a) => {
            // The stage's headers replace the others (rate-limit fields of a request
            // refused before it counted), but HSTS stays.
            c.cx.extra.truncate(arrived);
            c.cx.extra.extend_from_slice(&a.headers);
            return reject(w, c, &meta, head, a.status, &a.message, Some(route)).await;
        }
        Flow::Served => return serve_answer(w, c, &meta, head, route, keep_if_answered).await,
    }
    // A fan-out route: the body is streamed to all its upstreams (`super::fanout`).
    if matches!(entry.target, stack::Target::Fanout(_)) {
        return super::fanout::serve(w, &pl, c, head, &entry).await;
    }

    if let Some(body) = &mut held_body {
        if let Some(rules) = &route.body {
            let buf = &c.rbuf;
            let raw = head.path(buf);
            let identity = c.cx.identity.as_deref();
            let tcx = crate::http::template::TemplateCx {
                path: match crate::http::path::needs_normalizing(raw) {
                    true => &c.cx.path,
                    false => raw,
                },
                path_template: match &route.path {
                    crate::config::PathMatch::Template(t) => Some(t),
                    _ => None,
                },
                request_id: &c.cx.request_id,
                client_ip: Some(c.peer.addr),
                now_ms: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                user: identity.map(|i| i.user.as_str()),
                tenant: identity.map(|i| i.tenant.as_str()),
                plan: super::outbound::template_plan(
                    route,
                    identity,
                    pl.cfg.rate_limit.default_plan.get_ref(),
                ),
                ..crate::http::template::TemplateCx::new(head, buf)
            };
            match super::body::transform(rules, entry.schema.as_ref(), body, &tcx) {
                Ok(None) => {}
                Ok(Some(new)) => *body = new,
                Err((status, message)) => {
                    return reject(w, c, &meta, head, status, &message, Some(route)).await
                }
            }
        }
        head.body = BodyFraming::Length(body.len() as u64);
    }
    let max_body = route.max_body_bytes.unwrap_or(limits.max_body_bytes);
    if let BodyFraming::Length(n) = meta.body {
        if n > max_body {
            return reject(
                w,
                c,
                &meta,
                head,
                413,
                "request body too large",
                Some(route),
            )
            .await;
        }
    }
    // A chunked body whose first bytes came with the head is checked before anything
    // goes upstream: a malformed one is refused here, and the upstream never sees a
    // head whose body then breaks off.
    if meta.body == BodyFraming::Chunked {
        if let Some((status, message)) = check_first_chunks(&c.rbuf[head.head_len..], max_body) {
            return reject(w, c, &meta, head, status, message, Some(route)).await;
        }
    }

    // Upstream and the head sent to it.
    let Some((ui, up)) = entry.target.pick(&w.rng) else {
        // A `respond` route was answered by its stage; nothing else lacks a target.
        return reject(
            w,
            c,
            &meta,
            head,
            500,
            "the route has no upstream",
            Some(route),
        )
        .await;
    };
    let up = &**up;
    // A WebSocket handshake on a websocket route (`super::upgrade`); on any other
    // route its Upgrade is hop-by-hop and dropped like any such field.
    let upgrade = route.websocket && super::upgrade::requested(head, &c.rbuf);
    if upgrade {
        if let Some((status, message)) = super::upgrade::refused(head) {
            return reject(w, c, &meta, head, status, message, Some(route)).await;
        }
    }
    let hash_key: Option<Vec<u8>> = up
        .balancer
        .hash_header()
        .and_then(|h| head.header(&c.rbuf, h))
        .map(<[u8]>::to_vec);
    c.ubuf.clear();
    // The whole body, when it is in memory now (as the inline test below decides).
    let in_memory = match (&held_body, meta.body) {
        (Some(b), _) => Some(&b[..]),
        (None, BodyFraming::Empty) => Some(&[][..]),
        (None, BodyFraming::Length(n))
            if n <= INLINE_BODY && (c.rbuf.len() - head.head_len) as u64 >= n =>
        {
            Some(&c.rbuf[head.head_len..head.head_len + n as usize])
        }
        _ => None,
    };
    let forwarding = super::mirror::Forwarding {
        w,
        pl: &pl,
        peer: &c.peer,
        head,
        buf: &c.rbuf,
        body: in_memory,
    };
    let tee_body = stack::upstream_request(&forwarding, &mut c.cx);
    // The edge's own changes (`outbound`): the route's rewrite, the upstream's
    // request_headers.
    let path = outbound::matched_path(head, &c.rbuf, &c.cx.path);
    let rewritten = match outbound::rewrite(route, head, &c.rbuf, path, &mut c.cx.rewritten) {
        Ok(done) => done,
        Err(e) => return reject(w, c, &meta, head, 500, &e.to_string(), Some(route)).await,
    };
    outbound::upstream_headers(
        &up.cfg.request_headers,
        &outbound::Facts {
            head,
            buf: &c.rbuf,
            path: outbound::matched_path(head, &c.rbuf, &c.cx.path),
            route,
            request_id: &c.cx.request_id,
            client_ip: c.peer.addr,
            identity: c.cx.identity.as_deref(),
            default_plan: pl.cfg.rate_limit.default_plan.get_ref(),
        },
        &mut c.cx.upstream_fields,
    );
    if upgrade {
        c.cx.upstream_fields
            .extend_from_slice(super::upgrade::UPSTREAM_FIELDS);
    }
    let outbound = forward::Outbound::for_request(
        &pl,
        route,
        &c.peer,
        &c.cx,
        up,
        &c.cx.upstream_fields,
        rewritten,
    );
    forward::upstream_request(&mut c.ubuf, head, &c.rbuf, &outbound);
    // The head is fully used: from here on `head` must not be read (its spans would
    // point at body bytes).
    c.rbuf.drain(..head.head_len);

    let mut body_buffered = meta.body == BodyFraming::Empty;
    if let Some(body) = &held_body {
        c.ubuf.extend_from_slice(body);
    }
    if let BodyFraming::Length(n) = meta.body {
        if n <= INLINE_BODY && c.rbuf.len() as u64 >= n {
            c.ubuf.extend_from_slice(&c.rbuf[..n as usize]);
            c.rbuf.drain(..n as usize);
            body_buffered = true;
        }
    }
    let replayable = meta.method.is_idempotent() && body_buffered;

    let deadline = started + route.timeout.unwrap_or(limits.request_timeout);
    let mut p = Progress {
        keep_client: meta.keep_alive,
        body_done: body_buffered,
        ..Progress::default()
    };
    let ex = Exchange {
        w,
        pl: &pl,
        ui,
        meta,
        route,
        up,
        body_buffered,
        replayable,
        max_body,
        hash_key: hash_key.as_deref(),
        tee_body,
        upgrade,
    };
    let outcome = match monoio::time::timeout_at(deadline, ex.run(c, resp, &mut p)).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::RequestTimeout),
    };
    // An upstream too slow to answer is a failed upstream on routes that say so (the
    // IoT device retries on 502).
    let outcome = match outcome {
        Err(ProxyError::ResponseTimeout)
            if route
                .body
                .as_ref()
                .is_some_and(|b| b.upstream_error_is_502()) =>
        {
            Err(ProxyError::UpstreamServerError(504))
        }
        other => other,
    };
    let outcome_ok = outcome.is_ok();
    if let Err(e) = outcome {
        p.keep_client = false;
        // A timeout of the whole exchange drops the attempt under way: it is that
        // server's failure.
        if let (ProxyError::RequestTimeout, Some(si)) = (&e, p.server) {
            w.metrics
                .attempt_failed(w.metrics.server_slot(&pl, ui, si), &e);
        }
        let stale = if !p.resp_started && e.status().is_some_and(|s| s >= 500) {
            stack::upstream_failed(&mut c.cx, &mut c.obuf)
        } else {
            None
        };
        if let Some(status) = stale {
            p.status = status;
            p.bytes_out = c.obuf.len() as u64;
            let _ = write_all(&mut c.stream, &mut c.obuf).await;
        } else if !p.resp_started {
            if let Some(status) = e.status() {
                p.status = status;
                c.obuf.clear();
                let date = *w.date.borrow();
                write_error(
                    &mut c.obuf,
                    status,
                    e.public_message(),
                    &c.cx.request_id,
                    &date,
                    true,
                    meta.method == Method::Head,
                    &c.cx.extra,
                );
                p.bytes_out = c.obuf.len() as u64;
                let _ = write_all(&mut c.stream, &mut c.obuf).await;
            }
        }
        if w.cfg.log.level >= crate::config::LogLevel::Debug {
            eprintln!(
                "ringgate: request {} failed: {e}",
                String::from_utf8_lossy(&c.cx.request_id)
            );
        }
    }
    // The upstream switched protocols: bytes both ways until either side is done,
    // outside the request timeout (the relay has its idle timeout).
    if let Some(mut conn) = p.upgraded.take() {
        let relay_start = Instant::now();
        let r = super::upgrade::relay(w, c, &mut conn).await;
        // The request's latency (metrics, access log) is the handshake's: a session
        // of hours is not a slow request.
        c.cx.started += relay_start.elapsed();
        p.bytes_out += r.to_client;
        c.cx.observed.bytes_in += r.to_upstream;
        if w.cfg.log.level >= crate::config::LogLevel::Debug {
            eprintln!(
                "ringgate: websocket {} ended ({:?}): {} bytes up, {} down",
                String::from_utf8_lossy(&c.cx.request_id),
                r.end,
                r.to_upstream,
                r.to_client
            );
        }
    }
    c.cx.observed.bytes_out = p.bytes_out;
    if p.body_done {
        c.cx.observed.bytes_in += match meta.body {
            BodyFraming::Length(n) => n,
            _ => p.chunked_in,
        };
    }
    stack::done(w, &mut c.cx, p.status, outcome_ok);
    w.counters.count_status(p.status);
    let label = p
        .server
        .map(|s| up.cfg.servers[s].label.as_str())
        .unwrap_or("");
    log(w, c, p.status, &route.id, label, p.bytes_out);
    // Answered (or failed) while the client may still be sending its body: the close
    // must not reset the connection under the answer.
    c.cx.linger = !p.keep_client && !p.body_done;
    p.keep_client
}

/// A stage's complete answer (`c.obuf`, then the cache's body if it is written
/// separately): write it, then the done phase.
async fn serve_answer(
    w: &Rc<Local>,
    c: &mut Downstream,
    meta: &ReqMeta,
    head: &RequestHead,
    route: &RouteConfig,
    keep_if_answered: bool,
) -> bool {
    let consumed = consume_request(c, meta, head);
    c.cx.observed.bytes_in += consumed.unwrap_or(0);
    // The body is still arriving (`keep_if_answered` was false, the answer says
    // `Connection: close`): close with a lingering close.
    c.cx.linger = consumed.is_none();
    let status = std::str::from_utf8(&c.obuf[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    if let (Some(cfg), Some(_)) = (&route.compress, c.cx.cache.outcome) {
        // A cache answer: its identity body compressed on the way out (see
        // `compress`); one in a file stays identity.
        let apart = match &c.cx.cache.answer_body {
            Some(Body::Bytes(b, at)) => Some(&b[*at as usize..]),
            _ => None,
        };
        let coding = match &c.cx.cache.answer_body {
            Some(Body::File(_)) => None,
            _ => c.cx.compress,
        };
        if compress::compress_answer(cfg, coding, &mut c.obuf, apart) {
            c.cx.cache.answer_body = None;
        }
    }
    let mut bytes = c.obuf.len() as u64;
    let mut ok = write_all(&mut c.stream, &mut c.obuf).await.is_ok();
    if let Some(body) = c.cx.cache.answer_body.take() {
        bytes += body.len() as u64;
        ok = ok
            && match body {
                Body::Bytes(b, at) => {
                    crate::http::io::write_shared(&mut c.stream, b, at as usize).await
                }
                Body::File(f) => match c.stream.tcp_mut() {
                    Some(tcp) => send_file(tcp, f.fd(), f.len(), w.blocking_sockets).await,
                    // TLS: encrypted from the file in chunks (see `send_file_tls`).
                    None => send_file_tls(&mut c.stream, f.fd(), f.len()).await,
                },
            }
            .is_ok();
    }
    c.cx.observed.bytes_out = bytes;
    stack::done(w, &mut c.cx, status, ok);
    w.counters.count_status(status);
    // The cache answered, or the edge did (`respond`, a CORS preflight).
    let by = if c.cx.cache.outcome.is_some() {
        "cache"
    } else {
        "edge"
    };
    log(w, c, status, &route.id, by, bytes);
    keep_if_answered && ok
}

/// A chunked body's first bytes, received with the head: `Some` (status, message) if
/// their framing is already broken (400) or their data already exceeds `max_body`
/// (413).
pub(super) fn check_first_chunks(bytes: &[u8], max_body: u64) -> Option<(u16, &'static str)> {
    let mut dec = ChunkedDecoder::new();
    let mut at = 0;
    while at < bytes.len() {
        match dec.step(&bytes[at..]) {
            Ok((_, ChunkEvent::Done)) => break,
            Ok((used, _)) => at += used,
            Err(_) => return Some((400, "invalid chunked request body")),
        }
        if dec.body_bytes > max_body {
            return Some((413, "request body too large"));
        }
    }
    None
}

pub(super) fn log(
    w: &Local,
    c: &Downstream,
    status: u16,
    route: &str,
    upstream: &str,
    bytes_out: u64,
) {
    if !w.log_sink.enabled() {
        return;
    }
    let cx = &c.cx;
    let (method, path) = match memchr::memchr(b' ', &cx.logline) {
        Some(i) => (&cx.logline[..i], &cx.logline[i + 1..]),
        None => (&cx.logline[..], &b""[..]),
    };
    w.log(&Entry {
        unix_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        worker: w.id,
        request_id: &cx.request_id,
        client: &c.peer.ip,
        method,
        path,
        status,
        route,
        upstream,
        bytes_out,
        duration_us: cx.started.elapsed().as_micros() as u64,
        trace_id: cx.traceparent().map_or(&b""[..], |t| &t[3..35]),
        span_id: cx.traceparent().map_or(&b""[..], |t| &t[36..52]),
    });
}

/// Answer a request without going upstream (with `c.cx.extra` as extra header lines).
/// A request body still unread makes the connection unusable afterwards, so it is
/// closed then, with a lingering close.
async fn reject(
    w: &Rc<Local>,
    c: &mut Downstream,
    meta: &ReqMeta,
    head: &RequestHead,
    status: u16,
    message: &str,
    route: Option<&RouteConfig>,
) -> bool {
    let consumed = consume_request(c, meta, head);
    c.cx.observed.bytes_in += consumed.unwrap_or(0);
    let consumed = consumed.is_some();
    // The body is still arriving: answer, then close with a lingering close.
    c.cx.linger = !consumed;
    let keep = consumed && meta.keep_alive && !w.shutdown.is_set();
    c.obuf.clear();
    let date = *w.date.borrow();
    write_error(
        &mut c.obuf,
        status,
        message,
        &c.cx.request_id,
        &date,
        !keep,
        meta.method == Method::Head,
        &c.cx.extra,
    );
    let bytes = c.obuf.len() as u64;
    let ok = write_all(&mut c.stream, &mut c.obuf).await.is_ok();
    c.cx.observed.bytes_out = bytes;
    // A fill this request leads is let go: its followers go upstream themselves.
    stack::done(w, &mut c.cx, status, false);
    w.counters.count_status(status);
    log(w, c, status, route.map_or("", |r| r.id.as_str()), "", bytes);
    keep && ok
}

/// Drop a request answered without the upstream from the read buffer: its head and,
/// when all of it is here, its body; returns the body's length. `None`: the body is
/// still arriving, so the connection cannot be reused.
fn consume_request(c: &mut Downstream, meta: &ReqMeta, head: &RequestHead) -> Option<u64> {
    match meta.body {
        BodyFraming::Empty => {
            c.rbuf.drain(..head.head_len);
            Some(0)
        }
        // `saturating_sub`: a body read cut short by the request timeout
        // (`super::body`) may have lost the buffer along with its read.
        BodyFraming::Length(n) if c.rbuf.len().saturating_sub(head.head_len) as u64 >= n => {
            c.rbuf.drain(..head.head_len + n as usize);
            Some(n)
        }
        _ => None,
    }
}

struct Exchange<'a> {
    w: &'a Rc<Local>,
    /// The request's pipeline, and the index of `up` in it (for metrics' slots).
    pl: &'a Rc<Pipeline>,
    ui: usize,
    meta: ReqMeta,
    route: &'a RouteConfig,
    up: &'a UpstreamState,
    body_buffered: bool,
    replayable: bool,
    max_body: u64,
    hash_key: Option<&'a [u8]>,
    /// A stage wants the streamed request body's bytes (phases 2b-2d): it is read
    /// through user space, never spliced.
    tee_body: bool,
    /// A WebSocket handshake: a new connection, and a 101 is its answer.
    upgrade: bool,
}

/// Servers already tried for this request.
#[derive(Default)]
struct Tried {
    bits: u64,
    more: Vec<usize>,
}

impl Tried {
    fn has(&self, i: usize) -> bool {
        if i < 64 {
            self.bits & (1 << i) != 0
        } else {
            self.more.contains(&i)
        }
    }
    fn add(&mut self, i: usize) {
        if i < 64 {
            self.bits |= 1 << i;
        } else {
            self.more.push(i);
        }
    }
}

impl Exchange<'_> {
    async fn run(
        &self,
        c: &mut Downstream,
        resp: &mut ResponseHead,
        p: &mut Progress,
    ) -> Result<(), ProxyError> {
        let up = self.up;
        let mut tried = Tried::default();
        let mut attempts = if self.replayable {
            up.cfg.retries + 1
        } else {
            1
        };
        let mut last_err = None;
        loop {
            let now = Instant::now();
            let load = |i: usize| up.servers[i].in_flight.get();
            // Servers with an open breaker or failing health checks are skipped; when
            // none is left the answer is 503 (or the last failure).
            let si = up.balancer.pick(
                &|i| !tried.has(i) && up.available(i, now),
                &load,
                self.hash_key,
            );
            let Some(si) = si else {
                return Err(last_err.unwrap_or(ProxyError::NoServer));
            };
            tried.add(si);
            p.server = Some(si);
            let metrics = &self.w.metrics;
            match self.attempt(si, now, c, resp, p).await {
                Ok(()) => {
                    let done = p.done_at.take().unwrap_or_else(Instant::now);
                    up.record(si, p.upstream_status < 500, done);
                    let us = done.saturating_duration_since(now).as_micros() as u64;
                    metrics.attempt_done(metrics.server_slot(self.pl, self.ui, si), us);
                    return Ok(());
                }
                Err(e) => {
                    metrics.attempt_failed(metrics.server_slot(self.pl, self.ui, si), &e);
                    if e.is_upstream_failure() || matches!(e, ProxyError::UpstreamServerError(_)) {
                        up.record(si, false, Instant::now());
                        crate::telemetry::inc(&self.w.counters.upstream_errors);
                    }
                    attempts -= 1;
                    if attempts == 0 || p.resp_started || !e.is_upstream_failure() {
                        return Err(e);
                    }
                    crate::telemetry::inc(&self.w.counters.retries);
                    last_err = Some(e);
                }
            }
        }
    }

    /// One server: send the request, read the response head, stream the response.
    async fn attempt(
        &self,
        si: usize,
        now: Instant,
        c: &mut Downstream,
        resp: &mut ResponseHead,
        p: &mut Progress,
    ) -> Result<(), ProxyError> {
        let _in_flight = crate::telemetry::Held::new(&self.up.servers[si].in_flight);
        // A pooled connection that fails before any byte of an answer may just have
        // been closed by the origin as we took it (the peek in `take_idle` narrows
        // that window, it cannot close it): nothing reached the origin's application,
        // so the request goes once more, on a connection opened for it, whatever its
        // method (as browsers and nginx do), as long as its body can be sent again.
        // This is not a retry of the server: it is neither counted nor charged.
        let mut fresh = false;
        let mut conn = loop {
            // A handshake's connection becomes the relay's: never a pooled one.
            let mut conn = client::checkout(self.up, si, now, fresh || self.upgrade).await?;
            match self.send_and_read_head(&mut conn, c, resp, p).await {
                Ok(()) => break conn,
                Err(e) => {
                    let stale = conn.reused
                        && !p.body_touched
                        && conn.buf.is_empty()
                        && matches!(e, ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_));
                    if stale {
                        fresh = true;
                        continue;
                    }
                    return Err(e);
                }
            }
        };
        p.done_at = None;
        let reusable = self.stream_response(&mut conn, c, resp, p).await?;
        let done = *p.done_at.get_or_insert_with(Instant::now);
        if p.status == 101 {
            p.upgraded = Some(conn);
            return Ok(());
        }
        // A handshake's connection is never pooled, even when the upgrade was declined.
        if reusable && !p.body_cut && !self.upgrade {
            conn.buf.clear();
            self.up.put_idle(si, conn, done);
        }
        Ok(())
    }

    async fn send_and_read_head(
        &self,
        conn: &mut UpConn,
        c: &mut Downstream,
        resp: &mut ResponseHead,
        p: &mut Progress,
    ) -> Result<(), ProxyError> {
        client::send(conn, &mut c.ubuf).await?;
        if !self.body_buffered {
            self.send_body_watching(conn, c, resp, p).await?;
        }
        // The response timeout runs from the end of the request to the response head.
        let deadline = Instant::now() + self.up.cfg.response_timeout;
        let limits = HeadLimits::from(&self.w.cfg.server.limits);
        let head_req = self.meta.method == Method::Head;
        while client::read_head_as(conn, resp, limits, head_req, deadline, self.upgrade).await?
            == Head::Interim
        {
            // Interim responses such as 102 and 103 go on to HTTP/1.1 clients (RFC 9110
            // 15.2; HTTP/1.0 knows none). A 100 is not the client's: the gateway
            // answers Expect itself, and the upstream never saw it.
            if resp.status != 100 && self.meta.version_minor == 1 {
                c.obuf.clear();
                forward::interim_response(&mut c.obuf, resp, &conn.buf);
                write_all(&mut c.stream, &mut c.obuf)
                    .await
                    .map_err(ProxyError::ClientIo)?;
            }
            conn.buf.drain(..resp.head_len);
        }
        Ok(())
    }

    /// Send the request body while listening for the upstream's answer. An origin
    /// may answer before it has the whole body (a 413, a 401, a redirect), and then
    /// often stops reading it: waiting for the body to go through first would leave
    /// the client hearing nothing until a timeout. A final response head that
    /// arrives first ends the upload (`p.body_cut`); what arrived stays in
    /// `conn.buf` for the head loop. Interim (1xx) heads do not end it.
    async fn send_body_watching(
        &self,
        conn: &mut UpConn,
        c: &mut Downstream,
        resp: &mut ResponseHead,
        p: &mut Progress,
    ) -> Result<(), ProxyError> {
        // A second handle on the socket, only ever polled for readability and read
        // without waiting, so dropping its wait loses nothing (an io_uring read in
        // flight would take bytes with it). A stream that is not plain TCP (TLS, later)
        // has no such handle: its body is sent first, then the answer read.
        let Some(tcp) = conn.stream.tcp() else {
            return self.stream_request_body(&mut conn.stream, c, p).await;
        };
        let watcher = sock::watcher(tcp).map_err(ProxyError::UpstreamIo)?;
        let UpConn { stream, buf, .. } = conn;
        let first = {
            let body = std::pin::pin!(self.stream_request_body(stream, c, p));
            let answer = std::pin::pin!(self.wait_final_head(&watcher, buf, resp));
            monoio::select! {
                // The body first: when both are ready, the request was complete.
                biased;
                r = body => Ok(r),
                r = answer => Err(r),
            }
        };
        let sent = match first {
            Ok(sent) => sent,
            Err(answered) => {
                p.body_cut = answered.is_ok();
                return answered;
            }
        };
        match sent {
            // The upstream stopped taking the body, perhaps because it answered and
            // closed: what it sent before that is its answer.
            Err(ProxyError::UpstreamIo(e)) => {
                match monoio::time::timeout(
                    self.up.cfg.response_timeout,
                    self.wait_final_head(&watcher, buf, resp),
                )
                .await
                {
                    Ok(Ok(())) => {
                        p.body_cut = true;
                        Ok(())
                    }
                    _ => Err(ProxyError::UpstreamIo(e)),
                }
            }
            other => other,
        }
    }

    /// Wait until `buf` holds a complete final (non-1xx) response head, reading the
    /// upstream through `watcher` without ever leaving a read in flight. Interim
    /// heads are stepped over, not consumed: the head loop relays them afterwards.
    async fn wait_final_head(
        &self,
        watcher: &monoio::net::TcpStream,
        buf: &mut Vec<u8>,
        resp: &mut ResponseHead,
    ) -> Result<(), ProxyError> {
        let limits = HeadLimits::from(&self.w.cfg.server.limits);
        let head_req = self.meta.method == Method::Head;
        loop {
            let mut at = 0;
            while at < buf.len() {
                match resp.parse(&buf[at..], limits.max_bytes, limits.max_headers, head_req) {
                    Ok(true) if (100..200).contains(&resp.status) && resp.status != 101 => {
                        at += resp.head_len
                    }
                    Ok(true) => return Ok(()),
                    Ok(false) => break,
                    Err(_) => {
                        return Err(ProxyError::UpstreamBadResponse("malformed response head"))
                    }
                }
            }
            watcher
                .readable(false)
                .await
                .map_err(ProxyError::UpstreamIo)?;
            let failed = match sock::recv_now(watcher, buf, UP_BUF) {
                Ok(Some(0)) => ProxyError::UpstreamClosed,
                Ok(_) => continue,
                Err(e) => ProxyError::UpstreamIo(e),
            };
            return Err(if buf.is_empty() {
                failed
            } else {
                ProxyError::UpstreamBadResponse("truncated response head")
            });
        }
    }

    /// Stream the request body from the client to the upstream. `c.ubuf` holds the
    /// request head, which is kept (chunks are framed after it), so that the request
    /// can be sent again on another connection if this one fails before any of the
    /// body was taken.
    async fn stream_request_body(
        &self,
        up: &mut UpStream,
        c: &mut Downstream,
        p: &mut Progress,
    ) -> Result<(), ProxyError> {
        if self.meta.expect_continue && c.rbuf.is_empty() && !p.continue_sent {
            // The client waits for our go-ahead before sending the body (RFC 9110
            // 10.1.1); the upstream never saw Expect, so we give it.
            p.continue_sent = true;
            c.obuf.clear();
            c.obuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            write_all(&mut c.stream, &mut c.obuf)
                .await
                .map_err(ProxyError::ClientIo)?;
        }
        if self.tee_body {
            stack::request_body_start(&mut c.cx);
        }
        match self.meta.body {
            BodyFraming::Length(n) => {
                let mut remaining = n;
                let splice_min = self.w.cfg.server.splice_min_bytes;
                loop {
                    if splice_min > 0
                        && !self.tee_body
                        && c.rbuf.is_empty()
                        && remaining >= splice_min
                    {
                        if let (Some(tcp), Some(client)) = (up.tcp_mut(), c.stream.tcp_mut()) {
                            p.body_touched = true;
                            self.splice_body(client, tcp, remaining, false).await?;
                            p.body_done = true;
                            return Ok(());
                        }
                    }
                    let k = (c.rbuf.len() as u64).min(remaining) as usize;
                    if k > 0 {
                        write_range(up, &mut c.rbuf, 0, k)
                            .await
                            .map_err(ProxyError::UpstreamIo)?;
                        p.body_touched = true;
                        if self.tee_body {
                            stack::request_body(&mut c.cx, &c.rbuf[..k]);
                        }
                        c.rbuf.drain(..k);
                        remaining -= k as u64;
                    }
                    if remaining == 0 {
                        p.body_done = true;
                        if self.tee_body {
                            stack::request_body_end(self.w, &mut c.cx);
                        }
                        return Ok(());
                    }
                    match read_append(&mut c.stream, &mut c.rbuf, READ_BUF).await {
                        Ok(0) => return Err(ProxyError::ClientClosed),
                        Ok(_) => {}
                        Err(e) => return Err(ProxyError::ClientIo(e)),
                    }
                }
            }
            BodyFraming::Chunked => {
                let mut dec = ChunkedDecoder::new();
                let head = c.ubuf.len();
                loop {
                    let mut at = 0;
                    let mut done = false;
                    while at < c.rbuf.len() {
                        let (used, ev) = dec
                            .step(&c.rbuf[at..])
                            .map_err(ProxyError::ClientBadChunk)?;
                        let base = at;
                        at += used;
                        match ev {
                            ChunkEvent::Data(r) => {
                                if dec.body_bytes > self.max_body {
                                    return Err(ProxyError::BodyTooLarge(self.max_body));
                                }
                                let data = &c.rbuf[base + r.start..base + r.end];
                                encode_chunk(&mut c.ubuf, data);
                                if self.tee_body {
                                    stack::request_body(&mut c.cx, data);
                                }
                            }
                            ChunkEvent::LastChunk => c.ubuf.extend_from_slice(b"0\r\n"),
                            // Request trailers are not forwarded (RFC 9110 6.5.1
                            // lets a proxy discard them): a trailer could carry a
                            // forged identity or credential past the head's checks.
                            ChunkEvent::Trailer(_) | ChunkEvent::TrailerEnd => {}
                            ChunkEvent::Done => {
                                c.ubuf.extend_from_slice(b"\r\n");
                                done = true;
                                break;
                            }
                            ChunkEvent::NeedMore => {}
                        }
                    }
                    // The decoder took all of `c.rbuf` (or stopped at the body's end).
                    let framed = c.ubuf.len();
                    if framed > head {
                        write_range(up, &mut c.ubuf, head, framed)
                            .await
                            .map_err(ProxyError::UpstreamIo)?;
                        c.ubuf.truncate(head);
                    }
                    if at > 0 {
                        p.body_touched = true;
                        p.chunked_in += at as u64;
                        c.rbuf.drain(..at);
                    }
                    if done {
                        p.body_done = true;
                        if self.tee_body {
                            stack::request_body_end(self.w, &mut c.cx);
                        }
                        return Ok(());
                    }
                    match read_append(&mut c.stream, &mut c.rbuf, READ_BUF).await {
                        Ok(0) => return Err(ProxyError::ClientClosed),
                        Ok(_) => {}
                        Err(e) => return Err(ProxyError::ClientIo(e)),
                    }
                }
            }
            BodyFraming::Empty | BodyFraming::UntilClose => {
                p.body_done = true;
                Ok(())
            }
        }
    }

    /// Move `n` body bytes between sockets with splice(2). `from_upstream` says which
    /// side is the source, so a failure is blamed on the right peer.
    async fn splice_body(
        &self,
        src: &mut monoio::net::TcpStream,
        dst: &mut monoio::net::TcpStream,
        n: u64,
        from_upstream: bool,
    ) -> Result<(), ProxyError> {
        use crate::http::io::{splice_exact, SpliceError};
        let mut pipe = self.w.take_pipe().map_err(ProxyError::UpstreamIo)?;
        match splice_exact(src, dst, n, &mut pipe).await {
            Ok(()) => {
                self.w.put_pipe(pipe);
                Ok(())
            }
            // The pipe may hold bytes now: it is dropped, not reused.
            Err(SpliceError::Eof) if from_upstream => Err(ProxyError::UpstreamTruncated),
            Err(SpliceError::Eof) => Err(ProxyError::ClientClosed),
            Err(SpliceError::Source(e)) if from_upstream => Err(ProxyError::UpstreamIo(e)),
            Err(SpliceError::Source(e)) => Err(ProxyError::ClientIo(e)),
            Err(SpliceError::Dest(e)) if from_upstream => Err(ProxyError::ClientIo(e)),
            Err(SpliceError::Dest(e)) => Err(ProxyError::UpstreamIo(e)),
        }
    }

    /// Phase 4 for this response: `whole` is its body's range of `buf` when it came
    /// with the head. The response's end is read from the clock once, here if a stage
    /// needs it, and shared with the pool and the breaker. Returns whether a stage
    /// wants the body's bytes as they are relayed.
    fn body_start(
        &self,
        c: &mut Downstream,
        resp: &ResponseHead,
        buf: &[u8],
        whole: Option<std::ops::Range<usize>>,
        declared: Option<u64>,
        p: &mut Progress,
    ) -> bool {
        stack::body_start(
            self.w,
            &mut c.cx,
            self.route,
            resp,
            buf,
            whole,
            declared,
            &mut p.done_at,
        )
    }

    /// The response head for the client, in `c.obuf` (emptied first), with the
    /// stages' fields (`c.cx.extra`).
    fn client_head(
        &self,
        c: &mut Downstream,
        resp: &ResponseHead,
        buf: &[u8],
        framing: ClientFraming,
        keep_client: bool,
    ) {
        c.obuf.clear();
        forward::client_response(
            &mut c.obuf,
            resp,
            buf,
            self.route,
            &c.cx.request_id,
            framing,
            keep_client,
            self.meta.version_minor,
            &c.cx.extra,
            &*self.w.date.borrow(),
        );
    }

    /// Send the response head and body to the client. Returns whether the upstream
    /// connection is clean and may go back to the pool.
    async fn stream_response(
        &self,
        conn: &mut UpConn,
        c: &mut Downstream,
        resp: &ResponseHead,
        p: &mut Progress,
    ) -> Result<bool, ProxyError> {
        p.upstream_status = resp.status;
        if resp.status == 101 {
            // Only a WebSocket handshake gets a 101 this far (`client::read_head_as`).
            if !super::upgrade::accepted(resp, &conn.buf) {
                return Err(ProxyError::UpstreamBadResponse(
                    "101 without Upgrade: websocket and Connection: upgrade",
                ));
            }
            c.obuf.clear();
            let (id, extra) = (&c.cx.request_id, &c.cx.extra);
            super::upgrade::client_head(&mut c.obuf, resp, &conn.buf, self.route, id, extra);
            p.status = 101;
            p.keep_client = false;
            p.resp_started = true;
            p.bytes_out = c.obuf.len() as u64;
            // What followed the 101 is the new protocol's: the relay sends it first.
            conn.buf.drain(..resp.head_len);
            write_all(&mut c.stream, &mut c.obuf)
                .await
                .map_err(ProxyError::ClientIo)?;
            return Ok(false);
        }
        if resp.status >= 500
            && self
                .route
                .body
                .as_ref()
                .is_some_and(|b| b.upstream_error_is_502())
        {
            return Err(ProxyError::UpstreamServerError(resp.status));
        }
        // A stage may answer in the upstream's place (the cache: a 304 to its
        // revalidation, or a stale entry standing in for a 5xx).
        let keep = self.meta.keep_alive && !self.w.shutdown.is_set() && !p.body_cut;
        let from_cache = stack::response_head(
            self.w,
            &mut c.cx,
            self.route,
            resp,
            &conn.buf,
            &mut c.obuf,
            keep,
        );
        if let Some((status, keep, reusable)) = from_cache {
            p.status = status;
            p.keep_client = keep;
            p.resp_started = true;
            p.bytes_out = c.obuf.len() as u64;
            write_all(&mut c.stream, &mut c.obuf)
                .await
                .map_err(ProxyError::ClientIo)?;
            return Ok(reusable);
        }
        if let Some(cfg) = &self.route.compress {
            if compress::eligible(cfg, resp, &conn.buf) {
                c.cx.extra.extend_from_slice(b"Vary: Accept-Encoding\r\n");
                if let Some(coding) = c.cx.compress {
                    return self.stream_compressed(conn, c, resp, p, coding).await;
                }
            }
        }
        let framing = forward::client_framing(resp, self.meta.version_minor);
        // An answer that cut the request body short leaves the rest of that body
        // on the client connection: it is closed after the answer.
        p.keep_client = self.meta.keep_alive
            && !self.w.shutdown.is_set()
            && framing != ClientFraming::Close
            && !p.body_cut;
        p.status = resp.status;
        self.client_head(c, resp, &conn.buf, framing, p.keep_client);
        let pos = resp.head_len;
        let avail = conn.buf.len() - pos;
        if resp.extra_codings && framing != ClientFraming::Chunked {
            // An HTTP/1.0 client cannot be told about codings we do not decode.
            return Err(ProxyError::UpstreamBadResponse(
                "transfer coding cannot be relayed to an HTTP/1.0 client",
            ));
        }
        let client_io = ProxyError::ClientIo;
        // Every path below writes to the client next, except the chunked relay, which
        // first validates what it has (so a broken body can still get a 502).
        p.resp_started = resp.body != BodyFraming::Chunked;
        match resp.body {
            BodyFraming::Empty => {
                self.body_start(c, resp, &conn.buf, Some(0..0), None, p);
                p.bytes_out = c.obuf.len() as u64;
                write_all(&mut c.stream, &mut c.obuf)
                    .await
                    .map_err(client_io)?;
                Ok(resp.keep_alive && avail == 0)
            }
            BodyFraming::Length(n) => {
                if avail as u64 >= n {
                    let whole = pos..pos + n as usize;
                    self.body_start(c, resp, &conn.buf, Some(whole), None, p);
                    if n <= INLINE_BODY {
                        c.obuf.extend_from_slice(&conn.buf[pos..pos + n as usize]);
                        write_all(&mut c.stream, &mut c.obuf)
                            .await
                            .map_err(client_io)?;
                    } else {
                        write_all(&mut c.stream, &mut c.obuf)
                            .await
                            .map_err(client_io)?;
                        write_range(&mut c.stream, &mut conn.buf, pos, pos + n as usize)
                            .await
                            .map_err(client_io)?;
                    }
                    p.bytes_out = c.obuf.len() as u64 + n;
                    return Ok(resp.keep_alive && avail as u64 == n);
                }
                let keep = self.body_start(c, resp, &conn.buf, None, Some(n), p);
                if keep {
                    stack::body(self.w, &mut c.cx, &conn.buf[pos..]);
                }
                c.obuf.extend_from_slice(&conn.buf[pos..]);
                p.bytes_out = c.obuf.len() as u64;
                write_all(&mut c.stream, &mut c.obuf)
                    .await
                    .map_err(client_io)?;
                let mut remaining = n - avail as u64;
                let splice_min = self.w.cfg.server.splice_min_bytes;
                if let (Some(tcp), Some(client)) = (conn.stream.tcp_mut(), c.stream.tcp_mut()) {
                    if !keep && splice_min > 0 && remaining >= splice_min {
                        self.splice_body(tcp, client, remaining, true).await?;
                        p.bytes_out += remaining;
                        return Ok(resp.keep_alive);
                    }
                }
                let mut extra = false;
                while remaining > 0 {
                    conn.buf.clear();
                    let got = match read_append(&mut conn.stream, &mut conn.buf, UP_BUF).await {
                        Ok(0) => return Err(ProxyError::UpstreamTruncated),
                        Ok(k) => k,
                        Err(e) => return Err(ProxyError::UpstreamIo(e)),
                    };
                    let k = (got as u64).min(remaining) as usize;
                    extra |= got > k;
                    if keep {
                        stack::body(self.w, &mut c.cx, &conn.buf[..k]);
                    }
                    write_range(&mut c.stream, &mut conn.buf, 0, k)
                        .await
                        .map_err(client_io)?;
                    remaining -= k as u64;
                    p.bytes_out += k as u64;
                }
                if keep {
                    stack::body_end(self.w, &mut c.cx, self.route, resp);
                }
                Ok(resp.keep_alive && !extra)
            }
            BodyFraming::Chunked => {
                let keep = self.body_start(c, resp, &conn.buf, None, None, p);
                let reusable = self
                    .relay_chunked(conn, c, framing, pos, resp.keep_alive, p)
                    .await?;
                if keep {
                    stack::body_end(self.w, &mut c.cx, self.route, resp);
                }
                Ok(reusable)
            }
            BodyFraming::UntilClose => {
                let chunked = framing == ClientFraming::Chunked;
                let mut start = pos;
                loop {
                    let data = &conn.buf[start..];
                    if chunked {
                        encode_chunk(&mut c.obuf, data);
                    } else {
                        c.obuf.extend_from_slice(data);
                    }
                    p.bytes_out += c.obuf.len() as u64;
                    write_all(&mut c.stream, &mut c.obuf)
                        .await
                        .map_err(client_io)?;
                    c.obuf.clear();
                    conn.buf.clear();
                    start = 0;
                    match read_append(&mut conn.stream, &mut conn.buf, UP_BUF).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => return Err(ProxyError::UpstreamIo(e)),
                    }
                }
                if chunked {
                    c.obuf.extend_from_slice(b"0\r\n\r\n");
                    write_all(&mut c.stream, &mut c.obuf)
                        .await
                        .map_err(client_io)?;
                }
                Ok(false)
            }
        }
    }

    /// Relay a chunked upstream body: validated, re-framed for a chunked client or
    /// de-chunked for an HTTP/1.0 one. `c.obuf` already holds the response head.
    async fn relay_chunked(
        &self,
        conn: &mut UpConn,
        c: &mut Downstream,
        framing: ClientFraming,
        mut pos: usize,
        upstream_keep_alive: bool,
        p: &mut Progress,
    ) -> Result<bool, ProxyError> {
        let chunked = framing == ClientFraming::Chunked;
        let mut dec = ChunkedDecoder::new();
        loop {
            let mut done = false;
            while pos < conn.buf.len() {
                let (used, ev) = dec
                    .step(&conn.buf[pos..])
                    .map_err(|_| ProxyError::UpstreamBadResponse("invalid chunked body"))?;
                let base = pos;
                pos += used;
                let piece = |r: std::ops::Range<usize>| base + r.start..base + r.end;
                match ev {
                    ChunkEvent::Data(r) => {
                        let data = &conn.buf[piece(r)];
                        stack::body(self.w, &mut c.cx, data);
                        if chunked {
                            encode_chunk(&mut c.obuf, data);
                        } else {
                            c.obuf.extend_from_slice(data);
                        }
                    }
                    ChunkEvent::LastChunk if chunked => c.obuf.extend_from_slice(b"0\r\n"),
                    ChunkEvent::Trailer(r) if chunked => {
                        c.obuf.extend_from_slice(&conn.buf[piece(r)])
                    }
                    ChunkEvent::TrailerEnd if chunked => c.obuf.extend_from_slice(b"\r\n"),
                    ChunkEvent::Done => {
                        if chunked {
                            c.obuf.extend_from_slice(b"\r\n");
                        }
                        done = true;
                        break;
                    }
                    _ => {}
                }
            }
            if done || c.obuf.len() >= FLUSH_AT || pos >= conn.buf.len() {
                send_pending(c, p).await?;
            }
            if done {
                return Ok(upstream_keep_alive && pos == conn.buf.len());
            }
            conn.buf.clear();
            pos = 0;
            match read_append(&mut conn.stream, &mut conn.buf, UP_BUF).await {
                Ok(0) => return Err(ProxyError::UpstreamTruncated),
                Ok(_) => {}
                Err(e) => return Err(ProxyError::UpstreamIo(e)),
            }
        }
    }
}

/// Write what `c.obuf` holds for the client and empty it: the response has started.
async fn send_pending(c: &mut Downstream, p: &mut Progress) -> Result<(), ProxyError> {
    p.resp_started = true;
    p.bytes_out += c.obuf.len() as u64;
    write_all(&mut c.stream, &mut c.obuf)
        .await
        .map_err(ProxyError::ClientIo)?;
    c.obuf.clear();
    Ok(())
}

/// Append `data` as one chunk (nothing for empty data: a zero-size chunk would end the
/// body).
fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut i = hex.len();
    while n > 0 {
        i -= 1;
        hex[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}
