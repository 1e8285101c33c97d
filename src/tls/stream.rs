//! [`TlsStream`]: TLS over a monoio `TcpStream`, on rustls's unbuffered API, for both
//! sides (a client's connection to the gateway, the gateway's to an upstream); and
//! [`Stream`], the one connection type that plain TCP and TLS share, which the request
//! path and the upstream client read and write without knowing which it is.
//!
//! Why the unbuffered API: rustls's buffered connection keeps a 4 KiB receive buffer
//! (and its queues) for the life of the connection. Here the three buffers are ours:
//! ciphertext in, decrypted bytes not yet read, ciphertext out. They come from the
//! worker's pool ([`crate::http::buffers`]) while the connection is busy and go back
//! when it goes idle ([`TlsStream::release`]), so an idle TLS connection keeps only
//! its socket and rustls's connection state (keys and the handshake's outcome).
//!
//! Reads decrypt one record at a time into `plain` and hand it out; writes encrypt
//! straight from the caller's buffer into `out` (one copy, the encryption itself) and
//! send it before returning. A TLS error queues rustls's alert, which is sent before
//! the error is returned (a client offering only `h2` gets `no_application_protocol`).
//!
//! Kernel TLS would plug in here: after the handshake,
//! `dangerous_into_kernel_connection` gives the traffic secrets to hand to the socket
//! (`setsockopt(TCP_ULP, "tls")`), and [`Stream::tcp`] would then answer for TLS
//! streams too, so splice and sendfile work unchanged.

use std::io;
use std::ops::DerefMut;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent,
};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedConnectionCommon,
    UnbufferedStatus, WriteTraffic,
};

use super::rent;
use crate::http::buffers;

/// The most plaintext one `write` encrypts (the rest is the caller's next write):
/// bounds `out` at this plus the records' overhead.
pub const MAX_WRITE: usize = 64 * 1024;
/// The most ciphertext kept waiting for a record to complete: a record is at most
/// 18 KiB and rustls joins handshake messages up to 64 KiB.
const MAX_IN: usize = 96 * 1024;
/// Room a read asks for: a whole record when bodies flow, less for heads.
const READ_BIG: usize = 17 * 1024 + 512;
const READ_SMALL: usize = buffers::LARGE;
/// Overhead of one record at most (header, explicit nonce, tag, content type).
const RECORD_OVERHEAD: usize = 64;
const FRAGMENT: usize = 16 * 1024;
/// rustls's record buffer holds the 5-byte header before the plaintext.
const RECORD_PREFIX: usize = 5;
/// How close (in bytes, modulo 4 KiB) a source may be to rustls's destination before
/// the copy between them slows (see `aliases_record_copy`).
const ALIAS_WINDOW: usize = 256;
/// Staging (see `aliases_record_copy`): at most a record's worth at a time, at an
/// offset half a page away, for writes of at least `STAGE_MIN` bytes.
const STAGE: usize = FRAGMENT;
const STAGE_AT: usize = 2048;
const STAGE_MIN: usize = 4096;

/// The two rustls unbuffered connections, seen the same way.
pub trait Session: DerefMut<Target = UnbufferedConnectionCommon<Self::Data>> {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Session for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        self.process_tls_records(incoming)
    }
}

impl Session for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        self.process_tls_records(incoming)
    }
}

/// What the connection needs after processing what it has.
enum Next {
    /// Decrypted bytes are in `plain`.
    Data,
    /// More ciphertext from the peer (or, after the handshake, nothing to do).
    Read,
    /// The peer closed the TLS session (close_notify).
    Closed,
}

