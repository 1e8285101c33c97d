//! Giving memory back after a burst. mimalloc keeps the pages a thread frees and
//! returns them to the OS only when that thread calls into it again after a delay. A
//! worker whose connections just went idle makes no more calls: the buffers of 8,000
//! connections that were busy a second ago would stay resident (35 KiB per idle
//! connection in `loadtest/conns.sh`, against under 1 KiB once collected). So:
//!
//! - [`tune`], at start: pages are purged as soon as they are free, not 100 ms later
//!   (the delay only batches `madvise` calls, which a busy worker rarely makes: it
//!   reuses its pages);
//! - [`collect`], from each worker's tick once per [`COLLECT_EVERY`]: free the pages
//!   that emptied since.
//!
//! Transparent huge pages are off for mimalloc's memory (the `no_thp` feature): a
//! 2 MiB page stays resident while any of its bytes is used, which made idle memory
//! three times what was allocated.

use std::time::Duration;

/// How often a worker collects: rare enough to cost nothing on a busy worker (one
/// walk of the thread's heap pages a second), often enough that idle memory does not
/// linger.
pub const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (include/mimalloc.h); the
/// bindings name only the options the two major versions share.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Set mimalloc's options for a gateway: call once, first thing in `main`.
pub fn tune() {
    // SAFETY: `mi_option_set` takes no pointer and writes one of mimalloc's option
    // slots; the option number is that of mimalloc 3, which libmimalloc-sys builds.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}

/// Return this thread's free pages to the OS. Not forced: a forced collection walks
/// every page of the heap and purges arenas whatever their delay, which showed in
/// a busy worker's p99; with pages purged as soon as they are free ([`tune`]), the
/// ordinary one leaves idle memory as low (0.76 against 0.72 KiB per connection).
pub fn collect() {
    // SAFETY: `mi_collect` takes no pointer and touches only mimalloc's own state for
    // the calling thread's heap (and its shared arenas, under mimalloc's own locks);
    // it is callable from any thread at any time, whether or not mimalloc is the
    // global allocator (without it, its heap is simply empty).
    unsafe { libmimalloc_sys::mi_collect(false) }
}
