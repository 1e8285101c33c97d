//! Raw configuration: the serde image of `gateway.toml`, one `File*` struct per table.
//!
//! Every struct is `deny_unknown_fields`, so a misspelt key is an error that names the
//! key and its line instead of a setting silently ignored. Defaults live in the
//! `Default` impls (or `default_*` functions) and are exactly the values of the
//! reference file `shared/spec/gateway.toml`. Values that [`super::validate`] checks
//! are wrapped in [`Spanned`] so that its errors can point at the line; a span of
//! `0..0` marks a value that was not in the file (a default).
//!
//! Nothing here is used on the hot path: [`super::validate`] turns a [`FileConfig`]
//! into a typed [`super::Config`]. Some sections (auth, rate limits, plans, cache) are
//! also kept in this raw form inside `Config`, for what `ringgate check` prints.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

mod browser;
mod compose;
mod edge;
mod fanout;
mod route_limit;
mod tls;
pub use browser::{FileRouteCompress, FileRouteCors};
pub use compose::FileComposePart;
pub use edge::{FileRespond, FileRewrite};
pub use fanout::{FileFanout, FileRequire};
pub use route_limit::FileRouteRateLimit;
pub use tls::{FileTls, FileTlsCertificate, FileUpstreamTls};

/// A value that was not written in the file: its span is empty, which no real
/// TOML value can have, so [`super::validate`] can tell "default" from "line N".
pub fn default_spanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

fn spanned_str(value: &str) -> Spanned<String> {
    default_spanned(value.to_owned())
}

/// The whole file. Every section may be absent; see each `Default` impl.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: FileServer,
    pub admin: FileAdmin,
    pub log: FileLog,
    pub auth: FileAuth,
    pub rate_limit: FileRateLimit,
    /// `[cluster]`: limits shared with other nodes through Redis (`crate::cluster`).
    /// `None` (no section): limits are this node's alone.
    pub cluster: Option<FileCluster>,
    /// `[plans.NAME]` tables. `None` (no `plans` key at all) means the three plans of
    /// the reference file; `Some` replaces them entirely. The keys carry their span, so
    /// sorting by it restores file order (the map itself is sorted by name).
    pub plans: Option<BTreeMap<Spanned<String>, FilePlan>>,
    pub cache: FileCache,
    pub tracing: FileTracing,
    pub metrics: FileMetrics,
    pub upstreams: Vec<FileUpstream>,
    pub routes: Vec<FileRoute>,
}

/// `[cluster]` as written. `redis_url` may carry a password: it is never printed
/// (`Debug` shows only whether it is set).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileCluster {
    pub redis_url: Spanned<String>,
    pub node_id: Spanned<String>,
    pub sync_interval_ms: Spanned<u64>,
    pub on_redis_error: Spanned<String>,
    /// Names the cluster in Redis keys (`ringgate:{name}:...`), so several clusters
    /// can share one Redis.
    pub name: Spanned<String>,
    /// `rediss://` only: PEM CAs to trust for Redis's certificate; "" = the system's.
    pub ca_file: Spanned<String>,
}

impl Default for FileCluster {
    fn default() -> Self {
        FileCluster {
            redis_url: spanned_str("redis://127.0.0.1:6379/0"),
            node_id: spanned_str(""),
            sync_interval_ms: default_spanned(100),
            on_redis_error: spanned_str("local"),
            name: spanned_str("default"),
            ca_file: spanned_str(""),
        }
    }
}

impl std::fmt::Debug for FileCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCluster")
            .field("redis_url", &"<redacted>")
            .field("node_id", self.node_id.get_ref())
            .field("sync_interval_ms", self.sync_interval_ms.get_ref())
            .field("on_redis_error", self.on_redis_error.get_ref())
            .field("name", self.name.get_ref())
            .field("ca_file", self.ca_file.get_ref())
            .finish()
    }
}

/// `[tracing]`: W3C Trace Context.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileTracing {
    /// Keep a valid incoming `traceparent` (with a new span id), else start a trace;
    /// sent upstream and logged.
    pub traceparent: bool,
}

impl Default for FileTracing {
    fn default() -> Self {
        FileTracing { traceparent: true }
    }
}

