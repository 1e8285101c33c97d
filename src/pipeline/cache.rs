//! The cache stage: after rate limiting (a cached answer is never given to a caller
//! who would have been refused or limited), before the upstream. On routes with
//! `cache = {...}` it answers fresh hits itself (304 for a matching conditional
//! request), marks what goes upstream `X-Cache: MISS` or `BYPASS`, stores complete
//! responses that RFC 9111 lets a shared cache keep, and drops a URI's entries after
//! an unsafe method succeeded on it. Keys carry the caller's tenant unless the route
//! says `shared = true`. See `crate::cache` for the rules and the store.
//!
//! A stale entry that must be revalidated is asked for with its validators
//! ([`validators`]); a 304 freshens it ([`revalidated`]).
//!
//! Misses on one key are coalesced per worker (see `proxy::handle`). A body that does
//! not arrive with its head (Content-Length larger than one read, or chunked) is
//! copied as it is relayed ([`begin_body`], [`keep_body`], [`finish_body`]) and stored
//! only once complete.

use std::time::Instant;

use super::context::RequestCtx;
use super::stack::{Flow, Pipeline, RequestIn};

use crate::auth::Identity;
use crate::cache::{
    cacheable_method, invalidates, primary_key, storable, Audience, Body, Entry, FillOutcome,
    FillTicket, KeyParts, Lookup, ReqDirectives, RequestFacts, ResponseParts, SpanHeaders,
    StaleUse, XCache,
};
use crate::config::RouteConfig;
use crate::http::generated::write_error;
use crate::http::{HeaderKind, HeaderPos, RequestHead, ResponseHead};
use crate::pipeline::local::Local;

/// What the stage decided for one request, kept on the connection until the response.
#[derive(Default)]
pub struct CacheCtx {
    /// Store the response if it is storable.
    pub store: bool,
    /// An unsafe method on a cached route: drop the URI's entries on success.
    pub invalidate: bool,
    /// Answered from a stale entry within its `stale-while-revalidate` window: fetch
    /// it again in the background (`super::refresh`).
    pub refresh: bool,
    /// A cached answer's body to write after the head in `out` (large bodies are not
    /// copied; see [`COPY_BODY_MAX`]).
    pub answer_body: Option<Body>,
    /// The first hit of an entry whose body should move into a file: its body as it
    /// is, moved by [`promote`] once the answer is written.
    promote: Option<Body>,
    /// The stale entry's validators went upstream (`If-None-Match` /
    /// `If-Modified-Since`): a 304 freshens it ([`revalidated`]).
    pub revalidating: bool,
    /// A HEAD that missed on a route that caches GET: fill the entry with a GET and
    /// answer the HEAD from it (nginx's `proxy_cache_convert_head`); see
    /// [`CacheCtx::for_get_fill`].
    pub fill_as_get: bool,
    /// Set before [`before`] looks again for a request whose own fill just stored the
    /// entry: the answer says `X-Cache: MISS` (the upstream was asked for it).
    pub filled: bool,
    /// The `X-Cache` the answer carries (for metrics): `None` on routes not cached.
    pub outcome: Option<XCache>,
    credentials: bool,
    tenant_keyed: bool,
    pub(super) requested_at: Option<Instant>,
    /// Copy of the request head (the read buffer is reused for the body), and its
    /// headers' positions in it: Vary values and the URI are read from here.
    head: Vec<u8>,
    headers: Vec<HeaderPos>,
    host: (usize, usize),
    target: (usize, usize),
    pub key: Vec<u8>,
    /// A stale entry the upstream is being asked to replace: served instead of a 502 or
    /// 504 while its `stale-if-error` window lasts.
    pub stale: Option<Entry>,
    head_only: bool,
    version_minor: u8,
    /// A storable response's body as it streams past the gateway (at most
    /// `max_object_bytes`), with a copy of its head; stored once complete.
    body: Option<KeptBody>,
    body_limit: usize,
    resp_head: Vec<u8>,
    received_at: Option<Instant>,
}

