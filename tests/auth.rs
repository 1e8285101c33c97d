//! Authentication end to end, on both I/O drivers: bearer JWTs minted here with real keys
//! (HS256, RS256, ES256, EdDSA), API keys matched by SHA-256, `auth = "required" |
//! "optional" | "none"`, route scopes, credential stripping, forged identity headers,
//! and requests carrying more than one credential (400).
//! Every test asserts what the client sees (status, `WWW-Authenticate`, JSON body) and
//! what the origin received (identity headers, never the credential).

mod common;

use std::time::{Duration, Instant};

use common::tokens::*;
use common::*;
use serde_json::{json, Value};

const ISSUER: &str = "https://issuer.e2e.test";
const AUDIENCE: &str = "ringgate-e2e";
const LEEWAY_S: u64 = 5;
/// API keys in clear: the config holds only their digests.
const ACME_KEY: &str = "acme-e2e-api-key-0123456789";
const SOLO_KEY: &str = "solo-e2e-api-key-9876543210";
const IDENTITY_HEADERS: [&str; 4] = ["x-user-id", "x-tenant-id", "x-user-plan", "x-user-scopes"];
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// `/req` required, `/opt` optional, `/open` none, `/write` requires `orders:write`,
/// `/read` requires `users:read` and `orders:read`.
const ROUTES: &str = r#"
[[routes]]
id = "required"
path_prefix = "/req"
upstream = "app"
auth = "required"

[[routes]]
id = "optional"
path_prefix = "/opt"
upstream = "app"
auth = "optional"

[[routes]]
id = "open"
path_prefix = "/open"
upstream = "app"
auth = "none"

[[routes]]
id = "write"
path_prefix = "/write"
upstream = "app"
auth = "required"
scopes = ["orders:write"]

[[routes]]
id = "read"
path_prefix = "/read"
upstream = "app"
auth = "required"
scopes = ["users:read", "orders:read"]
"#;

/// A gateway trusting a [`Keyring`] and two API keys, in front of an echo origin. Plans
/// are generous: rate limiting is `tests/ratelimit.rs`'s subject.
struct World {
    keys: Keyring,
    origin: Origin,
    gw: Gw,
}

impl World {
    /// Every key of the keyring; API keys in `X-API-Key`.
    fn start(driver: IoDriver) -> World {
        World::with(driver, |k| k.jwt_keys_toml(), "X-API-Key")
    }

    fn with(driver: IoDriver, jwt_keys: impl Fn(&Keyring) -> String, key_header: &str) -> World {
        let keys = Keyring::new();
        let origin = Origin::echo();
        let template = format!(
            r#"
[server.limits]
max_header_bytes = 65536

[auth.jwt]
issuer = "{ISSUER}"
audience = ["{AUDIENCE}"]
leeway_s = {LEEWAY_S}
{jwt_keys}
[auth.api_keys]
header = "{key_header}"
[[auth.api_keys.keys]]
id = "key_acme"
sha256 = "{acme}"
user = "svc-acme"
tenant = "acme"
plan = "pro"
scopes = ["users:read", "orders:read"]
[[auth.api_keys.keys]]
id = "key_solo"
sha256 = "{solo}"
user = "svc-solo"

[plans.free]
requests_per_minute = 600000
burst = 10000
[plans.pro]
requests_per_minute = 600000
burst = 10000

[[upstreams]]
name = "app"
servers = ["{{origin}}"]
{ROUTES}"#,
            jwt_keys = jwt_keys(&keys),
            acme = api_key_digest(ACME_KEY),
            // Upper-case hex is accepted too.
            solo = api_key_digest(SOLO_KEY).to_uppercase(),
        );
        let gw = Gw::start(driver, &fill(&template, &[("origin", origin.addr())]));
        World { keys, origin, gw }
    }

    /// A token signed with the HS256 key (kid `hs-1`).
    fn hs(&self, claims: &Value) -> String {
        self.keys.mint(Algorithm::HS256, Some("hs-1"), claims)
    }

    fn received(&self) -> usize {
        self.origin.requests().len()
    }
}

/// Claims of a token valid for five minutes, for `sub` of tenant acme on plan pro.
fn claims(sub: &str) -> Value {
    json!({
        "sub": sub,
        "tenant": "acme",
        "plan": "pro",
        "scope": "users:read orders:read",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 300,
    })
}

