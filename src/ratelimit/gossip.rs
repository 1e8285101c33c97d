//! Gossip between workers: every worker sends the counts it admitted since the last
//! round to every other worker and charges what it receives to its own buckets.
//!
//! [`Mesh::new`] runs once, in the main thread, and makes one bounded crossbeam channel
//! per worker (its inbox); [`Mesh::into_endpoints`] hands each worker an [`Endpoint`]:
//! the senders to every other inbox, its own inbox, and the process's [`KeySecret`].
//! The worker calls [`Endpoint::exchange`] from its timer every `sync_interval`; the
//! request path never touches a channel. A round costs one `Arc<Batch>` allocation and
//! one `try_send` per peer.
//!
//! Sending never blocks. When a peer's inbox is full (that worker is stalled), the batch
//! for that peer is kept and the next round's counts are merged into it, so nothing is
//! lost or counted twice, and what is held back stays as small as the set of keys.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use hashbrown::HashMap;

use super::gcra::Limiter;
use super::key::{BuildFingerprint, KeySecret};
use super::{PlanId, RateLimitConfig};

/// Rounds of batches an inbox holds before senders start holding back.
const INBOX_ROUNDS: usize = 16;

type Message = Arc<Batch>;

/// `Batch::from` of a charge that stands for other nodes' shares of a limit while
/// Redis is down (`crate::cluster`): it is charged to buckets, never to quotas (a quota
/// count is a count of requests, and those requests were not made).
pub const SHARE_CHARGE: usize = usize::MAX - 1;

/// Counts one worker admitted per key since the previous round, sent to every other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The sending worker, `usize::MAX` for other nodes' counts, or [`SHARE_CHARGE`].
    pub from: usize,
    pub entries: Vec<BatchEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchEntry {
    pub fingerprint: u64,
    /// The plan's position in the sender's configuration (the fast path), and its
    /// name's hash, which decides.
    pub plan: PlanId,
    pub plan_hash: u64,
    pub count: u32,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Add `other`'s counts to this batch (a batch held back because a channel was full
    /// absorbs the next round's, so nothing is lost and nothing is counted twice).
    pub fn merge(&mut self, other: &Batch) {
        let mut index: HashMap<u64, usize, BuildFingerprint> =
            HashMap::with_capacity_and_hasher(self.entries.len(), BuildFingerprint::default());
        for (i, e) in self.entries.iter().enumerate() {
            index.insert(e.fingerprint, i);
        }
        for e in &other.entries {
            match index.get(&e.fingerprint) {
                Some(&i) => {
                    let mine = &mut self.entries[i].count;
                    *mine = mine.saturating_add(e.count);
                }
                None => {
                    index.insert(e.fingerprint, self.entries.len());
                    self.entries.push(*e);
                }
            }
        }
    }
}

/// The channels between all workers, before they are handed out.
pub struct Mesh {
    senders: Vec<Sender<Message>>,
    inboxes: Vec<Receiver<Message>>,
    secret: KeySecret,
}

impl Mesh {
    pub fn new(workers: usize) -> Mesh {
        Mesh::with_inbox_capacity(workers, INBOX_ROUNDS * workers.saturating_sub(1).max(1))
    }

    /// As [`Mesh::new`], with inboxes of `capacity` batches.
    pub fn with_inbox_capacity(workers: usize, capacity: usize) -> Mesh {
        let (senders, inboxes) = (0..workers)
            .map(|_| crossbeam_channel::bounded(capacity.max(1)))
            .unzip();
        Mesh {
            senders,
            inboxes,
            secret: KeySecret::random(),
        }
    }

    /// Fingerprint keys under `secret` instead of a random one (`[cluster]`: the same
    /// on every node).
    pub fn with_secret(mut self, secret: KeySecret) -> Mesh {
        self.secret = secret;
        self
    }