impl CacheCtx {
    /// Forget the last request's decision (a new request starts; the buffers stay).
    pub fn reset(&mut self) {
        self.store = false;
        self.invalidate = false;
        self.refresh = false;
        self.revalidating = false;
        self.fill_as_get = false;
        self.answer_body = None;
        self.promote = None;
        self.stale = None;
        self.body = None;
        self.outcome = None;
    }
}

/// The outcome of [`before`].
pub enum Before {
    /// Go upstream (with `X-Cache` added to `extra` on cached routes).
    Forward,
    /// `out` holds the complete response from the cache.
    Answered,
}

/// Run the stage before the upstream. `out` receives a cached response, `extra` the
/// `X-Cache` line for a response that will come from upstream.
#[allow(clippy::too_many_arguments)]
pub fn before(
    w: &Local,
    pl: &Pipeline,
    now: Instant,
    ctx: &mut CacheCtx,
    route: &RouteConfig,
    head: &RequestHead,
    buf: &[u8],
    identity: Option<&Identity>,
    request_id: &[u8],
    keep_alive: bool,
    out: &mut Vec<u8>,
    extra: &mut Vec<u8>,
) -> Before {
    let filled = std::mem::take(&mut ctx.filled);
    ctx.reset();
    let Some(rc) = route.cache.as_ref().filter(|_| w.cfg.cache.enabled) else {
        return Before::Forward;
    };
    let method = head.method_span.get(buf);
    if !cacheable_method(rc, method) {
        // The route is cached, but not for this method: the response says the cache
        // was passed by (as for a request's `no-store`).
        extra.extend_from_slice(b"X-Cache: BYPASS\r\n");
        ctx.outcome = Some(XCache::Bypass);
        if !method.eq_ignore_ascii_case(b"GET") && !method.eq_ignore_ascii_case(b"HEAD") {
            ctx.invalidate = true;
            remember(ctx, head, buf);
        }
        return Before::Forward;
    }
    let hdrs = SpanHeaders {
        buf,
        headers: &head.headers,
    };
    let dirs = ReqDirectives::from_request(&hdrs);
    let audience = Audience::for_route(rc, identity.map(|i| i.tenant.as_str()));
    ctx.tenant_keyed = audience.is_tenant();
    ctx.credentials = head
        .headers
        .iter()
        .any(|h| h.kind == HeaderKind::Authorization)
        || head.header(buf, pl.auth.api_key_header()).is_some();
    ctx.key.clear();
    primary_key(
        &mut ctx.key,
        &KeyParts {
            method,
            host: head.host.get(buf),
            target: head.target.get(buf),
            audience,
        },
    );
    // Held until the answer is written: a hit is answered from the entry in place.
    let mut cache = w.cache.borrow_mut();
    let found = cache.lookup(&ctx.key, &hdrs, &dirs, now);
    let entry = match found {
        Lookup::Hit(e) | Lookup::Stale(e, StaleUse::Serve) => e,
        Lookup::Stale(e, StaleUse::ServeAndRevalidate) => {
            // RFC 5861 3: served now, refreshed behind the answer. Only a GET can be
            // repeated as is (a HEAD's refresh would have no body to store).
            if method == b"GET" {
                ctx.refresh = true;
                remember(ctx, head, buf);
                // The refresh asks with its validators ([`refreshed`]).
                ctx.stale = Some(e.clone());
            }
            e
        }
        Lookup::Bypass => {
            extra.extend_from_slice(b"X-Cache: BYPASS\r\n");
            ctx.outcome = Some(XCache::Bypass);
            return Before::Forward;
        }
        Lookup::Miss | Lookup::Stale(..) if dirs.only_if_cached => {
            // RFC 9111 5.2.1.7: a stored response that can be used, or 504; never
            // the upstream.
            extra.extend_from_slice(b"X-Cache: MISS\r\n");
            ctx.outcome = Some(XCache::Miss);
            out.clear();
            let date = *w.date.borrow();
            write_error(
                out,
                504,
                "only-if-cached, and no stored response can be used",
                request_id,
                &date,
                !keep_alive,
                method == b"HEAD",
                extra,
            );
            return Before::Answered;
        }
        Lookup::Miss | Lookup::Stale(..) => {
            if let Lookup::Stale(e, _) = found {
                ctx.stale = Some(e.clone());
                ctx.head_only = method == b"HEAD";
                ctx.version_minor = head.version_minor;
            }
            extra.extend_from_slice(b"X-Cache: MISS\r\n");
            ctx.outcome = Some(XCache::Miss);
            ctx.store = method == b"GET";
            ctx.fill_as_get =
                method == b"HEAD" && matches!(found, Lookup::Miss) && cacheable_method(rc, b"GET");
            ctx.requested_at = Some(now);
            remember(ctx, head, buf);
            return Before::Forward;
        }
    };
    let not_modified = entry.not_modified(&hdrs);
    let x = if filled {
        XCache::Miss
    } else if entry.is_fresh(now) {
        XCache::Hit
    } else {
        XCache::Stale
    };
    ctx.outcome = Some(x);
    let head_only = not_modified || method == b"HEAD";
    // A large body is written from the entry after the head, not copied into `out`.
    let separate =
        !head_only && (entry.body().len() > COPY_BODY_MAX || matches!(entry.body(), Body::File(_)));
    // A body written here is in memory (a file body always goes separately): this
    // cannot fail.
    let _ = write_entry(
        entry,
        out,
        now,
        x,
        not_modified,
        head_only || separate,
        request_id,
        extra,
        keep_alive,
        head.version_minor,
    );
    if separate {
        ctx.answer_body = Some(entry.body().clone());
    }
    // A large body is stored in memory when it arrives, and moved into a file (sent
    // with sendfile from then on) at its first hit: a response nobody asks for again
    // never pays for the file. The move waits until this answer is written.
    if x == XCache::Hit && w.bodies.wants(entry.body()) {
        ctx.promote = Some(entry.body().clone());
        remember(ctx, head, buf);
    }
    Before::Answered
}

