//! [`Overlay`]: the routes created, changed or deleted through the admin API, kept
//! apart from the configuration file and applied on top of it: at start (from
//! `admin.state_file`), at every reload (SIGHUP or `POST /api/v1/reload`) and at every
//! change made over the API. The file stays the operator's; the overlay says what the
//! API did to it.
//!
//! Applying is a text-to-text step ([`Overlay::apply`]): the file's TOML with the
//! overlay's routes put in, which then goes through the same validation as the file
//! itself, so an API route is checked by exactly the rules (and with the same
//! messages) as one written in the file.
//!
//! Where an API route goes among the file's routes matters, since the first match
//! wins: a route that replaces one of the file's takes its place; a new one goes
//! before the first route that would take every request it matches (a catch-all
//! `path_prefix = "/"` would otherwise hide it), else at the end.
//!
//! The state file is JSON, written whole to a temporary file beside it, synced and
//! renamed over it, so a crash leaves the old state or the new, never half of one.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::PathMatch;

/// What the API changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// Ids of the file's routes deleted through the API.
    #[serde(default)]
    pub deleted: Vec<String>,
    /// Routes created or changed through the API, in the order they were first made.
    #[serde(default)]
    pub routes: Vec<ApiRoute>,
}

/// One route as the API left it: its `[[routes]]` table (TOML key names), as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRoute {
    pub route: Map<String, Value>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

impl ApiRoute {
    pub fn id(&self) -> &str {
        self.route.get("id").and_then(Value::as_str).unwrap_or("")
    }
}

/// Why an overlay could not be read, applied or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: cannot read the admin state file")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not an admin state file ({message}); move it away to start without the API's changes")]
    Format { path: String, message: String },
    #[error("{path}: cannot write the admin state file")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the configuration is not TOML this can edit: {0}")]
    Toml(String),
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.deleted.is_empty() && self.routes.is_empty()
    }

    /// Read `path`; a file that does not exist is an empty overlay.
    pub fn load(path: &Path) -> Result<Overlay, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Overlay::default()),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| StateError::Format {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Write to `path` atomically: a temporary file beside it, synced, renamed over it.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let fail = |source| StateError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| fail(e.into()))?;
        text.push(b'\n');
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            // The rename itself is durable once the directory is synced.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })
    }

    /// The API's route with this id, if it made or changed one.
    pub fn route(&self, id: &str) -> Option<&ApiRoute> {
        self.routes.iter().find(|r| r.id() == id)
    }

    /// Put `route` in (replacing the API's earlier version of it, keeping its
    /// creation time).
    pub fn upsert(&mut self, route: Map<String, Value>, now: &str) {
        let id = route
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        self.deleted.retain(|d| *d != id);
        match self.routes.iter_mut().find(|r| r.id() == id) {
            Some(r) => {
                r.route = route;
                r.updated_at = now.to_owned();
            }
            None => self.routes.push(ApiRoute {
                route,
                created_at: now.to_owned(),
                updated_at: now.to_owned(),
            }),
        }
    }

    /// Take route `id` out: the API's version goes, and a route of the file by that
    /// id is deleted too (`in_file`).
    pub fn delete(&mut self, id: &str, in_file: bool) {
        self.routes.retain(|r| r.id() != id);
        if in_file && !self.deleted.iter().any(|d| d == id) {
            self.deleted.push(id.to_owned());
        }
    }

    /// The configuration text `file` with this overlay applied (see the module doc).
    /// `file` unchanged when the overlay is empty.
    pub fn apply(&self, file: &str) -> Result<String, StateError> {
        if self.is_empty() {
            return Ok(file.to_owned());
        }
        let mut doc: toml::Table = file
            .parse()
            .map_err(|e: toml::de::Error| StateError::Toml(e.message().to_owned()))?;
        let mut routes = match doc.remove("routes") {
            Some(toml::Value::Array(a)) => a,
            Some(_) => return Err(StateError::Toml("`routes` is not an array".into())),
            None => Vec::new(),
        };
        routes.retain(|r| {
            let id = route_id(r);
            !self.deleted.iter().any(|d| Some(d.as_str()) == id)
        });
        for api in &self.routes {
            let table = toml::Value::try_from(&api.route)
                .map_err(|e| StateError::Toml(format!("route {:?}: {e}", api.id())))?;
            match routes.iter().position(|r| route_id(r) == Some(api.id())) {
                Some(i) => routes[i] = table,
                None => {
                    let at = path_of(&table)
                        .and_then(|p| {
                            routes.iter().position(|r| {
                                path_of(r)
                                    .is_some_and(|q| crate::config::validate::path_covers(&q, &p))
                            })
                        })
                        .unwrap_or(routes.len());
                    routes.insert(at, table);
                }
            }
        }
        doc.insert("routes".into(), toml::Value::Array(routes));
        toml::to_string(&doc).map_err(|e| StateError::Toml(e.to_string()))
    }
}

