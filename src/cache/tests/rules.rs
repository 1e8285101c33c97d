//! RFC 9111 rules on real header bytes: storability, lifetime, stale windows, request
//! directives, the stored head, age, conditional requests, invalidation.

use super::*;

fn refused(route: &RouteCache, status_line: &str, fields: &str) -> NotStorable {
    storable(&get(), route, &resp(status_line, fields).parts(), UNIX_NOW).unwrap_err()
}

#[test]
fn lifetime_is_s_maxage_then_max_age_then_expires_then_ttl() {
    let rt = route(300);
    let life = |f: &str| store_ok(&rt, &resp("200 OK", f)).lifetime;
    assert_eq!(life(""), secs(300));
    assert_eq!(life("Cache-Control: max-age=60"), secs(60));
    assert_eq!(life("Cache-Control: max-age=60, s-maxage=5"), secs(5));
    assert_eq!(
        life("Cache-Control: s-maxage=5\nCache-Control: max-age=60"),
        secs(5)
    );
    assert_eq!(
        life("Date: Sun, 06 Nov 1994 08:49:37 GMT\nExpires: Sun, 06 Nov 1994 08:51:37 GMT"),
        secs(120)
    );
    // max-age wins over Expires.
    assert_eq!(
        life("Expires: Sun, 06 Nov 1994 08:51:37 GMT\nCache-Control: max-age=7"),
        secs(7)
    );
    // Without Date, Expires counts from now.
    assert_eq!(life("Expires: Sun, 06 Nov 1994 08:50:37 GMT"), secs(60));
    // Too large: 2^31.
    assert_eq!(
        life("Cache-Control: max-age=99999999999999999999999"),
        secs(MAX_DELTA)
    );
}

#[test]
fn invalid_or_conflicting_freshness_is_stale_and_not_stored() {
    let rt = route(300);
    assert_eq!(
        refused(&rt, "200 OK", "Expires: 0"),
        NotStorable::NoFreshness
    );
    assert_eq!(
        refused(&rt, "200 OK", "Cache-Control: max-age=10, max-age=20"),
        NotStorable::NoFreshness
    );
    assert_eq!(
        refused(&rt, "200 OK", "Cache-Control: max-age=abc"),
        NotStorable::NoFreshness
    );
    assert_eq!(
        refused(&rt, "200 OK", "Cache-Control: max-age=0"),
        NotStorable::NoFreshness
    );
    // Repeated with the same value is fine.
    let r = resp(
        "200 OK",
        "Cache-Control: max-age=10\nCache-Control: max-age=10",
    );
    assert_eq!(store_ok(&rt, &r).lifetime, secs(10));
    // Stale at once, but usable on error: stored.
    let r = resp("200 OK", "Cache-Control: max-age=0, stale-if-error=60");
    assert_eq!(store_ok(&rt, &r).stale_if_error, secs(60));
}

#[test]
fn no_store_private_no_cache_and_set_cookie_are_not_stored() {
    let rt = route(300);
    let cases = [
        ("Cache-Control: no-store", NotStorable::NoStore),
        ("Cache-Control: max-age=60, No-Store", NotStorable::NoStore),
        ("Cache-Control: private", NotStorable::Private),
        ("Cache-Control: private, max-age=60", NotStorable::Private),
        ("Cache-Control: no-cache", NotStorable::NoCache),
        ("Set-Cookie: sid=1; HttpOnly", NotStorable::SetCookie),
        (
            "Cache-Control: public, max-age=60\nset-cookie: a=b",
            NotStorable::SetCookie,
        ),
        ("Vary: *", NotStorable::VaryStar),
        ("Vary: Accept, *", NotStorable::VaryStar),
        (
            "Transfer-Encoding: gzip, chunked",
            NotStorable::TransferCoding,
        ),
    ];
    for (fields, why) in cases {
        assert_eq!(refused(&rt, "200 OK", fields), why, "{fields}");
    }
}

