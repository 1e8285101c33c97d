//! `[cluster]`: rate limits shared by several gateway nodes through Redis, with no
//! network call per request.
//!
//! Each node enforces locally as it does alone (every worker its own GCRA buckets,
//! kept in step with the node's other workers by gossip, see `crate::ratelimit`). One
//! thread per node ([`start`]) is the node's only Redis client. Each gossip round every
//! worker also hands that thread the counts it admitted ([`Link::push`]: a bounded
//! channel, `try_send` only; a batch that does not fit is merged into the next). Every
//! `sync_interval_ms` the thread sends one pipelined batch:
//!
//! * `INCRBY ringgate:{NAME}:rl:PLAN:KEY:WINDOW n` for every key this node admitted
//!   `n` requests on since its last successful push, followed by `PEXPIRE` (3 windows)
//!   only with its first push to that counter on this connection (once per key and
//!   window: a counter is written in one window and read last in the next);
//! * `GET` of the other keys it follows (seen in the last two windows), so it hears of
//!   others' use of a key it is not using right now;
//! * its heartbeat: `ZADD ringgate:{NAME}:nodes NOW NODE_ID`, members older than the
//!   heartbeat expiry (`max(1 s, 5 intervals)`) removed, `ZCARD` = the live nodes;
//! * for a key whose plan has a quota: `INCRBY ringgate:{NAME}:q:PLAN:KEY:dDAY n` (and
//!   `...:mDAY` for the month, `DAY` the period's first day since 1970) + `EXPIREAT`
//!   a day after the period ends (see "Quotas" below).
//!
//! A counter is the cluster's consumption of one key in one window of
//! `max(1 s, 10 × sync_interval)` (`WINDOW` = Unix time / that length, so every node
//! with a synchronized clock writes to the same counter). The node remembers, per key,
//! the window and the value it last read: what the others admitted since then is
//! `total − last − own` (`own` = what this push added), and that is sent to every
//! worker of the node as a gossip batch, which charges it to its buckets exactly as
//! counts from another core. When the window changes, the ended window is read once
//! more (what others added after this node's last read) and the key is followed in the
//! new window from 0. A key this node has not followed yet is charged everything the
//! others added in the current window: at most one window old, which can only make
//! the bucket stricter.
//!
//! # Quotas
//!
//! A quota counter is the cluster's count of one key in one UTC day or month, kept in
//! Redis, so it survives a restart of any node (or of all). The sync thread knows
//! which plans have quotas ([`Status::set_quota_plans`], at start and every reload);
//! every `INCRBY` of a quota counter returns the cluster's count, which goes to every
//! worker in the round's [`Update`] and raises the worker's own count to it
//! ([`crate::ratelimit::quota::Quotas::raise_to`]: never lowers it). Between those
//! reads, other nodes' admissions reach a worker as they do for the buckets (every
//! foreign count charged to a bucket is also counted against its quota), so a
//! worker's count is at least the cluster's as of `L_c` ago. A node that has not
//! admitted a key yet in this life (just started, or the key was idle) starts from
//! its own count, and learns the cluster's with the reply to its first push: it may
//! admit what its buckets allow in `L_c` (below) over the quota meanwhile. Together:
//!
//! ```text
//!     admitted in one period  <=  Q + (N×W − 1 + W×restarts) × (floor(L_c/T) + burst + 1)
//! ```
//!
//! (`restarts`: nodes started in the period; `src/cluster/sim_tests.rs` checks it.)
//!
//! A stopping node's workers make a last gossip round and the thread a last push
//! before the process exits, so a graceful restart loses no count; a killed node
//! loses what it admitted in its last round (at most `S + C` of admissions). While
//! Redis is down the counts wait in `pending` (per key) and are added when it is back;
//! each node meanwhile enforces the quota on what it knew plus what it admits (the
//! share charge is for the buckets only, see below), so an outage can let each node
//! admit up to what is left of the quota.
//!
//! Keys are the buckets' 64-bit fingerprints, under a secret every node derives from
//! the cluster's name and `redis_url` (the same on every node; see
//! [`ClusterConfig::key_seed`]). `{NAME}` is a Redis Cluster hash tag: all of a
//! cluster's keys live in one slot.
//!
//! Bounds: the sync thread follows at most [`MAX_TRACKED`] keys and holds at most as
//! many unpushed counts; each worker's channel to it and back holds 64 batches (a full
//! channel's batch is merged into the next, never dropped). One round's pipeline has
//! one command per followed key, plus, once per window, a `PEXPIRE` for each key this
//! node pushes to and a last `GET` for each key of the ended window; so the commands a
//! second depend on the keys and the interval, not on the request rate. The round is
//! written in RESP into a buffer kept from round to round (as are its other lists):
//! building it with the client's `Pipeline` (a `Cmd` and a formatted key per command,
//! the packed request grown from empty every round) took more than twice the CPU
//! (`cargo bench --bench cluster`, `loadtest/cluster.sh`).
//!
//! # When Redis fails (`on_redis_error = "local"`)
//!
//! A connection or command that fails or takes longer than the timeout
//! (`max(sync_interval, 50 ms)`) marks Redis down. Requests never wait for Redis:
//! workers only `try_send`/`try_recv`. While down, each round charges every worker's
//! buckets `(N − 1) × n` for the `n` this node admitted on a key, `N` being the live
//! nodes last counted: the node admits its share (`1/N`) of every rate limit. (Not of
//! a quota: a share charge is not a count of requests, and a quota count lasts the
//! whole day or month, long after Redis is back.) It logs at the change and
//! then at most every 10 s, and reconnects every round; the counts admitted meanwhile
//! are kept (one entry per key) and pushed when Redis is back, so the totals catch up.
//! The state is in [`Status`] (`/health` and metrics can read it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use hashbrown::HashMap;

