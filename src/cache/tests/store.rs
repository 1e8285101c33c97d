//! The store: keys (HEAD from GET, tenants, hosts), Vary, expiry and stale windows,
//! request directives at lookup, the byte budget, invalidation.

use super::*;

const MB: usize = 1 << 20;

fn cache() -> Cache {
    Cache::new(MB, 64 * 1024)
}

fn fresh() -> ReqDirectives {
    ReqDirectives::default()
}

#[test]
fn head_is_answered_from_the_get_entry() {
    let mut c = cache();
    let t0 = Instant::now();
    let get = key("GET", "example.com", "/p?x=1", Audience::Shared);
    assert_eq!(get, key("HEAD", "example.com", "/p?x=1", Audience::Shared));
    assert_ne!(
        get,
        key("OPTIONS", "example.com", "/p?x=1", Audience::Shared)
    );
    c.insert(&get, NO_HEADERS, entry_at(&route(60), "", b"body", t0))
        .unwrap();
    let head = key("HEAD", "example.com", "/p?x=1", Audience::Shared);
    assert!(matches!(
        c.lookup(&head, NO_HEADERS, &fresh(), t0),
        Lookup::Hit(_)
    ));
}

#[test]
fn keys_normalise_the_host_and_separate_everything_else() {
    let a = Audience::Anonymous;
    assert_eq!(
        key("GET", "Example.COM:80", "/p", a),
        key("GET", "example.com", "/p", a)
    );
    assert_eq!(key("GET", "h", "", a), key("GET", "h", "/", a));
    assert_ne!(key("GET", "h:8080", "/p", a), key("GET", "h", "/p", a));
    assert_ne!(key("GET", "h", "/p?a=1", a), key("GET", "h", "/p?a=2", a));
    assert_ne!(key("GET", "h", "/P", a), key("GET", "h", "/p", a));
    // Length prefixes: no host/path split can collide.
    assert_ne!(key("GET", "ab", "/c", a), key("GET", "a", "b/c", a));
    assert_ne!(
        key("GET", "h", "/p", Audience::Shared),
        key("GET", "h", "/p", a)
    );
    assert_ne!(
        key("GET", "h", "/p", Audience::Tenant(b"")),
        key("GET", "h", "/p", Audience::Shared)
    );
}

#[test]
fn tenants_never_see_each_others_entries_unless_the_route_is_shared() {
    let t0 = Instant::now();
    let mut c = cache();
    let per_tenant = route(60);
    let (acme, globex) = (
        Audience::for_route(&per_tenant, Some("acme")),
        Audience::for_route(&per_tenant, Some("globex")),
    );
    assert!(acme.is_tenant());
    let ka = key("GET", "h", "/orders", acme);
    let kg = key("GET", "h", "/orders", globex);
    let anon = key(
        "GET",
        "h",
        "/orders",
        Audience::for_route(&per_tenant, None),
    );
    c.insert(&ka, NO_HEADERS, entry_at(&per_tenant, "", b"acme's", t0))
        .unwrap();
    assert_eq!(
        &*body_of(&c.lookup(&ka, NO_HEADERS, &fresh(), t0)).unwrap(),
        b"acme's"
    );
    assert!(matches!(
        c.lookup(&kg, NO_HEADERS, &fresh(), t0),
        Lookup::Miss
    ));
    assert!(matches!(
        c.lookup(&anon, NO_HEADERS, &fresh(), t0),
        Lookup::Miss
    ));
    c.insert(&kg, NO_HEADERS, entry_at(&per_tenant, "", b"globex's", t0))
        .unwrap();
    assert_eq!(
        &*body_of(&c.lookup(&kg, NO_HEADERS, &fresh(), t0)).unwrap(),
        b"globex's"
    );
    assert_eq!(
        &*body_of(&c.lookup(&ka, NO_HEADERS, &fresh(), t0)).unwrap(),
        b"acme's"
    );
    assert_eq!(c.stats().entries, 2);

    // shared = true: one entry for every caller.
    let shared = RouteCache {
        shared: true,
        ..route(60)
    };
    let sa = key(
        "GET",
        "h",
        "/products",
        Audience::for_route(&shared, Some("acme")),
    );
    let sg = key(
        "GET",
        "h",
        "/products",
        Audience::for_route(&shared, Some("globex")),
    );
    let sn = key("GET", "h", "/products", Audience::for_route(&shared, None));
    assert!(sa == sg && sg == sn);
    c.insert(&sa, NO_HEADERS, entry_at(&shared, "", b"catalog", t0))
        .unwrap();
    assert!(matches!(
        c.lookup(&sg, NO_HEADERS, &fresh(), t0),
        Lookup::Hit(_)
    ));
}

