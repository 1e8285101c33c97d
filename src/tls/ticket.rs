//! Session tickets every worker can open, with rotating keys and no shared mutable
//! state.
//!
//! A client that resumes lands on whichever worker SO_REUSEPORT picks, so a ticket
//! sealed by one worker must open on every other. rustls's own ticketer keeps its keys
//! behind a lock and makes them up per instance; sharing one instance would put that
//! lock between cores. Here every worker has its own [`Ticketer`], and all of them
//! derive the same keys:
//!
//! - a master secret, 32 random bytes from ring's `SystemRandom`, made once per process
//!   ([`master_secret`], a `OnceLock`) and kept across reloads, so a reload does not cost
//!   every client a full handshake;
//! - time cut into epochs of [`ROTATION`] (12 h): epoch = unix time / 12 h;
//! - the key of epoch `e` = HKDF-SHA256(master, info = "ringgate ticket v1" || e ||
//!   context), an AES-256-GCM key. `context` is a digest of what a resumed session
//!   skips checking (the client-certificate policy and its CAs, see `ServerTls`), so a
//!   ticket issued before a reload that tightened `client_auth` no longer opens.
//!
//! A ticket is `epoch (4 bytes, big-endian) || nonce (12, random) || AES-256-GCM(plain)
//! with the epoch as associated data || tag (16)`. New tickets use the current epoch;
//! tickets of the current and the previous epoch open, older ones, tampered ones and
//! ones from another process or context do not (the client then does a full
//! handshake). A key therefore lives 24 h at most, and the lifetime hint is 12 h: a
//! ticket is good for at least that long. The master secret never leaves the process,
//! so tickets do not survive a restart (nginx without `ssl_session_ticket_key` files
//! behaves the same); a takeover upgrade costs each client one full handshake.
//!
//! Cost per ticket: one HKDF expansion (two HMAC-SHA256) and one AES-GCM key schedule
//! besides the seal or open itself, a few microseconds against a handshake's hundreds;
//! caching the keys would need a lock or a cell per worker for no measurable gain.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// How often the ticket key changes.
pub const ROTATION_SECS: u64 = 12 * 3600;

const EPOCH_LEN: usize = 4;
const TAG_LEN: usize = 16;
const INFO: &[u8] = b"ringgate ticket v1";

/// The process's ticket master secret: made on first use, the same for every worker and
/// every reload until the process exits.
pub fn master_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        // SystemRandom reads getrandom(2); it cannot fail on a supported Linux.
        SystemRandom::new()
            .fill(&mut s)
            .expect("the system random source failed");
        s
    })
}

/// One worker's ticket producer; every worker's opens every other's tickets.
pub struct Ticketer {
    prk: hkdf::Prk,
    context: [u8; 32],
    rng: SystemRandom,
    /// Unix time now (tests turn the clock).
    clock: fn() -> u64,
}

impl std::fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticketer")
            .field("rotation_secs", &ROTATION_SECS)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Ticketer {
    /// A ticketer on the process's master secret, bound to `context`.
    pub fn new(context: [u8; 32]) -> Ticketer {
        Ticketer::with_secret(master_secret(), context, unix_now)
    }

    /// As [`Ticketer::new`] with a given secret and clock: for tests.
    pub fn with_secret(secret: &[u8; 32], context: [u8; 32], clock: fn() -> u64) -> Ticketer {
        // Extract once; only the per-epoch expansion happens per ticket.
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"ringgate session tickets").extract(secret);
        Ticketer {
            prk,
            context,
            rng: SystemRandom::new(),
            clock,
        }
    }

    fn epoch(&self) -> u32 {
        // u32 epochs of 12 h last five million years.
        u32::try_from((self.clock)() / ROTATION_SECS).unwrap_or(u32::MAX)
    }

    fn key(&self, epoch: u32) -> Option<LessSafeKey> {
        let e = epoch.to_be_bytes();
        let info = [INFO, &e[..], &self.context[..]];
        let okm = self.prk.expand(&info, &AES_256_GCM).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// Seal `plain` under the key of `epoch`.
    fn seal(&self, epoch: u32, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.key(epoch)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(EPOCH_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let mut body = out.split_off(EPOCH_LEN + NONCE_LEN);
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(epoch.to_be_bytes()),
            &mut body,
        )
        .ok()?;
        out.append(&mut body);
        Some(out)
    }

    /// Open a ticket if its epoch is `now` or the one before, it is intact and it was
    /// sealed in this process with this context. Never panics, whatever the bytes.
    fn open(&self, now: u32, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < EPOCH_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (head, sealed) = ticket.split_at(EPOCH_LEN + NONCE_LEN);
        let epoch = u32::from_be_bytes(head[..EPOCH_LEN].try_into().ok()?);
        if epoch != now && Some(epoch) != now.checked_sub(1) {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&head[EPOCH_LEN..]).ok()?;
        let key = self.key(epoch)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(epoch.to_be_bytes()), &mut buf)
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }
}

