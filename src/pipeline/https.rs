//! The HTTPS stage: what a request gets from the gateway's TLS settings, before it is
//! routed ([`super::stack::arrival`]).
//!
//! - `redirect_http`: a request on a plain listener is answered `308 Permanent
//!   Redirect` to the same URL on the HTTPS listener (308, not 301: the method and
//!   body are kept, RFC 9110 15.4.9). The admin listener is a listener of its own and
//!   never passes here.
//! - `hsts_max_age_s`: every response on an HTTPS connection carries
//!   `Strict-Transport-Security` (RFC 6797 7.2: never over plain HTTP).
//!
//! The forwarded request's `X-Forwarded-Proto: https` and the client certificate's
//! fields are written with the rest of the upstream head ([`super::forward`]).

use super::forward::Peer;
use super::local::Local;
use crate::config::Config;
use crate::http::RequestHead;

/// A redirect to HTTPS: the status, message and header lines of the answer.
pub struct Redirect {
    pub message: String,
    pub headers: Vec<u8>,
}

/// The stage's arrival phase: `Some` when the request is to be redirected to HTTPS
/// (400 if it names no usable host); else `extra` may gain the HSTS header line.
pub fn arrival(
    w: &Local,
    cfg: &Config,
    peer: &Peer,
    head: &RequestHead,
    buf: &[u8],
    extra: &mut Vec<u8>,
) -> Option<Result<Redirect, &'static str>> {
    let tls = cfg.tls.as_ref()?;
    if peer.https {
        if let Some(hsts) = tls.hsts() {
            extra.extend_from_slice(b"Strict-Transport-Security: ");
            extra.extend_from_slice(hsts.as_bytes());
            extra.extend_from_slice(b"\r\n");
        }
        return None;
    }
    if !tls.settings.redirect_http {
        return None;
    }
    let port = w.cfg.server.https_port?;
    Some(
        location(head.host_name(buf), port, head.target.get(buf)).map(|url| Redirect {
            message: format!("this service is served over HTTPS: {url}"),
            headers: [b"Location: ".as_slice(), url.as_bytes(), b"\r\n"].concat(),
        }),
    )
}

/// `https://host[:port]/target`: the request's host (its port replaced by the HTTPS
/// listener's, left out when 443) and its target as sent. A host that is not a plain
/// name or address literal is refused rather than echoed into a header.
pub fn location(host: &[u8], port: u16, target: &[u8]) -> Result<String, &'static str> {
    if host.is_empty() {
        return Err("the request names no host to redirect to; use https");
    }
    let ok = host.iter().all(|&b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
    });
    if !ok {
        return Err("the request's Host is not a valid host name");
    }
    let host =
        std::str::from_utf8(host).map_err(|_| "the request's Host is not a valid host name")?;
    // Origin-form as sent; an absolute-form target keeps only its path and query.
    let target = match target.first() {
        Some(b'/') => target,
        _ => match target.windows(3).position(|w| w == b"://").and_then(|i| {
            target[i + 3..]
                .iter()
                .position(|&b| b == b'/')
                .map(|j| i + 3 + j)
        }) {
            Some(at) => &target[at..],
            None => b"/",
        },
    };
    let target = std::str::from_utf8(target).map_err(|_| "the request target is not valid")?;
    Ok(match port {
        443 => format!("https://{host}{target}"),
        p => format!("https://{host}:{p}{target}"),
    })
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn redirects_keep_host_and_target() {
        assert_eq!(
            location(b"api.example.com", 443, b"/v1/x?a=1").unwrap(),
            "https://api.example.com/v1/x?a=1"
        );
        assert_eq!(
            location(b"[::1]", 8443, b"/").unwrap(),
            "https://[::1]:8443/"
        );
        assert_eq!(
            location(b"h", 8443, b"http://h:8080/p?q").unwrap(),
            "https://h:8443/p?q"
        );
        assert!(location(b"", 443, b"/").is_err());
        assert!(location(b"a\"b", 443, b"/").is_err());
    }
}
