//! [`RequestCtx`]: one request's state as the stages see it, from routing to the
//! access log: the request id, the route, the caller's identity, the header lines the
//! stages add to the response and to the upstream request, the cache's decision and
//! the fill it leads, what the metrics stage will record. The stages read and write it instead of passing values to each
//! other through arguments or connection fields.
//!
//! Each client connection owns one and clears it for every request, so its buffers
//! are allocated once per connection, not per request.

use std::rc::Rc;

use monoio::time::Instant;

use super::cache::CacheCtx;
use super::stack::Route;
use crate::auth::Identity;
use crate::cache::FillGuard;
use crate::telemetry::metrics::Observed;

pub struct RequestCtx {
    pub started: Instant,
    /// The request's id (the client's `X-Request-ID`, or one made up).
    pub request_id: Vec<u8>,
    /// The route matched (a route of the request's pipeline).
    pub route: Option<Rc<Route>>,
    /// The verified caller (auth stage), if any.
    pub identity: Option<Rc<Identity>>,
    /// Header lines (each ending in CRLF) the stages add to the response: rate-limit
    /// headers, `X-Cache`, an auth challenge.
    pub extra: Vec<u8>,
    /// Header lines the stages add to the request sent upstream (the cache's
    /// validators when it revalidates a stale entry).
    pub upstream_fields: Vec<u8>,
    /// The path routing matched on, when the request's needed normalising.
    pub path: Vec<u8>,
    /// Method and path, kept for the access log.
    pub logline: Vec<u8>,
    /// The cache stage's decision.
    pub cache: CacheCtx,
    /// The cache fill this request leads: requests for the same key wait for it.
    pub fill: Option<FillGuard>,
    /// Answered before its body was all read: the connection closes with a lingering
    /// close.
    pub linger: bool,
    /// The `traceparent` sent upstream (the trace stage), when `traced`.
    pub trace: [u8; crate::http::traceparent::LEN],
    pub traced: bool,
    /// What the metrics stage records at the end: the route's slot, the method, bytes,
    /// a rate-limit or auth refusal (the cache's outcome is in `cache`).
    pub observed: Observed,
    /// The target sent upstream when the route's rewrite changed it.
    pub rewritten: Vec<u8>,
    /// The coding the response gets if it is compressible (the compress stage).
    pub compress: Option<crate::config::Coding>,
    /// Copies of the request waiting for its streamed body (the mirror stage).
    pub mirror: super::mirror::MirrorCtx,
}

impl Default for RequestCtx {
    fn default() -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: Vec::with_capacity(64),
            route: None,
            identity: None,
            extra: Vec::new(),
            upstream_fields: Vec::new(),
            path: Vec::new(),
            logline: Vec::new(),
            cache: CacheCtx::default(),
            fill: None,
            linger: false,
            trace: [0; crate::http::traceparent::LEN],
            traced: false,
            observed: Observed::default(),
            rewritten: Vec::new(),
            compress: None,
            mirror: Default::default(),
        }
    }
}

impl RequestCtx {
    /// Start a new request on this connection (buffers kept, contents cleared).
    pub fn begin(&mut self, started: Instant) {
        self.cache.reset();
        self.cache.filled = false;
        self.started = started;
        self.request_id.clear();
        self.route = None;
        self.identity = None;
        self.extra.clear();
        self.upstream_fields.clear();
        self.path.clear();
        self.logline.clear();
        self.fill = None;
        self.linger = false;
        self.traced = false;
        self.observed = Observed::default();
        self.rewritten.clear();
        self.compress = None;
    }

    /// The `traceparent` this request carries upstream, if tracing is on.
    pub fn traceparent(&self) -> Option<&[u8]> {
        self.traced.then_some(&self.trace[..])
    }
}
