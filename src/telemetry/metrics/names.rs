//! Every metric name and every fixed label value ringgate exposes, in one place
//! (STYLE: "metric names only from one module"). Names follow the Prometheus
//! conventions: a `ringgate_` prefix, base units (`_seconds`, `_bytes`), and counters
//! ending in `_total`. The encoder appends `_total` to a counter's name itself, so the
//! counter constants below are written without it: [`REQUESTS`] is exposed as
//! `ringgate_requests_total` (the README's table lists the exposed names).
//!
//! The label values a request can produce (methods, status classes, cache outcomes,
//! auth failure reasons, upstream error kinds) are fixed lists here too: per-request
//! recording stores counts in arrays indexed by position in these lists, never a
//! string.

// --- requests, per route ---------------------------------------------------------
/// Counter: requests by `route`, `method`, `status_class`.
pub const REQUESTS: &str = "ringgate_requests";
/// Histogram (seconds): whole request duration, arrival to the last byte, by `route`.
pub const REQUEST_DURATION: &str = "ringgate_request_duration_seconds";
/// Counter (bytes): request bytes read from clients (head and body), by `route`.
pub const RECEIVED_BYTES: &str = "ringgate_received_bytes";
/// Counter (bytes): response bytes written to clients (head and body), by `route`.
pub const SENT_BYTES: &str = "ringgate_sent_bytes";
/// Counter: cache outcomes of requests on cached routes, by `route`, `result`.
pub const CACHE_REQUESTS: &str = "ringgate_cache_requests";
/// Counter: requests refused with 429, by `route`, `plan`, `kind` (`rate`; `quota`
/// once daily/monthly quotas exist).
pub const RATELIMIT_REJECTIONS: &str = "ringgate_ratelimit_rejections";
/// Counter: requests refused by the auth stage, by `route`, `reason`.
pub const AUTH_FAILURES: &str = "ringgate_auth_failures";

// --- upstreams, per server --------------------------------------------------------
/// Histogram (seconds): one attempt at a server, from picking it to the response's
/// end, by `upstream`, `server`.
pub const UPSTREAM_DURATION: &str = "ringgate_upstream_request_duration_seconds";
/// Counter: failed attempts, by `upstream`, `server`, `kind`.
pub const UPSTREAM_ERRORS: &str = "ringgate_upstream_errors";
/// Gauge: 1 when the server passes its active health checks (or has none), by
/// `upstream`, `server`, `worker`.
pub const UPSTREAM_HEALTHY: &str = "ringgate_upstream_healthy";
/// Gauge: 1 for the circuit breaker's current `state` (one series per state), by
/// `upstream`, `server`, `worker`, `state`.
pub const UPSTREAM_CIRCUIT: &str = "ringgate_upstream_circuit_state";
/// Counter: fan-out destinations (`fanout` routes) by `upstream`, `server`, `result`
/// (`ok`: answered 2xx; `failed`: any other answer, or none).
pub const FANOUT_DESTINATIONS: &str = "ringgate_fanout_destinations";
/// Counter: retries to another server.
pub const UPSTREAM_RETRIES: &str = "ringgate_upstream_retries";
/// Counter: copies of requests for mirrored upstreams (`mirror`), by `upstream`,
/// `result` ([`MIRROR_RESULTS`]).
pub const MIRROR_REQUESTS: &str = "ringgate_mirror_requests";

// --- connections ------------------------------------------------------------------
/// Gauge: client connections open now, by `transport` (`plain`, `tls`).
pub const CONNECTIONS_OPEN: &str = "ringgate_connections_open";
/// Counter: client connections accepted, by `transport`.
pub const CONNECTIONS: &str = "ringgate_connections";
/// Gauge: client connections busy with a request now (the others idle).
pub const CONNECTIONS_BUSY: &str = "ringgate_connections_busy";
/// Gauge: WebSocket relays open now (`websocket = true` routes).
pub const WEBSOCKETS_OPEN: &str = "ringgate_websockets_open";
/// Counter: WebSocket relays started.
pub const WEBSOCKETS: &str = "ringgate_websockets";
/// Counter: connections refused at `server.max_connections`.
pub const CONNECTIONS_REFUSED: &str = "ringgate_connections_refused";
/// Counter: accepts that failed and made a worker wait.
pub const ACCEPT_ERRORS: &str = "ringgate_accept_errors";
/// Gauge: `[cluster]` only: 1 while the last sync round reached Redis, else 0 (the
/// node limits with its share).
pub const CLUSTER_REDIS_UP: &str = "ringgate_cluster_redis_up";
/// Gauge: `[cluster]` only: live nodes last counted from the heartbeats in Redis.
pub const CLUSTER_LIVE_NODES: &str = "ringgate_cluster_live_nodes";
/// Counter: `[cluster]` only: sync rounds that failed (Redis down or slow).
pub const CLUSTER_SYNC_FAILURES: &str = "ringgate_cluster_sync_failures";
/// Counter: TLS handshakes by `result` (`full`, `resumed`, `failed`).
pub const TLS_HANDSHAKES: &str = "ringgate_tls_handshakes";

