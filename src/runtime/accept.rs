//! What a worker's accept loop does when `accept(2)` fails. [`classify`] sorts the
//! error: a connection lost before it was taken (ECONNABORTED, EPROTO, a network error
//! on it) or an interrupted call is retried at once; running out of descriptors
//! (EMFILE, ENFILE) or of kernel memory (ENOBUFS, ENOMEM), and anything unexpected,
//! would fail again at once, so [`AcceptBackoff`] makes the loop wait, doubling from
//! [`FIRST_WAIT`] to [`MAX_WAIT`] and starting over after the next accepted connection,
//! and says when to log: at the first failure, then at most once per [`REPORT_EVERY`]
//! with the count in between. Meanwhile new connections wait in the listen backlog and
//! the open ones are served, as long as their requests find an idle upstream connection
//! (opening one needs a descriptor too).
//!
//! The decisions take the time as an argument, so that the tests below drive them
//! without sleeping.

use std::io;
use std::time::{Duration, Instant};

use rustix::io::Errno;

/// The first wait after a failure that would repeat at once.
pub const FIRST_WAIT: Duration = Duration::from_millis(10);
/// The longest wait: how late, at worst, a connection in the backlog is taken once
/// descriptors are free again (nginx waits a fixed 500 ms).
pub const MAX_WAIT: Duration = Duration::from_millis(500);
/// At most one log line per worker in this interval, however many accepts fail.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Why an accept failed, as far as the loop cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// That connection is gone, or the call was interrupted: the next accept may
    /// well succeed (accept(2): "Linux passes already-pending network errors").
    Transient,
    /// EMFILE: this process is at its descriptor limit (RLIMIT_NOFILE).
    ProcessDescriptors,
    /// ENFILE: the system-wide table of open files is full.
    SystemDescriptors,
    /// ENOBUFS or ENOMEM: the kernel is short of memory for a socket.
    KernelMemory,
    /// Anything else: not expected, but waiting keeps it from spinning.
    Other,
}

pub fn classify(e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::WouldBlock {
        return Failure::Transient;
    }
    match Errno::from_io_error(e) {
        Some(Errno::MFILE) => Failure::ProcessDescriptors,
        Some(Errno::NFILE) => Failure::SystemDescriptors,
        Some(Errno::NOBUFS | Errno::NOMEM) => Failure::KernelMemory,
        Some(
            Errno::CONNABORTED
            | Errno::INTR
            | Errno::PROTO
            | Errno::CONNRESET
            | Errno::PERM
            | Errno::NETDOWN
            | Errno::NETUNREACH
            | Errno::HOSTDOWN
            | Errno::HOSTUNREACH
            | Errno::NONET
            | Errno::NOPROTOOPT
            | Errno::OPNOTSUPP
            | Errno::TIMEDOUT,
        ) => Failure::Transient,
        _ => Failure::Other,
    }
}

/// What the loop does after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// Wait this long before the next accept; `None`: accept again at once.
    pub wait: Option<Duration>,
    /// Log now; the failures (this one included) since the last line.
    pub report: Option<Report>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub failures: u64,
    /// Since the last line; `None` for the first.
    pub since: Option<Duration>,
}

/// One listener's backoff and log rate limit.
#[derive(Debug)]
pub struct AcceptBackoff {
    next_wait: Duration,
    unreported: u64,
    last_report: Option<Instant>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            next_wait: FIRST_WAIT,
            unreported: 0,
            last_report: None,
        }
    }
}

impl AcceptBackoff {
    /// An accept failed with `failure` at `now`.
    pub fn failed(&mut self, failure: Failure, now: Instant) -> Next {
        if failure == Failure::Transient {
            return Next {
                wait: None,
                report: None,
            };
        }
        let wait = self.next_wait;
        self.next_wait = (wait * 2).min(MAX_WAIT);
        self.unreported += 1;
        let due = self
            .last_report
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_EVERY);
        let report = due.then(|| {
            let r = Report {
                failures: self.unreported,
                since: self
                    .last_report
                    .map(|last| now.saturating_duration_since(last)),
            };
            self.unreported = 0;
            self.last_report = Some(now);
            r
        });
        Next {
            wait: Some(wait),
            report,
        }
    }

    /// A connection was accepted: the next failure waits [`FIRST_WAIT`] again. The log
    /// rate limit stays, so that a process hovering at its limit does not log each time.
    pub fn accepted(&mut self) {
        self.next_wait = FIRST_WAIT;
    }
}

