//! [`Redis`]: a `redis-server` of the test's own on a port the OS picked, for the
//! `[cluster]` tests (`tests/cluster.rs`, `tests/cluster_nodes.rs`), with the reads
//! those tests make of what the gateways wrote.
//!
//! Needs `redis-server` on PATH (Debian/Ubuntu: `apt-get install redis-server`;
//! `.ci/run` installs it); without it the test fails saying so.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// A redis-server of the test's own, on a port the OS picked, no persistence; killed
/// when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        Redis::on(port)
    }

    /// A fresh (empty) Redis on `port`.
    pub fn on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): these tests need a Redis server on PATH; \
                     install it with `apt-get install redis-server` (Debian/Ubuntu; .ci/run does)"
                )
            });
        let r = Redis { child, port };
        wait_until("redis-server to answer PING", || r.ping());
        r
    }

    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// The sum of the counters `ringgate:{name}:PATTERN` (a `KEYS` pattern), each a
    /// plain integer.
    pub fn sum(&self, name: &str, pattern: &str) -> i64 {
        let mut c = self.conn();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("ringgate:{{{name}}}:{pattern}"))
            .query(&mut c)
            .unwrap();
        keys.iter()
            .map(|k| {
                redis::cmd("GET")
                    .arg(k)
                    .query::<Option<i64>>(&mut c)
                    .unwrap()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Sum of every rate-limit counter of the cluster named `name` (the windows not
    /// yet expired).
    pub fn admitted(&self, name: &str) -> i64 {
        self.sum(name, "rl:*")
    }

    /// Every rate-limit counter of the cluster named `name` has an expiry (a counter
    /// without one would stay in Redis for good); returns how many there are.
    pub fn counters_expire(&self, name: &str) -> usize {
        let mut c = self.conn();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("ringgate:{{{name}}}:rl:*"))
            .query(&mut c)
            .unwrap();
        for k in &keys {
            let ttl: i64 = redis::cmd("PTTL").arg(k).query(&mut c).unwrap();
            assert!(ttl > 0, "counter {k} has no expiry (PTTL {ttl})");
        }
        keys.len()
    }

    /// The live nodes' heartbeats: (node id, last beat in ms).
    pub fn nodes(&self, name: &str) -> Vec<(String, u64)> {
        redis::cmd("ZRANGE")
            .arg(format!("ringgate:{{{name}}}:nodes"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(&mut self.conn())
            .unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
