//! The order of the stages, written down once, and [`Pipeline`]: everything a worker
//! serves requests with, built from one validated configuration and replaced whole on
//! reload. A request goes through:
//!
//! ```text
//!  client ──► head parse & limits ──► route ──► auth ──► rate limit ──► cache
//!                 (http::request)    (route)   (auth)   (ratelimit)    (cache)
//!         ──► upstream pick & exchange ──► response head rewrite ──► client
//!                (proxy, upstream)           (forward)
//! ```
//!
//! Why this order: limits and parsing come first so nothing malformed reaches any
//! stage; routing precedes auth because the route says whether auth is required; auth
//! precedes rate limiting because the bucket key is the caller's identity; the cache
//! comes after both so a cached answer is never served to a caller who would have been
//! refused or limited.
//!
//! Each stage may answer the request itself (an error response) or pass it on.
//!
//! # Snapshots and reload
//!
//! A worker holds its current [`Pipeline`] behind an `Rc`; a request takes a clone of
//! it when it starts and keeps it to its end, so a reload never shows a request half
//! of each configuration. [`Pipeline::build`] is the one factory: given the previous
//! pipeline it carries over what must survive, by name: an upstream whose settings
//! did not change keeps its whole state (idle connections, balancer, circuit
//! breakers, health); a changed one keeps, per server address still in it, the idle
//! connections, the breaker and the health verdict. Rate-limit buckets and cache
//! entries live in the worker, outside the pipeline, and are kept as they are.

use std::rc::Rc;
use std::sync::Arc;

use crate::auth::{AuthSettings, Authenticator};
use crate::config::Config;
use crate::pipeline::route::Router;
use crate::ratelimit::{PlanId, RateLimitConfig};
use crate::upstream::UpstreamState;

/// The stages in order, for the docs.
pub const STAGES: &[&str] = &[
    "parse+limits",
    "route",
    "auth",
    "rate_limit",
    "cache",
    "upstream",
];

/// What a worker serves requests with, from one configuration.
pub struct Pipeline {
    /// The configuration it was built from (its routes and upstreams; process-wide
    /// settings such as listeners are read from the worker's start configuration).
    pub cfg: Arc<Config>,
    pub router: Router,
    /// In `cfg.upstreams` order (routes refer to them by that position).
    pub upstreams: Vec<Rc<UpstreamState>>,
    /// Per route: the plan it forces, if any.
    pub route_plans: Vec<Option<PlanId>>,
    /// Plans and bucket keys (shared, read-only).
    pub limits: Arc<RateLimitConfig>,
    /// Credentials: keys loaded when the configuration was read, verified identities
    /// cached per worker (the cache starts empty with each pipeline).
    pub auth: Authenticator,
}

impl Pipeline {
    /// Build from a validated configuration, carrying state over from `prev`.
    pub fn build(
        cfg: Arc<Config>,
        limits: Arc<RateLimitConfig>,
        auth: &AuthSettings,
        prev: Option<&Pipeline>,
    ) -> Pipeline {
        let upstreams = cfg
            .upstreams
            .iter()
            .map(|u| {
                let old = prev.and_then(|p| p.upstreams.iter().find(|o| o.cfg.name == u.name));
                match old {
                    // The same settings: the very same state, whole.
                    Some(old) if format!("{:?}", old.cfg) == format!("{u:?}") => old.clone(),
                    Some(old) => Rc::new(UpstreamState::carried(u, old)),
                    None => Rc::new(UpstreamState::new(u)),
                }
            })
            .collect::<Vec<_>>();
        if let Some(prev) = prev {
            for old in &prev.upstreams {
                if !upstreams.iter().any(|u| Rc::ptr_eq(u, old)) {
                    old.retire();
                }
            }
        }
        let route_plans = cfg
            .routes
            .iter()
            .map(|r| r.plan.as_deref().and_then(|p| limits.plan_id(p)))
            .collect();
        Pipeline {
            router: Router::new(&cfg.routes),
            upstreams,
            route_plans,
            auth: Authenticator::new(auth),
            limits,
            cfg,
        }
    }
}
