//! The request's path through the gateway. [`stack`] is the one place where the order
//! of stages is written down, with the phases they take part in, and
//! [`stack::Pipeline`] what a worker serves with (built from one configuration,
//! swapped whole on reload); the stages are [`trace`], [`https`], [`cors`], [`auth`],
//! [`ratelimit`], [`respond`], [`cache`], [`compose`], [`compress`], [`mirror`] and
//! [`metrics`], each working on the request's [`context::RequestCtx`]. [`conn`] runs a client
//! connection (read head, handle, keep alive, linger); [`route`] matches routes;
//! [`proxy`] is the I/O driver that moves bytes for the phases; [`forward`] composes
//! the heads sent upstream and back; [`error`] maps every failure to a status and a
//! keep/close choice; [`refresh`] fetches entries again in the background; [`local`]
//! is a worker's state as the request path sees it.

pub mod auth;
pub mod body;
pub mod cache;
pub mod compose;
pub mod compress;
pub mod conn;
pub mod context;
pub mod cors;
pub mod error;
pub mod fanout;
pub mod forward;
pub mod https;
pub mod local;
pub mod metrics;
pub mod mirror;
pub mod outbound;
pub mod proxy;
pub mod ratelimit;
pub mod refresh;
pub mod respond;
pub mod route;
pub mod stack;
pub mod tls;
pub mod trace;
pub mod upgrade;
