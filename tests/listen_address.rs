//! A second gateway on an address another one already serves: refused, naming the
//! address, unless the takeover is deliberate (`server.takeover`, `ringgate
//! --takeover`). Without the check both would bind with SO_REUSEPORT and the second
//! would silently take part of the first's traffic.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// The configuration of `first`'s twin, listening on `addr` (a port already taken).
fn on_address(origin: &Origin, driver: IoDriver, addr: std::net::SocketAddr, top: &str) -> Config {
    let text = without_auth(&render_config(&simple_config(origin, top), driver, 1)).replace(
        "listen = [\"127.0.0.1:0\"]",
        &format!("listen = [\"{addr}\"]"),
    );
    Config::parse(&text, "second.toml").unwrap_or_else(|e| panic!("{e}"))
}

both_drivers! {
    fn a_second_gateway_on_a_served_address_is_refused(driver) {
        let origin = Origin::echo();
        let first = Gw::simple(driver, &origin);
        let addr = first.addr;
        let err = match Gateway::start(on_address(&origin, driver, addr, "")) {
            Ok(second) => {
                second.shutdown();
                second.join();
                panic!("a second gateway started on {addr}, which the first serves");
            }
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with(&format!("{addr} is already served by another process")),
            "{err}"
        );
        assert!(err.contains("--takeover"), "{err}");
        // The first still serves every request.
        for _ in 0..20 {
            assert_eq!(first.send(&Req::get("/x")).status, 200);
        }
    }

    fn a_deliberate_takeover_shares_the_address(driver) {
        let origin = Origin::echo();
        let mut first = Gw::simple(driver, &origin);
        let addr = first.addr;
        let second = Gateway::start(on_address(&origin, driver, addr, "[server]\ntakeover = true\n"))
            .unwrap_or_else(|e| panic!("takeover refused: {e}"));
        assert_eq!(second.addrs(), [addr]);
        // The old one drains; the new one keeps the address served.
        first.stop();
        let mut c = Client::connect(addr);
        assert_eq!(c.request(&Req::get("/after")).status, 200);
        second.shutdown();
        second.join();
    }
}

/// What a user sees from the command line: the second `ringgate` exits with the
/// address in its message; `--takeover` starts.
#[test]
fn the_binary_refuses_a_served_address_and_takes_over_when_told() {
    let origin = Origin::echo();
    let first = Gw::simple(IoDriver::Epoll, &origin);
    let addr = first.addr;
    let text = without_auth(&simple_config(&origin, ""))
        + &format!("[server]\nlisten = [\"{addr}\"]\nworkers = 1\npin_workers = false\n[log]\naccess_log = \"off\"\n");
    let dir = std::env::temp_dir().join(format!("ringgate-listen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("second.toml");
    std::fs::write(&path, &text).unwrap();

    // A second one that wrongly starts is stopped after 20 s (and fails below).
    let mut second = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringgate");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while second.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = second.kill();
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert_eq!(
        stderr.lines().next().unwrap_or(""),
        format!(
            "ringgate: cannot start: {addr} is already served by another process (another ringgate?); \
             stop it, listen elsewhere, or take it over deliberately with --takeover \
             (server.takeover = true), which shares the address for a zero-downtime upgrade"
        )
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["--config", path.to_str().unwrap(), "--takeover"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringgate --takeover");
    // It says where it listens once it accepts; read that line, then stop it.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        line.contains(&format!("listening on {addr}")),
        "--takeover did not start: {line}"
    );
}