#[test]
fn vary_variants_are_stored_apart() {
    let t0 = Instant::now();
    let mut c = cache();
    let rt = route(60);
    let k = key("GET", "h", "/doc", Audience::Shared);
    let gzip: &[(&str, &str)] = &[("Accept-Encoding", "gzip, br"), ("X-Other", "1")];
    let gzip_again: &[(&str, &str)] = &[("accept-encoding", "gzip,br")];
    let ident: &[(&str, &str)] = &[("Accept-Encoding", "identity")];
    let absent: &[(&str, &str)] = &[];
    let empty: &[(&str, &str)] = &[("Accept-Encoding", "")];
    let vary = "Vary: Accept-Encoding";
    c.insert(&k, gzip, entry_at(&rt, vary, b"gz", t0)).unwrap();
    c.insert(&k, ident, entry_at(&rt, vary, b"plain", t0))
        .unwrap();
    assert_eq!(c.stats().entries, 2);
    let body = |c: &mut Cache, h: &[(&str, &str)]| body_of(&c.lookup(&k, h, &fresh(), t0));
    assert_eq!(&*body(&mut c, gzip).unwrap(), b"gz");
    assert_eq!(&*body(&mut c, gzip_again).unwrap(), b"gz");
    assert_eq!(&*body(&mut c, ident).unwrap(), b"plain");
    assert!(body(&mut c, absent).is_none());
    // Present but empty is not the same as absent.
    c.insert(&k, absent, entry_at(&rt, vary, b"none", t0))
        .unwrap();
    assert!(body(&mut c, empty).is_none());
    assert_eq!(&*body(&mut c, absent).unwrap(), b"none");

    // The response changes what it varies on: the old variants go.
    c.insert(&k, gzip, entry_at(&rt, "Vary: Accept-Language", b"new", t0))
        .unwrap();
    assert_eq!(c.stats().entries, 1);
    assert_eq!(&*body(&mut c, ident).unwrap(), b"new");
}

#[test]
fn the_routes_vary_headers_split_entries_too() {
    let t0 = Instant::now();
    let mut c = cache();
    let rt = RouteCache {
        vary: vec!["accept".into()],
        ..route(60)
    };
    let k = key("GET", "h", "/r", Audience::Shared);
    let json: &[(&str, &str)] = &[("Accept", "application/json")];
    let xml: &[(&str, &str)] = &[("Accept", "application/xml")];
    c.insert(&k, json, entry_at(&rt, "", b"{}", t0)).unwrap();
    assert!(matches!(c.lookup(&k, json, &fresh(), t0), Lookup::Hit(_)));
    assert!(matches!(c.lookup(&k, xml, &fresh(), t0), Lookup::Miss));
}

