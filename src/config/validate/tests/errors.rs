//! One test per kind of mistake: the error variant, and a message that names the key,
//! the value and the right line.

use super::super::super::{AccessLog, AuthMode, Balance, HostMatch, LogLevel};
use super::*;

// ---- serde errors: unknown keys and wrong types, anywhere ----------------------------

#[test]
fn unknown_top_level_key() {
    bad(
        &format!("listn = 1\n{MINIMAL}"),
        1,
        &["unknown field `listn`", "`server`"],
    );
    bad("[servr]\n", 1, &["unknown field `servr`"]);
    // After [[routes]], a key belongs to the last route: TOML has no way back to the top.
    bad(
        &format!("{MINIMAL}listn = 1\n"),
        10,
        &["routes.\"r\": unknown field `listn`"],
    );
    bad("a = 1\na = 2\n", 2, &["duplicate key `a`"]);
}

#[test]
fn unknown_nested_keys() {
    bad(
        "[server]\nlistn = []\n",
        2,
        &["server:", "`listn`", "`listen`"],
    );
    bad(
        "[server.limits]\nmax_header = 1\n",
        2,
        &["server.limits", "`max_header`"],
    );
    bad(
        "[auth.jwt]\nissuer = \"x\"\naudiance = []\n",
        3,
        &["auth.jwt", "`audiance`"],
    );
    bad(
        "[plans.gold]\nrequests_per_minut = 1\n",
        2,
        &["plans.gold", "`requests_per_minut`"],
    );
}

#[test]
fn unknown_keys_in_inline_and_array_tables() {
    bad(
        &route(
            "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\ncache = { ttl_s = 1, tll = 2 }\n",
        ),
        10,
        &["`tll`"],
    );
    bad(
        &route("id = \"r\"\npath_prefx = \"/\"\n"),
        8,
        &["routes", "`path_prefx`"],
    );
    bad(&format!("{HEAD}[[upstreams]]\nname = \"b\"\nservers = [{{ address = \"127.0.0.1:1\", wieght = 2 }}]\n"), 8, &["`wieght`"]);
    bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nsplit = [{ upstream = \"a\", weigth = 1 }]\n"),
        9,
        &["`weigth`"],
    );
    bad(
        &route(
            "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nrequest_headers = { ad = {} }\n",
        ),
        10,
        &["`ad`"],
    );
    bad(
        "[[auth.api_keys.keys]]\nid = \"k\"\nsha = \"x\"\n",
        3,
        &["auth.api_keys.keys", "`sha`"],
    );
}

#[test]
fn wrong_types_name_the_key() {
    bad(
        "[server]\nworkers = \"4\"\n",
        2,
        &["server.workers", "invalid type: string \"4\""],
    );
    bad(
        "[server]\nlisten = \"0.0.0.0:80\"\n",
        2,
        &["server.listen", "expected an array"],
    );
    bad(
        "[server.limits]\nmax_headers = -1\n",
        2,
        &["server.limits.max_headers", "non-negative"],
    );
    bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\ncache = { ttl_s = \"5m\" }\n"),
        10,
        &["routes.\"r\".cache.ttl_s"],
    );
    bad(
        &format!("{HEAD}[[upstreams]]\nname = \"b\"\nservers = [9001]\n"),
        8,
        &["upstreams.servers", "host:port"],
    );
}

