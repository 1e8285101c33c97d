//! `[server.tls]` and `[upstreams.tls]`: checked, and every file they name read, into
//! the types TLS serves with (`crate::tls::ServerTls`, `crate::tls::UpstreamTls`).
//! Reading the files here is what makes a bad certificate or key fail `ringgate
//! check`, start and reload alike (a failed reload keeps the running certificates).
//!
//! Decisions that are not in the spec's comments:
//! - `alpn` knows `http/1.1` only: `h2` is refused with a message saying HTTP/2 is not
//!   served yet (offering it would make clients speak HTTP/2 to an HTTP/1.1 server),
//!   and an empty list too (without ALPN, an h2-only client would not get the clean
//!   `no_application_protocol` alert; clients that send no ALPN are served either way).
//! - `client_ca_file` with `client_auth = "none"` is refused: it would do nothing, and
//!   the likely intent was mTLS.
//! - A certificate without `server_names` serves its own subjectAltName DNS names; a
//!   later one with neither could never be chosen and is refused.
//! - `[upstreams.tls]` on an upstream without an `https://` server is refused: its
//!   servers would be spoken to in plain text despite the table.
//! - `verify = false` ignores `ca_file` (and `ringgate check` warns).

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::super::file::{FileTls, FileUpstream, FileUpstreamTls};
use super::super::HostMatch;
use super::{rules, ConfigError, Cx};
use crate::tls::client::{self, Trust, UpstreamTls, UpstreamTlsError};
use crate::tls::load::{self, LoadedCert, PairFile, TlsFileError};
use crate::tls::server::{ClientAuth, ClientCa, ServerCert, ServerTls, TlsSettings, TlsVersion};

/// Largest `hsts_max_age_s`: delta-seconds beyond 2^31 - 1 are not portable (RFC 9111
/// 1.2.2), and two years, the preload list's usual value, is far below.
const MAX_HSTS_S: u64 = (1 << 31) - 1;

/// A file-loading error at the key that names the file (`cert_file`, `key_file`, ...).
pub(super) fn file_error(
    cx: &Cx,
    e: TlsFileError,
    (key, v): (&str, &Spanned<String>),
) -> ConfigError {
    let site = cx.at(key, v);
    let reason = e.to_string();
    match e {
        TlsFileError::Unreadable { .. } => ConfigError::TlsFileUnreadable { site, reason },
        TlsFileError::Contents { .. } => ConfigError::TlsFileContents { site, reason },
        TlsFileError::KeyMismatch { .. } => ConfigError::TlsKeyMismatch { site, reason },
    }
}

/// A certificate and key pair, an error pointing at the file it is about.
fn load_pair(
    cx: &Cx,
    cert: (&str, &Spanned<String>),
    key: (&str, &Spanned<String>),
) -> Result<LoadedCert, ConfigError> {
    LoadedCert::load_located(Path::new(cert.1.get_ref()), Path::new(key.1.get_ref())).map_err(
        |(which, e)| match which {
            PairFile::Cert => file_error(cx, e, cert),
            PairFile::Key => file_error(cx, e, key),
        },
    )
}

fn non_empty(cx: &Cx, key: &str, v: &Spanned<String>) -> Result<(), ConfigError> {
    if v.get_ref().trim().is_empty() {
        return Err(ConfigError::EmptyName {
            site: cx.at(key, v),
        });
    }
    Ok(())
}

