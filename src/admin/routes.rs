//! The routes API: `GET /api/v1/routes[/{id}]`, `POST /api/v1/routes`,
//! `PATCH /api/v1/routes/{id}` (a JSON merge patch, RFC 7396), `DELETE
//! /api/v1/routes/{id}`.
//!
//! A route is JSON with the keys of a `[[routes]]` table, and also the field names of
//! the management API our users come from, translated here ([`canonical`]):
//!
//! | API field | `[[routes]]` key |
//! |---|---|
//! | `path` | `path_prefix` |
//! | `upstream_id` | `upstream` |
//! | `strip_path: true` | `strip_prefix` = the route's path |
//! | `auth_required: true` / `false` | `auth = "required"` / `"none"` |
//! | `rate_limit {enabled, requests_per_minute, burst, key_by}` | the same table |
//! | `cache {enabled, ttl, cache_methods}` | `cache {ttl_s, methods}`; `enabled: false` = no cache |
//!
//! Every change goes through [`Control::change_routes`](crate::runtime::Control):
//! the file's text with the API's routes on top is validated exactly as the file is
//! (same rules, same messages naming the field), applied to every worker whole (a
//! request sees the old table or the new one), and written to `admin.state_file`
//! when there is one; the answer says whether it was (`persisted`).

use serde_json::{json, Map, Value};

use super::api::{error_code, reload_error};
use super::http::{Request, Response};
use super::state::{now_rfc3339, Overlay};
use super::Admin;
use crate::config::Config;

