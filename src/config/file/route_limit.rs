//! The raw `rate_limit = { .. }` of a `[[routes]]` table: the route's own limit, which
//! replaces the plan's on that route (see `super` for the conventions;
//! `validate/deferred.rs` checks it into `crate::config::RouteRateLimit`).
//!
//! The key names are the management API's (`enabled`, `requests_per_minute`, `burst`,
//! `key_by`): routes created over the admin API are JSON turned into this same table.

use serde::Deserialize;
use toml::Spanned;

/// A route's `rate_limit = { requests_per_minute = 120, burst = 20, key_by = "user" }`.
/// Spanned as a whole in [`super::FileRoute`], so that a missing `requests_per_minute`
/// can point at the table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRouteRateLimit {
    /// `false`: no per-route limit, the plan applies as on any other route (the other
    /// keys are still checked, so switching it back on cannot fail). Default `true`.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Sustained rate; required while `enabled`.
    #[serde(default)]
    pub requests_per_minute: Option<Spanned<u32>>,
    /// Requests a full bucket admits at once (not, as for plans, the requests above
    /// the rate). Absent: `crate::ratelimit::default_route_burst`.
    #[serde(default)]
    pub burst: Option<Spanned<u32>>,
    /// `user` (default) | `tenant` | `api_key` | `ip` | `header:<Name>`.
    #[serde(default)]
    pub key_by: Option<Spanned<String>>,
}

fn enabled_by_default() -> bool {
    true
}
