//! Metrics: what each worker records of its requests, and how the admin thread turns
//! the workers' records into `GET /metrics` (Prometheus text) and
//! `GET /api/v1/metrics/routes/{id}?period=` (JSON).
//!
//! # Recording (per worker, on the request path)
//!
//! Every worker owns a [`WorkerMetrics`] in its `Local`: plain integers in `RefCell`ed
//! tables, no atomics, no locks, nothing shared with another core. The pipeline's
//! metrics stage (`pipeline::metrics`, the done phase of `Stage::Metrics`) records each
//! request once, at its end, from what the request's [`Observed`] collected on the way
//! (route, method, bytes, the cache's outcome, the rate-limit or auth refusal); the
//! proxy records each upstream attempt as it ends. Counts live in fixed arrays indexed
//! by the label lists of [`names`]; a request costs a few array increments, a bucket
//! search and a DDSketch insert, and allocates nothing (a route's window allocates
//! when its 10-second slot rolls over, not per request).
//!
//! # Keys across reloads
//!
//! Stats are kept by **route id** and by **(upstream name, server address)**, never by
//! a pipeline's indices: a reload that adds, removes or reorders routes keeps every
//! surviving route's counters. Each table slot, once given to an id, keeps it for the
//! worker's life, so a slot resolved when a request was routed stays right whatever
//! reloads happen before the request ends. [`WorkerMetrics::remap`] (called whenever the
//! worker swaps pipelines) builds a view from the current pipeline's indices to slots,
//! so routing resolves a slot with one pointer compare and one index; a request still
//! running on an older pipeline looks its id up in a hash map instead. A route no
//! longer in the pipeline is retired: its window is freed and it is not exported; its
//! counters (under 1 KiB) are kept in case the id comes back. Requests no route
//! matched are counted under the route label `""` ([`names::NO_ROUTE`]).
//!
//! # Reading (the admin thread asks each worker)
//!
//! [`WorkerMetrics::snapshot`] and [`WorkerMetrics::route_window`] run on the worker
//! (they stall its requests while they run), so they only copy: counters, bucket
//! arrays, packed window slots. The admin thread does the merging and formatting:
//! [`render_prometheus`] and [`route_summary`]. See `snapshot.rs`, `render.rs`, and
//! `window.rs` for the rolling windows, their sketch and their memory bound.
//!
//! With `metrics.enabled = false` nothing is recorded: the stage and the slot lookups
//! return at their first line.

pub mod names;
mod render;
mod snapshot;
pub mod window;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use crate::pipeline::error::ProxyError;
use crate::pipeline::stack::Pipeline;
pub use render::{render_prometheus, ProcessInfo, CONTENT_TYPE};
pub use snapshot::{CircuitState, RouteSnapshot, ServerSnapshot, WorkerSnapshot};
pub use window::{route_summary, Period, PeriodError, RouteSummary, RouteWindow};
use window::{CacheLook, Sample, Window};

/// The table slot of requests no route matched.
pub const NO_ROUTE_SLOT: u32 = 0;

/// A duration histogram: per-bucket counts (the last is `+Inf`) and the sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buckets {
    pub counts: [u64; names::DURATION_BUCKETS_US.len() + 1],
    pub sum_us: u64,
}

impl Buckets {
    #[inline]
    pub fn record(&mut self, us: u64) {
        let i = names::DURATION_BUCKETS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us += us;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn add(&mut self, o: &Buckets) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a += b;
        }
        self.sum_us += o.sum_us;
    }
}

/// A route's cumulative counters (what `/metrics` shows), one flat `Copy` block so a
/// snapshot copies it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteCounts {
    /// By [`names::METHODS`], then [`names::STATUS_CLASSES`].
    pub requests: [[u64; names::STATUS_CLASSES.len()]; names::METHODS.len()],
    pub duration: Buckets,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// By [`names::CACHE_RESULTS`].
    pub cache: [u64; names::CACHE_RESULTS.len()],
    /// By [`names::AUTH_REASONS`].
    pub auth: [u64; names::AUTH_REASONS.len()],
}

