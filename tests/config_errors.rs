//! Configuration errors through the public API (`Config::parse`) and the binary
//! (`ringgate check`, `--help`, `--version`). The config module's unit tests cover every
//! kind of mistake; these check what a user sees: the key, the value and the line.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;

/// Lines 1-8: a valid server, upstream "app" and the start of a route.
const VALID: &str = r#"[server]
listen = ["127.0.0.1:8080"]

[[upstreams]]
name = "app"
servers = ["127.0.0.1:9001"]

[[routes]]
id = "r1"
path_prefix = "/"
upstream = "app"
"#;

/// Parse `text`; expect an error on `line` whose message holds every needle.
fn rejected(text: &str, line: usize, needles: &[&str]) {
    let msg = match Config::parse(text, "bad.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            assert_eq!(e.line(), Some(line), "wrong line: {e}");
            e.to_string()
        }
    };
    assert!(msg.starts_with(&format!("bad.toml:{line}:")), "{msg}");
    for n in needles {
        assert!(msg.contains(n), "{n:?} not in: {msg}");
    }
}

fn spec_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/gateway.toml")
}

fn ringgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(args)
        .output()
        .expect("run ringgate")
}

/// `ringgate ARGS` with `env` set and every variable this file's tests name unset.
fn ringgate_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringgate"));
    cmd.args(args).env_remove("JWT_SECRET").env_remove(ABSENT);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_briefly(cmd)
}

/// Run a command that is expected to exit by itself (`check`, or a start that fails);
/// one that is still running after 20 s (a start that succeeded) is stopped and its
/// output returned with a failed status.
fn run_briefly(mut cmd: Command) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringgate");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// A variable no test sets.
const ABSENT: &str = "RG_CONFIG_ERRORS_ABSENT_SECRET";

/// `ringgate check --config FILE` and `ringgate --config FILE` (start) on `text`, with
/// `env` set: (check, start).
fn check_and_start(name: &str, text: &str, env: &[(&str, &str)]) -> (Output, Output) {
    let path = temp_file(name, text);
    let p = path.to_str().unwrap();
    let check = ringgate_env(&["check", "--config", p], env);
    let start = ringgate_env(&["--config", p], env);
    let _ = std::fs::remove_file(&path);
    (check, start)
}

/// Both refused, each with every needle on stderr, and start's message names its
/// cause once.
fn both_refuse(check: &Output, start: &Output, needles: &[&str]) {
    for (what, out) in [("check", check), ("start", start)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what} accepted it\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!stderr.contains("listening on"), "{what} started: {stderr}");
        for n in needles {
            assert_eq!(
                stderr.matches(n).count(),
                1,
                "{what}: {n:?} not once in: {stderr}"
            );
        }
    }
}

