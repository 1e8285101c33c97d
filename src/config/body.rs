//! The body-aware keys of a route, raw (`File*`, as in the TOML file) and typed:
//! `json_match` (route by a field of the JSON body), `validate` (JSON Schema) and
//! `json_body` (rename, remove, set, wrap). Checked by `validate::body` at load; used
//! by `pipeline::body` on the request path. A route with any of them reads the
//! request body whole, bounded by its `max_body_bytes` (default [`DEFAULT_MAX_BODY`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::http::json_field::FieldPath;

/// A route that reads the body whole reads at most this much unless it says otherwise.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// `json_match = { path = "data.event_type", values = [..] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJsonMatch {
    pub path: Spanned<String>,
    pub values: Spanned<Vec<String>>,
}

/// `validate = { schema_file = ".." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileValidate {
    pub schema_file: Spanned<String>,
}

/// `json_body = { rename, remove, set, wrap }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileJsonBody {
    pub rename: BTreeMap<Spanned<String>, Spanned<String>>,
    pub remove: Vec<Spanned<String>>,
    pub set: BTreeMap<Spanned<String>, Spanned<String>>,
    pub wrap: Option<Spanned<FileWrap>>,
}

/// `wrap = "reading"` or `wrap = { key = "reading", set = { .. } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FileWrap {
    Key(String),
    Full(FileWrapFull),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWrapFull {
    pub key: String,
    /// Plain strings: spans do not survive an untagged enum; errors point at `wrap`.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

/// A route's body rules, typed.
#[derive(Debug, Clone)]
pub struct BodyRules {
    pub json_match: Option<JsonMatch>,
    pub validate: Option<Validate>,
    pub json_body: Option<JsonBody>,
}

impl BodyRules {
    /// The upstream's 5xx becomes the gateway's 502 on routes that enrich or validate
    /// what they forward (the IoT workload: the device retries on 502; a 500 passed
    /// through could be read as "the reading was refused").
    pub fn upstream_error_is_502(&self) -> bool {
        self.validate.is_some() || self.json_body.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct JsonMatch {
    pub path: FieldPath,
    /// Compared with JSON strings only: `values = ["1"]` never matches the number 1.
    pub values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Validate {
    pub schema_file: String,
    /// The schema as read and checked at load; each worker compiles its own
    /// validator from it (`pipeline::stack::Pipeline::build`).
    pub schema: Arc<serde_json::Value>,
}

/// Applied in this order: rename, remove, set, wrap. Keys are top-level keys of the
/// body's object (a dot is part of the key, not a path).
#[derive(Debug, Clone, Default)]
pub struct JsonBody {
    pub rename: Vec<(String, String)>,
    pub remove: Vec<String>,
    pub set: Vec<(String, SetValue)>,
    pub wrap: Option<Wrap>,
}

#[derive(Debug, Clone)]
pub struct Wrap {
    pub key: String,
    pub set: Vec<(String, SetValue)>,
}

/// A value of `set`: a template (`crate::http::template`), rendered as JSON: a value
/// that is exactly one variable keeps its type (`${now_ms}` is a JSON number, an
/// absent header `null`); anything else is a JSON string.
pub type SetValue = crate::http::template::Template;

/// A JSON Schema (2020-12 unless it names another draft with `$schema`), compiled.
pub fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .map_err(|e| e.to_string())
}