#[test]
fn qualified_no_cache_and_private_only_omit_their_fields() {
    let rt = route(300);
    let r = resp(
        "200 OK",
        "Cache-Control: no-cache=\"X-Secret, X-Other\", private=\"X-User\", max-age=60\n\
         X-Secret: s\nX-User: u\nX-Kept: k\nX-other: o\nDate: Sun, 06 Nov 1994 08:49:37 GMT",
    );
    let st = store_ok(&rt, &r);
    let omit: Vec<&[u8]> = st.omit.iter().map(|o| &o[..]).collect();
    assert_eq!(omit, vec![&b"x-other"[..], b"x-secret", b"x-user"]);
    let e = Entry::build(
        st,
        &r.parts(),
        Rc::from(&b""[..]),
        Instant::now(),
        Instant::now(),
        &[],
    )
    .unwrap();
    let names: Vec<&[u8]> = e.headers().map(|(n, _)| n).collect();
    assert_eq!(names, vec![&b"Cache-Control"[..], b"X-Kept", b"Date"]);
}

#[test]
fn any_known_status_with_explicit_freshness_is_stored_the_others_by_ttl() {
    let rt = route(300);
    // Without explicit freshness: the heuristically cacheable statuses, for ttl_s.
    for s in CACHEABLE_STATUSES {
        let r = resp(&format!("{s} X"), "");
        assert_eq!(store_ok(&rt, &r).lifetime, secs(300), "{s}");
    }
    for s in [201, 202, 302, 303, 307, 400, 401, 403, 500, 502, 503, 504] {
        for fields in [
            "",
            "Cache-Control: public",
            "Cache-Control: stale-if-error=60",
        ] {
            assert_eq!(
                refused(&rt, &format!("{s} X"), fields),
                NotStorable::Status(s),
                "{s} {fields}"
            );
        }
    }
    // With it, any status RFC 9110 defines (RFC 9111 3), for its own lifetime.
    for s in STORABLE_STATUSES {
        for (fields, life) in [
            ("Cache-Control: max-age=60", 60),
            ("Cache-Control: s-maxage=7", 7),
            ("Expires: Sun, 06 Nov 1994 08:50:37 GMT", 60),
        ] {
            let r = resp(&format!("{s} X"), fields);
            assert_eq!(store_ok(&rt, &r).lifetime, secs(life), "{s} {fields}");
        }
        // Explicitly stale: not stored, however cacheable the status.
        assert_eq!(
            refused(&rt, &format!("{s} X"), "Expires: 0"),
            NotStorable::NoFreshness,
            "{s}"
        );
    }
    let found = resp("302 Found", "Location: /x\nCache-Control: max-age=60");
    assert_eq!(store_ok(&rt, &found).lifetime, secs(60));
    // Never: not final, partial (no range support), a 304 (it updates an entry),
    // unused or unknown.
    for s in [
        100, 101, 103, 199, 206, 299, 304, 305, 306, 418, 499, 599, 600, 999,
    ] {
        assert!(!STORABLE_STATUSES.contains(&s), "{s}");
        assert_eq!(
            refused(&rt, &format!("{s} X"), "Cache-Control: public, max-age=60"),
            NotStorable::Status(s),
            "{s}"
        );
    }
    // The usual rules hold for every status.
    for (fields, why) in [
        ("Cache-Control: max-age=60, no-store", NotStorable::NoStore),
        ("Cache-Control: max-age=60, private", NotStorable::Private),
        (
            "Cache-Control: max-age=60\nSet-Cookie: a=b",
            NotStorable::SetCookie,
        ),
        ("Cache-Control: max-age=60\nVary: *", NotStorable::VaryStar),
    ] {
        assert_eq!(refused(&rt, "307 X", fields), why, "{fields}");
    }
    let with_credentials = RequestFacts {
        credentials: true,
        ..get()
    };
    let r = resp("403 Forbidden", "Cache-Control: max-age=60");
    assert_eq!(
        storable(&with_credentials, &rt, &r.parts(), UNIX_NOW).unwrap_err(),
        NotStorable::Authorization
    );
}

