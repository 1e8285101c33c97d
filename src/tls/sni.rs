//! Choosing the certificate for a handshake by SNI, as nginx's `server_name` and
//! Envoy's filter-chain match do: an exact name first, then a wildcard, then the
//! default (the first `[[server.tls.certificates]]`) when the client sent no SNI or a
//! name no certificate lists.
//!
//! - [`CertIndex`]: names -> certificates, built once at validation and shared
//!   read-only by the workers (a lookup writes nothing, so sharing it costs no
//!   cache-line traffic).
//! - [`SniResolver`]: rustls's `ResolvesServerCert` for one worker, over the index and
//!   that worker's own key objects.
//!
//! `*.example.com` matches exactly one more label: `a.example.com`, not `example.com`
//! and not `a.b.example.com` (RFC 6125 6.4.3, what browsers accept). Names compare
//! without regard to ASCII case. Several certificates may list the same name (an ECDSA
//! and an RSA certificate for one site, as nginx allows): the first, in file order,
//! whose key can sign with a scheme the client offers is chosen, so modern clients get
//! ECDSA and old ones RSA.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

/// Longest DNS name (RFC 1035); a longer SNI matches nothing and gets the default.
const MAX_NAME: usize = 253;

/// Names -> certificate indices (positions in `[[server.tls.certificates]]`).
#[derive(Debug, Default)]
pub struct CertIndex {
    exact: HashMap<Box<str>, Vec<usize>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<Box<str>, Vec<usize>>,
    /// The first certificate and any later one that lists exactly its names.
    default: Vec<usize>,
}

impl CertIndex {
    /// `names[i]`: the names certificate `i` serves, lower-case, wildcards written
    /// `*.example.com`. At least one certificate.
    pub fn new(names: &[Vec<String>]) -> CertIndex {
        let mut index = CertIndex::default();
        for (i, list) in names.iter().enumerate() {
            for name in list {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut index.wildcard, parent.to_owned()),
                    None => (&mut index.exact, name),
                };
                let v = map.entry(key.into_boxed_str()).or_default();
                if !v.contains(&i) {
                    v.push(i);
                }
            }
            if i == 0 || (!names[0].is_empty() && same_names(&names[0], list)) {
                index.default.push(i);
            }
        }
        index
    }

    /// The certificates that may answer `sni`, best first: those listing the exact
    /// name, else those whose wildcard covers it, else the default.
    pub fn candidates(&self, sni: Option<&str>) -> &[usize] {
        let Some(sni) = sni else {
            return &self.default;
        };
        let sni = sni.strip_suffix('.').unwrap_or(sni);
        if sni.is_empty() || sni.len() > MAX_NAME {
            return &self.default;
        }
        let mut buf = [0u8; MAX_NAME];
        let lower = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            let b = &mut buf[..sni.len()];
            b.copy_from_slice(sni.as_bytes());
            b.make_ascii_lowercase();
            // Lower-casing ASCII keeps UTF-8 valid.
            std::str::from_utf8(b).unwrap_or(sni)
        } else {
            sni
        };
        if let Some(v) = self.exact.get(lower) {
            return v;
        }
        if let Some((label, parent)) = lower.split_once('.') {
            if !label.is_empty() {
                if let Some(v) = self.wildcard.get(parent) {
                    return v;
                }
            }
        }
        &self.default
    }
}

fn same_names(a: &[String], b: &[String]) -> bool {
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|n| n.to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    norm(a) == norm(b)
}

/// Would a certificate whose subjectAltName lists `cert_names` be accepted by a client
/// asking for `name` (a configured server name, possibly `*.example.com`)? For the
/// warning `ringgate check` prints when a certificate is listed for a name it does not
/// cover.
pub fn covers(cert_names: &[String], name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    cert_names.iter().any(|c| {
        let c = c.to_ascii_lowercase();
        if c == name {
            return true;
        }
        match (c.strip_prefix("*."), name.split_once('.')) {
            (Some(parent), Some((label, rest))) => {
                !label.is_empty() && label != "*" && rest == parent
            }
            _ => false,
        }
    })
}

