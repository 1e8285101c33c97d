//! Body-aware routes (`src/pipeline/body.rs`): the routing decision on a 1 KiB telecom
//! webhook (the field `data.event_type` read by each alternative measured), and the
//! validation plus enrichment of a 300-byte IoT reading.
//!
//! `cargo bench --bench body_routes -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use ringgate::config::body::{compile, BodyRules, JsonBody, Validate, Wrap};
use ringgate::http::json_field::{field, field_in_value, Field, FieldPath};
use ringgate::http::template::{Template, TemplateCx};
use ringgate::http::RequestHead;
use ringgate::pipeline::body::transform;
use serde::Deserialize;

/// A telecom webhook of about 1 KiB, the event type near the start as providers send it.
fn webhook() -> Vec<u8> {
    let body = format!(
        r#"{{"data":{{"event_type":"call.hangup","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0","occurred_at":"2026-12-06T14:00:00.000000Z","payload":{{"call_control_id":"v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg","call_leg_id":"428c31b6-7af4-4bcb-b68e-5013ef9657c1","call_session_id":"428c3e84-7af4-4bcb-b68e-5013ef9657c1","client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d","connection_id":"7267xxxxxxxxxxxxxx","from":"+35319605860","to":"+13129457420","direction":"outgoing","state":"hangup","hangup_cause":"call_rejected","hangup_source":"caller","sip_hangup_cause":"603","start_time":"2026-12-06T13:59:12.000000Z","end_time":"2026-12-06T14:00:00.000000Z","tags":["sales","emea","priority"],"custom_headers":[{{"name":"X-Campaign","value":"winter"}},{{"name":"X-Agent","value":"a-117"}}],"quality":{{"mos":4.31,"jitter_ms":3.2,"packet_loss":0.0}}}},"record_type":"event"}},"meta":{{"attempt":1,"delivered_to":"https://example.com/webhooks/telecom","pad":"{}"}}}}"#,
        "x".repeat(150)
    );
    body.into_bytes()
}

#[derive(Deserialize)]
struct Typed<'a> {
    #[serde(borrow)]
    data: TypedData<'a>,
}
#[derive(Deserialize)]
struct TypedData<'a> {
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
}

const VALUES: [&str; 3] = ["call.initiated", "call.answered", "call.hangup"];

fn is_voice(s: &str) -> bool {
    VALUES.contains(&s)
}

fn bench_routing(c: &mut Criterion) {
    let body = webhook();
    assert!((900..1200).contains(&body.len()), "{}", body.len());
    let path = FieldPath::parse("data.event_type").unwrap();
    let mut g = c.benchmark_group("body_routing_1k");
    // Ours: jiter pull parser, the whole body validated, no document built.
    g.bench_function("jiter_walk", |b| {
        b.iter(|| matches!(field(black_box(&body), &path).unwrap(), Field::Str(s) if is_voice(&s)))
    });
    // A full document, then the lookup.
    g.bench_function("serde_json_value", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(&body)).unwrap();
            matches!(field_in_value(&v, &path), Field::Str(s) if is_voice(&s))
        })
    });
    // serde_json into a typed struct: unknown fields skipped (validated), no document;
    // only possible for a path known at compile time.
    g.bench_function("serde_json_typed", |b| {
        b.iter(|| {
            let t: Typed = serde_json::from_slice(black_box(&body)).unwrap();
            is_voice(&t.data.event_type)
        })
    });
    // sonic-rs on demand: stops at the field, the rest of the body is NOT checked to be
    // JSON (so it cannot answer 400 to a body broken after the field).
    g.bench_function("sonic_rs_get_unvalidated", |b| {
        b.iter(|| {
            let v = sonic_rs::get_from_slice(black_box(&body), &["data", "event_type"]).unwrap();
            is_voice(v.as_raw_str().trim_matches('"'))
        })
    });
    g.finish();
}

fn bench_enrich(c: &mut Criterion) {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("config/schemas/sensor.json").unwrap())
            .unwrap();
    let validator = compile(&schema).unwrap();
    let t = |s: &str| Template::parse_with(s, &|_| Some("fra1".into())).unwrap();
    let rules = BodyRules {
        json_match: None,
        validate: Some(Validate {
            schema_file: "config/schemas/sensor.json".into(),
            schema: Arc::new(schema),
        }),
        json_body: Some(JsonBody {
            rename: Vec::new(),
            remove: Vec::new(),
            set: vec![
                ("edge_pop".into(), t("${env:EDGE_POP}")),
                ("received_at".into(), t("${now_ms}")),
                ("device_id".into(), t("${header:X-Device-ID}")),
            ],
            wrap: Some(Wrap {
                key: "reading".into(),
                set: vec![("edge_pop".into(), t("${env:EDGE_POP}"))],
            }),
        }),
    };
    let reading = br#"{"sensor_type":"temperature","value":21.5,"unit":"C","timestamp":1765029600000,"battery":0.87,"firmware":"2.4.1","location":{"lat":50.1109,"lon":8.6821,"alt_m":112},"tags":["roof","north"],"seq":120934,"rssi":-71,"note":"periodic reading, nothing unusual about it"}"#;
    assert!((250..350).contains(&reading.len()), "{}", reading.len());
    let raw = b"POST /ingest HTTP/1.1\r\nHost: edge\r\nX-Device-ID: dev-42\r\nContent-Length: 300\r\n\r\n";
    let mut head = RequestHead::default();
    assert_eq!(head.parse(raw, 16384, 100), Ok(true));
    let cx = TemplateCx {
        now_ms: 1765029600123,
        ..TemplateCx::new(&head, raw)
    };
    let mut g = c.benchmark_group("iot_300b");
    g.bench_function("validate_and_enrich", |b| {
        b.iter(|| transform(&rules, Some(&validator), black_box(reading), &cx).unwrap())
    });
    let only_validate = BodyRules {
        json_body: None,
        ..rules.clone()
    };
    g.bench_function("validate_only", |b| {
        b.iter(|| transform(&only_validate, Some(&validator), black_box(reading), &cx).unwrap())
    });
    let only_enrich = BodyRules {
        validate: None,
        ..rules.clone()
    };
    g.bench_function("enrich_only", |b| {
        b.iter(|| transform(&only_enrich, None, black_box(reading), &cx).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_routing, bench_enrich);
criterion_main!(benches);
