//! Start-up half of authentication: `[auth]` from the file ([`FileAuth`]) turned into
//! [`AuthSettings`], with every key loaded and checked once. HMAC secrets come from the
//! environment variables named by `secret_env`, public keys from PEM files
//! (`public_key_file`: SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`; the algorithm
//! and curve OIDs must fit the key's `algorithm`) or JWK Sets (`jwks_file`), API keys
//! as SHA-256 digests. Paths are relative to the process's working directory.
//!
//! [`AuthSettings`] is `Send + Sync`: load it once before the workers start, then each
//! worker builds its own [`super::Authenticator`] from it. Every [`AuthConfigError`]
//! names the key (its index and kid, or the API key's id) and the problem, never key
//! material.

use std::ffi::OsString;
use std::fs;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

use super::crypto;
use super::{Identity, Via};
use crate::config::file::{FileAuth, FileJwtKey};

/// A mistake in `[auth]` found while loading keys.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("{key}: environment variable {var} (secret_env) is not set or is empty")]
    MissingSecret { key: String, var: String },
    #[error(
        "{key}: the secret in {var} is {len} bytes; {alg} needs at least {min} (RFC 7518 3.2)"
    )]
    WeakSecret {
        key: String,
        var: String,
        alg: &'static str,
        len: usize,
        min: usize,
    },
    /// The I/O error is the `source`, printed by whoever prints the chain.
    #[error("{key}: cannot read {path}")]
    KeyFile {
        key: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{key}: {path}: {reason}")]
    BadKey {
        key: String,
        path: String,
        reason: String,
    },
    #[error("{key}: algorithm {value:?} is not supported")]
    UnknownAlgorithm { key: String, value: String },
    #[error("{key}: {reason}")]
    BadKeySource { key: String, reason: &'static str },
    #[error("kid {kid:?} is used by two keys ({first} and {second})")]
    DuplicateKid {
        kid: String,
        first: String,
        second: String,
    },
    #[error("auth.api_keys.keys {id:?}: sha256 must be 64 hex digits")]
    BadDigest { id: String },
    #[error("auth.api_keys.keys {id:?}: the same sha256 as key {other:?}")]
    DuplicateDigest { id: String, other: String },
    #[error("{at}: {field} {reason}")]
    BadIdentityValue {
        at: String,
        field: &'static str,
        reason: &'static str,
    },
    #[error("another jsonwebtoken crypto provider was installed before ringgate's (ring)")]
    CryptoProvider,
}

/// Which entry of `[auth]` a [`LocatedAuthError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthEntry {
    /// `auth.jwt.keys[i]`.
    JwtKey(usize),
    /// `auth.api_keys.keys[i]`.
    ApiKey(usize),
    /// The section as a whole.
    Section,
}

/// An [`AuthConfigError`], the entry it is about, and the label its message opens with.
#[derive(Debug)]
pub struct LocatedAuthError {
    pub entry: AuthEntry,
    pub label: String,
    pub error: AuthConfigError,
}

impl LocatedAuthError {
    /// The message without its leading label: the configuration error that carries it
    /// names the key itself, with its line.
    /// Its causes follow, each once.
    pub fn reason(&self) -> String {
        let msg = self.error.to_string();
        let mut out = match msg.strip_prefix(&format!("{}: ", self.label)) {
            Some(rest) if !self.label.is_empty() => rest.to_owned(),
            _ => msg,
        };
        let mut cause = std::error::Error::source(&self.error);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }
}

/// One verification key, ready to use.
#[derive(Debug, Clone)]
pub(crate) struct JwtKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
    /// jsonwebtoken's checks for this key: its one algorithm, `exp` required, `nbf`,
    /// `iss`, `aud` and leeway as configured.
    pub validation: jsonwebtoken::Validation,
}

/// Names of the claims that carry the identity (`[auth.jwt] *_claim`).
#[derive(Debug, Clone)]
pub(crate) struct ClaimNames {
    pub user: String,
    pub tenant: String,
    pub plan: String,
    pub scope: String,
}

#[derive(Debug, Clone)]
pub(crate) struct JwtSettings {
    pub keys: Vec<JwtKey>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway: u64,
    pub claims: ClaimNames,
}

