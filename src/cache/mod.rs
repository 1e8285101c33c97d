//! The response cache: per worker, byte-bounded, RFC 9111 rules for a shared cache,
//! tenant-isolated, with request coalescing. Pure and runtime-independent: time comes
//! in as `Instant` (and the worker's unix seconds for HTTP dates), headers as spans
//! into the connection's buffer, and waiting as a plain `Future`. The pipeline's cache
//! stage sits after rate limiting and before the upstream:
//!
//! ```text
//! request ─► route has `cache`? method GET/HEAD? ─no─► upstream (unsafe method + 2xx/3xx:
//!    │                                                  cache.invalidate(host, target))
//!    ▼ yes
//! ReqDirectives::from_request ─► primary_key(method class, host, target, Audience)
//!    ▼
//! cache.lookup ─► Hit ─► not_modified? 304 : write_head + body         X-Cache: HIT
//!             ─► Stale(ServeAndRevalidate) ─► serve + background refresh  STALE
//!             ─► Stale(Serve)              ─► serve                       STALE
//!             ─► Stale(Revalidate) / Miss  ─► fills.begin(primary): the leader goes
//!                  upstream (a HEAD miss is forwarded as is, and not stored);
//!                  storable(head)? keep a copy of the body (≤ max_object_bytes);
//!                  complete ─► Entry::build ─► cache.insert ─► finish     MISS
//!                  304 to a conditional revalidation ─► Entry::freshen ─► insert
//!                  not storable ─► cache.remove (the stale entry goes)
//!                  upstream failed ─► the stale entry if serves_on_error   STALE
//!             ─► Bypass (request no-store) ─► upstream, nothing stored     BYPASS
//! ```
//!
//! # Keys
//!
//! [`primary_key`]: method class (GET and HEAD share one), host (lower-case, no
//! `:80`), path and query, and the [`Audience`]: the caller's verified tenant, or
//! "anonymous", or "shared" on a `shared = true` route. Under a primary key, variants
//! are told apart by the request's values of the headers the response varies on (its
//! `Vary` plus the route's `vary`), listed once per primary key (two-step lookup, as
//! Varnish and nginx do).
//!
//! # Storage rules (RFC 9111, shared cache)
//!
//! [`storable`] decides from the response head, before the body is read: only GET
//! responses (HEAD is answered from them); any status RFC 9110 defines
//! ([`STORABLE_STATUSES`]: not 1xx, 206 or 304) when the response carries explicit
//! freshness, only the heuristically cacheable ones ([`CACHEABLE_STATUSES`]) when it
//! does not; never `no-store`, `private`, unqualified `no-cache`, `Set-Cookie` or
//! `Vary: *`, nor when the request said `no-store`. A request with credentials is
//! stored only under its tenant's key, or, keyed as shared or anonymous, only with
//! `public`, `s-maxage` or `must-revalidate` (RFC 9111 3.5). Lifetime: `s-maxage` over
//! `max-age` over `Expires` over the route's `ttl_s`; a route without `ttl_s` stores
//! only responses with explicit freshness (no heuristic from `Last-Modified`). Fields
//! named in `Connection` (and by a qualified `no-cache`/`private`) are not stored.
//!
//! A 304 to a revalidation updates the entry's fields (RFC 9111 3.2, 4.3.4; see
//! [`Entry::freshen`]), except those that describe the stored body, and only when its
//! validators agree with the entry's.
//!
//! # Budget and eviction
//!
//! Each entry is charged its primary key, variant key, head, body, Vary names and
//! [`ENTRY_OVERHEAD`] bytes; the total never exceeds `max_bytes` (an insert evicts
//! until it fits; one that cannot fit, or whose body is over `max_object_bytes`, is
//! refused). The eviction policy is **S3-FIFO** ([`S3Fifo`]). It was chosen by
//! replaying the same request streams through this cache under each candidate
//! ([`sim::compare`], printed by `cargo bench --bench cache`): 20,000 objects of
//! 512 B to 32 KiB, 400,000 requests, caches of 1% and 10% of the objects' bytes; hit
//! rates over the Zipf requests (see [`sim`] for the workloads):
//!
//! ```text
//! workload  cache          LRU     S3-FIFO TinyLFU+LRU   W-TinyLFU
//! zipf          1%        28.4%       40.0%       40.3%       40.1%
//! zipf+scan     1%        26.1%       40.2%       38.7%       40.0%
//! shifting      1%        28.1%       37.8%       33.8%       35.8%
//! zipf         10%        56.3%       63.7%       66.3%       64.5%
//! zipf+scan    10%        52.2%       63.9%       65.3%       64.1%
//! shifting     10%        55.1%       55.1%       40.2%       53.5%
//! ```
//!
//! (S3-FIFO's ghost is a table of fingerprints, not the paper's FIFO of hashes: one
//! memory access per eviction or insert, and within half a point of the FIFO's rates.)
//!
//! Against LRU, S3-FIFO wins or ties everywhere: +7 to +12 points on the skewed
//! workload (level with it on the shifting hot set at 10%), and
//! the scan, which costs LRU 2 to 4 points, costs it nothing (the scan's keys are
//! one-hit wonders that never leave its small queue). TinyLFU-admitted LRU is ahead
//! by up to 2.4 points on the static Zipf stream at 10%, but without a window it
//! cannot follow a moving hot set (-15 points on "shifting"); W-TinyLFU (window plus
//! TinyLFU-admitted segmented LRU) is within a point of S3-FIFO on Zipf and behind it
//! on "shifting". S3-FIFO is also the cheapest on the hit path: a hit bumps a 2-bit
//! counter (no list moves, no frequency sketch to update on every lookup). The
//! TinyLFU figures move by a few tenths between runs (the sketch hashes with the
//! per-process seed).
//!
//! # Coalescing
//!
//! [`Fills`]: the first miss on a key leads the fill, later ones wait for it
//! ([`FillTicket`]); a leader dropped unfinished fails its followers.

