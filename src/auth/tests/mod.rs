//! Unit tests of authentication with real keys: HS256 from a secret, RS256 and PS256
//! from the committed test-only RSA key (`tests/keys/`), ES256 and EdDSA from keys ring
//! generates per run. Key files are written to a scratch directory; secrets are passed
//! through `AuthSettings::load_with_env`, never through the process environment.

mod caching;
mod jwt;
mod keys;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use serde_json::{json, Value};

use super::*;
use crate::config::file::FileAuth;

pub(super) const HS_SECRET: &str = "test-only-hs256-secret-32-bytes-or-more";
const HS_OTHER_SECRET: &str = "another-test-only-hs256-secret-0123456789";
const RSA_PRIVATE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/keys/test-only-rs256.key.pem"
));
const RSA_PUBLIC: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/keys/test-only-rs256.pub.pem"
));
/// DER of SubjectPublicKeyInfo up to the key bits: id-ecPublicKey + prime256v1.
const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
/// DER of SubjectPublicKeyInfo up to the key bits: id-Ed25519.
const ED25519_SPKI_PREFIX: &str = "302a300506032b6570032100";

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A scratch directory, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ringgate-auth-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        TempDir(dir)
    }

    /// Write `name` and return its path as a TOML-ready string.
    pub(super) fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write key file");
        path.to_str().expect("utf-8 temp path").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn spki_pem(prefix_hex: &str, public: &[u8]) -> String {
    let mut der = hex::decode(prefix_hex).expect("prefix hex");
    der.extend_from_slice(public);
    pem("PUBLIC KEY", &der)
}

/// Key pairs generated for this run.
pub(super) struct Keys {
    pub es256_pkcs8: Vec<u8>,
    pub es256_public: Vec<u8>,
    pub ed_pkcs8: Vec<u8>,
    pub ed_public: Vec<u8>,
}

impl Keys {
    fn generate() -> Keys {
        let rng = SystemRandom::new();
        let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
        let es = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("p-256 key");
        let es_pair = sig::EcdsaKeyPair::from_pkcs8(alg, es.as_ref(), &rng).expect("p-256");
        let ed = sig::Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
        let ed_pair = sig::Ed25519KeyPair::from_pkcs8(ed.as_ref()).expect("ed25519");
        Keys {
            es256_pkcs8: es.as_ref().to_vec(),
            es256_public: es_pair.public_key().as_ref().to_vec(),
            ed_pkcs8: ed.as_ref().to_vec(),
            ed_public: ed_pair.public_key().as_ref().to_vec(),
        }
    }

    /// The private key that signs for `alg`.
    pub(super) fn signing(&self, alg: Algorithm) -> EncodingKey {
        match alg {
            Algorithm::HS256 => EncodingKey::from_secret(HS_SECRET.as_bytes()),
            Algorithm::RS256 | Algorithm::PS256 => {
                let (_, pkcs8) = pem_rfc7468::decode_vec(RSA_PRIVATE).expect("test rsa key");
                EncodingKey::from_rsa_der(&pkcs8)
            }
            Algorithm::ES256 => EncodingKey::from_ec_der(&self.es256_pkcs8),
            Algorithm::EdDSA => EncodingKey::from_ed_der(&self.ed_pkcs8),
            other => panic!("no test key for {other:?}"),
        }
    }

    fn jwks(&self) -> String {
        let (x, y) = self.es256_public[1..].split_at(32);
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "es-jwk", "use": "sig",
             "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed-jwk", "alg": "EdDSA",
             "x": URL_SAFE_NO_PAD.encode(&self.ed_public)},
            {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"},
        ]})
        .to_string()
    }
}

pub(super) fn env(name: &str) -> Option<OsString> {
    match name {
        "T_HS" => Some(HS_SECRET.into()),
        "T_HS_OTHER" => Some(HS_OTHER_SECRET.into()),
        _ => None,
    }
}

pub(super) fn parse(toml_text: &str) -> FileAuth {
    toml::from_str(toml_text).expect("test [auth] parses")
}

/// SHA-256 hex of the API key `key`.
pub(super) fn key_digest(key: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, key.as_bytes()))
}

