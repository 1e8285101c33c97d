//! RFC 9111 for a shared cache, as pure functions over header bytes: what a request's
//! `Cache-Control` asks for ([`ReqDirectives`]), whether a response may be stored and
//! for how long ([`storable`] -> [`Storable`] or [`NotStorable`]), and which requests
//! invalidate stored entries ([`invalidates`]). The pipeline calls [`storable`] when the
//! upstream's response head arrives, before any of the body is read, so it knows whether
//! to keep a copy of the body while streaming it on.

use std::time::Duration;

use super::key::RequestHeaders;
use super::NotStorable;
use crate::config::RouteCache;
use crate::http::header::{list_items, trim_ows, HeaderKind, HeaderPos};

/// The largest delta-seconds a cache must handle; larger values mean "this many"
/// (RFC 9111 1.2.2). Also the cap for the `Age` header.
pub const MAX_DELTA: u64 = 2_147_483_648;

/// Statuses a response may be stored with when it carries no explicit freshness (the
/// route's `ttl_s` is then its lifetime): the heuristically cacheable ones (RFC 9110
/// 15.1), without 206 (no range support).
pub const CACHEABLE_STATUSES: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Every status a response may be stored with, given explicit freshness (`s-maxage`,
/// `max-age` or `Expires`; RFC 9111 3): the final statuses RFC 9110 defines, without
/// 206 (no range support), 304 (it updates an entry, it is never one) and the unused
/// 305 and 306. A status the cache does not know is not stored (RFC 7231 6 forbade it;
/// RFC 9111 3 leaves it to `must-understand`, and not storing is always allowed).
pub const STORABLE_STATUSES: [u16; 39] = [
    200, 201, 202, 203, 204, 205, // 2xx
    300, 301, 302, 303, 307, 308, // 3xx
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
    422, 426, // 4xx
    500, 501, 502, 503, 504, 505, // 5xx
];

/// What the request's `Cache-Control` (or, without one, `Pragma: no-cache`) asks of
/// the cache (RFC 9111 5.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReqDirectives {
    /// Do not answer from a stored response without revalidating it first.
    pub no_cache: bool,
    /// Neither answer from the cache nor store the response (X-Cache: BYPASS).
    pub no_store: bool,
    /// The client does not want a response older than this (seconds).
    pub max_age: Option<u64>,
    /// The client accepts a response stale by up to this (seconds; bare `max-stale`
    /// is [`MAX_DELTA`]).
    pub max_stale: Option<u64>,
    /// The client wants a response that stays fresh at least this much longer.
    pub min_fresh: Option<u64>,
    /// Answer from the cache or with 504, never from the upstream.
    pub only_if_cached: bool,
}

impl ReqDirectives {
    /// Parse one or more `Cache-Control` field values (call once per field line; the
    /// directives accumulate).
    pub fn add(&mut self, cache_control: &[u8]) {
        for (name, value) in directives(cache_control) {
            let delta = || value.and_then(parse_delta);
            if name.eq_ignore_ascii_case(b"no-cache") {
                self.no_cache = true;
            } else if name.eq_ignore_ascii_case(b"no-store") {
                self.no_store = true;
            } else if name.eq_ignore_ascii_case(b"max-age") {
                self.max_age = delta().or(self.max_age);
            } else if name.eq_ignore_ascii_case(b"max-stale") {
                self.max_stale = match value {
                    None => Some(MAX_DELTA),
                    Some(_) => delta().or(self.max_stale),
                };
            } else if name.eq_ignore_ascii_case(b"min-fresh") {
                self.min_fresh = delta().or(self.min_fresh);
            } else if name.eq_ignore_ascii_case(b"only-if-cached") {
                self.only_if_cached = true;
            }
        }
    }

    /// Parse a single `Cache-Control` value.
    pub fn parse(cache_control: &[u8]) -> ReqDirectives {
        let mut d = ReqDirectives::default();
        d.add(cache_control);
        d
    }

