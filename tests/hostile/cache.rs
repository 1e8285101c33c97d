//! The response cache on bytes from clients and upstreams: a request's `Cache-Control`
//! and `Pragma` ([`ReqDirectives::from_request`]), a response head's `Cache-Control`,
//! `Vary`, `Age`, `Date`, `Expires`, `Last-Modified`, `ETag`, `Set-Cookie`, `Connection`
//! and framing ([`storable`], [`Entry::build`]), the request's `If-None-Match` and
//! `If-Modified-Since` ([`Entry::not_modified`], [`conditional`]), a 304's fields
//! ([`Entry::freshen`]), the heads written from an entry ([`Entry::write_head`],
//! [`Entry::write_not_modified`]), the keys ([`primary_key`], [`variant_key`]) and the
//! store's bookkeeping ([`Cache`]).
//!
//! Input layout:
//!
//! ```text
//! byte 0  flags: bit 0 the request carried credentials; bit 1 the caller has a verified
//!         tenant; bit 2 the route is `shared`; bit 3 the route varies on
//!         accept-encoding; bits 4-5 the route's ttl_s (absent, 1, 60, 86400); bit 6 the
//!         route removes `x-drop` from responses; bit 7 a 4 KiB cache instead of 64 KiB
//! byte 1  times: bits 0-2 when the entry is looked at after it arrived (0, 1, 30, 59,
//!         60, 61, 3600 s, 400 days); bits 3-4 how long the upstream took (0, 1, 5,
//!         120 s); bits 5-6 how many more inserts (0, 3, 9, 20); bit 7 the body is one
//!         byte longer than Content-Length says (the entry must be refused)
//! rest    request header lines (after "GET /p HTTP/1.1\r\nHost: h\r\n"), a 0x00 byte,
//!         then the response head; without a 0x00 byte it is all response head
//! ```

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringgate::cache::{
    conditional, primary_key, storable, uri_key, variant_key, Audience, Body, Cache, Entry,
    KeyParts, Lookup, NotStorable, ReqDirectives, RequestFacts, ResponseParts, SpanHeaders,
    StaleUse, Storable, XCache, BODY_FIELDS, CACHEABLE_STATUSES, ENTRY_OVERHEAD, MAX_DELTA,
    MAX_VARIANTS, STORABLE_STATUSES, WITH_HEAD_MAX,
};
use ringgate::config::RouteCache;
use ringgate::http::{HeaderKind, RequestHead, ResponseHead};

use super::{check_header_lines, content_length, ensure, items, ows_trim, show, HOP_BY_HOP};

/// The worker's wall clock for HTTP dates: Tue, 14 Nov 2023 22:13:20 GMT.
const UNIX_NOW: u64 = 1_700_000_000;

/// The last second an HTTP-date can name: Fri, 31 Dec 9999 23:59:59 GMT.
const LAST_HTTP_DATE: u64 = 253_402_300_799;

const REQUEST_START: &[u8] = b"GET /p HTTP/1.1\r\nHost: h\r\n";

const MAX_OBJECT: usize = 16 * 1024;

/// Fields a 304 repeats (RFC 9110 15.4.5), as `src/cache/entry.rs` lists them.
const NOT_MODIFIED_FIELDS: [&[u8]; 6] = [
    b"cache-control",
    b"content-location",
    b"date",
    b"etag",
    b"expires",
    b"vary",
];

/// A head written from an entry carries exactly one `Date` (RFC 9110 5.3, 6.6.1): the
/// response's first valid one, even when `Connection` or `no-cache="date"` /
/// `private="date"` names it, else one added at arrival. (Found by this check: the
/// entry used to keep an invalid `Date` beside the added one, keep every `Date` line,
/// and lose the only one when it was named.) Off, the checks accept the old behaviour.
const STRICT_ONE_DATE: bool = true;

/// A head written from an entry never carries the upstream's `X-Request-ID` (found by
/// this check: a hit used to carry two, the first naming the request that filled the
/// entry); the entry does not store it.
const STRICT_NO_REQUEST_ID: bool = true;

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn named<'a>(fields: &[(&'a [u8], &'a [u8])], name: &[u8]) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter(|(n, _)| eq(n, name))
        .map(|&(_, v)| v)
        .collect()
}

type Field<'a> = (&'a [u8], &'a [u8], HeaderKind);

type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

fn fields_of<'a>(h: &ResponseHead, buf: &'a [u8]) -> Vec<Field<'a>> {
    h.headers
        .iter()
        .map(|p| (p.name.get(buf), p.value.get(buf), p.kind))
        .collect()
}

fn parts_of<'a>(h: &'a ResponseHead, buf: &'a [u8]) -> ResponseParts<'a> {
    ResponseParts {
        status: h.status,
        reason: h.reason.get(buf),
        buf,
        headers: &h.headers,
    }
}

