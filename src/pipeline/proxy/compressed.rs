//! The driver's relay for a response the compress stage compresses (see
//! `crate::pipeline::compress` for when): the upstream's body, whatever its framing,
//! goes through the stages' body phases as received (the cache stores the identity
//! body) and through the encoder, and out as chunks. Splice is never used here: the
//! bytes must pass through user space.

use super::{encode_chunk, send_pending, Exchange, Progress};
use crate::config::Coding;
use crate::http::io::read_append;
use crate::http::{BodyFraming, ChunkEvent, ChunkedDecoder, ResponseHead};
use crate::pipeline::compress::{weaken_etag, Encoder};
use crate::pipeline::conn::Downstream;
use crate::pipeline::error::ProxyError;
use crate::pipeline::forward::ClientFraming;
use crate::pipeline::stack;
use crate::upstream::pool::{UpConn, UP_BUF};

impl Exchange<'_> {
    /// Relay `resp` compressed with `coding`, chunked (the client is HTTP/1.1: the
    /// stage never picks a coding for HTTP/1.0). Returns whether the upstream
    /// connection may be reused.
    pub(super) async fn stream_compressed(
        &self,
        conn: &mut UpConn,
        c: &mut Downstream,
        resp: &ResponseHead,
        p: &mut Progress,
        coding: Coding,
    ) -> Result<bool, ProxyError> {
        p.keep_client = self.meta.keep_alive && !self.w.shutdown.is_set() && !p.body_cut;
        p.status = resp.status;
        c.cx.extra.extend_from_slice(b"Content-Encoding: ");
        c.cx.extra.extend_from_slice(coding.token().as_bytes());
        c.cx.extra.extend_from_slice(b"\r\n");
        self.client_head(c, resp, &conn.buf, ClientFraming::Chunked, p.keep_client);
        weaken_etag(&mut c.obuf, 0);
        let mut enc = Encoder::new(coding);
        let mut pos = resp.head_len;
        let reusable = match resp.body {
            BodyFraming::Length(n) => {
                let whole = (conn.buf.len() - pos) as u64 >= n;
                let keep = match whole {
                    true => {
                        let body = pos..pos + n as usize;
                        self.body_start(c, resp, &conn.buf, Some(body), None, p);
                        false
                    }
                    false => self.body_start(c, resp, &conn.buf, None, Some(n), p),
                };
                let (mut remaining, mut extra) = (n, false);
                loop {
                    let k = ((conn.buf.len() - pos) as u64).min(remaining) as usize;
                    extra |= conn.buf.len() - pos > k;
                    let data = &conn.buf[pos..pos + k];
                    if keep {
                        stack::body(self.w, &mut c.cx, data);
                    }
                    compress_into(&mut enc, data, &mut c.obuf)?;
                    remaining -= k as u64;
                    if remaining == 0 {
                        break;
                    }
                    pos = 0;
                    if refill(c, p, conn).await? == 0 {
                        return Err(ProxyError::UpstreamTruncated);
                    }
                }
                if keep {
                    stack::body_end(self.w, &mut c.cx, self.route, resp);
                }
                resp.keep_alive && !extra
            }
            BodyFraming::Chunked => {
                let keep = self.body_start(c, resp, &conn.buf, None, None, p);
                let mut dec = ChunkedDecoder::new();
                'body: loop {
                    while pos < conn.buf.len() {
                        let (used, ev) = dec
                            .step(&conn.buf[pos..])
                            .map_err(|_| ProxyError::UpstreamBadResponse("invalid chunked body"))?;
                        let base = pos;
                        pos += used;
                        match ev {
                            ChunkEvent::Data(r) => {
                                let data = &conn.buf[base + r.start..base + r.end];
                                stack::body(self.w, &mut c.cx, data);
                                compress_into(&mut enc, data, &mut c.obuf)?;
                            }
                            // Trailers are dropped (RFC 9110 6.5.1): the compressed
                            // body is a new message body.
                            ChunkEvent::Done => break 'body,
                            _ => {}
                        }
                    }
                    pos = 0;
                    if refill(c, p, conn).await? == 0 {
                        return Err(ProxyError::UpstreamTruncated);
                    }
                }
                if keep {
                    stack::body_end(self.w, &mut c.cx, self.route, resp);
                }
                resp.keep_alive && pos == conn.buf.len()
            }
            BodyFraming::UntilClose => {
                loop {
                    compress_into(&mut enc, &conn.buf[pos..], &mut c.obuf)?;
                    pos = 0;
                    if refill(c, p, conn).await? == 0 {
                        break;
                    }
                }
                false
            }
            // `compress::eligible` refuses an empty body.
            BodyFraming::Empty => resp.keep_alive,
        };
        let rest = enc.finish().map_err(ProxyError::ClientIo)?;
        encode_chunk(&mut c.obuf, &rest);
        c.obuf.extend_from_slice(b"0\r\n\r\n");
        send_pending(c, p).await?;
        Ok(reusable)
    }
}

/// Compress `data`; what the encoder emitted goes to `out` as one chunk.
fn compress_into(enc: &mut Encoder, data: &[u8], out: &mut Vec<u8>) -> Result<(), ProxyError> {
    if data.is_empty() {
        return Ok(());
    }
    // Into memory: fails only if the encoder itself does.
    enc.push(data).map_err(ProxyError::ClientIo)?;
    let produced = enc.output();
    encode_chunk(out, produced);
    produced.clear();
    Ok(())
}

/// Write what is pending for the client, as the identity relay does before each
/// upstream read (the encoder keeps back what it has not emitted yet; the head goes
/// with the first write, and from then on errors can only close the connection), then
/// read the upstream's next bytes into `conn.buf` (emptied): how many, 0 at its end.
async fn refill(
    c: &mut Downstream,
    p: &mut Progress,
    conn: &mut UpConn,
) -> Result<usize, ProxyError> {
    if !c.obuf.is_empty() {
        send_pending(c, p).await?;
    }
    conn.buf.clear();
    read_append(&mut conn.stream, &mut conn.buf, UP_BUF)
        .await
        .map_err(ProxyError::UpstreamIo)
}
