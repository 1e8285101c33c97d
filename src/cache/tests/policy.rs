//! Eviction policies: their basic order, the byte budget under each with invalidations
//! mixed in, and the hit-rate comparison that chose S3-FIFO.

use super::*;

fn ids<P: Policy>(p: &mut P) -> Vec<u32> {
    std::iter::from_fn(|| p.evict()).collect()
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let mut p = Lru::new(1000);
    for id in 0..4 {
        p.on_insert(id, u64::from(id), 10);
    }
    p.on_hit(0);
    p.on_remove(2);
    assert_eq!(ids(&mut p), vec![1, 3, 0]);
}

#[test]
fn s3fifo_evicts_one_hit_wonders_first_and_remembers_ghosts() {
    // Small queue target: 10 bytes of 100.
    let mut p = S3Fifo::new(100);
    for id in 0..5 {
        p.on_insert(id, 100 + u64::from(id), 10);
    }
    p.on_hit(1);
    p.on_hit(3);
    // 0, 2 and 4 were never hit: they go first; 1 and 3 moved to main on the way.
    assert_eq!(p.evict(), Some(0));
    assert_eq!(p.evict(), Some(2));
    assert_eq!(p.evict(), Some(4));
    // A key evicted from small and inserted again enters main directly, so the next
    // newcomer (in small) goes before it.
    p.on_insert(0, 100, 10);
    p.on_insert(7, 107, 10);
    assert_eq!(p.evict(), Some(7));
    assert_eq!(ids(&mut p), vec![1, 3, 0]);
}

#[test]
fn tinylfu_refuses_a_newcomer_colder_than_its_victims() {
    let mut p = TinyLfu::new(1 << 20);
    p.on_insert(0, 42, 10);
    for _ in 0..5 {
        p.on_access(42);
    }
    p.on_access(99);
    assert!(!p.admit(99, 10));
    for _ in 0..10 {
        p.on_access(99);
    }
    assert!(p.admit(99, 10));
}

fn budget_holds<P: Policy>() {
    let t0 = Instant::now();
    let budget = 200 * 1024;
    let mut c: Cache<P> = Cache::with_policy(budget, 64 * 1024);
    let rt = route(60);
    let mut rng = sim::SplitMix(7);
    let bodies: Vec<Vec<u8>> = (0..8).map(|i| vec![0u8; 100 << i]).collect();
    for _ in 0..5000 {
        let k = rng.next_u64() % 300;
        let target = format!("/o/{k}");
        let key = key("GET", "h", &target, Audience::Shared);
        match rng.next_u64() % 10 {
            0 => {
                c.invalidate(b"h", target.as_bytes());
            }
            1..=4 => {
                c.lookup(&key, NO_HEADERS, &ReqDirectives::default(), t0);
            }
            _ => {
                let body = &bodies[(rng.next_u64() % 8) as usize];
                let _ = c.insert(&key, NO_HEADERS, entry_at(&rt, "", body, t0));
            }
        }
        assert!(
            c.stats().bytes <= budget,
            "{}: {}",
            P::NAME,
            c.stats().bytes
        );
    }
    assert!(c.stats().evictions > 0, "{}", P::NAME);
    // Emptying it returns every byte.
    for k in 0..300 {
        c.invalidate(b"h", format!("/o/{k}").as_bytes());
    }
    assert_eq!((c.stats().entries, c.stats().bytes), (0, 0), "{}", P::NAME);
}

#[test]
fn every_policy_keeps_the_budget() {
    budget_holds::<Lru>();
    budget_holds::<S3Fifo>();
    budget_holds::<TinyLfu>();
    budget_holds::<WTinyLfu>();
}

/// The comparison behind the choice of S3-FIFO (smaller than the bench's run, same
/// shape); `cargo test policy_comparison -- --nocapture` prints it.
#[test]
fn policy_comparison() {
    let rows = sim::compare(5_000, 100_000);
    println!("{}", sim::table(&rows));
    let rate = |w: &str, p: &str, share: f64| {
        rows.iter()
            .find(|r| r.workload == w && r.policy == p && r.cache_share == share)
            .unwrap()
            .hit_rate
    };
    for share in [0.01, 0.1] {
        for w in ["zipf", "zipf+scan", "shifting"] {
            let (lru, s3) = (rate(w, "LRU", share), rate(w, "S3-FIFO", share));
            assert!(s3 > lru, "{w} {share}: S3-FIFO {s3} vs LRU {lru}");
        }
        // The scan costs LRU its hot set, not S3-FIFO.
        let (lru, s3) = (
            rate("zipf+scan", "LRU", share),
            rate("zipf+scan", "S3-FIFO", share),
        );
        assert!(s3 > lru + 0.05, "scan {share}: S3-FIFO {s3} vs LRU {lru}");
        // Without a window, TinyLFU cannot follow a moving hot set.
        let (tiny, s3) = (
            rate("shifting", "TinyLFU+LRU", share),
            rate("shifting", "S3-FIFO", share),
        );
        assert!(
            s3 > tiny,
            "shifting {share}: S3-FIFO {s3} vs TinyLFU {tiny}"
        );
    }
}
