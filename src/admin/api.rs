//! The admin endpoints, one function each, and [`dispatch`], the one table of which
//! method and path goes where. Each answer is JSON; each error is the gateway's
//! `{"error", "message", "request_id"}`.
//!
//! | call | what |
//! |---|---|
//! | `GET /health` | each upstream's servers, health and circuit; 503 when none can serve |
//! | `GET /ready` | 200, or 503 while draining at shutdown |
//! | `POST /api/v1/reload` | read the file again (as SIGHUP does) |
//! | `GET /api/v1/config` | the running configuration, secrets redacted |
//! | `POST /api/v1/cache/purge` | drop cached entries by `uri`, `prefix` or `tenant` |
//! | `GET /metrics` | Prometheus text format ([`super::metrics`]) |
//! | `GET /api/v1/metrics/routes/{id}?period=` | a route's rolling window, merged |
//! | `/api/v1/routes...` | the routes API ([`super::routes`]) |

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::http::{Request, Response};
use super::Admin;
use crate::runtime::ReloadError;
use crate::upstream::Breaker;

/// How long a question to the workers may take.
pub const ASK_WITHIN: Duration = Duration::from_secs(2);

/// Route a request to its endpoint.
pub fn dispatch(admin: &Admin, req: &Request) -> Response {
    let segs: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(1).collect();
    let get = matches!(req.method.as_str(), "GET" | "HEAD");
    let id = &req.request_id;
    match (segs.as_slice(), req.method.as_str()) {
        (["health"], _) if get => health(admin, req),
        (["metrics"], _) if get => super::metrics::prometheus(admin, req),
        (["api", "v1", "metrics", "routes", rid], _) if get => {
            super::metrics::route(admin, req, rid)
        }
        (["ready"], _) if get => ready(admin, req),
        (["api", "v1", "reload"], "POST") => reload(admin, req),
        (["api", "v1", "config"], _) if get => config(admin, req),
        (["api", "v1", "cache", "purge"], "POST") => purge(admin, req),
        (["api", "v1", "routes"], _) if get => super::routes::list(admin, req),
        (["api", "v1", "routes"], "POST") => super::routes::create(admin, req),
        (["api", "v1", "routes", rid], _) if get => super::routes::get(admin, req, rid),
        (["api", "v1", "routes", rid], "PATCH") => super::routes::patch(admin, req, rid),
        (["api", "v1", "routes", rid], "DELETE") => super::routes::delete(admin, req, rid),
        (["health"] | ["ready"] | ["metrics"] | ["api", "v1", "config"], _) => {
            not_allowed("GET, HEAD", id)
        }
        (["api", "v1", "metrics", "routes", _], _) => not_allowed("GET, HEAD", id),
        (["api", "v1", "reload"] | ["api", "v1", "cache", "purge"], _) => not_allowed("POST", id),
        (["api", "v1", "routes"], _) => not_allowed("GET, HEAD, POST", id),
        (["api", "v1", "routes", _], _) => not_allowed("GET, HEAD, PATCH, DELETE", id),
        _ => Response::error(404, &format!("no admin endpoint {}", req.path), id),
    }
}

fn not_allowed(allow: &str, id: &str) -> Response {
    let mut r = Response::error(405, "method not allowed here", id);
    r.headers = format!("Allow: {allow}\r\n");
    r
}

/// An error with its own code (not the status's).
pub fn error_code(
    status: u16,
    code: &str,
    message: &str,
    id: &str,
    more: Map<String, Value>,
) -> Response {
    let mut r = Response::error_with(status, message, id, more);
    let mut v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    v["error"] = json!(code);
    r.body = serde_json::to_vec_pretty(&v).unwrap_or_default();
    r.body.push(b'\n');
    r
}

/// The workers did not answer: 503.
pub fn unanswered(e: &crate::runtime::mailbox::AskError, id: &str) -> Response {
    Response::error(503, &e.to_string(), id)
}

/// One worker's view of one server.
struct ServerView {
    healthy: bool,
    checked: bool,
    circuit: &'static str,
}