#[test]
fn a_route_without_ttl_stores_only_explicitly_fresh_responses() {
    let rt = route_without_ttl();
    for (fields, life) in [
        ("Cache-Control: max-age=60", 60),
        ("Cache-Control: s-maxage=5, max-age=60", 5),
        ("Expires: Sun, 06 Nov 1994 08:51:37 GMT", 120),
        // Stale at once but explicitly so, and usable on error.
        ("Cache-Control: max-age=0, stale-if-error=60", 0),
    ] {
        assert_eq!(
            store_ok(&rt, &resp("200 OK", fields)).lifetime,
            secs(life),
            "{fields}"
        );
    }
    // No freshness information: not stored. Not even a heuristic from Last-Modified
    // (RFC 9111 4.2.2 would allow 10 % of its age; nginx makes none either), nor with
    // only a stale window.
    for fields in [
        "",
        "Cache-Control: public",
        "Last-Modified: Sun, 06 Nov 1984 08:49:37 GMT",
        "Cache-Control: stale-while-revalidate=60, stale-if-error=60",
    ] {
        assert_eq!(
            refused(&rt, "200 OK", fields),
            NotStorable::NoFreshness,
            "{fields}"
        );
    }
    assert_eq!(refused(&rt, "302 Found", ""), NotStorable::Status(302));
    let r = resp("302 Found", "Cache-Control: max-age=30");
    assert_eq!(store_ok(&rt, &r).lifetime, secs(30));
}

#[test]
fn only_get_responses_are_stored_and_request_no_store_refuses() {
    let rt = route(300);
    let r = resp("200 OK", "");
    for m in [&b"HEAD"[..], b"POST", b"PUT", b"OPTIONS"] {
        let facts = RequestFacts { method: m, ..get() };
        assert_eq!(
            storable(&facts, &rt, &r.parts(), UNIX_NOW),
            Err(NotStorable::Method)
        );
    }
    let facts = RequestFacts {
        directives: ReqDirectives::parse(b"no-store"),
        ..get()
    };
    assert_eq!(
        storable(&facts, &rt, &r.parts(), UNIX_NOW),
        Err(NotStorable::RequestNoStore)
    );
    // A route that caches only POST (nonsense, but valid config) stores nothing.
    let post_only = RouteCache {
        methods: vec!["POST".into()],
        ..route(300)
    };
    assert_eq!(
        storable(&get(), &post_only, &r.parts(), UNIX_NOW),
        Err(NotStorable::Method)
    );
    assert!(cacheable_method(&rt, b"HEAD") && cacheable_method(&rt, b"GET"));
    assert!(!cacheable_method(&rt, b"POST") && !cacheable_method(&post_only, b"POST"));
}

#[test]
fn credentials_need_a_tenant_key_or_explicit_sharing() {
    let rt = route(300);
    let with_creds = |tenant_keyed| RequestFacts {
        credentials: true,
        tenant_keyed,
        ..get()
    };
    let plain = resp("200 OK", "Cache-Control: max-age=60");
    // Keyed by the caller's tenant: stored (only that tenant will see it).
    assert!(storable(&with_creds(true), &rt, &plain.parts(), UNIX_NOW).is_ok());
    // Shared or anonymous key: RFC 9111 3.5.
    assert_eq!(
        storable(&with_creds(false), &rt, &plain.parts(), UNIX_NOW),
        Err(NotStorable::Authorization)
    );
    for allowed in [
        "public, max-age=60",
        "s-maxage=60",
        "max-age=60, must-revalidate",
    ] {
        let r = resp("200 OK", &format!("Cache-Control: {allowed}"));
        assert!(
            storable(&with_creds(false), &rt, &r.parts(), UNIX_NOW).is_ok(),
            "{allowed}"
        );
    }
}

#[test]
fn vary_names_merge_the_response_and_the_route() {
    let rt = RouteCache {
        vary: vec!["accept-language".into()],
        ..route(300)
    };
    let r = resp(
        "200 OK",
        "Vary: Accept-Encoding, accept\nVary: ACCEPT-LANGUAGE",
    );
    let st = store_ok(&rt, &r);
    let names: Vec<&[u8]> = st.vary.iter().map(|v| &v[..]).collect();
    assert_eq!(
        names,
        vec![&b"accept"[..], b"accept-encoding", b"accept-language"]
    );
}

