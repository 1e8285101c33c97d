//! The compose stage: a route with `compose = [ .. ]` answers one JSON object built
//! from several upstreams' answers (`GET /api/profile/{user_id}` from the user, orders
//! and preferences services), fetched in parallel on the worker. It runs in the
//! request phase after the cache (see `stack::STACK`): auth and rate limits protect
//! it like any route, and a stored composed answer is served by the cache stage
//! without any part being fetched.
//!
//! Each part is the gateway's own `GET <path>` (its `path` template rendered with the
//! request's values, percent-encoded), sent through the upstream client
//! (`crate::upstream::client::fetch`: the per-worker pool, a dead pooled connection
//! replaced once) to a server its upstream's balancer picks among those its breaker
//! and health checks allow, with the upstream's `request_headers`, `retries` (the
//! request is idempotent and in memory) and `response_timeout`. What it carries:
//! Host (the client's, as proxied requests), `Accept: application/json`, the caller's
//! identity fields, X-Forwarded-For/-Proto/-Host, X-Request-ID, `traceparent` and the
//! route's `request_headers.add` (`forward::gateway_fields`, the proxy's own); none
//! of the client's other fields, and never its credentials.
//!
//! All parts run concurrently in this one task (their futures polled together, no
//! spawned task and no thread), bounded together by the route's timeout (`timeout_ms`,
//! else `server.limits.request_timeout_s`) counted from the request's arrival. A part
//! fails on a connect or I/O error, a timeout, a status outside 2xx, a body over
//! [`PART_MAX_BYTES`], a body that is not JSON, a `pick` field that is missing, or a
//! `limit` on a value that is not an array. A failed optional part takes its
//! `default`; a failed required part ends the request at once: the parts still
//! running are dropped (their connections closed, never pooled half-read) and the
//! client gets 502 naming the part, or 504 when the part timed out (as nginx and
//! Envoy answer an upstream timeout). The cache's `upstream_failed` phase is asked
//! first, as for a proxied failure (a composed answer carries no `stale-if-error` of
//! its own, so in practice it has none to give).
//!
//! The answer is `200` with `Content-Type: application/json`, the parts in their
//! configured order (`answer::assemble`, no JSON tree built). It goes through the
//! response phases as an upstream's would (`stack::body_start`: the cache stores it
//! for the route's `cache.ttl_s`, the answer having no Cache-Control of its own), and
//! to the client with the route's `response_headers` edits, compressed on a route
//! with `compress`. A HEAD is answered the same, without the body. Other methods are refused with 405 and `Allow: GET, HEAD`.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::SystemTime;

use monoio::time::Instant;

use super::auth::Answer;
use super::context::RequestCtx;
use super::error::ProxyError;
use super::forward::{self, ClientFraming, Outbound};
use super::outbound;
use super::stack::{self, Flow, Pipeline, RequestIn};
use crate::config::compose::{ComposePart, PART_MAX_BYTES};
use crate::config::{PathMatch, RouteTarget};
use crate::http::template::TemplateCx;
use crate::http::{HeaderKind, Method, ResponseHead};
use crate::pipeline::local::Local;
use crate::upstream::client::{self, HeadLimits, UpstreamError};

mod answer;
pub use answer::{answer_len, assemble, select, NoValue, PartValue, Selected};

/// Why a part failed.
#[derive(Debug)]
enum PartError {
    Upstream(ProxyError),
    /// The route's timeout passed before the part's answer was whole.
    TimedOut,
    Status(u16),
    TooLarge,
    Value(NoValue),
}

impl PartError {
    /// The answer's status when a required part failed so.
    fn status(&self) -> u16 {
        match self {
            PartError::TimedOut => 504,
            PartError::Upstream(e) if e.status() == Some(504) => 504,
            _ => 502,
        }
    }
}

impl std::fmt::Display for PartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartError::Upstream(e) => f.write_str(e.public_message()),
            PartError::TimedOut => f.write_str("no answer within the route's timeout"),
            PartError::Status(s) => write!(f, "the upstream answered {s}"),
            PartError::TooLarge => write!(f, "the answer is larger than {PART_MAX_BYTES} bytes"),
            PartError::Value(v) => write!(f, "{v}"),
        }
    }
}

/// A part's body and where its value is in it.
type Fetched = Result<(Vec<u8>, Selected), PartError>;

