//! The auth stage: runs after routing (the route says whether credentials are
//! required) and before rate limiting (the bucket is the caller's). It either passes
//! the request on with the verified identity, or answers 401/403 itself.
//!
//! - `auth = "none"`: credentials are not looked at (and are forwarded untouched, each
//!   field as sent, duplicates included; see [`run`] for why).
//! - `auth = "optional"`: no credential passes anonymously; a bad one is still 401.
//! - `auth = "required"`: no or bad credential is 401 with a `WWW-Authenticate`
//!   challenge (RFC 6750 3); a verified caller missing a route scope is 403.
//! - Either mode: two `Authorization` fields, two API-key fields, or one holding a
//!   comma-separated list of credentials, is 400 with `error="invalid_request"`
//!   (RFC 6750 3.1), before any credential is judged ([`crate::auth::Ambiguity`]).

use std::rc::Rc;

use crate::auth::{challenge, has_scopes, Ambiguity, AuthOutcome, Challenge, Identity};
use crate::config::{AuthMode, RouteConfig};
use crate::http::{HeaderKind, RequestHead};
use crate::pipeline::local::Local;

use super::stack::Pipeline;

/// The auth stage's refusal: the answer, and why (a label of
/// `telemetry::metrics::names::AUTH_REASONS`, for metrics).
pub struct Denied {
    pub answer: Answer,
    pub reason: &'static str,
}

/// A stage's own answer to a request.
pub struct Answer {
    pub status: u16,
    pub message: String,
    /// Extra header lines, each ending in CRLF.
    pub headers: Vec<u8>,
}

/// The auth stage's request phase (see `super::stack`). `Ok(None)`: anonymous (or
/// auth off); `Ok(Some)`: verified.
pub fn run(
    w: &Local,
    pl: &Pipeline,
    route: &RouteConfig,
    head: &RequestHead,
    buf: &[u8],
    peer: &super::forward::Peer,
) -> Result<Option<Rc<Identity>>, Denied> {
    // `auth = "none"`: the gateway decides nothing from these fields, so it has no
    // reading of them that an origin could disagree with; duplicates are forwarded in
    // order, exactly as received, as nginx and Envoy forward repeated fields they do not
    // act on (Envoy's jwt_authn only looks at routes that carry a requirement). The
    // origin that does authenticate sees what the client sent and must judge it; a
    // refusal here would break origins whose own scheme the gateway does not know.
    if route.auth == AuthMode::None {
        return Ok(None);
    }
    // `auth = "mtls"`: the TLS handshake verified the certificate against
    // `client_ca_file`; here only whether there is one. Credentials in the head are
    // not looked at (and are not stripped: the upstream may want its own).
    if route.auth == AuthMode::Mtls {
        return match peer.client_cert {
            Some(_) => Ok(None),
            None => Err(Denied {
                answer: Answer {
                    status: 403,
                    message: "this route requires a verified TLS client certificate".to_owned(),
                    headers: Vec::new(),
                },
                reason: "no_client_certificate",
            }),
        };
    }
    // RFC 9110 allows a single value for Authorization (and an API key is one value):
    // with two, taking either would let another hop that takes the other (a filter in
    // front reading the last) disagree with us about who is calling. One pass over the
    // fields finds both credentials and any second copy.
    let key_header = pl.auth.api_key_header().as_bytes();
    let (mut authorization, mut api_key) = (None::<&[u8]>, None::<&[u8]>);
    for h in &head.headers {
        let (slot, twice) = if h.kind == HeaderKind::Authorization {
            (&mut authorization, Ambiguity::TwoAuthorizations)
        } else if h.name.get(buf).eq_ignore_ascii_case(key_header) {
            (&mut api_key, Ambiguity::TwoApiKeys)
        } else {
            continue;
        };
        if slot.replace(h.value.get(buf)).is_some() {
            return Err(Denied {
                answer: invalid_request(&twice),
                reason: twice.code(),
            });
        }
    }
    // A bearer token alone decides when both are sent: `authenticate` looks at the API
    // key only when there is none.
    match pl
        .auth
        .authenticate(authorization, api_key, w.unix_now.get())
    {
        AuthOutcome::Authenticated(id) => {
            if !has_scopes(&id, &route.scopes) {
                return Err(Denied {
                    answer: answer(
                        403,
                        "the credential lacks a scope this route requires",
                        &challenge(Challenge::InsufficientScope(&route.scopes)),
                    ),
                    reason: "insufficient_scope",
                });
            }
            Ok(Some(id))
        }
        AuthOutcome::Anonymous if route.auth == AuthMode::Optional => Ok(None),
        AuthOutcome::Anonymous => Err(Denied {
            answer: answer(
                401,
                "this route requires a bearer token or an API key",
                &challenge(Challenge::NoCredential),
            ),
            reason: "no_credential",
        }),
        AuthOutcome::Invalid(failure) => Err(Denied {
            answer: answer(
                401,
                &format!("invalid credential: {failure}"),
                &challenge(Challenge::InvalidToken(&failure)),
            ),
            reason: failure.code(),
        }),
        AuthOutcome::Ambiguous(ambiguity) => Err(Denied {
            answer: invalid_request(&ambiguity),
            reason: ambiguity.code(),
        }),
    }
}

/// 400 for a request with more than one credential (RFC 6750 3.1 `invalid_request`):
/// the request is malformed, no credential was judged, so no 401.
fn invalid_request(ambiguity: &Ambiguity) -> Answer {
    answer(
        400,
        &ambiguity.to_string(),
        &challenge(Challenge::InvalidRequest(ambiguity)),
    )
}

fn answer(status: u16, message: &str, www_authenticate: &str) -> Answer {
    let mut headers = Vec::with_capacity(24 + www_authenticate.len());
    headers.extend_from_slice(b"WWW-Authenticate: ");
    headers.extend_from_slice(www_authenticate.as_bytes());
    headers.extend_from_slice(b"\r\n");
    Answer {
        status,
        message: message.to_owned(),
        headers,
    }
}