impl rustls::server::ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        ROTATION_SECS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(self.epoch(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(self.epoch(), cipher)
    }
}

// The tag ring appends to every seal.
const _: () = assert!(aead::MAX_TAG_LEN == TAG_LEN);

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets as _;

    const SECRET: [u8; 32] = [7; 32];
    const CTX: [u8; 32] = [1; 32];

    fn at(t: u64) -> fn() -> u64 {
        // fn pointers cannot capture: a few fixed clocks.
        match t {
            0 => || 1_000 * ROTATION_SECS + 5,
            1 => || 1_001 * ROTATION_SECS + 5,
            2 => || 1_002 * ROTATION_SECS + 5,
            _ => unreachable!(),
        }
    }

    #[test]
    fn two_workers_open_each_others_tickets() {
        let a = Ticketer::with_secret(&SECRET, CTX, at(0));
        let b = Ticketer::with_secret(&SECRET, CTX, at(0));
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
        assert_eq!(a.decrypt(&t).unwrap(), b"session state");
        // Fresh nonces: the same state never seals to the same ticket.
        assert_ne!(a.encrypt(b"session state").unwrap(), t);
        assert_eq!(t.len(), 4 + 12 + 13 + 16);
    }

    #[test]
    fn the_previous_epoch_opens_older_ones_do_not() {
        let t = Ticketer::with_secret(&SECRET, CTX, at(0))
            .encrypt(b"x")
            .unwrap();
        let next = Ticketer::with_secret(&SECRET, CTX, at(1));
        assert_eq!(next.decrypt(&t).unwrap(), b"x");
        let later = Ticketer::with_secret(&SECRET, CTX, at(2));
        assert_eq!(later.decrypt(&t), None);
        // Nor one from the future (a clock stepped back).
        let t2 = later.encrypt(b"y").unwrap();
        assert_eq!(next.decrypt(&t2), None);
    }

    #[test]
    fn tampered_foreign_and_short_tickets_do_not_open() {
        let a = Ticketer::with_secret(&SECRET, CTX, at(0));
        let t = a.encrypt(b"session state").unwrap();
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 0x01;
            assert_eq!(a.decrypt(&bad), None, "byte {i} flipped");
        }
        // The epoch is authenticated: moving a ticket to the previous epoch fails.
        let mut moved = t.clone();
        moved[..4].copy_from_slice(&999u32.to_be_bytes());
        assert_eq!(a.decrypt(&moved), None);
        let other_process = Ticketer::with_secret(&[8; 32], CTX, at(0));
        assert_eq!(other_process.decrypt(&t), None);
        let other_context = Ticketer::with_secret(&SECRET, [2; 32], at(0));
        assert_eq!(other_context.decrypt(&t), None);
        for n in 0..t.len() {
            assert_eq!(a.decrypt(&t[..n]), None);
        }
        assert_eq!(a.decrypt(&[]), None);
    }

    #[test]
    fn the_master_secret_is_made_once() {
        assert!(std::ptr::eq(master_secret(), master_secret()));
        assert_ne!(master_secret(), &[0u8; 32]);
        let a = Ticketer::new(CTX);
        let b = Ticketer::new(CTX);
        let t = a.encrypt(b"z").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"z");
        assert_eq!(a.lifetime(), 43_200);
    }
}