impl Default for RouteCounts {
    fn default() -> RouteCounts {
        RouteCounts {
            requests: [[0; names::STATUS_CLASSES.len()]; names::METHODS.len()],
            duration: Buckets::default(),
            bytes_in: 0,
            bytes_out: 0,
            cache: [0; names::CACHE_RESULTS.len()],
            auth: [0; names::AUTH_REASONS.len()],
        }
    }
}

impl RouteCounts {
    pub fn add(&mut self, o: &RouteCounts) {
        for (a, b) in self.requests.iter_mut().zip(&o.requests) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.duration.add(&o.duration);
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        for (a, b) in self.cache.iter_mut().zip(o.cache) {
            *a += b;
        }
        for (a, b) in self.auth.iter_mut().zip(o.auth) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.requests.iter().flatten().sum()
    }
}

/// What the stages learn of a request on its way, for the metrics stage at its end.
/// Lives in the request's context, cleared for every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// Table slot of the route ([`NO_ROUTE_SLOT`] until routed).
    pub route: u32,
    /// Index into [`names::METHODS`].
    pub method: u8,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Refused by the rate-limit stage: the plan's slot ([`WorkerMetrics::plan_slot`]).
    pub rejected_plan: Option<u16>,
    /// Refused by the auth stage: index into [`names::AUTH_REASONS`].
    pub auth_reason: Option<u8>,
}

/// One request, as the metrics stage records it.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub observed: Observed,
    pub status: u16,
    pub latency_us: u64,
    /// Index into [`names::CACHE_RESULTS`], on cached routes.
    pub cache: Option<usize>,
    /// Unix seconds (the worker's cached clock): the window's slot.
    pub now_s: u64,
}

struct RouteStats {
    id: Arc<str>,
    counts: RouteCounts,
    /// (plan slot, kind index into [`names::REJECTION_KINDS`], count).
    rejections: Vec<(u16, u8, u64)>,
    /// Allocated at the route's first request; dropped when it is retired.
    window: Option<Box<Window>>,
    retired: bool,
}

impl RouteStats {
    fn new(id: Arc<str>) -> RouteStats {
        RouteStats {
            id,
            counts: RouteCounts::default(),
            rejections: Vec::new(),
            window: None,
            retired: false,
        }
    }
}

/// One server's counters (per upstream name and server address).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounts {
    pub duration: Buckets,
    /// By [`names::UPSTREAM_ERROR_KINDS`].
    pub errors: [u64; names::UPSTREAM_ERROR_KINDS.len()],
    /// Fan-out destinations served by this server: [succeeded (2xx), failed].
    pub fanout: [u64; 2],
}

struct ServerStats {
    upstream: Arc<str>,
    server: Arc<str>,
    counts: ServerCounts,
}

/// Slots by id: append-only (a slot keeps its id for the worker's life).
#[derive(Default)]
struct Tables {
    routes: Vec<RouteStats>,
    route_ids: HashMap<Arc<str>, u32>,
    servers: Vec<ServerStats>,
    /// upstream name -> server address -> slot.
    server_ids: HashMap<Arc<str>, HashMap<Arc<str>, u32>>,
    /// Plan names seen in refusals, by slot.
    plans: Vec<Arc<str>>,
}

impl Tables {
    fn route(&mut self, id: &str) -> u32 {
        if let Some(&slot) = self.route_ids.get(id) {
            return slot;
        }
        let id: Arc<str> = Arc::from(id);
        let slot = self.routes.len() as u32;
        self.routes.push(RouteStats::new(id.clone()));
        self.route_ids.insert(id, slot);
        slot
    }

