//! A route's `cors` and `compress` tables: raw (`file/browser.rs`) into typed
//! (`config/edge.rs`), every mistake a [`ConfigError::EdgePolicy`] naming the key and
//! its line.

use toml::Spanned;

use super::{rules, ConfigError, Cx};
use crate::config::file::{FileRouteCompress, FileRouteCors};
use crate::config::{Coding, CorsOrigins, RouteCompress, RouteCors};

/// The response fields the gateway writes itself on a `cors` route: the upstream's
/// copies are dropped (added to the route's `response_headers.remove`), so one origin's
/// answer can never reach another, from the upstream or from the cache.
pub(super) const CORS_FIELDS: [&str; 6] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
];

fn bad<T: std::fmt::Debug>(cx: &Cx, key: String, v: &Spanned<T>, reason: &str) -> ConfigError {
    ConfigError::EdgePolicy {
        site: cx.at(key, v),
        reason: reason.to_owned(),
    }
}

pub(super) fn cors(
    cx: &Cx,
    key: &str,
    raw: &Option<Spanned<FileRouteCors>>,
    route_methods: Option<&Vec<String>>,
) -> Result<Option<RouteCors>, ConfigError> {
    let Some(table) = raw else {
        return Ok(None);
    };
    let c = table.get_ref();
    let key = format!("{key}.cors");
    if c.origins.is_empty() {
        return Err(ConfigError::EdgePolicy {
            site: cx.site(format!("{key}.origins"), table.span(), "[]".to_owned()),
            reason: "give at least one origin (\"https://app.example.com\") or \"*\"".into(),
        });
    }
    let mut list = Vec::new();
    let mut any = false;
    for (i, o) in c.origins.iter().enumerate() {
        let text = o.get_ref();
        if text == "*" {
            any = true;
        } else if let Some(origin) = serialized_origin(text) {
            list.push(origin);
        } else {
            return Err(bad(
                cx,
                format!("{key}.origins[{i}]"),
                o,
                "an origin is \"*\" or scheme://host[:port] (no path, no trailing slash)",
            ));
        }
    }
    let methods = match &c.methods {
        Some(m) => cx.methods(&format!("{key}.methods"), m)?,
        None => match route_methods {
            Some(m) => m.clone(),
            None => ["GET", "HEAD", "POST"].map(String::from).to_vec(),
        },
    };
    let mut headers = Vec::new();
    let mut any_header = false;
    for (i, h) in c.headers.iter().enumerate() {
        if h.get_ref() == "*" {
            any_header = true;
        } else {
            headers.push(cx.header_name(&format!("{key}.headers[{i}]"), h)?);
        }
    }
    let mut expose = Vec::new();
    for (i, h) in c.expose.iter().enumerate() {
        cx.header_name(&format!("{key}.expose[{i}]"), h)?;
        expose.push(h.get_ref().as_str());
    }
    let max_age_s = match &c.max_age_s {
        Some(s) => {
            // Browsers cap it (Chromium 2 h, Firefox 24 h); a day is the most that
            // means anything.
            cx.at_most(&format!("{key}.max_age_s"), s, 86_400, "s (a day)")?;
            Some(*s.get_ref())
        }
        None => None,
    };
    Ok(Some(RouteCors {
        origins: if any {
            CorsOrigins::Any
        } else {
            CorsOrigins::List(list)
        },
        allow_methods: methods.join(", "),
        methods,
        headers,
        any_header,
        expose: expose.join(", "),
        max_age_s,
        credentials: c.credentials,
    }))
}

/// `scheme://host[:port]` as a browser serializes it (lower-case), or `None`.
fn serialized_origin(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme_ok = !scheme.is_empty()
        && scheme.as_bytes()[0].is_ascii_alphabetic()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
                return None;
            }
            (h, Some(p))
        }
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    (scheme_ok && host_ok).then(|| {
        let mut o = format!("{scheme}://{host}").to_ascii_lowercase();
        if let Some(p) = port {
            o.push(':');
            o.push_str(p);
        }
        o
    })
}

pub(super) fn compress(
    cx: &Cx,
    key: &str,
    raw: &Option<Spanned<FileRouteCompress>>,
) -> Result<Option<RouteCompress>, ConfigError> {
    let Some(table) = raw else {
        return Ok(None);
    };
    let c = table.get_ref();
    let key = format!("{key}.compress");
    let types = match &c.types {
        Some(types) => {
            let mut out = Vec::new();
            for (i, t) in types.iter().enumerate() {
                let text = t.get_ref().to_ascii_lowercase();
                let ok = text
                    .split_once('/')
                    .is_some_and(|(a, b)| rules::is_token(a) && rules::is_token(b));
                if !ok {
                    return Err(bad(
                        cx,
                        format!("{key}.types[{i}]"),
                        t,
                        "a media type is type/subtype or type/* (\"application/json\", \"text/*\")",
                    ));
                }
                out.push(text);
            }
            out
        }
        None => vec!["application/json".into(), "text/*".into()],
    };
    let min_bytes = c.min_bytes.as_ref().map_or(1024, |m| *m.get_ref());
    let algorithms = match &c.algorithms {
        Some(list) => {
            let mut out = Vec::new();
            for (i, a) in list.iter().enumerate() {
                let Some(coding) = Coding::from_token(a.get_ref()) else {
                    return Err(bad(
                        cx,
                        format!("{key}.algorithms[{i}]"),
                        a,
                        "expected one of br, zstd, gzip",
                    ));
                };
                if !out.contains(&coding) {
                    out.push(coding);
                }
            }
            if out.is_empty() {
                return Err(ConfigError::EdgePolicy {
                    site: cx.site(format!("{key}.algorithms"), table.span(), "[]".into()),
                    reason: "give at least one of br, zstd, gzip".into(),
                });
            }
            out
        }
        None => vec![Coding::Br, Coding::Zstd, Coding::Gzip],
    };
    Ok(Some(RouteCompress {
        types,
        min_bytes,
        algorithms,
    }))
}

#[cfg(test)]
mod tests {
    use super::serialized_origin;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            serialized_origin("https://App.Example.com").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            serialized_origin("http://localhost:8080").as_deref(),
            Some("http://localhost:8080")
        );
        assert_eq!(
            serialized_origin("http://[::1]:3000").as_deref(),
            Some("http://[::1]:3000")
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://a/b",
            "https://",
            "https://a:99999",
            "https://a:",
            "null",
        ] {
            assert_eq!(serialized_origin(bad), None, "{bad}");
        }
    }
}
