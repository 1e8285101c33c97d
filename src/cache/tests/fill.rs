//! Coalescing: followers wait for the leader and learn how its fill ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::*;

/// A waker that counts its wakes.
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Arc<Counter>, Waker) {
    let c = Arc::new(Counter(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

fn poll(w: &mut FillWait, waker: &Waker) -> Poll<FillOutcome> {
    Pin::new(w).poll(&mut Context::from_waker(waker))
}

fn follower(t: FillTicket) -> FillWait {
    match t {
        FillTicket::Follower(w) => w,
        FillTicket::Leader(_) => panic!("expected a follower"),
    }
}

fn leader(t: FillTicket) -> FillGuard {
    match t {
        FillTicket::Leader(g) => g,
        FillTicket::Follower(_) => panic!("expected the leader"),
    }
}

#[test]
fn the_leaders_success_wakes_every_follower() {
    let fills = Fills::new();
    let guard = leader(fills.begin(b"k"));
    let (count, waker) = counter();
    let mut waits: Vec<FillWait> = (0..20).map(|_| follower(fills.begin(b"k"))).collect();
    for w in &mut waits {
        assert_eq!(poll(w, &waker), Poll::Pending);
        // Polled again: no second registration.
        assert_eq!(poll(w, &waker), Poll::Pending);
    }
    assert_eq!(guard.followers(), 20);
    // Another key is independent.
    let _other = leader(fills.begin(b"other"));
    assert_eq!(fills.in_flight(), 2);
    guard.finish(FillOutcome::Stored);
    assert_eq!(count.0.load(Ordering::SeqCst), 20);
    for w in &mut waits {
        assert_eq!(poll(w, &waker), Poll::Ready(FillOutcome::Stored));
    }
    assert_eq!(fills.in_flight(), 1);
    // The next miss leads a new fill.
    assert!(matches!(fills.begin(b"k"), FillTicket::Leader(_)));
}

#[test]
fn a_dropped_leader_fails_its_followers() {
    let fills = Fills::new();
    let guard = leader(fills.begin(b"k"));
    let (count, waker) = counter();
    let mut w1 = follower(fills.begin(b"k"));
    let mut w2 = follower(fills.begin(b"k"));
    assert!(poll(&mut w1, &waker).is_pending() && poll(&mut w2, &waker).is_pending());
    drop(guard);
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
    assert_eq!(poll(&mut w1, &waker), Poll::Ready(FillOutcome::Failed));
    assert_eq!(poll(&mut w2, &waker), Poll::Ready(FillOutcome::Failed));
    assert_eq!(fills.in_flight(), 0);
}

#[test]
fn not_stored_and_late_followers() {
    let fills = Fills::new();
    let guard = leader(fills.begin(b"k"));
    // A follower created before the end but first polled after it.
    let mut late = follower(fills.begin(b"k"));
    guard.finish(FillOutcome::NotStored);
    let (count, waker) = counter();
    assert_eq!(poll(&mut late, &waker), Poll::Ready(FillOutcome::NotStored));
    assert_eq!(count.0.load(Ordering::SeqCst), 0);
}

#[test]
fn a_follower_that_gives_up_is_not_woken() {
    let fills = Fills::new();
    let guard = leader(fills.begin(b"k"));
    let (gone, gone_waker) = counter();
    let (stays, stays_waker) = counter();
    let mut w1 = follower(fills.begin(b"k"));
    let mut w2 = follower(fills.begin(b"k"));
    assert!(poll(&mut w1, &gone_waker).is_pending());
    assert!(poll(&mut w2, &stays_waker).is_pending());
    drop(w1); // timed out
    assert_eq!(guard.followers(), 1);
    guard.finish(FillOutcome::Stored);
    assert_eq!(gone.0.load(Ordering::SeqCst), 0);
    assert_eq!(stays.0.load(Ordering::SeqCst), 1);
    // Re-polled with a new waker before the end: the new one is woken.
    let guard = leader(fills.begin(b"k"));
    let (first, first_waker) = counter();
    let (second, second_waker) = counter();
    let mut w = follower(fills.begin(b"k"));
    assert!(poll(&mut w, &first_waker).is_pending());
    assert!(poll(&mut w, &second_waker).is_pending());
    drop(guard);
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
}

/// Finished fills' states are reused, but never one a follower still holds, and a
/// reused state starts afresh: its followers wait for their own leader.
#[test]
fn reused_fill_states_start_afresh_and_never_while_held() {
    let fills = Fills::new();
    let (_, waker) = counter();
    for round in 0..3 {
        let key = format!("k{round}");
        let guard = leader(fills.begin(key.as_bytes()));
        let mut wait = follower(fills.begin(key.as_bytes()));
        assert_eq!(poll(&mut wait, &waker), Poll::Pending, "round {round}");
        drop(wait);
        guard.finish(FillOutcome::NotStored);
    }
    // A follower that outlives its fill keeps the outcome it was given, whatever the
    // fills after it do.
    let guard = leader(fills.begin(b"held"));
    let mut held = follower(fills.begin(b"held"));
    guard.finish(FillOutcome::Stored);
    for round in 0..3 {
        let key = format!("after{round}");
        let guard = leader(fills.begin(key.as_bytes()));
        let mut wait = follower(fills.begin(key.as_bytes()));
        assert_eq!(poll(&mut wait, &waker), Poll::Pending, "round {round}");
        assert_eq!(poll(&mut held, &waker), Poll::Ready(FillOutcome::Stored));
        drop(guard);
        assert_eq!(poll(&mut wait, &waker), Poll::Ready(FillOutcome::Failed));
    }
    assert_eq!(fills.in_flight(), 0);
}
