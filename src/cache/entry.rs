//! A stored response ([`Entry`]): the status line and the stored header fields kept
//! as one block of wire bytes, ready to be written; the body ([`Body`]: in memory or
//! in a sealed memfd, shared); and the numbers the RFC 9111 age and freshness
//! calculations need. Also the conditional
//! request logic ([`conditional`], [`Entry::not_modified`]: answer 304 from a fresh
//! entry) and the refresh of an entry by a 304 from the upstream ([`Entry::freshen`]).
//!
//! Entries are immutable once built. The cache keeps each inline in its slot and hands
//! out clones: the head and the body are behind `Rc`s, so a clone costs two non-atomic
//! increments and a copy of the numbers, the body can be written while the cache goes
//! on changing, and storing an entry costs no allocation of its own.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::body::Body;
use super::key::RequestHeaders;
use super::rules::{http_date, storable, RequestFacts, ResponseParts, Storable, MAX_DELTA};
use super::{NotStorable, XCache};
use crate::config::RouteCache;
use crate::http::header::{
    list_items, parse_content_length, trim_ows, HeaderKind, HeaderPos, Span,
};

/// Bodies in memory of at most this many bytes are stored in the same allocation as
/// their entry's head. Larger ones keep their own (copying them twice on a miss, into
/// the scratch buffer and out of it, would cost more than an allocation saves; and
/// they may move into a file).
pub const WITH_HEAD_MAX: usize = 16 * 1024;

/// The body [`Entry::build`] is given: bytes it copies (with the head, when small
/// enough, so that no separate allocation is made for them), or a body already
/// stored, shared as it is when too large to live with the head.
#[derive(Debug)]
pub enum NewBody<'a> {
    Bytes(&'a [u8]),
    Stored(Body),
}

impl NewBody<'_> {
    pub fn len(&self) -> usize {
        match self {
            NewBody::Bytes(b) => b.len(),
            NewBody::Stored(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> From<&'a [u8]> for NewBody<'a> {
    fn from(b: &'a [u8]) -> NewBody<'a> {
        NewBody::Bytes(b)
    }
}

impl From<Body> for NewBody<'_> {
    fn from(b: Body) -> NewBody<'static> {
        NewBody::Stored(b)
    }
}

impl From<Rc<[u8]>> for NewBody<'_> {
    fn from(b: Rc<[u8]>) -> NewBody<'static> {
        NewBody::Stored(b.into())
    }
}

/// A cached response.
#[derive(Debug, Clone)]
pub struct Entry {
    /// "HTTP/1.1 200 OK\r\n" then one "Name: value\r\n" per stored field, its
    /// first `head_len` bytes (then the body, for a body of at most
    /// [`WITH_HEAD_MAX`]: one allocation for both).
    buf: Rc<[u8]>,
    head_len: u32,
    /// Where the fields start in `head`.
    fields_at: u32,
    status: u16,
    /// Range in `head` of the ETag value.
    etag: Option<(u32, u32)>,
    body: Body,
    /// When the response arrived (`response_time` of RFC 9111 4.2.3).
    stored_at: Instant,
    /// Its age on arrival (`corrected_initial_age`), seconds.
    initial_age: u64,
    lifetime: Duration,
    swr: Duration,
    sie: Duration,
    must_revalidate: bool,
    /// Unix seconds compared with If-Modified-Since.
    modified_at: u64,
    /// The Vary names, handed to the primary entry on insert.
    pub(crate) vary: Vec<Box<[u8]>>,
}

