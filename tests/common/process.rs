//! The real binary as a child process: its configuration written to a temporary file,
//! stderr drained for as long as it lives (a full pipe would block it) and kept for
//! failure messages, and its start-up lines read as the readiness signal (no sleeps).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A started `ringgate --config FILE`.
pub struct Spawned {
    pub child: Child,
    /// The first address of its "listening on" line.
    pub addr: SocketAddr,
    /// The admin listener ("admin API on http://..."), when asked for.
    pub admin: Option<SocketAddr>,
    /// The start-up line ("ringgate VERSION: N workers, DRIVER driver, listening on ...").
    pub start_line: String,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    /// The stderr lines so far, one per line.
    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// Start the binary on `config` (named `tag` in the temporary file's name); returns
/// once it has reported listening and, with `admin`, its admin listener (10 s at most,
/// else the child is killed and the test fails with its stderr).
pub fn spawn_gateway(tag: &str, config: &str, admin: bool) -> Spawned {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "ringgate-{tag}-{}-{}.toml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringgate");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    let (mut start, mut admin_addr) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while start.is_none() || (admin && admin_addr.is_none()) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ringgate ({tag}) did not report its listeners; its stderr:\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        if let Some(rest) = line.split("listening on ").nth(1) {
            let first = rest.split([',', ' ']).next().unwrap();
            let addr: SocketAddr = first
                .parse()
                .unwrap_or_else(|_| panic!("address in {line:?}"));
            start = Some((addr, line.clone()));
        } else if let Some(rest) = line.split("admin API on http://").nth(1) {
            admin_addr = Some(rest.split(' ').next().unwrap().parse().unwrap());
        }
    }
    // The gateway has read it.
    let _ = std::fs::remove_file(&path);
    let (addr, start_line) = start.unwrap();
    Spawned {
        child,
        addr,
        admin: admin_addr,
        start_line,
        log,
    }
}