#[test]
fn variants_per_key_are_capped() {
    let t0 = Instant::now();
    let mut c = cache();
    let rt = route(60);
    let k = key("GET", "h", "/v", Audience::Shared);
    let values: Vec<String> = (0..MAX_VARIANTS + 3).map(|i| format!("v{i}")).collect();
    for v in &values {
        let h: &[(&str, &str)] = &[("X-V", v)];
        c.insert(&k, h, entry_at(&rt, "Vary: X-V", b"x", t0))
            .unwrap();
    }
    assert_eq!(c.stats().entries, MAX_VARIANTS);
    let first: &[(&str, &str)] = &[("X-V", "v0")];
    let last: &[(&str, &str)] = &[("X-V", values.last().unwrap())];
    assert!(matches!(c.lookup(&k, first, &fresh(), t0), Lookup::Miss));
    assert!(matches!(c.lookup(&k, last, &fresh(), t0), Lookup::Hit(_)));
}

#[test]
fn entries_turn_stale_at_their_lifetime() {
    let t0 = Instant::now();
    let mut c = cache();
    let k = key("GET", "h", "/t", Audience::Shared);
    c.insert(&k, NO_HEADERS, entry_at(&route(1), "", b"x", t0))
        .unwrap();
    assert!(matches!(
        c.lookup(&k, NO_HEADERS, &fresh(), t0 + Duration::ZERO),
        Lookup::Hit(_)
    ));
    assert!(matches!(
        c.lookup(&k, NO_HEADERS, &fresh(), t0 + Duration::from_millis(999)),
        Lookup::Hit(_)
    ));
    assert!(matches!(
        c.lookup(&k, NO_HEADERS, &fresh(), t0 + secs(1)),
        Lookup::Stale(_, StaleUse::Revalidate)
    ));
    let s = c.stats();
    assert_eq!((s.hits, s.misses), (2, 1));
}

#[test]
fn stale_while_revalidate_and_stale_if_error_windows() {
    let t0 = Instant::now();
    let mut c = cache();
    let rt = route(60);
    let k = key("GET", "h", "/swr", Audience::Shared);
    let fields = "Cache-Control: max-age=10, stale-while-revalidate=5, stale-if-error=30";
    c.insert(&k, NO_HEADERS, entry_at(&rt, fields, b"x", t0))
        .unwrap();
    assert!(matches!(
        c.lookup(&k, NO_HEADERS, &fresh(), t0 + secs(9)),
        Lookup::Hit(_)
    ));
    assert!(matches!(
        c.lookup(&k, NO_HEADERS, &fresh(), t0 + secs(12)),
        Lookup::Stale(_, StaleUse::ServeAndRevalidate)
    ));
    assert!(matches!(
        c.lookup(&k, NO_HEADERS, &fresh(), t0 + secs(15)),
        Lookup::Stale(_, StaleUse::ServeAndRevalidate)
    ));
    let Lookup::Stale(e, StaleUse::Revalidate) = c.lookup(&k, NO_HEADERS, &fresh(), t0 + secs(16))
    else {
        panic!("past stale-while-revalidate");
    };
    assert!(e.serves_on_error(t0 + secs(16)));
    assert!(e.serves_on_error(t0 + secs(40)));
    assert!(!e.serves_on_error(t0 + secs(41)));
    assert_eq!(c.stats().stale_hits, 2);

    // must-revalidate: no stale use at all, even with max-stale.
    let k2 = key("GET", "h", "/mr", Audience::Shared);
    let fields = "Cache-Control: max-age=10, stale-if-error=30, must-revalidate";
    c.insert(&k2, NO_HEADERS, entry_at(&rt, fields, b"x", t0))
        .unwrap();
    let lenient = ReqDirectives::parse(b"max-stale");
    let Lookup::Stale(e, StaleUse::Revalidate) = c.lookup(&k2, NO_HEADERS, &lenient, t0 + secs(11))
    else {
        panic!("must-revalidate");
    };
    assert!(!e.serves_on_error(t0 + secs(11)));
}

