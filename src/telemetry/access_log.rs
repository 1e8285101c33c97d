//! Access log: one JSON object per line, to stdout or a file, or nothing. Each worker
//! formats lines into its own buffer and hands the buffer to the sink in one `write`
//! per tick (or when it grows large), so logging costs no syscall per request and
//! lines of different workers never interleave mid-line. The query string is never
//! logged: it may carry credentials.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::Arc;

use crate::config::AccessLog;
use crate::http::generated::json_str;

/// Flush early once a worker's buffer holds this much.
pub const FLUSH_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub enum Sink {
    Off,
    Stdout,
    File(Arc<File>),
}

pub fn open(cfg: &AccessLog) -> io::Result<Sink> {
    Ok(match cfg {
        AccessLog::Off => Sink::Off,
        AccessLog::Stdout => Sink::Stdout,
        AccessLog::File(p) => Sink::File(Arc::new(
            OpenOptions::new().create(true).append(true).open(p)?,
        )),
    })
}

impl Sink {
    pub fn enabled(&self) -> bool {
        !matches!(self, Sink::Off)
    }

    pub fn write(&self, buf: &[u8]) {
        if buf.is_empty() {
            return;
        }
        // A failed log write must never take a request down; it is dropped.
        let _ = match self {
            Sink::Off => Ok(()),
            Sink::Stdout => io::stdout().lock().write_all(buf),
            Sink::File(f) => (&**f).write_all(buf),
        };
    }
}

/// What one log line records.
pub struct Entry<'a> {
    pub unix_ms: u128,
    pub worker: usize,
    pub request_id: &'a [u8],
    pub client: &'a str,
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub status: u16,
    pub route: &'a str,
    pub upstream: &'a str,
    pub bytes_out: u64,
    pub duration_us: u64,
    /// The request's W3C trace id (32 hex digits), empty when tracing is off.
    pub trace_id: &'a [u8],
    /// The gateway's span id (16 hex digits), empty when tracing is off.
    pub span_id: &'a [u8],
}

pub fn format(out: &mut Vec<u8>, e: &Entry<'_>) {
    let mut ib = itoa::Buffer::new();
    out.extend_from_slice(b"{\"ts_ms\":");
    out.extend_from_slice(ib.format(e.unix_ms).as_bytes());
    out.extend_from_slice(b",\"worker\":");
    out.extend_from_slice(ib.format(e.worker).as_bytes());
    out.extend_from_slice(b",\"request_id\":");
    json_str(out, e.request_id);
    out.extend_from_slice(b",\"client\":");
    json_str(out, e.client.as_bytes());
    out.extend_from_slice(b",\"method\":");
    json_str(out, e.method);
    out.extend_from_slice(b",\"path\":");
    json_str(out, e.path);
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(ib.format(e.status).as_bytes());
    out.extend_from_slice(b",\"route\":");
    json_str(out, e.route.as_bytes());
    out.extend_from_slice(b",\"upstream\":");
    json_str(out, e.upstream.as_bytes());
    out.extend_from_slice(b",\"bytes_out\":");
    out.extend_from_slice(ib.format(e.bytes_out).as_bytes());
    out.extend_from_slice(b",\"duration_us\":");
    out.extend_from_slice(ib.format(e.duration_us).as_bytes());
    if !e.trace_id.is_empty() {
        out.extend_from_slice(b",\"trace_id\":");
        json_str(out, e.trace_id);
        out.extend_from_slice(b",\"span_id\":");
        json_str(out, e.span_id);
    }
    out.extend_from_slice(b"}\n");
}