/// The whole message of the error for `text`.
fn message(text: &str) -> String {
    match parse_and_validate_with(text, "test.toml", &placeholder_env) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn mistakes_inside_a_route_name_the_route() {
    let catalog = "id = \"catalog\"\npath_prefix = \"/\"\nupstream = \"a\"\n";
    assert_eq!(
        message(&route(&format!("{catalog}timeout_ms = \"5s\"\n"))),
        "test.toml:10:14: routes.\"catalog\".timeout_ms: invalid type: string \"5s\", \
         expected an integer number of milliseconds, like 5000\n  line 10 | timeout_ms = \"5s\""
    );
    assert_eq!(
        message(&route(&format!("{catalog}timeout_ms = 1.5\n"))),
        "test.toml:10:14: routes.\"catalog\".timeout_ms: invalid type: floating point `1.5`, \
         expected an integer number of milliseconds, like 5000\n  line 10 | timeout_ms = 1.5"
    );
    assert_eq!(
        message(&route(&format!("{catalog}cache = {{ ttl_s = \"5m\" }}\n"))),
        "test.toml:10:19: routes.\"catalog\".cache.ttl_s: invalid type: string \"5m\", \
         expected an integer number of seconds, like 30\n  line 10 | cache = { ttl_s = \"5m\" }"
    );
    assert_eq!(
        message(&route(&format!("{catalog}max_body_bytes = \"1M\"\n"))),
        "test.toml:10:18: routes.\"catalog\".max_body_bytes: invalid type: string \"1M\", \
         expected a non-negative integer\n  line 10 | max_body_bytes = \"1M\""
    );
    // The second route is named, not the first.
    let two = route(&format!(
        "{catalog}\n[[routes]]\nid = \"orders\"\npath_prefix = \"/o\"\nupstream = \"a\"\nmethods = \"GET\"\n"
    ));
    assert_eq!(
        message(&two),
        "test.toml:15:11: routes.\"orders\".methods: invalid type: string \"GET\", \
         expected an array\n  line 15 | methods = \"GET\""
    );
    // Without a usable id, the route's position in the file.
    assert_eq!(
        message(&route("id = 7\npath_prefix = \"/\"\nupstream = \"a\"\n")),
        "test.toml:7:6: routes[0].id: invalid type: integer `7`, expected a string\n  line 7 | id = 7"
    );
    // Unknown keys keep failing, with the route's id.
    let msg = message(&route(&format!("{catalog}timeout = 5000\n")));
    assert!(
        msg.starts_with(
            "test.toml:10:1: routes.\"catalog\": unknown field `timeout`, expected one of"
        ),
        "{msg}"
    );
}

#[test]
fn durations_outside_routes_say_their_unit() {
    assert_eq!(
        message("[server]\ngraceful_shutdown_s = \"30s\"\n"),
        "test.toml:2:23: server.graceful_shutdown_s: invalid type: string \"30s\", \
         expected an integer number of seconds, like 30\n  line 2 | graceful_shutdown_s = \"30s\""
    );
    assert_eq!(
        message(&format!("{MINIMAL}[server.limits]\nidle_timeout_ms = -1\n")),
        "test.toml:11:19: server.limits.idle_timeout_ms: invalid value: integer `-1`, \
         expected an integer number of milliseconds, like 5000\n  line 11 | idle_timeout_ms = -1"
    );
}

#[test]
fn missing_required_keys_and_syntax() {
    bad(
        &format!("{HEAD}[[upstreams]]\nname = \"b\"\n"),
        6,
        &["missing field `servers`"],
    );
    bad("[server\nworkers = 1\n", 1, &["expected `]`"]);
}

// ---- validation errors ------------------------------------------------------------

#[test]
fn listen_addresses_must_be_ip_port() {
    let e = bad(
        "[server]\nlisten = [\"0.0.0.0\"]\n",
        2,
        &["server.listen[0] = \"0.0.0.0\""],
    );
    assert!(matches!(e, ConfigError::BadSocketAddr { .. }));
    assert_eq!(
        e.to_string(),
        "test.toml:2:11: server.listen[0] = \"0.0.0.0\": not an ip:port socket address \
         (e.g. \"0.0.0.0:8080\", \"[::]:8080\")\n  line 2 | listen = [\"0.0.0.0\"]"
    );
    bad(
        &format!("{MINIMAL}[admin]\nlisten = \"localhost:9901\"\n"),
        11,
        &["admin.listen", "localhost:9901"],
    );
    bad(
        "[server]\nlisten = []\n",
        2,
        &["server.listen", "no listener"],
    );
    ok(&MINIMAL.replace("127.0.0.1:8080", "[::]:8080"));
}

#[test]
fn listeners_do_not_clash() {
    let e = bad(
        "[server]\nlisten = [\"0.0.0.0:8080\"]\n[admin]\nlisten = \"127.0.0.1:8080\"\n",
        4,
        &["admin.listen = \"127.0.0.1:8080\"", "server.listen[0]"],
    );
    assert!(matches!(e, ConfigError::ListenerClash { .. }));
    bad(
        "[server]\nlisten = [\"127.0.0.1:80\",\n  \"127.0.0.1:80\"]\n",
        3,
        &["server.listen[1]", "server.listen[0]"],
    );
    // Different families, different IPs on one port, or port 0 do not clash.
    ok("[server]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    ok(&MINIMAL.replace("[server]\n", "[admin]\nlisten = \"[::1]:8080\"\n[server]\n"));
    ok(&MINIMAL.replace(
        "[server]\n",
        "[admin]\nlisten = \"127.0.0.2:8080\"\n[server]\n",
    ));
}