/// A TLS connection over a TCP socket. See the module's documentation.
pub struct TlsStream<S> {
    io: TcpStream,
    conn: S,
    /// Ciphertext read and not processed yet: `inb[start..]`.
    inb: Vec<u8>,
    start: usize,
    /// Decrypted bytes not read yet: `plain[plain_at..]`.
    plain: Vec<u8>,
    plain_at: usize,
    /// Ciphertext to send: `out[..out_len]`. `out` is kept initialized to its length
    /// (rustls writes into `&mut [u8]`), so encrypting never zeroes memory first.
    out: Vec<u8>,
    out_len: usize,
    /// Plaintext staged at an offset that rustls copies from quickly (see
    /// `aliases_record_copy`); empty until needed, freed when idle.
    stage: Vec<u8>,
    /// The peer ended the session (close_notify, or the socket closed): reads give 0.
    eof: bool,
    /// A client's verified certificate (server side, mTLS), read once at handshake.
    pub peer_cert: Option<std::rc::Rc<crate::tls::ClientCert>>,
}

/// A TLS failure as an I/O error (the kind tells a handshake failure from others).
pub fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The rustls error inside an I/O error from this module, if it holds one.
pub fn as_tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

impl<S: Session> TlsStream<S> {
    /// A connection on `io` whose handshake has not begun: call [`Self::handshake`].
    pub fn new(io: TcpStream, conn: S) -> TlsStream<S> {
        TlsStream {
            io,
            conn,
            inb: Vec::new(),
            start: 0,
            plain: Vec::new(),
            plain_at: 0,
            out: Vec::new(),
            out_len: 0,
            stage: Vec::new(),
            eof: false,
            peer_cert: None,
        }
    }

    /// The TCP socket under the session.
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// rustls's view of the session: protocol version, cipher suite, ALPN, the peer's
    /// certificates, whether the handshake was resumed.
    pub fn session(&self) -> &S {
        &self.conn
    }

    /// Bytes already here that a read would return (decrypted or not), so waiting for
    /// the socket to be readable would be wrong.
    pub fn has_buffered(&self) -> bool {
        self.plain_at < self.plain.len() || self.start < self.inb.len()
    }

    /// Give the buffers back to the worker's pool (when the connection goes idle).
    /// Bytes not processed yet are kept.
    pub fn release(&mut self) {
        if self.plain_at >= self.plain.len() {
            self.plain_at = 0;
            buffers::give(&mut self.plain);
        }
        if self.start >= self.inb.len() {
            self.start = 0;
            buffers::give(&mut self.inb);
        }
        if self.out_len == 0 {
            buffers::give(&mut self.out);
        }
        self.stage = Vec::new();
    }