// --- cache store ------------------------------------------------------------------
/// Gauge (bytes): bytes held by the response cache (all workers).
pub const CACHE_STORED_BYTES: &str = "ringgate_cache_stored_bytes";
/// Gauge: entries held by the response cache.
pub const CACHE_ENTRIES: &str = "ringgate_cache_entries";
/// Counter: entries evicted to make room.
pub const CACHE_EVICTIONS: &str = "ringgate_cache_evictions";
/// Counter: background refreshes (`stale-while-revalidate`) started.
pub const CACHE_REFRESHES: &str = "ringgate_cache_refreshes";

// --- process ----------------------------------------------------------------------
/// Gauge: worker threads.
pub const WORKERS: &str = "ringgate_workers";
/// Gauge, always 1: `version`, `driver` as labels.
pub const BUILD_INFO: &str = "ringgate_build_info";
/// Counter: connection tasks ended by a panic (each a bug).
pub const TASK_PANICS: &str = "ringgate_task_panics";

// --- label values -----------------------------------------------------------------

/// The `route` label of requests no route matched (404, 405): route ids cannot be
/// empty, so it is never a route's. (Prometheus treats an empty label as absent:
/// `ringgate_requests_total{route=""}` selects exactly these.)
pub const NO_ROUTE: &str = "";

/// `method` values, indexed by [`method_index`].
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "other",
];

/// Index into [`METHODS`].
pub fn method_index(m: crate::http::Method) -> usize {
    use crate::http::Method as M;
    match m {
        M::Get => 0,
        M::Head => 1,
        M::Post => 2,
        M::Put => 3,
        M::Delete => 4,
        M::Options => 5,
        M::Patch => 6,
        M::Trace => 7,
        M::Connect => 8,
        M::Other => 9,
    }
}

/// `status_class` values, indexed by [`status_class`].
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`STATUS_CLASSES`]. A request whose client left before any answer
/// (status 0) is counted as 499, nginx's "client closed request": a failed 4xx.
pub fn status_class(status: u16) -> usize {
    match status {
        0 => 3,
        s => (usize::from(s / 100)).clamp(1, 5) - 1,
    }
}

/// `result` values of [`CACHE_REQUESTS`]. `stale` is a stored response served past
/// its freshness (`stale-while-revalidate`, `max-stale`, `stale-if-error`); `bypass`
/// a request the cache did not look up (method not cached here, `no-store`).
pub const CACHE_RESULTS: [&str; 4] = ["hit", "miss", "stale", "bypass"];

/// `kind` values of [`RATELIMIT_REJECTIONS`].
pub const REJECTION_KINDS: [&str; 2] = ["rate", "quota"];

/// `reason` values of [`AUTH_FAILURES`]: the auth stage's own, then
/// [`crate::auth::AuthFailure::code`]'s and [`crate::auth::Ambiguity::code`]'s.
/// Anything else is counted as `other`.
pub const AUTH_REASONS: [&str; 21] = [
    "no_credential",
    "insufficient_scope",
    "no_client_certificate",
    "malformed",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "wrong_issuer",
    "wrong_audience",
    "unknown_kid",
    "algorithm_not_allowed",
    "missing_claim",
    "invalid_claim",
    "unknown_api_key",
    "too_large",
    "two_authorizations",
    "two_api_keys",
    "authorization_list",
    "api_key_list",
    "other",
];

/// Index into [`AUTH_REASONS`] (`other` for a reason not listed).
pub fn auth_reason_index(reason: &str) -> usize {
    AUTH_REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(AUTH_REASONS.len() - 1)
}

