//! One field of a JSON request body, read by a dotted path (`data.event_type`,
//! `items.0.id`) without building a document tree: the body is walked once with
//! jiter's pull parser, the path followed and everything else skipped, and the whole
//! body is checked to be JSON on the way (a `json_match` route answers 400 to one that
//! is not). Used by the router's body-matching routes (`json_match`, see
//! `pipeline::body`); `benches/body_routes.rs` measures it against serde_json's
//! `Value`, `fuzz/fuzz_targets/json_field.rs` checks it against serde_json.
//!
//! Semantics: a segment is an object key, or, where the value is an array, an index
//! (`"0"` is the key `"0"` in an object and item 0 in an array). A duplicated key
//! takes its last occurrence, as serde_json does. Strings of skipped values are not
//! checked to be UTF-8 (jiter skips them unchecked); the field read is.

use jiter::{Jiter, JiterResult, Peek};

/// A dotted path, split once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    /// Each segment, with its value as an array index when it is one.
    segs: Vec<(Box<str>, Option<usize>)>,
}

impl FieldPath {
    /// `"data.event_type"`, `"items.0.id"`. Empty segments are refused.
    pub fn parse(path: &str) -> Result<FieldPath, &'static str> {
        if path.is_empty() {
            return Err("an empty path names no field");
        }
        let mut segs = Vec::new();
        for s in path.split('.') {
            if s.is_empty() {
                return Err("a dotted path has an empty segment (\"a..b\", \".a\" or \"a.\")");
            }
            let index =
                match s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0')) {
                    true => s.parse().ok(),
                    false => None,
                };
            segs.push((s.into(), index));
        }
        Ok(FieldPath { segs })
    }

    /// The segments, for walking a parsed document the same way (tests, benches).
    pub fn segments(&self) -> impl Iterator<Item = (&str, Option<usize>)> {
        self.segs.iter().map(|(s, i)| (&**s, *i))
    }
}

/// What is at the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Nothing: a key absent, an index past the end, or a scalar in the way.
    Missing,
    /// A JSON string, unescaped.
    Str(String),
    /// A number, boolean, null, object or array (never equal to a configured value:
    /// values match JSON strings only).
    Other,
}

/// The body is not JSON (message for a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request body is not valid JSON: {0}")]
pub struct NotJson(pub String);

/// The field at `path` of the JSON document `json`, which is checked whole.
pub fn field(json: &[u8], path: &FieldPath) -> Result<Field, NotJson> {
    let mut j = Jiter::new(json);
    let mut found = Field::Missing;
    let run = |j: &mut Jiter, found: &mut Field| -> JiterResult<()> {
        let peek = j.peek()?;
        walk(j, peek, &path.segs, found)?;
        j.finish()
    };
    run(&mut j, &mut found).map_err(|e| NotJson(e.description(&j)))?;
    Ok(found)
}

/// Walk the value that starts with `peek`, following `segs`; record the target.
fn walk(
    j: &mut Jiter,
    peek: Peek,
    segs: &[(Box<str>, Option<usize>)],
    found: &mut Field,
) -> JiterResult<()> {
    let Some(((key, index), rest)) = segs.split_first() else {
        *found = match peek {
            Peek::String => Field::Str(j.known_str()?.to_owned()),
            _ => {
                j.known_skip(peek)?;
                Field::Other
            }
        };
        return Ok(());
    };
    match peek {
        Peek::Object => {
            let mut is_it = j.known_object()?.map(|k| k == &**key);
            while let Some(hit) = is_it {
                let peek = j.peek()?;
                if hit {
                    // A later duplicate replaces the earlier value whole.
                    *found = Field::Missing;
                    walk(j, peek, rest, found)?;
                } else {
                    j.known_skip(peek)?;
                }
                is_it = j.next_key()?.map(|k| k == &**key);
            }
        }
        Peek::Array => {
            let mut i = 0usize;
            let mut next = j.known_array()?;
            while let Some(peek) = next {
                if Some(i) == *index {
                    walk(j, peek, rest, found)?;
                } else {
                    j.known_skip(peek)?;
                }
                i += 1;
                next = j.array_step()?;
            }
        }
        _ => j.known_skip(peek)?,
    }
    Ok(())
}

/// The same lookup on a parsed document (serde_json), for the fuzz target's and the
/// tests' comparison and the benches' alternative.
pub fn field_in_value(v: &serde_json::Value, path: &FieldPath) -> Field {
    let mut at = v;
    for (key, index) in path.segments() {
        let next = match at {
            serde_json::Value::Object(m) => m.get(key),
            serde_json::Value::Array(a) => index.and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return Field::Missing,
        }
    }
    match at {
        serde_json::Value::String(s) => Field::Str(s.clone()),
        _ => Field::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(json: &str, path: &str) -> Result<Field, NotJson> {
        field(json.as_bytes(), &FieldPath::parse(path).unwrap())
    }

    #[test]
    fn nested_keys_and_indexes() {
        let doc =
            r#"{"data":{"event_type":"call.hangup","n":1},"items":[{"id":"a"},{"id":"b\n"}]}"#;
        assert_eq!(
            get(doc, "data.event_type").unwrap(),
            Field::Str("call.hangup".into())
        );
        assert_eq!(get(doc, "items.1.id").unwrap(), Field::Str("b\n".into()));
        assert_eq!(get(doc, "items.2.id").unwrap(), Field::Missing);
        assert_eq!(get(doc, "data.n").unwrap(), Field::Other);
        assert_eq!(get(doc, "data.x").unwrap(), Field::Missing);
        assert_eq!(get(doc, "data.n.x").unwrap(), Field::Missing);
        assert_eq!(get(r#"{"0":"k"}"#, "0").unwrap(), Field::Str("k".into()));
        assert_eq!(get(r#"["x"]"#, "0").unwrap(), Field::Str("x".into()));
    }

    #[test]
    fn duplicate_keys_take_the_last_like_serde_json() {
        let doc = r#"{"a":{"b":"1"},"a":{"c":"2"}}"#;
        assert_eq!(get(doc, "a.b").unwrap(), Field::Missing);
        let v: serde_json::Value = serde_json::from_str(doc).unwrap();
        assert_eq!(
            field_in_value(&v, &FieldPath::parse("a.b").unwrap()),
            Field::Missing
        );
    }

    #[test]
    fn the_whole_body_must_be_json() {
        assert!(get(r#"{"a":"x"} trailing"#, "a").is_err());
        assert!(get(r#"{"a":"x","b":[1,}"#, "a").is_err());
        assert!(get("not json", "a").is_err());
        assert!(get("", "a").is_err());
    }

    #[test]
    fn bad_paths_are_refused() {
        for p in ["", ".a", "a.", "a..b"] {
            assert!(FieldPath::parse(p).is_err(), "{p}");
        }
        assert_eq!(FieldPath::parse("a.01").unwrap().segs[1].1, None);
    }
}
