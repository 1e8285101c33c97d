//! Cache keys. A lookup is two steps, as in Varnish and nginx:
//!
//! 1. the **primary key** ([`primary_key`]): method class (GET and HEAD share `GET`),
//!    host (lower-case, without `:80`), path and query as received, and the audience
//!    (the caller's tenant, or "anonymous", or "shared" on a `shared = true` route);
//! 2. under it, the **variant key** ([`variant_key`]): the request's values of the
//!    headers the stored response varies on (its `Vary` plus the route's `vary`), which
//!    the primary entry lists.
//!
//! Every part is length-prefixed, so no choice of host, path or tenant can make two
//! different requests produce the same bytes. The key starts with the URI (host, path,
//! query) so that an unsafe request can find and drop every entry for its URI,
//! whatever the method class, tenant or variant ([`uri_prefix`]).

use crate::config::RouteCache;
use crate::http::header::{list_items, HeaderPos};

/// Whose entry this is: part of the primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    /// `shared = true`: one entry for every caller.
    Shared,
    /// No verified identity (auth `none`, or `optional` without credentials).
    Anonymous,
    /// The caller's verified tenant.
    Tenant(&'a [u8]),
}

impl<'a> Audience<'a> {
    /// The audience of a request on `route` from a caller whose verified tenant (if
    /// any) is `tenant`.
    pub fn for_route(route: &RouteCache, tenant: Option<&'a str>) -> Audience<'a> {
        match tenant {
            _ if route.shared => Audience::Shared,
            Some(t) => Audience::Tenant(t.as_bytes()),
            None => Audience::Anonymous,
        }
    }

    /// The key holds a tenant (see [`super::RequestFacts::tenant_keyed`]).
    pub fn is_tenant(&self) -> bool {
        matches!(self, Audience::Tenant(_))
    }
}

/// The parts of a primary key.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    /// The request method (only its class is used).
    pub method: &'a [u8],
    /// The Host (or absolute-form authority), as received.
    pub host: &'a [u8],
    /// Path and query as received; empty means "/".
    pub target: &'a [u8],
    pub audience: Audience<'a>,
}

/// GET and HEAD share entries; other methods are their own class.
pub fn method_class(method: &[u8]) -> &[u8] {
    if method == b"HEAD" {
        b"GET"
    } else {
        method
    }
}

/// Write the primary key for `parts` into `out` (cleared first). Keep `out` per
/// worker: building a key then allocates nothing.
pub fn primary_key(out: &mut Vec<u8>, parts: &KeyParts<'_>) {
    uri_key(out, parts.host, parts.target);
    let class = method_class(parts.method);
    put_len(out, class.len());
    out.extend_from_slice(class);
    match parts.audience {
        Audience::Shared => out.push(0),
        Audience::Anonymous => out.push(1),
        Audience::Tenant(t) => {
            out.push(2);
            out.extend_from_slice(t);
        }
    }
}

/// Write the URI part of a key (what [`super::Cache::invalidate`] matches) into `out`
/// (cleared first).
pub fn uri_key(out: &mut Vec<u8>, host: &[u8], target: &[u8]) {
    out.clear();
    let host = host.strip_suffix(b":80").unwrap_or(host);
    put_len(out, host.len());
    let at = out.len();
    out.extend_from_slice(host);
    out[at..].make_ascii_lowercase();
    let target: &[u8] = if target.is_empty() { b"/" } else { target };
    put_len(out, target.len());
    out.extend_from_slice(target);
}

/// The URI part at the start of a primary key built by [`primary_key`] (the whole
/// key if it was built some other way).
pub fn uri_prefix(key: &[u8]) -> &[u8] {
    let len = |at: usize| -> Option<usize> {
        let b = key.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let end = len(0).and_then(|h| Some(4 + h + 4 + len(4 + h)?));
    match end {
        Some(end) if end <= key.len() => &key[..end],
        _ => key,
    }
}

/// A primary key read back: what an admin purge matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyView<'a> {
    /// Lower-case, without `:80`.
    pub host: &'a [u8],
    /// Path and query as received.
    pub target: &'a [u8],
    pub audience: Audience<'a>,
}

