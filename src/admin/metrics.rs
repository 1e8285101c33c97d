//! The metrics endpoints of the admin listener:
//!
//! - `GET /metrics`: every worker's counters ([`WorkerMetrics::snapshot`], a copy taken
//!   on the worker), merged and written in the Prometheus text format on this thread
//!   ([`render_prometheus`]). Served only with `metrics.prometheus` (and
//!   `metrics.enabled`); else 404.
//! - `GET /api/v1/metrics/routes/{id}?period=1m|5m|15m|1h`: the route's rolling window
//!   on every worker ([`WorkerMetrics::route_window`], packed slots copied on the
//!   worker), merged here ([`route_summary`]). 404 for a route no worker serves, 400
//!   for a period that is not one of the four or is longer than
//!   `metrics.latency_window_s`. `period` defaults to `1h` (or the longest the window
//!   allows).
//!
//! The `[metrics]` settings are the ones the gateway started with (a reload does not
//! change them: [`Control::metrics`]).
//!
//! [`WorkerMetrics::snapshot`]: crate::telemetry::metrics::WorkerMetrics::snapshot
//! [`WorkerMetrics::route_window`]: crate::telemetry::metrics::WorkerMetrics::route_window
//! [`Control::metrics`]: crate::runtime::Control::metrics

use super::api::{unanswered, ASK_WITHIN};
use super::http::{Request, Response};
use super::Admin;
use crate::telemetry::metrics::{
    render_prometheus, route_summary, Period, ProcessInfo, WorkerSnapshot, CONTENT_TYPE,
};

/// `GET /metrics`.
pub fn prometheus(admin: &Admin, req: &Request) -> Response {
    let m = admin.control.metrics;
    if !(m.enabled && m.prometheus) {
        return Response::error(
            404,
            "GET /metrics is off: set [metrics] prometheus = true and enabled = true, then restart",
            &req.request_id,
        );
    }
    let snaps = match admin.control.ask_all(ASK_WITHIN, |l| l.metrics.snapshot(l)) {
        Ok(s) => s,
        Err(e) => return unanswered(&e, &req.request_id),
    };
    let info = ProcessInfo {
        workers: admin.control.workers(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        driver: admin.control.driver.to_string(),
        cluster: admin.control.shared.cluster.as_ref().map(|c| {
            use std::sync::atomic::Ordering::Relaxed;
            (
                c.redis_ok.load(Relaxed),
                c.live_nodes.load(Relaxed),
                c.errors.load(Relaxed),
            )
        }),
    };
    let Some(text) = render_low_priority(&snaps, &info) else {
        return Response::error(500, "rendering the metrics failed", &req.request_id);
    };
    Response {
        status: 200,
        content_type: CONTENT_TYPE,
        body: text.into_bytes(),
        headers: String::new(),
    }
}

/// [`render_prometheus`] on a thread of its own at nice 19. Merging and writing 1,000
/// routes takes milliseconds of CPU, and with a worker on every core that time is
/// taken on some worker's core: at the lowest priority the scheduler prefers the
/// worker whenever both want the core, so a scrape uses the core's idle time and
/// does not push the worker's requests back (`loadtest/metrics.sh` measures the p99
/// with and without scrapes). On Linux the nice value is per thread.
fn render_low_priority(snaps: &[WorkerSnapshot], info: &ProcessInfo) -> Option<String> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("ringgate-metrics".into())
            .spawn_scoped(s, || {
                // Only ever lowers this thread's priority; a refusal changes nothing.
                let _ = rustix::process::setpriority_process(None, 19);
                render_prometheus(snaps, info)
            })
            .ok()?
            .join()
            .ok()
    })
}

/// `GET /api/v1/metrics/routes/{id}?period=`.
pub fn route(admin: &Admin, req: &Request, raw_id: &str) -> Response {
    let id = &req.request_id;
    let m = admin.control.metrics;
    if !m.enabled {
        return Response::error(
            404,
            "route metrics are off: set [metrics] enabled = true, then restart",
            id,
        );
    }
    let Ok(route_id) = percent_encoding::percent_decode_str(raw_id).decode_utf8() else {
        return Response::error(400, "the route id is not UTF-8", id);
    };
    let route_id = route_id.into_owned();
    let longest = Period::ALL
        .into_iter()
        .rfind(|p| p.secs() <= m.latency_window_s)
        .unwrap_or(Period::M1);
    let period = match req.param("period") {
        None => longest,
        Some(p) => match Period::parse(p, m.latency_window_s) {
            Ok(p) => p,
            Err(e) => return Response::error(400, &e.to_string(), id),
        },
    };
    let asked = route_id.clone();
    let windows = admin.control.ask_all(ASK_WITHIN, move |l| {
        l.metrics
            .route_window(&l.pipeline(), &asked, period, l.unix_now.get())
    });
    let windows: Vec<_> = match windows {
        Ok(w) => w.into_iter().flatten().collect(),
        Err(e) => return unanswered(&e, id),
    };
    if windows.is_empty() {
        return Response::error(404, &format!("no route has the id {route_id:?}"), id);
    }
    let summary = route_summary(&route_id, windows, period);
    Response::json(200, &serde_json::to_value(&summary).unwrap_or_default())
}
