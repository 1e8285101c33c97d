use std::ffi::OsString;

use super::*;

const REQ: &[u8] = b"GET /api/profile/u42?a=1&name=J%20D&flag HTTP/1.1\r\nHost: x\r\nX-Device-ID: dev-7\r\nX-Quote: say \"hi\"\\\r\n\r\n";

fn head() -> RequestHead {
    let mut h = RequestHead::default();
    assert!(h.parse(REQ, 16384, 100).unwrap());
    h
}

fn env(name: &str) -> Option<OsString> {
    match name {
        "TOKEN" => Some("s3cret".into()),
        "NL" => Some("a\r\nInjected: 1".into()),
        _ => None,
    }
}

fn parse(t: &str) -> Template {
    Template::parse_with(t, &env).unwrap()
}

fn with<R>(f: impl FnOnce(&TemplateCx) -> R) -> R {
    let h = head();
    let pt = PathTemplate::parse("/api/profile/{user_id}").unwrap();
    let cx = TemplateCx {
        path: b"/api/profile/u42",
        path_template: Some(&pt),
        request_id: b"rid-1",
        client_ip: Some("10.1.2.3".parse().unwrap()),
        now_ms: 1_765_029_886_123,
        user: Some("alice"),
        tenant: Some("acme"),
        plan: Some("pro"),
        ..TemplateCx::new(&h, REQ)
    };
    f(&cx)
}

fn plain(t: &str) -> String {
    with(|cx| {
        let mut out = Vec::new();
        parse(t).render(cx, &mut out);
        String::from_utf8(out).unwrap()
    })
}

fn json(t: &str) -> String {
    with(|cx| {
        let mut out = Vec::new();
        parse(t).render_json(cx, &mut out);
        let s = String::from_utf8(out).unwrap();
        serde_json::from_str::<serde_json::Value>(&s).unwrap();
        s
    })
}

#[test]
fn every_variable_plain() {
    assert_eq!(plain("Bearer ${env:TOKEN}"), "Bearer s3cret");
    assert_eq!(
        plain("${header:x-device-id}/${header:X-Device-ID}"),
        "dev-7/dev-7"
    );
    assert_eq!(
        plain("${query:a},${query:name},${query:flag},${query:zz}"),
        "1,J%20D,,"
    );
    assert_eq!(plain("u=${path:user_id}"), "u=u42");
    assert_eq!(plain("${request_id} ${client_ip}"), "rid-1 10.1.2.3");
    assert_eq!(plain("${now_ms}"), "1765029886123");
    assert_eq!(plain("${now_rfc3339}"), "2025-12-06T14:04:46.123Z");
    assert_eq!(plain("${user}@${tenant}:${plan}"), "alice@acme:pro");
    assert_eq!(plain("${header:absent}"), "");
}

#[test]
fn dollars() {
    assert_eq!(plain("$$5 and $x and $"), "$5 and $x and $");
    assert_eq!(plain("$${user}"), "${user}");
    assert!(parse("plain text").is_constant());
    assert!(parse("${env:TOKEN}").is_constant());
    assert!(!parse("${user}").is_constant());
}

#[test]
fn plain_drops_control_bytes() {
    assert_eq!(plain("${env:NL}"), "aInjected: 1");
}

#[test]
fn json_types() {
    assert_eq!(json("${now_ms}"), "1765029886123");
    assert_eq!(json("t=${now_ms}"), "\"t=1765029886123\"");
    assert_eq!(json("${header:X-Device-ID}"), "\"dev-7\"");
    assert_eq!(json("${header:absent}"), "null");
    assert_eq!(json("x${header:absent}"), "\"x\"");
    assert_eq!(json("${header:x-quote}"), r#""say \"hi\"\\""#);
    assert_eq!(json("${env:NL}"), r#""a\r\nInjected: 1""#);
    assert_eq!(json("${client_ip}"), "\"10.1.2.3\"");
    assert_eq!(json("lit"), "\"lit\"");
    assert_eq!(json(""), "\"\"");
}

#[test]
fn json_escapes_invalid_utf8_and_controls() {
    let mut out = Vec::new();
    push_json_escaped(&mut out, b"a\x01\xffb\"");
    assert_eq!(out, "a\\u0001\u{fffd}b\\\"".as_bytes());
}

#[test]
fn vars_lists_what_is_used() {
    let t = parse("${path:user_id}-${user}-${env:TOKEN}-${header:X-A}");
    let vars: Vec<String> = t.vars().map(|v| v.to_string()).collect();
    assert_eq!(vars, ["${path:user_id}", "${user}", "${header:x-a}"]);
    assert_eq!(t.env_names().collect::<Vec<_>>(), ["TOKEN"]);
}

#[test]
fn errors_name_the_variable_never_a_secret() {
    let err = |t: &str| Template::parse_with(t, &env).unwrap_err();
    assert_eq!(
        err("${nope}"),
        TemplateError::UnknownVariable { var: "nope".into() }
    );
    assert!(err("${cookie:x}").to_string().contains("${cookie:x}"));
    assert_eq!(err("a ${user"), TemplateError::Unclosed { offset: 2 });
    assert!(matches!(
        err("${header:}"),
        TemplateError::BadArgument { .. }
    ));
    assert!(matches!(
        err("${header:a b}"),
        TemplateError::BadArgument { .. }
    ));
    assert!(matches!(
        err("${path:1x}"),
        TemplateError::BadArgument { .. }
    ));
    assert_eq!(
        err("${env:MISSING}"),
        TemplateError::MissingEnv {
            name: "MISSING".into()
        }
    );
    let t = parse("Bearer ${env:TOKEN}");
    assert!(!format!("{t:?}").contains("s3cret"));
    assert_eq!(t.as_str(), "Bearer ${env:TOKEN}");
}

#[test]
fn rfc3339_dates() {
    assert_eq!(&rfc3339(0), b"1970-01-01T00:00:00.000Z");
    assert_eq!(&rfc3339(951_782_400_000), b"2000-02-29T00:00:00.000Z");
    assert_eq!(&rfc3339(4_102_444_799_999), b"2099-12-31T23:59:59.999Z");
}

#[test]
fn render_appends_only() {
    with(|cx| {
        let mut out = b"X-User: ".to_vec();
        parse("${path:user_id}").render(cx, &mut out);
        assert_eq!(out, b"X-User: u42");
    });
}
