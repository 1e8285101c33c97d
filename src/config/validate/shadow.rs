//! [`shadowed_routes`]: routes that can never match because an earlier route takes
//! every request they would. Routes match first in file order, so a later route whose
//! conditions are all the same as or narrower than an earlier one's is dead
//! configuration; `ringgate check` warns about it (it is not an error: the file still
//! does what it says). Only one earlier route is compared at a time: a route covered by
//! two earlier routes together (one for GET, one for POST) is not reported.

use super::super::{HostMatch, PathMatch, RouteConfig};
// The router's rule (`pipeline::route::prefix_matches`), on strings.
use super::rules::is_segment_prefix;

/// `(earlier, later)` index pairs: route `later` can never match because route
/// `earlier` matches every request it would. Each later route is named once, with the
/// first route that shadows it.
pub fn shadowed_routes(routes: &[RouteConfig]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (later, b) in routes.iter().enumerate() {
        if let Some(earlier) = routes[..later].iter().position(|a| covers(a, b)) {
            out.push((earlier, later));
        }
    }
    out
}

/// Does `a` match every request `b` matches?
fn covers(a: &RouteConfig, b: &RouteConfig) -> bool {
    // A route that matches on the body leaves the requests it does not take to later
    // routes.
    a.body.as_ref().is_none_or(|r| r.json_match.is_none())
        && path_covers(&a.path, &b.path)
        && host_covers(a.host.as_ref(), b.host.as_ref())
        && match (&a.methods, &b.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(am), Some(bm)) => bm.iter().all(|m| am.contains(m)),
        }
        // Every header `a` asks for, `b` asks for with the same value.
        && a.headers.iter().all(|h| b.headers.contains(h))
        // Content types: `b` asks for some, each of them one of `a`'s.
        && (a.content_type.is_empty()
            || (!b.content_type.is_empty()
                && b.content_type.iter().all(|m| a.content_type.contains(m))))
}

