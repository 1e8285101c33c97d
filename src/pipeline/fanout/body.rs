//! The client's side of a fan-out: its body read in pieces of at most
//! [`CHUNK`](super::CHUNK) bytes, each ready to be written to every destination as it
//! is: a Content-Length body's bytes as they are, a chunked body decoded (validated,
//! bounded by the route's `max_body_bytes`) and framed again as one chunk per piece.

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

use super::CHUNK;
use crate::http::io::read_append;
use crate::http::{BodyFraming, ChunkEvent, ChunkedDecoder};
use crate::pipeline::conn::Downstream;

/// Room before a piece's data for its chunk-size line when re-chunking (16 hex digits
/// and CRLF fit).
pub(super) const SIZE_LINE: usize = 18;

/// The client's body as it is read.
pub(super) struct BodyIn {
    pub(super) framing: BodyFraming,
    /// Content-Length bytes still to read.
    pub(super) remaining: u64,
    pub(super) dec: ChunkedDecoder,
    pub(super) max: u64,
    /// Read to its end.
    pub(super) done: bool,
    /// Payload bytes read.
    pub(super) read: u64,
}

/// Why the client's body could not be read.
pub(super) struct BodyError {
    /// `None`: the client left; nobody to answer.
    pub(super) status: Option<u16>,
    pub(super) message: &'static str,
}

impl BodyIn {
    /// The next piece for the destinations, in `piece` (reused): its bytes from
    /// `start`, and how many of them are payload.
    pub(super) async fn next(
        &mut self,
        c: &mut Downstream,
        mut piece: Vec<u8>,
    ) -> Result<(Vec<u8>, usize, u64), BodyError> {
        let gone = |_| BodyError {
            status: None,
            message: "client connection failed",
        };
        piece.clear();
        match self.framing {
            BodyFraming::Length(_) => {
                let want = self.remaining.min(CHUNK as u64) as usize;
                if !c.rbuf.is_empty() {
                    let k = want.min(c.rbuf.len());
                    piece.extend_from_slice(&c.rbuf[..k]);
                    c.rbuf.drain(..k);
                } else {
                    piece.reserve(want);
                    let (res, slice) = c.stream.read(piece.slice_mut(0..want)).await;
                    piece = slice.into_inner();
                    match res {
                        Ok(0) => return Err(gone(())),
                        Ok(_) => {}
                        Err(_) => return Err(gone(())),
                    }
                }
                let k = piece.len() as u64;
                self.remaining -= k;
                self.read += k;
                self.done = self.remaining == 0;
                Ok((piece, 0, k))
            }
            BodyFraming::Chunked => loop {
                piece.resize(SIZE_LINE, 0);
                let mut at = 0;
                while at < c.rbuf.len() && !self.done {
                    let (used, ev) = self.dec.step(&c.rbuf[at..]).map_err(|_| BodyError {
                        status: Some(400),
                        message: "invalid chunked request body",
                    })?;
                    let base = at;
                    at += used;
                    match ev {
                        ChunkEvent::Data(r) => {
                            if self.dec.body_bytes > self.max {
                                return Err(BodyError {
                                    status: Some(413),
                                    message: "request body too large",
                                });
                            }
                            piece.extend_from_slice(&c.rbuf[base + r.start..base + r.end]);
                        }
                        ChunkEvent::Done => self.done = true,
                        // Trailers are not forwarded (see `proxy`).
                        _ => {}
                    }
                }
                c.rbuf.drain(..at);
                let data = piece.len() - SIZE_LINE;
                let mut start = SIZE_LINE;
                if data > 0 {
                    let mut line = [0u8; SIZE_LINE];
                    let mut i = SIZE_LINE - 2;
                    line[i..].copy_from_slice(b"\r\n");
                    let mut n = data;
                    while n > 0 {
                        i -= 1;
                        line[i] = b"0123456789abcdef"[n & 0xf];
                        n >>= 4;
                    }
                    piece[i..SIZE_LINE].copy_from_slice(&line[i..]);
                    start = i;
                    piece.extend_from_slice(b"\r\n");
                }
                if self.done {
                    piece.extend_from_slice(b"0\r\n\r\n");
                }
                self.read += data as u64;
                if data > 0 || self.done {
                    return Ok((piece, start, data as u64));
                }
                match read_append(&mut c.stream, &mut c.rbuf, CHUNK).await {
                    Ok(0) => return Err(gone(())),
                    Ok(_) => {}
                    Err(_) => return Err(gone(())),
                }
            },
            BodyFraming::Empty | BodyFraming::UntilClose => {
                self.done = true;
                Ok((piece, 0, 0))
            }
        }
    }
}
