//! The trace stage (`[tracing] traceparent`, on by default): on arrival, a request
//! gets its W3C Trace Context. A valid `traceparent` from the client keeps its trace
//! id and flags with a new span id (the gateway's hop); a missing or invalid one
//! starts a trace (random trace id, sampled). The result goes upstream in place of the
//! client's field ([`super::forward`]) and into the access log (`trace_id`), for
//! requests answered at the edge too. `tracestate` is forwarded as received.
//!
//! Per request: one header lookup, three random numbers from the worker's generator
//! and 55 bytes of hex; no allocation.

use super::context::RequestCtx;
use super::local::Local;
use crate::config::Config;
use crate::http::header::HeaderKind;
use crate::http::traceparent;
use crate::http::RequestHead;

/// The stage's arrival phase.
pub fn arrival(w: &Local, cfg: &Config, head: &RequestHead, buf: &[u8], cx: &mut RequestCtx) {
    if !cfg.tracing.traceparent {
        return;
    }
    let mut found = head
        .headers
        .iter()
        .filter(|h| h.kind == HeaderKind::TraceParent);
    // Two fields: the specification treats that as no (valid) field.
    let incoming = match (found.next(), found.next()) {
        (Some(h), None) => traceparent::parse(h.value.get(buf)),
        _ => None,
    };
    let mut rng = w.rng.borrow_mut();
    let (trace_id, flags) = match incoming {
        Some(t) => (t.trace_id, t.flags),
        None => {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&rng.u64(..).to_be_bytes());
            id[8..].copy_from_slice(&(rng.u64(..) | 1).to_be_bytes());
            (id, 0x01)
        }
    };
    traceparent::write(&mut cx.trace, &trace_id, rng.u64(..), flags);
    cx.traced = true;
}
