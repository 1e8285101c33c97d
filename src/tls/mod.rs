//! TLS on rustls (ring provider): termination on `server.tls.listen` and TLS to
//! `https://` upstreams.
//!
//! - [`stream`]: the TLS stream over a monoio `TcpStream`, on rustls's unbuffered API
//!   so that the buffers are ours (from the worker's pool) and an idle connection
//!   keeps only rustls's connection state.
//! - [`server`]: [`ServerTls`], the `[server.tls]` settings with every certificate
//!   loaded (built by validation, held by `Config::tls`), and the per-worker rustls
//!   `ServerConfig` made from it; [`sni`] chooses a certificate by SNI and [`ticket`]
//!   makes session tickets every worker can open.
//! - [`client`]: [`UpstreamTls`], one upstream's `[upstreams.tls]` (held by
//!   `UpstreamConfig::tls`), and its rustls `ClientConfig`.
//! - [`peer`]: a client certificate's subject and fingerprint, for the upstream.
//! - [`load`]: reading PEM certificates, keys and CA bundles, with errors that name the
//!   file and never its contents.
//! - [`pki`]: certificates made with rcgen, for tests and `ringgate demo` only.
//! - [`rent`]: monoio's owned buffers seen as slices (the TLS code's only `unsafe`).
//!
//! Nothing here runs per request: configs are built once per worker (and per reload);
//! per handshake rustls calls the resolver, the ticketer and the verifiers.
pub mod client;
pub mod load;
pub mod peer;
pub mod pki;
pub mod rent;
pub mod server;
pub mod sni;
pub mod stream;
pub mod ticket;

pub use client::UpstreamTls;
pub use load::provider;
pub use peer::{client_cert_info, ClientCertInfo};
pub use server::ServerTls;

#[cfg(test)]
pub(crate) mod tests;

/// A verified client certificate, as the upstream is told of it.
pub type ClientCert = ClientCertInfo;

/// A worker's TLS server configuration, when TLS is configured: its own, built from
/// the certificates loaded with `cfg` (validation built one already, so this does not
/// fail on a configuration that loaded).
pub fn server_config(cfg: &crate::config::Config) -> Option<std::sync::Arc<rustls::ServerConfig>> {
    cfg.tls.as_ref()?.server_config().ok()
}

/// A worker's TLS client state for an upstream with `https://` servers: its own
/// client configuration (its own resumption store) and each server's name.
pub fn upstream_state(
    cfg: &crate::config::UpstreamConfig,
) -> Option<crate::upstream::UpstreamTlsState> {
    let tls = cfg.tls.as_ref()?;
    Some(crate::upstream::UpstreamTlsState {
        config: tls.client_config_for_worker(),
        names: (0..cfg.servers.len())
            .map(|i| tls.server_name(i).cloned())
            .collect(),
    })
}
