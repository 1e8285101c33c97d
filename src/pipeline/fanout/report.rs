//! What a fan-out reports of its destinations: to the circuit breakers and metrics
//! ([`record`]), to the access log ([`log_summary`]) and to the client
//! ([`summary_json`]).

use std::rc::Rc;

use monoio::time::Instant;

use super::{Dest, Outcome};
use crate::pipeline::local::Local;
use crate::pipeline::stack::Pipeline;

/// Each destination's result in its server's circuit breaker and metrics.
pub(super) fn record(w: &Local, pl: &Rc<Pipeline>, dests: &[Dest<'_>]) {
    let now = Instant::now();
    for d in dests {
        let Some(si) = d.si else {
            continue;
        };
        let slot = w.metrics.server_slot(pl, d.ui, si);
        w.metrics.fanout_result(
            slot,
            matches!(d.outcome, Some(Outcome::Status(s)) if (200..300).contains(&s)),
        );
        match &d.outcome {
            Some(Outcome::Status(s)) => {
                d.up.record(si, *s < 500, now);
                let us = now.saturating_duration_since(d.started).as_micros() as u64;
                w.metrics.attempt_done(slot, us);
            }
            Some(Outcome::Failed(e)) => {
                w.metrics.attempt_failed(slot, e);
                if e.is_upstream_failure() {
                    d.up.record(si, false, now);
                    crate::telemetry::inc(&w.counters.upstream_errors);
                }
            }
            None => {}
        }
    }
}

/// The access log's `upstream` field: `name:status` or `name:error`, space-separated.
pub(super) fn log_summary(dests: &[Dest<'_>]) -> String {
    let mut s = String::new();
    for d in dests {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(d.name);
        s.push(':');
        match &d.outcome {
            Some(Outcome::Status(st)) => s.push_str(itoa::Buffer::new().format(*st)),
            _ => s.push_str("error"),
        }
    }
    s
}

/// `{"destinations": {"archive": {"status": 201, "bytes_sent": N}, "cdn": {"error":
/// "...", "bytes_sent": N}}, "succeeded": 1, "required": 2}`, destinations in the
/// route's order.
pub(super) fn summary_json(dests: &[Dest<'_>], ok: usize, require: usize) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::from("{\"destinations\":{");
    for (i, d) in dests.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&q(d.name));
        out.push_str(":{");
        match &d.outcome {
            Some(Outcome::Status(s)) => {
                out.push_str("\"status\":");
                out.push_str(itoa::Buffer::new().format(*s));
            }
            Some(Outcome::Failed(e)) => {
                out.push_str("\"error\":");
                out.push_str(&q(&e.to_string()));
            }
            None => out.push_str("\"error\":\"unknown\""),
        }
        out.push_str(",\"bytes_sent\":");
        out.push_str(itoa::Buffer::new().format(d.sent));
        out.push('}');
    }
    out.push_str("},\"succeeded\":");
    out.push_str(itoa::Buffer::new().format(ok));
    out.push_str(",\"required\":");
    out.push_str(itoa::Buffer::new().format(require));
    out.push('}');
    out
}