    /// All `Cache-Control` lines of a request; without any, `Pragma: no-cache` counts as
    /// `no-cache` (RFC 9111 5.4 keeps that for HTTP/1.0 clients).
    pub fn from_request<H: RequestHeaders + ?Sized>(req: &H) -> ReqDirectives {
        let mut d = ReqDirectives::default();
        let mut seen = false;
        req.each(b"cache-control", &mut |v| {
            seen = true;
            d.add(v);
        });
        if !seen {
            req.each(b"pragma", &mut |v| {
                if list_items(v).any(|t| t.eq_ignore_ascii_case(b"no-cache")) {
                    d.no_cache = true;
                }
            });
        }
        d
    }
}

/// What the pipeline knows about the request when the response arrives.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The method sent upstream. Only a GET response is stored; HEAD is answered from
    /// a GET entry, and a HEAD miss is not stored (its response has no body) unless the
    /// pipeline sends GET upstream instead (nginx's `proxy_cache_convert_head`).
    pub method: &'a [u8],
    pub directives: ReqDirectives,
    /// The request carried credentials: `Authorization` or the API-key header.
    pub credentials: bool,
    /// The key includes the caller's verified tenant ([`super::Audience::Tenant`]).
    pub tenant_keyed: bool,
}

/// A parsed response head: the status and its headers as spans into `buf`, as
/// [`crate::http::ResponseHead`] keeps them.
#[derive(Debug, Clone, Copy)]
pub struct ResponseParts<'a> {
    pub status: u16,
    pub reason: &'a [u8],
    pub buf: &'a [u8],
    pub headers: &'a [HeaderPos],
}

impl ResponseParts<'_> {
    /// Each (name, value) of the head.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8], HeaderKind)> + '_ {
        self.headers
            .iter()
            .map(|h| (h.name.get(self.buf), h.value.get(self.buf), h.kind))
    }
}

/// A response that may be stored, and the numbers its entry is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storable {
    /// How long the response is fresh for, from its generation (RFC 9111 4.2.1):
    /// `s-maxage`, else `max-age`, else `Expires - Date`, else the route's `ttl_s`
    /// (heuristically cacheable statuses only; without `ttl_s`, not stored).
    pub lifetime: Duration,
    /// `stale-while-revalidate` (RFC 5861): once stale, how long it may still be served
    /// while one request refreshes it. Zero under `must-revalidate`,
    /// `proxy-revalidate` or `s-maxage` (which implies `proxy-revalidate`).
    pub stale_while_revalidate: Duration,
    /// `stale-if-error` (RFC 5861): once stale, how long it may still be served when the
    /// upstream fails. Zero under the same directives.
    pub stale_if_error: Duration,
    /// Stale entries must not be served at all (`must-revalidate` and friends), not
    /// even to a client that sends `max-stale`.
    pub must_revalidate: bool,
    /// The upstream's `Age`, seconds (0 if absent or invalid).
    pub age_value: u64,
    /// `now - Date` when the head arrived, seconds (0 without a valid Date).
    pub apparent_age: u64,
    /// Unix seconds of `Last-Modified`, else of `Date`, else of arrival: what
    /// `If-Modified-Since` is compared with (RFC 9111 4.3.2).
    pub modified_at: u64,
    /// The response had no valid `Date`: the entry gets one with this time (unix
    /// seconds, when the head arrived), as RFC 9110 6.6.1 asks of a cache.
    pub missing_date: Option<u64>,
    /// Lower-case names of the request headers the entry varies on: the response's
    /// `Vary` and the route's `vary`, sorted, without duplicates.
    pub vary: Vec<Box<[u8]>>,
    /// Lower-case names of response fields not to store: those named by `Connection`
    /// and by a qualified `no-cache="..."` or `private="..."`.
    pub omit: Vec<Box<[u8]>>,
}

/// Is `method` one the route caches (GET and HEAD share entries)?
pub fn cacheable_method(route: &RouteCache, method: &[u8]) -> bool {
    (method == b"GET" || method == b"HEAD") && route.methods.iter().any(|m| m.as_bytes() == method)
}

/// RFC 9111 4.4: a non-error response (2xx, 3xx) to an unsafe method invalidates the
/// stored responses for its target URI.
pub fn invalidates(method: &[u8], status: u16) -> bool {
    let safe = matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE");
    !safe && (200..400).contains(&status)
}

