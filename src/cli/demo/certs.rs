//! The demo's HTTPS certificate, made at start with [`ringgate::tls::pki`] (rcgen, ring
//! keys, ECDSA P-256): a demo CA made for this run, and a certificate for `localhost`,
//! 127.0.0.1 and ::1 it signs, which the gateway serves on its TLS listener. curl trusts
//! it with `--cacert ca.pem` (OpenSSL wants a CA there: a certificate that signs itself
//! only would have to be a CA too).
//!
//! [`DemoCerts::generate`] writes them into a fresh directory of their own (mode 0700,
//! `ringgate-demo-<pid>` under the temporary directory): `ca.pem`, `localhost.crt` and
//! `localhost.key` (mode 0600), and beside them `sensor.json`, the IoT route's JSON
//! Schema (config/schemas/sensor.json, built in). The CA's key is never written: once the certificate is
//! signed it is dropped, so nothing else can be signed with it. Dropping [`DemoCerts`]
//! removes the directory, which the demo does when it stops. The key is read from its
//! file by the gateway only; nothing prints it.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ringgate::tls::pki::{CertSpec, PkiError, TestCa};

/// The name the certificate is for, and the one the printed HTTPS URLs use.
pub const SERVER_NAME: &str = "localhost";
/// How long the server certificate is valid (from a day ago): far longer than a demo
/// runs, far shorter than a forgotten copy of its key would matter for.
/// config/schemas/sensor.json, written with the certificate for the demo's IoT route.
const SENSOR_SCHEMA: &str = include_str!("../../../config/schemas/sensor.json");
const VALID_FOR: Duration = Duration::from_secs(30 * 86_400);

/// The demo's certificate files, in a directory removed on drop.
#[derive(Debug)]
pub struct DemoCerts {
    dir: PathBuf,
    /// The SAN IP addresses besides `localhost`: 127.0.0.1, ::1 and any other given.
    ips: Vec<IpAddr>,
}

impl DemoCerts {
    /// Makes the CA and the server certificate, for `localhost`, 127.0.0.1, ::1 and
    /// `extra_ip` (the TLS listener's address when it is another one), and writes them
    /// into a fresh directory under [`std::env::temp_dir`].
    pub fn generate(extra_ip: Option<IpAddr>) -> std::io::Result<DemoCerts> {
        DemoCerts::generate_in(&std::env::temp_dir(), extra_ip)
    }

    /// [`DemoCerts::generate`] under `base`.
    pub fn generate_in(base: &Path, extra_ip: Option<IpAddr>) -> std::io::Result<DemoCerts> {
        if base.to_str().is_none() {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}: not UTF-8, as paths in the configuration must be: set TMPDIR to \
                     another directory",
                    base.display()
                ),
            ));
        }
        let mut ips = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        if let Some(ip) = extra_ip.filter(|ip| !ips.contains(ip) && !ip.is_unspecified()) {
            ips.push(ip);
        }
        let made = make(&ips)
            .map_err(|e| std::io::Error::other(format!("making the certificate: {e}")))?;
        let certs = DemoCerts {
            dir: fresh_dir(base)?,
            ips,
        };
        // From here on, a failure drops `certs`, which removes the directory.
        write_new(&certs.ca_file(), made.ca_pem.as_bytes(), 0o644)?;
        write_new(&certs.cert_file(), made.cert_pem.as_bytes(), 0o644)?;
        write_new(&certs.key_file(), made.key_pem.as_bytes(), 0o600)?;
        write_new(&certs.schema_file(), SENSOR_SCHEMA.as_bytes(), 0o644)?;
        Ok(certs)
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The demo CA's certificate: what a client trusts (`curl --cacert`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server certificate (`cert_file`).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join(format!("{SERVER_NAME}.crt"))
    }

    /// Its private key (`key_file`), mode 0600.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join(format!("{SERVER_NAME}.key"))
    }

    /// The IoT route's JSON Schema, config/schemas/sensor.json as built in: the demo
    /// runs from any directory, so its `validate.schema_file` names this copy.
    pub fn schema_file(&self) -> PathBuf {
        self.dir.join("sensor.json")
    }

    /// The IP addresses the certificate names.
    pub fn ips(&self) -> &[IpAddr] {
        &self.ips
    }
}

