//! Unit tests of parsing and validation: the reference file, the minimal file, the
//! shipped configuration files, and one test per kind of mistake checking that the
//! message names the key and the right line.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::{
    AccessLog, AuthMode, Balance, HostMatch, IoDriver, LogLevel, PathMatch, RouteTarget,
};
use super::*;

mod edge;
mod errors;
mod metrics;
mod route_limit;
mod tls;

/// The contract (`/work/shared/spec/gateway.toml`).
const SPEC: &str = include_str!("../../../../shared/spec/gateway.toml");

/// Lines 1-5: server and one upstream "a"; line 6 opens a route.
const HEAD: &str = r#"[server]
listen = ["127.0.0.1:8080"]
[[upstreams]]
name = "a"
servers = ["127.0.0.1:9001"]
"#;

const MINIMAL: &str = r#"[server]
listen = ["127.0.0.1:8080"]
[[upstreams]]
name = "a"
servers = ["127.0.0.1:9001"]
[[routes]]
id = "r"
path_prefix = "/"
upstream = "a"
"#;

/// Every `secret_env` variable holds a placeholder secret long enough for HS512; the
/// tests that are about the environment pass their own.
fn placeholder_env(_: &str) -> Option<OsString> {
    Some("p".repeat(64).into())
}

fn ok(text: &str) -> Config {
    match parse_and_validate_with(text, "test.toml", &placeholder_env) {
        Ok(cfg) => cfg,
        Err(e) => panic!("expected a valid config, got:\n{e}\n--- text:\n{text}"),
    }
}

/// Parses `text`, expects an error on `line` whose message holds every needle.
fn bad(text: &str, line: usize, needles: &[&str]) -> ConfigError {
    let err = match parse_and_validate_with(text, "test.toml", &placeholder_env) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert_eq!(err.line(), Some(line), "wrong line in: {msg}");
    assert!(
        msg.contains(&format!("line {line}")),
        "no `line {line}` in: {msg}"
    );
    assert!(
        msg.starts_with(&format!("test.toml:{line}:")),
        "bad prefix: {msg}"
    );
    for n in needles {
        assert!(msg.contains(n), "{n:?} missing from: {msg}");
    }
    assert!(msg.lines().count() <= 2, "too long: {msg}");
    err
}

/// HEAD + a route whose body starts on line 7.
fn route(body: &str) -> String {
    format!("{HEAD}[[routes]]\n{body}")
}

