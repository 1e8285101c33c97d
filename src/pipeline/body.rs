//! Routes that need the request body (`json_match`, `validate`, `json_body`; see
//! `config::body`): the I/O driver (`super::proxy`) calls [`choose`] when the route
//! found from the head has body rules. The body is read whole once (Content-Length or
//! chunked, de-chunked), bounded by the route's `max_body_bytes` (default 1 MiB, over
//! it 413), then the routes that match the head are tried in file order against it,
//! and the one chosen gets [`transform`]: validated against its schema, then
//! rewritten by its `json_body`. The body is forwarded with a Content-Length, as read
//! (byte for byte) or as rewritten. Other routes never come here and keep streaming.

use serde_json::{Map, Value};

use super::conn::{Downstream, READ_BUF};
use super::route::MatchInput;
use super::stack::Pipeline;
use crate::config::body::{BodyRules, JsonBody, JsonMatch, SetValue, DEFAULT_MAX_BODY};
use crate::http::io::{read_append, write_all};
use crate::http::json_field::{self, Field, FieldPath, NotJson};
use crate::http::template::TemplateCx;
use crate::http::{BodyFraming, ChunkEvent, ChunkedDecoder, RequestHead};

/// Why the request is answered here.
pub struct Refused {
    pub status: u16,
    pub message: String,
    /// The body was read to its end (the connection can be kept).
    pub body_read: bool,
}

fn refuse(status: u16, message: impl Into<String>, body_read: bool) -> Refused {
    Refused {
        status,
        message: message.into(),
        body_read,
    }
}

/// The body did not arrive within the request timeout.
pub fn timed_out() -> Refused {
    refuse(408, "the request body was not received in time", false)
}

/// The body limit of a route that reads the body whole.
pub fn max_body(route: &crate::config::RouteConfig) -> u64 {
    route.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY)
}

/// Read the body and choose the route: `first` is the first route matching the head,
/// which has body rules. Returns the route's index and the body. On return the body's
/// bytes are gone from `c.rbuf` (which keeps the head and anything pipelined after).
pub async fn choose(
    pl: &Pipeline,
    c: &mut Downstream,
    head: &RequestHead,
    first: usize,
) -> Result<(usize, Vec<u8>), Refused> {
    let limit = max_body(&pl.routes[first].cfg);
    let body = read_whole(c, head, limit).await?;
    let mut ri = first;
    // One field lookup per distinct path: routes sharing `path` share the answer.
    let mut memo: Option<(&FieldPath, Field)> = None;
    loop {
        let rules = pl.routes[ri].cfg.body.as_deref();
        let Some(m) = rules.and_then(|r| r.json_match.as_ref()) else {
            return Ok((ri, body));
        };
        let hit = match &memo {
            Some((p, f)) if *p == &m.path => matches(m, f),
            _ => {
                let f = json_field::field(&body, &m.path).map_err(|NotJson(e)| {
                    refuse(
                        400,
                        format!("the request body is not valid JSON: {e}"),
                        true,
                    )
                })?;
                let hit = matches(m, &f);
                memo = Some((&m.path, f));
                hit
            }
        };
        if hit {
            return Ok((ri, body));
        }
        let next = {
            let buf = &c.rbuf;
            let lookup = |name: &str| head.header(buf, name);
            let raw = head.path(buf);
            let path = match crate::http::path::needs_normalizing(raw) {
                true => &c.cx.path[..],
                false => raw,
            };
            pl.router.find_after(
                &MatchInput {
                    method: head.method_span.get(buf),
                    host: head.host_name(buf),
                    path,
                    header: &lookup,
                },
                ri,
            )
        };
        match next {
            Some(n) => ri = n,
            None => return Err(refuse(404, "no route matches this request", true)),
        }
    }
}

/// Values match JSON strings only, exactly.
fn matches(m: &JsonMatch, f: &Field) -> bool {
    match f {
        Field::Str(s) => m.values.iter().any(|v| v == s),
        _ => false,
    }
}