/// After a hit is answered: move its entry's body into a file if [`before`] said so
/// (and the entry still has that body).
pub fn promote(w: &Local, ctx: &mut CacheCtx) {
    let Some(from) = ctx.promote.take() else {
        return;
    };
    if let Some(file) = w.bodies.promote(&from) {
        w.cache
            .borrow_mut()
            .rehome_body(&ctx.key, &request_headers(ctx), &from, file);
    }
}

/// Request fields that make the client's request conditional (or partial) itself:
/// such a request goes upstream as it is, without the cache's validators.
const CLIENT_CONDITIONALS: [&[u8]; 6] = [
    b"if-none-match",
    b"if-modified-since",
    b"if-match",
    b"if-unmodified-since",
    b"if-range",
    b"range",
];

/// RFC 9111 4.3.1: a GET that must go upstream while a stale entry is stored asks
/// conditionally, with the entry's `ETag` (or else its `Last-Modified`): the header
/// lines are appended to `out` (the upstream request's fields). A 304 then freshens
/// the entry without resending the body ([`revalidated`]).
pub fn validators(ctx: &mut CacheCtx, head: &RequestHead, buf: &[u8], out: &mut Vec<u8>) {
    let Some(entry) = ctx.stale.as_ref().filter(|_| ctx.store) else {
        return;
    };
    let own = head.headers.iter().any(|h| {
        let name = h.name.get(buf);
        CLIENT_CONDITIONALS
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
    });
    if own {
        return;
    }
    let (name, value): (&[u8], &[u8]) = match entry.etag() {
        Some(tag) => (b"If-None-Match: ", tag),
        None => match entry
            .headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"last-modified"))
        {
            Some((_, date)) => (b"If-Modified-Since: ", date),
            None => return,
        },
    };
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    ctx.revalidating = true;
}

