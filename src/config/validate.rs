//! Validation: [`FileConfig`] (raw, as written) -> [`Config`] (typed, checked).
//!
//! [`parse_and_validate`] is the only way in. It runs serde over the text (unknown keys
//! and wrong types fail there), then checks every value and converts it: socket
//! addresses, CIDRs, upstream names to indices, milliseconds to `Duration`, header names
//! to lower case. It stops at the first mistake and returns a [`ConfigError`]: one
//! variant per kind of mistake, each carrying a [`Site`] (file, line, column, key path,
//! value as written), so the message reads
//!
//! ```text
//! gateway.toml:14:11: server.listen[0] = "0.0.0.0": not an ip:port socket address ...
//!   line 14 | listen = ["0.0.0.0"]
//! ```
//!
//! Upstream server names are resolved here, once, with the system resolver: the hot path
//! never parses a string or asks DNS.
//!
//! Files: the error type in `validate/error.rs`; checks of the sections served by their
//! own stages (auth, rate limits, plans, cache, health checks, circuit breakers) in
//! `validate/deferred.rs`; `[server.tls]` and `[upstreams.tls]`, certificates and keys
//! loaded, in `validate/tls.rs`; the small grammars (tokens, hosts, CIDRs, server addresses)
//! in `validate/rules.rs`; [`summary()`] (for `ringgate check`) in `validate/summary.rs`,
//! with the warning about routes that can never match from `validate/shadow.rs`;
//! tests in `validate/tests.rs` and `validate/tests/errors.rs`.

mod body;
mod browser;
mod compose;
mod deferred;
mod edge;
mod error;
mod fanout;
mod mirror;
mod rules;
mod shadow;
mod summary;
mod templates;
#[cfg(test)]
mod tests;
mod tls;
mod websocket;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::file::{FileConfig, FileHeaderEdits, FileRoute, FileUpstream, FileUpstreamServer};
use super::{
    AccessLog, AdminConfig, AuthMode, Config, HeaderEdits, IoDriver, Limits, LogConfig, LogLevel,
    MetricsConfig, PathMatch, RouteCache, RouteConfig, RouteTarget, ServerConfig, UpstreamConfig,
    UpstreamServer,
};
pub use error::{ConfigError, Site};
pub use shadow::path_covers;
pub use summary::{not_yet_active, shadow_warnings, summary, tls_warnings, NOT_YET_ACTIVE};

/// Parse `text` (TOML) and validate it into a [`Config`]; `origin` names the file in
/// error messages.
pub fn parse_and_validate(text: &str, origin: &str) -> Result<Config, ConfigError> {
    parse_and_validate_with(text, origin, &|name| std::env::var_os(name))
}

/// As [`parse_and_validate`], with `env` standing in for the process environment
/// (where `secret_env` secrets are read).
pub fn parse_and_validate_with(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Config, ConfigError> {
    let cx = Cx { text, origin, env };
    let file = deserialize(&cx)?;
    build(&cx, file)
}

/// serde over the text, with `[[routes]]` taken one at a time so that a mistake inside
/// a route names it (`routes."catalog".timeout_ms`, not `routes`): the document is
/// parsed with its spans, the routes are taken out, the rest becomes a [`FileConfig`],
/// then each route a [`FileRoute`] from its own spanned value, so positions and
/// `deny_unknown_fields` stay as they were.
fn deserialize(cx: &Cx) -> Result<FileConfig, ConfigError> {
    use serde::Deserialize as _;
    use toml::de::{DeTable, DeValue, Deserializer, ValueDeserializer};

    let mut root = DeTable::parse(cx.text).map_err(|e| cx.parse_error(&e, ""))?;
    // Anything but an array stays in place, for serde to refuse as before.
    let routes = match root.get_mut().remove_entry("routes") {
        Some((_, v)) if matches!(v.get_ref(), DeValue::Array(_)) => Some(v.into_inner()),
        Some((k, v)) => {
            root.get_mut().insert(k, v);
            None
        }
        None => None,
    };
    let mut file =
        FileConfig::deserialize(Deserializer::from(root)).map_err(|e| cx.parse_error(&e, ""))?;
    let Some(DeValue::Array(routes)) = routes else {
        return Ok(file);
    };
    for (i, item) in routes.into_iter().enumerate() {
        let id = item
            .get_ref()
            .as_table()
            .and_then(|t| t.get("id"))
            .and_then(|id| id.get_ref().as_str());
        let key = match id {
            Some(id) => format!("routes.{id:?}"),
            None => format!("routes[{i}]"),
        };
        let route = FileRoute::deserialize(ValueDeserializer::from(item))
            .map_err(|e| cx.parse_error(&e, &key))?;
        file.routes.push(route);
    }
    Ok(file)
}

/// Turns spans into [`Site`]s; borrowed by every check.
struct Cx<'a> {
    text: &'a str,
    origin: &'a str,
    env: &'a dyn Fn(&str) -> Option<OsString>,
}