/// May this response be stored by a shared cache, and for how long? `unix_now` is the
/// worker's wall clock (seconds), for `Date`, `Expires` and the apparent age.
///
/// Any status of [`STORABLE_STATUSES`] may be stored when the response carries
/// explicit freshness (`s-maxage`, `max-age` or `Expires`, even an invalid one, which
/// makes it stale at once; RFC 9111 3). Without it, only [`CACHEABLE_STATUSES`] are
/// stored, fresh for the route's `ttl_s`; with no `ttl_s` ([`RouteCache::ttl`] is
/// `None`), nothing is ([`NotStorable::NoFreshness`]): there is no heuristic
/// freshness from `Last-Modified`.
pub fn storable(
    req: &RequestFacts<'_>,
    route: &RouteCache,
    resp: &ResponseParts<'_>,
    unix_now: u64,
) -> Result<Storable, NotStorable> {
    if req.method != b"GET" || !route.methods.iter().any(|m| m == "GET" || m == "HEAD") {
        return Err(NotStorable::Method);
    }
    if req.directives.no_store {
        return Err(NotStorable::RequestNoStore);
    }
    // 1xx are not final, 206 needs range support, a 304 only updates an entry.
    if !STORABLE_STATUSES.contains(&resp.status) {
        return Err(NotStorable::Status(resp.status));
    }
    let mut cc = RespDirectives::default();
    let mut vary: Vec<Box<[u8]>> = route.vary.iter().map(|v| v.as_bytes().into()).collect();
    let mut omit: Vec<Box<[u8]>> = Vec::new();
    let (mut expires, mut date, mut last_modified) = (Field::Absent, None, None);
    let mut age_value = None;
    for (name, value, kind) in resp.fields() {
        match kind {
            // The gateway relays transfer codings other than chunked without decoding
            // them: such a body is not the representation, so it cannot be stored.
            HeaderKind::TransferEncoding => {
                if list_items(value).any(|c| !c.eq_ignore_ascii_case(b"chunked")) {
                    return Err(NotStorable::TransferCoding);
                }
                continue;
            }
            HeaderKind::Connection => {
                omit.extend(
                    list_items(value)
                        .filter(|t| {
                            !t.eq_ignore_ascii_case(b"close")
                                && !t.eq_ignore_ascii_case(b"keep-alive")
                        })
                        .map(lower),
                );
                continue;
            }
            HeaderKind::Other | HeaderKind::Date => {}
            _ => continue,
        }
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        match name.len() {
            3 if is(b"age") => age_value = age_value.or(parse_delta(trim_ows(value))),
            4 if is(b"vary") => {
                for item in list_items(value) {
                    if item == b"*" {
                        return Err(NotStorable::VaryStar);
                    }
                    vary.push(lower(item));
                }
            }
            4 if is(b"date") => date = date.or(http_date(value)),
            7 if is(b"expires") => {
                expires = match expires {
                    Field::Absent => http_date(value).map_or(Field::Invalid, Field::Secs),
                    _ => Field::Invalid,
                }
            }
            10 if is(b"set-cookie") => return Err(NotStorable::SetCookie),
            13 if is(b"cache-control") => cc.add(value, &mut omit),
            13 if is(b"last-modified") => last_modified = last_modified.or(http_date(value)),
            _ => {}
        }
    }
    if cc.no_store {
        return Err(NotStorable::NoStore);
    }
    if cc.private {
        return Err(NotStorable::Private);
    }
    if cc.no_cache {
        return Err(NotStorable::NoCache);
    }
    // RFC 9111 3.5: a response to a request with credentials is only shared between
    // callers when it says so. A key that holds the caller's tenant is not shared
    // beyond that tenant (the rule), so it needs no such permission.
    let s_maxage = cc.s_maxage != Field::Absent;
    if req.credentials && !req.tenant_keyed && !(cc.public || s_maxage || cc.must_revalidate) {
        return Err(NotStorable::Authorization);
    }
    // An invalid or repeated-and-conflicting max-age / s-maxage / Expires makes the
    // response stale (RFC 9111 4.2.1, 5.3), but it is explicit freshness all the same.
    // Without any, only a heuristically cacheable status may be stored, and only on a
    // route with `ttl_s`, which stands in for a heuristic: none is made up from
    // Last-Modified (RFC 9111 4.2.2 allows one; nginx does not either).
    let lifetime = match (cc.s_maxage, cc.max_age, expires) {
        (Field::Secs(s), ..) | (Field::Absent, Field::Secs(s), _) => s,
        (Field::Invalid, ..) | (Field::Absent, Field::Invalid, _) => 0,
        (Field::Absent, Field::Absent, Field::Secs(e)) => {
            e.saturating_sub(date.unwrap_or(unix_now))
        }
        (Field::Absent, Field::Absent, Field::Invalid) => 0,
        (Field::Absent, Field::Absent, Field::Absent) => {
            if !CACHEABLE_STATUSES.contains(&resp.status) {
                return Err(NotStorable::Status(resp.status));
            }
            match route.ttl {
                Some(ttl) => ttl.as_secs(),
                None => return Err(NotStorable::NoFreshness),
            }
        }
    };
    let must_revalidate = cc.must_revalidate || cc.proxy_revalidate || s_maxage;
    let window = |f: Field| match f {
        Field::Secs(s) if !must_revalidate => Duration::from_secs(s),
        _ => Duration::ZERO,
    };
    let (swr, sie) = (window(cc.swr), window(cc.sie));
    if lifetime == 0 && swr.is_zero() && sie.is_zero() {
        return Err(NotStorable::NoFreshness);
    }
    vary.sort_unstable();
    vary.dedup();
    omit.sort_unstable();
    omit.dedup();
    Ok(Storable {
        lifetime: Duration::from_secs(lifetime.min(MAX_DELTA)),
        stale_while_revalidate: swr,
        stale_if_error: sie,
        must_revalidate,
        age_value: age_value.unwrap_or(0),
        apparent_age: date.map_or(0, |d| unix_now.saturating_sub(d)),
        modified_at: last_modified.or(date).unwrap_or(unix_now),
        missing_date: date.is_none().then_some(unix_now),
        vary,
        omit,
    })
}