#[test]
fn trusted_proxies_are_cidrs() {
    let e = bad(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\",\n  \"10.0.0.0/33\"]\n",
        3,
        &["server.trusted_proxies[1] = \"10.0.0.0/33\""],
    );
    assert!(matches!(e, ConfigError::BadCidr { .. }));
    bad(
        "[server]\ntrusted_proxies = [\"proxy.local\"]\n",
        2,
        &["proxy.local"],
    );
    let cfg = ok(&format!("{MINIMAL}[server]\n")
        .replace(
            "[server]\nlisten",
            "[server]\ntrusted_proxies = [\"10.1.2.3/8\", \"::1\"]\nlisten",
        )
        .replace("upstream = \"a\"\n[server]\n", "upstream = \"a\"\n"));
    let nets: Vec<String> = cfg
        .server
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "::1/128"]);
}

#[test]
fn io_driver_and_log_values() {
    let e = bad(
        "[server]\nio_driver = \"uring\"\n",
        2,
        &["server.io_driver = \"uring\"", "io_uring"],
    );
    assert!(matches!(e, ConfigError::BadIoDriver { .. }));
    let e = bad("[log]\nlevel = \"trace\"\n", 2, &["log.level = \"trace\""]);
    assert!(matches!(e, ConfigError::BadLogLevel { .. }));
    let e = bad("[log]\naccess_log = \"\"\n", 2, &["log.access_log"]);
    assert!(matches!(e, ConfigError::BadAccessLog { .. }));
    // Start would fail to open these: check says so first.
    let e = bad(
        "[log]\naccess_log = \"/nonexistent-dir/gw.log\"\n",
        2,
        &[
            "log.access_log",
            "directory /nonexistent-dir does not exist",
        ],
    );
    assert!(matches!(e, ConfigError::AccessLogPath { .. }));
    bad("[log]\naccess_log = \"/tmp\"\n", 2, &["is a directory"]);
    let cfg = ok(&format!(
        "{MINIMAL}[log]\naccess_log = \"/var/log/gw.jsonl\"\nlevel = \"debug\"\n"
    ));
    assert_eq!(
        cfg.log.access_log,
        AccessLog::File("/var/log/gw.jsonl".into())
    );
    assert_eq!(cfg.log.level, LogLevel::Debug);
    assert_eq!(
        ok(&format!("{MINIMAL}[log]\naccess_log = \"off\"\n"))
            .log
            .access_log,
        AccessLog::Off
    );
}

#[test]
fn routes_name_known_upstreams() {
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"b\"\n"),
        9,
        &["routes.\"r\".upstream = \"b\"", "upstreams: a"],
    );
    assert!(matches!(e, ConfigError::UnknownUpstream { .. }));
    bad(&route("id = \"r\"\npath_prefix = \"/\"\nsplit = [{ upstream = \"a\", weight = 1 },\n  { upstream = \"z\", weight = 1 }]\n"), 10, &["routes.\"r\".split[1].upstream = \"z\""]);
}