/// The upstream answered 304 to the cache's conditional request: the stale entry is
/// freshened with the 304's fields (RFC 9111 4.3.4) and stored again, and the client
/// gets the whole entry, written to `out` (`X-Cache: MISS`: the upstream was asked).
/// If the freshened entry may not be stored it is dropped, and the client still gets
/// the body the 304 confirmed; so is an entry whose validators the 304 contradicts
/// (RFC 9111 4.3.4: it must not be updated; the 304 answered the cache's condition,
/// so the stored body is still what the client gets, and the next request fetches it
/// whole). Returns the status written; `None` (nothing written)
/// if a file body could not be read, and the 304 then goes to the client as it is.
#[allow(clippy::too_many_arguments)]
pub fn revalidated(
    w: &Local,
    ctx: &CacheCtx,
    route: &RouteConfig,
    resp: &ResponseHead,
    rbuf: &[u8],
    out: &mut Vec<u8>,
    request_id: &[u8],
    extra: &[u8],
    keep_alive: bool,
) -> Option<u16> {
    let old = ctx.stale.as_ref()?;
    let now = Instant::now();
    let fresh = freshened(w, ctx, route, resp, rbuf, now)?;
    let hdrs = request_headers(ctx);
    let kept = without_x_cache(extra);
    let write = |entry: &Entry, out: &mut Vec<u8>| {
        let written = write_entry(
            entry,
            out,
            now,
            XCache::Miss,
            false,
            ctx.head_only,
            request_id,
            &kept,
            keep_alive,
            ctx.version_minor,
        );
        written.then(|| entry.status())
    };
    match fresh {
        Ok(entry) => {
            let status = write(&entry, out);
            let _ = w.cache.borrow_mut().insert(&ctx.key, &hdrs, entry);
            status
        }
        Err(_) => {
            w.cache.borrow_mut().remove(&ctx.key, &hdrs);
            write(old, out)
        }
    }
}

/// A background refresh's conditional request came back 304: the stale entry is
/// freshened and stored again (or dropped if it may no longer be stored). Returns
/// whether it was stored.
pub fn refreshed(
    w: &Local,
    ctx: &CacheCtx,
    route: &RouteConfig,
    resp: &ResponseHead,
    rbuf: &[u8],
) -> bool {
    let hdrs = request_headers(ctx);
    match freshened(w, ctx, route, resp, rbuf, Instant::now()) {
        Some(Ok(entry)) => w.cache.borrow_mut().insert(&ctx.key, &hdrs, entry).is_ok(),
        Some(Err(_)) => {
            w.cache.borrow_mut().remove(&ctx.key, &hdrs);
            false
        }
        None => false,
    }
}

/// The stale entry in `ctx`, freshened by the 304 in `resp` (RFC 9111 4.3.4) and
/// judged again; `None` without a stale entry or a cached route.
fn freshened(
    w: &Local,
    ctx: &CacheCtx,
    route: &RouteConfig,
    resp: &ResponseHead,
    rbuf: &[u8],
    now: Instant,
) -> Option<Result<Entry, crate::cache::NotStorable>> {
    let old = ctx.stale.as_ref()?;
    let rc = route.cache.as_ref()?;
    let facts = facts(ctx);
    Some(old.freshen(
        &facts,
        rc,
        &response_parts(resp, rbuf),
        w.unix_now.get(),
        ctx.requested_at.unwrap_or(now),
        now,
        &route.response_headers.remove,
    ))
}

/// `extra` without its `X-Cache` line (a response from the entry writes its own).
fn without_x_cache(extra: &[u8]) -> Vec<u8> {
    extra
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.starts_with(b"X-Cache:"))
        .flatten()
        .copied()
        .collect()
}

/// Write a complete response from `entry` to `out`. Returns false, with `out`
/// emptied, if a file body could not be read (it is in a sealed memfd, so this takes
/// the kernel failing a read of memory).
#[allow(clippy::too_many_arguments)]
#[must_use]
fn write_entry(
    entry: &Entry,
    out: &mut Vec<u8>,
    now: Instant,
    x: XCache,
    not_modified: bool,
    head_only: bool,
    request_id: &[u8],
    extra: &[u8],
    keep_alive: bool,
    version_minor: u8,
) -> bool {
    out.clear();
    if not_modified {
        entry.write_not_modified(out, now);
    } else {
        entry.write_head(out, now, x);
    }
    out.extend_from_slice(b"X-Request-ID: ");
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if version_minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && entry.body().append_to(out).is_err() {
        out.clear();
        return false;
    }
    true
}

/// Bodies up to this size are copied after the head and sent in one write; larger
/// ones are written from the entry itself ([`CacheCtx::answer_body`]).
pub const COPY_BODY_MAX: usize = 16 * 1024;