#[test]
fn hop_by_hop_and_connection_named_fields_are_not_stored() {
    let rt = route(300);
    let r = resp(
        "200 OK",
        "Connection: X-Trace, close\nX-Trace: 1\nKeep-Alive: timeout=5\nUpgrade: h2c\n\
         Proxy-Connection: keep-alive\nAge: 3\nX-Cache: HIT\nContent-Length: 5\n\
         Content-Type: text/plain\nServer: origin\nDate: Sun, 06 Nov 1994 08:49:37 GMT",
    );
    let st = store_ok(&rt, &r);
    let omit = ["server".to_owned()];
    let e = Entry::build(
        st,
        &r.parts(),
        Rc::from(&b"hello"[..]),
        Instant::now(),
        Instant::now(),
        &omit,
    )
    .unwrap();
    let fields: Vec<(&[u8], &[u8])> = e.headers().collect();
    let date = &b"Sun, 06 Nov 1994 08:49:37 GMT"[..];
    assert_eq!(
        fields,
        vec![(&b"Content-Type"[..], &b"text/plain"[..]), (b"Date", date)]
    );
    assert_eq!(
        e.head(),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    );
}

#[test]
fn a_body_shorter_or_longer_than_content_length_is_refused() {
    let rt = route(300);
    let r = resp("200 OK", "Content-Length: 10");
    for body in [&b"short"[..], b"much too long"] {
        let st = store_ok(&rt, &r);
        let now = Instant::now();
        let e = Entry::build(st, &r.parts(), Rc::from(body), now, now, &[]);
        assert_eq!(e.unwrap_err(), NotStorable::Truncated);
    }
}

#[test]
fn revalidation_directives_close_the_stale_windows() {
    let rt = route(300);
    let st = |cc: &str| store_ok(&rt, &resp("200 OK", &format!("Cache-Control: {cc}")));
    let open = st("max-age=10, stale-while-revalidate=30, stale-if-error=60");
    assert_eq!(
        (open.stale_while_revalidate, open.stale_if_error),
        (secs(30), secs(60))
    );
    assert!(!open.must_revalidate);
    for closing in ["must-revalidate", "proxy-revalidate", "s-maxage=10"] {
        let s = st(&format!(
            "max-age=10, stale-while-revalidate=30, stale-if-error=60, {closing}"
        ));
        assert_eq!(
            (s.stale_while_revalidate, s.stale_if_error),
            (secs(0), secs(0))
        );
        assert!(s.must_revalidate, "{closing}");
    }
}

#[test]
fn request_directives() {
    let d = ReqDirectives::parse(b"No-Cache, max-age=5, MAX-STALE, min-fresh=3, only-if-cached");
    assert!(d.no_cache && !d.no_store && d.only_if_cached);
    assert_eq!(
        (d.max_age, d.max_stale, d.min_fresh),
        (Some(5), Some(MAX_DELTA), Some(3))
    );
    assert_eq!(ReqDirectives::parse(b"max-stale=7").max_stale, Some(7));
    assert!(ReqDirectives::parse(b" no-store ").no_store);
    assert_eq!(ReqDirectives::parse(b"max-age=abc").max_age, None);
    // Pragma counts only without Cache-Control.
    let h: &[(&str, &str)] = &[("Pragma", "no-cache")];
    assert!(ReqDirectives::from_request(h).no_cache);
    let h: &[(&str, &str)] = &[("Pragma", "no-cache"), ("Cache-Control", "max-age=9")];
    let d = ReqDirectives::from_request(h);
    assert!(!d.no_cache && d.max_age == Some(9));
    let h: &[(&str, &str)] = &[
        ("cache-control", "max-age=9"),
        ("Cache-Control", "no-store"),
    ];
    assert!(ReqDirectives::from_request(h).no_store);
}

#[test]
fn cache_control_parsing_handles_quotes_and_garbage() {
    let all: Vec<_> =
        crate::cache::rules::directives(b"private=\"a, b\", max-age = 60 ,,junk junk, x=\"q\\\"\"")
            .collect();
    assert_eq!(
        all,
        vec![
            (&b"private"[..], Some(&b"a, b"[..])),
            (b"max-age", Some(b"60")),
            (b"junk", None),
            (b"x", Some(b"q\\\"")),
        ]
    );
    assert_eq!(crate::cache::rules::parse_delta(b"0042"), Some(42));
    assert_eq!(crate::cache::rules::parse_delta(b"-1"), None);
    assert_eq!(crate::cache::rules::parse_delta(b""), None);
}

