//! Request round trip: a head the gateway accepts, serialised for the upstream with
//! `forward::upstream_request`, must parse again with `RequestHead::parse` and say the
//! same thing (method, target, host, body framing), carry no hop-by-hop header, one Host,
//! one X-Forwarded-For the client could not forge, one X-Request-ID, and every end-to-end
//! header as received, in order.

use ringgate::http::{HeaderKind, RequestHead};
use ringgate::pipeline::forward::{upstream_request, Peer};

use super::{request, show, simple_route, HOP_BY_HOP, LIMITS};

/// Names the gateway writes itself upstream; a client cannot make it drop them by
/// listing them in Connection.
const OURS: [&[u8]; 7] = [
    b"host",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",
    b"content-length",
    b"transfer-encoding",
];

/// What the proxy passes as the upstream's name, used when the client sent no Host.
const UPSTREAM_HOST: &str = "origin.internal:8080";

/// Returns whether `input` was an acceptable head (and so was round-tripped).
pub fn check(input: &[u8]) -> bool {
    let Ok(Some(_)) = request::parse(input) else {
        return false;
    };
    let (max_head, max_n) = LIMITS[LIMITS.len() - 1];
    let mut head = RequestHead::default();
    assert_eq!(head.parse(input, max_head, max_n), Ok(true));

    let plain = simple_route("plain", "/");
    let mut edited = simple_route("edited", "/api");
    edited.strip_prefix = "/api".to_string();
    edited.request_headers.add = vec![("X-Gw".to_string(), "1".to_string())];
    edited.request_headers.remove = vec!["x-drop".to_string()];
    let untrusted = Peer {
        addr: "192.0.2.7".parse().unwrap(),
        ip: "192.0.2.7".to_string(),
        trusted: false,
        https: false,
        client_cert: None,
    };
    let trusted = Peer {
        addr: "10.0.0.1".parse().unwrap(),
        ip: "10.0.0.1".to_string(),
        trusted: true,
        https: false,
        client_cert: None,
    };
    // As the proxy does: the client's X-Request-ID if usable, else a generated one.
    let rid: Vec<u8> = match head.request_id {
        Some(s) => s.get(input).to_vec(),
        None => b"0123456789abcdef0123456789abcdef".to_vec(),
    };

    for (route, peer) in [(&plain, &untrusted), (&edited, &trusted)] {
        let mut out = Vec::new();
        upstream_request(
            &mut out,
            &head,
            input,
            &ringgate::pipeline::forward::Outbound {
                route,
                peer,
                request_id: &rid,
                upstream_host: UPSTREAM_HOST,
                identity: None,
                strip_credentials: None,
                extra_fields: b"",
                traceparent: None,
                target: None,
                replaced: &[],
            },
        );
        let fail = |what: &str| -> ! {
            panic!(
                "invariant broken: upstream head ({}): {what}\n  written: {}\n  input: {}",
                route.id,
                show(&out),
                show(input)
            )
        };
        let mut again = RequestHead::default();
        match again.parse(&out, out.len() + 1, 512) {
            Ok(true) if again.head_len == out.len() => {}
            r => fail(&format!("does not parse again: {r:?}")),
        }
        if again.method_span.get(&out) != head.method_span.get(input) {
            fail("method changed");
        }
        if again.version_minor != 1 || again.absolute_form {
            fail("not an HTTP/1.1 origin-form request");
        }
        let mut target = head.target.get(input);
        if !route.strip_prefix.is_empty() {
            target = target
                .strip_prefix(route.strip_prefix.as_bytes())
                .unwrap_or(target);
        }
        let mut want_target = Vec::new();
        if target.first() != Some(&b'/') {
            want_target.push(b'/');
        }
        want_target.extend_from_slice(target);
        if again.target.get(&out) != want_target {
            fail("target changed");
        }
        let want_host = match head.host.get(input) {
            b"" => UPSTREAM_HOST.as_bytes(),
            h => h,
        };
        if again.host.get(&out) != want_host {
            fail("host changed (or not the upstream's when the client sent none)");
        }
        if again.body != head.body {
            fail("body framing changed");
        }
        if again.expect_continue {
            fail("Expect forwarded");
        }

        let names: Vec<Vec<u8>> = again
            .headers
            .iter()
            .map(|h| h.name.get(&out).to_ascii_lowercase())
            .collect();
        let count = |n: &[u8]| names.iter().filter(|x| &x[..] == n).count();
        for n in &names {
            if HOP_BY_HOP.contains(&&n[..]) && !OURS.contains(&&n[..]) {
                fail("hop-by-hop header forwarded");
            }
            let listed = head
                .conn_tokens
                .iter()
                .any(|t| t.get(input).eq_ignore_ascii_case(n));
            let added = route
                .request_headers
                .add
                .iter()
                .any(|(a, _)| a.as_bytes().eq_ignore_ascii_case(n));
            if listed && !OURS.contains(&&n[..]) && !added {
                fail("a header named by Connection forwarded");
            }
        }
        if count(b"transfer-encoding") > 1 || count(b"content-length") > 1 {
            fail("framing header repeated");
        }
        if count(b"host") != 1 || count(b"x-forwarded-for") != 1 || count(b"x-request-id") != 1 {
            fail("not exactly one Host, X-Forwarded-For and X-Request-ID");
        }
        let xff = again.header(&out, "x-forwarded-for").unwrap_or_default();
        if (!peer.trusted && xff != peer.ip.as_bytes()) || !xff.ends_with(peer.ip.as_bytes()) {
            fail("X-Forwarded-For does not end with the peer, or was forgeable");
        }
        if again.header(&out, "x-request-id") != Some(&rid[..]) {
            fail("X-Request-ID changed");
        }

        // End-to-end headers travel as received, in order.
        let removed = |n: &[u8]| {
            route
                .request_headers
                .remove
                .iter()
                .any(|r| r.as_bytes().eq_ignore_ascii_case(n))
                || route
                    .request_headers
                    .add
                    .iter()
                    .any(|(a, _)| a.as_bytes().eq_ignore_ascii_case(n))
        };
        let sent: Vec<(&[u8], &[u8])> = head
            .headers
            .iter()
            .filter(|h| h.kind == HeaderKind::Other)
            .filter(|h| {
                let n = h.name.get(input);
                !removed(n)
                    && !head
                        .conn_tokens
                        .iter()
                        .any(|t| t.get(input).eq_ignore_ascii_case(n))
            })
            .map(|h| (h.name.get(input), h.value.get(input)))
            .collect();
        let got: Vec<(&[u8], &[u8])> = again
            .headers
            .iter()
            .filter(|h| h.kind == HeaderKind::Other && !removed(h.name.get(&out)))
            .map(|h| (h.name.get(&out), h.value.get(&out)))
            .collect();
        if sent != got {
            fail("end-to-end headers not forwarded as received, in order");
        }
    }
    true
}