#[test]
fn spec_parses_and_maps_to_typed_values() {
    let cfg = ok(SPEC);
    let s = &cfg.server;
    assert_eq!(
        s.listen,
        vec!["0.0.0.0:8080".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(s.workers, 0);
    assert!(s.pin_workers);
    assert_eq!(s.io_driver, IoDriver::Auto);
    assert_eq!(s.uring_entries, 1024);
    assert_eq!(s.max_connections, 100_000);
    assert_eq!(s.graceful_shutdown, Duration::from_secs(30));
    assert!(s.trusted_proxies.is_empty());
    assert!(s.tls_listen.is_empty() && cfg.tls.is_none());
    assert_eq!(s.limits.max_header_bytes, 16_384);
    assert_eq!(s.limits.max_headers, 100);
    assert_eq!(s.limits.max_body_bytes, 10_485_760);
    assert_eq!(s.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(s.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(s.limits.request_timeout, Duration::from_secs(60));
    assert_eq!(cfg.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(cfg.admin.token_env, "GATEWAY_ADMIN_TOKEN");
    assert!(cfg.admin.requested, "the reference file writes [admin]");
    assert_eq!(cfg.log.access_log, AccessLog::Stdout);
    assert_eq!(cfg.log.level, LogLevel::Info);

    let jwt = &cfg.auth.jwt;
    assert_eq!(*jwt.leeway_s.get_ref(), 30);
    assert_eq!(
        (
            &*jwt.user_claim,
            &*jwt.tenant_claim,
            &*jwt.plan_claim,
            &*jwt.scope_claim
        ),
        ("sub", "tenant", "plan", "scope")
    );
    assert_eq!(jwt.keys.len(), 1);
    assert_eq!(jwt.keys[0].kid.as_ref().unwrap().get_ref(), "hs-1");
    assert_eq!(
        jwt.keys[0].secret_env.as_ref().unwrap().get_ref(),
        "JWT_SECRET"
    );
    assert_eq!(cfg.auth.api_keys.header.get_ref(), "X-API-Key");
    assert_eq!(cfg.rate_limit.default_plan.get_ref(), "free");
    assert_eq!(cfg.rate_limit.key.get_ref(), "tenant");
    assert_eq!(*cfg.rate_limit.sync_interval_ms.get_ref(), 20);
    assert!(cfg.rate_limit.headers);
    let plans: Vec<(&str, u32, u32)> = cfg
        .plans
        .iter()
        .map(|(n, p)| (n.as_str(), *p.requests_per_minute.get_ref(), p.burst))
        .collect();
    // File order, not alphabetical.
    assert_eq!(
        plans,
        [
            ("free", 60, 10),
            ("pro", 600, 100),
            ("enterprise", 6000, 1000)
        ]
    );
    assert!(cfg.cache.enabled);
    assert_eq!(*cfg.cache.max_bytes.get_ref(), 268_435_456);
    assert_eq!(*cfg.cache.max_object_bytes.get_ref(), 1_048_576);
    // Not in the reference file: the added key's default.
    assert_eq!(*cfg.cache.file_min_bytes.get_ref(), 131_072);

    assert_eq!(cfg.upstreams.len(), 2);
    let users = &cfg.upstreams[0];
    assert_eq!(users.name, "users");
    assert_eq!(users.servers[0].label, "127.0.0.1:9001");
    assert_eq!(users.servers[0].addr, "127.0.0.1:9001".parse().unwrap());
    assert_eq!((users.servers[0].weight, users.servers[0].tls), (1, false));
    assert_eq!(users.balance, Balance::RoundRobin);
    assert_eq!(users.connect_timeout, Duration::from_millis(1000));
    assert_eq!(users.response_timeout, Duration::from_millis(30_000));
    assert_eq!(users.idle_timeout, Duration::from_millis(60_000));
    assert_eq!((users.max_idle_per_worker, users.retries), (64, 1));
    let hc = users.health_check.as_ref().unwrap();
    assert_eq!(hc.path, "/health");
    assert_eq!(
        (hc.interval, hc.timeout),
        (Duration::from_secs(5), Duration::from_secs(1))
    );
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (2, 3));
    let cb = users.circuit_breaker.as_ref().unwrap();
    assert_eq!((cb.failure_threshold, cb.half_open_successes), (5, 2));
    assert_eq!(cb.open, Duration::from_secs(30));
    assert!(cfg.upstreams[1].health_check.is_none());
    assert!(cfg.upstreams[1].circuit_breaker.is_none());

    let r = &cfg.routes[0];
    assert_eq!(r.id, "users");
    assert_eq!(r.path, PathMatch::Prefix("/api/users".into()));
    assert_eq!(
        r.methods.as_deref().unwrap(),
        ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    );
    assert_eq!((r.host.clone(), r.headers.len()), (None, 0));
    assert_eq!(r.target, RouteTarget::Single(0));
    assert_eq!(r.strip_prefix, "");
    assert_eq!(r.auth, AuthMode::Required);
    assert_eq!(r.scopes, ["users:read"]);
    assert_eq!(r.plan, None);
    let cache = r.cache.as_ref().unwrap();
    assert_eq!(cache.ttl, Some(Duration::from_secs(300)));
    assert_eq!(cache.methods, ["GET", "HEAD"]);
    assert!(cache.vary.is_empty() && !cache.shared);
    assert_eq!(
        r.request_headers.add,
        [("X-Gateway".to_owned(), "edge".to_owned())]
    );
    assert_eq!(r.request_headers.remove, ["cookie"]);
    assert_eq!(r.response_headers.remove, ["server"]);
    assert!(r.response_headers.add.is_empty());
    assert_eq!((r.timeout, r.max_body_bytes), (None, None));
    let orders = &cfg.routes[1];
    assert_eq!(orders.target, RouteTarget::Single(1));
    assert_eq!(orders.methods, None);
    assert!(orders.cache.is_none());
}

#[test]
fn an_empty_cache_table_caches_only_what_the_origin_marks_fresh() {
    let cfg = ok(&MINIMAL.replace("upstream = \"a\"\n", "upstream = \"a\"\ncache = {}\n"));
    let cache = cfg.routes[0].cache.as_ref().expect("cache = {} caches");
    assert_eq!(cache.ttl, None);
    assert_eq!(cache.methods, ["GET", "HEAD"]);
    assert!(cache.vary.is_empty() && !cache.shared);
    let text = summary(&cfg);
    assert!(text.contains("; cache origin-fresh GET,HEAD"), "{text}");
    // ttl_s, when given, is still at least 1.
    let cfg = ok(&MINIMAL.replace(
        "upstream = \"a\"\n",
        "upstream = \"a\"\ncache = { ttl_s = 5 }\n",
    ));
    assert_eq!(
        cfg.routes[0].cache.as_ref().unwrap().ttl,
        Some(Duration::from_secs(5))
    );
    assert!(summary(&cfg).contains("; cache 5s GET,HEAD"));
}

/// The spec with every commented-out key written in. Keys the spec offers as
/// alternatives ("or path_exact", "or split", one key source per JWT key) go in
/// their own entries. `@DIR` is where [`spec_uncommented`] writes the certificates.
const SPEC_UNCOMMENTED: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
trusted_proxies = ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]
[server.tls]
listen = ["0.0.0.0:8443"]
alpn = ["http/1.1"]
min_version = "1.2"
session_tickets = true
handshake_timeout_ms = 10000
client_auth = "optional"
client_ca_file = "@DIR/ca.pem"
redirect_http = false
hsts_max_age_s = 0
[[server.tls.certificates]]
server_names = ["api.example.com", "*.example.com"]
cert_file = "@DIR/api.example.com.crt"
key_file = "@DIR/api.example.com.key"

[auth.jwt]
issuer = "https://issuer.example.com"
audience = ["api"]
[[auth.jwt.keys]]
kid = "hs-1"
algorithm = "HS256"
secret_env = "JWT_SECRET"
[[auth.jwt.keys]]
kid = "rs-1"
algorithm = "RS256"
public_key_file = "tests/keys/test-only-rs256.pub.pem"
[[auth.jwt.keys]]
kid = "rs-2"
algorithm = "RS384"
public_key_file = "tests/keys/test-only-rs256.pub.pem"

[auth.api_keys]
header = "X-API-Key"
[[auth.api_keys.keys]]
id = "key_acme_1"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
user = "svc-acme"
tenant = "acme"
plan = "pro"
scopes = ["users:read", "orders:read"]

[[upstreams]]
name = "users"
servers = ["127.0.0.1:9001", "http://127.0.0.1:9003", "https://127.0.0.1:9443",
           { address = "127.0.0.1:9004", weight = 3 }]
balance = "hash:X-User-ID"
[upstreams.tls]
server_name = "users.internal"
ca_file = "@DIR/ca.pem"
cert_file = "@DIR/client.crt"
key_file = "@DIR/client.key"
verify = true
[[upstreams]]
name = "users-canary"
servers = ["127.0.0.1:9002"]

[[routes]]
id = "users"
path_prefix = "/api/users"
methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
host = "api.example.com"
headers = { "X-Canary" = "1" }
split = [ { upstream = "users", weight = 90 },
          { upstream = "users-canary", weight = 10 } ]
strip_prefix = "/api"
auth = "required"
scopes = ["users:read"]
plan = "pro"
cache = { ttl_s = 300, methods = ["GET", "HEAD"], vary = ["Accept"], shared = false }
request_headers = { add = { "X-Gateway" = "edge" }, remove = ["Cookie"] }
response_headers = { remove = ["Server"] }
timeout_ms = 30000
max_body_bytes = 1048576

[[routes]]
id = "me"
path_exact = "/api/users/me"
host = "*.Example.com"
upstream = "users"
auth = "optional"
"#;

/// [`SPEC_UNCOMMENTED`] with its certificate files made (kept while the `Dir` lives).
fn spec_uncommented() -> (crate::tls::tests::Dir, String) {
    use crate::tls::pki::{CertSpec, TestCa};
    let dir = crate::tls::tests::Dir::new("spec");
    let ca = TestCa::new("Test CA").unwrap();
    dir.write("ca.pem", &ca.cert_pem);
    let api = ca
        .issue(&CertSpec::server(&["api.example.com", "*.example.com"]))
        .unwrap();
    dir.write("api.example.com.crt", &api.cert_pem);
    dir.write("api.example.com.key", &api.key_pem);
    let client = ca.issue(&CertSpec::client("gateway", "Example")).unwrap();
    dir.write("client.crt", &client.cert_pem);
    dir.write("client.key", &client.key_pem);
    let text = SPEC_UNCOMMENTED.replace("@DIR", &dir.root().display().to_string());
    (dir, text)
}

#[test]
fn spec_with_commented_keys_uncommented_parses() {
    let (_dir, text) = spec_uncommented();
    let cfg = ok(&text);
    let s = &cfg.server;
    let proxies: Vec<String> = s.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]);
    assert_eq!(
        s.tls_listen,
        ["0.0.0.0:8443".parse::<SocketAddr>().unwrap()]
    );
    let tls = cfg.tls.as_ref().unwrap();
    assert_eq!(
        tls.certificates[0].names,
        ["api.example.com", "*.example.com"]
    );
    assert_eq!(
        tls.settings.client_auth,
        crate::tls::server::ClientAuth::Optional
    );
    let up = cfg.upstreams[0].tls.as_ref().unwrap();
    assert_eq!(up.server_name.as_deref(), Some("users.internal"));
    assert!(up.client_cert.is_some());
    assert!(up.server_name(0).is_none() && up.server_name(2).is_some());
    assert_eq!(cfg.auth.jwt.keys.len(), 3);
    assert_eq!(cfg.auth.api_keys.keys[0].tenant.as_deref(), Some("acme"));
    let u = &cfg.upstreams[0];
    assert_eq!(u.balance, Balance::Hash("x-user-id".into()));
    let servers: Vec<(&str, u32, bool)> = u
        .servers
        .iter()
        .map(|s| (s.label.as_str(), s.weight, s.tls))
        .collect();
    assert_eq!(
        servers,
        [
            ("127.0.0.1:9001", 1, false),
            ("127.0.0.1:9003", 1, false),
            ("127.0.0.1:9443", 1, true),
            ("127.0.0.1:9004", 3, false)
        ]
    );
    let r = &cfg.routes[0];
    assert_eq!(r.host, Some(HostMatch::Exact("api.example.com".into())));
    assert_eq!(r.headers, [("x-canary".to_owned(), "1".to_owned())]);
    assert_eq!(r.target, RouteTarget::Split(vec![(0, 90), (1, 10)]));
    assert_eq!(r.strip_prefix, "/api");
    assert_eq!(r.plan.as_deref(), Some("pro"));
    assert_eq!(r.cache.as_ref().unwrap().vary, ["accept"]);
    assert_eq!(r.timeout, Some(Duration::from_millis(30_000)));
    assert_eq!(r.max_body_bytes, Some(1_048_576));
    let me = &cfg.routes[1];
    assert_eq!(me.path, PathMatch::Exact("/api/users/me".into()));
    assert_eq!(me.host, Some(HostMatch::Suffix(".example.com".into())));
    assert_eq!(me.auth, AuthMode::Optional);
}

#[test]
fn minimal_file_gets_spec_defaults() {
    let cfg = ok(MINIMAL);
    let full = ok(SPEC);
    assert_eq!(cfg.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(cfg.server.workers, full.server.workers);
    assert_eq!(cfg.server.io_driver, IoDriver::Auto);
    assert_eq!(cfg.server.uring_entries, full.server.uring_entries);
    assert_eq!(cfg.server.graceful_shutdown, full.server.graceful_shutdown);
    assert_eq!(
        cfg.server.limits.max_body_bytes,
        full.server.limits.max_body_bytes
    );
    assert_eq!(
        cfg.server.limits.request_timeout,
        full.server.limits.request_timeout
    );
    assert_eq!(cfg.admin.listen, full.admin.listen);
    assert!(!cfg.admin.requested, "no [admin]: nothing to warn about");
    assert_eq!(cfg.log.access_log, AccessLog::Stdout);
    assert!(cfg.auth.jwt.keys.is_empty());
    // No [plans] at all: the three plans of the spec.
    let names: Vec<&str> = cfg.plans.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["free", "pro", "enterprise"]);
    assert_eq!(*cfg.cache.max_bytes.get_ref(), 268_435_456);
    let u = &cfg.upstreams[0];
    assert_eq!(u.balance, Balance::RoundRobin);
    assert_eq!(u.connect_timeout, Duration::from_secs(1));
    assert_eq!((u.retries, u.max_idle_per_worker), (1, 64));
    assert!(u.health_check.is_none() && u.circuit_breaker.is_none());
    let r = &cfg.routes[0];
    assert_eq!(r.path, PathMatch::Prefix("/".into()));
    assert_eq!(r.methods, None);
    assert_eq!(r.auth, AuthMode::Required);
    assert!(r.cache.is_none() && r.request_headers.add.is_empty());
}

#[test]
fn auth_jwt_without_keys_is_fine() {
    let cfg = ok(&format!("[auth.jwt]\nissuer = \"me\"\n{MINIMAL}"));
    assert!(cfg.auth.jwt.keys.is_empty());
    assert_eq!(cfg.auth.jwt.issuer, "me");
}

#[test]
fn empty_file_has_a_default_listener_and_no_routes() {
    let cfg = ok("");
    assert_eq!(cfg.server.listen, vec!["0.0.0.0:8080".parse().unwrap()]);
    assert!(cfg.routes.is_empty() && cfg.upstreams.is_empty());
}

#[test]
fn shipped_config_files_validate() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
    let mut checked = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("examples")] {
        let mut files: Vec<_> = std::fs::read_dir(&sub)
            .unwrap_or_else(|e| panic!("{}: {e}", sub.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for path in files {
            // demo.toml is owned elsewhere; it is checked when present.
            if let Err(e) = Config::load_with_env(&path, &placeholder_env) {
                panic!("{e}");
            }
            checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for name in [
        "gateway.toml",
        "minimal.toml",
        "canary-split.toml",
        "multi-upstream.toml",
    ] {
        assert!(
            checked.iter().any(|c| c == name),
            "{name} not found: {checked:?}"
        );
    }
}

#[test]
fn summary_names_everything_and_no_secret() {
    let (_dir, spec) = spec_uncommented();
    let cfg = ok(&format!(
        "[admin]\ntoken_env = \"GATEWAY_ADMIN_TOKEN\"\nlisten = \"127.0.0.1:9901\"\n{spec}"
    ));
    let text = summary(&cfg);
    for needle in [
        "127.0.0.1:8080",
        "auto (",
        "users-canary w10",
        "hash on x-user-id",
        "127.0.0.1:9004 weight 3",
        "host *.example.com",
        "strip /api",
        "not yet active",
        "$JWT_SECRET",
        "key_acme_1",
        "free 60/min",
        "api.example.com.crt",
        "https 0.0.0.0:8443",
        "certificate 0, default: api.example.com, *.example.com",
        "client certificates optional",
        "SNI users.internal; client certificate",
        "$GATEWAY_ADMIN_TOKEN",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(!text.contains("9f86d081"), "digest printed:\n{text}");
    assert!(text.lines().count() < 40, "more than a screen:\n{text}");
}

// ---- check refuses what start would refuse: the typed forms start uses ---------------

/// An environment with only `vars` set.
fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
    move |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| OsString::from(v))
    }
}

#[test]
fn auth_missing_secret_names_key_variable_and_line() {
    let text = format!(
        "{MINIMAL}[[auth.jwt.keys]]\nkid = \"hs-1\"\nalgorithm = \"HS256\"\nsecret_env = \"RG_UNSET_SECRET\"\n"
    );
    let e = parse_and_validate_with(&text, "test.toml", &env_of(&[])).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConfigError::AuthKey { .. }), "{msg}");
    assert_eq!(e.line(), Some(13), "{msg}");
    assert!(
        msg.starts_with("test.toml:13:14: auth.jwt.keys[0].secret_env = \"RG_UNSET_SECRET\": environment variable RG_UNSET_SECRET"),
        "{msg}"
    );
    assert!(msg.contains("not set"), "{msg}");
    // A secret that is there but too short: its length is named, never its value.
    let short = env_of(&[("RG_UNSET_SECRET", "hunter2-hunter2")]);
    let msg = parse_and_validate_with(&text, "test.toml", &short)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("15 bytes") && msg.contains("line 13"), "{msg}");
    assert!(!msg.contains("hunter2"), "the secret leaked: {msg}");
    // With the variable set, the key is loaded into the form start uses.
    let set = env_of(&[("RG_UNSET_SECRET", "0123456789abcdef0123456789abcdef")]);
    let cfg = parse_and_validate_with(&text, "test.toml", &set).unwrap();
    assert!(format!("{:?}", cfg.auth_keys).contains("hs-1"));
    assert!(
        !format!("{cfg:?}").contains("0123456789abcdef"),
        "Debug shows key material"
    );
}

