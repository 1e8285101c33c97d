//! The order of the stages, written down once, and [`Pipeline`]: everything a worker
//! serves requests with, built from one validated configuration and replaced whole on
//! reload. A request goes through:
//!
//! ```text
//!  client ──► head parse & limits ──► route ──► auth ──► rate limit ──► respond ──► cache
//!                 (http::request)    (route)   (auth)   (ratelimit)    (respond)    (cache)
//!         ──► compose (parts in parallel) ──► client
//!              (compose, upstream client)
//!         ──► upstream pick & exchange ──► response head rewrite ──► client
//!                (proxy, upstream)           (forward)
//!             └─► a copy to each mirror, sent apart from the client's task (mirror)
//! ```
//!
//! Why this order: limits and parsing come first so nothing malformed reaches any
//! stage; routing precedes auth because the route says whether auth is required; auth
//! precedes rate limiting because the bucket key is the caller's identity; the cache
//! comes after both so a cached answer is never served to a caller who would have been
//! refused or limited. A route's `respond` answers after auth and rate limiting, so it
//! is protected like any route, and before the cache, which has nothing to keep for
//! it. A route's `compose` answers after the cache: a stored composed answer is served
//! without fetching any part, and a new one goes through the response phases
//! (`body_start`) as an upstream's would, so the cache stores it. Metrics is first in
//! the list so that its done phase, which runs in reverse order, is the very last: it
//! records what every other stage decided. Mirroring is last: only a request every
//! other stage let through is copied, with the fields they added for the upstream.
//! A `fanout` route takes the place of the upstream exchange: once the request phase
//! let it through, the driver hands it to [`super::fanout`], which streams the body
//! to all of its upstreams and answers with their results.
//!
//! # Phases
//!
//! A stage takes part in a request through phases, in the spirit of Pingora's: each
//! phase function below says when it runs and what its result means, and runs the
//! stages that take part in it in [`STACK`] order. The I/O driver
//! ([`super::proxy`]) calls the phases; it knows no stage by name.
//!
//! 0. [`arrival`]: the head is parsed, not routed yet (the trace context, redirect to
//!    HTTPS, HSTS).
//!    0b. [`routed`]: the head is routed, before any request phase: what must come
//!    before auth. A CORS preflight is answered here (browsers send it without
//!    credentials, so auth would refuse it, and it must not cost a rate-limit token);
//!    the CORS fields set here ride on every later answer, auth's 401 included.
//!    The compress stage reads `Accept-Encoding` here, while the head is whole.
//! 1. [`request`]: the head is routed; a stage may answer (an error, a cached
//!    response) and end the request there.
//! 2. [`upstream_request`]: fields for the request sent upstream; copies of it
//!    (mirroring). 2b-2d. [`request_body_start`], [`request_body`],
//!    [`request_body_end`]: a streamed request body as sent, for a stage that asked.
//! 3. [`response_head`] / [`upstream_failed`]: the upstream's head, or its failure; a
//!    stage may answer in its place.
//! 4. [`body_start`], 5. [`body`], 6. [`body_end`]: the response body as relayed.
//! 7. [`done`]: the exchange is over, however it ended.
//!
//! # Snapshots and reload
//!
//! A worker holds its current [`Pipeline`] behind an `Rc`; a request takes a clone of
//! it when it starts and keeps it to its end, so a reload never shows a request half
//! of each configuration. [`Pipeline::build`] is the one factory: given the previous
//! pipeline it carries over what must survive, by name: an upstream whose settings
//! did not change keeps its whole state (idle connections, balancer, circuit
//! breakers, health); a changed one keeps, per server address still in it, the idle
//! connections, the breaker and the health verdict. Rate-limit buckets and cache
//! entries live in the worker, outside the pipeline, and are kept as they are.

use std::rc::Rc;
use std::sync::Arc;

use monoio::time::Instant;

use super::auth::Answer;
use super::context::RequestCtx;
use super::forward::Peer;
use super::local::Local;
use crate::auth::{AuthSettings, Authenticator};
use crate::cache::XCache;
use crate::config::{Config, RouteConfig, RouteTarget};
use crate::http::{RequestHead, ResponseHead};
use crate::pipeline::route::Router;
use crate::ratelimit::{PlanId, RateLimitConfig};
use crate::telemetry::metrics::names::auth_reason_index;
use crate::upstream::UpstreamState;

