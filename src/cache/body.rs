//! A stored body ([`Body`]): in memory behind an `Rc`, or in its own sealed
//! memory-backed file (`memfd_create(2)`) that a hit sends with `sendfile(2)`, as
//! nginx sends its cached files. Every body is stored in memory when its response
//! arrives; one of at least `[cache] file_min_bytes` is moved into a file at its
//! entry's first hit ([`BodyFiles::promote`], [`super::Cache::rehome_body`]).
//!
//! Why a file: a hit written from memory is copied by the kernel into the socket's
//! buffers, and for large bodies that copy is most of a hit's cost (`perf` on a 1 MiB
//! hit: 97 % of the worker's CPU in the kernel, 36 % of it in `_copy_from_iter`).
//! `sendfile` hands the file's pages to the socket by reference instead. The file is
//! written once and sealed against any change; the pages stay alive while the kernel
//! still holds them, so an entry can be evicted (its file closed) while a hit of it
//! is still being sent.
//!
//! Why not at once: a memfd costs the kernel a page-cache page per 4 KiB to fill
//! (`cargo bench --bench cache -- body_`: ~536 µs for 1 MiB, against ~30 µs to keep
//! it in memory). Paid by every miss, large misses would cost far more than plain
//! proxying; paid at the first hit, only entries that are asked for again pay, and
//! they win it back within a few hits.
//!
//! Each file is one descriptor. [`BodyFiles`] caps how many a worker keeps open (a
//! quarter of the process's descriptor limit, shared among workers) so that the cache
//! cannot starve connections of descriptors; past the cap, or if the kernel refuses a
//! memfd, bodies stay in memory.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::{MemfdFlags, SealFlags};

/// A stored body. Cloning shares it (an `Rc` increment).
#[derive(Debug, Clone)]
pub enum Body {
    /// In memory: the bytes of the buffer from the offset on. A small body shares one
    /// allocation with its entry's head ([`super::Entry::build`]).
    Bytes(Rc<[u8]>, u32),
    File(Rc<BodyFile>),
}

/// A body in a sealed memfd, counted against its worker's [`BodyFiles`] cap until
/// dropped.
#[derive(Debug)]
pub struct BodyFile {
    fd: OwnedFd,
    len: usize,
    open: Rc<Cell<usize>>,
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        self.open.set(self.open.get() - 1);
    }
}

