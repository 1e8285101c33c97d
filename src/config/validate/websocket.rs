//! `websocket = true` on a route (see `crate::pipeline::upgrade`): checked against the
//! route's other keys, which must leave the handshake to the upstream.

use super::super::file::FileRoute;
use super::{ConfigError, Cx};

/// The route's `websocket` flag. A WebSocket route sends its handshake upstream, so it
/// cannot answer at the edge (`respond`), keep answers (`cache`: a stored 200 would
/// stand in for the 101) or read the body before routing (`json_match`, `validate`,
/// `json_body`: a handshake has none).
pub(super) fn websocket(cx: &Cx, key: &str, r: &FileRoute) -> Result<bool, ConfigError> {
    let Some(flag) = &r.websocket else {
        return Ok(false);
    };
    if !*flag.get_ref() {
        return Ok(false);
    }
    let conflict = [
        ("respond", r.respond.is_some()),
        ("cache", r.cache.is_some()),
        ("json_match", r.json_match.is_some()),
        ("validate", r.validate.is_some()),
        ("json_body", r.json_body.is_some()),
    ]
    .into_iter()
    .find(|(_, set)| *set);
    match conflict {
        Some((other, _)) => Err(ConfigError::BadRouteValue {
            site: cx.at(format!("{key}.websocket"), flag),
            reason: format!(
                "a websocket route relays its handshake to the upstream and cannot also \
                 have `{other}`; give the WebSocket path its own route"
            ),
        }),
        None => Ok(true),
    }
}
