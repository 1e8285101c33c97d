//! Upstream pools, one set per worker: each worker keeps its own keep-alive connections
//! to every server, its own in-flight counts for balancing, and its own view of server
//! health. Nothing here is shared with another core, so `Cell`/`RefCell` are enough.

pub mod balance;
pub mod client;
pub mod health;
pub mod pool;
pub mod stream;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use monoio::time::Instant;

use crate::config::UpstreamConfig;
use balance::Balancer;
pub use pool::{PooledConn, UpConn};

/// Circuit-breaker state of one server (per worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaker {
    /// Passing traffic; counts consecutive failures.
    Closed { failures: u32 },
    /// Skipped until the instant passes.
    Open { until: Instant },
    /// Letting one probe request through at a time; closes after enough successes.
    HalfOpen { successes: u32 },
}

/// Per-worker state of one server of an upstream.
#[derive(Debug)]
pub struct ServerState {
    pub in_flight: Cell<u32>,
    pub breaker: Cell<Breaker>,
    /// Active health checks (when configured): false = skipped.
    pub healthy: Cell<bool>,
    pub idle: RefCell<Vec<PooledConn>>,
}

/// Per-worker state of one upstream.
#[derive(Debug)]
pub struct UpstreamState {
    pub cfg: UpstreamConfig,
    pub servers: Vec<ServerState>,
    pub balancer: Balancer,
    pub idle_total: Cell<usize>,
    /// A reload left this upstream out (or replaced it): its health checks stop, its
    /// idle connections are closed, and connections that finish here are not pooled.
    retired: Cell<bool>,
    /// For `https://` servers: this worker's TLS client configuration (its own, so
    /// that its session cache is not shared between cores) and each server's name
    /// (SNI and verification), built with the state.
    tls: Option<UpstreamTlsState>,
}

/// See [`UpstreamState::tls_to`].
#[derive(Debug)]
pub struct UpstreamTlsState {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    /// Per server, in `cfg.servers` order (`None` for a plain `http://` one).
    pub names: Vec<Option<rustls_pki_types::ServerName<'static>>>,
}

impl UpstreamState {
    pub fn new(cfg: &UpstreamConfig) -> UpstreamState {
        UpstreamState {
            servers: cfg
                .servers
                .iter()
                .map(|_| ServerState {
                    in_flight: Cell::new(0),
                    breaker: Cell::new(Breaker::Closed { failures: 0 }),
                    healthy: Cell::new(true),
                    idle: RefCell::new(Vec::new()),
                })
                .collect(),
            balancer: Balancer::new(cfg),
            idle_total: Cell::new(0),
            retired: Cell::new(false),
            tls: crate::tls::upstream_state(cfg),
            cfg: cfg.clone(),
        }
    }

