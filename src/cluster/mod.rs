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
//! * `INCRBY ringgate:{NAME}:rl:PLAN:KEY:WINDOW n` + `PEXPIRE` (3 windows) for every
//!   key this node admitted `n` requests on since its last successful push;
//! * `GET` of the other keys it follows (seen in the last two windows), so it hears of
//!   others' use of a key it is not using right now;
//! * its heartbeat: `ZADD ringgate:{NAME}:nodes NOW NODE_ID`, members older than the
//!   heartbeat expiry (`max(1 s, 5 intervals)`) removed, `ZCARD` = the live nodes.
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
//! Keys are the buckets' 64-bit fingerprints, under a secret every node derives from
//! the cluster's name and `redis_url` (the same on every node; see
//! [`ClusterConfig::key_seed`]). `{NAME}` is a Redis Cluster hash tag: all of a
//! cluster's keys live in one slot.
//!
//! Bounds: the sync thread follows at most [`MAX_TRACKED`] keys and holds at most as
//! many unpushed counts; each worker's channel to it and back holds 64 batches (a full
//! channel's batch is merged into the next, never dropped). One round's pipeline has
//! one or two commands per followed key.
//!
//! # When Redis fails (`on_redis_error = "local"`)
//!
//! A connection or command that fails or takes longer than the timeout
//! (`max(sync_interval, 50 ms)`) marks Redis down. Requests never wait for Redis:
//! workers only `try_send`/`try_recv`. While down, each round charges every worker
//! `(N − 1) × n` for the `n` this node admitted on a key, `N` being the live nodes last
//! counted: the node admits its share (`1/N`) of every limit. It logs at the change and
//! then at most every 10 s, and reconnects every round; the counts admitted meanwhile
//! are kept (one entry per key) and pushed when Redis is back, so the totals catch up.
//! The state is in [`Status`] (`/health` and metrics can read it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use hashbrown::HashMap;

use crate::ratelimit::{Batch, BatchEntry, Limiter, PlanId};

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
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &"<redacted>")
            .field("node_id", &self.node_id)
            .field("name", &self.name)
            .field("sync_interval", &self.sync_interval)
            .field("on_redis_error", &self.on_redis_error)
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
}

/// Nodes the workers' debt floor allows for (`Limiter::set_remote`): charges from up
/// to this many nodes are never cut.
pub const MAX_NODES: usize = 64;

/// A worker's side of the link to the node's sync thread.
pub struct Link {
    tx: Sender<Batch>,
    held: Option<Batch>,
    rx: Receiver<Arc<Batch>>,
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
    /// `limiter`.
    pub fn charge(&mut self, limiter: &mut Limiter, now: std::time::Instant) -> usize {
        let mut n = 0;
        while let Ok(batch) = self.rx.try_recv() {
            limiter.apply_remote(&batch, now);
            n += 1;
        }
        n
    }
}

/// Start the node's sync thread: one [`Link`] per worker. The thread ends when every
/// link is dropped (the workers have stopped).
pub fn start(
    cfg: Arc<ClusterConfig>,
    workers: usize,
    warn: bool,
) -> std::io::Result<(Vec<Link>, Arc<Status>)> {
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
    let mut sync = Sync {
        prefix: cfg.prefix(),
        cfg,
        status: status.clone(),
        conn: None,
        tracked: HashMap::new(),
        pending: HashMap::new(),
        live: 0,
        down_since_log: None,
        warn,
    };
    std::thread::Builder::new()
        .name("ringgate-cluster".into())
        .spawn(move || sync.run(inputs, outputs))?;
    Ok((links, status))
}

struct Out {
    tx: Sender<Arc<Batch>>,
    held: Option<Batch>,
}

struct Tracked {
    plan: PlanId,
    plan_hash: u64,
    /// The window last read, and its count then.
    epoch: u64,
    last: i64,
    /// When this node last pushed to it or saw it change.
    active: Instant,
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
    /// `log.level` is `warn` or more verbose: Redis going and coming back is logged.
    warn: bool,
}

