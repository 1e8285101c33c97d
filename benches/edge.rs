//! The per-request cost of the edge route keys: `path_template` matching and the
//! lookup of a `{name}` segment, template rendering (plain for a header value, JSON
//! for a body field), a `rewrite` with capture groups, `content_type` matching.
//!
//! ```text
//! cargo bench --bench edge -- --quick
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ringgate::http::media_type::MediaRange;
use ringgate::http::path_template::PathTemplate;
use ringgate::http::rewrite::Rewrite;
use ringgate::http::template::{Template, TemplateCx};
use ringgate::http::RequestHead;
use ringgate::pipeline::route::prefix_matches;

const REQ: &[u8] = b"GET /api/profile/u-12345/orders/987?expand=items&v=2 HTTP/1.1\r\n\
Host: api.example.com\r\nUser-Agent: bench\r\nAccept: application/json\r\n\
X-Device-ID: dev-0042\r\nContent-Type: application/json; charset=utf-8\r\n\r\n";

fn bench_edge(c: &mut Criterion) {
    let mut head = RequestHead::default();
    assert_eq!(head.parse(REQ, 16384, 100), Ok(true));
    let path = head.path(REQ);
    let pt = PathTemplate::parse("/api/profile/{user_id}/orders/{order_id}").unwrap();
    assert!(pt.matches(path));

    let mut g = c.benchmark_group("edge");
    g.bench_function("path_template/match", |b| {
        b.iter(|| black_box(&pt).matches(black_box(path)))
    });
    g.bench_function("path_prefix/match (for comparison)", |b| {
        b.iter(|| prefix_matches(black_box(b"/api/profile"), black_box(path)))
    });
    g.bench_function("path_template/param", |b| {
        b.iter(|| black_box(&pt).param(black_box(path), "order_id"))
    });

    let env = |_: &str| Some("s3cret-token-value".into());
    let cx = TemplateCx {
        path,
        path_template: Some(&pt),
        request_id: b"7f3c9a2e4b1d4e8f9a6b5c4d3e2f1a0b",
        client_ip: Some("203.0.113.9".parse().unwrap()),
        now_ms: 1_765_029_886_123,
        user: Some("alice"),
        tenant: Some("acme"),
        plan: Some("pro"),
        ..TemplateCx::new(&head, REQ)
    };
    let cases = [
        ("constant_env", "Bearer ${env:TOKEN}"),
        ("path_var", "${path:user_id}"),
        ("header_var", "${header:X-Device-ID}"),
        (
            "mixed",
            "u=${user}/t=${tenant}/o=${path:order_id}/q=${query:v}/${request_id}",
        ),
        ("now_rfc3339", "${now_rfc3339}"),
    ];
    let mut out = Vec::with_capacity(256);
    for (name, text) in cases {
        let t = Template::parse_with(text, &env).unwrap();
        g.bench_function(format!("template_plain/{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&t).render(black_box(&cx), &mut out);
                out.len()
            })
        });
        g.bench_function(format!("template_json/{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&t).render_json(black_box(&cx), &mut out);
                out.len()
            })
        });
    }
    let now = Template::parse("${now_ms}").unwrap();
    g.bench_function("template_json/now_ms", |b| {
        b.iter(|| {
            out.clear();
            black_box(&now).render_json(black_box(&cx), &mut out);
            out.len()
        })
    });

    let rw = Rewrite::new("^/api/profile/([^/]+)/(.*)$", "/v2/users/$1/$2").unwrap();
    let named = Rewrite::new("^/api/(?P<svc>[a-z]+)/(.*)$", "/${svc}/$2").unwrap();
    let query = Some(&b"expand=items&v=2"[..]);
    for (name, r) in [("numbered", &rw), ("named", &named)] {
        g.bench_function(format!("rewrite/{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(r)
                    .apply(black_box(path), query, &mut out)
                    .unwrap()
            })
        });
    }
    let miss = Rewrite::new("^/v1/(.*)$", "/api/$1").unwrap();
    g.bench_function("rewrite/no_match", |b| {
        b.iter(|| {
            out.clear();
            black_box(&miss)
                .apply(black_box(path), query, &mut out)
                .unwrap()
        })
    });

    let ranges: Vec<MediaRange> = ["video/*", "audio/*", "application/json"]
        .iter()
        .map(|r| MediaRange::parse(r).unwrap())
        .collect();
    let ct = head.header(REQ, "content-type").unwrap();
    g.bench_function("content_type/3_ranges_last_matches", |b| {
        b.iter(|| black_box(&ranges).iter().any(|m| m.matches(black_box(ct))))
    });
    g.finish();
}

criterion_group!(benches, bench_edge);
criterion_main!(benches);
