//! Real handshakes, client and server pumped in memory: SNI and the default
//! certificate, ECDSA/Ed25519 by the client's schemes, ALPN, versions, resumption
//! across two workers' configs, client certificates, and the upstream client (verify
//! on and off, mTLS to the upstream).

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, Connection, Error, HandshakeKind,
    ProtocolVersion, ServerConfig, ServerConnection, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName};

use super::{write_pair, Dir};
use crate::tls::client::{Trust, UpstreamTls};
use crate::tls::load::{self, read_roots, LoadedCert};
use crate::tls::pki::{CertSpec, KeyKind, TestCa};
use crate::tls::server::{ClientAuth, ClientCa, ServerCert, ServerTls, TlsSettings, TlsVersion};

fn settings() -> TlsSettings {
    TlsSettings {
        alpn: vec![b"http/1.1".to_vec()],
        min_version: TlsVersion::Tls12,
        session_tickets: true,
        handshake_timeout: Duration::from_secs(10),
        client_auth: ClientAuth::None,
        redirect_http: false,
        hsts_max_age_s: 0,
    }
}

/// A CA, files in a directory, and the certificates issued so far.
struct World {
    dir: Dir,
    ca: TestCa,
    n: usize,
}

impl World {
    fn new() -> World {
        World {
            dir: Dir::new("hs"),
            ca: TestCa::new("Test CA").unwrap(),
            n: 0,
        }
    }

    fn loaded(&mut self, spec: &CertSpec) -> LoadedCert {
        self.n += 1;
        let (c, k) = write_pair(&self.dir, &self.ca, &format!("c{}", self.n), spec);
        LoadedCert::load(&c, &k).unwrap()
    }

    /// A server certificate listed for `names` (empty: the certificate's own names).
    fn cert(&mut self, names: &[&str], spec: CertSpec) -> ServerCert {
        let cert = self.loaded(&spec);
        let from_cert = names.is_empty();
        ServerCert {
            names: if from_cert {
                cert.details.dns_names.clone()
            } else {
                names.iter().map(|n| n.to_string()).collect()
            },
            names_from_certificate: from_cert,
            cert,
        }
    }

    fn ca(&self) -> ClientCa {
        let file = self.dir.write("ca.pem", &self.ca.cert_pem);
        ClientCa {
            file: file.display().to_string(),
            roots: read_roots(&file).unwrap(),
        }
    }

    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> ClientConfig {
        let file = self.dir.write("ca.pem", &self.ca.cert_pem);
        let roots = read_roots(&file).unwrap();
        let provider = load::provider();
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.store, provider.clone())
            .build()
            .unwrap();
        let mut c = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_webpki_verifier(verifier)
            .with_no_client_auth();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        c
    }
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// Move whatever `from` has to write into `to`; `Err` is `to`'s error.
fn flow(from: &mut Connection, to: &mut Connection) -> Result<bool, Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets()?;
    }
    Ok(!buf.is_empty())
}

struct Run {
    client: Connection,
    server: Connection,
    client_err: Option<Error>,
    server_err: Option<Error>,
}

impl Run {
    fn ok(&self) -> bool {
        self.client_err.is_none() && self.server_err.is_none()
    }

    /// The leaf certificate the server presented.
    fn server_cert(&self) -> &CertificateDer<'static> {
        &self
            .client
            .peer_certificates()
            .expect("a server certificate")[0]
    }
}

