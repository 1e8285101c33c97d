//! Token verification: each algorithm, each claim rule, and the known attacks.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;

#[test]
fn valid_token_for_each_algorithm() {
    let w = World::new("");
    let cases = [
        (Algorithm::HS256, "hs-1"),
        (Algorithm::RS256, "rs-1"),
        (Algorithm::PS256, "ps-1"),
        (Algorithm::ES256, "es-1"),
        (Algorithm::EdDSA, "ed-1"),
        (Algorithm::ES256, "es-jwk"),
        (Algorithm::EdDSA, "ed-jwk"),
    ];
    for (alg, kid) in cases {
        let c = claims();
        let id = identity(w.bearer(&w.mint(alg, Some(kid), &c)));
        assert_eq!(
            *id,
            Identity {
                user: "alice".into(),
                tenant: "acme".into(),
                plan: Some("pro".into()),
                scopes: vec!["users:read".into(), "orders:read".into()],
                api_key_id: None,
                expires_at: c["exp"].as_u64(),
                via: Via::Jwt,
            },
            "{alg:?} {kid}"
        );
    }
}

#[test]
fn without_kid_the_keys_of_the_token_alg_are_tried() {
    let w = World::new("");
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        identity(w.bearer(&w.mint(alg, None, &claims())));
    }
    // Two ES256 keys (es-1 from PEM, es-jwk from the JWK Set): both may be tried.
    let before = w.auth.stats().signature_checks;
    let bad = tamper(&w.mint(Algorithm::ES256, None, &claims()));
    assert_eq!(failure(w.bearer(&bad)), AuthFailure::BadSignature);
    assert_eq!(w.auth.stats().signature_checks - before, 2);
}

#[test]
fn kid_selects_one_key_among_several() {
    let text = r#"
        [[jwt.keys]]
        kid = "a"
        algorithm = "HS256"
        secret_env = "T_HS_OTHER"
        [[jwt.keys]]
        kid = "b"
        algorithm = "HS256"
        secret_env = "T_HS"
        [[jwt.keys]]
        algorithm = "HS256"
        secret_env = "T_HS_OTHER"
    "#;
    let auth = Authenticator::new(&AuthSettings::load_with_env(&parse(text), env).unwrap());
    let w = World::new("");
    let token = w.mint(Algorithm::HS256, Some("b"), &claims());
    let at = |t: &str| auth.authenticate(Some(format!("Bearer {t}").as_bytes()), None, now());
    identity(at(&token));
    assert_eq!(auth.stats().signature_checks, 1, "only key b was tried");
    // Signed with b's secret but naming a: a alone is tried, and fails.
    let wrong = w.mint(Algorithm::HS256, Some("a"), &claims());
    assert_eq!(failure(at(&wrong)), AuthFailure::BadSignature);
    assert_eq!(auth.stats().signature_checks, 2);
    // No kid: all three HS256 keys are candidates; the one that signed it wins.
    identity(at(&w.mint(Algorithm::HS256, None, &claims())));
    assert_eq!(auth.stats().signature_checks, 4, "a fails, then b verifies");
}

#[test]
fn unknown_kid_is_rejected_before_any_check() {
    let w = World::new("");
    let token = w.mint(Algorithm::HS256, Some("nope"), &claims());
    assert_eq!(failure(w.bearer(&token)), AuthFailure::UnknownKid);
    assert_eq!(w.auth.stats().signature_checks, 0);
}

#[test]
fn alg_none_is_rejected() {
    let w = World::new("");
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"none","kid":"hs-1"}"#,
        r#"{"alg":"None"}"#,
    ] {
        let token = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header));
        assert_eq!(
            failure(w.bearer(&token)),
            AuthFailure::Malformed,
            "{header}"
        );
        let token = format!("{}.{payload}.c2ln", URL_SAFE_NO_PAD.encode(header));
        assert_eq!(
            failure(w.bearer(&token)),
            AuthFailure::AlgorithmNotAllowed,
            "{header}"
        );
    }
    assert_eq!(w.auth.stats().signature_checks, 0);
}

#[test]
fn rs256_public_key_as_hs256_secret_is_rejected() {
    let w = World::new("");
    let forged_key = EncodingKey::from_secret(RSA_PUBLIC);
    let forge = |kid: Option<&str>| {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, &claims(), &forged_key).unwrap()
    };
    // Naming the RS256 key: that key does not do HS256.
    assert_eq!(
        failure(w.bearer(&forge(Some("rs-1")))),
        AuthFailure::AlgorithmNotAllowed
    );
    // No kid: the HS256 key is tried with its own secret, not the PEM.
    assert_eq!(failure(w.bearer(&forge(None))), AuthFailure::BadSignature);
    // With no HS256 key at all, nothing is even tried.
    let dir = TempDir::new();
    let rs = dir.write("rs.pem", RSA_PUBLIC);
    let text = format!("[[jwt.keys]]\nalgorithm = \"RS256\"\npublic_key_file = \"{rs}\"\n");
    let only_rs = Authenticator::new(&AuthSettings::load_with_env(&parse(&text), env).unwrap());
    let header = format!("Bearer {}", forge(None));
    let outcome = only_rs.authenticate(Some(header.as_bytes()), None, now());
    assert_eq!(failure(outcome), AuthFailure::AlgorithmNotAllowed);
    assert_eq!(only_rs.stats().signature_checks, 0);
}

