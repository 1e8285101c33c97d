//! `websocket = true` on a route (see `crate::pipeline::upgrade`): checked against the
//! route's other keys, which must leave the handshake to the upstream.

use super::super::file::FileRoute;
use super::{ConfigError, Cx};

/// The route's `websocket` flag. A WebSocket route sends its handshake upstream, so it
/// cannot answer at the edge (`respond`), keep answers (`cache`: a stored 200 would
/// stand in for the 101) or read the body before routing (`json_match`, `validate`,
/// `json_body`: a handshake has none), nor send requests of its own (`compose`,
/// `fanout`) or copies (`mirror`: a second session at the mirror).
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
        // They send requests of their own, never the handshake.
        ("compose", r.compose.is_some()),
        ("fanout", r.fanout.is_some()),
        // A copy of a handshake would open a second session at the mirror.
        (
            "mirror",
            r.mirror.as_ref().is_some_and(|m| !m.get_ref().is_empty()),
        ),
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

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n[[upstreams]]\nname = \"a\"\n\
                        servers = [\"127.0.0.1:9001\"]\n[[routes]]\nid = \"r\"\n\
                        path_prefix = \"/ws\"\nauth = \"none\"\n";

    #[test]
    fn websocket_defaults_off_and_turns_on() {
        let off = Config::parse(&format!("{BASE}upstream = \"a\"\n"), "t.toml").unwrap();
        assert!(!off.routes[0].websocket);
        let on = Config::parse(
            &format!("{BASE}upstream = \"a\"\nwebsocket = true\n"),
            "t.toml",
        )
        .unwrap();
        assert!(on.routes[0].websocket);
        let no = Config::parse(
            &format!("{BASE}upstream = \"a\"\nwebsocket = false\ncache = {{ ttl_s = 5 }}\n"),
            "t.toml",
        )
        .unwrap();
        assert!(!no.routes[0].websocket);
    }

    #[test]
    fn check_says_a_route_relays_websockets() {
        let on = Config::parse(
            &format!("{BASE}upstream = \"a\"\nwebsocket = true\n"),
            "t.toml",
        )
        .unwrap();
        let shown = crate::config::validate::summary::summary(&on);
        assert!(shown.contains("-> a, WebSocket relayed"), "{shown}");
        let off = Config::parse(&format!("{BASE}upstream = \"a\"\n"), "t.toml").unwrap();
        let shown = crate::config::validate::summary::summary(&off);
        assert!(!shown.contains("WebSocket"), "{shown}");
    }

    #[test]
    fn websocket_refuses_what_would_answer_for_the_upstream() {
        for (extra, other) in [
            ("upstream = \"a\"\ncache = { ttl_s = 5 }\n", "cache"),
            ("respond = { status = 200, body = \"hi\" }\n", "respond"),
            ("upstream = \"a\"\nmirror = [\"a\"]\n", "mirror"),
            (
                "compose = [{ name = \"p\", upstream = \"a\", path = \"/p\" }]\n",
                "compose",
            ),
        ] {
            let e = Config::parse(&format!("{BASE}{extra}websocket = true\n"), "t.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains("routes.\"r\".websocket"), "{e}");
            assert!(e.contains(&format!("`{other}`")), "{e}");
            assert!(e.contains("t.toml:"), "names the line: {e}");
        }
        let e = Config::parse(
            &format!("{BASE}upstream = \"a\"\nwebsocket = \"yes\"\n"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("websocket"), "{e}");
    }
}
