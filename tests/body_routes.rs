//! Body-aware routes end to end: a telecom webhook routed by `data.event_type`
//! (`json_match`), IoT readings validated (`validate`) and enriched (`json_body`),
//! and the routes beside them that keep streaming.

mod common;

use common::*;
use serde_json::{json, Value};

/// The telecom webhook: three services by event family, then a catch-all.
fn telecom(driver: IoDriver, voice: &Origin, sms: &Origin, fax: &Origin, other: &Origin) -> Gw {
    let toml = "\
[[upstreams]]\nname = \"voice\"\nservers = [\"{voice}\"]\n\
[[upstreams]]\nname = \"sms\"\nservers = [\"{sms}\"]\n\
[[upstreams]]\nname = \"fax\"\nservers = [\"{fax}\"]\n\
[[upstreams]]\nname = \"other\"\nservers = [\"{other}\"]\n\
[[routes]]\nid = \"voice\"\npath_exact = \"/webhooks/telecom\"\nupstream = \"voice\"\n\
json_match = { path = \"data.event_type\", values = [\"call.initiated\", \"call.answered\", \"call.hangup\"] }\n\
[[routes]]\nid = \"sms\"\npath_exact = \"/webhooks/telecom\"\nupstream = \"sms\"\nmax_body_bytes = 4096\n\
json_match = { path = \"data.event_type\", values = [\"message.received\", \"message.sent\"] }\n\
[[routes]]\nid = \"fax\"\npath_exact = \"/webhooks/telecom\"\nupstream = \"fax\"\n\
json_match = { path = \"data.event_type\", values = [\"fax.received\", \"fax.sent\"] }\n\
[[routes]]\nid = \"unhandled\"\npath_exact = \"/webhooks/telecom\"\n\
respond = { status = 200, body = \"OK\", content_type = \"text/plain\" }\n\
[[routes]]\nid = \"rest\"\npath_prefix = \"/\"\nupstream = \"other\"\n";
    Gw::start(
        driver,
        &fill(
            toml,
            &[
                ("voice", voice.addr()),
                ("sms", sms.addr()),
                ("fax", fax.addr()),
                ("other", other.addr()),
            ],
        ),
    )
}

fn event(kind: &str) -> Vec<u8> {
    // Spacing and key order a re-serialiser would change: the origin must get these bytes.
    format!(
        "{{ \"data\" : {{\"id\":\"ev_1\", \"event_type\": \"{kind}\", \"payload\":{{\"to\":\"+15550100\",\"n\":[1, 2.50, true]}}}},\"meta\":{{\"attempt\":1}} }}"
    )
    .into_bytes()
}

