//! Reading certificates, private keys and CA bundles from PEM files, once, at
//! validation (so `ringgate check`, start and reload all refuse the same bad file), into
//! the forms rustls takes.
//!
//! - [`LoadedCert`]: a chain and its key, checked to belong together
//!   (`CertifiedKey::keys_match`), with the facts `ringgate check` prints about the leaf
//!   ([`CertDetails`]: subject, DNS names, notAfter, key type).
//! - [`read_roots`]: a CA bundle as a `RootCertStore`.
//! - [`TlsFileError`]: what is wrong with a file. Messages name the file and never
//!   quote its contents (a key file's bytes are key material).
//!
//! Relative paths are relative to the working directory, like every other file the
//! configuration names.

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::der::Decode as _;

/// Larger than any real chain, key or CA bundle (the Mozilla bundle is ~220 KB): a path
/// to something else (a device, a log) fails fast instead of being read whole.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// What is wrong with a certificate, key or CA file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    /// Read, but not what was expected: no PEM item of the right kind, malformed PEM,
    /// an encrypted or unsupported key, a certificate that does not parse.
    #[error("{path}: {what}")]
    Contents { path: String, what: String },
    #[error("the private key in {key_path} does not belong to the certificate in {cert_path} (its public key differs)")]
    KeyMismatch { cert_path: String, key_path: String },
}

/// The ring provider: ringgate's only crypto stack, for servers and clients alike.
///
/// rustls 0.23.48 marks it deprecated because ring has no post-quantum key exchange
/// (X25519MLKEM768 needs aws-lc-rs). ring is the one crypto stack we keep; classical
/// X25519 / P-256 / P-384 key exchange is what it offers. Moving to a PQ-capable
/// provider is a deliberate decision for later, not a side effect of an upgrade.
///
/// Its key-exchange groups are put in the order of their cost: rustls 0.23.48 lists
/// ring's P-384 first, which makes our client (to upstreams) send a P-384 key share
/// and our server prefer P-384 when a client offers it: an ECDH on P-384 costs ring
/// about 20 times one on X25519 (`cargo bench --bench tls`). X25519, then P-256, then
/// P-384, as OpenSSL and browsers order them.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::kx_group;
    let mut p = rustls::crypto::ring::default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(p)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let unreadable = |reason: String| TlsFileError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(unreadable(format!(
            "larger than {} MiB: not a PEM file",
            MAX_FILE_BYTES >> 20
        )));
    }
    Ok(bytes)
}

fn contents(path: &Path, what: impl Into<String>) -> TlsFileError {
    TlsFileError::Contents {
        path: path.display().to_string(),
        what: what.into(),
    }
}

/// A PEM error in our words: pki-types' own messages quote lines of the file, which
/// in a key file would be key material.
fn pem_error(path: &Path, e: &pem::Error) -> TlsFileError {
    contents(
        path,
        match e {
            pem::Error::MissingSectionEnd { .. } => "malformed PEM: a section has no END line",
            pem::Error::IllegalSectionStart { .. } => "malformed PEM: a bad BEGIN line",
            pem::Error::Base64Decode(_) => "malformed PEM: bad base64 inside a section",
            pem::Error::SectionTooLarge => "malformed PEM: a section is too large",
            _ => "malformed PEM",
        },
    )
}

/// Every certificate of a PEM chain file, leaf first. Other PEM items (a key in a
/// combined file) are skipped.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if chain.is_empty() {
        return Err(contents(
            path,
            "no certificate in it: expected PEM (-----BEGIN CERTIFICATE-----), leaf first",
        ));
    }
    for (i, der) in chain.iter().enumerate() {
        if let Err(e) = x509_cert::Certificate::from_der(der) {
            return Err(contents(
                path,
                format!("certificate {} of the chain is not valid X.509: {e}", i + 1),
            ));
        }
    }
    Ok(chain)
}

/// The first private key of a PEM file: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE
/// KEY`) or SEC1 (`EC PRIVATE KEY`).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let bytes = read(path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let has = |label: &str| {
                memchr::memmem::find(&bytes, format!("-----BEGIN {label}-----").as_bytes())
                    .is_some()
            };
            Err(contents(
                path,
                if has("ENCRYPTED PRIVATE KEY") {
                    "the private key is encrypted: give it unencrypted (e.g. `openssl pkey -in KEY -out KEY.plain`), readable only by the gateway's user"
                } else if has("CERTIFICATE") {
                    "no private key in it, only a certificate (are cert_file and key_file swapped?)"
                } else {
                    "no private key in it: expected PEM PKCS#8 (PRIVATE KEY), RSA (RSA PRIVATE KEY) or SEC1 (EC PRIVATE KEY)"
                },
            ))
        }
        Err(e) => Err(pem_error(path, &e)),
    }
}

/// A CA bundle as trust anchors.
#[derive(Clone)]
pub struct Roots {
    pub store: Arc<RootCertStore>,
    /// How many certificates of the file became trust anchors.
    pub count: usize,
    /// SHA-256 over every certificate's DER, in file order: what changes when the
    /// bundle does (session tickets are bound to it, see `ticket.rs`).
    pub digest: [u8; 32],
}

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roots").field("count", &self.count).finish()
    }
}

