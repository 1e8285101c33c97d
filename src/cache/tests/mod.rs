//! Unit tests of the cache: the RFC 9111 rules on real header bytes ([`rules`]), the
//! store (keys, Vary, tenants, expiry, stale windows, budget, invalidation:
//! [`store`]), coalescing ([`fill`]) and the eviction policies ([`policy`]).

mod fill;
mod policy;
mod rules;
mod store;

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::RouteCache;
use crate::http::header::{HeaderKind, HeaderPos, Span};

/// A response head as wire bytes, with spans as the gateway's parser records them.
pub(super) struct Resp {
    buf: Vec<u8>,
    headers: Vec<HeaderPos>,
    status: u16,
    reason: Span,
}

impl Resp {
    pub(super) fn parts(&self) -> ResponseParts<'_> {
        ResponseParts {
            status: self.status,
            reason: self.reason.get(&self.buf),
            buf: &self.buf,
            headers: &self.headers,
        }
    }
}

/// `resp("200 OK", "Cache-Control: max-age=60\nETag: \"a\"")`: the status line and the
/// header lines of a response head.
pub(super) fn resp(status_line: &str, fields: &str) -> Resp {
    let mut text = format!("HTTP/1.1 {status_line}\r\n");
    for line in fields.lines().filter(|l| !l.is_empty()) {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    let buf = text.into_bytes();
    let line_end = buf.windows(2).position(|w| w == b"\r\n").unwrap();
    let status = std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap();
    let reason = Span {
        start: 13.min(line_end) as u32,
        end: line_end as u32,
    };
    let mut headers = Vec::new();
    let mut at = line_end + 2;
    while !buf[at..].starts_with(b"\r\n") {
        let end = at + buf[at..].windows(2).position(|w| w == b"\r\n").unwrap();
        let colon = at + buf[at..end].iter().position(|&c| c == b':').unwrap();
        let mut vs = colon + 1;
        while buf[vs] == b' ' {
            vs += 1;
        }
        headers.push(HeaderPos {
            name: Span {
                start: at as u32,
                end: colon as u32,
            },
            value: Span {
                start: vs as u32,
                end: end as u32,
            },
            kind: HeaderKind::classify(&buf[at..colon]),
        });
        at = end + 2;
    }
    Resp {
        buf,
        headers,
        status,
        reason,
    }
}

pub(super) fn route(ttl_s: u64) -> RouteCache {
    RouteCache {
        ttl: Some(Duration::from_secs(ttl_s)),
        ..route_without_ttl()
    }
}

/// `cache = {}`: no `ttl_s`.
pub(super) fn route_without_ttl() -> RouteCache {
    RouteCache {
        ttl: None,
        methods: vec!["GET".to_owned(), "HEAD".to_owned()],
        vary: Vec::new(),
        shared: false,
    }
}

pub(super) fn get() -> RequestFacts<'static> {
    RequestFacts {
        method: b"GET",
        directives: ReqDirectives::default(),
        credentials: false,
        tenant_keyed: false,
    }
}

/// Unix time used as "now" for HTTP dates in the tests: Sun, 06 Nov 1994 08:49:37 GMT.
pub(super) const UNIX_NOW: u64 = 784_111_777;

pub(super) fn store_ok(route: &RouteCache, r: &Resp) -> Storable {
    storable(&get(), route, &r.parts(), UNIX_NOW).expect("storable")
}

/// Build an entry for `fields` with `body`, received at `at`.
pub(super) fn entry_at(route: &RouteCache, fields: &str, body: &[u8], at: Instant) -> Entry {
    let r = resp("200 OK", fields);
    let st = store_ok(route, &r);
    Entry::build(st, &r.parts(), body, at, at, &[]).expect("entry")
}

pub(super) fn key(method: &str, host: &str, target: &str, audience: Audience<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    primary_key(
        &mut out,
        &KeyParts {
            method: method.as_bytes(),
            host: host.as_bytes(),
            target: target.as_bytes(),
            audience,
        },
    );
    out
}

pub(super) const NO_HEADERS: &[(&str, &str)] = &[];

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn body_of(l: &Lookup) -> Option<Vec<u8>> {
    match l {
        Lookup::Hit(e) | Lookup::Stale(e, _) => Some(e.body().as_bytes()?.to_vec()),
        _ => None,
    }
}
