//! Configuration: `gateway.toml` -> [`file::FileConfig`] (raw serde types, unknown keys
//! rejected) -> [`validate`] -> [`Config`] (typed values: `Duration`, resolved socket
//! addresses, upstream indices). The hot path only ever sees [`Config`]; it never parses a
//! string from the file. Every mistake is a [`ConfigError`] that names the key, the value
//! and the line of the file.

pub mod body;
pub mod compose;
mod edge;
pub mod file;
pub mod validate;

pub use edge::{Coding, CorsOrigins, RouteCompress, RouteCors};

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use validate::ConfigError;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    /// `[tracing]`: W3C Trace Context (`traceparent`) kept or started, sent upstream
    /// and logged.
    pub tracing: file::FileTracing,
    /// `[metrics]`: read at start (a reload does not change it).
    pub metrics: MetricsConfig,
    /// `[auth]`, `[rate_limit]` and `[plans.*]` as written: what `ringgate check`
    /// prints (the names of variables and files, never key material). Start uses the
    /// typed forms below.
    pub auth: file::FileAuth,
    pub rate_limit: file::FileRateLimit,
    pub plans: Vec<(String, file::FilePlan)>,
    /// `[cache]`: checked numbers, read as they are by each worker.
    pub cache: file::FileCache,
    /// `[auth]` with every key loaded (secrets read from the environment, key files
    /// read and checked): built once by validation, so a key that would stop the start
    /// stops `ringgate check` too.
    pub auth_keys: Arc<crate::auth::AuthSettings>,
    /// `[cluster]` typed (`None`: no section, limits are this node's alone).
    pub cluster: Option<Arc<crate::cluster::ClusterConfig>>,
    /// `[rate_limit]` and `[plans.*]` typed, built once by validation.
    pub limits: Arc<crate::ratelimit::RateLimitConfig>,
    /// `[server.tls]` with every certificate, key and CA file read and checked: built
    /// by each load (start and every reload read the files again), so a bad file fails
    /// `ringgate check`, start and reload alike. `None`: no TLS listener. Kept out of
    /// [`ServerConfig`] on purpose: `Gateway::reload` compares `server` to tell
    /// changes that need a restart, and new certificates (like every other setting in
    /// here) take effect at reload; only `server.tls_listen` needs a restart.
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// The file this was loaded from (`None`: built from text), which a reload (SIGHUP,
    /// `POST /api/v1/reload`) reads again.
    pub source: Option<std::path::PathBuf>,
    /// The TOML this was validated from (the file with the admin API's route changes
    /// applied), for `GET /api/v1/config`. `None`: built in code.
    pub text: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// 0 = one worker per available core (resolved at start).
    pub workers: usize,
    pub pin_workers: bool,
    pub io_driver: IoDriver,
    pub uring_entries: u32,
    pub max_connections: usize,
    pub graceful_shutdown: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Bodies with at least this many bytes left are spliced; 0 = never.
    pub splice_min_bytes: u64,
    /// Share listen addresses already served by another process (SO_REUSEPORT), for
    /// a deliberate zero-downtime takeover; false: such an address refuses the start.
    pub takeover: bool,
    /// Copies of requests (`mirror`) under way at once per worker and mirrored
    /// upstream; past it a copy is dropped (see `crate::pipeline::mirror`).
    pub mirror_max_in_flight: usize,
    /// A request whose body is larger than this is not mirrored.
    pub mirror_max_body_bytes: u64,
    /// The port of the first TLS listener as bound (set at start, not read from the
    /// file): where `redirect_http` sends plain requests.
    pub https_port: Option<u16>,
    pub limits: Limits,
    /// `server.tls.listen`: the HTTPS listeners (empty without `[server.tls]`). The
    /// rest of `[server.tls]` is [`Config::tls`].
    pub tls_listen: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    /// How long a keep-alive connection keeps its read buffer after an exchange,
    /// waiting for the next request with a read posted (the busy path: one operation
    /// per request). After it, the connection gives its buffers back and waits for
    /// readability with none (`Duration::ZERO`: at once).
    pub buffer_hold: Duration,
}

