//! Route matching: first match in file order wins, as the spec says, but without a
//! linear scan over every route. Routes are bucketed at load by the first segment of
//! their path (`/api/users/7` -> `api`); catch-all routes (`path_prefix = "/"`) are merged
//! into every bucket in file order. A lookup hashes one segment and checks the few routes
//! of its bucket, so matching stays flat with thousands of routes (`benches/routing.rs`).

use hashbrown::HashMap;

use crate::config::{HostMatch, PathMatch, RouteConfig};

/// What a request offers to the matcher; all borrowed from the request head.
pub struct MatchInput<'a> {
    pub method: &'a [u8],
    /// Host without port (any case).
    pub host: &'a [u8],
    /// Path without query.
    pub path: &'a [u8],
    /// Header lookup by lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<&'a [u8]>,
}

#[derive(Debug)]
pub struct Router {
    routes: Vec<RouteConfig>,
    buckets: HashMap<Box<[u8]>, Vec<u32>>,
    /// Routes for requests whose first segment has no bucket: the catch-alls only.
    fallback: Vec<u32>,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Router {
        let mut buckets: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        let mut fallback = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match first_segment_of_pattern(&r.path) {
                Some(seg) => buckets.entry(seg.into()).or_default().push(i as u32),
                None => fallback.push(i as u32),
            }
        }
        // Catch-alls take part in every bucket, in file order.
        for list in buckets.values_mut() {
            list.extend_from_slice(&fallback);
            list.sort_unstable();
        }
        Router {
            routes: routes.to_vec(),
            buckets,
            fallback,
        }
    }

    pub fn routes(&self) -> &[RouteConfig] {
        &self.routes
    }

    /// Index of the first route matching the request, if any.
    pub fn find(&self, req: &MatchInput<'_>) -> Option<usize> {
        let seg = first_segment(req.path);
        let candidates = self.buckets.get(seg).unwrap_or(&self.fallback);
        candidates
            .iter()
            .map(|&i| i as usize)
            .find(|&i| route_matches(&self.routes[i], req))
    }

    /// The first route after route `after` (in file order) that matches the request:
    /// where a body-matching route (`json_match`) did not take it.
    pub fn find_after(&self, req: &MatchInput<'_>, after: usize) -> Option<usize> {
        let seg = first_segment(req.path);
        let candidates = self.buckets.get(seg).unwrap_or(&self.fallback);
        candidates
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| i > after)
            .find(|&i| route_matches(&self.routes[i], req))
    }

    /// After [`Router::find`] found nothing: the methods of the routes that match the
    /// request in everything but its method, for a 405's `Allow`, or an empty list
    /// (a 404). In file order of first mention, without duplicates. A route without a
    /// `methods` list never appears here: it would have matched. Methods are matched
    /// exactly as configured (a GET route does not take HEAD), and so are listed.
    /// Only the miss path calls this, so the hit path pays nothing for it.
    pub fn allowed_methods(&self, req: &MatchInput<'_>) -> Vec<&str> {
        let seg = first_segment(req.path);
        let candidates = self.buckets.get(seg).unwrap_or(&self.fallback);
        let mut allow: Vec<&str> = Vec::new();
        for &i in candidates {
            let r = &self.routes[i as usize];
            if let Some(methods) = &r.methods {
                if matches_but_method(r, req) {
                    for m in methods {
                        if !allow.contains(&m.as_str()) {
                            allow.push(m);
                        }
                    }
                }
            }
        }
        allow
    }
}

fn route_matches(r: &RouteConfig, req: &MatchInput<'_>) -> bool {
    if !path_matches(&r.path, req.path) {
        return false;
    }
    if let Some(methods) = &r.methods {
        if !methods.iter().any(|m| m.as_bytes() == req.method) {
            return false;
        }
    }
    others_match(r, req)
}

/// Path, host and headers: every condition of the route but its methods.
fn matches_but_method(r: &RouteConfig, req: &MatchInput<'_>) -> bool {
    path_matches(&r.path, req.path) && others_match(r, req)
}

#[inline]
fn path_matches(p: &PathMatch, path: &[u8]) -> bool {
    match p {
        PathMatch::Exact(p) => path == p.as_bytes(),
        PathMatch::Prefix(p) => prefix_matches(p.as_bytes(), path),
        PathMatch::Template(t) => t.matches(path),
    }
}

/// Host, headers and content type.
#[inline]
fn others_match(r: &RouteConfig, req: &MatchInput<'_>) -> bool {
    if let Some(h) = &r.host {
        if !host_matches(h, req.host) {
            return false;
        }
    }
    // No Content-Type: no match (a route for "video/*" is not one for bodiless
    // requests).
    if !r.content_type.is_empty()
        && !(req.header)("content-type")
            .is_some_and(|ct| r.content_type.iter().any(|m| m.matches(ct)))
    {
        return false;
    }
    r.headers
        .iter()
        .all(|(name, value)| (req.header)(name).is_some_and(|v| v == value.as_bytes()))
}

