//! TLS on rustls (ring provider): termination on `server.tls.listen` and TLS to
//! `https://` upstreams.
//!
//! - [`stream`]: the TLS stream over a monoio `TcpStream`, on rustls's unbuffered API
//!   so that the buffers are ours (from the worker's pool) and an idle connection
//!   keeps only rustls's connection state.
//! - [`sni`]: choosing a certificate by SNI (exact, wildcard, default).
//! - [`ticket`]: session tickets every worker can open, keys rotated without shared
//!   state.
//! - [`peer`]: a client certificate's subject and fingerprint, for the upstream.
//! - [`load`]: reading PEM certificates, keys and CA bundles, with errors that name the
//!   file and never its contents.
//! - [`pki`]: certificates made with rcgen, for tests and `ringgate demo` only.
pub mod load;
pub mod peer;
pub mod pki;
pub mod sni;
pub mod stream;
pub mod ticket;

pub use peer::{client_cert_info, ClientCertInfo};

#[cfg(test)]
mod tests;
