//! TLS on rustls (ring provider): termination on `server.tls.listen` and TLS to
//! `https://` upstreams.
//!
//! - [`stream`]: the TLS stream over a monoio `TcpStream`, on rustls's unbuffered API
//!   so that the buffers are ours (from the worker's pool) and an idle connection
//!   keeps only rustls's connection state.
pub mod rent;
pub mod stream;

use std::sync::Arc;

use crate::config::Config;

/// A verified client certificate, as the upstream is told of it
/// (`X-Client-Cert-Subject`, `X-Client-Cert-SHA256`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// RFC 4514 form, e.g. `CN=device-17,O=Example`.
    pub subject: String,
    /// Lower-case hex SHA-256 of the certificate's DER.
    pub sha256: String,
}

/// What the upstream is told of a client certificate (stub until the X.509 reader).
pub fn client_cert_info(der: &[u8]) -> Option<ClientCert> {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    Some(ClientCert {
        subject: String::new(),
        sha256: hex::encode(d.as_ref()),
    })
}

/// A worker's TLS server configuration, when TLS is configured.
pub fn server_config(cfg: &Config) -> Option<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let tls = cfg.server.tls.as_ref()?;
    let first = tls.certificates.get_ref().first()?;
    let certs = CertificateDer::pem_file_iter(&first.cert_file)
        .ok()?
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(&first.key_file).ok()?;
    let provider = provider();
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .ok()?;
    c.alpn_protocols = tls.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Some(Arc::new(c))
}

/// The crypto provider of every TLS configuration: ring, the one crypto stack of the
/// gateway (JWT signatures use it too). rustls 0.23.48 marks ring's provider
/// deprecated because it has no post-quantum key exchange (X25519MLKEM768 comes with
/// aws-lc-rs only); classical X25519 and P-256 are what nginx with OpenSSL 3.0 offers.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
