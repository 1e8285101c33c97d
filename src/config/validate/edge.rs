//! Checks of the route keys that match, answer or reshape at the edge
//! (`path_template`, `content_type`, `rewrite`, `respond`) and of an upstream's
//! `request_headers` (templates), kept out of `validate.rs` so that file only calls
//! them.

use std::sync::Arc;

use toml::Spanned;

use super::super::file::{FileRespond, FileRoute, FileUpstream};
use super::super::{PathMatch, Respond, RouteConfig, RouteTarget, UpstreamConfig};
use super::{rules, ConfigError, Cx};
use crate::http::media_type::MediaRange;
use crate::http::path_template::PathTemplate;
use crate::http::rewrite::Rewrite;
use crate::http::template::Template;

/// The route's path: exactly one of path_prefix, path_exact, path_template. Returns
/// the match, the key's name and its value (for strip_prefix's check).
pub(super) fn path<'r>(
    cx: &Cx,
    key: &str,
    r: &'r FileRoute,
) -> Result<(PathMatch, &'static str, &'r Spanned<String>), ConfigError> {
    let given = [
        ("path_prefix", r.path_prefix.as_ref()),
        ("path_exact", r.path_exact.as_ref()),
        ("path_template", r.path_template.as_ref()),
    ];
    let mut set = given.iter().filter_map(|(k, v)| Some((*k, (*v)?)));
    let Some((name, value)) = set.next() else {
        return Err(ConfigError::NoPath {
            site: cx.at(format!("{key}.id"), &r.id),
        });
    };
    if let Some((second, v)) = set.next() {
        return Err(ConfigError::PathConflict {
            site: cx.at(format!("{key}.{second}"), v),
        });
    }
    let site = || cx.at(format!("{key}.{name}"), value);
    let text = value.get_ref();
    let m = match name {
        "path_prefix" => PathMatch::Prefix(text.clone()),
        "path_exact" => PathMatch::Exact(text.clone()),
        _ => PathMatch::Template(PathTemplate::parse(text).map_err(|e| {
            ConfigError::BadRouteValue {
                site: site(),
                reason: e.to_string(),
            }
        })?),
    };
    rules::check_path(text).map_err(|reason| ConfigError::BadPath {
        site: site(),
        reason,
    })?;
    Ok((m, name, value))
}

/// `content_type = ["video/*", ...]`: each a media range; an empty list would match
/// nothing and is refused.
pub(super) fn content_types(
    cx: &Cx,
    key: &str,
    r: &FileRoute,
) -> Result<Vec<MediaRange>, ConfigError> {
    let Some(list) = &r.content_type else {
        return Ok(Vec::new());
    };
    let key = format!("{key}.content_type");
    if list.get_ref().is_empty() {
        return Err(ConfigError::BadRouteValue {
            site: cx.site(key, list.span(), "[]".to_owned()),
            reason: "an empty list matches no request; remove the key to allow any".to_owned(),
        });
    }
    list.get_ref()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            MediaRange::parse(v.get_ref()).map_err(|reason| ConfigError::BadRouteValue {
                site: cx.at(format!("{key}[{i}]"), v),
                reason: reason.to_owned(),
            })
        })
        .collect()
}

/// `rewrite`: compiled here, once. A route has rewrite or strip_prefix, not both (a
/// rewrite can strip a prefix itself, and two rules would leave their order to guess).
pub(super) fn rewrite(cx: &Cx, key: &str, r: &FileRoute) -> Result<Option<Rewrite>, ConfigError> {
    let Some(rw) = &r.rewrite else {
        return Ok(None);
    };
    if !r.strip_prefix.get_ref().is_empty() {
        return Err(ConfigError::BadRewrite {
            site: cx.at(format!("{key}.strip_prefix"), &r.strip_prefix),
            reason: "a route has rewrite or strip_prefix, not both (a rewrite can strip a prefix: pattern = \"^/prefix(/.*)$\", replace = \"$1\")".to_owned(),
        });
    }
    let raw = rw.get_ref();
    if !raw.replace.get_ref().starts_with('/') && !raw.replace.get_ref().starts_with('$') {
        return Err(ConfigError::BadRewrite {
            site: cx.at(format!("{key}.rewrite.replace"), &raw.replace),
            reason: "the result is a path: start the replacement with '/'".to_owned(),
        });
    }
    Rewrite::new(raw.pattern.get_ref(), raw.replace.get_ref())
        .map(Some)
        .map_err(|(which, reason)| {
            let v = if which == "pattern" {
                &raw.pattern
            } else {
                &raw.replace
            };
            ConfigError::BadRewrite {
                site: cx.at(format!("{key}.rewrite.{which}"), v),
                reason,
            }
        })
}