/// The upstream failed before answering, or answered 500, 502, 503 or 504 (RFC 5861
/// 4): the stale entry, if its `stale-if-error` window allows, is written to `out`
/// (with `X-Cache: STALE`); returns its status.
pub fn stale_on_error(
    ctx: &CacheCtx,
    out: &mut Vec<u8>,
    request_id: &[u8],
    extra: &[u8],
) -> Option<u16> {
    let now = Instant::now();
    match &ctx.stale {
        Some(e) if e.serves_on_error(now) => {
            // `extra` holds the MISS marker written before going upstream: drop it.
            let kept = without_x_cache(extra);
            let written = write_entry(
                e,
                out,
                now,
                XCache::Stale,
                false,
                ctx.head_only,
                request_id,
                &kept,
                false,
                ctx.version_minor,
            );
            written.then(|| e.status())
        }
        _ => None,
    }
}

impl CacheCtx {
    /// What a background refresh of this request's key needs: the request head, its
    /// key and how it was keyed.
    pub fn for_refresh(&self) -> CacheCtx {
        CacheCtx {
            store: true,
            credentials: self.credentials,
            tenant_keyed: self.tenant_keyed,
            head: self.head.clone(),
            headers: self.headers.clone(),
            host: self.host,
            target: self.target,
            key: self.key.clone(),
            stale: self.stale.clone(),
            ..CacheCtx::default()
        }
    }

    /// What a GET fill for this HEAD request needs ([`CacheCtx::fill_as_get`]): the
    /// same as a refresh, with the request head's method made GET.
    pub fn for_get_fill(&self) -> CacheCtx {
        let mut ctx = self.for_refresh();
        if ctx.head.starts_with(b"HEAD ") {
            ctx.head.splice(0..4, *b"GET");
            // Everything after the method moved back one byte (an empty span at 0,
            // for a part that is absent, stays).
            let back = |x: usize| if x > 4 { x - 1 } else { x };
            for h in &mut ctx.headers {
                for span in [&mut h.name, &mut h.value] {
                    span.start = back(span.start as usize) as u32;
                    span.end = back(span.end as usize) as u32;
                }
            }
            ctx.host = (back(ctx.host.0), back(ctx.host.1));
            ctx.target = (back(ctx.target.0), back(ctx.target.1));
        }
        ctx
    }

    /// Forget a body being kept (its response did not complete).
    pub fn discard_body(&mut self) {
        self.body = None;
    }

    /// The copy of the request head kept by the stage.
    pub fn request_head(&self) -> &[u8] {
        &self.head
    }
}

fn remember(ctx: &mut CacheCtx, head: &RequestHead, buf: &[u8]) {
    ctx.head.clear();
    ctx.head.extend_from_slice(&buf[..head.head_len]);
    ctx.headers.clone_from(&head.headers);
    ctx.host = (head.host.start as usize, head.host.end as usize);
    ctx.target = (head.target.start as usize, head.target.end as usize);
}

/// How many bytes of bodies a worker keeps for the cache while they stream, all its
/// connections together: a quarter of its cache share, and at least one object of
/// `max_object_bytes`. Past it, further responses stream through uncached, so many
/// slow cacheable downloads at once cannot hold unbounded memory.
#[derive(Debug)]
pub struct KeptBudget {
    used: std::rc::Rc<std::cell::Cell<usize>>,
    max: usize,
}