/// A stage of the request path. Each is a module of `pipeline/` with a function per
/// phase it takes part in; the functions below run the phases in [`STACK`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// [`super::trace`]: the request's W3C trace context, kept or started.
    Trace,
    /// [`super::https`]: redirects plain requests to HTTPS (`redirect_http`), adds
    /// Strict-Transport-Security on HTTPS (`hsts_max_age_s`).
    Https,
    /// [`super::cors`]: answers CORS preflights, adds CORS fields to responses.
    Cors,
    /// [`super::compress`]: picks the response's coding from `Accept-Encoding`;
    /// the driver compresses while relaying (`proxy/compressed.rs`).
    Compress,
    /// [`super::auth`]: verifies the caller's credential (or answers 400/401/403).
    Auth,
    /// [`super::ratelimit`]: charges the caller's bucket (or answers 429).
    RateLimit,
    /// [`super::respond`]: answers a `respond` route at the edge.
    Respond,
    /// [`super::cache`]: answers from a stored response, coalesces misses,
    /// revalidates, stores.
    Cache,
    /// [`super::compose`]: answers a `compose` route with one JSON object from its
    /// parts, fetched in parallel.
    Compose,
    /// [`super::metrics`]: records the request's route, method, status, duration,
    /// bytes and the other stages' outcomes (`metrics.enabled`).
    Metrics,
    /// [`super::mirror`]: sends a copy of a forwarded request to each of the route's
    /// `mirror` upstreams, from tasks apart from the client's.
    Mirror,
}

/// The stages, in the order they run. Why this order is the module's first paragraph.
/// A new stage is a module with its phase functions, a variant above and a place
/// here.
pub const STACK: [Stage; 11] = [
    Stage::Metrics,
    Stage::Trace,
    Stage::Https,
    // Before auth: a preflight carries no credentials (see `routed`).
    Stage::Cors,
    // Reads Accept-Encoding in the routed phase, while the request head is whole.
    Stage::Compress,
    Stage::Auth,
    Stage::RateLimit,
    Stage::Respond,
    Stage::Cache,
    // After the cache, so a stored composed answer is served without fetching a part.
    Stage::Compose,
    // Last: only a request every stage let through is copied, and it is copied as it
    // goes upstream (with the cache's fields, phase 2).
    Stage::Mirror,
];

/// What a request phase decided.
pub enum Flow {
    /// On to the next stage, and after the last one to the upstream.
    Next,
    /// Answer with this error; the later stages do not run.
    Reject(Answer),
    /// A stage wrote a complete response (the cache: `out`, then
    /// `cx.cache.answer_body`); the later stages do not run.
    Served,
}

/// What the request phase works on.
pub struct RequestIn<'a> {
    pub w: &'a Rc<Local>,
    pub pl: &'a Rc<Pipeline>,
    pub route: &'a Rc<Route>,
    pub head: &'a RequestHead,
    pub buf: &'a [u8],
    pub peer: &'a Peer,
    /// The connection stays open if a stage answers (nothing of a body is unread).
    pub keep_if_answered: bool,
}

/// **Phase 0, arrival**: the head is parsed, not yet routed: what applies to every
/// request whatever its route (the HTTPS stage's redirect and HSTS). A stage may
/// answer (`Err`: status, message, header lines).
pub fn arrival(
    w: &Local,
    pl: &Pipeline,
    peer: &Peer,
    head: &RequestHead,
    buf: &[u8],
    cx: &mut RequestCtx,
) -> Result<(), Answer> {
    for stage in STACK {
        if stage == Stage::Trace {
            super::trace::arrival(w, &pl.cfg, head, buf, cx);
        }
        if stage == Stage::Https {
            match super::https::arrival(w, &pl.cfg, peer, head, buf, &mut cx.extra) {
                None => {}
                Some(Ok(r)) => {
                    return Err(Answer {
                        status: 308,
                        message: r.message,
                        headers: r.headers,
                    })
                }
                Some(Err(message)) => {
                    return Err(Answer {
                        status: 400,
                        message: message.to_owned(),
                        headers: Vec::new(),
                    })
                }
            }
        }
    }
    Ok(())
}

/// **Phase 0b, routed**: the head is routed (`r.route`), no request phase has run.
/// A stage may answer (the CORS stage: a preflight, allowed with a 204 in `out`, or
/// refused) and end the request there; the later stages do not run.
pub fn routed(r: &RequestIn<'_>, cx: &mut RequestCtx, out: &mut Vec<u8>) -> Flow {
    for stage in STACK {
        if stage == Stage::Cors {
            if let Some(cors) = &r.route.cfg.cors {
                let date = *r.w.date.borrow();
                match super::cors::routed(cors, r.head, r.buf, &date, r.keep_if_answered, cx, out) {
                    super::cors::Cors::Next => {}
                    super::cors::Cors::Preflight => return Flow::Served,
                    super::cors::Cors::Refused(answer) => return Flow::Reject(answer),
                }
            }
        }
        if stage == Stage::Compress {
            if let Some(cfg) = &r.route.cfg.compress {
                cx.compress = super::compress::negotiate(cfg, r.head, r.buf);
            }
        }
    }
    Flow::Next
}