/// `respond`: a final status (200-599), a content type fit for a header, and no body
/// where the status allows none.
pub(super) fn respond(
    cx: &Cx,
    key: &str,
    raw: &Spanned<FileRespond>,
) -> Result<RouteTarget, ConfigError> {
    let r = raw.get_ref();
    let status = *r.status.get_ref();
    if !(200..=599).contains(&status) {
        return Err(ConfigError::BadRouteValue {
            site: cx.at(format!("{key}.respond.status"), &r.status),
            reason: "a final status: 200 to 599".to_owned(),
        });
    }
    if matches!(status, 204 | 304) && !r.body.is_empty() {
        return Err(ConfigError::BadRouteValue {
            site: cx.at(format!("{key}.respond.status"), &r.status),
            reason: "a 204 or 304 has no body: remove `body`".to_owned(),
        });
    }
    let content_type = cx.header_value(&format!("{key}.respond.content_type"), &r.content_type)?;
    Ok(RouteTarget::Respond(Respond {
        status,
        body: Arc::from(r.body.as_bytes()),
        content_type,
    }))
}

/// An upstream's `request_headers`: names checked, values parsed as templates (their
/// `${env:...}` read now).
pub(super) fn upstream_headers(
    cx: &Cx,
    key: &str,
    u: &FileUpstream,
) -> Result<Vec<(String, Template)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in super::by_position(&u.request_headers) {
        let hkey = format!("{key}.request_headers.{:?}", name.get_ref());
        let lname = cx.header_name(&hkey, name)?;
        // Fields the gateway writes itself, or that frame the message: a second one
        // would make the request ambiguous (smuggling), so they cannot be added.
        if MANAGED.contains(&lname.as_str()) {
            return Err(ConfigError::BadRouteValue {
                site: cx.at(&hkey, value),
                reason: format!("{} is written by the gateway (framing, hop-by-hop or forwarding) and cannot be added", name.get_ref()),
            });
        }
        // The text as written must already be a header value; what variables bring
        // is cleaned when rendered (see `Template::render`).
        cx.header_value(&hkey, value)?;
        out.push((name.get_ref().clone(), cx.template(&hkey, value)?));
    }
    Ok(out)
}

/// Header fields an upstream's `request_headers` may not set (lower case).
const MANAGED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "x-forwarded-for",
    "x-request-id",
];

/// Every `${path:x}` in a route's templates (its upstreams' request_headers) must
/// name a `{x}` segment of its path_template.
pub(super) fn path_vars(
    cx: &Cx,
    routes: &[RouteConfig],
    upstreams: &[UpstreamConfig],
    raw: &[FileUpstream],
) -> Result<(), ConfigError> {
    for r in routes {
        let template = match &r.path {
            PathMatch::Template(t) => Some(t),
            _ => None,
        };
        let targets: Vec<usize> = match &r.target {
            RouteTarget::Single(i) => vec![*i],
            RouteTarget::Split(parts) => parts.iter().map(|p| p.0).collect(),
            RouteTarget::Fanout(f) => f.upstreams.clone(),
            RouteTarget::Respond(_) => Vec::new(),
            // A part's upstream renders its request_headers with this route's values.
            RouteTarget::Compose(c) => c.parts.iter().map(|p| p.upstream).collect(),
        };
        for ui in targets {
            let u = &upstreams[ui];
            for ((name, value), (_, t)) in super::by_position(&raw[ui].request_headers)
                .into_iter()
                .zip(&u.request_headers)
            {
                let hkey = format!(
                    "upstreams.{:?}.request_headers.{:?}",
                    u.name,
                    name.get_ref()
                );
                cx.path_vars(&hkey, value, t, template, Some(&r.id))?;
            }
        }
    }
    Ok(())
}
