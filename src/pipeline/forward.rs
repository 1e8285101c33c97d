//! Composing the heads the gateway sends: the request to the upstream and the response
//! to the client. Both drop hop-by-hop headers (Connection and every header it names,
//! Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade), re-frame the body, and apply the
//! route's header edits. The request gains X-Forwarded-For/-Proto/-Host and
//! X-Request-ID; the response gains X-Request-ID. Header bytes are copied as received.

use crate::config::{HeaderEdits, RouteConfig};
use crate::http::header::list_items;
use crate::http::{BodyFraming, HeaderKind, HeaderPos, RequestHead, ResponseHead, Span};

/// Per-connection facts about the client, computed once at accept.
#[derive(Clone)]
pub struct Peer {
    pub addr: std::net::IpAddr,
    pub ip: String,
    /// The peer is in `server.trusted_proxies`: its X-Forwarded-* are extended.
    pub trusted: bool,
    /// The connection is HTTPS (accepted on a `server.tls.listen` listener).
    pub https: bool,
    /// The client's verified certificate (mTLS), if it sent one.
    pub client_cert: Option<std::rc::Rc<crate::tls::ClientCert>>,
}

fn named_in(tokens: &[Span], buf: &[u8], name: &[u8]) -> bool {
    tokens.iter().any(|t| t.get(buf).eq_ignore_ascii_case(name))
}

pub(super) fn removed(edits: &HeaderEdits, name: &[u8]) -> bool {
    edits
        .remove
        .iter()
        .any(|r| r.as_bytes().eq_ignore_ascii_case(name))
}

pub(super) fn header_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A header line from claim values (space-separated), without control bytes.
fn claim_line<'a>(out: &mut Vec<u8>, name: &[u8], values: impl Iterator<Item = &'a str>) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend(v.bytes().filter(|&b| b >= 0x20 && b != 0x7f));
    }
    out.extend_from_slice(b"\r\n");
}

/// Should this header of a received head be dropped when forwarding?
#[inline]
pub(super) fn hop_by_hop(h: &HeaderPos, buf: &[u8], conn_tokens: &[Span]) -> bool {
    match h.kind {
        HeaderKind::Connection
        | HeaderKind::HopByHop
        | HeaderKind::TransferEncoding
        | HeaderKind::ContentLength => true,
        _ => !conn_tokens.is_empty() && named_in(conn_tokens, buf, h.name.get(buf)),
    }
}

/// What the gateway knows about a request beyond its head, for the upstream's copy.
pub struct Outbound<'a> {
    pub route: &'a RouteConfig,
    pub peer: &'a Peer,
    pub request_id: &'a [u8],
    /// Host to send when the client sent none (HTTP/1.0).
    pub upstream_host: &'a str,
    /// The verified caller, sent as X-User-ID, X-Tenant-ID, X-User-Plan, X-User-Scopes.
    pub identity: Option<&'a crate::auth::Identity>,
    /// The route checks credentials: Authorization and this API-key header (lower-case)
    /// are removed, the upstream never sees the credential.
    pub strip_credentials: Option<&'a str>,
    /// Complete header lines (each ending in CRLF) the gateway adds, such as the
    /// cache's validators when it revalidates a stale entry.
    pub extra_fields: &'a [u8],
    /// The request's `traceparent` (the trace stage), sent in place of the client's.
    pub traceparent: Option<&'a [u8]>,
    /// Path and query sent in place of the client's (the route's rewrite, see
    /// `super::outbound`); `None`: as received, less `strip_prefix`.
    pub target: Option<&'a [u8]>,
    /// The upstream's `request_headers`: the client's fields of these names are not
    /// sent (their rendered values are in `extra_fields`).
    pub replaced: &'a [(String, crate::http::template::Template)],
}

impl<'a> Outbound<'a> {
    /// What the proxy and the fan-out send a client's request to `up` with: the
    /// request's identity, trace and rewritten target (when `rewritten`, in
    /// `cx.rewritten`), the route's credential stripping, and `extra_fields` (the
    /// upstream's rendered `request_headers` and what the stages added).
    pub fn for_request(
        pl: &'a super::stack::Pipeline,
        route: &'a RouteConfig,
        peer: &'a Peer,
        cx: &'a super::context::RequestCtx,
        up: &'a crate::upstream::UpstreamState,
        extra_fields: &'a [u8],
        rewritten: bool,
    ) -> Outbound<'a> {
        Outbound {
            route,
            peer,
            request_id: &cx.request_id,
            upstream_host: &up.cfg.servers[0].label,
            identity: cx.identity.as_deref(),
            strip_credentials: route
                .auth
                .checks_credentials()
                .then(|| pl.auth.api_key_header()),
            extra_fields,
            traceparent: cx.traceparent(),
            target: rewritten.then_some(&cx.rewritten[..]),
            replaced: &up.cfg.request_headers,
        }
    }
}

