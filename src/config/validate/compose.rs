//! A route's `compose = [ .. ]` checked and typed (see `config::compose`): each part
//! names an existing upstream, a unique key, a path template whose `${path:x}` are
//! segments of the route's `path_template` and whose text is a valid request target,
//! a `pick` path, a positive `limit`, and a `default` that JSON can hold. A composed
//! route answers GET and HEAD only, and keys that reshape what one upstream receives
//! (`rewrite`, `strip_prefix`, the body rules) have no meaning on it: they are
//! refused rather than ignored.

use std::collections::HashMap;
use std::sync::Arc;

use toml::Spanned;

use super::super::compose::{Compose, ComposePart, MAX_PARTS};
use super::super::file::{FileComposePart, FileRoute};
use super::super::{PathMatch, RouteTarget, UpstreamConfig};
use super::{rules, ConfigError, Cx};
use crate::http::json_field::FieldPath;

/// The route's target when it has `compose` (it then has none of upstream, split,
/// respond).
pub(super) fn target(
    cx: &Cx,
    key: &str,
    r: &FileRoute,
    parts: &Spanned<Vec<FileComposePart>>,
    upstreams: &[UpstreamConfig],
    path: &PathMatch,
) -> Result<RouteTarget, ConfigError> {
    let route_key = key;
    let key = format!("{key}.compose");
    let bad = |k: String, span: std::ops::Range<usize>, value: String, reason: String| {
        ConfigError::BadCompose {
            site: cx.site(k, span, value),
            reason,
        }
    };
    if r.upstream.is_some() || r.split.is_some() || r.respond.is_some() || r.fanout.is_some() {
        return Err(ConfigError::TargetConflict {
            site: cx.site(key, parts.span(), String::new()),
        });
    }
    let list = parts.get_ref();
    if list.is_empty() {
        return Err(bad(
            key,
            parts.span(),
            "[]".into(),
            "a composed answer needs at least one part".into(),
        ));
    }
    if list.len() > MAX_PARTS {
        return Err(bad(
            key,
            parts.span(),
            String::new(),
            format!("at most {MAX_PARTS} parts ({} given)", list.len()),
        ));
    }
    // Keys that would change what one upstream receives mean nothing here.
    let unused: [(&str, Option<std::ops::Range<usize>>); 5] = [
        ("rewrite", r.rewrite.as_ref().map(|v| v.span())),
        (
            "strip_prefix",
            Some(r.strip_prefix.span()).filter(|_| !r.strip_prefix.get_ref().is_empty()),
        ),
        ("json_match", r.json_match.as_ref().map(|v| v.path.span())),
        (
            "validate",
            r.validate.as_ref().map(|v| v.schema_file.span()),
        ),
        ("json_body", r.json_body.as_ref().map(|v| v.span())),
    ];
    for (name, span) in unused {
        if let Some(span) = span {
            return Err(bad(
                format!("{route_key}.{name}"),
                span,
                String::new(),
                format!("`{name}` has no effect on a compose route (its parts are the gateway's own GET requests): remove it"),
            ));
        }
    }
    let template = match path {
        PathMatch::Template(t) => Some(t),
        _ => None,
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let pkey = format!("{key}[{i}]");
        let name = p.name.get_ref();
        if name.is_empty() {
            return Err(ConfigError::EmptyName {
                site: cx.at(format!("{pkey}.name"), &p.name),
            });
        }
        if let Some(first) = seen.get(name.as_str()) {
            return Err(bad(
                format!("{pkey}.name"),
                p.name.span(),
                format!("{name:?}"),
                format!("part name already used at line {first}: each part is a key of the answer"),
            ));
        }
        seen.insert(name, cx.line_of(&p.name));
        let upstream = upstreams
            .iter()
            .position(|u| u.name == *p.upstream.get_ref())
            .ok_or_else(|| ConfigError::UnknownUpstream {
                site: cx.at(format!("{pkey}.upstream"), &p.upstream),
                known: rules::list(upstreams.iter().map(|u| u.name.as_str())),
            })?;
        let tkey = format!("{pkey}.path");
        let t = cx.template(&tkey, &p.path)?;
        cx.path_vars(&tkey, &p.path, &t, template, None)?;
        if !p.path.get_ref().starts_with('/') {
            return Err(bad(
                tkey,
                p.path.span(),
                format!("{:?}", p.path.get_ref()),
                "the path sent starts with '/' (\"/users/${path:user_id}\")".into(),
            ));
        }
        if let Some(reason) = t.literals().find_map(target_text_problem) {
            return Err(bad(
                tkey,
                p.path.span(),
                format!("{:?}", p.path.get_ref()),
                reason.into(),
            ));
        }
        let pick = match &p.pick {
            Some(v) => Some(FieldPath::parse(v.get_ref()).map_err(|reason| {
                bad(
                    format!("{pkey}.pick"),
                    v.span(),
                    format!("{:?}", v.get_ref()),
                    reason.into(),
                )
            })?),
            None => None,
        };
        let limit = match &p.limit {
            Some(v) if *v.get_ref() < 1 => {
                return Err(ConfigError::NotPositive {
                    site: cx.at(format!("{pkey}.limit"), v),
                })
            }
            Some(v) => Some(*v.get_ref() as usize),
            None => None,
        };
        if p.required {
            if let Some(d) = &p.default {
                return Err(bad(
                    format!("{pkey}.default"),
                    d.span(),
                    String::new(),
                    "a required part never takes its default (its failure is the answer's, 502): remove one of them".into(),
                ));
            }
        }
        let default = match &p.default {
            Some(d) => {
                let json = to_json(d.get_ref()).map_err(|reason| {
                    bad(format!("{pkey}.default"), d.span(), String::new(), reason)
                })?;
                serde_json::to_vec(&json).map_err(|e| {
                    bad(
                        format!("{pkey}.default"),
                        d.span(),
                        String::new(),
                        e.to_string(),
                    )
                })?
            }
            None => b"null".to_vec(),
        };
        let mut key_json = serde_json::to_vec(name).unwrap_or_default();
        key_json.push(b':');
        out.push(ComposePart {
            name: name.clone(),
            key: key_json.into(),
            upstream,
            path: t,
            required: p.required,
            pick,
            limit,
            default: default.into(),
        });
    }
    Ok(RouteTarget::Compose(Arc::new(Compose { parts: out })))
}