/// The request phase: on a compose route, the whole answer in `out`
/// ([`Flow::Served`]) or the failure ([`Flow::Reject`]); elsewhere [`Flow::Next`].
pub async fn request(r: &RequestIn<'_>, cx: &mut RequestCtx, out: &mut Vec<u8>) -> Flow {
    let RouteTarget::Compose(spec) = &r.route.cfg.target else {
        return Flow::Next;
    };
    let head_only = match r.head.method {
        Method::Get => false,
        Method::Head => true,
        _ => {
            return Flow::Reject(Answer {
                status: 405,
                message: "this route composes its answer: GET or HEAD".to_owned(),
                headers: b"Allow: GET, HEAD\r\n".to_vec(),
            })
        }
    };
    let route = &r.route.cfg;
    let deadline = cx.started
        + route
            .timeout
            .unwrap_or(r.w.cfg.server.limits.request_timeout);
    let requests: Vec<_> = spec
        .parts
        .iter()
        .map(|part| part_request(r, cx, part))
        .collect();
    let fetches = spec
        .parts
        .iter()
        .zip(requests)
        .map(|(part, (req, hash_key))| fetch_part(r.w, r.pl, part, req, hash_key, deadline))
        .collect();
    let results = join_until(fetches, |i, got: &Fetched| {
        spec.parts[i].required && got.is_err()
    })
    .await;
    let debug = r.w.cfg.log.level >= crate::config::LogLevel::Debug;
    let results = match results {
        Ok(results) => results,
        Err((i, got)) => {
            let e = got.err().unwrap_or(PartError::TimedOut);
            let name = &spec.parts[i].name;
            if debug {
                eprintln!(
                    "ringgate: request {}: required part {name} failed: {e:?}",
                    String::from_utf8_lossy(&cx.request_id)
                );
            }
            // A stale answer within its stale-if-error window stands in (the cache).
            if stack::upstream_failed(cx, out).is_some() {
                return Flow::Served;
            }
            return Flow::Reject(Answer {
                status: e.status(),
                message: format!("required part {name} failed: {e}"),
                headers: Vec::new(),
            });
        }
    };
    let values: Vec<PartValue<'_>> = results
        .iter()
        .zip(&spec.parts)
        .map(|(got, part)| match got {
            Ok((body, sel)) => Some((&body[..], sel)),
            Err(e) => {
                if debug {
                    eprintln!(
                        "ringgate: request {}: part {} takes its default: {e:?}",
                        String::from_utf8_lossy(&cx.request_id),
                        part.name
                    );
                }
                None
            }
        })
        .collect();
    // The answer as an upstream's response (head, then body), for the response
    // phases and the client's head.
    let len = answer_len(&spec.parts, &values);
    let mut resp_buf = Vec::with_capacity(96 + len);
    resp_buf.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ",
    );
    resp_buf.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    resp_buf.extend_from_slice(b"\r\n\r\n");
    let head_len = resp_buf.len();
    assemble(&mut resp_buf, &spec.parts, &values);
    drop(values);
    drop(results);
    let mut resp = ResponseHead::default();
    if !matches!(resp.parse(&resp_buf, head_len, 8, false), Ok(true)) {
        // The head above always parses.
        return Flow::Reject(Answer {
            status: 500,
            message: "the composed answer could not be written".to_owned(),
            headers: Vec::new(),
        });
    }
    // Stages that keep responses see it as they would an upstream's (the cache
    // stores it).
    stack::body_start(
        r.w,
        cx,
        route,
        &resp,
        &resp_buf,
        Some(head_len..resp_buf.len()),
        None,
        &mut None,
    );
    out.clear();
    let date = *r.w.date.borrow();
    forward::client_response(
        out,
        &resp,
        &resp_buf,
        route,
        &cx.request_id,
        ClientFraming::Length(len as u64),
        r.keep_if_answered,
        r.head.version_minor,
        &cx.extra,
        &date,
    );
    if !head_only {
        out.extend_from_slice(&resp_buf[head_len..]);
        // The driver compresses the answers the cache stage gives (`proxy::
        // serve_answer`), a composed one on a cached route among them; on a route
        // without cache this stage does, as the relay would an upstream's.
        if let (Some(cfg), None) = (&route.compress, cx.cache.outcome) {
            super::compress::compress_answer(cfg, cx.compress, out, None);
        }
    }
    Flow::Served
}

