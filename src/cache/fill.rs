//! Request coalescing: one worker's registry of in-flight cache fills. The first
//! request to miss on a key becomes the **leader** and goes upstream; requests for the
//! same key that miss while it does so become **followers** and wait for it instead of
//! going upstream too (nginx's `proxy_cache_lock`, Varnish's waiting list).
//!
//! Single-threaded and runtime-independent: the registry is an `Rc<RefCell<..>>`, a
//! follower's wait is a plain [`Future`] woken through the [`Waker`] it was polled
//! with, so it works on monoio's io_uring and epoll drivers alike (and in tests
//! without any runtime). Waiting has no deadline of its own: the pipeline races it
//! with its timer, as nginx bounds the lock with `proxy_cache_lock_timeout`.
//!
//! ```text
//! match fills.begin(key) {
//!     Leader(guard) => { fetch; insert; guard.finish(FillOutcome::Stored) }
//!     Follower(wait) => match wait.await {
//!         Stored => look up again (a different Vary variant may still miss),
//!         NotStored | Failed => go upstream yourself,
//!     }
//! }
//! ```
//!
//! A leader that is dropped without finishing (its connection closed, its task
//! cancelled, a panic) wakes its followers with [`FillOutcome::Failed`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

/// How a fill ended, as its followers learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOutcome {
    /// The response was stored: look up again.
    Stored,
    /// The upstream answered but the response was not stored (not storable, too
    /// large, refused): go upstream.
    NotStored,
    /// The upstream failed or the leader went away: go upstream (or serve stale).
    Failed,
}

/// The registry of one worker. Cloning it is cheap (a shared handle).
#[derive(Debug, Clone, Default)]
pub struct Fills {
    inner: Rc<RefCell<InFlight>>,
}

/// The fills under way, by a 64-bit hash of their key, without the key: two keys in
/// flight at once with the same hash only make one request wait for the other's fill,
/// after which it looks up its own key again, misses, and goes upstream itself.
#[derive(Debug, Default)]
struct InFlight {
    hasher: DefaultHashBuilder,
    fills: HashTable<Rc<FillState>>,
    /// Finished fills' states that nothing else holds, reused by the next fills (a
    /// miss takes one and gives it back): the allocator would hand out a block last
    /// touched long ago, often a cache miss on every cache miss.
    spare: Vec<Rc<FillState>>,
}

/// Spare states kept at most (as many as fills usually run at once on a worker).
const SPARE_MAX: usize = 64;

#[derive(Debug)]
struct FillState {
    hash: u64,
    outcome: Cell<Option<FillOutcome>>,
    /// One slot per follower that has been polled.
    wakers: RefCell<Vec<Option<Waker>>>,
}

/// What [`Fills::begin`] made of the caller.
#[derive(Debug)]
pub enum FillTicket {
    /// Nobody is fetching this key: fetch it, then [`FillGuard::finish`].
    Leader(FillGuard),
    /// Someone is: await this.
    Follower(FillWait),
}

impl Fills {
    pub fn new() -> Fills {
        Fills::default()
    }

    /// Join or start the fill of `key` (the primary key is the natural choice).
    pub fn begin(&self, key: &[u8]) -> FillTicket {
        let mut map = self.inner.borrow_mut();
        let hash = map.hasher.hash_one(key);
        if let Some(state) = map.fills.find(hash, |s| s.hash == hash) {
            return FillTicket::Follower(FillWait {
                state: state.clone(),
                slot: None,
            });
        }
        let state = match map.spare.pop() {
            Some(mut state) => {
                // Only unshared states are kept spare.
                let s = Rc::get_mut(&mut state).expect("a spare state is not shared");
                s.hash = hash;
                *s.outcome.get_mut() = None;
                s.wakers.get_mut().clear();
                state
            }
            None => Rc::new(FillState {
                hash,
                outcome: Cell::new(None),
                wakers: RefCell::new(Vec::new()),
            }),
        };
        map.fills.insert_unique(hash, state.clone(), |s| s.hash);
        FillTicket::Leader(FillGuard {
            fills: self.clone(),
            state,
            finished: false,
        })
    }

    /// Fills under way.
    pub fn in_flight(&self) -> usize {
        self.inner.borrow().fills.len()
    }
}

/// The leader's side of a fill. Dropping it unfinished fails the fill.
#[derive(Debug)]
pub struct FillGuard {
    fills: Fills,
    state: Rc<FillState>,
    finished: bool,
}

impl FillGuard {
    /// End the fill and wake every follower with `outcome`.
    pub fn finish(mut self, outcome: FillOutcome) {
        self.complete(outcome);
    }

    /// Followers waiting (polled at least once) right now.
    pub fn followers(&self) -> usize {
        self.state.wakers.borrow().iter().flatten().count()
    }

    fn complete(&mut self, outcome: FillOutcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        {
            let mut map = self.fills.inner.borrow_mut();
            if let Ok(mine) = map
                .fills
                .find_entry(self.state.hash, |s| Rc::ptr_eq(s, &self.state))
            {
                mine.remove();
            }
        }
        self.state.outcome.set(Some(outcome));
        // Take the wakers out before waking: a woken task may run at once on some
        // executors and poll its FillWait again.
        let wakers = std::mem::take(&mut *self.state.wakers.borrow_mut());
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.complete(FillOutcome::Failed);
        // Out of the registry by now; if no follower holds it either, it is spare.
        if Rc::strong_count(&self.state) == 1 {
            let mut map = self.fills.inner.borrow_mut();
            if map.spare.len() < SPARE_MAX {
                map.spare.push(self.state.clone());
            }
        }
    }
}

/// A follower's wait for the leader's outcome.
#[derive(Debug)]
pub struct FillWait {
    state: Rc<FillState>,
    slot: Option<usize>,
}

impl Future for FillWait {
    type Output = FillOutcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FillOutcome> {
        let this = self.get_mut();
        if let Some(outcome) = this.state.outcome.get() {
            return Poll::Ready(outcome);
        }
        let mut wakers = this.state.wakers.borrow_mut();
        match this.slot {
            Some(i) => match &mut wakers[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            },
            None => {
                wakers.push(Some(cx.waker().clone()));
                this.slot = Some(wakers.len() - 1);
            }
        }
        Poll::Pending
    }
}

impl Drop for FillWait {
    fn drop(&mut self) {
        // Forget our waker, so a follower that gave up (timed out) is not woken.
        if let Some(i) = self.slot {
            if let Some(w) = self.state.wakers.borrow_mut().get_mut(i) {
                *w = None;
            }
        }
    }
}