/// The running routes as JSON objects (TOML keys), in match order.
fn running(cfg: &Config) -> Vec<Map<String, Value>> {
    let Some(text) = cfg.text.as_deref() else {
        return Vec::new();
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    match serde_json::to_value(doc.get("routes")) {
        Ok(Value::Array(a)) => a
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(o) => Some(o),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn id_of(r: &Map<String, Value>) -> &str {
    r.get("id").and_then(Value::as_str).unwrap_or("")
}

/// A route as the API shows it: its keys, plus `path`, where it comes from, and the
/// API's times.
fn shown(r: &Map<String, Value>, overlay: &Overlay) -> Value {
    let mut o = r.clone();
    let path = r
        .get("path_prefix")
        .or_else(|| r.get("path_exact"))
        .cloned()
        .unwrap_or(Value::Null);
    o.insert("path".into(), path);
    o.insert("status".into(), json!("active"));
    match overlay.route(id_of(r)) {
        Some(api) => {
            o.insert("source".into(), json!("api"));
            o.insert("created_at".into(), json!(api.created_at));
            o.insert("updated_at".into(), json!(api.updated_at));
        }
        None => {
            o.insert("source".into(), json!("file"));
        }
    }
    Value::Object(o)
}

fn decode(id: &str) -> String {
    percent_encoding::percent_decode_str(id)
        .decode_utf8_lossy()
        .into_owned()
}

pub fn list(admin: &Admin, _req: &Request) -> Response {
    let cfg = admin.control.current();
    let overlay = admin.control.overlay();
    let routes: Vec<Value> = running(&cfg).iter().map(|r| shown(r, &overlay)).collect();
    Response::json(
        200,
        &json!({
            "routes": routes,
            "persisted": cfg.admin.state_file.is_some(),
        }),
    )
}

pub fn get(admin: &Admin, req: &Request, id: &str) -> Response {
    let id = decode(id);
    let cfg = admin.control.current();
    match running(&cfg).iter().find(|r| id_of(r) == id) {
        Some(r) => Response::json(200, &shown(r, &admin.control.overlay())),
        None => no_route(&id, &req.request_id),
    }
}

fn no_route(id: &str, rid: &str) -> Response {
    Response::error(404, &format!("no route with id {id:?}"), rid)
}

/// A request's mistake, before validation: (field, message).
type Refusal = (String, String);

fn refused(r: Refusal, rid: &str) -> Response {
    let mut more = Map::new();
    more.insert("field".into(), json!(r.0));
    error_code(400, "invalid_route", &r.1, rid, more)
}

/// The body as a JSON object.
fn object(req: &Request) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(("".into(), "the body must be a JSON object (a route)".into())),
        Err(e) => Err(("".into(), format!("the body is not JSON: {e}"))),
    }
}

/// Translate the management API's field names into `[[routes]]` keys (see the module
/// doc). `path` is the route's path as it will be, for `strip_path`. A `null` is kept
/// (a merge patch's "remove this key").
pub fn canonical(
    mut o: Map<String, Value>,
    existing: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>, Refusal> {
    for read_only in ["status", "created_at", "updated_at", "source"] {
        o.remove(read_only);
    }
    let bad = |field: &str, msg: &str| Err((field.to_owned(), msg.to_owned()));
    if let Some(p) = o.remove("path") {
        let same = existing
            .is_some_and(|e| e.get("path_prefix") == Some(&p) || e.get("path_exact") == Some(&p));
        if o.contains_key("path_prefix") || o.contains_key("path_exact") {
            if !same && !p.is_null() {
                return bad("path", "give path or path_prefix/path_exact, not both");
            }
        } else if !same {
            if !p.is_string() {
                return bad("path", "path must be a string such as \"/api/users\"");
            }
            o.insert("path_prefix".into(), p);
            if existing.is_some_and(|e| e.contains_key("path_exact")) {
                o.insert("path_exact".into(), Value::Null);
            }
        }
    }
    if let Some(u) = o.remove("upstream_id") {
        if o.contains_key("upstream") {
            return bad("upstream_id", "give upstream_id or upstream, not both");
        }
        o.insert("upstream".into(), u);
    }
    if let Some(a) = o.remove("auth_required") {
        if o.contains_key("auth") {
            return bad("auth_required", "give auth_required or auth, not both");
        }
        match a {
            Value::Bool(true) => o.insert("auth".into(), json!("required")),
            Value::Bool(false) => o.insert("auth".into(), json!("none")),
            _ => return bad("auth_required", "auth_required must be true or false"),
        };
    }
    if let Some(s) = o.remove("strip_path") {
        let path = o
            .get("path_prefix")
            .or_else(|| existing.and_then(|e| e.get("path_prefix")))
            .cloned();
        match (s, path) {
            (Value::Bool(true), Some(p @ Value::String(_))) => {
                o.insert("strip_prefix".into(), p);
            }
            (Value::Bool(true), _) => {
                return bad(
                    "strip_path",
                    "strip_path needs a prefix path (path or path_prefix)",
                )
            }
            (Value::Bool(false), _) => {
                o.insert("strip_prefix".into(), json!(""));
            }
            _ => return bad("strip_path", "strip_path must be true or false"),
        }
    }
    match o.remove("cache") {
        Some(Value::Object(mut c)) => match c.remove("enabled") {
            Some(Value::Bool(false)) => {
                o.insert("cache".into(), Value::Null);
            }
            Some(Value::Bool(true)) | None => {
                for (from, to) in [("ttl", "ttl_s"), ("cache_methods", "methods")] {
                    if let Some(v) = c.remove(from) {
                        if c.contains_key(to) {
                            return bad(
                                &format!("cache.{from}"),
                                &format!("give {from} or {to}, not both"),
                            );
                        }
                        c.insert(to.into(), v);
                    }
                }
                o.insert("cache".into(), Value::Object(c));
            }
            Some(_) => return bad("cache.enabled", "cache.enabled must be true or false"),
        },
        Some(Value::Null) => {
            o.insert("cache".into(), Value::Null);
        }
        Some(_) => {
            return bad(
                "cache",
                "cache must be an object such as {\"enabled\": true, \"ttl\": 60}",
            )
        }
        None => {}
    }
    Ok(o)
}

/// RFC 7396: `patch` merged into `target` (a `null` removes the key).
fn merge(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(&k);
            }
            Value::Object(p) => match target.get_mut(&k) {
                Some(Value::Object(t)) => merge(t, p),
                _ => {
                    let mut fresh = Map::new();
                    merge(&mut fresh, p);
                    target.insert(k, Value::Object(fresh));
                }
            },
            v => {
                target.insert(k, v);
            }
        }
    }
}