/// `[auth]` with every key loaded: what each worker's [`super::Authenticator`] is built
/// from. Its `Debug` shows the kids and algorithms, never key material.
#[derive(Clone)]
pub struct AuthSettings {
    pub(crate) jwt: JwtSettings,
    /// (SHA-256 of the key, the identity it stands for).
    pub(crate) api_keys: Vec<([u8; 32], Identity)>,
    pub(crate) api_key_header: String,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<(Option<&str>, Algorithm)> = self
            .jwt
            .keys
            .iter()
            .map(|k| (k.kid.as_deref(), k.alg))
            .collect();
        f.debug_struct("AuthSettings")
            .field("jwt_keys", &keys)
            .field("api_keys", &self.api_keys.len())
            .field("api_key_header", &self.api_key_header)
            .finish_non_exhaustive()
    }
}

impl AuthSettings {
    /// Load every key named in `auth`, reading secrets from the process environment.
    pub fn load(auth: &FileAuth) -> Result<AuthSettings, AuthConfigError> {
        AuthSettings::load_with_env(auth, |name| std::env::var_os(name))
    }

    /// As [`AuthSettings::load`], with `env` standing in for the environment (tests).
    pub fn load_with_env(
        auth: &FileAuth,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<AuthSettings, AuthConfigError> {
        AuthSettings::load_located(auth, env).map_err(|e| e.error)
    }

    /// As [`AuthSettings::load_with_env`], saying which entry of `[auth]` an error is
    /// about, so that configuration validation can point at its line.
    pub fn load_located(
        auth: &FileAuth,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<AuthSettings, LocatedAuthError> {
        let section = |error| LocatedAuthError {
            entry: AuthEntry::Section,
            label: String::new(),
            error,
        };
        crypto::install().map_err(|_| section(AuthConfigError::CryptoProvider))?;
        let j = &auth.jwt;
        let issuer = Some(j.issuer.clone()).filter(|s| !s.is_empty());
        let leeway = *j.leeway_s.get_ref();
        let mut keys: Vec<(String, JwtKey)> = Vec::new();
        for (i, k) in j.keys.iter().enumerate() {
            let label = match &k.kid {
                Some(kid) => format!("auth.jwt.keys[{i}] (kid {:?})", kid.get_ref()),
                None => format!("auth.jwt.keys[{i}]"),
            };
            let at = |error| LocatedAuthError {
                entry: AuthEntry::JwtKey(i),
                label: label.clone(),
                error,
            };
            let loaded = load_key(&label, k, &env).map_err(at)?;
            for (kid, alg, key) in loaded {
                if let Some(kid) = &kid {
                    if let Some((first, _)) = keys.iter().find(|(_, o)| o.kid.as_ref() == Some(kid))
                    {
                        return Err(at(AuthConfigError::DuplicateKid {
                            kid: kid.clone(),
                            first: first.clone(),
                            second: label.clone(),
                        }));
                    }
                }
                let validation = validation(alg, leeway, issuer.as_deref(), &j.audience);
                let key = JwtKey {
                    kid,
                    alg,
                    key,
                    validation,
                };
                keys.push((label.clone(), key));
            }
        }
        let jwt = JwtSettings {
            keys: keys.into_iter().map(|(_, k)| k).collect(),
            issuer,
            audience: j.audience.clone(),
            leeway,
            claims: ClaimNames {
                user: j.user_claim.clone(),
                tenant: j.tenant_claim.clone(),
                plan: j.plan_claim.clone(),
                scope: j.scope_claim.clone(),
            },
        };
        Ok(AuthSettings {
            jwt,
            api_keys: api_keys(auth)?,
            api_key_header: auth.api_keys.header.get_ref().to_ascii_lowercase(),
        })
    }
}

fn validation(
    alg: Algorithm,
    leeway: u64,
    issuer: Option<&str>,
    audience: &[String],
) -> jsonwebtoken::Validation {
    let mut v = jsonwebtoken::Validation::new(alg);
    v.leeway = leeway;
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    // jsonwebtoken rejects any `aud` when it was given no audience; the spec says an
    // empty `audience` means "not checked".
    v.validate_aud = !audience.is_empty();
    if v.validate_aud {
        v.set_audience(audience);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

/// The keys one `[[auth.jwt.keys]]` entry stands for: one, or several from a JWK Set.
fn load_key(
    label: &str,
    k: &FileJwtKey,
    env: &impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<(Option<String>, Algorithm, DecodingKey)>, AuthConfigError> {
    let alg = match &k.algorithm {
        Some(a) => Some(parse_algorithm(label, a.get_ref())?),
        None => None,
    };
    let kid = k.kid.as_ref().map(|s| s.get_ref().clone());
    let bad_source = |reason| AuthConfigError::BadKeySource {
        key: label.to_owned(),
        reason,
    };
    match (&k.secret_env, &k.public_key_file, &k.jwks_file) {
        (Some(var), None, None) => {
            let alg = alg.ok_or_else(|| bad_source("algorithm is required"))?;
            if crypto::family(alg) != AlgorithmFamily::Hmac {
                return Err(bad_source("secret_env is for HS* algorithms only"));
            }
            let key = hmac_secret(label, var.get_ref(), alg, env)?;
            Ok(vec![(kid, alg, key)])
        }
        (None, Some(path), None) => {
            let alg = alg.ok_or_else(|| bad_source("algorithm is required"))?;
            let key = public_key(label, path.get_ref(), alg)?;
            Ok(vec![(kid, alg, key)])
        }
        (None, None, Some(path)) => jwks(label, path.get_ref(), kid.as_deref(), alg),
        _ => Err(bad_source(
            "give exactly one of secret_env, public_key_file, jwks_file",
        )),
    }
}

fn parse_algorithm(label: &str, value: &str) -> Result<Algorithm, AuthConfigError> {
    value
        .parse()
        .map_err(|_| AuthConfigError::UnknownAlgorithm {
            key: label.to_owned(),
            value: value.to_owned(),
        })
}

fn hmac_secret(
    label: &str,
    var: &str,
    alg: Algorithm,
    env: &impl Fn(&str) -> Option<OsString>,
) -> Result<DecodingKey, AuthConfigError> {
    let secret =
        env(var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| AuthConfigError::MissingSecret {
                key: label.to_owned(),
                var: var.to_owned(),
            })?;
    let secret = secret.as_encoded_bytes();
    // RFC 7518 3.2: "A key of the same size as the hash output ... or larger MUST be
    // used". A short secret is open to offline guessing from any one token.
    let min = match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    };
    if secret.len() < min {
        return Err(AuthConfigError::WeakSecret {
            key: label.to_owned(),
            var: var.to_owned(),
            alg: crypto::name(alg),
            len: secret.len(),
            min,
        });
    }
    Ok(DecodingKey::from_secret(secret))
}

fn read_key_file(label: &str, path: &str) -> Result<Vec<u8>, AuthConfigError> {
    fs::read(path).map_err(|source| AuthConfigError::KeyFile {
        key: label.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn public_key(label: &str, path: &str, alg: Algorithm) -> Result<DecodingKey, AuthConfigError> {
    let bad = |reason: &str| AuthConfigError::BadKey {
        key: label.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if crypto::family(alg) == AlgorithmFamily::Hmac {
        return Err(bad("HS* keys are secrets: use secret_env"));
    }
    let file = read_key_file(label, path)?;
    // Text before the armour (openssl's "Bag Attributes", comments) is not PEM.
    let begin = file
        .windows(11)
        .position(|w| w == b"-----BEGIN ")
        .ok_or_else(|| bad("not a PEM file (no -----BEGIN line)"))?;
    let (pem_label, der) =
        pem_rfc7468::decode_vec(&file[begin..]).map_err(|_| bad("not a valid PEM block"))?;
    match pem_label {
        "PUBLIC KEY" => spki_key(alg, &der).map_err(bad),
        "RSA PUBLIC KEY" if crypto::family(alg) == AlgorithmFamily::Rsa => {
            Ok(DecodingKey::from_rsa_der(&der))
        }
        // Only public keys belong on the gateway.
        l if l.contains("PRIVATE KEY") => Err(bad("holds a private key; give the public key only")),
        l => Err(bad(&format!("a {l:?} PEM block; expected PUBLIC KEY"))),
    }
}

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The key inside a DER SubjectPublicKeyInfo, checked against the algorithm by its OIDs:
/// PKCS#1 `RSAPublicKey` for RS*/PS*, the uncompressed point for ES*, the 32 raw bytes
/// for EdDSA (the forms the ring verifiers take).
fn spki_key(alg: Algorithm, der: &[u8]) -> Result<DecodingKey, &'static str> {
    let spki = SubjectPublicKeyInfoRef::try_from(der).map_err(|_| "not a DER public key")?;
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or("not a DER public key")?;
    let oid = spki.algorithm.oid;
    let key = match alg {
        _ if crypto::family(alg) == AlgorithmFamily::Rsa => {
            if oid != RSA_ENCRYPTION {
                return Err("not an RSA public key");
            }
            DecodingKey::from_rsa_der(bits)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            if oid != EC_PUBLIC_KEY {
                return Err("not an EC public key");
            }
            let (curve, wrong) = match alg {
                Algorithm::ES256 => (P256, "ES256 needs a P-256 key"),
                _ => (P384, "ES384 needs a P-384 key"),
            };
            if spki.algorithm.parameters_oid().ok() != Some(curve) {
                return Err(wrong);
            }
            DecodingKey::from_ec_der(bits)
        }
        Algorithm::EdDSA => {
            if oid != ED25519 {
                return Err("not an Ed25519 public key");
            }
            DecodingKey::from_ed_der(bits)
        }
        _ => return Err("not a public-key algorithm"),
    };
    check_point(alg, &key)?;
    Ok(key)
}

/// An EC or Ed25519 key of the wrong size (a JWK's `x`/`y` are not checked against its
/// `crv` by jsonwebtoken) would only show up as "invalid signature" on every token.
fn check_point(alg: Algorithm, key: &DecodingKey) -> Result<(), &'static str> {
    let jsonwebtoken::DecodingKeyKind::SecretOrDer(bytes) = key.kind() else {
        return Ok(());
    };
    let (len, what) = match alg {
        Algorithm::ES256 => (65, "ES256 needs a P-256 key"),
        Algorithm::ES384 => (97, "ES384 needs a P-384 key"),
        Algorithm::EdDSA => (32, "EdDSA needs an Ed25519 key"),
        _ => return Ok(()),
    };
    let uncompressed = len == 32 || bytes.first() == Some(&4);
    if bytes.len() == len && uncompressed {
        Ok(())
    } else {
        Err(what)
    }
}

/// The signing keys of a JWK Set file. `only_kid` (the entry's `kid`) picks one key;
/// `alg` (the entry's `algorithm`) must agree with every key used and names the
/// algorithm of keys that do not. Keys marked `"use": "enc"` are skipped.
fn jwks(
    label: &str,
    path: &str,
    only_kid: Option<&str>,
    alg: Option<Algorithm>,
) -> Result<Vec<(Option<String>, Algorithm, DecodingKey)>, AuthConfigError> {
    let bad = |reason: String| AuthConfigError::BadKey {
        key: label.to_owned(),
        path: path.to_owned(),
        reason,
    };
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let text = read_key_file(label, path)?;
    let set: Set = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("not a JWK Set (want {{\"keys\": [..]}}): {e}")))?;
    let mut out = Vec::new();
    for (i, raw) in set.keys.into_iter().enumerate() {
        let jwk: Jwk = serde_json::from_value(raw)
            .map_err(|e| bad(format!("keys[{i}]: not a supported JWK: {e}")))?;
        let kid = jwk.common.key_id.clone();
        let at = match &kid {
            Some(kid) => format!("keys[{i}] (kid {kid:?})"),
            None => format!("keys[{i}]"),
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        if only_kid.is_some() && kid.as_deref() != only_kid {
            continue;
        }
        let key_alg = match jwk.common.key_algorithm {
            Some(a) => Some(
                a.to_string()
                    .parse::<Algorithm>()
                    .map_err(|_| bad(format!("{at}: alg {a} is not a signature algorithm")))?,
            ),
            None => None,
        };
        let from_curve = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Some(Algorithm::ES256),
                EllipticCurve::P384 => Some(Algorithm::ES384),
                _ => return Err(bad(format!("{at}: unsupported curve"))),
            },
            AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                EllipticCurve::Ed25519 => Some(Algorithm::EdDSA),
                _ => return Err(bad(format!("{at}: unsupported curve"))),
            },
            AlgorithmParameters::RSA(_) => None,
            AlgorithmParameters::OctetKey(_) => {
                return Err(bad(format!(
                    "{at}: symmetric (oct) keys do not belong in a file; use secret_env"
                )))
            }
        };
        let chosen = match (key_alg, alg) {
            (Some(k), Some(e)) if k != e => {
                return Err(bad(format!(
                    "{at}: alg {} differs from the entry's algorithm {}",
                    crypto::name(k),
                    crypto::name(e)
                )))
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => from_curve.ok_or_else(|| {
                bad(format!(
                    "{at}: RSA key without \"alg\"; set algorithm on the entry"
                ))
            })?,
        };
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| bad(format!("{at}: unusable key material: {e}")))?;
        if key.family() != crypto::family(chosen) || from_curve.is_some_and(|c| c != chosen) {
            return Err(bad(format!(
                "{at}: key type does not fit alg {}",
                crypto::name(chosen)
            )));
        }
        check_point(chosen, &key).map_err(|reason| bad(format!("{at}: {reason}")))?;
        out.push((kid, chosen, key));
    }
    if out.is_empty() {
        return Err(bad(match only_kid {
            Some(kid) => format!("no signing key with kid {kid:?}"),
            None => "no signing key".to_owned(),
        }));
    }
    Ok(out)
}

fn api_keys(auth: &FileAuth) -> Result<Vec<([u8; 32], Identity)>, LocatedAuthError> {
    let mut out: Vec<([u8; 32], Identity)> = Vec::new();
    for (i, k) in auth.api_keys.keys.iter().enumerate() {
        let id = k.id.get_ref();
        let at = format!("auth.api_keys.keys {id:?}");
        let located = |error| LocatedAuthError {
            entry: AuthEntry::ApiKey(i),
            label: at.clone(),
            error,
        };
        api_key(k, &out).map_err(located)?;
        let identity = identity(k).map_err(located)?;
        out.push((digest_of(k), identity));
    }
    Ok(out)
}

/// The digest of a checked entry ([`api_key`] has parsed it).
fn digest_of(k: &crate::config::file::FileApiKey) -> [u8; 32] {
    let mut digest = [0u8; 32];
    let _ = hex::decode_to_slice(k.sha256.get_ref(), &mut digest);
    digest
}

/// One API key's digest: well formed, and not one already taken.
fn api_key(
    k: &crate::config::file::FileApiKey,
    taken: &[([u8; 32], Identity)],
) -> Result<(), AuthConfigError> {
    let id = k.id.get_ref();
    let mut digest = [0u8; 32];
    hex::decode_to_slice(k.sha256.get_ref(), &mut digest)
        .map_err(|_| AuthConfigError::BadDigest { id: id.clone() })?;
    if let Some((_, other)) = taken.iter().find(|(d, _)| *d == digest) {
        return Err(AuthConfigError::DuplicateDigest {
            id: id.clone(),
            other: other.api_key_id.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

/// The identity an API key stands for.
fn identity(k: &crate::config::file::FileApiKey) -> Result<Identity, AuthConfigError> {
    {
        let id = k.id.get_ref();
        let at = format!("auth.api_keys.keys {id:?}");
        let bad = |field, reason| AuthConfigError::BadIdentityValue {
            at: at.clone(),
            field,
            reason,
        };
        let user = k.user.clone();
        let tenant = k.tenant.clone().unwrap_or_else(|| user.clone());
        let plan = k.plan.as_ref().map(|p| p.get_ref().clone());
        for (field, value) in [
            ("user", Some(&user)),
            ("tenant", Some(&tenant)),
            ("plan", plan.as_ref()),
        ] {
            if value.is_some_and(|v| !super::is_identity_value(v)) {
                return Err(bad(field, "must be non-empty, without control characters"));
            }
        }
        if !k.scopes.iter().all(|s| super::is_scope_token(s)) {
            return Err(bad(
                "scopes",
                "must be non-empty, without spaces or control characters",
            ));
        }
        let identity = Identity {
            user,
            tenant,
            plan,
            scopes: k.scopes.clone(),
            api_key_id: Some(id.clone()),
            expires_at: None,
            via: Via::ApiKey,
        };
        Ok(identity)
    }
}