/// A compose route answers GET and HEAD: `methods`, if given, holds no other.
pub(super) fn methods(
    cx: &Cx,
    key: &str,
    r: &FileRoute,
    methods: Option<&Vec<String>>,
) -> Result<(), ConfigError> {
    let (Some(list), Some(raw)) = (methods, &r.methods) else {
        return Ok(());
    };
    match list.iter().position(|m| m != "GET" && m != "HEAD") {
        None => Ok(()),
        Some(i) => Err(ConfigError::BadCompose {
            site: cx.at(format!("{key}.methods[{i}]"), &raw.get_ref()[i]),
            reason: "a compose route answers GET and HEAD only".into(),
        }),
    }
}

/// Why the text of a part's path (between its variables) cannot be sent as a request
/// target (RFC 9112 3.2 origin-form: RFC 3986 path and query characters), if it can't.
fn target_text_problem(text: &[u8]) -> Option<&'static str> {
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        match b {
            b'%' => {
                let hex = |c: Option<&u8>| c.is_some_and(u8::is_ascii_hexdigit);
                if !(hex(text.get(i + 1)) && hex(text.get(i + 2))) {
                    return Some("'%' starts a percent-encoded byte (%XX): write %25 for '%'");
                }
                i += 3;
                continue;
            }
            b'#' => return Some("a request target has no fragment ('#')"),
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+'
            | b',' | b';' | b'=' | b':' | b'@' | b'/' | b'?' => {}
            _ => {
                return Some(
                    "not a valid request target: spaces, quotes, braces and non-ASCII bytes must be percent-encoded",
                )
            }
        }
        i += 1;
    }
    None
}

/// A TOML value as JSON: tables are objects, arrays arrays, datetimes their RFC 3339
/// text; a float JSON cannot hold (nan, inf) is refused.
fn to_json(v: &toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(n) => J::from(*n),
        toml::Value::Float(f) => J::Number(
            serde_json::Number::from_f64(*f).ok_or_else(|| format!("{f} is not a JSON number"))?,
        ),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_text() {
        assert_eq!(target_text_problem(b"/users/"), None);
        assert_eq!(target_text_problem(b"/a/orders?limit=5&x=%2F"), None);
        assert!(target_text_problem(b"/a b").is_some());
        assert!(target_text_problem(b"/a#frag").is_some());
        assert!(target_text_problem(b"/100%").is_some());
        assert!(target_text_problem(b"/{x}").is_some());
        assert!(target_text_problem("/é".as_bytes()).is_some());
    }

    #[test]
    fn toml_values_become_json() {
        let t: toml::Table = toml::from_str("a = { x = [1, 2.5, true, \"s\"] }").unwrap();
        let v = to_json(&toml::Value::Table(t)).unwrap();
        assert_eq!(v.to_string(), r#"{"a":{"x":[1,2.5,true,"s"]}}"#);
        assert!(to_json(&toml::Value::Float(f64::NAN)).is_err());
    }
}
