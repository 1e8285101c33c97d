//! Routes' own limits: a route with `rate_limit = { requests_per_minute, burst, key_by }`
//! (enabled) is held to that limit instead of any plan, in buckets of its own.
//!
//! Each such limit is a [`Plan`] named `route:ID`, numbered after the plans in
//! [`RateLimitConfig::route_limits`], with its own [`KeyKind`] in [`Plan::key`]. So it
//! goes through the same GCRA check, the same key table (the same idle eviction and
//! the same `max_keys_per_worker`, with an overflow bucket of its own), the same gossip
//! and the same headers as a plan: the cross-worker bound of the module above holds
//! with `burst + 1` read as the route's `burst`.
//!
//! What differs from a plan:
//!
//! * `burst` is the bucket's whole size, the requests a full bucket admits at once (the
//!   management API's meaning), not the requests above the rate: a route's
//!   `burst = B` is a plan's `burst = B - 1`. It is at least 1 (strictly paced),
//!   [`default_route_burst`] when absent, at most [`max_route_burst`];
//! * the bucket is named by the route id, `requests_per_minute` and `burst`: it is
//!   kept across a reload that leaves the route's limit as it was, wherever the route
//!   moves in the file (any pipeline built from the routes finds them: see
//!   [`RateLimitConfig::with_routes`]); a changed limit starts every caller with a
//!   full bucket of the new size (the old buckets expire as idle ones do), so a raised
//!   limit is seen at once;
//! * a token's `plan` claim can never name it ([`RateLimitConfig::plan_id`] looks at
//!   plans only), and `route:` cannot start a plan name (plan names are tokens).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Plan, PlanId, RateLimitConfig};
use crate::config::{RouteConfig, RouteRateLimit};

/// Highest `requests_per_minute` of a route's own limit: a million a second for one
/// key is more than one gateway serves, and keeps `T` at 60 ns or more.
pub const ROUTE_MAX_RPM: u32 = 60_000_000;

/// A day's worth of the rate: the largest `burst` of a route limited at
/// `requests_per_minute` (a bucket larger than that is no rate limit).
pub fn max_route_burst(requests_per_minute: u32) -> u32 {
    u32::try_from(u64::from(requests_per_minute) * 24 * 60).unwrap_or(u32::MAX)
}

/// `burst` when a route's limit does not give one: ten seconds' worth of the rate
/// (`requests_per_minute / 6`, rounded up, at least 1), the ratio of the reference
/// plans (free: 60 a minute, 10 above the rate).
pub fn default_route_burst(requests_per_minute: u32) -> u32 {
    requests_per_minute.div_ceil(6).max(1)
}

/// What names a route's buckets: its id and its numbers, so that a changed limit
/// starts fresh buckets and an unchanged one keeps its own.
fn route_hash(route: &str, requests_per_minute: u32, burst: u32) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    ("route", route, requests_per_minute, burst).hash(&mut h);
    h.finish()
}

impl Plan {
    /// Route `route`'s own limit as plan number `id`. Values outside what validation
    /// accepts are clamped into it, so that this never fails: the rate to
    /// 1..=[`ROUTE_MAX_RPM`], the burst to 1..=[`max_route_burst`] (so τ is a day at
    /// most).
    fn for_route(id: usize, route: &str, limit: &RouteRateLimit) -> Plan {
        let rpm = limit.requests_per_minute.clamp(1, ROUTE_MAX_RPM);
        let capacity = limit.burst.clamp(1, max_route_burst(rpm));
        let name = format!("route:{route}");
        let mut plan = Plan::paced(
            id,
            &name,
            route_hash(route, rpm, capacity),
            rpm,
            capacity - 1,
        );
        plan.key = Some(limit.key.clone());
        plan
    }
}