/// `[metrics]`: per-route and per-server statistics (see `crate::telemetry::metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileMetrics {
    /// Serve `GET /metrics` (Prometheus text format) on the admin listener.
    pub prometheus: bool,
    /// How far back `GET /api/v1/metrics/routes/{id}?period=` can look, in seconds
    /// (the periods are 1m, 5m, 15m, 1h; each must fit in it).
    pub latency_window_s: Spanned<u64>,
    /// Added key: record at all. `false` = no metrics stage on the request path, no
    /// `/metrics` and no route metrics (for measuring what recording costs).
    pub enabled: bool,
}

impl Default for FileMetrics {
    fn default() -> Self {
        FileMetrics {
            prometheus: true,
            latency_window_s: default_spanned(3600),
            enabled: true,
        }
    }
}

/// `[server]`: process, workers and listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileServer {
    pub listen: Spanned<Vec<Spanned<String>>>,
    pub workers: usize,
    pub pin_workers: bool,
    pub io_driver: Spanned<String>,
    pub uring_entries: Spanned<u32>,
    pub max_connections: Spanned<usize>,
    pub graceful_shutdown_s: Spanned<u64>,
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Added key: bodies with at least this many bytes left are moved with splice(2)
    /// (socket -> pipe -> socket, no copy through user space); 0 turns splicing off.
    pub splice_min_bytes: u64,
    /// Added key: share the listen addresses with a process already serving them
    /// (both bind with SO_REUSEPORT), for a zero-downtime upgrade: start the new
    /// gateway with `takeover = true` (or `ringgate --takeover`), then SIGTERM the
    /// old one. Without it, an address already served refuses the start.
    pub takeover: bool,
    /// Added key: copies of requests (`mirror`) under way at once, per worker and
    /// mirrored upstream; a copy past it is dropped and counted.
    pub mirror_max_in_flight: Spanned<usize>,
    /// Added key: a request whose body is larger is not mirrored (dropped, counted).
    pub mirror_max_body_bytes: u64,
    pub limits: FileLimits,
    pub tls: Option<FileTls>,
}

impl Default for FileServer {
    fn default() -> Self {
        FileServer {
            listen: default_spanned(vec![spanned_str("0.0.0.0:8080")]),
            workers: 0,
            pin_workers: true,
            io_driver: spanned_str("auto"),
            uring_entries: default_spanned(1024),
            max_connections: default_spanned(100_000),
            graceful_shutdown_s: default_spanned(30),
            trusted_proxies: Vec::new(),
            splice_min_bytes: 0,
            takeover: false,
            mirror_max_in_flight: default_spanned(64),
            mirror_max_body_bytes: 1024 * 1024,
            limits: FileLimits::default(),
            tls: None,
        }
    }
}

/// `[server.limits]`: what a client may send before the gateway answers 4xx.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileLimits {
    pub max_header_bytes: Spanned<usize>,
    pub max_headers: Spanned<usize>,
    pub max_body_bytes: u64,
    pub header_read_timeout_ms: Spanned<u64>,
    pub idle_timeout_ms: Spanned<u64>,
    pub request_timeout_ms: Spanned<u64>,
    pub buffer_hold_ms: Spanned<u64>,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits {
            max_header_bytes: default_spanned(16_384),
            max_headers: default_spanned(100),
            max_body_bytes: 10_485_760,
            header_read_timeout_ms: default_spanned(10_000),
            idle_timeout_ms: default_spanned(60_000),
            request_timeout_ms: default_spanned(60_000),
            buffer_hold_ms: default_spanned(1_000),
        }
    }
}

/// `[admin]`: the admin listener. The token itself is never in the file, only the
/// name of the environment variable that holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileAdmin {
    pub listen: Spanned<String>,
    pub token_env: String,
    /// Where routes changed through the admin API are kept ("" = in memory only).
    pub state_file: String,
}

