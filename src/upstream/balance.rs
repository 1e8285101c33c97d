//! Server selection, per worker: smooth weighted round robin (the nginx algorithm),
//! least in-flight requests, power of two random choices, and consistent hashing on a
//! request header (a ring of virtual nodes, so adding a server moves only its share of
//! keys). Each pick skips servers already tried for this request and ejected ones.

use std::cell::{Cell, RefCell};
use std::hash::{BuildHasher, Hasher};

use crate::config::{Balance, UpstreamConfig};

/// Virtual nodes per unit of weight on the hash ring.
const VNODES_PER_WEIGHT: u32 = 100;

#[derive(Debug)]
pub struct Balancer {
    kind: Balance,
    weights: Vec<i64>,
    /// Smooth weighted round robin: current scores.
    current: RefCell<Vec<i64>>,
    /// Sorted (hash, server) ring for `Hash`.
    ring: Vec<(u64, u32)>,
    rng: Cell<u64>,
}

/// A fixed-key hasher: the ring must be the same on every worker and every restart.
fn hash_bytes(b: &[u8]) -> u64 {
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(b);
    h.finish()
}

impl Balancer {
    pub fn new(cfg: &UpstreamConfig) -> Balancer {
        let weights: Vec<i64> = cfg.servers.iter().map(|s| s.weight.max(1) as i64).collect();
        let mut ring = Vec::new();
        if matches!(cfg.balance, Balance::Hash(_)) {
            for (i, s) in cfg.servers.iter().enumerate() {
                for v in 0..s.weight.max(1) * VNODES_PER_WEIGHT {
                    let key = format!("{}#{}", s.label, v);
                    ring.push((hash_bytes(key.as_bytes()), i as u32));
                }
            }
            ring.sort_unstable();
        }
        Balancer {
            kind: cfg.balance.clone(),
            current: RefCell::new(vec![0; weights.len()]),
            weights,
            ring,
            rng: Cell::new(fastrand::u64(..) | 1),
        }
    }

    pub fn hash_header(&self) -> Option<&str> {
        match &self.kind {
            Balance::Hash(h) => Some(h),
            _ => None,
        }
    }

    fn next_rand(&self) -> u64 {
        // xorshift64*: cheap and good enough for choosing servers.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Pick a server index. `usable(i)` says whether server `i` may be chosen (not tried
    /// yet for this request, not ejected); `in_flight(i)` is its current load;
    /// `hash_key` is the value of the hash header, if any.
    pub fn pick(
        &self,
        usable: &dyn Fn(usize) -> bool,
        in_flight: &dyn Fn(usize) -> u32,
        hash_key: Option<&[u8]>,
    ) -> Option<usize> {
        let n = self.weights.len();
        if n == 1 {
            return usable(0).then_some(0);
        }
        match (&self.kind, hash_key) {
            (Balance::Hash(_), Some(key)) if !self.ring.is_empty() => {
                let h = hash_bytes(key);
                let start = self.ring.partition_point(|&(x, _)| x < h);
                (0..self.ring.len())
                    .map(|k| self.ring[(start + k) % self.ring.len()].1 as usize)
                    .find(|&i| usable(i))
            }
            (Balance::LeastRequest, _) => {
                // Fewest in flight relative to weight; ties broken by a random start.
                let start = (self.next_rand() % n as u64) as usize;
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| usable(i))
                    .min_by_key(|&i| (in_flight(i) as i64 * 1000) / self.weights[i])
            }
            (Balance::RandomTwo, _) => {
                let a = self.weighted_random(usable)?;
                let b = self.weighted_random(usable).unwrap_or(a);
                Some(if in_flight(b) < in_flight(a) { b } else { a })
            }
            _ => self.smooth_round_robin(usable),
        }
    }

    fn weighted_random(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let total: i64 = (0..self.weights.len())
            .filter(|&i| usable(i))
            .map(|i| self.weights[i])
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = (self.next_rand() % total as u64) as i64;
        for (i, w) in self.weights.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            if r < *w {
                return Some(i);
            }
            r -= w;
        }
        None
    }

    fn smooth_round_robin(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut cur = self.current.borrow_mut();
        let mut best: Option<usize> = None;
        let mut total = 0;
        for i in 0..self.weights.len() {
            if !usable(i) {
                continue;
            }
            cur[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| cur[i] > cur[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            cur[b] -= total;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamServer;
    use std::time::Duration;

    fn cfg(balance: Balance, weights: &[u32]) -> UpstreamConfig {
        UpstreamConfig {
            name: "u".into(),
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| UpstreamServer {
                    label: format!("127.0.0.1:{}", 9000 + i),
                    addr: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    weight: w,
                    tls: false,
                })
                .collect(),
            balance,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_idle_per_worker: 8,
            retries: 1,
            health_check: None,
            circuit_breaker: None,
            tls: None,
            request_headers: Vec::new(),
        }
    }

    #[test]
    fn weighted_round_robin_follows_weights() {
        let b = Balancer::new(&cfg(Balance::RoundRobin, &[3, 1]));
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[b.pick(&|_| true, &|_| 0, None).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn skips_unusable_servers() {
        let b = Balancer::new(&cfg(Balance::RoundRobin, &[1, 1, 1]));
        for _ in 0..10 {
            assert_eq!(b.pick(&|i| i == 2, &|_| 0, None), Some(2));
        }
        assert_eq!(b.pick(&|_| false, &|_| 0, None), None);
    }

    #[test]
    fn hash_is_sticky_and_spreads() {
        let b = Balancer::new(&cfg(Balance::Hash("x-user".into()), &[1, 1, 1]));
        let mut seen = [0; 3];
        for k in 0..300 {
            let key = format!("user-{k}");
            let a = b.pick(&|_| true, &|_| 0, Some(key.as_bytes())).unwrap();
            assert_eq!(b.pick(&|_| true, &|_| 0, Some(key.as_bytes())), Some(a));
            seen[a] += 1;
        }
        assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
    }

    #[test]
    fn least_request_prefers_idle_server() {
        let b = Balancer::new(&cfg(Balance::LeastRequest, &[1, 1]));
        for _ in 0..10 {
            assert_eq!(
                b.pick(&|_| true, &|i| if i == 0 { 5 } else { 0 }, None),
                Some(1)
            );
        }
        let r2 = Balancer::new(&cfg(Balance::RandomTwo, &[1, 1]));
        let mut ones = 0;
        for _ in 0..100 {
            if r2.pick(&|_| true, &|i| if i == 0 { 5 } else { 0 }, None) == Some(1) {
                ones += 1;
            }
        }
        assert!(ones > 60);
    }
}