/// The log line for `report` (without the "ringgate: worker N: " prefix): what failed,
/// how often, what happens meanwhile and what the operator can do. Open connections
/// are served meanwhile, as long as their requests find an idle upstream connection.
pub fn message(e: &io::Error, failure: Failure, report: Report) -> String {
    let what = match report.since {
        None => format!("accept failed: {e}"),
        Some(since) => format!(
            "accept failed {} times in the last {} s: {e}",
            report.failures,
            since.as_secs()
        ),
    };
    let consequence = match failure {
        Failure::ProcessDescriptors => {
            "; nor can upstream connections be opened (503) until descriptors are free; \
             raise the descriptor limit (ulimit -n, systemd LimitNOFILE) or lower \
             server.max_connections"
        }
        Failure::SystemDescriptors => {
            "; nor can upstream connections be opened (503); the system-wide file table is \
             full: raise sysctl fs.file-max or lower server.max_connections"
        }
        Failure::KernelMemory => {
            "; the kernel is short of socket memory: lower server.max_connections or add memory"
        }
        Failure::Transient | Failure::Other => "",
    };
    format!(
        "{what}; new connections wait in the listen backlog (tried again within {} ms){consequence}",
        MAX_WAIT.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(errno: Errno) -> io::Error {
        io::Error::from_raw_os_error(errno.raw_os_error())
    }

    #[test]
    fn errors_are_sorted_by_what_waiting_would_change() {
        assert_eq!(classify(&err(Errno::MFILE)), Failure::ProcessDescriptors);
        assert_eq!(classify(&err(Errno::NFILE)), Failure::SystemDescriptors);
        assert_eq!(classify(&err(Errno::NOBUFS)), Failure::KernelMemory);
        assert_eq!(classify(&err(Errno::NOMEM)), Failure::KernelMemory);
        for e in [Errno::CONNABORTED, Errno::INTR, Errno::PROTO, Errno::AGAIN] {
            assert_eq!(classify(&err(e)), Failure::Transient, "{e:?}");
        }
        assert_eq!(classify(&err(Errno::BADF)), Failure::Other);
        assert_eq!(classify(&io::Error::other("no errno")), Failure::Other);
    }

    #[test]
    fn transient_failures_retry_at_once_and_leave_the_backoff_alone() {
        let mut b = AcceptBackoff::default();
        let t = Instant::now();
        for _ in 0..100 {
            let next = b.failed(Failure::Transient, t);
            assert_eq!(next.wait, None);
            assert_eq!(next.report, None);
        }
        // The first real failure still waits the least and is reported.
        let next = b.failed(Failure::ProcessDescriptors, t);
        assert_eq!(next.wait, Some(FIRST_WAIT));
        assert_eq!(next.report.map(|r| r.failures), Some(1));
    }

    #[test]
    fn the_wait_doubles_up_to_the_cap_and_starts_over_after_an_accept() {
        let mut b = AcceptBackoff::default();
        let t = Instant::now();
        let waits: Vec<_> = (0..10)
            .map(|_| b.failed(Failure::ProcessDescriptors, t).wait.unwrap())
            .collect();
        let ms: Vec<_> = waits.iter().map(|w| w.as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 500, 500, 500, 500]);
        b.accepted();
        assert_eq!(
            b.failed(Failure::SystemDescriptors, t).wait,
            Some(FIRST_WAIT)
        );
        assert_eq!(b.failed(Failure::Other, t).wait, Some(2 * FIRST_WAIT));
    }

    #[test]
    fn one_report_per_interval_with_the_count_since_the_last() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        let first = b.failed(Failure::ProcessDescriptors, t0).report;
        assert_eq!(
            first,
            Some(Report {
                failures: 1,
                since: None
            })
        );
        // Failing every 500 ms: nothing until the interval has passed.
        let mut at = t0;
        let mut reports = Vec::new();
        for _ in 0..60 {
            at += MAX_WAIT;
            if let Some(r) = b.failed(Failure::ProcessDescriptors, at).report {
                reports.push((at - t0, r));
            }
        }
        // 30 s of failures: one line at 10 s, 20 s and 30 s, each counting 20.
        assert_eq!(reports.len(), 3, "{reports:?}");
        for (i, (when, r)) in reports.iter().enumerate() {
            assert_eq!(*when, REPORT_EVERY * (i as u32 + 1));
            assert_eq!(r.failures, 20);
            assert_eq!(r.since, Some(REPORT_EVERY));
        }
    }

    #[test]
    fn an_accept_in_between_does_not_reset_the_log_rate_limit() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        assert!(b.failed(Failure::ProcessDescriptors, t0).report.is_some());
        // Hovering at the limit: one accept succeeds, the next fails, and so on.
        for i in 1..100 {
            b.accepted();
            let at = t0 + Duration::from_millis(50 * i);
            assert_eq!(b.failed(Failure::ProcessDescriptors, at).report, None);
        }
        // After a quiet spell the next failure is reported at once, with what it missed.
        let later = t0 + Duration::from_secs(3600);
        let r = b.failed(Failure::ProcessDescriptors, later).report.unwrap();
        assert_eq!(r.failures, 100);
        assert_eq!(r.since, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn the_message_says_what_failed_how_often_and_what_to_do() {
        let e = err(Errno::MFILE);
        let first = message(
            &e,
            Failure::ProcessDescriptors,
            Report {
                failures: 1,
                since: None,
            },
        );
        assert!(
            first.starts_with("accept failed: Too many open files"),
            "{first}"
        );
        assert!(first.contains("listen backlog"), "{first}");
        assert!(first.contains("upstream connections"), "{first}");
        assert!(first.contains("ulimit -n"), "{first}");
        assert!(first.contains("max_connections"), "{first}");
        let later = message(
            &e,
            Failure::ProcessDescriptors,
            Report {
                failures: 37,
                since: Some(Duration::from_secs(10)),
            },
        );
        assert!(
            later.starts_with("accept failed 37 times in the last 10 s: Too many open files"),
            "{later}"
        );
        let system = message(
            &err(Errno::NFILE),
            Failure::SystemDescriptors,
            Report {
                failures: 1,
                since: None,
            },
        );
        assert!(system.contains("fs.file-max"), "{system}");
    }
}
