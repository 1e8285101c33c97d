//! `[cluster]` end to end: two gateways in this process, on their own ports, share one
//! real Redis (started by the test on a free port). A key spent on one node is refused
//! on the other once the counts have gone through Redis; with Redis killed, requests are
//! answered at once and each node limits with its share (1/live nodes), then catches up
//! when Redis returns; a stopped node stops being counted after its heartbeat expires.
//!
//! Needs `redis-server` on PATH (Debian/Ubuntu: `apt-get install redis-server`;
//! `.ci/run` installs it).

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::redis_server::Redis;
use common::*;

/// Plan `free`: a bucket of 10 that refills one request every 10 s (nothing refills
/// while a test runs), keyed by IP, so every request of the test is one key.
fn config(origin: &Origin, redis: &Redis, name: &str, node: &str) -> String {
    config_with(origin, redis, name, node, 6, 9)
}

fn config_with(
    origin: &Origin,
    redis: &Redis,
    name: &str,
    node: &str,
    rpm: u32,
    burst: u32,
) -> String {
    config_url(origin, &redis.url(), name, node, rpm, burst)
}

/// [`config_with`] for any Redis URL.
fn config_url(origin: &Origin, url: &str, name: &str, node: &str, rpm: u32, burst: u32) -> String {
    fill(
        &format!(
            "[rate_limit]\ndefault_plan = \"free\"\nkey = \"ip\"\nsync_interval_ms = 20\n\n\
             [plans.free]\nrequests_per_minute = {rpm}\nburst = {burst}\n\n\
             [cluster]\nredis_url = \"{}\"\nnode_id = \"{node}\"\nname = \"{name}\"\n\
             sync_interval_ms = 50\n\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{{origin}}\"]\n\n\
             [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
             auth = \"none\"\nplan = \"free\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            url
        ),
        &[("origin", origin.addr())],
    )
}

const BUCKET: usize = 10;