#[test]
fn request_directives_at_lookup() {
    let t0 = Instant::now();
    let mut c = cache();
    let k = key("GET", "h", "/d", Audience::Shared);
    c.insert(&k, NO_HEADERS, entry_at(&route(10), "", b"x", t0))
        .unwrap();
    // (request Cache-Control, seconds after storing, what the lookup says)
    let cases: [(&[u8], u64, &str); 9] = [
        (b"no-cache", 0, "revalidate"),
        (b"no-store", 0, "bypass"),
        (b"max-age=5", 5, "hit"),
        (b"max-age=5", 6, "revalidate"),
        (b"min-fresh=5", 5, "hit"),
        (b"min-fresh=5", 6, "revalidate"),
        (b"max-stale=3", 13, "serve stale"),
        (b"max-stale=3", 14, "revalidate"),
        (b"max-stale", 1000, "serve stale"),
    ];
    for (cc, s, want) in cases {
        let got = match c.lookup(&k, NO_HEADERS, &ReqDirectives::parse(cc), t0 + secs(s)) {
            Lookup::Hit(_) => "hit",
            Lookup::Stale(_, StaleUse::Revalidate) => "revalidate",
            Lookup::Stale(_, StaleUse::Serve) => "serve stale",
            Lookup::Stale(_, StaleUse::ServeAndRevalidate) => "serve and refresh",
            Lookup::Miss => "miss",
            Lookup::Bypass => "bypass",
        };
        assert_eq!(got, want, "{} at {s} s", String::from_utf8_lossy(cc));
    }
    assert_eq!(c.stats().bypasses, 1);
}

#[test]
fn the_byte_budget_is_never_exceeded() {
    let t0 = Instant::now();
    let budget = 64 * 1024;
    let mut c = Cache::new(budget, 16 * 1024);
    let rt = route(60);
    let body = vec![7u8; 3000];
    let mut stored = 0;
    for i in 0..200 {
        let k = key("GET", "h", &format!("/item/{i}"), Audience::Shared);
        if c.insert(&k, NO_HEADERS, entry_at(&rt, "Content-Type: x", &body, t0))
            .is_ok()
        {
            stored += 1;
        }
        let s = c.stats();
        assert!(s.bytes <= budget, "{} > {budget}", s.bytes);
    }
    let s = c.stats();
    assert_eq!(stored, 200);
    assert!(s.evictions > 0 && s.entries < 200);
    assert_eq!(s.entries as u64 + s.evictions, 200);
    // Every charge counts the keys, the head, the body and the overhead.
    assert!(s.bytes >= s.entries * (3000 + ENTRY_OVERHEAD));
    // The most recent one is there.
    let last = key("GET", "h", "/item/199", Audience::Shared);
    assert!(matches!(
        c.lookup(&last, NO_HEADERS, &fresh(), t0),
        Lookup::Hit(_)
    ));
}

#[test]
fn oversized_objects_are_refused() {
    let t0 = Instant::now();
    let mut c = Cache::new(64 * 1024, 16 * 1024);
    let rt = route(60);
    let k = key("GET", "h", "/big", Audience::Shared);
    let big = vec![0u8; 16 * 1024 + 1];
    assert_eq!(
        c.insert(&k, NO_HEADERS, entry_at(&rt, "", &big, t0)),
        Err(NotStorable::TooLarge)
    );
    assert!(c
        .insert(&k, NO_HEADERS, entry_at(&rt, "", &big[1..], t0))
        .is_ok());
    // Larger than the whole budget (object limit set above it).
    let mut tiny = Cache::new(1024, 1 << 20);
    assert_eq!(
        tiny.insert(&k, NO_HEADERS, entry_at(&rt, "", &big[..2048], t0)),
        Err(NotStorable::TooLarge)
    );
    assert_eq!(tiny.stats().refused, 1);
}

#[test]
fn replacing_an_entry_does_not_leak_bytes() {
    let t0 = Instant::now();
    let mut c = cache();
    let k = key("GET", "h", "/same", Audience::Shared);
    c.insert(&k, NO_HEADERS, entry_at(&route(60), "", b"0123456789", t0))
        .unwrap();
    let one = c.stats().bytes;
    for _ in 0..10 {
        c.insert(&k, NO_HEADERS, entry_at(&route(60), "", b"0123456789", t0))
            .unwrap();
    }
    assert_eq!(c.stats().bytes, one);
    assert_eq!(c.stats().entries, 1);
    c.clear();
    assert_eq!((c.stats().bytes, c.stats().entries), (0, 0));
}

