//! Reload: a new configuration taken by every worker without dropping a connection
//! (through the public API, and through SIGHUP to the binary), a broken one changing
//! nothing, and the state of what did not change (rate-limit buckets, cache entries)
//! carried over.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::*;

/// The configuration text as `Gw::start` renders it, parsed.
fn parsed(driver: IoDriver, workers: usize, template: &str) -> Config {
    let text = without_auth(&render_config(template, driver, workers));
    Config::parse(&text, "reload.toml").unwrap_or_else(|e| panic!("config rejected: {e}\n{text}"))
}

const BIG: usize = 24 << 20;

fn first(a: &Origin, b: &Origin) -> String {
    fill(
        r#"
[rate_limit]
default_plan = "tiny"

[plans.tiny]
requests_per_minute = 1
burst = 1

[[upstreams]]
name = "app"
servers = ["{a}"]

[[upstreams]]
name = "other"
servers = ["{b}"]

[[routes]]
id = "limited"
path_prefix = "/limited"
upstream = "other"
plan = "tiny"

[[routes]]
id = "cached"
path_prefix = "/cached"
upstream = "other"
cache = { ttl_s = 300 }

[[routes]]
id = "all"
path_prefix = "/"
upstream = "app"
"#,
        &[("a", a.addr()), ("b", b.addr())],
    )
}

/// The second configuration: a route added (`/new`) with a new plan, listed before
/// the old one (so plan numbers shift), `/moved` sent to another upstream, `app`'s
/// server replaced; `/limited` and `/cached` unchanged.
fn second(b: &Origin, c: &Origin) -> String {
    fill(
        r#"
[rate_limit]
default_plan = "tiny"

[plans.roomy]
requests_per_minute = 600
burst = 100

[plans.tiny]
requests_per_minute = 1
burst = 1

[[upstreams]]
name = "app"
servers = ["{c}"]

[[upstreams]]
name = "other"
servers = ["{b}"]

[[routes]]
id = "limited"
path_prefix = "/limited"
upstream = "other"
plan = "tiny"

[[routes]]
id = "cached"
path_prefix = "/cached"
upstream = "other"
cache = { ttl_s = 300 }

[[routes]]
id = "new"
path_prefix = "/new"
upstream = "other"
plan = "roomy"

[[routes]]
id = "moved"
path_prefix = "/moved"
upstream = "other"

[[routes]]
id = "all"
path_prefix = "/"
upstream = "app"
"#,
        &[("b", b.addr()), ("c", c.addr())],
    )
}

fn origin(name: &'static str) -> Origin {
    Origin::start(move |r| {
        if r.target == "/big" {
            Reply::ok(pattern(BIG, 3))
        } else if r.target.starts_with("/cached") {
            Reply::ok(format!("{name} {}", r.target)).header("Cache-Control", "max-age=300")
        } else {
            Reply::ok(format!("{name} {}", r.target))
        }
    })
}

both_drivers! {
    /// While one client is half-way through a large download and another holds a
    /// keep-alive connection, the configuration changes on both workers: the download
    /// completes, the kept connection serves the new routes, and nothing fails.
    fn reload_changes_routes_and_upstreams_without_dropping_a_connection(driver) {
        let (a, b, c) = (origin("a"), origin("b"), origin("c"));
        let gw = Gw::start_workers(driver, 2, &first(&a, &b));
        let mut kept = gw.client();
        assert_eq!(kept.request(&Req::get("/moved")).text(), "a /moved");
        assert_eq!(kept.request(&Req::get("/new")).text(), "a /new");

        // A 24 MiB download, of which the client has read only the head.
        let mut download = gw.client();
        download.send(Req::get("/big").bytes());
        let mut head = [0u8; 12];
        download.stream().try_clone().unwrap().read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");

        let restart = gw
            .gateway()
            .reload(parsed(driver, 2, &second(&b, &c)))
            .expect("reload applied");
        assert!(restart.is_empty(), "{restart:?}");

        assert_eq!(kept.request(&Req::get("/moved")).text(), "b /moved", "a changed route");
        assert_eq!(kept.request(&Req::get("/new")).text(), "b /new", "an added route");
        assert_eq!(kept.request(&Req::get("/x")).text(), "c /x", "a replaced server");
        // New connections land on either worker: each runs the new configuration.
        for _ in 0..8 {
            assert_eq!(gw.client().request(&Req::get("/x")).text(), "c /x");
        }
        let rest = read_rest(&download);
        assert_eq!(rest.len(), BIG, "the download completes");
        assert_eq!(checksum(&rest), checksum(&pattern(BIG, 3)));
        assert!(a.requests().iter().all(|r| r.target != "/x"));
        // The removed server's connections are closed, idle ones at the swap and the
        // download's once it is done: none goes back to a pool.
        a.wait_closed(a.connections());
    }

    /// What did not change keeps its state: a caller at its limit stays limited, a
    /// stored response is still a HIT; a raised limit applies at once.
    fn reload_keeps_buckets_and_cache_entries(driver) {
        let (a, b, c) = (origin("a"), origin("b"), origin("c"));
        let gw = Gw::start(driver, &first(&a, &b));
        let mut client = gw.client();
        // `tiny` admits 2 at once (burst 1), then one a minute.
        for _ in 0..2 {
            assert_eq!(client.request(&Req::get("/limited")).status, 200);
        }
        assert_eq!(client.request(&Req::get("/limited")).status, 429);
        let miss = client.request(&Req::get("/cached/item"));
        assert_eq!(miss.header("x-cache"), Some("MISS"));
        assert_eq!(client.request(&Req::get("/cached/item")).header("x-cache"), Some("HIT"));

        gw.gateway().reload(parsed(driver, 1, &second(&b, &c))).expect("reload applied");

        assert_eq!(client.request(&Req::get("/limited")).status, 429, "still limited");
        let hit = client.request(&Req::get("/cached/item"));
        assert_eq!(hit.header("x-cache"), Some("HIT"), "still stored");
        assert_eq!(hit.text(), "b /cached/item");
        assert_eq!(b.requests().iter().filter(|r| r.target == "/cached/item").count(), 1);
        // The new route's plan (burst 100) admits far more than `tiny` would.
        for i in 0..20 {
            assert_eq!(client.request(&Req::get("/new")).status, 200, "request {i}");
        }
    }
}

