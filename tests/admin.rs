//! The admin API over real sockets, on both drivers, while traffic flows: the token
//! rules, the routes API (create, patch, delete, invalid changes, `state_file` across
//! a restart), reload over the API, `/health` with circuit states, `/ready` while
//! draining, and cache purges.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::tokens::*;
use common::*;
use serde_json::{json, Value};

/// A token variable of this test's own, set before the gateway starts.
fn token_env(value: Option<&str>) -> String {
    let name = format!("RG_TEST_ADMIN_{}_{}", std::process::id(), unique());
    if let Some(v) = value {
        std::env::set_var(&name, v);
    }
    name
}

fn admin_cfg(env: &str, extra: &str) -> String {
    format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"{env}\"\n{extra}\n")
}

/// One admin call; `token` as a bearer.
fn call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut req = match &body {
        Some(b) => Req::new(method, path)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(b).unwrap()),
        None => Req::new(method, path),
    };
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    Client::connect(admin).request(&req)
}

fn admin_addr(gw: &Gw) -> SocketAddr {
    gw.gateway().admin_addr().expect("an admin listener")
}

const TOKEN: &str = "s3cret-admin-token";

both_drivers! {
    fn without_the_token_only_health_and_metrics_are_served(driver) {
        let origin = Origin::echo();
        let env = token_env(None);
        let gw = Gw::start(driver, &simple_config(&origin, &admin_cfg(&env, "")));
        let admin = admin_addr(&gw);
        let r = call(admin, "GET", "/health", None, None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(call(admin, "GET", "/ready", None, None).status, 200);
        for (m, p) in [("GET", "/api/v1/routes"), ("POST", "/api/v1/reload"), ("GET", "/api/v1/config")] {
            let r = call(admin, m, p, Some("anything"), None);
            assert_eq!(r.status, 403, "{m} {p}: {}", r.text());
            let j = r.json();
            assert_eq!(j["error"], "forbidden");
            assert!(j["message"].as_str().unwrap().contains(&env), "says which variable: {j}");
            assert!(j["request_id"].as_str().is_some_and(|s| !s.is_empty()));
        }
        // The admin API is not on the public listener.
        let r = gw.send(&Req::get("/api/v1/routes"));
        assert_eq!(origin.last_request().target, "/api/v1/routes", "proxied, not answered: {}", r.status);
    }

    fn with_the_token_every_call_needs_it_or_an_admin_jwt(driver) {
        let origin = Origin::echo();
        let keys = Keyring::new();
        let env = token_env(Some(TOKEN));
        let gw = Gw::start(
            driver,
            &simple_config(&origin, &format!("{}{}", admin_cfg(&env, ""), keys.jwt_keys_toml())),
        );
        let admin = admin_addr(&gw);
        for (path, token) in [("/health", None), ("/api/v1/routes", None), ("/api/v1/routes", Some("wrong"))] {
            let r = call(admin, "GET", path, token, None);
            assert_eq!(r.status, 401, "{path} {token:?}: {}", r.text());
            assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
            assert!(!r.text().contains(TOKEN));
        }
        assert_eq!(call(admin, "GET", "/ready", None, None).status, 200, "the load balancer's probe is open");
        assert_eq!(call(admin, "GET", "/api/v1/routes", Some(TOKEN), None).status, 200);
        let exp = now() + 600;
        let jwt = |scope: &str| keys.mint(jsonwebtoken::Algorithm::HS256, Some("hs-1"), &json!({"sub": "ops", "exp": exp, "scope": scope}));
        let r = call(admin, "GET", "/api/v1/routes", Some(&jwt("gateway:admin read")), None);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = call(admin, "GET", "/api/v1/routes", Some(&jwt("read")), None);
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("gateway:admin"));
    }

    fn routes_are_created_patched_and_deleted_on_every_worker(driver) {
        let app = Origin::named("app");
        let other = Origin::named("other");
        let env = token_env(Some(TOKEN));
        let cfg = fill(
            &format!(
                "{}\n[[upstreams]]\nname = \"app\"\nservers = [\"{{app}}\"]\n\
                 [[upstreams]]\nname = \"other\"\nservers = [\"{{other}}\"]\n\
                 [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n",
                admin_cfg(&env, "")
            ),
            &[("app", app.addr()), ("other", other.addr())],
        );
        let gw = Gw::start_workers(driver, 2, &cfg);
        let admin = admin_addr(&gw);
        let t = Some(TOKEN);
        // Management-API field names.
        let r = call(admin, "POST", "/api/v1/routes", t, Some(json!({
            "path": "/api/new", "upstream_id": "other", "auth_required": false,
            "strip_path": true, "methods": ["GET"],
        })));
        assert_eq!(r.status, 201, "{}", r.text());
        let j = r.json();
        let id = j["id"].as_str().unwrap().to_owned();
        assert_eq!(j["path"], "/api/new");
        assert_eq!(j["status"], "active");
        assert!(j["created_at"].as_str().is_some_and(|s| s.ends_with('Z')), "{j}");
        assert_eq!(j["persisted"], false, "no state_file: the API says so");
        // Served by every worker: fresh connections land on either.
        for _ in 0..16 {
            let r = gw.send(&Req::get("/api/new/x"));
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), "other", "the catch-all must not shadow the new route");
        }
        assert_eq!(other.last_request().target, "/x", "strip_path");
        let listed = call(admin, "GET", "/api/v1/routes", t, None).json();
        let ids: Vec<&str> = listed["routes"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [id.as_str(), "all"]);
        let one = call(admin, "GET", &format!("/api/v1/routes/{id}"), t, None).json();
        assert_eq!(one["source"], "api");
        assert_eq!(one["upstream"], "other");

        // Patch its upstream: seen at once on every worker.
        let r = call(admin, "PATCH", &format!("/api/v1/routes/{id}"), t, Some(json!({"upstream_id": "app"})));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["upstream"], "app");
        assert_eq!(r.json()["strip_prefix"], "/api/new", "the rest is kept");
        for _ in 0..16 {
            assert_eq!(gw.send(&Req::get("/api/new/x")).text(), "app");
        }
        // POST on its method list: not this route's any more, the catch-all takes it.
        let r = call(admin, "PATCH", &format!("/api/v1/routes/{id}"), t, Some(json!({"upstream": "other", "methods": null})));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(gw.send(&Req::post("/api/new/y", "b")).text(), "other");

        // Invalid changes name the field and change nothing.
        let r = call(admin, "POST", "/api/v1/routes", t, Some(json!({"id": "bad", "path": "/b", "upstream_id": "nope"})));
        assert_eq!(r.status, 400, "{}", r.text());
        let j = r.json();
        assert_eq!(j["error"], "invalid_route");
        assert_eq!(j["field"], "upstream");
        assert!(j["message"].as_str().unwrap().contains("nope"), "{j}");
        let r = call(admin, "POST", "/api/v1/routes", t, Some(json!({"id": "bad", "path": "/b", "upstream": "app", "colour": "red"})));
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("colour"), "{}", r.text());
        let r = call(admin, "PATCH", &format!("/api/v1/routes/{id}"), t, Some(json!({"timeout_ms": -5})));
        assert_eq!(r.status, 400, "{}", r.text());
        let r = call(admin, "POST", "/api/v1/routes", t, Some(json!({"id": id, "path": "/dup", "upstream": "app"})));
        assert_eq!(r.status, 409, "{}", r.text());
        let r = call(admin, "POST", "/api/v1/routes", t, None);
        assert_eq!(r.status, 400, "no body: {}", r.text());
        let after = call(admin, "GET", "/api/v1/routes", t, None).json();
        assert_eq!(after["routes"].as_array().unwrap().len(), 2, "nothing changed: {after}");
        assert_eq!(gw.send(&Req::get("/api/new/x")).text(), "other");

        // Delete: the catch-all takes its paths again; a second delete is 404.
        let r = call(admin, "DELETE", &format!("/api/v1/routes/{id}"), t, None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "deleted");
        for _ in 0..8 {
            assert_eq!(gw.send(&Req::get("/api/new/x")).text(), "app");
        }
        assert_eq!(call(admin, "DELETE", &format!("/api/v1/routes/{id}"), t, None).status, 404);
        let r = call(admin, "GET", &format!("/api/v1/routes/{id}"), t, None);
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["error"], "not_found");
        // A file route deleted through the API: nothing matches then.
        assert_eq!(call(admin, "DELETE", "/api/v1/routes/all", t, None).status, 200);
        assert_eq!(gw.send(&Req::get("/x")).status, 404);
    }

    fn state_file_keeps_api_changes_across_a_restart(driver) {
        let app = Origin::named("app");
        let other = Origin::named("other");
        let dir = TempDir::new("admin-state");
        let state = dir.path("state.json");
        let env = token_env(Some(TOKEN));
        let cfg = fill(
            &format!(
                "{}\n[[upstreams]]\nname = \"app\"\nservers = [\"{{app}}\"]\n\
                 [[upstreams]]\nname = \"other\"\nservers = [\"{{other}}\"]\n\
                 [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
                 [[routes]]\nid = \"old\"\npath_prefix = \"/old\"\nupstream = \"other\"\n",
                admin_cfg(&env, &format!("state_file = \"{state}\""))
            ),
            &[("app", app.addr()), ("other", other.addr())],
        );
        {
            let gw = Gw::start(driver, &cfg);
            let admin = admin_addr(&gw);
            let r = call(admin, "POST", "/api/v1/routes", Some(TOKEN), Some(json!({
                "id": "kept", "path": "/kept", "upstream_id": "other", "auth_required": false,
            })));
            assert_eq!(r.status, 201, "{}", r.text());
            assert_eq!(r.json()["persisted"], true);
            assert_eq!(gw.send(&Req::get("/kept")).text(), "other");
            let r = call(admin, "PATCH", "/api/v1/routes/all", Some(TOKEN), Some(json!({"upstream": "other"})));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(call(admin, "DELETE", "/api/v1/routes/old", Some(TOKEN), None).status, 200);
            let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
            assert_eq!(saved["deleted"], json!(["old"]));
        }
        // A new process with the same file: the changes are there.
        let gw = Gw::start(driver, &cfg);
        assert_eq!(gw.send(&Req::get("/kept")).text(), "other");
        assert_eq!(gw.send(&Req::get("/x")).text(), "other", "the patch to a file route");
        assert_eq!(gw.send(&Req::get("/old/x")).text(), "other", "old is gone; the patched catch-all answers");
        let listed = call(admin_addr(&gw), "GET", "/api/v1/routes", Some(TOKEN), None).json();
        let ids: Vec<&str> = listed["routes"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["kept", "all"]);
    }

    fn reload_over_the_api_applies_a_valid_file_and_refuses_a_broken_one(driver) {
        let app = Origin::named("app");
        let other = Origin::named("other");
        let dir = TempDir::new("admin-reload");
        let env = token_env(Some(TOKEN));
        let body = |target: &str| {
            without_auth(&render_config(
                &fill(
                    &format!(
                        "{}\n[[upstreams]]\nname = \"app\"\nservers = [\"{{app}}\"]\n\
                         [[upstreams]]\nname = \"other\"\nservers = [\"{{other}}\"]\n\
                         [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"{target}\"\n",
                        admin_cfg(&env, "")
                    ),
                    &[("app", app.addr()), ("other", other.addr())],
                ),
                driver,
                2,
            ))
        };
        let path = dir.write("gw.toml", body("app"));
        let cfg = Config::load(std::path::Path::new(&path)).unwrap();
        let gw = Gateway::start(cfg).unwrap();
        let addr = gw.addrs()[0];
        let admin = gw.admin_addr().unwrap();
        let get = || Client::connect(addr).request(&Req::get("/x")).text();
        assert_eq!(get(), "app");
        // Traffic flows on meanwhile: every request answered.
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let load = {
            let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    match c.request(&Req::get("/load")).status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => bad.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        };
        for i in 0..6 {
            std::fs::write(&path, body(if i % 2 == 0 { "other" } else { "app" })).unwrap();
            let r = call(admin, "POST", "/api/v1/reload", Some(TOKEN), None);
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["status"], "reloaded");
            assert_eq!(get(), if i % 2 == 0 { "other" } else { "app" });
        }
        // Broken: 422 naming the file and line; the old configuration serves on.
        std::fs::write(&path, body("app").replace("upstream = \"app\"\n", "upstream = \"missing\"\n")).unwrap();
        let r = call(admin, "POST", "/api/v1/reload", Some(TOKEN), None);
        assert_eq!(r.status, 422, "{}", r.text());
        let j = r.json();
        assert_eq!(j["error"], "invalid_config");
        assert_eq!(j["file"], path.as_str());
        assert!(j["line"].as_u64().is_some(), "{j}");
        assert!(j["message"].as_str().unwrap().contains("missing"), "{j}");
        assert_eq!(get(), "app");
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap();
        assert_eq!(bad.load(Ordering::Relaxed), 0, "no request lost during reloads");
        assert!(ok.load(Ordering::Relaxed) > 0);
        // The running configuration, with the file named.
        let r = call(admin, "GET", "/api/v1/config", Some(TOKEN), None);
        assert_eq!(r.status, 200);
        let j = r.json();
        assert_eq!(j["config"]["routes"][0]["upstream"], "app");
        assert!(!r.text().contains(TOKEN));
        gw.shutdown();
        gw.join();
    }

    fn health_shows_each_server_and_its_circuit(driver) {
        let origin = Origin::echo();
        let dead = dead_addr();
        let env = token_env(None);
        let cfg = fill(
            &format!(
                "{}\n[[upstreams]]\nname = \"live\"\nservers = [\"{{origin}}\"]\n\
                 [[upstreams]]\nname = \"dead\"\nservers = [\"{{dead}}\"]\nretries = 0\n\
                 [upstreams.circuit_breaker]\nfailure_threshold = 2\nopen_ms = 60000\n\
                 [[routes]]\nid = \"d\"\npath_prefix = \"/d\"\nupstream = \"dead\"\n\
                 [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"live\"\n",
                admin_cfg(&env, "")
            ),
            &[("origin", origin.addr()), ("dead", dead)],
        );
        let gw = Gw::start(driver, &cfg);
        let admin = admin_addr(&gw);
        let h = call(admin, "GET", "/health", None, None);
        assert_eq!(h.status, 200, "{}", h.text());
        let j = h.json();
        assert_eq!(j["upstreams"]["dead"]["servers"][0]["circuit"], "closed");
        for _ in 0..2 {
            assert_eq!(gw.send(&Req::get("/d")).status, 502);
        }
        let j = call(admin, "GET", "/health", None, None).json();
        assert_eq!(j["status"], "ok", "the live upstream still serves: {j}");
        assert_eq!(j["upstreams"]["dead"]["status"], "down");
        assert_eq!(j["upstreams"]["dead"]["servers"][0]["circuit"], "open");
        assert_eq!(j["upstreams"]["dead"]["servers"][0]["server"], dead.to_string());
        assert_eq!(j["upstreams"]["live"]["servers"][0]["circuit"], "closed");
        assert_eq!(j["upstreams"]["live"]["status"], "up");
    }

    fn health_is_503_when_no_server_can_serve_and_ready_is_503_while_draining(driver) {
        let dead = dead_addr();
        let env = token_env(None);
        let cfg = fill(
            &format!(
                "{}\n[server]\ngraceful_shutdown_s = 5\n\
                 [[upstreams]]\nname = \"dead\"\nservers = [\"{{dead}}\"]\nretries = 0\n\
                 [upstreams.circuit_breaker]\nfailure_threshold = 1\nopen_ms = 60000\n\
                 [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"dead\"\n",
                admin_cfg(&env, "")
            ),
            &[("dead", dead)],
        );
        let gw = Gw::start(driver, &cfg);
        let admin = admin_addr(&gw);
        assert_eq!(gw.send(&Req::get("/")).status, 502);
        let h = call(admin, "GET", "/health", None, None);
        assert_eq!(h.status, 503, "{}", h.text());
        assert_eq!(h.json()["status"], "unavailable");
        // Draining: the admin listener answers until the workers are joined.
        gw.shutdown();
        wait_until("ready says draining", || call(admin, "GET", "/ready", None, None).status == 503);
        assert_eq!(call(admin, "GET", "/ready", None, None).json()["status"], "draining");
    }

    fn purge_drops_entries_by_uri_prefix_and_tenant(driver) {
        let origin = Origin::start(|r| Reply::ok(r.target.clone()).header("Cache-Control", "max-age=300"));
        let env = token_env(Some(TOKEN));
        let cfg = fill(
            &format!(
                "{}\n[[upstreams]]\nname = \"app\"\nservers = [\"{{origin}}\"]\n\
                 [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\ncache = {{}}\n",
                admin_cfg(&env, "")
            ),
            &[("origin", origin.addr())],
        );
        let gw = Gw::start_workers(driver, 2, &cfg);
        let admin = admin_addr(&gw);
        let mut c = gw.client();
        for p in ["/a/1", "/a/2", "/b/1"] {
            c.request(&Req::get(p));
            assert_eq!(c.request(&Req::get(p)).header("x-cache"), Some("HIT"), "{p}");
        }
        let purge = |body: Value| {
            let r = call(admin, "POST", "/api/v1/cache/purge", Some(TOKEN), Some(body));
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["purged"].as_u64().unwrap()
        };
        assert_eq!(purge(json!({"uri": "/a/1"})), 1);
        assert_eq!(c.request(&Req::get("/a/1")).header("x-cache"), Some("MISS"));
        assert_eq!(c.request(&Req::get("/a/2")).header("x-cache"), Some("HIT"));
        assert_eq!(purge(json!({"prefix": "/a/"})), 2);
        assert_eq!(c.request(&Req::get("/a/2")).header("x-cache"), Some("MISS"));
        assert_eq!(c.request(&Req::get("/b/1")).header("x-cache"), Some("HIT"));
        assert_eq!(purge(json!({"tenant": "nobody"})), 0);
        assert_eq!(purge(json!({"uri": "http://gw.test/b/1"})), 1);
        let r = call(admin, "POST", "/api/v1/cache/purge", Some(TOKEN), Some(json!({"uri": "/x", "prefix": "/"})));
        assert_eq!(r.status, 400, "{}", r.text());
    }

    fn hostile_admin_requests_are_refused_cleanly(driver) {
        let origin = Origin::echo();
        let env = token_env(Some(TOKEN));
        let gw = Gw::start(driver, &simple_config(&origin, &admin_cfg(&env, "")));
        let admin = admin_addr(&gw);
        let raw = |bytes: &[u8]| {
            let mut c = Client::connect(admin);
            c.send(bytes);
            c.read_response_for("POST")
        };
        let r = raw(b"POST /api/v1/routes HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        assert_eq!(r.status, 400);
        let r = raw(b"POST /api/v1/routes HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n");
        assert_eq!(r.status, 413);
        let r = raw(b"GARBAGE\r\n\r\n");
        assert_eq!(r.status, 400);
        let r = raw(format!("GET /health HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)).as_bytes());
        assert_eq!(r.status, 431);
        assert_eq!(call(admin, "PUT", "/api/v1/routes", Some(TOKEN), None).status, 405);
        assert_eq!(call(admin, "GET", "/nope", Some(TOKEN), None).status, 404);
        // Chunked bodies are read.
        let mut c = Client::connect(admin);
        c.send(format!("POST /api/v1/cache/purge HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{{\"uri\"\r\n7\r\n: \"/x\"}}\r\n0\r\n\r\n").into_bytes());
        let r = c.read_response_for("POST");
        assert_eq!(r.status, 200, "{}", r.text());
    }
}