/// A response head written afresh: the status line, one line per field, the empty line.
fn head_bytes(status_line: &[u8], fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = status_line.to_vec();
    out.extend_from_slice(b"\r\n");
    for (n, v) in fields {
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn status_line(status: u16, reason: &[u8]) -> Vec<u8> {
    let mut l = format!("HTTP/1.1 {status} ").into_bytes();
    l.extend_from_slice(reason);
    l
}

fn parse_response(bytes: &[u8]) -> Option<ResponseHead> {
    let mut h = ResponseHead::default();
    (h.parse(bytes, bytes.len() + 1, 256, false) == Ok(true)).then_some(h)
}

/// IMF-fixdate of unix seconds (httpdate, which the library also uses to write
/// dates; it stops before year 9999, see [`LAST_HTTP_DATE_TEXT`]).
fn imf_date(unix: u64) -> String {
    if unix == LAST_HTTP_DATE {
        return LAST_HTTP_DATE_TEXT.to_string();
    }
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
}

/// [`LAST_HTTP_DATE`] written out: the last second of year 9999.
const LAST_HTTP_DATE_TEXT: &str = "Fri, 31 Dec 9999 23:59:59 GMT";

/// Everything known about one input once both heads parsed.
struct Case<'a> {
    input: &'a [u8],
    flags: u8,
    times: u8,
    route: RouteCache,
    audience: Audience<'static>,
    facts: RequestFacts<'static>,
    omit: Vec<String>,
    requested_at: Instant,
    received_at: Instant,
    later: Instant,
    delay: u64,
}

/// Run every cache check on `input`. Returns whether both heads parsed and the response
/// was storable (the checks went on to the entry and the store).
pub fn check(input: &[u8]) -> bool {
    let [flags, times, rest @ ..] = input else {
        return false;
    };
    let (flags, times) = (*flags, *times);
    let (req_part, resp_part) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let mut req_buf = REQUEST_START.to_vec();
    req_buf.extend_from_slice(req_part);
    if !req_part.is_empty() && !req_part.ends_with(b"\n") {
        req_buf.extend_from_slice(b"\r\n");
    }
    req_buf.extend_from_slice(b"\r\n");
    let mut req = RequestHead::default();
    if req.parse(&req_buf, 65_536, 200) != Ok(true) {
        return false;
    }
    let hdrs = SpanHeaders {
        buf: &req_buf,
        headers: &req.headers,
    };
    let pairs: Vec<(&[u8], &[u8])> = req
        .headers
        .iter()
        .map(|h| (h.name.get(&req_buf), h.value.get(&req_buf)))
        .collect();
    let dirs = request_directives(input, &hdrs, &pairs);
    check_keys(input, &pairs);

    let mut resp = ResponseHead::default();
    if resp.parse(resp_part, 65_536, 200, false) != Ok(true) {
        // The request side alone: the variant keys over names it carries.
        let vary: Vec<Box<[u8]>> = pairs
            .iter()
            .take(2)
            .map(|(n, _)| n.to_ascii_lowercase().into_boxed_slice())
            .chain([Box::from(&b"accept-encoding"[..])])
            .collect();
        check_variants(input, &vary, &hdrs, &pairs);
        return false;
    }

    let route = RouteCache {
        ttl: [None, Some(1), Some(60), Some(86_400)][usize::from(flags >> 4 & 3)]
            .map(Duration::from_secs),
        methods: vec!["GET".to_owned(), "HEAD".to_owned()],
        vary: if flags & 8 != 0 {
            vec!["accept-encoding".to_owned()]
        } else {
            Vec::new()
        },
        shared: flags & 4 != 0,
    };
    let audience = Audience::for_route(&route, (flags & 2 != 0).then_some("t1"));
    let requested_at = Instant::now();
    let delay = [0, 1, 5, 120][usize::from(times >> 3 & 3)];
    let received_at = requested_at + Duration::from_secs(delay);
    let after = [0, 1, 30, 59, 60, 61, 3600, 400 * 86_400][usize::from(times & 7)];
    let case = Case {
        input,
        flags,
        times,
        facts: RequestFacts {
            method: b"GET",
            directives: dirs,
            credentials: flags & 1 != 0,
            tenant_keyed: audience.is_tenant(),
        },
        route,
        audience,
        omit: if flags & 0x40 != 0 {
            vec!["x-drop".to_owned()]
        } else {
            Vec::new()
        },
        requested_at,
        received_at,
        later: received_at + Duration::from_secs(after),
        delay,
    };

    let parts = parts_of(&resp, resp_part);
    let fields = fields_of(&resp, resp_part);
    let verdict = storable(&case.facts, &case.route, &parts, UNIX_NOW);
    check_storable(&case, resp.status, &fields, &verdict);
    storable_rewrites(&case, &resp, resp_part, &fields, &verdict);

    let vary: Vec<Box<[u8]>> = match &verdict {
        Ok(st) => st.vary.clone(),
        Err(_) => vec![Box::from(&b"accept-encoding"[..])],
    };
    check_variants(input, &vary, &hdrs, &pairs);

    let Ok(st) = verdict else {
        return false;
    };
    // A body as long as Content-Length says (or a short one), or one byte too long.
    let cl = fields
        .iter()
        .find(|f| f.2 == HeaderKind::ContentLength)
        .and_then(|f| content_length(f.1));
    let mut body_len = match cl {
        Some(n) if n <= 20_000 => n as usize,
        _ => 5,
    };
    if times & 0x80 != 0 {
        body_len += 1;
    }
    let body: Rc<[u8]> = vec![b'b'; body_len].into();
    let build = || {
        Entry::build(
            st.clone(),
            &parts,
            body.clone(),
            case.requested_at,
            case.received_at,
            &case.omit,
        )
    };
    let entry = match build() {
        Ok(e) => {
            ensure(
                cl.is_none_or(|n| n == body_len as u64),
                "an entry built from a body not as long as Content-Length",
                input,
            );
            e
        }
        Err(e) => {
            ensure(
                e == NotStorable::Truncated && cl.is_some_and(|n| n != body_len as u64),
                "Entry::build refused a complete body, or not as Truncated",
                input,
            );
            return true;
        }
    };
    ensure(
        entry.body().as_bytes() == Some(&body[..]),
        "the body is stored whole",
        input,
    );
    ensure(
        body.len() <= WITH_HEAD_MAX || entry.body().same(&Body::from(body.clone())),
        "a body too large to live with the head is shared, not copied",
        input,
    );
    check_entry(&case, &st, &fields, parts.reason, &entry);
    for now in [case.received_at, case.later] {
        lifetimes(input, &entry, now);
        let x = [XCache::Hit, XCache::Stale, XCache::Miss][usize::from(times >> 5) % 3];
        check_written(input, &entry, now, Some(x));
        check_written(input, &entry, now, None);
    }
    check_conditionals(input, &st, &entry, &fields, &pairs, &hdrs);
    let freshened = check_freshen(&case, &fields, &entry);

    let head = entry.head().to_vec();
    let req_view = RequestView {
        host: req.host.get(&req_buf),
        hdrs: &hdrs,
        pairs: &pairs,
        dirs,
    };
    check_store(
        &case,
        &st,
        &req_view,
        &head,
        &|| build().unwrap(),
        freshened,
    );
    true
}

// ---------------------------------------------------------------------------------------
// Requests

fn request_directives(
    input: &[u8],
    hdrs: &SpanHeaders<'_>,
    pairs: &[(&[u8], &[u8])],
) -> ReqDirectives {
    let dirs = ReqDirectives::from_request(hdrs);
    ensure(
        ReqDirectives::from_request(pairs) == dirs,
        "the same request directives from spans and from (name, value) pairs",
        input,
    );
    ensure(
        [dirs.max_age, dirs.max_stale, dirs.min_fresh]
            .iter()
            .flatten()
            .all(|&v| v <= MAX_DELTA),
        "request delta-seconds capped at MAX_DELTA",
        input,
    );
    let cc = named(pairs, b"cache-control");
    if cc.is_empty() {
        let pragma = named(pairs, b"pragma")
            .iter()
            .any(|v| items(v).iter().any(|t| eq(t, b"no-cache")));
        ensure(
            dirs == ReqDirectives {
                no_cache: pragma,
                ..ReqDirectives::default()
            },
            "without Cache-Control only Pragma: no-cache counts",
            input,
        );
        return dirs;
    }
    let mut acc = ReqDirectives::default();
    for v in &cc {
        acc.add(v);
    }
    ensure(acc == dirs, "directives accumulate line by line", input);
    for v in cc.iter().filter(|v| !v.contains(&b'"')) {
        let its = items(v);
        let has = |d: &[u8]| its.iter().any(|t| eq(t, d));
        ensure(
            (!has(b"no-store") || dirs.no_store)
                && (!has(b"no-cache") || dirs.no_cache)
                && (!has(b"only-if-cached") || dirs.only_if_cached),
            "a bare request directive is seen",
            input,
        );
        // Each line alone adds nothing its own parse does not have.
        let one = ReqDirectives::parse(v);
        ensure(
            (!one.no_store || dirs.no_store)
                && (!one.no_cache || dirs.no_cache)
                && (!one.only_if_cached || dirs.only_if_cached),
            "flags of one line hold for all lines",
            input,
        );
    }
    if cc.iter().all(|v| !v.contains(&b'"')) {
        let joined = cc.join(&b", "[..]);
        ensure(
            ReqDirectives::parse(&joined) == dirs,
            "Cache-Control lines mean what one line joining them means",
            input,
        );
    }
    dirs
}

// ---------------------------------------------------------------------------------------
// Keys

/// A request's primary-key parts as they should compare: host lower-case without
/// `:80`, an empty target as "/", HEAD as GET, the audience.
type Norm<'a> = (Vec<u8>, &'a [u8], &'a [u8], u8, &'a [u8]);