    /// How to speak TLS to server `si` (`None`: no TLS settings).
    pub fn tls_to(&self, si: usize) -> Option<pool::TlsTo<'_>> {
        let t = self.tls.as_ref()?;
        Some(pool::TlsTo {
            config: &t.config,
            name: t.names.get(si)?.as_ref()?,
        })
    }

    /// A reloaded upstream with new settings, taking over from `old` what belongs to
    /// the servers both have (by address): idle connections, breaker and health.
    pub fn carried(cfg: &UpstreamConfig, old: &UpstreamState) -> UpstreamState {
        let new = UpstreamState::new(cfg);
        // A TLS connection was made with a name, trust and client certificate: it is
        // reused only if those did not change (the settings print what they are).
        let same_tls = format!("{:?}", old.cfg.tls) == format!("{:?}", cfg.tls);
        for (server, state) in cfg.servers.iter().zip(&new.servers) {
            let Some(j) = old.cfg.servers.iter().position(|o| o.addr == server.addr) else {
                continue;
            };
            let was = &old.servers[j];
            state.breaker.set(was.breaker.get());
            state.healthy.set(was.healthy.get());
            if (server.tls || old.cfg.servers[j].tls)
                && !(same_tls && server.tls == old.cfg.servers[j].tls)
            {
                continue;
            }
            let idle = std::mem::take(&mut *was.idle.borrow_mut());
            old.idle_total.set(old.idle_total.get() - idle.len());
            let room = cfg.max_idle_per_worker.saturating_sub(new.idle_total.get());
            let kept: Vec<_> = idle.into_iter().take(room).collect();
            new.idle_total.set(new.idle_total.get() + kept.len());
            *state.idle.borrow_mut() = kept;
        }
        new
    }

    /// Leave service after a reload: close the idle connections now.
    pub fn retire(&self) {
        self.retired.set(true);
        for s in &self.servers {
            s.idle.borrow_mut().clear();
        }
        self.idle_total.set(0);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.get()
    }

    /// May server `i` take a request now? Skips servers failing active health checks
    /// and servers whose breaker is open; an open breaker whose time is up turns
    /// half-open and lets one probe through at a time.
    pub fn available(&self, i: usize, now: Instant) -> bool {
        let s = &self.servers[i];
        if !s.healthy.get() {
            return false;
        }
        match s.breaker.get() {
            Breaker::Closed { .. } => true,
            Breaker::Open { until } => {
                if now >= until {
                    s.breaker.set(Breaker::HalfOpen { successes: 0 });
                    s.in_flight.get() == 0
                } else {
                    false
                }
            }
            Breaker::HalfOpen { .. } => s.in_flight.get() == 0,
        }
    }

    /// Record the outcome of an exchange with server `i` (a failure is a connect error,
    /// a timeout, a reset or a 5xx). Without `[upstreams.circuit_breaker]` nothing
    /// is ejected.
    pub fn record(&self, i: usize, ok: bool, now: Instant) {
        let Some(cb) = &self.cfg.circuit_breaker else {
            return;
        };
        let s = &self.servers[i];
        let next = match (s.breaker.get(), ok) {
            (Breaker::Closed { .. }, true) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, false) => {
                if failures + 1 >= cb.failure_threshold {
                    Breaker::Open {
                        until: now + cb.open,
                    }
                } else {
                    Breaker::Closed {
                        failures: failures + 1,
                    }
                }
            }
            (Breaker::HalfOpen { successes }, true) => {
                if successes + 1 >= cb.half_open_successes {
                    Breaker::Closed { failures: 0 }
                } else {
                    Breaker::HalfOpen {
                        successes: successes + 1,
                    }
                }
            }
            (Breaker::HalfOpen { .. }, false) => Breaker::Open {
                until: now + cb.open,
            },
            (open @ Breaker::Open { .. }, _) => open,
        };
        s.breaker.set(next);
    }

    /// Take an idle connection to server `i`: the most recently used one that has
    /// not idled too long and that the origin has not closed (one non-blocking peek,
    /// see [`crate::http::sock::peer_closed`]). Connections found dead are dropped.
    pub fn take_idle(&self, i: usize, now: Instant) -> Option<PooledConn> {
        let mut idle = self.servers[i].idle.borrow_mut();
        while let Some(c) = idle.pop() {
            self.idle_total.set(self.idle_total.get() - 1);
            if now.saturating_duration_since(c.since) < self.cfg.idle_timeout
                && !c.conn.stream.peer_closed()
            {
                let mut c = c;
                c.conn.buf = crate::http::buffers::large();
                return Some(c);
            }
        }
        None
    }

    /// Return a healthy connection to the pool (or drop it when the pool is full).
    /// Its read buffer goes back to the worker's pool while it idles.
    pub fn put_idle(&self, i: usize, mut conn: UpConn, now: Instant) {
        if self.idle_total.get() >= self.cfg.max_idle_per_worker || self.retired.get() {
            return;
        }
        crate::http::buffers::give(&mut conn.buf);
        // A TLS connection's own buffers too: an idle pooled one keeps rustls's state
        // only.
        conn.stream.release();
        self.idle_total.set(self.idle_total.get() + 1);
        self.servers[i]
            .idle
            .borrow_mut()
            .push(PooledConn { conn, since: now });
    }

    /// Close idle connections past `idle_timeout` and those the origin has closed
    /// meanwhile (called from the worker's tick, so a connection an origin closes
    /// does not linger in CLOSE-WAIT until it is next taken).
    pub fn sweep(&self, now: Instant) {
        let timeout: Duration = self.cfg.idle_timeout;
        for s in &self.servers {
            let mut idle = s.idle.borrow_mut();
            let before = idle.len();
            idle.retain(|c| {
                now.saturating_duration_since(c.since) < timeout && !c.conn.stream.peer_closed()
            });
            self.idle_total
                .set(self.idle_total.get() - (before - idle.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Balance, CircuitBreaker, UpstreamServer};

    fn upstream() -> UpstreamState {
        UpstreamState::new(&UpstreamConfig {
            name: "u".into(),
            servers: vec![UpstreamServer {
                label: "127.0.0.1:1".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                weight: 1,
                tls: false,
            }],
            balance: Balance::RoundRobin,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_idle_per_worker: 4,
            retries: 0,
            health_check: None,
            circuit_breaker: Some(CircuitBreaker {
                failure_threshold: 3,
                open: Duration::from_secs(30),
                half_open_successes: 2,
            }),
            tls: None,
            request_headers: Vec::new(),
        })
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let u = upstream();
        let t0 = Instant::now();
        u.record(0, false, t0);
        u.record(0, false, t0);
        assert!(u.available(0, t0));
        u.record(0, false, t0);
        assert!(!u.available(0, t0), "open after 3 consecutive failures");
        let later = t0 + Duration::from_secs(31);
        assert!(u.available(0, later), "half-open once open_ms passed");
        u.record(0, false, later);
        assert!(!u.available(0, later), "a failed probe re-opens");
        let later2 = later + Duration::from_secs(31);
        assert!(u.available(0, later2));
        u.record(0, true, later2);
        u.record(0, true, later2);
        assert_eq!(u.servers[0].breaker.get(), Breaker::Closed { failures: 0 });
    }

    #[test]
    fn success_resets_the_count() {
        let u = upstream();
        let t = Instant::now();
        u.record(0, false, t);
        u.record(0, false, t);
        u.record(0, true, t);
        u.record(0, false, t);
        u.record(0, false, t);
        assert!(u.available(0, t));
    }
}