impl Sync {
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
            let mut fresh: Vec<BatchEntry> = Vec::new();
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
                return;
            }
            for e in &fresh {
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
            let foreign = match self.round() {
                Ok(batch) => {
                    if self.down_since_log.take().is_some() && self.warn {
                        eprintln!(
                            "ringgate: cluster: Redis is reachable again; {} live node(s), limits shared again",
                            self.live
                        );
                    }
                    self.status.redis_ok.store(true, Ordering::Relaxed);
                    self.status.syncs.fetch_add(1, Ordering::Relaxed);
                    batch
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
                    self.local_share(&fresh)
                }
            };
            if let Some(batch) = foreign {
                for out in &mut outputs {
                    let b = match out.held.take() {
                        Some(mut held) => {
                            held.merge(&batch);
                            held
                        }
                        None => batch.clone(),
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

    /// Redis down: charge `(N − 1) × n` for this round's `n`, so the node admits its
    /// share of each limit.
    fn local_share(&self, fresh: &[BatchEntry]) -> Option<Batch> {
        let others = self.live.saturating_sub(1);
        if others == 0 || fresh.is_empty() {
            return None;
        }
        let others = u32::try_from(others).unwrap_or(u32::MAX);
        Some(Batch {
            from: usize::MAX,
            entries: fresh
                .iter()
                .map(|e| BatchEntry {
                    count: e.count.saturating_mul(others),
                    ..*e
                })
                .collect(),
        })
    }

    /// One pipelined batch; the foreign counts to charge, if any.
    fn round(&mut self) -> redis::RedisResult<Option<Batch>> {
        if self.conn.is_none() {
            let client = redis::Client::open(self.cfg.url.as_str())?;
            let conn = client.get_connection_with_timeout(self.cfg.timeout())?;
            conn.set_read_timeout(Some(self.cfg.timeout()))?;
            conn.set_write_timeout(Some(self.cfg.timeout()))?;
            self.conn = Some(conn);
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let window_ms = self.cfg.window().as_millis().max(1) as u64;
        let cur = now_ms / window_ms;
        let ttl_ms = window_ms * 3;
        let hb_ms = self.cfg.heartbeat_ttl().as_millis() as u64;
        let mut pipe = redis::pipe();
        // One per reply, in order: (fingerprint, plan, plan hash, window, own count).
        let mut order: Vec<(u64, PlanId, u64, u64, u32)> =
            Vec::with_capacity(self.pending.len() + self.tracked.len());
        let mut ask = |pipe: &mut redis::Pipeline, fp: u64, plan, plan_hash, epoch, own: u32| {
            let k = format!("{}rl:{plan_hash:016x}:{fp:016x}:{epoch}", self.prefix);
            if own > 0 {
                pipe.cmd("INCRBY").arg(&k).arg(own);
                pipe.cmd("PEXPIRE").arg(&k).arg(ttl_ms).ignore();
            } else {
                pipe.cmd("GET").arg(&k);
            }
            order.push((fp, plan, plan_hash, epoch, own));
        };
        // A key whose window has ended is read once more (what others added to it since
        // this node's last read), then followed in the new window.
        for (&fp, t) in &self.tracked {
            if t.epoch < cur {
                ask(&mut pipe, fp, t.plan, t.plan_hash, t.epoch, 0);
            }
            if !self.pending.contains_key(&fp) {
                ask(&mut pipe, fp, t.plan, t.plan_hash, cur, 0);
            }
        }
        for e in self.pending.values() {
            ask(&mut pipe, e.fingerprint, e.plan, e.plan_hash, cur, e.count);
        }
        let nodes = format!("{}nodes", self.prefix);
        pipe.cmd("ZADD")
            .arg(&nodes)
            .arg(now_ms)
            .arg(&self.cfg.node_id)
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&nodes)
            .arg("-inf")
            .arg(now_ms.saturating_sub(hb_ms))
            .ignore();
        pipe.cmd("PEXPIRE").arg(&nodes).arg(hb_ms * 2).ignore();
        pipe.cmd("ZCARD").arg(&nodes);
        let conn = self.conn.as_mut().expect("connected above");
        let replies: Vec<Option<i64>> = pipe.query(conn)?;
        self.pending.clear();
        let now = Instant::now();
        let mut out = Batch {
            from: usize::MAX,
            entries: Vec::new(),
        };
        for (&(fp, plan, plan_hash, epoch, own), total) in order.iter().zip(&replies) {
            let total = total.unwrap_or(0).max(0);
            let own = i64::from(own);
            if !self.tracked.contains_key(&fp) && self.tracked.len() >= MAX_TRACKED {
                self.status.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // First seen: the window's count started at 0, so everything others added
            // in it is charged (at most one window of their admissions).
            let t = self.tracked.entry(fp).or_insert(Tracked {
                plan,
                plan_hash,
                epoch,
                last: 0,
                active: now,
            });
            if epoch < t.epoch {
                continue;
            }
            if epoch > t.epoch {
                t.epoch = epoch;
                t.last = 0;
            }
            let foreign = (total - t.last - own).max(0);
            t.last = total;
            if foreign > 0 || own > 0 {
                t.active = now;
            }
            if foreign > 0 {
                out.entries.push(BatchEntry {
                    fingerprint: fp,
                    plan,
                    plan_hash,
                    count: u32::try_from(foreign).unwrap_or(u32::MAX),
                });
            }
        }
        if let Some(Some(live)) = replies.get(order.len()) {
            self.live = (*live).max(1) as u64;
            self.status.live_nodes.store(self.live, Ordering::Relaxed);
        }
        let idle = self.cfg.window() * 2;
        self.tracked
            .retain(|_, t| now.saturating_duration_since(t.active) < idle);
        Ok((!out.entries.is_empty()).then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