/// Primary keys are equal exactly when the normalised parts are (length prefixes: no
/// choice of host, target or tenant makes two requests share a key).
fn check_keys(input: &[u8], pairs: &[(&[u8], &[u8])]) {
    let v0 = pairs.first().map_or(&b"X"[..], |p| p.1);
    let v1 = pairs.last().map_or(&b""[..], |p| p.1);
    let mut keys: Vec<(Vec<u8>, Norm<'_>)> = Vec::with_capacity(25);
    let mut uri = Vec::new();
    let reference = [(&b"h"[..], &b"/p"[..], &b"GET"[..], Audience::Anonymous)];
    let hosts: [&[u8]; 2] = [b"H:80", v0];
    let targets: [&[u8]; 2] = [b"", v1];
    let methods: [&[u8]; 2] = [b"HEAD", v1];
    let audiences = [Audience::Shared, Audience::Tenant(v0), Audience::Tenant(v1)];
    let combos = hosts.into_iter().flat_map(|h| {
        targets.into_iter().flat_map(move |t| {
            methods
                .into_iter()
                .flat_map(move |m| audiences.into_iter().map(move |a| (h, t, m, a)))
        })
    });
    for (host, target, method, audience) in reference.into_iter().chain(combos) {
        let mut key = Vec::new();
        primary_key(
            &mut key,
            &KeyParts {
                method,
                host,
                target,
                audience,
            },
        );
        uri_key(&mut uri, host, target);
        ensure(
            key.starts_with(&uri),
            "a primary key starts with its URI key",
            input,
        );
        let (tag, tenant) = match audience {
            Audience::Shared => (0, &b""[..]),
            Audience::Anonymous => (1, &b""[..]),
            Audience::Tenant(t) => (2, t),
        };
        let norm: Norm<'_> = (
            host.strip_suffix(b":80")
                .unwrap_or(host)
                .to_ascii_lowercase(),
            if target.is_empty() { b"/" } else { target },
            if method == b"HEAD" { b"GET" } else { method },
            tag,
            tenant,
        );
        keys.push((key, norm));
    }
    for (i, (ka, na)) in keys.iter().enumerate() {
        for (kb, nb) in &keys[i + 1..] {
            if (ka == kb) != (na == nb) {
                panic!(
                    "invariant broken: primary keys equal: {}, parts equal: {}: {na:?} and \
                     {nb:?}\n  input: {}",
                    ka == kb,
                    na == nb,
                    show(input)
                );
            }
        }
    }
}

fn check_variants(
    input: &[u8],
    vary: &[Box<[u8]>],
    hdrs: &SpanHeaders<'_>,
    pairs: &[(&[u8], &[u8])],
) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    variant_key(&mut a, vary, hdrs);
    variant_key(&mut b, vary, pairs);
    ensure(
        a == b,
        "the same variant key from spans and from pairs",
        input,
    );
    if vary.is_empty() {
        ensure(a.is_empty(), "no Vary, an empty variant key", input);
        return;
    }
    // One item per line is the same variant as the items in one line (RFC 9111 4.1).
    let mut split: Vec<(&[u8], &[u8])> = Vec::new();
    for &(n, v) in pairs {
        if !vary.iter().any(|x| eq(n, x)) {
            split.push((n, v));
            continue;
        }
        let its = items(v);
        if its.is_empty() {
            split.push((n, &b""[..]));
        }
        split.extend(its.into_iter().map(|i| (n, i)));
    }
    variant_key(&mut b, vary, &split[..]);
    ensure(
        a == b,
        "list items split over lines give the same variant",
        input,
    );
    // One more item in a varied header is another variant.
    let mut more = pairs.to_vec();
    more.push((&vary[0][..], &b"zz"[..]));
    variant_key(&mut b, vary, &more[..]);
    ensure(
        a != b,
        "another value of a varied header, the same variant",
        input,
    );
}

// ---------------------------------------------------------------------------------------
// Storage rules

/// Might the response carry explicit freshness (RFC 9111 4.2.1)? `Expires`, or a
/// `Cache-Control` that mentions `max-age` or `s-maxage` anywhere. An
/// over-approximation: quoted strings and garbage are not told apart.
fn maybe_explicit(nv: &[(&[u8], &[u8])]) -> bool {
    let mentions = |v: &[u8], d: &[u8]| v.to_ascii_lowercase().windows(d.len()).any(|w| w == d);
    !named(nv, b"expires").is_empty()
        || named(nv, b"cache-control")
            .iter()
            .any(|v| mentions(v, b"max-age") || mentions(v, b"s-maxage"))
}

/// Does the response surely carry explicit freshness? `Expires`, or a `Cache-Control`
/// without quoted strings with a comma-separated item named `max-age` or `s-maxage`
/// (any argument: an invalid one still counts, as stale). An under-approximation.
fn surely_explicit(nv: &[(&[u8], &[u8])]) -> bool {
    let named_freshness = |item: &[u8]| {
        let name = item
            .split(|&c| matches!(c, b'=' | b' ' | b'\t'))
            .next()
            .unwrap_or(b"");
        eq(name, b"max-age") || eq(name, b"s-maxage")
    };
    !named(nv, b"expires").is_empty()
        || named(nv, b"cache-control")
            .iter()
            .filter(|v| !v.contains(&b'"'))
            .any(|v| items(v).into_iter().any(named_freshness))
}

fn strictly_sorted_lower(v: &[Box<[u8]>]) -> bool {
    v.windows(2).all(|w| w[0] < w[1]) && v.iter().all(|n| !n.iter().any(u8::is_ascii_uppercase))
}

