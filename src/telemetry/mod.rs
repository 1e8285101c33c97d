//! Telemetry: per-worker counters, the access log and metrics (`metrics`: per-route
//! and per-server statistics, rolling windows, the Prometheus exposition). Counters are
//! plain `Cell`s owned by one worker; nothing here is touched by another core on the
//! request path.

pub mod access_log;
pub mod metrics;

use std::cell::Cell;

/// Per-worker counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: Cell<u64>,
    pub responses_2xx: Cell<u64>,
    pub responses_4xx: Cell<u64>,
    pub responses_5xx: Cell<u64>,
    pub upstream_errors: Cell<u64>,
    pub retries: Cell<u64>,
    pub connections_refused: Cell<u64>,
    /// Accepts that failed and made the worker wait (see `runtime::accept`): out of
    /// descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM), or unexpected.
    pub accept_errors: Cell<u64>,
    /// Background refreshes of stale entries (`stale-while-revalidate`) started.
    pub cache_refreshes: Cell<u64>,
    /// Connection tasks (or background refreshes) ended by a panic: each a bug; the
    /// worker and its other connections go on.
    pub task_panics: Cell<u64>,
    /// Client connections busy now (holding buffers and request state); the others
    /// are idle, waiting with none.
    pub connections_busy: Cell<u64>,
    /// TLS handshakes completed, of which resumed (a session ticket or id).
    pub tls_handshakes: Cell<u64>,
    pub tls_resumed: Cell<u64>,
    /// TLS handshakes that failed or timed out (each logged, at most once a second).
    pub tls_handshake_failures: Cell<u64>,
    /// Client connections accepted, plain and TLS.
    pub connections_plain: Cell<u64>,
    pub connections_tls: Cell<u64>,
    /// Client connections open now, plain and TLS.
    pub open_plain: Cell<u64>,
    pub open_tls: Cell<u64>,
    /// WebSocket relays started (101 relayed), and open now.
    pub websockets: Cell<u64>,
    pub websockets_open: Cell<u64>,
}

/// A copy of [`Counters`] that can leave the worker (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    pub requests: u64,
    pub responses_2xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    pub upstream_errors: u64,
    pub retries: u64,
    pub connections_refused: u64,
    pub accept_errors: u64,
    pub cache_refreshes: u64,
    pub task_panics: u64,
    pub connections_busy: u64,
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    pub tls_handshake_failures: u64,
    pub connections_plain: u64,
    pub connections_tls: u64,
    pub open_plain: u64,
    pub open_tls: u64,
    pub websockets: u64,
    pub websockets_open: u64,
}

impl Counters {
    pub fn values(&self) -> CounterValues {
        CounterValues {
            requests: self.requests.get(),
            responses_2xx: self.responses_2xx.get(),
            responses_4xx: self.responses_4xx.get(),
            responses_5xx: self.responses_5xx.get(),
            upstream_errors: self.upstream_errors.get(),
            retries: self.retries.get(),
            connections_refused: self.connections_refused.get(),
            accept_errors: self.accept_errors.get(),
            cache_refreshes: self.cache_refreshes.get(),
            task_panics: self.task_panics.get(),
            connections_busy: self.connections_busy.get(),
            tls_handshakes: self.tls_handshakes.get(),
            tls_resumed: self.tls_resumed.get(),
            tls_handshake_failures: self.tls_handshake_failures.get(),
            connections_plain: self.connections_plain.get(),
            connections_tls: self.connections_tls.get(),
            open_plain: self.open_plain.get(),
            open_tls: self.open_tls.get(),
            websockets: self.websockets.get(),
            websockets_open: self.websockets_open.get(),
        }
    }

    pub fn count_status(&self, status: u16) {
        let c = match status {
            200..=299 => &self.responses_2xx,
            400..=499 => &self.responses_4xx,
            500..=599 => &self.responses_5xx,
            _ => return,
        };
        c.set(c.get() + 1);
    }
}

/// One counted in a gauge for as long as this lives, however that ends: an attempt
/// that a timeout drops, a connection task stopped or ended by a panic.
pub struct Held<'a, T: Gauge>(&'a Cell<T>);

/// A count a [`Held`] can raise and lower.
pub trait Gauge:
    Copy + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self> + From<u8>
{
}
impl<T: Copy + std::ops::Add<Output = T> + std::ops::Sub<Output = T> + From<u8>> Gauge for T {}

impl<'a, T: Gauge> Held<'a, T> {
    pub fn new(c: &'a Cell<T>) -> Self {
        c.set(c.get() + T::from(1));
        Held(c)
    }
}

impl<T: Gauge> Drop for Held<'_, T> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - T::from(1));
    }
}

pub fn inc(c: &Cell<u64>) {
    c.set(c.get() + 1);
}