/// Ids the API makes up, and accepts: they go into URLs.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A validation failure of the whole configuration, answered as the route's 400.
fn invalid(e: &crate::runtime::ReloadError, rid: &str) -> Response {
    let crate::runtime::ReloadError::Invalid(ce) = e else {
        return reload_error(e, rid);
    };
    let mut more = Map::new();
    if let Some(site) = ce.site() {
        // `routes."id".upstream` -> `upstream`: the field of the route sent.
        let field = match site.key.strip_prefix("routes.") {
            Some(rest) => rest
                .split_once("\".")
                .map_or(rest.to_owned(), |(_, f)| f.to_owned()),
            None => site.key.clone(),
        };
        more.insert("field".into(), json!(field));
    }
    error_code(400, "invalid_route", &format!("{ce}"), rid, more)
}

pub fn create(admin: &Admin, req: &Request) -> Response {
    let rid = &req.request_id;
    let mut route = match object(req).and_then(|o| canonical(o, None)) {
        Ok(r) => r,
        Err(r) => return refused(r, rid),
    };
    let mut patchless = Map::new();
    merge(&mut patchless, std::mem::take(&mut route));
    let mut route = patchless;
    let id = match route.get("id") {
        Some(Value::String(id)) if valid_id(id) => id.clone(),
        Some(_) => {
            return refused(
                (
                    "id".into(),
                    "id must be 1 to 128 letters, digits, '-', '_' or '.'".into(),
                ),
                rid,
            )
        }
        None => {
            let id = format!("route-{:08x}", fastrand::u32(..));
            route.insert("id".into(), json!(id));
            id
        }
    };
    let now = now_rfc3339();
    let result = admin.control.change_routes(|overlay, cfg, _| {
        if running(cfg).iter().any(|r| id_of(r) == id) {
            return Err(error_code(
                409,
                "conflict",
                &format!("a route with id {id:?} exists; PATCH /api/v1/routes/{id} changes it"),
                rid,
                Map::new(),
            ));
        }
        overlay.upsert(route.clone(), &now);
        Ok(())
    });
    match result {
        Ok(Ok(((), applied))) => {
            let path = route
                .get("path_prefix")
                .or_else(|| route.get("path_exact"))
                .cloned()
                .unwrap_or(Value::Null);
            let mut r = Response::json(
                201,
                &json!({
                    "id": id,
                    "path": path,
                    "status": "active",
                    "created_at": now,
                    "persisted": applied.persisted,
                }),
            );
            r.headers = format!("Location: /api/v1/routes/{id}\r\n");
            r
        }
        Ok(Err(r)) => r,
        Err(e) => invalid(&e, rid),
    }
}

pub fn patch(admin: &Admin, req: &Request, id: &str) -> Response {
    let id = decode(id);
    let rid = &req.request_id;
    let body = match object(req) {
        Ok(o) => o,
        Err(r) => return refused(r, rid),
    };
    if body
        .get("id")
        .is_some_and(|v| v.as_str() != Some(id.as_str()))
    {
        return refused(
            (
                "id".into(),
                "a route's id cannot be changed; create a new route and delete this one".into(),
            ),
            rid,
        );
    }
    let now = now_rfc3339();
    let mut merged_out = None;
    let result = admin.control.change_routes(|overlay, cfg, _| {
        let Some(mut current) = running(cfg).into_iter().find(|r| id_of(r) == id) else {
            return Err(no_route(&id, rid));
        };
        let patch = canonical(body, Some(&current)).map_err(|r| refused(r, rid))?;
        merge(&mut current, patch);
        merged_out = Some(current.clone());
        overlay.upsert(current, &now);
        Ok(())
    });
    match result {
        Ok(Ok(((), applied))) => {
            let overlay = admin.control.overlay();
            let mut v = merged_out.map_or(Value::Null, |r| shown(&r, &overlay));
            v["persisted"] = json!(applied.persisted);
            Response::json(200, &v)
        }
        Ok(Err(r)) => r,
        Err(e) => invalid(&e, rid),
    }
}

