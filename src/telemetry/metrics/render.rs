//! [`render_prometheus`]: the workers' snapshots merged (summed per route, per server)
//! and written as the Prometheus text exposition format 0.0.4, on the admin thread.
//!
//! The encoding is `prometheus-client`'s (`encoding::prometheus_text`, through its
//! `Collector` trait): it writes `# HELP`/`# TYPE`, the `_total` suffix of counters,
//! cumulative `_bucket{le=..}` lines with Go's float formatting of `le`, and escapes
//! label values (`\`, `"` and newlines: route ids are user text). Its own metric types
//! (atomics behind `Arc`s) are not used: the values are the ones merged here. The text
//! format, not its OpenMetrics encoder, because OpenMetrics names a counter's family
//! without `_total` and ends in `# EOF`, which plain text-format parsers (and
//! `curl | grep`) do not expect; every Prometheus server reads the text format.
//! [`CONTENT_TYPE`] is the one the format defines.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::names as n;
use super::{Buckets, RouteCounts, ServerCounts, WorkerSnapshot};
use crate::telemetry::CounterValues;

/// `Content-Type` of [`render_prometheus`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What the process knows beyond its workers' counters.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub workers: usize,
    /// The crate's version (`ringgate_build_info{version=..}`).
    pub version: String,
    /// The I/O driver the workers run (`io_uring` or `epoll`).
    pub driver: String,
    /// `[cluster]`: (Redis reachable, live nodes, failed sync rounds); `None`: no
    /// section, no cluster metrics.
    pub cluster: Option<(bool, u64, u64)>,
}

/// (upstream, server, worker): a server as one worker sees it.
type ServerOfWorker = (Arc<str>, Arc<str>, usize);

/// Everything to expose, merged across workers.
#[derive(Debug, Default)]
struct Merged {
    routes: BTreeMap<Arc<str>, RouteCounts>,
    /// (route, plan, kind) -> count.
    rejections: BTreeMap<(Arc<str>, Arc<str>, u8), u64>,
    servers: BTreeMap<(Arc<str>, Arc<str>), ServerCounts>,
    /// (upstream, server, worker) -> (healthy, circuit state index).
    states: BTreeMap<ServerOfWorker, (bool, usize)>,
    counters: CounterValues,
    /// upstream -> counts by `names::MIRROR_RESULTS`.
    mirrors: BTreeMap<Arc<str>, [u64; 3]>,
    cache_bytes: u64,
    cache_entries: u64,
    cache_evictions: u64,
    workers: usize,
    version: String,
    driver: String,
    cluster: Option<(bool, u64, u64)>,
}

