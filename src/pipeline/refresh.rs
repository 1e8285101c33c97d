//! Background refresh for `stale-while-revalidate` (RFC 5861 3): a request that finds
//! its entry stale but within the window is answered from it at once (`X-Cache:
//! STALE`), and the worker fetches a fresh copy in a task of its own. The task is the
//! key's fill leader (see `crate::cache::Fills`), so one refresh per key per worker
//! runs at a time, and a miss arriving meanwhile waits for it instead of going
//! upstream too.
//!
//! The refresh repeats the caller's request (its head as the route would forward it,
//! with the caller's identity, so a tenant-keyed entry is refreshed with that tenant's
//! answer) through the upstream client ([`crate::upstream::client::fetch`], with its
//! pooled-connection guarantees), reads the whole response (at most
//! `max_object_bytes`, within the route's request timeout), and stores it by the same
//! RFC 9111 rules as a miss. Whatever goes
//! wrong leaves the stale entry in place: it is still served within its window, and
//! served on error within its `stale-if-error` window.
//!
//! The same task fills the entry for a HEAD that missed on a route that caches GET
//! ([`spawn_led`], with the request made a GET): the HEAD waits for it as a follower
//! and is answered from the entry (nginx's `proxy_cache_convert_head`).

use std::rc::Rc;

use monoio::time::Instant;

use super::cache::CacheCtx;
use super::forward::{self, Peer};
use super::stack::{Pipeline, Route};
use crate::auth::Identity;
use crate::cache::{FillGuard, FillOutcome, FillTicket};
use crate::config::RouteConfig;
use crate::http::{BodyFraming, RequestHead, ResponseHead};
use crate::pipeline::local::Local;
use crate::task::contain::Contained;
use crate::upstream::client::{self, HeadLimits, Whole};

/// What a refresh needs from the request that triggered it.
pub struct Refresh {
    /// The pipeline of the request that started it, and its route.
    pub pipeline: Rc<Pipeline>,
    pub route: Rc<Route>,
    pub ctx: CacheCtx,
    pub identity: Option<Rc<Identity>>,
    pub peer: Peer,
    pub request_id: Vec<u8>,
}

/// Start a refresh of the key in `r.ctx`, unless one (or a miss's fill) is already
/// running for it on this worker.
pub fn spawn(w: &Rc<Local>, r: Refresh) {
    let FillTicket::Leader(guard) = w.fills.begin(&r.ctx.key) else {
        return;
    };
    spawn_led(w, guard, r);
}

/// Start the fetch of `r.ctx.key` as the fill leader `guard` (a refresh, or the GET
/// that fills the entry for a HEAD that missed).
pub fn spawn_led(w: &Rc<Local>, guard: FillGuard, r: Refresh) {
    let w = w.clone();
    monoio::spawn(async move {
        let route = &r.route.cfg;
        let deadline =
            Instant::now() + route.timeout.unwrap_or(w.cfg.server.limits.request_timeout);
        let done = monoio::time::timeout_at(deadline, Contained::new(run(&w, route, &r))).await;
        let stored = matches!(done, Ok(Some(Ok(()))));
        if matches!(done, Ok(None)) {
            crate::telemetry::inc(&w.counters.task_panics);
        }
        finish(guard, stored);
        crate::telemetry::inc(&w.counters.cache_refreshes);
        if !stored && w.cfg.log.level >= crate::config::LogLevel::Debug {
            eprintln!(
                "ringgate: background refresh for request {} failed",
                String::from_utf8_lossy(&r.request_id)
            );
        }
    });
}

fn finish(guard: FillGuard, stored: bool) {
    if stored {
        guard.finish(FillOutcome::Stored);
    }
    // Dropped unfinished: waiters go upstream themselves.
}

/// The refresh did not produce a storable response.
struct Failed;

async fn run(w: &Rc<Local>, route: &RouteConfig, r: &Refresh) -> Result<(), Failed> {
    let buf = r.ctx.request_head();
    let mut head = RequestHead::default();
    let limits = &w.cfg.server.limits;
    if !matches!(head.parse(buf, buf.len(), limits.max_headers), Ok(true))
        || head.body != BodyFraming::Empty
    {
        return Err(Failed);
    }
    let up = &**r.route.target.pick(&w.rng).ok_or(Failed)?.1;
    let mut ctx = r.ctx.for_refresh();
    // Conditionally, with the stale entry's ETag or Last-Modified: an unchanged
    // resource comes back as a 304 without its body.
    let mut validators = Vec::new();
    super::cache::validators(&mut ctx, &head, buf, &mut validators);
    // As the proxy does (`outbound`): the route's rewrite, the upstream's
    // request_headers. The head kept for a refresh is the path as received.
    let mut normalised = Vec::new();
    let mut path = head.path(buf);
    if crate::http::path::needs_normalizing(path) {
        crate::http::path::normalize(path, &mut normalised);
        path = &normalised;
    }
    let mut rewritten = Vec::new();
    let rewrote =
        super::outbound::rewrite(route, &head, buf, path, &mut rewritten).map_err(|_| Failed)?;
    super::outbound::upstream_headers(
        &up.cfg.request_headers,
        &super::outbound::Facts {
            head: &head,
            buf,
            path,
            route,
            request_id: &r.request_id,
            client_ip: r.peer.addr,
            identity: r.identity.as_deref(),
        },
        &mut validators,
    );
    let mut out = Vec::with_capacity(buf.len() + 256);
    forward::upstream_request(
        &mut out,
        &head,
        buf,
        &forward::Outbound {
            route,
            peer: &r.peer,
            request_id: &r.request_id,
            upstream_host: &up.cfg.servers[0].label,
            identity: r.identity.as_deref(),
            strip_credentials: route
                .auth
                .checks_credentials()
                .then(|| r.pipeline.auth.api_key_header()),
            extra_fields: &validators,
            // A background fetch is the gateway's own: the triggering request's
            // fields go as they came.
            traceparent: None,
            target: rewrote.then_some(&rewritten[..]),
            replaced: &up.cfg.request_headers,
        },
    );
    let hash_key = up
        .balancer
        .hash_header()
        .and_then(|h| head.header(buf, h))
        .map(<[u8]>::to_vec);
    let now = Instant::now();
    let si = up
        .balancer
        .pick(
            &|i| up.available(i, now),
            &|i| up.servers[i].in_flight.get(),
            hash_key.as_deref(),
        )
        .ok_or(Failed)?;
    let limit = *w.cfg.cache.max_object_bytes.get_ref() as usize;
    let mut resp = ResponseHead::default();
    ctx.requested_at = Some(std::time::Instant::now());
    let fetched = client::fetch(
        up,
        si,
        &mut out,
        &mut resp,
        HeadLimits::from(&w.cfg.server.limits),
        limit,
        up.cfg.response_timeout,
    )
    .await;
    up.record(
        si,
        fetched.as_ref().is_ok_and(|_| resp.status < 500),
        Instant::now(),
    );
    let Whole {
        head: head_bytes,
        body,
    } = fetched.map_err(|_| Failed)?;
    let stored = if ctx.revalidating && resp.status == 304 {
        super::cache::refreshed(w, &ctx, route, &resp, &head_bytes)
    } else {
        super::cache::store(
            w,
            &ctx,
            route,
            &resp,
            &head_bytes,
            &body,
            std::time::Instant::now(),
        )
    };
    if stored {
        Ok(())
    } else {
        Err(Failed)
    }
}
