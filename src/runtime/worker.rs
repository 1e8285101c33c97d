//! One worker: a monoio runtime on its own (pinned) thread, its listeners, its routing
//! table, its upstream pools, its counters and log buffer. All of it lives in one
//! `Rc<Worker>` that connection tasks share; nothing in it is shared with another core.
//!
//! A tick task runs every [`TICK`]: it picks up the process-wide stop flag and a
//! reloaded configuration (building and swapping to a new pipeline), refreshes the
//! cached `Date`, flushes the access log and expires idle upstream connections. This
//! is the fixed-interval channel through which everything cross-core arrives; the
//! request path never looks outside the worker.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;
use monoio::net::{TcpListener, TcpStream};
use monoio::time::Instant;

use super::contain::Contained;
use super::driver::{uring_builder, ActiveDriver};
use super::signal::LocalSignal;
use super::Shared;
use crate::auth::AuthSettings;
use crate::config::Config;
use crate::pipeline::stack::Pipeline;
use crate::ratelimit::{Endpoint, Limiter, RateLimitConfig};
use crate::telemetry::access_log::{self, Sink};
use crate::telemetry::Counters;
use crate::upstream::UpstreamState;

pub const TICK: Duration = Duration::from_millis(50);
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct Worker {
    pub id: usize,
    /// The configuration the worker started with: its listeners and process-wide
    /// settings (`[server]`, `[log]`, `[cache]` sizes), which a reload does not change.
    pub cfg: Arc<Config>,
    pub shared: Arc<Shared>,
    /// Routes, upstreams, plans and keys: replaced whole on reload (see
    /// [`crate::pipeline::stack`]). Take it with [`Worker::pipeline`].
    pipeline: RefCell<Rc<Pipeline>>,
    /// The reload generation `pipeline` was built from.
    generation: Cell<u64>,
    pub shutdown: LocalSignal,
    /// Set when the drain time is up: connections still open are dropped (closed).
    pub kill: LocalSignal,
    pub active: Cell<usize>,
    pub rng: RefCell<fastrand::Rng>,
    /// IMF-fixdate of the current second, refreshed by the tick.
    pub date: RefCell<[u8; 29]>,
    pub counters: Counters,
    pub log_sink: Sink,
    pub log_buf: RefCell<Vec<u8>>,
    /// Idle pipes for splicing bodies, reused across requests.
    pub pipes: RefCell<Vec<crate::http::io::SplicePipe>>,
    /// Rate limiting: this worker's buckets (kept across reloads), and its gossip
    /// endpoint to the other workers.
    pub limiter: RefCell<Limiter>,
    pub gossip: RefCell<Endpoint>,
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
}

/// What a worker thread is started with.
pub struct Parts {
    pub id: usize,
    pub driver: ActiveDriver,
    pub cfg: Arc<Config>,
    pub shared: Arc<Shared>,
    pub sockets: Vec<std::net::TcpListener>,
    pub sink: Sink,
    pub limits: Arc<RateLimitConfig>,
    pub endpoint: Endpoint,
    pub auth: Arc<AuthSettings>,
    pub workers: usize,
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

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        log_sink: Sink,
        limits: Arc<RateLimitConfig>,
        endpoint: Endpoint,
        auth: &AuthSettings,
        workers: usize,
    ) -> Worker {
        let share = (*cfg.cache.max_bytes.get_ref() as usize) / workers.max(1);
        let max_object = *cfg.cache.max_object_bytes.get_ref() as usize;
        let cache = crate::cache::Cache::new(share, max_object);
        Worker {
            limiter: RefCell::new(endpoint.limiter(&limits)),
            gossip: RefCell::new(endpoint),
            pipeline: RefCell::new(Rc::new(Pipeline::build(cfg.clone(), limits, auth, None))),
            generation: Cell::new(0),
            unix_now: Cell::new(unix_seconds()),
            cache: RefCell::new(cache),
            fills: crate::cache::Fills::new(),
            kept: crate::pipeline::cache::KeptBudget::new(share, max_object),
            bodies: crate::cache::BodyFiles::new(
                *cfg.cache.file_min_bytes.get_ref(),
                crate::cache::BodyFiles::per_worker_cap(workers),
            ),
            blocking_sockets: false,
            id,
            cfg,
            shared,
            shutdown: LocalSignal::new(),
            kill: LocalSignal::new(),
            active: Cell::new(0),
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

    /// Swap to a reloaded configuration if the process has one this worker does not
    /// run yet (called from the tick). Returns the upstreams that are new and need
    /// health checks.
    fn take_reload(&self) -> Vec<Rc<UpstreamState>> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.generation.get() {
            return Vec::new();
        }
        let Some(next) = self.shared.reloaded() else {
            return Vec::new();
        };
        let prev = self.pipeline();
        let new = Pipeline::build(
            next.cfg.clone(),
            next.limits.clone(),
            &next.auth,
            Some(&prev),
        );
        self.limiter.borrow_mut().reconfigure(&new.limits);
        let fresh = new
            .upstreams
            .iter()
            .filter(|u| !prev.upstreams.iter().any(|o| Rc::ptr_eq(o, u)))
            .cloned()
            .collect();
        *self.pipeline.borrow_mut() = Rc::new(new);
        self.generation.set(next.generation);
        self.shared.applied[self.id].store(next.generation, Ordering::Release);
        fresh
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
            self.log_sink.write(&buf);
            buf.clear();
        }
    }

    fn flush_log(&self) {
        let mut buf = self.log_buf.borrow_mut();
        self.log_sink.write(&buf);
        buf.clear();
    }
}

