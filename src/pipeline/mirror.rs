//! Request mirroring (`mirror = ["analytics"]` on a route): every request the route
//! forwards upstream is also sent, head and body, to each mirrored upstream, by tasks
//! of the worker apart from the client's (its lanes, `lane.rs`); the mirror's answer
//! is read and thrown away. The copy
//! never changes the client's response, its latency or its connection: nothing of the
//! client's exchange waits for it, and whatever happens to it (a dead, slow or broken
//! mirror) is only counted.
//!
//! # When a copy is made
//!
//! In phase 2 ([`super::stack::upstream_request`]): the request passed every stage
//! (auth, rate limits, the cache, `respond`) and the checks on its body, and is going
//! to its upstream. A request answered before that is not mirrored. A copy is made
//! whatever then happens to the primary exchange (a 502, a timeout), as nginx's
//! `mirror` subrequest goes out regardless of the main request's fate.
//!
//! # What the copy is
//!
//! The head as the proxy builds it for an upstream (`forward::upstream_request`): the
//! route's rewrite or `strip_prefix`, its `request_headers` edits, the identity
//! fields, `X-Forwarded-*`, the same `X-Request-ID` and `traceparent`, and the
//! client's `Host` (as the primary gets it; nginx keeps it too), with the *mirror*
//! upstream's own `request_headers`. Then the body, byte for byte as the primary gets
//! it: a body in memory with the head (small bodies, up to the proxy's inline bound,
//! and bodies a body-rule route read whole, after `json_body`) is copied at once; a
//! streamed body is copied as the driver relays it (phases 2b-2d,
//! [`super::stack::request_body`]), and the copy goes out when the body is complete.
//!
//! # Bounds
//!
//! - `server.mirror_max_in_flight` copies per worker and mirrored upstream (default
//!   64), from the moment a copy is made until its answer is read or it fails. A copy
//!   past the bound is dropped and counted: a mirror that cannot keep up loses copies,
//!   it never makes anything wait or queue without bound.
//! - `server.mirror_max_body_bytes` (default 1 MiB): a larger body (declared, or a
//!   chunked one that grows past it while it streams) is not mirrored; the copy is
//!   dropped and counted. A streamed body's copy therefore holds at most that much,
//!   and a worker at most `mirror_max_in_flight` x that per mirrored upstream.
//! - A streamed body whose copy cannot be completed (the client left, the primary
//!   answered before the body was all sent) is dropped and counted.
//! - Each batch of copies runs within the longest of their routes' timeouts
//!   (`timeout_ms`, else `request_timeout_ms`); an answer's body is read and
//!   discarded up to [`DISCARD_LIMIT`] (beyond it the connection is closed instead of
//!   pooled).
//!
//! # How copies travel
//!
//! A copy is queued for its mirror; up to [`LANES`] tasks per worker and mirror (each
//! on one connection at a time) send the queue, a batch at a time: the copies queued
//! together (at most 32, 64 KiB) go in one write, pipelined (RFC 9112 9.3.2: answers
//! come in order), and their answers are read one after the other, each within the
//! mirror's `response_timeout_ms` of the one before. Under load this makes a copy
//! cheaper than a request (one write and often one read for many copies); under light
//! load a batch is one copy. A mirror thus gets at most [`LANES`] connections from a
//! worker, and a stalled one holds them, never more.
//!
//! Copies use the one upstream client (`crate::upstream::client`), so the mirror
//! upstream's pool, connect timeout, balancer and circuit breaker apply as for any
//! request to it. A pooled connection that fails before any answer byte is replaced
//! once; copies left unanswered when a connection fails or closes are counted as
//! failed. The lanes are detached tasks: the worker's drain at shutdown waits for
//! client connections only, and copies still under way when the worker stops are
//! dropped with its runtime.
//!
//! Outcomes per mirrored upstream (all workers summed): `ringgate_mirror_requests_total
//! {upstream, result}`, result `ok` (an answer below 500), `failed` (a 5xx, no answer,
//! a timeout) or `dropped` (never sent: over a bound, or its body incomplete).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use super::context::RequestCtx;
use super::forward::{self, Peer};
use super::local::Local;
use super::outbound;
use super::stack::{Pipeline, Route};
use crate::http::{BodyFraming, Method, RequestHead};
use crate::upstream::UpstreamState;

mod lane;
use lane::queue;
pub use lane::LANES;

/// Bytes of a mirror's answer body read (and dropped) so that its connection can be
/// pooled again; a longer body closes the connection instead.
pub const DISCARD_LIMIT: u64 = 1024 * 1024;

/// `result` label values of the mirror counter, indexed by [`Outcome`].
pub const RESULTS: [&str; 3] = ["ok", "failed", "dropped"];

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok = 0,
    Failed = 1,
    Dropped = 2,
}

/// One mirrored upstream's state on a worker, kept by name across reloads (copies
/// made under an older configuration still count against the bound).
pub struct MirrorSlot {
    pub upstream: Arc<str>,
    in_flight: Cell<usize>,
    counts: [Cell<u64>; 3],
    /// Copies ready to go, for the lanes (at most `mirror_max_in_flight`).
    queue: RefCell<std::collections::VecDeque<Outgoing>>,
    /// Lane tasks running, and whether one was started and has not taken the queue
    /// yet.
    lanes: Cell<usize>,
    starting: Cell<bool>,
}