fn check_storable(
    case: &Case<'_>,
    status: u16,
    fields: &[Field<'_>],
    verdict: &Result<Storable, NotStorable>,
) {
    let input = case.input;
    let dirs = &case.facts.directives;
    let nv: Vec<(&[u8], &[u8])> = fields.iter().map(|f| (f.0, f.1)).collect();
    let st = match verdict {
        Err(e) => {
            if dirs.no_store {
                ensure(
                    *e == NotStorable::RequestNoStore,
                    "request no-store: RequestNoStore",
                    input,
                );
            } else if !STORABLE_STATUSES.contains(&status) {
                ensure(
                    *e == NotStorable::Status(status),
                    "a status never stored: Status",
                    input,
                );
            }
            if *e == NotStorable::NoFreshness {
                ensure(
                    case.route.ttl.is_none_or(|t| t.is_zero())
                        || fields
                            .iter()
                            .any(|f| eq(f.0, b"cache-control") || eq(f.0, b"expires")),
                    "NoFreshness without anything but a positive route ttl",
                    input,
                );
            }
            if let NotStorable::Status(s) = *e {
                ensure(
                    s == status
                        && (!STORABLE_STATUSES.contains(&s)
                            || (!CACHEABLE_STATUSES.contains(&s) && !surely_explicit(&nv))),
                    "Status for a known status with explicit freshness, or a heuristic one",
                    input,
                );
            }
            return;
        }
        Ok(st) => st,
    };
    ensure(
        !dirs.no_store,
        "stored although the request said no-store",
        input,
    );
    ensure(
        STORABLE_STATUSES.contains(&status),
        "stored with a status never stored",
        input,
    );
    ensure(
        CACHEABLE_STATUSES.contains(&status) || maybe_explicit(&nv),
        "stored without explicit freshness, with a status not heuristically cacheable",
        input,
    );
    ensure(
        named(&nv, b"set-cookie").is_empty(),
        "stored with Set-Cookie",
        input,
    );
    let vary_items: Vec<&[u8]> = named(&nv, b"vary").into_iter().flat_map(items).collect();
    ensure(
        !vary_items.contains(&&b"*"[..]),
        "stored with Vary: *",
        input,
    );
    ensure(
        named(&nv, b"transfer-encoding")
            .into_iter()
            .flat_map(items)
            .all(|c| eq(c, b"chunked")),
        "stored with a transfer coding other than chunked",
        input,
    );
    for v in named(&nv, b"cache-control")
        .into_iter()
        .filter(|v| !v.contains(&b'"'))
    {
        ensure(
            !items(v)
                .iter()
                .any(|t| eq(t, b"no-store") || eq(t, b"private") || eq(t, b"no-cache")),
            "stored with no-store, private or no-cache",
            input,
        );
    }
    if case.facts.credentials && !case.facts.tenant_keyed {
        ensure(
            named(&nv, b"cache-control").iter().any(|v| {
                let v = v.to_ascii_lowercase();
                [&b"public"[..], b"s-maxage", b"must-revalidate"]
                    .iter()
                    .any(|d| v.windows(d.len()).any(|w| w == *d))
            }),
            "a response to a request with credentials shared without permission",
            input,
        );
    }
    ensure(
        strictly_sorted_lower(&st.vary),
        "Storable.vary sorted, unique, lower-case",
        input,
    );
    for name in case
        .route
        .vary
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .chain(vary_items.iter().map(|v| v.to_ascii_lowercase()))
    {
        ensure(
            st.vary.iter().any(|v| **v == name[..]),
            "a Vary name missing from Storable.vary",
            input,
        );
    }
    ensure(
        strictly_sorted_lower(&st.omit),
        "Storable.omit sorted, unique, lower-case",
        input,
    );
    for token in named(&nv, b"connection").into_iter().flat_map(items) {
        if !eq(token, b"close") && !eq(token, b"keep-alive") {
            ensure(
                st.omit
                    .iter()
                    .any(|o| **o == token.to_ascii_lowercase()[..]),
                "a field named by Connection not omitted",
                input,
            );
        }
    }
    let cap = Duration::from_secs(MAX_DELTA);
    ensure(
        st.lifetime <= cap
            && st.stale_while_revalidate <= cap
            && st.stale_if_error <= cap
            && st.age_value <= MAX_DELTA,
        "lifetime, stale windows and Age capped at MAX_DELTA",
        input,
    );
    ensure(
        !(st.lifetime.is_zero()
            && st.stale_while_revalidate.is_zero()
            && st.stale_if_error.is_zero()),
        "stored although never fresh and never usable stale",
        input,
    );
    ensure(
        !st.must_revalidate || (st.stale_while_revalidate.is_zero() && st.stale_if_error.is_zero()),
        "stale windows open under must-revalidate",
        input,
    );
    ensure(
        st.missing_date
            .is_none_or(|d| d == UNIX_NOW && st.apparent_age == 0),
        "a missing Date is the arrival time, and gives no apparent age",
        input,
    );
    ensure(
        st.apparent_age <= UNIX_NOW,
        "apparent age after 1970",
        input,
    );
    ensure(
        st.modified_at <= UNIX_NOW.max(LAST_HTTP_DATE),
        "modified_at past the last HTTP-date",
        input,
    );
    if named(&nv, b"cache-control").is_empty() && named(&nv, b"expires").is_empty() {
        ensure(
            case.route.ttl.is_some_and(|t| st.lifetime == t.min(cap))
                && !st.must_revalidate
                && st.stale_while_revalidate.is_zero()
                && st.stale_if_error.is_zero(),
            "without Cache-Control and Expires, the route's ttl",
            input,
        );
    }
    let age = named(&nv, b"age").into_iter().map(ows_trim).find_map(|v| {
        (!v.is_empty() && v.iter().all(u8::is_ascii_digit)).then(|| {
            v.iter()
                .fold(0u64, |n, d| {
                    n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                })
                .min(MAX_DELTA)
        })
    });
    ensure(
        st.age_value == age.unwrap_or(0),
        "age_value is the first valid Age",
        input,
    );
}

/// The storage decision depends on the status and the fields only, and the rules that
/// say "never" hold whatever else the response says.
fn storable_rewrites(
    case: &Case<'_>,
    resp: &ResponseHead,
    buf: &[u8],
    fields: &[Field<'_>],
    verdict: &Result<Storable, NotStorable>,
) {
    let input = case.input;
    let line = status_line(resp.status, resp.reason.get(buf));
    let nv: Vec<(&[u8], &[u8])> = fields.iter().map(|f| (f.0, f.1)).collect();
    let judge = |bytes: &[u8]| {
        parse_response(bytes)
            .map(|h| storable(&case.facts, &case.route, &parts_of(&h, bytes), UNIX_NOW))
    };
    let again = head_bytes(&line, &nv);
    match judge(&again) {
        Some(v) => ensure(
            v == *verdict,
            "the same response written afresh is judged the same",
            input,
        ),
        None => ensure(
            false,
            "an accepted head written afresh does not parse",
            input,
        ),
    }
    // All Cache-Control lines as one (without quoted strings, which may hold commas).
    let cc = named(&nv, b"cache-control");
    if cc.len() > 1 && cc.iter().all(|v| !v.contains(&b'"')) {
        let joined = cc.join(&b", "[..]);
        let mut merged: Vec<(&[u8], &[u8])> = nv
            .iter()
            .copied()
            .filter(|(n, _)| !eq(n, b"cache-control"))
            .collect();
        merged.push((b"Cache-Control", &joined));
        if let Some(v) = judge(&head_bytes(&line, &merged)) {
            ensure(
                v == *verdict,
                "Cache-Control lines mean what one line joining them means",
                input,
            );
        }
    }
    let never: [(&[u8], &[u8]); 5] = [
        (b"Cache-Control", b"no-store"),
        (b"Cache-Control", b"private"),
        (b"cache-control", b"No-Cache"),
        (b"Set-Cookie", b"a=1"),
        (b"Vary", b"*"),
    ];
    for (n, v) in never {
        let mut more = nv.clone();
        more.insert(nv.len() / 2, (n, v));
        if let Some(r) = judge(&head_bytes(&line, &more)) {
            if r.is_ok() {
                panic!(
                    "invariant broken: stored with {}: {}\n  input: {}",
                    String::from_utf8_lossy(n),
                    String::from_utf8_lossy(v),
                    show(input)
                );
            }
        }
    }
    // Never from a HEAD, nor on a route that caches neither GET nor HEAD.
    let head = RequestFacts {
        method: b"HEAD",
        ..case.facts
    };
    let post = RouteCache {
        methods: vec!["POST".to_owned()],
        ..case.route.clone()
    };
    let parts = parts_of(resp, buf);
    ensure(
        storable(&head, &case.route, &parts, UNIX_NOW) == Err(NotStorable::Method)
            && storable(&case.facts, &post, &parts, UNIX_NOW) == Err(NotStorable::Method),
        "only GET responses are stored",
        input,
    );
}

// ---------------------------------------------------------------------------------------
// Entries

/// Is a response field kept in the entry?
fn kept(st: &Storable, omit: &[String], name: &[u8], kind: HeaderKind) -> bool {
    let framing_or_hop = matches!(
        kind,
        HeaderKind::ContentLength
            | HeaderKind::Connection
            | HeaderKind::HopByHop
            | HeaderKind::TransferEncoding
    );
    let request_id = STRICT_NO_REQUEST_ID && kind == HeaderKind::XRequestId;
    let dropped = framing_or_hop
        || request_id
        || eq(name, b"age")
        || eq(name, b"x-cache")
        || st.omit.iter().any(|o| eq(name, o))
        || omit.iter().any(|o| eq(name, o.as_bytes()));
    !dropped
}

fn check_entry(case: &Case<'_>, st: &Storable, fields: &[Field<'_>], reason: &[u8], e: &Entry) {
    let input = case.input;
    ensure(
        e.head().starts_with(&status_line(e.status(), reason))
            && e.head()[13 + reason.len()..].starts_with(b"\r\n"),
        "the entry's status line",
        input,
    );
    ensure(
        e.lifetime() == st.lifetime && e.must_revalidate() == st.must_revalidate,
        "the entry's lifetime is the storage decision's",
        input,
    );
    let stored: Vec<(&[u8], &[u8], HeaderKind)> = fields
        .iter()
        .copied()
        .filter(|&(n, _, k)| kept(st, &case.omit, n, k))
        .collect();
    let want: Vec<(&[u8], &[u8])> = stored.iter().map(|&(n, v, _)| (n, ows_trim(v))).collect();
    let got: Vec<(&[u8], &[u8])> = e.headers().collect();
    let added = st.missing_date.map(imf_date);
    let not_date = |f: &&(&[u8], &[u8])| !eq(f.0, b"date");
    let ok = match &added {
        // Once one Date is enforced, which Date lines are kept is the fix's choice.
        _ if STRICT_ONE_DATE => got.iter().filter(not_date).eq(want.iter().filter(not_date)),
        None => got == want,
        Some(date) => {
            got.len() == want.len() + 1
                && got[..want.len()] == want[..]
                && got[want.len()] == (&b"Date"[..], date.as_bytes())
        }
    };
    if !ok {
        panic!(
            "invariant broken: the stored fields are not the response's less the dropped \
             ones (plus a Date)\n  got: {got:?}\n  want: {want:?} + {added:?}\n  input: {}",
            show(input)
        );
    }
    let etag = stored.iter().find(|f| eq(f.0, b"etag")).map(|f| f.1);
    ensure(
        e.etag() == etag,
        "the entry's ETag is the first stored one",
        input,
    );
    let init = st.apparent_age.max(st.age_value.saturating_add(case.delay));
    ensure(
        e.current_age(case.received_at) == Duration::from_secs(init),
        "the age on arrival is RFC 9111 4.2.3's corrected_initial_age",
        input,
    );
}

/// Age and freshness at `now`: never a panic, and consistent with each other.
fn lifetimes(input: &[u8], e: &Entry, now: Instant) {
    let age = e.current_age(now);
    let fresh = e.is_fresh(now);
    ensure(e.age(now) <= MAX_DELTA, "Age over MAX_DELTA", input);
    ensure(
        e.lifetime() <= Duration::from_secs(MAX_DELTA),
        "lifetime over MAX_DELTA",
        input,
    );
    ensure(
        fresh == (e.lifetime() > age),
        "fresh means lifetime > age",
        input,
    );
    ensure(
        e.staleness(now) == age.saturating_sub(e.lifetime()),
        "staleness is age past lifetime",
        input,
    );
    ensure(
        !e.within_stale_while_revalidate(now) || (!fresh && !e.must_revalidate()),
        "stale-while-revalidate on a fresh or must-revalidate entry",
        input,
    );
    ensure(
        !fresh || e.serves_on_error(now),
        "a fresh entry serves on error",
        input,
    );
    ensure(
        !e.must_revalidate() || e.serves_on_error(now) == fresh,
        "stale-if-error under must-revalidate",
        input,
    );
}

/// A head written from `e` (`x`: by `write_head`; `None`: by `write_not_modified`)
/// parses again and holds exactly what it should.
fn check_written(input: &[u8], e: &Entry, now: Instant, x: Option<XCache>) {
    let mut out = Vec::new();
    match x {
        Some(x) => e.write_head(&mut out, now, x),
        None => e.write_not_modified(&mut out, now),
    }
    out.extend_from_slice(b"\r\n");
    let fail = |what: &str| -> ! {
        panic!(
            "invariant broken: head written from an entry ({}): {what}\n  written: {}\n  \
             input: {}",
            if x.is_some() {
                "write_head"
            } else {
                "write_not_modified"
            },
            show(&out),
            show(input)
        )
    };
    let Some(h) = parse_response(&out) else {
        fail("does not parse");
    };
    if h.head_len != out.len() {
        fail("the head ends early");
    }
    let line_end = out.iter().position(|&b| b == b'\n').unwrap() + 1;
    if !out[..line_end].ends_with(b"\r\n") {
        fail("status line without CRLF");
    }
    let end = check_header_lines(&out, h.head_len, &h.headers, line_end, false);
    if end + 2 != h.head_len {
        fail("the empty line does not follow the last field");
    }
    let got: Vec<(&[u8], &[u8])> = h
        .headers
        .iter()
        .map(|p| (p.name.get(&out), ows_trim(p.value.get(&out))))
        .collect();
    let age = e.age(now).to_string();
    let mut want: Vec<(&[u8], &[u8])> = e.headers().collect();
    let len = e.body().len().to_string();
    match x {
        Some(x) => {
            if h.status != e.status() || !out.starts_with(&e.head()[..line_end]) {
                fail("status line changed");
            }
            want.push((b"Age", age.as_bytes()));
            want.push((b"X-Cache", x.as_bytes()));
            if e.status() != 204 {
                want.push((b"Content-Length", len.as_bytes()));
            }
        }
        None => {
            if h.status != 304 || h.reason.get(&out) != b"Not Modified" {
                fail("not a 304 Not Modified");
            }
            want.retain(|(n, _)| NOT_MODIFIED_FIELDS.iter().any(|f| eq(n, f)));
            want.push((b"Age", age.as_bytes()));
            want.push((b"X-Cache", b"HIT"));
        }
    }
    if got != want {
        fail("fields are not the stored ones plus Age, X-Cache (and Content-Length)");
    }
    let count = |name: &[u8]| got.iter().filter(|(n, _)| eq(n, name)).count();
    if count(b"age") != 1 || count(b"x-cache") != 1 {
        fail("not exactly one Age and one X-Cache");
    }
    let want_cl = usize::from(x.is_some() && e.status() != 204);
    if count(b"content-length") != want_cl {
        fail("Content-Length");
    }
    if got
        .iter()
        .any(|(n, _)| HOP_BY_HOP.iter().any(|hop| eq(n, hop)))
    {
        fail("a hop-by-hop field");
    }
    if STRICT_ONE_DATE && count(b"date") != 1 {
        fail("not exactly one Date");
    }
    if STRICT_NO_REQUEST_ID && count(b"x-request-id") != 0 {
        fail("the upstream's X-Request-ID");
    }
}

fn check_conditionals(
    input: &[u8],
    st: &Storable,
    e: &Entry,
    fields: &[Field<'_>],
    pairs: &[(&[u8], &[u8])],
    hdrs: &SpanHeaders<'_>,
) {
    ensure(
        conditional(e, Some(b"*"), None) && conditional(e, Some(b" * "), Some(b"x")),
        "If-None-Match: * matches any stored response",
        input,
    );
    ensure(
        !conditional(e, None, None),
        "304 without a condition",
        input,
    );
    ensure(
        !conditional(e, None, Some(b"yesterday")),
        "304 for an invalid If-Modified-Since",
        input,
    );
    let last = imf_date(LAST_HTTP_DATE);
    ensure(
        conditional(e, None, Some(last.as_bytes())),
        "not modified since the last HTTP-date",
        input,
    );
    if st.missing_date.is_some() && !fields.iter().any(|f| eq(f.0, b"last-modified")) {
        // Neither a valid Date nor a Last-Modified: modified when it arrived.
        ensure(
            conditional(e, None, Some(imf_date(UNIX_NOW).as_bytes()))
                && !conditional(e, None, Some(imf_date(UNIX_NOW - 1).as_bytes())),
            "without Date and Last-Modified, modified when it arrived",
            input,
        );
    }
    match e.etag() {
        Some(tag) => {
            let opaque = ows_trim(tag);
            let opaque = opaque.strip_prefix(b"W/").unwrap_or(opaque);
            let well_formed = opaque.len() >= 2
                && opaque[0] == b'"'
                && opaque[opaque.len() - 1] == b'"'
                && !opaque[1..opaque.len() - 1].contains(&b'"');
            if well_formed {
                let weak = [&b"W/"[..], opaque].concat();
                let listed = [&b"\"zz\", "[..], opaque, b" ,"].concat();
                let other = [&opaque[..opaque.len() - 1], b"x\""].concat();
                ensure(
                    conditional(e, Some(opaque), None)
                        && conditional(e, Some(&weak), None)
                        && conditional(e, Some(&listed), Some(b"yesterday")),
                    "If-None-Match with the entry's own ETag (weak comparison)",
                    input,
                );
                ensure(
                    !conditional(e, Some(&other), Some(last.as_bytes())),
                    "If-None-Match with another ETag",
                    input,
                );
            }
        }
        None => ensure(
            !conditional(e, Some(b"\"a\", W/\"b\""), None),
            "an ETag matched on an entry without one",
            input,
        ),
    }
    // not_modified over the request's lines is conditional over each value.
    let inm = named(pairs, b"if-none-match");
    let ims = named(pairs, b"if-modified-since");
    let want = if !inm.is_empty() {
        inm.iter().any(|v| conditional(e, Some(v), None))
    } else {
        ims.len() == 1 && conditional(e, None, Some(ims[0]))
    };
    ensure(
        e.not_modified(hdrs) == want && e.not_modified(pairs) == want,
        "not_modified agrees with conditional",
        input,
    );
}

/// `freshen` with the response's own fields as a 304 gives back the same entry; with
/// some of them, the 304's fields replace the stored ones of the same name, except the
/// fields that describe the stored body ([`BODY_FIELDS`]) and the 304's hop-by-hop
/// ones, which are kept as stored.
fn check_freshen(case: &Case<'_>, fields: &[Field<'_>], e: &Entry) -> Option<Entry> {
    let input = case.input;
    let nv: Vec<(&[u8], &[u8])> = fields.iter().map(|f| (f.0, f.1)).collect();
    let freshen = |fields: &[(&[u8], &[u8])]| {
        let bytes = head_bytes(b"HTTP/1.1 304 Not Modified", fields);
        let h = parse_response(&bytes)?;
        let r = e.freshen(
            &case.facts,
            &case.route,
            &parts_of(&h, &bytes),
            UNIX_NOW,
            case.requested_at,
            case.received_at,
            &case.omit,
        );
        Some((
            r,
            fields_of(&h, &bytes)
                .iter()
                .map(|f| (f.0.to_vec(), f.1.to_vec(), f.2))
                .collect::<Vec<_>>(),
        ))
    };
    if let Some((r, _)) = freshen(&nv) {
        match r {
            Ok(f) => ensure(
                f.head() == e.head()
                    && f.etag() == e.etag()
                    && f.lifetime() == e.lifetime()
                    && f.current_age(case.received_at) == e.current_age(case.received_at)
                    && f.status() == e.status()
                    && same_body(f.body(), e.body()),
                "a 304 with the same fields freshens to the same entry",
                input,
            ),
            Err(err) => panic!(
                "invariant broken: a 304 with the stored response's fields refused ({err:?})\n  \
                 input: {}",
                show(input)
            ),
        }
    }
    // Some of the fields: every other one, from a parity the input picks.
    let parity = usize::from(case.times >> 5 & 1);
    let some: Vec<(&[u8], &[u8])> = nv
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == parity)
        .map(|(_, f)| *f)
        .collect();
    let (r, sent) = freshen(&some)?;
    let f = r.ok()?;
    ensure(
        f.status() == e.status() && same_body(f.body(), e.body()),
        "a freshened entry keeps its status and body",
        input,
    );
    // RFC 9111 3.2: the fields that describe the stored body, and the 304's own fields
    // excepted from storage (hop-by-hop, named by its Connection), update nothing.
    let hop: Vec<Vec<u8>> = sent
        .iter()
        .filter(|s| s.2 == HeaderKind::Connection)
        .flat_map(|s| items(&s.1).into_iter().map(<[u8]>::to_vec))
        .collect();
    let kept = |n: &[u8]| BODY_FIELDS.iter().any(|b| eq(b, n)) || hop.iter().any(|h| eq(h, n));
    let in_304 = |n: &[u8]| sent.iter().any(|s| eq(&s.0, n)) && !kept(n);
    let old: Vec<(&[u8], &[u8])> = e.headers().collect();
    let new: Vec<(&[u8], &[u8])> = f.headers().collect();
    for &(n, v) in &new {
        if eq(n, b"date") {
            continue;
        }
        let from_304 = in_304(n) && sent.iter().any(|s| eq(&s.0, n) && ows_trim(&s.1) == v);
        let from_old = !in_304(n) && old.contains(&(n, v));
        ensure(
            from_304 || from_old,
            "a freshened field neither from the 304 nor kept from the entry",
            input,
        );
    }
    let quiet = !sent
        .iter()
        .any(|s| eq(&s.0, b"cache-control") || s.2 == HeaderKind::Connection);
    if quiet {
        for &(n, v) in &old {
            if !eq(n, b"date") && !in_304(n) {
                ensure(
                    new.contains(&(n, v)),
                    "a stored field the 304 did not replace went missing",
                    input,
                );
            }
        }
    }
    if !in_304(b"date") {
        let dates: Vec<&[u8]> = new
            .iter()
            .filter(|(n, _)| eq(n, b"date"))
            .map(|p| p.1)
            .collect();
        ensure(
            dates == [imf_date(UNIX_NOW).as_bytes()],
            "a 304 without Date: the entry's Date is the time it arrived",
            input,
        );
    }
    Some(f)
}

