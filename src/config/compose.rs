//! API composition, typed: a route with `compose = [ .. ]` answers one JSON object
//! built from several upstreams' JSON answers, fetched in parallel
//! (`pipeline::compose`). Checked by `validate::compose` at load; everything the
//! request path needs is prepared here once (the part's key as JSON, its default as
//! JSON text, its path as a template, its `pick` split into segments).

use crate::http::json_field::FieldPath;
use crate::http::template::Template;

/// A route composes at most this many parts (each is a connection and a request).
pub const MAX_PARTS: usize = 16;

/// A part's response body larger than this fails the part (it takes its default).
pub const PART_MAX_BYTES: usize = 1024 * 1024;

/// A route's `compose`: its parts in the order they appear in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    pub parts: Vec<ComposePart>,
}

/// One part of a composed answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ComposePart {
    /// The key in the answer.
    pub name: String,
    /// `"name":`, the key written as JSON once.
    pub key: Box<[u8]>,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// The path and query sent (`GET <path>`), a template whose values are
    /// percent-encoded when rendered.
    pub path: Template,
    /// Its failure fails the whole answer (502, or 504 for a timeout).
    pub required: bool,
    /// The field of the part's JSON answer taken (a dotted path as `json_match`'s).
    pub pick: Option<FieldPath>,
    /// An array (after `pick`) keeps at most this many items; anything else fails.
    pub limit: Option<usize>,
    /// What a failed optional part answers: JSON text (`null` unless configured).
    pub default: Box<[u8]>,
}

// `Template` compares its text, which is total.
impl Eq for ComposePart {}
