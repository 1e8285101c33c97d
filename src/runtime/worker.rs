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
use std::time::Duration;

use crossbeam_channel::Sender;
use monoio::net::{TcpListener, TcpStream};
use monoio::time::Instant;

use super::accept::{self, AcceptBackoff};
use super::driver::{uring_builder, ActiveDriver};
use super::Shared;
use crate::auth::AuthSettings;
use crate::config::Config;
use crate::pipeline::local::Local;
use crate::pipeline::stack::Pipeline;
use crate::ratelimit::{Endpoint, RateLimitConfig};
use crate::task::contain::{Ended, Task};
use crate::task::signal::LocalSignal;
use crate::telemetry::access_log::Sink;
use crate::upstream::UpstreamState;

pub use crate::pipeline::local::TICK;
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A worker as the runtime sees it: the request path's state ([`Local`]) and what
/// only the loops around it use.
pub struct Worker {
    pub local: Rc<Local>,
    pub shared: Arc<Shared>,
    /// This worker's gossip endpoint to the other workers (rate-limit counts).
    gossip: RefCell<Endpoint>,
    /// The reload generation the current pipeline was built from.
    generation: Cell<u64>,
    /// Set when the drain time is up: connections still open are dropped (closed).
    kill: LocalSignal,
    active: Cell<usize>,
}

/// What a worker thread is started with.
pub struct Parts {
    pub id: usize,
    pub driver: ActiveDriver,
    pub cfg: Arc<Config>,
    pub shared: Arc<Shared>,
    /// Plain listeners first, then TLS ones.
    pub sockets: Vec<std::net::TcpListener>,
    /// How many of `sockets` are plain.
    pub plain: usize,
    pub sink: Sink,
    pub limits: Arc<RateLimitConfig>,
    pub endpoint: Endpoint,
    pub auth: Arc<AuthSettings>,
    pub workers: usize,
    /// Questions from the admin API.
    pub inbox: super::mailbox::Inbox,
}