impl KeptBudget {
    pub fn new(cache_share: usize, max_object: usize) -> KeptBudget {
        KeptBudget {
            used: Default::default(),
            max: (cache_share / 4).max(max_object),
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Charge `n` more bytes to `body`, if the budget has room.
    fn charge(&self, body: &mut KeptBody, n: usize) -> bool {
        if self.used.get() + n > self.max {
            return false;
        }
        self.used.set(self.used.get() + n);
        body.charged += n;
        true
    }
}

/// A body being kept, its bytes charged to the worker's [`KeptBudget`] until dropped
/// (stored, abandoned, or its connection gone, however that happens).
#[derive(Debug)]
struct KeptBody {
    data: Vec<u8>,
    charged: usize,
    used: std::rc::Rc<std::cell::Cell<usize>>,
}

impl Drop for KeptBody {
    fn drop(&mut self) {
        self.used.set(self.used.get() - self.charged);
    }
}

/// The head of a response whose body does not arrive with it, to a request the stage
/// marked for storing: if RFC 9111 lets it be stored and its declared length (if any)
/// fits `max_object_bytes`, start keeping a copy of the body as it is relayed. Returns
/// whether the body is being kept ([`keep_body`], then [`finish_body`]).
pub fn begin_body(
    w: &Local,
    ctx: &mut CacheCtx,
    route: &RouteConfig,
    resp: &ResponseHead,
    rbuf: &[u8],
    declared: Option<u64>,
) -> bool {
    ctx.body = None;
    let limit = *w.cfg.cache.max_object_bytes.get_ref() as usize;
    if !ctx.store || declared.is_some_and(|n| n > limit as u64) {
        return false;
    }
    if judge(w, ctx, route, &response_parts(resp, rbuf)).is_none() {
        drop_replaced(w, ctx, resp.status);
        return false;
    }
    let first = declared.map_or(16 * 1024, |n| n as usize);
    let mut body = KeptBody {
        data: Vec::new(),
        charged: 0,
        used: w.kept.used.clone(),
    };
    // A declared length is charged whole up front; a chunked body as it grows.
    if !w.kept.charge(&mut body, first) {
        return false;
    }
    body.data.reserve_exact(first);
    ctx.resp_head.clear();
    ctx.resp_head.extend_from_slice(&rbuf[..resp.head_len]);
    ctx.received_at = Some(Instant::now());
    ctx.body_limit = limit;
    ctx.body = Some(body);
    true
}

/// More of the body being kept; a body that outgrows `max_object_bytes` (or the
/// worker's [`KeptBudget`]) is dropped: the response goes on streaming to the client,
/// uncached.
pub fn keep_body(w: &Local, ctx: &mut CacheCtx, data: &[u8]) {
    let Some(body) = ctx.body.as_mut() else {
        return;
    };
    let len = body.data.len() + data.len();
    let fits =
        len <= ctx.body_limit && (len <= body.charged || w.kept.charge(body, len - body.charged));
    if fits {
        body.data.extend_from_slice(data);
    } else {
        ctx.body = None;
    }
}

/// The body being kept is complete (all of Content-Length, or the last chunk): store
/// the response. A body cut short never gets here, so it is never stored.
pub fn finish_body(w: &Local, ctx: &mut CacheCtx, route: &RouteConfig, resp: &ResponseHead) {
    let Some(body) = ctx.body.take() else {
        return;
    };
    let head = std::mem::take(&mut ctx.resp_head);
    let received_at = ctx.received_at.unwrap_or_else(Instant::now);
    store(w, ctx, route, resp, &head, &body.data, received_at);
    ctx.resp_head = head;
}

/// The request's headers, from the stage's copy of its head.
fn request_headers(ctx: &CacheCtx) -> SpanHeaders<'_> {
    SpanHeaders {
        buf: &ctx.head,
        headers: &ctx.headers,
    }
}

fn response_parts<'a>(resp: &'a ResponseHead, rbuf: &'a [u8]) -> ResponseParts<'a> {
    ResponseParts {
        status: resp.status,
        reason: resp.reason.get(rbuf),
        buf: rbuf,
        headers: &resp.headers,
    }
}

/// The upstream's new answer for a stale entry may not be stored: the entry goes too
/// (its origin no longer lets it be kept as it was). A 5xx leaves it, for
/// `stale-if-error`.
fn drop_replaced(w: &Local, ctx: &CacheCtx, status: u16) {
    if ctx.stale.is_some() && status < 500 {
        w.cache.borrow_mut().remove(&ctx.key, &request_headers(ctx));
    }
}

/// The request in `ctx` as the storage rules see it (a refresh or fill is a GET).
fn facts(ctx: &CacheCtx) -> RequestFacts<'_> {
    RequestFacts {
        method: b"GET",
        directives: ReqDirectives::from_request(&request_headers(ctx)),
        credentials: ctx.credentials,
        tenant_keyed: ctx.tenant_keyed,
    }
}