    /// Run the handshake to its end: `Ok` once application data may flow (bytes the
    /// peer sent right after its last handshake message are kept for the first read).
    pub async fn handshake(&mut self) -> io::Result<()> {
        loop {
            let next = match self.advance() {
                Ok(n) => n,
                Err(e) => return Err(self.fail(e).await),
            };
            self.send_out().await?;
            if !self.conn.is_handshaking() {
                return Ok(());
            }
            match next {
                Next::Data => {}
                Next::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    ))
                }
                Next::Read => {
                    if self.fill(READ_SMALL).await? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the peer closed the connection during the TLS handshake",
                        ));
                    }
                }
            }
        }
    }

    /// Process what `inb` holds until rustls needs something: decrypted records go to
    /// `plain`, handshake messages and alerts to `out`.
    fn advance(&mut self) -> Result<Next, rustls::Error> {
        // Each pass handles one state; a handshake flight takes a few.
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process(&mut self.inb[self.start..]);
            let next = match state {
                Err(e) => {
                    self.consume(discard);
                    return Err(e);
                }
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    let mut got = Ok(Next::Data);
                    while let Some(rec) = r.next_record() {
                        match rec {
                            Ok(rec) => {
                                discard += rec.discard;
                                take_plain(&mut self.plain, &mut self.plain_at, rec.payload);
                            }
                            Err(e) => {
                                got = Err(e);
                                break;
                            }
                        }
                    }
                    Some(got)
                }
                // Early data is never accepted (max_early_data_size stays 0).
                Ok(ConnectionState::ReadEarlyData(_)) => {
                    Some(Err(rustls::Error::General("unexpected early data".into())))
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    encode(&mut self.out, &mut self.out_len, &mut e)?;
                    None
                }
                // `out` is sent before any read waits, and before the handshake returns.
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    None
                }
                Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                    self.eof = true;
                    Some(Ok(Next::Closed))
                }
                Ok(ConnectionState::BlockedHandshake) | Ok(ConnectionState::WriteTraffic(_)) => {
                    Some(Ok(Next::Read))
                }
                Ok(_) => Some(Ok(Next::Read)),
            };
            self.consume(discard);
            if let Some(next) = next {
                return next;
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.inb.len() {
            self.start = 0;
            self.inb.clear();
        }
    }

    /// After a TLS error: queue rustls's alert, send it (best effort), and return the
    /// error as an I/O error.
    async fn fail(&mut self, e: rustls::Error) -> io::Error {
        // Always the buffer rustls saw last: its handshake deframer may hold ranges
        // of it (a message spanning records), and an empty slice would not match.
        for _ in 0..4 {
            let UnbufferedStatus { discard, state } =
                self.conn.process(&mut self.inb[self.start..]);
            let more = match state {
                Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                    encode(&mut self.out, &mut self.out_len, &mut enc).is_ok()
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    true
                }
                _ => false,
            };
            self.consume(discard);
            if !more {
                break;
            }
        }
        let _ = self.send_out().await;
        tls_error(e)
    }

    /// Read ciphertext from the socket into `inb`, with room for at least `want`
    /// bytes (and for the whole of a record whose beginning is there).
    async fn fill(&mut self, want: usize) -> io::Result<usize> {
        self.make_room(want)?;
        let buf = std::mem::take(&mut self.inb);
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, slice) = self.io.read(buf.slice_mut(len..cap)).await;
        self.inb = slice.into_inner();
        res
    }

    fn make_room(&mut self, want: usize) -> io::Result<()> {
        if self.start > 0 {
            self.inb.copy_within(self.start.., 0);
            self.inb.truncate(self.inb.len() - self.start);
            self.start = 0;
        }
        let have = self.inb.len();
        if have >= MAX_IN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS record or handshake message too large",
            ));
        }
        let mut need = want;
        if have >= 5 {
            let record = 5 + u16::from_be_bytes([self.inb[3], self.inb[4]]) as usize;
            need = need.max(record.saturating_sub(have));
        }
        if self.inb.capacity() == 0 {
            self.inb = buffers::large();
        }
        if self.inb.capacity() - have < need {
            self.inb.reserve(need);
        }
        Ok(())
    }

    /// Send what `out` holds.
    async fn send_out(&mut self) -> io::Result<()> {
        if self.out_len == 0 {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.out);
        let n = self.out_len;
        let (res, slice) = self.io.write_all(buf.slice(0..n)).await;
        self.out = slice.into_inner();
        self.out_len = 0;
        res.map(|_| ())
    }

    /// Read decrypted bytes into `buf` (its room), waiting for the peer when none are
    /// here. 0 = the session ended.
    async fn read_into(
        &mut self,
        mut put: impl FnMut(&[u8]) -> usize,
        room: usize,
    ) -> io::Result<usize> {
        let want = if room >= 8 * 1024 {
            READ_BIG
        } else {
            READ_SMALL
        };
        loop {
            if self.plain_at < self.plain.len() {
                let n = put(&self.plain[self.plain_at..]);
                self.plain_at += n;
                if self.plain_at >= self.plain.len() {
                    self.plain.clear();
                    self.plain_at = 0;
                }
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            match self.advance() {
                Ok(Next::Data) | Ok(Next::Closed) => {}
                Ok(Next::Read) => {
                    self.send_out().await?;
                    if self.fill(want).await? == 0 {
                        // The socket ended without close_notify. HTTP/1.1 frames its
                        // messages, so the request path tells a truncated one.
                        self.eof = true;
                    }
                }
                Err(e) => return Err(self.fail(e).await),
            }
        }
    }

    /// Like a read, but the wait for the socket can be cancelled through `handle`
    /// (the connection going idle between requests).
    async fn cancelable_read_into<T: IoBufMut>(
        &mut self,
        mut buf: T,
        handle: CancelHandle,
    ) -> BufResult<usize, T> {
        loop {
            if self.plain_at < self.plain.len() || self.eof {
                let room = buf.bytes_total();
                let r = self.read_into(|b| rent::fill(&mut buf, b), room).await;
                return (r, buf);
            }
            match self.advance() {
                Ok(_) => {
                    if self.plain_at < self.plain.len() || self.eof {
                        continue;
                    }
                }
                Err(e) => return (Err(self.fail(e).await), buf),
            }
            if let Err(e) = self.send_out().await {
                return (Err(e), buf);
            }
            if let Err(e) = self.make_room(READ_SMALL) {
                return (Err(e), buf);
            }
            let inb = std::mem::take(&mut self.inb);
            let (len, cap) = (inb.len(), inb.capacity());
            let (res, slice) = self
                .io
                .cancelable_read(inb.slice_mut(len..cap), handle.clone())
                .await;
            self.inb = slice.into_inner();
            match res {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Encrypt `data` (up to [`MAX_WRITE`] of it) and send it: the number of bytes of
    /// `data` sent.
    async fn write_from(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut n = data.len().min(MAX_WRITE);
        if n >= STAGE_MIN && aliases_record_copy(data.as_ptr()) {
            // See `aliases_record_copy`: one fast copy to a good offset instead of
            // rustls's slow one from here.
            n = n.min(STAGE);
            let mut stage = std::mem::take(&mut self.stage);
            if stage.len() < STAGE_AT + STAGE {
                stage.resize(STAGE_AT + STAGE, 0);
            }
            stage[STAGE_AT..STAGE_AT + n].copy_from_slice(&data[..n]);
            let sealed = self.encrypt(&stage[STAGE_AT..STAGE_AT + n]);
            self.stage = stage;
            sealed?;
        } else {
            self.encrypt(&data[..n])?;
        }
        self.send_out().await?;
        Ok(n)
    }

    /// Encrypt `data` into `out`, after anything rustls must send first.
    fn encrypt(&mut self, data: &[u8]) -> io::Result<()> {
        self.writing(|w, out, out_len| encrypt(out, out_len, w, data))
    }

    /// Run `f` with rustls's write state, once it is reached: handshake messages and
    /// alerts rustls must send first go to `out`, and records that arrive meanwhile
    /// are decrypted into `plain` for the next read. rustls is always given the
    /// incoming buffer as it last saw it (its handshake deframer may hold ranges of it).
    fn writing<R>(
        &mut self,
        f: impl FnOnce(&mut WriteTraffic<'_, S::Data>, &mut Vec<u8>, &mut usize) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut f = Some(f);
        for _ in 0..16 {
            let TlsStream {
                conn,
                inb,
                start,
                plain,
                plain_at,
                out,
                out_len,
                eof,
                ..
            } = self;
            let UnbufferedStatus { mut discard, state } = conn.process(&mut inb[*start..]);
            let done = match state.map_err(tls_error)? {
                ConnectionState::WriteTraffic(mut w) => {
                    let f = f.take().expect("called once");
                    Some(f(&mut w, out, out_len))
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    encode(out, out_len, &mut e).map_err(tls_error)?;
                    None
                }
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    None
                }
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec.map_err(tls_error)?;
                        discard += rec.discard;
                        take_plain(plain, plain_at, rec.payload);
                    }
                    None
                }
                ConnectionState::PeerClosed => {
                    *eof = true;
                    None
                }
                ConnectionState::Closed => Some(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the TLS session is closed",
                ))),
                _ => Some(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the TLS handshake is not complete",
                ))),
            };
            self.consume(discard);
            if let Some(r) = done {
                return r;
            }
        }
        Err(io::Error::other("TLS: no state to write in"))
    }

    // --- Relaying (`crate::pipeline::upgrade`) -------------------------------------
    // A relay reads and writes the socket itself, through descriptors of its own, so
    // that its two directions run at once; the session is only used between its
    // awaits, to decrypt what one direction read and to encrypt what the other writes.

    /// Decrypt `cipher` (bytes read from the socket by the caller; empty: only what
    /// is already buffered here) and append the plaintext to `plain`. Handshake
    /// messages or alerts rustls wants sent are kept in `out` and go with the next
    /// [`Self::seal_into`] (RFC 8446 §4.6.3 lets a KeyUpdate answer wait for the next
    /// data). `Ok(true)`: the peer ended the session (close_notify).
    pub fn open_into(&mut self, cipher: &[u8], plain: &mut Vec<u8>) -> io::Result<bool> {
        if !cipher.is_empty() {
            if self.start > 0 {
                self.inb.copy_within(self.start.., 0);
                self.inb.truncate(self.inb.len() - self.start);
                self.start = 0;
            }
            if self.inb.len() + cipher.len() > MAX_IN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS record or handshake message too large",
                ));
            }
            self.inb.extend_from_slice(cipher);
        }
        // Each pass handles one state; a bounded number of them per read.
        for _ in 0..1024 {
            let next = self.advance().map_err(tls_error)?;
            if self.plain_at < self.plain.len() {
                plain.extend_from_slice(&self.plain[self.plain_at..]);
                self.plain.clear();
                self.plain_at = 0;
            }
            match next {
                Next::Data => {}
                Next::Read => return Ok(self.eof),
                Next::Closed => return Ok(true),
            }
        }
        Err(io::Error::other("TLS: too many records in one read"))
    }

    /// Encrypt `data` and append to `wire` everything to send, in order: what rustls
    /// queued before (see [`Self::open_into`]), then `data`'s records.
    pub fn seal_into(&mut self, data: &[u8], wire: &mut Vec<u8>) -> io::Result<()> {
        for part in data.chunks(MAX_WRITE) {
            self.encrypt(part)?;
        }
        wire.extend_from_slice(&self.out[..self.out_len]);
        self.out_len = 0;
        Ok(())
    }

    /// Queue close_notify and append to `wire` everything left to send.
    pub fn close_into(&mut self, wire: &mut Vec<u8>) {
        let _ = self.writing(|w, out, out_len| {
            let at = *out_len;
            grow(out, at + RECORD_OVERHEAD);
            if let Ok(n) = w.queue_close_notify(&mut out[at..]) {
                *out_len += n;
            }
            Ok(())
        });
        wire.extend_from_slice(&self.out[..self.out_len]);
        self.out_len = 0;
    }

    /// Send close_notify, then end the socket's sending side.
    async fn close(&mut self) -> io::Result<()> {
        let _ = self.writing(|w, out, out_len| {
            let at = *out_len;
            grow(out, at + RECORD_OVERHEAD);
            if let Ok(n) = w.queue_close_notify(&mut out[at..]) {
                *out_len += n;
            }
            Ok(())
        });
        self.send_out().await?;
        self.io.shutdown().await
    }
}