mod body;
mod entry;
mod fill;
mod key;
mod policy;
mod rules;
pub mod sim;
mod store;
#[cfg(test)]
mod tests;

pub use body::{Body, BodyFile, BodyFiles};
pub use entry::{conditional, Entry, NewBody, BODY_FIELDS, WITH_HEAD_MAX};
pub use fill::{FillGuard, FillOutcome, FillTicket, FillWait, Fills};
pub use key::{
    method_class, primary_key, uri_key, variant_key, view, Audience, KeyParts, KeyView,
    RequestHeaders, SpanHeaders,
};
pub use policy::{Lru, Policy, S3Fifo, TinyLfu, WTinyLfu};
pub use rules::{
    cacheable_method, invalidates, storable, ReqDirectives, RequestFacts, ResponseParts, Storable,
    CACHEABLE_STATUSES, MAX_DELTA, STORABLE_STATUSES,
};
pub use store::{Cache, Lookup, StaleUse, ENTRY_OVERHEAD, MAX_VARIANTS};

/// The `X-Cache` value of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XCache {
    Hit,
    Miss,
    Bypass,
    Stale,
}

impl XCache {
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            XCache::Hit => b"HIT",
            XCache::Miss => b"MISS",
            XCache::Bypass => b"BYPASS",
            XCache::Stale => b"STALE",
        }
    }
}

/// One worker's cache counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    pub bytes: usize,
    /// Fresh entries served.
    pub hits: u64,
    /// Stale entries served (`stale-while-revalidate`, `max-stale`).
    pub stale_hits: u64,
    /// Lookups that must go upstream (nothing stored, or stored and stale).
    pub misses: u64,
    /// Requests with `no-store`.
    pub bypasses: u64,
    pub inserts: u64,
    /// Inserts refused (too large, not admitted).
    pub refused: u64,
    pub evictions: u64,
    /// Entries dropped by unsafe requests.
    pub invalidations: u64,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotStorable {
    #[error("only GET responses are stored")]
    Method,
    #[error("the request said no-store")]
    RequestNoStore,
    /// Never stored (1xx, 206, 304, unknown), or not heuristically cacheable and
    /// without explicit freshness.
    #[error("status {0} is not cacheable (without explicit freshness, or at all)")]
    Status(u16),
    #[error("the response said no-store")]
    NoStore,
    #[error("the response is private")]
    Private,
    #[error("the response said no-cache")]
    NoCache,
    #[error("the response sets a cookie")]
    SetCookie,
    #[error("the response varies on everything (Vary: *)")]
    VaryStar,
    #[error("a response to a request with credentials that does not allow sharing")]
    Authorization,
    #[error("the body has a transfer coding other than chunked")]
    TransferCoding,
    #[error("the response is never fresh and allows no stale use")]
    NoFreshness,
    /// A 304 whose `ETag` or `Last-Modified` disagrees with the stored response's: it
    /// is about another representation and must not update this one (RFC 9111 4.3.4).
    #[error("the 304 names another representation than the stored one")]
    OtherRepresentation,
    #[error("the body is not as long as Content-Length said")]
    Truncated,
    #[error("the response is larger than the cache allows")]
    TooLarge,
    #[error("the eviction policy did not admit it")]
    NotAdmitted,
}
