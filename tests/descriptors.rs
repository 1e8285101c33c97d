//! Descriptor limits, on the real binary started under a low `RLIMIT_NOFILE` (through
//! `sh -c 'ulimit -n 64; exec ringgate ...'`, which lowers the hard limit too: the
//! binary raises its soft limit to the hard one at start). Out of descriptors, the
//! accept loop waits instead of spinning, logs once per interval, the open connections
//! are served, and the connections that waited in the listen backlog are served once
//! descriptors are free again; `max_connections` under the limit refuses cleanly (on
//! both drivers). At start, the soft limit goes up to the hard one, with a warning when
//! `max_connections` does not fit under it.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

/// The descriptor limit the gateway runs under: a one-worker gateway holds 8 when idle.
const LIMIT: usize = 64;

/// `ringgate --config FILE` started by `sh` after a `ulimit` command, its stderr kept.
struct Limited {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Reads `stderr` into the lines above until the process exits.
    reader: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl Limited {
    /// Start the binary after `ulimit` (a shell command such as `ulimit -n 64`) with
    /// `template` rendered as the tests render it (one worker, this driver), warnings
    /// logged.
    fn start(ulimit: &str, driver: IoDriver, template: &str) -> Limited {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let text =
            render_config(template, driver, 1).replace("level = \"error\"", "level = \"warn\"");
        let dir = std::env::temp_dir().join(format!(
            "ringgate-nofile-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gateway.toml");
        std::fs::write(&file, &text).unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("{ulimit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_ringgate"))
            .arg("--config")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut gw = Limited {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            stderr,
            reader: Some(reader),
            dir,
        };
        let line = gw.wait_for_line("listening on ");
        gw.addr = line
            .rsplit("listening on ")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        gw
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line so far that contains `what`.
    fn lines_with(&self, what: &str) -> Vec<String> {
        let lines = self.stderr.lock().unwrap();
        lines.iter().filter(|l| l.contains(what)).cloned().collect()
    }

    /// The first stderr line with `what`, waiting for it; fails if the process exits
    /// without printing it.
    fn wait_for_line(&mut self, what: &str) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(line) = self.lines_with(what).into_iter().next() {
                return line;
            }
            let exited = self.child.try_wait().unwrap();
            if exited.is_some() {
                // The reader ends at the end of the pipe: what it still held is in.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                if let Some(line) = self.lines_with(what).into_iter().next() {
                    return line;
                }
            }
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "no stderr line with {what:?} (exit: {exited:?}); stderr:\n{}",
                    self.stderr.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// CPU time used so far, user and system (`/proc/<pid>/stat`).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // After the command name in parentheses: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
    }