/// rustls seals a record in a fresh buffer of its own, copying the plaintext to 5
/// bytes past the buffer's start (room for the record header); for a full 16 KiB
/// record that buffer is one of mimalloc's 20 KiB blocks, which start on 4 KiB
/// boundaries, and so are ours of that size (an upstream read buffer, a staged cache
/// chunk). glibc's memcpy for large copies (`rep movsb`) runs several times slower on
/// this machine's AMD cores when source and destination sit at nearly the same offset
/// within a 4 KiB page ("4K aliasing"): that copy was 24 % of a worker's CPU on 1 MiB
/// HTTPS responses (`perf`), against 9 % for the AES-GCM, and moving the source by
/// 2 KiB cut the CPU per response by a quarter. Such sources are staged first (a copy
/// at a good offset costs far less than the aliased one).
fn aliases_record_copy(src: *const u8) -> bool {
    let d = (src as usize).wrapping_sub(RECORD_PREFIX) % 4096;
    !(ALIAS_WINDOW..=4096 - ALIAS_WINDOW).contains(&d)
}

/// Append a record's payload to the decrypted bytes not read yet.
fn take_plain(plain: &mut Vec<u8>, at: &mut usize, payload: &[u8]) {
    if *at >= plain.len() {
        plain.clear();
        *at = 0;
        if plain.capacity() == 0 {
            *plain = buffers::large();
        }
    }
    plain.extend_from_slice(payload);
}