/// Of `candidates`, the first whose key can sign with a scheme in `offered`; the first
/// when none can (the handshake then fails the way it would with that certificate
/// alone).
pub fn pick(
    candidates: &[usize],
    offered: &[SignatureScheme],
    keys: &[Arc<CertifiedKey>],
) -> Option<usize> {
    if candidates.len() > 1 {
        for &i in candidates {
            if keys
                .get(i)
                .is_some_and(|k| k.key.choose_scheme(offered).is_some())
            {
                return Some(i);
            }
        }
    }
    candidates.first().copied()
}

/// One worker's certificate resolver.
#[derive(Debug)]
pub struct SniResolver {
    index: Arc<CertIndex>,
    /// Per certificate, in file order: this worker's own key objects.
    keys: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    pub fn new(index: Arc<CertIndex>, keys: Vec<Arc<CertifiedKey>>) -> SniResolver {
        SniResolver { index, keys }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let candidates = self.index.candidates(hello.server_name());
        let i = pick(candidates, hello.signature_schemes(), &self.keys)?;
        self.keys.get(i).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> CertIndex {
        CertIndex::new(&[
            vec!["default.test".into()],
            vec!["api.example.com".into(), "*.example.com".into()],
            vec!["*.b.example.com".into()],
            vec!["API.Other.test".into()],
            vec!["default.test".into()],
        ])
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let ix = index();
        assert_eq!(ix.candidates(Some("api.example.com")), &[1]);
        assert_eq!(ix.candidates(Some("a.example.com")), &[1]);
        // A wildcard covers one label only.
        assert_eq!(ix.candidates(Some("example.com")), &[0, 4]);
        assert_eq!(ix.candidates(Some("x.b.example.com")), &[2]);
        assert_eq!(ix.candidates(Some("x.y.b.example.com")), &[0, 4]);
        assert_eq!(ix.candidates(Some("b.example.com")), &[1]);
        // No SNI, unknown names, odd shapes: the default.
        assert_eq!(ix.candidates(None), &[0, 4]);
        assert_eq!(ix.candidates(Some("nowhere.test")), &[0, 4]);
        assert_eq!(ix.candidates(Some("")), &[0, 4]);
        assert_eq!(ix.candidates(Some(".example.com")), &[0, 4]);
        assert_eq!(ix.candidates(Some(&"a".repeat(300))), &[0, 4]);
    }

    #[test]
    fn case_and_a_trailing_dot_do_not_matter() {
        let ix = index();
        assert_eq!(ix.candidates(Some("API.EXAMPLE.com")), &[1]);
        assert_eq!(ix.candidates(Some("Zz.Example.COM")), &[1]);
        assert_eq!(ix.candidates(Some("api.other.test")), &[3]);
        assert_eq!(ix.candidates(Some("api.example.com.")), &[1]);
    }

    #[test]
    fn the_same_name_twice_keeps_file_order() {
        let ix = CertIndex::new(&[
            vec!["a.test".into()],
            vec!["a.test".into(), "b.test".into()],
            vec!["b.test".into()],
        ]);
        assert_eq!(ix.candidates(Some("a.test")), &[0, 1]);
        assert_eq!(ix.candidates(Some("b.test")), &[1, 2]);
        assert_eq!(ix.candidates(None), &[0]);
    }

    #[test]
    fn coverage_by_the_certificate_names() {
        let san = vec!["api.example.com".to_owned(), "*.example.com".to_owned()];
        assert!(covers(&san, "api.example.com"));
        assert!(covers(&san, "A.Example.com"));
        assert!(covers(&san, "*.example.com"));
        assert!(!covers(&san, "example.com"));
        assert!(!covers(&san, "a.b.example.com"));
        assert!(!covers(&san, "*.b.example.com"));
        assert!(!covers(&[], "a.test"));
    }
}
