//! The raw `cors = { .. }` and `compress = { .. }` of a `[[routes]]` table (see `super`
//! for the conventions; `validate/browser.rs` checks them into `crate::config::RouteCors`
//! and `crate::config::RouteCompress`).

use serde::Deserialize;
use toml::Spanned;

/// `cors = { origins = [..], methods = [..], headers = [..], expose = [..],
/// max_age_s = 600, credentials = false }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRouteCors {
    /// `"*"` or `scheme://host[:port]` each; at least one.
    #[serde(default)]
    pub origins: Vec<Spanned<String>>,
    /// Absent: the route's `methods`, else GET, HEAD, POST.
    #[serde(default)]
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// Request fields a preflight may ask for (`"*"`: any).
    #[serde(default)]
    pub headers: Vec<Spanned<String>>,
    /// Response fields the browser lets the page read.
    #[serde(default)]
    pub expose: Vec<Spanned<String>>,
    /// Absent: no `Access-Control-Max-Age` (the browser's default, 5 s).
    #[serde(default)]
    pub max_age_s: Option<Spanned<u64>>,
    #[serde(default)]
    pub credentials: bool,
}

/// `compress = { types = [..], min_bytes = 1024, algorithms = ["br", "zstd", "gzip"] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRouteCompress {
    /// Absent: `application/json`, `text/*`.
    #[serde(default)]
    pub types: Option<Vec<Spanned<String>>>,
    /// Absent: 1024.
    #[serde(default)]
    pub min_bytes: Option<Spanned<u64>>,
    /// In the server's order of preference. Absent: br, zstd, gzip.
    #[serde(default)]
    pub algorithms: Option<Vec<Spanned<String>>>,
}