/// A delta-seconds or date directive/field: absent, valid, or present but unusable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Field {
    #[default]
    Absent,
    Secs(u64),
    Invalid,
}

impl Field {
    /// Record one occurrence: a repeat with a different value is a conflict.
    fn set(&mut self, value: Option<&[u8]>) {
        *self = match (*self, value.and_then(parse_delta)) {
            (Field::Absent, Some(n)) => Field::Secs(n),
            (Field::Secs(a), Some(b)) if a == b => Field::Secs(a),
            _ => Field::Invalid,
        };
    }
}

/// The response directives a shared cache acts on (RFC 9111 5.2.2, RFC 5861).
#[derive(Debug, Default)]
struct RespDirectives {
    no_store: bool,
    /// Unqualified `no-cache` (the qualified form only omits fields).
    no_cache: bool,
    /// Unqualified `private`.
    private: bool,
    public: bool,
    must_revalidate: bool,
    proxy_revalidate: bool,
    max_age: Field,
    s_maxage: Field,
    swr: Field,
    sie: Field,
}

impl RespDirectives {
    fn add(&mut self, value: &[u8], omit: &mut Vec<Box<[u8]>>) {
        for (name, arg) in directives(value) {
            let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
            if is(b"no-store") {
                self.no_store = true;
            } else if is(b"no-cache") || is(b"private") {
                match arg {
                    // `no-cache="Set-Cookie"`: the rest may be stored (RFC 9111
                    // 5.2.2.4, 5.2.2.7).
                    Some(fields) => omit.extend(list_items(fields).map(lower)),
                    None if is(b"private") => self.private = true,
                    None => self.no_cache = true,
                }
            } else if is(b"public") {
                self.public = true;
            } else if is(b"must-revalidate") {
                self.must_revalidate = true;
            } else if is(b"proxy-revalidate") {
                self.proxy_revalidate = true;
            } else if is(b"max-age") {
                self.max_age.set(arg);
            } else if is(b"s-maxage") {
                self.s_maxage.set(arg);
            } else if is(b"stale-while-revalidate") {
                self.swr.set(arg);
            } else if is(b"stale-if-error") {
                self.sie.set(arg);
            }
        }
    }
}

fn lower(v: &[u8]) -> Box<[u8]> {
    v.to_ascii_lowercase().into_boxed_slice()
}