#[test]
fn unsafe_methods_with_non_error_status_invalidate() {
    assert!(invalidates(b"POST", 201) && invalidates(b"PUT", 204) && invalidates(b"DELETE", 200));
    assert!(invalidates(b"PATCH", 303));
    assert!(!invalidates(b"POST", 404) && !invalidates(b"DELETE", 500));
    assert!(!invalidates(b"GET", 200) && !invalidates(b"HEAD", 200));
}

#[test]
fn age_counts_the_age_header_date_and_the_response_delay() {
    let rt = route(300);
    let t0 = Instant::now();
    let build = |fields: &str, requested: Instant, received: Instant| {
        let r = resp("200 OK", fields);
        Entry::build(
            store_ok(&rt, &r),
            &r.parts(),
            Rc::from(&b""[..]),
            requested,
            received,
            &[],
        )
        .unwrap()
    };
    let e = build("Age: 30", t0, t0);
    assert_eq!(e.age(t0), 30);
    assert_eq!(e.age(t0 + secs(5)), 35);
    // Date 100 s before our clock: apparent age 100.
    let e = build("Date: Sun, 06 Nov 1994 08:47:57 GMT\nAge: 30", t0, t0);
    assert_eq!(e.age(t0), 100);
    // Age plus the 3 s the upstream took.
    let e = build("Age: 30", t0, t0 + secs(3));
    assert_eq!(e.age(t0 + secs(3)), 33);
    // Freshness counts the age the response arrived with.
    let e = build("Cache-Control: max-age=60\nAge: 50", t0, t0);
    assert!(e.is_fresh(t0 + secs(9)) && !e.is_fresh(t0 + secs(10)));
}

#[test]
fn written_heads_carry_age_x_cache_and_length() {
    let t0 = Instant::now();
    let e = entry_at(
        &route(300),
        "ETag: \"v1\"\nContent-Type: text/plain\nDate: Sun, 06 Nov 1994 08:49:37 GMT",
        b"hello",
        t0,
    );
    let mut out = Vec::new();
    e.write_head(&mut out, t0 + secs(7), XCache::Hit);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Type: text/plain\r\n\
         Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nAge: 7\r\nX-Cache: HIT\r\nContent-Length: 5\r\n"
    );
    let mut out = Vec::new();
    e.write_not_modified(&mut out, t0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
         Age: 0\r\nX-Cache: HIT\r\n"
    );
    // 204: no Content-Length.
    let r = resp("204 No Content", "");
    let e = Entry::build(
        store_ok(&route(1), &r),
        &r.parts(),
        Rc::from(&b""[..]),
        t0,
        t0,
        &[],
    )
    .unwrap();
    let mut out = Vec::new();
    e.write_head(&mut out, t0, XCache::Stale);
    assert_eq!(
        out,
        // No Date from the origin: the cache adds the time it received the response.
        b"HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nAge: 0\r\n\
          X-Cache: STALE\r\n"
    );
}

