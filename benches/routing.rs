//! Route lookup with 10, 100 and 1,000 routes: the bucketed `Router::find` against a
//! naive first-match scan over the same routes in file order.
//!
//! The tables look like a real gateway's: five routes per service under `/svc{s}/...`
//! (exact paths, prefixes, method and host constraints, a v2 prefix), then a catch-all
//! `/` last. Lookups hit the first route, one in the middle, the last before the
//! catch-all, and a miss that falls to the catch-all.
//!
//! ```text
//! cargo bench --bench routing            # full run
//! cargo bench --bench routing -- --quick
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ringgate::config::{HostMatch, PathMatch, RouteConfig};
use ringgate::pipeline::route::{prefix_matches, MatchInput, Router};

fn route(id: String, path: PathMatch) -> RouteConfig {
    RouteConfig::new(&id, path)
}

/// `n` routes: `n - 1` service routes, five per service, then the catch-all.
fn table(n: usize) -> Vec<RouteConfig> {
    let mut routes = Vec::with_capacity(n);
    for i in 0..n - 1 {
        let s = i / 5;
        let r = match i % 5 {
            0 => route(
                format!("svc{s}-health"),
                PathMatch::Exact(format!("/svc{s}/v1/health")),
            ),
            1 => {
                let mut r = route(
                    format!("svc{s}-orders-write"),
                    PathMatch::Prefix(format!("/svc{s}/v1/orders")),
                );
                r.methods = Some(vec!["POST".into(), "PUT".into()]);
                r
            }
            2 => {
                let mut r = route(
                    format!("svc{s}-internal"),
                    PathMatch::Prefix(format!("/svc{s}/v1")),
                );
                r.host = Some(HostMatch::Suffix(".internal.example.com".into()));
                r
            }
            3 => route(
                format!("svc{s}-v1"),
                PathMatch::Prefix(format!("/svc{s}/v1")),
            ),
            _ => route(
                format!("svc{s}-v2"),
                PathMatch::Prefix(format!("/svc{s}/v2/")),
            ),
        };
        routes.push(r);
    }
    routes.push(route("catch-all".into(), PathMatch::Prefix("/".into())));
    routes
}

/// A request that matches route `i` of `table(n)` first (and none before it).
fn request_for(i: usize) -> (String, &'static str, &'static str) {
    let s = i / 5;
    match i % 5 {
        0 => (format!("/svc{s}/v1/health"), "GET", "api.example.com"),
        1 => (format!("/svc{s}/v1/orders/77"), "POST", "api.example.com"),
        2 => (format!("/svc{s}/v1/users"), "GET", "a.internal.example.com"),
        3 => (format!("/svc{s}/v1/users/7"), "GET", "api.example.com"),
        _ => (format!("/svc{s}/v2/users/7"), "GET", "api.example.com"),
    }
}

/// The baseline: first match in file order, every route tried.
fn naive_find(routes: &[RouteConfig], req: &MatchInput<'_>) -> Option<usize> {
    routes.iter().position(|r| {
        let path_ok = match &r.path {
            PathMatch::Exact(p) => req.path == p.as_bytes(),
            PathMatch::Prefix(p) => prefix_matches(p.as_bytes(), req.path),
            PathMatch::Template(t) => t.matches(req.path),
        };
        path_ok
            && r.methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m.as_bytes() == req.method))
            && r.host.as_ref().is_none_or(|h| match h {
                HostMatch::Exact(h) => req.host.eq_ignore_ascii_case(h.as_bytes()),
                HostMatch::Suffix(s) => {
                    req.host.len() > s.len()
                        && req.host[req.host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
                }
            })
            && r.headers
                .iter()
                .all(|(n, v)| (req.header)(n).is_some_and(|x| x == v.as_bytes()))
    })
}

fn no_headers<'a>(_: &str) -> Option<&'a [u8]> {
    None
}

fn bench_routing(c: &mut Criterion) {
    for n in [10, 100, 1000] {
        let routes = table(n);
        let router = Router::new(&routes);
        let last = n - 2;
        let cases = [
            ("start", request_for(0), 0),
            ("middle", request_for(last / 2), last / 2),
            ("end", request_for(last), last),
            (
                "miss",
                ("/nope/v1/x".to_string(), "GET", "api.example.com"),
                n - 1,
            ),
        ];
        let mut group = c.benchmark_group(format!("routing_{n}"));
        for (name, (path, method, host), want) in &cases {
            let input = MatchInput {
                method: method.as_bytes(),
                host: host.as_bytes(),
                path: path.as_bytes(),
                header: &no_headers,
            };
            // Both must pick the route the request was built for, or the numbers lie.
            assert_eq!(
                router.find(&input),
                Some(*want),
                "router, {n} routes, {name}"
            );
            assert_eq!(
                naive_find(&routes, &input),
                Some(*want),
                "naive, {n}, {name}"
            );
            group.bench_function(format!("router/{name}"), |b| {
                b.iter(|| router.find(black_box(&input)))
            });
            group.bench_function(format!("linear_scan/{name}"), |b| {
                b.iter(|| naive_find(black_box(&routes), black_box(&input)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
