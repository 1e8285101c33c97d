//! [`SharedBody`]: a cached body (`Rc<[u8]>`, shared with the cache) handed to monoio
//! as a write buffer as it is, without copying it into the connection's output buffer.
//! A cache hit on a 1 MiB entry otherwise copies the whole body once in user space
//! before the kernel copies it again. Measured (`REPEAT=3 DURATION=6 BODIES=1m
//! TARGETS="nginx-cache ringgate-cache" loadtest/run.sh`): CPU per 1 MiB hit went from
//! 0.64x nginx `proxy_cache`'s (rounds 0.58-0.69x) to 0.44x (rounds 0.41-0.54x).
//! Bodies from `[cache] file_min_bytes` (128 KiB) up are now kept in files and sent
//! with sendfile(2) instead, which saves the kernel's copy too
//! ([`crate::cache::BodyFile`]); this path serves the bodies between 16 and 128 KiB.
//!
//! The one `unsafe` is the `IoBuf` implementation monoio requires of a write buffer;
//! monoio implements it for `Rc<T>` only where `T` is itself a buffer type, not for
//! `Rc<[u8]>`.

use std::rc::Rc;

/// A body to write, kept alive (and unchanged) by its `Rc` until the write completes.
pub struct SharedBody(pub Rc<[u8]>);

// SAFETY: `IoBuf` asks that `read_ptr` point at `bytes_init` initialised bytes that
// stay valid and unchanged, at the same address, for as long as monoio holds the
// buffer (from submission until the operation completes and the buffer is returned or
// dropped). Here:
// - the bytes are the contents of an `Rc<[u8]>` allocation: initialised (a `[u8]` is
//   always fully initialised) and exactly `self.0.len()` long;
// - the address does not change when `SharedBody` or the `Rc` moves (the `Rc` points
//   at a heap allocation, which never moves);
// - the allocation lives as long as any `Rc` to it, and this `SharedBody` owns one
//   until monoio drops it, which is after the kernel is done with the bytes;
// - nothing can write to it meanwhile: `Rc<[u8]>` hands out only shared references,
//   and `Rc::get_mut` on any other handle returns `None` while this one exists.
// `Unpin + 'static` hold because `Rc<[u8]>` is both.
unsafe impl monoio::buf::IoBuf for SharedBody {
    fn read_ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.0.len()
    }
}