both_drivers! {
    /// Keys are part of the pipeline: a key added by a reload is accepted on every
    /// worker, one removed is refused.
    fn reload_changes_the_keys(driver) {
        let origin = origin("a");
        let keyed = |keys: &[(&str, &str)]| {
            let mut t = String::from("[auth.api_keys]\nheader = \"x-api-key\"\n");
            for (id, key) in keys {
                t.push_str(&format!(
                    "[[auth.api_keys.keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nuser = \"svc-{id}\"\n",
                    common::tokens::api_key_digest(key)
                ));
            }
            t.push_str(&fill(
                "[[upstreams]]\nname = \"app\"\nservers = [\"{a}\"]\n\n\
                 [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\n",
                &[("a", origin.addr())],
            ));
            t
        };
        let old_key = "reload-old-key-0123456789";
        let new_key = "reload-new-key-0123456789";
        let gw = Gw::start_workers(driver, 2, &keyed(&[("old", old_key)]));
        let with = |key: &str| Req::get("/k").header("X-API-Key", key);
        assert_eq!(gw.client().request(&with(old_key)).status, 200);
        assert_eq!(gw.client().request(&with(new_key)).status, 401);

        gw.gateway()
            .reload(parsed(driver, 2, &keyed(&[("new", new_key)])))
            .expect("reload applied");
        for _ in 0..6 {
            assert_eq!(gw.client().request(&with(new_key)).status, 200);
            assert_eq!(gw.client().request(&with(old_key)).status, 401);
        }
        assert_eq!(origin.last_request().header("x-user-id"), Some("svc-new"));
    }
}

/// The binary, told by SIGHUP: the file is read again; a valid one is applied, a
/// broken one is refused with its file and line, and the old configuration serves on.
#[test]
fn sighup_reloads_the_file_and_a_broken_file_changes_nothing() {
    let (a, b, c) = (origin("a"), origin("b"), origin("c"));
    let dir = std::env::temp_dir().join(format!("ringgate-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    let render = |t: &str| without_auth(&render_config(t, IoDriver::Epoll, 1));
    std::fs::write(&file, render(&first(&a, &b))).unwrap();

    let mut gw = Binary::start(&file);
    let addr = gw.addr;
    let get = |path: &str| Client::connect(addr).request(&Req::get(path)).text();
    assert_eq!(get("/new"), "a /new");

    std::fs::write(&file, render(&second(&b, &c))).unwrap();
    gw.signal("HUP");
    gw.wait_for_line("reloaded");
    assert_eq!(get("/new"), "b /new");
    assert_eq!(get("/x"), "c /x");

    std::fs::write(
        &file,
        render(&second(&b, &c)).replace("[[routes]]", "[[routes]\n"),
    )
    .unwrap();
    gw.signal("HUP");
    let line = gw.wait_for_line("reload failed");
    assert!(
        line.contains("gateway.toml:"),
        "names the file and line: {line}"
    );
    assert_eq!(get("/new"), "b /new", "the running configuration stays");

    gw.signal("TERM");
    gw.wait_for_line("stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ringgate --config FILE` as a child process, its stderr read line by line.
struct Binary {
    child: Child,
    addr: std::net::SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Binary {
    fn start(file: &std::path::Path) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringgate"))
            .arg("--config")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ringgate starts");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut b = Binary {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            lines,
        };
        let line = b.wait_for_line("listening on ");
        b.addr = line
            .rsplit("listening on ")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        b
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The next stderr line containing `what` (earlier lines are skipped).
    fn wait_for_line(&mut self, what: &str) -> String {
        loop {
            match self.lines.recv_timeout(IO_TIMEOUT) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(e) => panic!("no stderr line with {what:?}: {e}"),
            }
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a response whose first 12 bytes were already read off the socket: the
/// rest of its head, then `Content-Length` bytes.
fn read_rest(client: &Client) -> Vec<u8> {
    let mut s = client.stream().try_clone().unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("a Content-Length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    body
}
