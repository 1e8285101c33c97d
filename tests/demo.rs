//! The demo's printed instructions, run as printed: the gateway with config/demo.toml
//! (ports moved to OS-chosen ones) in front of the demo services, then every
//! `export` and every commented curl line of `demo::instructions` through `sh`, with
//! the real curl. Each comment names what the line shows (status codes, `X-Cache`
//! values); the output must show it. On both drivers.

mod common;

use std::process::Command;

use common::*;
use ringgate::demo::{self, DemoCredentials, DemoServices};

/// The statuses and X-Cache values a comment line promises.
fn promises(comment: &str) -> Vec<String> {
    let mut out: Vec<String> = comment
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() == 3 && w.starts_with(['2', '4', '5']))
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .collect();
    for x in ["MISS", "HIT"] {
        if comment.contains(&format!(" {x}")) {
            out.push(format!("X-Cache: {x}"));
        }
    }
    // Header names the backend is said to have received (the echo route).
    if comment.contains("backend received") {
        out.extend(
            comment
                .split([' ', ','])
                .filter(|w| w.starts_with("X-User-") || w.starts_with("X-Tenant-"))
                .map(str::to_ascii_lowercase),
        );
    }
    out
}

fn run_instructions(driver: IoDriver) {
    let services = DemoServices::start(0, 0, 0).expect("demo services start");
    let a = services.addrs();
    let driver_name = match driver {
        IoDriver::IoUring => "io_uring",
        _ => "epoll",
    };
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:19001", &a.users.to_string())
        .replace("127.0.0.1:19002", &a.orders.to_string())
        .replace("127.0.0.1:19003", &a.products.to_string())
        .replace(
            "io_driver = \"auto\"",
            &format!("io_driver = \"{driver_name}\""),
        );
    // One secret per process; both drivers' runs sign with it.
    let secret = "demo-test-secret-0123456789abcdef0123456789";
    std::env::set_var(demo::DEMO_SECRET_ENV, secret);
    let cfg = Config::parse(&text, "config/demo.toml").expect("demo.toml is valid");
    let gw = Gateway::start(cfg).expect("the demo gateway starts");
    let creds = DemoCredentials {
        free_token: demo::mint_token(secret, "alice", "acme", "free", "users:read"),
        pro_token: demo::mint_token(secret, "bob", "globex", "pro", "users:read orders:read"),
        api_key: demo::DEMO_API_KEY.to_string(),
    };
    let shown = demo::instructions(gw.addrs()[0], &creds);
    let exports: String = shown
        .lines()
        .filter(|l| l.starts_with("export "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(exports.lines().count(), 3, "{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    let mut ran = 0;
    for (i, cmd) in lines.iter().enumerate() {
        if !(cmd.starts_with("curl ") || cmd.starts_with("for ")) {
            continue;
        }
        let comment = lines[i - 1];
        let want = promises(comment);
        assert!(
            !want.is_empty(),
            "the comment promises nothing to check: {comment}"
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{exports}{cmd}"))
            .output()
            .expect("sh runs (and curl is installed)");
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{cmd}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lower = got.to_ascii_lowercase();
        for w in &want {
            let seen = got.contains(w.as_str()) || lower.contains(w.as_str());
            assert!(seen, "{comment}\n{cmd}\nlacks {w:?}:\n{got}");
        }
        if comment.contains("no Authorization") {
            let body = lower.split("\r\n\r\n").nth(1).unwrap_or("");
            assert!(
                !body.contains("authorization"),
                "{cmd}: the backend saw it:\n{got}"
            );
        }
        ran += 1;
    }
    assert!(ran >= 10, "only {ran} curl lines in\n{shown}");
    gw.shutdown();
    gw.join();
    services.stop();
}

#[test]
fn every_printed_curl_line_shows_what_its_comment_says() {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "curl is needed (.ci/run installs it)"
    );
    for driver in [IoDriver::IoUring, IoDriver::Epoll] {
        if driver_available(driver) {
            run_instructions(driver);
        }
    }
}