#[test]
fn unsafe_methods_drop_every_entry_of_their_uri() {
    let t0 = Instant::now();
    let mut c = cache();
    let rt = route(60);
    let vary = "Vary: Accept";
    let json: &[(&str, &str)] = &[("Accept", "application/json")];
    let xml: &[(&str, &str)] = &[("Accept", "application/xml")];
    for aud in [
        Audience::Tenant(b"a"),
        Audience::Tenant(b"b"),
        Audience::Anonymous,
    ] {
        let k = key("GET", "api.example.com", "/items/1", aud);
        c.insert(&k, json, entry_at(&rt, vary, b"j", t0)).unwrap();
        c.insert(&k, xml, entry_at(&rt, vary, b"x", t0)).unwrap();
    }
    let other = key("GET", "api.example.com", "/items/2", Audience::Anonymous);
    c.insert(&other, NO_HEADERS, entry_at(&rt, "", b"2", t0))
        .unwrap();
    let query = key(
        "GET",
        "api.example.com",
        "/items/1?full",
        Audience::Anonymous,
    );
    c.insert(&query, NO_HEADERS, entry_at(&rt, "", b"q", t0))
        .unwrap();
    assert_eq!(c.stats().entries, 8);

    assert!(invalidates(b"PUT", 204));
    assert_eq!(c.invalidate(b"API.example.com:80", b"/items/1"), 6);
    let s = c.stats();
    assert_eq!((s.entries, s.invalidations), (2, 6));
    let k = key("GET", "api.example.com", "/items/1", Audience::Tenant(b"a"));
    assert!(matches!(c.lookup(&k, json, &fresh(), t0), Lookup::Miss));
    assert!(matches!(
        c.lookup(&other, NO_HEADERS, &fresh(), t0),
        Lookup::Hit(_)
    ));
    assert!(matches!(
        c.lookup(&query, NO_HEADERS, &fresh(), t0),
        Lookup::Hit(_)
    ));
    assert_eq!(c.invalidate(b"api.example.com", b"/items/1"), 0);
    // The entries can come back.
    c.insert(&k, json, entry_at(&rt, vary, b"j2", t0)).unwrap();
    assert_eq!(&*body_of(&c.lookup(&k, json, &fresh(), t0)).unwrap(), b"j2");
}

/// The records of one URI share its hash but for a few bits (one table serves lookups
/// and invalidation): hundreds of tenants' entries for one URI are each found, an
/// unsafe method drops all of them and nothing else, and they can come back.
#[test]
fn many_tenants_on_one_uri_are_each_found_and_all_invalidated() {
    let t0 = Instant::now();
    let mut c = cache();
    let rt = route(60);
    let tenants: Vec<Vec<u8>> = (0..400)
        .map(|i| format!("tenant-{i}").into_bytes())
        .collect();
    let keys_of = |path: &str| -> Vec<Vec<u8>> {
        tenants
            .iter()
            .map(|t| key("GET", "api.example.com", path, Audience::Tenant(t)))
            .chain([key("GET", "api.example.com", path, Audience::Anonymous)])
            .chain([key("PROPFIND", "api.example.com", path, Audience::Shared)])
            .collect()
    };
    let (mine, others) = (keys_of("/items/1"), keys_of("/items/2"));
    for (i, k) in mine.iter().chain(&others).enumerate() {
        let body = format!("body-{i}");
        c.insert(k, NO_HEADERS, entry_at(&rt, "", body.as_bytes(), t0))
            .unwrap();
    }
    for (i, k) in mine.iter().chain(&others).enumerate() {
        let got = body_of(&c.lookup(k, NO_HEADERS, &fresh(), t0)).unwrap();
        assert_eq!(&*got, format!("body-{i}").as_bytes());
    }
    assert_eq!(c.invalidate(b"api.example.com", b"/items/1"), mine.len());
    for k in &mine {
        assert!(matches!(
            c.lookup(k, NO_HEADERS, &fresh(), t0),
            Lookup::Miss
        ));
    }
    for k in &others {
        assert!(matches!(
            c.lookup(k, NO_HEADERS, &fresh(), t0),
            Lookup::Hit(_)
        ));
    }
    assert_eq!(c.stats().entries, others.len());
    c.insert(&mine[7], NO_HEADERS, entry_at(&rt, "", b"back", t0))
        .unwrap();
    let got = body_of(&c.lookup(&mine[7], NO_HEADERS, &fresh(), t0)).unwrap();
    assert_eq!(&*got, b"back");
}

