//! HTTP/1.1 on the wire: head parsing ([`request`], [`response`]), body framing
//! ([`chunked`]), header bookkeeping ([`header`]) and the responses the gateway writes
//! itself ([`generated`]). Everything here works on byte slices of the connection's own
//! buffers and allocates nothing per request once the buffers are warm.

pub mod buffers;
pub mod chunked;
pub mod generated;
pub mod header;
pub mod io;
pub mod json_field;
pub mod media_type;
pub mod path;
pub mod path_template;
pub mod request;
pub mod response;
pub mod rewrite;
pub mod send_file;
pub mod shared_body;
pub mod sock;
pub mod template;
pub mod traceparent;

pub use chunked::{ChunkError, ChunkEvent, ChunkedDecoder};
pub use header::{HeaderKind, HeaderPos, Span};
pub use request::{BodyFraming, Method, RequestHead};
pub use response::ResponseHead;

/// Why a head could not be accepted; each maps to one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("{0}")]
    Malformed(&'static str),
    #[error("request head too large")]
    TooLarge,
    #[error("request line too long")]
    UriTooLong,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("unsupported HTTP version")]
    VersionNotSupported,
    #[error("unsupported expectation")]
    ExpectationFailed,
}

impl HeadError {
    /// The status a client gets for this error.
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed(_) => 400,
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            HeadError::UriTooLong => 414,
            HeadError::VersionNotSupported => 505,
            HeadError::ExpectationFailed => 417,
        }
    }
}
