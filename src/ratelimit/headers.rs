//! The rate-limit response headers of a [`Decision`]:
//!
//! ```text
//! RateLimit-Policy: "free";q=60;w=60     draft-ietf-httpapi-ratelimit-headers-11 §3:
//!                                        quota q per window w seconds (the plan)
//! RateLimit: "free";r=9;t=2              §4: r requests available now; t seconds until
//!                                        the bucket is full again (on a refusal: until
//!                                        a request will be admitted)
//! X-RateLimit-Limit: 60                  the same numbers in the widely used names
//! X-RateLimit-Remaining: 9
//! X-RateLimit-Reset: 2                   seconds (not a timestamp)
//! Retry-After: 1                         on a 429 only: whole seconds, rounded up, >= 1
//! ```
//!
//! The policy name is written as a structured-field String, as the draft requires (plan
//! names are tokens, so they never need escaping; `"` and `\` would be escaped anyway).

use std::time::Duration;

use super::{Decision, QuotaState};

/// Append the header lines for `d`, each `Name: value\r\n`. `include_retry_after` adds
/// `Retry-After` when the request was refused (a 429); it is never written for an
/// admitted request. To pass the block to `http::generated::write_error` as one extra
/// line, drop its final CRLF.
pub fn write_headers(out: &mut Vec<u8>, d: &Decision<'_>, include_retry_after: bool) {
    write_headers_with(out, d, &QuotaState::default(), include_retry_after);
}