impl Default for FileAdmin {
    fn default() -> Self {
        FileAdmin {
            listen: spanned_str("127.0.0.1:9901"),
            token_env: "GATEWAY_ADMIN_TOKEN".to_owned(),
            state_file: String::new(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileLog {
    /// `stdout` | `off` | a file path.
    pub access_log: Spanned<String>,
    /// `error` | `warn` | `info` | `debug`.
    pub level: Spanned<String>,
}

impl Default for FileLog {
    fn default() -> Self {
        FileLog {
            access_log: spanned_str("stdout"),
            level: spanned_str("info"),
        }
    }
}

/// `[auth]`: identity of callers (see `crate::auth`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileAuth {
    pub jwt: FileJwt,
    pub api_keys: FileApiKeys,
}

/// `[auth.jwt]`: bearer-token verification settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileJwt {
    /// Non-empty: `iss` must equal it.
    pub issuer: String,
    /// Non-empty: `aud` must contain one of these.
    pub audience: Vec<String>,
    pub leeway_s: Spanned<u64>,
    pub user_claim: String,
    pub tenant_claim: String,
    pub plan_claim: String,
    pub scope_claim: String,
    pub keys: Vec<FileJwtKey>,
}

impl Default for FileJwt {
    fn default() -> Self {
        FileJwt {
            issuer: String::new(),
            audience: Vec::new(),
            leeway_s: default_spanned(30),
            user_claim: "sub".to_owned(),
            tenant_claim: "tenant".to_owned(),
            plan_claim: "plan".to_owned(),
            scope_claim: "scope".to_owned(),
            keys: Vec::new(),
        }
    }
}

/// `[[auth.jwt.keys]]`: one verification key. Exactly one source of key material:
/// `secret_env` (HS*), `public_key_file` (RS*/PS*/ES*/EdDSA) or `jwks_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJwtKey {
    /// Absent: the key is tried for tokens without `kid` whose `alg` matches.
    #[serde(default)]
    pub kid: Option<Spanned<String>>,
    /// Required except with `jwks_file`, where each JWK names its own `alg`.
    #[serde(default)]
    pub algorithm: Option<Spanned<String>>,
    /// Name of the environment variable holding the HMAC secret (never the secret).
    #[serde(default)]
    pub secret_env: Option<Spanned<String>>,
    #[serde(default)]
    pub public_key_file: Option<Spanned<String>>,
    #[serde(default)]
    pub jwks_file: Option<Spanned<String>>,
}

/// `[auth.api_keys]`: keys are stored as SHA-256 digests, never in clear.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileApiKeys {
    pub header: Spanned<String>,
    pub keys: Vec<FileApiKey>,
}

impl Default for FileApiKeys {
    fn default() -> Self {
        FileApiKeys {
            header: spanned_str("X-API-Key"),
            keys: Vec::new(),
        }
    }
}

/// `[[auth.api_keys.keys]]`: one accepted key, by digest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileApiKey {
    pub id: Spanned<String>,
    /// Hex SHA-256 of the key (64 hex digits).
    pub sha256: Spanned<String>,
    pub user: String,
    /// Absent: the tenant is the user.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Absent: `rate_limit.default_plan`.
    #[serde(default)]
    pub plan: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[rate_limit]` (see `crate::ratelimit`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileRateLimit {
    pub default_plan: Spanned<String>,
    /// `user` | `tenant` | `api_key` | `ip` | `header:<Name>`.
    pub key: Spanned<String>,
    pub sync_interval_ms: Spanned<u64>,
    pub headers: bool,
}

impl Default for FileRateLimit {
    fn default() -> Self {
        FileRateLimit {
            default_plan: spanned_str("free"),
            key: spanned_str("tenant"),
            sync_interval_ms: default_spanned(20),
            headers: true,
        }
    }
}

/// `[plans.NAME]`: a token bucket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePlan {
    /// Sustained rate (refill).
    pub requests_per_minute: Spanned<u32>,
    /// Bucket size above the sustained rate.
    #[serde(default)]
    pub burst: u32,
    /// Requests per caller per UTC day; 0 = none ([`crate::ratelimit::quota`]).
    #[serde(default = "zero_spanned")]
    pub daily_quota: Spanned<u64>,
    /// Requests per caller per UTC calendar month; 0 = none.
    #[serde(default = "zero_spanned")]
    pub monthly_quota: Spanned<u64>,
}

fn zero_spanned() -> Spanned<u64> {
    default_spanned(0)
}

impl FilePlan {
    fn new(requests_per_minute: u32, burst: u32) -> Self {
        FilePlan {
            requests_per_minute: default_spanned(requests_per_minute),
            burst,
            daily_quota: zero_spanned(),
            monthly_quota: zero_spanned(),
        }
    }
}

/// The plans used when the file has no `plans` key at all: those of the reference file.
pub fn default_plans() -> Vec<(String, FilePlan)> {
    vec![
        ("free".to_owned(), FilePlan::new(60, 10)),
        ("pro".to_owned(), FilePlan::new(600, 100)),
        ("enterprise".to_owned(), FilePlan::new(6000, 1000)),
    ]
}

/// `[cache]`: the response cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileCache {
    pub enabled: bool,
    pub max_bytes: Spanned<u64>,
    pub max_object_bytes: Spanned<u64>,
    /// Added key: a stored body of at least this many bytes moves at its first hit
    /// into a memory-backed file, sent with sendfile(2) (src/cache/body.rs); 0 = never.
    pub file_min_bytes: Spanned<u64>,
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache {
            enabled: true,
            max_bytes: default_spanned(268_435_456),
            max_object_bytes: default_spanned(1_048_576),
            file_min_bytes: default_spanned(131_072),
        }
    }
}

/// `[[upstreams]]`: a pool of servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub name: Spanned<String>,
    pub servers: Spanned<Vec<Spanned<FileUpstreamServer>>>,
    #[serde(default = "default_balance")]
    pub balance: Spanned<String>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: Spanned<u64>,
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: Spanned<u64>,
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: Spanned<u64>,
    #[serde(default = "default_max_idle_per_worker")]
    pub max_idle_per_worker: usize,
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Absent = passive checks only.
    #[serde(default)]
    pub health_check: Option<FileHealthCheck>,
    /// Absent = no circuit breaking.
    #[serde(default)]
    pub circuit_breaker: Option<FileCircuitBreaker>,
    /// For `https://` servers; absent = the defaults (system roots, SNI = the host).
    #[serde(default)]
    pub tls: Option<FileUpstreamTls>,
    /// Header name -> template value, added to every request sent to this upstream
    /// (replacing the client's field of that name).
    #[serde(default)]
    pub request_headers: BTreeMap<Spanned<String>, Spanned<String>>,
}