/// One of each kind of key, API keys, and an authenticator over them.
pub(super) struct World {
    pub keys: Keys,
    pub auth: Authenticator,
    _dir: TempDir,
}

impl World {
    /// Keys: hs-1 (HS256), rs-1 (RS256), ps-1 (PS256), es-1 (ES256), ed-1 (EdDSA) from
    /// PEM, es-jwk and ed-jwk from a JWK Set; `jwt_extra` is added to `[jwt]`.
    pub(super) fn new(jwt_extra: &str) -> World {
        World::with_limits(jwt_extra, CacheLimits::default())
    }

    pub(super) fn with_limits(jwt_extra: &str, limits: CacheLimits) -> World {
        let keys = Keys::generate();
        let dir = TempDir::new();
        let rs = dir.write("rs.pub.pem", RSA_PUBLIC);
        let es = dir.write("es.pub.pem", spki_pem(P256_SPKI_PREFIX, &keys.es256_public));
        let ed = dir.write("ed.pub.pem", spki_pem(ED25519_SPKI_PREFIX, &keys.ed_public));
        let jwks = dir.write("jwks.json", keys.jwks());
        let text = format!(
            r#"
            [jwt]
            {jwt_extra}
            [[jwt.keys]]
            kid = "hs-1"
            algorithm = "HS256"
            secret_env = "T_HS"
            [[jwt.keys]]
            kid = "rs-1"
            algorithm = "RS256"
            public_key_file = "{rs}"
            [[jwt.keys]]
            kid = "ps-1"
            algorithm = "PS256"
            public_key_file = "{rs}"
            [[jwt.keys]]
            kid = "es-1"
            algorithm = "ES256"
            public_key_file = "{es}"
            [[jwt.keys]]
            kid = "ed-1"
            algorithm = "EdDSA"
            public_key_file = "{ed}"
            [[jwt.keys]]
            jwks_file = "{jwks}"

            [api_keys]
            header = "X-Api-Key"
            [[api_keys.keys]]
            id = "key_acme_1"
            sha256 = "{acme}"
            user = "svc-acme"
            tenant = "acme"
            plan = "pro"
            scopes = ["users:read", "orders:read"]
            [[api_keys.keys]]
            id = "key_solo"
            sha256 = "{solo}"
            user = "svc-solo"
            "#,
            acme = key_digest("acme-secret-key"),
            solo = key_digest("solo-secret-key").to_uppercase(),
        );
        let settings = AuthSettings::load_with_env(&parse(&text), env).expect("test config loads");
        World {
            keys,
            auth: Authenticator::with_limits(&settings, limits),
            _dir: dir,
        }
    }

    /// A token signed by the test key for `alg`, with header `kid`.
    pub(super) fn mint(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.keys.signing(alg)).expect("mint token")
    }

    /// A token with this exact header and payload JSON, signed by the key for `alg`.
    pub(super) fn mint_raw(&self, alg: Algorithm, header: &str, payload: &str) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let key = self.keys.signing(alg);
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg).expect("sign raw token");
        format!("{message}.{signature}")
    }

    pub(super) fn bearer_at(&self, token: &str, at: u64) -> AuthOutcome {
        self.auth
            .authenticate(Some(format!("Bearer {token}").as_bytes()), None, at)
    }

    pub(super) fn bearer(&self, token: &str) -> AuthOutcome {
        self.bearer_at(token, now())
    }
}

/// Claims of a token valid for five minutes.
pub(super) fn claims() -> Value {
    json!({
        "sub": "alice",
        "exp": now() + 300,
        "iat": now(),
        "tenant": "acme",
        "plan": "pro",
        "scope": "users:read orders:read",
    })
}

/// `token` with the first character of its signature changed: still well-formed.
pub(super) fn tamper(token: &str) -> String {
    let at = token.rfind('.').expect("a jwt") + 1;
    let swap = if token.as_bytes()[at] == b'A' {
        "B"
    } else {
        "A"
    };
    format!("{}{swap}{}", &token[..at], &token[at + 1..])
}

#[track_caller]
pub(super) fn identity(outcome: AuthOutcome) -> Rc<Identity> {
    match outcome {
        AuthOutcome::Authenticated(id) => id,
        other => panic!("expected an identity, got {other:?}"),
    }
}

