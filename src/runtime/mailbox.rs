//! Questions to the workers from another thread (the admin API): a closure is sent to
//! each worker and runs there, on the worker's own thread, with its [`Local`]; what it
//! returns comes back on a channel. This is how a scrape reads per-worker counters, a
//! health view reads each worker's breakers, and a purge reaches each cache shard,
//! without any of that state being shared: no lock and no atomic is added to the
//! request path.
//!
//! A worker waits for its mail on one end of a socket pair: the asker writes a byte
//! after queueing the job, so the worker runs it at once (not at its next tick) and
//! a question costs the workers nothing while none is asked. A job stalls that worker's
//! other tasks while it runs, so jobs copy what they need and leave the formatting to
//! the asker.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::pipeline::local::Local;

/// A job run on a worker thread.
pub type Job = Box<dyn FnOnce(&Rc<Local>) + Send>;

/// Jobs queued per worker, at most: an asker whose jobs are not taken gets an error
/// instead of a growing queue.
const QUEUE: usize = 64;

/// The asking side: one per worker.
pub struct Mailbox {
    jobs: Sender<Job>,
    /// Written to wake the worker; a lock because several admin connections may ask at
    /// once (never taken on a worker).
    wake: Mutex<UnixStream>,
}

/// The worker's side.
pub struct Inbox {
    pub jobs: Receiver<Job>,
    pub wake: UnixStream,
}

/// A mailbox and its inbox.
pub fn pair() -> std::io::Result<(Mailbox, Inbox)> {
    let (a, b) = UnixStream::pair()?;
    b.set_nonblocking(true)?;
    a.set_nonblocking(true)?;
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    Ok((
        Mailbox {
            jobs: tx,
            wake: Mutex::new(a),
        },
        Inbox { jobs: rx, wake: b },
    ))
}

/// Why the workers did not all answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("worker {0} is not taking questions (stopped, or its queue is full)")]
    Closed(usize),
    #[error("worker {worker} did not answer within {waited:?}")]
    Timeout { worker: usize, waited: Duration },
}

/// Run `f` on every worker and return each result, in worker order. Waits at most
/// `within` in all.
pub fn ask_all<T, F>(boxes: &[Mailbox], within: Duration, f: F) -> Result<Vec<T>, AskError>
where
    T: Send + 'static,
    F: Fn(&Rc<Local>) -> T + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let (tx, rx) = crossbeam_channel::bounded::<(usize, T)>(boxes.len());
    for (i, b) in boxes.iter().enumerate() {
        let f = f.clone();
        let tx = tx.clone();
        let job: Job = Box::new(move |l| {
            let _ = tx.send((i, f(l)));
        });
        b.jobs.try_send(job).map_err(|_| AskError::Closed(i))?;
        // A full socket buffer means wake-ups are already pending: enough.
        let _ = b.wake.lock().unwrap_or_else(|e| e.into_inner()).write(&[1]);
    }
    drop(tx);
    let deadline = Instant::now() + within;
    let mut out: Vec<Option<T>> = (0..boxes.len()).map(|_| None).collect();
    for _ in 0..boxes.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, v)) => out[i] = Some(v),
            Err(_) => {
                let worker = out.iter().position(Option::is_none).unwrap_or(0);
                return Err(AskError::Timeout {
                    worker,
                    waited: within,
                });
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// The worker's loop: wait for a wake-up, run what is queued. It runs through the
/// drain at shutdown too (the admin API still answers then) and ends with the worker.
pub async fn serve(local: Rc<Local>, inbox: Inbox) {
    let Inbox { jobs, wake } = inbox;
    let Ok(mut wake) = monoio::net::UnixStream::from_std(wake) else {
        return;
    };
    let mut buf = vec![0u8; 64];
    loop {
        use monoio::io::AsyncReadRent;
        let (r, b) = wake.read(buf).await;
        buf = b;
        match r {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            match jobs.try_recv() {
                Ok(job) => job(&local),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}