#[test]
fn hits_share_the_body_without_copying() {
    let t0 = Instant::now();
    let mut c = cache();
    let k = key("GET", "h", "/rc", Audience::Shared);
    c.insert(&k, NO_HEADERS, entry_at(&route(60), "", b"shared", t0))
        .unwrap();
    let Lookup::Hit(e) = c.lookup(&k, NO_HEADERS, &fresh(), t0) else {
        panic!("stored just now");
    };
    let a = e.body().clone();
    assert!(a.same(e.body()));
    // Evicted or replaced while a hit is being written: the writer keeps its copy.
    c.invalidate(b"h", b"/rc");
    assert_eq!(c.stats().entries, 0);
    assert_eq!(a.as_bytes(), Some(&b"shared"[..]));
}

#[test]
fn a_response_to_a_credentialed_request_is_keyed_by_tenant() {
    let t0 = Instant::now();
    let mut c = cache();
    let rt = route(60);
    let r = resp("200 OK", "Cache-Control: max-age=60\nContent-Length: 4");
    let audience = Audience::for_route(&rt, Some("acme"));
    let facts = RequestFacts {
        credentials: true,
        tenant_keyed: audience.is_tenant(),
        ..get()
    };
    let st = storable(&facts, &rt, &r.parts(), UNIX_NOW).unwrap();
    let e = Entry::build(st, &r.parts(), Rc::from(&b"mine"[..]), t0, t0, &[]).unwrap();
    let k = key("GET", "h", "/me", audience);
    c.insert(&k, NO_HEADERS, e).unwrap();
    assert!(matches!(
        c.lookup(&k, NO_HEADERS, &fresh(), t0),
        Lookup::Hit(_)
    ));
    for other in [
        Audience::Tenant(b"globex"),
        Audience::Anonymous,
        Audience::Shared,
    ] {
        let k = key("GET", "h", "/me", other);
        assert!(matches!(
            c.lookup(&k, NO_HEADERS, &fresh(), t0),
            Lookup::Miss
        ));
    }
    // The same request keyed as shared needs the response's permission.
    let shared = RequestFacts {
        tenant_keyed: false,
        ..facts
    };
    assert_eq!(
        storable(&shared, &rt, &r.parts(), UNIX_NOW),
        Err(NotStorable::Authorization)
    );
}

#[test]
fn remove_drops_the_variant_a_request_finds() {
    let t0 = Instant::now();
    let mut c = cache();
    let rt = route(60);
    let k = key("GET", "h", "/rm", Audience::Shared);
    let en: &[(&str, &str)] = &[("Accept-Language", "en")];
    let de: &[(&str, &str)] = &[("Accept-Language", "de")];
    c.insert(&k, en, entry_at(&rt, "Vary: Accept-Language", b"en", t0))
        .unwrap();
    c.insert(&k, de, entry_at(&rt, "Vary: Accept-Language", b"de", t0))
        .unwrap();
    assert!(c.remove(&k, en));
    assert!(!c.remove(&k, en));
    assert!(matches!(c.lookup(&k, en, &fresh(), t0), Lookup::Miss));
    assert!(matches!(c.lookup(&k, de, &fresh(), t0), Lookup::Hit(_)));
    assert!(c.remove(&k, de));
    assert_eq!((c.stats().entries, c.stats().bytes), (0, 0));
}

