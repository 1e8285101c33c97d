//! The JSON side of a composed answer, without I/O: [`select`] finds, in a part's
//! response body, the value the part answers with (the whole document, or the field
//! `pick` names, an array cut to `limit` items) as a byte range of the body, and
//! [`assemble`] writes the answer object from the parts' values and defaults.
//!
//! Nothing is parsed into a tree or serialised again: the body is walked once with
//! jiter's pull parser (checked whole on the way, as `http::json_field` does), and
//! the answer is the parts' bytes copied between the keys. The body must be UTF-8
//! (RFC 8259 8.1), checked first, so the answer always is.
//! `benches/compose.rs` measures [`select`] and [`assemble`] for three parts.

use std::ops::Range;

use jiter::{Jiter, JiterResult, Peek};

use crate::config::compose::ComposePart;
use crate::http::json_field::FieldPath;

/// Where a part's value is in its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub range: Range<usize>,
    /// The range is an array cut after its `limit`-th item: a `]` closes it.
    pub close: bool,
}

/// Why a part's body gives no value (the part then takes its default).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoValue {
    #[error("the answer is not JSON: {0}")]
    NotJson(String),
    #[error("the answer has no field {0:?}")]
    Missing(String),
    #[error("limit applies to an array; the value is not one")]
    NotArray,
}

/// The value of part `pick`/`limit` in `body`.
pub fn select(
    body: &[u8],
    pick: Option<&FieldPath>,
    limit: Option<usize>,
) -> Result<Selected, NoValue> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(NoValue::NotJson(format!(
            "not UTF-8 at byte {}",
            e.valid_up_to()
        )));
    }
    let segs: Vec<(&str, Option<usize>)> = pick.map(|p| p.segments().collect()).unwrap_or_default();
    let mut j = Jiter::new(body);
    let mut found = Found::Missing;
    let run = |j: &mut Jiter, found: &mut Found| -> JiterResult<()> {
        let peek = j.peek()?;
        walk(j, peek, &segs, limit, found)?;
        j.finish()
    };
    run(&mut j, &mut found).map_err(|e| NoValue::NotJson(e.description(&j)))?;
    match found {
        Found::At(s) => Ok(s),
        Found::NotArray => Err(NoValue::NotArray),
        Found::Missing => Err(NoValue::Missing(
            segs.iter().map(|s| s.0).collect::<Vec<_>>().join("."),
        )),
    }
}

enum Found {
    Missing,
    NotArray,
    At(Selected),
}