    /// One endpoint per worker, in worker order.
    pub fn into_endpoints(self) -> Vec<Endpoint> {
        let workers = self.senders.len();
        self.inboxes
            .into_iter()
            .enumerate()
            .map(|(worker, inbox)| Endpoint {
                worker,
                workers,
                peers: (0..workers)
                    .filter(|&to| to != worker)
                    .map(|to| Peer {
                        tx: self.senders[to].clone(),
                        held: None,
                    })
                    .collect(),
                inbox,
                secret: self.secret.clone(),
                cluster: None,
            })
            .collect()
    }
}

struct Peer {
    tx: Sender<Message>,
    /// Counts this peer has not been sent yet because its inbox was full.
    held: Option<Batch>,
}

/// One worker's side of the mesh. `Send`, so it can be moved into the worker's thread.
pub struct Endpoint {
    worker: usize,
    workers: usize,
    peers: Vec<Peer>,
    inbox: Receiver<Message>,
    secret: KeySecret,
    /// `[cluster]`: the link to the node's sync thread (`crate::cluster`).
    cluster: Option<crate::cluster::Link>,
}

/// What one [`Endpoint::exchange`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Keys in this round's own batch.
    pub keys: usize,
    /// Batches handed to peers.
    pub sent: usize,
    /// Peers whose inbox was full: their counts wait for the next round.
    pub held: usize,
    /// Batches received and charged.
    pub received: usize,
}