/// A model of what must be found: with room for everything, every lookup finds
/// exactly the last body stored for its key and variant (unless invalidated or
/// removed since, or displaced by a change of Vary names); with a small budget, a
/// lookup finds that body or nothing, never another one, and the bytes charged
/// always match the entries held.
#[test]
fn the_store_agrees_with_a_model_under_random_operations() {
    use std::collections::HashMap;
    let t0 = Instant::now();
    let rt = route(600);
    let hosts = ["a.example", "b.example"];
    let paths = ["/x", "/x?1", "/y", "/y/z", "/q"];
    let tenants: [&[u8]; 3] = [b"t1", b"t2", b"t3"];
    let accepts = ["json", "xml", "html"];
    for budget in [64 * MB, 24 * 1024] {
        let mut c = Cache::new(budget, 64 * 1024);
        // (key, accept or "" for no Vary) -> body; Vary names per key.
        let mut model: HashMap<(Vec<u8>, &str), Vec<u8>> = HashMap::new();
        let mut varies: HashMap<Vec<u8>, bool> = HashMap::new();
        let mut hits = 0;
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for step in 0..20_000 {
            let host = hosts[rand(hosts.len())];
            let path = paths[rand(paths.len())];
            let aud = Audience::Tenant(tenants[rand(tenants.len())]);
            let k = key("GET", host, path, aud);
            let accept = accepts[rand(accepts.len())];
            let req = [("Accept", accept)];
            match rand(10) {
                0..=3 => {
                    let vary = rand(2) == 0;
                    let body = format!("{step}-{}", "b".repeat(rand(3000))).into_bytes();
                    let fields = if vary { "Vary: Accept" } else { "" };
                    c.insert(&k, &req[..], entry_at(&rt, fields, &body, t0))
                        .unwrap();
                    if varies.get(&k) != Some(&vary) {
                        model.retain(|(mk, _), _| *mk != k);
                        varies.insert(k.clone(), vary);
                    }
                    model.insert((k, if vary { accept } else { "" }), body);
                }
                4 => {
                    let n = c.invalidate(host.as_bytes(), path.as_bytes());
                    let before = model.len();
                    model.retain(|(mk, _), _| {
                        !tenants
                            .iter()
                            .any(|t| *mk == key("GET", host, path, Audience::Tenant(t)))
                    });
                    if budget == 64 * MB {
                        assert_eq!(n, before - model.len(), "step {step}");
                    }
                }
                5 => {
                    let v = if varies.get(&k) == Some(&true) {
                        accept
                    } else {
                        ""
                    };
                    let removed = c.remove(&k, &req[..]);
                    let had = model.remove(&(k, v)).is_some();
                    if budget == 64 * MB {
                        assert_eq!(removed, had, "step {step}");
                    }
                }
                _ => {
                    let v = if varies.get(&k) == Some(&true) {
                        accept
                    } else {
                        ""
                    };
                    let want = model.get(&(k.clone(), v));
                    let got = body_of(&c.lookup(&k, &req[..], &fresh(), t0));
                    match (got, want) {
                        (Some(g), Some(w)) => {
                            assert_eq!(&*g, &w[..], "step {step}");
                            hits += 1;
                        }
                        (None, Some(_)) => assert!(budget < 64 * MB, "step {step}: lost"),
                        (Some(g), None) => panic!(
                            "step {step}: found {:?}, nothing stored",
                            String::from_utf8_lossy(&g[..8.min(g.len())])
                        ),
                        (None, None) => {}
                    }
                }
            }
            let s = c.stats();
            assert!(s.bytes <= budget, "step {step}");
            if budget == 64 * MB {
                assert_eq!(s.entries, model.len(), "step {step}");
            }
        }
        assert!(hits > 500, "budget {budget}: only {hits} hits");
        // Emptied by invalidation, nothing is left charged.
        for host in hosts {
            for path in paths {
                c.invalidate(host.as_bytes(), path.as_bytes());
            }
        }
        let s = c.stats();
        assert_eq!((s.entries, s.bytes), (0, 0), "budget {budget}");
    }
}