fn grow(out: &mut Vec<u8>, len: usize) {
    if out.len() < len {
        if out.capacity() == 0 {
            *out = buffers::large();
        }
        out.resize(len.max(out.capacity()), 0);
    }
}

fn encode<D>(
    out: &mut Vec<u8>,
    out_len: &mut usize,
    e: &mut EncodeTlsData<'_, D>,
) -> Result<(), rustls::Error> {
    loop {
        grow(out, *out_len + 1024);
        match e.encode(&mut out[*out_len..]) {
            Ok(n) => {
                *out_len += n;
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) => grow(out, *out_len + s.required_size),
            Err(EncodeError::AlreadyEncoded) => return Ok(()),
        }
    }
}

fn encrypt<D>(
    out: &mut Vec<u8>,
    out_len: &mut usize,
    w: &mut WriteTraffic<'_, D>,
    data: &[u8],
) -> io::Result<()> {
    let need = data.len() + (data.len() / FRAGMENT + 1) * RECORD_OVERHEAD;
    grow(out, *out_len + need);
    loop {
        match w.encrypt(data, &mut out[*out_len..]) {
            Ok(n) => {
                *out_len += n;
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) => grow(out, *out_len + s.required_size),
            Err(EncryptError::EncryptExhausted) => {
                return Err(io::Error::other("TLS: the session's keys are used up"))
            }
        }
    }
}

