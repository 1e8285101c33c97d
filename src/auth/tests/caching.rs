//! The per-worker identity cache: one signature check per token, entries gone at
//! `exp`, rejections remembered apart so they cannot push out good entries.

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::*;

#[test]
fn second_request_is_served_without_a_signature_check() {
    let w = World::new("");
    for (alg, kid) in [
        (Algorithm::HS256, "hs-1"),
        (Algorithm::RS256, "rs-1"),
        (Algorithm::ES256, "es-1"),
        (Algorithm::EdDSA, "ed-1"),
    ] {
        let token = w.mint(alg, Some(kid), &claims());
        let before = w.auth.stats();
        let first = identity(w.bearer(&token));
        let second = identity(w.bearer(&token));
        let after = w.auth.stats();
        assert_eq!(
            after.signature_checks - before.signature_checks,
            1,
            "{alg:?}"
        );
        assert_eq!(after.cache_hits - before.cache_hits, 1, "{alg:?}");
        assert!(Rc::ptr_eq(&first, &second), "the cached identity is shared");
    }
    assert_eq!(w.auth.cached_identities(), 4);
}

#[test]
fn cached_entry_ends_when_the_token_does() {
    let w = World::new("leeway_s = 5");
    let t = now();
    let token = w.mint(
        Algorithm::RS256,
        Some("rs-1"),
        &json!({"sub": "a", "exp": t + 60}),
    );
    identity(w.bearer_at(&token, t));
    identity(w.bearer_at(&token, t + 65));
    assert_eq!(
        w.auth.stats().signature_checks,
        1,
        "served from cache up to exp + leeway"
    );
    // Past exp + leeway the entry is dropped and the token judged afresh.
    assert_eq!(failure(w.bearer_at(&token, t + 66)), AuthFailure::Expired);
    assert_eq!(w.auth.stats().signature_checks, 2);
    assert_eq!(w.auth.cached_identities(), 0);
    // From then on the verdict itself is remembered.
    assert_eq!(failure(w.bearer_at(&token, t + 67)), AuthFailure::Expired);
    assert_eq!(w.auth.stats().signature_checks, 2);
    assert_eq!(w.auth.stats().negative_hits, 1);
}

#[test]
fn bad_signature_is_remembered_for_a_while() {
    let w = World::new("");
    let token = tamper(&w.mint(Algorithm::RS256, Some("rs-1"), &claims()));
    let t = now();
    assert_eq!(failure(w.bearer_at(&token, t)), AuthFailure::BadSignature);
    assert_eq!(
        failure(w.bearer_at(&token, t + 1)),
        AuthFailure::BadSignature
    );
    assert_eq!(w.auth.stats().signature_checks, 1);
    let ttl = CacheLimits::default().negative_ttl_s;
    assert_eq!(
        failure(w.bearer_at(&token, t + ttl + 1)),
        AuthFailure::BadSignature
    );
    assert_eq!(
        w.auth.stats().signature_checks,
        2,
        "checked again after the ttl"
    );
}

#[test]
fn not_yet_valid_is_never_remembered() {
    let w = World::new("leeway_s = 0");
    let t = now();
    let c = json!({"sub": "a", "nbf": t + 100, "exp": t + 1000});
    let token = w.mint(Algorithm::HS256, Some("hs-1"), &c);
    assert_eq!(failure(w.bearer_at(&token, t)), AuthFailure::NotYetValid);
    assert_eq!(failure(w.bearer_at(&token, t)), AuthFailure::NotYetValid);
    assert_eq!(w.auth.stats().signature_checks, 2);
    assert_eq!(w.auth.stats().negative_hits, 0);
}

#[test]
fn cheap_rejections_are_not_cached() {
    let w = World::new("");
    let token = w.mint(Algorithm::HS256, Some("nope"), &claims());
    for _ in 0..3 {
        assert_eq!(failure(w.bearer(&token)), AuthFailure::UnknownKid);
    }
    assert_eq!(w.auth.stats().negative_hits, 0);
    assert_eq!(w.auth.stats().signature_checks, 0);
}

#[test]
fn cache_is_bounded_and_garbage_cannot_evict_good_entries() {
    let limits = CacheLimits {
        entries: 8,
        negative_entries: 4,
        ..CacheLimits::default()
    };
    let w = World::with_limits("", limits);
    let good = w.mint(Algorithm::ES256, Some("es-1"), &claims());
    identity(w.bearer(&good));
    for i in 0..50 {
        let mut c = claims();
        c["n"] = json!(i);
        let bad = tamper(&w.mint(Algorithm::HS256, Some("hs-1"), &c));
        assert_eq!(failure(w.bearer(&bad)), AuthFailure::BadSignature);
    }
    let checks = w.auth.stats().signature_checks;
    identity(w.bearer(&good));
    assert_eq!(
        w.auth.stats().signature_checks,
        checks,
        "good entry survived"
    );

    for i in 0..50 {
        let mut c = claims();
        c["n"] = json!(i);
        identity(w.bearer(&w.mint(Algorithm::HS256, Some("hs-1"), &c)));
        assert!(w.auth.cached_identities() <= 8);
    }
}

#[test]
fn disabled_cache_checks_every_time() {
    let w = World::with_limits("", CacheLimits::disabled());
    let token = w.mint(Algorithm::EdDSA, Some("ed-1"), &claims());
    for _ in 0..3 {
        identity(w.bearer(&token));
    }
    assert_eq!(w.auth.stats().signature_checks, 3);
    assert_eq!(w.auth.cached_identities(), 0);
}