impl RateLimitConfig {
    /// These plans with the own limits of `routes` (the enabled ones, in route order).
    /// The same `Arc` when they are those already there, as they are for a
    /// configuration that validation built: a worker building its pipeline from it
    /// copies nothing.
    pub fn with_routes(self: &Arc<Self>, routes: &[RouteConfig]) -> Arc<RateLimitConfig> {
        let limits: Vec<Plan> = routes
            .iter()
            .filter_map(|r| Some((r, r.rate_limit.as_ref().filter(|l| l.enabled)?)))
            .enumerate()
            .map(|(i, (r, l))| Plan::for_route(self.plans.len() + i, &r.id, l))
            .collect();
        if limits == self.route_limits {
            return Arc::clone(self);
        }
        let index: HashMap<String, PlanId> = routes
            .iter()
            .filter(|r| r.rate_limit.as_ref().is_some_and(|l| l.enabled))
            .zip(&limits)
            .map(|(r, l)| (r.id.clone(), l.id))
            .collect();
        let mut out = (**self).clone();
        out.route_limits = limits;
        out.route_index = index;
        Arc::new(out)
    }

    /// What route `r` is held to, when not the caller's plan: its own limit (from
    /// [`RateLimitConfig::with_routes`]) if enabled, else the plan it forces, if any.
    /// Resolved when a pipeline is built, never per request.
    pub fn plan_of_route(&self, r: &RouteConfig) -> Option<PlanId> {
        self.route_index
            .get(&r.id)
            .copied()
            .or_else(|| r.plan.as_deref().and_then(|p| self.plan_id(p)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::{
        admitted_bound, bucket_key, write_headers, Caller, KeyKind, KeySecret, Limiter, Mesh,
        WINDOW,
    };
    use super::*;
    use crate::config::PathMatch;

    fn base() -> Arc<RateLimitConfig> {
        Arc::new(
            RateLimitConfig::new(
                &[("free", 60, 10), ("pro", 600, 100)],
                "free",
                KeyKind::Tenant,
                Duration::from_millis(20),
            )
            .unwrap(),
        )
    }

    fn route(id: &str, limit: Option<(u32, u32, KeyKind)>) -> RouteConfig {
        RouteConfig {
            rate_limit: limit.map(|(requests_per_minute, burst, key)| RouteRateLimit {
                enabled: true,
                requests_per_minute,
                burst,
                key,
            }),
            ..RouteConfig::new(id, PathMatch::Prefix(format!("/{id}")))
        }
    }

    fn routes() -> Vec<RouteConfig> {
        vec![
            route("open", None),
            route("users", Some((6, 3, KeyKind::User))),
            RouteConfig {
                plan: Some("pro".into()),
                ..route("forced", None)
            },
            route("search", Some((6, 3, KeyKind::Ip))),
        ]
    }

    const ALICE: Caller<'static> = Caller {
        user: "alice",
        tenant: Some("acme"),
        api_key_id: None,
    };

    fn key(plan: &Plan, caller: Option<&Caller<'_>>, ip: [u8; 4]) -> Vec<u8> {
        let kind = plan.key.as_ref().unwrap_or(&KeyKind::Tenant);
        bucket_key(kind, caller, ip.into(), None).to_vec()
    }

    #[test]
    fn route_limits_are_plans_after_the_plans() {
        let rl = base().with_routes(&routes());
        let names: Vec<&str> = rl.route_limits.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["route:users", "route:search"]);
        let rs = routes();
        let users = rl.plan_of_route(&rs[1]).unwrap();
        assert_eq!(users.index(), 2);
        let p = rl.plan(users);
        assert_eq!((p.requests_per_minute, p.capacity()), (6, 3));
        assert_eq!(p.emission_interval(), Duration::from_secs(10));
        assert_eq!(p.key, Some(KeyKind::User));
        assert_eq!(
            rl.plan(rl.plan_of_route(&rs[3]).unwrap()).name,
            "route:search"
        );
        // No limit of its own: the forced plan, or none.
        assert_eq!(rl.plan_of_route(&rs[2]), rl.plan_id("pro"));
        assert_eq!(rl.plan_of_route(&rs[0]), None);
        // A token's plan claim never names a route's limit.
        assert_eq!(rl.plan_id("route:users"), None);
        assert!(rl.plans.iter().all(|p| p.key.is_none()));
    }

    #[test]
    fn own_limit_wins_over_a_forced_plan_and_disabled_is_the_plan() {
        let mut r = route("r", Some((60, 5, KeyKind::User)));
        r.plan = Some("pro".into());
        let rl = base().with_routes(std::slice::from_ref(&r));
        assert_eq!(rl.plan(rl.plan_of_route(&r).unwrap()).name, "route:r");
        r.rate_limit.as_mut().unwrap().enabled = false;
        let rl = base().with_routes(std::slice::from_ref(&r));
        assert!(rl.route_limits.is_empty());
        assert_eq!(rl.plan_of_route(&r), rl.plan_id("pro"));
        r.plan = None;
        assert_eq!(rl.plan_of_route(&r), None);
    }

    #[test]
    fn with_routes_copies_nothing_when_nothing_changed() {
        let rl = base().with_routes(&routes());
        assert!(Arc::ptr_eq(&rl, &rl.with_routes(&routes())));
        let none = base();
        assert!(Arc::ptr_eq(
            &none,
            &none.with_routes(&[route("open", None)])
        ));
        let mut changed = routes();
        changed[1].rate_limit.as_mut().unwrap().burst = 4;
        assert!(!Arc::ptr_eq(&rl, &rl.with_routes(&changed)));
    }

    #[test]
    fn out_of_range_values_are_clamped_never_a_panic() {
        let r = route("r", Some((0, 0, KeyKind::Ip)));
        let rl = base().with_routes(std::slice::from_ref(&r));
        let p = &rl.route_limits[0];
        assert_eq!((p.requests_per_minute, p.capacity()), (1, 1));
        let r = route("r", Some((u32::MAX, u32::MAX, KeyKind::Ip)));
        let rl = base().with_routes(std::slice::from_ref(&r));
        let p = &rl.route_limits[0];
        assert_eq!(p.requests_per_minute, ROUTE_MAX_RPM);
        assert!(p.tolerance_ns <= 86_400 * 1_000_000_000);
    }

    #[test]
    fn defaults_and_maxima() {
        assert_eq!(default_route_burst(1), 1);
        assert_eq!(default_route_burst(60), 10);
        assert_eq!(default_route_burst(61), 11);
        assert_eq!(default_route_burst(600), 100);
        assert_eq!(max_route_burst(1), 1440);
        assert_eq!(max_route_burst(ROUTE_MAX_RPM), u32::MAX);
    }

    #[test]
    fn a_route_limit_admits_burst_then_refuses_with_its_headers() {
        let rl = base().with_routes(&routes());
        let users = rl.plan(rl.plan_of_route(&routes()[1]).unwrap());
        let mut l = Limiter::new(0, 1, &rl, KeySecret::random());
        let t0 = Instant::now() + Duration::from_secs(1);
        let k = key(users, Some(&ALICE), [192, 0, 2, 1]);
        assert_eq!(
            k, b"ualice",
            "keyed by user, not by [rate_limit] key (tenant)"
        );
        for i in 0..3 {
            let d = l.check(&k, users, t0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 2 - i);
        }
        let d = l.check(&k, users, t0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_secs(10)));
        let mut out = Vec::new();
        write_headers(&mut out, &d, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "RateLimit-Policy: \"route:users\";q=6;w=60\r\n\
             RateLimit: \"route:users\";r=0;t=10\r\n\
             X-RateLimit-Limit: 6\r\n\
             X-RateLimit-Remaining: 0\r\n\
             X-RateLimit-Reset: 10\r\n\
             Retry-After: 10\r\n"
        );
        // Another route with the same numbers, the caller's plan, another user: each
        // its own bucket.
        let search = rl.plan(rl.plan_of_route(&routes()[3]).unwrap());
        assert!(
            l.check(&key(search, Some(&ALICE), [192, 0, 2, 1]), search, t0)
                .allowed
        );
        let free = rl.plan(rl.default_plan);
        assert_eq!(
            l.check(&key(free, Some(&ALICE), [0; 4]), free, t0)
                .remaining,
            10
        );
        let bob = Caller {
            user: "bob",
            ..ALICE
        };
        assert!(
            l.check(&key(users, Some(&bob), [192, 0, 2, 1]), users, t0)
                .allowed
        );
    }