impl Drop for DemoCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The PEM texts to write.
struct Made {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn make(ips: &[IpAddr]) -> Result<Made, PkiError> {
    let ca = TestCa::new(&format!("ringgate demo CA (pid {})", std::process::id()))?;
    let names: Vec<String> = std::iter::once(SERVER_NAME.to_string())
        .chain(ips.iter().map(IpAddr::to_string))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let spec = CertSpec::server(&names).not_after(SystemTime::now() + VALID_FOR);
    let leaf = ca.issue(&spec)?;
    // `ca`, and the CA's key with it, ends here: it signs nothing else.
    Ok(Made {
        ca_pem: ca.cert_pem,
        cert_pem: leaf.cert_pem,
        key_pem: leaf.key_pem,
    })
}

/// A new directory under `base`, mode 0700: `ringgate-demo-<pid>`, or, if that exists
/// (left by an earlier process with this pid that was killed), the same name with a
/// random suffix. An existing directory is never reused, nor a link followed.
fn fresh_dir(base: &Path) -> std::io::Result<PathBuf> {
    let pid = std::process::id();
    let mut last = None;
    for attempt in 0..8 {
        let name = if attempt == 0 {
            format!("ringgate-demo-{pid}")
        } else {
            let tag: String = std::iter::repeat_with(fastrand::alphanumeric)
                .take(6)
                .collect();
            format!("ringgate-demo-{pid}-{tag}")
        };
        let dir = base.join(name);
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("creating {}: {e}", dir.display()),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| ErrorKind::AlreadyExists.into()))
}

/// Writes a new file (never an existing one) with this mode.
fn write_new(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// The server certificate verifies against the CA for every name it is for (what
    /// curl does with --cacert), and not for another; the key is the certificate's.
    #[test]
    fn the_certificate_verifies_against_the_demo_ca() {
        let extra: IpAddr = "192.0.2.7".parse().unwrap();
        let certs = DemoCerts::generate(Some(extra)).unwrap();
        let dir = certs.dir().to_path_buf();
        assert!(dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("ringgate-demo-{}", std::process::id())));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&certs.key_file()), 0o600);
        assert_eq!(certs.ips().len(), 3);

        let ca = CertificateDer::from_pem_file(certs.ca_file()).unwrap();
        let cert = CertificateDer::from_pem_file(certs.cert_file()).unwrap();
        let key = PrivateKeyDer::from_pem_file(certs.key_file()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        #[allow(deprecated)] // ring, our one crypto stack (src/tls/mod.rs says why)
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .unwrap();
        for name in [
            "localhost",
            "127.0.0.1",
            "::1",
            "192.0.2.7",
            "example.com",
            "::2",
        ] {
            let server = ServerName::try_from(name).unwrap();
            let verified = verifier.verify_server_cert(&cert, &[], &server, &[], UnixTime::now());
            let expected = !matches!(name, "example.com" | "::2");
            assert_eq!(verified.is_ok(), expected, "{name}: {verified:?}");
        }
        // The key signs for this certificate: rustls checks they match.
        let signing = provider.key_provider.load_private_key(key).unwrap();
        rustls::sign::CertifiedKey::new(vec![cert], signing)
            .keys_match()
            .unwrap();

        drop(certs);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    /// Two at once (or a directory left by a killed demo with this pid): the second
    /// gets a directory of its own.
    #[test]
    fn a_taken_directory_is_not_reused() {
        let base = std::env::temp_dir().join(format!("ringgate-certs-test-{}", fastrand::u64(..)));
        std::fs::create_dir(&base).unwrap();
        let first = DemoCerts::generate_in(&base, None).unwrap();
        let second = DemoCerts::generate_in(&base, Some(Ipv4Addr::UNSPECIFIED.into())).unwrap();
        assert_ne!(first.dir(), second.dir());
        assert_eq!(second.ips().len(), 2, "0.0.0.0 is no name");
        let first_key = std::fs::read(first.key_file()).unwrap();
        assert_ne!(first_key, std::fs::read(second.key_file()).unwrap());
        drop((first, second));
        std::fs::remove_dir(&base).unwrap();
    }
}