/// **Phase 1, request**: the head is parsed and routed (`r.route`), nothing was sent
/// upstream. Each stage may answer. `out` receives a stage's complete response.
pub async fn request(r: &RequestIn<'_>, cx: &mut RequestCtx, out: &mut Vec<u8>) -> Flow {
    for stage in STACK {
        let flow = match stage {
            Stage::Auth => match super::auth::run(r.w, r.pl, &r.route.cfg, r.head, r.buf, r.peer) {
                Ok(identity) => {
                    cx.identity = identity;
                    Flow::Next
                }
                Err(denied) => {
                    cx.observed.auth_reason = Some(auth_reason_index(denied.reason) as u8);
                    Flow::Reject(denied.answer)
                }
            },
            Stage::RateLimit => match super::ratelimit::run(
                r.w,
                r.pl,
                r.route.plan,
                &r.route.cfg,
                cx.identity.as_deref(),
                r.peer.addr,
                r.peer.trusted,
                r.head,
                r.buf,
                &mut cx.extra,
            ) {
                Ok(()) => Flow::Next,
                Err((answer, plan)) => {
                    if r.w.metrics.enabled() {
                        let name = &r.pl.limits.plan(plan).name;
                        cx.observed.rejected_plan = Some(r.w.metrics.plan_slot(name));
                    }
                    Flow::Reject(answer)
                }
            },
            Stage::Respond => super::respond::request(r, cx, out),
            Stage::Cache => super::cache::request(r, cx, out).await,
            Stage::Compose => super::compose::request(r, cx, out).await,
            // Their work is done on arrival, once routed, on the way upstream, or at
            // the end.
            Stage::Https
            | Stage::Trace
            | Stage::Metrics
            | Stage::Cors
            | Stage::Compress
            | Stage::Mirror => Flow::Next,
        };
        if !matches!(flow, Flow::Next) {
            return flow;
        }
    }
    Flow::Next
}

/// **Phase 2, upstream request**: the request is going upstream (`f.head`, not yet
/// sent; `f.body` the whole body when it is in memory); stages add header lines to
/// `cx.upstream_fields` (the cache: its validators for a stale entry); the mirror
/// stage copies the request. Returns whether a stage wants the streamed request
/// body's bytes (phases 2b-2d).
pub fn upstream_request(f: &super::mirror::Forwarding<'_>, cx: &mut RequestCtx) -> bool {
    let mut wants = false;
    for stage in STACK {
        if stage == Stage::Cache && cx.cache.stale.is_some() {
            super::cache::validators(&mut cx.cache, f.head, f.buf, &mut cx.upstream_fields);
        }
        if stage == Stage::Mirror {
            if let Some(route) = cx.route.as_ref().filter(|r| !r.cfg.mirror.is_empty()) {
                let route = route.clone();
                wants |= super::mirror::forwarding(f, &route, cx);
            }
        }
    }
    wants
}

/// **Phase 2b, request body starts**: the streamed request body is about to be sent
/// (again, when a dead pooled connection was replaced before any of it was taken).
/// Only when phase 2 asked for the body.
pub fn request_body_start(cx: &mut RequestCtx) {
    for stage in STACK {
        if stage == Stage::Mirror {
            super::mirror::body_start(cx);
        }
    }
}

/// **Phase 2c, request body**: a piece of the streamed request body as sent upstream
/// (de-chunked). Only when phase 2 asked for the body.
#[inline]
pub fn request_body(cx: &mut RequestCtx, data: &[u8]) {
    for stage in STACK {
        if stage == Stage::Mirror {
            super::mirror::body(cx, data);
        }
    }
}

/// **Phase 2d, request body ends**: all of the streamed request body was sent. Only
/// when phase 2 asked for the body.
pub fn request_body_end(w: &Rc<Local>, cx: &mut RequestCtx) {
    for stage in STACK {
        if stage == Stage::Mirror {
            super::mirror::body_end(w, cx);
        }
    }
}