#[test]
fn duplicate_names() {
    let e = bad(
        &format!("{MINIMAL}[[routes]]\nid = \"r\"\npath_prefix = \"/x\"\nupstream = \"a\"\n"),
        11,
        &["routes.\"r\".id = \"r\"", "line 7"],
    );
    assert!(matches!(
        e,
        ConfigError::DuplicateRoute { first_line: 7, .. }
    ));
    let e = bad(
        &format!("{HEAD}[[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\n"),
        7,
        &["upstreams.\"a\".name = \"a\"", "line 4"],
    );
    assert!(matches!(
        e,
        ConfigError::DuplicateUpstream { first_line: 4, .. }
    ));
    bad(
        &route("id = \"\"\npath_prefix = \"/\"\nupstream = \"a\"\n"),
        7,
        &["routes[0].id", "empty"],
    );
}

#[test]
fn route_target_is_upstream_xor_split() {
    let e = bad(&route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nsplit = [{ upstream = \"a\", weight = 1 }]\n"), 10, &["routes.\"r\".split", "not both"]);
    assert!(matches!(e, ConfigError::TargetConflict { .. }));
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\n"),
        7,
        &["routes.\"r\"", "neither"],
    );
    assert!(matches!(e, ConfigError::NoTarget { .. }));
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nsplit = []\n"),
        9,
        &["routes.\"r\".split"],
    );
    assert!(matches!(e, ConfigError::EmptySplit { .. }));
}

#[test]
fn weights_are_positive() {
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nsplit = [{ upstream = \"a\", weight = 0 }]\n"),
        9,
        &["routes.\"r\".split[0].weight = 0"],
    );
    assert!(matches!(e, ConfigError::ZeroWeight { .. }));
    let e = bad(&format!("{HEAD}[[upstreams]]\nname = \"b\"\nservers = [\n  {{ address = \"127.0.0.1:1\", weight = 0 }}]\n"), 9, &["upstreams.\"b\".servers[0].weight = 0"]);
    assert!(matches!(e, ConfigError::ZeroWeight { .. }));
}

#[test]
fn route_paths() {
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\npath_exact = \"/x\"\nupstream = \"a\"\n"),
        9,
        &["routes.\"r\".path_exact"],
    );
    assert!(matches!(e, ConfigError::PathConflict { .. }));
    let e = bad(
        &route("id = \"r\"\nupstream = \"a\"\n"),
        7,
        &["routes.\"r\"", "path_prefix"],
    );
    assert!(matches!(e, ConfigError::NoPath { .. }));
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"api\"\nupstream = \"a\"\n"),
        8,
        &["routes.\"r\".path_prefix = \"api\"", "'/'"],
    );
    assert!(matches!(e, ConfigError::BadPath { .. }));
    bad(
        &route("id = \"r\"\npath_exact = \"/a b\"\nupstream = \"a\"\n"),
        8,
        &["path_exact"],
    );
    bad(
        &route("id = \"r\"\npath_exact = \"/a?b=1\"\nupstream = \"a\"\n"),
        8,
        &["query"],
    );
}

#[test]
fn strip_prefix_is_a_segment_prefix_of_the_path() {
    let e = bad(
        &route(
            "id = \"r\"\npath_prefix = \"/api/users\"\nstrip_prefix = \"/v1\"\nupstream = \"a\"\n",
        ),
        9,
        &["routes.\"r\".strip_prefix = \"/v1\"", "/api/users"],
    );
    assert!(matches!(e, ConfigError::BadStripPrefix { .. }));
    bad(&route("id = \"r\"\npath_prefix = \"/api/users\"\nstrip_prefix = \"/api/us\"\nupstream = \"a\"\n"), 9, &["strip_prefix"]);
    for strip in ["/api", "/api/", "/api/users"] {
        ok(&route(&format!("id = \"r\"\npath_prefix = \"/api/users\"\nstrip_prefix = \"{strip}\"\nupstream = \"a\"\n")));
    }
}