/// Largest duration accepted anywhere. Deadlines are computed as `Instant + Duration`,
/// which panics on overflow; a year is beyond any sane timeout and far below overflow.
const MAX_DURATION_S: u64 = 365 * 24 * 3600;

impl Cx<'_> {
    /// A site for `key` whose value starts at `span`; an empty span at 0 is a default.
    fn site(&self, key: impl Into<String>, span: Range<usize>, value: String) -> Box<Site> {
        let mut site = Box::new(Site {
            origin: self.origin.to_owned(),
            line: None,
            column: 0,
            key: key.into(),
            value,
            source_line: String::new(),
        });
        if span != (0..0) {
            self.locate(&mut site, span.start);
        }
        site
    }

    /// Fill in line, column and the line's text for byte `offset`.
    fn locate(&self, site: &mut Site, offset: usize) {
        let mut start = offset.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &self.text[..start];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        site.line = Some(before.matches('\n').count() + 1);
        site.column = before[line_start..].chars().count() + 1;
        site.source_line = self.text[line_start..]
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
    }

    /// A site for a spanned value, shown with `Debug` (strings quoted, numbers bare).
    fn at<T: fmt::Debug>(&self, key: impl Into<String>, v: &Spanned<T>) -> Box<Site> {
        self.site(key, v.span(), format!("{:?}", v.get_ref()))
    }

    fn line_of<T>(&self, v: &Spanned<T>) -> usize {
        self.site("", v.span(), String::new()).line.unwrap_or(0)
    }

    /// serde's error -> [`ConfigError::Parse`] with the key path and line. `outer` is
    /// the key path of the value that was deserialized on its own (a route), if any.
    fn parse_error(&self, e: &toml::de::Error, outer: &str) -> ConfigError {
        // The key path is only exposed through `Display` of an error without input,
        // which ends with "in `a.b.c`".
        let mut bare = e.clone();
        bare.set_input(None);
        let rendered = bare.to_string();
        let inner = rendered
            .lines()
            .filter_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
            .next_back()
            .unwrap_or("");
        let key = match (outer, inner) {
            (o, "") => o.to_owned(),
            ("", i) => i.to_owned(),
            (o, i) => format!("{o}.{i}"),
        };
        let mut message = rules::friendlier(e.message());
        if let Some(unit) = rules::duration_unit(&key) {
            message = rules::with_unit(&message, unit);
        }
        let mut site = self.site(key, 0..0, String::new());
        if let Some(span) = e.span() {
            self.locate(&mut site, span.start);
        }
        // toml does not say which key is duplicated; its span does.
        if message == "duplicate key" {
            if let Some(k) = e.span().and_then(|s| self.text.get(s)) {
                message = format!("duplicate key `{k}`");
            }
        }
        ConfigError::Parse { site, message }
    }

    fn positive<T>(&self, key: &str, v: &Spanned<T>) -> Result<T, ConfigError>
    where
        T: Copy + Default + PartialEq + fmt::Debug,
    {
        if *v.get_ref() == T::default() {
            return Err(ConfigError::NotPositive {
                site: self.at(key, v),
            });
        }
        Ok(*v.get_ref())
    }

    /// Milliseconds, > 0 and at most a year.
    fn millis(&self, key: &str, v: &Spanned<u64>) -> Result<Duration, ConfigError> {
        let ms = self.positive(key, v)?;
        self.at_most(key, v, MAX_DURATION_S * 1000, "ms (365 days)")?;
        Ok(Duration::from_millis(ms))
    }

    /// Seconds, at most a year; 0 allowed when `zero_ok` (e.g. no graceful wait).
    fn secs(&self, key: &str, v: &Spanned<u64>, zero_ok: bool) -> Result<Duration, ConfigError> {
        if !zero_ok {
            self.positive(key, v)?;
        }
        self.at_most(key, v, MAX_DURATION_S, "s (365 days)")?;
        Ok(Duration::from_secs(*v.get_ref()))
    }

    fn at_most(
        &self,
        key: &str,
        v: &Spanned<u64>,
        max: u64,
        unit: &str,
    ) -> Result<(), ConfigError> {
        if *v.get_ref() > max {
            return Err(ConfigError::TooLarge {
                site: self.at(key, v),
                max: format!("{max} {unit}"),
            });
        }
        Ok(())
    }

    fn socket_addr(
        &self,
        key: &str,
        v: &Spanned<String>,
    ) -> Result<std::net::SocketAddr, ConfigError> {
        v.get_ref().parse().map_err(|_| ConfigError::BadSocketAddr {
            site: self.at(key, v),
        })
    }

    fn header_name(&self, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        if !rules::is_token(v.get_ref()) {
            return Err(ConfigError::BadHeaderName {
                site: self.at(key, v),
            });
        }
        Ok(v.get_ref().to_ascii_lowercase())
    }

    fn header_value(&self, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        if !rules::is_header_value(v.get_ref()) {
            return Err(ConfigError::BadHeaderValue {
                site: self.at(key, v),
            });
        }
        Ok(v.get_ref().clone())
    }

    /// Method names: non-empty, upper-case tokens, duplicates dropped.
    fn methods(
        &self,
        key: &str,
        v: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<Vec<String>, ConfigError> {
        if v.get_ref().is_empty() {
            return Err(ConfigError::NoMethods {
                site: self.site(key, v.span(), "[]".to_owned()),
            });
        }
        let mut out: Vec<String> = Vec::new();
        for (i, m) in v.get_ref().iter().enumerate() {
            if !rules::is_method(m.get_ref()) {
                return Err(ConfigError::BadMethod {
                    site: self.at(format!("{key}[{i}]"), m),
                });
            }
            if !out.contains(m.get_ref()) {
                out.push(m.get_ref().clone());
            }
        }
        Ok(out)
    }
}

