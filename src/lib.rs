//! # ringgate
//!
//! An HTTP/1.1 API gateway for bare-metal Linux edge hosts, built thread-per-core and
//! shared-nothing: one worker per core, pinned, each with its own monoio runtime
//! (io_uring, or epoll where io_uring is unavailable), its own SO_REUSEPORT listener,
//! its own routing table and its own upstream connection pools. Nothing on the request
//! path is shared between cores: no locks, no atomics per request. What must cross
//! cores (the stop signal, rate-limit counts, reloaded configurations) is picked up by
//! each worker's tick at a fixed interval. A worker serves with a
//! [`pipeline::stack::Pipeline`] built from one configuration and swapped whole on
//! reload.
//!
//! ```text
//!            ┌──────────── worker N (one per core, pinned) ─────────────┐
//!  client ──►│ accept (SO_REUSEPORT) ─► conn: read head ─► parse+limits │
//!            │   ─► route ─► stack phase 1: auth ─► rate limit ─► cache │
//!            │   ─► phase 2 ─► upstream client (per-worker pool) ─► origin
//!            │   ◄─ phases 3-6: head, body (re-framed, streamed back)   │
//!            │   ─► phase 7: done                                       │
//!            │ tick: stop flag, reload (new Pipeline), clock, sweeps    │
//!            └───────────────────────────────────────────────────────────┘
//! ```
//!
//! Bodies are streamed in both directions through per-connection buffers that are
//! reused for every request. The order of the stages is written down once, in
//! [`pipeline::stack`].
//!
//! The `ringgate` binary (`src/main.rs`) adds the command line, and `ringgate demo`
//! with its demo services (`src/cli/demo/`); neither is part of this library, whose
//! modules are the ones declared below.
//!
//! ```no_run
//! let cfg = ringgate::config::Config::load("config/gateway.toml".as_ref()).unwrap();
//! let gw = ringgate::runtime::Gateway::start(cfg).unwrap();
//! println!("listening on {:?} with {}", gw.addrs(), gw.driver());
//! gw.shutdown();
//! gw.join();
//! ```

pub mod admin;
pub mod auth;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod http;
pub mod pipeline;
pub mod ratelimit;
pub mod runtime;
pub mod task;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use config::Config;
pub use runtime::Gateway;
