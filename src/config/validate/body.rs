//! The body-aware keys of a route (`json_match`, `validate`, `json_body`) checked and
//! typed (see `config::body`). A schema file is read and compiled here once, so a bad
//! one is an error at load naming the key and its line.

use std::sync::Arc;

use toml::Spanned;

use super::super::body::{
    compile, BodyRules, FileJsonBody, FileWrap, JsonBody, JsonMatch, SetValue, Validate, Wrap,
};
use super::super::file::FileRoute;
use super::{by_position, ConfigError, Cx};
use crate::http::json_field::FieldPath;
use crate::http::path_template::PathTemplate;

/// The route's body rules, `None` when it has none.
pub(super) fn rules(
    cx: &Cx,
    key: &str,
    r: &FileRoute,
    path: Option<&PathTemplate>,
) -> Result<Option<Arc<BodyRules>>, ConfigError> {
    if r.json_match.is_none() && r.validate.is_none() && r.json_body.is_none() {
        return Ok(None);
    }
    let bad = |k: String, span: std::ops::Range<usize>, value: String, reason: String| {
        ConfigError::BadBody {
            site: cx.site(k, span, value),
            reason,
        }
    };
    let json_match = match &r.json_match {
        Some(m) => {
            let path = FieldPath::parse(m.path.get_ref()).map_err(|reason| {
                bad(
                    format!("{key}.json_match.path"),
                    m.path.span(),
                    format!("{:?}", m.path.get_ref()),
                    reason.to_owned(),
                )
            })?;
            if m.values.get_ref().is_empty() {
                return Err(bad(
                    format!("{key}.json_match.values"),
                    m.values.span(),
                    "[]".into(),
                    "an empty list matches no request".into(),
                ));
            }
            Some(JsonMatch {
                path,
                values: m.values.get_ref().clone(),
            })
        }
        None => None,
    };
    let validate = match &r.validate {
        Some(v) => {
            let file = v.schema_file.get_ref();
            let k = format!("{key}.validate.schema_file");
            let fail =
                |reason: String| bad(k.clone(), v.schema_file.span(), format!("{file:?}"), reason);
            let text = std::fs::read_to_string(file)
                .map_err(|e| fail(format!("cannot read the schema file: {e}")))?;
            let schema: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| fail(format!("the schema file is not JSON: {e}")))?;
            compile(&schema).map_err(|e| fail(format!("not a valid JSON Schema: {e}")))?;
            Some(Validate {
                schema_file: file.clone(),
                schema: Arc::new(schema),
            })
        }
        None => None,
    };
    let json_body = match &r.json_body {
        Some(b) => Some(json_body(cx, &format!("{key}.json_body"), b, path)?),
        None => None,
    };
    Ok(Some(Arc::new(BodyRules {
        json_match,
        validate,
        json_body,
    })))
}

fn json_body(
    cx: &Cx,
    key: &str,
    b: &Spanned<FileJsonBody>,
    path: Option<&PathTemplate>,
) -> Result<JsonBody, ConfigError> {
    let raw = b.get_ref();
    let mut out = JsonBody::default();
    for (from, to) in by_position(&raw.rename) {
        out.rename
            .push((from.get_ref().clone(), to.get_ref().clone()));
    }
    out.remove = raw.remove.iter().map(|k| k.get_ref().clone()).collect();
    out.set = set_values(cx, &format!("{key}.set"), &raw.set, path)?;
    out.wrap = match &raw.wrap {
        None => None,
        Some(w) => Some(match w.get_ref() {
            FileWrap::Key(k) => Wrap {
                key: k.clone(),
                set: Vec::new(),
            },
            FileWrap::Full(f) => Wrap {
                key: f.key.clone(),
                set: {
                    let at = |v: &String| Spanned::new(w.span(), v.clone());
                    let spanned = f.set.iter().map(|(k, v)| (at(k), at(v))).collect();
                    set_values(cx, &format!("{key}.wrap.set"), &spanned, path)?
                },
            },
        }),
    };
    if let Some(w) = &out.wrap {
        if w.key.is_empty() {
            return Err(ConfigError::BadBody {
                site: cx.at(format!("{key}.wrap"), raw.wrap.as_ref().expect("wrap")),
                reason: "the wrapping key must not be empty".into(),
            });
        }
    }
    Ok(out)
}

fn set_values(
    cx: &Cx,
    key: &str,
    map: &std::collections::BTreeMap<Spanned<String>, Spanned<String>>,
    path: Option<&PathTemplate>,
) -> Result<Vec<(String, SetValue)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in by_position(map) {
        let k = format!("{key}.{}", name.get_ref());
        let t = cx.template(&k, value)?;
        // Every ${path:x} names a {x} segment of the route's path_template.
        cx.path_vars(&k, value, &t, path, None)?;
        out.push((name.get_ref().clone(), t));
    }
    Ok(out)
}
