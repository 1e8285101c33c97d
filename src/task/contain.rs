//! [`Contained`]: a task's future whose panic ends that task only. A bug reached by one
//! connection's bytes (or one background refresh) must not take down the worker and
//! every other connection on it: the panic is caught where the future is polled, the
//! future is dropped (closing its sockets), and the worker goes on. The panic message
//! is still printed by the panic hook.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `F` to completion; resolves to `None` if it panicked.
pub struct Contained<F> {
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future> Contained<F> {
    pub fn new(f: F) -> Contained<F> {
        Contained {
            inner: Some(Box::pin(f)),
        }
    }
}

impl<F: Future> Future for Contained<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        // The future is never polled again after a panic (it is dropped just below),
        // so no state it left half-updated is observed through it. State it shares
        // with the worker is behind RefCell/Cell, whose borrows are released by the
        // unwinding.
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => {
                self.inner = None;
                Poll::Ready(Some(v))
            }
            Err(_) => {
                self.inner = None;
                Poll::Ready(None)
            }
        }
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
}
