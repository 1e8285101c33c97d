//! [`Deadlines`]: coarse timers for the many connections that wait (idle keep-alive
//! connections, heads not yet begun), kept by one worker and fired by its tick.
//!
//! monoio's `Sleep` is 640 bytes, more than everything else an idle connection holds
//! together; a wait here is 32 bytes in the waiting future and a 40-byte entry in the
//! worker's table. The price is resolution: a deadline fires at the first tick at or
//! after it (the worker ticks every 50 ms), which is what idle and header timeouts
//! need (nginx's own timers are coarse the same way). Exact timers on the busy path
//! still use monoio's.
//!
//! The table is a hashed timing wheel: an entry sits in the bucket of its tick number
//! modulo the wheel's size, so arming, cancelling and firing an entry are O(1), and a
//! tick looks only at its own bucket (entries more than one turn ahead stay there for
//! their turn).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use monoio::time::Instant;

/// Buckets in the wheel: one turn covers `BUCKETS` ticks (25.6 s at 50 ms).
const BUCKETS: usize = 512;

pub struct Deadlines {
    inner: RefCell<Wheel>,
}

struct Wheel {
    origin: Instant,
    tick: Duration,
    /// The last tick whose bucket was fired.
    fired: u64,
    entries: Vec<Entry>,
    free: Vec<u32>,
    buckets: Vec<Vec<u32>>,
}

struct Entry {
    /// The tick at which it fires.
    at: u64,
    waker: Option<Waker>,
    /// Where it sits in its bucket (`u32::MAX`: fired, or free).
    pos: u32,
}

impl Deadlines {
    /// A wheel that `fire` advances every `tick`.
    pub fn new(tick: Duration) -> Deadlines {
        Deadlines {
            inner: RefCell::new(Wheel {
                origin: Instant::now(),
                tick: tick.max(Duration::from_millis(1)),
                fired: 0,
                entries: Vec::new(),
                free: Vec::new(),
                buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            }),
        }
    }

