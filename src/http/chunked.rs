//! Incremental decoder for the chunked transfer coding (RFC 9112 7.1), strict enough to
//! close the smuggling gaps: hex sizes only (no sign, no "0x", no leading blanks, at most
//! 16 digits), CRLF and nothing else after every size line and every chunk, bounded
//! chunk extensions and trailers. It never buffers: it reports where the data, the last
//! chunk and each trailer line are in the bytes it is given, so the caller can stream
//! them on, re-framed.

use std::ops::Range;

/// Longest chunk-extension accepted on one size line.
const MAX_EXT_BYTES: usize = 4096;
/// Longest trailer section accepted.
const MAX_TRAILER_BYTES: usize = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size")]
    BadSize,
    #[error("chunk size too large")]
    SizeOverflow,
    #[error("invalid chunk framing (expected CRLF)")]
    BadFraming,
    #[error("chunk extension too long")]
    ExtensionTooLong,
    #[error("invalid or oversized trailer section")]
    BadTrailer,
}

/// What one call to [`ChunkedDecoder::step`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkEvent {
    /// Everything given was framing; feed more bytes.
    NeedMore,
    /// Body data at this range of the input.
    Data(Range<usize>),
    /// The zero-size chunk: the body is complete, trailers (if any) follow.
    LastChunk,
    /// One trailer field line (without its CRLF) at this range of the input. It may
    /// be split across calls only if it straddles two inputs: then the pieces come as
    /// consecutive `Trailer` events, the last ending the line (see `TrailerEnd`).
    Trailer(Range<usize>),
    /// The CRLF that ends a trailer line.
    TrailerEnd,
    /// The message is complete; bytes after it belong to the next message.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SizeStart,
    Size,
    /// Whitespace after the size: only a ';' extension may follow.
    SizeWs,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    ext_len: usize,
    trailer_len: usize,
    last: bool,
    /// Total body bytes seen (excluding framing).
    pub body_bytes: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            digits: 0,
            ext_len: 0,
            trailer_len: 0,
            last: false,
            body_bytes: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consume bytes from `input`; returns how many were consumed and what was found.
    /// Call again with the rest until it returns `NeedMore` with everything consumed,
    /// or `Done`.
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, ChunkEvent), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let c = input[i];
            match self.state {
                State::SizeStart | State::Size => match hex_val(c) {
                    Some(v) => {
                        if self.digits >= 16 {
                            return Err(ChunkError::SizeOverflow);
                        }
                        self.size = (self.size << 4) | v as u64;
                        self.digits += 1;
                        self.state = State::Size;
                        i += 1;
                    }
                    None if self.state == State::SizeStart => return Err(ChunkError::BadSize),
                    None => match c {
                        b'\r' => {
                            self.state = State::SizeLf;
                            i += 1;
                        }
                        b';' => {
                            self.state = State::Ext;
                            i += 1;
                        }
                        b' ' | b'\t' => {
                            self.state = State::SizeWs;
                            i += 1;
                        }
                        _ => return Err(ChunkError::BadSize),
                    },
                },
                State::SizeWs => match c {
                    b' ' | b'\t' => i += 1,
                    b';' => {
                        self.state = State::Ext;
                        i += 1;
                    }
                    _ => return Err(ChunkError::BadSize),
                },
                State::Ext => {
                    // Extensions are ignored but must stay on their line and be bounded.
                    match c {
                        b'\r' => self.state = State::SizeLf,
                        b'\n' | 0 => return Err(ChunkError::BadFraming),
                        _ => {
                            self.ext_len += 1;
                            if self.ext_len > MAX_EXT_BYTES {
                                return Err(ChunkError::ExtensionTooLong);
                            }
                        }
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if c != b'\n' {
                        return Err(ChunkError::BadFraming);
                    }
                    i += 1;
                    self.digits = 0;
                    self.ext_len = 0;
                    if self.size == 0 {
                        self.last = true;
                        self.state = State::TrailerStart;
                        return Ok((i, ChunkEvent::LastChunk));
                    }
                    self.state = State::Data;
                }
                State::Data => {
                    let take = (self.size.min((input.len() - i) as u64)) as usize;
                    self.size -= take as u64;
                    self.body_bytes += take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok((i + take, ChunkEvent::Data(i..i + take)));
                }
                State::DataCr => {
                    if c != b'\r' {
                        return Err(ChunkError::BadFraming);
                    }
                    self.state = State::DataLf;
                    i += 1;
                }
                State::DataLf => {
                    if c != b'\n' {
                        return Err(ChunkError::BadFraming);
                    }
                    self.state = State::SizeStart;
                    i += 1;
                }
                State::TrailerStart => {
                    if c == b'\r' {
                        self.state = State::FinalLf;
                        i += 1;
                    } else {
                        self.state = State::Trailer;
                    }
                }
                State::Trailer => {
                    let rest = &input[i..];
                    let end = memchr::memchr(b'\r', rest).unwrap_or(rest.len());
                    if rest[..end].iter().any(|&b| b == b'\n' || b == 0) {
                        return Err(ChunkError::BadTrailer);
                    }
                    self.trailer_len += end;
                    if self.trailer_len > MAX_TRAILER_BYTES {
                        return Err(ChunkError::BadTrailer);
                    }
                    if end < rest.len() {
                        self.state = State::TrailerLf;
                        // Skip the CR now; the LF is checked next.
                        return Ok((i + end + 1, ChunkEvent::Trailer(i..i + end)));
                    }
                    return Ok((input.len(), ChunkEvent::Trailer(i..input.len())));
                }
                State::TrailerLf => {
                    if c != b'\n' {
                        return Err(ChunkError::BadTrailer);
                    }
                    self.state = State::TrailerStart;
                    return Ok((i + 1, ChunkEvent::TrailerEnd));
                }
                State::FinalLf => {
                    if c != b'\n' {
                        return Err(ChunkError::BadFraming);
                    }
                    self.state = State::Done;
                    return Ok((i + 1, ChunkEvent::Done));
                }
                State::Done => return Ok((i, ChunkEvent::Done)),
            }
        }
        if self.state == State::Done {
            return Ok((i, ChunkEvent::Done));
        }
        Ok((i, ChunkEvent::NeedMore))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A whole chunked body, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub body: Vec<u8>,
    /// Trailer field lines, without CRLF.
    pub trailers: Vec<Vec<u8>>,
    /// The terminating empty line was seen.
    pub complete: bool,
}

