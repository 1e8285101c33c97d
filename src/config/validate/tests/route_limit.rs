//! A route's own `rate_limit = { enabled, requests_per_minute, burst, key_by }`: the
//! typed values and defaults, and one test per mistake, each naming the key and line.

use super::super::super::RouteRateLimit;
use super::*;
use crate::ratelimit::KeyKind;

/// A route "r" (lines 7-9) with `rate_limit = {limit}` on line 10.
fn limited(limit: &str) -> String {
    route(&format!(
        "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nrate_limit = {limit}\n"
    ))
}

fn typed(limit: &str) -> Option<RouteRateLimit> {
    ok(&limited(limit)).routes[0].rate_limit.clone()
}

#[test]
fn values_and_defaults() {
    assert_eq!(
        typed("{ enabled = true, requests_per_minute = 120, burst = 7, key_by = \"ip\" }"),
        Some(RouteRateLimit {
            enabled: true,
            requests_per_minute: 120,
            burst: 7,
            key: KeyKind::Ip,
        })
    );
    // enabled defaults to true, burst to requests_per_minute / 6 rounded up, key_by to
    // the user.
    assert_eq!(
        typed("{ requests_per_minute = 100 }"),
        Some(RouteRateLimit {
            enabled: true,
            requests_per_minute: 100,
            burst: 17,
            key: KeyKind::User,
        })
    );
    assert_eq!(typed("{ requests_per_minute = 1 }").unwrap().burst, 1);
    for (key_by, kind) in [
        ("user", KeyKind::User),
        ("tenant", KeyKind::Tenant),
        ("api_key", KeyKind::ApiKey),
        ("ip", KeyKind::Ip),
        ("header:X-Device-ID", KeyKind::Header("x-device-id".into())),
    ] {
        let l = typed(&format!(
            "{{ requests_per_minute = 6, key_by = \"{key_by}\" }}"
        ));
        assert_eq!(l.unwrap().key, kind, "{key_by}");
    }
    // No key at all: no own limit, as for a route that never had one.
    assert_eq!(ok(MINIMAL).routes[0].rate_limit, None);
}

#[test]
fn disabled_keeps_its_numbers_and_needs_none() {
    let l = typed("{ enabled = false, requests_per_minute = 60, burst = 5 }").unwrap();
    assert!(!l.enabled);
    assert_eq!((l.requests_per_minute, l.burst), (60, 5));
    assert_eq!(typed("{ enabled = false }"), None);
    assert_eq!(typed("{ enabled = false, key_by = \"ip\" }"), None);
    // Checked all the same, so switching it on cannot fail.
    bad(
        &limited("{ enabled = false, requests_per_minute = 0 }"),
        10,
        &[
            "routes.\"r\".rate_limit.requests_per_minute = 0",
            "greater than 0",
        ],
    );
    bad(
        &limited("{ enabled = false, key_by = \"org\" }"),
        10,
        &["routes.\"r\".rate_limit.key_by = \"org\""],
    );
}

#[test]
fn the_typed_limits_hold_the_enabled_ones_as_plans() {
    let text = format!(
        "{}[[routes]]\nid = \"s\"\npath_prefix = \"/s\"\nupstream = \"a\"\n\
         rate_limit = {{ enabled = false, requests_per_minute = 5 }}\n",
        limited("{ requests_per_minute = 30, burst = 2 }")
    );
    let cfg = ok(&text);
    let names: Vec<&str> = cfg
        .limits
        .route_limits
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["route:r"]);
    let id = cfg.limits.plan_of_route(&cfg.routes[0]).unwrap();
    assert_eq!(cfg.limits.plan(id).capacity(), 2);
    assert_eq!(cfg.limits.plan_of_route(&cfg.routes[1]), None);
    // `ringgate check` shows both.
    let text = summary(&cfg);
    assert!(text.contains(", limit 30/min burst 2 per user"), "{text}");
    assert!(text.contains(", own limit off"), "{text}");
}

#[test]
fn sub_table_form_is_accepted() {
    let text = route(
        "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n[routes.rate_limit]\n\
         requests_per_minute = 12\nkey_by = \"tenant\"\n",
    );
    let l = ok(&text).routes[0].rate_limit.clone().unwrap();
    assert_eq!(
        (l.requests_per_minute, l.burst, l.key),
        (12, 2, KeyKind::Tenant)
    );
    bad(
        &route(
            "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n[routes.rate_limit]\nburst = 2\n",
        ),
        10,
        &["routes.\"r\".rate_limit.requests_per_minute", "required"],
    );
}

#[test]
fn rate_must_be_given_positive_and_sane() {
    let e = bad(
        &limited("{ burst = 2 }"),
        10,
        &[
            "routes.\"r\".rate_limit.requests_per_minute: required",
            "enabled = false",
        ],
    );
    assert!(matches!(e, ConfigError::RateLimit { .. }));
    let e = bad(
        &limited("{ requests_per_minute = 0 }"),
        10,
        &[
            "routes.\"r\".rate_limit.requests_per_minute = 0",
            "greater than 0",
        ],
    );
    assert!(matches!(e, ConfigError::NotPositive { .. }));
    let e = bad(
        &limited("{ requests_per_minute = 60000001 }"),
        10,
        &[
            "routes.\"r\".rate_limit.requests_per_minute = 60000001",
            "at most 60000000",
        ],
    );
    assert!(matches!(e, ConfigError::TooLarge { .. }));
    bad(
        &limited("{ requests_per_minute = -1 }"),
        10,
        &["routes.\"r\".rate_limit.requests_per_minute"],
    );
    bad(
        &limited("{ requests_per_minute = \"60\" }"),
        10,
        &["routes.\"r\".rate_limit.requests_per_minute"],
    );
}

#[test]
fn burst_is_at_least_one_and_at_most_a_day() {
    let e = bad(
        &limited("{ requests_per_minute = 60, burst = 0 }"),
        10,
        &["routes.\"r\".rate_limit.burst = 0", "at least 1", "at once"],
    );
    assert!(matches!(e, ConfigError::RateLimit { .. }));
    let e = bad(
        &limited("{ requests_per_minute = 2, burst = 2881 }"),
        10,
        &["routes.\"r\".rate_limit.burst = 2881", "at most 2880"],
    );
    assert!(matches!(e, ConfigError::TooLarge { .. }));
    assert_eq!(
        typed("{ requests_per_minute = 2, burst = 2880 }")
            .unwrap()
            .burst,
        2880
    );
}

#[test]
fn key_by_and_unknown_keys() {
    let e = bad(
        &limited("{ requests_per_minute = 6, key_by = \"org\" }"),
        10,
        &[
            "routes.\"r\".rate_limit.key_by = \"org\"",
            "user, tenant, api_key, ip, header:<Name>",
        ],
    );
    assert!(matches!(e, ConfigError::BadRateLimitKey { .. }));
    bad(
        &limited("{ requests_per_minute = 6, key_by = \"header:\" }"),
        10,
        &["routes.\"r\".rate_limit.key_by = \"header:\""],
    );
    // The plan's key name is not this table's, and a typo is never ignored.
    bad(
        &limited("{ requests_per_minute = 6, key = \"ip\" }"),
        10,
        &["routes.\"r\".rate_limit", "unknown field `key`", "`key_by`"],
    );
    bad(
        &limited("{ requests_per_minute = 6, enabled = \"yes\" }"),
        10,
        &["routes.\"r\".rate_limit.enabled"],
    );
}
