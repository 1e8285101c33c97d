//! Rate limiting: one GCRA bucket per (plan, key) on every worker, kept in step across
//! workers by gossip of consumed counts. It sits after authentication in the request's
//! path (it needs the caller's identity and plan) and before the cache and the upstream.
//!
//! # What a plan allows
//!
//! A plan is `requests_per_minute` (the sustained rate, one request every
//! `T = 60 s / requests_per_minute`) and `burst` (how many requests a client may send
//! *above* that rate). This is the GCRA (generic cell rate algorithm) with emission
//! interval `T` and tolerance `τ = burst × T`, the exact equivalent of a token bucket of
//! capacity `burst + 1` refilled with one token every `T`:
//!
//! * a client that has been quiet may send `burst + 1` requests at once (the one the
//!   sustained rate allows now, plus `burst` above it); `burst = 0` means strictly paced;
//! * after that, one request every `T`;
//! * in any interval of length `D`, at most `floor(D / T) + burst + 1` requests are
//!   admitted: for the spec's `free` plan (60/min, burst 10), 11 at once, then 1 per
//!   second, at most 70 in any minute (71 in a closed interval of exactly 60 s).
//!
//! A route's own `rate_limit` ([`route`]) is a plan of its own, named `route:ID`, that
//! replaces the caller's on that route; its `burst` is the bucket's whole size (what a
//! plan calls `burst + 1`), so everything below holds with `burst + 1` read as the
//! route's `burst`.
//!
//! Per key the bucket is one number, the theoretical arrival time (TAT): a request at
//! `now` is admitted when `TAT - now <= τ`, and then `TAT = max(TAT, now) + T`. A key
//! whose TAT is in the past is a full bucket, so it is dropped ([`Limiter::evict_idle`]).
//!
//! # Keys
//!
//! [`bucket_key`] turns the configured [`KeyKind`] and what the pipeline knows about the
//! caller into key bytes, tagged by kind so that the same string as a user and as an IP
//! never share a bucket; anonymous callers are keyed by IP. [`Limiter::check`] mixes the
//! plan into the key, so a route that forces another plan has its own allowance, and a
//! route's own limit (whose plan is named by the route) its own buckets. Keys
//! are stored as a 64-bit SipHash fingerprint under a per-process secret ([`KeySecret`]):
//! 16 bytes per entry, and no one who does not know the secret can make their key
//! collide with someone else's to drain their bucket.
//!
//! # Across workers
//!
//! Every worker has its own [`Limiter`] (no locks, no atomics). Every `sync_interval`
//! each worker's [`Endpoint::exchange`] sends the counts it admitted per key since the
//! last round to every other worker (one bounded crossbeam channel per receiver,
//! `try_send` only; a batch that does not fit is merged into the next round, never
//! dropped) and charges the counts it received to its own buckets.
//!
//! **The bound.** Let `W` be the number of workers and `L` the longest time between a
//! request being admitted on one worker and it being charged on every other (with each
//! worker exchanging every `S`, `L < 2S`: up to `S` until the sender's next round, up to
//! `S` more until the receiver's; plus however late the workers' timers fire). Then for one key, in any closed interval of length
//! `D`, the requests admitted across all workers number at most
//!
//! ```text
//!     floor(D/T) + (burst+1)  +  (W-1) × (floor(L/T) + (burst+1))
//!     └─ one bucket's allowance ┘   └─ what the others admit before hearing ─┘
//! ```
//!
//! ([`admitted_bound`]). Proof: let `t*` be the last admission in the interval
//! `[a, a+D]`, on worker `i`. Every charge `i` applied in `[a, t*)` raised its TAT by `T`
//! from at least `a`, and `i` admitted at `t*`, so `TAT <= t* + τ`: the charges applied
//! there are at most `(t*-a+τ)/T`. They include `i`'s own admissions before `t*` and every
//! admission by another worker in `[a, t* - L)`; so those, plus the one at `t*`, number
//! at most `floor(D/T) + burst + 1`. What the other `W-1` workers admitted in
//! `[t*-L, t*]` is limited by their own buckets to `floor(L/T) + burst + 1` each.
//!
//! With the spec's defaults (`S = 20 ms`, so `L = 40 ms`) and 4 workers, the free plan
//! admits at most `1 + 11 + 3 × 11 = 45` requests in any second and `71 + 33 = 104` in
//! any minute, against 12 and 71 for a single bucket. The second's bound is reached
//! (every worker spends a full bucket before hearing of the others); over a minute the
//! worst traffic the simulation found (everyone bursting every 30 s) reaches 88. The
//! excess does not grow with the window: over an hour the total stays within
//! `3600 + 11 + 33`. The deterministic tests (`bound_*` in `tests.rs`) simulate 2 and 4
//! workers with adversarial traffic and check every window of 20 ms, 1 s and 1 min;
//! `threads_hammering_one_key_stay_within_bound` does the same with real threads and
//! channels, using the latency it measured.
//!
//! **Routes' own limits** are held to the same bound, per (route, key), with `burst + 1`
//! replaced by the route's `burst` `B` (the bucket's size):
//! `floor(D/T) + B + (W-1) × (floor(L/T) + B)`. Their counts travel in the same
//! batches as the plans' (a route limit is a plan to the limiter), so `L` is the same.
//! A route at 600/min with `burst = 20`, on 4 workers with the default 20 ms sync,
//! admits at most `20 + 3 × 20 = 80` at once and `600 + 20 + 60 = 680` in any minute.
//! A caller's requests on such a route are not charged to their plan, nor the reverse:
//! the plan's bound is for the plan's routes.
//!
//! A remote count is charged when it arrives (`TAT = max(TAT, now) + count × T`), not
//! when it was admitted: that can only make a bucket stricter than a single global one,
//! by at most `L` of refill.
//!
//! Remote charges may push a bucket into debt (the client is refused until the other
//! workers' admissions are paid back), but never beyond `W × (L + (burst+1) × T)` ahead of
//! now: by the same argument no bucket can get deeper than that while gossip arrives
//! within `L`, so the floor never weakens the bound; it only caps the lockout if gossip
//! is late.
//!
//! # Across nodes (`[cluster]`)
//!
//! With `[cluster]` (`crate::cluster`) each node's sync thread pushes its workers'
//! counts to Redis every `C = cluster.sync_interval` and sends every worker what the
//! other nodes added. To the limiter that is gossip from `N × W − 1` other buckets
//! (`N` nodes of `W` workers), each charged with the latency
//!
//! ```text
//!     L_c < S (worker -> its sync thread) + C (until that thread's round) + R
//!           + C (until the other node's round reads it) + R + S (until its workers charge it)
//! ```
//!
//! (`R` a Redis round trip, at most the timeout `max(C, 50 ms)` or the round fails).
//! The proof above does not use where a charge comes from, only that every admission
//! elsewhere is charged within `L`, so with `L = L_c` (which exceeds the in-node `2S`)
//! and `W` read as `N × W`:
//! `floor(D/T) + (burst+1) + (N×W − 1) × (floor(L_c/T) + burst + 1)`.
//! Two things the proof needs of the cluster: the nodes' clocks agree to well within a
//! counter's window (`max(1 s, 10 C)`), or a push into a window another node has
//! finished reading is never charged there; and the debt floor does not cut charges:
//! with `[cluster]` it is `64 × W × (L_c + (burst+1)·T)` (`Limiter::set_remote`), so
//! the bound holds for up to 64 nodes.
//! A node that starts following a key is charged the others' whole current window,
//! which can only make it stricter. While Redis is down each node charges itself
//! `(N − 1) × n` for its own `n`, holding it to about `1/N` of the limit, plus what it
//! admits in one round (`C`) before the charge.
//!
//! Quotas (`quota`) are counted in Redis too, per key per UTC day and month, so a
//! restart continues the count; by the same argument a period's admissions are at
//! most `Q + (N×W − 1) × (floor(L_c/T) + burst + 1)` (`crate::cluster`, "Quotas").
//!
//! # Memory
//!
//! An entry is 16 bytes (fingerprint, TAT) plus hashbrown's control byte; at 1 million
//! keys the table holds 2^21 slots, about 36 bytes per key (`cargo bench --bench
//! ratelimit` prints the measured figure). Idle keys are dropped by
//! [`Limiter::evict_idle_step`], which the worker's tick calls every 50 ms: the table is
//! 16 shards and each call sweeps one, so every key is visited every 0.8 s without ever
//! pausing the worker for the whole table. A worker holds at most `max_keys_per_worker`
//! keys (default 1 million): when the table is full of active keys, a new key is charged
//! to one shared overflow bucket per plan, so a flood of fresh keys is limited as a whole
//! rather than either bypassing the limiter or locking every new caller out (the
//! cross-worker bound above assumes the table is not full).
//!
//! # Headers
//!
//! [`write_headers`] writes `RateLimit-Policy`, `RateLimit` (draft-ietf-httpapi-ratelimit-
//! headers-11: `"free";q=60;w=60` and `"free";r=10;t=1`), `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining`, `X-RateLimit-Reset` and, on a 429, `Retry-After`. The
//! policy states the sustained rate (`q` = requests_per_minute per `w` = 60 s); the
//! available quota `r` is what may be sent right now, at most `burst + 1`. See
//! [`Decision`] for what each number means. A plan's daily and monthly quotas
//! ([`quota`]) add their items to the policy ([`write_headers_with`]), and `RateLimit`
//! shows whichever of the bucket and the quotas leaves the fewest requests.

