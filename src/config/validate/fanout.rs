//! Checks of a route's `fanout` (see `crate::pipeline::fanout`): at least two
//! upstreams, each known and named once; `require` is "all", "any" or a number from 1
//! to their count; `timeout_ms` positive (default [`DEFAULT_TIMEOUT`]). A fan-out
//! route streams its body, so it cannot also read it whole (`json_match`,
//! `validate`, `json_body`).

use std::time::Duration;

use toml::Spanned;

use super::super::file::{FileFanout, FileRequire, FileRoute};
use super::super::{Fanout, RouteTarget, UpstreamConfig};
use super::{rules, ConfigError, Cx};

/// `timeout_ms` when absent.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn fanout(
    cx: &Cx,
    key: &str,
    r: &FileRoute,
    raw: &Spanned<FileFanout>,
    upstreams: &[UpstreamConfig],
) -> Result<RouteTarget, ConfigError> {
    let key = format!("{key}.fanout");
    let f = raw.get_ref();
    if r.json_match.is_some() || r.validate.is_some() || r.json_body.is_some() {
        return Err(ConfigError::BadRouteValue {
            site: cx.site(&key, raw.span(), String::new()),
            reason: "a fan-out streams the body; it cannot also read it whole \
                     (json_match, validate, json_body)"
                .to_owned(),
        });
    }
    let names = f.upstreams.get_ref();
    if names.len() < 2 {
        return Err(ConfigError::BadRouteValue {
            site: cx.at(format!("{key}.upstreams"), &f.upstreams),
            reason: "a fan-out needs at least two upstreams (one is `upstream = ...`)".to_owned(),
        });
    }
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let ukey = format!("{key}.upstreams[{i}]");
        let idx = upstreams
            .iter()
            .position(|u| u.name == *name.get_ref())
            .ok_or_else(|| ConfigError::UnknownUpstream {
                site: cx.at(&ukey, name),
                known: rules::list(upstreams.iter().map(|u| u.name.as_str())),
            })?;
        if out.contains(&idx) {
            return Err(ConfigError::BadRouteValue {
                site: cx.at(&ukey, name),
                reason: "each upstream once: the same body twice to one destination is \
                         not a fan-out"
                    .to_owned(),
            });
        }
        out.push(idx);
    }
    let n = out.len();
    let require = match &f.require {
        None => n,
        Some(req) => {
            let bad = || ConfigError::BadRouteValue {
                site: cx.site(
                    format!("{key}.require"),
                    req.span(),
                    match req.get_ref() {
                        FileRequire::Word(w) => format!("{w:?}"),
                        FileRequire::Count(c) => c.to_string(),
                    },
                ),
                reason: format!("\"all\", \"any\" or a number from 1 to {n}"),
            };
            match req.get_ref() {
                FileRequire::Word(w) if w == "all" => n,
                FileRequire::Word(w) if w == "any" => 1,
                FileRequire::Word(_) => return Err(bad()),
                FileRequire::Count(c) if (1..=n as i64).contains(c) => *c as usize,
                FileRequire::Count(_) => return Err(bad()),
            }
        }
    };
    let timeout = match &f.timeout_ms {
        Some(t) => cx.millis(&format!("{key}.timeout_ms"), t)?,
        None => DEFAULT_TIMEOUT,
    };
    Ok(RouteTarget::Fanout(Fanout {
        upstreams: out,
        require,
        timeout,
    }))
}