/// **Phase 3, response head**: the upstream's final head is in `buf`. A stage may
/// answer in its place (the cache: the stale entry freshened by a 304 to its
/// revalidation, or standing in for a 5xx within `stale-if-error`), writing the
/// whole answer to `out`: returns (status, keep the client, upstream connection
/// reusable).
#[allow(clippy::too_many_arguments)]
pub fn response_head(
    w: &Local,
    cx: &mut RequestCtx,
    route: &RouteConfig,
    resp: &ResponseHead,
    buf: &[u8],
    out: &mut Vec<u8>,
    keep_alive: bool,
) -> Option<(u16, bool, bool)> {
    let mut answer = None;
    for stage in STACK {
        if stage == Stage::Cache && answer.is_none() {
            answer = super::cache::response_head(w, cx, route, resp, buf, out, keep_alive);
            // Not the freshened entry of a revalidation (`MISS`): a stale one.
            if answer.is_some() && !(resp.status == 304 && cx.cache.revalidating) {
                cx.cache.outcome = Some(XCache::Stale);
            }
        }
    }
    answer
}

/// **Phase 3b, upstream failed**: no usable answer came (a connection error, a
/// timeout). A stage may answer in its place (the cache: a stale entry within
/// `stale-if-error`), writing it to `out`; returns its status.
pub fn upstream_failed(cx: &mut RequestCtx, out: &mut Vec<u8>) -> Option<u16> {
    let mut status = None;
    for stage in STACK {
        if stage == Stage::Cache && status.is_none() {
            status = super::cache::stale_on_error(&cx.cache, out, &cx.request_id, &cx.extra);
            if status.is_some() {
                cx.cache.outcome = Some(XCache::Stale);
            }
        }
    }
    status
}

/// **Phase 4, response body starts**: the head is relayed. `whole` is the whole body
/// when it came with the head (then there is no phase 5 or 6); else `declared` is its
/// Content-Length, if any. `received_at` is the response's end, read from the clock
/// by the first stage that needs it. Returns whether a stage wants the body's bytes
/// (phase 5).
#[allow(clippy::too_many_arguments)]
pub fn body_start(
    w: &Local,
    cx: &mut RequestCtx,
    route: &RouteConfig,
    resp: &ResponseHead,
    buf: &[u8],
    whole: Option<std::ops::Range<usize>>,
    declared: Option<u64>,
    received_at: &mut Option<Instant>,
) -> bool {
    let mut wants = false;
    for stage in STACK {
        if stage == Stage::Cache && cx.cache.store {
            match &whole {
                Some(body) => {
                    super::cache::store(
                        w,
                        &cx.cache,
                        route,
                        resp,
                        buf,
                        &buf[body.clone()],
                        received_at.get_or_insert_with(Instant::now).into_std(),
                    );
                }
                None => {
                    wants |= super::cache::begin_body(w, &mut cx.cache, route, resp, buf, declared)
                }
            }
        }
    }
    wants
}

/// **Phase 5, response body**: a piece of the body as relayed (de-chunked).
#[inline]
pub fn body(w: &Local, cx: &mut RequestCtx, data: &[u8]) {
    for stage in STACK {
        if stage == Stage::Cache {
            super::cache::keep_body(w, &mut cx.cache, data);
        }
    }
}

/// **Phase 6, response body ends**: all of the body was relayed.
pub fn body_end(w: &Local, cx: &mut RequestCtx, route: &RouteConfig, resp: &ResponseHead) {
    for stage in STACK {
        if stage == Stage::Cache {
            super::cache::finish_body(w, &mut cx.cache, route, resp);
        }
    }
}

/// **Phase 7, done**: the exchange is over (`status` is what the client got, `ok`
/// whether it completed; `cx.observed` holds the bytes each way). Runs for every
/// request, answered at the edge, unrouted or proxied, whatever happened, in reverse
/// stack order (the last stage to see the request is the first to let go of it).
pub fn done(w: &Local, cx: &mut RequestCtx, status: u16, ok: bool) {
    for stage in STACK.iter().rev() {
        match stage {
            Stage::Cache => super::cache::done(w, cx, status, ok),
            Stage::Mirror => super::mirror::done(cx),
            Stage::Metrics if w.metrics.enabled() => super::metrics::done(w, cx, status),
            _ => {}
        }
    }
}

/// A route of a pipeline, its references resolved when the pipeline was built.
pub struct Route {
    pub cfg: RouteConfig,
    /// Where it sends requests.
    pub target: Target,
    /// Its own rate limit, else the plan it forces, if any.
    pub plan: Option<PlanId>,
    /// Its `validate` schema, compiled by this worker (`super::body`).
    pub schema: Option<jsonschema::Validator>,
}