fn build(cx: &Cx, file: FileConfig) -> Result<Config, ConfigError> {
    let (server, tls) = server(cx, &file)?;
    let admin = AdminConfig {
        listen: cx.socket_addr("admin.listen", &file.admin.listen)?,
        token_env: file.admin.token_env.clone(),
        state_file: (!file.admin.state_file.is_empty())
            .then(|| std::path::PathBuf::from(&file.admin.state_file)),
        requested: file.admin.listen.span() != (0..0)
            || file.admin.token_env != super::file::FileAdmin::default().token_env
            || !file.admin.state_file.is_empty(),
    };
    listener_clashes(cx, &file)?;
    let log = log(cx, &file)?;
    let metrics = metrics(cx, &file.metrics)?;
    let plans = deferred::plans(cx, file.plans.clone())?;
    deferred::rate_limit(cx, &file.rate_limit, &plans)?;
    deferred::auth(cx, &file.auth, &plans)?;
    deferred::cache(cx, &file.cache)?;
    let upstreams = upstreams(cx, &file.upstreams)?;
    let routes = routes(cx, &file.routes, &upstreams, &plans)?;
    edge::path_vars(cx, &routes, &upstreams, &file.upstreams)?;
    // The typed forms start uses, built here once: whatever would stop the start
    // (a missing secret, an unreadable key file) stops `ringgate check` too.
    let limits = Arc::new(deferred::limits(cx, &file.rate_limit, &plans)?).with_routes(&routes);
    let auth_keys = deferred::load_keys(cx, &file.auth)?;
    let cluster = match &file.cluster {
        Some(c) => Some(Arc::new(cluster(cx, c)?)),
        None => None,
    };
    Ok(Config {
        cluster,
        auth_keys: Arc::new(auth_keys),
        limits,
        tls: tls.map(Arc::new),
        server,
        admin,
        log,
        auth: file.auth,
        rate_limit: file.rate_limit,
        plans,
        cache: file.cache,
        tracing: file.tracing,
        metrics,
        upstreams,
        routes,
        source: None,
        text: Some(Arc::from(cx.text)),
    })
}

