//! TLS on rustls (ring provider): termination on `server.tls.listen` and TLS to
//! `https://` upstreams.
//!
//! - [`stream`]: the TLS stream over a monoio `TcpStream`, on rustls's unbuffered API
//!   so that the buffers are ours (from the worker's pool) and an idle connection
//!   keeps only rustls's connection state.
pub mod stream;
