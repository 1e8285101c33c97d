//! A task's future whose panic ends that task only. A bug reached by one connection's
//! bytes (or one background refresh) must not take down the worker and every other
//! connection on it: the panic is caught where the future is polled, the future is
//! dropped (closing its sockets), and the worker goes on. The panic message is still
//! printed by the panic hook.
//!
//! [`Contained`] is awaited by another future; [`Task`] is spawned as a whole task (a
//! client connection): it also ends when a stop signal is set, and reports how it
//! ended to a closure. Both keep the future inline, not boxed: a connection task is one
//! allocation, and an idle connection's memory is counted in bytes.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::signal::Wait;

/// Poll `slot`'s future with a panic contained: `Some(Ready(None))` if it panicked.
/// A future that ended (or panicked) is dropped where it lies, leaving the slot empty;
/// `None` when the slot was empty already.
fn poll_contained<F: Future>(
    mut slot: Pin<&mut Option<F>>,
    cx: &mut Context<'_>,
) -> Option<Poll<Option<F::Output>>> {
    let fut = slot.as_mut().as_pin_mut()?;
    // The future is never polled again after a panic (it is dropped just below), so
    // no state it left half-updated is observed through it. State it shares with the
    // worker is behind RefCell/Cell, whose borrows are released by the unwinding.
    Some(match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(v)) => {
            slot.set(None);
            Poll::Ready(Some(v))
        }
        Err(_) => {
            slot.set(None);
            Poll::Ready(None)
        }
    })
}

pin_project_lite::pin_project! {
    /// Runs `F` to completion; resolves to `None` if it panicked.
    pub struct Contained<F> {
        #[pin]
        inner: Option<F>,
    }
}

impl<F: Future> Contained<F> {
    pub fn new(f: F) -> Contained<F> {
        Contained { inner: Some(f) }
    }
}

impl<F: Future> Future for Contained<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        poll_contained(self.project().inner, cx).unwrap_or(Poll::Ready(None))
    }
}

/// How a [`Task`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended<T> {
    Done(T),
    Panicked,
    /// Its stop signal was set.
    Stopped,
}

pin_project_lite::pin_project! {
    /// A spawned task: `F` runs until it ends, panics, or `stop` is set (then it is
    /// dropped where it stands); `done` is called once with how it ended. A task
    /// dropped unfinished (its runtime went away) reports nothing.
    pub struct Task<F, D> {
        #[pin]
        inner: Option<F>,
        stop: Wait,
        done: Option<D>,
    }
}

impl<F: Future, D: FnOnce(Ended<F::Output>)> Task<F, D> {
    pub fn new(f: F, stop: Wait, done: D) -> Self {
        Task {
            inner: Some(f),
            stop,
            done: Some(done),
        }
    }
}

impl<F: Future, D: FnOnce(Ended<F::Output>)> Future for Task<F, D> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let ended = match poll_contained(this.inner.as_mut(), cx) {
            Some(Poll::Ready(Some(v))) => Ended::Done(v),
            Some(Poll::Ready(None)) => Ended::Panicked,
            Some(Poll::Pending) => {
                if Pin::new(&mut *this.stop).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.inner.set(None);
                Ended::Stopped
            }
            None => return Poll::Ready(()),
        };
        if let Some(done) = this.done.take() {
            done(ended);
        }
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_ends_the_future_not_the_thread() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        let out = rt.block_on(async {
            let bad = monoio::spawn(Contained::new(async {
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
                if std::hint::black_box(true) {
                    panic!("a bug reached by one connection");
                }
                1
            }));
            let good = monoio::spawn(Contained::new(async { 2 }));
            (bad.await, good.await)
        });
        assert_eq!(out, (None, Some(2)));
    }

    #[test]
    fn a_task_reports_how_it_ended() {
        use std::cell::RefCell;
        use std::rc::Rc;

        use crate::task::signal::LocalSignal;

        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        let seen = rt.block_on(async {
            let seen = Rc::new(RefCell::new(Vec::new()));
            let stop = LocalSignal::new();
            let report = |name: &'static str| {
                let seen = seen.clone();
                move |e: Ended<u32>| seen.borrow_mut().push((name, e))
            };
            let done = monoio::spawn(Task::new(async { 7 }, stop.wait(), report("done")));
            let bad = monoio::spawn(Task::new(
                async {
                    if std::hint::black_box(true) {
                        panic!("a bug reached by one connection");
                    }
                    1
                },
                stop.wait(),
                report("panicked"),
            ));
            let stuck = monoio::spawn(Task::new(
                std::future::pending::<u32>(),
                stop.wait(),
                report("stopped"),
            ));
            done.await;
            bad.await;
            stop.set();
            stuck.await;
            let seen = seen.borrow_mut().drain(..).collect::<Vec<_>>();
            seen
        });
        assert_eq!(
            seen,
            [
                ("done", Ended::Done(7)),
                ("panicked", Ended::Panicked),
                ("stopped", Ended::Stopped)
            ]
        );
    }
}
