//! The demo's printed instructions, run as printed: the real binary, `ringgate demo
//! --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0 --backend-ports 0,0,0` (every port
//! chosen by the OS, so that it runs beside the other tests), read until its
//! instructions end, then every `export` and every commented curl line of them through
//! `sh`, with the real curl (HTTP and HTTPS). Each comment
//! names what the line shows (status codes, `X-Cache` values); the output must show it.
//! On both drivers (`--io-driver`).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::*;

/// The instructions' last line (src/cli/demo/instructions.rs, `LAST_LINE`): once it is
/// printed, the gateway and the services accept connections.
const LAST_LINE: &str = "Ctrl-C stops the gateway and the demo backends.";
/// Generous: a debug build on a busy 2-core machine starts in well under a second.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `ringgate demo` as a child process. Dropping it kills and reaps the child, so a test
/// that panics leaves no demo running.
struct Demo {
    child: Child,
    /// Its output, line by line, from both streams ("stdout: ..." / "stderr: ...").
    output: Receiver<String>,
    /// What has been read so far, for failure messages.
    seen: Vec<String>,
}

impl Demo {
    fn start(driver: IoDriver) -> Demo {
        let driver = match driver {
            IoDriver::IoUring => "io_uring",
            _ => "epoll",
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringgate"))
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--tls-listen",
                "127.0.0.1:0",
                "--backend-ports",
                "0,0,0",
            ])
            .args(["--io-driver", driver])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringgate demo");
        let (tx, output) = mpsc::channel();
        // Both streams are read to their end, for as long as the child lives: a pipe
        // left full would block the access log, and the gateway with it.
        let readers: [(&str, Box<dyn Read + Send>); 2] = [
            ("stdout", Box::new(child.stdout.take().unwrap())),
            ("stderr", Box::new(child.stderr.take().unwrap())),
        ];
        for (name, stream) in readers {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(format!("{name}: {line}"));
                }
            });
        }
        Demo {
            child,
            output,
            seen: Vec::new(),
        }
    }

    /// Reads the output up to the instructions' last line and returns the instructions
    /// (what the demo printed on stdout). Fails with everything printed if the demo
    /// exits, or is not ready within [`START_TIMEOUT`].
    fn instructions(&mut self) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut shown = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.output.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => self.fail("no instructions in time"),
                Err(RecvTimeoutError::Disconnected) => self.fail("the demo exited"),
            };
            self.seen.push(line.clone());
            if let Some(text) = line.strip_prefix("stdout: ") {
                shown.push_str(text);
                shown.push('\n');
                if text == LAST_LINE {
                    return shown;
                }
            }
        }
    }

    /// SIGTERM, as Ctrl-C would: the demo drains and exits.
    fn stop(mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.fail("the demo did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        // Whatever the readers still hold, now that the child is gone.
        while let Ok(line) = self.output.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(line);
        }
        panic!("{why}; it printed:\n{}", self.seen.join("\n"));
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

both_drivers! {
    fn every_printed_curl_line_shows_what_its_comment_says(driver) {
        assert!(
            Command::new("curl").arg("--version").output().is_ok(),
            "curl is needed (.ci/run installs it)"
        );
        let mut demo = Demo::start(driver);
        let shown = demo.instructions();
        assert!(
            shown.starts_with("ringgate demo: gateway on http://127.0.0.1:"),
            "{shown}"
        );
        // Every port was chosen by the OS: none of the defaults the README shows.
        for fixed in [":8080", ":8443", ":19001", ":19002", ":19003"] {
            assert!(!shown.contains(&format!("{fixed}/")), "{fixed} in\n{shown}");
            assert!(!shown.contains(&format!("{fixed},")), "{fixed} in\n{shown}");
        }
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
        let status = demo.stop();
        assert!(status.success(), "exit status {status:?}");
    }
}

/// `demo --help` lists only what demo uses: not `--config`, which it would refuse.
#[test]
fn demo_help_lists_its_own_flags_only() {
    let help = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["demo", "--help"])
        .output()
        .expect("run ringgate demo --help");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--listen", "--tls-listen", "--backend-ports", "--io-driver"] {
        assert!(text.contains(flag), "{flag} missing:\n{text}");
    }
    assert!(!text.contains("--config"), "{text}");

    let refused = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["--config", "config/gateway.toml", "demo"])
        .output()
        .expect("run ringgate --config ... demo");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--config is not used"), "{err}");
}
