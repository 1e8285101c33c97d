//! `http::template`: arbitrary text parsed as a template, rendered from arbitrary
//! request values. Input: template text, then (separated by NUL) a header value, a
//! query string, a path segment, an `${env:E}` value and a user name. Never panics;
//! the plain rendering never holds CR, LF or NUL (it becomes a header value); the JSON
//! rendering always parses as one JSON value (it lands in a JSON body).
#![no_main]

use ringgate::http::path_template::PathTemplate;
use ringgate::http::template::{Template, TemplateCx};
use ringgate::http::RequestHead;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let mut next = || parts.next().unwrap_or(b"");
    let text = String::from_utf8_lossy(next()).into_owned();
    let header = clean(next(), b"\r\n");
    let query = clean(next(), b"\r\n #");
    let segment = clean(next(), b"\r\n /?#");
    let env_value = String::from_utf8_lossy(next()).into_owned();
    let user = String::from_utf8_lossy(next()).into_owned();

    let env = |name: &str| (name == "E").then(|| env_value.clone().into());
    let Ok(t) = Template::parse_with(&text, &env) else {
        return;
    };
    let mut req = b"GET /p/".to_vec();
    req.extend_from_slice(&segment);
    req.push(b'?');
    req.extend_from_slice(&query);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\nX-A: ");
    req.extend_from_slice(&header);
    req.extend_from_slice(b"\r\n\r\n");
    let mut head = RequestHead::default();
    let parsed = matches!(head.parse(&req, 65536, 100), Ok(true));
    if !parsed {
        head = RequestHead::default();
    }
    let buf: &[u8] = if parsed { &req } else { b"" };
    let pt = PathTemplate::parse("/p/{seg}").unwrap();
    let path = if parsed { head.path(buf) } else { b"/" };
    let cx = TemplateCx {
        path,
        path_template: Some(&pt),
        request_id: header.get(..header.len().min(8)).unwrap_or(b""),
        client_ip: Some("::ffff:10.0.0.1".parse().unwrap()),
        now_ms: u64::from_le_bytes(*b"\x01\x02\x03\x04\x05\x06\x00\x00"),
        user: Some(&user),
        tenant: (!user.is_empty()).then_some(&user[..]),
        plan: None,
        ..TemplateCx::new(&head, buf)
    };
    let mut out = b"prefix".to_vec();
    t.render(&cx, &mut out);
    assert!(out.starts_with(b"prefix"));
    assert!(
        !out.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
        "invariant broken: control byte in a plain rendering"
    );
    let mut json = Vec::new();
    t.render_json(&cx, &mut json);
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&json) {
        panic!("invariant broken: JSON rendering does not parse: {e}: {json:?}");
    }
});

fn clean(b: &[u8], drop: &[u8]) -> Vec<u8> {
    b.iter().copied().filter(|c| !drop.contains(c)).collect()
}
