//! Parts of the `ringgate` command that are not the gateway. These modules belong to the
//! binary alone: `src/main.rs` declares them and `src/lib.rs` does not, so none of this
//! is library API, and `tests/` reach it only by running the binary.
//!
//! - [`demo`]: `ringgate demo`, the gateway in front of built-in demo services.
//! - [`token`]: `ringgate token`, a test token signed with a key of a configuration.

pub mod demo;
pub mod token;