#[test]
fn methods_are_upper_case_tokens() {
    for m in ["get", "G ET", "", "GET\\n"] {
        let e = bad(
            &route(&format!(
                "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nmethods = [\"GET\", \"{m}\"]\n"
            )),
            10,
            &["routes.\"r\".methods[1]"],
        );
        assert!(matches!(e, ConfigError::BadMethod { .. }), "{m}");
    }
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nmethods = []\n"),
        10,
        &["routes.\"r\".methods"],
    );
    assert!(matches!(e, ConfigError::NoMethods { .. }));
    let cfg = ok(&route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nmethods = [\"GET\", \"PURGE\", \"GET\"]\n"));
    assert_eq!(cfg.routes[0].methods.as_deref().unwrap(), ["GET", "PURGE"]);
    bad(&route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\ncache = { ttl_s = 1, methods = [\"get\"] }\n"), 10, &["routes.\"r\".cache.methods[0]"]);
}

#[test]
fn auth_mode() {
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nauth = \"yes\"\n"),
        10,
        &["routes.\"r\".auth = \"yes\""],
    );
    assert!(matches!(e, ConfigError::BadAuthMode { .. }));
    let cfg = ok(&route(
        "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nauth = \"none\"\n",
    ));
    assert_eq!(cfg.routes[0].auth, AuthMode::None);
}

#[test]
fn balance_modes() {
    let up = |b: &str| format!("{HEAD}balance = \"{b}\"\n");
    for b in ["random", "hash:", "hash:X User", "HASH:x"] {
        let e = bad(&up(b), 6, &["upstreams.\"a\".balance"]);
        assert!(matches!(e, ConfigError::BadBalance { .. }), "{b}");
    }
    assert_eq!(
        ok(&up("least_request")).upstreams[0].balance,
        Balance::LeastRequest
    );
    assert_eq!(
        ok(&up("random_two")).upstreams[0].balance,
        Balance::RandomTwo
    );
    assert_eq!(
        ok(&up("hash:X-User-ID")).upstreams[0].balance,
        Balance::Hash("x-user-id".into())
    );
}

#[test]
fn upstream_servers() {
    let up = |s: &str| format!("{HEAD}[[upstreams]]\nname = \"b\"\nservers = [{s}]\n");
    let e = bad(&up(""), 8, &["upstreams.\"b\".servers"]);
    assert!(matches!(e, ConfigError::NoServers { .. }));
    for (s, why) in [
        ("\"127.0.0.1\"", "port"),
        ("\"ftp://127.0.0.1:21\"", "scheme"),
        ("\"http://127.0.0.1:80/api\"", "path"),
        ("\"127.0.0.1:0\"", "port"),
        ("\"127.0.0.1:99999\"", "port"),
        ("\"::1:80\"", "brackets"),
        ("\":80\"", "host"),
    ] {
        let e = bad(&up(s), 8, &["upstreams.\"b\".servers[0]", why]);
        assert!(matches!(e, ConfigError::BadServer { .. }), "{s}");
    }
    bad(
        &up("{ address = \"127.0.0.1\", weight = 2 }"),
        8,
        &["upstreams.\"b\".servers[0].address = \"127.0.0.1\""],
    );
    let e = bad(
        &up("\"no-such-host.invalid:80\""),
        8,
        &["no-such-host.invalid:80", "resolve"],
    );
    assert!(matches!(e, ConfigError::Unresolvable { .. }));
    let cfg = ok(&up("\"https://localhost:8443\", \"[::1]:9000\", { address = \"http://127.0.0.1:9\", weight = 5 }"));
    let s = &cfg.upstreams[1].servers;
    assert_eq!((s[0].label.as_str(), s[0].tls), ("localhost:8443", true));
    assert!(s[0].addr.is_ipv4(), "IPv4 preferred: {}", s[0].addr);
    assert_eq!(s[1].addr, "[::1]:9000".parse().unwrap());
    assert_eq!((s[2].label.as_str(), s[2].weight), ("127.0.0.1:9", 5));
}