/// What [`storable`] says of this response head, for the request in `ctx`.
fn judge(
    w: &Local,
    ctx: &CacheCtx,
    route: &RouteConfig,
    parts: &ResponseParts<'_>,
) -> Option<crate::cache::Storable> {
    let rc = route.cache.as_ref()?;
    let facts = facts(ctx);
    storable(&facts, rc, parts, w.unix_now.get()).ok()
}

/// A complete upstream response (`body` is all of it, its head received at
/// `received_at`) to a request the stage marked for storing, or to a
/// background refresh: store it if RFC 9111 allows. Returns whether it was stored.
pub fn store(
    w: &Local,
    ctx: &CacheCtx,
    route: &RouteConfig,
    resp: &ResponseHead,
    rbuf: &[u8],
    body: &[u8],
    received_at: Instant,
) -> bool {
    let parts = response_parts(resp, rbuf);
    let Some(st) = judge(w, ctx, route, &parts) else {
        drop_replaced(w, ctx, resp.status);
        return false;
    };
    let requested_at = ctx.requested_at.unwrap_or(received_at);
    match Entry::build(
        st,
        &parts,
        body,
        requested_at,
        received_at,
        &route.response_headers.remove,
    ) {
        Ok(entry) => w
            .cache
            .borrow_mut()
            .insert(&ctx.key, &request_headers(ctx), entry)
            .is_ok(),
        Err(_) => false,
    }
}

/// After the exchange: an unsafe method that succeeded drops its URI's entries.
pub fn after(w: &Local, ctx: &CacheCtx, status: u16) {
    if !ctx.invalidate {
        return;
    }
    let method = ctx.head.split(|&b| b == b' ').next().unwrap_or(b"");
    if invalidates(method, status) {
        let host = &ctx.head[ctx.host.0..ctx.host.1];
        let target = &ctx.head[ctx.target.0..ctx.target.1];
        w.cache.borrow_mut().invalidate(host, target);
    }
}

/// The stage's **request phase**: a usable stored response answers here (`out`, then
/// `cx.cache.answer_body`: [`Flow::Served`]); a miss goes on, marked for storing.
/// Misses on one key are coalesced per worker: the first is the key's fill leader
/// (`cx.fill`), later ones wait for its answer (bounded by the route's timeout) and
/// look again. A HEAD that missed where GET is cached (nginx's
/// `proxy_cache_convert_head`) has the entry filled with a GET by a background fill
/// it waits for, and is answered from the entry; if nothing was stored, it goes
/// upstream as it is. A stale entry within `stale-while-revalidate` is served and
/// refreshed behind the answer.
pub async fn request(r: &RequestIn<'_>, cx: &mut RequestCtx, out: &mut Vec<u8>) -> Flow {
    let w = r.w;
    let limits = &w.cfg.server.limits;
    let bound = r.route.cfg.timeout.unwrap_or(limits.request_timeout);
    let extra_len = cx.extra.len();
    let mut decision = look(r, cx, out, cx.started);
    if matches!(decision, Before::Forward) && cx.cache.fill_as_get {
        if let FillTicket::Leader(guard) = w.fills.begin(&cx.cache.key) {
            super::refresh::spawn_led(w, guard, refresh_of(r, cx, cx.cache.for_get_fill()));
        }
        if let FillTicket::Follower(wait) = w.fills.begin(&cx.cache.key) {
            if let Ok(FillOutcome::Stored) = monoio::time::timeout(bound, wait).await {
                cx.extra.truncate(extra_len);
                cx.cache.filled = true;
                decision = look(r, cx, out, monoio::time::Instant::now());
            }
        }
    }
    if matches!(decision, Before::Forward) && cx.cache.store {
        match w.fills.begin(&cx.cache.key) {
            FillTicket::Leader(guard) => cx.fill = Some(guard),
            FillTicket::Follower(wait) => {
                let _ = monoio::time::timeout(bound, wait).await;
                cx.extra.truncate(extra_len);
                decision = look(r, cx, out, monoio::time::Instant::now());
            }
        }
    }
    match decision {
        Before::Forward => Flow::Next,
        Before::Answered => {
            if cx.cache.refresh {
                // Served stale within stale-while-revalidate: fetched again behind
                // the answer, not before it.
                super::refresh::spawn(w, refresh_of(r, cx, cx.cache.for_refresh()));
            }
            Flow::Served
        }
    }
}

