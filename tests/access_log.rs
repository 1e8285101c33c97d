//! The access log never blocks a worker: the gateway's stdout is a pipe that nobody
//! reads (a stuck log shipper), and requests go on being answered long after the pipe
//! is full. Its lines carry the trace context.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_stuck_stdout_never_stalls_requests() {
    let origin = Origin::echo();
    let text = without_auth(&simple_config(
        &origin,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = \"stdout\"\n",
    ));
    let dir = common::tls::TempDir::new("access-log");
    let path = dir.path("gw.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr: std::net::SocketAddr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no start line");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split([',', ' ']).next().unwrap().parse().unwrap();
        }
    };
    // Each line is about 1.2 KiB: 3,000 of them are 3.6 MiB, fifty-odd times what the
    // pipe holds. Nobody reads stdout meanwhile.
    let long = "x".repeat(1000);
    let mut c = Client::connect(addr);
    let t = Instant::now();
    for i in 0..3000 {
        let r = c.request(&Req::get(&format!("/{long}/{i}")));
        assert_eq!(r.status, 200, "request {i}");
    }
    let took = t.elapsed();
    // Now read what was logged: whole lines, with the trace context.
    let mut stdout = child.stdout.take().unwrap();
    let mut head = vec![0u8; 64 * 1024];
    let n = stdout.read(&mut head).unwrap();
    let first = String::from_utf8_lossy(&head[..n]);
    let line = first.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["trace_id"].as_str().map(str::len), Some(32), "{line}");
    assert_eq!(v["span_id"].as_str().map(str::len), Some(16), "{line}");
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("3000 requests with stdout unread: {took:?}");
}