/// `[server.tls]` -> (the HTTPS listen addresses, everything else loaded).
pub(super) fn server(cx: &Cx, t: &FileTls) -> Result<(Vec<SocketAddr>, ServerTls), ConfigError> {
    let mut listen = Vec::new();
    for (i, a) in t.listen.get_ref().iter().enumerate() {
        listen.push(cx.socket_addr(&format!("server.tls.listen[{i}]"), a)?);
    }
    if listen.is_empty() {
        return Err(ConfigError::NoTlsListener {
            site: cx.site("server.tls.listen", t.listen.span(), "[]".to_owned()),
        });
    }
    let alpn = alpn(cx, &t.alpn)?;
    let min_version = match t.min_version.get_ref().as_str() {
        "1.2" => TlsVersion::Tls12,
        "1.3" => TlsVersion::Tls13,
        _ => {
            return Err(ConfigError::BadTlsVersion {
                site: cx.at("server.tls.min_version", &t.min_version),
            })
        }
    };
    let handshake_timeout: Duration =
        cx.millis("server.tls.handshake_timeout_ms", &t.handshake_timeout_ms)?;
    cx.at_most(
        "server.tls.hsts_max_age_s",
        &t.hsts_max_age_s,
        MAX_HSTS_S,
        "s",
    )?;
    let client_auth = match t.client_auth.get_ref().as_str() {
        "none" => ClientAuth::None,
        "optional" => ClientAuth::Optional,
        "required" => ClientAuth::Required,
        _ => {
            return Err(ConfigError::BadClientAuth {
                site: cx.at("server.tls.client_auth", &t.client_auth),
            })
        }
    };
    let ca_file = &t.client_ca_file;
    let client_ca = match (client_auth, ca_file.get_ref().trim().is_empty()) {
        (ClientAuth::None, true) => None,
        (ClientAuth::None, false) => {
            return Err(ConfigError::ClientCaUnused {
                site: cx.at("server.tls.client_ca_file", ca_file),
            })
        }
        (_, true) => {
            return Err(ConfigError::NoClientCa {
                site: cx.at("server.tls.client_auth", &t.client_auth),
            })
        }
        (_, false) => {
            let roots = load::read_roots(Path::new(ca_file.get_ref()))
                .map_err(|e| file_error(cx, e, ("server.tls.client_ca_file", ca_file)))?;
            Some(ClientCa {
                file: ca_file.get_ref().clone(),
                roots,
            })
        }
    };
    let certificates = certificates(cx, t)?;
    let settings = TlsSettings {
        alpn,
        min_version,
        session_tickets: t.session_tickets,
        handshake_timeout,
        client_auth,
        redirect_http: t.redirect_http,
        hsts_max_age_s: *t.hsts_max_age_s.get_ref(),
    };
    let tls = ServerTls::new(settings, certificates, client_ca);
    // Build one worker's config now, so that nothing left can fail at start.
    if let Err(e) = tls.server_config() {
        return Err(ConfigError::TlsFileContents {
            site: cx.at("server.tls.client_ca_file", ca_file),
            reason: e.to_string(),
        });
    }
    Ok((listen, tls))
}

