//! What the edge changes in the request it sends upstream, beyond the header edits of
//! `forward`: the route's `rewrite` (the target) and the upstream's `request_headers`
//! (templates rendered per request). The proxy and the cache's background refresh both
//! call these before `forward::upstream_request`, which takes the results through
//! `Outbound::target` and `Outbound::extra_fields` / `Outbound::replaced`.
//!
//! Order: the rewrite applies to the path routing matched (normalised, without the
//! query), the same bytes the route's conditions saw; a route has either `rewrite` or
//! `strip_prefix` (validation refuses both), so there is no order between them to
//! remember. The query string is appended unchanged.

use std::time::SystemTime;

use crate::auth::Identity;
use crate::config::{PathMatch, RouteConfig};
use crate::http::rewrite::RewriteError;
use crate::http::template::{Template, TemplateCx};
use crate::http::RequestHead;

/// The path routing matched: `normalised` when the request's path needed it (the
/// proxy keeps it in `RequestCtx::path`), else the path as received.
pub fn matched_path<'a>(head: &RequestHead, buf: &'a [u8], normalised: &'a [u8]) -> &'a [u8] {
    if normalised.is_empty() {
        head.path(buf)
    } else {
        normalised
    }
}

/// The route's rewrite of this request's target into `out` (cleared first).
/// `Ok(false)`: no rewrite (none configured, or the pattern does not match): the
/// target goes as received.
pub fn rewrite(
    route: &RouteConfig,
    head: &RequestHead,
    buf: &[u8],
    path: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool, RewriteError> {
    out.clear();
    let Some(rw) = &route.rewrite else {
        return Ok(false);
    };
    let target = head.target.get(buf);
    let query = memchr::memchr(b'?', target).map(|i| &target[i + 1..]);
    rw.apply(path, query, out)
}

/// What templates of this request are rendered from (a clock read only when asked).
pub struct Facts<'a> {
    pub head: &'a RequestHead,
    pub buf: &'a [u8],
    pub path: &'a [u8],
    pub route: &'a RouteConfig,
    pub request_id: &'a [u8],
    pub client_ip: std::net::IpAddr,
    pub identity: Option<&'a Identity>,
    /// `rate_limit.default_plan`: `${plan}` of a caller whose credential names none.
    pub default_plan: &'a str,
}

/// `${plan}` as the rate limiter picks it: the route's forced plan, else the caller's,
/// else the default one. Anonymous callers have none.
pub fn template_plan<'a>(
    route: &'a crate::config::RouteConfig,
    identity: Option<&'a Identity>,
    default_plan: &'a str,
) -> Option<&'a str> {
    identity.map(|i| {
        route
            .plan
            .as_deref()
            .or(i.plan.as_deref())
            .unwrap_or(default_plan)
    })
}

/// The upstream's `request_headers`, rendered as header lines appended to `out`.
pub fn upstream_headers(fields: &[(String, Template)], f: &Facts<'_>, out: &mut Vec<u8>) {
    if fields.is_empty() {
        return;
    }
    let now_ms = if fields.iter().all(|(_, t)| t.is_constant()) {
        0
    } else {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let cx = TemplateCx {
        path: f.path,
        path_template: match &f.route.path {
            PathMatch::Template(t) => Some(t),
            _ => None,
        },
        request_id: f.request_id,
        client_ip: Some(f.client_ip),
        now_ms,
        user: f.identity.map(|i| i.user.as_str()),
        tenant: f.identity.map(|i| i.tenant.as_str()),
        // As the rate limiter picks it: the route's forced plan, else the caller's,
        // else the default one. Anonymous callers have none.
        plan: template_plan(f.route, f.identity, f.default_plan),
        ..TemplateCx::new(f.head, f.buf)
    };
    for (name, t) in fields {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        t.render(&cx, out);
        out.extend_from_slice(b"\r\n");
    }
}
