//! [`UpStream`]: the connection type of the upstream client, plain TCP or TLS
//! ([`crate::tls::stream::Stream`], the type a client's connection uses too), so that
//! everything above it (the pool, the client, proxying, refresh, health checks) is
//! written once for both.
//!
//! What only a plain socket can do is asked for through `UpStream::tcp`: splicing a
//! body between two sockets in the kernel and a second handle to listen for an early
//! answer. A TLS stream answers `None` there and takes the ordinary read and write
//! path.

use rustls::client::UnbufferedClientConnection;

/// A connection to an upstream server.
pub type UpStream = crate::tls::stream::Stream<UnbufferedClientConnection>;