#[test]
fn numbers_that_must_be_positive() {
    for (text, line, key) in [
        (
            "[server.limits]\nidle_timeout_ms = 0\n",
            2,
            "server.limits.idle_timeout_ms = 0",
        ),
        (
            "[server.limits]\nheader_read_timeout_ms = 0\n",
            2,
            "server.limits.header_read_timeout_ms",
        ),
        (
            "[server.limits]\nrequest_timeout_ms = 0\n",
            2,
            "server.limits.request_timeout_ms",
        ),
        (
            "[server.limits]\nmax_header_bytes = 0\n",
            2,
            "server.limits.max_header_bytes",
        ),
        (
            "[server.limits]\nmax_headers = 0\n",
            2,
            "server.limits.max_headers",
        ),
        ("[server]\nuring_entries = 0\n", 2, "server.uring_entries"),
        (
            "[server]\nmax_connections = 0\n",
            2,
            "server.max_connections",
        ),
        (
            "[plans.free]\nrequests_per_minute = 0\n",
            2,
            "plans.free.requests_per_minute",
        ),
        (
            "[rate_limit]\nsync_interval_ms = 0\n",
            2,
            "rate_limit.sync_interval_ms",
        ),
    ] {
        let e = bad(text, line, &[key, "greater than 0"]);
        assert!(matches!(e, ConfigError::NotPositive { .. }), "{text}");
    }
    let up = |k: &str| format!("{HEAD}{k} = 0\n");
    for k in [
        "connect_timeout_ms",
        "response_timeout_ms",
        "idle_timeout_ms",
    ] {
        bad(&up(k), 6, &[&format!("upstreams.\"a\".{k} = 0")]);
    }
    bad(
        &format!("{HEAD}[upstreams.health_check]\ninterval_ms = 0\n"),
        7,
        &["upstreams.\"a\".health_check.interval_ms"],
    );
    bad(
        &format!("{HEAD}[upstreams.circuit_breaker]\nfailure_threshold = 0\n"),
        7,
        &["upstreams.\"a\".circuit_breaker.failure_threshold"],
    );
    bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\ntimeout_ms = 0\n"),
        10,
        &["routes.\"r\".timeout_ms"],
    );
    bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\ncache = { ttl_s = 0 }\n"),
        10,
        &["routes.\"r\".cache.ttl_s"],
    );
    // 0 is meaningful here: exit at once.
    ok(&MINIMAL.replace("[server]\n", "[server]\ngraceful_shutdown_s = 0\n"));
}

#[test]
fn numbers_with_an_upper_bound() {
    let e = bad(
        "[server]\nuring_entries = 65536\n",
        2,
        &["server.uring_entries", "32768"],
    );
    assert!(matches!(e, ConfigError::TooLarge { .. }));
    let e = bad(
        "[server.limits]\nidle_timeout_ms = 18446744073709551615\n",
        2,
        &["idle_timeout_ms"],
    );
    assert!(matches!(e, ConfigError::TooLarge { .. }));
}

#[test]
fn rate_limit_key_and_plans() {
    let e = bad(
        "[rate_limit]\nkey = \"org\"\n",
        2,
        &["rate_limit.key = \"org\""],
    );
    assert!(matches!(e, ConfigError::BadRateLimitKey { .. }));
    bad("[rate_limit]\nkey = \"header:\"\n", 2, &["rate_limit.key"]);
    ok(&format!(
        "{MINIMAL}[rate_limit]\nkey = \"header:X-Tenant\"\n"
    ));
    let e = bad(
        "[rate_limit]\ndefault_plan = \"gold\"\n",
        2,
        &[
            "rate_limit.default_plan = \"gold\"",
            "free, pro, enterprise",
        ],
    );
    assert!(matches!(e, ConfigError::UnknownPlan { .. }));
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nplan = \"platinum\"\n"),
        10,
        &["routes.\"r\".plan = \"platinum\""],
    );
    assert!(matches!(e, ConfigError::UnknownPlan { .. }));
    bad("[[auth.api_keys.keys]]\nid = \"k\"\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\nuser = \"u\"\nplan = \"x\"\n", 5, &["auth.api_keys.keys.\"k\".plan = \"x\""]);
}