// ---------------------------------------------------------------------------------------
// The store

struct RequestView<'a> {
    host: &'a [u8],
    hdrs: &'a SpanHeaders<'a>,
    pairs: &'a [(&'a [u8], &'a [u8])],
    dirs: ReqDirectives,
}

fn accounting(input: &[u8], cache: &Cache) {
    let s = cache.stats();
    ensure(
        s.bytes <= cache.max_bytes(),
        "the cache holds more bytes than max_bytes",
        input,
    );
    ensure(
        (s.entries == 0) == (s.bytes == 0),
        "bytes charged without entries, or entries without bytes",
        input,
    );
    ensure(
        s.bytes >= s.entries * ENTRY_OVERHEAD,
        "entries charged less than their overhead",
        input,
    );
}

fn check_lookup(input: &[u8], l: &Lookup, dirs: &ReqDirectives, now: Instant, head: &[u8]) {
    let e = match l {
        Lookup::Miss | Lookup::Bypass => {
            panic!(
                "invariant broken: a stored entry not found ({l:?})\n  input: {}",
                show(input)
            )
        }
        Lookup::Hit(e) | Lookup::Stale(e, _) => e,
    };
    ensure(e.head() == head, "a lookup found another entry", input);
    let fresh = e.is_fresh(now);
    let plain = dirs.max_age.is_none() && dirs.min_fresh.is_none();
    let ok = match l {
        Lookup::Hit(_) => !dirs.no_cache && fresh,
        Lookup::Stale(_, StaleUse::Serve) => {
            !dirs.no_cache && !fresh && !e.must_revalidate() && dirs.max_stale.is_some()
        }
        Lookup::Stale(_, StaleUse::ServeAndRevalidate) => {
            !dirs.no_cache && e.within_stale_while_revalidate(now)
        }
        _ => true,
    };
    ensure(ok, "a lookup served what it may not", input);
    if !dirs.no_cache && fresh && plain {
        ensure(
            matches!(l, Lookup::Hit(_)),
            "a fresh entry not served",
            input,
        );
    }
    if dirs.no_cache || (!fresh && e.must_revalidate()) {
        ensure(
            matches!(l, Lookup::Stale(_, StaleUse::Revalidate)),
            "no-cache or must-revalidate without revalidation",
            input,
        );
    }
}

