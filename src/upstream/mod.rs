//! Upstream pools, one set per worker: each worker keeps its own keep-alive connections
//! to every server, its own in-flight counts for balancing, and its own view of server
//! health. Nothing here is shared with another core, so `Cell`/`RefCell` are enough.

pub mod balance;
pub mod pool;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use monoio::time::Instant;

use crate::config::UpstreamConfig;
use balance::Balancer;
pub use pool::{PooledConn, UpConn};

/// Per-worker state of one server of an upstream.
#[derive(Debug)]
pub struct ServerState {
    pub in_flight: Cell<u32>,
    /// Consecutive failures (connect errors, timeouts, resets).
    pub failures: Cell<u32>,
    /// While set and in the future, the server is skipped (passive ejection).
    pub ejected_until: Cell<Option<Instant>>,
    pub idle: RefCell<Vec<PooledConn>>,
}

/// Per-worker state of one upstream.
#[derive(Debug)]
pub struct UpstreamState {
    pub cfg: UpstreamConfig,
    pub servers: Vec<ServerState>,
    pub balancer: Balancer,
    pub idle_total: Cell<usize>,
}

impl UpstreamState {
    pub fn new(cfg: &UpstreamConfig) -> UpstreamState {
        UpstreamState {
            servers: cfg
                .servers
                .iter()
                .map(|_| ServerState {
                    in_flight: Cell::new(0),
                    failures: Cell::new(0),
                    ejected_until: Cell::new(None),
                    idle: RefCell::new(Vec::new()),
                })
                .collect(),
            balancer: Balancer::new(cfg),
            idle_total: Cell::new(0),
            cfg: cfg.clone(),
        }
    }

    /// Is this server usable now (not passively ejected)?
    pub fn available(&self, i: usize, now: Instant) -> bool {
        match self.servers[i].ejected_until.get() {
            Some(t) => now >= t,
            None => true,
        }
    }

    /// Record the outcome of an exchange with server `i`. With a circuit breaker
    /// configured, `failure_threshold` consecutive failures take the server out of
    /// rotation for `open_ms` (then it gets one request at a time to prove itself).
    pub fn record(&self, i: usize, ok: bool, now: Instant) {
        let s = &self.servers[i];
        if ok {
            s.failures.set(0);
            s.ejected_until.set(None);
            return;
        }
        let f = s.failures.get().saturating_add(1);
        s.failures.set(f);
        if let Some(cb) = &self.cfg.circuit_breaker {
            if f >= cb.failure_threshold {
                s.ejected_until.set(Some(now + cb.open));
            }
        }
    }

    /// Take an idle connection to server `i`, dropping any that idled too long.
    pub fn take_idle(&self, i: usize, now: Instant) -> Option<PooledConn> {
        let mut idle = self.servers[i].idle.borrow_mut();
        while let Some(c) = idle.pop() {
            self.idle_total.set(self.idle_total.get() - 1);
            if now.saturating_duration_since(c.since) < self.cfg.idle_timeout {
                return Some(c);
            }
        }
        None
    }

    /// Return a healthy connection to the pool (or drop it when the pool is full).
    pub fn put_idle(&self, i: usize, conn: UpConn, now: Instant) {
        if self.idle_total.get() >= self.cfg.max_idle_per_worker {
            return;
        }
        self.idle_total.set(self.idle_total.get() + 1);
        self.servers[i]
            .idle
            .borrow_mut()
            .push(PooledConn { conn, since: now });
    }

    /// Close idle connections past `idle_timeout` (called from the worker's tick).
    pub fn sweep(&self, now: Instant) {
        let timeout: Duration = self.cfg.idle_timeout;
        for s in &self.servers {
            let mut idle = s.idle.borrow_mut();
            let before = idle.len();
            idle.retain(|c| now.saturating_duration_since(c.since) < timeout);
            self.idle_total
                .set(self.idle_total.get() - (before - idle.len()));
        }
    }
}
