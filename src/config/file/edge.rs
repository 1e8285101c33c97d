//! Raw forms of the route keys that answer or reshape a request at the edge:
//! `rewrite` and `respond` (`path_template` and `content_type` are plain strings on
//! [`super::FileRoute`]).

use serde::Deserialize;
use toml::Spanned;

/// `rewrite = { pattern = "^/v1/(.*)$", replace = "/api/$1" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRewrite {
    pub pattern: Spanned<String>,
    pub replace: Spanned<String>,
}

/// `respond = { status = 200, body = "OK", content_type = "text/plain" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRespond {
    #[serde(default = "default_status")]
    pub status: Spanned<u16>,
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_content_type")]
    pub content_type: Spanned<String>,
}

fn default_status() -> Spanned<u16> {
    Spanned::new(0..0, 200)
}
fn default_content_type() -> Spanned<String> {
    Spanned::new(0..0, "text/plain; charset=utf-8".to_owned())
}