fn check_store(
    case: &Case<'_>,
    st: &Storable,
    req: &RequestView<'_>,
    head: &[u8],
    build: &dyn Fn() -> Entry,
    freshened: Option<Entry>,
) {
    let input = case.input;
    let max_bytes = if case.flags & 0x80 != 0 {
        4 << 10
    } else {
        64 << 10
    };
    let mut cache = Cache::new(max_bytes, MAX_OBJECT);
    let mut key = Vec::new();
    let key_for = |key: &mut Vec<u8>, method: &[u8], target: &[u8], audience| {
        primary_key(
            key,
            &KeyParts {
                method,
                host: req.host,
                target,
                audience,
            },
        )
    };
    key_for(&mut key, b"GET", b"/p", case.audience);
    let body_len = build().body().len();
    let first = cache.insert(&key, req.hdrs, build());
    accounting(input, &cache);
    match first {
        Ok(()) => ensure(
            body_len <= MAX_OBJECT,
            "a body over max_object_bytes stored",
            input,
        ),
        Err(e) => {
            ensure(
                e == NotStorable::TooLarge,
                "an empty cache refused an entry but not as too large",
                input,
            );
            ensure(cache.stats().entries == 0, "a refused entry stored", input);
            return;
        }
    }
    let s = cache.stats();
    ensure(
        s.entries == 1 && s.bytes >= ENTRY_OVERHEAD + body_len + head.len(),
        "one entry, charged at least its overhead, head and body",
        input,
    );
    for now in [case.received_at, case.later] {
        let l = cache.lookup(&key, req.hdrs, &req.dirs, now);
        check_lookup(input, &l, &req.dirs, now, head);
        let l = cache.lookup(&key, req.pairs, &req.dirs, now);
        check_lookup(input, &l, &req.dirs, now, head);
    }
    // HEAD shares GET's entry; other targets, tenants and variants do not.
    let mut other = Vec::new();
    key_for(&mut other, b"HEAD", b"/p", case.audience);
    ensure(other == key, "HEAD and GET share a primary key", input);
    let any = ReqDirectives::default();
    let t = case.received_at;
    key_for(&mut other, b"GET", b"/q", case.audience);
    ensure(
        matches!(cache.lookup(&other, req.hdrs, &any, t), Lookup::Miss),
        "found under another target",
        input,
    );
    key_for(&mut other, b"GET", b"/p", Audience::Tenant(b"someone else"));
    ensure(
        matches!(cache.lookup(&other, req.hdrs, &any, t), Lookup::Miss),
        "found under another tenant",
        input,
    );
    if let Some(name) = st.vary.first() {
        let mut alt: Vec<(&[u8], &[u8])> = req
            .pairs
            .iter()
            .copied()
            .filter(|(n, _)| !eq(n, name))
            .collect();
        alt.push((&name[..], &b"zz-other"[..]));
        let same = named(req.pairs, name)
            .into_iter()
            .flat_map(items)
            .eq([&b"zz-other"[..]]);
        if !same {
            ensure(
                matches!(cache.lookup(&key, &alt[..], &any, t), Lookup::Miss),
                "found with another value of a varied header",
                input,
            );
        }
    }
    // The same variant again replaces it.
    ensure(
        cache.insert(&key, req.hdrs, build()).is_ok() && cache.stats().entries == 1,
        "the same variant again does not replace the entry",
        input,
    );
    accounting(input, &cache);

    // More entries: other targets of the same URI family, audiences, variants.
    let targets: [&[u8]; 3] = [b"/p", b"/p?x", b"/P"];
    let audiences = [
        Audience::Shared,
        Audience::Anonymous,
        Audience::Tenant(b"t1"),
        Audience::Tenant(b"t2"),
    ];
    let values: Vec<Vec<u8>> = (0..19).map(|i| format!("v{i}").into_bytes()).collect();
    let mut inserted: Vec<(Vec<u8>, Pairs<'_>)> = vec![(key.clone(), req.pairs.to_vec())];
    let more = [0, 3, 9, 20][usize::from(case.times >> 5 & 3)];
    for i in 0..more {
        let mut k = Vec::new();
        let method: &[u8] = if i % 2 == 0 { b"GET" } else { b"HEAD" };
        // The most: all under the request's key (past MAX_VARIANTS if it varies).
        if more == 20 {
            key_for(&mut k, method, b"/p", case.audience);
        } else {
            key_for(&mut k, method, targets[i % 3], audiences[i / 3 % 4]);
        }
        let mut r = req.pairs.to_vec();
        if let Some(name) = st.vary.first() {
            r.push((&name[..], &values[i % values.len()][..]));
        }
        match cache.insert(&k, &r[..], build()) {
            Ok(()) => {
                let l = cache.lookup(&k, &r[..], &any, t);
                ensure(
                    matches!(l, Lookup::Hit(_) | Lookup::Stale(..)),
                    "an entry just stored not found",
                    input,
                );
            }
            Err(e) => ensure(
                matches!(e, NotStorable::TooLarge | NotStorable::NotAdmitted),
                "an insert refused for another reason than size or admission",
                input,
            ),
        }
        accounting(input, &cache);
        inserted.push((k, r));
    }
    // Every entry is one stored variant, and at most MAX_VARIANTS per primary key.
    let mut seen: HashMap<(Vec<u8>, Vec<u8>), bool> = HashMap::new();
    let mut per_key: HashMap<Vec<u8>, usize> = HashMap::new();
    for (k, r) in &inserted {
        let mut v = Vec::new();
        variant_key(&mut v, &st.vary, &r[..]);
        if seen.contains_key(&(k.clone(), v.clone())) {
            continue;
        }
        let found = !matches!(cache.lookup(k, &r[..], &any, t), Lookup::Miss);
        if found {
            *per_key.entry(k.clone()).or_default() += 1;
        }
        seen.insert((k.clone(), v), found);
    }
    let found = seen.values().filter(|&&f| f).count();
    ensure(
        found == cache.stats().entries,
        "entries that no lookup finds, or more found than stored",
        input,
    );
    ensure(
        per_key.values().all(|&n| n <= MAX_VARIANTS),
        "more than MAX_VARIANTS variants under one key",
        input,
    );

    // Remove the request's own entry.
    let before = cache.stats().entries;
    let present = !matches!(cache.lookup(&key, req.hdrs, &any, t), Lookup::Miss);
    ensure(
        cache.remove(&key, req.hdrs) == present,
        "remove says whether there was an entry",
        input,
    );
    ensure(
        cache.stats().entries == before - usize::from(present)
            && matches!(cache.lookup(&key, req.hdrs, &any, t), Lookup::Miss),
        "an entry removed is gone, and only it",
        input,
    );
    accounting(input, &cache);
    if let Some(f) = freshened {
        let r = cache.insert(&key, req.hdrs, f);
        ensure(
            r.is_ok() || matches!(r, Err(NotStorable::TooLarge | NotStorable::NotAdmitted)),
            "a freshened entry refused for another reason than size or admission",
            input,
        );
        accounting(input, &cache);
    }

    // Invalidation drops everything under each URI, and the charges with it.
    ensure(
        cache.invalidate(b"h", b"/elsewhere") == 0,
        "invalidating another URI dropped entries",
        input,
    );
    let before = cache.stats().entries;
    let mut dropped = cache.invalidate(b"H:80", b"/p");
    dropped += cache.invalidate(b"h", b"/p?x");
    dropped += cache.invalidate(b"h", b"/P");
    let s = cache.stats();
    ensure(
        dropped == before && s.entries == 0 && s.bytes == 0,
        "after invalidating every URI, entries or bytes remain",
        input,
    );
}

/// The same stored body: the same bytes, and shared rather than copied unless it is
/// small enough to live with its entry's head (then a new head means a new copy).
fn same_body(a: &Body, b: &Body) -> bool {
    match (a.as_bytes(), b.as_bytes()) {
        (Some(x), Some(y)) if y.len() <= WITH_HEAD_MAX => x == y,
        _ => a.same(b),
    }
}