/// Segment-aware prefix: "/api/users" matches "/api/users" and "/api/users/7", never
/// "/api/usersx". A prefix ending in '/' matches everything below it.
pub fn prefix_matches(prefix: &[u8], path: &[u8]) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    path.len() == prefix.len() || prefix.ends_with(b"/") || path[prefix.len()] == b'/'
}

fn host_matches(m: &HostMatch, host: &[u8]) -> bool {
    match m {
        HostMatch::Exact(h) => host.eq_ignore_ascii_case(h.as_bytes()),
        HostMatch::Suffix(suffix) => {
            let s = suffix.as_bytes();
            host.len() > s.len() && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
        }
    }
}

/// "/api/users/7" -> "api"; "/" -> "".
fn first_segment(path: &[u8]) -> &[u8] {
    let rest = path.strip_prefix(b"/").unwrap_or(path);
    match memchr::memchr(b'/', rest) {
        Some(i) => &rest[..i],
        None => rest,
    }
}

/// The bucket a route pattern belongs to, or `None` for patterns that can match more
/// than one first segment (a prefix of "/" or one ending inside the first segment's
/// slash, like "/").
fn first_segment_of_pattern(p: &PathMatch) -> Option<&[u8]> {
    match p {
        PathMatch::Exact(p) => Some(first_segment(p.as_bytes())),
        PathMatch::Prefix(p) => {
            let rest = p.as_bytes().strip_prefix(b"/").unwrap_or(p.as_bytes());
            if rest.is_empty() {
                None
            } else {
                // A prefix is segment-aware, so its first segment is whole even when
                // the prefix stops right after it ("/api" or "/api/").
                Some(first_segment(p.as_bytes()))
            }
        }
        // A template starting with `{name}` takes any first segment: a catch-all.
        PathMatch::Template(t) => match t.segments().first() {
            None => Some(b""),
            Some(crate::http::path_template::Segment::Literal(l)) => Some(l.as_bytes()),
            Some(crate::http::path_template::Segment::Param(_)) => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: &str, path: PathMatch, methods: Option<&[&str]>) -> RouteConfig {
        RouteConfig {
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            ..RouteConfig::new(id, path)
        }
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.to_owned())
    }

    /// (found, allowed) for `method path` with host `h` and header `x-v: 2`.
    fn lookup(router: &Router, method: &str, path: &str, host: &str) -> (Option<String>, String) {
        let header = |name: &str| (name == "x-v").then_some(&b"2"[..]);
        let req = MatchInput {
            method: method.as_bytes(),
            host: host.as_bytes(),
            path: path.as_bytes(),
            header: &header,
        };
        let found = router.find(&req).map(|i| router.routes()[i].id.clone());
        (found, router.allowed_methods(&req).join(", "))
    }

    #[test]
    fn allowed_methods_are_those_of_routes_matching_all_but_the_method() {
        let mut by_host = route("by-host", prefix("/api"), Some(&["PATCH"]));
        by_host.host = Some(HostMatch::Exact("other.example".into()));
        let mut by_header = route("by-header", prefix("/api"), Some(&["PUT"]));
        by_header.headers = vec![("x-v".into(), "3".into())];
        let router = Router::new(&[
            route("read", prefix("/api/users"), Some(&["GET", "HEAD"])),
            route("write", prefix("/api/users"), Some(&["POST", "GET"])),
            by_host,
            by_header,
            route(
                "delete",
                PathMatch::Exact("/api/users/7".into()),
                Some(&["DELETE"]),
            ),
            route("other", prefix("/api/orders"), Some(&["OPTIONS"])),
        ]);
        // File order of first mention, no duplicates; host and header routes that do
        // not match stay out.
        let none = None;
        assert_eq!(
            lookup(&router, "PUT", "/api/users/8", "a.example"),
            (none.clone(), "GET, HEAD, POST".into())
        );
        assert_eq!(
            lookup(&router, "PUT", "/api/users/7", "a.example"),
            (none.clone(), "GET, HEAD, POST, DELETE".into())
        );
        assert_eq!(
            lookup(&router, "PUT", "/api/users/7", "other.example"),
            (none.clone(), "GET, HEAD, POST, PATCH, DELETE".into())
        );
        // Segment-aware: "/api/usersx" is no user path; nothing matches: a 404.
        assert_eq!(
            lookup(&router, "PUT", "/api/usersx", "a.example"),
            (none.clone(), String::new())
        );
        assert_eq!(
            lookup(&router, "GET", "/nothing", "a.example"),
            (none, String::new())
        );
        // A hit is a hit.
        assert_eq!(
            lookup(&router, "HEAD", "/api/users", "a.example")
                .0
                .as_deref(),
            Some("read")
        );
    }

    #[test]
    fn a_route_without_methods_leaves_nothing_to_refuse() {
        let router = Router::new(&[
            route("read", prefix("/api"), Some(&["GET"])),
            route("all", prefix("/"), None),
        ]);
        assert_eq!(
            lookup(&router, "DELETE", "/api/x", "h").0.as_deref(),
            Some("all")
        );
    }
}
