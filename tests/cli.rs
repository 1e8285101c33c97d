//! The operator's side of the command line: `--help` says how to run the process
//! (signals, environment, exit status), and `ringgate man` renders the same as a
//! manual page.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn help_lists_signals_environment_and_exit_status() {
    let (ok, text) = run(&["--help"]);
    assert!(ok);
    for want in [
        "SIGHUP",
        "SIGTERM",
        "secret_env",
        "GATEWAY_ADMIN_TOKEN",
        "Exit status",
        "token",
        "ringgate.service",
    ] {
        assert!(text.contains(want), "--help lacks {want:?}:\n{text}");
    }
}

#[test]
fn the_manual_page_is_generated_from_the_same_definition() {
    let (ok, page) = run(&["man"]);
    assert!(ok);
    assert!(page.contains(".TH ringgate 1"), "{page}");
    for want in [
        "SIGHUP",
        "Exit status",
        "ringgate\\-token",
        "ringgate\\-check",
    ] {
        assert!(page.contains(want), "the man page lacks {want:?}");
    }
}

#[test]
fn the_systemd_unit_reloads_with_sighup_and_sizes_descriptors() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/ringgate.service"
    ))
    .unwrap();
    for want in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ExecStartPre=/usr/local/bin/ringgate check",
    ] {
        assert!(unit.contains(want), "the unit lacks {want:?}");
    }
}