fn connect(client: Arc<ClientConfig>, name: ServerName<'static>, server: Arc<ServerConfig>) -> Run {
    let mut c = Connection::Client(ClientConnection::new(client, name).unwrap());
    let mut s = Connection::Server(ServerConnection::new(server).unwrap());
    let (mut client_err, mut server_err) = (None, None);
    for _ in 0..20 {
        let a = match flow(&mut c, &mut s) {
            Ok(m) => m,
            Err(e) => {
                server_err = Some(e);
                // The server's alert reaches the client.
                client_err = flow(&mut s, &mut c).err();
                break;
            }
        };
        let b = match flow(&mut s, &mut c) {
            Ok(m) => m,
            Err(e) => {
                client_err = Some(e);
                server_err = flow(&mut c, &mut s).err();
                break;
            }
        };
        if !a && !b {
            break;
        }
    }
    Run {
        client: c,
        server: s,
        client_err,
        server_err,
    }
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

/// A client that accepts any certificate: to see which one the server chose.
fn any_cert_client() -> Arc<ClientConfig> {
    UpstreamTls::new(Trust::Off, None, None, &[Some("127.0.0.1:1")])
        .unwrap()
        .client_config_for_worker()
}

#[test]
fn sni_exact_wildcard_and_default() {
    let mut w = World::new();
    let certs = vec![
        w.cert(&["default.test"], CertSpec::server(&["default.test"])),
        w.cert(
            &["api.example.com", "*.example.com"],
            CertSpec::server(&["api.example.com", "*.example.com"]),
        ),
        // No server_names: chosen by its own names.
        w.cert(&[], CertSpec::server(&["other.test"])),
    ];
    let ders: Vec<CertificateDer> = certs.iter().map(|c| c.cert.chain()[0].clone()).collect();
    let tls = ServerTls::new(settings(), certs, None);
    let server = tls.server_config().unwrap();
    let client = Arc::new(w.client(BOTH));
    for (name, want) in [
        ("api.example.com", 1),
        ("a.example.com", 1),
        ("API.Example.COM", 1),
        ("other.test", 2),
        ("default.test", 0),
    ] {
        let run = connect(client.clone(), dns(name), server.clone());
        assert!(
            run.ok(),
            "{name}: {:?} {:?}",
            run.client_err,
            run.server_err
        );
        assert_eq!(run.server_cert(), &ders[want], "{name}");
    }
    // No SNI (an IP address) and a name nothing lists: the first certificate.
    let any = any_cert_client();
    for name in [
        "127.0.0.1",
        "a.b.example.com",
        "example.com",
        "nowhere.test",
    ] {
        let n = ServerName::try_from(name.to_owned()).unwrap();
        let run = connect(any.clone(), n, server.clone());
        assert!(run.ok(), "{name}: {:?}", run.server_err);
        assert_eq!(run.server_cert(), &ders[0], "{name}");
    }
    // And a verifying client refuses the default for a name it does not cover.
    let run = connect(client, dns("a.b.example.com"), server);
    assert!(
        matches!(run.client_err, Some(Error::InvalidCertificate(_))),
        "{:?}",
        run.client_err
    );
}

#[test]
fn two_certificates_for_one_name_by_the_client_s_schemes() {
    let mut w = World::new();
    let spec = CertSpec::server(&["dual.test"]);
    let certs = vec![
        w.cert(&[], spec.clone().with_key(KeyKind::EcdsaP256)),
        w.cert(&[], spec.with_key(KeyKind::Ed25519)),
    ];
    let ders: Vec<CertificateDer> = certs.iter().map(|c| c.cert.chain()[0].clone()).collect();
    let server = ServerTls::new(settings(), certs, None)
        .server_config()
        .unwrap();
    let run = connect(Arc::new(w.client(BOTH)), dns("dual.test"), server.clone());
    assert_eq!(run.server_cert(), &ders[0]);
    // A client that verifies only Ed25519 signatures gets the Ed25519 certificate.
    let algs = load::provider().signature_verification_algorithms;
    let mapping: Vec<_> = algs
        .mapping
        .iter()
        .filter(|(s, _)| *s == SignatureScheme::ED25519)
        .cloned()
        .collect();
    let mut provider = (*load::provider()).clone();
    provider.signature_verification_algorithms = WebPkiSupportedAlgorithms {
        all: algs.all,
        mapping: Box::leak(mapping.into_boxed_slice()),
    };
    let roots = read_roots(&w.dir.write("ca.pem", &w.ca.cert_pem)).unwrap();
    let verifier =
        WebPkiServerVerifier::builder_with_provider(roots.store, Arc::new(provider.clone()))
            .build()
            .unwrap();
    let ed_only = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(BOTH)
        .unwrap()
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    let run = connect(Arc::new(ed_only), dns("dual.test"), server);
    assert!(run.ok(), "{:?} {:?}", run.client_err, run.server_err);
    assert_eq!(run.server_cert(), &ders[1]);
}

#[test]
fn alpn_http11_and_a_clean_alert_for_h2_only() {
    let mut w = World::new();
    let certs = vec![w.cert(&[], CertSpec::server(&["a.test"]))];
    let server = ServerTls::new(settings(), certs, None)
        .server_config()
        .unwrap();
    let mut c = w.client(BOTH);
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let run = connect(Arc::new(c), dns("a.test"), server.clone());
    assert_eq!(run.client.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut c = w.client(BOTH);
    c.alpn_protocols = vec![];
    let run = connect(Arc::new(c), dns("a.test"), server.clone());
    assert!(run.ok());
    assert_eq!(run.server.alpn_protocol(), None);
    let mut c = w.client(BOTH);
    c.alpn_protocols = vec![b"h2".to_vec()];
    let run = connect(Arc::new(c), dns("a.test"), server);
    assert_eq!(run.server_err, Some(Error::NoApplicationProtocol));
    assert_eq!(
        run.client_err,
        Some(Error::AlertReceived(
            AlertDescription::NoApplicationProtocol
        ))
    );
}

#[test]
fn min_version_13_refuses_a_tls12_only_client() {
    let mut w = World::new();
    let certs = vec![w.cert(&[], CertSpec::server(&["a.test"]))];
    let tls = ServerTls::new(settings(), certs, None);
    let run = connect(
        Arc::new(w.client(TLS12)),
        dns("a.test"),
        tls.server_config().unwrap(),
    );
    assert!(run.ok());
    assert_eq!(
        run.client.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    let certs = vec![w.cert(&[], CertSpec::server(&["a.test"]))];
    let mut s = settings();
    s.min_version = TlsVersion::Tls13;
    let tls13 = ServerTls::new(s, certs, None).server_config().unwrap();
    let run = connect(Arc::new(w.client(TLS12)), dns("a.test"), tls13.clone());
    assert!(run.server_err.is_some(), "TLS 1.2 accepted");
    let run = connect(Arc::new(w.client(BOTH)), dns("a.test"), tls13);
    assert_eq!(
        run.client.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn a_ticket_from_one_worker_resumes_on_another() {
    let mut w = World::new();
    for versions in [BOTH, TLS12] {
        let certs = vec![w.cert(&[], CertSpec::server(&["a.test"]))];
        let tls = ServerTls::new(settings(), certs, None);
        let (worker_a, worker_b) = (tls.server_config().unwrap(), tls.server_config().unwrap());
        let client = Arc::new(w.client(versions));
        let first = connect(client.clone(), dns("a.test"), worker_a);
        assert_eq!(first.server.handshake_kind(), Some(HandshakeKind::Full));
        let second = connect(client.clone(), dns("a.test"), worker_b.clone());
        assert!(second.ok());
        assert_eq!(
            second.server.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{versions:?}"
        );
        // A configuration loaded again (a reload) keeps the process's ticket keys.
        let certs = vec![w.cert(&[], CertSpec::server(&["a.test"]))];
        let reloaded = ServerTls::new(settings(), certs, None)
            .server_config()
            .unwrap();
        let third = connect(client, dns("a.test"), reloaded);
        assert_eq!(
            third.server.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{versions:?}"
        );
    }
}

#[test]
fn without_tickets_resumption_stays_on_its_worker() {
    let mut w = World::new();
    let certs = vec![w.cert(&[], CertSpec::server(&["a.test"]))];
    let mut s = settings();
    s.session_tickets = false;
    let tls = ServerTls::new(s, certs, None);
    let (a, b) = (tls.server_config().unwrap(), tls.server_config().unwrap());
    let client = Arc::new(w.client(BOTH));
    connect(client.clone(), dns("a.test"), a.clone());
    let same = connect(client.clone(), dns("a.test"), a);
    assert_eq!(same.server.handshake_kind(), Some(HandshakeKind::Resumed));
    // The client's newest ticket is a session id in worker a's cache only.
    let other = connect(client, dns("a.test"), b);
    assert_eq!(other.server.handshake_kind(), Some(HandshakeKind::Full));
}

#[test]
fn tickets_do_not_outlive_a_stricter_client_auth() {
    let mut w = World::new();
    let certs = vec![w.cert(&[], CertSpec::server(&["a.test"]))];
    let open = ServerTls::new(settings(), certs, None)
        .server_config()
        .unwrap();
    let client = Arc::new(w.client(BOTH));
    connect(client.clone(), dns("a.test"), open);
    let certs = vec![w.cert(&[], CertSpec::server(&["a.test"]))];
    let mut s = settings();
    s.client_auth = ClientAuth::Optional;
    let strict = ServerTls::new(s, certs, Some(w.ca()))
        .server_config()
        .unwrap();
    let run = connect(client, dns("a.test"), strict);
    assert!(run.ok());
    assert_eq!(run.server.handshake_kind(), Some(HandshakeKind::Full));
}

#[test]
fn client_certificates_optional_and_required() {
    let mut w = World::new();
    let client_cert = w.loaded(&CertSpec::client("client", "Example"));
    let stranger_ca = TestCa::new("Other CA").unwrap();
    let stranger = {
        let (c, k) = write_pair(
            &w.dir,
            &stranger_ca,
            "stranger",
            &CertSpec::client("x", "y"),
        );
        LoadedCert::load(&c, &k).unwrap()
    };
    let with_cert = |w: &World, cert: &LoadedCert| {
        let c = ClientConfig::builder_with_provider(load::provider())
            .with_protocol_versions(BOTH)
            .unwrap()
            .with_webpki_verifier(
                WebPkiServerVerifier::builder_with_provider(
                    read_roots(&w.dir.write("ca.pem", &w.ca.cert_pem))
                        .unwrap()
                        .store,
                    load::provider(),
                )
                .build()
                .unwrap(),
            )
            .with_client_auth_cert(cert.chain().to_vec(), cert.key_der())
            .unwrap();
        Arc::new(c)
    };
    for auth in [ClientAuth::Optional, ClientAuth::Required] {
        let certs = vec![w.cert(&[], CertSpec::server(&["a.test"]))];
        let mut s = settings();
        s.client_auth = auth;
        let server = ServerTls::new(s, certs, Some(w.ca()))
            .server_config()
            .unwrap();

        let run = connect(with_cert(&w, &client_cert), dns("a.test"), server.clone());
        assert!(
            run.ok(),
            "{auth:?}: {:?} {:?}",
            run.client_err,
            run.server_err
        );
        let peer = &run.server.peer_certificates().unwrap()[0];
        let info = crate::tls::client_cert_info(peer).unwrap();
        assert_eq!(info.subject, "CN=client,O=Example");

        let run = connect(with_cert(&w, &stranger), dns("a.test"), server.clone());
        assert!(
            run.server_err.is_some(),
            "{auth:?}: a certificate from another CA was accepted"
        );

        let run = connect(Arc::new(w.client(BOTH)), dns("a.test"), server);
        match auth {
            ClientAuth::Optional => {
                assert!(run.ok(), "{:?}", run.server_err);
                assert!(run.server.peer_certificates().is_none());
            }
            _ => assert_eq!(run.server_err, Some(Error::NoCertificatesPresented)),
        }
    }
}

#[test]
fn the_upstream_client_verifies_names_or_not() {
    let mut w = World::new();
    let certs = vec![w.cert(&[], CertSpec::server(&["backend.test"]))];
    let mut s = settings();
    s.client_auth = ClientAuth::Required;
    let server = ServerTls::new(s, certs, Some(w.ca()))
        .server_config()
        .unwrap();
    let ca_file = w.dir.write("ca.pem", &w.ca.cert_pem);
    let trust = || Trust::CaFile {
        file: ca_file.display().to_string(),
        roots: read_roots(&ca_file).unwrap(),
    };
    let client_cert = || Some(w.loaded_ref(&CertSpec::client("gateway", "Edge")));
    // server_name given: SNI and verification use it, whatever the address.
    let up = UpstreamTls::new(
        trust(),
        Some("backend.test".into()),
        client_cert(),
        &[Some("127.0.0.1:8443"), None],
    )
    .unwrap();
    assert_eq!(up.server_name(0), Some(&dns("backend.test")));
    assert_eq!(up.server_name(1), None);
    let run = connect(
        up.client_config_for_worker(),
        up.server_name(0).unwrap().clone(),
        server.clone(),
    );
    assert!(run.ok(), "{:?} {:?}", run.client_err, run.server_err);
    assert_eq!(run.client.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Another name: verification fails.
    let up = UpstreamTls::new(
        trust(),
        Some("wrong.test".into()),
        client_cert(),
        &[Some("127.0.0.1:8443")],
    )
    .unwrap();
    let run = connect(
        up.client_config_for_worker(),
        up.server_name(0).unwrap().clone(),
        server.clone(),
    );
    assert!(
        matches!(run.client_err, Some(Error::InvalidCertificate(_))),
        "{:?}",
        run.client_err
    );
    // verify = false: any name, and still encrypted to the key in the certificate.
    let up = UpstreamTls::new(
        Trust::Off,
        Some("wrong.test".into()),
        client_cert(),
        &[Some("127.0.0.1:8443")],
    )
    .unwrap();
    let run = connect(
        up.client_config_for_worker(),
        up.server_name(0).unwrap().clone(),
        server.clone(),
    );
    assert!(run.ok(), "{:?} {:?}", run.client_err, run.server_err);
    // Without the client certificate the upstream (client_auth required) refuses.
    let up = UpstreamTls::new(
        trust(),
        Some("backend.test".into()),
        None,
        &[Some("127.0.0.1:8443")],
    )
    .unwrap();
    let run = connect(
        up.client_config_for_worker(),
        up.server_name(0).unwrap().clone(),
        server,
    );
    assert_eq!(run.server_err, Some(Error::NoCertificatesPresented));
}

#[test]
fn upstream_names_default_to_the_server_s_host() {
    let up = UpstreamTls::new(
        Trust::Off,
        None,
        None,
        &[
            Some("api.internal:443"),
            Some("10.0.0.7:8443"),
            Some("[::1]:8443"),
        ],
    )
    .unwrap();
    assert_eq!(up.server_name(0), Some(&dns("api.internal")));
    assert_eq!(
        up.server_name(1),
        Some(&ServerName::IpAddress(
            "10.0.0.7".parse::<std::net::IpAddr>().unwrap().into()
        ))
    );
    assert_eq!(
        up.server_name(2),
        Some(&ServerName::IpAddress(
            "::1".parse::<std::net::IpAddr>().unwrap().into()
        ))
    );
    assert!(UpstreamTls::new(Trust::Off, Some("bad name!".into()), None, &[Some("a:1")]).is_err());
}

impl World {
    /// `loaded` through a shared reference (a fresh file name from a counter).
    fn loaded_ref(&self, spec: &CertSpec) -> LoadedCert {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let stem = format!("r{}", N.fetch_add(1, Ordering::Relaxed));
        let (c, k) = write_pair(&self.dir, &self.ca, &stem, spec);
        LoadedCert::load(&c, &k).unwrap()
    }
}