/// `claims(sub)` with `changes` merged in; a `null` removes the claim.
fn claims_with(sub: &str, changes: Value) -> Value {
    let mut c = claims(sub);
    let obj = c.as_object_mut().unwrap();
    for (k, v) in changes.as_object().expect("changes are an object") {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    c
}

fn bearer(path: &str, token: &str) -> Req {
    Req::get(path).header("Authorization", &format!("Bearer {token}"))
}

fn api_key(path: &str, key: &str) -> Req {
    Req::get(path).header("X-API-Key", key)
}

/// The challenge for a refused credential.
fn invalid(description: &str) -> String {
    format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
}

/// A 401 from the auth stage for a credential refused as `description`.
#[track_caller]
fn assert_refused(resp: &Response, description: &str) {
    assert_eq!(resp.assert_json_error(401), "unauthorized");
    assert_eq!(
        resp.all("www-authenticate"),
        vec![invalid(description).as_str()],
        "{}",
        resp.head
    );
    assert_eq!(
        resp.json()["message"],
        format!("invalid credential: {description}"),
    );
}

/// A 401 for a request that carried no credential: a bare `Bearer` challenge.
#[track_caller]
fn assert_no_credential(resp: &Response) {
    assert_eq!(resp.assert_json_error(401), "unauthorized");
    assert_eq!(
        resp.all("www-authenticate"),
        vec!["Bearer"],
        "{}",
        resp.head
    );
    assert_eq!(
        resp.json()["message"],
        "this route requires a bearer token or an API key"
    );
}

/// A 400 from the auth stage for a request with more than one credential (RFC 6750 3.1
/// `invalid_request`): `description` is the message and the challenge's description.
#[track_caller]
fn assert_ambiguous(resp: &Response, description: &str) {
    assert_eq!(resp.assert_json_error(400), "bad_request");
    assert_eq!(resp.json()["message"], description, "{}", resp.head);
    let challenge =
        format!("Bearer error=\"invalid_request\", error_description=\"{description}\"");
    assert_eq!(
        resp.all("www-authenticate"),
        vec![challenge.as_str()],
        "{}",
        resp.head
    );
    // Nothing about the framing was wrong: the connection stays usable.
    assert!(!resp.connection_has("close"), "{}", resp.head);
}

const TWO_AUTHORIZATIONS: &str = "more than one Authorization field: send one credential";
const TWO_API_KEYS: &str = "more than one API-key field: send one credential";
const AUTHORIZATION_LIST: &str = "the Authorization field holds a list: send one credential";
const API_KEY_LIST: &str = "the API-key field holds a list: send one credential";

#[track_caller]
fn assert_ok(resp: &Response, path: &str) {
    assert_eq!(resp.status, 200, "{resp:#?}");
    assert_eq!(resp.text(), format!("GET {path}"));
    assert!(!resp.has("www-authenticate"), "{}", resp.head);
}

/// The origin's copy carried exactly this identity (each header once) and no
/// credential.
#[track_caller]
fn assert_identity(
    r: &Recorded,
    user: &str,
    tenant: &str,
    plan: Option<&str>,
    scopes: Option<&str>,
) {
    let h = &r.headers;
    assert_eq!(r.all("x-user-id"), vec![user], "{h:?}");
    assert_eq!(r.all("x-tenant-id"), vec![tenant], "{h:?}");
    assert_eq!(
        r.all("x-user-plan"),
        plan.into_iter().collect::<Vec<_>>(),
        "{h:?}"
    );
    assert_eq!(
        r.all("x-user-scopes"),
        scopes.into_iter().collect::<Vec<_>>(),
        "{h:?}"
    );
    assert!(!r.has("authorization"), "credential forwarded: {h:?}");
    assert!(!r.has("x-api-key"), "credential forwarded: {h:?}");
}

/// The origin's copy carried no identity header.
#[track_caller]
fn assert_anonymous(r: &Recorded) {
    for name in IDENTITY_HEADERS {
        assert!(!r.has(name), "origin received {name}: {:?}", r.headers);
    }
}

both_drivers! {
    fn required_route_without_credential_is_401_with_bare_challenge(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        assert_no_credential(&c.request(&Req::get("/req")));
        // Another scheme is no bearer credential; an empty API key is no key.
        assert_no_credential(
            &c.request(&Req::get("/req").header("Authorization", "Basic dXNlcjpwYXNz")),
        );
        assert_no_credential(&c.request(&Req::get("/req").header("X-API-Key", "  ")));
        assert_eq!(w.received(), 0);
        // The connection is still usable.
        let token = w.hs(&claims("alice"));
        assert_ok(&c.request(&bearer("/req", &token)), "/req");
    }

    fn valid_tokens_of_every_algorithm_pass_with_identity(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        for alg in ALGORITHMS {
            // Selected by kid, and (no kid) by algorithm.
            for kid in [Some(Keyring::kid(alg)), None] {
                let user = format!("user-{alg:?}-{}", kid.is_some());
                let token = w.keys.mint(alg, kid, &claims(&user));
                let path = format!("/req/{alg:?}");
                // Twice: the second is answered from the worker's identity cache.
                for _ in 0..2 {
                    let resp = c.request(&bearer(&path, &token));
                    assert_ok(&resp, &path);
                    let r = w.origin.last_request();
                    assert_eq!(r.target, path);
                    let scopes = Some("users:read orders:read");
                    assert_identity(&r, &user, "acme", Some("pro"), scopes);
                }
                let raw = String::from_utf8_lossy(&w.origin.raw_received()).into_owned();
                let signature = token.rsplit('.').next().unwrap();
                assert!(!raw.contains(signature), "the token reached the origin");
            }
        }
        assert_eq!(w.received(), ALGORITHMS.len() * 4);
        // A numeric subject and tenant are taken as their decimal form.
        let token = w.hs(&claims_with("x", json!({"sub": 12345, "tenant": 7})));
        assert_ok(&c.request(&bearer("/req", &token)), "/req");
        let scopes = Some("users:read orders:read");
        assert_identity(&w.origin.last_request(), "12345", "7", Some("pro"), scopes);
    }

    fn jwk_set_keys_verify_tokens(driver) {
        let w = World::with(driver, |k| k.jwt_keys_toml() + &k.jwks_toml(), "X-API-Key");
        let mut c = w.gw.client();
        for (alg, kid) in [(Algorithm::ES256, "es-jwk"), (Algorithm::EdDSA, "ed-jwk")] {
            let token = w.keys.mint(alg, Some(kid), &claims(kid));
            assert_ok(&c.request(&bearer("/req", &token)), "/req");
            let scopes = Some("users:read orders:read");
            assert_identity(&w.origin.last_request(), kid, "acme", Some("pro"), scopes);
        }
        // A JWK is bound to its algorithm as a PEM key is.
        let token = w.keys.mint(Algorithm::ES256, Some("ed-jwk"), &claims("mallory"));
        assert_refused(&c.request(&bearer("/req", &token)), "signing algorithm not allowed");
        assert_eq!(w.received(), 2);
    }

    fn bad_signatures_are_401_invalid_token(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        for alg in ALGORITHMS {
            let token = w.keys.mint(alg, Some(Keyring::kid(alg)), &claims("mallory"));
            // Another payload under the original signature.
            let (head, rest) = token.split_once('.').unwrap();
            let sig = rest.split_once('.').unwrap().1;
            let other = b64url(claims_with("mallory", json!({"plan": "enterprise"})).to_string());
            let forged = format!("{head}.{other}.{sig}");
            assert_refused(&c.request(&bearer("/req", &forged)), "invalid signature");
            // A signature by another key of the same algorithm.
            let stranger = Keyring::new();
            let foreign = stranger.mint(alg, Some(Keyring::kid(alg)), &claims("mallory"));
            // (The HS256 secret and the RSA key are fixed; the others are fresh.)
            if matches!(alg, Algorithm::ES256 | Algorithm::EdDSA) {
                assert_refused(&c.request(&bearer("/req", &foreign)), "invalid signature");
            }
        }
        let other_secret = jsonwebtoken::EncodingKey::from_secret(&[7u8; 40]);
        let token = sign_raw(
            &other_secret,
            Algorithm::HS256,
            r#"{"alg":"HS256","kid":"hs-1"}"#,
            &claims("mallory").to_string(),
        );
        assert_refused(&c.request(&bearer("/req", &token)), "invalid signature");
        assert_eq!(w.received(), 0);
    }

    fn token_times_are_checked_with_leeway(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let t = now();
        let refused = [
            (json!({"exp": t - 60}), "token expired"),
            (json!({"exp": t - LEEWAY_S - 30}), "token expired"),
            (json!({"nbf": t + 600}), "token not yet valid"),
            (json!({"iat": t + 600}), "token issued in the future"),
            (json!({"exp": null}), "token is missing the exp claim"),
            (json!({"exp": (t + 300).to_string()}), "token claim exp has the wrong type or value"),
            (json!({"nbf": "0"}), "token claim nbf has the wrong type or value"),
        ];
        for (changes, description) in refused {
            let token = w.hs(&claims_with("alice", changes.clone()));
            let resp = c.request(&bearer("/req", &token));
            assert_eq!(resp.status, 401, "{changes}: {resp:#?}");
            assert_refused(&resp, description);
        }
        assert_eq!(w.received(), 0);
        // Within the leeway: still good.
        for changes in [json!({"exp": t - 1}), json!({"nbf": t + 2})] {
            let token = w.hs(&claims_with("alice", changes));
            assert_ok(&c.request(&bearer("/req", &token)), "/req");
        }
        assert_eq!(w.received(), 2);
    }

    fn cached_identity_expires_with_its_token(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // Good through the next second (leeway included), then expired.
        let token = w.hs(&claims_with("alice", json!({"exp": now() + 1 - LEEWAY_S})));
        let req = bearer("/req", &token);
        assert_ok(&c.request(&req), "/req");
        assert_ok(&c.request(&req), "/req");
        // The worker now holds the identity in its cache; it must not outlive the token.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let resp = c.request(&req);
            if resp.status == 401 {
                assert_refused(&resp, "token expired");
                break;
            }
            assert_eq!(resp.status, 200, "{resp:#?}");
            assert!(Instant::now() < deadline, "an expired token still passes");
            std::thread::sleep(Duration::from_millis(50));
        }
        let received = w.received();
        assert_refused(&c.request(&req), "token expired");
        assert_eq!(w.received(), received);
    }

    fn issuer_and_audience_are_checked_when_configured(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let refused = [
            (json!({"iss": "https://evil.test"}), "wrong token issuer"),
            (json!({"iss": null}), "token is missing the iss claim"),
            (json!({"aud": "someone-else"}), "wrong token audience"),
            (json!({"aud": ["a", "b"]}), "wrong token audience"),
            (json!({"aud": null}), "token is missing the aud claim"),
        ];
        for (changes, description) in refused {
            let token = w.hs(&claims_with("alice", changes.clone()));
            let resp = c.request(&bearer("/req", &token));
            assert_eq!(resp.status, 401, "{changes}: {resp:#?}");
            assert_refused(&resp, description);
        }
        assert_eq!(w.received(), 0);
        // `aud` may be an array that names us.
        let token = w.hs(&claims_with("alice", json!({"aud": ["other", AUDIENCE]})));
        assert_ok(&c.request(&bearer("/req", &token)), "/req");
    }

    fn alg_none_and_unknown_kid_are_401(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let payload = claims("mallory").to_string();
        let cases = [
            // An unsecured JWS (RFC 7515 A.5): empty signature.
            (unsigned(r#"{"alg":"none","typ":"JWT"}"#, &payload, b""), "malformed token"),
            (unsigned(r#"{"alg":"none"}"#, &payload, b"sig"), "signing algorithm not allowed"),
            (
                unsigned(r#"{"alg":"none","kid":"hs-1"}"#, &payload, b"sig"),
                "signing algorithm not allowed",
            ),
            (unsigned(r#"{"alg":"None"}"#, &payload, b"sig"), "signing algorithm not allowed"),
            (
                w.keys.mint(Algorithm::HS256, Some("no-such-key"), &claims("mallory")),
                "unknown key id",
            ),
            (
                // Signed by es-1's private key but naming rs-1.
                w.keys.mint(Algorithm::ES256, Some("rs-1"), &claims("mallory")),
                "signing algorithm not allowed",
            ),
        ];
        for (token, description) in cases {
            let resp = c.request(&bearer("/req", &token));
            assert_eq!(resp.status, 401, "{token}: {resp:#?}");
            assert_refused(&resp, description);
        }
        assert_eq!(w.received(), 0);
    }

    fn rs256_public_key_as_hmac_secret_is_401(driver) {
        // Only an RS256 key is configured: the classic algorithm-confusion attack signs
        // an HS256 token with the public key's PEM bytes (or its DER) as the secret.
        let w = World::with(
            driver,
            |_| {
                format!(
                    "[[auth.jwt.keys]]\nkid = \"rs-1\"\nalgorithm = \"RS256\"\n\
                     public_key_file = \"{RSA_PUBLIC_PATH}\"\n"
                )
            },
            "X-API-Key",
        );
        let mut c = w.gw.client();
        let payload = claims("mallory").to_string();
        let der = pem_der(RSA_PUBLIC_PEM);
        for secret in [RSA_PUBLIC_PEM, &der[..]] {
            let key = jsonwebtoken::EncodingKey::from_secret(secret);
            for (header, description) in [
                (r#"{"alg":"HS256","kid":"rs-1"}"#, "signing algorithm not allowed"),
                (r#"{"alg":"HS256","typ":"JWT"}"#, "signing algorithm not allowed"),
            ] {
                let token = sign_raw(&key, Algorithm::HS256, header, &payload);
                assert_refused(&c.request(&bearer("/req", &token)), description);
            }
            // The HMAC tag under an RS256 header is no RSA signature.
            let header = b64url(r#"{"alg":"RS256","kid":"rs-1"}"#);
            let message = format!("{header}.{}", b64url(&payload));
            let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            let tag = ring::hmac::sign(&hmac, message.as_bytes());
            let token = format!("{message}.{}", b64url(tag.as_ref()));
            assert_refused(&c.request(&bearer("/req", &token)), "invalid signature");
        }
        assert_eq!(w.received(), 0);
        // The key itself works.
        let token = w.keys.mint(Algorithm::RS256, Some("rs-1"), &claims("alice"));
        assert_ok(&c.request(&bearer("/req", &token)), "/req");
        let scopes = Some("users:read orders:read");
        assert_identity(&w.origin.only_request(), "alice", "acme", Some("pro"), scopes);
    }

    fn garbage_credentials_are_401_never_500(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let hs_header = r#"{"alg":"HS256","kid":"hs-1"}"#;
        let exp = now() + 300;
        let signed = |payload: &str| w.keys.mint_raw(Algorithm::HS256, hs_header, payload);
        let big = claims_with("alice", json!({"pad": "x".repeat(20 * 1024)}));
        let cases: Vec<(String, &str)> = vec![
            ("Bearer".into(), "malformed token"),
            ("Bearer    ".into(), "malformed token"),
            ("Bearer abc".into(), "malformed token"),
            ("Bearer a.b.c.d".into(), "malformed token"),
            ("Bearer a b c".into(), "malformed token"),
            ("Bearer !!!!.@@@@.####".into(), "malformed token"),
            ("Bearer äöü.äöü.äöü".into(), "malformed token"),
            (format!("Bearer {}.e30.c2ln", b64url("{not json")), "malformed token"),
            (format!("Bearer {}.e30.c2ln", b64url("[1,2]")), "malformed token"),
            (format!("Bearer {}.e30.c2ln", b64url(r#"{"kid":"hs-1"}"#)), "malformed token"),
            (format!("Bearer {}", signed("{not json")), "malformed token"),
            (format!("Bearer {}", signed("[]")), "malformed token"),
            (
                format!("Bearer {}", signed(&format!(r#"{{"sub":"a","sub":"b","exp":{exp}}}"#))),
                "malformed token",
            ),
            (
                format!("Bearer {}", w.hs(&claims_with("alice", json!({"sub": true})))),
                "token claim user has the wrong type or value",
            ),
            (
                // jsonwebtoken's own claim reader already fails on an object where
                // `sub` belongs: malformed rather than "wrong type", 401 either way.
                format!("Bearer {}", w.hs(&claims_with("alice", json!({"sub": {"id": 1}})))),
                "malformed token",
            ),
            (
                // A claim that would end the X-User-ID line and start another header.
                format!("Bearer {}", w.hs(&claims_with("a\r\nX-Admin: yes", json!({})))),
                "token claim user has the wrong type or value",
            ),
            (
                format!("Bearer {}", w.hs(&claims_with("alice", json!({"sub": null})))),
                "token is missing the user claim",
            ),
            (
                format!("Bearer {}", w.hs(&claims_with("alice", json!({"scope": 7})))),
                "token claim scope has the wrong type or value",
            ),
            (
                format!("Bearer {}.{}.{}", "a".repeat(10_240), "b".repeat(10_240), "c"),
                "credential too large",
            ),
            (format!("Bearer {}", w.hs(&big)), "credential too large"),
        ];
        for (value, description) in &cases {
            let resp = c.request(&Req::get("/req").header("Authorization", value));
            assert_eq!(resp.status, 401, "{value:.80}: {resp:#?}");
            let challenge = resp.header("www-authenticate");
            assert_eq!(challenge, Some(&*invalid(description)), "{value:.80}");
            assert_refused(&resp, description);
            assert!(!resp.connection_has("close"), "{}", resp.head);
        }
        // A 2 KiB API key.
        let huge_key = "k".repeat(2048);
        assert_refused(&c.request(&api_key("/req", &huge_key)), "credential too large");
        assert_eq!(w.received(), 0);
        // Nothing broke the connection or the worker.
        let token = w.hs(&claims("alice"));
        assert_ok(&c.request(&bearer("/req", &token)), "/req");
    }

    fn optional_route_passes_anonymous_and_refuses_bad_credentials(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let resp = c.request(&Req::get("/opt/a"));
        assert_ok(&resp, "/opt/a");
        let r = w.origin.last_request();
        assert_anonymous(&r);
        // Another scheme: anonymous, and still not forwarded (the route checks
        // credentials, so Authorization never reaches the origin).
        let resp = c.request(&Req::get("/opt/b").header("Authorization", "Basic dXNlcjpwYXNz"));
        assert_ok(&resp, "/opt/b");
        let r = w.origin.last_request();
        assert_anonymous(&r);
        assert!(!r.has("authorization"), "{:?}", r.headers);
        assert_eq!(w.received(), 2);
        // A bad credential is refused, not downgraded to anonymous.
        let token = w.hs(&claims("alice"));
        let expired = w.hs(&claims_with("alice", json!({"exp": now() - 3600})));
        assert_refused(&c.request(&bearer("/opt/c", &expired)), "token expired");
        let wrong = format!("{token}x");
        assert_refused(&c.request(&bearer("/opt/c", &wrong)), "invalid signature");
        assert_refused(&c.request(&api_key("/opt/c", "no-such-key")), "unknown API key");
        assert_eq!(w.received(), 2);
        // A good one is used.
        assert_ok(&c.request(&bearer("/opt/d", &token)), "/opt/d");
        let scopes = Some("users:read orders:read");
        assert_identity(&w.origin.last_request(), "alice", "acme", Some("pro"), scopes);
        assert_ok(&c.request(&api_key("/opt/e", ACME_KEY)), "/opt/e");
        let r = w.origin.last_request();
        assert_identity(&r, "svc-acme", "acme", Some("pro"), scopes);
    }

    fn none_route_forwards_credentials_untouched(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let token = w.hs(&claims("alice"));
        let expired = w.hs(&claims_with("alice", json!({"exp": now() - 3600})));
        for (authorization, key) in [
            (format!("Bearer {token}"), ACME_KEY),
            (format!("Bearer {expired}"), "no-such-key"),
            ("Basic dXNlcjpwYXNz".to_owned(), SOLO_KEY),
        ] {
            let req = Req::get("/open")
                .header("Authorization", &authorization)
                .header("X-API-Key", key);
            let resp = c.request(&req);
            assert_ok(&resp, "/open");
            assert!(!resp.has("x-ratelimit-limit"), "{}", resp.head);
            let r = w.origin.last_request();
            assert_eq!(r.all("authorization"), vec![authorization.as_str()]);
            assert_eq!(r.all("x-api-key"), vec![key]);
            assert_anonymous(&r);
        }
        assert_no_credential(&c.request(&Req::get("/req")));
    }

    fn missing_scope_is_403_insufficient_scope(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        // The default claims hold users:read and orders:read.
        let reader = w.hs(&claims("alice"));
        let resp = c.request(&bearer("/write", &reader));
        assert_eq!(resp.assert_json_error(403), "forbidden");
        assert_eq!(
            resp.all("www-authenticate"),
            vec![r#"Bearer error="insufficient_scope", scope="orders:write""#],
        );
        assert_eq!(
            resp.json()["message"],
            "the credential lacks a scope this route requires"
        );
        // Every scope of the route is needed.
        let half = w.hs(&claims_with("alice", json!({"scope": "users:read"})));
        let resp = c.request(&bearer("/read", &half));
        assert_eq!(resp.assert_json_error(403), "forbidden");
        assert_eq!(
            resp.all("www-authenticate"),
            vec![r#"Bearer error="insufficient_scope", scope="users:read orders:read""#],
        );
        let none = w.hs(&claims_with("alice", json!({"scope": null})));
        let resp = c.request(&bearer("/write", &none));
        assert_eq!(resp.assert_json_error(403), "forbidden");
        // The API key's scopes count the same way.
        let resp = c.request(&api_key("/write", ACME_KEY));
        assert_eq!(resp.assert_json_error(403), "forbidden");
        assert_eq!(w.received(), 0);

        // Scope as a space-separated string, and as an array.
        let string = w.hs(&claims_with("alice", json!({"scope": "users:read  orders:write"})));
        assert_ok(&c.request(&bearer("/write", &string)), "/write");
        let r = w.origin.last_request();
        assert_identity(&r, "alice", "acme", Some("pro"), Some("users:read orders:write"));
        let array = w.hs(&claims_with("bob", json!({"scope": ["orders:write", "admin"]})));
        assert_ok(&c.request(&bearer("/write", &array)), "/write");
        let r = w.origin.last_request();
        assert_identity(&r, "bob", "acme", Some("pro"), Some("orders:write admin"));
        assert_ok(&c.request(&bearer("/read", &reader)), "/read");
        assert_ok(&c.request(&api_key("/read", ACME_KEY)), "/read");
        let r = w.origin.last_request();
        assert_identity(&r, "svc-acme", "acme", Some("pro"), Some("users:read orders:read"));
        // No scope claim: fine where no scope is required, and no X-User-Scopes.
        assert_ok(&c.request(&bearer("/req", &none)), "/req");
        assert_identity(&w.origin.last_request(), "alice", "acme", Some("pro"), None);
        assert_eq!(w.received(), 5);
    }

    fn api_keys_match_by_sha256_and_are_stripped(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        assert_ok(&c.request(&api_key("/req/1", ACME_KEY)), "/req/1");
        let r = w.origin.last_request();
        assert_identity(&r, "svc-acme", "acme", Some("pro"), Some("users:read orders:read"));
        // Header name case does not matter; surrounding spaces are trimmed.
        let req = Req::get("/req/2").header("x-api-key", &format!(" {SOLO_KEY} "));
        assert_ok(&c.request(&req), "/req/2");
        // No tenant: the user; no plan, no scopes: no header.
        assert_identity(&w.origin.last_request(), "svc-solo", "svc-solo", None, None);
        assert_eq!(w.received(), 2);

        let mut near = ACME_KEY.to_owned();
        near.pop();
        near.push('X');
        let digest = api_key_digest(ACME_KEY);
        for key in ["no-such-key", near.as_str(), &ACME_KEY.to_uppercase(), &digest] {
            let resp = c.request(&api_key("/req", key));
            assert_eq!(resp.status, 401, "{key}: {resp:#?}");
            assert_refused(&resp, "unknown API key");
        }
        assert_eq!(w.received(), 2);

        // A bearer token decides alone when both are sent.
        let token = w.hs(&claims("alice"));
        let both = bearer("/req/3", &token).header("X-API-Key", "no-such-key");
        assert_ok(&c.request(&both), "/req/3");
        let scopes = Some("users:read orders:read");
        assert_identity(&w.origin.last_request(), "alice", "acme", Some("pro"), scopes);
        let bad = bearer("/req", &format!("{token}x")).header("X-API-Key", ACME_KEY);
        assert_refused(&c.request(&bad), "invalid signature");
        assert_eq!(w.received(), 3);
    }

    fn api_key_header_name_is_configurable(driver) {
        let w = World::with(driver, |k| k.jwt_keys_toml(), "X-Acme-Token");
        let mut c = w.gw.client();
        let req = Req::get("/req").header("X-Acme-Token", ACME_KEY);
        assert_ok(&c.request(&req), "/req");
        let r = w.origin.last_request();
        assert_identity(&r, "svc-acme", "acme", Some("pro"), Some("users:read orders:read"));
        assert!(!r.has("x-acme-token"), "the key reached the origin: {:?}", r.headers);
        // Header names are case-insensitive.
        let req = Req::get("/req").header("x-acme-token", SOLO_KEY);
        assert_ok(&c.request(&req), "/req");
        let r = w.origin.last_request();
        assert_identity(&r, "svc-solo", "svc-solo", None, None);
        assert!(!r.has("x-acme-token"), "the key reached the origin: {:?}", r.headers);
        // X-API-Key is no credential here.
        assert_no_credential(&c.request(&api_key("/req", ACME_KEY)));
        let req = Req::get("/req").header("X-Acme-Token", "no-such-key");
        assert_refused(&c.request(&req), "unknown API key");
        assert_eq!(w.received(), 2);
    }

    fn forged_identity_headers_are_dropped_on_every_route(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let forge = |req: Req| {
            req.header("X-User-ID", "root")
                .header("X-Tenant-ID", "evil")
                .header("X-User-Plan", "enterprise")
                .header("X-User-Scopes", "admin")
                .header("x-user-id", "root2")
                .header("X-USER-SCOPES", "admin2")
        };
        assert_ok(&c.request(&forge(Req::get("/open"))), "/open");
        assert_anonymous(&w.origin.last_request());
        assert_ok(&c.request(&forge(Req::get("/opt"))), "/opt");
        assert_anonymous(&w.origin.last_request());

        let token = w.hs(&claims("alice"));
        assert_ok(&c.request(&forge(bearer("/req", &token))), "/req");
        let scopes = Some("users:read orders:read");
        assert_identity(&w.origin.last_request(), "alice", "acme", Some("pro"), scopes);
        assert_ok(&c.request(&forge(bearer("/opt", &token))), "/opt");
        assert_identity(&w.origin.last_request(), "alice", "acme", Some("pro"), scopes);
        // A token without plan, tenant and scope claims: the forged values are not
        // left standing in their place.
        let bare = w.hs(&claims_with("bob", json!({"plan": null, "tenant": null, "scope": null})));
        assert_ok(&c.request(&forge(bearer("/req", &bare))), "/req");
        assert_identity(&w.origin.last_request(), "bob", "bob", None, None);
        assert_ok(&c.request(&forge(api_key("/req", SOLO_KEY))), "/req");
        assert_identity(&w.origin.last_request(), "svc-solo", "svc-solo", None, None);
        // Refused requests never reach the origin, forged headers or not.
        assert_no_credential(&c.request(&forge(Req::get("/req"))));
        assert_eq!(w.received(), 6);
    }
    fn forged_identity_with_underscores_is_dropped(driver) {
        let w = World::start(driver);
        let token = w.hs(&claims("alice"));
        let req = bearer("/req", &token)
            .header("X_User_ID", "root")
            .header("X_Tenant_ID", "evil")
            .header("X_User_Plan", "enterprise")
            .header("X_User_Scopes", "admin");
        assert_ok(&w.gw.send(&req), "/req");
        let r = w.origin.only_request();
        let scopes = Some("users:read orders:read");
        assert_identity(&r, "alice", "acme", Some("pro"), scopes);
        for name in IDENTITY_HEADERS {
            let underscored = name.replace('-', "_");
            assert!(!r.has(&underscored), "origin received {underscored}: {:?}", r.headers);
        }
    }
    fn forged_identity_in_request_trailers_is_dropped(driver) {
        let w = World::start(driver);
        let token = w.hs(&claims("alice"));
        let req = Req::new("POST", "/req")
            .header("Authorization", &format!("Bearer {token}"))
            .chunked(&[b"hello"])
            .trailer("X-User-ID", "root")
            .trailer("X-Tenant-ID", "evil")
            .trailer("X-User-Plan", "enterprise")
            .trailer("X-User-Scopes", "admin")
            .trailer("Authorization", &format!("Bearer {token}"));
        let resp = w.gw.send(&req);
        assert_eq!(resp.status, 200, "{resp:#?}");
        let r = w.origin.only_request();
        assert_eq!(r.body, b"hello");
        let scopes = Some("users:read orders:read");
        assert_identity(&r, "alice", "acme", Some("pro"), scopes);
        for (name, value) in &r.trailers {
            let name = name.to_ascii_lowercase();
            assert!(
                !IDENTITY_HEADERS.contains(&name.as_str()) && name != "authorization",
                "origin received trailer {name}: {value}"
            );
        }
    }

    fn two_authorization_fields_are_400_whichever_comes_first(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let token = w.hs(&claims("alice"));
        let valid = format!("Bearer {token}");
        // Forged: another payload under the valid signature; and another valid token.
        let forged = format!("Bearer {}", tamper_payload(&token));
        let mallory = format!("Bearer {}", w.hs(&claims("mallory")));
        for path in ["/req", "/opt"] {
            for (first, second) in [
                (&valid, &forged),
                (&forged, &valid),
                (&valid, &mallory),
                (&valid, &valid),
                (&valid, &"Basic dXNlcjpwYXNz".to_owned()),
                (&"Basic dXNlcjpwYXNz".to_owned(), &valid),
            ] {
                // Field names in any case: `authorization` is the same field.
                for (n1, n2) in [
                    ("Authorization", "Authorization"),
                    ("authorization", "Authorization"),
                    ("Authorization", "AUTHORIZATION"),
                ] {
                    let req = Req::get(path).header(n1, first).header(n2, second);
                    let resp = c.request(&req);
                    assert_ambiguous(&resp, TWO_AUTHORIZATIONS);
                }
            }
            // With an API key beside them, still 400: the key does not decide either.
            let req = bearer(path, &token)
                .header("Authorization", &forged)
                .header("X-API-Key", ACME_KEY);
            assert_ambiguous(&c.request(&req), TWO_AUTHORIZATIONS);
        }
        assert_eq!(w.received(), 0, "the origin received a request");
        // One valid credential on the same connection still passes.
        assert_ok(&c.request(&bearer("/req", &token)), "/req");
        assert_identity(&w.origin.only_request(), "alice", "acme", Some("pro"),
            Some("users:read orders:read"));
    }

    fn two_api_key_fields_are_400_whichever_comes_first(driver) {
        let w = World::start(driver);
        let mut c = w.gw.client();
        let token = w.hs(&claims("alice"));
        for path in ["/req", "/opt"] {
            for (first, second) in [
                (ACME_KEY, "no-such-key"),
                ("no-such-key", ACME_KEY),
                (ACME_KEY, SOLO_KEY),
                (SOLO_KEY, ACME_KEY),
                (ACME_KEY, ACME_KEY),
                (ACME_KEY, ""),
            ] {
                for (n1, n2) in [("X-API-Key", "X-API-Key"), ("x-api-key", "X-API-KEY")] {
                    let req = Req::get(path).header(n1, first).header(n2, second);
                    assert_ambiguous(&c.request(&req), TWO_API_KEYS);
                }
            }
            // Even beside a bearer token (which would decide alone): the request is
            // malformed, whatever reads it.
            let req = bearer(path, &token)
                .header("X-API-Key", ACME_KEY)
                .header("x-api-key", "no-such-key");
            assert_ambiguous(&c.request(&req), TWO_API_KEYS);
        }
        assert_eq!(w.received(), 0, "the origin received a request");
        assert_ok(&c.request(&api_key("/req", ACME_KEY)), "/req");
        assert_identity(&w.origin.only_request(), "svc-acme", "acme", Some("pro"),
            Some("users:read orders:read"));
    }

    fn a_configured_key_header_is_counted_under_its_own_name(driver) {
        let w = World::with(driver, |k| k.jwt_keys_toml(), "X-Acme-Token");
        let mut c = w.gw.client();
        let req = Req::get("/req")
            .header("X-Acme-Token", ACME_KEY)
            .header("x-acme-token", "no-such-key");
        assert_ambiguous(&c.request(&req), TWO_API_KEYS);
        // X-API-Key is no credential here: two of them are just two other fields.
        let req = Req::get("/req")
            .header("X-Acme-Token", ACME_KEY)
            .header("X-API-Key", "a")
            .header("X-API-Key", "b");
        assert_ok(&c.request(&req), "/req");
        let r = w.origin.only_request();
        assert_eq!(r.all("x-user-id"), vec!["svc-acme"], "{:?}", r.headers);
        assert!(!r.has("x-acme-token"), "the key reached the origin: {:?}", r.headers);
        assert_eq!(r.all("x-api-key"), vec!["a", "b"]);
    }

    fn a_list_in_one_credential_field_is_400(driver) {
        // What an intermediary that folds the two fields into one would send us.
        let w = World::start(driver);
        let mut c = w.gw.client();
        let token = w.hs(&claims("alice"));
        let forged = tamper_payload(&token);
        for path in ["/req", "/opt"] {
            for value in [
                format!("Bearer {token}, Bearer {forged}"),
                format!("Bearer {forged}, Bearer {token}"),
                format!("Bearer {token},Bearer {token}"),
                format!("Basic dXNlcjpwYXNz, Bearer {token}"),
                format!("Bearer {token},"),
            ] {
                let resp = c.request(&Req::get(path).header("Authorization", &value));
                assert_ambiguous(&resp, AUTHORIZATION_LIST);
            }
            for value in [
                format!("{ACME_KEY}, no-such-key"),
                format!("no-such-key, {ACME_KEY}"),
                format!("{ACME_KEY},{SOLO_KEY}"),
            ] {
                assert_ambiguous(&c.request(&api_key(path, &value)), API_KEY_LIST);
            }
        }
        assert_eq!(w.received(), 0, "the origin received a request");
        // Another scheme's own parameters are no list of credentials: anonymous.
        let digest = "Digest username=\"u\", realm=\"r\", nonce=\"n\"";
        let resp = c.request(&Req::get("/opt").header("Authorization", digest));
        assert_ok(&resp, "/opt");
        assert_anonymous(&w.origin.only_request());
    }

    fn none_route_forwards_repeated_credentials_as_sent(driver) {
        // The gateway decides nothing from them here; the origin, which does, sees
        // exactly what the client sent, in order.
        let w = World::start(driver);
        let mut c = w.gw.client();
        let token = w.hs(&claims("alice"));
        let (first, second) = (format!("Bearer {token}"), "Bearer forged".to_owned());
        let req = Req::get("/open")
            .header("Authorization", &first)
            .header("authorization", &second)
            .header("X-API-Key", ACME_KEY)
            .header("x-api-key", "no-such-key");
        assert_ok(&c.request(&req), "/open");
        let r = w.origin.only_request();
        assert_eq!(r.all("authorization"), vec![first.as_str(), second.as_str()]);
        assert_eq!(r.all("x-api-key"), vec![ACME_KEY, "no-such-key"]);
        assert_anonymous(&r);
    }
}

/// `token` with another payload under its signature: well-formed, forged.
fn tamper_payload(token: &str) -> String {
    let (head, rest) = token.split_once('.').unwrap();
    let sig = rest.split_once('.').unwrap().1;
    let other = b64url(claims_with("mallory", json!({"plan": "enterprise"})).to_string());
    format!("{head}.{other}.{sig}")
}
