//! `[cluster]` end to end with three separate gateway processes (`ringgate --config
//! FILE`, each on its own port with its own admin listener) sharing one real Redis
//! (started by the test on a free port), on both I/O drivers:
//!
//! * one key hammered through all three nodes for 10 s stays within the bound of
//!   `src/ratelimit/mod.rs` ("Across nodes"), and near the limit (the nodes share it,
//!   they do not just refuse);
//! * a daily quota of 100 holds across the three nodes and across a restart of one
//!   (SIGTERM: its last push on the way out counts its last admission), then every
//!   node refuses until UTC midnight, and Redis holds the exact count;
//! * Redis killed under load: every request is answered at once with 200 or 429, each
//!   node limits with its third of the bucket, and when Redis is back the nodes share
//!   again and the outage's admissions reach Redis;
//! * a node killed with SIGKILL stops being counted after the heartbeat expiry, and its
//!   share goes to the others (half a bucket each with Redis down, not a third).
//!
//! The tests measure time on what may be a loaded 2-core machine, with three gateways,
//! a Redis and the clients per test: they take a lock and run one at a time.
//!
//! Needs `redis-server` on PATH (Debian/Ubuntu: `apt-get install redis-server`;
//! `.ci/run` installs it).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::redis_server::Redis;
use common::*;

/// `rate_limit.sync_interval_ms` (`S`, the workers' gossip) and `cluster.sync_interval_ms`
/// (`C`, the sync thread's round).
const S_MS: u64 = 20;
const C_MS: u64 = 50;
/// The Redis timeout `R = max(C, 50 ms)`: a round trip takes at most that, or the round
/// fails.
const R_MS: u64 = 50;
/// `L_c = 2S + 2C + 2R` (`src/ratelimit/mod.rs`, "Across nodes"): the longest time from
/// an admission on one node to its charge on every other.
const LC_MS: u64 = 2 * S_MS + 2 * C_MS + 2 * R_MS;
/// How much later than that the nodes' timers may fire, all together, on a loaded
/// machine: the bounds below use `L = L_c + LATE_MS`.
const LATE_MS: u64 = 60;
const L: Duration = Duration::from_millis(LC_MS + LATE_MS);

/// With Redis down a node's own count reaches its workers as the `(N − 1) ×` charge
/// after `S` (worker -> sync thread) + `C` (the failing round) + `S` (charged): 90 ms,
/// 150 with the timers' lateness. What a node admits meanwhile on top of its share.
const DOWN_LAG: Duration = Duration::from_millis(2 * S_MS + C_MS + LATE_MS);
/// The clients' pause between requests where a test counts shares.
const PACE: Duration = Duration::from_millis(20);

/// No request may take this long, with or without Redis.
const SLOW: Duration = Duration::from_millis(200);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn driver_name(driver: IoDriver) -> &'static str {
    match driver {
        IoDriver::IoUring => "io_uring",
        IoDriver::Epoll => "epoll",
        IoDriver::Auto => "auto",
    }
}

/// The bound of `src/ratelimit/mod.rs` for `buckets` buckets kept in step within `l`:
/// `floor(D/T) + (burst+1) + (buckets − 1) × (floor(L/T) + burst + 1)`.
fn bound(d: Duration, t: Duration, burst: u64, buckets: u64, l: Duration) -> u64 {
    let per = |x: Duration| (x.as_nanos() / t.as_nanos()) as u64;
    per(d) + burst + 1 + (buckets - 1) * (per(l) + burst + 1)
}

// ---------------------------------------------------------------------------------
// A node: the real binary in a child process
// ---------------------------------------------------------------------------------

/// One plan `p` for every route, keyed by the client's IP (the tests pick the key with
/// the source address, 127.0.0.x).
struct Plan {
    rpm: u32,
    burst: u32,
    daily_quota: u32,
}