fn health(admin: &Admin, req: &Request) -> Response {
    let views = admin.control.ask_all(ASK_WITHIN, |l| {
        let now = monoio::time::Instant::now();
        l.pipeline()
            .upstreams
            .iter()
            .map(|u| {
                let servers = u
                    .servers
                    .iter()
                    .map(|s| ServerView {
                        healthy: s.healthy.get(),
                        checked: u.cfg.health_check.is_some(),
                        circuit: match s.breaker.get() {
                            Breaker::Closed { .. } => "closed",
                            // Time is up: the next request is let through as a probe.
                            Breaker::Open { until } if now >= until => "half_open",
                            Breaker::Open { .. } => "open",
                            Breaker::HalfOpen { .. } => "half_open",
                        },
                    })
                    .collect::<Vec<_>>();
                let labels = u
                    .cfg
                    .servers
                    .iter()
                    .map(|s| s.label.clone())
                    .collect::<Vec<_>>();
                (u.cfg.name.clone(), labels, servers)
            })
            .collect::<Vec<_>>()
    });
    let views = match views {
        Ok(v) => v,
        Err(e) => return unanswered(&e, &req.request_id),
    };
    let workers = views.len();
    let mut upstreams = Map::new();
    let (mut any_upstream, mut any_available) = (false, false);
    let Some(first) = views.first() else {
        return Response::error(503, "no workers", &req.request_id);
    };
    for (ui, (name, labels, _)) in first.iter().enumerate() {
        any_upstream = true;
        let mut servers = Vec::new();
        let mut up = 0;
        for (si, label) in labels.iter().enumerate() {
            // The same pipeline generation on every worker has the same upstreams;
            // a worker mid-reload is skipped for this server.
            let seen: Vec<&ServerView> = views
                .iter()
                .filter_map(|w| w.get(ui).filter(|u| u.0 == *name)?.2.get(si))
                .collect();
            let healthy = seen.iter().filter(|v| v.healthy).count();
            let available = seen
                .iter()
                .filter(|v| v.healthy && v.circuit != "open")
                .count();
            let circuit = ["open", "half_open", "closed"]
                .into_iter()
                .find(|c| seen.iter().any(|v| v.circuit == *c))
                .unwrap_or("closed");
            let health = match (seen.first().is_some_and(|v| v.checked), healthy) {
                (false, _) => "unchecked",
                (true, 0) => "unhealthy",
                (true, n) if n == seen.len() => "healthy",
                (true, _) => "degraded",
            };
            if available > 0 {
                up += 1;
            }
            servers.push(json!({
                "server": label,
                "health": health,
                "circuit": circuit,
                "available": available > 0,
                "workers_available": available,
            }));
        }
        any_available |= up > 0;
        let status = match up {
            0 => "down",
            n if n == labels.len() => "up",
            _ => "degraded",
        };
        upstreams.insert(name.clone(), json!({"status": status, "servers": servers}));
    }
    let serving = any_available || !any_upstream;
    let draining = admin.control.shared.stop.load(Ordering::Relaxed);
    let mut body = json!({
        "status": if serving { "ok" } else { "unavailable" },
        "draining": draining,
        "workers": workers,
        "upstreams": upstreams,
    });
    // `[cluster]`: Redis down is not unhealthy (the node limits with its share), but
    // it is said here.
    if let Some(c) = &admin.control.shared.cluster {
        body["cluster"] = cluster_health(c);
    }
    Response::json(if serving { 200 } else { 503 }, &body)
}

/// The cluster sync thread's state: `redis` up or down, `limits` shared or local
/// (this node's share), the live nodes last counted, failed rounds.
fn cluster_health(c: &crate::cluster::Status) -> Value {
    let ok = c.redis_ok.load(Ordering::Relaxed);
    json!({
        "redis": if ok { "up" } else { "down" },
        "limits": if ok { "shared" } else { "local" },
        "live_nodes": c.live_nodes.load(Ordering::Relaxed),
        "failed_rounds": c.errors.load(Ordering::Relaxed),
    })
}

fn ready(admin: &Admin, _req: &Request) -> Response {
    if admin.control.shared.stop.load(Ordering::Relaxed) {
        return Response::json(503, &json!({"status": "draining"}));
    }
    Response::json(200, &json!({"status": "ready"}))
}

fn reload(admin: &Admin, req: &Request) -> Response {
    match admin.control.reload_file() {
        Ok(applied) => {
            let cfg = admin.control.current();
            Response::json(
                200,
                &json!({
                    "status": "reloaded",
                    "file": cfg.source.as_ref().map(|p| p.display().to_string()),
                    "routes": cfg.routes.len(),
                    "upstreams": cfg.upstreams.len(),
                    "restart_needed": applied.restart_needed,
                }),
            )
        }
        Err(e) => reload_error(&e, &req.request_id),
    }
}

/// A change that was not applied: why, as JSON (the configuration stays).
pub fn reload_error(e: &ReloadError, id: &str) -> Response {
    let mut more = Map::new();
    match e {
        ReloadError::Invalid(ce) => {
            if let Some(site) = ce.site() {
                more.insert("file".into(), json!(site.origin));
                more.insert("line".into(), json!(site.line));
                if !site.key.is_empty() {
                    more.insert("field".into(), json!(site.key));
                }
            }
            error_code(422, "invalid_config", &format!("{e:#}"), id, more)
        }
        ReloadError::State(_) => Response::error(500, &e.to_string(), id),
        ReloadError::NoSource | ReloadError::NoText => {
            error_code(409, "not_reloadable", &e.to_string(), id, more)
        }
        ReloadError::NotApplied(_) => Response::error(503, &e.to_string(), id),
    }
}

fn config(admin: &Admin, req: &Request) -> Response {
    let cfg = admin.control.current();
    let Some(text) = cfg.text.as_deref() else {
        return Response::error(
            404,
            "this configuration was built in code, not from TOML",
            &req.request_id,
        );
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            return Response::error(
                500,
                &format!("the running configuration does not parse: {e}"),
                &req.request_id,
            )
        }
    };
    let mut v = serde_json::to_value(&table).unwrap_or(Value::Null);
    redact(&mut v);
    Response::json(
        200,
        &json!({
            "file": cfg.source.as_ref().map(|p| p.display().to_string()),
            "api_changes": !admin.control.overlay().is_empty(),
            "config": v,
        }),
    )
}