/// An HTTP-date as unix seconds (dates before 1970 count as 0).
///
/// Parsing one costs ~100 ns (`httpdate` checks the weekday by converting the date
/// back), and a stored response has two or three of them, which change once a second
/// (`Date`) or hardly ever (`Last-Modified`, `Expires`): the last few values parsed on
/// this thread are remembered.
pub(crate) fn http_date(v: &[u8]) -> Option<u64> {
    let v = trim_ows(v);
    DATES.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some(hit) = memo.get(v) {
            return hit;
        }
        let parsed = parse_http_date(v);
        memo.put(v, parsed);
        parsed
    })
}

fn parse_http_date(v: &[u8]) -> Option<u64> {
    let t = httpdate::parse_http_date(std::str::from_utf8(v).ok()?).ok()?;
    Some(
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

thread_local! {
    static DATES: std::cell::RefCell<DateMemo> = const {
        std::cell::RefCell::new(DateMemo {
            slots: [([0; DATE_MAX], 0, None); DATE_SLOTS],
            next: 0,
        })
    };
}

/// Longest date remembered: an IMF-fixdate is 29 bytes, the obsolete forms fewer.
const DATE_MAX: usize = 32;
const DATE_SLOTS: usize = 4;

/// The last [`DATE_SLOTS`] dates parsed, replaced in turn.
struct DateMemo {
    /// Bytes, length (0: empty slot), result.
    slots: [([u8; DATE_MAX], u8, Option<u64>); DATE_SLOTS],
    next: usize,
}

impl DateMemo {
    fn get(&self, v: &[u8]) -> Option<Option<u64>> {
        self.slots
            .iter()
            .find(|(b, n, _)| *n as usize == v.len() && !v.is_empty() && b[..v.len()] == *v)
            .map(|&(_, _, r)| r)
    }

    fn put(&mut self, v: &[u8], parsed: Option<u64>) {
        if v.is_empty() || v.len() > DATE_MAX {
            return;
        }
        let slot = &mut self.slots[self.next];
        slot.0[..v.len()].copy_from_slice(v);
        slot.1 = v.len() as u8;
        slot.2 = parsed;
        self.next = (self.next + 1) % DATE_SLOTS;
    }
}

/// delta-seconds (RFC 9111 1.2.2): digits only; too large means [`MAX_DELTA`].
pub(crate) fn parse_delta(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in v {
        n = n * 10 + u64::from(d - b'0');
        if n >= MAX_DELTA {
            return Some(MAX_DELTA);
        }
    }
    Some(n)
}

/// The directives of a `Cache-Control` value: `name` or `name=token` or
/// `name="quoted, string"` (quotes removed, escapes left as they are), separated by
/// commas. Malformed pieces are skipped up to the next comma.
pub(crate) fn directives(v: &[u8]) -> Directives<'_> {
    Directives { rest: v }
}

pub(crate) struct Directives<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Directives<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let r = self.rest;
            let start = r.iter().position(|&c| !matches!(c, b' ' | b'\t' | b','))?;
            let r = &r[start..];
            let name_len = r
                .iter()
                .position(|&c| matches!(c, b'=' | b',' | b' ' | b'\t'))
                .unwrap_or(r.len());
            let name = &r[..name_len];
            let mut r = trim_start(&r[name_len..]);
            let mut value = None;
            if let [b'=', after @ ..] = r {
                let after = trim_start(after);
                if let [b'"', quoted @ ..] = after {
                    let mut i = 0;
                    while i < quoted.len() && quoted[i] != b'"' {
                        i += if quoted[i] == b'\\' { 2 } else { 1 };
                    }
                    let end = i.min(quoted.len());
                    value = Some(&quoted[..end]);
                    r = &quoted[(end + 1).min(quoted.len())..];
                } else {
                    let len = after
                        .iter()
                        .position(|&c| matches!(c, b',' | b' ' | b'\t'))
                        .unwrap_or(after.len());
                    value = Some(&after[..len]);
                    r = &after[len..];
                }
            }
            // Anything before the next comma is garbage.
            let next = r.iter().position(|&c| c == b',').unwrap_or(r.len());
            self.rest = &r[next..];
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    }
}

fn trim_start(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    v
}
