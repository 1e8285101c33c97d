//! TLS termination settings, loaded once at validation ([`ServerTls`], held by
//! `Config::tls`), and the rustls `ServerConfig` each worker builds from them
//! ([`ServerTls::server_config`]).
//!
//! Reload: validation reads every certificate, key and CA file again, so a reloaded
//! `Config` carries a new `ServerTls`; a worker that takes it builds a new
//! `ServerConfig` for new handshakes while open connections keep the one they started
//! with (each connection holds its own `Arc`). A bad file fails the load and the old
//! configuration, certificates included, stays.
//!
//! What each worker's `ServerConfig` holds (shared nothing between workers beyond
//! read-only data: the name index and the CA store):
//! - the ring provider; versions TLS 1.3 and, unless `min_version = "1.3"`, TLS 1.2;
//! - ALPN from `alpn` (a client offering only protocols not listed gets rustls's
//!   `no_application_protocol` alert; a client offering none is served);
//! - an [`SniResolver`] over its own key objects (see `sni.rs`);
//! - session tickets from a [`Ticketer`] whose keys every worker derives alike (see
//!   `ticket.rs`), when `session_tickets = true`;
//! - a stateful session cache of [`SESSION_CACHE_PER_WORKER`] entries: the only
//!   resumption with `session_tickets = false`, and TLS 1.2 clients that resume by
//!   session id. It is per worker, so such a resumption works only when the client's new
//!   connection lands on the same worker (SO_REUSEPORT hashes the 4-tuple, so 1 in N);
//!   tickets are what make resumption work across workers. At most 1024 entries of a
//!   few hundred bytes: under 0.5 MiB per worker;
//! - `send_tls13_tickets` = 2 with tickets on (a client can open two resumed
//!   connections at once, as browsers and connection pools do; OpenSSL, so nginx, also
//!   sends 2; one more ticket is one more AES-GCM seal, ~1 µs against a handshake), 1
//!   with them off (each stateful ticket is an entry of a per-worker cache);
//! - client certificates per `client_auth`: `WebPkiClientVerifier` on `client_ca_file`,
//!   with unauthenticated clients allowed for `optional`;
//! - `max_fragment_size`: rustls's default (16 KiB records); no early data.

use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::ServerConfig;

use super::load::{self, LoadedCert, Roots};
use super::sni::{CertIndex, SniResolver};
use super::ticket::Ticketer;

/// Stateful sessions each worker remembers (see the module comment).
pub const SESSION_CACHE_PER_WORKER: usize = 1024;

/// The lowest protocol version accepted (`min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// `client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate asked for.
    None,
    /// Asked for; a client without one is served, one with a bad one is refused.
    Optional,
    /// A client without a valid certificate fails the handshake.
    Required,
}

/// `[server.tls]` values other than files, typed.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// ALPN protocol ids, in preference order (`b"http/1.1"`).
    pub alpn: Vec<Vec<u8>>,
    pub min_version: TlsVersion,
    pub session_tickets: bool,
    /// A handshake not finished in this time is closed.
    pub handshake_timeout: Duration,
    pub client_auth: ClientAuth,
    /// Requests on the plain listeners get a 308 to the HTTPS listener.
    pub redirect_http: bool,
    /// `Strict-Transport-Security: max-age=N` on HTTPS responses; 0 = not sent.
    pub hsts_max_age_s: u64,
}

/// One `[[server.tls.certificates]]` entry, loaded.
#[derive(Debug)]
pub struct ServerCert {
    /// The names it is chosen for, lower-case (`*.example.com` for a wildcard).
    pub names: Vec<String>,
    /// `server_names` was empty: `names` are the certificate's own DNS names.
    pub names_from_certificate: bool,
    pub cert: LoadedCert,
}

/// `client_ca_file`, loaded.
#[derive(Debug, Clone)]
pub struct ClientCa {
    pub file: String,
    pub roots: Roots,
}

