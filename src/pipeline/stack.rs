//! The order of the stages, written down once. A request goes through:
//!
//! ```text
//!  client ──► head parse & limits ──► route ──► auth ──► rate limit ──► [cache]
//!                 (http::request)    (route)   (auth)   (ratelimit)    (issue 4)
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
//! Each stage may answer the request itself (an error response) or pass it on. The
//! stages marked with an issue number are not active yet: `ringgate check` says so.

/// The stages in order, for `ringgate check` and the docs.
pub const STAGES: &[(&str, bool)] = &[
    ("parse+limits", true),
    ("route", true),
    ("auth", true),
    ("rate_limit", true),
    ("cache", false),
    ("upstream", true),
];
