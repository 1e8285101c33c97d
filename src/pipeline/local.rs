//! [`Local`]: one worker's state as the request path sees it, shared by every task of
//! that worker through an `Rc` and by no other core: the current [`Pipeline`], the
//! start configuration, the rate-limit buckets, the cache shard and its fills, the
//! counters and metrics, the access-log buffer, the cached clock. The runtime's worker
//! ([`crate::runtime::worker`]) owns it and runs the loops around it (accepting, the
//! tick, gossip); the pipeline's stages take it and never the runtime, so the
//! dependency runs one way.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use super::stack::Pipeline;
use crate::auth::AuthSettings;
use crate::config::Config;
use crate::ratelimit::{Limiter, RateLimitConfig};
use crate::task::signal::LocalSignal;
use crate::telemetry::access_log::{self, Sink};
use crate::telemetry::metrics::WorkerMetrics;
use crate::telemetry::Counters;

/// How often the worker's tick runs: the clock, the log flush, the coarse timers.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(50);

pub struct Local {
    pub id: usize,
    /// The configuration the worker started with: its listeners and process-wide
    /// settings (`[server]`, `[log]`, `[cache]` sizes), which a reload does not change.
    pub cfg: Arc<Config>,
    /// Routes, upstreams, plans and keys: replaced whole on reload (see
    /// [`crate::pipeline::stack`]). Take it with [`Local::pipeline`].
    pipeline: RefCell<Rc<Pipeline>>,
    pub shutdown: LocalSignal,
    pub rng: RefCell<fastrand::Rng>,
    /// IMF-fixdate of the current second, refreshed by the tick.
    pub date: RefCell<[u8; 29]>,
    pub counters: Counters,
    /// Per-route and per-server statistics (`[metrics]`); kept across reloads, by id.
    pub metrics: WorkerMetrics,
    pub log_sink: Sink,
    pub log_buf: RefCell<Vec<u8>>,
    /// Idle pipes for splicing bodies, reused across requests.
    pub pipes: RefCell<Vec<crate::http::io::SplicePipe>>,
    /// Rate limiting: this worker's buckets (kept across reloads).
    pub limiter: RefCell<Limiter>,
    /// Unix time in seconds, refreshed by the tick (token expiry has 1 s resolution).
    pub unix_now: Cell<u64>,
    /// This worker's share of the response cache (`[cache] max_bytes` / workers).
    pub cache: RefCell<crate::cache::Cache>,
    /// Cache fills in flight: later misses on the same key wait for the first.
    pub fills: crate::cache::Fills,
    /// Bytes of response bodies being copied for the cache as they stream.
    pub kept: crate::pipeline::cache::KeptBudget,
    /// Where stored bodies go: memory, or memory-backed files for large ones.
    pub bodies: crate::cache::BodyFiles,
    /// The driver leaves sockets in blocking mode (io_uring does the waiting); calls
    /// made outside monoio must switch them ([`crate::http::send_file`]).
    pub blocking_sockets: bool,
    /// Coarse timers for waiting connections, fired by the tick.
    pub deadlines: crate::task::deadline::Deadlines,
    /// Mirrored upstreams: copies under way (the bound) and their outcomes.
    pub mirrors: super::mirror::Mirrors,
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn http_date() -> [u8; 29] {
    let mut out = [b' '; 29];
    let s = httpdate::fmt_http_date(SystemTime::now());
    let n = s.len().min(29);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

impl Local {
    /// The state of worker `id` of `workers`, serving `cfg` from the start.
    pub fn new(
        id: usize,
        cfg: Arc<Config>,
        log_sink: Sink,
        limits: Arc<RateLimitConfig>,
        limiter: Limiter,
        auth: &AuthSettings,
        workers: usize,
    ) -> Local {
        let share = (*cfg.cache.max_bytes.get_ref() as usize) / workers.max(1);
        let max_object = *cfg.cache.max_object_bytes.get_ref() as usize;
        let cache = crate::cache::Cache::new(share, max_object);
        let pipeline = Rc::new(Pipeline::build(cfg.clone(), limits, auth, None));
        let metrics = WorkerMetrics::new(cfg.metrics.enabled, cfg.metrics.latency_window_s);
        metrics.remap(&pipeline);
        Local {
            limiter: RefCell::new(limiter),
            pipeline: RefCell::new(pipeline),
            metrics,
            unix_now: Cell::new(unix_seconds()),
            cache: RefCell::new(cache),
            fills: crate::cache::Fills::new(),
            kept: super::cache::KeptBudget::new(share, max_object),
            bodies: crate::cache::BodyFiles::new(
                *cfg.cache.file_min_bytes.get_ref(),
                crate::cache::BodyFiles::per_worker_cap(workers),
            ),
            blocking_sockets: false,
            deadlines: crate::task::deadline::Deadlines::new(TICK),
            mirrors: Default::default(),
            id,
            cfg,
            shutdown: LocalSignal::new(),
            rng: RefCell::new(fastrand::Rng::new()),
            date: RefCell::new(http_date()),
            counters: Counters::default(),
            log_buf: RefCell::new(Vec::with_capacity(if log_sink.enabled() {
                access_log::FLUSH_BYTES
            } else {
                0
            })),
            log_sink,
            pipes: RefCell::new(Vec::new()),
        }
    }

    /// The current pipeline. A request takes it once and keeps it to its end.
    pub fn pipeline(&self) -> Rc<Pipeline> {
        self.pipeline.borrow().clone()
    }

    /// Serve from `next` from now on (requests under way keep theirs); the buckets
    /// take its plans. Returns the previous pipeline.
    pub fn set_pipeline(&self, next: Pipeline) -> Rc<Pipeline> {
        self.limiter.borrow_mut().reconfigure(&next.limits);
        let next = Rc::new(next);
        self.metrics.remap(&next);
        std::mem::replace(&mut *self.pipeline.borrow_mut(), next)
    }

    /// Refresh the cached clock (the tick does, every 50 ms).
    pub fn tick_clock(&self) {
        *self.date.borrow_mut() = http_date();
        self.unix_now.set(unix_seconds());
    }

    /// A pipe for splicing (reused when one is idle).
    pub fn take_pipe(&self) -> std::io::Result<crate::http::io::SplicePipe> {
        match self.pipes.borrow_mut().pop() {
            Some(p) => Ok(p),
            None => crate::http::io::SplicePipe::new(),
        }
    }

    /// Give back a pipe that is known to be empty.
    pub fn put_pipe(&self, p: crate::http::io::SplicePipe) {
        let mut pipes = self.pipes.borrow_mut();
        if pipes.len() < 16 {
            pipes.push(p);
        }
    }

    /// A new request id: 32 hex digits of randomness from this worker's generator.
    pub fn new_request_id(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut v = self.rng.borrow_mut().u128(..);
        for _ in 0..32 {
            out.push(HEX[(v & 0xf) as usize]);
            v >>= 4;
        }
    }

    pub fn log(&self, e: &access_log::Entry<'_>) {
        if !self.log_sink.enabled() {
            return;
        }
        let mut buf = self.log_buf.borrow_mut();
        access_log::format(&mut buf, e);
        if buf.len() >= access_log::FLUSH_BYTES {
            self.log_sink.write(&mut buf);
        }
    }

    pub fn flush_log(&self) {
        let mut buf = self.log_buf.borrow_mut();
        self.log_sink.write(&mut buf);
    }
}
