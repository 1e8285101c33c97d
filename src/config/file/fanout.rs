//! Raw form of a route's `fanout` (see `crate::pipeline::fanout`):
//! `fanout = { upstreams = ["archive", "cdn"], require = "all", timeout_ms = 30000 }`.

use serde::Deserialize;
use toml::Spanned;

/// `fanout = { upstreams, require, timeout_ms }`: instead of `upstream` / `split`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFanout {
    pub upstreams: Spanned<Vec<Spanned<String>>>,
    /// `"all"` (the default) | `"any"` | a number of destinations.
    #[serde(default)]
    pub require: Option<Spanned<FileRequire>>,
    /// The whole fan-out, from the request head to the last destination's answer.
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
}

/// `require = "all" | "any" | 2`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FileRequire {
    Word(String),
    Count(i64),
}
