//! TLS on rustls (ring provider): termination on `server.tls.listen` and TLS to
//! `https://` upstreams.
//!
//! - [`stream`]: the TLS stream over a monoio `TcpStream`, on rustls's unbuffered API
//!   so that the buffers are ours (from the worker's pool) and an idle connection
//!   keeps only rustls's connection state.
//! - [`pki`]: certificates made with rcgen, for tests and `ringgate demo` only.
pub mod pki;
pub mod stream;