/// Does every path `b` matches also match `a` (the router's segment-aware rule)?
pub fn path_covers(a: &PathMatch, b: &PathMatch) -> bool {
    match (a, b) {
        (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
        (PathMatch::Exact(_), PathMatch::Prefix(_)) => false,
        (PathMatch::Prefix(a), PathMatch::Exact(b)) => is_segment_prefix(a, b),
        // Every path under `b` starts with `b`; segment-aware, so "/api" covers
        // "/api/users" and "/api/" but "/api/" does not cover "/api" (which takes
        // "/api" itself) and "/api/users" does not cover "/api/usersx".
        (PathMatch::Prefix(a), PathMatch::Prefix(b)) => is_segment_prefix(a, b),
        // Templates, conservatively: a prefix covers a template whose literal
        // segments before the first `{name}` it covers; a template covers an exact
        // path it matches, and a template of the same shape whose literals it has or
        // holds `{name}` for. Anything else is taken as not covering.
        (PathMatch::Prefix(a), PathMatch::Template(b)) => is_segment_prefix(a, &b.literal_prefix()),
        (PathMatch::Template(a), PathMatch::Exact(b)) => a.matches(b.as_bytes()),
        (PathMatch::Template(a), PathMatch::Template(b)) => a.covers(b),
        (PathMatch::Template(_), PathMatch::Prefix(_))
        | (PathMatch::Exact(_), PathMatch::Template(_)) => false,
    }
}

fn host_covers(a: Option<&HostMatch>, b: Option<&HostMatch>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) if a == b => true,
        // ".example.com" covers "api.example.com" and ".eu.example.com", never
        // "example.com" itself.
        (Some(HostMatch::Suffix(s)), Some(HostMatch::Exact(h) | HostMatch::Suffix(h))) => {
            h.len() > s.len() && h.ends_with(s.as_str())
        }
        (Some(HostMatch::Exact(_)), Some(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, path: &str) -> RouteConfig {
        let path = match path.strip_prefix('=') {
            Some(exact) => PathMatch::Exact(exact.to_owned()),
            None => PathMatch::Prefix(path.to_owned()),
        };
        RouteConfig::new(id, path)
    }

    fn methods(mut route: RouteConfig, m: &[&str]) -> RouteConfig {
        route.methods = Some(m.iter().map(|s| s.to_string()).collect());
        route
    }

    fn host(mut route: RouteConfig, h: &str) -> RouteConfig {
        route.host = Some(match h.strip_prefix('*') {
            Some(suffix) => HostMatch::Suffix(suffix.to_owned()),
            None => HostMatch::Exact(h.to_owned()),
        });
        route
    }

    fn header(mut route: RouteConfig, name: &str, value: &str) -> RouteConfig {
        route.headers.push((name.to_owned(), value.to_owned()));
        route
    }

    /// Does `a`, placed first, shadow `b`?
    fn shadows(a: RouteConfig, b: RouteConfig) -> bool {
        let found = shadowed_routes(&[a, b]);
        assert!(found.len() <= 1);
        found == [(0, 1)]
    }

    #[test]
    fn broader_or_equal_earlier_routes_shadow() {
        assert!(shadows(r("all", "/"), r("users", "/api/users")));
        assert!(shadows(r("api", "/api"), r("users", "/api/users")));
        assert!(shadows(r("api", "/api"), r("dir", "/api/")));
        assert!(shadows(r("api", "/api/"), r("users", "/api/users")));
        assert!(shadows(r("same", "/api/users"), r("users", "/api/users")));
        assert!(shadows(r("api", "/api"), r("me", "=/api/users/me")));
        assert!(shadows(r("me", "=/api/me"), r("me2", "=/api/me")));
        assert!(shadows(
            methods(r("rw", "/api"), &["GET", "HEAD", "POST"]),
            methods(r("read", "/api/users"), &["HEAD", "GET"])
        ));
        assert!(shadows(
            r("any-method", "/api"),
            methods(r("read", "/api/users"), &["GET"])
        ));
        assert!(shadows(
            host(r("wild", "/"), "*.example.com"),
            host(r("api", "/"), "api.example.com")
        ));
        assert!(shadows(
            host(r("wild", "/"), "*.example.com"),
            host(r("eu", "/"), "*.eu.example.com")
        ));
        assert!(shadows(
            host(r("a", "/"), "api.test"),
            host(r("b", "/x"), "api.test")
        ));
        assert!(shadows(
            header(r("canary", "/"), "x-canary", "1"),
            header(header(r("both", "/"), "x-tier", "beta"), "x-canary", "1")
        ));
    }

    #[test]
    fn near_misses_do_not_shadow() {
        // Segment-aware prefixes.
        assert!(!shadows(
            r("users", "/api/users"),
            r("usersx", "/api/usersx")
        ));
        assert!(!shadows(
            r("users", "/api/users"),
            r("usersx", "=/api/usersx")
        ));
        assert!(!shadows(r("dir", "/api/"), r("api", "/api")));
        // A narrower earlier route.
        assert!(!shadows(r("users", "/api/users"), r("api", "/api")));
        assert!(!shadows(r("me", "=/api/users"), r("users", "/api/users")));
        // Hosts: another host, a host where the later route has none, a wildcard
        // against its own apex.
        assert!(!shadows(
            host(r("a", "/"), "a.test"),
            host(r("b", "/"), "b.test")
        ));
        assert!(!shadows(host(r("a", "/"), "a.test"), r("any-host", "/")));
        assert!(!shadows(
            host(r("wild", "/"), "*.example.com"),
            host(r("apex", "/"), "example.com")
        ));
        assert!(!shadows(
            host(r("exact", "/"), "api.example.com"),
            host(r("wild", "/"), "*.example.com")
        ));
        // Methods: not a superset, or the later route takes any method.
        assert!(!shadows(
            methods(r("read", "/"), &["GET"]),
            methods(r("rw", "/"), &["GET", "POST"])
        ));
        assert!(!shadows(methods(r("read", "/"), &["GET"]), r("any", "/")));
        // Headers: the earlier route asks for one the later lacks, or another value.
        assert!(!shadows(
            header(r("canary", "/"), "x-canary", "1"),
            r("stable", "/")
        ));
        assert!(!shadows(
            header(r("canary", "/"), "x-canary", "1"),
            header(r("other", "/"), "x-canary", "2")
        ));
        // Order matters: a later broad route shadows nothing before it.
        assert!(shadowed_routes(&[r("users", "/api/users"), r("all", "/")]).is_empty());
    }

    #[test]
    fn each_shadowed_route_is_named_once_with_the_first_cover() {
        let routes = [
            r("api", "/api"),
            r("all", "/"),
            r("users", "/api/users"),
            r("other", "/other"),
        ];
        assert_eq!(shadowed_routes(&routes), [(0, 2), (1, 3)]);
    }
}