/// Thread entry point: build the runtime for the chosen driver and run the worker on it.
pub fn run(parts: Parts, ready: Sender<Result<usize, String>>) {
    let entries = parts.cfg.server.uring_entries;
    match parts.driver {
        ActiveDriver::IoUring => {
            match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .with_entries(entries)
                .uring_builder(uring_builder())
                .build()
            {
                Ok(mut rt) => rt.block_on(worker_main(parts, ready)),
                Err(e) => {
                    let _ = ready.send(Err(format!("io_uring runtime: {e}")));
                }
            }
        }
        ActiveDriver::Epoll => {
            match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
            {
                Ok(mut rt) => rt.block_on(worker_main(parts, ready)),
                Err(e) => {
                    let _ = ready.send(Err(format!("epoll runtime: {e}")));
                }
            }
        }
    }
}

async fn worker_main(parts: Parts, ready: Sender<Result<usize, String>>) {
    let Parts {
        id,
        driver,
        cfg,
        shared,
        sockets,
        sink,
        limits,
        endpoint,
        auth,
        workers,
        ..
    } = parts;
    let mut listeners = Vec::with_capacity(sockets.len());
    // A second handle on each listening socket, kept to shut it down synchronously at
    // stop: closing monoio's handle may be deferred to the ring, and the port must stop
    // accepting before the worker reports itself stopped.
    let mut handles = Vec::with_capacity(sockets.len());
    for s in sockets {
        match s.try_clone() {
            Ok(h) => handles.push(h),
            Err(e) => {
                let _ = ready.send(Err(format!("listener: {e}")));
                return;
            }
        }
        match TcpListener::from_std(s) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                let _ = ready.send(Err(format!("listener: {e}")));
                return;
            }
        }
    }
    let mut w = Worker::new(id, cfg, shared, sink, limits, endpoint, &auth, workers);
    w.blocking_sockets = driver == ActiveDriver::IoUring;
    let w = Rc::new(w);
    for l in listeners {
        monoio::spawn(accept_loop(w.clone(), l));
    }
    monoio::spawn(tick_loop(w.clone()));
    monoio::spawn(gossip_loop(w.clone()));
    for u in &w.pipeline().upstreams {
        monoio::spawn(crate::upstream::health::run(w.clone(), u.clone()));
    }
    let _ = ready.send(Ok(id));
    drop(ready);

    w.shutdown.wait().await;
    for h in &handles {
        // shutdown(2) on a listening socket stops it listening at once (Linux).
        let _ = socket2::SockRef::from(h).shutdown(std::net::Shutdown::Read);
    }
    // Drain: in-flight requests finish (connections close after their current
    // response, idle ones close at once), bounded by graceful_shutdown_s.
    let deadline = Instant::now() + w.cfg.server.graceful_shutdown;
    while w.active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    if w.active.get() > 0 {
        // Time is up: drop what is left, which closes the client and upstream sockets.
        w.kill.set();
        let hard = Instant::now() + Duration::from_secs(1);
        while w.active.get() > 0 && Instant::now() < hard {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    w.flush_log();
}

async fn tick_loop(w: Rc<Worker>) {
    let mut last_sweep = Instant::now();
    loop {
        monoio::time::sleep(TICK).await;
        *w.date.borrow_mut() = http_date();
        w.unix_now.set(unix_seconds());
        w.flush_log();
        let now = Instant::now();
        w.limiter.borrow_mut().evict_idle_step(now.into_std());
        for u in w.take_reload() {
            monoio::spawn(crate::upstream::health::run(w.clone(), u));
        }
        if now.saturating_duration_since(last_sweep) >= SWEEP_EVERY {
            for u in &w.pipeline().upstreams {
                u.sweep(now);
            }
            last_sweep = now;
        }
        if w.shared.stop.load(Ordering::Relaxed) {
            w.shutdown.set();
            return;
        }
    }
}

/// Every `sync_interval_ms`: send this worker's consumed rate-limit counts to the
/// other workers and charge theirs (see `ratelimit` for the bound this gives).
async fn gossip_loop(w: Rc<Worker>) {
    if w.gossip.borrow().workers() < 2 {
        return;
    }
    loop {
        let every = w.pipeline().limits.sync_interval;
        monoio::select! {
            _ = monoio::time::sleep(every) => {}
            _ = w.shutdown.wait() => return,
        }
        let now = std::time::Instant::now();
        let mut limiter = w.limiter.borrow_mut();
        w.gossip.borrow_mut().exchange(&mut limiter, now);
    }
}

async fn accept_loop(w: Rc<Worker>, listener: TcpListener) {
    let max = w.cfg.server.max_connections;
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = w.shutdown.wait() => None,
        };
        let (stream, peer) = match accepted {
            None => return,
            Some(Ok(x)) => x,
            Some(Err(e)) => {
                // EMFILE and friends: back off briefly instead of spinning.
                if w.cfg.log.level >= crate::config::LogLevel::Warn {
                    eprintln!("ringgate: worker {}: accept failed: {e}", w.id);
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if w.shared.connections.fetch_add(1, Ordering::Relaxed) >= max {
            w.shared.connections.fetch_sub(1, Ordering::Relaxed);
            w.shared.refused.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::inc(&w.counters.connections_refused);
            drop(stream);
            continue;
        }
        spawn_conn(w.clone(), stream, peer);
    }
}

fn spawn_conn(w: Rc<Worker>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    w.active.set(w.active.get() + 1);
    monoio::spawn(async move {
        monoio::select! {
            done = Contained::new(crate::pipeline::conn::serve(&w, stream, peer)) => {
                if done.is_none() {
                    crate::telemetry::inc(&w.counters.task_panics);
                }
            }
            _ = w.kill.wait() => {}
        }
        w.active.set(w.active.get() - 1);
        w.shared.connections.fetch_sub(1, Ordering::Relaxed);
    });
}