    /// Resolves at the first tick at or after `at`.
    pub fn sleep_until(&self, at: Instant) -> Sleep<'_> {
        Sleep {
            wheel: self,
            at,
            slot: None,
        }
    }

    /// Wake every wait whose deadline has passed by `now`. The worker's tick calls it.
    pub fn fire(&self, now: Instant) {
        let mut wakers = Vec::new();
        {
            let mut w = self.inner.borrow_mut();
            let now_tick = w.tick_of(now, false);
            // After a long stall, one pass over every bucket fires all that is due.
            let from = w.fired.saturating_add(1);
            let to = now_tick.min(w.fired.saturating_add(BUCKETS as u64));
            for t in from..=to {
                let b = (t % BUCKETS as u64) as usize;
                let mut i = 0;
                while i < w.buckets[b].len() {
                    let slot = w.buckets[b][i];
                    if w.entries[slot as usize].at <= now_tick {
                        w.unlink(b, i);
                        if let Some(k) = w.entries[slot as usize].waker.take() {
                            wakers.push(k);
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            w.fired = w.fired.max(now_tick);
        }
        for k in wakers {
            k.wake();
        }
    }

    /// End every wait now (the worker is shutting down: idle connections close).
    pub fn expire_all(&self) {
        let mut wakers = Vec::new();
        {
            let mut w = self.inner.borrow_mut();
            for b in 0..BUCKETS {
                while !w.buckets[b].is_empty() {
                    let slot = w.buckets[b][0];
                    w.unlink(b, 0);
                    if let Some(k) = w.entries[slot as usize].waker.take() {
                        wakers.push(k);
                    }
                }
            }
            w.fired = u64::MAX;
        }
        for k in wakers {
            k.wake();
        }
    }

    /// Waits armed and not yet fired (for tests and metrics).
    pub fn armed(&self) -> usize {
        self.inner.borrow().buckets.iter().map(Vec::len).sum()
    }
}

impl Wheel {
    /// The tick `at` falls in: rounded up for deadlines (never early), down for now.
    fn tick_of(&self, at: Instant, up: bool) -> u64 {
        let d = at.saturating_duration_since(self.origin).as_nanos();
        let t = self.tick.as_nanos();
        (if up { d.div_ceil(t) } else { d / t }) as u64
    }

    fn bucket(at: u64) -> usize {
        (at % BUCKETS as u64) as usize
    }

    /// Take the entry at `buckets[b][i]` out of its bucket (it stays allocated).
    fn unlink(&mut self, b: usize, i: usize) {
        let slot = self.buckets[b].swap_remove(i);
        self.entries[slot as usize].pos = u32::MAX;
        if let Some(&moved) = self.buckets[b].get(i) {
            self.entries[moved as usize].pos = i as u32;
        }
    }

    fn arm(&mut self, at: u64, waker: Waker) -> u32 {
        let entry = Entry {
            at,
            waker: Some(waker),
            pos: 0,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.entries[s as usize] = entry;
                s
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        let b = Self::bucket(at);
        self.entries[slot as usize].pos = self.buckets[b].len() as u32;
        self.buckets[b].push(slot);
        slot
    }

    fn release(&mut self, slot: u32) {
        let e = &self.entries[slot as usize];
        if e.pos != u32::MAX {
            let (b, i) = (Self::bucket(e.at), e.pos as usize);
            self.unlink(b, i);
        }
        self.entries[slot as usize].waker = None;
        self.free.push(slot);
    }
}

/// A wait on [`Deadlines`]; dropping it disarms it.
pub struct Sleep<'a> {
    wheel: &'a Deadlines,
    at: Instant,
    slot: Option<u32>,
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut w = self.wheel.inner.borrow_mut();
        match self.slot {
            Some(slot) => {
                let e = &mut w.entries[slot as usize];
                if e.pos == u32::MAX {
                    return Poll::Ready(());
                }
                match &mut e.waker {
                    Some(k) if k.will_wake(cx.waker()) => {}
                    k => *k = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            None => {
                let at = w.tick_of(self.at, true);
                if at <= w.fired {
                    return Poll::Ready(());
                }
                let slot = w.arm(at, cx.waker().clone());
                drop(w);
                self.slot = Some(slot);
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.wheel.inner.borrow_mut().release(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll(s: &mut Pin<Box<Sleep<'_>>>, waker: &Waker) -> bool {
        s.as_mut().poll(&mut Context::from_waker(waker)).is_ready()
    }

    #[test]
    fn fires_at_the_first_tick_at_or_after_the_deadline_and_not_before() {
        let tick = Duration::from_millis(50);
        let d = Deadlines::new(tick);
        let origin = d.inner.borrow().origin;
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());

        let mut soon = Box::pin(d.sleep_until(origin + Duration::from_millis(120)));
        // Beyond one turn of the wheel: stays in its bucket for a later turn.
        let mut later = Box::pin(d.sleep_until(origin + tick * (BUCKETS as u32 + 3)));
        let mut dropped = Box::pin(d.sleep_until(origin + Duration::from_millis(60)));
        assert!(!poll(&mut soon, &waker));
        assert!(!poll(&mut later, &waker));
        assert!(!poll(&mut dropped, &waker));
        assert_eq!(d.armed(), 3);
        drop(dropped);
        assert_eq!(d.armed(), 2, "a dropped wait leaves the wheel");

        d.fire(origin + Duration::from_millis(100));
        assert!(!poll(&mut soon, &waker), "120 ms is not due at 100 ms");
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        d.fire(origin + Duration::from_millis(150));
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(poll(&mut soon, &waker));

        // A full turn later the far one's bucket comes round, but it is not due.
        d.fire(origin + tick * (BUCKETS as u32 + 1));
        assert!(!poll(&mut later, &waker));
        d.fire(origin + tick * (BUCKETS as u32 + 3));
        assert!(poll(&mut later, &waker));
        assert_eq!(d.armed(), 0);

        // A deadline already passed is ready at once, without arming.
        let mut past = Box::pin(d.sleep_until(origin));
        assert!(poll(&mut past, &waker));
        assert_eq!(d.armed(), 0);
    }

    #[test]
    fn a_long_stall_fires_everything_due() {
        let tick = Duration::from_millis(10);
        let d = Deadlines::new(tick);
        let origin = d.inner.borrow().origin;
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut waits: Vec<_> = (1..2000u32)
            .map(|i| Box::pin(d.sleep_until(origin + tick * i)))
            .collect();
        for s in &mut waits {
            assert!(!poll(s, &waker));
        }
        d.fire(origin + tick * 5000);
        assert_eq!(count.0.load(Ordering::Relaxed), 1999);
        assert!(waits.iter_mut().all(|s| poll(s, &waker)));
        drop(waits);
        let w = d.inner.borrow();
        assert_eq!(w.free.len(), w.entries.len(), "every entry is free again");
    }
}