/// `[metrics]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Record per-route and per-server statistics at all.
    pub enabled: bool,
    /// Serve `GET /metrics` on the admin listener (only when `enabled`).
    pub prometheus: bool,
    /// Seconds the route-metrics API can look back: 60 to 3600.
    pub latency_window_s: u64,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig {
            enabled: true,
            prometheus: true,
            latency_window_s: 3600,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token_env: String,
    /// Routes changed through the admin API are kept here (`None`: in memory only).
    pub state_file: Option<std::path::PathBuf>,
    /// The file writes `[admin]` (not only its defaults): the admin API is asked for.
    pub requested: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Stdout,
    Off,
    File(std::path::PathBuf),
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub access_log: AccessLog,
    pub level: LogLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub servers: Vec<UpstreamServer>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_worker: usize,
    pub retries: u32,
    pub health_check: Option<HealthCheck>,
    pub circuit_breaker: Option<CircuitBreaker>,
    /// For the `https://` servers: trust, names and client certificate, loaded, and the
    /// rustls client config (`[upstreams.tls]`, or its defaults when absent). `None`
    /// when no server is `https://`.
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
    /// (name as written, value) added to every request sent to it; the client's
    /// fields of those names are dropped. Values may hold `${env:...}` secrets:
    /// `Template`'s `Debug` shows only the reference.
    pub request_headers: Vec<(String, crate::http::template::Template)>,
}

#[derive(Debug, Clone)]
pub struct UpstreamServer {
    /// As written in the file, without scheme ("host:port"); used in logs and `check`.
    pub label: String,
    /// Resolved once at load.
    pub addr: SocketAddr,
    /// Value for the Host header sent upstream when the route keeps the client's Host off.
    pub weight: u32,
    /// `https://` server: TLS to it, per `UpstreamConfig::tls` (the name to verify
    /// for it: `tls.server_name(index)`).
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastRequest,
    RandomTwo,
    /// Consistent hashing on this request header (name lower-cased).
    Hash(String),
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    pub failure_threshold: u32,
    pub open: Duration,
    pub half_open_successes: u32,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub id: String,
    pub path: PathMatch,
    /// Upper-case method names; `None` = any method.
    pub methods: Option<Vec<String>>,
    pub host: Option<HostMatch>,
    /// (lower-cased name, exact value); all must match.
    pub headers: Vec<(String, String)>,
    pub target: RouteTarget,
    pub strip_prefix: String,
    pub auth: AuthMode,
    pub scopes: Vec<String>,
    pub plan: Option<String>,
    pub cache: Option<RouteCache>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    pub timeout: Option<Duration>,
    pub max_body_bytes: Option<u64>,
    /// The route's own limit (`rate_limit = { .. }`). `None`: no such key, or one
    /// with `enabled = false` and no `requests_per_minute`.
    pub rate_limit: Option<RouteRateLimit>,
    /// The request's Content-Type must be in one of these; empty = no condition.
    pub content_type: Vec<crate::http::media_type::MediaRange>,
    /// The path sent upstream, rewritten (see `crate::http::rewrite`).
    pub rewrite: Option<crate::http::rewrite::Rewrite>,
    /// `cors = { .. }`: preflights answered at the edge, CORS fields on responses.
    pub cors: Option<RouteCors>,
    /// `compress = { .. }`: responses compressed on the way to the client.
    pub compress: Option<RouteCompress>,
    /// `json_match`, `validate`, `json_body`: the route reads the body whole.
    pub body: Option<Arc<body::BodyRules>>,
    /// `mirror`: indices into `Config::upstreams` of the upstreams that get a copy of
    /// each request forwarded on this route (`crate::pipeline::mirror`).
    pub mirror: Vec<usize>,
    /// `websocket = true`: `Upgrade: websocket` is relayed (`crate::pipeline::upgrade`).
    pub websocket: bool,
}

/// A route's own rate limit: on this route it replaces the plan's, in buckets of the
/// route's own (see `crate::ratelimit`, "Routes' own limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRateLimit {
    /// `false`: no per-route limit; the plan applies as on any other route. Kept with
    /// its numbers so that the limit can be switched back on as it was.
    pub enabled: bool,
    pub requests_per_minute: u32,
    /// Requests a full bucket admits at once (at least 1; 1 = strictly paced).
    pub burst: u32,
    /// What a bucket is per; anonymous callers are keyed by IP whatever it says.
    pub key: crate::ratelimit::KeyKind,
}