/// The whole configuration file of node `node` of cluster `name`.
fn config(
    driver: IoDriver,
    workers: usize,
    origin: &Origin,
    redis: &Redis,
    name: &str,
    node: &str,
    plan: &Plan,
) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = {workers}\npin_workers = false\n\
         io_driver = \"{}\"\ngraceful_shutdown_s = 2\nmax_connections = 1000\n\n\
         [log]\naccess_log = \"off\"\nlevel = \"warn\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [rate_limit]\ndefault_plan = \"p\"\nkey = \"ip\"\nsync_interval_ms = {S_MS}\n\
         headers = true\n\n\
         [plans.p]\nrequests_per_minute = {}\nburst = {}\ndaily_quota = {}\n\n\
         [cluster]\nredis_url = \"{}\"\nnode_id = \"{node}\"\nname = \"{name}\"\n\
         sync_interval_ms = {C_MS}\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
         auth = \"none\"\nplan = \"p\"\n",
        driver_name(driver),
        plan.rpm,
        plan.burst,
        plan.daily_quota,
        redis.url(),
        origin.addr(),
    )
}

/// A `ringgate --config FILE` child process. Its stderr is read by a thread all along
/// (kept for failure messages); the addresses come from its start-up lines, the
/// readiness signal. Killed when dropped; if the test is failing, its stderr is
/// printed then.
struct Node {
    id: String,
    config: String,
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(id: &str, config: &str) -> Node {
        let g = common::process::spawn_gateway(&format!("node-{id}"), config, true);
        let driver = config
            .lines()
            .find_map(|l| l.strip_prefix("io_driver = "))
            .unwrap()
            .trim_matches('"');
        assert!(
            g.start_line.contains(&format!(" {driver} driver")),
            "node {id} not on {driver}: {}",
            g.start_line
        );
        let (child, addr, admin, log) = (g.child, g.addr, g.admin, g.log);
        Node {
            id: id.to_owned(),
            config: config.to_owned(),
            child,
            addr,
            admin: admin.expect("asked for"),
            log,
        }
    }

    /// SIGKILL: nothing graceful, no last sync round.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the process to drain and exit.
    fn stop(&mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "node {} exited with {status}", self.id);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} ignored SIGTERM",
                self.id
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The same configuration (node id included) started again.
    fn start_again(&self) -> Node {
        Node::start(&self.id, &self.config)
    }

    fn health(&self) -> serde_json::Value {
        let r = Client::connect(self.admin).request(&Req::get("/health"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    fn cluster(&self) -> serde_json::Value {
        self.health()["cluster"].clone()
    }

    fn metrics(&self) -> String {
        let r = Client::connect(self.admin).request(&Req::get("/metrics"));
        assert_eq!(r.status, 200);
        r.text()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- node {} stderr:\n{}",
                self.id,
                self.log.lock().unwrap().join("\n")
            );
        }
    }
}

/// Redis and three nodes `a` (`workers_a` workers), `b` and `c` (one each) of a cluster
/// named after Redis's port; returns once every node has counted the three.
fn cluster(driver: IoDriver, workers_a: usize, plan: &Plan) -> (Redis, Origin, String, [Node; 3]) {
    let redis = Redis::start();
    let origin = Origin::echo();
    let name = format!("t{}", redis.port);
    let node = |id: &str, workers| {
        Node::start(
            id,
            &config(driver, workers, &origin, &redis, &name, id, plan),
        )
    };
    let nodes = [node("a", workers_a), node("b", 1), node("c", 1)];
    for n in &nodes {
        wait_until(&format!("node {} to count three live nodes", n.id), || {
            n.cluster()["live_nodes"] == 3
        });
    }
    (redis, origin, name, nodes)
}

// ---------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------

/// Keys a load can switch between: the source address 127.0.0.(10 + key).
const KEYS: usize = 3;

fn source(key: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 10 + key as u8)
}

/// What the clients of one load are told.
struct Control {
    stop: AtomicBool,
    /// The key requests are sent with now.
    key: AtomicUsize,
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// 200s per key.
    admitted: [AtomicU64; KEYS],
    /// 429s for the plan's quota (all keys).
    over_quota: AtomicU64,
    answered: AtomicU64,
    /// The slowest answer (connecting included), in µs.
    slowest_us: AtomicU64,
    /// Anything but a 200 or a 429.
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn admitted(&self, key: usize) -> u64 {
        self.admitted[key].load(Ordering::SeqCst)
    }