fn alpn(cx: &Cx, v: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<Vec<u8>>, ConfigError> {
    if v.get_ref().is_empty() {
        return Err(ConfigError::BadAlpn {
            site: cx.site("server.tls.alpn", v.span(), "[]".to_owned()),
            reason: "an empty list turns ALPN off, and an h2-only client would then not be refused cleanly: give [\"http/1.1\"]",
        });
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for (i, p) in v.get_ref().iter().enumerate() {
        let reason = match p.get_ref().as_str() {
            "http/1.1" if out.iter().any(|o| o == b"http/1.1") => "listed twice",
            "http/1.1" => {
                out.push(b"http/1.1".to_vec());
                continue;
            }
            "h2" => "h2 (HTTP/2) is not served yet: offer only \"http/1.1\"",
            _ => "unknown protocol: expected \"http/1.1\" (\"h2\" once HTTP/2 is served)",
        };
        return Err(ConfigError::BadAlpn {
            site: cx.at(format!("server.tls.alpn[{i}]"), p),
            reason,
        });
    }
    Ok(out)
}

fn certificates(cx: &Cx, t: &FileTls) -> Result<Vec<ServerCert>, ConfigError> {
    if t.certificates.get_ref().is_empty() {
        return Err(ConfigError::NoTlsCertificates {
            site: cx.site(
                "server.tls.certificates",
                t.certificates.span(),
                "[]".to_owned(),
            ),
        });
    }
    let mut out = Vec::new();
    for (i, c) in t.certificates.get_ref().iter().enumerate() {
        let key = format!("server.tls.certificates[{i}]");
        let mut names = Vec::new();
        for (j, name) in c.server_names.iter().enumerate() {
            let pattern = rules::parse_host_pattern(name.get_ref()).map_err(|reason| {
                ConfigError::BadHost {
                    site: cx.at(format!("{key}.server_names[{j}]"), name),
                    reason,
                }
            })?;
            names.push(match pattern {
                HostMatch::Exact(n) => n,
                HostMatch::Suffix(s) => format!("*{s}"),
            });
        }
        let cert_key = format!("{key}.cert_file");
        let key_key = format!("{key}.key_file");
        non_empty(cx, &cert_key, &c.cert_file)?;
        non_empty(cx, &key_key, &c.key_file)?;
        let cert = load_pair(cx, (&cert_key, &c.cert_file), (&key_key, &c.key_file))?;
        let names_from_certificate = names.is_empty();
        if names_from_certificate {
            names = cert.details.dns_names.clone();
            if names.is_empty() && i > 0 {
                return Err(ConfigError::TlsCertNeverChosen {
                    site: cx.at(cert_key, &c.cert_file),
                });
            }
        }
        out.push(ServerCert {
            names,
            names_from_certificate,
            cert,
        });
    }
    Ok(out)
}

/// The first value written in the table, to point at it (an empty table: `fallback`).
fn table_span(t: &FileUpstreamTls, fallback: Range<usize>) -> Range<usize> {
    [
        t.server_name.span(),
        t.ca_file.span(),
        t.cert_file.span(),
        t.key_file.span(),
        t.verify.span(),
    ]
    .into_iter()
    .filter(|s| *s != (0..0))
    .min_by_key(|s| s.start)
    .unwrap_or(fallback)
}

/// `[upstreams.tls]` of upstream `key` (`upstreams."name"`). `https` lists, for each
/// server, its `host:port` when it is `https://` and its key and written value (for
/// errors about it). `None` when no server is `https://`.
pub(super) fn upstream(
    cx: &Cx,
    key: &str,
    u: &FileUpstream,
    https: &[Option<(String, String, Spanned<String>)>],
) -> Result<Option<UpstreamTls>, ConfigError> {
    let first_https = https.iter().flatten().next();
    let Some((first_key, _, first_value)) = first_https else {
        if let Some(t) = &u.tls {
            let span = table_span(t, u.name.span());
            return Err(ConfigError::UpstreamTlsUnused {
                site: cx.site(format!("{key}.tls"), span, String::new()),
            });
        }
        return Ok(None);
    };
    let t = u.tls.clone().unwrap_or_default();
    let k = |name: &str| format!("{key}.tls.{name}");
    // A value left at its default points at the first https:// server instead.
    let at_or_server = |name: &str, v: &Spanned<String>| {
        if v.span() == (0..0) {
            cx.at(first_key.clone(), first_value)
        } else {
            cx.at(k(name), v)
        }
    };
    let server_name =
        (!t.server_name.get_ref().is_empty()).then(|| t.server_name.get_ref().clone());
    // Each server's name, checked here to point at the right entry.
    for (label, skey, value) in https.iter().flatten().map(|(s, l, v)| (l, s, v)) {
        if let Err(UpstreamTlsError::BadServerName(_)) =
            client::server_name_for(server_name.as_deref(), label)
        {
            return Err(ConfigError::BadTlsServerName {
                site: match &server_name {
                    Some(_) => cx.at(k("server_name"), &t.server_name),
                    None => cx.at(skey.clone(), value),
                },
            });
        }
    }
    let trust = if !*t.verify.get_ref() {
        Trust::Off
    } else if !t.ca_file.get_ref().trim().is_empty() {
        let file = t.ca_file.get_ref().clone();
        let ca_key = k("ca_file");
        let roots = load::read_roots(Path::new(&file))
            .map_err(|e| file_error(cx, e, (&ca_key, &t.ca_file)))?;
        Trust::CaFile { file, roots }
    } else {
        match client::system_roots() {
            Ok((store, count)) => Trust::System { store, count },
            Err(e) => {
                return Err(ConfigError::NoSystemRoots {
                    site: at_or_server("ca_file", &t.ca_file),
                    reason: e.to_string(),
                })
            }
        }
    };
    let given = |v: &Spanned<String>| !v.get_ref().trim().is_empty();
    let client_cert = match (given(&t.cert_file), given(&t.key_file)) {
        (false, false) => None,
        (true, false) => {
            return Err(ConfigError::TlsKeyPairIncomplete {
                site: cx.at(k("cert_file"), &t.cert_file),
                missing: "key_file",
            })
        }
        (false, true) => {
            return Err(ConfigError::TlsKeyPairIncomplete {
                site: cx.at(k("key_file"), &t.key_file),
                missing: "cert_file",
            })
        }
        (true, true) => {
            let (ck, kk) = (k("cert_file"), k("key_file"));
            Some(load_pair(cx, (&ck, &t.cert_file), (&kk, &t.key_file))?)
        }
    };
    let labels: Vec<Option<&str>> = https
        .iter()
        .map(|s| s.as_ref().map(|(_, label, _)| label.as_str()))
        .collect();
    UpstreamTls::new(trust, server_name, client_cert, &labels)
        .map(Some)
        .map_err(|e| ConfigError::TlsFileContents {
            site: at_or_server("cert_file", &t.cert_file),
            reason: e.to_string(),
        })
}
