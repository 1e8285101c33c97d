//! TLS to `https://` upstreams: [`UpstreamTls`], built once per upstream at validation
//! from `[upstreams.tls]` (or its defaults), held by `UpstreamConfig::tls`.
//!
//! - Trust: `ca_file`, else the system's roots (rustls-native-certs, read once per
//!   process: [`system_roots`]; a restart picks up the OS's CA updates, a reload does
//!   not). No root at all is a configuration error, not a failure at the first request.
//! - Name: `server_name` for SNI and verification, else each server's own host; an IP
//!   literal is verified against the certificate's IP addresses and sends no SNI
//!   (RFC 6066 forbids IPs there).
//! - Client certificate (mTLS to the upstream): `cert_file` + `key_file`.
//! - `verify = false`: [`AcceptAnyServerCert`] accepts any chain for any name but still
//!   checks the handshake signature with the key in the presented certificate (so the
//!   peer holds that key: the connection is encrypted to *someone*, and `ringgate check`
//!   prints a WARNING).
//! - Versions TLS 1.2 and 1.3, ALPN `http/1.1`, the ring provider.
//!
//! Session resumption uses rustls's in-memory client session store (256 sessions),
//! which sits behind a `Mutex`: [`UpstreamTls::client_config_for_worker`] builds a
//! `ClientConfig` per worker (cheap: the roots and the verifier's algorithm tables are
//! shared read-only), so that lock is never contended across cores.
//! [`UpstreamTls::client_config`] is one shared config for callers that do not care.
//!
//! Pooling: a pooled connection may be reused only for the same server, SNI name and
//! client certificate. All three are fixed per (upstream, server index), so a pool per
//! upstream server keeps them apart.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::load::{self, LoadedCert, Roots};

/// Where an upstream's trust comes from.
#[derive(Debug, Clone)]
pub enum Trust {
    /// `ca_file`.
    CaFile { file: String, roots: Roots },
    /// The system's roots (`count` anchors).
    System {
        store: Arc<RootCertStore>,
        count: usize,
    },
    /// `verify = false`: nothing is verified but the handshake signature.
    Off,
}

/// One upstream's TLS settings, loaded, and the rustls client config they make.
pub struct UpstreamTls {
    pub trust: Trust,
    /// `server_name` as written; `None`: each server's host.
    pub server_name: Option<String>,
    /// mTLS to the upstream: the client certificate and key, loaded and checked.
    pub client_cert: Option<LoadedCert>,
    /// Per server of the upstream (same index as `UpstreamConfig::servers`): the name
    /// to send as SNI and verify; `None` for a plain `http://` server.
    names: Vec<Option<ServerName<'static>>>,
    shared: Arc<ClientConfig>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("trust", &self.trust)
            .field("server_name", &self.server_name)
            .field("client_cert", &self.client_cert)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// Why an upstream's TLS could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("no system CA certificates found ({0}); give ca_file, or install the system's CA bundle (e.g. ca-certificates)")]
    NoSystemRoots(String),
    #[error("not usable as a TLS server name: {0}")]
    BadServerName(String),
    #[error("cannot build the TLS client: {0}")]
    Build(String),
}

/// The system's trust anchors, read once per process (rustls-native-certs: on Linux
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` or the distribution's bundle).
pub fn system_roots() -> Result<(Arc<RootCertStore>, usize), UpstreamTlsError> {
    static ROOTS: OnceLock<Result<(Arc<RootCertStore>, usize), String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (count, _) = store.add_parsable_certificates(found.certs);
            if count == 0 {
                let why = match found.errors.first() {
                    Some(e) => e.to_string(),
                    None => "the system's CA store is empty".to_owned(),
                };
                return Err(why);
            }
            Ok((Arc::new(store), count))
        })
        .clone()
        .map_err(UpstreamTlsError::NoSystemRoots)
}

/// The name to verify for a server written `host:port` (the host of an IPv6 address in
/// brackets), or `server_name` when given.
pub fn server_name_for(
    server_name: Option<&str>,
    label: &str,
) -> Result<ServerName<'static>, UpstreamTlsError> {
    let host = match server_name {
        Some(n) => n,
        None => {
            let host = label.rsplit_once(':').map_or(label, |(h, _)| h);
            host.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
        }
    };
    ServerName::try_from(host.to_owned())
        .map_err(|_| UpstreamTlsError::BadServerName(format!("{host:?}")))
}

impl UpstreamTls {
    /// Build from loaded parts. `servers[i]` is `Some(label)` for an `https://` server
    /// (its `host:port`), `None` for a plain one.
    pub fn new(
        trust: Trust,
        server_name: Option<String>,
        client_cert: Option<LoadedCert>,
        servers: &[Option<&str>],
    ) -> Result<UpstreamTls, UpstreamTlsError> {
        let names = servers
            .iter()
            .map(|s| {
                s.map(|label| server_name_for(server_name.as_deref(), label))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shared = build(&trust, client_cert.as_ref())?;
        Ok(UpstreamTls {
            trust,
            server_name,
            client_cert,
            names,
            shared,
        })
    }

    /// The name to send as SNI and verify for server `i` of the upstream; `None` for a
    /// plain `http://` server.
    pub fn server_name(&self, i: usize) -> Option<&ServerName<'static>> {
        self.names.get(i).and_then(|n| n.as_ref())
    }

    /// One `ClientConfig` for every worker (its session store's lock is then shared).
    pub fn client_config(&self) -> &Arc<ClientConfig> {
        &self.shared
    }

    /// A `ClientConfig` of the worker's own (its own session store): call once per
    /// worker and per reload. It cannot fail: the same build succeeded at validation.
    pub fn client_config_for_worker(&self) -> Arc<ClientConfig> {
        build(&self.trust, self.client_cert.as_ref()).unwrap_or_else(|_| self.shared.clone())
    }
}

fn build(
    trust: &Trust,
    client_cert: Option<&LoadedCert>,
) -> Result<Arc<ClientConfig>, UpstreamTlsError> {
    let err = |e: &dyn std::fmt::Display| UpstreamTlsError::Build(e.to_string());
    {
        let provider = load::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| err(&e))?;
        let builder = match trust {
            Trust::Off => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                    algorithms: provider.signature_verification_algorithms,
                })),
            Trust::CaFile { roots, .. } => builder.with_webpki_verifier(
                WebPkiServerVerifier::builder_with_provider(roots.store.clone(), provider.clone())
                    .build()
                    .map_err(|e| err(&e))?,
            ),
            Trust::System { store, .. } => builder.with_webpki_verifier(
                WebPkiServerVerifier::builder_with_provider(store.clone(), provider.clone())
                    .build()
                    .map_err(|e| err(&e))?,
            ),
        };
        let mut cfg = match client_cert {
            Some(c) => builder
                .with_client_auth_cert(c.chain().to_vec(), c.key_der())
                .map_err(|e| err(&e))?,
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// `verify = false`: any certificate, any name, any date; the handshake signature is
/// still checked against the presented certificate's key, with the provider's
/// algorithms, so the peer does hold that key.
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
