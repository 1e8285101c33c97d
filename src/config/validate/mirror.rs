//! A route's `mirror = ["analytics", ...]`: the upstreams that get a copy of each
//! request the route forwards (`crate::pipeline::mirror`). Each must be a declared
//! upstream, named once. The route's own upstream may be one of them, as nginx lets a
//! `mirror` location point anywhere. A `respond` route forwards nothing, and
//! `compose` and `fanout` routes send requests of their own, so the key is refused
//! there rather than silently ignored.

use super::super::file::FileRoute;
use super::super::UpstreamConfig;
use super::{rules, ConfigError, Cx};

/// The indices into `upstreams` of the route's mirrors (empty without the key).
pub(super) fn upstreams(
    cx: &Cx,
    key: &str,
    r: &FileRoute,
    upstreams: &[UpstreamConfig],
) -> Result<Vec<usize>, ConfigError> {
    let Some(list) = &r.mirror else {
        return Ok(Vec::new());
    };
    let elsewhere = if r.respond.is_some() {
        Some("a `respond` route answers at the edge and forwards nothing to mirror")
    } else if r.compose.is_some() {
        Some("a `compose` route sends its own GETs to its parts, nothing to mirror")
    } else if r.fanout.is_some() {
        Some("a `fanout` route already sends the request to several upstreams: list the mirror there")
    } else {
        None
    };
    if let (Some(reason), false) = (elsewhere, list.get_ref().is_empty()) {
        return Err(ConfigError::BadRouteValue {
            site: cx.at(format!("{key}.mirror"), list),
            reason: reason.to_owned(),
        });
    }
    let mut out = Vec::with_capacity(list.get_ref().len());
    for (i, name) in list.get_ref().iter().enumerate() {
        let k = format!("{key}.mirror[{i}]");
        let Some(at) = upstreams.iter().position(|u| u.name == *name.get_ref()) else {
            return Err(ConfigError::UnknownUpstream {
                site: cx.at(k, name),
                known: rules::list(upstreams.iter().map(|u| u.name.as_str())),
            });
        };
        if out.contains(&at) {
            return Err(ConfigError::BadRouteValue {
                site: cx.at(k, name),
                reason: "named twice: each mirror gets one copy of a request".to_owned(),
            });
        }
        out.push(at);
    }
    Ok(out)
}