mod gcra;
mod gossip;
mod headers;
mod key;
pub mod quota;
pub mod route;
mod table;
#[cfg(test)]
mod tests;

use std::time::Duration;

use thiserror::Error;

pub use gcra::{admitted_bound, Decision, Limiter, LimiterStats};
pub use gossip::{Batch, BatchEntry, Endpoint, ExchangeStats, Mesh, SHARE_CHARGE};
pub use headers::{write_headers, write_headers_with};
pub use key::{bucket_key, Caller, KeyBytes, KeyKind, KeySecret};
pub use quota::{Period, QuotaItem, QuotaState};
pub use route::{default_route_burst, max_route_burst, ROUTE_MAX_RPM};

/// The window the plans are expressed in (`requests_per_minute`): `w` of
/// `RateLimit-Policy`.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Default cap on the number of keys one worker tracks.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// A mistake in the rate-limit configuration. `config::validate` already rejects all but
/// `BurstTooLarge` (a burst worth more than 36 years) at load; they exist so that
/// building the typed form never panics.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RateLimitError {
    #[error("no plans are defined")]
    NoPlans,
    #[error("plan `{0}` is defined twice")]
    DuplicatePlan(String),
    #[error("plans.{0}.requests_per_minute must be at least 1")]
    ZeroRate(String),
    #[error("plans.{0}.burst is too large")]
    BurstTooLarge(String),
    #[error("unknown plan `{0}`")]
    UnknownPlan(String),
    #[error("rate_limit.key = {0:?}: expected user, tenant, api_key, ip or header:<Name>")]
    BadKey(String),
    #[error("rate_limit.sync_interval_ms must be at least 1")]
    ZeroSyncInterval,
}

