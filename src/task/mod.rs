//! Helpers for the tasks of one worker thread, used by the runtime and the pipeline
//! alike (a leaf module: it imports neither): [`signal::LocalSignal`], a one-shot
//! signal many tasks await (shutdown), [`contain::Contained`], a future whose panic
//! ends its own task only, and [`deadline::Deadlines`], the coarse timers of waiting
//! connections.

pub mod contain;
pub mod deadline;
pub mod signal;