use crate::ratelimit::quota::unix_now;
use crate::ratelimit::{Batch, BatchEntry, Limiter, Period, PlanId, RateLimitConfig};

/// Keys one node tracks in Redis at most (own pending counts and keys it reads back);
/// beyond it, counts for new keys stay local (counted in [`Status::dropped`]).
pub const MAX_TRACKED: usize = 1 << 20;
/// Batches a worker's channel to the sync thread (and back) holds.
const CHANNEL_ROUNDS: usize = 64;
/// A Redis outage is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// `on_redis_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Keep limiting with this node's share (limit / live nodes).
    Local,
}

/// The typed `[cluster]` section. `Debug` never shows the URL (it may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    url: String,
    pub node_id: String,
    pub name: String,
    pub sync_interval: Duration,
    pub on_redis_error: OnRedisError,
    /// `rediss://` with `ca_file`: the PEM of the CAs to trust (else the system's).
    ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &"<redacted>")
            .field("node_id", &self.node_id)
            .field("name", &self.name)
            .field("sync_interval", &self.sync_interval)
            .field("on_redis_error", &self.on_redis_error)
            .field("ca_file", &self.ca_pem.is_some())
            .finish()
    }
}

impl ClusterConfig {
    pub fn new(
        url: String,
        node_id: String,
        name: String,
        sync_interval: Duration,
        on_redis_error: OnRedisError,
    ) -> ClusterConfig {
        ClusterConfig {
            url,
            node_id,
            name,
            sync_interval,
            on_redis_error,
            ca_pem: None,
        }
    }

    /// Trust these PEM CAs for a `rediss://` URL instead of the system's roots.
    pub fn with_ca(mut self, pem: Option<Vec<u8>>) -> ClusterConfig {
        self.ca_pem = pem;
        self
    }

    /// A client for the URL: TLS (`rediss://`, rustls with the ring provider, like
    /// every TLS of the process) trusting `ca_file` or the system's roots.
    fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(self.url.as_str()),
        }
    }

    /// The fingerprint secret of the cluster: SHA-256 of its name and `redis_url`
    /// (password included), so every node of the cluster names a key alike and, when
    /// the URL carries a password, no one without it can predict fingerprints.
    pub fn key_seed(&self) -> [u8; 16] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"ringgate cluster key secret\0");
        ctx.update(self.name.as_bytes());
        ctx.update(b"\0");
        ctx.update(self.url.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&ctx.finish().as_ref()[..16]);
        out
    }

    fn prefix(&self) -> String {
        format!("ringgate:{{{}}}:", self.name)
    }

    /// How long a Redis call may take before Redis counts as down.
    pub fn timeout(&self) -> Duration {
        self.sync_interval.max(Duration::from_millis(50))
    }

    /// How long connecting may take: the timeout, three times over for `rediss://`
    /// (TCP, then the TLS handshake's round trips and signature checks).
    pub fn connect_timeout(&self) -> Duration {
        if self.url.starts_with("rediss://") {
            self.timeout() * 3
        } else {
            self.timeout()
        }
    }

    /// The length of a counter's window: `max(1 s, 10 × sync_interval)`.
    pub fn window(&self) -> Duration {
        (self.sync_interval * 10).max(Duration::from_secs(1))
    }

    /// A node not heard from for this long is no longer counted live.
    pub fn heartbeat_ttl(&self) -> Duration {
        (self.sync_interval * 5).max(Duration::from_secs(1))
    }
}