/// Index of a plan in [`RateLimitConfig::plans`]; resolve names once (at load, or when
/// an identity is cached), never per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanId(pub(crate) u32);

impl PlanId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A plan name's hash, the same in every worker and across reloads (SipHash with
/// fixed keys; the fingerprint's own secret keeps bucket keys unpredictable).
pub(crate) fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// One plan, with its GCRA parameters precomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: PlanId,
    pub name: String,
    /// [`name_hash`] of `name`: what names the plan in a bucket's fingerprint, so a
    /// bucket outlives a reload that renumbers plans.
    pub(crate) name_hash: u64,
    pub requests_per_minute: u32,
    pub burst: u32,
    /// `T`: nanoseconds between two requests at the sustained rate, rounded up (so the
    /// rounding can only make the limiter stricter, by under a nanosecond per request).
    pub(crate) emission_ns: u64,
    /// `τ = burst × T`.
    pub(crate) tolerance_ns: u64,
    /// What a bucket is per: `None` for a plan (`[rate_limit] key`), the route's
    /// `key_by` for a route's own limit.
    pub key: Option<KeyKind>,
    /// Requests per caller per UTC day and month; 0 = none ([`quota`]).
    pub daily_quota: u64,
    pub monthly_quota: u64,
}

impl Plan {
    fn new(
        id: usize,
        name: &str,
        requests_per_minute: u32,
        burst: u32,
    ) -> Result<Plan, RateLimitError> {
        if requests_per_minute == 0 {
            return Err(RateLimitError::ZeroRate(name.to_owned()));
        }
        let plan = Plan::paced(id, name, name_hash(name), requests_per_minute, burst);
        // Keep τ far from u64::MAX (~584 years) so TAT arithmetic cannot overflow.
        if plan.tolerance_ns >= 1 << 60 {
            return Err(RateLimitError::BurstTooLarge(name.to_owned()));
        }
        Ok(plan)
    }

    /// The GCRA parameters of `requests_per_minute` (at least 1) and `burst`, τ
    /// saturating: [`Plan::new`] and [`route`] bound it.
    fn paced(id: usize, name: &str, name_hash: u64, requests_per_minute: u32, burst: u32) -> Plan {
        let emission_ns =
            (WINDOW.as_nanos() as u64).div_ceil(u64::from(requests_per_minute.max(1)));
        Plan {
            id: PlanId(id as u32),
            name: name.to_owned(),
            name_hash,
            requests_per_minute,
            burst,
            emission_ns,
            tolerance_ns: emission_ns.saturating_mul(u64::from(burst)),
            key: None,
            daily_quota: 0,
            monthly_quota: 0,
        }
    }