impl<S: Session> AsyncReadRent for TlsStream<S> {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let room = buf.bytes_total();
        let r = self.read_into(|b| rent::fill(&mut buf, b), room).await;
        (r, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let r = self
            .read_into(|b| rent::fill_first(&mut buf, b), READ_SMALL)
            .await;
        (r, buf)
    }
}

impl<S: Session> CancelableAsyncReadRent for TlsStream<S> {
    async fn cancelable_read<T: IoBufMut>(
        &mut self,
        buf: T,
        c: CancelHandle,
    ) -> BufResult<usize, T> {
        self.cancelable_read_into(buf, c).await
    }

    async fn cancelable_readv<T: IoVecBufMut>(
        &mut self,
        buf: T,
        _c: CancelHandle,
    ) -> BufResult<usize, T> {
        self.readv(buf).await
    }
}

impl<S: Session> AsyncWriteRent for TlsStream<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let r = self.write_from(rent::bytes(&buf)).await;
        (r, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let mut total = 0;
        for part in rent::iovecs(&buf) {
            let n = part.len().min(MAX_WRITE - total);
            if let Err(e) = self.encrypt(&part[..n]) {
                return (Err(e), buf);
            }
            total += n;
            if total == MAX_WRITE {
                break;
            }
        }
        let r = self.send_out().await.map(|()| total);
        (r, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.send_out().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.close().await
    }
}

/// A connection, plain or TLS: the one type the request path (a client's connection)
/// and the upstream client (a connection to a server) read and write.
pub enum Stream<S> {
    Plain(TcpStream),
    /// Boxed: rustls's connection state is about a kilobyte, and a plain connection
    /// should not carry room for it.
    Tls(Box<TlsStream<S>>),
}

impl<S> std::fmt::Debug for Stream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            Stream::Tls(t) => f.debug_tuple("Tls").field(&t.io).finish(),
        }
    }
}