/// `kind` values of [`UPSTREAM_ERRORS`], indexed by [`upstream_error_index`].
pub const UPSTREAM_ERROR_KINDS: [&str; 6] = [
    "connect",
    "connect_timeout",
    "timeout",
    "reset",
    "tls",
    "bad_response",
];

/// Index into [`UPSTREAM_ERROR_KINDS`] for a failed attempt; `None` for a failure
/// that is not the upstream's (the client left, the gateway ran out of sockets).
pub fn upstream_error_index(e: &crate::pipeline::error::ProxyError) -> Option<usize> {
    use crate::pipeline::error::ProxyError as E;
    Some(match e {
        E::Connect(_) => 0,
        E::ConnectTimeout => 1,
        E::ResponseTimeout | E::RequestTimeout => 2,
        E::UpstreamIo(_) | E::UpstreamClosed => 3,
        E::UpstreamTls(_) => 4,
        E::UpstreamBadResponse(_) | E::UpstreamTruncated => 5,
        E::ClientClosed
        | E::ClientIo(_)
        | E::ClientBadChunk(_)
        | E::BodyTooLarge(_)
        | E::NoServer
        | E::Exhausted(_)
        | E::UpstreamServerError(_) => return None,
    })
}

/// `result` values of [`MIRROR_REQUESTS`]: `ok` (the mirror answered below 500),
/// `failed` (a 5xx, no answer, a timeout), `dropped` (never sent: over
/// `mirror_max_in_flight` or `mirror_max_body_bytes`, or its body never completed).
pub const MIRROR_RESULTS: [&str; 3] = crate::pipeline::mirror::RESULTS;

/// `state` values of [`UPSTREAM_CIRCUIT`].
pub const CIRCUIT_STATES: [&str; 3] = ["closed", "open", "half_open"];

/// `transport` values of [`CONNECTIONS`] and [`CONNECTIONS_OPEN`].
pub const TRANSPORTS: [&str; 2] = ["plain", "tls"];

/// Upper bounds (seconds) of the duration histograms' buckets, `+Inf` implied. From
/// half a millisecond (a cached answer) to a minute (the default request timeout).
pub const DURATION_BUCKETS_S: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// [`DURATION_BUCKETS_S`] in microseconds, what recording compares against.
pub const DURATION_BUCKETS_US: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_tables_agree() {
        for (s, us) in DURATION_BUCKETS_S.iter().zip(DURATION_BUCKETS_US) {
            assert_eq!((s * 1e6).round() as u64, us);
        }
        assert!(DURATION_BUCKETS_US.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn auth_reasons_cover_every_code() {
        use crate::auth::{Ambiguity, AuthFailure};
        let failures = [
            AuthFailure::Malformed,
            AuthFailure::BadSignature,
            AuthFailure::Expired,
            AuthFailure::NotYetValid,
            AuthFailure::IssuedInFuture,
            AuthFailure::WrongIssuer,
            AuthFailure::WrongAudience,
            AuthFailure::UnknownKid,
            AuthFailure::AlgorithmNotAllowed,
            AuthFailure::MissingClaim("sub"),
            AuthFailure::InvalidClaim("exp"),
            AuthFailure::UnknownApiKey,
            AuthFailure::TooLarge,
        ];
        for f in failures {
            assert_ne!(AUTH_REASONS[auth_reason_index(f.code())], "other", "{f:?}");
        }
        for a in [
            Ambiguity::TwoAuthorizations,
            Ambiguity::TwoApiKeys,
            Ambiguity::AuthorizationList,
            Ambiguity::ApiKeyList,
        ] {
            assert_ne!(AUTH_REASONS[auth_reason_index(a.code())], "other", "{a:?}");
        }
        assert_eq!(AUTH_REASONS[auth_reason_index("nonsense")], "other");
    }

    #[test]
    fn status_classes() {
        assert_eq!(STATUS_CLASSES[status_class(200)], "2xx");
        assert_eq!(STATUS_CLASSES[status_class(429)], "4xx");
        assert_eq!(STATUS_CLASSES[status_class(0)], "4xx");
        assert_eq!(STATUS_CLASSES[status_class(101)], "1xx");
        assert_eq!(STATUS_CLASSES[status_class(504)], "5xx");
        assert_eq!(STATUS_CLASSES[status_class(999)], "5xx");
    }
}