/// Decode a whole chunked body given in one or more pieces. For tests, fuzzing and
/// small buffered bodies.
pub fn decode_all(pieces: &[&[u8]]) -> Result<Decoded, ChunkError> {
    let mut dec = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut trailers: Vec<Vec<u8>> = Vec::new();
    let mut open_trailer = false;
    for piece in pieces {
        let mut at = 0;
        while at < piece.len() && !dec.is_done() {
            let (n, ev) = dec.step(&piece[at..])?;
            match ev {
                ChunkEvent::Data(r) => body.extend_from_slice(&piece[at + r.start..at + r.end]),
                ChunkEvent::Trailer(r) => {
                    if !open_trailer {
                        trailers.push(Vec::new());
                        open_trailer = true;
                    }
                    if let Some(t) = trailers.last_mut() {
                        t.extend_from_slice(&piece[at + r.start..at + r.end]);
                    }
                }
                ChunkEvent::TrailerEnd => open_trailer = false,
                _ => {}
            }
            at += n;
        }
    }
    Ok(Decoded {
        body,
        trailers,
        complete: dec.is_done(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::type_complexity)]
    fn whole(b: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>, bool), ChunkError> {
        decode_all(&[b]).map(|d| (d.body, d.trailers, d.complete))
    }

    #[test]
    fn simple_and_split_bytewise() {
        let msg = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        let (body, tr, done) = whole(msg).unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(tr, vec![b"X-T: 1".to_vec()]);
        assert!(done);
        let pieces: Vec<&[u8]> = msg.chunks(1).collect();
        let d = decode_all(&pieces).unwrap();
        let (body2, tr2, done2) = (d.body, d.trailers, d.complete);
        assert_eq!(body2, b"hello world");
        assert_eq!(tr2, tr);
        assert!(done2);
    }

    #[test]
    fn rejects_smuggling_shapes() {
        for bad in [
            &b"-5\r\nhello\r\n0\r\n\r\n"[..],
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"0\r\n\n",
            b"g\r\n",
        ] {
            assert!(
                whole(bad).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn incomplete_is_not_done() {
        let (_, _, done) = whole(b"5\r\nhel").unwrap();
        assert!(!done);
        let (_, _, done) = whole(b"0\r\n").unwrap();
        assert!(!done);
    }

    #[test]
    fn stops_at_message_end() {
        let mut dec = ChunkedDecoder::new();
        let input = b"0\r\n\r\nGET / HTTP/1.1\r\n";
        let (n, ev) = dec.step(input).unwrap();
        assert_eq!(ev, ChunkEvent::LastChunk);
        let (m, ev) = dec.step(&input[n..]).unwrap();
        assert_eq!(ev, ChunkEvent::Done);
        assert_eq!(n + m, 5);
    }
}
