//! A worker-local, one-shot signal (shutdown): set once, awaited by many tasks of the
//! same thread. `Rc` + `Cell` because it never leaves its core.

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
    waiters: RefCell<Vec<Waker>>,
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
        for w in self.inner.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once the signal is set.
    pub fn wait(&self) -> Wait {
        Wait {
            inner: self.inner.clone(),
            registered: false,
        }
    }
}

pub struct Wait {
    inner: Rc<Inner>,
    registered: bool,
}

impl Future for Wait {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.set.get() {
            return Poll::Ready(());
        }
        if !self.registered {
            // One registration per waiter is enough: the single-threaded runtime hands
            // out the same task waker for every poll of a task.
            self.inner.waiters.borrow_mut().push(cx.waker().clone());
            self.registered = true;
        }
        Poll::Pending
    }
}