/// The stored head of [`Entry::build`], written to `head`: the status line and the
/// fields kept, with exactly one `Date`. Returns where the fields start and the range
/// of the `ETag` value.
fn stored_head(
    head: &mut Vec<u8>,
    st: &Storable,
    resp: &ResponseParts<'_>,
    body_len: usize,
    omit: &[String],
) -> Result<(u32, Option<(u32, u32)>), NotStorable> {
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(itoa::Buffer::new().format(resp.status).as_bytes());
    head.push(b' ');
    head.extend_from_slice(resp.reason);
    head.extend_from_slice(b"\r\n");
    let fields_at = head.len() as u32;
    let mut etag = None;
    let mut date_kept = false;
    for h in resp.headers {
        let (name, value, kind) = (h.name.get(resp.buf), h.value.get(resp.buf), h.kind);
        match kind {
            HeaderKind::ContentLength => {
                if parse_content_length(value) != Some(body_len as u64) {
                    return Err(NotStorable::Truncated);
                }
                continue;
            }
            // The upstream's X-Request-ID names the request that filled the entry:
            // each hit writes its own.
            HeaderKind::Connection
            | HeaderKind::HopByHop
            | HeaderKind::TransferEncoding
            | HeaderKind::XRequestId => continue,
            _ => {}
        }
        let is = |n: &[u8]| name.len() == n.len() && name.eq_ignore_ascii_case(n);
        if is(b"date") {
            // Exactly one Date (RFC 9110 5.3, 6.6.1): the first valid one, which
            // is the one the age was computed from, whatever else names it;
            // without one, a Date of the arrival time is added below.
            if date_kept || st.missing_date.is_some() || http_date(value).is_none() {
                continue;
            }
            date_kept = true;
        } else if is(b"age")
            || is(b"x-cache")
            || st.omit.iter().any(|o| is(o))
            || omit.iter().any(|o| is(o.as_bytes()))
        {
            continue;
        }
        let (ne, vs) = (h.name.end as usize, h.value.start as usize);
        let value_at = if vs == ne + 2 && resp.buf[ne..vs] == *b": " {
            // Received as "Name: value", the form written below: the line is
            // copied whole, name to end of value.
            let at = head.len() + (h.value.start - h.name.start) as usize;
            head.extend_from_slice(&resp.buf[h.name.start as usize..h.value.end as usize]);
            at as u32
        } else {
            head.extend_from_slice(name);
            head.extend_from_slice(b": ");
            let at = head.len() as u32;
            head.extend_from_slice(value);
            at
        };
        let value_end = head.len() as u32;
        head.extend_from_slice(b"\r\n");
        if etag.is_none() && is(b"etag") {
            etag = Some((value_at, value_end));
        }
    }
    if let Some(unix) = st.missing_date {
        let date = std::time::UNIX_EPOCH + Duration::from_secs(unix);
        head.extend_from_slice(b"Date: ");
        head.extend_from_slice(httpdate::fmt_http_date(date).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    Ok((fields_at, etag))
}

thread_local! {
    static HEAD_SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Fields a 304 does not update (RFC 9111 3.2, see [`Entry::freshen`]): they describe
/// the stored body, which the 304 does not carry. `Content-Length` and
/// `Transfer-Encoding` are never stored; they are listed so that a 304's are not
/// either. `Content-Type` is not here: the stored bytes do not depend on it (RFC 9111
/// 3.2 asks to keep such exceptions to what the stored response's integrity needs).
pub const BODY_FIELDS: [&[u8]; 6] = [
    b"content-encoding",
    b"content-range",
    b"content-length",
    b"transfer-encoding",
    b"etag",
    b"last-modified",
];

fn describes_body(name: &[u8]) -> bool {
    BODY_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f))
}

/// Fields repeated in a 304 (RFC 9110 15.4.5).
const NOT_MODIFIED_FIELDS: [&[u8]; 6] = [
    b"cache-control",
    b"content-location",
    b"date",
    b"etag",
    b"expires",
    b"vary",
];

impl Entry {
    /// Build the entry for a complete response. `st` is what [`storable`] said of this
    /// head; `requested_at` is when the request went upstream and `received_at` when
    /// the head came back (their difference counts into the age, RFC 9111 4.2.3);
    /// `omit` lists extra (lower-case) field names not to store, such as the route's
    /// `response_headers.remove`. Hop-by-hop fields, those `Connection` names,
    /// `Content-Length` and `Transfer-Encoding` (the body's length is known), `Age` and
    /// `X-Cache` and `X-Request-ID` (written afresh on every hit) are not stored. The
    /// entry has exactly one `Date`: the response's first valid one (even if
    /// `Connection` or `no-cache="..."` names it), or, without one, the time it
    /// arrived (RFC 9110 6.6.1).
    ///
    /// A body that does not have the length the head's `Content-Length` announced is
    /// refused ([`NotStorable::Truncated`]): a cut-short response is never cached.
    pub fn build<'b>(
        st: Storable,
        resp: &ResponseParts<'_>,
        body: impl Into<NewBody<'b>>,
        requested_at: Instant,
        received_at: Instant,
        omit: &[String],
    ) -> Result<Entry, NotStorable> {
        let body: NewBody<'b> = body.into();
        // Written into this thread's scratch buffer, then copied into an allocation of
        // exactly its size (no shrinking reallocation). A small body in memory goes
        // into the same allocation, after the head: one allocation to make on a miss
        // and one cold block to free at eviction, not two.
        let (buf, head_len, body, fields_at, etag) = HEAD_SCRATCH.with(|scratch| {
            let mut buf = scratch.take();
            buf.clear();
            let (fields_at, etag) = match stored_head(&mut buf, &st, resp, body.len(), omit) {
                Ok(written) => written,
                Err(e) => {
                    // Refused (a body not as long as announced): nothing is allocated.
                    scratch.set(buf);
                    return Err(e);
                }
            };
            let head_len = buf.len() as u32;
            let small = match &body {
                NewBody::Bytes(b) => Some(&b[..]),
                NewBody::Stored(b) => b.as_bytes(),
            };
            let body = match small {
                Some(b) if b.len() <= WITH_HEAD_MAX => {
                    buf.extend_from_slice(b);
                    None
                }
                _ => Some(match body {
                    NewBody::Bytes(b) => Body::from(b),
                    NewBody::Stored(b) => b,
                }),
            };
            let all: Rc<[u8]> = buf.as_slice().into();
            scratch.set(buf);
            let body = body.unwrap_or_else(|| Body::Bytes(all.clone(), head_len));
            Ok((all, head_len, body, fields_at, etag))
        })?;
        let delay = received_at
            .saturating_duration_since(requested_at)
            .as_secs();
        Ok(Entry {
            buf,
            head_len,
            fields_at,
            status: resp.status,
            etag,
            body,
            stored_at: received_at,
            initial_age: st.apparent_age.max(st.age_value.saturating_add(delay)),
            lifetime: st.lifetime,
            swr: st.stale_while_revalidate,
            sie: st.stale_if_error,
            must_revalidate: st.must_revalidate,
            modified_at: st.modified_at,
            vary: st.vary,
        })
    }

    /// A bare 200 entry (for the policy simulation).
    pub(crate) fn synthetic(body: Rc<[u8]>, lifetime: Duration, now: Instant) -> Entry {
        let body = Body::from(body);
        let head: Rc<[u8]> = (*b"HTTP/1.1 200 OK\r\n").into();
        Entry {
            fields_at: head.len() as u32,
            head_len: head.len() as u32,
            buf: head,
            status: 200,
            etag: None,
            body,
            stored_at: now,
            initial_age: 0,
            lifetime,
            swr: Duration::ZERO,
            sie: Duration::ZERO,
            must_revalidate: false,
            modified_at: 0,
            vary: Vec::new(),
        }
    }

    /// RFC 9111 4.3.4: a 304 to a conditional revalidation of this entry refreshes it.
    /// The 304's fields replace the stored fields of the same name and add those the
    /// entry lacks (RFC 9111 3.2), except:
    ///
    /// - the fields that describe the stored body ([`BODY_FIELDS`]): its
    ///   `Content-Encoding`, `Content-Range`, `Content-Length` and `Transfer-Encoding`,
    ///   which a 304 (no body) cannot speak for, and its validators `ETag` and
    ///   `Last-Modified`, which identify the stored body (they are what the next
    ///   revalidation asks with). The stored ones are kept, and none is added;
    /// - the 304's fields excepted from storage (RFC 9111 3.1): hop-by-hop fields and
    ///   those its `Connection` names.
    ///
    /// The body is shared (not copied), and the result is judged by [`storable`] again
    /// (a 304 saying `no-store` drops the entry). A 304 whose `ETag` or `Last-Modified`
    /// disagrees with the entry's is about another representation: it does not update
    /// this one ([`NotStorable::OtherRepresentation`]; see `selected_by`).
    ///
    /// nginx keeps every stored field and takes only the new lifetime from a 304; this
    /// follows the RFC instead, so a 304's new `Cache-Control`, `Expires` or other
    /// metadata reaches later hits.
    #[allow(clippy::too_many_arguments)]
    pub fn freshen(
        &self,
        req: &RequestFacts<'_>,
        route: &RouteCache,
        resp: &ResponseParts<'_>,
        unix_now: u64,
        requested_at: Instant,
        received_at: Instant,
        omit: &[String],
    ) -> Result<Entry, NotStorable> {
        let hop: Vec<&[u8]> = resp
            .fields()
            .filter(|(_, _, kind)| *kind == HeaderKind::Connection)
            .flat_map(|(_, value, _)| list_items(value))
            .collect();
        if !self.selected_by(resp, &hop) {
            return Err(NotStorable::OtherRepresentation);
        }
        // The 304's fields that may update the entry.
        let updates: Vec<(&[u8], &[u8])> = resp
            .fields()
            .filter(|&(name, _, kind)| match kind {
                HeaderKind::Connection
                | HeaderKind::HopByHop
                | HeaderKind::TransferEncoding
                | HeaderKind::ContentLength => false,
                _ => !hop.iter().any(|h| h.eq_ignore_ascii_case(name)) && !describes_body(name),
            })
            .map(|(name, value, _)| (name, value))
            .collect();
        let mut buf = Vec::with_capacity(self.head_len as usize + resp.buf.len());
        let mut headers = Vec::new();
        let mut push = |buf: &mut Vec<u8>, name: &[u8], value: &[u8]| {
            let n = buf.len();
            buf.extend_from_slice(name);
            let v = buf.len();
            buf.extend_from_slice(value);
            headers.push(HeaderPos {
                name: Span {
                    start: n as u32,
                    end: v as u32,
                },
                value: Span {
                    start: v as u32,
                    end: buf.len() as u32,
                },
                kind: HeaderKind::classify(name),
            });
        };
        // A replaced field's new lines take the places of its stored lines, one for
        // one (any more after the last), so that a 304 repeating the stored fields
        // leaves the head as it was; fields new to the entry come last. The stored
        // Date goes even when the 304 has none: the entry's age restarts from this
        // response (one is added with the time it arrived).
        let stored: Vec<(&[u8], &[u8])> = self.headers().collect();
        let mut placed = vec![false; updates.len()];
        for (at, &(name, value)) in stored.iter().enumerate() {
            let same = |n: &[u8]| n.eq_ignore_ascii_case(name);
            if !updates.iter().any(|(n, _)| same(n)) {
                if !same(b"date") {
                    push(&mut buf, name, value);
                }
                continue;
            }
            let last = !stored[at + 1..].iter().any(|(n, _)| same(n));
            for (i, &(n, v)) in updates.iter().enumerate() {
                if same(n) && !placed[i] {
                    placed[i] = true;
                    push(&mut buf, n, v);
                    if !last {
                        break;
                    }
                }
            }
        }
        for (&(name, value), placed) in updates.iter().zip(placed) {
            if !placed {
                push(&mut buf, name, value);
            }
        }
        let merged = ResponseParts {
            status: self.status,
            reason: self.reason(),
            buf: &buf,
            headers: &headers,
        };
        let st = storable(req, route, &merged, unix_now)?;
        Entry::build(
            st,
            &merged,
            self.body.clone(),
            requested_at,
            received_at,
            omit,
        )
    }

    /// RFC 9111 4.3.4: is the 304 `resp` about this entry's representation? Not when
    /// it carries an `ETag` that does not match the entry's (by strong comparison if
    /// the 304's is strong, weak if it is weak; RFC 9110 8.8.3.2), nor a
    /// `Last-Modified` other than the entry's. A validator only one side has
    /// contradicts nothing: the 304 answers the conditional request the cache made
    /// with this entry's own validator, and the entry keeps its validators anyway.
    /// (RFC 9111 4.3.4 is stricter about a 304 with no validator at all, to choose
    /// among several stored responses; here there is only the one asked about, and
    /// origins that leave validators out of a 304, against RFC 9110 15.4.5, are
    /// common. nginx takes every 304.) `hop` lists the names the 304's `Connection`
    /// makes hop-by-hop: such fields are not the response's.
    fn selected_by(&self, resp: &ResponseParts<'_>, hop: &[&[u8]]) -> bool {
        let first = |want: &[u8]| {
            resp.fields()
                .find(|&(name, ..)| {
                    name.eq_ignore_ascii_case(want)
                        && !hop.iter().any(|h| h.eq_ignore_ascii_case(name))
                })
                .map(|(_, value, _)| trim_ows(value))
        };
        if let (Some(sent), Some(ours)) = (first(b"etag"), self.etag().map(trim_ows)) {
            let same = match sent.strip_prefix(b"W/") {
                Some(_) => opaque(sent) == opaque(ours),
                None => !ours.starts_with(b"W/") && sent == ours,
            };
            if !same {
                return false;
            }
        }
        let ours = self
            .headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"last-modified"))
            .map(|(_, v)| trim_ows(v));
        if let (Some(sent), Some(ours)) = (first(b"last-modified"), ours) {
            let same = match (http_date(sent), http_date(ours)) {
                (Some(a), Some(b)) => a == b,
                _ => sent == ours,
            };
            if !same {
                return false;
            }
        }
        true
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    fn reason(&self) -> &[u8] {
        // "HTTP/1.1 200 " is 13 bytes; the line ends with CRLF.
        &self.head()[13..self.fields_at as usize - 2]
    }

    /// The body, shared: clone it to write it after the cache has moved on.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// Keep the same bytes elsewhere ([`super::Cache::rehome_body`]).
    pub(crate) fn set_body(&mut self, body: Body) {
        debug_assert_eq!(body.len(), self.body.len());
        self.body = body;
    }

    /// The status line and the stored fields, as wire bytes.
    pub fn head(&self) -> &[u8] {
        &self.buf[..self.head_len as usize]
    }

    /// The stored fields, (name, value) each.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head()[self.fields_at as usize..]
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&c| c == b':')?;
                Some((&line[..colon], trim_ows(&line[colon + 1..])))
            })
    }

    pub fn etag(&self) -> Option<&[u8]> {
        self.etag.map(|(s, e)| &self.head()[s as usize..e as usize])
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// `current_age` of RFC 9111 4.2.3.
    pub fn current_age(&self, now: Instant) -> Duration {
        Duration::from_secs(self.initial_age) + now.saturating_duration_since(self.stored_at)
    }

    /// The value of the `Age` header at `now`.
    pub fn age(&self, now: Instant) -> u64 {
        self.current_age(now).as_secs().min(MAX_DELTA)
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        self.lifetime > self.current_age(now)
    }

    /// How long ago it stopped being fresh (zero while fresh).
    pub fn staleness(&self, now: Instant) -> Duration {
        self.current_age(now).saturating_sub(self.lifetime)
    }

    /// Stale, but inside its `stale-while-revalidate` window.
    pub fn within_stale_while_revalidate(&self, now: Instant) -> bool {
        !self.is_fresh(now) && !self.swr.is_zero() && self.staleness(now) <= self.swr
    }

    /// May be served because the upstream failed: fresh, or stale inside its
    /// `stale-if-error` window. Check at the time of the failure.
    pub fn serves_on_error(&self, now: Instant) -> bool {
        self.is_fresh(now) || (!self.sie.is_zero() && self.staleness(now) <= self.sie)
    }

    /// Stale, it must not be served without revalidation (`must-revalidate`,
    /// `proxy-revalidate`, `s-maxage`).
    pub fn must_revalidate(&self) -> bool {
        self.must_revalidate
    }

    /// What the entry costs in the cache's byte budget, without its keys.
    pub(crate) fn charge(&self) -> usize {
        self.head_len as usize
            + self.body.len()
            + self.vary.iter().map(|v| v.len() + 16).sum::<usize>()
    }

    /// Write the response head for a hit on this entry: the status line, the stored
    /// fields, `Age`, `X-Cache` and `Content-Length` (not for 204). The final empty
    /// line is left to the caller, which may add its own fields first. A HEAD request
    /// gets the same head and no body.
    pub fn write_head(&self, out: &mut Vec<u8>, now: Instant, x_cache: XCache) {
        out.extend_from_slice(self.head());
        self.write_common(out, now, x_cache);
        if self.status != 204 {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Write a 304 head for a conditional request this entry satisfies (see
    /// [`Entry::not_modified`]): the fields RFC 9110 15.4.5 asks for, `Age`, `X-Cache`.
    /// The final empty line is left to the caller.
    pub fn write_not_modified(&self, out: &mut Vec<u8>, now: Instant) {
        out.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\n");
        for line in self.head()[self.fields_at as usize..].split_inclusive(|&c| c == b'\n') {
            let name = line.split(|&c| c == b':').next().unwrap_or(b"");
            if NOT_MODIFIED_FIELDS
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
            {
                out.extend_from_slice(line);
            }
        }
        self.write_common(out, now, XCache::Hit);
    }

    fn write_common(&self, out: &mut Vec<u8>, now: Instant, x_cache: XCache) {
        out.extend_from_slice(b"Age: ");
        out.extend_from_slice(itoa::Buffer::new().format(self.age(now)).as_bytes());
        out.extend_from_slice(b"\r\nX-Cache: ");
        out.extend_from_slice(x_cache.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// Should a GET/HEAD with these headers get 304 instead of this (fresh) entry?
    /// `If-None-Match` (all its lines) decides when present, else a single valid
    /// `If-Modified-Since` (RFC 9110 13.2.2).
    pub fn not_modified<H: RequestHeaders + ?Sized>(&self, req: &H) -> bool {
        let (mut inm_seen, mut matched) = (false, false);
        req.each(b"if-none-match", &mut |v| {
            inm_seen = true;
            matched |= etag_list_matches(v, self.etag());
        });
        if inm_seen {
            return matched;
        }
        let (mut lines, mut ims) = (0, None);
        req.each(b"if-modified-since", &mut |v| {
            lines += 1;
            ims = http_date(v);
        });
        lines == 1 && ims.is_some_and(|t| self.modified_at <= t)
    }
}

/// The 304 decision for one `If-None-Match` and one `If-Modified-Since` value:
/// `true` means answer 304 Not Modified. The entity-tag comparison is weak, as
/// RFC 9110 13.1.2 requires for If-None-Match; `*` matches any stored response.
pub fn conditional(
    entry: &Entry,
    if_none_match: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
) -> bool {
    match (if_none_match, if_modified_since) {
        (Some(inm), _) => etag_list_matches(inm, entry.etag()),
        (None, Some(ims)) => http_date(ims).is_some_and(|t| entry.modified_at <= t),
        (None, None) => false,
    }
}

/// Does an If-None-Match value match `etag` by weak comparison?
fn etag_list_matches(list: &[u8], etag: Option<&[u8]>) -> bool {
    let list = trim_ows(list);
    if list == b"*" {
        return true;
    }
    let Some(etag) = etag else {
        return false;
    };
    let ours = opaque(trim_ows(etag));
    let mut rest = list;
    loop {
        rest = trim_start_commas(rest);
        if rest.is_empty() {
            return false;
        }
        let tag_start = rest.strip_prefix(b"W/").unwrap_or(rest);
        let Some(b'"') = tag_start.first() else {
            return false; // malformed: stop, no match
        };
        let Some(close) = tag_start[1..].iter().position(|&c| c == b'"') else {
            return false;
        };
        if &tag_start[..close + 2] == ours {
            return true;
        }
        rest = &tag_start[close + 2..];
    }
}

/// The opaque-tag of an entity-tag: without `W/`.
fn opaque(etag: &[u8]) -> &[u8] {
    etag.strip_prefix(b"W/").unwrap_or(etag)
}

fn trim_start_commas(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b',', rest @ ..] = v {
        v = rest;
    }
    v
}
