//! W3C Trace Context end to end, on both drivers: what the upstream receives in
//! `traceparent` for requests with a valid, an invalid, two, or no trace context, and
//! with `[tracing] traceparent = false`.

mod common;

use common::*;

const CLIENT_TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

fn parts(tp: &str) -> (String, String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "{tp}");
    (p[0].into(), p[1].into(), p[2].into(), p[3].into())
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

both_drivers! {
    fn a_trace_is_kept_with_a_new_span_or_started(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();

        // None: a trace starts, sampled.
        c.request(&Req::get("/a"));
        let first = origin.last_request();
        let tps = first.all("traceparent");
        assert_eq!(tps.len(), 1);
        let (v, trace, span, flags) = parts(tps[0]);
        assert_eq!((v.as_str(), flags.as_str()), ("00", "01"));
        assert!(is_hex(&trace, 32) && is_hex(&span, 16), "{}", tps[0]);
        c.request(&Req::get("/b"));
        let (_, trace2, _, _) = parts(origin.last_request().all("traceparent")[0]);
        assert_ne!(trace, trace2, "each request without a context starts its own trace");

        // A valid one: same trace and flags, the gateway's own span.
        c.request(&Req::get("/c").header("traceparent", CLIENT_TP).header("tracestate", "vendor=1"));
        let seen = origin.last_request();
        assert_eq!(seen.all("traceparent").len(), 1);
        let (v, trace, span, flags) = parts(seen.all("traceparent")[0]);
        assert_eq!((v.as_str(), trace.as_str(), flags.as_str()), ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "00"));
        assert!(is_hex(&span, 16));
        assert_ne!(span, "00f067aa0ba902b7");
        assert_eq!(seen.header("tracestate"), Some("vendor=1"));

        // Invalid (upper case), or two fields: not forwarded, a new trace instead.
        for req in [
            Req::get("/d").header("traceparent", &CLIENT_TP.to_uppercase()),
            Req::get("/e").header("traceparent", CLIENT_TP).header("traceparent", CLIENT_TP),
        ] {
            c.request(&req);
            let seen = origin.last_request();
            let tps = seen.all("traceparent");
            assert_eq!(tps.len(), 1, "{tps:?}");
            let (_, trace, _, flags) = parts(tps[0]);
            assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(flags, "01");
        }
    }

    fn tracing_off_forwards_the_field_as_it_came(driver) {
        let origin = Origin::echo();
        let gw = Gw::start(driver, &simple_config(&origin, "[tracing]\ntraceparent = false\n"));
        let mut c = gw.client();
        c.request(&Req::get("/a").header("traceparent", CLIENT_TP));
        assert_eq!(origin.last_request().all("traceparent"), vec![CLIENT_TP]);
        c.request(&Req::get("/b"));
        assert!(!origin.last_request().has("traceparent"));
    }
}
