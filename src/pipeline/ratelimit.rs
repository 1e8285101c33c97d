//! The rate-limit stage: after auth, before the cache and the upstream. Routes that
//! check credentials (`auth` = required or optional) or force a `plan` are limited;
//! `auth = "none"` routes without a plan are not (they are plain proxying). The bucket
//! key follows `[rate_limit] key`; anonymous callers are keyed by IP. The plan is the
//! route's, else the caller's (token claim or API key), else `default_plan`.
//!
//! A refused request gets 429 with `Retry-After`; with `headers = true` every limited
//! response carries `RateLimit-Policy`, `RateLimit` and the `X-RateLimit-*` trio.

use crate::auth::Identity;
use crate::config::{AuthMode, RouteConfig};
use crate::http::RequestHead;
use crate::pipeline::local::Local;
use crate::ratelimit::{bucket_key, write_headers, Caller, KeyKind, PlanId};

use super::stack::Pipeline;

use super::auth::Answer;

/// The rate-limit stage's request phase (see `super::stack`) for `route`, which
/// forces `route_plan` if it names one.
/// Rate-limit header lines for the response (if any) are appended to `out`. A refusal
/// comes with the plan it was held to (for metrics).
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
    let identity_plan = identity
        .and_then(|id| id.plan.as_deref())
        .and_then(|p| limits.plan_id(p));
    let plan = limits.select(route_plan, identity_plan);
    let caller = identity.map(|id| Caller {
        user: &id.user,
        tenant: Some(&id.tenant),
        api_key_id: id.api_key_id.as_deref(),
    });
    let header_value = match &limits.key {
        KeyKind::Header(name) => head.header(buf, name),
        _ => None,
    };
    let ip = if trusted {
        client_ip(w, head, buf).unwrap_or(peer)
    } else {
        peer
    };
    let key = bucket_key(&limits.key, caller.as_ref(), ip, header_value);
    let decision = w
        .limiter
        .borrow_mut()
        .check(&key, plan, std::time::Instant::now());
    if !decision.allowed {
        let mut headers = Vec::with_capacity(256);
        // Retry-After is always sent on a 429; the other headers as configured.
        write_headers(&mut headers, &decision, true);
        if !limits.headers {
            headers.clear();
            let secs = decision
                .retry_after
                .map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
                .max(1);
            headers.extend_from_slice(b"Retry-After: ");
            headers.extend_from_slice(itoa::Buffer::new().format(secs).as_bytes());
            headers.extend_from_slice(b"\r\n");
        }
        return Err((
            Answer {
                status: 429,
                message: format!("rate limit of plan \"{}\" exceeded", decision.policy),
                headers,
            },
            plan.id,
        ));
    }
    if limits.headers {
        write_headers(out, &decision, false);
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