    fn slowest(&self) -> Duration {
        Duration::from_micros(self.slowest_us.load(Ordering::SeqCst))
    }
}

/// A client of node `addr` until told to stop: a keep-alive connection from the key's
/// source address, a new one every 10 requests (so a node's workers all get some), one
/// request every `pace`.
fn client(addr: SocketAddr, ctl: Arc<Control>, pace: Duration) -> (Arc<Tally>, JoinHandle<()>) {
    let tally = Arc::new(Tally::default());
    let me = tally.clone();
    let handle = std::thread::spawn(move || {
        let mut conn: Option<(Client, usize)> = None;
        let mut used = 0;
        while !ctl.stop.load(Ordering::SeqCst) {
            let key = ctl.key.load(Ordering::SeqCst);
            let t = Instant::now();
            if used >= 10 || conn.as_ref().is_none_or(|(_, k)| *k != key) {
                conn = Some((Client::connect_from(addr, source(key)), key));
                used = 0;
            }
            let c = &mut conn.as_mut().unwrap().0;
            used += 1;
            let resp = if c.try_send(Req::get("/n").bytes()) {
                c.try_read_response("GET")
                    .map_err(|(e, got)| format!("{e:?}, got {:?}", String::from_utf8_lossy(&got)))
            } else {
                Err("the write failed".to_owned())
            };
            let took = t.elapsed();
            me.slowest_us
                .fetch_max(took.as_micros() as u64, Ordering::SeqCst);
            match resp {
                Ok(r) if r.status == 200 || r.status == 429 => {
                    me.answered.fetch_add(1, Ordering::SeqCst);
                    if r.status == 200 {
                        me.admitted[key].fetch_add(1, Ordering::SeqCst);
                    } else if r.text().contains("quota") {
                        me.over_quota.fetch_add(1, Ordering::SeqCst);
                    }
                    if r.connection_has("close") {
                        conn = None;
                    }
                }
                Ok(r) => {
                    me.failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}: {}", r.status, r.text()));
                    conn = None;
                }
                Err(e) => {
                    me.failures.lock().unwrap().push(e);
                    conn = None;
                }
            }
            std::thread::sleep(pace);
        }
    });
    (tally, handle)
}

/// One client per node in `nodes`, sending with `key` until told another, or to stop
/// ([`Load::finish`]).
struct Load {
    ctl: Arc<Control>,
    tallies: Vec<Arc<Tally>>,
    handles: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(nodes: &[&Node], pace: Duration, key: usize) -> Load {
        let ctl = Arc::new(Control {
            stop: AtomicBool::new(false),
            key: AtomicUsize::new(key),
        });
        let (tallies, handles) = nodes
            .iter()
            .map(|n| client(n.addr, ctl.clone(), pace))
            .unzip();
        Load {
            ctl,
            tallies,
            handles,
        }
    }

    fn switch_to(&self, key: usize) {
        self.ctl.key.store(key, Ordering::SeqCst);
    }

    /// Admitted on `key` by each client, in the order of the nodes.
    fn admitted(&self, key: usize) -> Vec<u64> {
        self.tallies.iter().map(|t| t.admitted(key)).collect()
    }