/// `[cluster]`: the Redis URL (with `${env:NAME}` expanded; never shown in an error,
/// nor the line it is on), the node's id, the interval and the error policy.
fn cluster(
    cx: &Cx,
    c: &super::file::FileCluster,
) -> Result<crate::cluster::ClusterConfig, ConfigError> {
    let secret_err = |message: String| {
        let mut site = cx.site("cluster.redis_url", c.redis_url.span(), String::new());
        site.source_line = String::new();
        ConfigError::Parse { site, message }
    };
    let url =
        crate::cluster::expand_env(c.redis_url.get_ref(), &|n| (cx.env)(n)).map_err(secret_err)?;
    if redis::Client::open(url.as_str()).is_err() {
        return Err(secret_err(
            "not a usable Redis URL (expected redis:// or rediss://[:password@]host:port/db)"
                .to_owned(),
        ));
    }
    // TLS (`rediss://`): trust `ca_file`, else the system's roots, which must exist.
    let tls = url.starts_with("rediss://");
    let ca_file = &c.ca_file;
    let ca_pem = if ca_file.get_ref().trim().is_empty() {
        if tls {
            crate::tls::client::system_roots().map_err(|e| ConfigError::Parse {
                site: cx.at("cluster.ca_file", ca_file),
                message: format!("redis_url is rediss:// and {e}"),
            })?;
        }
        None
    } else if !tls {
        return Err(ConfigError::Parse {
            site: cx.at("cluster.ca_file", ca_file),
            message: "ca_file is for a rediss:// redis_url (TLS to Redis)".to_owned(),
        });
    } else {
        let path = std::path::Path::new(ca_file.get_ref());
        crate::tls::load::read_roots(path)
            .map_err(|e| tls::file_error(cx, e, ("cluster.ca_file", ca_file)))?;
        let pem = std::fs::read(path).map_err(|e| ConfigError::Parse {
            site: cx.at("cluster.ca_file", ca_file),
            message: format!("cannot read it: {e}"),
        })?;
        Some(pem)
    };
    let interval = cx.millis("cluster.sync_interval_ms", &c.sync_interval_ms)?;
    let on_error = match c.on_redis_error.get_ref().as_str() {
        "local" => crate::cluster::OnRedisError::Local,
        _ => {
            return Err(ConfigError::Parse {
                site: cx.at("cluster.on_redis_error", &c.on_redis_error),
                message: "expected \"local\"".to_owned(),
            })
        }
    };
    let name = c.name.get_ref();
    if name.is_empty()
        || name.len() > 64
        || name.contains(['{', '}', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(ConfigError::Parse {
            site: cx.at("cluster.name", &c.name),
            message: "expected 1 to 64 characters, no braces, colons or spaces".to_owned(),
        });
    }
    let node_id = match c.node_id.get_ref().as_str() {
        "" => crate::cluster::default_node_id(),
        id => id.to_owned(),
    };
    Ok(
        crate::cluster::ClusterConfig::new(url, node_id, name.clone(), interval, on_error)
            .with_ca(ca_pem),
    )
}

/// `[metrics]`: the window must hold the shortest period (1m) and need not exceed
/// the longest (1h).
fn metrics(cx: &Cx, m: &super::file::FileMetrics) -> Result<MetricsConfig, ConfigError> {
    let key = "metrics.latency_window_s";
    if *m.latency_window_s.get_ref() < 60 {
        return Err(ConfigError::TooSmall {
            site: cx.at(key, &m.latency_window_s),
            min: "60 s (the shortest period, 1m)".to_owned(),
        });
    }
    cx.at_most(key, &m.latency_window_s, 3600, "s (the longest period, 1h)")?;
    Ok(MetricsConfig {
        enabled: m.enabled,
        prometheus: m.prometheus,
        latency_window_s: *m.latency_window_s.get_ref(),
    })
}

/// `[server]`, and `[server.tls]` loaded (its listen addresses go in `ServerConfig`,
/// the rest, reloadable, in `Config::tls`).
fn server(
    cx: &Cx,
    file: &FileConfig,
) -> Result<(ServerConfig, Option<crate::tls::ServerTls>), ConfigError> {
    let s = &file.server;
    let mut listen = Vec::new();
    for (i, a) in s.listen.get_ref().iter().enumerate() {
        listen.push(cx.socket_addr(&format!("server.listen[{i}]"), a)?);
    }
    let (tls_listen, tls) = match &s.tls {
        Some(t) => {
            let (listen, tls) = tls::server(cx, t)?;
            (listen, Some(tls))
        }
        None => (Vec::new(), None),
    };
    // A TLS-only gateway is fine; one with no listener at all would serve nothing.
    if listen.is_empty() && tls_listen.is_empty() {
        return Err(ConfigError::NoListener {
            site: cx.site("server.listen", s.listen.span(), "[]".to_owned()),
        });
    }
    let io_driver = match s.io_driver.get_ref().as_str() {
        "auto" => IoDriver::Auto,
        "io_uring" => IoDriver::IoUring,
        "epoll" => IoDriver::Epoll,
        _ => {
            return Err(ConfigError::BadIoDriver {
                site: cx.at("server.io_driver", &s.io_driver),
            })
        }
    };
    let uring_entries = cx.positive("server.uring_entries", &s.uring_entries)?;
    // The kernel refuses rings larger than this (IORING_MAX_ENTRIES).
    if uring_entries > 32_768 {
        return Err(ConfigError::TooLarge {
            site: cx.at("server.uring_entries", &s.uring_entries),
            max: "32768".to_owned(),
        });
    }
    let mut trusted_proxies = Vec::new();
    for (i, p) in s.trusted_proxies.iter().enumerate() {
        let net = rules::parse_cidr(p.get_ref()).map_err(|reason| ConfigError::BadCidr {
            site: cx.at(format!("server.trusted_proxies[{i}]"), p),
            reason,
        })?;
        trusted_proxies.push(net);
    }
    let l = &s.limits;
    let limits = Limits {
        max_header_bytes: cx.positive("server.limits.max_header_bytes", &l.max_header_bytes)?,
        max_headers: cx.positive("server.limits.max_headers", &l.max_headers)?,
        max_body_bytes: l.max_body_bytes,
        header_read_timeout: cx.millis(
            "server.limits.header_read_timeout_ms",
            &l.header_read_timeout_ms,
        )?,
        idle_timeout: cx.millis("server.limits.idle_timeout_ms", &l.idle_timeout_ms)?,
        request_timeout: cx.millis("server.limits.request_timeout_ms", &l.request_timeout_ms)?,
        buffer_hold: {
            cx.at_most(
                "server.limits.buffer_hold_ms",
                &l.buffer_hold_ms,
                60_000,
                "ms",
            )?;
            Duration::from_millis(*l.buffer_hold_ms.get_ref())
        },
    };
    let server = ServerConfig {
        listen,
        workers: s.workers,
        pin_workers: s.pin_workers,
        io_driver,
        uring_entries,
        splice_min_bytes: s.splice_min_bytes,
        takeover: s.takeover,
        mirror_max_in_flight: cx
            .positive("server.mirror_max_in_flight", &s.mirror_max_in_flight)?,
        mirror_max_body_bytes: s.mirror_max_body_bytes,
        https_port: None,
        max_connections: cx.positive("server.max_connections", &s.max_connections)?,
        graceful_shutdown: cx.secs("server.graceful_shutdown_s", &s.graceful_shutdown_s, true)?,
        trusted_proxies,
        limits,
        tls_listen,
    };
    Ok((server, tls))
}

/// Two listeners on one address: a duplicate in the public list, or worse, the admin
/// API on a public listener (it must never be reachable there). Run after each
/// address has been checked on its own, so parsing cannot fail here.
fn listener_clashes(cx: &Cx, file: &FileConfig) -> Result<(), ConfigError> {
    let tls = file
        .server
        .tls
        .as_ref()
        .map_or(&[][..], |t| &t.listen.get_ref()[..]);
    let public = file.server.listen.get_ref().iter().enumerate();
    let public = public
        .map(|(i, a)| (format!("server.listen[{i}]"), a))
        .chain(
            tls.iter()
                .enumerate()
                .map(|(i, a)| (format!("server.tls.listen[{i}]"), a)),
        );
    let admin = std::iter::once(("admin.listen".to_owned(), &file.admin.listen));
    let all: Vec<(String, &Spanned<String>, std::net::SocketAddr)> = public
        .chain(admin)
        .filter_map(|(k, a)| Some((k, a, a.get_ref().parse().ok()?)))
        .collect();
    for (j, (key, value, addr)) in all.iter().enumerate() {
        if let Some((other, ..)) = all[..j].iter().find(|(.., a)| rules::overlaps(*a, *addr)) {
            return Err(ConfigError::ListenerClash {
                site: cx.at(key.clone(), value),
                other: other.clone(),
            });
        }
    }
    Ok(())
}

fn log(cx: &Cx, file: &FileConfig) -> Result<LogConfig, ConfigError> {
    let l = &file.log;
    let level = match l.level.get_ref().as_str() {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        _ => {
            return Err(ConfigError::BadLogLevel {
                site: cx.at("log.level", &l.level),
            })
        }
    };
    let access_log = match l.access_log.get_ref().as_str() {
        "stdout" => AccessLog::Stdout,
        "off" => AccessLog::Off,
        p if p.trim().is_empty() => {
            return Err(ConfigError::BadAccessLog {
                site: cx.at("log.access_log", &l.access_log),
            })
        }
        p => {
            // Start opens (creates) the file; what can be seen without creating it is
            // seen here, so `check` refuses a path start would fail on.
            let path = std::path::PathBuf::from(p);
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let reason = if path.is_dir() {
                Some("is a directory".to_owned())
            } else if !dir.is_dir() {
                Some(format!("directory {} does not exist", dir.display()))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(ConfigError::AccessLogPath {
                    site: cx.at("log.access_log", &l.access_log),
                    reason,
                });
            }
            AccessLog::File(path)
        }
    };
    Ok(LogConfig { access_log, level })
}

fn upstreams(cx: &Cx, raw: &[FileUpstream]) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, u) in raw.iter().enumerate() {
        let name = u.name.get_ref();
        if name.is_empty() {
            return Err(ConfigError::EmptyName {
                site: cx.at(format!("upstreams[{i}].name"), &u.name),
            });
        }
        let key = format!("upstreams.{name:?}");
        if let Some(&first_line) = seen.get(name.as_str()) {
            return Err(ConfigError::DuplicateUpstream {
                site: cx.at(format!("{key}.name"), &u.name),
                first_line,
            });
        }
        seen.insert(name, cx.line_of(&u.name));
        out.push(upstream(cx, &key, u)?);
    }
    Ok(out)
}