    /// Requests a full bucket admits at once: `burst + 1`.
    pub fn capacity(&self) -> u64 {
        u64::from(self.burst) + 1
    }

    /// Time between two requests at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_ns)
    }
}

/// The typed `[rate_limit]` and `[plans.*]` sections.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// In file order; `plans[id.index()].id == id`.
    pub plans: Vec<Plan>,
    /// The routes' own limits, numbered after `plans` (see [`route`]); set by
    /// [`RateLimitConfig::with_routes`].
    pub route_limits: Vec<Plan>,
    /// Route id -> the id of its own limit in `route_limits`.
    route_index: std::collections::HashMap<String, PlanId>,
    pub default_plan: PlanId,
    pub key: KeyKind,
    /// How often each worker must call [`Endpoint::exchange`].
    pub sync_interval: Duration,
    /// Whether responses carry the rate-limit headers.
    pub headers: bool,
    pub max_keys_per_worker: usize,
}

impl RateLimitConfig {
    /// Build from `(name, requests_per_minute, burst)` triples.
    pub fn new(
        plans: &[(&str, u32, u32)],
        default_plan: &str,
        key: KeyKind,
        sync_interval: Duration,
    ) -> Result<RateLimitConfig, RateLimitError> {
        if plans.is_empty() {
            return Err(RateLimitError::NoPlans);
        }
        if sync_interval.is_zero() {
            return Err(RateLimitError::ZeroSyncInterval);
        }
        let mut typed: Vec<Plan> = Vec::with_capacity(plans.len());
        for (i, &(name, rpm, burst)) in plans.iter().enumerate() {
            if typed.iter().any(|p| p.name == name) {
                return Err(RateLimitError::DuplicatePlan(name.to_owned()));
            }
            typed.push(Plan::new(i, name, rpm, burst)?);
        }
        let default_plan = typed
            .iter()
            .find(|p| p.name == default_plan)
            .map(|p| p.id)
            .ok_or_else(|| RateLimitError::UnknownPlan(default_plan.to_owned()))?;
        Ok(RateLimitConfig {
            plans: typed,
            route_limits: Vec::new(),
            route_index: std::collections::HashMap::new(),
            default_plan,
            key,
            sync_interval,
            headers: true,
            max_keys_per_worker: DEFAULT_MAX_KEYS,
        })
    }

    /// The typed form that validation built into [`crate::config::Config::limits`].
    pub fn from_config(cfg: &crate::config::Config) -> Result<RateLimitConfig, RateLimitError> {
        Ok((*cfg.limits).clone())
    }

    /// The typed form of `[rate_limit]` and the `[plans.*]` in file order (called by
    /// configuration validation, once).
    pub fn from_file(
        rl: &crate::config::file::FileRateLimit,
        plans: &[(String, crate::config::file::FilePlan)],
    ) -> Result<RateLimitConfig, RateLimitError> {
        let key = KeyKind::parse(rl.key.get_ref())
            .ok_or_else(|| RateLimitError::BadKey(rl.key.get_ref().clone()))?;
        let triples: Vec<(&str, u32, u32)> = plans
            .iter()
            .map(|(name, p)| (name.as_str(), *p.requests_per_minute.get_ref(), p.burst))
            .collect();
        let mut out = RateLimitConfig::new(
            &triples,
            rl.default_plan.get_ref(),
            key,
            Duration::from_millis(*rl.sync_interval_ms.get_ref()),
        )?;
        out.headers = rl.headers;
        for (plan, (_, file)) in out.plans.iter_mut().zip(plans) {
            plan.daily_quota = *file.daily_quota.get_ref();
            plan.monthly_quota = *file.monthly_quota.get_ref();
        }
        Ok(out)
    }

    /// A plan, or a route's own limit.
    pub fn plan(&self, id: PlanId) -> &Plan {
        let i = id.index();
        self.plans
            .get(i)
            .unwrap_or_else(|| &self.route_limits[i - self.plans.len()])
    }

    /// The plan named `name` (never a route's own limit: a token's plan claim cannot
    /// name one).
    pub fn plan_id(&self, name: &str) -> Option<PlanId> {
        self.plans.iter().find(|p| p.name == name).map(|p| p.id)
    }

    /// The plan a request is held to: the route's forced plan, else the identity's
    /// (plan claim or API key), else `default_plan`.
    pub fn select(&self, route: Option<PlanId>, identity: Option<PlanId>) -> &Plan {
        self.plan(route.or(identity).unwrap_or(self.default_plan))
    }
}
