//! `[server.tls]` and `[upstreams.tls]`: defaults, a TLS-only gateway, one test per
//! mistake (variant, key, line), what a reload compares, and what `check` prints.
//! Certificates are made per test (`crate::tls::pki`) into a temporary directory.

use super::*;
use crate::tls::client::Trust;
use crate::tls::pki::{CertSpec, TestCa};
use crate::tls::server::{ClientAuth, TlsVersion};
use crate::tls::tests::{write_pair, Dir};

/// A CA, a server certificate for api.example.com and *.example.com, a second key, a
/// client certificate: as files.
struct Files {
    dir: Dir,
    ca: TestCa,
    crt: String,
    key: String,
    other_key: String,
    ca_file: String,
    client_crt: String,
    client_key: String,
}

fn files() -> Files {
    let dir = Dir::new("cfg");
    let ca = TestCa::new("Test CA").unwrap();
    let s = |p: std::path::PathBuf| p.display().to_string();
    let (crt, key) = write_pair(
        &dir,
        &ca,
        "api",
        &CertSpec::server(&["api.example.com", "*.example.com"]),
    );
    let (_, other_key) = write_pair(&dir, &ca, "other", &CertSpec::server(&["other.test"]));
    let (client_crt, client_key) =
        write_pair(&dir, &ca, "client", &CertSpec::client("gateway", "Edge"));
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    Files {
        crt: s(crt),
        key: s(key),
        other_key: s(other_key),
        ca_file: s(ca_file),
        client_crt: s(client_crt),
        client_key: s(client_key),
        dir,
        ca,
    }
}

/// Lines: 1-2 [server], 3-4 [server.tls] + listen, 5 `line5`, 6 [[server.tls.certificates]],
/// 7 server_names, 8 cert_file, 9 key_file.
fn server_tls(f: &Files, line5: &str, cert: &str, key: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n[server.tls]\nlisten = [\"127.0.0.1:8443\"]\n{line5}\n\
         [[server.tls.certificates]]\nserver_names = [\"api.example.com\", \"*.example.com\"]\n\
         cert_file = \"{cert}\"\nkey_file = \"{key}\"\n{}",
        &MINIMAL[MINIMAL.find("[[upstreams]]").unwrap()..]
    )
    .replace("@CA", &f.ca_file)
}

fn valid(f: &Files, line5: &str) -> String {
    server_tls(f, line5, &f.crt, &f.key)
}

#[test]
fn defaults_are_the_spec_s() {
    let f = files();
    let cfg = ok(&valid(&f, "# defaults"));
    assert_eq!(
        cfg.server.tls_listen,
        ["127.0.0.1:8443".parse::<SocketAddr>().unwrap()]
    );
    let t = cfg.tls.as_ref().unwrap();
    let s = &t.settings;
    assert_eq!(s.alpn, [b"http/1.1".to_vec()]);
    assert_eq!(s.min_version, TlsVersion::Tls12);
    assert!(s.session_tickets);
    assert_eq!(s.handshake_timeout, Duration::from_secs(10));
    assert_eq!(s.client_auth, ClientAuth::None);
    assert!(t.client_ca.is_none());
    assert!(!s.redirect_http);
    assert_eq!((s.hsts_max_age_s, t.hsts()), (0, None));
    assert_eq!(
        t.certificates[0].names,
        ["api.example.com", "*.example.com"]
    );
    assert_eq!(t.candidates(Some("x.example.com")), &[0]);
    t.server_config().unwrap();
}

#[test]
fn every_key_written() {
    let f = files();
    let text = valid(
        &f,
        "alpn = [\"http/1.1\"]\nmin_version = \"1.3\"\nsession_tickets = false\nhandshake_timeout_ms = 2500\n\
         client_auth = \"required\"\nclient_ca_file = \"@CA\"\nredirect_http = true\nhsts_max_age_s = 31536000",
    );
    let cfg = ok(&text);
    let t = cfg.tls.as_ref().unwrap();
    let s = &t.settings;
    assert_eq!(s.min_version, TlsVersion::Tls13);
    assert!(!s.session_tickets && s.redirect_http);
    assert_eq!(s.handshake_timeout, Duration::from_millis(2500));
    assert_eq!(s.client_auth, ClientAuth::Required);
    assert_eq!(t.client_ca.as_ref().unwrap().roots.count, 1);
    assert_eq!(t.hsts(), Some("max-age=31536000"));
}

