//! Listening sockets: one per worker per `listen` address, all bound with SO_REUSEPORT
//! so the kernel spreads connections across workers without a shared accept queue.
//! Bound in the main thread before workers start, so a bad address fails start-up and an
//! OS-chosen port (":0", used by tests) is shared by every worker's socket.
//! [`already_served`] is asked first: SO_REUSEPORT would let a second gateway share an
//! address with one already running instead of failing.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

const BACKLOG: i32 = 4096;

pub fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_tcp_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// Whether another socket already listens on `addr`: with SO_REUSEPORT our sockets
/// would silently join it and take part of its traffic. Binding once without
/// SO_REUSEPORT (SO_REUSEADDR only, so connections of an earlier run in TIME_WAIT do
/// not count) fails with `AddrInUse` exactly then. Port 0 is chosen free by the OS.
pub fn already_served(addr: SocketAddr) -> io::Result<bool> {
    if addr.port() == 0 {
        return Ok(false);
    }
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    match s.bind(&addr.into()) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(true),
        // Anything else (no such address, permission) is reported by the real bind.
        Err(_) => Ok(false),
    }
}

/// Bind `workers` sockets for each address. Returns, per worker, its sockets (in the
/// order of `addrs`), and the addresses actually bound.
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let first = bind_reuseport(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let actual = first.local_addr()?;
        bound.push(actual);
        per_worker[0].push(first);
        for list in per_worker.iter_mut().skip(1) {
            list.push(bind_reuseport(actual)?);
        }
    }
    Ok((per_worker, bound))
}
