//! Workers: one thread per core, pinned, each with its own monoio runtime (io_uring or
//! epoll), its own SO_REUSEPORT listeners, its own upstream pools. [`Gateway::start`]
//! binds every socket, starts the workers and returns once all of them are accepting;
//! [`Gateway::shutdown`] asks them to drain and [`Gateway::join`] waits for them.
//!
//! The only things shared between threads are the stop flag, the connection count
//! (one atomic add per accepted connection, none per request), the counts of refused
//! connections and failed accepts, and a reloaded configuration.

pub mod accept;
pub mod alloc;
pub mod control;
pub mod driver;
pub mod listener;
pub mod mailbox;
pub mod nofile;
pub mod worker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::admin::state::Overlay;
use crate::config::Config;
pub use control::{Applied, Control, ReloadError};
pub use driver::ActiveDriver;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // An I/O error is either a `source` or part of the message, never both: `main`
    // prints the chain, and a cause written in both places would print twice.
    /// The message names the address and the OS error (see `listener::bind_all`).
    #[error(transparent)]
    Listen(std::io::Error),
    #[error("io_driver = \"io_uring\" but io_uring is not available here ({0}); use \"auto\" or \"epoll\"")]
    UringUnavailable(String),
    #[error("worker {worker} failed to start: {message}")]
    Worker { worker: usize, message: String },
    #[error("{addr} is already served by another process (another ringgate?); stop it, listen elsewhere, or take it over deliberately with --takeover (server.takeover = true), which shares the address for a zero-downtime upgrade")]
    AddressInUse { addr: SocketAddr },
    #[error("nothing to listen on: server.listen is empty")]
    NoListener,
    #[error("cannot open access log {path}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
    /// `admin.state_file` cannot be read, or its routes do not fit the file.
    #[error("admin.state_file: {0}")]
    State(String),
    /// The OS error is part of the message (not a `source`, which would print twice).
    #[error("admin.listen {addr}: cannot listen there: {error}")]
    Admin {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// Process-wide state shared by workers (read-mostly; never touched per request).
#[derive(Debug, Default)]
pub struct Shared {
    pub stop: AtomicBool,
    pub connections: AtomicUsize,
    pub refused: AtomicUsize,
    /// Accepts that failed and made a worker wait (out of descriptors or memory).
    pub accept_errors: AtomicUsize,
    /// The configuration reloaded last, and its number: each worker's tick compares
    /// the number with its own and, when it differs, builds its pipeline anew.
    pub generation: AtomicU64,
    reload: Mutex<Option<Arc<Reloaded>>>,
    /// Per worker: the generation it runs.
    pub applied: Vec<AtomicU64>,
    /// `[cluster]`: the sync thread's state (Redis reachable, live nodes).
    pub cluster: Option<Arc<crate::cluster::Status>>,
}

impl Shared {
    fn new(workers: usize) -> Shared {
        Shared {
            applied: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            ..Shared::default()
        }
    }

    /// The configuration reloaded last, if any.
    pub fn reloaded(&self) -> Option<Arc<Reloaded>> {
        self.reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A reloaded configuration with its sections in final form, ready for the workers.
#[derive(Debug)]
pub struct Reloaded {
    pub generation: u64,
    pub cfg: Arc<Config>,
    pub limits: Arc<crate::ratelimit::RateLimitConfig>,
    pub auth: Arc<crate::auth::AuthSettings>,
}

/// A running gateway.
pub struct Gateway {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    driver: ActiveDriver,
    workers: usize,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// `[cluster]`: the sync thread, joined after the workers (it pushes their last
    /// counts).
    cluster_thread: Option<JoinHandle<()>>,
    /// The access log's writer thread (none when the log is off).
    log_writer: Option<crate::telemetry::access_log::Writer>,
    /// The configuration in force and every way of changing it.
    control: Arc<Control>,
    /// The admin listener (with an `[admin]` table).
    admin: Option<crate::admin::AdminServer>,
}

impl Gateway {
    /// Bind the listeners and start the workers. Returns when every worker accepts.
    pub fn start(mut cfg: Config) -> Result<Gateway, StartError> {
        // The admin API's routes, kept in `state_file`, go on top of the file.
        let base = cfg.text.as_deref().map(str::to_owned);
        let overlay = match &cfg.admin.state_file {
            Some(path) => Overlay::load(path).map_err(|e| StartError::State(e.to_string()))?,
            None => Overlay::default(),
        };
        if let (false, Some(text)) = (overlay.is_empty(), &base) {
            let origin = cfg
                .source
                .as_ref()
                .map_or("configuration".to_owned(), |p| p.display().to_string());
            let source = cfg.source.clone();
            cfg = control::with_overlay(text, &origin, &overlay)
                .map_err(|e| StartError::State(e.to_string()))?;
            cfg.source = source;
        }
        let workers = match cfg.server.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let driver = driver::choose(cfg.server.io_driver, cfg.server.uring_entries)?;
        let tls_listen = cfg.server.tls_listen.clone();
        if cfg.server.listen.is_empty() && tls_listen.is_empty() {
            return Err(StartError::NoListener);
        }
        // Before any worker binds: SO_REUSEPORT would let us share an address another
        // process serves, taking part of its traffic, unless that is the intent.
        if !cfg.server.takeover {
            for &addr in cfg.server.listen.iter().chain(&tls_listen) {
                if listener::already_served(addr).map_err(StartError::Listen)? {
                    return Err(StartError::AddressInUse { addr });
                }
            }
        }
        // Plain listeners first, then TLS ones: each worker tells them apart by
        // position (`Parts::plain`).
        let plain = cfg.server.listen.len();
        let all: Vec<SocketAddr> = cfg
            .server
            .listen
            .iter()
            .chain(&tls_listen)
            .copied()
            .collect();
        let (sockets, mut addrs) = listener::bind_all(&all, workers).map_err(StartError::Listen)?;
        let tls_addrs = addrs.split_off(plain);
        // Bound before any worker starts, so that a taken admin port refuses the start.
        let admin_listener =
            match cfg.admin.requested {
                true => Some(crate::admin::bind(cfg.admin.listen).map_err(|error| {
                    StartError::Admin {
                        addr: cfg.admin.listen,
                        error,
                    }
                })?),
                false => None,
            };
        let mut mail = Vec::with_capacity(workers);
        let mut inboxes = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (m, i) = mailbox::pair().map_err(|e| StartError::Worker {
                worker: mail.len(),
                message: format!("mailbox: {e}"),
            })?;
            mail.push(m);
            inboxes.push(i);
        }
        let mut inboxes = inboxes.into_iter();
        let (log_sink, log_writer) = crate::telemetry::access_log::open(&cfg.log.access_log)
            .map_err(|e| StartError::AccessLog {
                path: match &cfg.log.access_log {
                    crate::config::AccessLog::File(p) => p.display().to_string(),
                    other => format!("{other:?}"),
                },
                source: e,
            })?;
        // Typed by validation, keys already loaded: a missing secret has stopped
        // `Config::load` (and `ringgate check`) before anything here ran.
        let limits = cfg.limits.clone();
        let auth = cfg.auth_keys.clone();
        // One gossip endpoint per worker: rate-limit counts travel between workers on
        // these channels every sync_interval, never per request.
        let mut cluster_status = None;
        let mut cluster_thread = None;
        let mut mesh = crate::ratelimit::Mesh::new(workers);
        let mut endpoints = match &cfg.cluster {
            // `[cluster]`: one sync thread for the node; keys fingerprinted alike on
            // every node, so they name the same counters in Redis.
            Some(c) => {
                mesh = mesh.with_secret(crate::ratelimit::KeySecret::keyed(c.key_seed()));
                let started = crate::cluster::start(
                    c.clone(),
                    workers,
                    cfg.log.level >= crate::config::LogLevel::Warn,
                )
                .map_err(|e| StartError::Worker {
                    worker: 0,
                    message: format!("cluster sync thread: {e}"),
                })?;
                started.status.set_quota_plans(&limits);
                cluster_status = Some(started.status);
                cluster_thread = Some(started.thread);
                let mut eps = mesh.into_endpoints();
                for (ep, link) in eps.iter_mut().zip(started.links) {
                    ep.attach_cluster(link);
                }
                eps
            }
            None => mesh.into_endpoints(),
        }
        .into_iter();
        // Redirects to HTTPS name the port actually bound (a configured 0 is the OS's
        // choice).
        cfg.server.https_port = tls_addrs.first().map(|a| a.port());
        let cfg = Arc::new(cfg);
        let shared = Arc::new(Shared {
            cluster: cluster_status,
            ..Shared::new(workers)
        });
        let cores = if cfg.server.pin_workers {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<usize, String>>(workers);
        let mut threads = Vec::with_capacity(workers);
        for (id, socks) in sockets.into_iter().enumerate() {
            let cfg = cfg.clone();
            let shared = shared.clone();
            let ready = ready_tx.clone();
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let sink = log_sink.clone();
            let limits = limits.clone();
            let auth = auth.clone();
            let endpoint = endpoints.next().ok_or_else(|| StartError::Worker {
                worker: id,
                message: "no gossip endpoint".into(),
            })?;
            let inbox = inboxes.next().ok_or_else(|| StartError::Worker {
                worker: id,
                message: "no mailbox".into(),
            })?;
            let t = std::thread::Builder::new()
                .name(format!("ringgate-w{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        // Pinning is best effort: containers may forbid it.
                        let _ = core_affinity::set_for_current(core);
                    }
                    let parts = worker::Parts {
                        id,
                        driver,
                        cfg,
                        shared,
                        sockets: socks,
                        plain,
                        sink,
                        limits,
                        endpoint,
                        auth,
                        workers,
                        inbox,
                    };
                    worker::run(parts, ready);
                })
                .map_err(|e| StartError::Worker {
                    worker: id,
                    message: e.to_string(),
                })?;
            threads.push(t);
        }
        drop(ready_tx);
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(_)) => {}
                Ok(Err(message)) => {
                    shared.stop.store(true, Ordering::SeqCst);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(StartError::Worker { worker: 0, message });
                }
                Err(_) => {
                    return Err(StartError::Worker {
                        worker: 0,
                        message: "worker exited during start".into(),
                    })
                }
            }
        }
        let control = Arc::new(Control::new(
            shared.clone(),
            mail,
            driver,
            cfg,
            base,
            overlay,
        ));
        let admin = admin_listener.map(|l| crate::admin::AdminServer::start(l, control.clone()));
        Ok(Gateway {
            addrs,
            tls_addrs,
            driver,
            workers,
            shared,
            threads,
            cluster_thread,
            log_writer,
            control,
            admin,
        })
    }

    /// Apply `cfg` (already validated) on every worker without dropping a
    /// connection, with the admin API's routes on top (see [`Control::replace`]).
    /// Returns once every worker runs it, with the sections that changed but take
    /// effect only at the next start.
    pub fn reload(&self, cfg: Config) -> Result<Vec<&'static str>, ReloadError> {
        self.control.replace(cfg)
    }

    /// Read the configuration file again and apply it: SIGHUP, and the same entry point
    /// as `POST /api/v1/reload`.
    pub fn reload_file(&self) -> Result<Applied, ReloadError> {
        self.control.reload_file()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.control.current()
    }

    /// The configuration and its controls (the admin API's side of the gateway).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// The admin listener's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr())
    }

    /// The bound listener addresses, in `server.listen` order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The bound TLS listener addresses, in `server.tls.listen` order.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    pub fn driver(&self) -> ActiveDriver {
        self.driver
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Connections refused because `max_connections` was reached.
    pub fn refused_connections(&self) -> usize {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Accepts that failed for want of descriptors or kernel memory (EMFILE, ENFILE,
    /// ENOBUFS, ENOMEM) or unexpectedly; each made its worker wait before the next.
    /// Connections aborted by their client before they were taken are not counted.
    pub fn accept_errors(&self) -> usize {
        self.shared.accept_errors.load(Ordering::Relaxed)
    }

    /// Stop accepting, finish in-flight requests, close idle connections.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }

    /// Wait for every worker to finish.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        if let Some(t) = self.cluster_thread {
            let _ = t.join();
        }
        // The admin API answers through the drain (`/ready` says 503); then it stops.
        if let Some(a) = self.admin {
            a.stop();
        }
        // The workers' sinks are gone with them: the writer drains the queue and ends.
        if let Some(w) = self.log_writer {
            let dropped = w.join();
            if dropped > 0 {
                eprintln!(
                    "ringgate: the access log dropped {dropped} batches of lines: its writer could not keep up"
                );
            }
        }
    }
}
