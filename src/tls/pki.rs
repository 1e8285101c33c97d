//! Certificates made on the spot with rcgen (ring keys): a throw-away CA that issues
//! server and client certificates, and the self-signed certificate `ringgate demo`
//! serves. For tests, benches and the demo only: nothing on the serving path calls this,
//! and a gateway's real certificates always come from files (`[[server.tls.certificates]]`).
//!
//! ```
//! use ringgate::tls::pki::{CertSpec, TestCa};
//! let ca = TestCa::new("Test CA").unwrap();
//! let server = ca.issue(&CertSpec::server(&["api.example.com", "*.example.com"])).unwrap();
//! let client = ca.issue(&CertSpec::client("client", "Example")).unwrap();
//! assert!(server.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! # let _ = client;
//! ```

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;

pub use rcgen::DnType;
pub use rcgen::Error as PkiError;

/// The key a certificate is made for. RSA is not here: ring cannot generate RSA keys;
/// give an existing one with [`CertSpec::key_pem`] (tests use `tests/keys/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

/// A certificate and its private key, both PEM (the key PKCS#8).
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for Issued {
    // The key is test material, but a Debug that prints keys gets copied.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_der", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// DNS names (wildcards allowed) and IP addresses, as subjectAltName entries.
    pub names: Vec<String>,
    /// The subject, in DER order (most general first: `O`, then `CN`; RFC 4514 prints
    /// it the other way round); empty: CN = the first name.
    pub subject: Vec<(DnType, String)>,
    pub key: KeyKind,
    /// A PKCS#8 PEM key to certify instead of a fresh one (RSA, or a fixed test key).
    pub key_pem: Option<String>,
    /// A client certificate (extended key usage clientAuth) rather than a server one.
    pub client: bool,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertSpec {
    /// A server certificate for `names`, valid from yesterday for a year, ECDSA P-256.
    pub fn server(names: &[&str]) -> CertSpec {
        let now = SystemTime::now();
        CertSpec {
            names: names.iter().map(|n| n.to_string()).collect(),
            subject: Vec::new(),
            key: KeyKind::EcdsaP256,
            key_pem: None,
            client: false,
            not_before: now - Duration::from_secs(86_400),
            not_after: now + Duration::from_secs(365 * 86_400),
        }
    }

    /// A client certificate with subject `CN=common_name,O=organization` (RFC 4514
    /// order; the DER holds O first, as CAs write it).
    pub fn client(common_name: &str, organization: &str) -> CertSpec {
        let mut spec = CertSpec::server(&[]);
        spec.client = true;
        spec.subject = vec![
            (DnType::OrganizationName, organization.to_owned()),
            (DnType::CommonName, common_name.to_owned()),
        ];
        spec
    }

    pub fn with_key(mut self, key: KeyKind) -> CertSpec {
        self.key = key;
        self
    }

    pub fn key_pem(mut self, pem: &str) -> CertSpec {
        self.key_pem = Some(pem.to_owned());
        self
    }

    pub fn not_after(mut self, t: SystemTime) -> CertSpec {
        self.not_after = t;
        self
    }

    fn params(&self) -> Result<CertificateParams, PkiError> {
        let mut p = CertificateParams::default();
        for n in &self.names {
            p.subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(n.clone().try_into()?),
                });
        }
        let mut dn = DistinguishedName::new();
        if self.subject.is_empty() {
            if let Some(first) = self.names.first() {
                dn.push(DnType::CommonName, first.as_str());
            }
        }
        for (ty, value) in &self.subject {
            dn.push(ty.clone(), value.as_str());
        }
        p.distinguished_name = dn;
        p.not_before = self.not_before.into();
        p.not_after = self.not_after.into();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![if self.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        p.use_authority_key_identifier_extension = true;
        Ok(p)
    }

    fn key_pair(&self) -> Result<KeyPair, PkiError> {
        if let Some(pem) = &self.key_pem {
            return KeyPair::from_pem(pem)
                .or_else(|_| KeyPair::from_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256));
        }
        KeyPair::generate_for(match self.key {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
        })
    }
}

/// A CA made for one test run (or one demo run): its certificate, to trust, and the
/// means to issue more.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A self-signed CA (`CN=common_name`), ECDSA P-256, valid for ten years.
    pub fn new(common_name: &str) -> Result<TestCa, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        p.not_before = (now - Duration::from_secs(86_400)).into();
        p.not_after = (now + Duration::from_secs(3650 * 86_400)).into();
        let cert = p.self_signed(&key)?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        })
    }

    /// A certificate signed by this CA.
    pub fn issue(&self, spec: &CertSpec) -> Result<Issued, PkiError> {
        let key = spec.key_pair()?;
        let cert = spec.params()?.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
        })
    }
}

/// A self-signed server certificate for `names`: curl (OpenSSL) trusts it with
/// `--cacert`. A rustls client does not accept an end-entity certificate as its own
/// trust anchor: for one, issue from a [`TestCa`] and trust the CA.
pub fn self_signed(names: &[&str]) -> Result<Issued, PkiError> {
    let spec = CertSpec::server(names);
    let key = spec.key_pair()?;
    let cert = spec.params()?.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
    })
}
