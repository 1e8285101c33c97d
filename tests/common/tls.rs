//! TLS for the end-to-end tests: certificates made at test time with rcgen (a CA, and
//! server and client certificates it signs, written to a temporary directory for the
//! gateway's config), and rustls client configurations for [`super::Client::connect_tls`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ringgate::tls::pki::{CertSpec, DnType, TestCa};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ringgate-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority that signs the test's certificates: the crate's own
/// (`ringgate::tls::pki`, which the demo uses too), with the shapes the tests want.
pub struct Ca {
    pub cert_der: CertificateDer<'static>,
    pub pem: String,
    inner: TestCa,
}

/// A certificate and its key, PEM and DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let inner = TestCa::new(name).unwrap();
        Ca {
            cert_der: inner.cert_der.clone(),
            pem: inner.cert_pem.clone(),
            inner,
        }
    }

    /// A server certificate for these DNS names (the first is also its CN).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.sign(CertSpec::server(names))
    }

    /// A client certificate with this subject (CN, then O, in DER order).
    pub fn client(&self, cn: &str, org: &str) -> Leaf {
        let mut spec = CertSpec::client(cn, org);
        spec.subject = vec![
            (DnType::CommonName, cn.to_owned()),
            (DnType::OrganizationName, org.to_owned()),
        ];
        self.sign(spec)
    }

    fn sign(&self, spec: CertSpec) -> Leaf {
        let issued = self.inner.issue(&spec).unwrap();
        let key_der = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
            .unwrap()
            .secret_der()
            .to_vec();
        Leaf {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            cert_der: issued.cert_der,
            key_der,
        }
    }

    /// Roots that trust this CA only.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).unwrap();
        roots
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.pem).unwrap();
        p
    }
}

impl Leaf {
    /// Write `<name>.crt` and `<name>.key`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// The gateway's own provider (ring, X25519 first, as real clients order it).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    ringgate::tls::provider()
}

/// A client trusting `ca`, offering these ALPN protocols, with these versions (empty:
/// both 1.2 and 1.3), and a client certificate when given.
pub fn client_config(
    ca: &Ca,
    alpn: &[&str],
    versions: &[&'static rustls::SupportedProtocolVersion],
    cert: Option<&Leaf>,
) -> Arc<rustls::ClientConfig> {
    let versions = if versions.is_empty() {
        rustls::ALL_VERSIONS
    } else {
        versions
    };
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(ca.roots());
    let mut c = match cert {
        Some(l) => b
            .with_client_auth_cert(vec![l.cert_der.clone()], l.key())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(c)
}

pub fn name(s: &str) -> ServerName<'static> {
    ServerName::try_from(s.to_owned()).unwrap()
}

/// A client that accepts any certificate (to look at which one the gateway chose).
pub fn client_config_any(alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(c)
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a [`TlsOrigin`] saw of one connection.
#[derive(Debug, Clone, Default)]
pub struct TlsSeen {
    pub sni: Option<String>,
    pub client_cert: bool,
    pub alpn: Option<Vec<u8>>,
    pub request_head: String,
}

/// An HTTPS origin: a rustls server on 127.0.0.1:0 (a thread per connection,
/// keep-alive) answering every request `200` with body `https-origin`, recording what
/// each connection's handshake and requests showed.
pub struct TlsOrigin {
    pub addr: std::net::SocketAddr,
    pub seen: Arc<std::sync::Mutex<Vec<TlsSeen>>>,
    pub handshakes: Arc<std::sync::atomic::AtomicUsize>,
}

impl TlsOrigin {
    /// Serving `leaf`; with `client_ca`, client certificates are required and
    /// verified against it.
    pub fn start(leaf: &Leaf, client_ca: Option<&Ca>) -> TlsOrigin {
        let b = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap();
        let b = match client_ca {
            Some(ca) => b.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(ca.roots()),
                    provider(),
                )
                .build()
                .unwrap(),
            ),
            None => b.with_no_client_auth(),
        };
        let mut cfg = b
            .with_single_cert(vec![leaf.cert_der.clone()], leaf.key())
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, h) = (seen.clone(), handshakes.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                let (cfg, s, h) = (cfg.clone(), s.clone(), h.clone());
                std::thread::spawn(move || serve_tls(tcp, cfg, s, h));
            }
        });
        TlsOrigin {
            addr,
            seen,
            handshakes,
        }
    }

    pub fn seen(&self) -> Vec<TlsSeen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_tls(
    mut tcp: std::net::TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    seen: Arc<std::sync::Mutex<Vec<TlsSeen>>>,
    handshakes: Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let Ok(mut conn) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return;
        }
    }
    handshakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let base = TlsSeen {
        sni: conn.server_name().map(str::to_owned),
        client_cert: conn.peer_certificates().is_some_and(|c| !c.is_empty()),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        request_head: String::new(),
    };
    let mut s = rustls::Stream::new(&mut conn, &mut tcp);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut one = base.clone();
            one.request_head = head;
            seen.lock().unwrap().push(one);
            let body = b"https-origin";
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
                body.len()
            );
            if s.write_all(resp.as_bytes())
                .and_then(|_| s.write_all(body))
                .and_then(|_| s.flush())
                .is_err()
            {
                return;
            }
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}