impl BodyFile {
    /// The file, to send from (offsets `0..len`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Bytes(b, at) => b.len() - *at as usize,
            Body::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `self` and `other` are the same stored body (not a copy of it).
    pub fn same(&self, other: &Body) -> bool {
        match (self, other) {
            (Body::Bytes(a, i), Body::Bytes(b, j)) => Rc::ptr_eq(a, b) && i == j,
            (Body::File(a), Body::File(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The bytes, when the body is in memory.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Body::Bytes(b, at) => Some(&b[*at as usize..]),
            Body::File(_) => None,
        }
    }

    /// Append the whole body to `out` (a read of the file for a file body).
    pub fn append_to(&self, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Body::Bytes(b, at) => {
                out.extend_from_slice(&b[*at as usize..]);
                Ok(())
            }
            Body::File(f) => {
                let start = out.len();
                out.resize(start + f.len, 0);
                let mut done = 0;
                while done < f.len {
                    match rustix::io::pread(&f.fd, &mut out[start + done..], done as u64) {
                        Ok(0) => {
                            out.truncate(start);
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        Ok(n) => done += n,
                        Err(rustix::io::Errno::INTR) => {}
                        Err(e) => {
                            out.truncate(start);
                            return Err(e.into());
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// The whole body, copied.
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(self.len());
        self.append_to(&mut v)?;
        Ok(v)
    }
}

impl From<Rc<[u8]>> for Body {
    fn from(b: Rc<[u8]>) -> Body {
        Body::Bytes(b, 0)
    }
}

impl From<&[u8]> for Body {
    fn from(b: &[u8]) -> Body {
        Body::Bytes(b.into(), 0)
    }
}

/// One worker's policy for where bodies are stored, and its count of open body files.
#[derive(Debug)]
pub struct BodyFiles {
    /// Bodies of at least this many bytes go to a file; `usize::MAX` = never.
    min: usize,
    /// At most this many body files open at once.
    max_open: usize,
    open: Rc<Cell<usize>>,
}

impl BodyFiles {
    /// Bodies from `min` bytes up (0 = never) in files, at most `max_open` at once.
    pub fn new(min: u64, max_open: usize) -> BodyFiles {
        BodyFiles {
            min: if min == 0 {
                usize::MAX
            } else {
                usize::try_from(min).unwrap_or(usize::MAX)
            },
            max_open,
            open: Rc::default(),
        }
    }

    /// The cap for one of `workers` workers: a quarter of the process's descriptor
    /// limit (`RLIMIT_NOFILE`), shared evenly.
    pub fn per_worker_cap(workers: usize) -> usize {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1024);
        usize::try_from(limit / 4).unwrap_or(usize::MAX) / workers.max(1)
    }

    /// Body files open now.
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Whether `body` would move into a file: in memory and in an allocation of its
    /// own (a body sharing its entry's, under [`super::WITH_HEAD_MAX`], is too
    /// small to gain from a file), large enough, and under the cap of open files.
    pub fn wants(&self, body: &Body) -> bool {
        matches!(body, Body::Bytes(b, 0) if b.len() >= self.min) && self.open.get() < self.max_open
    }

    /// The same body in a file, if [`BodyFiles::wants`] it and the kernel gives a
    /// memfd; `None` otherwise.
    pub fn promote(&self, body: &Body) -> Option<Body> {
        if !self.wants(body) {
            return None;
        }
        let Body::Bytes(data, 0) = body else {
            return None;
        };
        let fd = write_sealed(data).ok()?;
        self.open.set(self.open.get() + 1);
        Some(Body::File(Rc::new(BodyFile {
            fd,
            len: data.len(),
            open: self.open.clone(),
        })))
    }
}

/// A new memfd holding `data`, sealed so that nothing can change its contents or size.
fn write_sealed(data: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(
        "ringgate-body",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut done = 0;
    while done < data.len() {
        match rustix::io::write(&fd, &data[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` as a fill stores it and a hit then moves it: in a file if it is large
    /// enough and a file can be had, else in memory.
    fn stored(files: &BodyFiles, data: &[u8]) -> Body {
        let body = Body::from(data);
        files.promote(&body).unwrap_or(body)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn small_bodies_stay_in_memory_and_large_ones_go_to_a_file() {
        let files = BodyFiles::new(1024, 10);
        let small = stored(&files, &data(1023));
        assert!(small.as_bytes().is_some());
        let large = stored(&files, &data(5000));
        assert!(matches!(large, Body::File(_)));
        assert_eq!(large.len(), 5000);
        assert_eq!(large.to_vec().unwrap(), data(5000));
        assert_eq!(small.to_vec().unwrap(), data(1023));
        assert_eq!(files.open(), 1);
    }

    #[test]
    fn the_cap_counts_open_files_and_dropping_frees_a_place() {
        let files = BodyFiles::new(1, 2);
        let a = stored(&files, b"aa");
        let b = stored(&files, b"bb");
        let c = stored(&files, b"cc");
        assert!(matches!(a, Body::File(_)) && matches!(b, Body::File(_)));
        assert!(
            c.as_bytes().is_some(),
            "past the cap, bodies stay in memory"
        );
        assert_eq!(files.open(), 2);
        let a2 = a.clone();
        drop(a);
        assert_eq!(files.open(), 2, "a clone keeps the file open");
        drop(a2);
        assert_eq!(files.open(), 1);
        assert!(matches!(stored(&files, b"dd"), Body::File(_)));
    }

    #[test]
    fn only_large_bodies_in_memory_are_wanted_and_only_under_the_cap() {
        let files = BodyFiles::new(4, 1);
        let big = Body::from(&b"abcdef"[..]);
        assert!(files.wants(&big));
        assert!(!files.wants(&Body::from(&b"abc"[..])));
        let file = files.promote(&big).unwrap();
        assert!(!files.wants(&file), "already a file");
        assert!(!files.wants(&big), "the cap is reached");
        assert!(files.promote(&big).is_none());
        drop(file);
        assert!(files.wants(&big));
    }

    #[test]
    fn zero_means_never() {
        let files = BodyFiles::new(0, 10);
        assert!(stored(&files, &data(1 << 20)).as_bytes().is_some());
    }

    #[test]
    fn a_body_file_is_sealed_against_writes() {
        let files = BodyFiles::new(1, 1);
        let Body::File(f) = stored(&files, b"stored") else {
            panic!("not a file");
        };
        assert!(rustix::io::pwrite(f.fd(), b"X", 0).is_err());
        assert!(rustix::fs::ftruncate(f.fd(), 1).is_err());
        assert_eq!(Body::File(f).to_vec().unwrap(), b"stored");
    }

    #[test]
    fn same_tells_shared_from_copied() {
        let files = BodyFiles::new(4, 10);
        let a = stored(&files, b"abcdef");
        let b = stored(&files, b"abcdef");
        assert!(a.same(&a.clone()) && !a.same(&b));
        let m: Body = Rc::<[u8]>::from(&b"x"[..]).into();
        assert!(m.same(&m.clone()) && !m.same(&a));
    }
}