/// A route's upstream, or its weighted split between upstreams; each with its index
/// in [`Pipeline::upstreams`]. `None`: the route answers at the edge (`respond`).
pub enum Target {
    None,
    Single(usize, Rc<UpstreamState>),
    Split {
        parts: Vec<(usize, Rc<UpstreamState>, u32)>,
        total: u32,
    },
    /// `fanout`: every one of them gets the request (`super::fanout`).
    Fanout(Vec<(usize, Rc<UpstreamState>)>),
}

impl Target {
    /// The upstream for one request (a split draws by weight from `rng`), and its
    /// index in [`Pipeline::upstreams`]; `None` for a route without one.
    pub fn pick(
        &self,
        rng: &std::cell::RefCell<fastrand::Rng>,
    ) -> Option<(usize, &Rc<UpstreamState>)> {
        Some(match self {
            Target::None | Target::Fanout(_) => return None,
            Target::Single(i, up) => (*i, up),
            Target::Split { parts, total } => {
                let mut r = rng.borrow_mut().u32(..(*total).max(1));
                for (i, up, weight) in parts {
                    if r < *weight {
                        return Some((*i, up));
                    }
                    r -= weight;
                }
                (parts[0].0, &parts[0].1)
            }
        })
    }
}

/// What a worker serves requests with, from one configuration.
pub struct Pipeline {
    /// The configuration it was built from (its routes and upstreams; process-wide
    /// settings such as listeners are read from the worker's start configuration).
    pub cfg: Arc<Config>,
    /// Finds the route for a request: an index into `routes`.
    pub router: Router,
    /// In file order, each with its upstream and plan resolved.
    pub routes: Vec<Rc<Route>>,
    /// In `cfg.upstreams` order.
    pub upstreams: Vec<Rc<UpstreamState>>,
    /// Plans and bucket keys (shared, read-only).
    pub limits: Arc<RateLimitConfig>,
    /// Credentials: keys loaded when the configuration was read, verified identities
    /// cached per worker (the cache starts empty with each pipeline).
    pub auth: Authenticator,
    /// This worker's TLS server configuration (its own, so that a stateful session
    /// cache is not shared between cores), from the certificates loaded with `cfg`:
    /// new handshakes use it, connections already open keep theirs.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Pipeline {
    /// Build from a validated configuration, carrying state over from `prev`.
    pub fn build(
        cfg: Arc<Config>,
        limits: Arc<RateLimitConfig>,
        auth: &AuthSettings,
        prev: Option<&Pipeline>,
    ) -> Pipeline {
        let upstreams = cfg
            .upstreams
            .iter()
            .map(|u| {
                let old = prev.and_then(|p| p.upstreams.iter().find(|o| o.cfg.name == u.name));
                match old {
                    // The same settings: the very same state, whole.
                    Some(old) if format!("{:?}", old.cfg) == format!("{u:?}") => old.clone(),
                    Some(old) => Rc::new(UpstreamState::carried(u, old)),
                    None => Rc::new(UpstreamState::new(u)),
                }
            })
            .collect::<Vec<_>>();
        if let Some(prev) = prev {
            for old in &prev.upstreams {
                if !upstreams.iter().any(|u| Rc::ptr_eq(u, old)) {
                    old.retire();
                }
            }
        }
        // Cross-references resolved once, here, into handles; routes' own limits
        // become plans (already there when validation built `limits`).
        let limits = limits.with_routes(&cfg.routes);
        let routes = cfg
            .routes
            .iter()
            .map(|r| {
                Rc::new(Route {
                    target: match &r.target {
                        // Its stage fetches the parts from `upstreams` itself.
                        RouteTarget::Respond(_) | RouteTarget::Compose(_) => Target::None,
                        RouteTarget::Single(i) => Target::Single(*i, upstreams[*i].clone()),
                        RouteTarget::Fanout(f) => Target::Fanout(
                            f.upstreams
                                .iter()
                                .map(|&i| (i, upstreams[i].clone()))
                                .collect(),
                        ),
                        RouteTarget::Split(parts) => Target::Split {
                            parts: parts
                                .iter()
                                .map(|&(i, weight)| (i, upstreams[i].clone(), weight))
                                .collect(),
                            total: parts.iter().map(|p| p.1).sum(),
                        },
                    },
                    plan: limits.plan_of_route(r),
                    // Checked when the configuration was loaded: it compiles.
                    schema: r
                        .body
                        .as_ref()
                        .and_then(|b| b.validate.as_ref())
                        .and_then(|v| crate::config::body::compile(&v.schema).ok()),
                    cfg: r.clone(),
                })
            })
            .collect();
        Pipeline {
            router: Router::new(&cfg.routes),
            routes,
            upstreams,
            auth: Authenticator::new(auth),
            limits,
            tls: crate::tls::server_config(&cfg),
            cfg,
        }
    }
}
