//! Access log: one JSON object per line, to stdout or a file, or nothing. Each worker
//! formats lines into its own buffer and hands the whole buffer over once per tick (or
//! when it grows large) to the log's writer thread, which does the writing. A worker
//! never makes the system call and never waits for it: a stdout pipe nobody reads, or
//! a slow disk, stalls only the writer. The queue between them is bounded
//! ([`QUEUE_BATCHES`] batches of about [`FLUSH_BYTES`], 4 MiB at most); a batch that
//! finds it full is dropped and counted, and the count is reported at shutdown.
//! Lines of different workers never interleave mid-line. The query string is never
//! logged: it may carry credentials.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::AccessLog;
use crate::http::generated::json_str;

/// Flush early once a worker's buffer holds this much.
pub const FLUSH_BYTES: usize = 64 * 1024;

/// Batches waiting for the writer thread, at most.
pub const QUEUE_BATCHES: usize = 64;

/// Where workers hand their lines: nowhere, or the writer thread's queue.
#[derive(Clone, Debug)]
pub enum Sink {
    Off,
    Queue {
        tx: crossbeam_channel::Sender<Vec<u8>>,
        /// Batches dropped because the queue was full.
        dropped: Arc<AtomicU64>,
    },
}

/// The log's writer thread: join it after the workers have stopped (and dropped their
/// sinks), so that their last lines are written.
pub struct Writer {
    thread: JoinHandle<()>,
    /// Sends the end: an empty batch, after every worker's last one.
    end: crossbeam_channel::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    /// Once the workers have stopped (their last batches queued): write what is
    /// queued, stop the thread; returns how many batches were dropped.
    pub fn join(self) -> u64 {
        // Not waiting for every sink to be dropped: a worker's state may outlive its
        // thread. The end marker follows the workers' last batches in the queue.
        let _ = self.end.send(Vec::new());
        let _ = self.thread.join();
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Open the destination and start its writer thread.
pub fn open(cfg: &AccessLog) -> io::Result<(Sink, Option<Writer>)> {
    let mut out: Box<dyn Write + Send> = match cfg {
        AccessLog::Off => return Ok((Sink::Off, None)),
        AccessLog::Stdout => Box::new(io::stdout()),
        AccessLog::File(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
    };
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(QUEUE_BATCHES);
    let dropped = Arc::new(AtomicU64::new(0));
    let thread = std::thread::Builder::new()
        .name("ringgate-log".into())
        .spawn(move || {
            // Ends at the end marker (an empty batch: workers never send one), or when
            // every sink is gone.
            for batch in rx {
                if batch.is_empty() {
                    break;
                }
                // A failed log write must never take anything down; it is dropped.
                let _ = out.write_all(&batch);
            }
            let _ = out.flush();
        })?;
    Ok((
        Sink::Queue {
            tx: tx.clone(),
            dropped: dropped.clone(),
        },
        Some(Writer {
            thread,
            end: tx,
            dropped,
        }),
    ))
}

impl Sink {
    pub fn enabled(&self) -> bool {
        !matches!(self, Sink::Off)
    }

    /// Hand `buf`'s lines to the writer thread (`buf` is left empty, with room for the
    /// next batch). Never waits: when the queue is full the batch is dropped and
    /// counted.
    pub fn write(&self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        match self {
            Sink::Off => buf.clear(),
            Sink::Queue { tx, dropped } => {
                let batch = std::mem::replace(buf, Vec::with_capacity(FLUSH_BYTES + 1024));
                if tx.try_send(batch).is_err() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
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