impl MirrorSlot {
    fn count(&self, o: Outcome) {
        let c = &self.counts[o as usize];
        c.set(c.get() + 1);
    }

    /// Copies under way now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }
}

/// A worker's mirrored upstreams, by name (a handful: a linear search).
#[derive(Default)]
pub struct Mirrors {
    slots: RefCell<Vec<Rc<MirrorSlot>>>,
}

impl Mirrors {
    fn slot(&self, name: &str) -> Rc<MirrorSlot> {
        let mut slots = self.slots.borrow_mut();
        if let Some(s) = slots.iter().find(|s| &*s.upstream == name) {
            return s.clone();
        }
        let s = Rc::new(MirrorSlot {
            upstream: Arc::from(name),
            in_flight: Cell::new(0),
            counts: Default::default(),
            queue: RefCell::new(std::collections::VecDeque::new()),
            lanes: Cell::new(0),
            starting: Cell::new(false),
        });
        slots.push(s.clone());
        s
    }

    /// (upstream, counts by [`RESULTS`]) of every upstream mirrored so far.
    pub fn values(&self) -> Vec<(Arc<str>, [u64; 3])> {
        self.slots
            .borrow()
            .iter()
            .map(|s| (s.upstream.clone(), s.counts.each_ref().map(Cell::get)))
            .collect()
    }
}

impl Drop for Mirrors {
    fn drop(&mut self) {
        // A queued copy holds its slot (its place under the bound): let go of them.
        for s in self.slots.borrow().iter() {
            s.queue.borrow_mut().clear();
        }
    }
}

/// One copy's place under the in-flight bound, held until the copy ends.
struct InFlight(Rc<MirrorSlot>);

impl InFlight {
    fn take(slot: Rc<MirrorSlot>, max: usize) -> Option<InFlight> {
        if slot.in_flight.get() >= max {
            slot.count(Outcome::Dropped);
            return None;
        }
        slot.in_flight.set(slot.in_flight.get() + 1);
        Some(InFlight(slot))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
    }
}

/// A copy made, not sent yet: its head, waiting for the streamed body.
struct Pending {
    up: Rc<UpstreamState>,
    place: InFlight,
    head: Vec<u8>,
}

/// The copies of the current request waiting for its streamed body, and that body as
/// relayed so far (de-chunked), at most `limit` bytes.
#[derive(Default)]
pub struct MirrorCtx {
    pending: Vec<Pending>,
    body: Vec<u8>,
    limit: usize,
    chunked: bool,
    head_request: bool,
    timeout: std::time::Duration,
}

impl MirrorCtx {
    /// Copies still waiting (the request ended without its whole body): dropped.
    fn drop_pending(&mut self) {
        for p in self.pending.drain(..) {
            p.place.0.count(Outcome::Dropped);
        }
        self.body = Vec::new();
    }
}

/// What phase 2 gives the stage.
pub struct Forwarding<'a> {
    pub w: &'a Rc<Local>,
    pub pl: &'a Rc<Pipeline>,
    pub peer: &'a Peer,
    pub head: &'a RequestHead,
    pub buf: &'a [u8],
    /// The whole body, when it is in memory (with the head, or read whole by a body
    /// route); `None`: it is streamed.
    pub body: Option<&'a [u8]>,
}

/// **Phase 2**: the request is going upstream on a route with `mirror`: make a copy
/// for each mirrored upstream (or drop it, counted). Copies of an in-memory body are
/// sent at once; returns whether copies wait for the streamed body (the driver then
/// passes its bytes to [`body`] and [`body_end`]).
pub fn forwarding(f: &Forwarding<'_>, route: &Route, cx: &mut RequestCtx) -> bool {
    // Left by a request that ended without its done phase (none should): never sent
    // with this request's body.
    cx.mirror.drop_pending();
    let server = &f.w.cfg.server;
    let declared = match (f.body, f.head.body) {
        (Some(b), _) => Some(b.len() as u64),
        (None, BodyFraming::Length(n)) => Some(n),
        _ => None,
    };
    let too_large = declared.is_some_and(|n| n > server.mirror_max_body_bytes);
    let timeout = route.cfg.timeout.unwrap_or(server.limits.request_timeout);
    let mut scratch = Vec::new();
    for &ui in &route.cfg.mirror {
        let Some(up) = f.pl.upstreams.get(ui) else {
            continue;
        };
        let slot = f.w.mirrors.slot(&up.cfg.name);
        if too_large {
            slot.count(Outcome::Dropped);
            continue;
        }
        let Some(place) = InFlight::take(slot, server.mirror_max_in_flight) else {
            continue;
        };
        let mut head = Vec::with_capacity(f.head.head_len + 256 + declared.unwrap_or(0) as usize);
        if !copy_head(f, &route.cfg, up, cx, &mut scratch, &mut head) {
            place.0.count(Outcome::Dropped);
            continue;
        }
        let copy = Outgoing {
            up: up.clone(),
            place,
            bytes: head,
            head_request: f.head.method == Method::Head,
            timeout,
        };
        match f.body {
            Some(b) => {
                let mut copy = copy;
                copy.bytes.extend_from_slice(b);
                queue(f.w, copy);
            }
            None => cx.mirror.pending.push(Pending {
                up: copy.up,
                place: copy.place,
                head: copy.bytes,
            }),
        }
    }
    if cx.mirror.pending.is_empty() {
        return false;
    }
    let m = &mut cx.mirror;
    m.body.clear();
    m.limit = server.mirror_max_body_bytes.min(usize::MAX as u64) as usize;
    m.chunked = f.head.body == BodyFraming::Chunked;
    m.head_request = f.head.method == Method::Head;
    m.timeout = timeout;
    true
}