/// [`write_headers`] with the plan's quotas ([`super::quota`]): `RateLimit-Policy`
/// lists the plan's item then one per quota (`"daily";q=10000;w=86400`, `"monthly";
/// q=..;w=<seconds in this month>`); `RateLimit` and the `X-RateLimit-*` trio show the
/// most restrictive of them (fewest requests left; on a tie, the one that resets
/// last). `Retry-After` is the bucket's wait when the bucket refused, else the
/// exhausted quota's rollover.
pub fn write_headers_with(
    out: &mut Vec<u8>,
    d: &Decision<'_>,
    quotas: &QuotaState,
    include_retry_after: bool,
) {
    let mut num = itoa::Buffer::new();
    let reset = ceil_secs(d.reset_after);

    out.extend_from_slice(b"RateLimit-Policy: ");
    sf_string(out, d.policy);
    out.extend_from_slice(b";q=");
    out.extend_from_slice(num.format(d.limit).as_bytes());
    out.extend_from_slice(b";w=");
    out.extend_from_slice(num.format(ceil_secs(d.window).max(1)).as_bytes());
    for q in quotas.items() {
        out.extend_from_slice(b", ");
        sf_string(out, q.period.name());
        out.extend_from_slice(b";q=");
        out.extend_from_slice(num.format(q.limit).as_bytes());
        out.extend_from_slice(b";w=");
        out.extend_from_slice(num.format(q.window_secs).as_bytes());
    }

    // (name, limit, remaining, reset): the plan's, unless a quota is tighter.
    let mut shown = (d.policy, u64::from(d.limit), u64::from(d.remaining), reset);
    for q in quotas.items() {
        if (q.remaining, u64::MAX - q.reset_secs) < (shown.2, u64::MAX - shown.3) {
            shown = (q.period.name(), q.limit, q.remaining, q.reset_secs);
        }
    }
    let (name, limit, remaining, reset) = shown;

    out.extend_from_slice(b"\r\nRateLimit: ");
    sf_string(out, name);
    out.extend_from_slice(b";r=");
    out.extend_from_slice(num.format(remaining).as_bytes());
    out.extend_from_slice(b";t=");
    out.extend_from_slice(num.format(reset).as_bytes());

    out.extend_from_slice(b"\r\nX-RateLimit-Limit: ");
    out.extend_from_slice(num.format(limit).as_bytes());
    out.extend_from_slice(b"\r\nX-RateLimit-Remaining: ");
    out.extend_from_slice(num.format(remaining).as_bytes());
    out.extend_from_slice(b"\r\nX-RateLimit-Reset: ");
    out.extend_from_slice(num.format(reset).as_bytes());
    out.extend_from_slice(b"\r\n");

    if include_retry_after {
        let wait = match (d.retry_after, quotas.exceeded()) {
            (Some(wait), _) => Some(ceil_secs(wait)),
            (None, Some(q)) => Some(q.reset_secs),
            (None, None) => None,
        };
        if let Some(wait) = wait {
            out.extend_from_slice(b"Retry-After: ");
            out.extend_from_slice(num.format(wait.max(1)).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Whole seconds, rounded up: a client that waits this long is never early.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// RFC 9651 sf-string: printable ASCII in quotes, `"` and `\` escaped. Other bytes
/// cannot appear in a String; they are replaced by `?` (plan names are tokens, so this
/// never happens with a validated configuration).
fn sf_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => out.push(b),
            _ => out.push(b'?'),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::{KeyKind, KeySecret, Limiter, RateLimitConfig, WINDOW};
    use super::*;

    fn text(d: &Decision<'_>, retry: bool) -> String {
        let mut out = Vec::new();
        write_headers(&mut out, d, retry);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn admitted_request_headers_exactly() {
        let cfg = RateLimitConfig::new(
            &[("free", 60, 10)],
            "free",
            KeyKind::User,
            Duration::from_millis(20),
        )
        .unwrap();
        let plan = &cfg.plans[0];
        let mut l = Limiter::new(0, 1, &cfg, KeySecret::random());
        let t0 = Instant::now();
        let d = l.check(b"k", plan, t0);
        assert_eq!(
            text(&d, true),
            "RateLimit-Policy: \"free\";q=60;w=60\r\n\
             RateLimit: \"free\";r=10;t=1\r\n\
             X-RateLimit-Limit: 60\r\n\
             X-RateLimit-Remaining: 10\r\n\
             X-RateLimit-Reset: 1\r\n"
        );
        for _ in 0..9 {
            l.check(b"k", plan, t0);
        }
        let d = l.check(b"k", plan, t0);
        assert!(d.allowed);
        assert!(text(&d, false).contains("RateLimit: \"free\";r=0;t=11\r\n"));
        // Refused: r=0, and t and Retry-After name the same moment.
        let d = l.check(b"k", plan, t0 + Duration::from_millis(250));
        assert!(!d.allowed);
        assert_eq!(
            text(&d, true),
            "RateLimit-Policy: \"free\";q=60;w=60\r\n\
             RateLimit: \"free\";r=0;t=1\r\n\
             X-RateLimit-Limit: 60\r\n\
             X-RateLimit-Remaining: 0\r\n\
             X-RateLimit-Reset: 1\r\n\
             Retry-After: 1\r\n"
        );
        assert!(!text(&d, false).contains("Retry-After"));
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one() {
        let d = |ns: u64| Decision {
            allowed: false,
            limit: 7,
            remaining: 0,
            reset_after: Duration::from_nanos(ns),
            retry_after: Some(Duration::from_nanos(ns)),
            policy: "slow",
            window: WINDOW,
        };
        let retry = |ns| {
            let t = text(&d(ns), true);
            let line = t.lines().find(|l| l.starts_with("Retry-After: ")).unwrap();
            line["Retry-After: ".len()..].parse::<u64>().unwrap()
        };
        assert_eq!(retry(1), 1);
        assert_eq!(retry(999_999_999), 1);
        assert_eq!(retry(1_000_000_000), 1);
        assert_eq!(retry(1_000_000_001), 2);
        assert_eq!(retry(6_571_428_572), 7);
        assert_eq!(retry(0), 1);
        assert!(text(&d(6_571_428_572), true).contains("RateLimit: \"slow\";r=0;t=7\r\n"));
    }

    #[test]
    fn quotas_join_the_policy_and_show_when_tighter() {
        use super::super::{Period, QuotaItem};
        let d = Decision {
            allowed: true,
            limit: 60,
            remaining: 10,
            reset_after: Duration::from_secs(1),
            retry_after: None,
            policy: "free",
            window: WINDOW,
        };
        let item = |period, limit, remaining, reset_secs, window_secs| QuotaItem {
            period,
            limit,
            remaining,
            reset_secs,
            window_secs,
        };
        let mut q = QuotaState::default();
        q.items[0] = Some(item(Period::Day, 10000, 9000, 500, 86400));
        q.items[1] = Some(item(Period::Month, 200000, 100000, 9000, 2678400));
        let mut out = Vec::new();
        write_headers_with(&mut out, &d, &q, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "RateLimit-Policy: \"free\";q=60;w=60, \"daily\";q=10000;w=86400, \
             \"monthly\";q=200000;w=2678400\r\n\
             RateLimit: \"free\";r=10;t=1\r\n\
             X-RateLimit-Limit: 60\r\n\
             X-RateLimit-Remaining: 10\r\n\
             X-RateLimit-Reset: 1\r\n"
        );
        // The daily quota nearly spent: it is shown.
        q.items[0] = Some(item(Period::Day, 10000, 3, 500, 86400));
        let mut out = Vec::new();
        write_headers_with(&mut out, &d, &q, true);
        let t = String::from_utf8(out).unwrap();
        assert!(t.contains("RateLimit: \"daily\";r=3;t=500\r\n"), "{t}");
        assert!(t.contains("X-RateLimit-Limit: 10000\r\n"), "{t}");
        // Both exhausted: the monthly one resets last and decides Retry-After.
        q.items[0] = Some(item(Period::Day, 10000, 0, 500, 86400));
        q.items[1] = Some(item(Period::Month, 200000, 0, 9000, 2678400));
        let refused = Decision {
            allowed: false,
            ..d
        };
        let mut out = Vec::new();
        write_headers_with(&mut out, &refused, &q, true);
        let t = String::from_utf8(out).unwrap();
        assert!(t.contains("RateLimit: \"monthly\";r=0;t=9000\r\n"), "{t}");
        assert!(t.ends_with("Retry-After: 9000\r\n"), "{t}");
    }

    #[test]
    fn policy_names_are_sf_strings() {
        let mut out = Vec::new();
        sf_string(&mut out, "a\"b\\c\u{e9}");
        assert_eq!(out, b"\"a\\\"b\\\\c??\"");
    }
}
