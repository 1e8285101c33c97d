//! Tests of the TLS module over real files and real handshakes (rustls's buffered
//! connections pumped in memory): loading (`load.rs`) here, handshakes through the
//! per-worker configs in `handshake.rs`. Certificates come from a throw-away CA
//! (`pki.rs`); RSA, PKCS#1, SEC1 and encrypted keys from `tests/keys/`.

mod handshake;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::load::{read_chain, read_key, read_roots, LoadedCert, TlsFileError};
use super::pki::{CertSpec, KeyKind, TestCa};

/// A directory removed when dropped.
pub struct Dir(PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ringgate-tls-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn root(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

/// Issue `spec` from `ca` and write it as `<stem>.crt` / `<stem>.key`.
pub fn write_pair(dir: &Dir, ca: &TestCa, stem: &str, spec: &CertSpec) -> (PathBuf, PathBuf) {
    let c = ca.issue(spec).unwrap();
    (
        dir.write(&format!("{stem}.crt"), &c.cert_pem),
        dir.write(&format!("{stem}.key"), &c.key_pem),
    )
}

#[test]
fn every_supported_key_form_loads() {
    let dir = Dir::new("keys");
    let ca = TestCa::new("Test CA").unwrap();
    let spec = CertSpec::server(&["a.test"]);
    for (kind, want) in [
        (KeyKind::EcdsaP256, "ECDSA P-256"),
        (KeyKind::EcdsaP384, "ECDSA P-384"),
        (KeyKind::Ed25519, "Ed25519"),
    ] {
        let (c, k) = write_pair(&dir, &ca, want, &spec.clone().with_key(kind));
        let loaded = LoadedCert::load(&c, &k).unwrap();
        assert_eq!(loaded.details.key_type, want);
        assert_eq!(loaded.details.dns_names, ["a.test"]);
        assert_eq!(loaded.details.subject, "CN=a.test");
    }
    // RSA as PKCS#8 and PKCS#1; P-256 as PKCS#8 and SEC1: the same key, two forms.
    for (pkcs8, other, want) in [
        (
            "test-only-rs256.key.pem",
            "test-only-rs256.pkcs1.key.pem",
            "RSA",
        ),
        (
            "test-only-p256.key.pem",
            "test-only-p256.sec1.key.pem",
            "ECDSA P-256",
        ),
    ] {
        let issued = ca.issue(&spec.clone().key_pem(&fixture(pkcs8))).unwrap();
        let c = dir.write(&format!("{other}.crt"), &issued.cert_pem);
        for key in [pkcs8, other] {
            let k = dir.write(key, &fixture(key));
            let loaded = LoadedCert::load(&c, &k).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(loaded.details.key_type, want);
        }
    }
}

#[test]
fn a_chain_file_keeps_its_order_and_skips_keys() {
    let dir = Dir::new("chain");
    let ca = TestCa::new("Test CA").unwrap();
    let leaf = ca.issue(&CertSpec::server(&["a.test"])).unwrap();
    let combined = format!("{}{}{}", leaf.cert_pem, leaf.key_pem, ca.cert_pem);
    let p = dir.write("combined.pem", &combined);
    let chain = read_chain(&p).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0], leaf.cert_der);
    assert_eq!(chain[1], ca.cert_der);
    // The same file works as the key file too.
    LoadedCert::load(&p, &p).unwrap();
}

fn what(e: TlsFileError) -> String {
    e.to_string()
}

#[test]
fn file_mistakes_name_the_file_and_never_quote_a_key() {
    let dir = Dir::new("bad");
    let ca = TestCa::new("Test CA").unwrap();
    let (crt, key) = write_pair(&dir, &ca, "a", &CertSpec::server(&["a.test"]));
    let (_, other_key) = write_pair(&dir, &ca, "b", &CertSpec::server(&["b.test"]));

    let missing = dir.path("missing.key");
    let e = LoadedCert::load(&crt, &missing).unwrap_err();
    assert!(matches!(e, TlsFileError::Unreadable { .. }), "{e:?}");
    assert!(what(e).contains("missing.key: No such file"));

    let e = LoadedCert::load(&crt, &other_key).unwrap_err();
    assert!(matches!(e, TlsFileError::KeyMismatch { .. }), "{e:?}");
    assert!(what(e).contains("does not belong to the certificate"));

    // Swapped files.
    let e = what(LoadedCert::load(&key, &crt).unwrap_err());
    assert!(e.contains("no certificate in it"), "{e}");
    let e = what(read_key(&crt).unwrap_err());
    assert!(
        e.contains("only a certificate (are cert_file and key_file swapped?)"),
        "{e}"
    );

    let enc = dir.write("enc.key", &fixture("test-only-p256.encrypted.key.pem"));
    let e = what(read_key(&enc).unwrap_err());
    assert!(e.contains("the private key is encrypted"), "{e}");

    // Broken base64 inside a key: the message says so without quoting the line.
    let key_text = std::fs::read_to_string(&key).unwrap();
    let secret_line = key_text.lines().nth(1).unwrap().to_owned();
    let broken = key_text.replacen(&secret_line, &format!("{secret_line}!!"), 1);
    let b = dir.write("broken.key", &broken);
    let e = what(read_key(&b).unwrap_err());
    assert!(e.contains("malformed PEM"), "{e}");
    assert!(!e.contains(&secret_line[..16]), "{e}");

    let garbage = dir.write(
        "garbage.crt",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let e = what(read_chain(&garbage).unwrap_err());
    assert!(
        e.contains("certificate 1 of the chain is not valid X.509"),
        "{e}"
    );

    let empty = dir.write("empty.pem", "");
    assert!(what(read_roots(&empty).unwrap_err()).contains("no certificate in it"));
    assert!(what(read_key(&empty).unwrap_err()).contains("no private key in it"));
}

#[test]
fn debug_output_holds_no_key_material() {
    let dir = Dir::new("debug");
    let ca = TestCa::new("Test CA").unwrap();
    let (crt, key) = write_pair(&dir, &ca, "a", &CertSpec::server(&["a.test"]));
    let loaded = LoadedCert::load(&crt, &key).unwrap();
    let debug = format!("{loaded:?}");
    let key_text = std::fs::read_to_string(&key).unwrap();
    for line in key_text.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!debug.contains(&line[..16.min(line.len())]), "{debug}");
    }
    let der = loaded.key_der();
    let hex = hex::encode(der.secret_der());
    assert!(!debug.contains(&hex[..32]));
}

#[test]
fn a_ca_bundle_counts_its_anchors() {
    let dir = Dir::new("roots");
    let a = TestCa::new("A").unwrap();
    let b = TestCa::new("B").unwrap();
    let p = dir.write("cas.pem", &format!("{}{}", a.cert_pem, b.cert_pem));
    let roots = read_roots(&p).unwrap();
    assert_eq!(roots.count, 2);
    let q = dir.write("a.pem", &a.cert_pem);
    assert_ne!(read_roots(&q).unwrap().digest, roots.digest);
}