fn upstream(cx: &Cx, key: &str, u: &FileUpstream) -> Result<UpstreamConfig, ConfigError> {
    if u.servers.get_ref().is_empty() {
        return Err(ConfigError::NoServers {
            site: cx.site(format!("{key}.servers"), u.servers.span(), "[]".to_owned()),
        });
    }
    let mut servers = Vec::new();
    // Per server: (key, host:port, value as written) when it is https://.
    let mut https = Vec::new();
    for (i, entry) in u.servers.get_ref().iter().enumerate() {
        let mut skey = format!("{key}.servers[{i}]");
        let (address, weight) = match entry.get_ref() {
            FileUpstreamServer::Address(a) => (Spanned::new(entry.span(), a.clone()), 1),
            FileUpstreamServer::Weighted(w) => {
                skey.push_str(".address");
                let weight = *w.weight.get_ref();
                if weight == 0 {
                    return Err(ConfigError::ZeroWeight {
                        site: cx.at(format!("{key}.servers[{i}].weight"), &w.weight),
                    });
                }
                (w.address.clone(), weight)
            }
        };
        let (label, tls) =
            rules::split_scheme(address.get_ref()).map_err(|reason| ConfigError::BadServer {
                site: cx.at(&skey, &address),
                reason,
            })?;
        let addr = rules::resolve(&label).map_err(|reason| ConfigError::Unresolvable {
            site: cx.at(&skey, &address),
            reason,
        })?;
        https.push(tls.then(|| (skey.clone(), label.clone(), address.clone())));
        servers.push(UpstreamServer {
            label,
            addr,
            weight,
            tls,
        });
    }
    let tls = tls::upstream(cx, key, u, &https)?;
    let balance =
        rules::parse_balance(u.balance.get_ref()).ok_or_else(|| ConfigError::BadBalance {
            site: cx.at(format!("{key}.balance"), &u.balance),
        })?;
    let health_check = match &u.health_check {
        Some(h) => Some(deferred::health_check(
            cx,
            &format!("{key}.health_check"),
            h,
        )?),
        None => None,
    };
    let circuit_breaker = match &u.circuit_breaker {
        Some(c) => Some(deferred::circuit_breaker(
            cx,
            &format!("{key}.circuit_breaker"),
            c,
        )?),
        None => None,
    };
    Ok(UpstreamConfig {
        name: u.name.get_ref().clone(),
        servers,
        balance,
        connect_timeout: cx.millis(&format!("{key}.connect_timeout_ms"), &u.connect_timeout_ms)?,
        response_timeout: cx.millis(
            &format!("{key}.response_timeout_ms"),
            &u.response_timeout_ms,
        )?,
        idle_timeout: cx.millis(&format!("{key}.idle_timeout_ms"), &u.idle_timeout_ms)?,
        max_idle_per_worker: u.max_idle_per_worker,
        retries: u.retries,
        health_check,
        circuit_breaker,
        tls: tls.map(Arc::new),
        request_headers: edge::upstream_headers(cx, key, u)?,
    })
}