/// The request head for the upstream, appended to `out`.
pub fn upstream_request(out: &mut Vec<u8>, req: &RequestHead, buf: &[u8], o: &Outbound<'_>) {
    let (route, peer, upstream_host) = (o.route, o.peer, o.upstream_host);
    out.extend_from_slice(req.method_span.get(buf));
    out.push(b' ');
    let mut target = o.target.unwrap_or(req.target.get(buf));
    if o.target.is_none() && !route.strip_prefix.is_empty() {
        if let Some(rest) = target.strip_prefix(route.strip_prefix.as_bytes()) {
            target = rest;
        }
    }
    if target.first() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = req.host.get(buf);
    if !host.is_empty() {
        header_line(out, b"Host", host);
    } else {
        // An HTTP/1.0 client may send no Host; HTTP/1.1 requires one (RFC 9112 3.2):
        // name the upstream, as nginx does with $proxy_host.
        header_line(out, b"Host", upstream_host.as_bytes());
    }

    for h in &req.headers {
        let name = h.name.get(buf);
        match h.kind {
            HeaderKind::Host
            | HeaderKind::Expect
            | HeaderKind::XRequestId
            | HeaderKind::XForwardedFor
            | HeaderKind::Identity => continue,
            HeaderKind::Authorization if o.strip_credentials.is_some() => continue,
            HeaderKind::TraceParent if o.traceparent.is_some() => continue,
            HeaderKind::XForwardedProto | HeaderKind::XForwardedHost => {
                if peer.trusted {
                    header_line(out, name, h.value.get(buf));
                }
                continue;
            }
            _ => {}
        }
        if hop_by_hop(h, buf, &req.conn_tokens) || removed(&route.request_headers, name) {
            continue;
        }
        if o.replaced
            .iter()
            .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        // Like nginx (underscores_in_headers off): "X_User_ID" would reach CGI-style
        // upstreams as HTTP_X_USER_ID, the same as the gateway's own X-User-ID.
        if memchr::memchr(b'_', name).is_some() {
            continue;
        }
        if let Some(key_header) = o.strip_credentials {
            if name.eq_ignore_ascii_case(key_header.as_bytes()) {
                continue;
            }
        }
        header_line(out, name, h.value.get(buf));
    }
    gateway_fields(out, req, buf, o);
    match req.body {
        BodyFraming::Empty => {
            // Methods whose requests normally carry a body get an explicit length, as
            // RFC 9110 8.6 recommends; others get none.
            if matches!(
                req.method,
                crate::http::Method::Post | crate::http::Method::Put | crate::http::Method::Patch
            ) {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked | BodyFraming::UntilClose => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The fields the gateway writes on every request it sends upstream for a client,
/// appended to `out`: the caller's identity, `o.extra_fields`, X-Forwarded-For (the
/// trusted chain extended, anyone else's replaced), X-Forwarded-Proto/-Host unless a
/// trusted proxy sent them, the client certificate, X-Request-ID, `traceparent` and
/// the route's `request_headers.add`. Shared by the proxied request and the parts of
/// a composed answer (`super::compose`).
pub fn gateway_fields(out: &mut Vec<u8>, req: &RequestHead, buf: &[u8], o: &Outbound<'_>) {
    let (route, peer, request_id) = (o.route, o.peer, o.request_id);
    let host = req.host.get(buf);
    if let Some(id) = o.identity {
        // Claim values come from the token: control bytes are dropped so a claim can
        // never end the header line and inject another.
        claim_line(out, b"X-User-ID", [id.user.as_str()].into_iter());
        claim_line(out, b"X-Tenant-ID", [id.tenant.as_str()].into_iter());
        if let Some(plan) = &id.plan {
            claim_line(out, b"X-User-Plan", [plan.as_str()].into_iter());
        }
        if !id.scopes.is_empty() {
            claim_line(out, b"X-User-Scopes", id.scopes.iter().map(String::as_str));
        }
    }
    out.extend_from_slice(o.extra_fields);
    // X-Forwarded-For: a trusted proxy's chain is extended (all its fields merged into
    // one list); anyone else's is replaced, so a client cannot forge its address.
    out.extend_from_slice(b"X-Forwarded-For: ");
    if peer.trusted {
        for h in req
            .headers
            .iter()
            .filter(|h| h.kind == HeaderKind::XForwardedFor)
        {
            let v = crate::http::header::trim_ows(h.value.get(buf));
            if !v.is_empty() {
                out.extend_from_slice(v);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(peer.ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    let trusted_proto = peer.trusted
        && req
            .headers
            .iter()
            .any(|h| h.kind == HeaderKind::XForwardedProto);
    if !trusted_proto {
        out.extend_from_slice(match peer.https {
            true => b"X-Forwarded-Proto: https\r\n".as_slice(),
            false => b"X-Forwarded-Proto: http\r\n".as_slice(),
        });
    }
    // The verified client certificate (mTLS); copies the client sent were dropped
    // above with the identity fields.
    if let Some(cert) = &peer.client_cert {
        header_line(out, b"X-Client-Cert-Subject", cert.subject.as_bytes());
        header_line(out, b"X-Client-Cert-SHA256", cert.sha256.as_bytes());
    }
    let trusted_host = peer.trusted
        && req
            .headers
            .iter()
            .any(|h| h.kind == HeaderKind::XForwardedHost);
    if !trusted_host && !host.is_empty() {
        header_line(out, b"X-Forwarded-Host", host);
    }
    header_line(out, b"X-Request-ID", request_id);
    if let Some(tp) = o.traceparent {
        header_line(out, b"traceparent", tp);
    }
    for (name, value) in &route.request_headers.add {
        header_line(out, name.as_bytes(), value.as_bytes());
    }
}

/// How the client receives the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 client and no length known: the body ends when we close.
    Close,
}

/// Decide the client-side framing for an upstream response.
pub fn client_framing(resp: &ResponseHead, client_minor: u8) -> ClientFraming {
    match resp.body {
        BodyFraming::Empty => ClientFraming::None,
        BodyFraming::Length(n) => ClientFraming::Length(n),
        BodyFraming::Chunked | BodyFraming::UntilClose => {
            if client_minor >= 1 {
                ClientFraming::Chunked
            } else {
                ClientFraming::Close
            }
        }
    }
}

pub(super) fn status_line(out: &mut Vec<u8>, resp: &ResponseHead, buf: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(resp.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.get(buf));
    out.extend_from_slice(b"\r\n");
}

/// An interim (1xx) response relayed to the client (RFC 9110 15.2: a proxy forwards
/// them), appended to `out`: its status line and its end-to-end fields.
pub fn interim_response(out: &mut Vec<u8>, resp: &ResponseHead, buf: &[u8]) {
    status_line(out, resp, buf);
    for h in &resp.headers {
        if !hop_by_hop(h, buf, &resp.conn_tokens) {
            header_line(out, h.name.get(buf), h.value.get(buf));
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The response head for the client, appended to `out`.
#[allow(clippy::too_many_arguments)]
pub fn client_response(
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    buf: &[u8],
    route: &RouteConfig,
    request_id: &[u8],
    framing: ClientFraming,
    keep_alive: bool,
    client_minor: u8,
    extra: &[u8],
    date: &[u8],
) {
    status_line(out, resp, buf);
    let mut dated = false;
    for h in &resp.headers {
        let name = h.name.get(buf);
        if h.kind == HeaderKind::XRequestId {
            continue;
        }
        dated |= h.kind == HeaderKind::Date;
        // An empty body keeps the upstream's Content-Length: for HEAD and 304 it
        // describes the representation, not this message.
        if h.kind == HeaderKind::ContentLength && framing == ClientFraming::None {
            if resp.status >= 200 && resp.status != 204 {
                header_line(out, name, h.value.get(buf));
            }
            continue;
        }
        if hop_by_hop(h, buf, &resp.conn_tokens) || removed(&route.response_headers, name) {
            continue;
        }
        header_line(out, name, h.value.get(buf));
    }
    for (name, value) in &route.response_headers.add {
        header_line(out, name.as_bytes(), value.as_bytes());
        dated |= name.eq_ignore_ascii_case("date");
    }
    if !dated {
        // RFC 9110 6.6.1: a recipient with a clock forwarding a response without Date
        // adds one, as nginx does. (A route that removes Date gets none.)
        header_line(out, b"Date", date);
    }
    header_line(out, b"X-Request-ID", request_id);
    out.extend_from_slice(extra);
    match framing {
        ClientFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        ClientFraming::Chunked => {
            out.extend_from_slice(b"Transfer-Encoding: ");
            if resp.extra_codings {
                // Codings the gateway does not decode keep their label; chunked is
                // re-applied last by us.
                for v in &resp.te_values {
                    for coding in list_items(v.get(buf)) {
                        if !coding.eq_ignore_ascii_case(b"chunked")
                            && !coding.eq_ignore_ascii_case(b"identity")
                        {
                            out.extend_from_slice(coding);
                            out.extend_from_slice(b", ");
                        }
                    }
                }
            }
            out.extend_from_slice(b"chunked\r\n");
        }
        ClientFraming::None | ClientFraming::Close => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
