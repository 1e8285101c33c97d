//! The worker's pool of free I/O buffers. A connection takes its buffers when bytes
//! arrive and gives them back when it goes idle (client connections) or into the
//! upstream pool (upstream connections), so a connection that waits holds none: a
//! million idle keep-alive connections cost no buffer memory, and the few that are
//! busy reuse the same warm buffers.
//!
//! Two sizes, both for what most exchanges need: [`LARGE`] for reads (a request or
//! response head and what comes with it), [`SMALL`] for what the gateway writes
//! itself (response heads and small bodies to clients, request heads to upstreams).
//! A buffer grows when an exchange needs more (a body streams through in 16 KiB
//! reads, a large head, a re-framed body); one that grew is freed, not kept, when
//! its connection gives it back. Each size keeps at most [`MAX_FREE`] buffers, so a
//! burst of busy connections leaves at most `MAX_FREE * (LARGE + SMALL)` (96 KiB) per
//! worker behind when it ends.
//!
//! One pool per thread (a `thread_local`): each worker is one thread, so the pool is
//! that worker's and no other core ever touches it, and the upstream client (which
//! does not see the worker's [`crate::pipeline::local::Local`]) uses the same one.

use std::cell::RefCell;

/// Read buffers (client and upstream), as first taken.
pub const LARGE: usize = 4 * 1024;
/// Output buffers: heads (and small bodies) for the client and for the upstream.
pub const SMALL: usize = 2 * 1024;
/// Room a head read asks for: a buffer with less free grows (a head larger than
/// [`LARGE`], pipelined requests); body reads ask for 16 KiB.
pub const HEAD_SPARE: usize = 1024;
/// Free buffers kept per size per worker.
pub const MAX_FREE: usize = 16;

#[derive(Default)]
struct Free {
    large: Vec<Vec<u8>>,
    small: Vec<Vec<u8>>,
}

thread_local! {
    static FREE: RefCell<Free> = RefCell::new(Free::default());
}

/// An empty buffer with room for `LARGE` bytes.
pub fn large() -> Vec<u8> {
    FREE.with(|f| f.borrow_mut().large.pop())
        .unwrap_or_else(|| Vec::with_capacity(LARGE))
}

/// An empty buffer with room for `SMALL` bytes.
pub fn small() -> Vec<u8> {
    FREE.with(|f| f.borrow_mut().small.pop())
        .unwrap_or_else(|| Vec::with_capacity(SMALL))
}

/// Give `buf` back (leaving an empty `Vec` that holds no memory in its place). Kept
/// for reuse if it has one of the pool's sizes and the pool has room; freed if not.
pub fn give(buf: &mut Vec<u8>) {
    let cap = buf.capacity();
    if cap != LARGE && cap != SMALL {
        *buf = Vec::new();
        return;
    }
    let mut buf = std::mem::take(buf);
    buf.clear();
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        let list = if cap == LARGE {
            &mut f.large
        } else {
            &mut f.small
        };
        if list.len() < MAX_FREE {
            list.push(buf);
        }
    });
}

/// Free buffers held by this thread's pool: (large, small). For tests and metrics.
pub fn free_counts() -> (usize, usize) {
    FREE.with(|f| {
        let f = f.borrow();
        (f.large.len(), f.small.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_the_pool_is_bounded() {
        std::thread::spawn(|| {
            let mut a = large();
            a.extend_from_slice(b"request bytes");
            let ptr = a.as_ptr();
            give(&mut a);
            assert_eq!(a.capacity(), 0, "the giver keeps nothing");
            assert_eq!(free_counts(), (1, 0));
            let b = large();
            assert_eq!(b.as_ptr(), ptr, "the warm buffer comes back");
            assert!(b.is_empty() && b.capacity() == LARGE);

            // A buffer that grew past the sizes is freed, not pooled. (One that grew
            // to exactly the other size is pooled as that size.)
            let mut grown = small();
            grown.extend_from_slice(&[0; LARGE + 1]);
            give(&mut grown);
            assert_eq!(free_counts(), (0, 0));

            // A burst gives back more than the pool keeps.
            let mut many: Vec<Vec<u8>> = (0..MAX_FREE + 50).map(|_| large()).collect();
            for b in &mut many {
                give(b);
            }
            assert_eq!(free_counts(), (MAX_FREE, 0));
        })
        .join()
        .unwrap();
    }
}
