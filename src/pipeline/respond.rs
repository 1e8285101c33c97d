//! The respond stage: a route with `respond = { status, body, content_type }` is
//! answered here, at the edge, and never contacts an upstream. It runs in the request
//! phase after auth and rate limiting (see `stack::STACK`), so such a route is still
//! protected and counted like any other; and before the cache, which has nothing to
//! keep for it.
//!
//! The answer carries Content-Type, Content-Length, Date, X-Request-ID, the lines the
//! earlier stages added (rate-limit fields, HSTS) and the route's `response_headers`
//! edits (`remove` may drop Content-Type). A HEAD gets the same head and no body. The
//! request body is not read: the proxy drops it when it is already buffered, else
//! closes the connection with a lingering close (`proxy::serve_answer`).

use super::context::RequestCtx;
use super::stack::{Flow, RequestIn};
use crate::config::{Respond, RouteTarget};
use crate::http::Method;

/// The request phase: `Flow::Served` with the whole answer in `out` on a respond
/// route, else `Flow::Next`.
pub fn request(r: &RequestIn<'_>, cx: &mut RequestCtx, out: &mut Vec<u8>) -> Flow {
    let RouteTarget::Respond(resp) = &r.route.cfg.target else {
        return Flow::Next;
    };
    out.clear();
    let date = *r.w.date.borrow();
    write(
        out,
        resp,
        &r.route.cfg.response_headers,
        &cx.request_id,
        &date,
        &cx.extra,
        !r.keep_if_answered,
        r.head.method == Method::Head,
    );
    Flow::Served
}

/// The answer's head and (unless `head_only`) body, appended to `out`.
#[allow(clippy::too_many_arguments)]
pub fn write(
    out: &mut Vec<u8>,
    resp: &Respond,
    edits: &crate::config::HeaderEdits,
    request_id: &[u8],
    date: &[u8],
    extra: &[u8],
    close: bool,
    head_only: bool,
) {
    let removed = |name: &str| edits.remove.iter().any(|r| r.eq_ignore_ascii_case(name));
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(resp.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(resp.status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !resp.content_type.is_empty() && !removed("content-type") {
        line(out, "Content-Type", resp.content_type.as_bytes());
    }
    // 204 and 304 carry no Content-Length of a body (RFC 9110 8.6).
    if !matches!(resp.status, 204 | 304) {
        line(
            out,
            "Content-Length",
            itoa::Buffer::new().format(resp.body.len()).as_bytes(),
        );
    }
    line(out, "Date", date);
    if !request_id.is_empty() {
        line(out, "X-Request-ID", request_id);
    }
    out.extend_from_slice(extra);
    for (name, value) in &edits.add {
        line(out, name, value.as_bytes());
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase: the canonical one for common statuses, else an empty one
/// (allowed by RFC 9112 4).
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        410 => "Gone",
        418 => "I'm a teapot",
        s if s >= 400 => crate::http::generated::status_text(s).0,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HeaderEdits;

    #[test]
    fn answer_head_and_body() {
        let resp = Respond {
            status: 200,
            body: b"OK".as_slice().into(),
            content_type: "text/plain".into(),
        };
        let edits = HeaderEdits {
            add: vec![("X-Edge".into(), "1".into())],
            remove: vec![],
        };
        let mut out = Vec::new();
        write(
            &mut out,
            &resp,
            &edits,
            b"r1",
            b"DATE",
            b"RateLimit: x\r\n",
            false,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nDate: DATE\r\nX-Request-ID: r1\r\nRateLimit: x\r\nX-Edge: 1\r\n\r\nOK"
        );
        let mut head = Vec::new();
        write(
            &mut head,
            &resp,
            &HeaderEdits::default(),
            b"",
            b"D",
            b"",
            true,
            true,
        );
        assert!(head.ends_with(b"Content-Length: 2\r\nDate: D\r\nConnection: close\r\n\r\n"));
    }
}