#[track_caller]
pub(super) fn failure(outcome: AuthOutcome) -> AuthFailure {
    match outcome {
        AuthOutcome::Invalid(f) => f,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn bearer_scheme_is_case_insensitive_and_spacing_tolerant() {
    use super::jwt::{bearer, Bearer};
    assert_eq!(bearer(b"Bearer abc.def.ghi"), Bearer::Token(b"abc.def.ghi"));
    assert_eq!(bearer(b"bearer abc"), Bearer::Token(b"abc"));
    assert_eq!(bearer(b"BEARER    abc  "), Bearer::Token(b"abc"));
    assert_eq!(bearer(b"Bearer\tabc"), Bearer::Token(b"abc"));
    assert_eq!(bearer(b"Basic dXNlcjpwYXNz"), Bearer::OtherScheme);
    assert_eq!(bearer(b"Bearerabc"), Bearer::OtherScheme);
    assert_eq!(bearer(b"Bear"), Bearer::OtherScheme);
    assert_eq!(bearer(b""), Bearer::OtherScheme);
    assert_eq!(bearer(b"Bearer"), Bearer::Malformed);
    assert_eq!(bearer(b"Bearer   "), Bearer::Malformed);
    assert_eq!(bearer(b"Bearer a b"), Bearer::Token(b"a b"));
}

#[test]
fn a_bearer_credential_in_a_list_is_no_single_credential() {
    use super::jwt::{bearer, Bearer};
    // Two fields folded into one (RFC 9110 5.3 does not allow it for Authorization),
    // whichever comes first, and a token holding a comma (never token68).
    for value in [
        &b"Bearer a.b.c, Bearer d.e.f"[..],
        b"bearer a.b.c,bearer d.e.f",
        b"Bearer a.b.c,",
        b"Bearer ,a.b.c",
        b"Basic dXNlcjpwYXNz, Bearer a.b.c",
        b"Basic dXNlcjpwYXNz, Bearer",
        b"Bearer, Bearer a.b.c",
        b"Digest a=b, Bearer a.b.c",
    ] {
        assert_eq!(
            bearer(value),
            Bearer::List,
            "{}",
            String::from_utf8_lossy(value)
        );
    }
    // Another scheme's own parameters are no bearer credential.
    assert_eq!(
        bearer(b"Digest username=\"u\", realm=\"r\", nonce=\"n\""),
        Bearer::OtherScheme
    );
    assert_eq!(bearer(b"Basic a, Basic b"), Bearer::OtherScheme);
    assert_eq!(bearer(b"Digest bearer=1, bearerx=2"), Bearer::OtherScheme);
}

#[test]
fn lists_are_ambiguous_before_anything_is_verified() {
    let w = World::new("");
    let token = w.mint(Algorithm::HS256, Some("hs-1"), &claims());
    let forged = tamper(&token);
    let ambiguous = |authorization: Option<&[u8]>, api_key: Option<&[u8]>| {
        w.auth.authenticate(authorization, api_key, now())
    };
    for value in [
        format!("Bearer {token}, Bearer {forged}"),
        format!("Bearer {forged}, Bearer {token}"),
        format!("Bearer {token},Bearer {token}"),
        format!("Basic dXNlcjpwYXNz, Bearer {token}"),
    ] {
        assert_eq!(
            ambiguous(Some(value.as_bytes()), Some(b"acme-secret-key")),
            AuthOutcome::Ambiguous(Ambiguity::AuthorizationList),
            "{value}"
        );
    }
    // Nothing was verified, so nothing was cached either way.
    assert_eq!(w.auth.stats(), AuthStats::default());
    assert_eq!(w.auth.cached_identities(), 0);
    for key in [
        &b"acme-secret-key, solo-secret-key"[..],
        b"acme-secret-key,",
        b" , acme-secret-key",
        b",",
    ] {
        assert_eq!(
            ambiguous(None, Some(key)),
            AuthOutcome::Ambiguous(Ambiguity::ApiKeyList),
            "{}",
            String::from_utf8_lossy(key)
        );
        // Another scheme leaves the decision to the API key, list and all.
        assert_eq!(
            ambiguous(Some(b"Basic dXNlcjpwYXNz"), Some(key)),
            AuthOutcome::Ambiguous(Ambiguity::ApiKeyList)
        );
    }
    // A bearer token decides alone: the API key is not looked at, list or not.
    let auth = format!("Bearer {token}");
    identity(ambiguous(Some(auth.as_bytes()), Some(b"a, b")));
}

#[test]
fn other_schemes_are_anonymous_unless_an_api_key_is_sent() {
    let w = World::new("");
    let basic = Some(&b"Basic dXNlcjpwYXNz"[..]);
    assert_eq!(
        w.auth.authenticate(basic, None, now()),
        AuthOutcome::Anonymous
    );
    assert_eq!(
        w.auth.authenticate(None, None, now()),
        AuthOutcome::Anonymous
    );
    let id = identity(w.auth.authenticate(basic, Some(b"acme-secret-key"), now()));
    assert_eq!(id.api_key_id.as_deref(), Some("key_acme_1"));
    for value in [
        &b"Bearer"[..],
        b"Bearer  ",
        b"Bearer a b",
        b"Bearer a.b c.d",
    ] {
        let outcome = w
            .auth
            .authenticate(Some(value), Some(b"acme-secret-key"), now());
        assert_eq!(failure(outcome), AuthFailure::Malformed);
    }
}

#[test]
fn api_key_matches_by_digest() {
    let w = World::new("");
    assert_eq!(w.auth.api_key_header(), "x-api-key");
    let id = identity(w.auth.authenticate(None, Some(b" acme-secret-key "), now()));
    assert_eq!(
        *id,
        Identity {
            user: "svc-acme".into(),
            tenant: "acme".into(),
            plan: Some("pro".into()),
            scopes: vec!["users:read".into(), "orders:read".into()],
            api_key_id: Some("key_acme_1".into()),
            expires_at: None,
            via: Via::ApiKey,
        }
    );
    // Upper-case hex in the config; tenant defaults to the user.
    let solo = identity(w.auth.authenticate(None, Some(b"solo-secret-key"), now()));
    assert_eq!(
        (solo.user.as_str(), solo.tenant.as_str()),
        ("svc-solo", "svc-solo")
    );
    assert_eq!(solo.plan, None);
    assert_eq!(
        failure(w.auth.authenticate(None, Some(b"acme-secret-kez"), now())),
        AuthFailure::UnknownApiKey
    );
    assert_eq!(
        w.auth.authenticate(None, Some(b"  "), now()),
        AuthOutcome::Anonymous
    );
    let huge = vec![b'k'; MAX_API_KEY_BYTES + 1];
    assert_eq!(
        failure(w.auth.authenticate(None, Some(&huge), now())),
        AuthFailure::TooLarge
    );
}

#[test]
fn bearer_token_wins_over_api_key() {
    let w = World::new("");
    let token = w.mint(Algorithm::HS256, Some("hs-1"), &claims());
    let auth = format!("Bearer {token}");
    let id = identity(
        w.auth
            .authenticate(Some(auth.as_bytes()), Some(b"acme-secret-key"), now()),
    );
    assert_eq!((id.via, id.user.as_str()), (Via::Jwt, "alice"));
    // A bad token is not rescued by a good key.
    let bad = format!("Bearer {}", tamper(&token));
    let outcome = w
        .auth
        .authenticate(Some(bad.as_bytes()), Some(b"acme-secret-key"), now());
    assert_eq!(failure(outcome), AuthFailure::BadSignature);
}

#[test]
fn scopes_all_required() {
    let id = Identity {
        user: "u".into(),
        tenant: "u".into(),
        plan: None,
        scopes: vec!["a".into(), "b".into()],
        api_key_id: None,
        expires_at: None,
        via: Via::Jwt,
    };
    assert!(has_scopes(&id, &[]));
    assert!(has_scopes(&id, &["b".into(), "a".into()]));
    assert!(!has_scopes(&id, &["a".into(), "c".into()]));
}

#[test]
fn challenges_follow_rfc6750() {
    assert_eq!(challenge(Challenge::NoCredential), "Bearer");
    assert_eq!(
        challenge(Challenge::InvalidToken(&AuthFailure::Expired)),
        r#"Bearer error="invalid_token", error_description="token expired""#
    );
    let scopes = ["users:read".to_owned(), "users:write".to_owned()];
    assert_eq!(
        challenge(Challenge::InsufficientScope(&scopes)),
        r#"Bearer error="insufficient_scope", scope="users:read users:write""#
    );
    assert_eq!(
        challenge(Challenge::InvalidRequest(&Ambiguity::TwoAuthorizations)),
        "Bearer error=\"invalid_request\", error_description=\"more than one \
         Authorization field: send one credential\""
    );
    let odd = ["a\"b\\c\r\n".to_owned()];
    assert_eq!(
        challenge(Challenge::InsufficientScope(&odd)),
        r#"Bearer error="insufficient_scope", scope="a\"b\\c""#
    );
}

#[test]
fn failure_messages_are_fixed_text_without_credentials() {
    let w = World::new("");
    let token = w.mint(
        Algorithm::HS256,
        Some("hs-1"),
        &json!({"sub": "alice", "exp": 1}),
    );
    let f = failure(w.bearer(&token));
    for text in [
        f.to_string(),
        challenge(Challenge::InvalidToken(&f)),
        format!("{f:?}"),
    ] {
        assert!(!text.contains(&token[..20]), "{text}");
        assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text}");
    }
    assert_eq!(f.code(), "expired");
}

/// Whether `$ty` is `Send` / `Sync`, as a `bool` (not only a compile error when it is
/// not): an inherent const that exists only when the bound holds shadows the trait's
/// `false` (the `impls` crate's trick).
macro_rules! is {
    ($ty:ty: $bound:path) => {{
        #[allow(dead_code)]
        trait Fallback {
            const YES: bool = false;
        }
        struct Probe<T: ?Sized>(std::marker::PhantomData<T>);
        impl<T: ?Sized> Fallback for Probe<T> {}
        #[allow(dead_code)]
        impl<T: ?Sized + $bound> Probe<T> {
            const YES: bool = true;
        }
        <Probe<$ty>>::YES
    }};
}

#[test]
fn settings_cross_threads_authenticator_stays_home() {
    // Loaded once and shared with the workers (`Arc<AuthSettings>`); each worker owns
    // its `Authenticator` (Rc/RefCell inside: deliberately neither `Send` nor `Sync`, so
    // that its cache and counters can never be shared or moved between cores).
    assert!(is!(AuthSettings: Send) && is!(AuthSettings: Sync));
    assert!(is!(AuthConfigError: Send) && is!(AuthConfigError: Sync));
    assert!(
        !is!(Authenticator: Send),
        "an Authenticator could move to another thread"
    );
    assert!(
        !is!(Authenticator: Sync),
        "an Authenticator could be shared between threads"
    );
    // The probe itself tells the two apart.
    assert!(is!(u8: Send) && !is!(Rc<u8>: Send) && !is!(std::cell::Cell<u8>: Sync));

    // The settings really do cross: a worker thread builds its own authenticator from
    // the shared settings and verifies with it, and that authenticator's cache is its
    // own (the main thread's stays empty).
    let text = format!(
        "[jwt]\n[[jwt.keys]]\nkid = \"hs-1\"\nalgorithm = \"HS256\"\nsecret_env = \"T_HS\"\n\
         [api_keys]\n[[api_keys.keys]]\nid = \"k\"\nsha256 = \"{}\"\nuser = \"svc\"\n",
        key_digest("worker-key")
    );
    let settings = std::sync::Arc::new(
        AuthSettings::load_with_env(&parse(&text), env).expect("test config loads"),
    );
    let home = Authenticator::new(&settings);
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .expect("mint token");
    let shared = std::sync::Arc::clone(&settings);
    let (user, cached) = std::thread::spawn(move || {
        let auth = Authenticator::new(&shared);
        let bearer = format!("Bearer {token}");
        let id = identity(auth.authenticate(Some(bearer.as_bytes()), None, now()));
        let key = identity(auth.authenticate(None, Some(b"worker-key"), now()));
        assert_eq!(key.user, "svc");
        (id.user.clone(), auth.cached_identities())
    })
    .join()
    .expect("worker thread");
    assert_eq!((user.as_str(), cached), ("alice", 1));
    assert_eq!(home.cached_identities(), 0);
    assert_eq!(home.stats(), AuthStats::default());
}
