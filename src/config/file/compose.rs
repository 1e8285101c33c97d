//! The raw `compose = [ .. ]` of a `[[routes]]` table: the parts of a composed answer
//! (see `crate::config::compose` for what they mean; `validate/compose.rs` checks
//! them).

use serde::Deserialize;
use toml::Spanned;

/// One part: `{ name = "user", upstream = "users", path = "/users/${path:user_id}",
/// required = true, pick = "items", limit = 5, default = [] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileComposePart {
    pub name: Spanned<String>,
    pub upstream: Spanned<String>,
    pub path: Spanned<String>,
    /// A failed required part fails the whole answer (502/504). Default false.
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub pick: Option<Spanned<String>>,
    #[serde(default)]
    pub limit: Option<Spanned<i64>>,
    /// Any TOML value, answered as JSON when the part fails. Absent: `null`.
    #[serde(default)]
    pub default: Option<Spanned<toml::Value>>,
}