fn look(
    r: &RequestIn<'_>,
    cx: &mut RequestCtx,
    out: &mut Vec<u8>,
    now: monoio::time::Instant,
) -> Before {
    before(
        r.w,
        r.pl,
        now.into_std(),
        &mut cx.cache,
        &r.route.cfg,
        r.head,
        r.buf,
        cx.identity.as_deref(),
        &cx.request_id,
        r.keep_if_answered,
        out,
        &mut cx.extra,
    )
}

/// A background fetch of this request (a refresh, or a HEAD's GET fill).
fn refresh_of(r: &RequestIn<'_>, cx: &RequestCtx, ctx: CacheCtx) -> super::refresh::Refresh {
    super::refresh::Refresh {
        pipeline: r.pl.clone(),
        route: r.route.clone(),
        ctx,
        identity: cx.identity.clone(),
        peer: r.peer.clone(),
        request_id: cx.request_id.clone(),
    }
}

/// The stage's **response-head phase**: a 304 to the cache's own revalidation answers
/// with the freshened entry; a 500, 502, 503 or 504 with a stale entry within its
/// `stale-if-error` window answers with that entry (its upstream body is then not
/// read, so the connection is not reused). Returns (status, keep the client,
/// upstream connection reusable).
pub fn response_head(
    w: &Local,
    cx: &RequestCtx,
    route: &RouteConfig,
    resp: &ResponseHead,
    buf: &[u8],
    out: &mut Vec<u8>,
    keep_alive: bool,
) -> Option<(u16, bool, bool)> {
    if resp.status == 304 && cx.cache.revalidating {
        out.clear();
        revalidated(
            w,
            &cx.cache,
            route,
            resp,
            buf,
            out,
            &cx.request_id,
            &cx.extra,
            keep_alive,
        )
        .map(|s| (s, keep_alive, resp.keep_alive && buf.len() == resp.head_len))
    } else if matches!(resp.status, 500 | 502 | 503 | 504) && cx.cache.stale.is_some() {
        stale_on_error(&cx.cache, out, &cx.request_id, &cx.extra).map(|s| (s, false, false))
    } else {
        None
    }
}

/// The stage's **done phase**: an unsafe method that succeeded drops its URI's entries;
/// a body kept for storing whose response failed part-way is dropped; the fill this
/// request led is finished (on failure the guard is dropped: its followers go upstream
/// themselves); a hit's large body moves into a file ([`promote`]).
pub fn done(w: &Local, cx: &mut RequestCtx, status: u16, ok: bool) {
    after(w, &cx.cache, status);
    cx.cache.discard_body();
    if let Some(guard) = cx.fill.take() {
        if ok {
            guard.finish(FillOutcome::Stored);
        }
    }
    if ok {
        promote(w, &mut cx.cache);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(b: &KeptBudget) -> KeptBody {
        KeptBody {
            data: Vec::new(),
            charged: 0,
            used: b.used.clone(),
        }
    }

    #[test]
    fn kept_bodies_share_one_budget_and_give_it_back_when_dropped() {
        // A quarter of a 4,000-byte share, but at least one 1,500-byte object.
        let budget = KeptBudget::new(4_000, 1_500);
        let mut a = body(&budget);
        assert!(budget.charge(&mut a, 1_000));
        let mut b = body(&budget);
        assert!(!budget.charge(&mut b, 600), "over the budget");
        assert!(budget.charge(&mut b, 500));
        assert_eq!(budget.used(), 1_500);
        drop(a);
        assert_eq!(budget.used(), 500);
        assert!(budget.charge(&mut b, 1_000));
        drop(b);
        assert_eq!(budget.used(), 0);
        assert_eq!(KeptBudget::new(40_000, 1_500).max, 10_000);
    }
}
