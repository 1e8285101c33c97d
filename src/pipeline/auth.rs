//! The auth stage: runs after routing (the route says whether credentials are
//! required) and before rate limiting (the bucket is the caller's). It either passes
//! the request on with the verified identity, or answers 401/403 itself.
//!
//! - `auth = "none"`: credentials are not looked at (and are forwarded untouched).
//! - `auth = "optional"`: no credential passes anonymously; a bad one is still 401.
//! - `auth = "required"`: no or bad credential is 401 with a `WWW-Authenticate`
//!   challenge (RFC 6750 3); a verified caller missing a route scope is 403.

use std::rc::Rc;

use crate::auth::{challenge, has_scopes, AuthOutcome, Challenge, Identity};
use crate::config::{AuthMode, RouteConfig};
use crate::http::{HeaderKind, RequestHead};
use crate::runtime::worker::Worker;

/// A stage's own answer to a request.
pub struct Answer {
    pub status: u16,
    pub message: String,
    /// Extra header lines, each ending in CRLF.
    pub headers: Vec<u8>,
}

/// Run the auth stage. `Ok(None)`: anonymous (or auth off); `Ok(Some)`: verified.
pub fn run(
    w: &Worker,
    route: &RouteConfig,
    head: &RequestHead,
    buf: &[u8],
) -> Result<Option<Rc<Identity>>, Answer> {
    if route.auth == AuthMode::None {
        return Ok(None);
    }
    let authorization = head
        .headers
        .iter()
        .find(|h| h.kind == HeaderKind::Authorization)
        .map(|h| h.value.get(buf));
    // A bearer token alone decides when both are sent, so the API-key header is only
    // looked for when there is none.
    let bearer =
        authorization.is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "));
    let api_key = if bearer {
        None
    } else {
        head.header(buf, w.auth.api_key_header())
    };
    match w
        .auth
        .authenticate(authorization, api_key, w.unix_now.get())
    {
        AuthOutcome::Authenticated(id) => {
            if !has_scopes(&id, &route.scopes) {
                return Err(answer(
                    403,
                    "the credential lacks a scope this route requires",
                    &challenge(Challenge::InsufficientScope(&route.scopes)),
                ));
            }
            Ok(Some(id))
        }
        AuthOutcome::Anonymous if route.auth == AuthMode::Optional => Ok(None),
        AuthOutcome::Anonymous => Err(answer(
            401,
            "this route requires a bearer token or an API key",
            &challenge(Challenge::NoCredential),
        )),
        AuthOutcome::Invalid(failure) => Err(answer(
            401,
            &format!("invalid credential: {failure}"),
            &challenge(Challenge::InvalidToken(&failure)),
        )),
    }
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