fn routes(
    cx: &Cx,
    raw: &[FileRoute],
    upstreams: &[UpstreamConfig],
    plans: &[(String, super::file::FilePlan)],
) -> Result<Vec<RouteConfig>, ConfigError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let id = r.id.get_ref();
        if id.is_empty() {
            return Err(ConfigError::EmptyName {
                site: cx.at(format!("routes[{i}].id"), &r.id),
            });
        }
        let key = format!("routes.{id:?}");
        if let Some(&first_line) = seen.get(id.as_str()) {
            return Err(ConfigError::DuplicateRoute {
                site: cx.at(format!("{key}.id"), &r.id),
                first_line,
            });
        }
        seen.insert(id, cx.line_of(&r.id));
        out.push(route(cx, &key, r, upstreams, plans)?);
    }
    Ok(out)
}

fn route(
    cx: &Cx,
    key: &str,
    r: &FileRoute,
    upstreams: &[UpstreamConfig],
    plans: &[(String, super::file::FilePlan)],
) -> Result<RouteConfig, ConfigError> {
    let (path, _, path_text) = edge::path(cx, key, r)?;
    let strip = r.strip_prefix.get_ref();
    let strip_within = match &path {
        PathMatch::Template(t) => t.literal_prefix(),
        _ => path_text.get_ref().clone(),
    };
    if !strip.is_empty() && !rules::is_segment_prefix(strip, &strip_within) {
        return Err(ConfigError::BadStripPrefix {
            site: cx.at(format!("{key}.strip_prefix"), &r.strip_prefix),
            path: path_text.get_ref().clone(),
        });
    }
    let methods = match &r.methods {
        Some(m) => Some(cx.methods(&format!("{key}.methods"), m)?),
        None => None,
    };
    let host =
        match &r.host {
            Some(h) => Some(rules::parse_host_pattern(h.get_ref()).map_err(|reason| {
                ConfigError::BadHost {
                    site: cx.at(format!("{key}.host"), h),
                    reason,
                }
            })?),
            None => None,
        };
    let mut headers = Vec::new();
    for (name, value) in by_position(&r.headers) {
        let hkey = format!("{key}.headers.{:?}", name.get_ref());
        headers.push((cx.header_name(&hkey, name)?, cx.header_value(&hkey, value)?));
    }
    let target = target(cx, key, r, upstreams, &path)?;
    if matches!(target, RouteTarget::Compose(_)) {
        compose::methods(cx, key, r, methods.as_ref())?;
    }
    let auth = match r.auth.get_ref().as_str() {
        "required" => AuthMode::Required,
        "optional" => AuthMode::Optional,
        "none" => AuthMode::None,
        "mtls" => AuthMode::Mtls,
        _ => {
            return Err(ConfigError::BadAuthMode {
                site: cx.at(format!("{key}.auth"), &r.auth),
            })
        }
    };
    if let Some(plan) = &r.plan {
        deferred::known_plan(cx, &format!("{key}.plan"), plan, plans)?;
    }
    let cache = match &r.cache {
        Some(c) => Some(RouteCache {
            ttl: match &c.ttl_s {
                Some(t) => Some(cx.secs(&format!("{key}.cache.ttl_s"), t, false)?),
                None => None,
            },
            methods: match &c.methods {
                Some(m) => cx.methods(&format!("{key}.cache.methods"), m)?,
                None => vec!["GET".to_owned(), "HEAD".to_owned()],
            },
            vary: c
                .vary
                .iter()
                .enumerate()
                .map(|(i, v)| cx.header_name(&format!("{key}.cache.vary[{i}]"), v))
                .collect::<Result<_, _>>()?,
            shared: c.shared,
        }),
        None => None,
    };
    let timeout = match &r.timeout_ms {
        Some(t) => Some(cx.millis(&format!("{key}.timeout_ms"), t)?),
        None => None,
    };
    let cors = browser::cors(cx, key, &r.cors, methods.as_ref())?;
    let mut response_headers = edits(cx, &format!("{key}.response_headers"), &r.response_headers)?;
    if cors.is_some() {
        response_headers
            .remove
            .extend(browser::CORS_FIELDS.map(String::from));
    }
    let path_template = match &path {
        PathMatch::Template(t) => Some(t),
        _ => None,
    };
    let body = body::rules(cx, key, r, path_template)?;
    Ok(RouteConfig {
        id: r.id.get_ref().clone(),
        path,
        methods,
        host,
        headers,
        target,
        strip_prefix: strip.clone(),
        auth,
        scopes: r.scopes.clone(),
        plan: r.plan.as_ref().map(|p| p.get_ref().clone()),
        cache,
        request_headers: edits(cx, &format!("{key}.request_headers"), &r.request_headers)?,
        response_headers,
        timeout,
        max_body_bytes: r.max_body_bytes,
        rate_limit: deferred::route_rate_limit(cx, key, r.rate_limit.as_ref())?,
        content_type: edge::content_types(cx, key, r)?,
        rewrite: edge::rewrite(cx, key, r)?,
        cors,
        compress: browser::compress(cx, key, &r.compress)?,
        websocket: websocket::websocket(cx, key, r)?,
        body,
        mirror: mirror::upstreams(cx, key, r, upstreams)?,
    })
}

