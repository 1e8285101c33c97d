//! A worker-local, one-shot signal (shutdown): set once, awaited by many tasks of the
//! same thread. `Rc` + `Cell` because it never leaves its core. Waiters live in a slab
//! and leave it when their future is dropped, so the many short waits of idle
//! keep-alive connections (one per request) cost an insert and a remove, and nothing
//! accumulates.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Clone, Default)]
pub struct LocalSignal {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    set: Cell<bool>,
    slots: RefCell<Slots>,
}

#[derive(Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl LocalSignal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_set(&self) -> bool {
        self.inner.set.get()
    }

    pub fn set(&self) {
        if self.inner.set.replace(true) {
            return;
        }
        let wakers: Vec<Waker> = self
            .inner
            .slots
            .borrow_mut()
            .wakers
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once the signal is set.
    pub fn wait(&self) -> Wait {
        Wait {
            inner: self.inner.clone(),
            slot: None,
        }
    }

    /// Number of registered waiters (for tests).
    pub fn waiters(&self) -> usize {
        let s = self.inner.slots.borrow();
        s.wakers.len() - s.free.len()
    }
}

pub struct Wait {
    inner: Rc<Inner>,
    slot: Option<usize>,
}

impl Future for Wait {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.set.get() {
            return Poll::Ready(());
        }
        let mut slots = self.inner.slots.borrow_mut();
        match self.slot {
            Some(i) => match &mut slots.wakers[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                other => *other = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let i = match slots.free.pop() {
                    Some(i) => {
                        slots.wakers[i] = waker;
                        i
                    }
                    None => {
                        slots.wakers.push(waker);
                        slots.wakers.len() - 1
                    }
                };
                drop(slots);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut slots = self.inner.slots.borrow_mut();
            slots.wakers[i] = None;
            slots.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_waiters_leave_no_trace() {
        let s = LocalSignal::new();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..1000 {
            let mut w = Box::pin(s.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(s.waiters(), 0);
        let mut kept = Box::pin(s.wait());
        assert!(kept.as_mut().poll(&mut cx).is_pending());
        assert_eq!(s.waiters(), 1);
        s.set();
        assert!(kept.as_mut().poll(&mut cx).is_ready());
    }
}