impl Worker {
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
        let prev = self.local.pipeline();
        let new = Pipeline::build(
            next.cfg.clone(),
            next.limits.clone(),
            &next.auth,
            Some(&prev),
        );
        let fresh = new
            .upstreams
            .iter()
            .filter(|u| !prev.upstreams.iter().any(|o| Rc::ptr_eq(o, u)))
            .cloned()
            .collect();
        self.local.set_pipeline(new);
        self.generation.set(next.generation);
        self.shared.applied[self.local.id].store(next.generation, Ordering::Release);
        fresh
    }

    /// An accept failed: count it and log it (at most once per interval, see
    /// [`accept`](super::accept)). Returns how long to wait before the next accept:
    /// `None` for a failure that does not repeat (a connection aborted before it was
    /// taken), which is neither counted nor logged.
    fn accept_failed(&self, backoff: &mut AcceptBackoff, e: &std::io::Error) -> Option<Duration> {
        let failure = accept::classify(e);
        let next = backoff.failed(failure, std::time::Instant::now());
        let wait = next.wait?;
        crate::telemetry::inc(&self.local.counters.accept_errors);
        self.shared.accept_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(report) = next.report {
            if self.local.cfg.log.level >= crate::config::LogLevel::Warn {
                eprintln!(
                    "ringgate: worker {}: {}",
                    self.local.id,
                    accept::message(e, failure, report)
                );
            }
        }
        Some(wait)
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
        plain,
        sink,
        limits,
        endpoint,
        auth,
        workers,
        inbox,
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
    let mut local = Local::new(
        id,
        cfg,
        sink,
        limits.clone(),
        endpoint.limiter(&limits),
        &auth,
        workers,
    );
    local.blocking_sockets = driver == ActiveDriver::IoUring;
    let w = Rc::new(Worker {
        local: Rc::new(local),
        shared,
        gossip: RefCell::new(endpoint),
        generation: Cell::new(0),
        kill: LocalSignal::new(),
        active: Cell::new(0),
    });
    for (i, l) in listeners.into_iter().enumerate() {
        monoio::spawn(accept_loop(w.clone(), l, i >= plain));
    }
    monoio::spawn(tick_loop(w.clone()));
    monoio::spawn(gossip_loop(w.clone()));
    monoio::spawn(super::mailbox::serve(w.local.clone(), inbox));
    for u in &w.local.pipeline().upstreams {
        monoio::spawn(crate::upstream::health::run(w.local.clone(), u.clone()));
    }
    let _ = ready.send(Ok(id));
    drop(ready);

    w.local.shutdown.wait().await;
    for h in &handles {
        // shutdown(2) on a listening socket stops it listening at once (Linux).
        let _ = socket2::SockRef::from(h).shutdown(std::net::Shutdown::Read);
    }
    // Drain: in-flight requests finish (connections close after their current
    // response, idle ones close at once), bounded by graceful_shutdown_s.
    let deadline = Instant::now() + w.local.cfg.server.graceful_shutdown;
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
    // A connection that just ended has only queued its socket's close (io_uring: a
    // close entry, or first the cancel of a read still in flight, whose completion
    // then queues the close). They reach the kernel when the worker next waits, and
    // a runtime dropped before that never submits them: the client would wait for a
    // close that never comes. A few short waits let those chains finish.
    for _ in 0..3 {
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    // A last gossip round: `[cluster]` pushes this worker's final counts to Redis.
    if w.gossip.borrow().has_peers() {
        let mut limiter = w.local.limiter.borrow_mut();
        w.gossip
            .borrow_mut()
            .exchange(&mut limiter, std::time::Instant::now());
    }
    w.local.flush_log();
}

async fn tick_loop(w: Rc<Worker>) {
    let mut last_sweep = Instant::now();
    let mut last_collect = Instant::now();
    loop {
        monoio::time::sleep(TICK).await;
        let l = &w.local;
        l.tick_clock();
        l.deadlines.fire(Instant::now());
        l.flush_log();
        let now = Instant::now();
        l.limiter.borrow_mut().evict_idle_step(now.into_std());
        for u in w.take_reload() {
            monoio::spawn(crate::upstream::health::run(l.clone(), u));
        }
        if now.saturating_duration_since(last_sweep) >= SWEEP_EVERY {
            for u in &l.pipeline().upstreams {
                u.sweep(now);
            }
            last_sweep = now;
        }
        if now.saturating_duration_since(last_collect) >= super::alloc::COLLECT_EVERY {
            super::alloc::collect();
            last_collect = now;
        }
        if w.shared.stop.load(Ordering::Relaxed) {
            l.shutdown.set();
            l.deadlines.expire_all();
            return;
        }
    }
}

/// Every `sync_interval_ms`: send this worker's consumed rate-limit counts to the
/// other workers and charge theirs (see `ratelimit` for the bound this gives).
async fn gossip_loop(w: Rc<Worker>) {
    if !w.gossip.borrow().has_peers() {
        return;
    }
    loop {
        let every = w.local.pipeline().limits.sync_interval;
        monoio::select! {
            _ = monoio::time::sleep(every) => {}
            _ = w.local.shutdown.wait() => return,
        }
        let now = std::time::Instant::now();
        let mut limiter = w.local.limiter.borrow_mut();
        w.gossip.borrow_mut().exchange(&mut limiter, now);
    }
}

async fn accept_loop(w: Rc<Worker>, listener: TcpListener, tls: bool) {
    let max = w.local.cfg.server.max_connections;
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = w.local.shutdown.wait() => None,
        };
        let (stream, peer) = match accepted {
            None => return,
            Some(Ok(x)) => {
                backoff.accepted();
                x
            }
            Some(Err(e)) => {
                let Some(wait) = w.accept_failed(&mut backoff, &e) else {
                    continue;
                };
                // Connections arriving meanwhile wait in the listen backlog.
                let stop = monoio::select! {
                    _ = monoio::time::sleep(wait) => false,
                    _ = w.local.shutdown.wait() => true,
                };
                if stop {
                    return;
                }
                continue;
            }
        };
        admit(&w, max, stream, peer, tls);
        // Under io_uring an accept is one operation, completed in one turn of the
        // worker's loop among everything else that completed: a storm of new
        // connections would drain from the backlog one per turn (4,000 waited for up
        // to 4 s in `loadtest/active.sh`). Take what else is waiting now with plain
        // accept calls, a bounded batch per turn so that serving goes on meanwhile.
        // (Under epoll monoio's accept is such a call already.) A failure is left to
        // the next accept above, which handles it.
        for _ in 0..ACCEPT_BATCH {
            match crate::http::sock::accept_now(&listener, !w.local.blocking_sockets) {
                Ok(Some((stream, peer))) => admit(&w, max, stream, peer, tls),
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// Connections taken from the backlog at once after each accept, at most.
const ACCEPT_BATCH: usize = 64;

/// Serve a new connection, or close it at once past `max_connections`.
fn admit(w: &Rc<Worker>, max: usize, stream: TcpStream, peer: SocketAddr, tls: bool) {
    if w.shared.connections.fetch_add(1, Ordering::Relaxed) >= max {
        w.shared.connections.fetch_sub(1, Ordering::Relaxed);
        w.shared.refused.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::inc(&w.local.counters.connections_refused);
        drop(stream);
        return;
    }
    spawn_conn(w.clone(), stream, peer, tls);
}

fn spawn_conn(w: Rc<Worker>, stream: TcpStream, peer: SocketAddr, tls: bool) {
    let _ = stream.set_nodelay(true);
    w.active.set(w.active.get() + 1);
    let c = &w.local.counters;
    let (total, open) = match tls {
        true => (&c.connections_tls, &c.open_tls),
        false => (&c.connections_plain, &c.open_plain),
    };
    crate::telemetry::inc(total);
    crate::telemetry::inc(open);
    let serve = crate::pipeline::conn::serve(w.local.clone(), stream, peer, tls);
    let stop = w.kill.wait();
    // One allocation per connection: the task, with the connection's future inline.
    monoio::spawn(Task::new(serve, stop, move |ended| {
        if ended == Ended::Panicked {
            crate::telemetry::inc(&w.local.counters.task_panics);
        }
        w.active.set(w.active.get() - 1);
        let c = &w.local.counters;
        let open = if tls { &c.open_tls } else { &c.open_plain };
        open.set(open.get() - 1);
        w.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }));
}
