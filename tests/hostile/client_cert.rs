//! `tls::client_cert_info` on arbitrary bytes (a client certificate's DER, as a client
//! sends it): never panics; when it answers, the subject is printable ASCII (it becomes
//! the `X-Client-Cert-Subject` header: no CR, LF, NUL, DEL or non-ASCII byte can reach
//! it), at most `MAX_SUBJECT_BYTES`, and the fingerprint is the lowercase hex SHA-256
//! of exactly the bytes given. The same bytes always give the same answer.

use ringgate::tls::peer::MAX_SUBJECT_BYTES;
use ringgate::tls::{client_cert_info, ClientCertInfo};

use super::ensure;

/// Returns whether the bytes were taken as a certificate.
pub fn check(data: &[u8]) -> bool {
    let Some(info) = client_cert_info(data) else {
        return false;
    };
    let ClientCertInfo { subject, sha256 } = &info;
    ensure(
        subject.len() <= MAX_SUBJECT_BYTES,
        "subject longer than MAX_SUBJECT_BYTES",
        data,
    );
    ensure(
        subject.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "subject holds a control or non-ASCII byte",
        data,
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let want: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    ensure(*sha256 == want, "sha256 is not the input's", data);
    ensure(
        client_cert_info(data).as_ref() == Some(&info),
        "a second call answers differently",
        data,
    );
    true
}