/// Replace what may be secret: values of keys that hold key material or credentials
/// (the `*_env` and `*_file` keys only name where a secret is, and stay), and the
/// password of any URL.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                let k = k.to_ascii_lowercase();
                let names_only = k.ends_with("_env") || k.ends_with("_file");
                let secret = ["secret", "password", "token", "sha256", "key"]
                    .iter()
                    .any(|s| k == *s || k.ends_with(&format!("_{s}")));
                if secret && !names_only && val.is_string() {
                    *val = json!("<redacted>");
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::String(s) => {
            if let Some(clean) = redact_url(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// `scheme://user:password@host...` -> `scheme://user:<redacted>@host...`.
fn redact_url(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let at = rest.find('@')?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    if at > authority_end {
        return None;
    }
    let userinfo = &rest[..at];
    let user = userinfo.split_once(':').map(|(u, _)| u)?;
    Some(format!("{scheme}://{user}:<redacted>@{}", &rest[at + 1..]))
}

/// What a purge matches.
#[derive(Debug, Clone)]
enum Purge {
    /// Path and query exactly, and the host when the URI names one.
    Uri {
        host: Option<String>,
        target: String,
    },
    Prefix(String),
    Tenant(String),
}

fn purge(admin: &Admin, req: &Request) -> Response {
    let id = &req.request_id;
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return Response::error(400, &format!("the body is not JSON: {e}"), id),
    };
    let Some(o) = body.as_object() else {
        return Response::error(
            400,
            "the body must be a JSON object with one of uri, prefix or tenant",
            id,
        );
    };
    let given: Vec<(&String, &Value)> = o.iter().collect();
    let what = match given.as_slice() {
        [(k, Value::String(v))] if k.as_str() == "uri" && !v.is_empty() => {
            match v.split_once("://") {
                Some((_, rest)) => {
                    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    Purge::Uri {
                        host: Some(host.to_ascii_lowercase()),
                        target: if path.is_empty() { "/".into() } else { path.to_owned() },
                    }
                }
                None => Purge::Uri { host: None, target: v.clone() },
            }
        }
        [(k, Value::String(v))] if k.as_str() == "prefix" && !v.is_empty() => Purge::Prefix(v.clone()),
        [(k, Value::String(v))] if k.as_str() == "tenant" && !v.is_empty() => Purge::Tenant(v.clone()),
        _ => {
            return Response::error(
                400,
                "give exactly one of {\"uri\": \"/path?query\"}, {\"prefix\": \"/path\"} or {\"tenant\": \"name\"}, a non-empty string",
                id,
            )
        }
    };
    let shown = what.clone();
    let counts = admin.control.ask_all(ASK_WITHIN, move |l| {
        let what = what.clone();
        l.cache.borrow_mut().purge(&move |k| match &what {
            Purge::Uri { host, target } => {
                k.target == target.as_bytes()
                    && host.as_ref().is_none_or(|h| {
                        k.host == h.as_bytes()
                            || h.strip_suffix(":80")
                                .is_some_and(|h| k.host == h.as_bytes())
                    })
            }
            Purge::Prefix(p) => k.target.starts_with(p.as_bytes()),
            Purge::Tenant(t) => k.audience == crate::cache::Audience::Tenant(t.as_bytes()),
        })
    });
    match counts {
        Ok(c) => Response::json(
            200,
            &json!({
                "purged": c.iter().sum::<usize>(),
                "workers": c.len(),
                "match": match shown {
                    Purge::Uri { host, target } => json!({"uri": target, "host": host}),
                    Purge::Prefix(p) => json!({"prefix": p}),
                    Purge::Tenant(t) => json!({"tenant": t}),
                },
            }),
        ),
        Err(e) => unanswered(&e, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_names_kept() {
        let mut v = json!({
            "auth": {"jwt": {"keys": [{"secret_env": "JWT_SECRET", "kid": "k"}]},
                     "api_keys": {"keys": [{"id": "a", "sha256": "abcd"}]}},
            "cluster": {"redis_url": "redis://svc:hunter2@redis:6379/0"},
            "admin": {"token_env": "GATEWAY_ADMIN_TOKEN"},
            "server": {"tls": {"certificates": [{"key_file": "k.pem"}]}},
        });
        redact(&mut v);
        assert_eq!(v["auth"]["jwt"]["keys"][0]["secret_env"], "JWT_SECRET");
        assert_eq!(v["auth"]["api_keys"]["keys"][0]["sha256"], "<redacted>");
        assert_eq!(
            v["cluster"]["redis_url"],
            "redis://svc:<redacted>@redis:6379/0"
        );
        assert_eq!(v["admin"]["token_env"], "GATEWAY_ADMIN_TOKEN");
        assert_eq!(v["server"]["tls"]["certificates"][0]["key_file"], "k.pem");
        assert!(!v.to_string().contains("hunter2"));
    }
}
