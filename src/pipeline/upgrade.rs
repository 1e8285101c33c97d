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
//! The relay runs the two directions at once, each reading at most [`RELAY_BUF`]
//! (16 KiB) at a time and writing it all before it reads again (a direction whose
//! receiver is slow stops reading, and TCP pushes back on its sender). So a plain
//! relay holds 2 × 16 KiB besides the kernel's socket buffers; a TLS side adds, per
//! direction, one read's worth decrypted or encrypted (16 KiB plus records' overhead),
//! and a record not yet complete (at most 18 KiB). A side's end of stream is passed on as a half-close
//! (`shutdown(SHUT_WR)` on the other), so a WebSocket closing handshake completes as
//! it would without the gateway. Bytes that arrived with the heads (the client's after
//! its request, the origin's after its 101) are relayed first.
//!
//! Each direction reads and writes through handles of its own (`sock::watcher`:
//! duplicated descriptors, two per socket), so the two directions never share a
//! monoio handle and never wait for each other. A TLS side (a wss client, an
//! https:// upstream) keeps its session in the client's or pool's `TlsStream`: the
//! direction reading it decrypts what it read there, the one writing to it encrypts
//! there, each between its awaits (`TlsStream::open_into`, `seal_into`), so one
//! session serves both at once; its end is a close_notify, passed on as a half-close,
//! and a half-close from the other side becomes our close_notify.
//!
//! The relay stays inside the request's connection task: the connection stays counted
//! in `max_connections`, the worker's drain waits for it until `graceful_shutdown_s`
//! and then drops it (closing both sockets), and `ringgate_websockets_open` counts it
//! while it lasts.