fn default_balance() -> Spanned<String> {
    spanned_str("round_robin")
}
fn default_connect_timeout_ms() -> Spanned<u64> {
    default_spanned(1_000)
}
fn default_response_timeout_ms() -> Spanned<u64> {
    default_spanned(30_000)
}
fn default_idle_timeout_ms() -> Spanned<u64> {
    default_spanned(60_000)
}
fn default_max_idle_per_worker() -> usize {
    64
}
fn default_retries() -> u32 {
    1
}

/// One entry of `servers`: `"host:port"`, `"http://host:port"`, `"https://host:port"`
/// or `{ address = "host:port", weight = 3 }`.
#[derive(Debug, Clone)]
pub enum FileUpstreamServer {
    Address(String),
    Weighted(FileWeightedServer),
}

/// The table form of a server entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWeightedServer {
    pub address: Spanned<String>,
    #[serde(default = "default_weight")]
    pub weight: Spanned<u32>,
}

fn default_weight() -> Spanned<u32> {
    default_spanned(1)
}

// Hand-written rather than `#[serde(untagged)]`: an untagged enum reports every
// mistake as "data did not match any variant", losing the unknown key's name.
impl<'de> Deserialize<'de> for FileUpstreamServer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ServerVisitor;
        impl<'de> Visitor<'de> for ServerVisitor {
            type Value = FileUpstreamServer;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"host:port\", \"http(s)://host:port\" or { address, weight }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(FileUpstreamServer::Address(s.to_owned()))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                FileWeightedServer::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FileUpstreamServer::Weighted)
            }
        }
        deserializer.deserialize_any(ServerVisitor)
    }
}

/// `[upstreams.health_check]`: active checks (see `crate::upstream::health`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileHealthCheck {
    pub path: Spanned<String>,
    pub interval_ms: Spanned<u64>,
    pub timeout_ms: Spanned<u64>,
    pub healthy_threshold: Spanned<u32>,
    pub unhealthy_threshold: Spanned<u32>,
}

impl Default for FileHealthCheck {
    fn default() -> Self {
        FileHealthCheck {
            path: spanned_str("/health"),
            interval_ms: default_spanned(5_000),
            timeout_ms: default_spanned(1_000),
            healthy_threshold: default_spanned(2),
            unhealthy_threshold: default_spanned(3),
        }
    }
}

/// `[upstreams.circuit_breaker]`: per server (see `crate::upstream`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileCircuitBreaker {
    pub failure_threshold: Spanned<u32>,
    pub open_ms: Spanned<u64>,
    pub half_open_successes: Spanned<u32>,
}

