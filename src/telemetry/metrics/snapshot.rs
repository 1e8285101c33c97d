//! [`WorkerSnapshot`]: a copy of one worker's counters, taken on the worker (the admin
//! thread runs [`WorkerMetrics::snapshot`] there) and sent back to be merged. Taking it
//! copies flat arrays and clones `Arc`ed names, nothing more: no formatting, no merging,
//! no allocation per counter. Server health and circuit states are read from the
//! worker's current pipeline at that moment.

use std::sync::Arc;

use monoio::time::Instant;

use super::{RouteCounts, ServerCounts, WorkerMetrics, NO_ROUTE_SLOT};
use crate::pipeline::local::Local;
use crate::telemetry::CounterValues;
use crate::upstream::Breaker;

/// A circuit breaker's state as exposed (`ringgate_upstream_circuit_state{state=..}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    /// Letting probes through; also an open breaker whose time is up, which the next
    /// request will find half-open.
    HalfOpen,
}

impl CircuitState {
    /// Index into [`super::names::CIRCUIT_STATES`].
    pub fn index(self) -> usize {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }

    pub fn of(b: Breaker, now: Instant) -> CircuitState {
        match b {
            Breaker::Closed { .. } => CircuitState::Closed,
            Breaker::Open { until } if now < until => CircuitState::Open,
            Breaker::Open { .. } | Breaker::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// One route's counters on one worker.
#[derive(Debug, Clone)]
pub struct RouteSnapshot {
    pub id: Arc<str>,
    pub counts: RouteCounts,
    /// (plan, kind index into `names::REJECTION_KINDS`, count).
    pub rejections: Vec<(Arc<str>, u8, u64)>,
}

/// One server of an upstream on one worker.
#[derive(Debug, Clone)]
pub struct ServerSnapshot {
    pub upstream: Arc<str>,
    pub server: Arc<str>,
    pub counts: ServerCounts,
    /// Passes active health checks (or has none).
    pub healthy: bool,
    pub circuit: CircuitState,
}

/// Everything `/metrics` shows of one worker.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    pub worker: usize,
    pub counters: CounterValues,
    /// The routes of the worker's current pipeline, and the unmatched requests (route
    /// `""`) when there were any.
    pub routes: Vec<RouteSnapshot>,
    /// The servers of the current pipeline's upstreams.
    pub servers: Vec<ServerSnapshot>,
    pub cache: crate::cache::Stats,
    /// Mirrored upstreams: counts by `names::MIRROR_RESULTS`.
    pub mirrors: Vec<(Arc<str>, [u64; 3])>,
}

impl WorkerMetrics {
    /// Copy this worker's counters (run on the worker, with its `Local`).
    pub fn snapshot(&self, local: &Local) -> WorkerSnapshot {
        let pl = local.pipeline();
        let t = self.tables.borrow();
        let view = self.view.borrow();
        let current = std::ptr::eq(view.pipeline.as_ptr(), std::rc::Rc::as_ptr(&pl));
        let route = |slot: u32| {
            let r = &t.routes[slot as usize];
            RouteSnapshot {
                id: r.id.clone(),
                counts: r.counts,
                rejections: r
                    .rejections
                    .iter()
                    .map(|&(p, k, n)| (t.plans[usize::from(p)].clone(), k, n))
                    .collect(),
            }
        };
        let mut routes = Vec::with_capacity(pl.routes.len() + 1);
        if t.routes[NO_ROUTE_SLOT as usize].counts.total() > 0 {
            routes.push(route(NO_ROUTE_SLOT));
        }
        let now = Instant::now();
        let mut servers = Vec::new();
        if self.enabled && current {
            routes.extend(view.routes.iter().map(|&s| route(s)));
            for (u, slots) in pl.upstreams.iter().zip(&view.servers) {
                for (state, &slot) in u.servers.iter().zip(slots) {
                    let s = &t.servers[slot as usize];
                    servers.push(ServerSnapshot {
                        upstream: s.upstream.clone(),
                        server: s.server.clone(),
                        counts: s.counts,
                        healthy: state.healthy.get(),
                        circuit: CircuitState::of(state.breaker.get(), now),
                    });
                }
            }
        } else {
            // Recording is off (or the view is being rebuilt): states only.
            for u in &pl.upstreams {
                for (state, s) in u.servers.iter().zip(&u.cfg.servers) {
                    servers.push(ServerSnapshot {
                        upstream: Arc::from(u.cfg.name.as_str()),
                        server: Arc::from(s.label.as_str()),
                        counts: ServerCounts::default(),
                        healthy: state.healthy.get(),
                        circuit: CircuitState::of(state.breaker.get(), now),
                    });
                }
            }
        }
        WorkerSnapshot {
            worker: local.id,
            counters: local.counters.values(),
            routes,
            servers,
            cache: local.cache.borrow().stats(),
            mirrors: local.mirrors.values(),
        }
    }
}