/// A small body shares one allocation with its entry's head; a larger one has its
/// own. Either way the head and the body read back as they were stored, and only the
/// larger one may move into a file.
#[test]
fn small_bodies_live_with_their_head_and_read_back_whole() {
    let t0 = Instant::now();
    let rt = route(60);
    let files = BodyFiles::new(1, 10);
    let max = crate::cache::WITH_HEAD_MAX;
    for (len, with_head) in [(0, true), (5, true), (max, true), (max + 1, false)] {
        let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let e = entry_at(&rt, "X-Kept: 1", &body, t0);
        assert_eq!(e.body().as_bytes(), Some(&body[..]), "len {len}");
        assert_eq!(e.body().len(), len);
        let Body::Bytes(_, at) = e.body() else {
            panic!("in memory");
        };
        assert_eq!(*at > 0, with_head, "len {len}");
        assert!(e.head().starts_with(b"HTTP/1.1 200 OK\r\n") && e.head().ends_with(b"\r\n"));
        assert_eq!(
            e.headers().find(|(n, _)| *n == b"X-Kept"),
            Some((&b"X-Kept"[..], &b"1"[..]))
        );
        let mut out = Vec::new();
        e.body().append_to(&mut out).unwrap();
        assert_eq!(out, body);
        assert_eq!(files.wants(e.body()), !with_head, "len {len}");
    }
}

#[test]
fn a_body_moved_to_a_file_is_the_same_entry_with_the_same_bytes() {
    let mut c = cache();
    let t0 = Instant::now();
    let rt = route(60);
    let k = key("GET", "h", "/v", Audience::Shared);
    let (en, de) = ([("accept-language", "en")], [("accept-language", "de")]);
    // Larger than a body stored with its head (those never move into files).
    let english = b"english".repeat(3000);
    let deutsch = b"deutsch".repeat(3000);
    assert!(english.len() > crate::cache::WITH_HEAD_MAX);
    c.insert(
        &k,
        &en[..],
        entry_at(&rt, "Vary: Accept-Language", &english, t0),
    )
    .unwrap();
    c.insert(
        &k,
        &de[..],
        entry_at(&rt, "Vary: Accept-Language", &deutsch, t0),
    )
    .unwrap();
    let before = c.stats();
    let found = |c: &mut Cache, h: &[(&str, &str)]| match c.lookup(&k, h, &fresh(), t0) {
        Lookup::Hit(e) => e.body().clone(),
        _ => panic!("not a hit"),
    };
    let files = BodyFiles::new(1, 10);
    let old = found(&mut c, &de[..]);
    let file = files.promote(&old).expect("a file");
    // Only the variant asked for moves, and only from the body it still has.
    let en_body = found(&mut c, &en[..]);
    assert!(!c.rehome_body(&k, &de[..], &en_body, file.clone()));
    assert!(c.rehome_body(&k, &de[..], &old, file.clone()));
    assert!(
        !c.rehome_body(&k, &de[..], &old, file.clone()),
        "already moved"
    );
    let now = found(&mut c, &de[..]);
    assert!(now.same(&file) && now.as_bytes().is_none());
    assert_eq!(now.to_vec().unwrap(), deutsch);
    assert_eq!(found(&mut c, &en[..]).as_bytes().unwrap(), &english[..]);
    // A body of another length is not the same bytes.
    let short = files
        .promote(&Body::from(&deutsch[..deutsch.len() - 1]))
        .unwrap();
    assert!(!c.rehome_body(&k, &de[..], &now, short));
    assert_eq!(
        (c.stats().entries, c.stats().bytes),
        (before.entries, before.bytes)
    );
}