#[test]
fn plans_given_replace_the_defaults() {
    let text = format!("{MINIMAL}[rate_limit]\ndefault_plan = \"basic\"\n[plans.zeta]\nrequests_per_minute = 5\n[plans.basic]\nrequests_per_minute = 1\nburst = 2\n");
    let cfg = ok(&text);
    let names: Vec<&str> = cfg.plans.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["zeta", "basic"], "file order");
    // default_plan is still "free" but the file's plans have none: an error, with no
    // line to point at since the value is a default.
    let e = parse_and_validate(
        &format!("{MINIMAL}[plans.basic]\nrequests_per_minute = 1\n"),
        "t.toml",
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::UnknownPlan { .. }));
    assert_eq!(e.line(), None);
    assert!(
        e.to_string()
            .contains("rate_limit.default_plan = \"free\" (default)"),
        "{e}"
    );
    bad(
        "[plans.\"a b\"]\nrequests_per_minute = 1\n",
        1,
        &["plans = \"a b\""],
    );
}

#[test]
fn cache_object_bound() {
    let e = bad(
        "[cache]\nmax_bytes = 1000\nmax_object_bytes = 2000\n",
        3,
        &["cache.max_object_bytes = 2000", "1000"],
    );
    assert!(matches!(e, ConfigError::CacheObjectTooLarge { .. }));
    ok(&format!(
        "{MINIMAL}[cache]\nenabled = false\nmax_bytes = 0\n"
    ));
}

#[test]
fn host_patterns() {
    for h in [
        "*foo.com",
        "api.example.com:443",
        "a..b",
        "*.",
        "*",
        "a.*.com",
        "exa mple.com",
    ] {
        let e = bad(
            &route(&format!(
                "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nhost = \"{h}\"\n"
            )),
            10,
            &["routes.\"r\".host"],
        );
        assert!(matches!(e, ConfigError::BadHost { .. }), "{h}");
    }
    let cfg = ok(&route(
        "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nhost = \"API.Example.com\"\n",
    ));
    assert_eq!(
        cfg.routes[0].host,
        Some(HostMatch::Exact("api.example.com".into()))
    );
}

#[test]
fn header_names_and_values() {
    let r = |extra: &str| {
        route(&format!(
            "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n{extra}\n"
        ))
    };
    for (extra, key) in [
        (
            "headers = { \"X Canary\" = \"1\" }",
            "routes.\"r\".headers.\"X Canary\"",
        ),
        (
            "request_headers = { add = { \"X:y\" = \"1\" } }",
            "routes.\"r\".request_headers.add.\"X:y\"",
        ),
        (
            "request_headers = { remove = [\"\"] }",
            "routes.\"r\".request_headers.remove[0]",
        ),
        (
            "response_headers = { remove = [\"Set Cookie\"] }",
            "routes.\"r\".response_headers.remove[0]",
        ),
        (
            "response_headers = { add = { \"(x)\" = \"1\" } }",
            "routes.\"r\".response_headers.add.\"(x)\"",
        ),
        (
            "cache = { ttl_s = 1, vary = [\"Accept Language\"] }",
            "routes.\"r\".cache.vary[0]",
        ),
    ] {
        let e = bad(&r(extra), 10, &[key]);
        assert!(matches!(e, ConfigError::BadHeaderName { .. }), "{extra}");
    }
    let e = bad(
        &r("request_headers = { add = { \"X-A\" = \"a\\r\\nX-B: b\" } }"),
        10,
        &["request_headers.add.\"X-A\""],
    );
    assert!(matches!(e, ConfigError::BadHeaderValue { .. }));
    bad(
        "[auth.api_keys]\nheader = \"X API Key\"\n",
        2,
        &["auth.api_keys.header"],
    );
    let cfg = ok(&r("response_headers = { add = { \"X-Z\" = \"1\", \"X-A\" = \"2\" }, remove = [\"X-Powered-By\"] }"));
    let rh = &cfg.routes[0].response_headers;
    assert_eq!(
        rh.add,
        [("X-Z".into(), "1".into()), ("X-A".into(), "2".into())],
        "file order"
    );
    assert_eq!(rh.remove, ["x-powered-by"]);
}

