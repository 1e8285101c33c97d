//! How copies travel to a mirror (see the parent module's "How copies travel"): a
//! queue per mirrored upstream on each worker, up to [`LANES`] lane tasks that send it
//! a batch at a time on one connection each, pipelined, and read and discard the
//! answers in order.

use std::rc::Rc;

use monoio::time::Instant;

use super::{MirrorSlot, Outcome, Outgoing, DISCARD_LIMIT};
use crate::http::ResponseHead;
use crate::pipeline::local::Local;
use crate::task::contain::Contained;
use crate::upstream::client::{self, HeadLimits, UpstreamError};
use crate::upstream::UpstreamState;

/// Connections (lanes) a worker uses at once for one mirrored upstream.
pub const LANES: usize = 8;
/// Copies a lane sends together, pipelined in one write, at most (and at most
/// [`BATCH_BYTES`], unless a single copy is larger).
const BATCH: usize = 32;
const BATCH_BYTES: usize = 64 * 1024;

/// Queue a copy for its mirror's lanes, starting a lane if none is about to take
/// the queue and fewer than [`LANES`] run. The queue is bounded by the in-flight
/// bound: a copy holds its place from the moment it is made.
pub(super) fn queue(w: &Rc<Local>, copy: Outgoing) {
    let slot = copy.place.0.clone();
    slot.queue.borrow_mut().push_back(copy);
    if !slot.starting.get() && slot.lanes.get() < LANES {
        slot.starting.set(true);
        slot.lanes.set(slot.lanes.get() + 1);
        monoio::spawn(lane(w.clone(), slot));
    }
}

/// The copies at the front of `slot`'s queue that can go together: the same upstream
/// state (a reload may queue copies for two), within the batch bounds.
fn take_batch(slot: &MirrorSlot, out: &mut Vec<Outgoing>) {
    let mut queue = slot.queue.borrow_mut();
    let mut bytes = 0;
    while let Some(next) = queue.front() {
        let fits = out.is_empty()
            || (out.len() < BATCH
                && bytes + next.bytes.len() <= BATCH_BYTES
                && Rc::ptr_eq(&out[0].up, &next.up));
        if !fits {
            break;
        }
        bytes += next.bytes.len();
        out.extend(queue.pop_front());
    }
}

/// One lane: a task that sends the queued copies, a batch at a time, each batch on
/// one connection (pipelined: HTTP/1.1 answers come in order, RFC 9112 9.3.2), until
/// the queue is empty. Under load, copies made in the same turn of the worker go in
/// one write and their answers often come in one read; under light load a batch is
/// one copy.
async fn lane(w: Rc<Local>, slot: Rc<MirrorSlot>) {
    // This lane takes the queue now: a copy queued from here on may start another.
    slot.starting.set(false);
    let limits = HeadLimits::from(&w.cfg.server.limits);
    let mut batch = Vec::new();
    let mut status = Vec::new();
    loop {
        take_batch(&slot, &mut batch);
        let Some(first) = batch.first() else {
            slot.lanes.set(slot.lanes.get() - 1);
            return;
        };
        let up = first.up.clone();
        let timeout = batch.iter().map(|c| c.timeout).max().unwrap_or_default();
        status.clear();
        let sent = monoio::time::timeout(
            timeout,
            Contained::new(exchange(&up, &mut batch, limits, &mut status)),
        )
        .await;
        if matches!(sent, Ok(None)) {
            crate::telemetry::inc(&w.counters.task_panics);
        }
        let mut failed = 0;
        for (i, copy) in batch.drain(..).enumerate() {
            // Its place under the bound is given back as the copy is dropped here.
            match status.get(i) {
                Some(&s) if s < 500 => copy.place.0.count(Outcome::Ok),
                _ => {
                    failed += 1;
                    copy.place.0.count(Outcome::Failed)
                }
            }
        }
        if failed > 0 && w.cfg.log.level >= crate::config::LogLevel::Debug {
            eprintln!("ringgate: {failed} mirror copies to {} failed", up.cfg.name);
        }
    }
}

/// A batch of copies to a server of `up` on one connection: sent in one write, each
/// answer's head read (its status pushed to `status`, in order) and its body
/// discarded. A pooled connection that fails before any answer byte is replaced once
/// by a new one (the client's guarantee, as in `fetch`); copies left unanswered
/// otherwise have no status.
async fn exchange(
    up: &UpstreamState,
    batch: &mut [Outgoing],
    limits: HeadLimits,
    status: &mut Vec<u16>,
) -> Result<(), UpstreamError> {
    let now = Instant::now();
    let si = up
        .balancer
        .pick(
            &|i| up.available(i, now),
            &|i| up.servers[i].in_flight.get(),
            None,
        )
        .ok_or(UpstreamError::BadResponse(
            "no server of the mirror is available",
        ))?;
    let _load = crate::telemetry::Held::new(&up.servers[si].in_flight);
    let mut bytes = match batch {
        [one] => std::mem::take(&mut one.bytes),
        _ => {
            let mut joined = Vec::with_capacity(batch.iter().map(|c| c.bytes.len()).sum());
            for c in batch.iter() {
                joined.extend_from_slice(&c.bytes);
            }
            joined
        }
    };
    let batch = &*batch;
    let mut fresh = false;
    let mut resp = ResponseHead::default();
    loop {
        let mut conn = match client::checkout(up, si, Instant::now(), fresh).await {
            Ok(c) => c,
            Err(e) => {
                up.record(si, false, Instant::now());
                return Err(e);
            }
        };
        let got = async {
            client::send(&mut conn, &mut bytes).await?;
            let mut open = true;
            for copy in batch.iter() {
                if !open {
                    // The mirror closes after an earlier answer: the rest go unanswered.
                    return Err(UpstreamError::Closed);
                }
                // Each answer within the response timeout of the one before it: a
                // server answers pipelined requests one after the other.
                let deadline = Instant::now() + up.cfg.response_timeout;
                client::read_final_head(&mut conn, &mut resp, limits, copy.head_request, deadline)
                    .await?;
                status.push(resp.status);
                open = client::discard(&mut conn, &resp, DISCARD_LIMIT, deadline).await?;
            }
            Ok(open && conn.buf.is_empty())
        }
        .await;
        match got {
            Ok(reusable) => {
                let done = Instant::now();
                for &s in status.iter() {
                    up.record(si, s < 500, done);
                }
                if reusable {
                    up.put_idle(si, conn, done);
                }
                return Ok(());
            }
            Err(e) if !fresh && status.is_empty() && e.is_stale(&conn) => fresh = true,
            Err(e) => {
                up.record(si, false, Instant::now());
                return Err(e);
            }
        }
    }
}