#[test]
fn a_tls_only_gateway_is_valid() {
    let f = files();
    let text = valid(&f, "").replacen("listen = [\"127.0.0.1:8080\"]", "listen = []", 1);
    let cfg = ok(&text);
    assert!(cfg.server.listen.is_empty());
    assert_eq!(cfg.server.tls_listen.len(), 1);
    let e = bad(
        &valid(&f, "").replace("listen = [\"127.0.0.1:8443\"]", "listen = []"),
        4,
        &["server.tls.listen = []", "at least one address"],
    );
    assert!(matches!(e, ConfigError::NoTlsListener { .. }));
}

#[test]
fn server_names_empty_means_the_certificate_s_own() {
    let f = files();
    let text = valid(&f, "").replace(
        "server_names = [\"api.example.com\", \"*.example.com\"]",
        "server_names = []",
    );
    let cfg = ok(&text);
    let c = &cfg.tls.as_ref().unwrap().certificates[0];
    assert!(c.names_from_certificate);
    assert_eq!(c.names, ["api.example.com", "*.example.com"]);
    // A later certificate with no name at all could never be chosen.
    let (crt, key) = write_pair(
        &f.dir,
        &f.ca,
        "nameless",
        &CertSpec::client("nameless", "Example"),
    );
    let text = format!(
        "{}[[server.tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        &valid(&f, "")[..valid(&f, "").find("[[upstreams]]").unwrap()],
        crt.display(),
        key.display()
    );
    let e = bad(
        &text,
        11,
        &["server.tls.certificates[1].cert_file", "could ever get it"],
    );
    assert!(matches!(e, ConfigError::TlsCertNeverChosen { .. }));
}

#[test]
fn one_error_per_mistake_naming_the_key_and_line() {
    let f = files();
    let v = |line5: &str| valid(&f, line5);
    let e = bad(
        &v("min_version = \"1.1\""),
        5,
        &["server.tls.min_version = \"1.1\"", "\"1.2\" or \"1.3\""],
    );
    assert!(matches!(e, ConfigError::BadTlsVersion { .. }));
    let e = bad(
        &v("client_auth = \"maybe\""),
        5,
        &[
            "server.tls.client_auth = \"maybe\"",
            "none, optional, required",
        ],
    );
    assert!(matches!(e, ConfigError::BadClientAuth { .. }));
    let e = bad(
        &v("client_auth = \"required\""),
        5,
        &["server.tls.client_auth", "need client_ca_file"],
    );
    assert!(matches!(e, ConfigError::NoClientCa { .. }));
    let e = bad(
        &v("client_ca_file = \"@CA\""),
        5,
        &["server.tls.client_ca_file", "client_auth = \"none\""],
    );
    assert!(matches!(e, ConfigError::ClientCaUnused { .. }));
    let e = bad(
        &v("alpn = [\"h2\"]"),
        5,
        &["server.tls.alpn[0] = \"h2\"", "not served yet"],
    );
    assert!(matches!(e, ConfigError::BadAlpn { .. }));
    bad(
        &v("alpn = [\"http/1.1\", \"spdy/3\"]"),
        5,
        &["server.tls.alpn[1]", "unknown protocol"],
    );
    bad(
        &v("alpn = [\"http/1.1\", \"http/1.1\"]"),
        5,
        &["alpn[1]", "listed twice"],
    );
    bad(
        &v("alpn = []"),
        5,
        &["server.tls.alpn = []", "turns ALPN off"],
    );
    let e = bad(
        &v("handshake_timeout_ms = 0"),
        5,
        &["server.tls.handshake_timeout_ms = 0"],
    );
    assert!(matches!(e, ConfigError::NotPositive { .. }));
    bad(
        &v("hsts_max_age_s = 99999999999"),
        5,
        &["server.tls.hsts_max_age_s", "at most"],
    );
    bad(
        &v("session_ticket = true"),
        5,
        &["unknown field `session_ticket`"],
    );
    let e = bad(
        &v("client_auth = \"optional\"\nclient_ca_file = \"/nonexistent/ca.pem\""),
        6,
        &[
            "server.tls.client_ca_file = \"/nonexistent/ca.pem\"",
            "cannot read /nonexistent/ca.pem",
        ],
    );
    assert!(matches!(e, ConfigError::TlsFileUnreadable { .. }));
}