#[test]
fn jwt_keys() {
    let key = |body: &str| format!("[[auth.jwt.keys]]\n{body}\n");
    let e = bad(
        &key("kid = \"k\"\nalgorithm = \"none\"\nsecret_env = \"S\""),
        3,
        &["auth.jwt.keys[0].algorithm = \"none\""],
    );
    assert!(matches!(e, ConfigError::BadJwtAlgorithm { .. }));
    for (body, line, needle) in [
        ("kid = \"k\"\nalgorithm = \"HS256\"\npublic_key_file = \"k.pem\"", 4, "secret_env"),
        ("kid = \"k\"\nalgorithm = \"RS256\"\nsecret_env = \"S\"", 4, "public_key_file"),
        ("kid = \"k\"\nalgorithm = \"RS256\"\npublic_key_file = \"k.pem\"\njwks_file = \"j.json\"", 4, "exactly one"),
        ("kid = \"k\"\nalgorithm = \"HS256\"", 3, "exactly one"),
        ("kid = \"k\"\nsecret_env = \"S\"", 3, "algorithm is required"),
    ] {
        let e = bad(&key(body), line, &[needle]);
        assert!(matches!(e, ConfigError::BadJwtKeySource { .. }), "{body}");
    }
    let two = format!(
        "{}{}",
        key("kid = \"k\"\nalgorithm = \"HS256\"\nsecret_env = \"S\""),
        key("kid = \"k\"\nalgorithm = \"HS512\"\nsecret_env = \"T\"")
    );
    let e = bad(&two, 6, &["auth.jwt.keys[1].kid = \"k\"", "line 2"]);
    assert!(matches!(e, ConfigError::DuplicateJwtKid { .. }));
}

#[test]
fn api_keys() {
    let k = |id: &str, sha: &str| {
        format!("[[auth.api_keys.keys]]\nid = \"{id}\"\nsha256 = \"{sha}\"\nuser = \"u\"\n")
    };
    let good = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let e = bad(
        &k("k", "secret-key"),
        3,
        &["auth.api_keys.keys.\"k\".sha256"],
    );
    assert!(matches!(e, ConfigError::BadSha256 { .. }));
    let e = bad(
        &format!("{}{}", k("k", good), k("k", &good.replace('9', "8"))),
        6,
        &["auth.api_keys.keys.\"k\".id", "line 2"],
    );
    assert!(matches!(e, ConfigError::DuplicateApiKey { .. }));
    let e = bad(
        &format!("{}{}", k("k", good), k("j", &good.to_uppercase())),
        7,
        &["auth.api_keys.keys.\"j\".sha256", "line 3"],
    );
    assert!(matches!(e, ConfigError::DuplicateApiKey { .. }));
}

#[test]
fn tls_section() {
    let e = bad(
        "[server.tls]\nlisten = [\"0.0.0.0:8443\"]\ncertificates = []\n",
        3,
        &["server.tls.certificates"],
    );
    assert!(matches!(e, ConfigError::NoTlsCertificates { .. }));
    bad(
        "[server.tls]\nlisten = [\"0.0.0.0\"]\n",
        2,
        &["server.tls.listen[0]"],
    );
    bad("[server.tls]\n[[server.tls.certificates]]\nserver_names = [\"*x.com\"]\ncert_file = \"c\"\nkey_file = \"k\"\n", 3, &["server.tls.certificates[0].server_names[0]"]);
    // Neither a plain nor a TLS listener.
    let e = bad(
        "[server]\nlisten = []\n",
        2,
        &["server.listen = []", "server.listen or server.tls.listen"],
    );
    assert!(matches!(e, ConfigError::NoListener { .. }));
}

#[test]
fn io_error_names_the_path() {
    let e = Config::load(std::path::Path::new("/nonexistent/gateway.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/gateway.toml"), "{e}");
}