/// Read back a key built by [`primary_key`]; `None` for one built otherwise.
pub fn view(key: &[u8]) -> Option<KeyView<'_>> {
    let mut at = 0;
    let mut part = || -> Option<&[u8]> {
        let b = key.get(at..at + 4)?;
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let p = key.get(at + 4..at + 4 + n)?;
        at += 4 + n;
        Some(p)
    };
    let host = part()?;
    let target = part()?;
    let _class = part()?;
    let audience = match (key.get(at)?, key.get(at + 1..)?) {
        (0, _) => Audience::Shared,
        (1, _) => Audience::Anonymous,
        (2, t) => Audience::Tenant(t),
        _ => return None,
    };
    Some(KeyView {
        host,
        target,
        audience,
    })
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

/// Where the cache reads request headers from: the vary values, and the request's
/// `Cache-Control` and conditional headers.
pub trait RequestHeaders {
    /// Call `f` with the value of each field named `lname` (lower-case), in order.
    fn each(&self, lname: &[u8], f: &mut dyn FnMut(&[u8]));
}

/// A request head as the gateway parses it: header spans into the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct SpanHeaders<'a> {
    pub buf: &'a [u8],
    pub headers: &'a [HeaderPos],
}

impl RequestHeaders for SpanHeaders<'_> {
    fn each(&self, lname: &[u8], f: &mut dyn FnMut(&[u8])) {
        for h in self.headers {
            let name = h.name.get(self.buf);
            if name.len() == lname.len() && name.eq_ignore_ascii_case(lname) {
                f(h.value.get(self.buf));
            }
        }
    }
}

impl RequestHeaders for [(&[u8], &[u8])] {
    fn each(&self, lname: &[u8], f: &mut dyn FnMut(&[u8])) {
        for (n, v) in self {
            if n.eq_ignore_ascii_case(lname) {
                f(v);
            }
        }
    }
}

impl RequestHeaders for [(&str, &str)] {
    fn each(&self, lname: &[u8], f: &mut dyn FnMut(&[u8])) {
        for (n, v) in self {
            if n.as_bytes().eq_ignore_ascii_case(lname) {
                f(v.as_bytes());
            }
        }
    }
}

/// Write the variant key (cleared first): for each name in `vary`, whether the request
/// has that header and its values, list items trimmed and joined by "," (RFC 9111 4.1
/// allows normalising what is semantically equal: "gzip,br" and "gzip, br" are one
/// variant; values are not case-folded).
pub fn variant_key<H: RequestHeaders + ?Sized>(out: &mut Vec<u8>, vary: &[Box<[u8]>], req: &H) {
    out.clear();
    for name in vary {
        let at = out.len();
        out.extend_from_slice(&[0; 5]);
        let (mut present, mut items) = (false, 0usize);
        req.each(name, &mut |v| {
            present = true;
            for item in list_items(v) {
                if items > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(item);
                items += 1;
            }
        });
        let len = (out.len() - at - 5) as u32;
        out[at] = u8::from(present);
        out[at + 1..at + 5].copy_from_slice(&len.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back() {
        let mut k = Vec::new();
        for audience in [
            Audience::Shared,
            Audience::Anonymous,
            Audience::Tenant(b"acme"),
        ] {
            primary_key(
                &mut k,
                &KeyParts {
                    method: b"HEAD",
                    host: b"API.example.com:80",
                    target: b"/a?b=1",
                    audience,
                },
            );
            let v = view(&k).unwrap();
            assert_eq!(v.host, b"api.example.com");
            assert_eq!(v.target, b"/a?b=1");
            assert_eq!(v.audience, audience);
        }
        assert_eq!(view(b"\x05\0\0\0ab"), None);
    }
}
