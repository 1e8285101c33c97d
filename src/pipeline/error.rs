//! One error type for everything that can end a request, recording where it came from
//! (client, upstream, gateway) so that the status, the message and whether the client
//! connection may be kept are decided in one function.

use crate::http::ChunkError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    // --- downstream (the client) ---
    #[error("client closed the connection")]
    ClientClosed,
    #[error("client I/O error: {0}")]
    ClientIo(std::io::Error),
    #[error("invalid chunked request body: {0}")]
    ClientBadChunk(ChunkError),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    // --- upstream ---
    #[error("no upstream server available")]
    NoServer,
    #[error("upstream connect timed out")]
    ConnectTimeout,
    #[error("upstream connect failed: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake with the upstream failed: {0}")]
    UpstreamTls(std::io::Error),
    #[error("upstream I/O error: {0}")]
    UpstreamIo(std::io::Error),
    #[error("upstream closed the connection before responding")]
    UpstreamClosed,
    #[error("upstream response timed out")]
    ResponseTimeout,
    #[error("invalid response from upstream: {0}")]
    UpstreamBadResponse(&'static str),
    #[error("upstream body truncated")]
    UpstreamTruncated,
    /// The upstream answered 5xx (or did not answer in time: 504 here) on a route that
    /// turns that into 502 (`BodyRules::upstream_error_is_502`): it got the request,
    /// so it is never sent again.
    #[error("upstream answered {0}")]
    UpstreamServerError(u16),
    // --- the gateway ---
    #[error("request timed out")]
    RequestTimeout,
    /// The gateway could not open a socket (out of descriptors or kernel memory): its
    /// own trouble, not the upstream's, so it neither counts against the server nor
    /// moves on to another.
    #[error("out of local resources: {0}")]
    Exhausted(std::io::Error),
}

/// What a client is told of a failed TLS handshake with the upstream: which kind of
/// failure (the operator's log has the whole reason), never the upstream's details.
fn tls_message(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as E};
    match crate::tls::stream::as_tls_error(e) {
        Some(E::InvalidCertificate(C::UnknownIssuer)) => {
            "the upstream's TLS certificate is not trusted (unknown issuer)"
        }
        Some(E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => {
            "the upstream's TLS certificate does not name the upstream"
        }
        Some(E::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => {
            "the upstream's TLS certificate has expired"
        }
        Some(E::InvalidCertificate(_)) => "the upstream's TLS certificate was refused",
        Some(E::AlertReceived(rustls::AlertDescription::CertificateRequired))
        | Some(E::AlertReceived(rustls::AlertDescription::HandshakeFailure)) => {
            "the upstream refused the TLS handshake (a client certificate may be required)"
        }
        _ => "the TLS handshake with the upstream failed",
    }
}

/// Errors of `socket(2)` that say the gateway itself ran out of something.
fn is_local_exhaustion(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|x| e.raw_os_error() == Some(x.raw_os_error()))
}

impl From<crate::upstream::client::UpstreamError> for ProxyError {
    fn from(e: crate::upstream::client::UpstreamError) -> ProxyError {
        use crate::upstream::client::UpstreamError as U;
        match e {
            U::ConnectTimeout => ProxyError::ConnectTimeout,
            U::Connect(e) if is_local_exhaustion(&e) => ProxyError::Exhausted(e),
            U::Connect(e) => ProxyError::Connect(e),
            U::Tls(e) => ProxyError::UpstreamTls(e),
            U::Io(e) => ProxyError::UpstreamIo(e),
            U::Closed => ProxyError::UpstreamClosed,
            U::Timeout => ProxyError::ResponseTimeout,
            U::BadResponse(what) => ProxyError::UpstreamBadResponse(what),
            U::Truncated => ProxyError::UpstreamTruncated,
            U::TooLarge => ProxyError::UpstreamBadResponse("response too large"),
        }
    }
}

impl ProxyError {
    /// The status for the client, when nothing of the response was sent yet;
    /// `None` means there is nobody to answer (the client went away).
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            ProxyError::ClientClosed | ProxyError::ClientIo(_) => return None,
            ProxyError::ClientBadChunk(_) => 400,
            ProxyError::BodyTooLarge(_) => 413,
            ProxyError::NoServer | ProxyError::Exhausted(_) => 503,
            ProxyError::ConnectTimeout
            | ProxyError::Connect(_)
            | ProxyError::UpstreamTls(_)
            | ProxyError::UpstreamIo(_)
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamBadResponse(_)
            | ProxyError::UpstreamTruncated
            | ProxyError::UpstreamServerError(_) => 502,
            ProxyError::ResponseTimeout | ProxyError::RequestTimeout => 504,
        })
    }

    /// A message safe to show a client (no addresses, no internals).
    pub fn public_message(&self) -> &'static str {
        match self {
            ProxyError::ClientClosed | ProxyError::ClientIo(_) => "client connection failed",
            ProxyError::ClientBadChunk(_) => "invalid chunked request body",
            ProxyError::BodyTooLarge(_) => "request body too large",
            ProxyError::NoServer => "no upstream server is available",
            ProxyError::ConnectTimeout => "timed out connecting to the upstream",
            ProxyError::Connect(_) => "could not connect to the upstream",
            ProxyError::UpstreamTls(e) => tls_message(e),
            ProxyError::UpstreamIo(_) | ProxyError::UpstreamClosed => {
                "the upstream connection failed"
            }
            ProxyError::UpstreamBadResponse(_) => "the upstream sent an invalid response",
            ProxyError::UpstreamTruncated => "the upstream response was truncated",
            ProxyError::UpstreamServerError(_) => "the upstream failed to take the request",
            ProxyError::ResponseTimeout => "the upstream did not respond in time",
            ProxyError::RequestTimeout => "the request did not complete in time",
            ProxyError::Exhausted(_) => "the gateway is out of resources; try again",
        }
    }

    /// Does this failure count against the server (circuit breaker, retries)?
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::ConnectTimeout
                | ProxyError::Connect(_)
                | ProxyError::UpstreamTls(_)
                | ProxyError::UpstreamIo(_)
                | ProxyError::UpstreamClosed
                | ProxyError::ResponseTimeout
                | ProxyError::UpstreamBadResponse(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::client::UpstreamError;

    #[test]
    fn running_out_of_descriptors_is_the_gateways_trouble_not_the_upstreams() {
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let e = ProxyError::from(UpstreamError::Connect(emfile));
        assert!(matches!(e, ProxyError::Exhausted(_)));
        assert_eq!(e.status(), Some(503));
        assert!(!e.is_upstream_failure(), "no breaker, no retry elsewhere");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = ProxyError::from(UpstreamError::Connect(refused));
        assert_eq!(e.status(), Some(502));
        assert!(e.is_upstream_failure());
    }
}
