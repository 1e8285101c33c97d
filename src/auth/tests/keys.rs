//! Loading `[auth]`: every mistake names the key and the problem, never key material.

use jsonwebtoken::Algorithm;

use super::*;

fn load(text: &str) -> Result<AuthSettings, AuthConfigError> {
    AuthSettings::load_with_env(&parse(text), env)
}

#[track_caller]
fn load_err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_load_with_no_keys() {
    let s = load("").unwrap();
    assert_eq!(s.api_key_header, "x-api-key");
    assert!(s.jwt.keys.is_empty());
    let auth = Authenticator::new(&s);
    let outcome = auth.authenticate(Some(b"Bearer a.b.c"), None, now());
    assert_eq!(failure(outcome), AuthFailure::Malformed);
}

#[test]
fn missing_secret_names_the_variable() {
    let e = load_err("[[jwt.keys]]\nkid = \"k\"\nalgorithm = \"HS256\"\nsecret_env = \"NOPE\"");
    assert!(e.contains("NOPE") && e.contains("kid \"k\""), "{e}");
    let empty = |name: &str| (name == "EMPTY").then(OsString::new);
    let text = "[[jwt.keys]]\nalgorithm = \"HS256\"\nsecret_env = \"EMPTY\"";
    let e = AuthSettings::load_with_env(&parse(text), empty).unwrap_err();
    assert!(matches!(e, AuthConfigError::MissingSecret { .. }), "{e}");
}

#[test]
fn short_secret_is_refused_without_showing_it() {
    let short = |name: &str| (name == "SHORT").then(|| OsString::from("hunter2hunter2"));
    let text = "[[jwt.keys]]\nkid = \"k\"\nalgorithm = \"HS384\"\nsecret_env = \"SHORT\"";
    let e = AuthSettings::load_with_env(&parse(text), short)
        .unwrap_err()
        .to_string();
    assert!(e.contains("SHORT") && e.contains("48"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    // HS384 wants 48 bytes; our test secret has fewer.
    let e = load_err("[[jwt.keys]]\nalgorithm = \"HS384\"\nsecret_env = \"T_HS\"");
    assert!(!e.contains(HS_SECRET), "{e}");
}

#[test]
fn key_file_problems_name_the_key_and_path() {
    let dir = TempDir::new();
    let missing = format!("{}/absent.pem", dir.0.display());
    let e = load_err(&format!(
        "[[jwt.keys]]\nkid = \"rs\"\nalgorithm = \"RS256\"\npublic_key_file = \"{missing}\""
    ));
    assert!(e.contains("kid \"rs\"") && e.contains("absent.pem"), "{e}");

    let private = dir.write("private.pem", RSA_PRIVATE);
    let e = load_err(&format!(
        "[[jwt.keys]]\nalgorithm = \"RS256\"\npublic_key_file = \"{private}\""
    ));
    assert!(e.contains("private key"), "{e}");
    assert!(!e.contains("MII"), "no key material in errors: {e}");

    // An RSA key where an EC or Ed25519 key is wanted.
    let rsa = dir.write("rs.pem", RSA_PUBLIC);
    for alg in ["ES256", "EdDSA"] {
        let e = load_err(&format!(
            "[[jwt.keys]]\nalgorithm = \"{alg}\"\npublic_key_file = \"{rsa}\""
        ));
        assert!(e.contains("not an"), "{alg}: {e}");
    }
    // A P-256 key configured as ES384.
    let keys = Keys::generate();
    let es = dir.write("es.pem", spki_pem(P256_SPKI_PREFIX, &keys.es256_public));
    let e = load_err(&format!(
        "[[jwt.keys]]\nalgorithm = \"ES384\"\npublic_key_file = \"{es}\""
    ));
    assert!(e.contains("P-384"), "{e}");
    let garbage = dir.write("garbage.pem", "not a pem");
    let e = load_err(&format!(
        "[[jwt.keys]]\nalgorithm = \"RS256\"\npublic_key_file = \"{garbage}\""
    ));
    assert!(e.contains("PEM"), "{e}");
}

#[test]
fn sources_must_fit_the_algorithm() {
    let e = load_err("[[jwt.keys]]\nalgorithm = \"RS256\"\nsecret_env = \"T_HS\"");
    assert!(e.contains("HS* algorithms only"), "{e}");
    let e = load_err("[[jwt.keys]]\nalgorithm = \"HS256\"\npublic_key_file = \"x.pem\"");
    assert!(e.contains("secret_env"), "{e}");
    let e = load_err("[[jwt.keys]]\nalgorithm = \"XS999\"\nsecret_env = \"T_HS\"");
    assert!(e.contains("XS999"), "{e}");
    let e = load_err("[[jwt.keys]]\nsecret_env = \"T_HS\"");
    assert!(e.contains("algorithm is required"), "{e}");
    let e = load_err("[[jwt.keys]]\nalgorithm = \"HS256\"");
    assert!(e.contains("exactly one"), "{e}");
}

#[test]
fn jwks_keys_and_their_algorithms() {
    let keys = Keys::generate();
    let dir = TempDir::new();
    let jwks = dir.write("jwks.json", keys.jwks());
    let s = load(&format!("[[jwt.keys]]\njwks_file = \"{jwks}\"")).unwrap();
    let loaded: Vec<_> = s
        .jwt
        .keys
        .iter()
        .map(|k| (k.kid.as_deref(), crypto::name(k.alg)))
        .collect();
    // The "use": "enc" key is skipped.
    assert_eq!(
        loaded,
        [(Some("es-jwk"), "ES256"), (Some("ed-jwk"), "EdDSA")]
    );

    // `kid` on the entry picks one key of the set.
    let s = load(&format!(
        "[[jwt.keys]]\nkid = \"ed-jwk\"\njwks_file = \"{jwks}\""
    ))
    .unwrap();
    assert_eq!(s.jwt.keys.len(), 1);
    let e = load_err(&format!(
        "[[jwt.keys]]\nkid = \"zz\"\njwks_file = \"{jwks}\""
    ));
    assert!(e.contains("no signing key with kid \"zz\""), "{e}");

    // `algorithm` on the entry must agree with each key's own.
    let e = load_err(&format!(
        "[[jwt.keys]]\nalgorithm = \"ES256\"\njwks_file = \"{jwks}\""
    ));
    assert!(e.contains("ed-jwk") && e.contains("differs"), "{e}");

    let rsa_no_alg = dir.write(
        "rsa.json",
        r#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#,
    );
    let e = load_err(&format!("[[jwt.keys]]\njwks_file = \"{rsa_no_alg}\""));
    assert!(e.contains("without \"alg\""), "{e}");
    load(&format!(
        "[[jwt.keys]]\nalgorithm = \"RS256\"\njwks_file = \"{rsa_no_alg}\""
    ))
    .unwrap();

    let oct = dir.write(
        "oct.json",
        r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#,
    );
    let e = load_err(&format!("[[jwt.keys]]\njwks_file = \"{oct}\""));
    assert!(e.contains("secret_env") && !e.contains("c2VjcmV0"), "{e}");

    let mismatch = dir.write(
        "mismatch.json",
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"ES256","x":"AAAA"}]}"#,
    );
    let e = load_err(&format!("[[jwt.keys]]\njwks_file = \"{mismatch}\""));
    assert!(e.contains("does not fit"), "{e}");

    let not_a_set = dir.write("bad.json", r#"[1, 2]"#);
    let e = load_err(&format!("[[jwt.keys]]\njwks_file = \"{not_a_set}\""));
    assert!(e.contains("not a JWK Set"), "{e}");
}

