//! The raw `[server.tls]`, `[[server.tls.certificates]]` and `[upstreams.tls]` tables
//! (see `super` for the conventions; `validate/tls.rs` loads them).

use serde::Deserialize;
use toml::Spanned;

use super::{default_spanned, spanned_str};

/// `[server.tls]`: TLS termination. Absent = no TLS listener. Validation turns it
/// into `crate::tls::ServerTls`, every certificate and key loaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileTls {
    pub listen: Spanned<Vec<Spanned<String>>>,
    /// Offered in this order: `http/1.1` (`h2` is refused until HTTP/2 is served).
    pub alpn: Spanned<Vec<Spanned<String>>>,
    /// `1.2` | `1.3`.
    pub min_version: Spanned<String>,
    pub session_tickets: bool,
    pub handshake_timeout_ms: Spanned<u64>,
    /// `none` | `optional` | `required`.
    pub client_auth: Spanned<String>,
    /// PEM CAs client certificates must chain to; `""` = none.
    pub client_ca_file: Spanned<String>,
    pub redirect_http: bool,
    pub hsts_max_age_s: Spanned<u64>,
    /// Chosen by SNI; the first is the default certificate.
    pub certificates: Spanned<Vec<FileTlsCertificate>>,
}

impl Default for FileTls {
    fn default() -> Self {
        FileTls {
            listen: default_spanned(vec![spanned_str("0.0.0.0:8443")]),
            alpn: default_spanned(vec![spanned_str("http/1.1")]),
            min_version: spanned_str("1.2"),
            session_tickets: true,
            handshake_timeout_ms: default_spanned(10_000),
            client_auth: spanned_str("none"),
            client_ca_file: spanned_str(""),
            redirect_http: false,
            hsts_max_age_s: default_spanned(0),
            certificates: default_spanned(Vec::new()),
        }
    }
}

/// `[[server.tls.certificates]]`: one PEM chain and its key, for some SNI names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTlsCertificate {
    /// Empty (or absent): the certificate's own subjectAltName DNS names.
    #[serde(default)]
    pub server_names: Vec<Spanned<String>>,
    pub cert_file: Spanned<String>,
    pub key_file: Spanned<String>,
}

/// `[upstreams.tls]`: TLS to the upstream's `https://` servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileUpstreamTls {
    /// SNI and the name verified; `""` = each server's host.
    pub server_name: Spanned<String>,
    /// PEM CAs to trust; `""` = the system's roots.
    pub ca_file: Spanned<String>,
    /// Client certificate (mTLS to the upstream), with `key_file`.
    pub cert_file: Spanned<String>,
    pub key_file: Spanned<String>,
    /// false only for tests: `ringgate check` warns.
    pub verify: Spanned<bool>,
}

impl Default for FileUpstreamTls {
    fn default() -> Self {
        FileUpstreamTls {
            server_name: spanned_str(""),
            ca_file: spanned_str(""),
            cert_file: spanned_str(""),
            key_file: spanned_str(""),
            verify: default_spanned(true),
        }
    }
}