    fn server(&mut self, upstream: &str, server: &str) -> u32 {
        if let Some(&slot) = self.server_ids.get(upstream).and_then(|m| m.get(server)) {
            return slot;
        }
        let (upstream, server): (Arc<str>, Arc<str>) = (Arc::from(upstream), Arc::from(server));
        let slot = self.servers.len() as u32;
        self.servers.push(ServerStats {
            upstream: upstream.clone(),
            server: server.clone(),
            counts: ServerCounts::default(),
        });
        self.server_ids
            .entry(upstream)
            .or_default()
            .insert(server, slot);
        slot
    }
}

/// The current pipeline's indices resolved to table slots.
#[derive(Default)]
struct View {
    /// Held weakly so that its address is not reused while the view names it.
    pipeline: Weak<Pipeline>,
    routes: Vec<u32>,
    /// Per upstream (pipeline order), per server: the slot.
    servers: Vec<Vec<u32>>,
}

/// One worker's metrics (see the module doc).
pub struct WorkerMetrics {
    enabled: bool,
    window_s: u64,
    tables: RefCell<Tables>,
    view: RefCell<View>,
}

impl WorkerMetrics {
    /// `enabled` = `metrics.enabled`; `window_s` = `metrics.latency_window_s`.
    pub fn new(enabled: bool, window_s: u64) -> WorkerMetrics {
        let mut tables = Tables::default();
        tables.route(names::NO_ROUTE);
        WorkerMetrics {
            enabled,
            window_s,
            tables: RefCell::new(tables),
            view: RefCell::new(View::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn window_s(&self) -> u64 {
        self.window_s
    }

    /// The worker now serves `pl`: resolve its routes and servers to slots, retire the
    /// routes it no longer has.
    pub fn remap(&self, pl: &Rc<Pipeline>) {
        if !self.enabled {
            return;
        }
        let mut t = self.tables.borrow_mut();
        let routes: Vec<u32> = pl.routes.iter().map(|r| t.route(&r.cfg.id)).collect();
        let servers = pl
            .upstreams
            .iter()
            .map(|u| {
                u.cfg
                    .servers
                    .iter()
                    .map(|s| t.server(&u.cfg.name, &s.label))
                    .collect()
            })
            .collect();
        for (slot, r) in t.routes.iter_mut().enumerate() {
            r.retired = slot as u32 != NO_ROUTE_SLOT && !routes.contains(&(slot as u32));
            if r.retired {
                r.window = None;
            }
        }
        *self.view.borrow_mut() = View {
            pipeline: Rc::downgrade(pl),
            routes,
            servers,
        };
    }

    /// The slot of route `ri` of `pl` (of the request being routed).
    #[inline]
    pub fn route_slot(&self, pl: &Rc<Pipeline>, ri: usize) -> u32 {
        if !self.enabled {
            return NO_ROUTE_SLOT;
        }
        let view = self.view.borrow();
        if std::ptr::eq(view.pipeline.as_ptr(), Rc::as_ptr(pl)) {
            return view.routes[ri];
        }
        drop(view);
        self.tables.borrow_mut().route(&pl.routes[ri].cfg.id)
    }

    /// The slot of server `si` of upstream `ui` of `pl`.
    #[inline]
    pub fn server_slot(&self, pl: &Rc<Pipeline>, ui: usize, si: usize) -> u32 {
        if !self.enabled {
            return 0;
        }
        let view = self.view.borrow();
        if std::ptr::eq(view.pipeline.as_ptr(), Rc::as_ptr(pl)) {
            return view.servers[ui][si];
        }
        drop(view);
        let up = &pl.upstreams[ui].cfg;
        self.tables
            .borrow_mut()
            .server(&up.name, &up.servers[si].label)
    }

    /// The slot of a plan's name, for a refusal's label (refusals only).
    pub fn plan_slot(&self, name: &str) -> u16 {
        let mut t = self.tables.borrow_mut();
        if let Some(i) = t.plans.iter().position(|p| &**p == name) {
            return i as u16;
        }
        t.plans.push(Arc::from(name));
        (t.plans.len() - 1) as u16
    }

    /// An attempt at server `slot` that got its whole response in `us` microseconds.
    #[inline]
    pub fn attempt_done(&self, slot: u32, us: u64) {
        if !self.enabled {
            return;
        }
        if let Some(s) = self.tables.borrow_mut().servers.get_mut(slot as usize) {
            s.counts.duration.record(us);
        }
    }

    /// An attempt at server `slot` that failed with `e` (failures that are not the
    /// upstream's, such as the client leaving, are not counted).
    pub fn attempt_failed(&self, slot: u32, e: &ProxyError) {
        if !self.enabled {
            return;
        }
        let Some(kind) = names::upstream_error_index(e) else {
            return;
        };
        if let Some(s) = self.tables.borrow_mut().servers.get_mut(slot as usize) {
            s.counts.errors[kind] += 1;
        }
    }

    /// A fan-out destination's result at server `slot` (`ok`: it answered 2xx).
    pub fn fanout_result(&self, slot: u32, ok: bool) {
        if !self.enabled {
            return;
        }
        if let Some(s) = self.tables.borrow_mut().servers.get_mut(slot as usize) {
            s.counts.fanout[usize::from(!ok)] += 1;
        }
    }

    /// Record one finished request (the metrics stage's done phase).
    pub fn record(&self, r: &Request) {
        if !self.enabled {
            return;
        }
        let mut t = self.tables.borrow_mut();
        let o = &r.observed;
        let Some(stats) = t.routes.get_mut(o.route as usize) else {
            return;
        };
        let c = &mut stats.counts;
        c.requests[usize::from(o.method).min(names::METHODS.len() - 1)]
            [names::status_class(r.status)] += 1;
        c.duration.record(r.latency_us);
        c.bytes_in += o.bytes_in;
        c.bytes_out += o.bytes_out;
        if let Some(i) = r.cache {
            c.cache[i] += 1;
        }
        if let Some(i) = o.auth_reason {
            c.auth[usize::from(i).min(names::AUTH_REASONS.len() - 1)] += 1;
        }
        if let Some(plan) = o.rejected_plan {
            match stats
                .rejections
                .iter_mut()
                .find(|(p, k, _)| *p == plan && *k == 0)
            {
                Some(e) => e.2 += 1,
                None => stats.rejections.push((plan, 0, 1)),
            }
        }
        if stats.retired {
            return;
        }
        let window_s = self.window_s;
        let w = stats
            .window
            .get_or_insert_with(|| Box::new(Window::new(window_s, r.now_s)));
        w.record(
            r.now_s,
            &Sample {
                status: r.status,
                latency_us: r.latency_us,
                rate_limited: o.rejected_plan.is_some(),
                cache: match r.cache {
                    Some(0 | 2) => CacheLook::Hit,
                    Some(1) => CacheLook::Miss,
                    _ => CacheLook::None,
                },
            },
        );
    }

    /// This worker's part of route `route_id`'s window for `period` at `now_s`: `None`
    /// when the worker's current pipeline has no such route (404 when no worker has
    /// it). Runs on the worker; copies the packed slots only.
    pub fn route_window(
        &self,
        pl: &Pipeline,
        route_id: &str,
        period: Period,
        now_s: u64,
    ) -> Option<RouteWindow> {
        if !pl.routes.iter().any(|r| r.cfg.id == route_id) {
            return None;
        }
        let mut t = self.tables.borrow_mut();
        let parts = t
            .route_ids
            .get(route_id)
            .copied()
            .and_then(|slot| t.routes[slot as usize].window.as_mut())
            .map(|w| w.parts(now_s, period))
            .unwrap_or_default();
        Some(RouteWindow {
            route_id: route_id.to_owned(),
            period,
            parts,
        })
    }

    /// Bytes the routes' windows hold (for the bench's memory figure).
    pub fn window_bytes(&self) -> usize {
        self.tables
            .borrow()
            .routes
            .iter()
            .filter_map(|r| r.window.as_ref())
            .map(|w| w.heap_bytes() + std::mem::size_of::<Window>())
            .sum()
    }
}

#[cfg(test)]
mod tests;