    /// Stop the clients and wait for them; fails the test if any request failed.
    fn finish(self) -> Vec<Arc<Tally>> {
        self.ctl.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.join().expect("a client thread panicked");
        }
        for t in &self.tallies {
            let f = t.failures.lock().unwrap();
            assert!(f.is_empty(), "requests failed: {f:?}");
        }
        self.tallies
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------

both_drivers! {
    fn one_key_through_three_nodes_for_ten_seconds_stays_within_the_bound(driver) {
        let _one = one_at_a_time();
        // 600/min, burst 0: one request every T = 100 ms, a bucket of 1. Node a has two
        // workers, b and c one: B = 4 buckets.
        let plan = Plan { rpm: 600, burst: 0, daily_quota: 0 };
        let t = Duration::from_millis(100);
        let (_redis, _origin, _name, nodes) = cluster(driver, 2, &plan);
        let t0 = Instant::now();
        let load = Load::start(&nodes.iter().collect::<Vec<_>>(), Duration::from_millis(5), 0);
        std::thread::sleep(Duration::from_secs(10));
        let tallies = load.finish();
        // Every admission was in [t0, now].
        let d = t0.elapsed();
        let per: Vec<u64> = tallies.iter().map(|t| t.admitted(0)).collect();
        let total: u64 = per.iter().sum();
        let one_bucket = bound(d, t, 0, 1, L);
        let most = bound(d, t, 0, 4, L);
        eprintln!(
            "{driver:?}: admitted a {} + b {} + c {} = {total} in {d:?}; one bucket's \
             allowance {one_bucket}, bound {most} (L = {L:?}); unshared the nodes would \
             admit about {}",
            per[0], per[1], per[2], 3 * one_bucket
        );
        assert!(total <= most, "admitted {per:?} = {total} in {d:?}: bound {most}");
        // And the shared limit is about the limit: a late charge that lands on a bucket
        // with time to spare wastes that time, so sharing may admit a little less than
        // one bucket, never much (10%).
        assert!(
            total >= one_bucket - one_bucket / 10,
            "admitted {per:?} = {total} in {d:?}: one bucket's allowance is {one_bucket}"
        );
        assert!(per.iter().all(|&n| n > 0), "every node admitted some: {per:?}");
    }

    fn a_daily_quota_holds_across_three_nodes_and_a_restart(driver) {
        let _one = one_at_a_time();
        // 100 a day; a bucket of 1 refilled every T = 100 ms, so each bucket admits at
        // most k = floor(L/T) + 1 = 4 in L.
        let plan = Plan { rpm: 600, burst: 0, daily_quota: 100 };
        let (redis, _origin, name, [a, mut b, c]) = cluster(driver, 1, &plan);
        // Half the quota through the three nodes.
        let load = Load::start(&[&a, &b, &c], PACE, 0);
        wait_until_long("50 admitted", Duration::from_secs(15), || {
            load.admitted(0).iter().sum::<u64>() >= 50
        });
        let before = load.finish();
        let mut spent: u64 = before.iter().map(|t| t.admitted(0)).sum();
        // b admits one more, and at once restarts (SIGTERM, as a rolling restart does)
        // with the same node id: that admission has not reached Redis yet (it would in
        // S + C), so only b's last push on the way out can count it.
        let mut last = Client::connect_from(b.addr, source(0));
        wait_until("b to admit one more", || {
            let r = last.request(&Req::get("/n"));
            assert!(r.status == 200 || r.status == 429, "{r:#?}");
            r.status == 200 || {
                std::thread::sleep(PACE);
                false
            }
        });
        spent += 1;
        drop(last);
        b.stop();
        let b = b.start_again();
        let load = Load::start(&[&a, &b, &c], PACE, 0);
        // Until every node refuses for quota, then 1 s more (> L: every count has
        // reached every node).
        wait_until_long("every node over quota", Duration::from_secs(20), || {
            load.tallies.iter().all(|t| t.over_quota.load(Ordering::SeqCst) > 0)
        });
        std::thread::sleep(Duration::from_secs(1));
        let after = load.finish();
        let per: Vec<u64> = after.iter().map(|t| t.admitted(0)).collect();
        let total = spent + per.iter().sum::<u64>();
        // The bound (src/cluster/mod.rs, "Quotas"):
        // Q + (N×W − 1 + W×restarts) × k, with N×W = 3, one restart of a node of one
        // worker: 100 + 3 × 4. What the other buckets admit in L before the last
        // admission's node hears of them, and what the restarted node admits before the
        // reply to its first push brings it the cluster's count.
        let k = L.as_millis() as u64 / 100 + 1;
        let most = 100 + (3 - 1 + 1) * k;
        eprintln!(
            "{driver:?}: quota 100: {spent} before b's restart, a {} + b {} + c {} after, \
             {total} in all (bound {most})",
            per[0], per[1], per[2]
        );
        assert!(total <= most, "{total} admitted on a daily quota of 100: bound {most}");
        // Counts are exact (a node refuses only on what was admitted): never below Q.
        assert!(total >= 100, "{total} admitted on a daily quota of 100");
        // Every node now refuses for the quota until UTC midnight.
        for n in [&a, &b, &c] {
            let r = Client::connect_from(n.addr, source(0)).request(&Req::get("/n"));
            let midnight = 86_400 - unix_now() % 86_400;
            assert_eq!(r.status, 429, "node {}: {r:#?}", n.id);
            assert_eq!(
                r.json()["message"],
                "daily quota of 100 requests exceeded",
                "node {}",
                n.id
            );
            let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
            assert!(
                retry.abs_diff(midnight) <= 2,
                "node {}: Retry-After {retry}, {midnight} s to midnight",
                n.id
            );
            let policy = r.header("ratelimit-policy").expect("RateLimit-Policy");
            assert!(policy.contains("\"daily\";q=100;w=86400"), "node {}: {policy}", n.id);
        }
        // Redis holds the count the nodes continue from: every admission, b's last one
        // before its SIGTERM included.
        wait_for("the quota's count in Redis", total as i64, || {
            redis.sum(&name, "q:*:d*")
        });
    }

    fn redis_killed_under_load_fails_no_request_and_limits_with_local_shares(driver) {
        let _one = one_at_a_time();
        // A bucket of 60 refilled once a minute (nothing refills during the test): with
        // Redis down each node of three admits a third of it, 20.
        let plan = Plan { rpm: 1, burst: 59, daily_quota: 0 };
        let bucket = 60;
        let (mut redis, _origin, name, nodes) = cluster(driver, 2, &plan);
        let load = Load::start(&nodes.iter().collect::<Vec<_>>(), PACE, 0);
        // Key 0 shared until spent, and every admission on it in Redis.
        let spent = || load.admitted(0).iter().sum::<u64>();
        wait_until("key 0 spent", || spent() >= bucket);
        // Within L every node has been charged the whole bucket, and admits no more on
        // key 0: what Redis holds then is all it will get before the outage.
        std::thread::sleep(L);
        wait_for("key 0's admissions in Redis", spent() as i64, || {
            redis.admitted(&name)
        });
        let pushed = redis.admitted(&name);
        let killed = Instant::now();
        redis.kill();
        for n in &nodes {
            wait_until(&format!("node {} to see Redis down", n.id), || {
                n.cluster()["redis"] == "down"
            });
        }
        eprintln!("{driver:?}: Redis down seen by all in {:?}", killed.elapsed());
        // A fresh key, Redis down: each node alone with its share.
        load.switch_to(1);
        std::thread::sleep(Duration::from_millis(1500));
        let outage = load.admitted(1);
        let share = bucket / 3;
        let lag = DOWN_LAG.as_millis() as u64 / PACE.as_millis() as u64 + 1;
        eprintln!(
            "{driver:?}: Redis down: admitted {outage:?} of a bucket of {bucket} \
             (share {share}, at most {} with the {DOWN_LAG:?} before the charge)",
            share + lag
        );
        for (n, &got) in nodes.iter().zip(&outage) {
            assert!(
                (share..=share + lag).contains(&got),
                "node {} admitted {got} with Redis down: its share is {share} (+{lag})",
                n.id
            );
            let h = n.health();
            assert_eq!(h["status"], "ok", "{h}");
            assert_eq!(h["cluster"]["redis"], "down", "{h}");
            assert_eq!(h["cluster"]["limits"], "local", "{h}");
            assert_eq!(h["cluster"]["live_nodes"], 3, "{h}");
            let m = n.metrics();
            assert!(m.lines().any(|l| l == "ringgate_cluster_redis_up 0"), "{m}");
        }
        // Redis back, empty, on the same port: the nodes reconnect and push what they
        // admitted meanwhile.
        let port = redis.port;
        drop(redis);
        let redis = Redis::on(port);
        for n in &nodes {
            wait_until(&format!("node {} to share again", n.id), || {
                let c = n.cluster();
                c["redis"] == "up" && c["limits"] == "shared" && c["live_nodes"] == 3
            });
            assert!(n.metrics().lines().any(|l| l == "ringgate_cluster_redis_up 1"));
        }
        let tallies = load.finish();
        let k0: u64 = tallies.iter().map(|t| t.admitted(0)).sum();
        let k1: u64 = tallies.iter().map(|t| t.admitted(1)).sum();
        let unpushed = k0 as i64 - pushed;
        wait_for("the outage's admissions in Redis", k1 as i64 + unpushed, || {
            redis.admitted(&name)
        });
        let slowest = tallies.iter().map(|t| t.slowest()).max().unwrap();
        let answered: u64 = tallies.iter().map(|t| t.answered.load(Ordering::SeqCst)).sum();
        eprintln!(
            "{driver:?}: {answered} requests answered, all 200 or 429, the slowest in \
             {slowest:?}; key 0 {k0}, key 1 {k1} admitted, {} in Redis after the restart",
            redis.admitted(&name)
        );
        assert!(slowest < SLOW, "a request took {slowest:?}");
    }

    fn a_killed_nodes_share_goes_to_the_others_after_the_heartbeat_expiry(driver) {
        let _one = one_at_a_time();
        let plan = Plan { rpm: 1, burst: 59, daily_quota: 0 };
        let bucket = 60;
        let (mut redis, _origin, name, [a, b, mut c]) = cluster(driver, 2, &plan);
        let killed = Instant::now();
        c.kill();
        // The heartbeat expiry: max(1 s, 5 C) = 1 s after c's last beat, which was at
        // most one round (C) before the kill, and its timer late by up to LATE_MS.
        let expiry = Duration::from_millis((5 * C_MS).max(1000));
        for n in [&a, &b] {
            wait_until(&format!("node {} to count two live nodes", n.id), || {
                n.cluster()["live_nodes"] == 2
            });
        }
        let took = killed.elapsed();
        eprintln!("{driver:?}: c killed, counted gone by a and b after {took:?}");
        assert!(
            took >= expiry - Duration::from_millis(C_MS + LATE_MS),
            "c stopped counting {took:?} after it was killed, before its heartbeat expired"
        );
        // And no later than the next round of each after the expiry (C, and a round's
        // worth of polling and lateness).
        assert!(
            took <= expiry + Duration::from_millis(2 * C_MS + LATE_MS),
            "c was still counted {took:?} after it was killed (expiry {expiry:?})"
        );
        assert_eq!(redis.nodes(&name).len(), 2);
        // Redis down: a and b each limit with half the bucket, not a third.
        redis.kill();
        for n in [&a, &b] {
            wait_until(&format!("node {} to see Redis down", n.id), || {
                n.cluster()["redis"] == "down"
            });
        }
        let load = Load::start(&[&a, &b], PACE, 2);
        std::thread::sleep(Duration::from_millis(1500));
        let tallies = load.finish();
        let share = bucket / 2;
        let lag = DOWN_LAG.as_millis() as u64 / PACE.as_millis() as u64 + 1;
        let got: Vec<u64> = tallies.iter().map(|t| t.admitted(2)).collect();
        eprintln!(
            "{driver:?}: two live nodes, Redis down: a {} b {} of a bucket of {bucket} \
             (half {share}, a third {})",
            got[0],
            got[1],
            bucket / 3
        );
        for (n, &got) in [&a, &b].iter().zip(&got) {
            assert!(
                (share..=share + lag).contains(&got),
                "node {} admitted {got} with Redis down and two live nodes: half the \
                 bucket is {share} (+{lag})",
                n.id
            );
            assert_eq!(n.cluster()["live_nodes"], 2);
        }
    }
}

/// Poll `value` until it is `want` ([`IO_TIMEOUT`]); the failure says the last value.
fn wait_for(what: &str, want: i64, mut value: impl FnMut() -> i64) {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let got = value();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {got}, expected {want} (waited {IO_TIMEOUT:?})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// [`wait_until`] with a longer limit, for waits that span many rate-limit periods.
fn wait_until_long(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