both_drivers! {
    fn telecom_events_reach_their_service_byte_for_byte(driver) {
        let (voice, sms, fax, other) = (Origin::echo(), Origin::echo(), Origin::echo(), Origin::echo());
        let gw = telecom(driver, &voice, &sms, &fax, &other);
        let mut c = gw.client();
        let cases = [
            ("call.initiated", &voice), ("call.answered", &voice), ("call.hangup", &voice),
            ("message.received", &sms), ("message.sent", &sms),
            ("fax.received", &fax), ("fax.sent", &fax),
        ];
        for (i, (kind, origin)) in cases.iter().enumerate() {
            let body = event(kind);
            let resp = c.request(&Req::post("/webhooks/telecom", body.clone()));
            assert_eq!(resp.status, 200, "{kind}: {}", resp.text());
            let got = origin.last_request();
            assert_eq!(got.body, body, "{kind}");
            assert_eq!(got.header("content-length"), Some(&*body.len().to_string()));
            // Chunked from the client: de-chunked, sent with a Content-Length.
            let half = body.len() / 2;
            let resp = c.request(&Req::new("POST", "/webhooks/telecom").chunked(&[&body[..half], &body[half..]]));
            assert_eq!(resp.status, 200, "{kind} chunked: {}", resp.text());
            let got = origin.last_request();
            assert_eq!(got.body, body, "{kind} chunked");
            assert!(!got.chunked);
            assert_eq!(got.header("content-length"), Some(&*body.len().to_string()));
            assert_eq!(origin.requests().len(), 2 * (1 + cases[..i].iter().filter(|c| std::ptr::eq(c.1, *origin)).count()));
        }
        assert!(other.requests().is_empty());
    }

    fn unknown_or_missing_event_is_answered_ok_at_the_edge(driver) {
        let (voice, sms, fax, other) = (Origin::echo(), Origin::echo(), Origin::echo(), Origin::echo());
        let gw = telecom(driver, &voice, &sms, &fax, &other);
        let mut c = gw.client();
        for body in [event("video.started"), br#"{"data":{}}"#.to_vec(), br#"{"data":{"event_type":1}}"#.to_vec(), b"[]".to_vec()] {
            let resp = c.request(&Req::post("/webhooks/telecom", body.clone()));
            assert_eq!((resp.status, resp.text().as_str()), (200, "OK"));
            // Chunked too, on the same connection.
            let resp = c.request(&Req::new("POST", "/webhooks/telecom").chunked(&[&body]));
            assert_eq!((resp.status, resp.text().as_str()), (200, "OK"));
        }
        assert!(voice.requests().is_empty() && sms.requests().is_empty() && fax.requests().is_empty());
        assert!(other.requests().is_empty());
    }

    fn a_plain_catch_all_gets_the_body_as_read(driver) {
        // Without the `respond` route: the next route is a plain upstream one.
        let origin = Origin::echo();
        let other = Origin::echo();
        let toml = "[[upstreams]]\nname = \"a\"\nservers = [\"{a}\"]\n[[upstreams]]\nname = \"b\"\nservers = [\"{b}\"]\n\
[[routes]]\nid = \"voice\"\npath_exact = \"/hook\"\nupstream = \"a\"\njson_match = { path = \"items.0.kind\", values = [\"call\"] }\n\
[[routes]]\nid = \"rest\"\npath_prefix = \"/\"\nupstream = \"b\"\n";
        let gw = Gw::start(driver, &fill(toml, &[("a", origin.addr()), ("b", other.addr())]));
        let mut c = gw.client();
        let body = br#"{"items":[{"kind":"sms"}]}"#.to_vec();
        let resp = c.request(&Req::new("POST", "/hook").chunked(&[&body[..5], &body[5..]]));
        assert_eq!(resp.status, 200);
        let got = other.only_request();
        assert_eq!(got.body, body);
        assert_eq!(got.header("content-length"), Some(&*body.len().to_string()));
        let resp = c.request(&Req::post("/hook", r#"{"items":[{"kind":"call"}]}"#));
        assert_eq!(resp.status, 200);
        assert_eq!(origin.requests().len(), 1);
    }

    fn malformed_json_is_400_and_too_large_is_413(driver) {
        let (voice, sms, fax, other) = (Origin::echo(), Origin::echo(), Origin::echo(), Origin::echo());
        let gw = telecom(driver, &voice, &sms, &fax, &other);
        let mut c = gw.client();
        let resp = c.request(&Req::post("/webhooks/telecom", &b"{\"data\": {\"event_type\": \"call.hangup\""[..]));
        resp.assert_json_error(400);
        // The connection is still good: the body was read.
        let resp = c.request(&Req::post("/webhooks/telecom", event("call.hangup")));
        assert_eq!(resp.status, 200);
        // Over the first candidate's limit (1 MiB by default).
        let big = format!("{{\"data\":{{\"event_type\":\"call.hangup\",\"pad\":\"{}\"}}}}", "x".repeat(1024 * 1024));
        let resp = gw.client().request(&Req::post("/webhooks/telecom", big.clone()));
        resp.assert_json_error(413);
        let resp = gw.client().request(&Req::new("POST", "/webhooks/telecom").chunked(&[big.as_bytes()]));
        resp.assert_json_error(413);
        assert_eq!(voice.requests().len(), 1);
        assert!(other.requests().is_empty());
    }

    fn a_body_that_never_ends_is_408_within_the_request_timeout(driver) {
        let (voice, sms, fax, other) = (Origin::echo(), Origin::echo(), Origin::echo(), Origin::echo());
        let toml = fill(
            "[[upstreams]]\nname = \"voice\"\nservers = [\"{voice}\"]\n\
             [[routes]]\nid = \"voice\"\npath_exact = \"/hook\"\nupstream = \"voice\"\ntimeout_ms = 300\n\
             json_match = { path = \"a\", values = [\"b\"] }\n",
            &[("voice", voice.addr())],
        );
        let gw = Gw::start(driver, &toml);
        let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
        use std::io::{Read, Write};
        s.write_all(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":").unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(voice.requests().is_empty());
        drop((sms, fax, other));
    }

    fn other_routes_keep_streaming(driver) {
        let (voice, sms, fax, other) = (Origin::echo(), Origin::echo(), Origin::echo(), Origin::echo());
        let gw = telecom(driver, &voice, &sms, &fax, &other);
        // 3 MiB, not JSON, past every body route's limit: streamed through the catch-all.
        let body = pattern(3 * 1024 * 1024, 7);
        let resp = gw.client().request(&Req::post("/upload", body.clone()));
        assert_eq!(resp.status, 200);
        assert_eq!(checksum(&other.last_request().body), checksum(&body));
    }
}

/// The IoT ingestion route in front of `lake`.
fn iot(driver: IoDriver, lake: std::net::SocketAddr) -> Gw {
    let up = fill(
        "[[upstreams]]\nname = \"lake\"\nservers = [\"{lake}\"]\nretries = 1\n",
        &[("lake", lake)],
    );
    iot_with_upstream(driver, &up)
}

/// The IoT route after `upstream` (the `lake` upstream's table).
fn iot_with_upstream(driver: IoDriver, upstream: &str) -> Gw {
    // Read when the configuration is loaded (`${env:EDGE_POP}`).
    std::env::set_var("EDGE_POP", "fra1");
    let toml = format!("{upstream}\
[[routes]]\nid = \"readings\"\npath_exact = \"/ingest\"\nmethods = [\"POST\"]\nupstream = \"lake\"\n\
validate = {{ schema_file = \"config/schemas/sensor.json\" }}\n\
json_body = {{ set = {{ edge_pop = \"${{env:EDGE_POP}}\", received_at = \"${{now_ms}}\", device_id = \"${{header:X-Device-ID}}\" }}, \
wrap = {{ key = \"reading\", set = {{ edge_pop = \"${{env:EDGE_POP}}\" }} }} }}\n");
    Gw::start(driver, &toml)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

both_drivers! {
    fn iot_reading_is_validated_enriched_and_wrapped(driver) {
        let lake = Origin::echo();
        let gw = iot(driver, lake.addr());
        let reading = json!({"sensor_type": "temperature", "value": 21.5, "unit": "C", "timestamp": 1765000000000u64});
        let before = now_ms();
        let resp = gw.client().request(
            &Req::post("/ingest", serde_json::to_vec(&reading).unwrap()).header("X-Device-ID", "dev-42"),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        let got = lake.only_request();
        assert_eq!(got.header("content-length"), Some(&*got.body.len().to_string()));
        let mut v: Value = serde_json::from_slice(&got.body).unwrap();
        let at = v["reading"]["received_at"].as_u64().expect("received_at is a number");
        assert!(at >= before && at <= now_ms(), "{at}");
        v["reading"]["received_at"] = json!(0);
        assert_eq!(v, json!({
            "reading": {"sensor_type": "temperature", "value": 21.5, "unit": "C", "timestamp": 1765000000000u64,
                        "edge_pop": "fra1", "received_at": 0, "device_id": "dev-42"},
            "edge_pop": "fra1"
        }));
    }

    fn invalid_reading_is_400_naming_the_field(driver) {
        let lake = Origin::echo();
        let gw = iot(driver, lake.addr());
        let mut c = gw.client();
        let resp = c.request(&Req::post("/ingest", r#"{"sensor_type":"t","value":"abc","timestamp":1}"#));
        resp.assert_json_error(400);
        let msg = resp.json()["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("/value") && msg.contains("\"abc\" is not of type \"number\""), "{msg}");
        let resp = c.request(&Req::post("/ingest", r#"{"sensor_type":"t","value":1}"#));
        resp.assert_json_error(400);
        assert!(resp.json()["message"].as_str().unwrap().contains("timestamp"), "{}", resp.text());
        let resp = c.request(&Req::post("/ingest", "not json"));
        resp.assert_json_error(400);
        // A huge bad value is not echoed back.
        let long = format!(r#"{{"sensor_type":"t","value":"{}","timestamp":1}}"#, "z".repeat(100_000));
        let resp = c.request(&Req::post("/ingest", long));
        resp.assert_json_error(400);
        assert!(resp.body.len() < 1024, "{}", resp.body.len());
        assert!(lake.requests().is_empty());
    }

    fn data_lake_down_is_502(driver) {
        let gw = iot(driver, dead_addr());
        let resp = gw.client().request(&Req::post("/ingest", r#"{"sensor_type":"t","value":1,"timestamp":1}"#));
        resp.assert_json_error(502);
    }

    fn data_lake_500_is_502_and_never_sent_again(driver) {
        let lake = Origin::start(|_| Reply::new(500).body("lake is full"));
        let gw = iot(driver, lake.addr());
        let resp = gw.client().request(&Req::post("/ingest", r#"{"sensor_type":"t","value":1,"timestamp":1}"#));
        resp.assert_json_error(502);
        assert_eq!(lake.requests().len(), 1);
    }

    fn data_lake_too_slow_is_502_and_sent_once(driver) {
        let lake = Origin::start(|_| Reply::ok("late").delay_ms(2000));
        let text = fill(
            "[[upstreams]]\nname = \"lake\"\nservers = [\"{lake}\"]\nresponse_timeout_ms = 200\n",
            &[("lake", lake.addr())],
        );
        let gw = iot_with_upstream(driver, &text);
        let resp = gw.client().request(&Req::post("/ingest", r#"{"sensor_type":"t","value":1,"timestamp":1}"#));
        resp.assert_json_error(502);
        assert_eq!(lake.wait_requests(1).len(), 1);
    }

    fn rename_remove_set_wrap(driver) {
        let origin = Origin::echo();
        let toml = "\
[[upstreams]]\nname = \"old\"\nservers = [\"{o}\"]\n\
[[routes]]\nid = \"rename\"\npath_exact = \"/rename\"\nupstream = \"old\"\njson_body = { rename = { msisdn = \"phone\" } }\n\
[[routes]]\nid = \"remove\"\npath_exact = \"/remove\"\nupstream = \"old\"\njson_body = { remove = [\"debug\", \"absent\"] }\n\
[[routes]]\nid = \"set\"\npath_exact = \"/set\"\nupstream = \"old\"\njson_body = { set = { v = \"2\", who = \"${header:X-Who}\", gone = \"${header:X-None}\" } }\n\
[[routes]]\nid = \"wrap\"\npath_exact = \"/wrap\"\nupstream = \"old\"\njson_body = { wrap = \"data\" }\n\
[[routes]]\nid = \"all\"\npath_exact = \"/all\"\nupstream = \"old\"\n\
json_body = { rename = { a = \"b\" }, remove = [\"b\"], set = { b = \"set\" }, wrap = { key = \"w\", set = { k = \"v\" } } }\n";
        let gw = Gw::start(driver, &fill(toml, &[("o", origin.addr())]));
        let mut c = gw.client();
        let mut send = |path: &str, body: &str| -> Value {
            let resp = c.request(&Req::post(path, body.to_owned()).header("X-Who", "me"));
            assert_eq!(resp.status, 200, "{path}: {}", resp.text());
            serde_json::from_slice(&origin.last_request().body).unwrap()
        };
        assert_eq!(send("/rename", r#"{"msisdn":"+1","x":1}"#), json!({"phone":"+1","x":1}));
        assert_eq!(send("/remove", r#"{"debug":true,"x":1}"#), json!({"x":1}));
        assert_eq!(send("/set", r#"{"v":1}"#), json!({"v":"2","who":"me","gone":null}));
        assert_eq!(send("/wrap", r#"{"x":[1]}"#), json!({"data":{"x":[1]}}));
        // rename, then remove (the renamed key), then set, then wrap.
        assert_eq!(send("/all", r#"{"a":1,"c":2}"#), json!({"w":{"b":"set","c":2},"k":"v"}));
        // Keys keep their order: a renamed key stays in place, removing one leaves the
        // others where they were, set and wrap keys come after.
        let mut raw = |path: &str, body: &str| -> String {
            let resp = c.request(&Req::post(path, body.to_owned()).header("X-Who", "me"));
            assert_eq!(resp.status, 200, "{path}: {}", resp.text());
            String::from_utf8(origin.last_request().body.to_vec()).unwrap()
        };
        assert_eq!(raw("/rename", r#"{"z":0,"msisdn":"+1","a":1}"#), r#"{"z":0,"phone":"+1","a":1}"#);
        assert_eq!(raw("/remove", r#"{"z":0,"debug":1,"a":1}"#), r#"{"z":0,"a":1}"#);
        assert_eq!(raw("/set", r#"{"z":0,"v":1}"#), r#"{"z":0,"v":"2","who":"me","gone":null}"#);
        assert_eq!(raw("/all", r#"{"z":0,"a":1,"c":2}"#), r#"{"w":{"z":0,"c":2,"b":"set"},"k":"v"}"#);
        let resp = c.request(&Req::post("/wrap", "[1]"));
        resp.assert_json_error(400);
    }
}

/// A route block with `key` after an upstream; the error `Config::parse` gives.
fn config_error(key: &str) -> String {
    let text = format!(
        "[[upstreams]]\nname = \"u\"\nservers = [\"127.0.0.1:1\"]\n\
         [[routes]]\nid = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\nauth = \"none\"\n{key}\n"
    );
    match ringgate::config::Config::parse(&text, "t.toml") {
        Ok(_) => panic!("accepted: {key}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_body_keys_are_config_errors_with_key_and_line() {
    let e = config_error("validate = { schema_file = \"config/schemas/missing.json\" }");
    assert!(
        e.contains("t.toml:9") && e.contains("validate.schema_file") && e.contains("cannot read"),
        "{e}"
    );
    let e = config_error("validate = { schema_file = \"Cargo.toml\" }");
    assert!(e.contains("t.toml:9") && e.contains("not JSON"), "{e}");
    let dir = std::env::temp_dir().join(format!("ringgate-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"type": "no-such-type"}"#).unwrap();
    let e = config_error(&format!(
        "validate = {{ schema_file = {:?} }}",
        bad.to_str().unwrap()
    ));
    assert!(
        e.contains("t.toml:9") && e.contains("not a valid JSON Schema"),
        "{e}"
    );
    let e = config_error("json_match = { path = \"data..type\", values = [\"x\"] }");
    assert!(
        e.contains("t.toml:9") && e.contains("json_match.path"),
        "{e}"
    );
    let e = config_error("json_match = { path = \"a\", values = [] }");
    assert!(e.contains("json_match.values"), "{e}");
    let e = config_error("json_body = { set = { a = \"${nope}\" } }");
    assert!(
        e.contains("t.toml:9") && e.contains("json_body.set.a"),
        "{e}"
    );
    let e = config_error("json_body = { wrap = { key = \"r\", extra = 1 } }");
    assert!(e.contains("wrap"), "{e}");
    let e = config_error("json_match = { path = \"a\", value = [\"x\"] }");
    assert!(e.contains("value"), "{e}");
}