/// Everything TLS termination needs, loaded and checked: built once per load of the
/// configuration, shared by the workers (`Arc`), never touched per handshake except
/// through the per-worker `ServerConfig` it makes.
pub struct ServerTls {
    pub settings: TlsSettings,
    /// In file order; the first is the default certificate.
    pub certificates: Vec<ServerCert>,
    /// Present exactly when `client_auth` is not `None`.
    pub client_ca: Option<ClientCa>,
    index: Arc<CertIndex>,
    hsts: Option<String>,
    ticket_context: [u8; 32],
}

impl std::fmt::Debug for ServerTls {
    // Names, files and dates; key material never (LoadedCert's Debug holds none).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("settings", &self.settings)
            .field("certificates", &self.certificates)
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

/// Why a `ServerConfig` could not be built. Validation builds one, so at start and on
/// reload this does not happen.
#[derive(Debug, thiserror::Error)]
pub enum ServerConfigError {
    #[error("TLS protocol versions: {0}")]
    Versions(rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
}

impl ServerTls {
    /// Assemble the loaded parts. `certificates` is not empty; `client_ca` is given
    /// exactly when `settings.client_auth` is not `None` (validation sees to both).
    pub fn new(
        settings: TlsSettings,
        certificates: Vec<ServerCert>,
        client_ca: Option<ClientCa>,
    ) -> ServerTls {
        let names: Vec<Vec<String>> = certificates.iter().map(|c| c.names.clone()).collect();
        let hsts =
            (settings.hsts_max_age_s > 0).then(|| format!("max-age={}", settings.hsts_max_age_s));
        // Tickets skip the client-certificate check on resumption: bind them to the
        // policy and the CAs it trusts (see ticket.rs).
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(match settings.client_auth {
            ClientAuth::None => b"none",
            ClientAuth::Optional => b"optn",
            ClientAuth::Required => b"reqd",
        });
        if let Some(ca) = &client_ca {
            ctx.update(&ca.roots.digest);
        }
        let mut ticket_context = [0u8; 32];
        ticket_context.copy_from_slice(ctx.finish().as_ref());
        ServerTls {
            settings,
            certificates,
            client_ca,
            index: Arc::new(CertIndex::new(&names)),
            hsts,
            ticket_context,
        }
    }

    /// The value of `Strict-Transport-Security` for HTTPS responses, if any
    /// (`max-age=31536000`), made once.
    pub fn hsts(&self) -> Option<&str> {
        self.hsts.as_deref()
    }

    /// The certificates a client asking for `sni` may get, best first (see `sni.rs`).
    pub fn candidates(&self, sni: Option<&str>) -> &[usize] {
        self.index.candidates(sni)
    }

    /// A rustls `ServerConfig` for one worker: call it once per worker (and again
    /// after each reload), never per connection. Everything mutable in it (the session
    /// cache, the ticketer, the key objects) is the worker's own.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, ServerConfigError> {
        let provider = load::provider();
        let versions: &[&'static rustls::SupportedProtocolVersion] = match self.settings.min_version
        {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(ServerConfigError::Versions)?;
        let builder = match (&self.client_ca, self.settings.client_auth) {
            (Some(ca), ClientAuth::Optional | ClientAuth::Required) => {
                let v = WebPkiClientVerifier::builder_with_provider(
                    ca.roots.store.clone(),
                    provider.clone(),
                );
                let v = if self.settings.client_auth == ClientAuth::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(v.build().map_err(ServerConfigError::Verifier)?)
            }
            _ => builder.with_no_client_auth(),
        };
        let keys = self
            .certificates
            .iter()
            .map(|c| c.cert.certified_key_for_worker())
            .collect();
        let mut cfg =
            builder.with_cert_resolver(Arc::new(SniResolver::new(self.index.clone(), keys)));
        cfg.alpn_protocols = self.settings.alpn.clone();
        cfg.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_PER_WORKER);
        if self.settings.session_tickets {
            cfg.ticketer = Arc::new(Ticketer::new(self.ticket_context));
            cfg.send_tls13_tickets = 2;
        } else {
            cfg.send_tls13_tickets = 1;
        }
        cfg.max_fragment_size = None;
        cfg.max_early_data_size = 0;
        Ok(Arc::new(cfg))
    }
}