/// A CA bundle: every certificate of a PEM file, as trust anchors. Fails when none is
/// usable.
pub fn read_roots(path: &Path) -> Result<Roots, TlsFileError> {
    let certs = read_chain(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for c in &certs {
        ctx.update(&(c.len() as u64).to_be_bytes());
        ctx.update(c);
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(ctx.finish().as_ref());
    let mut store = RootCertStore::empty();
    let (count, _ignored) = store.add_parsable_certificates(certs);
    if count == 0 {
        return Err(contents(
            path,
            "no usable CA certificate in it (none could be a trust anchor)",
        ));
    }
    Ok(Roots {
        store: Arc::new(store),
        count,
        digest,
    })
}

/// What `ringgate check` says about a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDetails {
    /// RFC 4514, e.g. `CN=api.example.com,O=Example`.
    pub subject: String,
    /// subjectAltName DNS names, lower-cased, as written (`*.example.com` stays so).
    pub dns_names: Vec<String>,
    /// notAfter, seconds since the Unix epoch.
    pub not_after_unix: u64,
    /// notAfter, RFC 3339 (`2027-03-01T00:00:00Z`).
    pub not_after: String,
    /// `ECDSA P-256`, `ECDSA P-384`, `RSA`, `Ed25519`, or the algorithm's OID.
    pub key_type: String,
}

impl CertDetails {
    /// Parse the facts out of a DER certificate.
    pub fn of(der: &[u8]) -> Result<CertDetails, String> {
        use x509_cert::ext::pkix::name::GeneralName;
        use x509_cert::ext::pkix::SubjectAltName;
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
        let tbs = cert.tbs_certificate();
        let mut dns_names = Vec::new();
        if let Ok(Some((_, san))) = tbs.get_extension::<SubjectAltName>() {
            for name in san.0 {
                if let GeneralName::DnsName(n) = name {
                    dns_names.push(n.as_str().to_ascii_lowercase());
                }
            }
        }
        let not_after = tbs.validity().not_after;
        let spki = tbs.subject_public_key_info();
        let oid = spki.algorithm.oid.to_string();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
            .map(|o| o.to_string());
        let key_type = match (oid.as_str(), curve.as_deref()) {
            ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => "ECDSA P-256".to_owned(),
            ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => "ECDSA P-384".to_owned(),
            ("1.2.840.10045.2.1", Some("1.3.132.0.35")) => "ECDSA P-521".to_owned(),
            ("1.2.840.113549.1.1.1", _) => "RSA".to_owned(),
            ("1.3.101.112", _) => "Ed25519".to_owned(),
            _ => oid,
        };
        Ok(CertDetails {
            subject: super::peer::escape_subject(&tbs.subject().to_string()),
            dns_names,
            not_after_unix: not_after.to_unix_duration().as_secs(),
            not_after: not_after.to_date_time().to_string(),
            key_type,
        })
    }
}

/// A certificate chain and its private key, read and checked once: the key loads with
/// the ring provider and is the one the leaf certifies.
pub struct LoadedCert {
    pub cert_file: String,
    pub key_file: String,
    pub details: CertDetails,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for LoadedCert {
    // Files and facts only: never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("details", &self.details)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Which file of a pair an error is about (both may be one combined PEM file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairFile {
    Cert,
    Key,
}

impl LoadedCert {
    /// Read `cert_file` (a PEM chain, leaf first) and `key_file`; check the key.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<LoadedCert, TlsFileError> {
        LoadedCert::load_located(cert_file, key_file).map_err(|(_, e)| e)
    }

    /// As [`LoadedCert::load`], saying which of the two files is wrong.
    pub fn load_located(
        cert_file: &Path,
        key_file: &Path,
    ) -> Result<LoadedCert, (PairFile, TlsFileError)> {
        let cert = |e| (PairFile::Cert, e);
        let chain = read_chain(cert_file).map_err(cert)?;
        let key = read_key(key_file).map_err(|e| (PairFile::Key, e))?;
        let details = CertDetails::of(&chain[0]).map_err(|e| cert(contents(cert_file, e)))?;
        let certified = certify(&chain, &key, cert_file, key_file)?;
        Ok(LoadedCert {
            cert_file: cert_file.display().to_string(),
            key_file: key_file.display().to_string(),
            details,
            chain,
            key,
            certified: Arc::new(certified),
        })
    }

    /// The chain and key as loaded at validation.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified
    }

    /// The same chain with a signing key of its own, parsed again from the key's DER:
    /// each worker signs with its own key object, so no reference count is shared
    /// between cores per handshake (rustls clones the `Arc`s of the resolved key and of
    /// ring's key pair for every signature).
    pub fn certified_key_for_worker(&self) -> Arc<CertifiedKey> {
        match provider()
            .key_provider
            .load_private_key(self.key.clone_key())
        {
            Ok(key) => Arc::new(CertifiedKey::new(self.chain.clone(), key)),
            // Cannot happen: the same bytes loaded at validation.
            Err(_) => self.certified.clone(),
        }
    }

    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key's DER, for rustls APIs that take it (a client certificate).
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

fn certify(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, (PairFile, TlsFileError)> {
    use rustls::{Error, InconsistentKeys};
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| {
            (PairFile::Key, contents(
                key_file,
                format!("not a usable private key ({e}): expected ECDSA P-256/P-384, RSA (2048 bits or more) or Ed25519"),
            ))
        })?;
    let certified = CertifiedKey::new(chain.to_vec(), signing);
    match certified.keys_match() {
        Ok(()) | Err(Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err((
            PairFile::Key,
            TlsFileError::KeyMismatch {
                cert_path: cert_file.display().to_string(),
                key_path: key_file.display().to_string(),
            },
        )),
        Err(e) => Err((
            PairFile::Cert,
            contents(cert_file, format!("the leaf certificate: {e}")),
        )),
    }
}