impl<S: Session> Stream<S> {
    /// The plain TCP socket, if this is one (`None` for TLS): what only a plain
    /// socket can do (splice, sendfile, a second handle) asks here first.
    #[inline]
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }

    /// The plain TCP socket, mutably (splice(2)); `None` for TLS.
    #[inline]
    pub fn tcp_mut(&mut self) -> Option<&mut TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }

    /// The TCP socket under the stream, plain or TLS (readiness, peeking, options).
    #[inline]
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.io,
        }
    }

    /// The TLS session, if this is one.
    #[inline]
    pub fn tls(&self) -> Option<&TlsStream<S>> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(t) => Some(t),
        }
    }

    /// Bytes already here that the next read returns without waiting (TLS only).
    #[inline]
    pub fn has_buffered(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.has_buffered(),
        }
    }

    /// Give the TLS buffers back to the worker's pool (the connection goes idle).
    #[inline]
    pub fn release(&mut self) {
        if let Stream::Tls(t) = self {
            t.release();
        }
    }

    /// Has the peer closed or reset this idle connection, or sent bytes nobody
    /// asked for? (See [`crate::http::sock::peer_closed`]; for TLS a pending record,
    /// close_notify or not, counts as such bytes.)
    #[inline]
    pub fn peer_closed(&self) -> bool {
        self.has_buffered() || crate::http::sock::peer_closed(self.socket())
    }
}

impl<S: Session> AsyncReadRent for Stream<S> {
    #[inline]
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(t) => t.read(buf).await,
        }
    }

    #[inline]
    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.readv(buf).await,
            Stream::Tls(t) => t.readv(buf).await,
        }
    }
}

impl<S: Session> CancelableAsyncReadRent for Stream<S> {
    #[inline]
    async fn cancelable_read<T: IoBufMut>(
        &mut self,
        buf: T,
        c: CancelHandle,
    ) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.cancelable_read(buf, c).await,
            Stream::Tls(t) => t.cancelable_read(buf, c).await,
        }
    }

    #[inline]
    async fn cancelable_readv<T: IoVecBufMut>(
        &mut self,
        buf: T,
        c: CancelHandle,
    ) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.cancelable_readv(buf, c).await,
            Stream::Tls(t) => t.cancelable_readv(buf, c).await,
        }
    }
}

impl<S: Session> AsyncWriteRent for Stream<S> {
    #[inline]
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.write(buf).await,
            Stream::Tls(t) => t.write(buf).await,
        }
    }

    #[inline]
    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.writev(buf).await,
            Stream::Tls(t) => t.writev(buf).await,
        }
    }

    #[inline]
    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(t) => AsyncWriteRent::flush(&mut **t).await,
        }
    }

    #[inline]
    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(t) => t.shutdown().await,
        }
    }
}

#[cfg(test)]
mod tests {
    /// What an idle TLS connection keeps inline, besides the heap rustls's state
    /// points at (its record keys, the traffic state): the socket, rustls's
    /// connection, and our (empty) buffers. 1,280 bytes at this writing, of which
    /// rustls's connection is 1,088.
    #[test]
    fn an_idle_tls_stream_is_small() {
        let n = std::mem::size_of::<super::TlsStream<rustls::server::UnbufferedServerConnection>>();
        eprintln!("TlsStream (server): {n} bytes");
        assert!(n <= 1400, "the TLS stream grew to {n} bytes");
    }

    #[test]
    fn sources_near_rustls_record_offset_are_staged() {
        use super::aliases_record_copy as aliased;
        // rustls's plaintext lands at 5 past a 4 KiB boundary.
        assert!(aliased(0x10000 as *const u8));
        assert!(aliased(0x10005 as *const u8));
        assert!(aliased(0x10010 as *const u8));
        assert!(aliased((0x11000 - 16) as *const u8));
        assert!(!aliased(0x10800 as *const u8));
        assert!(!aliased(0x10805 as *const u8));
    }
}