/// `${env:NAME}` references in `text` replaced by the variables' values. The error
/// names the variable, never the text.
pub fn expand_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${env:") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 6..];
        let Some(end) = after.find('}') else {
            return Err("unclosed `${env:` reference".to_owned());
        };
        let name = &after[..end];
        let value = env(name)
            .ok_or_else(|| format!("environment variable `{name}` is not set"))?
            .into_string()
            .map_err(|_| format!("environment variable `{name}` is not UTF-8"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `hostname:pid`, the default `node_id`.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// What the sync thread reports; read by `/health` and metrics, written once a round.
#[derive(Debug, Default)]
pub struct Status {
    /// The last round reached Redis.
    pub redis_ok: AtomicBool,
    /// Live nodes counted by the last successful round (0: never reached Redis).
    pub live_nodes: AtomicU64,
    /// Rounds that failed (Redis down or slow).
    pub errors: AtomicU64,
    /// Rounds that succeeded.
    pub syncs: AtomicU64,
    /// Counts kept local because [`MAX_TRACKED`] keys were tracked already.
    pub dropped: AtomicU64,
    /// Counter replies that were not numbers (keys written by another program).
    pub odd_replies: AtomicU64,
    /// The plans with a daily or monthly quota, whose counts the thread also adds to
    /// Redis's quota counters. Set at start and by every reload
    /// ([`Status::set_quota_plans`]); read once a round by the sync thread only.
    quota_plans: std::sync::Mutex<Vec<QuotaPlan>>,
}

/// A plan whose admissions are counted against quotas in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuotaPlan {
    name_hash: u64,
    daily: bool,
    monthly: bool,
}

impl Status {
    /// Take the quotas of `cfg`'s plans (at start and on reload).
    pub fn set_quota_plans(&self, cfg: &RateLimitConfig) {
        let plans = cfg
            .plans
            .iter()
            .filter(|p| p.daily_quota > 0 || p.monthly_quota > 0)
            .map(|p| QuotaPlan {
                name_hash: p.name_hash,
                daily: p.daily_quota > 0,
                monthly: p.monthly_quota > 0,
            })
            .collect();
        *self.quota_plans.lock().unwrap_or_else(|e| e.into_inner()) = plans;
    }

    fn quota_plans(&self) -> Vec<QuotaPlan> {
        self.quota_plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What the sync thread sends every worker after a round.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Admissions of other nodes (or, Redis down, this node's share charge) to charge
    /// to the buckets.
    pub charges: Batch,
    /// Cluster-wide quota counts read back from Redis.
    pub quotas: Vec<QuotaTotal>,
    /// The wall clock (Unix seconds) of the round that read `quotas`: a total is for
    /// the period that held this time, and is dropped if the worker's is another.
    pub unix_secs: u64,
}

/// A key's count in one quota period, over the whole cluster (every node's pushes,
/// this node's before a restart included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaTotal {
    pub fingerprint: u64,
    pub plan_hash: u64,
    pub period: Period,
    pub total: u64,
}

impl Update {
    fn merge(&mut self, other: &Update) {
        self.charges.merge(&other.charges);
        self.quotas.extend_from_slice(&other.quotas);
        self.unix_secs = self.unix_secs.max(other.unix_secs);
    }

    /// Charge it to `limiter`: the charges to its buckets (and, unless they are a share
    /// charge, to its quotas), and every quota raised to at least its cluster total.
    pub fn apply(&self, limiter: &mut Limiter, now: Instant, unix_secs: u64) {
        if !self.charges.is_empty() {
            limiter.apply_remote(&self.charges, now);
        }
        for q in &self.quotas {
            if q.period.bounds(self.unix_secs) == q.period.bounds(unix_secs) {
                limiter
                    .quotas()
                    .raise_to(q.fingerprint, q.plan_hash, q.period, q.total, unix_secs);
            }
        }
    }
}

/// Nodes the workers' debt floor allows for (`Limiter::set_remote`): charges from up
/// to this many nodes are never cut.
pub const MAX_NODES: usize = 64;

/// A worker's side of the link to the node's sync thread.
pub struct Link {
    tx: Sender<Batch>,
    held: Option<Batch>,
    rx: Receiver<Arc<Update>>,
    /// The node's cluster sync interval and Redis timeout.
    interval: Duration,
    timeout: Duration,
}

impl Link {
    /// (nodes, latency) for the workers' debt floor: [`MAX_NODES`], and the latency
    /// from an admission on one node to its charge on another, `2 S + 2 C + 2 R`
    /// (`S` the workers' gossip interval, `C` the cluster's, `R` the Redis timeout).
    pub fn debt_hint(&self, gossip: Duration) -> (usize, Duration) {
        (MAX_NODES, (gossip + self.interval + self.timeout) * 2)
    }

    /// Hand this round's admitted counts to the sync thread; never blocks (a full
    /// channel keeps them, merged, for the next round).
    pub fn push(&mut self, own: &Batch) {
        let batch = match self.held.take() {
            Some(mut held) => {
                held.merge(own);
                held
            }
            None if own.is_empty() => return,
            None => own.clone(),
        };
        match self.tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(b)) => self.held = Some(b),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Charge what other nodes admitted (or, Redis down, this node's share) to
    /// `limiter`, and raise its quota counts to the cluster's.
    pub fn charge(&mut self, limiter: &mut Limiter, now: std::time::Instant) -> usize {
        let mut n = 0;
        let mut unix_secs = None;
        while let Ok(update) = self.rx.try_recv() {
            let t = *unix_secs.get_or_insert_with(unix_now);
            update.apply(limiter, now, t);
            n += 1;
        }
        n
    }
}

/// The node's sync thread, as [`start`] returns it.
pub struct Started {
    /// One per worker, in worker order.
    pub links: Vec<Link>,
    pub status: Arc<Status>,
    /// Ends after every link is dropped (the workers have stopped) and the counts they
    /// sent last are pushed (one more round, at most the Redis timeout).
    pub thread: std::thread::JoinHandle<()>,
}

/// Start the node's sync thread: one [`Link`] per worker.
pub fn start(cfg: Arc<ClusterConfig>, workers: usize, warn: bool) -> std::io::Result<Started> {
    let status = Arc::new(Status::default());
    let mut links = Vec::with_capacity(workers);
    let mut inputs = Vec::with_capacity(workers);
    let mut outputs = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_ROUNDS);
        let (otx, orx) = crossbeam_channel::bounded(CHANNEL_ROUNDS);
        links.push(Link {
            tx,
            held: None,
            rx: orx,
            interval: cfg.sync_interval,
            timeout: cfg.timeout(),
        });
        inputs.push(rx);
        outputs.push(Out {
            tx: otx,
            held: None,
        });
    }
    let mut sync = Sync::new(cfg, status.clone(), warn);
    let thread = std::thread::Builder::new()
        .name("ringgate-cluster".into())
        .spawn(move || sync.run(inputs, outputs))?;
    Ok(Started {
        links,
        status,
        thread,
    })
}

struct Out {
    tx: Sender<Arc<Update>>,
    held: Option<Update>,
}

struct Tracked {
    plan: PlanId,
    plan_hash: u64,
    /// The window last read, and its count then.
    epoch: u64,
    last: i64,
    /// The window whose counter this node has set to expire (0: none since it
    /// connected), so that it sends `PEXPIRE` once per key and window, with its first
    /// push there.
    expiry: u64,
    /// When this node last pushed to it or saw it change.
    active: Instant,
}

/// One counter asked about in a round: which reply is its count, and what to do with
/// it.
#[derive(Clone, Copy)]
struct Ask {
    fp: u64,
    plan: PlanId,
    plan_hash: u64,
    epoch: u64,
    own: u32,
    /// A `PEXPIRE` follows the `INCRBY`.
    expire: bool,
}

struct Sync {
    cfg: Arc<ClusterConfig>,
    prefix: String,
    status: Arc<Status>,
    conn: Option<redis::Connection>,
    /// Keys read back every round (bounded by [`MAX_TRACKED`]).
    tracked: HashMap<u64, Tracked>,
    /// This node's counts not yet pushed (bounded by [`MAX_TRACKED`]).
    pending: HashMap<u64, BatchEntry>,
    /// Live nodes last counted (0: never).
    live: u64,
    /// When Redis was last reported down (`None`: up).
    down_since_log: Option<Instant>,
    /// When counters holding something other than a number were last logged.
    odd_logged: Option<Instant>,
    /// `log.level` is `warn` or more verbose: Redis going and coming back is logged.
    warn: bool,
    /// Kept from round to round, so that a round does not allocate them again: the
    /// workers' counts, the counters asked about (one reply each), the round's
    /// commands in RESP.
    fresh: Vec<BatchEntry>,
    asks: Vec<Ask>,
    wire: Vec<u8>,
    /// The round's quota counters, in the order of their commands, and the round's
    /// wall clock (Unix seconds).
    quotas: Vec<QuotaTotal>,
    unix_secs: u64,
}

impl Sync {
    fn new(cfg: Arc<ClusterConfig>, status: Arc<Status>, warn: bool) -> Sync {
        Sync {
            prefix: cfg.prefix(),
            cfg,
            status,
            conn: None,
            tracked: HashMap::new(),
            pending: HashMap::new(),
            live: 0,
            down_since_log: None,
            odd_logged: None,
            warn,
            fresh: Vec::new(),
            asks: Vec::new(),
            wire: Vec::new(),
            quotas: Vec::new(),
            unix_secs: 0,
        }
    }

    fn run(&mut self, inputs: Vec<Receiver<Batch>>, mut outputs: Vec<Out>) {
        let mut next = Instant::now() + self.cfg.sync_interval;
        loop {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += self.cfg.sync_interval;
            if next < Instant::now() {
                next = Instant::now() + self.cfg.sync_interval;
            }
            // This round's counts, also kept for the push.
            let mut fresh = std::mem::take(&mut self.fresh);
            fresh.clear();
            let mut open = 0;
            for rx in &inputs {
                loop {
                    match rx.try_recv() {
                        Ok(b) => fresh.extend_from_slice(&b.entries),
                        Err(TryRecvError::Empty) => {
                            open += 1;
                            break;
                        }
                        Err(TryRecvError::Disconnected) => break,
                    }
                }
            }
            if open == 0 {
                // Every worker has stopped (after a last gossip round): push what they
                // admitted since the previous round, so a restart continues the count.
                self.add_pending(&fresh);
                if !self.pending.is_empty() {
                    let _ = self.round();
                }
                return;
            }
            let foreign = self.sync(&fresh);
            self.fresh = fresh;
            if let Some(update) = foreign {
                for out in &mut outputs {
                    let b = match out.held.take() {
                        Some(mut held) => {
                            held.merge(&update);
                            held
                        }
                        None => update.clone(),
                    };
                    match out.tx.try_send(Arc::new(b)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(b)) => {
                            out.held = Some(Arc::try_unwrap(b).unwrap_or_else(|a| (*a).clone()))
                        }
                        Err(TrySendError::Disconnected(_)) => {}
                    }
                }
            }
        }
    }

    /// This round: `fresh` added to the pending counts, one batch to Redis (or, Redis
    /// down, this node's share); what the workers are to be charged.
    fn sync(&mut self, fresh: &[BatchEntry]) -> Option<Update> {
        self.add_pending(fresh);
        match self.round() {
            Ok(update) => {
                if self.down_since_log.take().is_some() && self.warn {
                    eprintln!(
                            "ringgate: cluster: Redis is reachable again; {} live node(s), limits shared again",
                            self.live
                        );
                }
                self.status.redis_ok.store(true, Ordering::Relaxed);
                self.status.syncs.fetch_add(1, Ordering::Relaxed);
                update
            }
            Err(e) => {
                self.conn = None;
                self.status.redis_ok.store(false, Ordering::Relaxed);
                self.status.errors.fetch_add(1, Ordering::Relaxed);
                let log = match self.down_since_log {
                    None => true,
                    Some(t) => t.elapsed() >= LOG_EVERY,
                };
                if log {
                    self.down_since_log = Some(Instant::now());
                }
                if log && self.warn {
                    // The error's category only: its text could quote the URL.
                    eprintln!(
                            "ringgate: cluster: Redis unavailable ({:?}{}); limiting with this node's share (1/{})",
                            e.kind(),
                            if e.is_timeout() { ", timed out" } else { "" },
                            self.live.max(1)
                        );
                }
                self.local_share(fresh)
            }
        }
    }

    /// Redis down: charge `(N − 1) × n` for this round's `n` to the buckets (not to
    /// the quotas), so the node admits its share of each rate limit.
    fn local_share(&self, fresh: &[BatchEntry]) -> Option<Update> {
        let others = self.live.saturating_sub(1);
        if others == 0 || fresh.is_empty() {
            return None;
        }
        let others = u32::try_from(others).unwrap_or(u32::MAX);
        Some(Update {
            charges: Batch {
                from: crate::ratelimit::SHARE_CHARGE,
                entries: fresh
                    .iter()
                    .map(|e| BatchEntry {
                        count: e.count.saturating_mul(others),
                        ..*e
                    })
                    .collect(),
            },
            ..Update::default()
        })
    }

    /// The workers' counts added to those not pushed yet.
    fn add_pending(&mut self, fresh: &[BatchEntry]) {
        for e in fresh {
            let full = self.pending.len() >= MAX_TRACKED;
            match self.pending.get_mut(&e.fingerprint) {
                Some(p) => p.count = p.count.saturating_add(e.count),
                None if full => {
                    self.status.dropped.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.pending.insert(e.fingerprint, *e);
                }
            }
        }
    }

    /// One pipelined batch; the foreign counts to charge and the quota totals, if any.
    fn round(&mut self) -> redis::RedisResult<Option<Update>> {
        use redis::ConnectionLike;
        if self.conn.is_none() {
            let client = self.cfg.client()?;
            let conn = client.get_connection_with_timeout(self.cfg.connect_timeout())?;
            conn.set_read_timeout(Some(self.cfg.timeout()))?;
            conn.set_write_timeout(Some(self.cfg.timeout()))?;
            self.conn = Some(conn);
            // A new connection may reach a new (empty) Redis: every counter's expiry
            // is set again with this node's next push to it.
            for t in self.tracked.values_mut() {
                t.expiry = 0;
            }
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let replies = self.build(now_ms);
        let conn = self.conn.as_mut().expect("connected above");
        let values = conn.req_packed_commands(&self.wire, 0, replies)?;
        self.pending.clear();
        self.apply(&values, Instant::now())
    }

    /// The round's commands, in RESP, into `wire`, and the counters they ask about into
    /// `asks`; the number of replies to read.
    ///
    /// * `INCRBY` of every counter this node has a count for, followed by `PEXPIRE`
    ///   (3 windows) the first time this node pushes to it (a counter is one window's:
    ///   set once, it outlives the window by two, and the window is read last in the
    ///   round after it ends);
    /// * `GET` of the other counters it follows, and once more of a counter whose
    ///   window has ended (what others added to it since this node's last read);
    /// * the heartbeat: `ZADD`, `ZREMRANGEBYSCORE`, `PEXPIRE`, `ZCARD`.
    fn build(&mut self, now_ms: u64) -> usize {
        let window_ms = self.cfg.window().as_millis().max(1) as u64;
        let cur = now_ms / window_ms;
        let ttl_ms = window_ms * 3;
        let hb_ms = self.cfg.heartbeat_ttl().as_millis() as u64;
        self.asks.clear();
        self.wire.clear();
        for (&fp, t) in &self.tracked {
            let ask = Ask {
                fp,
                plan: t.plan,
                plan_hash: t.plan_hash,
                epoch: cur,
                own: 0,
                expire: false,
            };
            if t.epoch < cur {
                self.asks.push(Ask {
                    epoch: t.epoch,
                    ..ask
                });
            }
            if !self.pending.contains_key(&fp) {
                self.asks.push(ask);
            }
        }
        for e in self.pending.values() {
            self.asks.push(Ask {
                fp: e.fingerprint,
                plan: e.plan,
                plan_hash: e.plan_hash,
                epoch: cur,
                own: e.count,
                expire: self
                    .tracked
                    .get(&e.fingerprint)
                    .is_none_or(|t| t.expiry != cur),
            });
        }
        // Quotas: this node's admissions added to the key's count for the day and the
        // month (kept a day past the period's end, for clocks a little apart); the
        // reply is the cluster's count, this node's earlier lives included.
        let unix_secs = now_ms / 1000;
        self.unix_secs = unix_secs;
        self.quotas.clear();
        let quota_plans = self.status.quota_plans();
        if !quota_plans.is_empty() {
            for e in self.pending.values() {
                let Some(q) = quota_plans.iter().find(|q| q.name_hash == e.plan_hash) else {
                    continue;
                };
                for (period, on) in [(Period::Day, q.daily), (Period::Month, q.monthly)] {
                    if on {
                        self.quotas.push(QuotaTotal {
                            fingerprint: e.fingerprint,
                            plan_hash: e.plan_hash,
                            period,
                            total: 0,
                        });
                    }
                }
            }
        }
        let w = &mut self.wire;
        let mut replies = self.asks.len() + 4;
        for a in &self.asks {
            let key = |w: &mut Vec<u8>| {
                resp_counter(w, &self.prefix, a.plan_hash, a.fp, a.epoch);
            };
            if a.own > 0 {
                resp_head(w, 3, b"INCRBY");
                key(w);
                resp_num(w, u64::from(a.own));
                if a.expire {
                    resp_head(w, 3, b"PEXPIRE");
                    key(w);
                    resp_num(w, ttl_ms);
                    replies += 1;
                }
            } else {
                resp_head(w, 2, b"GET");
                key(w);
            }
        }
        for q in &self.quotas {
            let (start, end) = q.period.bounds(unix_secs);
            let own = self.pending.get(&q.fingerprint).map_or(0, |e| e.count);
            let tag = match q.period {
                Period::Day => b'd',
                Period::Month => b'm',
            };
            let key = |w: &mut Vec<u8>| {
                resp_quota_key(w, &self.prefix, q.plan_hash, q.fingerprint, tag, start);
            };
            resp_head(w, 3, b"INCRBY");
            key(w);
            resp_num(w, u64::from(own));
            resp_head(w, 3, b"EXPIREAT");
            key(w);
            resp_num(w, (end + 1) * 86_400);
            replies += 2;
        }
        let nodes = |w: &mut Vec<u8>| {
            resp_arg(w, &[self.prefix.as_bytes(), b"nodes"]);
        };
        resp_head(w, 4, b"ZADD");
        nodes(w);
        resp_num(w, now_ms);
        resp_arg(w, &[self.cfg.node_id.as_bytes()]);
        resp_head(w, 4, b"ZREMRANGEBYSCORE");
        nodes(w);
        resp_arg(w, &[b"-inf"]);
        resp_num(w, now_ms.saturating_sub(hb_ms));
        resp_head(w, 3, b"PEXPIRE");
        nodes(w);
        resp_num(w, hb_ms * 2);
        resp_head(w, 2, b"ZCARD");
        nodes(w);
        replies
    }

    /// Take the replies to [`Sync::build`]'s commands: the counts others added, to
    /// charge to the workers, and the quotas' totals.
    fn apply(
        &mut self,
        values: &[redis::Value],
        now: Instant,
    ) -> redis::RedisResult<Option<Update>> {
        let mut out = Batch {
            from: usize::MAX,
            entries: Vec::new(),
        };
        let mut at = 0;
        let mut odd = 0;
        for a in &self.asks {
            let total = number(values.get(at))?;
            if a.expire {
                number(values.get(at + 1))?;
            }
            at += 1 + usize::from(a.expire);
            // A counter holding something else (written by another program) says
            // nothing about this key: skipped, the rest of the round stands.
            let Some(total) = total else {
                odd += 1;
                continue;
            };
            let total = total.max(0);
            let own = i64::from(a.own);
            if !self.tracked.contains_key(&a.fp) && self.tracked.len() >= MAX_TRACKED {
                self.status.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // First seen: the window's count started at 0, so everything others added
            // in it is charged (at most one window of their admissions).
            let t = self.tracked.entry(a.fp).or_insert(Tracked {
                plan: a.plan,
                plan_hash: a.plan_hash,
                epoch: a.epoch,
                last: 0,
                expiry: 0,
                active: now,
            });
            if a.expire {
                t.expiry = a.epoch;
            }
            if a.epoch < t.epoch {
                continue;
            }
            if a.epoch > t.epoch {
                t.epoch = a.epoch;
                t.last = 0;
            }
            let foreign = (total - t.last - own).max(0);
            t.last = total;
            if foreign > 0 || own > 0 {
                t.active = now;
            }
            if foreign > 0 {
                out.entries.push(BatchEntry {
                    fingerprint: a.fp,
                    plan: a.plan,
                    plan_hash: a.plan_hash,
                    count: u32::try_from(foreign).unwrap_or(u32::MAX),
                });
            }
        }
        for q in &mut self.quotas {
            // 0 raises nothing.
            q.total = number(values.get(at))?.map_or_else(
                || {
                    odd += 1;
                    0
                },
                |n| n.max(0) as u64,
            );
            number(values.get(at + 1))?;
            at += 2;
        }
        for i in at..at + 3 {
            number(values.get(i))?;
        }
        if let Some(live) = number(values.get(at + 3))? {
            if live > 0 {
                self.live = live as u64;
                self.status.live_nodes.store(self.live, Ordering::Relaxed);
            }
        }
        if odd > 0 {
            self.status.odd_replies.fetch_add(odd, Ordering::Relaxed);
            let log = self.odd_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY);
            if log && self.warn {
                self.odd_logged = Some(Instant::now());
                eprintln!(
                    "ringgate: cluster: {odd} counter(s) in Redis hold something other than a number (written by another program?); those keys are limited by this node alone"
                );
            }
        }
        let idle = self.cfg.window() * 2;
        self.tracked
            .retain(|_, t| now.saturating_duration_since(t.active) < idle);
        let update = Update {
            charges: out,
            quotas: std::mem::take(&mut self.quotas),
            unix_secs: self.unix_secs,
        };
        Ok((!update.charges.is_empty() || !update.quotas.is_empty()).then_some(update))
    }
}

/// A reply read as a number: an integer, a number in a bulk string (`GET`), or 0 for
/// nil (a counter no one has written); `None` for anything else (an error reply such
/// as `WRONGTYPE`, or a string that is not a number: the key was written by another
/// program). A missing reply is an error: the round failed.
fn number(v: Option<&redis::Value>) -> redis::RedisResult<Option<i64>> {
    use redis::Value;
    match v {
        Some(Value::Int(n)) => Ok(Some(*n)),
        Some(Value::Nil) => Ok(Some(0)),
        Some(Value::BulkString(b)) => Ok(std::str::from_utf8(b).ok().and_then(|s| s.parse().ok())),
        Some(_) => Ok(None),
        None => Err((redis::ErrorKind::Parse, "missing reply").into()),
    }
}

/// RESP: a command of `args` arguments (its name included) named `name` begins.
fn resp_head(w: &mut Vec<u8>, args: u64, name: &[u8]) {
    w.push(b'*');
    w.extend_from_slice(itoa::Buffer::new().format(args).as_bytes());
    w.extend_from_slice(b"\r\n");
    resp_arg(w, &[name]);
}

/// RESP: one bulk string, the concatenation of `parts`.
fn resp_arg(w: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    w.push(b'$');
    w.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    w.extend_from_slice(b"\r\n");
    for p in parts {
        w.extend_from_slice(p);
    }
    w.extend_from_slice(b"\r\n");
}

fn resp_num(w: &mut Vec<u8>, n: u64) {
    resp_arg(w, &[itoa::Buffer::new().format(n).as_bytes()]);
}

/// `v` as 16 lowercase hex digits (`{v:016x}`).
fn hex16(v: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (i, d) in b.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    b
}

/// RESP: a quota counter's name, `{prefix}q:{plan_hash:016x}:{fp:016x}:{tag}{start}`
/// (`tag` `d` or `m`, `start` the period's first day since 1970).
fn resp_quota_key(w: &mut Vec<u8>, prefix: &str, plan_hash: u64, fp: u64, tag: u8, start: u64) {
    let mut e = itoa::Buffer::new();
    resp_arg(
        w,
        &[
            prefix.as_bytes(),
            b"q:",
            &hex16(plan_hash),
            b":",
            &hex16(fp),
            b":",
            &[tag],
            e.format(start).as_bytes(),
        ],
    );
}

/// RESP: a counter's name, `{prefix}rl:{plan_hash:016x}:{fp:016x}:{epoch}`.
fn resp_counter(w: &mut Vec<u8>, prefix: &str, plan_hash: u64, fp: u64, epoch: u64) {
    let hex = hex16;
    let mut e = itoa::Buffer::new();
    resp_arg(
        w,
        &[
            prefix.as_bytes(),
            b"rl:",
            &hex(plan_hash),
            b":",
            &hex(fp),
            b":",
            e.format(epoch).as_bytes(),
        ],
    );
}

/// What `benches/cluster.rs` drives: the sync thread's round without the thread and
/// without Redis, and a worker's link with the thread's end of its channel. Not an
/// API: nothing else uses it.
#[doc(hidden)]
pub mod bench {
    use super::*;

    /// A sync thread's state, driven by hand.
    pub struct Round(pub(super) Sync);

    impl Round {
        pub fn new(cfg: Arc<ClusterConfig>) -> Round {
            Round(Sync::new(cfg, Arc::default(), false))
        }

        /// Add the workers' counts, then write the round's commands as the thread
        /// does at `now_ms`: (bytes, replies to read).
        pub fn build(&mut self, fresh: &[BatchEntry], now_ms: u64) -> (usize, usize) {
            self.0.add_pending(fresh);
            let replies = self.0.build(now_ms);
            (self.0.wire.len(), replies)
        }

        /// The thread's status (where the quota plans are set).
        pub fn status(&self) -> &Status {
            &self.0.status
        }

        /// The last round's commands, in RESP.
        pub fn wire(&self) -> &[u8] {
            &self.0.wire
        }

        /// Take `values` as the replies to the last round (which reached Redis): what
        /// the workers are to be charged.
        pub fn apply(&mut self, values: &[redis::Value]) -> Option<Batch> {
            self.0.pending.clear();
            self.0
                .apply(values, Instant::now())
                .ok()
                .flatten()
                .map(|u| u.charges)
        }
    }

    /// A worker's link, and the sync thread's end of it (nothing comes back).
    pub fn link(cfg: &ClusterConfig) -> (Link, Receiver<Batch>) {
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_ROUNDS);
        let (_, orx) = crossbeam_channel::bounded(1);
        let link = Link {
            tx,
            held: None,
            rx: orx,
            interval: cfg.sync_interval,
            timeout: cfg.timeout(),
        };
        (link, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sync round of node `node-a` in cluster `lt`, every 100 ms.
    fn test_round() -> bench::Round {
        bench::Round::new(Arc::new(ClusterConfig::new(
            "redis://127.0.0.1:1/0".into(),
            "node-a".into(),
            "lt".into(),
            Duration::from_millis(100),
            OnRedisError::Local,
        )))
    }

    /// The heartbeat that ends every round, as the client library writes it.
    fn heartbeat(pipe: &mut redis::Pipeline, now_ms: u64) {
        let nodes = "ringgate:{lt}:nodes";
        pipe.cmd("ZADD").arg(nodes).arg(now_ms).arg("node-a");
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(nodes)
            .arg("-inf")
            .arg(now_ms - 1000);
        pipe.cmd("PEXPIRE").arg(nodes).arg(2000);
        pipe.cmd("ZCARD").arg(nodes);
    }

    /// The round written by hand is the RESP the client library writes for the same
    /// commands (one key, so the order is known).
    #[test]
    fn a_round_is_the_pipeline_the_client_would_send() {
        let mut round = test_round();
        let e = BatchEntry {
            fingerprint: 0x0123_4567_89ab_cdef,
            plan: PlanId(2),
            plan_hash: 0xfeed,
            count: 42,
        };
        let now_ms = 1_796_582_497_123;
        let key = "ringgate:{lt}:rl:000000000000feed:0123456789abcdef:1796582497";
        let mut pipe = redis::pipe();
        pipe.cmd("INCRBY").arg(key).arg(42);
        pipe.cmd("PEXPIRE").arg(key).arg(3000);
        heartbeat(&mut pipe, now_ms);
        assert_eq!(round.build(&[e], now_ms).1, 6);
        assert_eq!(
            String::from_utf8_lossy(round.wire()),
            String::from_utf8_lossy(&pipe.get_packed_pipeline())
        );
        // Redis answers: the count (42 + 8 from another node), the expiry set, then
        // the heartbeat; the 8 are charged.
        let v = |n| redis::Value::Int(n);
        let foreign = round.apply(&[v(50), v(1), v(1), v(0), v(1), v(2)]).unwrap();
        assert_eq!(foreign.entries, vec![BatchEntry { count: 8, ..e }]);
        // Next round in the same window: only INCRBY, no second PEXPIRE.
        let (_, replies) = round.build(&[BatchEntry { count: 1, ..e }], now_ms + 100);
        assert_eq!(replies, 5);
        let wire = String::from_utf8_lossy(round.wire()).into_owned();
        assert!(wire.starts_with("*3\r\n$6\r\nINCRBY\r\n"), "{wire}");
        assert_eq!(wire.matches("PEXPIRE").count(), 1, "{wire}");
    }

    /// With a daily quota on the plan, the round also adds the count to the key's
    /// counter for today, which expires a day after today ends; the reply goes back
    /// as the quota's total.
    #[test]
    fn a_round_counts_quotas_as_the_client_would() {
        let limits = quota_cfg();
        let plan = &limits.plans[0];
        let mut round = test_round();
        round.status().set_quota_plans(&limits);
        let e = BatchEntry {
            fingerprint: 0x0123_4567_89ab_cdef,
            plan: plan.id,
            plan_hash: plan.name_hash,
            count: 3,
        };
        // 2026-12-06 12:00:00 UTC: day 20793.
        let now_ms = 1_796_558_400_000;
        let key = format!(
            "ringgate:{{lt}}:rl:{:016x}:0123456789abcdef:1796558400",
            plan.name_hash
        );
        let qkey = format!(
            "ringgate:{{lt}}:q:{:016x}:0123456789abcdef:d20793",
            plan.name_hash
        );
        let mut pipe = redis::pipe();
        pipe.cmd("INCRBY").arg(&key).arg(3);
        pipe.cmd("PEXPIRE").arg(&key).arg(3000);
        pipe.cmd("INCRBY").arg(&qkey).arg(3);
        pipe.cmd("EXPIREAT").arg(&qkey).arg(20_795 * 86_400);
        heartbeat(&mut pipe, now_ms);
        assert_eq!(round.build(&[e], now_ms).1, 8);
        assert_eq!(
            String::from_utf8_lossy(round.wire()),
            String::from_utf8_lossy(&pipe.get_packed_pipeline())
        );
        let v = |n| redis::Value::Int(n);
        let mut sync = round.0;
        let update = sync
            .apply(
                &[v(3), v(1), v(97), v(1), v(1), v(0), v(1), v(1)],
                Instant::now(),
            )
            .unwrap()
            .expect("the quota's total");
        assert!(update.charges.is_empty());
        assert_eq!(
            update.quotas,
            vec![QuotaTotal {
                fingerprint: e.fingerprint,
                plan_hash: plan.name_hash,
                period: Period::Day,
                total: 97,
            }]
        );
        assert_eq!(update.unix_secs, now_ms / 1000);
    }

    #[test]
    fn env_references_expand_and_name_only_the_variable() {
        let env = |n: &str| (n == "PW").then(|| std::ffi::OsString::from("s3cret"));
        assert_eq!(
            expand_env("redis://:${env:PW}@h:1/0", &env).unwrap(),
            "redis://:s3cret@h:1/0"
        );
        let e = expand_env("redis://:${env:NOPE}@h/0", &env).unwrap_err();
        assert!(e.contains("NOPE") && !e.contains("redis"), "{e}");
        assert!(expand_env("redis://${env:PW", &env).is_err());
    }

    fn quota_cfg() -> RateLimitConfig {
        let mut cfg = RateLimitConfig::new(
            &[("q", 6000, 100), ("plain", 60, 10)],
            "q",
            crate::ratelimit::KeyKind::User,
            Duration::from_millis(20),
        )
        .unwrap();
        cfg.plans[0].daily_quota = 10;
        cfg
    }

    #[test]
    fn quota_plans_follow_the_configuration() {
        let status = Status::default();
        let mut cfg = quota_cfg();
        status.set_quota_plans(&cfg);
        let plans = status.quota_plans();
        assert_eq!(plans.len(), 1);
        assert!(plans[0].daily && !plans[0].monthly);
        assert_eq!(plans[0].name_hash, cfg.plans[0].name_hash);
        // A reload that gives the other plan a monthly quota.
        cfg.plans[1].monthly_quota = 5;
        status.set_quota_plans(&cfg);
        assert_eq!(status.quota_plans().len(), 2);
    }

    #[test]
    fn totals_raise_quotas_of_their_period_only_and_share_charges_skip_quotas() {
        use crate::ratelimit::{KeySecret, Limiter};
        let cfg = quota_cfg();
        let plan = &cfg.plans[0];
        let secret = KeySecret::random();
        let mut l = Limiter::new(0, 1, &cfg, secret.clone());
        let fp = secret.fingerprint(plan.name_hash, b"k");
        let now = Instant::now();
        let t = unix_now();
        let total = |total, unix_secs| Update {
            quotas: vec![QuotaTotal {
                fingerprint: fp,
                plan_hash: plan.name_hash,
                period: Period::Day,
                total,
            }],
            unix_secs,
            ..Update::default()
        };
        let left = |l: &mut Limiter| {
            l.check_quota(b"k", plan, now, t).1.items[0]
                .unwrap()
                .remaining
        };
        // Yesterday's total is not today's count.
        total(9, t - 86_400).apply(&mut l, now, t);
        assert_eq!(left(&mut l), 9);
        // Today's total (which includes this node's 1) raises it; a lower one does not
        // lower it.
        total(7, t).apply(&mut l, now, t);
        assert_eq!(left(&mut l), 2);
        total(3, t).apply(&mut l, now, t);
        assert_eq!(left(&mut l), 1);
        // A share charge (Redis down) is charged to the bucket only.
        let share = Update {
            charges: Batch {
                from: crate::ratelimit::SHARE_CHARGE,
                entries: vec![BatchEntry {
                    fingerprint: fp,
                    plan: plan.id,
                    plan_hash: plan.name_hash,
                    count: 50,
                }],
            },
            ..Update::default()
        };
        let tokens = l.peek(b"k", plan, now).remaining;
        share.apply(&mut l, now, t);
        assert_eq!(l.peek(b"k", plan, now).remaining, tokens - 50);
        assert_eq!(left(&mut l), 0);
        // ...whereas other nodes' admissions count against the quota too.
        let mut l2 = Limiter::new(0, 1, &cfg, secret);
        let mut foreign = share.clone();
        foreign.charges.from = usize::MAX;
        foreign.charges.entries[0].count = 4;
        foreign.apply(&mut l2, now, t);
        assert_eq!(left(&mut l2), 5);
    }

    #[test]
    fn debug_never_shows_the_url() {
        let c = ClusterConfig::new(
            "redis://:hunter2@h:1/0".into(),
            "n".into(),
            "default".into(),
            Duration::from_millis(100),
            OnRedisError::Local,
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.prefix(), "ringgate:{default}:");
    }
}

#[cfg(test)]
mod sim_tests;