impl RouteConfig {
    /// A route `id` on `path` to the first upstream, with every other setting at its
    /// default (no method, host or header condition, no auth): for tests and benches
    /// that build routes without a file.
    pub fn new(id: &str, path: PathMatch) -> RouteConfig {
        RouteConfig {
            id: id.to_owned(),
            path,
            methods: None,
            host: None,
            headers: Vec::new(),
            target: RouteTarget::Single(0),
            strip_prefix: String::new(),
            auth: AuthMode::None,
            scopes: Vec::new(),
            plan: None,
            cache: None,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            timeout: None,
            max_body_bytes: None,
            rate_limit: None,
            content_type: Vec::new(),
            rewrite: None,
            cors: None,
            compress: None,
            body: None,
            mirror: Vec::new(),
            websocket: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Segment-aware: "/api/users" matches "/api/users" and "/api/users/7", not "/api/usersx".
    Prefix(String),
    Exact(String),
    /// `/api/profile/{user_id}`: segment by segment, `{name}` one non-empty segment.
    Template(crate::http::path_template::PathTemplate),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-cased host without port.
    Exact(String),
    /// "*.example.com" stored as ".example.com": matches "a.example.com", not "example.com".
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Index into `Config::upstreams`.
    Single(usize),
    /// (index into `Config::upstreams`, weight > 0).
    Split(Vec<(usize, u32)>),
    /// `respond = { .. }`: answered at the edge, no upstream.
    Respond(Respond),
    /// `compose = [ .. ]`: one JSON answer from several upstreams, fetched in parallel.
    Compose(Arc<compose::Compose>),
    /// `fanout = { .. }`: the body streamed to several upstreams at once.
    Fanout(Fanout),
}

/// A route's fan-out (`fanout = { upstreams, require, timeout_ms }`, see
/// `crate::pipeline::fanout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fanout {
    /// Indexes into `Config::upstreams`: at least two, distinct, in the order written.
    pub upstreams: Vec<usize>,
    /// How many destinations must answer 2xx for the client to get 200 (`"all"` is
    /// their number, `"any"` 1).
    pub require: usize,
    /// The whole fan-out, from the request head to the last destination's answer.
    pub timeout: Duration,
}

/// A route's answer at the edge (`respond = { status, body, content_type }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    pub status: u16,
    pub body: Arc<[u8]>,
    pub content_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    /// A verified TLS client certificate (`server.tls.client_auth` optional or
    /// required); its subject and fingerprint reach the upstream.
    Mtls,
    Optional,
    None,
}

#[derive(Debug, Clone)]
pub struct RouteCache {
    /// How long a response without explicit freshness (no `s-maxage`, `max-age` or
    /// `Expires`) is fresh, for the heuristically cacheable statuses only. `None`
    /// (`ttl_s` absent): such responses are not stored at all. There is no heuristic
    /// freshness from `Last-Modified` (RFC 9111 4.2.2 allows it; nginx does not do it
    /// either): a route that wants one says how long with `ttl_s`.
    pub ttl: Option<Duration>,
    pub methods: Vec<String>,
    pub vary: Vec<String>,
    pub shared: bool,
}

#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    /// (name as written, value), added after removal.
    pub add: Vec<(String, String)>,
    /// Lower-cased names.
    pub remove: Vec<String>,
}

impl AuthMode {
    /// The route reads a bearer token or API key (which the upstream then never sees).
    pub fn checks_credentials(self) -> bool {
        matches!(self, AuthMode::Required | AuthMode::Optional)
    }
}

impl Config {
    /// Read, parse and validate a configuration file. Everything start needs is
    /// checked and built here, keys included (secrets from the process environment):
    /// a file this accepts starts, unless a socket cannot be bound.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_env(path, &|name| std::env::var_os(name))
    }

    /// As [`Config::load`], with `env` standing in for the process environment.
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let mut cfg = Config::parse_with_env(&text, &path.display().to_string(), env)?;
        cfg.source = Some(path.to_owned());
        Ok(cfg)
    }

    /// Parse and validate configuration text; `origin` names the file in errors.
    /// Secrets named by `secret_env` are read from the process environment.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        validate::parse_and_validate(text, origin)
    }

    /// As [`Config::parse`], with `env` standing in for the process environment.
    pub fn parse_with_env(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Config, ConfigError> {
        validate::parse_and_validate_with(text, origin, env)
    }
}