fn route_id(r: &toml::Value) -> Option<&str> {
    r.get("id")?.as_str()
}

fn path_of(r: &toml::Value) -> Option<PathMatch> {
    if let Some(p) = r.get("path_prefix").and_then(toml::Value::as_str) {
        return Some(PathMatch::Prefix(p.to_owned()));
    }
    if let Some(p) = r.get("path_template").and_then(toml::Value::as_str) {
        // Placing API routes: `path_covers` is conservative with templates (one
        // covers only exact paths it matches and templates of its own shape), so an
        // API route goes before a file route only when that route would take its
        // requests; unparsable text covers nothing.
        return crate::http::path_template::PathTemplate::parse(p)
            .ok()
            .map(PathMatch::Template);
    }
    r.get("path_exact")
        .and_then(toml::Value::as_str)
        .map(|p| PathMatch::Exact(p.to_owned()))
}

/// Now, as the API writes times: RFC 3339 in UTC, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = r#"
[[upstreams]]
name = "u"
servers = ["127.0.0.1:1"]

[[routes]]
id = "users"
path_prefix = "/api/users"
upstream = "u"

[[routes]]
id = "all"
path_prefix = "/"
upstream = "u"
"#;

    fn route(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn ids(text: &str) -> Vec<String> {
        let doc: toml::Table = text.parse().unwrap();
        doc["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn empty_overlay_leaves_the_text_alone() {
        assert_eq!(Overlay::default().apply(FILE).unwrap(), FILE);
    }

    #[test]
    fn new_route_goes_before_the_catch_all_and_replacements_keep_their_place() {
        let mut o = Overlay::default();
        o.upsert(
            route(json!({"id": "new", "path_prefix": "/api/new", "upstream": "u"})),
            "t0",
        );
        assert_eq!(ids(&o.apply(FILE).unwrap()), ["users", "new", "all"]);
        o.upsert(
            route(json!({"id": "users", "path_prefix": "/api/people", "upstream": "u"})),
            "t1",
        );
        let text = o.apply(FILE).unwrap();
        assert_eq!(ids(&text), ["users", "new", "all"]);
        assert!(text.contains("/api/people"));
        o.delete("users", true);
        assert_eq!(ids(&o.apply(FILE).unwrap()), ["new", "all"]);
        // Made again after deletion: no longer deleted.
        o.upsert(
            route(json!({"id": "users", "path_prefix": "/api/users", "upstream": "u"})),
            "t2",
        );
        assert!(o.deleted.is_empty());
    }

    #[test]
    fn saves_atomically_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("ringgate-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        assert_eq!(Overlay::load(&path).unwrap(), Overlay::default());
        let mut o = Overlay::default();
        o.upsert(
            route(json!({"id": "x", "path_prefix": "/x", "upstream": "u"})),
            "t",
        );
        o.delete("all", true);
        o.save(&path).unwrap();
        assert_eq!(Overlay::load(&path).unwrap(), o);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        std::fs::write(&path, "{not json").unwrap();
        let e = Overlay::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("state.json") && e.contains("move it away"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
