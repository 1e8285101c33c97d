//! Choosing the I/O driver. `auto` uses io_uring when the kernel allows it (it may be
//! disabled by sysctl or by a seccomp profile such as Docker's default) and epoll
//! otherwise; forcing io_uring where it cannot run is a start-up error, never a silent
//! fallback. The ring is set up for one thread (single issuer, cooperative and deferred
//! task running): measured cheaper per request than monoio's default ring.

use crate::config::IoDriver;
use crate::runtime::StartError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveDriver {
    IoUring,
    Epoll,
}

impl std::fmt::Display for ActiveDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActiveDriver::IoUring => "io_uring",
            ActiveDriver::Epoll => "epoll",
        })
    }
}

/// The ring parameters every worker uses.
pub fn uring_builder() -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    b.setup_single_issuer()
        .setup_coop_taskrun()
        .setup_defer_taskrun();
    b
}

/// Can a ring with our parameters be created here? Returns the reason when not.
pub fn probe_uring(entries: u32) -> Result<(), String> {
    uring_builder()
        .build(entries.max(8))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Resolve the configured driver to the one the workers will run.
pub fn choose(cfg: IoDriver, entries: u32) -> Result<ActiveDriver, StartError> {
    match cfg {
        IoDriver::Epoll => Ok(ActiveDriver::Epoll),
        IoDriver::IoUring => match probe_uring(entries) {
            Ok(()) => Ok(ActiveDriver::IoUring),
            Err(e) => Err(StartError::UringUnavailable(e)),
        },
        IoDriver::Auto => match probe_uring(entries) {
            Ok(()) => Ok(AUTO_PREFERENCE),
            Err(_) => Ok(ActiveDriver::Epoll),
        },
    }
}

/// What `auto` picks where io_uring is available; see the README's performance section
/// for the measurement behind it.
pub const AUTO_PREFERENCE: ActiveDriver = ActiveDriver::IoUring;
