//! WebSocket relaying on routes with `websocket = true` (RFC 6455 over HTTP/1.1's
//! Upgrade, RFC 9110 §7.8). The handshake is an ordinary request as far as the stages
//! go: it is routed, authenticated and rate-limited like any other, so a refused one
//! gets its 401 or 429 without reaching the origin. What differs:
//!
//! - [`requested`]: a GET on HTTP/1.1 with `Connection: upgrade` and an `Upgrade`
//!   field listing `websocket` (tokens compared case-insensitively). On other routes
//!   the same request is forwarded without its hop-by-hop Upgrade, as any request is.
//! - The upstream gets the handshake with [`UPSTREAM_FIELDS`] (the client's own
//!   Connection and Upgrade are hop-by-hop and dropped, as always; the
//!   `Sec-WebSocket-*` fields go through untouched) on a connection opened for it,
//!   never a pooled one, and that connection never goes back to the pool.
//! - Its 101 ([`client_head`], checked by [`accepted`]) goes to the client with the
//!   upgrade fields, after which [`relay`] moves bytes both ways until both sides have
//!   closed, either fails, or nothing moved in either direction for the server's
//!   `idle_timeout`. Any other answer is relayed as a normal response.
//!
//! The relay runs the two directions at once, each through its own buffer of
//! [`RELAY_BUF`] bytes (so at most 2 × 16 KiB per relay besides the kernel's socket
//! buffers: a direction whose receiver is slow stops reading, and TCP pushes back on
//! its sender). A side's end of stream is passed on as a half-close
//! (`shutdown(SHUT_WR)` on the other), so a WebSocket closing handshake completes as
//! it would without the gateway. Bytes that arrived with the heads (the client's after
//! its request, the origin's after its 101) are relayed first.
//!
//! Each direction reads through a second handle on its socket (`sock::watcher`, a
//! duplicated descriptor) while the other direction writes through the first, so the
//! two never share a handle. That needs plain TCP on both sides: a TLS session reads
//! and writes through one state, and is not relayed (the client gets 501, see
//! [`unsupported`]).
//!
//! The relay stays inside the request's connection task: the connection stays counted
//! in `max_connections`, the worker's drain waits for it until `graceful_shutdown_s`
//! and then drops it (closing both sockets), and `ringgate_websockets_open` counts it
//! while it lasts.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::conn::Downstream;
use super::forward::{header_line, hop_by_hop, removed, status_line};
use super::local::Local;
use crate::config::{RouteConfig, UpstreamConfig};
use crate::http::header::list_items;
use crate::http::io::write_all;
use crate::http::sock;
use crate::http::{BodyFraming, HeaderKind, Method, RequestHead, ResponseHead, Span};
use crate::upstream::pool::UpConn;

/// What each direction of a relay reads at most at once (its buffer's size).
pub const RELAY_BUF: usize = 16 * 1024;

/// The hop-by-hop fields the handshake carries upstream, in place of the client's.
pub const UPSTREAM_FIELDS: &[u8] = b"Connection: Upgrade\r\nUpgrade: websocket\r\n";

fn has_token(tokens: &[Span], buf: &[u8], token: &[u8]) -> bool {
    tokens
        .iter()
        .any(|t| t.get(buf).eq_ignore_ascii_case(token))
}

/// Does a field named `name` (one of `headers`) list `websocket`?
fn lists_websocket(headers: &[crate::http::HeaderPos], buf: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| {
            h.kind == HeaderKind::HopByHop && h.name.get(buf).eq_ignore_ascii_case(b"upgrade")
        })
        .any(|h| list_items(h.value.get(buf)).any(|p| p.eq_ignore_ascii_case(b"websocket")))
}

/// Is this request a WebSocket handshake (RFC 6455 §4.1): GET, HTTP/1.1,
/// `Connection: upgrade`, `Upgrade: websocket`?
pub fn requested(head: &RequestHead, buf: &[u8]) -> bool {
    head.method == Method::Get
        && head.version_minor == 1
        && has_token(&head.conn_tokens, buf, b"upgrade")
        && lists_websocket(&head.headers, buf)
}

/// Why a handshake on a websocket route cannot be relayed, if it cannot: (status,
/// message) for the client, before anything goes upstream.
pub fn unsupported(
    head: &RequestHead,
    client_tls: bool,
    up: &UpstreamConfig,
) -> Option<(u16, &'static str)> {
    if head.body != BodyFraming::Empty {
        // A handshake carries no body (RFC 6455 §4.1); bytes after it would be read
        // as the new protocol's.
        return Some((400, "a WebSocket handshake carries no request body"));
    }
    if client_tls || up.servers.iter().any(|s| s.tls) {
        return Some((501, "WebSocket relaying over TLS is not supported yet"));
    }
    None
}

/// Is this 101 the upgrade that was asked for: `Upgrade: websocket` with `upgrade` in
/// its Connection (RFC 9110 §7.8)? Anything else is a broken answer (502).
pub fn accepted(resp: &ResponseHead, buf: &[u8]) -> bool {
    has_token(&resp.conn_tokens, buf, b"upgrade") && lists_websocket(&resp.headers, buf)
}

