//! What the upstream learns about a client certificate: [`client_cert_info`] turns the
//! DER of the leaf a client presented (already verified by rustls against
//! `client_ca_file`) into its subject and SHA-256 fingerprint, the values of
//! `X-Client-Cert-Subject` and `X-Client-Cert-SHA256`.
//!
//! The bytes come from the network, so this is a parser of network bytes: it never
//! panics (fuzz target `client_cert`, invariants in `tests/hostile/client_cert.rs`), and
//! the subject it returns is printable ASCII only, safe as a header value: every control
//! character, DEL and non-ASCII byte is escaped RFC 4514 style (`\0a`, `\c3\a9`), so a
//! CN holding CR LF cannot split a header.

use x509_cert::der::Decode as _;

/// Longest subject passed on, after escaping. A longer one is refused (`None`) rather
/// than cut, since a cut subject could read as another identity.
pub const MAX_SUBJECT_BYTES: usize = 2048;

/// A client certificate as the upstream sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertInfo {
    /// The subject in RFC 4514 form, most specific first: `CN=client,O=Example`.
    /// Printable ASCII only (see [`escape_subject`]); empty for an empty subject.
    pub subject: String,
    /// Lowercase hex SHA-256 of the certificate's DER (64 characters), the fingerprint
    /// `openssl x509 -fingerprint -sha256` prints (without its colons).
    pub sha256: String,
}

/// The subject and fingerprint of a DER certificate; `None` when the bytes are not an
/// X.509 certificate or the subject is longer than [`MAX_SUBJECT_BYTES`].
pub fn client_cert_info(der: &[u8]) -> Option<ClientCertInfo> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let subject = escape_subject(&cert.tbs_certificate().subject().to_string());
    if subject.len() > MAX_SUBJECT_BYTES {
        return None;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    Some(ClientCertInfo {
        subject,
        sha256: hex::encode(digest.as_ref()),
    })
}

/// An RFC 4514 string made printable ASCII: each byte of a control character (C0, DEL)
/// or of a non-ASCII character becomes a `\hh` escape, which RFC 4514 section 2.4 allows
/// for any byte of a value. x509-cert already escapes the special characters
/// (`, + " \ < > ;`) and C0 controls; this also covers DEL, C1 controls (U+0085...),
/// line and paragraph separators and every other non-ASCII character.
pub fn escape_subject(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push('\\');
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pki::{CertSpec, DnType, TestCa};

    #[test]
    fn subject_in_rfc4514_order_and_fingerprint_of_the_der() {
        let ca = TestCa::new("Test CA").unwrap();
        let c = ca.issue(&CertSpec::client("client", "Example")).unwrap();
        let info = client_cert_info(&c.cert_der).unwrap();
        assert_eq!(info.subject, "CN=client,O=Example");
        let want = hex::encode(ring::digest::digest(&ring::digest::SHA256, &c.cert_der));
        assert_eq!(info.sha256, want);
        assert_eq!(info.sha256.len(), 64);
        assert!(info
            .sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn controls_and_non_ascii_are_escaped_specials_too() {
        let ca = TestCa::new("Test CA").unwrap();
        let mut spec = CertSpec::client("x", "y");
        spec.subject = vec![
            (
                DnType::OrganizationName,
                "Caf\u{e9}, Inc+\u{85}\u{7f}".to_owned(),
            ),
            (DnType::CommonName, "evil\r\nX-Injected: 1".to_owned()),
        ];
        let c = ca.issue(&spec).unwrap();
        let info = client_cert_info(&c.cert_der).unwrap();
        assert_eq!(
            info.subject,
            "CN=evil\\0d\\0aX-Injected: 1,O=Caf\\c3\\a9\\, Inc\\+\\c2\\85\\7f"
        );
        assert!(info.subject.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn not_a_certificate_is_none() {
        assert_eq!(client_cert_info(b""), None);
        assert_eq!(client_cert_info(b"\x30\x03\x02\x01\x01"), None);
        let ca = TestCa::new("Test CA").unwrap();
        let c = ca.issue(&CertSpec::client("client", "Example")).unwrap();
        assert_eq!(client_cert_info(&c.cert_der[..c.cert_der.len() - 1]), None);
    }

    #[test]
    fn an_overlong_subject_is_refused_not_cut() {
        let ca = TestCa::new("Test CA").unwrap();
        let mut spec = CertSpec::client("x", "y");
        // Each control character grows to three bytes once escaped.
        spec.subject = vec![(DnType::CommonName, "\u{1}".repeat(700))];
        let c = ca.issue(&spec).unwrap();
        assert_eq!(client_cert_info(&c.cert_der), None);
    }
}