impl Default for FileCircuitBreaker {
    fn default() -> Self {
        FileCircuitBreaker {
            failure_threshold: default_spanned(5),
            open_ms: default_spanned(30_000),
            half_open_successes: default_spanned(2),
        }
    }
}

/// `[[routes]]`: first match in file order wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub id: Spanned<String>,
    /// Exactly one of `path_prefix` / `path_exact`.
    #[serde(default)]
    pub path_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub path_exact: Option<Spanned<String>>,
    /// Absent = any method.
    #[serde(default)]
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// Header name -> exact value; all must match.
    #[serde(default)]
    pub headers: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Exactly one of `upstream` / `split`.
    #[serde(default)]
    pub upstream: Option<Spanned<String>>,
    #[serde(default)]
    pub split: Option<Spanned<Vec<FileSplit>>>,
    #[serde(default = "default_strip_prefix")]
    pub strip_prefix: Spanned<String>,
    /// `required` (the default: a route is closed unless it says otherwise) |
    /// `optional` | `none`.
    #[serde(default = "default_auth")]
    pub auth: Spanned<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub plan: Option<Spanned<String>>,
    /// Absent = no caching on this route.
    #[serde(default)]
    pub cache: Option<FileRouteCache>,
    #[serde(default)]
    pub request_headers: Option<FileHeaderEdits>,
    #[serde(default)]
    pub response_headers: Option<FileHeaderEdits>,
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// The route's own limit, in place of the plan's. Absent = the plan's.
    #[serde(default)]
    pub rate_limit: Option<Spanned<FileRouteRateLimit>>,
    /// `/api/profile/{user_id}`: instead of path_prefix / path_exact.
    #[serde(default)]
    pub path_template: Option<Spanned<String>>,
    /// The request's Content-Type must be in one of these ranges.
    #[serde(default)]
    pub content_type: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub rewrite: Option<Spanned<FileRewrite>>,
    /// Answer at the edge: instead of upstream / split.
    #[serde(default)]
    pub respond: Option<Spanned<FileRespond>>,
    /// Stream the body to several upstreams at once: instead of upstream / split.
    #[serde(default)]
    pub fanout: Option<Spanned<FileFanout>>,
    /// Absent = no CORS handling (requests and responses pass untouched).
    #[serde(default)]
    pub cors: Option<Spanned<FileRouteCors>>,
    /// Absent = responses are relayed with the upstream's encoding.
    #[serde(default)]
    pub compress: Option<Spanned<FileRouteCompress>>,
    /// Body-aware keys (`super::body`).
    #[serde(default)]
    pub json_match: Option<super::body::FileJsonMatch>,
    #[serde(default)]
    pub validate: Option<super::body::FileValidate>,
    #[serde(default)]
    pub json_body: Option<Spanned<super::body::FileJsonBody>>,
    /// `mirror = ["analytics"]`: upstreams that get a copy of each forwarded request.
    #[serde(default)]
    pub mirror: Option<Spanned<Vec<Spanned<String>>>>,
    /// API composition: instead of upstream / split / respond (`file/compose.rs`).
    #[serde(default)]
    pub compose: Option<Spanned<Vec<FileComposePart>>>,
    /// `websocket = true`: an `Upgrade: websocket` request is relayed (101, then bytes
    /// both ways; `pipeline/upgrade.rs`).
    #[serde(default)]
    pub websocket: Option<Spanned<bool>>,
}

fn default_strip_prefix() -> Spanned<String> {
    spanned_str("")
}
fn default_auth() -> Spanned<String> {
    spanned_str("required")
}

/// One entry of a route's `split`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSplit {
    pub upstream: Spanned<String>,
    pub weight: Spanned<u32>,
}

/// A route's `cache = { .. }` (`cache = {}` caches with every key's default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRouteCache {
    /// Absent = only responses with explicit freshness are stored.
    #[serde(default)]
    pub ttl_s: Option<Spanned<u64>>,
    /// Absent = `["GET", "HEAD"]`.
    #[serde(default)]
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub vary: Vec<Spanned<String>>,
    /// true: one entry for all callers.
    #[serde(default)]
    pub shared: bool,
}

/// `request_headers` / `response_headers = { add = { .. }, remove = [..] }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileHeaderEdits {
    pub add: BTreeMap<Spanned<String>, Spanned<String>>,
    pub remove: Vec<Spanned<String>>,
}