fn target(
    cx: &Cx,
    key: &str,
    r: &FileRoute,
    upstreams: &[UpstreamConfig],
    path: &PathMatch,
) -> Result<RouteTarget, ConfigError> {
    if let Some(parts) = &r.compose {
        return compose::target(cx, key, r, parts, upstreams, path);
    }
    let index = |k: String, name: &Spanned<String>| {
        upstreams
            .iter()
            .position(|u| u.name == *name.get_ref())
            .ok_or_else(|| ConfigError::UnknownUpstream {
                site: cx.at(k, name),
                known: rules::list(upstreams.iter().map(|u| u.name.as_str())),
            })
    };
    if let Some(f) = &r.fanout {
        if r.upstream.is_some() || r.split.is_some() || r.respond.is_some() {
            return Err(ConfigError::TargetConflict {
                site: cx.site(format!("{key}.fanout"), f.span(), String::new()),
            });
        }
        return fanout::fanout(cx, key, r, f, upstreams);
    }
    if let Some(respond) = &r.respond {
        if r.upstream.is_some() || r.split.is_some() {
            return Err(ConfigError::TargetConflict {
                site: cx.site(format!("{key}.respond"), respond.span(), String::new()),
            });
        }
        return edge::respond(cx, key, respond);
    }
    match (&r.upstream, &r.split) {
        (Some(_), Some(split)) => Err(ConfigError::TargetConflict {
            site: cx.site(format!("{key}.split"), split.span(), String::new()),
        }),
        (None, None) => Err(ConfigError::NoTarget {
            site: cx.at(format!("{key}.id"), &r.id),
        }),
        (Some(name), None) => Ok(RouteTarget::Single(index(format!("{key}.upstream"), name)?)),
        (None, Some(split)) => {
            if split.get_ref().is_empty() {
                return Err(ConfigError::EmptySplit {
                    site: cx.site(format!("{key}.split"), split.span(), "[]".to_owned()),
                });
            }
            let mut out = Vec::new();
            for (i, s) in split.get_ref().iter().enumerate() {
                let skey = format!("{key}.split[{i}]");
                let idx = index(format!("{skey}.upstream"), &s.upstream)?;
                if *s.weight.get_ref() == 0 {
                    return Err(ConfigError::ZeroWeight {
                        site: cx.at(format!("{skey}.weight"), &s.weight),
                    });
                }
                out.push((idx, *s.weight.get_ref()));
            }
            Ok(RouteTarget::Split(out))
        }
    }
}

fn edits(cx: &Cx, key: &str, raw: &Option<FileHeaderEdits>) -> Result<HeaderEdits, ConfigError> {
    let Some(raw) = raw else {
        return Ok(HeaderEdits::default());
    };
    let mut out = HeaderEdits::default();
    for (name, value) in by_position(&raw.add) {
        let akey = format!("{key}.add.{:?}", name.get_ref());
        cx.header_name(&akey, name)?;
        out.add
            .push((name.get_ref().clone(), cx.header_value(&akey, value)?));
    }
    for (i, name) in raw.remove.iter().enumerate() {
        out.remove
            .push(cx.header_name(&format!("{key}.remove[{i}]"), name)?);
    }
    Ok(out)
}

/// Entries of a TOML table in file order: the map is sorted by name, the key spans
/// give the order they were written in.
fn by_position<K, V>(map: &std::collections::BTreeMap<Spanned<K>, V>) -> Vec<(&Spanned<K>, &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}
