//! The metrics stage (`metrics.enabled`, on by default): at the very end of every
//! request (its done phase runs last, see `super::stack`), one record into the
//! worker's [`crate::telemetry::metrics::WorkerMetrics`]: the route's slot, method,
//! status, duration and bytes, the cache's outcome, a rate-limit or auth refusal.
//! What it records was collected on the way in `RequestCtx::observed` (the proxy and
//! the auth and rate-limit stages fill it) and `cx.cache.outcome`.
//!
//! Per request: one clock read, a few array increments, a bucket search and a
//! DDSketch insert; no allocation, no lock, nothing another core sees.

use super::context::RequestCtx;
use super::local::Local;
use crate::cache::XCache;
use crate::telemetry::metrics::Request;

/// The stage's done phase: `status` is what the client got (0: nothing, it left).
pub fn done(w: &Local, cx: &mut RequestCtx, status: u16) {
    let cache = cx.cache.outcome.map(|x| match x {
        XCache::Hit => 0,
        XCache::Miss => 1,
        XCache::Stale => 2,
        XCache::Bypass => 3,
    });
    w.metrics.record(&Request {
        observed: cx.observed,
        status,
        latency_us: cx.started.elapsed().as_micros() as u64,
        cache,
        now_s: w.unix_now.get(),
    });
}