/// The 101 for the client, appended to `out`: the upstream's status line and
/// end-to-end fields (its `Sec-WebSocket-*` among them) with the route's response
/// edits, X-Request-ID, the stages' fields (`extra`), and the upgrade fields.
pub fn client_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    buf: &[u8],
    route: &RouteConfig,
    request_id: &[u8],
    extra: &[u8],
) {
    status_line(out, resp, buf);
    for h in &resp.headers {
        let name = h.name.get(buf);
        if h.kind == HeaderKind::XRequestId
            || hop_by_hop(h, buf, &resp.conn_tokens)
            || removed(&route.response_headers, name)
        {
            continue;
        }
        header_line(out, name, h.value.get(buf));
    }
    for (name, value) in &route.response_headers.add {
        header_line(out, name.as_bytes(), value.as_bytes());
    }
    header_line(out, b"X-Request-ID", request_id);
    out.extend_from_slice(extra);
    out.extend_from_slice(UPSTREAM_FIELDS);
    out.extend_from_slice(b"\r\n");
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (each half-close passed on).
    Closed,
    /// Nothing moved either way for `idle_timeout`.
    Idle,
    /// Reading from or writing to the client failed (a reset).
    Client,
    /// Reading from or writing to the upstream failed.
    Upstream,
}

/// What a relay moved, and how it ended.
#[derive(Debug, Clone, Copy)]
pub struct Relayed {
    pub to_upstream: u64,
    pub to_client: u64,
    pub end: End,
}

/// Relay bytes between the client (`c.stream`, with `c.rbuf` holding what it sent
/// after its handshake) and the upstream (`up`, with `up.buf` holding what followed
/// its 101) until both have closed, either fails, or nothing moves for the server's
/// `idle_timeout`. Both sockets are plain TCP ([`unsupported`] refused the rest).
pub async fn relay(w: &Local, c: &mut Downstream, up: &mut UpConn) -> Relayed {
    let _open = crate::telemetry::Held::new(&w.counters.websockets_open);
    crate::telemetry::inc(&w.counters.websockets);
    let idle = w.cfg.server.limits.idle_timeout;
    let (to_upstream, to_client) = (Cell::new(0u64), Cell::new(0u64));
    let done = |end| Relayed {
        to_upstream: to_upstream.get(),
        to_client: to_client.get(),
        end,
    };
    let Downstream { stream, rbuf, .. } = c;
    let (Some(client), Some(origin)) = (stream.tcp_mut(), up.stream.tcp_mut()) else {
        return done(End::Client);
    };
    let from_client = match sock::watcher(client) {
        Ok(s) => s,
        Err(_) => return done(End::Client),
    };
    let from_origin = match sock::watcher(origin) {
        Ok(s) => s,
        Err(_) => return done(End::Upstream),
    };
    let last = Cell::new(Instant::now());
    let up_dir = pump(from_client, origin, rbuf, &last, &to_upstream);
    let down_dir = pump(from_origin, client, &mut up.buf, &last, &to_client);
    let mut up_dir = pin!(up_dir);
    let mut down_dir = pin!(down_dir);
    let (mut up_done, mut down_done) = (false, false);
    // Both directions at once, to the end of both or the first failure.
    let both = std::future::poll_fn(|cx| {
        if !up_done {
            if let Poll::Ready(r) = up_dir.as_mut().poll(cx) {
                up_done = true;
                if let Err(read_side) = r {
                    return Poll::Ready(if read_side {
                        End::Client
                    } else {
                        End::Upstream
                    });
                }
            }
        }
        if !down_done {
            if let Poll::Ready(r) = down_dir.as_mut().poll(cx) {
                down_done = true;
                if let Err(read_side) = r {
                    return Poll::Ready(if read_side {
                        End::Upstream
                    } else {
                        End::Client
                    });
                }
            }
        }
        match up_done && down_done {
            true => Poll::Ready(End::Closed),
            false => Poll::Pending,
        }
    });
    let mut both = pin!(both);
    let end = loop {
        let quiet_until = last.get() + idle;
        monoio::select! {
            end = &mut both => break end,
            _ = monoio::time::sleep_until(quiet_until) => {
                // Traffic since the timer was set moves the deadline on.
                if last.get() + idle <= Instant::now() {
                    break End::Idle;
                }
            }
        }
    };
    done(end)
}

/// One direction: `pending` first (bytes that came with a head), then what `from`
/// reads, each piece written to `to`, until `from` ends, which is passed on as a
/// half-close of `to`. `Err(true)`: reading failed; `Err(false)`: writing did.
async fn pump(
    mut from: TcpStream,
    to: &mut TcpStream,
    buf: &mut Vec<u8>,
    last: &Cell<Instant>,
    moved: &Cell<u64>,
) -> Result<(), bool> {
    if !buf.is_empty() {
        let n = buf.len() as u64;
        write_all(to, buf).await.map_err(|_| false)?;
        moved.set(moved.get() + n);
    }
    loop {
        buf.clear();
        if buf.capacity() < RELAY_BUF {
            buf.reserve(RELAY_BUF);
        }
        let owned = std::mem::take(buf);
        let (res, slice) = from.read(owned.slice_mut(0..RELAY_BUF)).await;
        *buf = slice.into_inner();
        match res {
            Ok(0) => {
                // The peer's end of stream: the other side sees it as ours.
                let _ = to.shutdown().await;
                return Ok(());
            }
            Ok(n) => {
                last.set(Instant::now());
                write_all(to, buf).await.map_err(|_| false)?;
                moved.set(moved.get() + n as u64);
            }
            Err(_) => return Err(true),
        }
    }
}