#[test]
fn token_alg_must_be_the_keys_algorithm() {
    let w = World::new("");
    // A genuine ES256 signature presented under the RS256 key's kid.
    let token = w.mint(Algorithm::ES256, Some("rs-1"), &claims());
    assert_eq!(failure(w.bearer(&token)), AuthFailure::AlgorithmNotAllowed);
    // PS256 and RS256 share the RSA key, but each kid allows only its algorithm.
    let token = w.mint(Algorithm::PS256, Some("rs-1"), &claims());
    assert_eq!(failure(w.bearer(&token)), AuthFailure::AlgorithmNotAllowed);
    let token = w.mint(Algorithm::RS256, Some("ps-1"), &claims());
    assert_eq!(failure(w.bearer(&token)), AuthFailure::AlgorithmNotAllowed);
    // An algorithm no key has.
    let token = w.mint_raw(
        Algorithm::HS256,
        r#"{"alg":"HS512"}"#,
        &claims().to_string(),
    );
    assert_eq!(failure(w.bearer(&token)), AuthFailure::AlgorithmNotAllowed);
}

#[test]
fn tampered_token_fails_its_signature() {
    let w = World::new("");
    for (alg, kid) in [
        (Algorithm::HS256, "hs-1"),
        (Algorithm::RS256, "rs-1"),
        (Algorithm::EdDSA, "ed-1"),
    ] {
        let token = w.mint(alg, Some(kid), &claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut evil = claims();
        evil["sub"] = json!("admin");
        let evil = URL_SAFE_NO_PAD.encode(evil.to_string());
        parts[1] = &evil;
        assert_eq!(
            failure(w.bearer(&parts.join("."))),
            AuthFailure::BadSignature,
            "{alg:?}"
        );
    }
}

#[test]
fn expiry_and_not_before_with_leeway() {
    let w = World::new("leeway_s = 30");
    let t = now();
    let with = |extra: Value| {
        let mut c = claims();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        w.bearer(&w.mint(Algorithm::ES256, Some("es-1"), &c))
    };
    assert_eq!(failure(with(json!({"exp": t - 100}))), AuthFailure::Expired);
    identity(with(json!({"exp": t - 10}))); // within leeway
    assert_eq!(
        failure(with(json!({"nbf": t + 100}))),
        AuthFailure::NotYetValid
    );
    identity(with(json!({"nbf": t + 10})));
    assert_eq!(
        failure(with(json!({"iat": t + 100}))),
        AuthFailure::IssuedInFuture
    );
    identity(with(json!({"iat": t + 10})));
    identity(with(
        json!({"exp": (t + 60) as f64 + 0.5, "nbf": t as f64 - 0.5}),
    ));

    // Against the caller's clock: the same token, judged later.
    let token = w.mint(
        Algorithm::HS256,
        Some("hs-1"),
        &json!({"sub": "a", "exp": t + 100}),
    );
    identity(w.bearer_at(&token, t + 129));
    let fresh = World::with_limits("leeway_s = 30", CacheLimits::disabled());
    let token = fresh.mint(
        Algorithm::HS256,
        Some("hs-1"),
        &json!({"sub": "a", "exp": t + 100}),
    );
    identity(fresh.bearer_at(&token, t + 130));
    assert_eq!(
        failure(fresh.bearer_at(&token, t + 131)),
        AuthFailure::Expired
    );
}

#[test]
fn exp_is_required_and_must_be_a_number() {
    let w = World::new("");
    let check = |payload: Value| failure(w.bearer(&w.mint(Algorithm::HS256, None, &payload)));
    assert_eq!(check(json!({"sub": "a"})), AuthFailure::MissingClaim("exp"));
    // The type confusion of GHSA-h395-gr6q-cpjc: string exp / nbf must not be skipped.
    let far = (now() + 10_000_000).to_string();
    assert_eq!(
        check(json!({"sub": "a", "exp": "never"})),
        AuthFailure::InvalidClaim("exp")
    );
    assert_eq!(
        check(json!({"sub": "a", "exp": now() + 60, "nbf": far})),
        AuthFailure::InvalidClaim("nbf")
    );
    assert_eq!(
        check(json!({"sub": "a", "exp": now() + 60, "iat": "yesterday"})),
        AuthFailure::InvalidClaim("iat")
    );
    assert_eq!(
        check(json!({"sub": "a", "exp": -5})),
        AuthFailure::InvalidClaim("exp")
    );
    assert_eq!(
        check(json!({"sub": "a", "exp": null})),
        AuthFailure::InvalidClaim("exp")
    );
    assert_eq!(
        check(json!({"sub": "a", "exp": true})),
        AuthFailure::InvalidClaim("exp")
    );
}

#[test]
fn issuer_and_audience_when_configured() {
    let w = World::new("issuer = \"https://idp.example\"\naudience = [\"api\", \"admin\"]");
    let mint = |extra: Value| {
        let mut c = claims();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        w.bearer(&w.mint(Algorithm::RS256, Some("rs-1"), &c))
    };
    identity(mint(json!({"iss": "https://idp.example", "aud": "api"})));
    identity(mint(
        json!({"iss": "https://idp.example", "aud": ["other", "admin"]}),
    ));
    let wrong_iss = mint(json!({"iss": "https://evil.example", "aud": "api"}));
    assert_eq!(failure(wrong_iss), AuthFailure::WrongIssuer);
    let no_iss = mint(json!({"aud": "api"}));
    assert_eq!(failure(no_iss), AuthFailure::MissingClaim("iss"));
    let wrong_aud = mint(json!({"iss": "https://idp.example", "aud": ["other"]}));
    assert_eq!(failure(wrong_aud), AuthFailure::WrongAudience);
    let no_aud = mint(json!({"iss": "https://idp.example"}));
    assert_eq!(failure(no_aud), AuthFailure::MissingClaim("aud"));

    // Not configured: neither is looked at.
    let open = World::new("");
    let c = json!({"sub": "a", "exp": now() + 60, "iss": "anyone", "aud": "anything"});
    identity(open.bearer(&open.mint(Algorithm::HS256, None, &c)));
}

#[test]
fn identity_claims_scopes_tenant_plan() {
    let w = World::new("");
    let read = |c: Value| identity(w.bearer(&w.mint(Algorithm::HS256, None, &c)));
    let exp = now() + 60;
    let id = read(json!({"sub": "bob", "exp": exp}));
    assert_eq!((id.tenant.as_str(), id.plan.as_deref()), ("bob", None));
    assert!(id.scopes.is_empty());
    let id = read(json!({"sub": "bob", "exp": exp, "scope": ["a:read", "b:write"]}));
    assert_eq!(id.scopes, ["a:read", "b:write"]);
    let id = read(json!({"sub": "bob", "exp": exp, "scope": "  a:read\tb:write "}));
    assert_eq!(id.scopes, ["a:read", "b:write"]);
    // A numeric subject is taken as its decimal form.
    let id = read(json!({"sub": 12345, "exp": exp, "tenant": 7}));
    assert_eq!((id.user.as_str(), id.tenant.as_str()), ("12345", "7"));

    let reject = |c: Value| failure(w.bearer(&w.mint(Algorithm::HS256, None, &c)));
    assert_eq!(
        reject(json!({"exp": exp})),
        AuthFailure::MissingClaim("user")
    );
    assert_eq!(
        reject(json!({"sub": true, "exp": exp})),
        AuthFailure::InvalidClaim("user")
    );
    assert_eq!(
        reject(json!({"sub": 1.5, "exp": exp})),
        AuthFailure::InvalidClaim("user")
    );
    assert_eq!(
        reject(json!({"sub": "", "exp": exp})),
        AuthFailure::InvalidClaim("user")
    );
    // Identity values become upstream headers: no CR/LF smuggled through a claim.
    let injected = json!({"sub": "bob\r\nX-Admin: 1", "exp": exp});
    assert_eq!(reject(injected), AuthFailure::InvalidClaim("user"));
    let tenant = json!({"sub": "bob", "exp": exp, "tenant": ["x"]});
    assert_eq!(reject(tenant), AuthFailure::InvalidClaim("tenant"));
    let plan = json!({"sub": "bob", "exp": exp, "plan": 3});
    assert_eq!(reject(plan), AuthFailure::InvalidClaim("plan"));
    let scope = json!({"sub": "bob", "exp": exp, "scope": 3});
    assert_eq!(reject(scope), AuthFailure::InvalidClaim("scope"));
    let scope = json!({"sub": "bob", "exp": exp, "scope": ["ok", 3]});
    assert_eq!(reject(scope), AuthFailure::InvalidClaim("scope"));
}

#[test]
fn claim_names_come_from_the_config() {
    let w = World::new(
        "user_claim = \"uid\"\ntenant_claim = \"org\"\nplan_claim = \"tier\"\nscope_claim = \"scp\"",
    );
    let c = json!({"sub": "ignored", "uid": "u-1", "org": "o-1", "tier": "enterprise",
                   "scp": ["x"], "scope": "ignored", "exp": now() + 60});
    let id = identity(w.bearer(&w.mint(Algorithm::EdDSA, Some("ed-1"), &c)));
    assert_eq!(id.user, "u-1");
    assert_eq!(id.tenant, "o-1");
    assert_eq!(id.plan.as_deref(), Some("enterprise"));
    assert_eq!(id.scopes, ["x"]);
}

#[test]
fn malformed_tokens_are_rejected_without_panic() {
    let w = World::new("");
    let good = w.mint(Algorithm::HS256, Some("hs-1"), &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let cases = [
        String::from("abc"),
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}..{s}"),
        format!(".{p}.{s}"),
        format!("{h}!.{p}.{s}"), // bad base64 in the header
        format!("{h}=.{p}.{s}"), // padding
        format!("{h}.{p}*.{s}"), // bad base64 in the payload
        format!("{h}.{p}.{s}%"), // bad base64 in the signature
        format!("{}.{p}.{s}", b64("{\"alg\":")),
        format!("{}.{p}.{s}", b64("[1,2]")),
        format!("{}.{p}.{s}", b64(r#"{"kid":"hs-1"}"#)),
        format!("{}.{p}.{s}", b64(r#"{"alg":"HS256","alg":"HS256"}"#)),
        format!("{}.{p}.{s}", b64(r#"{"alg":"HS256","crit":["exp"]}"#)),
        format!("{}.{p}.{s}", b64(r#"{"alg":"HS256","kid":7}"#)),
        format!("{}.{p}.{s}", b64("\u{fffd}\u{0}")),
    ];
    for token in &cases {
        let f = failure(w.bearer(token));
        assert!(
            matches!(f, AuthFailure::Malformed | AuthFailure::BadSignature),
            "{token}: {f:?}"
        );
    }
    // Payloads that verify but are not claims objects.
    for payload in ["[]", "\"x\"", "{\"sub\":", "{} trailing", "\u{0}"] {
        let token = w.mint_raw(Algorithm::HS256, r#"{"alg":"HS256"}"#, payload);
        assert_eq!(
            failure(w.bearer(&token)),
            AuthFailure::Malformed,
            "{payload}"
        );
    }
    // A claim of interest given twice.
    let exp = now() + 60;
    let dup = format!(r#"{{"sub":"a","sub":"admin","exp":{exp}}}"#);
    let token = w.mint_raw(Algorithm::HS256, r#"{"alg":"HS256"}"#, &dup);
    assert_eq!(failure(w.bearer(&token)), AuthFailure::Malformed);
}

#[test]
fn oversized_token_is_rejected_unread() {
    let w = World::new("");
    let huge = "a".repeat(jwt::MAX_TOKEN_BYTES + 1);
    assert_eq!(failure(w.bearer(&huge)), AuthFailure::TooLarge);
    let spaced = format!("{} {}", "a".repeat(jwt::MAX_TOKEN_BYTES), "b");
    assert_eq!(failure(w.bearer(&spaced)), AuthFailure::TooLarge);
    // A real token just under the limit is fine.
    let mut c = claims();
    c["pad"] = json!("p".repeat(5_000));
    let token = w.mint(Algorithm::HS256, None, &c);
    assert!(token.len() <= jwt::MAX_TOKEN_BYTES);
    identity(w.bearer(&token));
    assert_eq!(w.auth.stats().signature_checks, 1);
}

#[test]
fn the_jsonwebtoken_release_itself_rejects_mistyped_exp_and_nbf() {
    // Guards the dependency: before 10.3 a string `nbf` (or `exp`, when not required)
    // was taken as absent (GHSA-h395-gr6q-cpjc). Our own claim reading rejects it too,
    // but the library must not be the weak link.
    use jsonwebtoken::errors::ErrorKind;
    let w = World::new("");
    let text = "[[jwt.keys]]\nalgorithm = \"HS256\"\nsecret_env = \"T_HS\"";
    let settings = AuthSettings::load_with_env(&parse(text), env).unwrap();
    let key = &settings.jwt.keys[0];
    let far = (now() + 10_000_000).to_string();
    for c in [
        json!({"sub": "a", "exp": now() + 60, "nbf": far}),
        json!({"sub": "a", "exp": "99999999999"}),
    ] {
        let token = w.mint(Algorithm::HS256, None, &c);
        let decoded =
            jsonwebtoken::decode::<serde::de::IgnoredAny>(&token, &key.key, &key.validation);
        let kind = decoded
            .expect_err("mistyped time claim accepted")
            .into_kind();
        assert!(
            matches!(
                kind,
                ErrorKind::InvalidClaimFormat(_) | ErrorKind::MissingRequiredClaim(_)
            ),
            "{kind:?}"
        );
    }
}
