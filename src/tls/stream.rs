//! The TLS stream (work in progress).