pub fn delete(admin: &Admin, req: &Request, id: &str) -> Response {
    let id = decode(id);
    let rid = &req.request_id;
    let result = admin.control.change_routes(|overlay, cfg, base| {
        if !running(cfg).iter().any(|r| id_of(r) == id) {
            return Err(no_route(&id, rid));
        }
        // The file has it too: it stays deleted across reloads and restarts.
        let in_file = base
            .parse::<toml::Table>()
            .ok()
            .and_then(|d| d.get("routes")?.as_array().cloned())
            .is_some_and(|a| {
                a.iter()
                    .any(|r| r.get("id").and_then(|i| i.as_str()) == Some(&*id))
            });
        overlay.delete(&id, in_file);
        Ok(())
    });
    match result {
        Ok(Ok(((), applied))) => Response::json(
            200,
            &json!({"id": id, "status": "deleted", "persisted": applied.persisted}),
        ),
        Ok(Err(r)) => r,
        Err(e) => invalid(&e, rid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn management_api_fields_become_route_keys() {
        let r = canonical(
            obj(json!({
                "id": "r1", "path": "/api/v2", "methods": ["GET"], "upstream_id": "users",
                "strip_path": true, "auth_required": false,
                "rate_limit": {"enabled": true, "requests_per_minute": 60, "burst": 5, "key_by": "ip"},
                "cache": {"enabled": true, "ttl": 30, "cache_methods": ["GET"]},
                "status": "active",
            })),
            None,
        )
        .unwrap();
        assert_eq!(
            Value::Object(r),
            json!({
                "id": "r1", "path_prefix": "/api/v2", "methods": ["GET"], "upstream": "users",
                "strip_prefix": "/api/v2", "auth": "none",
                "rate_limit": {"enabled": true, "requests_per_minute": 60, "burst": 5, "key_by": "ip"},
                "cache": {"ttl_s": 30, "methods": ["GET"]},
            })
        );
    }

    #[test]
    fn cache_disabled_removes_it_in_a_patch() {
        let mut current = obj(json!({"id": "r", "path_prefix": "/a", "cache": {"ttl_s": 5}}));
        let p = canonical(obj(json!({"cache": {"enabled": false}})), Some(&current)).unwrap();
        merge(&mut current, p);
        assert_eq!(
            Value::Object(current),
            json!({"id": "r", "path_prefix": "/a"})
        );
    }

    #[test]
    fn path_replaces_an_exact_path_in_a_patch() {
        let mut current = obj(json!({"id": "r", "path_exact": "/a"}));
        let p = canonical(obj(json!({"path": "/b"})), Some(&current)).unwrap();
        merge(&mut current, p);
        assert_eq!(
            Value::Object(current),
            json!({"id": "r", "path_prefix": "/b"})
        );
    }

    #[test]
    fn conflicting_fields_name_themselves() {
        let e = canonical(obj(json!({"upstream_id": "a", "upstream": "b"})), None).unwrap_err();
        assert_eq!(e.0, "upstream_id");
        let e = canonical(obj(json!({"strip_path": true})), None).unwrap_err();
        assert_eq!(e.0, "strip_path");
        let e = canonical(obj(json!({"cache": 5})), None).unwrap_err();
        assert_eq!(e.0, "cache");
    }

    #[test]
    fn ids_are_url_safe() {
        assert!(valid_id("route-1.v2_a"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("a b"));
    }
}