    #[test]
    fn key_by_ip_shares_a_bucket_per_address_and_anonymous_is_by_ip() {
        let rl = base().with_routes(&routes());
        let search = rl.plan(rl.plan_of_route(&routes()[3]).unwrap());
        let users = rl.plan(rl.plan_of_route(&routes()[1]).unwrap());
        let bob = Caller {
            user: "bob",
            ..ALICE
        };
        let ip = [198, 51, 100, 7];
        assert_eq!(key(search, Some(&ALICE), ip), key(search, Some(&bob), ip));
        assert_ne!(
            key(search, Some(&ALICE), ip),
            key(search, Some(&ALICE), [198, 51, 100, 8])
        );
        // key_by user: anonymous callers by IP.
        assert_eq!(key(users, None, ip), key(search, None, ip));
        assert_ne!(key(users, Some(&ALICE), ip), key(users, Some(&bob), ip));
    }

    #[test]
    fn buckets_survive_a_reload_that_keeps_the_limit_and_restart_when_it_changes() {
        let before = base().with_routes(&routes());
        let users = before
            .plan(before.plan_of_route(&routes()[1]).unwrap())
            .clone();
        let mut l = Limiter::new(0, 1, &before, KeySecret::random());
        let t0 = Instant::now() + Duration::from_secs(1);
        while l.check(b"ualice", &users, t0).allowed {}
        // A route added in front (plan numbers shift), another plan: the same bucket.
        let mut moved = vec![route("new", Some((600, 1, KeyKind::Ip)))];
        moved.extend(routes());
        let after = base().with_routes(&moved);
        l.reconfigure(&after);
        let again = after.plan(after.plan_of_route(&moved[2]).unwrap());
        assert_ne!(again.id, users.id);
        assert!(!l.check(b"ualice", again, t0).allowed, "still limited");
        // A changed burst: a full bucket of the new size.
        let mut raised = routes();
        raised[1].rate_limit.as_mut().unwrap().burst = 5;
        let after = base().with_routes(&raised);
        l.reconfigure(&after);
        let raised = after.plan(after.plan_of_route(&raised[1]).unwrap());
        assert_eq!(l.check(b"ualice", raised, t0).remaining, 4);
    }

    #[test]
    fn gossip_carries_route_limits_and_the_bound_reads_burst_as_capacity() {
        let rl = base().with_routes(&routes());
        let users = rl.plan(rl.plan_of_route(&routes()[1]).unwrap());
        let mut eps = Mesh::new(2).into_endpoints();
        let mut ls: Vec<Limiter> = eps.iter().map(|e| e.limiter(&rl)).collect();
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!(ls[0].check(b"ualice", users, t0).allowed);
        assert!(ls[0].check(b"ualice", users, t0).allowed);
        eps[0].exchange(&mut ls[0], t0);
        assert_eq!(eps[1].exchange(&mut ls[1], t0).received, 1);
        assert_eq!(ls[1].peek(b"ualice", users, t0).remaining, 1);
        // burst 3 at 6/min, 2 workers, L = 40 ms, over a minute: 6 + 3 + (0 + 3).
        let latency = Duration::from_millis(40);
        assert_eq!(admitted_bound(users, 2, latency, WINDOW), 12);
    }
}