    /// (soft, hard) "Max open files" of the process; `None` is unlimited.
    fn nofile(&self) -> (Option<u64>, Option<u64>) {
        nofile_of(&self.pid().to_string())
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// (soft, hard) "Max open files" of a process (`self` for this one).
fn nofile_of(pid: &str) -> (Option<u64>, Option<u64>) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let values: Vec<Option<u64>> = line["Max open files".len()..]
        .split_whitespace()
        .take(2)
        .map(|v| v.parse().ok())
        .collect();
    (values[0], values[1])
}

/// Open connections without a request until the gateway logs that accept failed:
/// twice the limit, so that the last ones wait in the listen backlog (4096 deep).
fn exhaust(gw: &mut Limited) -> Vec<TcpStream> {
    let fillers: Vec<TcpStream> = (0..2 * LIMIT)
        .map(|_| TcpStream::connect(gw.addr).expect("the backlog takes the connection"))
        .collect();
    gw.wait_for_line("accept failed");
    fillers
}

/// A request on `client`, expected to come back 200 from the echo origin.
fn assert_echoed(client: &mut Client, path: &str) {
    let resp = client.request(&Req::get(path));
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(resp.text(), format!("GET {path}"));
}

both_drivers! {
    fn out_of_descriptors_the_gateway_waits_logs_once_and_keeps_serving(driver) {
        let started = Instant::now();
        let origin = Origin::echo();
        // Connections without a request stay open for the whole test.
        // "/fresh" goes to the same origin through an upstream whose pool is empty,
        // and whose breaker opens at the first failure counted against it.
        let fresh = fill(
            "[[upstreams]]\nname = \"fresh\"\nservers = [\"{origin}\"]\n\
             [upstreams.circuit_breaker]\nfailure_threshold = 1\nopen_ms = 60000\n\n\
             [[routes]]\nid = \"fresh\"\npath_prefix = \"/fresh\"\nupstream = \"fresh\"\nauth = \"none\"\n\n",
            &[("origin", origin.addr())],
        );
        let mut gw = Limited::start(
            &format!("ulimit -n {LIMIT}"),
            driver,
            &(fresh + &simple_config(&origin, "[server.limits]\nheader_read_timeout_ms = 60000\n")),
        );
        // Keep-alive connections opened and served while descriptors are plenty.
        let mut open: Vec<Client> = (0..4)
            .map(|i| {
                let mut c = Client::connect(gw.addr);
                assert_echoed(&mut c, &format!("/open/{i}"));
                c
            })
            .collect();

        let fillers = exhaust(&mut gw);
        // Clients that send their request while they wait in the backlog.
        let mut waiting: Vec<Client> = (0..3)
            .map(|i| {
                let mut c = Client::connect(gw.addr);
                c.send(Req::get(&format!("/waiting/{i}")).bytes());
                c
            })
            .collect();

        // Out of descriptors with connections queued, the process does not spin. (The
        // sleep is the measuring window, not a wait for readiness.)
        let (cpu_before, t) = (gw.cpu(), Instant::now());
        std::thread::sleep(Duration::from_secs(1));
        let (cpu, wall) = (gw.cpu() - cpu_before, t.elapsed());
        eprintln!("CPU out of descriptors: {cpu:?} in {wall:?}");
        assert!(
            cpu < wall / 5,
            "the gateway used {cpu:?} of CPU in {wall:?} while out of descriptors"
        );
        assert!(
            !origin.requests().iter().any(|r| r.target.starts_with("/waiting/")),
            "the waiting clients were served: the gateway was not out of descriptors"
        );

        // The connections it holds are served as before. (One at a time, their requests
        // reuse the upstream connection in the pool.)
        for (i, c) in open.iter_mut().enumerate() {
            assert_echoed(c, &format!("/again/{i}"));
        }
        // One that needs a new upstream connection cannot have one: 503, the gateway's
        // own trouble, which does not count against the upstream (its breaker would
        // open at one failure).
        let resp = open[1].request(&Req::get("/fresh/during"));
        resp.assert_json_error(503);
        let message = resp.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("out of resources"), "{message}");
        let targets: Vec<String> = origin.requests().into_iter().map(|r| r.target).collect();
        for i in 0..open.len() {
            assert!(targets.contains(&format!("/again/{i}")), "{targets:?}");
        }

        // Descriptors free again: the clients that waited are taken and served.
        drop(fillers);
        let t = Instant::now();
        for (i, c) in waiting.iter_mut().enumerate() {
            let resp = c.read_response();
            assert_eq!(resp.status, 200, "{}", resp.head);
            assert_eq!(resp.text(), format!("GET /waiting/{i}"));
        }
        let recovered = t.elapsed();
        eprintln!("waiting clients served {recovered:?} after the descriptors were freed");
        // The longest backoff is 500 ms.
        assert!(recovered < Duration::from_secs(2), "served only after {recovered:?}");
        assert_echoed(&mut Client::connect(gw.addr), "/after");
        assert_echoed(&mut open[0], "/open/again");
        assert_echoed(&mut open[2], "/fresh/after");

        // However many accepts failed, one line per interval (10 s) at most.
        let logged = gw.lines_with("accept failed");
        let bound = 1 + started.elapsed().as_secs() / 10;
        assert!(
            !logged.is_empty() && logged.len() as u64 <= bound,
            "{} lines (at most {bound}):\n{}",
            logged.len(),
            logged.join("\n")
        );
        let first = logged[0].to_ascii_lowercase();
        assert!(first.contains("too many open files"), "{first}");
        assert!(first.contains("ulimit -n"), "{first}");
        assert!(first.contains("max_connections"), "{first}");
    }

