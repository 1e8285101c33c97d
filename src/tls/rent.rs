//! Views of monoio's owned buffers as slices, for the TLS stream: rustls encrypts from
//! a `&[u8]` and we copy decrypted bytes into the caller's buffer. monoio's buffer
//! traits give raw pointers only (they are made for the kernel), so these few lines
//! turn them into slices, with the contract of the traits as the proof.
//!
//! This is the only `unsafe` of the TLS code.

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};

/// The initialized bytes of `buf`.
pub fn bytes<T: IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: `IoBuf` (an unsafe trait) promises that `read_ptr` points at
    // `bytes_init` initialized bytes that stay valid and unmoved while the buffer is
    // alive and not mutated; the returned slice borrows `buf`, so it can be neither
    // dropped nor mutated while the slice lives.
    unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) }
}

/// Copy as much of `src` as fits into `buf`'s room and mark it initialized: the
/// number of bytes copied.
pub fn fill<T: IoBufMut>(buf: &mut T, src: &[u8]) -> usize {
    let n = src.len().min(buf.bytes_total());
    // SAFETY: `IoBufMut` (an unsafe trait) promises that `write_ptr` is valid for
    // writes of `bytes_total` bytes while we own `buf`; `n` is at most that, and `src`
    // is a separate borrow, so the ranges cannot overlap. `set_init(n)` then marks
    // exactly the bytes just written as initialized.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), buf.write_ptr(), n);
        buf.set_init(n);
    }
    n
}

/// The slices of an `IoVecBuf` (for `writev`), in order.
pub fn iovecs<T: IoVecBuf>(buf: &T) -> Vec<&[u8]> {
    // SAFETY: `IoVecBuf` (an unsafe trait) promises that `read_iovec_ptr` points at
    // `read_iovec_len` valid `iovec`s, each describing initialized memory that stays
    // valid while the buffer is alive and not mutated; every slice borrows `buf`.
    unsafe {
        let iov = std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len());
        iov.iter()
            .map(|v| std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len))
            .collect()
    }
}

/// Copy `src` into the first non-empty `iovec` of `buf` (for `readv`): the number
/// of bytes copied, marked initialized.
pub fn fill_first<T: IoVecBufMut>(buf: &mut T, src: &[u8]) -> usize {
    // SAFETY: `IoVecBufMut` (an unsafe trait) promises that `write_iovec_ptr` points
    // at `write_iovec_len` valid `iovec`s, each valid for writes of `iov_len` bytes
    // while we own `buf`. We write at most `iov_len` bytes into one of them from a
    // separate borrow, then `set_init` counts bytes across the iovecs in order: the
    // bytes of the empty iovecs skipped before it (zero) plus those written.
    unsafe {
        let iov = std::slice::from_raw_parts(buf.write_iovec_ptr(), buf.write_iovec_len());
        let Some(v) = iov.iter().find(|v| v.iov_len > 0) else {
            return 0;
        };
        let n = src.len().min(v.iov_len);
        std::ptr::copy_nonoverlapping(src.as_ptr(), v.iov_base as *mut u8, n);
        buf.set_init(n);
        n
    }
}