use std::cell::{Cell, RefCell};
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
use crate::config::RouteConfig;
use crate::http::header::list_items;
use crate::http::io::write_all;
use crate::http::sock;
use crate::http::{BodyFraming, HeaderKind, Method, RequestHead, ResponseHead, Span};
use crate::tls::{self, stream::Stream, stream::TlsStream};
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
pub fn refused(head: &RequestHead) -> Option<(u16, &'static str)> {
    // A handshake carries no body (RFC 6455 §4.1): bytes after its head belong to
    // the new protocol, and a body would be read as frames.
    (head.body != BodyFraming::Empty)
        .then_some((400, "a WebSocket handshake carries no request body"))
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

/// A side's TLS session, shared by the relay's two directions: one decrypts what it
/// reads, the other encrypts what it writes; neither holds it across an await.
type Shared<'a, S> = Option<&'a RefCell<&'a mut TlsStream<S>>>;

/// Relay bytes between the client (`c.stream`, with `c.rbuf` holding what it sent
/// after its handshake) and the upstream (`up`, with `up.buf` holding what followed
/// its 101) until both have closed, either fails, or nothing moves for the server's
/// `idle_timeout`. Either side may be TLS.
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
    // Two handles of its own on each socket: one to read, one to write.
    let (Ok(client_rd), Ok(client_wr)) = (
        sock::watcher(stream.socket()),
        sock::watcher(stream.socket()),
    ) else {
        return done(End::Client);
    };
    let (Ok(origin_rd), Ok(origin_wr)) = (
        sock::watcher(up.stream.socket()),
        sock::watcher(up.stream.socket()),
    ) else {
        return done(End::Upstream);
    };
    let client_tls = match stream {
        Stream::Tls(t) => Some(RefCell::new(&mut **t)),
        Stream::Plain(_) => None,
    };
    let origin_tls = match &mut up.stream {
        Stream::Tls(t) => Some(RefCell::new(&mut **t)),
        Stream::Plain(_) => None,
    };
    let last = Cell::new(Instant::now());
    let up_dir = pump(
        client_rd,
        client_tls.as_ref(),
        origin_wr,
        origin_tls.as_ref(),
        rbuf,
        &last,
        &to_upstream,
    );
    let down_dir = pump(
        origin_rd,
        origin_tls.as_ref(),
        client_wr,
        client_tls.as_ref(),
        &mut up.buf,
        &last,
        &to_client,
    );
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

/// One direction: `buf` first (bytes that came with a head, then what `from_tls`
/// already decrypted), then what `from` reads, each piece written to `to`
/// (encrypted for `to_tls`), until `from` ends (end of stream, or close_notify),
/// which is passed on: close_notify for a TLS `to`, then a half-close.
/// `Err(true)`: reading (or decrypting) failed; `Err(false)`: writing did.
async fn pump<F: tls::stream::Session, T: tls::stream::Session>(
    mut from: TcpStream,
    from_tls: Shared<'_, F>,
    mut to: TcpStream,
    to_tls: Shared<'_, T>,
    buf: &mut Vec<u8>,
    last: &Cell<Instant>,
    moved: &Cell<u64>,
) -> Result<(), bool> {
    // Decrypted bytes (from a TLS side) and records to send (to a TLS side): each
    // about one read's worth, RELAY_BUF plus the records' overhead.
    let (mut plain, mut wire) = (Vec::new(), Vec::new());
    let mut closed = match from_tls {
        Some(t) => t.borrow_mut().open_into(&[], buf).map_err(|_| true)?,
        None => false,
    };
    send(&mut to, to_tls, buf, &mut wire, moved).await?;
    while !closed {
        buf.clear();
        if buf.capacity() < RELAY_BUF {
            buf.reserve(RELAY_BUF);
        }
        let owned = std::mem::take(buf);
        let (res, slice) = from.read(owned.slice_mut(0..RELAY_BUF)).await;
        *buf = slice.into_inner();
        match res {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Err(true),
        }
        last.set(Instant::now());
        let data = match from_tls {
            None => &mut *buf,
            Some(t) => {
                plain.clear();
                closed = t
                    .borrow_mut()
                    .open_into(buf, &mut plain)
                    .map_err(|_| true)?;
                &mut plain
            }
        };
        send(&mut to, to_tls, data, &mut wire, moved).await?;
    }
    // The peer's end: the other side sees it as ours.
    if let Some(t) = to_tls {
        wire.clear();
        t.borrow_mut().close_into(&mut wire);
        let _ = write_all(&mut to, &mut wire).await;
    }
    let _ = to.shutdown().await;
    Ok(())
}

/// Write `data` to `to`, encrypted for `to_tls` (after what its session queued).
async fn send<T: tls::stream::Session>(
    to: &mut TcpStream,
    to_tls: Shared<'_, T>,
    data: &mut Vec<u8>,
    wire: &mut Vec<u8>,
    moved: &Cell<u64>,
) -> Result<(), bool> {
    if data.is_empty() {
        return Ok(());
    }
    let n = data.len() as u64;
    match to_tls {
        None => write_all(to, data).await.map_err(|_| false)?,
        Some(t) => {
            wire.clear();
            t.borrow_mut().seal_into(data, wire).map_err(|_| false)?;
            write_all(to, wire).await.map_err(|_| false)?;
        }
    }
    moved.set(moved.get() + n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> (RequestHead, Vec<u8>) {
        let buf = text.replace('\n', "\r\n").into_bytes();
        let mut head = RequestHead::default();
        assert!(head.parse(&buf, 8192, 64).unwrap());
        (head, buf)
    }

    fn response(text: &str) -> (ResponseHead, Vec<u8>) {
        let buf = text.replace('\n', "\r\n").into_bytes();
        let mut head = ResponseHead::default();
        assert!(head.parse(&buf, 8192, 64, false).unwrap());
        (head, buf)
    }

    #[test]
    fn handshakes_are_recognised_as_rfc_6455_words_them() {
        let yes = [
            "GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: websocket\n\n",
            "GET /ws HTTP/1.1\nHost: a\nConnection: keep-alive, UPGRADE\nUpgrade: WebSocket\n\n",
            "GET /ws HTTP/1.1\nHost: a\nConnection: upgrade\nUpgrade: h2c, websocket\n\n",
            "GET /ws HTTP/1.1\nHost: a\nConnection: close\nConnection: upgrade\nUpgrade: websocket\n\n",
        ];
        for t in yes {
            let (h, b) = request(t);
            assert!(requested(&h, &b), "{t:?}");
        }
        let no = [
            // No upgrade in Connection: Upgrade alone is not a request to switch.
            "GET /ws HTTP/1.1\nHost: a\nUpgrade: websocket\n\n",
            "GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade\n\n",
            "GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: h2c\n\n",
            "GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: websocketx\n\n",
            "POST /ws HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: websocket\nContent-Length: 0\n\n",
            "GET /ws HTTP/1.0\nHost: a\nConnection: Upgrade\nUpgrade: websocket\n\n",
            "GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade\nX-Upgrade: websocket\n\n",
        ];
        for t in no {
            let (h, b) = request(t);
            assert!(!requested(&h, &b), "{t:?}");
        }
    }

    #[test]
    fn a_101_must_name_the_upgrade() {
        let (r, b) = response(
            "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n\n",
        );
        assert!(accepted(&r, &b));
        for t in [
            "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n\n",
            "HTTP/1.1 101 Switching Protocols\nConnection: Upgrade\n\n",
            "HTTP/1.1 101 Switching Protocols\nUpgrade: h2c\nConnection: Upgrade\n\n",
        ] {
            let (r, b) = response(t);
            assert!(!accepted(&r, &b), "{t:?}");
        }
    }

    #[test]
    fn the_clients_101_keeps_end_to_end_fields_and_the_upgrade() {
        let (r, b) = response(
            "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade, X-Hop\n\
             X-Hop: 1\nSec-WebSocket-Accept: abc\nSec-WebSocket-Protocol: chat\n\
             X-Request-ID: theirs\nServer: origin\nKeep-Alive: timeout=5\n\n",
        );
        let mut route = RouteConfig::new("ws", crate::config::PathMatch::Prefix("/".into()));
        route.response_headers.remove.push("server".into());
        route
            .response_headers
            .add
            .push(("X-Edge".into(), "1".into()));
        let mut out = Vec::new();
        client_head(&mut out, &r, &b, &route, b"rid", b"X-Extra: 2\r\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: abc\r\n\
             Sec-WebSocket-Protocol: chat\r\nX-Edge: 1\r\nX-Request-ID: rid\r\nX-Extra: 2\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
    }
}