/// Merge the workers' snapshots and write them in the Prometheus text format.
pub fn render_prometheus(snaps: &[WorkerSnapshot], info: &ProcessInfo) -> String {
    let mut m = Merged {
        workers: info.workers,
        version: info.version.clone(),
        driver: info.driver.clone(),
        cluster: info.cluster,
        ..Merged::default()
    };
    for s in snaps {
        for r in &s.routes {
            m.routes.entry(r.id.clone()).or_default().add(&r.counts);
            for (plan, kind, count) in &r.rejections {
                *m.rejections
                    .entry((r.id.clone(), plan.clone(), *kind))
                    .or_default() += count;
            }
        }
        for v in &s.servers {
            let e = m
                .servers
                .entry((v.upstream.clone(), v.server.clone()))
                .or_default();
            e.duration.add(&v.counts.duration);
            for (a, b) in e.errors.iter_mut().zip(v.counts.errors) {
                *a += b;
            }
            for (a, b) in e.fanout.iter_mut().zip(v.counts.fanout) {
                *a += b;
            }
            m.states.insert(
                (v.upstream.clone(), v.server.clone(), s.worker),
                (v.healthy, v.circuit.index()),
            );
        }
        add_counters(&mut m.counters, &s.counters);
        for (up, counts) in &s.mirrors {
            let e = m.mirrors.entry(up.clone()).or_default();
            for (a, b) in e.iter_mut().zip(counts) {
                *a += b;
            }
        }
        m.cache_bytes += s.cache.bytes as u64;
        m.cache_entries += s.cache.entries as u64;
        m.cache_evictions += s.cache.evictions;
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(m));
    let mut out = String::with_capacity(64 * 1024);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

fn add_counters(a: &mut CounterValues, b: &CounterValues) {
    a.requests += b.requests;
    a.upstream_errors += b.upstream_errors;
    a.retries += b.retries;
    a.connections_refused += b.connections_refused;
    a.accept_errors += b.accept_errors;
    a.cache_refreshes += b.cache_refreshes;
    a.task_panics += b.task_panics;
    a.connections_busy += b.connections_busy;
    a.tls_handshakes += b.tls_handshakes;
    a.tls_resumed += b.tls_resumed;
    a.tls_handshake_failures += b.tls_handshake_failures;
    a.connections_plain += b.connections_plain;
    a.connections_tls += b.connections_tls;
    a.open_plain += b.open_plain;
    a.open_tls += b.open_tls;
    a.websockets += b.websockets;
    a.websockets_open += b.websockets_open;
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(e: &mut MetricEncoder, labels: &impl EncodeLabelSet, v: u64) -> Fmt {
    e.encode_family(labels)?
        .encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

fn gauge(e: &mut MetricEncoder, labels: &impl EncodeLabelSet, v: u64) -> Fmt {
    e.encode_family(labels)?.encode_gauge(&v)
}

fn histogram(e: &mut MetricEncoder, labels: &impl EncodeLabelSet, b: &Buckets) -> Fmt {
    let buckets: Vec<(f64, u64)> = n::DURATION_BUCKETS_S
        .iter()
        .copied()
        .zip(b.counts)
        .collect();
    e.encode_family(labels)?.encode_histogram::<NoLabelSet>(
        b.sum_us as f64 / 1e6,
        b.count(),
        &buckets,
        None,
    )
}

/// A family without labels.
fn single(d: &mut DescriptorEncoder, name: &str, help: &str, t: MetricType, v: u64) -> Fmt {
    let mut e = d.encode_descriptor(name, help, None, t)?;
    match t {
        MetricType::Counter => e.encode_counter::<NoLabelSet, u64, u64>(&v, None),
        _ => e.encode_gauge(&v),
    }
}

impl Collector for Merged {
    fn encode(&self, mut d: DescriptorEncoder) -> Fmt {
        use MetricType::{Counter, Histogram};
        let c = &self.counters;

        let mut e = d.encode_descriptor(
            n::REQUESTS,
            "Requests by route, method and status class (a client gone before the answer counts as 4xx).",
            None,
            Counter,
        )?;
        for (id, r) in &self.routes {
            for (mi, row) in r.requests.iter().enumerate() {
                for (ci, &v) in row.iter().enumerate() {
                    if v > 0 {
                        let l = [
                            ("route", &**id),
                            ("method", n::METHODS[mi]),
                            ("status_class", n::STATUS_CLASSES[ci]),
                        ];
                        counter(&mut e, &l, v)?;
                    }
                }
            }
        }
        let mut e = d.encode_descriptor(
            n::REQUEST_DURATION,
            "Request duration from the head's arrival to the response's last byte, by route.",
            None,
            Histogram,
        )?;
        for (id, r) in &self.routes {
            histogram(&mut e, &[("route", &**id)], &r.duration)?;
        }
        for (name, help, get) in [
            (
                n::RECEIVED_BYTES,
                "Request bytes read from clients (head and body), by route.",
                (|r: &RouteCounts| r.bytes_in) as fn(&RouteCounts) -> u64,
            ),
            (
                n::SENT_BYTES,
                "Response bytes written to clients (head and body), by route.",
                |r: &RouteCounts| r.bytes_out,
            ),
        ] {
            let mut e = d.encode_descriptor(name, help, None, Counter)?;
            for (id, r) in &self.routes {
                counter(&mut e, &[("route", &**id)], get(r))?;
            }
        }
        let mut e = d.encode_descriptor(
            n::CACHE_REQUESTS,
            "Cache outcomes on cached routes: hit, miss, stale (served past freshness), bypass.",
            None,
            Counter,
        )?;
        for (id, r) in &self.routes {
            if r.cache.iter().any(|&v| v > 0) {
                for (i, &v) in r.cache.iter().enumerate() {
                    counter(
                        &mut e,
                        &[("route", &**id), ("result", n::CACHE_RESULTS[i])],
                        v,
                    )?;
                }
            }
        }
        let mut e = d.encode_descriptor(
            n::RATELIMIT_REJECTIONS,
            "Requests refused with 429 by the rate-limit stage, by route, plan and kind.",
            None,
            Counter,
        )?;
        for ((route, plan, kind), &v) in &self.rejections {
            let kind = n::REJECTION_KINDS[usize::from(*kind).min(1)];
            let l = [("route", &**route), ("plan", &**plan), ("kind", kind)];
            counter(&mut e, &l, v)?;
        }
        let mut e = d.encode_descriptor(
            n::AUTH_FAILURES,
            "Requests refused by the auth stage (400, 401, 403), by route and reason.",
            None,
            Counter,
        )?;
        for (id, r) in &self.routes {
            for (i, &v) in r.auth.iter().enumerate() {
                if v > 0 {
                    counter(
                        &mut e,
                        &[("route", &**id), ("reason", n::AUTH_REASONS[i])],
                        v,
                    )?;
                }
            }
        }
        self.encode_upstreams(&mut d)?;
        self.encode_process(&mut d, c)
    }
}

impl Merged {
    fn encode_upstreams(&self, d: &mut DescriptorEncoder) -> Fmt {
        use MetricType::{Counter, Gauge, Histogram};
        let mut e = d.encode_descriptor(
            n::UPSTREAM_DURATION,
            "One attempt at an upstream server, from picking it to the response's last byte.",
            None,
            Histogram,
        )?;
        for ((up, server), s) in &self.servers {
            histogram(
                &mut e,
                &[("upstream", &**up), ("server", &**server)],
                &s.duration,
            )?;
        }
        let mut e = d.encode_descriptor(
            n::UPSTREAM_ERRORS,
            "Failed attempts at an upstream server, by kind.",
            None,
            Counter,
        )?;
        for ((up, server), s) in &self.servers {
            for (i, &v) in s.errors.iter().enumerate() {
                let l = [
                    ("upstream", &**up),
                    ("server", &**server),
                    ("kind", n::UPSTREAM_ERROR_KINDS[i]),
                ];
                counter(&mut e, &l, v)?;
            }
        }
        let mut e = d.encode_descriptor(
            n::FANOUT_DESTINATIONS,
            "Fan-out destinations served by a server, by result (ok: answered 2xx).",
            None,
            Counter,
        )?;
        for ((up, server), s) in &self.servers {
            if s.fanout == [0, 0] {
                continue;
            }
            for (result, v) in ["ok", "failed"].into_iter().zip(s.fanout) {
                let l = [
                    ("upstream", &**up),
                    ("server", &**server),
                    ("result", result),
                ];
                counter(&mut e, &l, v)?;
            }
        }
        let mut e = d.encode_descriptor(
            n::UPSTREAM_HEALTHY,
            "1 when the server passes its active health checks (or has none), per worker.",
            None,
            Gauge,
        )?;
        for ((up, server, worker), (healthy, _)) in &self.states {
            let w = worker.to_string();
            let l = [("upstream", &**up), ("server", &**server), ("worker", &*w)];
            gauge(&mut e, &l, u64::from(*healthy))?;
        }
        let mut e = d.encode_descriptor(
            n::UPSTREAM_CIRCUIT,
            "1 for the circuit breaker's current state (closed, open, half_open), per worker.",
            None,
            Gauge,
        )?;
        for ((up, server, worker), (_, state)) in &self.states {
            let w = worker.to_string();
            for (i, name) in n::CIRCUIT_STATES.iter().enumerate() {
                let l = [
                    ("upstream", &**up),
                    ("server", &**server),
                    ("worker", &*w),
                    ("state", name),
                ];
                gauge(&mut e, &l, u64::from(i == *state))?;
            }
        }
        let mut e = d.encode_descriptor(
            n::MIRROR_REQUESTS,
            "Copies of requests for mirrored upstreams: ok (answered below 500), failed, dropped (never sent).",
            None,
            Counter,
        )?;
        for (up, counts) in &self.mirrors {
            for (i, &v) in counts.iter().enumerate() {
                let l = [("upstream", &**up), ("result", n::MIRROR_RESULTS[i])];
                counter(&mut e, &l, v)?;
            }
        }
        single(
            d,
            n::UPSTREAM_RETRIES,
            "Requests sent again to another server after a failed attempt.",
            Counter,
            self.counters.retries,
        )
    }

    fn encode_process(&self, d: &mut DescriptorEncoder, c: &CounterValues) -> Fmt {
        use MetricType::{Counter, Gauge};
        let mut e = d.encode_descriptor(
            n::CONNECTIONS_OPEN,
            "Client connections open now, plain and TLS.",
            None,
            Gauge,
        )?;
        gauge(&mut e, &[("transport", n::TRANSPORTS[0])], c.open_plain)?;
        gauge(&mut e, &[("transport", n::TRANSPORTS[1])], c.open_tls)?;
        let mut e = d.encode_descriptor(
            n::CONNECTIONS,
            "Client connections accepted, plain and TLS.",
            None,
            Counter,
        )?;
        counter(
            &mut e,
            &[("transport", n::TRANSPORTS[0])],
            c.connections_plain,
        )?;
        counter(
            &mut e,
            &[("transport", n::TRANSPORTS[1])],
            c.connections_tls,
        )?;
        let mut e = d.encode_descriptor(
            n::TLS_HANDSHAKES,
            "TLS handshakes: full, resumed (a session ticket or id), failed.",
            None,
            Counter,
        )?;
        let full = c.tls_handshakes.saturating_sub(c.tls_resumed);
        counter(&mut e, &[("result", "full")], full)?;
        counter(&mut e, &[("result", "resumed")], c.tls_resumed)?;
        counter(&mut e, &[("result", "failed")], c.tls_handshake_failures)?;
        let singles = [
            (
                n::CONNECTIONS_BUSY,
                "Client connections busy with a request now.",
                Gauge,
                c.connections_busy,
            ),
            (
                n::WEBSOCKETS_OPEN,
                "WebSocket relays open now (each also a busy client connection).",
                Gauge,
                c.websockets_open,
            ),
            (
                n::WEBSOCKETS,
                "WebSocket relays started (the upstream's 101 relayed to the client).",
                Counter,
                c.websockets,
            ),
            (
                n::CONNECTIONS_REFUSED,
                "Connections closed at once because server.max_connections was reached.",
                Counter,
                c.connections_refused,
            ),
            (
                n::ACCEPT_ERRORS,
                "Accepts that failed (out of descriptors or memory) and made a worker wait.",
                Counter,
                c.accept_errors,
            ),
            (
                n::CACHE_STORED_BYTES,
                "Bytes held by the response cache, all workers.",
                Gauge,
                self.cache_bytes,
            ),
            (
                n::CACHE_ENTRIES,
                "Entries held by the response cache, all workers.",
                Gauge,
                self.cache_entries,
            ),
            (
                n::CACHE_EVICTIONS,
                "Cache entries evicted to make room.",
                Counter,
                self.cache_evictions,
            ),
            (
                n::CACHE_REFRESHES,
                "Background refreshes of stale entries (stale-while-revalidate) started.",
                Counter,
                c.cache_refreshes,
            ),
            (
                n::TASK_PANICS,
                "Connection tasks ended by a panic (each one a bug).",
                Counter,
                c.task_panics,
            ),
            (n::WORKERS, "Worker threads.", Gauge, self.workers as u64),
        ];
        for (name, help, t, v) in singles {
            single(d, name, help, t, v)?;
        }
        if let Some((up, live, failures)) = self.cluster {
            let cluster = [
                (
                    n::CLUSTER_REDIS_UP,
                    "1 while the cluster's last sync round reached Redis; 0: limits are this node's share.",
                    Gauge,
                    u64::from(up),
                ),
                (
                    n::CLUSTER_LIVE_NODES,
                    "Live nodes last counted from the heartbeats in Redis.",
                    Gauge,
                    live,
                ),
                (
                    n::CLUSTER_SYNC_FAILURES,
                    "Cluster sync rounds that failed (Redis down or slow).",
                    Counter,
                    failures,
                ),
            ];
            for (name, help, t, v) in cluster {
                single(d, name, help, t, v)?;
            }
        }
        let mut e = d.encode_descriptor(
            n::BUILD_INFO,
            "Always 1: the version and the I/O driver as labels.",
            None,
            Gauge,
        )?;
        let l = [("version", &*self.version), ("driver", &*self.driver)];
        gauge(&mut e, &l, 1)
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
pub(crate) mod tests;