#[test]
fn duplicate_kid_across_sources_is_refused() {
    let keys = Keys::generate();
    let dir = TempDir::new();
    let jwks = dir.write("jwks.json", keys.jwks());
    let e = load_err(&format!(
        "[[jwt.keys]]\nkid = \"es-jwk\"\nalgorithm = \"HS256\"\nsecret_env = \"T_HS\"\n\
         [[jwt.keys]]\njwks_file = \"{jwks}\""
    ));
    assert!(e.contains("es-jwk") && e.contains("two keys"), "{e}");
}

#[test]
fn api_key_entries_are_checked() {
    let entry = |sha: &str, user: &str| {
        format!("[[api_keys.keys]]\nid = \"k1\"\nsha256 = \"{sha}\"\nuser = \"{user}\"\n")
    };
    let good = key_digest("k");
    let e = load_err(&entry("abc", "u"));
    assert!(e.contains("k1") && e.contains("64 hex"), "{e}");
    let e = load_err(&entry(&"zz".repeat(32), "u"));
    assert!(e.contains("64 hex"), "{e}");
    let e = load_err(&entry(&good, "u\\r\\nX-Admin: 1"));
    assert!(e.contains("user"), "{e}");
    let e = load_err(&format!(
        "{}{}",
        entry(&good, "a"),
        entry(&good.to_uppercase(), "b")
    ));
    assert!(e.contains("same sha256"), "{e}");
    let e = load_err(&format!("{}scopes = [\"a b\"]\n", entry(&good, "u")));
    assert!(e.contains("scopes"), "{e}");
}

#[test]
fn pem_forms_accepted_and_refused() {
    let dir = TempDir::new();
    let (_, spki_der) = pem_rfc7468::decode_vec(RSA_PUBLIC).unwrap();
    let spki = spki::SubjectPublicKeyInfoRef::try_from(spki_der.as_slice()).unwrap();
    let pkcs1 = pem(
        "RSA PUBLIC KEY",
        spki.subject_public_key.as_bytes().unwrap(),
    );
    let preamble = format!(
        "Bag Attributes\n    friendlyName: idp\n{}",
        pem("PUBLIC KEY", &spki_der)
    );
    let w = World::new("");
    let token = w.mint(Algorithm::RS256, None, &claims());
    for (name, text) in [("pkcs1.pem", pkcs1), ("preamble.pem", preamble)] {
        let path = dir.write(name, text);
        let s = load(&format!(
            "[[jwt.keys]]\nalgorithm = \"RS256\"\npublic_key_file = \"{path}\""
        ))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let auth = Authenticator::new(&s);
        let header = format!("Bearer {token}");
        identity(auth.authenticate(Some(header.as_bytes()), None, now()));
    }
    let cert = dir.write("cert.pem", pem("CERTIFICATE", &spki_der));
    let e = load_err(&format!(
        "[[jwt.keys]]\nalgorithm = \"RS256\"\npublic_key_file = \"{cert}\""
    ));
    assert!(
        e.contains("\"CERTIFICATE\"") && e.contains("expected PUBLIC KEY"),
        "{e}"
    );
    let truncated = dir.write("cut.pem", &RSA_PUBLIC[..200]);
    let e = load_err(&format!(
        "[[jwt.keys]]\nalgorithm = \"RS256\"\npublic_key_file = \"{truncated}\""
    ));
    assert!(e.contains("not a valid PEM"), "{e}");
}
