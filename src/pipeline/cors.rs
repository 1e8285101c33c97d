//! The CORS stage (Fetch standard, "CORS protocol"), on routes with `cors = { .. }`.
//! It runs in the routed phase (`super::stack::routed`): after routing, because the
//! policy is the route's, and before the request phase, because a preflight carries no
//! credentials (browsers never send them on one) and must not be refused by auth or
//! charged to a rate-limit bucket.
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is
//!   answered here and never reaches the upstream: 204 with the `Access-Control-Allow-*`
//!   fields when the origin, the method and every requested header are allowed; else
//!   403 JSON **without** any CORS field (the browser fails the preflight either way;
//!   a status of its own makes refusals visible in logs and metrics, and a reason for
//!   whoever debugs with curl). Envoy's filter would pass a refused preflight to the
//!   upstream; here the upstream never sees a preflight.
//! - Any other request adds its fields to `cx.extra`, so they land on whatever answers
//!   it: the upstream's response, a cache hit, a 304, a stale entry, or a
//!   gateway-generated error (401, 429, 502 ...). `Vary: Origin` always (a shared
//!   cache must not give one origin's answer to another); `Access-Control-Allow-Origin`
//!   (the origin echoed, or `*` for `origins = ["*"]` without credentials),
//!   `-Allow-Credentials` and `-Expose-Headers` only for an allowed origin.
//! - The gateway is authoritative on a `cors` route: the upstream's own
//!   `Access-Control-*` response fields are dropped (validation adds them to the
//!   route's `response_headers.remove`, so they are not stored in the cache either),
//!   and the fields are added at response time, never stored: a response cached for
//!   one origin is served to another with that other origin's fields.

use crate::config::{CorsOrigins, RouteCors};
use crate::http::header::{list_items, trim_ows};
use crate::http::{Method, RequestHead};

use super::auth::Answer;
use super::context::RequestCtx;

/// The method a preflight asks about (`Access-Control-Request-Method`), when `head` is
/// one: `OPTIONS` with `Origin` and that field. Routing looks the route up with this
/// method, so a preflight for a `methods = ["POST"]` route finds it.
pub fn preflight_method<'a>(head: &RequestHead, buf: &'a [u8]) -> Option<&'a [u8]> {
    if head.method != Method::Options || head.header(buf, "origin").is_none() {
        return None;
    }
    head.header(buf, "access-control-request-method")
        .map(trim_ows)
}

/// What the stage decided.
pub enum Cors {
    /// Go on (fields for the response, if any, are in `extra`).
    Next,
    /// An allowed preflight: this complete 204 is the answer.
    Preflight,
    /// A refused preflight: answer this (403, no CORS fields).
    Refused(Answer),
}

/// The routed phase. `out` receives an allowed preflight's 204; `cx.extra` this
/// request's response fields.
pub fn routed(
    cors: &RouteCors,
    head: &RequestHead,
    buf: &[u8],
    date: &[u8],
    keep_alive: bool,
    cx: &mut RequestCtx,
    out: &mut Vec<u8>,
) -> Cors {
    let (request_id, extra) = (&cx.request_id, &mut cx.extra);
    let origin = head.header(buf, "origin").map(trim_ows);
    if let Some(method) = preflight_method(head, buf) {
        extra.extend_from_slice(
            b"Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers\r\n",
        );
        let origin = origin.unwrap_or_default();
        let requested = head
            .header(buf, "access-control-request-headers")
            .unwrap_or_default();
        let refusal = if !origin_allowed(cors, origin) {
            Some("CORS preflight refused: origin not allowed")
        } else if !cors.methods.iter().any(|m| m.as_bytes() == method) {
            Some("CORS preflight refused: method not allowed")
        } else if !cors.any_header
            && !list_items(requested).all(|h| {
                cors.headers
                    .iter()
                    .any(|a| a.as_bytes().eq_ignore_ascii_case(h))
            })
        {
            Some("CORS preflight refused: header not allowed")
        } else {
            None
        };
        if let Some(message) = refusal {
            return Cors::Refused(Answer {
                status: 403,
                message: message.to_owned(),
                headers: Vec::new(),
            });
        }
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 204 No Content\r\nDate: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\nX-Request-ID: ");
        out.extend_from_slice(request_id);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(extra);
        allow_origin(cors, origin, out);
        out.extend_from_slice(b"Access-Control-Allow-Methods: ");
        out.extend_from_slice(cors.allow_methods.as_bytes());
        out.extend_from_slice(b"\r\n");
        let requested = trim_ows(requested);
        if !requested.is_empty() {
            // The requested fields, all allowed: echoed (a `*` would not cover
            // `Authorization`, and is not honoured with credentials).
            out.extend_from_slice(b"Access-Control-Allow-Headers: ");
            out.extend_from_slice(requested);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(age) = cors.max_age_s {
            out.extend_from_slice(b"Access-Control-Max-Age: ");
            out.extend_from_slice(itoa::Buffer::new().format(age).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if head.version_minor == 0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        return Cors::Preflight;
    }
    extra.extend_from_slice(b"Vary: Origin\r\n");
    if let Some(origin) = origin.filter(|o| origin_allowed(cors, o)) {
        allow_origin(cors, origin, extra);
        if !cors.expose.is_empty() {
            extra.extend_from_slice(b"Access-Control-Expose-Headers: ");
            extra.extend_from_slice(cors.expose.as_bytes());
            extra.extend_from_slice(b"\r\n");
        }
    }
    Cors::Next
}

/// `Access-Control-Allow-Origin` (and `-Allow-Credentials`) for an allowed origin.
fn allow_origin(cors: &RouteCors, origin: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"Access-Control-Allow-Origin: ");
    if cors.origins == CorsOrigins::Any && !cors.credentials {
        out.push(b'*');
    } else {
        // With credentials the browser refuses `*`: the origin itself.
        out.extend_from_slice(origin);
    }
    out.extend_from_slice(b"\r\n");
    if cors.credentials {
        out.extend_from_slice(b"Access-Control-Allow-Credentials: true\r\n");
    }
}

fn origin_allowed(cors: &RouteCors, origin: &[u8]) -> bool {
    if origin.is_empty() || origin.iter().any(|&b| b < 0x21 || b == 0x7f) {
        return false;
    }
    match &cors.origins {
        // An opaque origin (`null`: sandboxed frames, file://, redirects) is never
        // echoed: with credentials that would open the route to any sandboxed page.
        CorsOrigins::Any => !(cors.credentials && origin == b"null"),
        CorsOrigins::List(list) => list
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(origin)),
    }
}