#[test]
fn auth_unreadable_key_file_names_key_and_line() {
    let text = format!(
        "{MINIMAL}[[auth.jwt.keys]]\nalgorithm = \"RS256\"\npublic_key_file = \"/nonexistent/k.pem\"\n"
    );
    let e = bad(
        &text,
        12,
        &[
            "auth.jwt.keys[0].public_key_file",
            "cannot read /nonexistent/k.pem",
        ],
    );
    assert!(matches!(e, ConfigError::AuthKey { .. }));
    // A file that is there but holds no key.
    let text = format!(
        "{MINIMAL}[[auth.jwt.keys]]\nalgorithm = \"RS256\"\npublic_key_file = \"Cargo.toml\"\n"
    );
    bad(
        &text,
        12,
        &["auth.jwt.keys[0].public_key_file", "not a PEM file"],
    );
}

#[test]
fn api_key_identity_that_start_refuses_is_refused() {
    let text = format!(
        "{MINIMAL}[[auth.api_keys.keys]]\nid = \"k1\"\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\nuser = \"\"\n"
    );
    let e = bad(
        &text,
        11,
        &["auth.api_keys.keys.\"k1\".id", "user must be non-empty"],
    );
    assert!(matches!(e, ConfigError::AuthKey { .. }));
}

#[test]
fn rate_limit_plan_start_refuses_is_refused() {
    let text = format!("{MINIMAL}[plans.huge]\nrequests_per_minute = 1\nburst = 4294967295\n[rate_limit]\ndefault_plan = \"huge\"\n");
    let e = bad(&text, 11, &["plans.huge.burst = 4294967295", "too large"]);
    assert!(matches!(e, ConfigError::RateLimit { .. }));
    // Accepted plans arrive typed, as the workers use them.
    let cfg = ok(&format!("{MINIMAL}[rate_limit]\ndefault_plan = \"pro\"\n"));
    assert_eq!(cfg.limits.plan(cfg.limits.default_plan).name, "pro");
}