/// VALID on an OS-chosen port, so a start that wrongly succeeds cannot clash.
fn valid_any_port() -> String {
    VALID.replace("127.0.0.1:8080", "127.0.0.1:0")
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringgate-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A placeholder for every `secret_env` variable of the shipped files.
const PLACEHOLDER_SECRET: &str = "placeholder-secret-0123456789abcdef0123456789";

#[test]
fn the_reference_configuration_parses() {
    let text = std::fs::read_to_string(spec_path()).unwrap();
    let env = |_: &str| Some(std::ffi::OsString::from(PLACEHOLDER_SECRET));
    let cfg = Config::parse_with_env(&text, "gateway.toml", &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.routes.len(), 2);
    assert_eq!(cfg.upstreams.len(), 2);
    Config::parse(VALID, "valid.toml").unwrap();
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = VALID.replace(
        "path_prefix = \"/\"",
        "path_prefix = \"/\"\npath_prefx = \"/x\"",
    );
    rejected(&text, 11, &["path_prefx"]);
    let text = VALID.replace("listen = [", "listn = [");
    rejected(&text, 2, &["listn"]);
}

#[test]
fn wrong_type_names_key_and_line() {
    let text = VALID.replace("[server]\n", "[server]\nworkers = \"two\"\n");
    rejected(&text, 2, &["workers"]);
}

#[test]
fn route_with_unknown_upstream() {
    let text = VALID.replace("upstream = \"app\"", "upstream = \"nope\"");
    rejected(&text, 11, &["upstream", "\"nope\"", "app"]);
}

#[test]
fn duplicate_route_ids() {
    let text =
        format!("{VALID}\n[[routes]]\nid = \"r1\"\npath_prefix = \"/x\"\nupstream = \"app\"\n");
    rejected(&text, 14, &["r1", "line 9"]);
}

#[test]
fn bad_cidr() {
    let text = VALID.replace(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
    );
    rejected(&text, 2, &["trusted_proxies", "10.0.0.0/33"]);
}

#[test]
fn zero_weight_split() {
    let text = VALID.replace(
        "upstream = \"app\"",
        "split = [{ upstream = \"app\", weight = 0 }]",
    );
    rejected(&text, 11, &["weight", "0"]);
}

#[test]
fn bad_listen_address() {
    let text = VALID.replace("127.0.0.1:8080", "127.0.0.1");
    rejected(&text, 2, &["server.listen", "127.0.0.1"]);
}

#[test]
fn check_accepts_the_reference_configuration() {
    let out = ringgate_env(
        &["check", "--config", spec_path().to_str().unwrap()],
        &[("JWT_SECRET", PLACEHOLDER_SECRET)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("users") && stdout.contains("orders"),
        "{stdout}"
    );
}

#[test]
fn check_warns_about_shadowed_routes_and_still_accepts() {
    // "api" (prefix /api, any method, any host) comes first: it takes every request of
    // "users" and of "users-on-admin" (a host condition only narrows a route). "apix"
    // is not under /api (prefixes are segment-aware) and is not named.
    let text = r#"[server]
listen = ["127.0.0.1:8080"]

[[upstreams]]
name = "app"
servers = ["127.0.0.1:9001"]

[[routes]]
id = "api"
path_prefix = "/api"
upstream = "app"

[[routes]]
id = "users"
path_prefix = "/api/users"
methods = ["GET"]
upstream = "app"

[[routes]]
id = "users-on-admin"
path_prefix = "/api/users"
host = "admin.test"
upstream = "app"

[[routes]]
id = "apix"
path_prefix = "/apix"
upstream = "app"
"#;
    let path = temp_file("shadow.toml", text);
    let out = ringgate(&["check", "--config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings: Vec<&str> = stdout.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(
        warnings,
        [
            "  warning: route \"users\" can never match: route \"api\" before it matches every request it would",
            "  warning: route \"users-on-admin\" can never match: route \"api\" before it matches every request it would",
        ],
        "{stdout}"
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
}

#[test]
fn check_accepts_a_route_cache_without_ttl() {
    // `cache = {}`: every key of the table has a default; without ttl_s, only
    // responses the origin marks fresh are stored.
    let text = format!("{VALID}cache = {{}}\n");
    let cfg = Config::parse(&text, "fresh.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.routes[0].cache.as_ref().map(|c| c.ttl), Some(None));
    let path = temp_file("fresh.toml", &text);
    let out = ringgate(&["check", "--config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cache origin-fresh"), "{stdout}");
    // A ttl_s that is there is still at least 1: leaving it out is how to say "none".
    rejected(&format!("{VALID}cache = {{ ttl_s = 0 }}\n"), 12, &["ttl_s"]);
}

#[test]
fn check_rejects_a_bad_file_naming_the_key() {
    let path = temp_file(
        "bad.toml",
        &VALID.replace("upstream = \"app\"", "upstream = \"missing-upstream\""),
    );
    let out = ringgate(&["check", "--config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad config accepted");
    assert!(stderr.contains("missing-upstream"), "{stderr}");
    assert!(stderr.contains("line 11"), "{stderr}");
}

#[test]
fn check_rejects_a_missing_file() {
    let out = ringgate(&["check", "--config", "/nonexistent/ringgate.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ringgate.toml"));
}

#[test]
fn serve_refuses_to_start_with_a_bad_file() {
    let path = temp_file("typo.toml", &VALID.replace("servers =", "server ="));
    let out = ringgate(&["--config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(!out.status.success(), "started with a bad config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`server`") && stderr.contains("line 6"),
        "{stderr}"
    );
}

#[test]
fn version_and_help() {
    let out = ringgate(&["--version"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{out:?}"
    );
    let out = ringgate(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("check") && help.contains("--config"),
        "{help}"
    );
}

#[test]
fn forcing_io_uring_where_unavailable_is_a_start_error() {
    // Only meaningful where io_uring is missing; elsewhere it must start.
    let template = VALID.replace("listen = [\"127.0.0.1:8080\"]\n", "");
    let text = render_config(&template, IoDriver::IoUring, 1);
    let cfg = Config::parse(&text, "t.toml").unwrap();
    match Gateway::start(cfg) {
        Ok(gw) => {
            assert_eq!(gw.driver().to_string(), "io_uring");
            gw.shutdown();
            gw.join();
        }
        Err(e) => assert!(e.to_string().contains("io_uring"), "{e}"),
    }
}

#[test]
fn a_short_secret_is_a_warning_for_check_and_refused_by_start() {
    // The file is right (it names only the variable); the environment check runs in
    // is not where the gateway runs. The reference configuration with a placeholder
    // too short for HS256 must still pass `check`.
    let short = "placeholder-secret"; // 18 bytes
    let spec = spec_path();
    let check = ringgate_env(
        &["check", "--config", spec.to_str().unwrap()],
        &[("JWT_SECRET", short)],
    );
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        stdout.contains("the secret in JWT_SECRET is 18 bytes; HS256 needs at least 32")
            && stdout.contains("`ringgate start` refuses it"),
        "{stdout}"
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
    let start = ringgate_env(
        &["--config", spec.to_str().unwrap()],
        &[("JWT_SECRET", short)],
    );
    let stderr = String::from_utf8_lossy(&start.stderr);
    assert!(!start.status.success(), "start accepted it: {stderr}");
    assert!(stderr.contains("HS256 needs at least 32"), "{stderr}");
    for out in [&stdout, &stderr] {
        assert!(!out.contains(short), "the secret was printed: {out}");
    }
}

// ---- check refuses what start would refuse, one section at a time ----------------------

#[test]
fn auth_a_missing_secret_stops_check_and_start_alike() {
    // Lines 1-11: VALID; the key's secret_env is on line 15.
    let text = format!(
        "{}[[auth.jwt.keys]]\nkid = \"hs-1\"\nalgorithm = \"HS256\"\nsecret_env = \"{ABSENT}\"\n",
        valid_any_port()
    );
    let (check, start) = check_and_start("secret.toml", &text, &[]);
    both_refuse(
        &check,
        &start,
        &[
            &format!(":15:14: auth.jwt.keys[0].secret_env = \"{ABSENT}\": environment variable {ABSENT} (secret_env) is not set or is empty"),
            "line 15 | secret_env",
        ],
    );
    // Set, it is accepted; its value is never printed.
    let secret = "a-secret-that-must-never-be-printed-0123456789";
    let (check, _) = {
        let path = temp_file("secret-set.toml", &text);
        let out = ringgate_env(
            &["check", "--config", path.to_str().unwrap()],
            &[(ABSENT, secret)],
        );
        let _ = std::fs::remove_file(&path);
        (out, ())
    };
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{all}");
    assert!(all.contains(&format!("secret from ${ABSENT}")), "{all}");
    assert!(!all.contains(secret), "the secret was printed: {all}");
}

#[test]
fn auth_an_unreadable_key_file_stops_check_and_start_alike() {
    let text = format!(
        "{}[[auth.jwt.keys]]\nalgorithm = \"RS256\"\npublic_key_file = \"/nonexistent/rs.pub.pem\"\n",
        valid_any_port()
    );
    let (check, start) = check_and_start("keyfile.toml", &text, &[]);
    both_refuse(
        &check,
        &start,
        &[
            "auth.jwt.keys[0].public_key_file = \"/nonexistent/rs.pub.pem\": cannot read /nonexistent/rs.pub.pem",
            "No such file or directory (os error 2)",
            "line 14",
        ],
    );
}

/// A certificate for `names` and its key, as files (issued by a CA made for the test).
fn cert_files(stem: &str, names: &[&str]) -> (String, String) {
    use ringgate::tls::pki::{CertSpec, TestCa};
    let ca = TestCa::new("Test CA").unwrap();
    let c = ca.issue(&CertSpec::server(names)).unwrap();
    let crt = temp_file(&format!("{stem}.crt"), &c.cert_pem);
    let key = temp_file(&format!("{stem}.key"), &c.key_pem);
    (crt.display().to_string(), key.display().to_string())
}

fn tls_only(crt: &str, key: &str) -> String {
    valid_any_port().replace(
        "listen = [\"127.0.0.1:0\"]\n",
        &format!("listen = []\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\n[[server.tls.certificates]]\ncert_file = \"{crt}\"\nkey_file = \"{key}\"\n"),
    )
}

#[test]
fn a_tls_only_gateway_checks() {
    let (crt, key) = cert_files("tls-only", &["api.example.com"]);
    let path = temp_file("tls-only.toml", &tls_only(&crt, &key));
    let out = ringgate_env(&["check", "--config", path.to_str().unwrap()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("listeners     http none; https 127.0.0.1:0\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("certificate 0, default: api.example.com (from the certificate)"),
        "{stdout}"
    );
    assert!(!stdout.contains("TLS           [server.tls]"), "{stdout}");
}

/// VALID with `[server.tls]` after line 2: line 3 [server.tls], 4 `line4`, 5
/// [[server.tls.certificates]], 6 cert_file, 7 key_file.
fn with_tls(line4: &str, crt: &str, key: &str) -> String {
    VALID.replacen(
        "\n\n[[upstreams]]",
        &format!("\n[server.tls]\n{line4}\n[[server.tls.certificates]]\ncert_file = \"{crt}\"\nkey_file = \"{key}\"\n\n[[upstreams]]"),
        1,
    )
}

#[test]
fn tls_mistakes_name_the_key_and_line() {
    let (crt, key) = cert_files("mistakes", &["api.example.com"]);
    Config::parse(
        &with_tls("listen = [\"127.0.0.1:8443\"]", &crt, &key),
        "ok.toml",
    )
    .unwrap();
    rejected(
        &with_tls("min_version = \"1.0\"", &crt, &key),
        4,
        &[
            "server.tls.min_version = \"1.0\"",
            "expected \"1.2\" or \"1.3\"",
        ],
    );
    rejected(
        &with_tls("client_auth = \"sometimes\"", &crt, &key),
        4,
        &[
            "server.tls.client_auth = \"sometimes\"",
            "none, optional, required",
        ],
    );
    rejected(
        &with_tls("client_auth = \"required\"", &crt, &key),
        4,
        &[
            "server.tls.client_auth = \"required\"",
            "need client_ca_file",
        ],
    );
    rejected(
        &with_tls("alpn = [\"h2\", \"http/1.1\"]", &crt, &key),
        4,
        &["server.tls.alpn[0] = \"h2\"", "HTTP/2", "not served yet"],
    );
    let missing = format!("{key}.missing");
    rejected(
        &with_tls("", &crt, &missing),
        7,
        &[
            "server.tls.certificates[0].key_file",
            &format!("cannot read {missing}: No such file or directory"),
        ],
    );
    let (_, other_key) = cert_files("mistakes-other", &["other.test"]);
    rejected(
        &with_tls("", &crt, &other_key),
        7,
        &[
            "server.tls.certificates[0].key_file",
            "does not belong to the certificate in",
        ],
    );
}

#[test]
fn tls_a_key_that_is_not_the_certificate_s_stops_check_and_start_alike() {
    let (crt, _) = cert_files("mismatch-a", &["a.test"]);
    let (_, other_key) = cert_files("mismatch-b", &["b.test"]);
    let text = tls_only(&crt, &other_key);
    let (check, start) = check_and_start("mismatch.toml", &text, &[]);
    both_refuse(
        &check,
        &start,
        &[
            "server.tls.certificates[0].key_file",
            "does not belong to the certificate in",
            "line 7",
        ],
    );
}

#[test]
fn check_warns_about_an_upstream_with_verify_false() {
    let text = valid_any_port()
        .replace("\"127.0.0.1:9001\"", "\"https://127.0.0.1:9443\"")
        .replace(
            "\n[[routes]]",
            "[upstreams.tls]\nverify = false\n\n[[routes]]",
        )
        .replace(
            "upstream = \"app\"\n",
            "upstream = \"app\"\nauth = \"none\"\n",
        );
    let path = temp_file("verify-off.toml", &text);
    let out = ringgate_env(&["check", "--config", path.to_str().unwrap()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("WARNING: upstream \"app\": [upstreams.tls] verify = false: any certificate for any name is accepted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("127.0.0.1:9443 weight 1 (https)"),
        "{stdout}"
    );
}

#[test]
fn rate_limit_a_plan_start_cannot_build_stops_check_and_start_alike() {
    let text = format!(
        "[plans.huge]\nrequests_per_minute = 1\nburst = 4294967295\n[rate_limit]\ndefault_plan = \"huge\"\n{}",
        valid_any_port()
    );
    let (check, start) = check_and_start("plan.toml", &text, &[]);
    both_refuse(
        &check,
        &start,
        &["plans.huge.burst = 4294967295", "too large", "line 2"],
    );
}

#[test]
fn log_an_access_log_start_cannot_open_stops_check_and_start_alike() {
    let text = format!(
        "[log]\naccess_log = \"/nonexistent-dir/access.log\"\n{}",
        valid_any_port()
    );
    let (check, start) = check_and_start("log.toml", &text, &[]);
    both_refuse(
        &check,
        &start,
        &[
            "log.access_log",
            "/nonexistent-dir does not exist",
            "line 2",
        ],
    );
}

#[test]
fn io_driver_io_uring_where_unavailable_stops_check_and_start_alike() {
    let text = valid_any_port().replace("[server]\n", "[server]\nio_driver = \"io_uring\"\n");
    if driver_available(IoDriver::IoUring) {
        // Here it is available: check says so.
        let path = temp_file("uring.toml", &text);
        let out = ringgate_env(&["check", "--config", path.to_str().unwrap()], &[]);
        let _ = std::fs::remove_file(&path);
        assert!(out.status.success(), "{out:?}");
        return;
    }
    let (check, start) = check_and_start("uring.toml", &text, &[]);
    both_refuse(&check, &start, &["io_uring", "not available"]);
}

#[test]
fn the_default_config_needs_its_secret_and_says_so() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateway.toml");
    let out = ringgate_env(&["check", "--config", path], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted without JWT_SECRET");
    assert!(
        stderr.contains("secret_env = \"JWT_SECRET\": environment variable JWT_SECRET"),
        "{stderr}"
    );
    let out = ringgate_env(
        &["check", "--config", path],
        &[("JWT_SECRET", PLACEHOLDER_SECRET)],
    );
    assert!(out.status.success(), "{out:?}");
}

// ---- each cause printed once ----------------------------------------------------------

#[test]
fn a_missing_file_names_its_cause_once() {
    for args in [
        &["--config", "/nonexistent/ringgate.toml"][..],
        &["check", "--config", "/nonexistent/ringgate.toml"][..],
    ] {
        let out = ringgate_env(args, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(
            stderr.trim_end(),
            "ringgate: /nonexistent/ringgate.toml: cannot read the configuration: No such file or directory (os error 2)",
            "{args:?}"
        );
    }
}

// ---- accepted but not served: start says so, as check does ---------------------------

#[test]
fn admin_is_served_and_listed_by_check_and_start() {
    use std::io::BufRead;
    let (crt, key) = cert_files("inactive", &["api.example.com"]);
    let text = valid_any_port().replace(
        "[[upstreams]]",
        &format!(
            "[server.tls]\nlisten = [\"127.0.0.1:0\"]\n[[server.tls.certificates]]\n\
             cert_file = \"{crt}\"\nkey_file = \"{key}\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\n[[upstreams]]"
        ),
    );
    let text = text.replace(
        "upstream = \"app\"\n",
        "upstream = \"app\"\nauth = \"none\"\n",
    );
    let path = temp_file("inactive.toml", &text);
    let p = path.to_str().unwrap();
    let check = ringgate_env(&["check", "--config", p], &[]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    // TLS and the admin API are served: listed as such, not as "not yet active".
    assert!(
        stdout.contains("parsed and checked, not yet active:\n  none\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("admin         http://127.0.0.1:0; token $GATEWAY_ADMIN_TOKEN "),
        "{stdout}"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["--config", p])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ringgate");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        lines.len(),
        1,
        "no warning before the start line: {lines:#?}"
    );
    assert!(lines[0].contains("listening on"), "{lines:#?}");
}

// ---- the shipped files and the commands they document ---------------------------------

/// Every `ringgate ...` command written in a shipped file's comments (`# ringgate ...`,
/// or after a `:` as in "Check a file ...:   ringgate check ...").
fn documented_commands(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .filter_map(|l| l.find("ringgate ").map(|i| &l[i..]))
        // Prose that names a command quotes it; a command line is written bare.
        .filter(|c| !c.contains('`'))
        .filter(|c| {
            let first = c.split_whitespace().nth(1).unwrap_or("");
            first.starts_with('-') || ["check", "demo"].contains(&first) || first == "run"
        })
        .map(|c| c.split_whitespace().skip(1).map(str::to_owned).collect())
        .collect()
}

#[test]
fn every_shipped_config_checks_and_documents_real_commands() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["config", "config/examples"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let mut commands = 0;
    for path in &files {
        // Secrets get placeholders, as a deployment would give real ones.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringgate"));
        cmd.current_dir(&root)
            .args(["check", "--config", path.to_str().unwrap()])
            .env("JWT_SECRET", PLACEHOLDER_SECRET)
            .env("RINGGATE_DEMO_JWT_SECRET", PLACEHOLDER_SECRET);
        let out = run_briefly(cmd);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Each documented command is one the CLI accepts (`--help` stops it there).
        for args in documented_commands(&std::fs::read_to_string(path).unwrap()) {
            commands += 1;
            let out = Command::new(env!("CARGO_BIN_EXE_ringgate"))
                .current_dir(&root)
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: `ringgate {}` is not a command: {}",
                path.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(commands >= 3, "found only {commands} documented commands");
}
