//! The process's descriptor limit (`RLIMIT_NOFILE`): every client connection holds a
//! descriptor, and so does each upstream connection, listener and ring. The binary
//! calls [`raise`] before the workers start, as nginx (`worker_rlimit_nofile`),
//! HAProxy and Envoy do: the soft limit (often 1024) goes up to the hard one, which
//! only root can raise. [`shortfall`] then says whether `max_connections` fits under
//! it; if not, accepts fail with EMFILE (see [`super::accept`]) before
//! `max_connections` refuses anyone, and the binary warns at start.
//!
//! The library does not touch the limit itself: it is the process's, and an
//! application embedding the gateway decides.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The descriptor limit after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    /// The limit in force (`None`: unlimited).
    pub soft: Option<u64>,
    /// What the soft limit was before, if it was raised.
    pub raised_from: Option<u64>,
}

/// Raise the soft limit to the hard limit, if it is lower. A refusal (some sandboxes
/// forbid it) leaves the limit as it was.
pub fn raise() -> Nofile {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let (Some(soft), Some(hard)) = (current, maximum) else {
        // An unlimited soft limit needs no raising; an unlimited hard one cannot be
        // asked for (Linux caps descriptors at fs.nr_open), so the soft one stays.
        return Nofile {
            soft: current,
            raised_from: None,
        };
    };
    if soft >= hard {
        return Nofile {
            soft: Some(soft),
            raised_from: None,
        };
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Nofile {
            soft: Some(hard),
            raised_from: Some(soft),
        },
        Err(_) => Nofile {
            soft: Some(soft),
            raised_from: None,
        },
    }
}

/// Descriptors the gateway holds besides its client connections, roughly: standard
/// streams, signal pipe and access log, and per worker its listeners (two handles
/// each), its ring or epoll instance and a few health checks. (One worker with one
/// listener holds 8 when idle.) Idle upstream connections are not counted: they are
/// bounded by the client connections that made them.
pub fn reserved(workers: usize, listeners: usize) -> u64 {
    16 + (workers as u64) * (2 * listeners as u64 + 4)
}

/// If `max_connections` client connections and the `reserved` descriptors do not fit
/// under `soft`: how many client connections do (the point past which accepts fail
/// with EMFILE instead of `max_connections` refusing).
pub fn shortfall(max_connections: usize, reserved: u64, soft: Option<u64>) -> Option<u64> {
    let soft = soft?;
    let fits = soft.saturating_sub(reserved);
    (max_connections as u64 > fits).then_some(fits)
}

/// The start-up warning for [`shortfall`]'s answer `fits`.
pub fn warning(max_connections: usize, soft: u64, fits: u64) -> String {
    format!(
        "warning: server.max_connections = {max_connections} but the descriptor limit \
         (RLIMIT_NOFILE) is {soft}: past about {fits} client connections (fewer while \
         requests hold upstream connections, one descriptor each) accepts fail with \"too \
         many open files\" and new connections wait instead of being refused; raise the \
         limit (ulimit -n, systemd LimitNOFILE) or lower max_connections"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_that_fit_under_the_limit_are_fine() {
        let reserved = reserved(2, 1);
        assert_eq!(reserved, 28);
        assert_eq!(shortfall(10_000, reserved, Some(20_000)), None);
        assert_eq!(shortfall(19_972, reserved, Some(20_000)), None);
        assert_eq!(shortfall(100_000, reserved, None), None);
    }

    #[test]
    fn max_connections_past_the_limit_say_how_many_fit() {
        let reserved = reserved(2, 1);
        assert_eq!(shortfall(19_973, reserved, Some(20_000)), Some(19_972));
        assert_eq!(shortfall(100_000, reserved, Some(1024)), Some(996));
        // A limit below what the gateway holds anyway: nothing fits.
        assert_eq!(shortfall(1, reserved, Some(16)), Some(0));
        let w = warning(100_000, 1024, 996);
        assert!(w.contains("max_connections = 100000"), "{w}");
        assert!(w.contains("is 1024"), "{w}");
        assert!(w.contains("about 996 client connections"), "{w}");
        assert!(w.contains("ulimit -n"), "{w}");
    }

    #[test]
    fn raise_leaves_a_soft_limit_at_most_the_hard_one() {
        // The test process's own limit: raising it to its hard limit is harmless.
        let before = getrlimit(Resource::Nofile);
        let after = raise();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(after.soft, now.current);
        assert_eq!(now.maximum, before.maximum);
        if let (Some(soft), Some(hard)) = (now.current, now.maximum) {
            assert!(soft <= hard);
        }
        if let Some(from) = after.raised_from {
            assert_eq!(Some(from), before.current);
        }
    }
}