/// The body after the head, whole and de-chunked, at most `limit` bytes.
async fn read_whole(
    c: &mut Downstream,
    head: &RequestHead,
    limit: u64,
) -> Result<Vec<u8>, Refused> {
    let start = head.head_len;
    let mut continued = false;
    match head.body {
        BodyFraming::Empty | BodyFraming::UntilClose => Ok(Vec::new()),
        BodyFraming::Length(n) => {
            if n > limit {
                return Err(refuse(413, "request body too large", false));
            }
            let n = n as usize;
            while c.rbuf.len() - start < n {
                more(c, head, &mut continued).await?;
            }
            let body = c.rbuf[start..start + n].to_vec();
            c.rbuf.drain(start..start + n);
            Ok(body)
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut body = Vec::new();
            let mut at = start;
            loop {
                while at < c.rbuf.len() {
                    let (used, ev) = dec
                        .step(&c.rbuf[at..])
                        .map_err(|_| refuse(400, "invalid chunked request body", false))?;
                    let base = at;
                    at += used;
                    match ev {
                        ChunkEvent::Data(r) => {
                            if dec.body_bytes > limit {
                                return Err(refuse(413, "request body too large", false));
                            }
                            body.extend_from_slice(&c.rbuf[base + r.start..base + r.end]);
                        }
                        ChunkEvent::Done => {
                            c.rbuf.drain(start..at);
                            return Ok(body);
                        }
                        ChunkEvent::NeedMore => break,
                        _ => {}
                    }
                }
                more(c, head, &mut continued).await?;
            }
        }
    }
}

/// Read more of the body from the client (after a `100 Continue` when it waits for one).
async fn more(c: &mut Downstream, head: &RequestHead, continued: &mut bool) -> Result<(), Refused> {
    let early = || refuse(400, "the request body ended early", false);
    if head.expect_continue && !*continued {
        *continued = true;
        c.obuf.clear();
        c.obuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        write_all(&mut c.stream, &mut c.obuf)
            .await
            .map_err(|_| early())?;
    }
    match read_append(&mut c.stream, &mut c.rbuf, READ_BUF).await {
        Ok(0) | Err(_) => Err(early()),
        Ok(_) => Ok(()),
    }
}

/// The body to forward on route `rules`: validated against `schema` (compiled by this
/// worker), then rewritten by `json_body`, its `set` values rendered from `cx`.
/// `None`: forward it as read.
pub fn transform(
    rules: &BodyRules,
    schema: Option<&jsonschema::Validator>,
    body: &[u8],
    cx: &TemplateCx,
) -> Result<Option<Vec<u8>>, (u16, String)> {
    if rules.validate.is_some() && schema.is_none() {
        // Compiled at load, so never expected; but never forward unchecked.
        return Err((500, "the route's schema is not available".to_owned()));
    }
    if schema.is_none() && rules.json_body.is_none() {
        return Ok(None);
    }
    let mut doc: Value = serde_json::from_slice(body)
        .map_err(|e| (400, format!("the request body is not valid JSON: {e}")))?;
    if let Some(schema) = schema {
        if let Some(e) = schema.iter_errors(&doc).next() {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            return Err((
                400,
                format!("invalid request body at {at}: {}", short(&e.to_string())),
            ));
        }
    }
    let Some(edit) = &rules.json_body else {
        return Ok(None);
    };
    apply(edit, &mut doc, cx).map_err(|m| (400, m.to_owned()))?;
    Ok(Some(serde_json::to_vec(&doc).expect("a Value serializes")))
}

/// rename, remove, set, wrap, in that order, on the top-level object.
pub fn apply(edit: &JsonBody, doc: &mut Value, cx: &TemplateCx) -> Result<(), &'static str> {
    let Value::Object(map) = doc else {
        return Err("this route rewrites JSON objects; the request body is not one");
    };
    // Keys keep their order (serde_json's `preserve_order`): a renamed key stays where
    // it was, a removed one leaves the others in place, set and wrap keys come last.
    for (from, to) in &edit.rename {
        if from == to || !map.contains_key(from) {
            continue;
        }
        // The renamed key replaces one already named `to`, at `from`'s place.
        for (k, v) in std::mem::take(map) {
            if k == *from {
                map.insert(to.clone(), v);
            } else if k != *to {
                map.insert(k, v);
            }
        }
    }
    for key in &edit.remove {
        map.shift_remove(key);
    }
    let mut scratch = Vec::new();
    for (key, v) in &edit.set {
        map.insert(key.clone(), value(v, cx, &mut scratch));
    }
    if let Some(wrap) = &edit.wrap {
        let inner = std::mem::take(map);
        let mut outer = Map::new();
        outer.insert(wrap.key.clone(), Value::Object(inner));
        for (key, v) in &wrap.set {
            outer.insert(key.clone(), value(v, cx, &mut scratch));
        }
        *map = outer;
    }
    Ok(())
}

/// One `set` value, rendered as JSON (its type kept when it is one variable).
fn value(v: &SetValue, cx: &TemplateCx, scratch: &mut Vec<u8>) -> Value {
    scratch.clear();
    v.render_json(cx, scratch);
    // `render_json` always writes one JSON value.
    serde_json::from_slice(scratch).unwrap_or(Value::Null)
}

/// A validation message cut short: it may quote the input, which is never echoed
/// at length.
fn short(s: &str) -> String {
    const MAX: usize = 160;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