    fn out_of_descriptors_sigterm_still_stops_it_at_once(driver) {
        let origin = Origin::echo();
        let mut gw = Limited::start(
            &format!("ulimit -n {LIMIT}"),
            driver,
            &simple_config(&origin, "[server]\ngraceful_shutdown_s = 10\n"),
        );
        let _fillers = exhaust(&mut gw);
        let t = Instant::now();
        gw.signal("TERM");
        gw.wait_for_line("stopped");
        let status = gw.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        // Idle connections close at once; nothing waits for the drain bound or a backoff.
        assert!(t.elapsed() < Duration::from_secs(3), "stopping took {:?}", t.elapsed());
    }

    fn max_connections_under_the_descriptor_limit_refuses_cleanly(driver) {
        let origin = Origin::echo();
        let gw = Limited::start(
            &format!("ulimit -n {LIMIT}"),
            driver,
            &simple_config(&origin, "[server]\nmax_connections = 8\n"),
        );
        let mut admitted: Vec<Client> = (0..8)
            .map(|i| {
                let mut c = Client::connect(gw.addr);
                assert_echoed(&mut c, &format!("/admitted/{i}"));
                c
            })
            .collect();
        // More refusals than the process has descriptors: each is closed at once, so
        // none is kept (were one kept, the later ones would wait in the backlog and
        // time out here).
        for i in 0..2 * LIMIT {
            let mut c = Client::connect(gw.addr);
            c.try_send(Req::get(&format!("/refused/{i}")).bytes());
            let took = c.time_until_closed();
            assert!(took < Duration::from_secs(1), "refusal {i} took {took:?}");
        }
        assert!(
            !origin.requests().iter().any(|r| r.target.starts_with("/refused/")),
            "a refused request reached the origin"
        );
        for (i, c) in admitted.iter_mut().enumerate() {
            assert_echoed(c, &format!("/still/{i}"));
        }
        // Once one leaves, a new connection is admitted again.
        drop(admitted.pop());
        wait_until("a slot to free up", || {
            let mut c = Client::connect(gw.addr);
            c.try_send(Req::get("/later").bytes())
                && c.try_read_response("GET").is_ok_and(|r| r.status == 200)
        });
        // Refusing is not failing to accept.
        assert_eq!(gw.lines_with("accept failed"), Vec::<String>::new());
    }
}

/// At start the binary raises its soft descriptor limit to the hard one, and warns
/// when `max_connections` does not fit under it. Not about the driver: epoll only.
#[test]
fn start_raises_the_soft_limit_and_warns_when_max_connections_does_not_fit() {
    let origin = Origin::echo();
    let config = |top: &str| simple_config(&origin, top);

    let (_, hard) = nofile_of("self");
    if hard.is_some_and(|h| h > LIMIT as u64) {
        let gw = Limited::start(&format!("ulimit -Sn {LIMIT}"), IoDriver::Epoll, &config(""));
        assert_eq!(
            gw.nofile(),
            (hard, hard),
            "the soft limit is raised to the hard one"
        );
    } else {
        eprintln!("skipped the raise: the hard limit here is {hard:?}");
    }

    // The default max_connections (100,000) under a hard limit of 64.
    let mut gw = Limited::start(&format!("ulimit -n {LIMIT}"), IoDriver::Epoll, &config(""));
    assert_eq!(gw.nofile(), (Some(LIMIT as u64), Some(LIMIT as u64)));
    let warning = gw.wait_for_line("descriptor limit");
    assert!(warning.contains("max_connections = 100000"), "{warning}");
    assert!(warning.contains(&format!("is {LIMIT}")), "{warning}");
    assert!(warning.contains("ulimit -n"), "{warning}");

    // One that fits: no warning (it would come before the line that says it stopped).
    let mut gw = Limited::start(
        &format!("ulimit -n {LIMIT}"),
        IoDriver::Epoll,
        &config("[server]\nmax_connections = 8\n"),
    );
    assert_echoed(&mut Client::connect(gw.addr), "/fits");
    gw.signal("TERM");
    gw.wait_for_line("stopped");
    assert_eq!(gw.lines_with("descriptor limit"), Vec::<String>::new());
}
