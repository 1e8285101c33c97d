//! Helpers for the tasks of one worker thread, used by the runtime and the pipeline
//! alike (a leaf module: it imports neither): [`signal::LocalSignal`], a one-shot
//! signal many tasks await (shutdown), and [`contain::Contained`], a future whose panic
//! ends its own task only.

pub mod contain;
pub mod signal;