#[test]
fn certificate_and_key_file_mistakes() {
    let f = files();
    let missing = f.dir.path("missing.key").display().to_string();
    let e = bad(
        &server_tls(&f, "", &f.crt, &missing),
        9,
        &[
            "server.tls.certificates[0].key_file",
            "missing.key: No such file or directory",
        ],
    );
    assert!(matches!(e, ConfigError::TlsFileUnreadable { .. }));
    let e = bad(
        &server_tls(&f, "", &f.crt, &f.other_key),
        9,
        &[
            "server.tls.certificates[0].key_file",
            "does not belong to the certificate",
        ],
    );
    assert!(matches!(e, ConfigError::TlsKeyMismatch { .. }));
    let e = bad(
        &server_tls(&f, "", &f.key, &f.key),
        8,
        &[
            "server.tls.certificates[0].cert_file",
            "no certificate in it",
        ],
    );
    assert!(matches!(e, ConfigError::TlsFileContents { .. }));
    let e = bad(
        &server_tls(&f, "", &f.crt, &f.crt),
        9,
        &["key_file", "swapped"],
    );
    assert!(matches!(e, ConfigError::TlsFileContents { .. }));
    let e = bad(
        &server_tls(&f, "", "", &f.key),
        8,
        &["cert_file = \"\"", "must not be empty"],
    );
    assert!(matches!(e, ConfigError::EmptyName { .. }));
    // No message quotes key material.
    let key_text = std::fs::read_to_string(&f.other_key).unwrap();
    let msg = bad(&server_tls(&f, "", &f.crt, &f.other_key), 9, &[]).to_string();
    for line in key_text.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!msg.contains(line), "{msg}");
    }
}

#[test]
fn certificates_change_on_reload_without_a_restart() {
    let f = files();
    let before = ok(&valid(&f, ""));
    // The same paths, new contents (a renewal).
    let renewed =
        f.ca.issue(&CertSpec::server(&["api.example.com", "*.example.com"]))
            .unwrap();
    std::fs::write(&f.crt, &renewed.cert_pem).unwrap();
    std::fs::write(&f.key, &renewed.key_pem).unwrap();
    let after = ok(&valid(&f, "hsts_max_age_s = 60"));
    let leaf = |c: &Config| c.tls.as_ref().unwrap().certificates[0].cert.chain()[0].clone();
    assert_ne!(leaf(&before), leaf(&after));
    // What `Gateway::reload` compares to ask for a restart is unchanged.
    assert_eq!(
        format!("{:?}", before.server),
        format!("{:?}", after.server)
    );
    // A new TLS address does need one.
    let moved = ok(&valid(&f, "").replace("127.0.0.1:8443", "127.0.0.1:9443"));
    assert_ne!(
        format!("{:?}", before.server),
        format!("{:?}", moved.server)
    );
    // And the whole Config's Debug holds no key.
    let debug = format!("{after:?}");
    for line in renewed.key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!debug.contains(line));
    }
}

/// Lines: 1-2 [server], 3 [[upstreams]], 4 name, 5 servers, 6 [upstreams.tls], 7.. `table`.
fn upstream(servers: &str, table: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n[[upstreams]]\nname = \"a\"\nservers = [{servers}]\n{table}\
         [[routes]]\nid = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n"
    )
}

#[test]
fn upstream_tls_defaults_and_every_key() {
    let f = files();
    // No table: system roots, each server's host.
    let cfg = ok(&upstream(
        "\"https://localhost:9443\", \"127.0.0.1:9001\"",
        "",
    ));
    let t = cfg.upstreams[0].tls.as_ref().unwrap();
    assert!(matches!(t.trust, Trust::System { count, .. } if count > 0));
    assert_eq!(t.server_name(0).unwrap().to_str(), "localhost");
    assert!(t.server_name(1).is_none() && t.client_cert.is_none());
    // No https:// server: no TLS.
    assert!(ok(&upstream("\"127.0.0.1:9001\"", "")).upstreams[0]
        .tls
        .is_none());
    let table = format!(
        "[upstreams.tls]\nserver_name = \"backend.internal\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nverify = true\n",
        f.ca_file, f.client_crt, f.client_key
    );
    let cfg = ok(&upstream("\"https://127.0.0.1:9443\"", &table));
    let t = cfg.upstreams[0].tls.as_ref().unwrap();
    assert!(matches!(&t.trust, Trust::CaFile { roots, .. } if roots.count == 1));
    assert_eq!(t.server_name(0).unwrap().to_str(), "backend.internal");
    assert_eq!(
        t.client_cert.as_ref().unwrap().details.subject,
        "CN=gateway,O=Edge"
    );
    assert!(tls_warnings(&cfg).is_empty());
    t.client_config_for_worker();
}

