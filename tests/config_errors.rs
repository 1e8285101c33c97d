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

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringgate-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_reference_configuration_parses() {
    let text = std::fs::read_to_string(spec_path()).unwrap();
    let cfg = Config::parse(&text, "gateway.toml").unwrap_or_else(|e| panic!("{e}"));
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
    let out = ringgate(&["check", "--config", spec_path().to_str().unwrap()]);
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