#[test]
fn conditional_requests_answer_304() {
    let t0 = Instant::now();
    let e = entry_at(
        &route(300),
        "ETag: W/\"v1\"\nLast-Modified: Sun, 06 Nov 1994 08:00:00 GMT",
        b"x",
        t0,
    );
    let c = |inm: Option<&str>, ims: Option<&str>| {
        conditional(&e, inm.map(str::as_bytes), ims.map(str::as_bytes))
    };
    // If-None-Match, weak comparison.
    assert!(c(Some("\"v1\""), None));
    assert!(c(Some("W/\"v1\""), None));
    assert!(c(Some("\"v0\", W/\"v1\""), None));
    assert!(c(Some("*"), None));
    assert!(!c(Some("\"v2\""), None));
    assert!(!c(Some("\"v\"1\""), None));
    // If-Modified-Since against Last-Modified.
    assert!(c(None, Some("Sun, 06 Nov 1994 08:00:00 GMT")));
    assert!(c(None, Some("Sun, 06 Nov 1994 09:00:00 GMT")));
    assert!(!c(None, Some("Sun, 06 Nov 1994 07:59:59 GMT")));
    assert!(!c(None, Some("yesterday")));
    // If-None-Match decides when present.
    assert!(!c(Some("\"v2\""), Some("Sun, 06 Nov 1994 09:00:00 GMT")));
    assert!(!c(None, None));
    // From request headers: several If-None-Match lines are one list; two
    // If-Modified-Since lines are ignored.
    let h: &[(&str, &str)] = &[("If-None-Match", "\"a\""), ("if-none-match", "\"v1\"")];
    assert!(e.not_modified(h));
    let h: &[(&str, &str)] = &[
        ("If-Modified-Since", "Sun, 06 Nov 1994 09:00:00 GMT"),
        ("If-Modified-Since", "Sun, 06 Nov 1994 09:00:00 GMT"),
    ];
    assert!(!e.not_modified(h));
    let h: &[(&str, &str)] = &[("If-Modified-Since", "Sun, 06 Nov 1994 09:00:00 GMT")];
    assert!(e.not_modified(h));
    // Without Last-Modified, Date is the modification time.
    let e = entry_at(&route(300), "Date: Sun, 06 Nov 1994 08:00:00 GMT", b"x", t0);
    assert!(conditional(
        &e,
        None,
        Some(b"Sun, 06 Nov 1994 08:00:00 GMT")
    ));
    assert!(!conditional(&e, Some(b"\"x\""), None));
}

#[test]
fn a_304_freshens_the_entry_and_keeps_the_body() {
    let t0 = Instant::now();
    let rt = route(300);
    // A small body is copied with the new head (it shares their allocation)...
    let fields = "Cache-Control: max-age=1\nETag: \"v1\"\nX-Kept: 1";
    let small = entry_at(&rt, fields, b"body", t0);
    let r304 = resp("304 Not Modified", "Cache-Control: max-age=100");
    let t1 = t0 + secs(2);
    let f = small
        .freshen(&get(), &rt, &r304.parts(), UNIX_NOW, t1, t1, &[])
        .unwrap();
    assert_eq!(f.body().as_bytes(), Some(&b"body"[..]));
    // ... a larger one is shared, not copied.
    let body = vec![b'b'; crate::cache::WITH_HEAD_MAX + 1];
    let e = entry_at(&rt, fields, &body, t0);
    assert!(!e.is_fresh(t0 + secs(2)));
    let r304 = resp(
        "304 Not Modified",
        "Cache-Control: max-age=100\nETag: \"v1\"\nContent-Length: 99",
    );
    let t1 = t0 + secs(2);
    let f = e
        .freshen(&get(), &rt, &r304.parts(), UNIX_NOW, t1, t1, &[])
        .unwrap();
    assert!(f.body().same(e.body()));
    assert_eq!(f.status(), 200);
    assert!(f.is_fresh(t1 + secs(99)));
    let fields: Vec<(&[u8], &[u8])> = f.headers().collect();
    assert_eq!(
        fields,
        vec![
            // Replaced in place; the stored validator is kept (RFC 9111 3.2).
            (&b"Cache-Control"[..], &b"max-age=100"[..]),
            (b"ETag", b"\"v1\""),
            (b"X-Kept", b"1"),
            // Neither response had a Date: the cache adds the time the 304 arrived.
            (b"Date", b"Sun, 06 Nov 1994 08:49:37 GMT"),
        ]
    );
    // A 304 that forbids storing drops the entry.
    let r304 = resp("304 Not Modified", "Cache-Control: no-store");
    assert_eq!(
        e.freshen(&get(), &rt, &r304.parts(), UNIX_NOW, t1, t1, &[])
            .unwrap_err(),
        NotStorable::NoStore
    );
}