#[test]
fn upstream_tls_mistakes() {
    let f = files();
    let https = "\"https://127.0.0.1:9443\"";
    let e = bad(
        &upstream(
            https,
            &format!("[upstreams.tls]\ncert_file = \"{}\"\n", f.client_crt),
        ),
        7,
        &["upstreams.\"a\".tls.cert_file", "key_file is missing"],
    );
    assert!(matches!(e, ConfigError::TlsKeyPairIncomplete { .. }));
    bad(
        &upstream(
            https,
            &format!("[upstreams.tls]\nkey_file = \"{}\"\n", f.client_key),
        ),
        7,
        &["tls.key_file", "cert_file is missing"],
    );
    let e = bad(
        &upstream(https, "[upstreams.tls]\nserver_name = \"bad name!\"\n"),
        7,
        &[
            "upstreams.\"a\".tls.server_name = \"bad name!\"",
            "not usable as a TLS server name",
        ],
    );
    assert!(matches!(e, ConfigError::BadTlsServerName { .. }));
    let e = bad(
        &upstream(
            https,
            "[upstreams.tls]\nca_file = \"/nonexistent/ca.pem\"\n",
        ),
        7,
        &[
            "upstreams.\"a\".tls.ca_file",
            "cannot read /nonexistent/ca.pem",
        ],
    );
    assert!(matches!(e, ConfigError::TlsFileUnreadable { .. }));
    let e = bad(
        &upstream("\"127.0.0.1:9001\"", "[upstreams.tls]\nverify = false\n"),
        7,
        &[
            "upstreams.\"a\".tls",
            "no server of this upstream is https://",
        ],
    );
    assert!(matches!(e, ConfigError::UpstreamTlsUnused { .. }));
    bad(
        &upstream(https, "[upstreams.tls]\nverfy = false\n"),
        7,
        &["unknown field `verfy`"],
    );
    let mismatch = format!(
        "[upstreams.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        f.client_crt, f.other_key
    );
    let e = bad(
        &upstream(https, &mismatch),
        8,
        &["tls.key_file", "does not belong"],
    );
    assert!(matches!(e, ConfigError::TlsKeyMismatch { .. }));
}

#[test]
fn check_warns_about_verify_false_expiry_and_uncovered_names() {
    let f = files();
    let cfg = ok(&upstream(
        "\"https://127.0.0.1:9443\"",
        "[upstreams.tls]\nverify = false\n",
    ));
    assert!(matches!(
        cfg.upstreams[0].tls.as_ref().unwrap().trust,
        Trust::Off
    ));
    let warnings = tls_warnings(&cfg);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("WARNING: upstream \"a\": [upstreams.tls] verify = false"));
    let text = summary(&cfg);
    assert!(text.contains(&warnings[0]), "{text}");
    assert!(
        text.contains("tls: NOT verified (verify = false)"),
        "{text}"
    );

    let expired =
        f.ca.issue(
            &CertSpec::server(&["api.example.com"])
                .not_after(std::time::SystemTime::now() - Duration::from_secs(3_600)),
        )
        .unwrap();
    let crt = f.dir.write("expired.crt", &expired.cert_pem);
    let key = f.dir.write("expired.key", &expired.key_pem);
    let cfg = ok(&server_tls(
        &f,
        "",
        &crt.display().to_string(),
        &key.display().to_string(),
    ));
    let warnings = tls_warnings(&cfg);
    assert!(
        warnings[0].starts_with("WARNING: server.tls.certificates[0]"),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("expired at"), "{warnings:?}");
    // Listed for *.example.com, which a certificate for api.example.com alone does not cover.
    assert!(
        warnings[1].contains("listed for *.example.com"),
        "{warnings:?}"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let text = summary(&cfg);
    for needle in [
        "listeners     http 127.0.0.1:8080; https 127.0.0.1:8443",
        "certificate 0, default: api.example.com, *.example.com",
        "(CN=api.example.com, ECDSA P-256), expires ",
        "min 1.2, alpn http/1.1; session tickets on",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}