/// The request head for `part` (its rendered path, the gateway's fields) and the
/// balancer's hash key for its upstream, if it hashes on a header.
fn part_request(
    r: &RequestIn<'_>,
    cx: &RequestCtx,
    part: &ComposePart,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let up = &r.pl.upstreams[part.upstream];
    let route = &r.route.cfg;
    let identity = cx.identity.as_deref();
    let default_plan = r.pl.cfg.rate_limit.default_plan.get_ref();
    let path = outbound::matched_path(r.head, r.buf, &cx.path);
    let tcx = TemplateCx {
        path,
        path_template: match &route.path {
            PathMatch::Template(t) => Some(t),
            _ => None,
        },
        request_id: &cx.request_id,
        client_ip: Some(r.peer.addr),
        now_ms: match part.path.is_constant() {
            true => 0,
            false => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        },
        user: identity.map(|i| i.user.as_str()),
        tenant: identity.map(|i| i.tenant.as_str()),
        plan: outbound::template_plan(route, identity, default_plan),
        ..TemplateCx::new(r.head, r.buf)
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"GET ");
    part.path.render_target(&tcx, &mut out, escape_value);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    let host = r.head.host.get(r.buf);
    let label = &up.cfg.servers[0].label;
    out.extend_from_slice(match host.is_empty() {
        true => label.as_bytes(),
        false => host,
    });
    out.extend_from_slice(b"\r\n");
    let replaced = |name: &str| {
        up.cfg
            .request_headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !replaced("accept") {
        out.extend_from_slice(b"Accept: application/json\r\n");
    }
    // A trusted proxy's X-Forwarded-Proto/-Host go on, as the proxy copies them
    // (`gateway_fields` then adds none of its own).
    if r.peer.trusted {
        for h in &r.head.headers {
            if matches!(
                h.kind,
                HeaderKind::XForwardedProto | HeaderKind::XForwardedHost
            ) {
                out.extend_from_slice(h.name.get(r.buf));
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.value.get(r.buf));
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    let mut fields = Vec::new();
    outbound::upstream_headers(
        &up.cfg.request_headers,
        &outbound::Facts {
            head: r.head,
            buf: r.buf,
            path,
            route,
            request_id: &cx.request_id,
            client_ip: r.peer.addr,
            identity,
            default_plan,
        },
        &mut fields,
    );
    forward::gateway_fields(
        &mut out,
        r.head,
        r.buf,
        &Outbound {
            route,
            peer: r.peer,
            request_id: &cx.request_id,
            upstream_host: label,
            identity,
            strip_credentials: None,
            extra_fields: &fields,
            traceparent: cx.traceparent(),
            target: None,
            replaced: &up.cfg.request_headers,
        },
    );
    out.extend_from_slice(b"\r\n");
    let hash_key = up
        .balancer
        .hash_header()
        .and_then(|h| r.head.header(r.buf, h))
        .map(<[u8]>::to_vec);
    (out, hash_key)
}

/// A value in a part's path, percent-encoded so that it stays one value: every byte
/// but the unreserved ones (RFC 3986 2.3) is encoded, except a `%XX` already there
/// (values keep their encoding as received); a value that is all dots (`.`, `..`) is
/// encoded whole, so it can never be a dot segment.
pub fn escape_value(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if !v.is_empty() && v.len() <= 2 && v.iter().all(|&b| b == b'.') {
        for _ in v {
            out.extend_from_slice(b"%2E");
        }
        return;
    }
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        let triplet = b == b'%'
            && v.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && v.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if triplet {
            out.extend_from_slice(&v[i..i + 3]);
            i += 3;
            continue;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
        i += 1;
    }
}

/// Fetch one part: a server of its upstream (another one, up to the upstream's
/// `retries`, after a failure before any answer), the whole answer (at most
/// [`PART_MAX_BYTES`]) by `deadline`, then its value.
async fn fetch_part(
    w: &Local,
    pl: &Rc<Pipeline>,
    part: &ComposePart,
    mut request: Vec<u8>,
    hash_key: Option<Vec<u8>>,
    deadline: Instant,
) -> Fetched {
    let ui = part.upstream;
    let up = &*pl.upstreams[ui];
    let limits = HeadLimits::from(&w.cfg.server.limits);
    let mut tried: Vec<usize> = Vec::new();
    let mut attempts = up.cfg.retries + 1;
    let mut last = None;
    loop {
        let now = Instant::now();
        let si = up.balancer.pick(
            &|i| !tried.contains(&i) && up.available(i, now),
            &|i| up.servers[i].in_flight.get(),
            hash_key.as_deref(),
        );
        let Some(si) = si else {
            return Err(last.unwrap_or(PartError::Upstream(ProxyError::NoServer)));
        };
        tried.push(si);
        let slot = w.metrics.server_slot(pl, ui, si);
        let mut resp = ResponseHead::default();
        let got = {
            let _in_flight = crate::telemetry::Held::new(&up.servers[si].in_flight);
            monoio::time::timeout_at(
                deadline,
                client::fetch(
                    up,
                    si,
                    &mut request,
                    &mut resp,
                    limits,
                    PART_MAX_BYTES,
                    up.cfg.response_timeout,
                ),
            )
            .await
        };
        let done = Instant::now();
        match got {
            // The connection under way was dropped with the fetch: closed, not pooled.
            Err(_) => {
                w.metrics.attempt_failed(slot, &ProxyError::RequestTimeout);
                return Err(PartError::TimedOut);
            }
            Ok(Ok(whole)) => {
                up.record(si, resp.status < 500, done);
                let us = done.saturating_duration_since(now).as_micros() as u64;
                w.metrics.attempt_done(slot, us);
                if !(200..300).contains(&resp.status) {
                    return Err(PartError::Status(resp.status));
                }
                let sel = select(&whole.body, part.pick.as_ref(), part.limit)
                    .map_err(PartError::Value)?;
                return Ok((whole.body, sel));
            }
            Ok(Err(e)) => {
                let too_large = matches!(e, UpstreamError::TooLarge);
                let e = ProxyError::from(e);
                w.metrics.attempt_failed(slot, &e);
                let failure = e.is_upstream_failure();
                if failure {
                    up.record(si, false, done);
                    crate::telemetry::inc(&w.counters.upstream_errors);
                }
                attempts -= 1;
                if too_large {
                    return Err(PartError::TooLarge);
                }
                if attempts == 0 || !failure {
                    return Err(PartError::Upstream(e));
                }
                crate::telemetry::inc(&w.counters.retries);
                last = Some(PartError::Upstream(e));
            }
        }
    }
}

/// Run `futs` concurrently in the calling task until all are done (their outputs, in
/// order), or until one's output makes `stop` true: that one (its index and output),
/// and the others are dropped unfinished.
async fn join_until<F: Future>(
    futs: Vec<F>,
    stop: impl Fn(usize, &F::Output) -> bool,
) -> Result<Vec<F::Output>, (usize, F::Output)> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let stopped = std::future::poll_fn(|task| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if done[i].is_some() {
                continue;
            }
            match f.as_mut().poll(task) {
                Poll::Ready(out) if stop(i, &out) => return Poll::Ready(Some((i, out))),
                Poll::Ready(out) => done[i] = Some(out),
                Poll::Pending => pending = true,
            }
        }
        match pending {
            true => Poll::Pending,
            false => Poll::Ready(None),
        }
    })
    .await;
    match stopped {
        Some(stop) => Err(stop),
        None => Ok(done.into_iter().flatten().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(v: &str) -> String {
        let mut out = Vec::new();
        escape_value(&mut out, v.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_percent_encoded_to_stay_one_value() {
        assert_eq!(esc("u-42_a.b~"), "u-42_a.b~");
        assert_eq!(esc("a b/c?d#e&f"), "a%20b%2Fc%3Fd%23e%26f");
        assert_eq!(esc("%41%zz"), "%41%25zz");
        assert_eq!(esc(".."), "%2E%2E");
        assert_eq!(esc("."), "%2E");
        assert_eq!(esc("..."), "...");
        assert_eq!(esc("é"), "%C3%A9");
    }

    #[test]
    fn join_stops_at_the_first_stopping_output() {
        let run = |stop_at: Option<usize>| {
            let futs: Vec<_> = (0..3usize).map(|i| async move { i }).collect();
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .build()
                .unwrap();
            rt.block_on(join_until(futs, |i, _| Some(i) == stop_at))
        };
        assert_eq!(run(None), Ok(vec![0, 1, 2]));
        assert_eq!(run(Some(1)), Err((1, 1)));
    }
}