/// Walk the value that starts with `peek` (the parser is at its first byte),
/// following `segs`; at their end, record the value's range.
fn walk(
    j: &mut Jiter,
    peek: Peek,
    segs: &[(&str, Option<usize>)],
    limit: Option<usize>,
    found: &mut Found,
) -> JiterResult<()> {
    let Some(((key, index), rest)) = segs.split_first() else {
        let start = j.current_index();
        *found = match (limit, peek) {
            (Some(limit), Peek::Array) => {
                let mut cut = None;
                let mut n = 0usize;
                let mut next = j.known_array()?;
                while let Some(peek) = next {
                    j.known_skip(peek)?;
                    n += 1;
                    if n == limit {
                        cut = Some(j.current_index());
                    }
                    next = j.array_step()?;
                }
                match cut.filter(|_| n > limit) {
                    Some(end) => Found::At(Selected {
                        range: start..end,
                        close: true,
                    }),
                    None => Found::At(Selected {
                        range: start..j.current_index(),
                        close: false,
                    }),
                }
            }
            (Some(_), _) => {
                j.known_skip(peek)?;
                Found::NotArray
            }
            (None, _) => {
                j.known_skip(peek)?;
                Found::At(Selected {
                    range: start..j.current_index(),
                    close: false,
                })
            }
        };
        return Ok(());
    };
    match peek {
        Peek::Object => {
            let mut is_it = j.known_object()?.map(|k| k == *key);
            while let Some(hit) = is_it {
                let peek = j.peek()?;
                if hit {
                    // A later duplicate replaces the earlier value whole, as serde_json.
                    *found = Found::Missing;
                    walk(j, peek, rest, limit, found)?;
                } else {
                    j.known_skip(peek)?;
                }
                is_it = j.next_key()?.map(|k| k == *key);
            }
        }
        Peek::Array => {
            let mut i = 0usize;
            let mut next = j.known_array()?;
            while let Some(peek) = next {
                if Some(i) == *index {
                    walk(j, peek, rest, limit, found)?;
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

/// A part's value for the answer: its body and where the value is in it, or `None`
/// for its default.
pub type PartValue<'a> = Option<(&'a [u8], &'a Selected)>;

/// The length of the answer [`assemble`] writes for these values.
pub fn answer_len(parts: &[ComposePart], values: &[PartValue<'_>]) -> usize {
    let items: usize = parts
        .iter()
        .zip(values)
        .map(|(p, v)| {
            p.key.len()
                + v.map_or(p.default.len(), |(_, s)| {
                    s.range.len() + usize::from(s.close)
                })
        })
        .sum();
    // The braces, and a comma between parts.
    items + 2 + parts.len().saturating_sub(1)
}

/// The answer object, appended to `out`: each part's key, then its value or its
/// default, in `parts` order.
pub fn assemble(out: &mut Vec<u8>, parts: &[ComposePart], values: &[PartValue<'_>]) {
    out.reserve(answer_len(parts, values));
    out.push(b'{');
    for (i, (p, v)) in parts.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&p.key);
        match v {
            Some((body, s)) => {
                out.extend_from_slice(&body[s.range.clone()]);
                if s.close {
                    out.push(b']');
                }
            }
            None => out.extend_from_slice(&p.default),
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(body: &str, pick: Option<&str>, limit: Option<usize>) -> Result<String, NoValue> {
        let pick = pick.map(|p| FieldPath::parse(p).unwrap());
        let s = select(body.as_bytes(), pick.as_ref(), limit)?;
        let mut v = body[s.range].to_owned();
        if s.close {
            v.push(']');
        }
        Ok(v)
    }

    #[test]
    fn whole_documents_are_taken_as_they_are() {
        assert_eq!(value(" {\"a\": 1} \n", None, None).unwrap(), "{\"a\": 1}");
        assert_eq!(value("\"x\"", None, None).unwrap(), "\"x\"");
        assert_eq!(value("null", None, None).unwrap(), "null");
    }

    #[test]
    fn pick_and_limit() {
        let doc = r#"{"items": [ {"id":1}, {"id":2} ,{"id":3}], "n": 3, "o": {"k": [1]}}"#;
        assert_eq!(
            value(doc, Some("items"), Some(2)).unwrap(),
            r#"[ {"id":1}, {"id":2}]"#
        );
        let two: serde_json::Value =
            serde_json::from_str(&value(doc, Some("items"), Some(2)).unwrap()).unwrap();
        assert_eq!(two.as_array().unwrap().len(), 2);
        assert_eq!(
            value(doc, Some("items"), Some(3)).unwrap(),
            r#"[ {"id":1}, {"id":2} ,{"id":3}]"#
        );
        assert_eq!(
            value(doc, Some("items"), Some(9)).unwrap(),
            r#"[ {"id":1}, {"id":2} ,{"id":3}]"#
        );
        assert_eq!(value(doc, Some("items.1"), None).unwrap(), r#"{"id":2}"#);
        assert_eq!(value(doc, Some("o.k"), None).unwrap(), "[1]");
        assert_eq!(value("[]", None, Some(5)).unwrap(), "[]");
        assert_eq!(value(doc, Some("n"), Some(5)), Err(NoValue::NotArray));
        assert_eq!(
            value(doc, Some("o.x"), None),
            Err(NoValue::Missing("o.x".into()))
        );
        // The last of duplicate keys, as serde_json.
        assert_eq!(value(r#"{"a":1,"a":2}"#, Some("a"), None).unwrap(), "2");
    }

    #[test]
    fn the_answer_is_as_long_as_said_and_parses() {
        let part = |name: &str, default: &str| ComposePart {
            name: name.into(),
            key: format!("{name:?}:").into_bytes().into(),
            upstream: 0,
            path: crate::http::template::Template::parse("/").unwrap(),
            required: false,
            pick: None,
            limit: None,
            default: default.as_bytes().into(),
        };
        let parts = [
            part("user", "null"),
            part("orders", "[]"),
            part("prefs", "{}"),
        ];
        let user = br#"{"id":"7"}"#;
        let orders = br#"[1,2,3]"#;
        let s_user = select(user, None, None).unwrap();
        let s_orders = select(orders, None, Some(2)).unwrap();
        let values = [
            Some((&user[..], &s_user)),
            Some((&orders[..], &s_orders)),
            None,
        ];
        let mut out = Vec::new();
        assemble(&mut out, &parts, &values);
        assert_eq!(out.len(), answer_len(&parts, &values));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"user":{"id":"7"},"orders":[1,2],"prefs":{}}"#
        );
    }

    #[test]
    fn bodies_that_are_not_json_give_no_value() {
        for body in ["", "not json", "{\"a\":1} x", "{\"a\":\"\\q\"}", "[1,]"] {
            assert!(
                matches!(value(body, None, None), Err(NoValue::NotJson(_))),
                "{body:?}"
            );
        }
        let latin1 = b"{\"a\":\"\xe9\"}";
        assert!(matches!(
            select(latin1, None, None),
            Err(NoValue::NotJson(_))
        ));
    }
}