/// The fields of `e` as (name, value) strings.
fn fields_of(e: &Entry) -> Vec<(String, String)> {
    e.headers()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

#[test]
fn a_304_does_not_update_the_fields_that_describe_the_stored_body() {
    let t0 = Instant::now();
    let rt = route(300);
    let lm = "Last-Modified: Sun, 06 Nov 1994 08:00:00 GMT";
    let stored = format!(
        "Cache-Control: max-age=1\nETag: \"v1\"\n{lm}\nContent-Type: text/plain\nX-Custom: old"
    );
    let e = entry_at(&rt, &stored, b"hello", t0);
    // Everything a 304 could say about a body it does not carry, and new metadata.
    let r304 = resp(
        "304 Not Modified",
        "Content-Encoding: gzip\nContent-Length: 999\nContent-Range: bytes 0-1/2\n\
         Transfer-Encoding: gzip\nETag: W/\"v1\"\n\
         Last-Modified: Sunday, 06-Nov-94 08:00:00 GMT\n\
         Content-Type: text/html\nCache-Control: max-age=100\nX-Custom: new\nX-Added: 1",
    );
    let t1 = t0 + secs(2);
    let f = e
        .freshen(&get(), &rt, &r304.parts(), UNIX_NOW, t1, t1, &[])
        .expect("freshened");
    let want: Vec<(String, String)> = [
        // Updated fields where they were, new ones after them.
        ("Cache-Control", "max-age=100"),
        ("ETag", "\"v1\""),
        ("Last-Modified", "Sun, 06 Nov 1994 08:00:00 GMT"),
        ("Content-Type", "text/html"),
        ("X-Custom", "new"),
        ("X-Added", "1"),
        ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(fields_of(&f), want);
    assert_eq!(f.etag(), Some(&b"\"v1\""[..]));
    assert_eq!(f.body().as_bytes(), Some(&b"hello"[..]));
    assert!(f.is_fresh(t1 + secs(99)));
    let mut head = Vec::new();
    f.write_head(&mut head, t1, XCache::Hit);
    let head = String::from_utf8(head).unwrap();
    assert!(head.contains("\r\nContent-Length: 5\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("content-range"),
        "{head}"
    );

    // A stored coding stays, whatever the 304 says of it.
    let gz = entry_at(
        &rt,
        "Cache-Control: max-age=1\nContent-Encoding: gzip",
        b"\x1f\x8b",
        t0,
    );
    for fields in ["Content-Encoding: br", "Content-Encoding: identity", ""] {
        let r304 = resp("304 Not Modified", fields);
        let f = gz
            .freshen(&get(), &rt, &r304.parts(), UNIX_NOW, t1, t1, &[])
            .unwrap();
        let codings: Vec<(String, String)> = fields_of(&f)
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-encoding"))
            .collect();
        assert_eq!(
            codings,
            [("Content-Encoding".into(), "gzip".into())],
            "{fields}"
        );
    }
    // Nor does a 304 add validators to an entry that had none.
    let bare = entry_at(&rt, "Cache-Control: max-age=1", b"x", t0);
    let r304 = resp("304 Not Modified", &format!("ETag: \"v9\"\n{lm}"));
    let f = bare
        .freshen(&get(), &rt, &r304.parts(), UNIX_NOW, t1, t1, &[])
        .unwrap();
    assert_eq!(f.etag(), None);
    assert!(fields_of(&f).iter().all(|(n, _)| n != "Last-Modified"));
}

#[test]
fn a_304_with_other_validators_does_not_update_the_entry() {
    let t0 = Instant::now();
    let t1 = t0 + secs(2);
    let rt = route(300);
    let lm = "Sun, 06 Nov 1994 08:00:00 GMT";
    let strong = entry_at(&rt, &format!("ETag: \"v1\"\nLast-Modified: {lm}"), b"a", t0);
    let weak = entry_at(&rt, "ETag: W/\"v1\"", b"a", t0);
    let freshen = |e: &Entry, fields: &str| {
        e.freshen(
            &get(),
            &rt,
            &resp("304 Not Modified", fields).parts(),
            UNIX_NOW,
            t1,
            t1,
            &[],
        )
        .map(|_| ())
    };
    let other = Err(NotStorable::OtherRepresentation);
    // Strong comparison for a strong tag, weak for a weak one (RFC 9111 4.3.4).
    assert_eq!(freshen(&strong, "ETag: \"v1\""), Ok(()));
    assert_eq!(freshen(&strong, "ETag: W/\"v1\""), Ok(()));
    assert_eq!(freshen(&strong, "ETag: \"v2\""), other);
    assert_eq!(freshen(&strong, "ETag: W/\"v2\""), other);
    assert_eq!(freshen(&weak, "ETag: W/\"v1\""), Ok(()));
    assert_eq!(freshen(&weak, "ETag: \"v1\""), other);
    // Last-Modified compared as a date.
    assert_eq!(freshen(&strong, &format!("Last-Modified: {lm}")), Ok(()));
    assert_eq!(
        freshen(&strong, "Last-Modified: Sun Nov  6 08:00:00 1994"),
        Ok(())
    );
    assert_eq!(
        freshen(&strong, "Last-Modified: Sun, 06 Nov 1994 08:00:01 GMT"),
        other
    );
    assert_eq!(
        freshen(
            &strong,
            "ETag: \"v1\"\nLast-Modified: Mon, 07 Nov 1994 08:00:00 GMT"
        ),
        other
    );
    // A 304 without validators answered the cache's own conditional request.
    assert_eq!(freshen(&strong, "Cache-Control: max-age=60"), Ok(()));
    // A validator named by the 304's Connection is not the response's.
    assert_eq!(freshen(&strong, "Connection: ETag\nETag: \"v2\""), Ok(()));
}

#[test]
fn a_304_fields_excepted_from_storage_do_not_update() {
    let t0 = Instant::now();
    let t1 = t0 + secs(2);
    let rt = route(300);
    let e = entry_at(&rt, "X-Custom: old\nX-Other: 1", b"a", t0);
    let r304 = resp(
        "304 Not Modified",
        "Connection: X-Custom, close\nX-Custom: new\nKeep-Alive: timeout=5\nX-Other: 2",
    );
    let f = e
        .freshen(&get(), &rt, &r304.parts(), UNIX_NOW, t1, t1, &[])
        .unwrap();
    let names: Vec<(String, String)> = fields_of(&f)
        .into_iter()
        .filter(|(n, _)| n != "Date")
        .collect();
    assert_eq!(
        names,
        [
            ("X-Custom".to_owned(), "old".to_owned()),
            ("X-Other".to_owned(), "2".to_owned())
        ]
    );
}

#[test]
fn a_chunked_response_is_stored_without_its_framing() {
    let rt = route(300);
    let r = resp(
        "200 OK",
        "Transfer-Encoding: chunked\nContent-Type: text/plain",
    );
    let t0 = Instant::now();
    let e = Entry::build(
        store_ok(&rt, &r),
        &r.parts(),
        Rc::from(&b"abc"[..]),
        t0,
        t0,
        &[],
    )
    .unwrap();
    let mut out = Vec::new();
    e.write_head(&mut out, t0, XCache::Hit);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("Transfer-Encoding") && text.contains("Content-Length: 3\r\n"));
}

#[test]
fn http_dates_parse_the_same_remembered_or_not() {
    use crate::cache::rules::http_date;
    let dates: [(&[u8], Option<u64>); 6] = [
        (b"Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
        (b" Sun, 06 Nov 1994 08:49:37 GMT ", Some(784_111_777)),
        (b"Sunday, 06-Nov-94 08:49:37 GMT", Some(784_111_777)),
        (b"Mon, 06 Nov 1994 08:49:37 GMT", None),
        (b"", None),
        (
            b"Thu, 01 Jan 1970 00:00:00 GMT and then some more bytes",
            None,
        ),
    ];
    // More distinct values than the memo holds, several rounds, in both orders.
    for round in 0..3 {
        for (v, want) in dates.iter().chain(dates.iter().rev()) {
            assert_eq!(
                http_date(v),
                *want,
                "round {round}: {:?}",
                String::from_utf8_lossy(v)
            );
        }
    }
    assert_eq!(
        http_date(b"Sat, 01 Jan 2000 00:00:00 GMT"),
        Some(946_684_800)
    );
    assert_eq!(
        http_date(b"Sat, 01 Jan 2000 00:00:01 GMT"),
        Some(946_684_801)
    );
}
