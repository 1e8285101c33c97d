//! The request's path through the gateway. [`stack`] is the one place where the order
//! of stages is written down; [`conn`] runs a client connection (read head, run the
//! stages, write the response, keep alive); [`route`] matches routes; [`proxy`] does the
//! upstream exchange and streams bodies both ways; [`forward`] composes the heads sent
//! upstream and back; [`error`] maps every failure to a status and a keep/close choice;
//! [`refresh`] fetches stale-while-revalidate entries again in the background.

pub mod auth;
pub mod cache;
pub mod conn;
pub mod error;
pub mod forward;
pub mod local;
pub mod proxy;
pub mod ratelimit;
pub mod refresh;
pub mod route;
pub mod stack;