impl Endpoint {
    pub fn worker(&self) -> usize {
        self.worker
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Also send this worker's counts to the node's cluster sync thread each round,
    /// and charge what it reports of other nodes.
    pub fn attach_cluster(&mut self, link: crate::cluster::Link) {
        self.cluster = Some(link);
    }

    /// Whether rounds are needed at all: other workers, or other nodes.
    pub fn has_peers(&self) -> bool {
        self.workers > 1 || self.cluster.is_some()
    }

    /// The fingerprint secret all workers of this mesh share.
    pub fn secret(&self) -> &KeySecret {
        &self.secret
    }

    /// A limiter for this worker that fingerprints keys as its peers do.
    pub fn limiter(&self, cfg: &RateLimitConfig) -> Limiter {
        let mut l = Limiter::new(self.worker, self.workers, cfg, self.secret.clone());
        if let Some(link) = &self.cluster {
            let (nodes, latency) = link.debt_hint(cfg.sync_interval);
            l.set_remote(cfg, self.workers.saturating_mul(nodes), latency);
        }
        l
    }

    /// One gossip round: send what `limiter` admitted since the last round to every
    /// other worker, then charge every batch waiting in this worker's inbox.
    pub fn exchange(&mut self, limiter: &mut Limiter, now: Instant) -> ExchangeStats {
        let own = limiter.drain_consumed();
        let mut stats = ExchangeStats {
            keys: own.len(),
            ..ExchangeStats::default()
        };
        if let Some(link) = &mut self.cluster {
            link.push(&own);
            stats.received += link.charge(limiter, now);
        }
        let own = (!own.is_empty()).then(|| Arc::new(own));
        for peer in &mut self.peers {
            let msg = match (peer.held.take(), &own) {
                (None, None) => continue,
                (None, Some(b)) => Arc::clone(b),
                (Some(mut held), b) => {
                    if let Some(b) = b {
                        held.merge(b);
                    }
                    Arc::new(held)
                }
            };
            match peer.tx.try_send(msg) {
                Ok(()) => stats.sent += 1,
                Err(TrySendError::Full(msg)) => {
                    stats.held += 1;
                    peer.held = Some(Arc::try_unwrap(msg).unwrap_or_else(|a| (*a).clone()));
                }
                // The peer has shut down: nobody is left to charge.
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        while let Ok(batch) = self.inbox.try_recv() {
            limiter.apply_remote(&batch, now);
            stats.received += 1;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::KeyKind;
    use super::*;

    fn cfg() -> RateLimitConfig {
        RateLimitConfig::new(
            &[("free", 60, 10)],
            "free",
            KeyKind::User,
            Duration::from_millis(20),
        )
        .unwrap()
    }

    #[test]
    fn counts_reach_every_other_worker_once() {
        let cfg = cfg();
        let plan = &cfg.plans[0];
        let mut eps = Mesh::new(3).into_endpoints();
        let mut ls: Vec<Limiter> = eps.iter().map(|e| e.limiter(&cfg)).collect();
        let t0 = Instant::now() + Duration::from_secs(1);
        for _ in 0..3 {
            assert!(ls[0].check(b"k", plan, t0).allowed);
        }
        let s = eps[0].exchange(&mut ls[0], t0);
        assert_eq!((s.keys, s.sent, s.held, s.received), (1, 2, 0, 0));
        for w in 1..3 {
            let s = eps[w].exchange(&mut ls[w], t0);
            assert_eq!(s.received, 1);
            assert_eq!(ls[w].peek(b"k", plan, t0).remaining, 8);
        }
        // Nothing new: nothing sent, nothing charged twice.
        for w in 0..3 {
            let s = eps[w].exchange(&mut ls[w], t0);
            assert_eq!((s.sent, s.received), (0, 0));
        }
        assert_eq!(ls[1].peek(b"k", plan, t0).remaining, 8);
        assert_eq!(ls[0].peek(b"k", plan, t0).remaining, 8);
    }

    #[test]
    fn a_full_inbox_holds_counts_back_without_losing_any() {
        let cfg = cfg();
        let plan = &cfg.plans[0];
        let mut eps = Mesh::with_inbox_capacity(2, 1).into_endpoints();
        let mut a = eps[0].limiter(&cfg);
        let mut b = eps[1].limiter(&cfg);
        let t0 = Instant::now() + Duration::from_secs(1);
        // Three rounds while worker 1 is stalled: the first fills its inbox, the next
        // two are held and merged.
        for round in 0..3 {
            a.check(b"k", plan, t0);
            a.check(format!("only-{round}").as_bytes(), plan, t0);
            let s = eps[0].exchange(&mut a, t0);
            assert_eq!((s.sent, s.held), if round == 0 { (1, 0) } else { (0, 1) });
        }
        // Worker 1 wakes up: it gets the first batch; the held one goes next round.
        assert_eq!(eps[1].exchange(&mut b, t0).received, 1);
        assert_eq!(b.peek(b"k", plan, t0).remaining, 10);
        let s = eps[0].exchange(&mut a, t0);
        assert_eq!((s.keys, s.sent, s.held), (0, 1, 0));
        assert_eq!(eps[1].exchange(&mut b, t0).received, 1);
        assert_eq!(b.peek(b"k", plan, t0).remaining, 8);
        for round in 0..3 {
            let key = format!("only-{round}");
            assert_eq!(b.peek(key.as_bytes(), plan, t0).remaining, 10, "{key}");
        }
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn a_departed_peer_is_skipped() {
        let cfg = cfg();
        let mut eps = Mesh::new(2).into_endpoints();
        let gone = eps.pop().unwrap();
        drop(gone);
        let mut a = eps[0].limiter(&cfg);
        let t0 = Instant::now();
        a.check(b"k", &cfg.plans[0], t0);
        let s = eps[0].exchange(&mut a, t0);
        assert_eq!((s.keys, s.sent, s.held), (1, 0, 0));
    }

    #[test]
    fn merge_adds_counts_per_key() {
        let e = |fingerprint, count| BatchEntry {
            fingerprint,
            plan: PlanId(0),
            plan_hash: 1,
            count,
        };
        let mut a = Batch {
            from: 0,
            entries: vec![e(1, 2), e(2, 3)],
        };
        a.merge(&Batch {
            from: 0,
            entries: vec![e(2, 4), e(3, 1)],
        });
        assert_eq!(a.entries, vec![e(1, 2), e(2, 7), e(3, 1)]);
    }

    #[test]
    fn endpoints_move_to_threads() {
        fn is_send<T: Send>() {}
        is_send::<Endpoint>();
        is_send::<Limiter>();
    }
}
