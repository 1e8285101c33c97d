//! The rate-limit stage: after auth, before the cache and the upstream. Routes that
//! check credentials (`auth` = required or optional), force a `plan` or have a
//! `rate_limit` of their own are limited; `auth = "none"` routes with neither are not
//! (they are plain proxying).
//!
//! A route's own `rate_limit` (enabled) replaces the plan on that route: its bucket is
//! per route and per its `key_by`, and the caller's plan bucket is not charged.
//! Otherwise the plan is the route's, else the caller's (token claim or API key), else
//! `default_plan`, and the bucket key follows `[rate_limit] key`. Either way
//! anonymous callers are keyed by IP. The pipeline resolved which of the two applies
//! (`Route::plan`, from [`crate::ratelimit::RateLimitConfig::plan_of_route`]).
//!
//! A plan's `daily_quota` / `monthly_quota` is checked here too (see
//! [`crate::ratelimit::quota`]): over quota, 429 with `Retry-After` until the UTC day
//! (month) rolls over, and the quotas listed in `RateLimit-Policy`.
//!
//! A refused request gets 429 with `Retry-After`; with `headers = true` every limited
//! response carries `RateLimit-Policy`, `RateLimit` and the `X-RateLimit-*` trio (the
//! policy of a route's own limit is named `route:ID`).

use crate::auth::Identity;
use crate::config::{AuthMode, RouteConfig};
use crate::http::RequestHead;
use crate::pipeline::local::Local;
use crate::ratelimit::{bucket_key, write_headers_with, Caller, KeyKind, PlanId};

use super::stack::Pipeline;

use super::auth::Answer;

/// The rate-limit stage's request phase (see `super::stack`) for `route`, which
/// is held to `route_plan` if it names one (its own limit, or a plan it forces).
/// Rate-limit header lines for the response (if any) are appended to `out`. A refusal
/// comes with the plan it was held to (for metrics; a route's own limit is the plan
/// `route:ID`).
#[allow(clippy::too_many_arguments)]
pub fn run(
    w: &Local,
    pl: &Pipeline,
    route_plan: Option<PlanId>,
    route: &RouteConfig,
    identity: Option<&Identity>,
    peer: std::net::IpAddr,
    trusted: bool,
    head: &RequestHead,
    buf: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), (Answer, PlanId)> {
    if route.auth == AuthMode::None && route_plan.is_none() {
        return Ok(());
    }
    let limits = &pl.limits;
    let plan = match route_plan {
        Some(id) => limits.plan(id),
        None => {
            let identity_plan = identity
                .and_then(|id| id.plan.as_deref())
                .and_then(|p| limits.plan_id(p));
            limits.select(None, identity_plan)
        }
    };
    // A route's own limit has its own key_by.
    let kind = plan.key.as_ref().unwrap_or(&limits.key);
    let caller = identity.map(|id| Caller {
        user: &id.user,
        tenant: Some(&id.tenant),
        api_key_id: id.api_key_id.as_deref(),
    });
    let header_value = match kind {
        KeyKind::Header(name) => head.header(buf, name),
        _ => None,
    };
    let ip = if trusted {
        client_ip(w, head, buf).unwrap_or(peer)
    } else {
        peer
    };
    let key = bucket_key(kind, caller.as_ref(), ip, header_value);
    // Quota first (a caller over quota costs no token), then the bucket (a request it
    // refuses costs no quota): `Limiter::check_quota`.
    let (decision, quotas) = w.limiter.borrow_mut().check_quota(
        &key,
        plan,
        std::time::Instant::now(),
        crate::ratelimit::quota::unix_now(),
    );
    let over_quota = quotas.exceeded().filter(|_| quotas.refused);
    if !decision.allowed || over_quota.is_some() {
        let mut headers = Vec::with_capacity(256);
        // Retry-After is always sent on a 429; the other headers as configured.
        write_headers_with(&mut headers, &decision, &quotas, true);
        if !limits.headers {
            headers.clear();
            let secs = match over_quota {
                Some(q) => q.reset_secs,
                None => decision
                    .retry_after
                    .map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0)),
            }
            .max(1);
            headers.extend_from_slice(b"Retry-After: ");
            headers.extend_from_slice(itoa::Buffer::new().format(secs).as_bytes());
            headers.extend_from_slice(b"\r\n");
        }
        return Err((
            Answer {
                status: 429,
                message: match (over_quota, &plan.key) {
                    (Some(q), _) => {
                        format!("{} quota of {} requests exceeded", q.period.name(), q.limit)
                    }
                    (None, Some(_)) => format!("rate limit of route {:?} exceeded", route.id),
                    (None, None) => format!("rate limit of plan \"{}\" exceeded", decision.policy),
                },
                headers,
            },
            plan.id,
        ));
    }
    if limits.headers {
        write_headers_with(out, &decision, &quotas, false);
    }
    Ok(())
}

/// Behind trusted proxies the caller is the right-most X-Forwarded-For address that is
/// not itself a trusted proxy (what nginx's real_ip_recursive computes).
fn client_ip(w: &Local, head: &RequestHead, buf: &[u8]) -> Option<std::net::IpAddr> {
    let trusted = &w.cfg.server.trusted_proxies;
    let mut chain: Vec<std::net::IpAddr> = head
        .headers
        .iter()
        .filter(|h| h.kind == crate::http::HeaderKind::XForwardedFor)
        .flat_map(|h| crate::http::header::list_items(h.value.get(buf)))
        .filter_map(|i| std::str::from_utf8(i).ok()?.parse().ok())
        .collect();
    while let Some(ip) = chain.pop() {
        if !trusted.iter().any(|n| n.contains(&ip)) {
            return Some(ip);
        }
    }
    None
}