/// The head for mirror `up`, appended to `out`, as the proxy builds the primary's;
/// `false` if the route's rewrite fails (the primary is refused then too).
fn copy_head(
    f: &Forwarding<'_>,
    route: &crate::config::RouteConfig,
    up: &UpstreamState,
    cx: &RequestCtx,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> bool {
    let path = outbound::matched_path(f.head, f.buf, &cx.path);
    let mut target = Vec::new();
    let rewrote = match outbound::rewrite(route, f.head, f.buf, path, &mut target) {
        Ok(done) => done,
        Err(_) => return false,
    };
    // The stages' fields (as the primary gets them), then the mirror upstream's own
    // request_headers (rendered into `scratch` only when it has some).
    let fields: &[u8] = if up.cfg.request_headers.is_empty() {
        &cx.upstream_fields
    } else {
        scratch.clear();
        scratch.extend_from_slice(&cx.upstream_fields);
        render_fields(f, route, up, cx, path, scratch);
        scratch
    };
    forward::upstream_request(
        out,
        f.head,
        f.buf,
        &forward::Outbound {
            route,
            peer: f.peer,
            request_id: &cx.request_id,
            upstream_host: &up.cfg.servers[0].label,
            identity: cx.identity.as_deref(),
            strip_credentials: route
                .auth
                .checks_credentials()
                .then(|| f.pl.auth.api_key_header()),
            extra_fields: fields,
            traceparent: cx.traceparent(),
            target: rewrote.then_some(&target[..]),
            replaced: &up.cfg.request_headers,
        },
    );
    true
}

/// The mirror upstream's `request_headers`, rendered for this request into `out`.
fn render_fields(
    f: &Forwarding<'_>,
    route: &crate::config::RouteConfig,
    up: &UpstreamState,
    cx: &RequestCtx,
    path: &[u8],
    out: &mut Vec<u8>,
) {
    outbound::upstream_headers(
        &up.cfg.request_headers,
        &outbound::Facts {
            head: f.head,
            buf: f.buf,
            path,
            route,
            request_id: &cx.request_id,
            client_ip: f.peer.addr,
            identity: cx.identity.as_deref(),
            default_plan: f.pl.cfg.rate_limit.default_plan.get_ref(),
        },
        out,
    );
}

/// **Phase 2b**: the streamed body is (re)started: a connection replaced before any
/// of it was taken sends it again from its start, and the copy starts over with it.
pub fn body_start(cx: &mut RequestCtx) {
    cx.mirror.body.clear();
}

/// **Phase 2c**: a piece of the streamed body, as relayed (de-chunked). Past the
/// body bound the waiting copies are dropped.
pub fn body(cx: &mut RequestCtx, data: &[u8]) {
    let m = &mut cx.mirror;
    if m.pending.is_empty() {
        return;
    }
    if m.body.len() + data.len() > m.limit {
        m.drop_pending();
        return;
    }
    m.body.extend_from_slice(data);
}

/// **Phase 2d**: the streamed body is complete: the waiting copies go.
pub fn body_end(w: &Rc<Local>, cx: &mut RequestCtx) {
    let m = &mut cx.mirror;
    if m.pending.is_empty() {
        return;
    }
    let body = std::mem::take(&mut m.body);
    for p in m.pending.drain(..) {
        let mut bytes = p.head;
        if m.chunked {
            // The head says chunked, as the primary's does: the body as one chunk.
            if !body.is_empty() {
                bytes.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                bytes.extend_from_slice(&body);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        } else {
            bytes.extend_from_slice(&body);
        }
        queue(
            w,
            Outgoing {
                up: p.up,
                place: p.place,
                bytes,
                head_request: m.head_request,
                timeout: m.timeout,
            },
        );
    }
}

/// **Phase 7**: copies still waiting for a body that never completed are dropped.
pub fn done(cx: &mut RequestCtx) {
    if !cx.mirror.pending.is_empty() {
        cx.mirror.drop_pending();
    }
}

/// A copy ready to go.
struct Outgoing {
    up: Rc<UpstreamState>,
    place: InFlight,
    bytes: Vec<u8>,
    head_request: bool,
    timeout: std::time::Duration,
}
