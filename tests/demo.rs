//! The demo's printed instructions, run as printed: the real binary, `ringgate demo
//! --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0 --backend-ports 0,0,0` (every port
//! chosen by the OS, so that it runs beside the other tests), read until its
//! instructions end, then every `export` and every commented curl line of them through
//! `sh`, with the real curl: plain HTTP and HTTPS, where curl (OpenSSL) verifies the
//! gateway's certificate against the demo CA the line names with `--cacert`. Each
//! comment names what the line shows (status codes, `X-Cache` values, quoted JSON
//! values, headers the backend received); the output must show it. The certificate's
//! directory is gone once the demo has stopped, and its key appeared nowhere in the
//! output. On both drivers (`--io-driver`).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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
    /// The certificate's directory, once known: a demo killed (not stopped) cannot
    /// remove it, so dropping a `Demo` does.
    cert_dir: Option<PathBuf>,
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
                "--admin-listen",
                "127.0.0.1:0",
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
            cert_dir: None,
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

    /// SIGTERM, as Ctrl-C would: the demo drains and exits. Then the rest of its output
    /// is read, into `seen`.
    fn stop(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The readers end at the streams' end, now that the child is gone.
                while let Ok(line) = self.output.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
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
        if let Some(dir) = &self.cert_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
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
    // Headers the backend is said to have received (the echo route, which answers with
    // them as `["Name","value"]` pairs): a name, or `Name: value`.
    let received = comment
        .split_once("received")
        .and_then(|(_, rest)| rest.split_once(": "));
    if let Some((_, received)) = received {
        for item in received.split(", ") {
            let item = item.trim();
            if !item.starts_with("X-") {
                continue;
            }
            let item = item.to_ascii_lowercase();
            out.push(match item.split_once(": ") {
                Some((name, value)) => format!("[\"{name}\",\"{value}\"]"),
                None => format!("\"{item}\""),
            });
        }
    }
    // Quoted values ("Grace Hopper", error="invalid_token"): in the output, quotes and all.
    out.extend(
        comment
            .split('"')
            .skip(1)
            .step_by(2)
            .map(|quoted| format!("\"{quoted}\"")),
    );
    out
}

#[test]
fn comments_promise_statuses_headers_and_quoted_values() {
    let p = |c: &str| promises(c);
    assert_eq!(
        p("What the backend received over HTTPS: X-Forwarded-Proto: https, X-User-ID, no Authorization"),
        ["[\"x-forwarded-proto\",\"https\"]", "\"x-user-id\""]
    );
    assert_eq!(
        p("The pro user's token over HTTPS: 200 and user 2, \"Grace Hopper\""),
        ["200", "\"Grace Hopper\""]
    );
    assert_eq!(
        p("A forged token: 401 with error=\"invalid_token\""),
        ["401", "\"invalid_token\""]
    );
    assert_eq!(
        p("asked twice: X-Cache: MISS, then HIT (each worker)"),
        ["X-Cache: MISS", "X-Cache: HIT"]
    );
}

/// The file `--cacert` names in a curl line.
fn cacert(cmd: &str) -> Option<PathBuf> {
    let (_, rest) = cmd.split_once("--cacert ")?;
    rest.split(' ').next().map(PathBuf::from)
}

/// The demo's CA and the directory of its certificate files: the same for every HTTPS
/// line. The server key beside them is readable by its owner only.
fn certificate_dir(shown: &str) -> (PathBuf, PathBuf) {
    let cas: Vec<PathBuf> = shown.lines().filter_map(cacert).collect();
    assert!(cas.len() >= 3, "too few HTTPS lines in\n{shown}");
    let ca = cas[0].clone();
    assert!(cas.iter().all(|c| *c == ca), "{cas:?}");
    let pem = std::fs::read_to_string(&ca).unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let dir = ca.parent().unwrap().to_path_buf();
    assert!(
        shown.contains(&format!(" {} ", dir.display())),
        "the text says where the files are:\n{shown}"
    );
    let key = dir.join("localhost.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key.display());
    (ca, dir)
}

/// The lines of the server key's PEM body, none of which may be printed.
fn key_lines(dir: &Path) -> Vec<String> {
    let key = std::fs::read_to_string(dir.join("localhost.key")).unwrap();
    assert!(key.contains("PRIVATE KEY"), "not a key");
    key.lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
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
        for fixed in [":8080", ":8443", ":9901", ":19001", ":19002", ":19003"] {
            assert!(!shown.contains(&format!("{fixed}/")), "{fixed} in\n{shown}");
            assert!(!shown.contains(&format!("{fixed},")), "{fixed} in\n{shown}");
        }
        let exports: String = shown
            .lines()
            .filter(|l| l.starts_with("export "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(exports.lines().count(), 4, "{shown}");
        let (ca, dir) = certificate_dir(&shown);
        demo.cert_dir = Some(dir.clone());
        let key = key_lines(&dir);
        let lines: Vec<&str> = shown.lines().collect();
        let mut ran = 0;
        let mut https = 0;
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
            if cmd.contains("https://") {
                // Verified against the demo CA (curl fails without a trusted chain).
                assert_eq!(cacert(cmd).as_ref(), Some(&ca), "{cmd}");
                https += 1;
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
        assert!(https >= 3, "only {https} HTTPS lines in\n{shown}");
        let status = demo.stop();
        assert!(status.success(), "exit status {status:?}");
        assert!(!dir.exists(), "{} is left after the demo stopped", dir.display());
        let output = demo.seen.join("\n");
        assert!(!output.contains("PRIVATE KEY"), "{output}");
        for line in &key {
            assert!(!output.contains(line.as_str()), "the key was printed:\n{output}");
        }
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
    for flag in [
        "--listen",
        "--tls-listen",
        "--backend-ports",
        "--admin-listen",
        "--io-driver",
    ] {
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
