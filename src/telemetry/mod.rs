//! Telemetry: per-worker counters and the access log. Counters are plain `Cell`s owned by
//! one worker; nothing here is touched by another core on the request path.

pub mod access_log;

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
}

impl Counters {
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
