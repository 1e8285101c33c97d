//! `http::json_field::field` (the field a `json_match` route reads from a request
//! body) on arbitrary bytes: the input is a dotted path, a NUL, then the body. Never
//! panics; on a body serde_json accepts, it accepts it too and finds the same field
//! (`field_in_value` on serde_json's document). Paths that do not parse are replaced
//! by a few fixed ones, so every input exercises the walk.
#![no_main]

use ringgate::http::json_field::{field, field_in_value, FieldPath};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (path, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let mut paths = vec![
        FieldPath::parse("data.event_type").unwrap(),
        FieldPath::parse("0").unwrap(),
        FieldPath::parse("a.0.b").unwrap(),
    ];
    if let Some(p) = std::str::from_utf8(path).ok().and_then(|p| FieldPath::parse(p).ok()) {
        paths.push(p);
    }
    let doc = serde_json::from_slice::<serde_json::Value>(body).ok();
    for p in &paths {
        let ours = field(body, p);
        if let Some(doc) = &doc {
            let ours = ours.unwrap_or_else(|e| panic!("serde_json accepts what we refuse: {e}"));
            assert_eq!(ours, field_in_value(doc, p));
        }
    }
});