/// `GET /metrics` on the gateway's admin listener.
fn metrics(gw: &Gw) -> String {
    let admin = gw.gateway().admin_addr().expect("an admin listener");
    let r = Client::connect(admin).request(&Req::get("/metrics"));
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

/// `GET /health` on the gateway's admin listener.
fn health(gw: &Gw) -> serde_json::Value {
    let admin = gw.gateway().admin_addr().expect("an admin listener");
    let r = Client::connect(admin).request(&Req::get("/health"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

both_drivers! {
    fn one_key_hammered_through_two_nodes_gets_one_allowance(driver) {
        // 600/min, burst 0: one request every T = 100 ms, a bucket of 1.
        let redis = Redis::start();
        let origin = Origin::echo();
        let name = format!("t{}", redis.port);
        let a = Gw::start(driver, &config_with(&origin, &redis, &name, "a", 600, 0));
        let b = Gw::start(driver, &config_with(&origin, &redis, &name, "b", 600, 0));
        let run = Duration::from_secs(3);
        let hammer = |addr: std::net::SocketAddr| {
            std::thread::spawn(move || {
                let mut admitted = 0u64;
                let t0 = Instant::now();
                while t0.elapsed() < run {
                    match Client::connect(addr).request(&Req::get("/h")).status {
                        200 => admitted += 1,
                        429 => {}
                        s => panic!("unexpected status {s}"),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                (admitted, t0.elapsed())
            })
        };
        let (ta, tb) = (hammer(a.addr), hammer(b.addr));
        let (na, da) = ta.join().unwrap();
        let (nb, db) = tb.join().unwrap();
        let d = da.max(db).as_millis() as u64;
        // The bound for N x W = 2 buckets, floor(D/T) + 1 + 1 x (floor(L/T) + 1), with
        // L = 2 x 20 ms + 2 x 50 ms + Redis round trips, taken as 300 ms (timers fire
        // late on a loaded machine): 30 + 1 + 4 = 35 over 3 s. Each node alone would
        // admit 31, 62 together.
        let bound = d / 100 + 1 + (300 / 100 + 1);
        let total = na + nb;
        eprintln!("admitted {na} + {nb} = {total} in {d} ms (bound {bound})");
        assert!(total <= bound, "admitted {na} + {nb} = {total} in {d} ms: bound {bound}");
        // And the shared limit is the limit, not much less: one node alone admits
        // floor(D/T) + 1; sharing may only be stricter by L of refill.
        assert!(total >= d / 100 - 3, "admitted {na} + {nb} = {total} in {d} ms");
        assert!(na > 0 && nb > 0, "both nodes admitted: {na} {nb}");
        // Pushed to every round for 3 s (three windows), each counter still expires:
        // its PEXPIRE went with a node's first push to it.
        assert!(redis.counters_expire(&name) > 0);
    }

    fn a_key_spent_on_one_node_is_refused_on_the_other(driver) {
        let redis = Redis::start();
        let origin = Origin::echo();
        let name = format!("t{}", redis.port);
        let a = Gw::start(driver, &config(&origin, &redis, &name, "a"));
        let b = Gw::start(driver, &config(&origin, &redis, &name, "b"));
        // Node a spends the whole bucket, then its counts reach Redis.
        for i in 0..BUCKET {
            assert_eq!(a.send(&Req::get("/x")).status, 200, "request {i} on a");
        }
        assert_eq!(a.send(&Req::get("/x")).status, 429);
        wait_until("a's counts in Redis", || redis.admitted(&name) >= BUCKET as i64);
        assert!(redis.counters_expire(&name) > 0);
        // Node b has not heard of the key yet: it admits until its counts have gone to
        // its sync thread (a gossip round, 20 ms), that thread's round has read the
        // cluster's count (50 ms) and the charge has reached the worker (20 ms), then
        // refuses. Alone, it would admit a whole bucket (10): paced at 100 ms, that
        // takes a second, ten times that latency (at 20 ms a CI run under load once
        // took longer than the 200 ms of the whole bucket).
        let mut admitted_b = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = b.send(&Req::get("/x"));
            match r.status {
                200 => admitted_b += 1,
                429 => break,
                s => panic!("unexpected status {s} from b"),
            }
            assert!(Instant::now() < deadline, "b never refused: counts not shared");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            admitted_b < BUCKET,
            "b admitted {admitted_b} after a spent the bucket: its own whole bucket"
        );
        // And the refusal holds although b has spent less than its own bucket: it was
        // charged a's 10.
        for _ in 0..3 {
            assert_eq!(b.send(&Req::get("/x")).status, 429);
        }
        drop(redis);
    }

    fn redis_down_answers_at_once_and_limits_with_the_nodes_share(driver) {
        let mut redis = Redis::start();
        let origin = Origin::echo();
        let name = format!("t{}", redis.port);
        let a = Gw::start(driver, &config(&origin, &redis, &name, "a"));
        let b = Gw::start(driver, &config(&origin, &redis, &name, "b"));
        // Both nodes beat, and a has counted both.
        wait_until("both heartbeats", || redis.nodes(&name).len() == 2);
        wait_until("a to count two live nodes", || {
            health(&a)["cluster"]["live_nodes"] == 2
        });
        assert_eq!(
            health(&a)["cluster"],
            serde_json::json!({"redis": "up", "limits": "shared", "live_nodes": 2, "failed_rounds": 0})
        );
        redis.kill();
        // Paced at 20 ms for 1 s: every request is answered at once, 200 or 429.
        // Alone a node would admit its whole bucket (10); with its share of two nodes,
        // each count is charged twice, so it admits about half.
        let mut admitted = 0;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(1) {
            let t = Instant::now();
            let r = a.send(&Req::get("/x"));
            let took = t.elapsed();
            assert!(took < Duration::from_millis(200), "a request took {took:?} with Redis down");
            match r.status {
                200 => admitted += 1,
                429 => {}
                s => panic!("unexpected status {s} with Redis down"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            (1..=7).contains(&admitted),
            "a admitted {admitted} of a bucket of {BUCKET} with Redis down (its share: about 5)"
        );
        let h = health(&a);
        assert_eq!(h["status"], "ok", "{h}");
        assert_eq!(h["cluster"]["redis"], "down", "{h}");
        assert_eq!(h["cluster"]["limits"], "local", "{h}");
        assert_eq!(h["cluster"]["live_nodes"], 2, "{h}");
        assert!(h["cluster"]["failed_rounds"].as_u64().unwrap() >= 1, "{h}");
        let m = metrics(&a);
        assert!(m.lines().any(|l| l == "ringgate_cluster_redis_up 0"), "{m}");
        assert!(m.lines().any(|l| l == "ringgate_cluster_live_nodes 2"), "{m}");
        assert!(!m.contains("ringgate_cluster_sync_failures_total 0\n"), "{m}");
        // The other node still answers too.
        let r = b.send(&Req::get("/y"));
        assert!(r.status == 200 || r.status == 429, "b answered {}", r.status);
        let admitted_b = usize::from(r.status == 200);
        // Redis comes back (empty): both nodes reconnect and push what they admitted
        // meanwhile, so the cluster's counts catch up.
        let port = redis.port;
        drop(redis);
        let redis = Redis::on(port);
        wait_until("a to reach Redis again", || health(&a)["cluster"]["redis"] == "up");
        wait_until("the outage's admissions in Redis", || {
            redis.admitted(&name) == (admitted + admitted_b) as i64
        });
        assert_eq!(health(&a)["cluster"]["limits"], "shared");
        assert!(metrics(&a).lines().any(|l| l == "ringgate_cluster_redis_up 1"));
        // A counter's expiry is sent with a node's first push to it on a connection:
        // the new (empty) Redis has it too.
        assert!(redis.counters_expire(&name) > 0);
    }

    fn a_stopped_node_stops_counting_after_its_heartbeat_expires(driver) {
        let redis = Redis::start();
        let origin = Origin::echo();
        let name = format!("t{}", redis.port);
        let a = Gw::start(driver, &config(&origin, &redis, &name, "a"));
        let mut b = Gw::start(driver, &config(&origin, &redis, &name, "b"));
        wait_until("a to count two live nodes", || {
            health(&a)["cluster"]["live_nodes"] == 2
        });
        // b stops: its sync thread ends with its workers and beats no more; after the
        // heartbeat expiry (max(1 s, 5 intervals) = 1 s) a counts itself alone, so a
        // Redis outage would leave it its whole limit.
        let stopped = Instant::now();
        b.stop();
        wait_until("a to count one live node", || {
            health(&a)["cluster"]["live_nodes"] == 1
        });
        assert!(
            stopped.elapsed() >= Duration::from_millis(900),
            "b was dropped before its heartbeat expired: {:?}",
            stopped.elapsed()
        );
        assert_eq!(redis.nodes(&name).len(), 1);
    }
}

/// Plan `free` with a daily quota of `quota`, a bucket of 3 that refills every 10 ms
/// (the bucket never decides here), keyed by IP.
fn quota_config(origin: &Origin, redis: &Redis, name: &str, node: &str, quota: u64) -> String {
    config_with(origin, redis, name, node, 6000, 3).replace(
        "burst = 3\n",
        &format!("burst = 3\ndaily_quota = {quota}\n"),
    )
}

/// The key's count for today in Redis (one quota counter for the cluster `name`).
fn quota_in_redis(redis: &Redis, name: &str) -> (i64, i64) {
    let mut c = redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("ringgate:{{{name}}}:q:*"))
        .query(&mut c)
        .unwrap();
    assert!(keys.len() <= 1, "one caller, one daily counter: {keys:?}");
    let Some(k) = keys.first() else {
        return (0, -2);
    };
    let n: i64 = redis::cmd("GET").arg(k).query(&mut c).unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(k).query(&mut c).unwrap();
    (n, ttl)
}

both_drivers! {
    fn a_daily_quota_continues_on_another_node_and_after_a_restart(driver) {
        let redis = Redis::start();
        let origin = Origin::echo();
        let name = format!("t{}", redis.port);
        let quota = 8;
        let mut a = Gw::start(driver, &quota_config(&origin, &redis, &name, "a", quota));
        // Paced at 20 ms (the bucket refills every 10 ms): only the quota refuses.
        for i in 0..quota {
            assert_eq!(a.send(&Req::get("/q")).status, 200, "request {i} on a");
            std::thread::sleep(Duration::from_millis(20));
        }
        let over = a.send(&Req::get("/q"));
        assert_eq!(over.status, 429, "{over:#?}");
        // The count is in Redis, expiring a day after today ends.
        wait_until("a's quota count in Redis", || quota_in_redis(&redis, &name).0 == quota as i64);
        let secs_left = 86_400 - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() % 86_400;
        let ttl = quota_in_redis(&redis, &name).1 as u64;
        assert!(ttl.abs_diff(secs_left + 86_400) <= 2, "TTL {ttl}, today ends in {secs_left} s");
        // a restarts (its memory gone); b is new. Each admits until its first push of
        // the key comes back with the cluster's count: paced at 150 ms, more than the
        // latency (20 ms gossip + 50 ms sync + round trip + 20 ms), one request at most.
        a.stop();
        drop(a);
        let a = Gw::start(driver, &quota_config(&origin, &redis, &name, "a", quota));
        let b = Gw::start(driver, &quota_config(&origin, &redis, &name, "b", quota));
        for (node, gw) in [("a after its restart", &a), ("b", &b)] {
            let mut admitted = 0;
            let deadline = Instant::now() + Duration::from_secs(5);
            let refused = loop {
                let r = gw.send(&Req::get("/q"));
                match r.status {
                    200 => admitted += 1,
                    429 => break r,
                    s => panic!("unexpected status {s} from {node}"),
                }
                assert!(Instant::now() < deadline, "{node} never refused: quota not shared");
                std::thread::sleep(Duration::from_millis(150));
            };
            assert!(admitted <= 1, "{node} admitted {admitted} over a spent quota of {quota}");
            let retry: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
            let secs_left = 86_400 - std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() % 86_400;
            assert!(retry.abs_diff(secs_left) <= 1, "Retry-After {retry}, midnight in {secs_left}");
            let policy = refused.header("ratelimit-policy").expect("RateLimit-Policy");
            assert!(policy.contains(&format!("\"daily\";q={quota};w=86400")), "{policy}");
            assert_eq!(refused.json()["message"], format!("daily quota of {quota} requests exceeded"));
            // And it stays refused.
            assert_eq!(gw.send(&Req::get("/q")).status, 429, "{node}");
        }
    }

    fn a_counter_overwritten_by_another_program_fails_no_round(driver) {
        let redis = Redis::start();
        let origin = Origin::echo();
        let name = format!("t{}", redis.port);
        let a = Gw::start(driver, &quota_config(&origin, &redis, &name, "a", 1000));
        assert_eq!(a.send(&Req::get("/j")).status, 200);
        wait_until("the counters in Redis", || quota_in_redis(&redis, &name).0 == 1);
        // Something else writes a string over both of the key's counters.
        let mut c = redis.conn();
        for pattern in ["rl", "q"] {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("ringgate:{{{name}}}:{pattern}:*"))
                .query(&mut c)
                .unwrap();
            for k in keys {
                let () = redis::cmd("SET").arg(k).arg("junk").query(&mut c).unwrap();
            }
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        // Rounds that push to them (INCRBY answers an error) still succeed, and the
        // node keeps serving and sharing.
        for _ in 0..3 {
            assert_eq!(a.send(&Req::get("/j")).status, 200);
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_until("a's heartbeats after the junk", || {
            redis.nodes(&name).iter().any(|(_, beat)| *beat > t + 300)
        });
        let h = health(&a);
        assert_eq!(h["cluster"]["redis"], "up", "{h}");
        assert_eq!(h["cluster"]["failed_rounds"], 0, "{h}");
        assert_eq!(a.send(&Req::get("/j")).status, 200);
    }

    fn a_reload_adds_a_quota_to_redis_and_a_changed_cluster_waits_for_a_restart(driver) {
        let redis = Redis::start();
        let origin = Origin::echo();
        let name = format!("t{}", redis.port);
        let gw = Gw::start(driver, &config_with(&origin, &redis, &name, "a", 6000, 3));
        let reload = |template: &str| {
            let text = without_auth(&render_config(template, driver, 1));
            let cfg = ringgate::config::Config::parse(&text, "reload.toml")
                .unwrap_or_else(|e| panic!("config rejected: {e}\n{text}"));
            gw.gateway().reload(cfg).expect("reload applied")
        };
        assert_eq!(gw.send(&Req::get("/r")).status, 200);
        // No quota yet: nothing counted for one in Redis.
        wait_until("the bucket's count in Redis", || redis.admitted(&name) == 1);
        assert_eq!(quota_in_redis(&redis, &name).0, 0);
        // The plan gets a daily quota: the sync thread counts it from the next push.
        let with_quota = quota_config(&origin, &redis, &name, "a", 100);
        assert_eq!(reload(&with_quota), Vec::<&str>::new());
        for _ in 0..2 {
            assert_eq!(gw.send(&Req::get("/r")).status, 200);
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_until("the quota's count in Redis", || quota_in_redis(&redis, &name).0 == 2);
        // Another sync interval (or URL, name, node id) needs a restart, said so.
        let slower = with_quota.replace("sync_interval_ms = 50", "sync_interval_ms = 60");
        assert_ne!(slower, with_quota);
        assert_eq!(reload(&slower), vec!["[cluster]"]);
        assert_eq!(gw.send(&Req::get("/r")).status, 200);
    }
}

/// A redis-server that speaks only TLS (`--port 0 --tls-port P`), with a certificate
/// for 127.0.0.1 signed by `ca`; clients need no certificate.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    fn start(dir: &common::tls::TempDir, ca: &common::tls::Ca) -> TlsRedis {
        let (cert, key) = ca
            .server(&["127.0.0.1", "localhost"])
            .write(&dir.0, "redis");
        let ca_file = ca.write(&dir.0, "redis-ca.crt");
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &path(&cert),
                "--tls-key-file",
                &path(&key),
            ])
            .args([
                "--tls-ca-cert-file",
                &path(&ca_file),
                "--tls-auth-clients",
                "no",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let r = TlsRedis { child, port };
        let pem = ca.pem.clone().into_bytes();
        wait_until("redis-server to answer PING over TLS", || {
            let Ok(client) = redis::Client::build_with_tls(
                r.url().as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ) else {
                return false;
            };
            client
                .get_connection_with_timeout(Duration::from_secs(1))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok_and(|p| p == "PONG")
        });
        r
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

both_drivers! {
    fn limits_are_shared_over_tls_to_redis_and_a_wrong_ca_is_refused(driver) {
        let dir = common::tls::TempDir::new("rediss");
        let ca = common::tls::Ca::new("redis test ca");
        let redis = TlsRedis::start(&dir, &ca);
        let origin = Origin::echo();
        let name = format!("t{}", redis.port);
        let ca_file = ca.write(&dir.0, "trust.crt");
        let tls_config = |node: &str, ca_file: &std::path::Path| {
            config_url(&origin, &redis.url(), &name, node, 6, 9).replace(
                "[cluster]\n",
                &format!("[cluster]\nca_file = \"{}\"\n", ca_file.display()),
            )
        };
        let a = Gw::start(driver, &tls_config("a", &ca_file));
        let b = Gw::start(driver, &tls_config("b", &ca_file));
        wait_until("a to reach Redis over TLS", || health(&a)["cluster"]["redis"] == "up");
        for i in 0..BUCKET {
            assert_eq!(a.send(&Req::get("/t")).status, 200, "request {i} on a");
        }
        // b hears of a's bucket through Redis: it refuses before it has spent its own.
        let mut admitted_b = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.send(&Req::get("/t")).status == 200 {
            admitted_b += 1;
            assert!(Instant::now() < deadline, "b never refused: counts not shared over TLS");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(admitted_b < BUCKET, "b admitted its whole bucket: {admitted_b}");
        // A node trusting another CA does not talk to this Redis: it limits alone.
        let other = common::tls::Ca::new("another ca");
        let wrong = other.write(&dir.0, "wrong.crt");
        let c = Gw::start(driver, &tls_config("c", &wrong));
        wait_until("c to give up on Redis", || {
            health(&c)["cluster"]["failed_rounds"].as_u64().unwrap_or(0) >= 1
        });
        assert_eq!(health(&c)["cluster"]["redis"], "down");
        assert_eq!(c.send(&Req::get("/t")).status, 200, "c serves with Redis unreachable");
    }
}

#[test]
fn ca_file_is_for_rediss_and_is_checked() {
    let e = parse_cluster("redis://h:6379/0", "ca_file = \"/etc/hostname\"").unwrap_err();
    assert!(
        e.contains("cluster.ca_file") && e.contains("rediss://"),
        "{e}"
    );
    let e = parse_cluster("rediss://h:6379/0", "ca_file = \"/nonexistent/ca.pem\"").unwrap_err();
    assert!(e.contains("cluster.ca_file"), "{e}");
    let dir = common::tls::TempDir::new("rediss-cfg");
    let junk = dir.path("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let e = parse_cluster(
        "rediss://h:6379/0",
        &format!("ca_file = \"{}\"", junk.display()),
    )
    .unwrap_err();
    assert!(e.contains("cluster.ca_file"), "{e}");
    // With a CA, or with the system's roots (CI installs ca-certificates).
    let ca = common::tls::Ca::new("cfg ca").write(&dir.0, "ca.pem");
    let cfg = parse_cluster(
        "rediss://:${env:RG_REDIS_PW}@h:6379/0",
        &format!("ca_file = \"{}\"", ca.display()),
    )
    .unwrap();
    assert!(!format!("{cfg:?}").contains("s3cret-pw"));
    parse_cluster("rediss://h:6379/0", "").unwrap();
}

/// A `[cluster]` over `rest` with `redis_url = url`, parsed with `env`.
fn parse_cluster(url: &str, rest: &str) -> Result<ringgate::config::Config, String> {
    let text = format!(
        "[cluster]\nredis_url = \"{url}\"\nnode_id = \"n1\"\n{rest}\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n\
         [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n"
    );
    let env = |n: &str| (n == "RG_REDIS_PW").then(|| std::ffi::OsString::from("s3cret-pw"));
    ringgate::config::Config::parse_with_env(&text, "test.toml", &env).map_err(|e| e.to_string())
}

#[test]
fn redis_url_is_expanded_and_never_shown() {
    let cfg = parse_cluster("redis://:${env:RG_REDIS_PW}@127.0.0.1:6379/0", "").unwrap();
    let c = cfg.cluster.as_ref().expect("[cluster] typed");
    assert_eq!(c.node_id, "n1");
    assert_eq!(c.sync_interval, Duration::from_millis(100));
    assert_eq!(c.on_redis_error, ringgate::cluster::OnRedisError::Local);
    assert!(
        !format!("{cfg:?}").contains("s3cret-pw"),
        "Debug shows the password"
    );
    // A variable that is not set: named, and neither the URL nor its line is shown.
    let e = parse_cluster("redis://:hunter2@h:6379/${env:RG_NOT_SET}", "").unwrap_err();
    assert!(
        e.contains("RG_NOT_SET") && e.contains("cluster.redis_url"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "the error shows the URL: {e}");
    let e = parse_cluster("http://:hunter2@h/0", "").unwrap_err();
    assert!(
        e.contains("cluster.redis_url") && !e.contains("hunter2"),
        "{e}"
    );
}

#[test]
fn cluster_keys_are_checked() {
    let e = parse_cluster("redis://h/0", "on_redis_error = \"fail\"").unwrap_err();
    assert!(e.contains("cluster.on_redis_error"), "{e}");
    let e = parse_cluster("redis://h/0", "sync_interval_ms = 0").unwrap_err();
    assert!(e.contains("cluster.sync_interval_ms"), "{e}");
    let e = parse_cluster("redis://h/0", "name = \"a:b\"").unwrap_err();
    assert!(e.contains("cluster.name"), "{e}");
    let e = parse_cluster("redis://h/0", "redis = 1").unwrap_err();
    assert!(e.contains("redis"), "{e}");
    // No section: limits are this node's alone.
    let text = "[[upstreams]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n";
    let cfg = ringgate::config::Config::parse(text, "t.toml").unwrap();
    assert!(cfg.cluster.is_none());
}
