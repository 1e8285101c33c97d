//! TLS termination for a connection accepted on a `server.tls.listen` listener: the
//! handshake, under `handshake_timeout_ms`, with the worker's current TLS
//! configuration ([`super::stack::Pipeline::tls`], so a reload's certificates apply
//! to new handshakes while open connections keep theirs). What the handshake
//! established that the request path uses (that the connection is HTTPS, a verified
//! client certificate) is read here once per connection.
//!
//! A failed handshake is counted and logged with its reason, at most once a second per
//! worker (a scan of garbage ClientHellos must not flood the log); it closes only its
//! own connection.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::time::Instant;
use rustls::server::UnbufferedServerConnection;
use rustls::HandshakeKind;

use super::local::Local;
use crate::tls::stream::{as_tls_error, TlsStream};

/// How long a handshake may take when the configuration says nothing.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A new server session with the worker's current TLS configuration (`None` when
/// there is none: TLS is not configured).
pub fn session(w: &Local) -> Option<UnbufferedServerConnection> {
    UnbufferedServerConnection::new(w.pipeline().tls.clone()?).ok()
}

/// Run the TLS handshake of a new connection: false when it failed, timed out or the
/// worker is stopping (the connection is then closed).
pub async fn handshake(
    w: &Rc<Local>,
    tls: &mut TlsStream<UnbufferedServerConnection>,
    peer: IpAddr,
) -> bool {
    let timeout = w
        .pipeline()
        .cfg
        .tls
        .as_ref()
        .map_or(HANDSHAKE_TIMEOUT, |t| t.settings.handshake_timeout);
    let deadline = Instant::now() + timeout;
    let outcome = monoio::select! {
        r = tls.handshake() => Some(r),
        _ = monoio::time::sleep_until(deadline) => None,
        _ = w.shutdown.wait() => return false,
    };
    match outcome {
        Some(Ok(())) => {
            crate::telemetry::inc(&w.counters.tls_handshakes);
            if tls.session().handshake_kind() == Some(HandshakeKind::Resumed) {
                crate::telemetry::inc(&w.counters.tls_resumed);
            }
            tls.peer_cert = tls
                .session()
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::tls::client_cert_info(c.as_ref()))
                .map(Rc::new);
            tls.release();
            true
        }
        Some(Err(e)) => {
            failed(w, peer, &describe(&e));
            false
        }
        None => {
            failed(w, peer, "the handshake did not finish in time");
            false
        }
    }
}

/// The reason of a failed handshake, as an operator reads it.
fn describe(e: &std::io::Error) -> String {
    match as_tls_error(e) {
        Some(rustls::Error::NoApplicationProtocol) => {
            "the client offered no protocol we serve (ALPN)".to_owned()
        }
        Some(rustls::Error::InvalidMessage(m)) => {
            format!("not a TLS handshake (invalid message: {m:?}); plain HTTP on the TLS port?")
        }
        Some(t) => t.to_string(),
        None => e.to_string(),
    }
}

thread_local! {
    /// When this worker last logged a failed handshake, and how many it did not log
    /// since.
    static LOGGED: Cell<(Option<Instant>, u64)> = const { Cell::new((None, 0)) };
}

fn failed(w: &Local, peer: IpAddr, reason: &str) {
    crate::telemetry::inc(&w.counters.tls_handshake_failures);
    if w.cfg.log.level < crate::config::LogLevel::Warn {
        return;
    }
    let now = Instant::now();
    LOGGED.with(|l| {
        let (last, skipped) = l.get();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            l.set((last, skipped + 1));
            return;
        }
        let more = if skipped > 0 {
            format!(" ({skipped} more failed since the last report)")
        } else {
            String::new()
        };
        eprintln!(
            "ringgate: worker {}: TLS handshake with {peer} failed: {reason}{more}",
            w.id
        );
        l.set((Some(now), 0));
    });
}
