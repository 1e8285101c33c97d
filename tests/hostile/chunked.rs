//! Chunked decoder invariants: the result (body, trailers, completeness, or the error)
//! does not depend on how the bytes were split across reads; every `step` makes
//! progress and reports ranges inside what it consumed; the decoder's byte count is the
//! body's length; a complete message stops exactly at its end; a prefix of an acceptable
//! message is never refused.

use ringgate::http::chunked::{decode_all, ChunkError, Decoded};
use ringgate::http::{ChunkEvent, ChunkedDecoder};

use super::ensure;

pub type Outcome = Result<Decoded, ChunkError>;

/// Fuzz entry: the first byte chooses where the rest is split in two.
pub fn check(data: &[u8]) -> Outcome {
    match data.split_first() {
        Some((&sel, msg)) => check_split(msg, sel as usize % (msg.len() + 1)),
        None => check_split(data, 0),
    }
}

/// Decode `msg` whole, split at `at`, byte by byte (when short) and step by step, and
/// compare. Returns the whole-input result.
pub fn check_split(msg: &[u8], at: usize) -> Outcome {
    let whole = decode_all(&[msg]);
    let split = decode_all(&[&msg[..at], &msg[at..]]);
    ensure(whole == split, "same result whole and split in two", msg);
    let third = at / 2;
    let three = decode_all(&[&msg[..third], &msg[third..at], &msg[at..]]);
    ensure(whole == three, "same result split in three", msg);
    if msg.len() <= 512 {
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        ensure(whole == decode_all(&bytes), "same result byte by byte", msg);
    }

    let (stepped, consumed, counted) = step_through(msg);
    ensure(
        stepped == whole,
        "step-by-step decoding agrees with decode_all",
        msg,
    );
    if let Ok(d) = &whole {
        ensure(
            counted == d.body.len() as u64,
            "body_bytes is the body's length",
            msg,
        );
        for t in &d.trailers {
            ensure(
                !t.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0),
                "no CR, LF or NUL in a trailer line",
                msg,
            );
        }
        let prefix = decode_all(&[&msg[..at]]);
        match &prefix {
            Ok(p) => {
                ensure(
                    d.body.starts_with(&p.body),
                    "a prefix gives a prefix of the body",
                    msg,
                );
                ensure(
                    !p.complete || at >= consumed,
                    "not complete before the end",
                    msg,
                );
            }
            Err(_) => ensure(false, "a prefix of an acceptable message is refused", msg),
        }
        if d.complete {
            let alone = decode_all(&[&msg[..consumed]]);
            ensure(alone == whole, "the message alone decodes the same", msg);
            let short = decode_all(&[&msg[..consumed - 1]]);
            ensure(
                short.is_ok_and(|s| !s.complete),
                "one byte short is incomplete, not an error",
                msg,
            );
        } else {
            ensure(
                consumed == msg.len(),
                "an incomplete message consumes all",
                msg,
            );
        }
    }
    whole
}

/// Drive `ChunkedDecoder::step` by hand, checking each step; returns the decoded result,
/// the bytes consumed and the decoder's own count of body bytes.
fn step_through(msg: &[u8]) -> (Outcome, usize, u64) {
    let mut dec = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut trailers: Vec<Vec<u8>> = Vec::new();
    let mut open = false;
    let mut at = 0;
    while at < msg.len() && !dec.is_done() {
        let rest = &msg[at..];
        let (n, ev) = match dec.step(rest) {
            Ok(x) => x,
            Err(e) => return (Err(e), at, dec.body_bytes),
        };
        ensure(n <= rest.len(), "step consumes at most its input", msg);
        ensure(
            n > 0 || ev == ChunkEvent::Done,
            "step makes progress unless done",
            msg,
        );
        match ev {
            ChunkEvent::NeedMore => ensure(n == rest.len(), "NeedMore after consuming all", msg),
            ChunkEvent::Data(r) => {
                ensure(
                    r.start < r.end && r.end == n,
                    "data range ends the step",
                    msg,
                );
                body.extend_from_slice(&rest[r]);
            }
            ChunkEvent::Trailer(r) => {
                ensure(
                    r.start <= r.end && r.end <= n,
                    "trailer range inside the step",
                    msg,
                );
                if !open {
                    trailers.push(Vec::new());
                    open = true;
                }
                if let Some(t) = trailers.last_mut() {
                    t.extend_from_slice(&rest[r]);
                }
            }
            ChunkEvent::TrailerEnd => {
                ensure(open, "TrailerEnd ends a trailer line", msg);
                open = false;
            }
            ChunkEvent::LastChunk => ensure(!dec.is_done(), "LastChunk before Done", msg),
            ChunkEvent::Done => ensure(dec.is_done(), "Done means done", msg),
        }
        at += n;
    }
    let d = Decoded {
        body,
        trailers,
        complete: dec.is_done(),
    };
    (Ok(d), at, dec.body_bytes)
}
