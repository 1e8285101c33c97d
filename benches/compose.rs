//! API composition (`src/pipeline/compose/answer.rs`): the answer assembled from three
//! parts as the profile route gets them (a 160-byte user, 8 orders of 1.3 KiB with
//! `pick = "items", limit = 5`, 300 bytes of preferences): each body walked once for
//! its value, then the answer written from the bytes, against the same with
//! serde_json's `Value` (parse each body, pick, truncate, serialise the object).
//!
//! `cargo bench --bench compose -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ringgate::config::compose::ComposePart;
use ringgate::config::{Config, RouteTarget};
use ringgate::pipeline::compose::{answer_len, assemble, select, PartValue};

fn parts() -> Vec<ComposePart> {
    let text = r#"
[[upstreams]]
name = "svc"
servers = ["127.0.0.1:1"]
[[routes]]
id = "profile"
path_template = "/api/profile/{user_id}"
auth = "none"
compose = [
  { name = "user", upstream = "svc", path = "/users/${path:user_id}", required = true },
  { name = "recent_orders", upstream = "svc", path = "/users/${path:user_id}/orders", pick = "items", limit = 5, default = [] },
  { name = "preferences", upstream = "svc", path = "/users/${path:user_id}/prefs", default = {} },
]
"#;
    let cfg = Config::parse(text, "bench.toml").expect("bench config");
    match &cfg.routes[0].target {
        RouteTarget::Compose(c) => c.parts.clone(),
        _ => unreachable!("a compose route"),
    }
}

fn bodies() -> [Vec<u8>; 3] {
    let user = br#"{"id":"u-7","name":"Ada Lovelace","email":"ada@example.com","created_at":"2026-01-02T03:04:05Z","tier":"gold","country":"GB"}"#.to_vec();
    let items: Vec<String> = (1..=8)
        .map(|i| format!(r#"{{"id":"o-{i:04}","status":"delivered","total":{{"amount":{i}99,"currency":"EUR"}},"placed_at":"2026-11-{i:02}T10:00:00Z","lines":3}}"#))
        .collect();
    let orders = format!(r#"{{"items":[{}],"total":8,"next":null}}"#, items.join(",")).into_bytes();
    let prefs = br#"{"theme":"dark","language":"en-GB","currency":"EUR","notifications":{"email":true,"sms":false,"push":true},"privacy":{"share_usage":false,"personalised_ads":false},"units":"metric","timezone":"Europe/London"}"#.to_vec();
    [user, orders, prefs]
}

fn compose(c: &mut Criterion) {
    let parts = parts();
    let bodies = bodies();
    let mut out = Vec::with_capacity(4096);
    c.bench_function("compose/answer: select x3 + assemble (bytes)", |b| {
        b.iter(|| {
            let sel: Vec<_> = parts
                .iter()
                .zip(&bodies)
                .map(|(p, body)| select(black_box(body), p.pick.as_ref(), p.limit).ok())
                .collect();
            let values: Vec<PartValue<'_>> = sel
                .iter()
                .zip(&bodies)
                .map(|(s, body)| s.as_ref().map(|s| (&body[..], s)))
                .collect();
            out.clear();
            out.reserve(answer_len(&parts, &values));
            assemble(&mut out, &parts, &values);
            black_box(out.len())
        })
    });
    c.bench_function(
        "compose/answer: serde_json Value, pick, truncate, to_vec",
        |b| {
            b.iter(|| {
                let mut answer = serde_json::Map::new();
                for (p, body) in parts.iter().zip(&bodies) {
                    let mut v: serde_json::Value = serde_json::from_slice(black_box(body)).unwrap();
                    if p.pick.is_some() {
                        v = v["items"].take();
                    }
                    if let (Some(limit), Some(a)) = (p.limit, v.as_array_mut()) {
                        a.truncate(limit);
                    }
                    answer.insert(p.name.clone(), v);
                }
                black_box(serde_json::to_vec(&answer).unwrap().len())
            })
        },
    );
}

criterion_group!(benches, compose);
criterion_main!(benches);
