//! The text `ringgate demo` prints once the gateway listens: where the gateway and the
//! demo backends listen, the run's credentials as `export` lines, and curl lines to
//! try, each under a comment saying what it shows (a status, a header, `X-Cache`
//! values). The lines work as printed in a POSIX shell: tests/demo.rs runs every one
//! through `sh` and checks its output against its comment, so a comment here is a
//! promise that test keeps.

use std::net::SocketAddr;

use super::credentials::Credentials;
use super::server::DemoAddrs;

/// The instructions' last line. Nothing else is printed after it but access-log lines,
/// so a program reading `ringgate demo`'s output (tests/demo.rs) knows the demo is ready
/// once it has read this.
pub const LAST_LINE: &str = "Ctrl-C stops the gateway and the demo backends.";

/// The text printed after start: where everything listens, then what to try, as curl
/// lines that work as printed (after the `export` lines) against gateway address `gw`.
/// Its last line is [`LAST_LINE`].
pub fn instructions(gw: SocketAddr, backends: DemoAddrs, creds: &Credentials) -> String {
    let bearer = |var: &str, path: &str| {
        format!(
            "curl -i -H \"Authorization: Bearer ${var}\" {}",
            url(gw, path)
        )
    };
    let tries: Vec<(&str, String)> = vec![
        (
            "No credential on a protected route: 401 with WWW-Authenticate: Bearer",
            format!("curl -i {}", url(gw, "/api/users")),
        ),
        (
            "The pro user's token: 200, with RateLimit-Policy/RateLimit headers (plan pro)",
            bearer("PRO", "/api/users"),
        ),
        (
            "One user: 200 (an unknown id, such as 9, gets the backend's own not-found JSON)",
            bearer("PRO", "/api/users/2"),
        ),
        (
            "The free token lacks the orders:read scope: 403 insufficient_scope",
            bearer("FREE", "/api/orders"),
        ),
        (
            "The API key (plan pro, scopes users:read orders:read) works too: 200",
            format!("curl -i -H \"X-API-Key: $KEY\" {}", url(gw, "/api/orders")),
        ),
        (
            "A forged token: 401 with error=\"invalid_token\"",
            format!(
                "curl -i -H 'Authorization: Bearer not.a.token' {}",
                url(gw, "/api/users")
            ),
        ),
        (
            "The free plan (60/min, burst 10): 11 quick requests per worker at most, then 429",
            format!(
                "for i in $(seq 30); do curl -s -o /dev/null -w '%{{http_code}}\\n' \
                 -H \"Authorization: Bearer $FREE\" {}; done",
                url(gw, "/api/users")
            ),
        ),
        (
            "What the backend received: X-User-ID, X-Tenant-ID, X-User-Plan, X-User-Scopes, \
             no Authorization",
            bearer("PRO", "/api/echo"),
        ),
        (
            "A cached product, asked twice on one connection: X-Cache: MISS, then HIT (each worker has its own cache)",
            format!(
                "curl -si -w '\\n' {0} {0} | grep -E '^HTTP|^X-Cache|^Age'",
                url(gw, "/api/products/2")
            ),
        ),
        (
            "Create a user: 201 and the body echoed back with a new id (not stored)",
            format!(
                "curl -i -H \"Authorization: Bearer $PRO\" -H 'Content-Type: application/json' \
                 -d '{{\"name\":\"Grace\"}}' {}",
                url(gw, "/api/users")
            ),
        ),
        (
            "A slow backend: 200 after half a second",
            format!("curl -i {}", url(gw, "/api/slow?ms=500")),
        ),
        (
            "A failing backend: its 500 JSON passed through",
            format!("curl -i {}", url(gw, "/api/fail")),
        ),
        (
            "Slower than the route's 3 s timeout: the gateway answers 504",
            format!("curl -i {}", url(gw, "/api/slow?ms=8000")),
        ),
        (
            "No route matches: the gateway's own 404 JSON",
            format!("curl -i {}", url(gw, "/nope")),
        ),
    ];
    let mut text = format!(
        "ringgate demo: gateway on http://{gw}, demo backends (users on {}, orders on {}, \
         products on {}) running in this process behind it.\n\
         First, in your shell (tokens signed for this run, valid 24 h):\n\n\
         export FREE='{}'\nexport PRO='{}'\nexport KEY='{}'\n\nThen try:\n\n",
        backends.users,
        backends.orders,
        backends.products,
        creds.free_token,
        creds.pro_token,
        creds.api_key
    );
    for (what, line) in tries {
        text.push_str(&format!("# {what}\n{line}\n\n"));
    }
    text.push_str(LAST_LINE);
    text
}

/// A URL as a shell word: single-quoted when it holds characters the shell would expand
/// (`?` and `[]` glob, `&` backgrounds).
fn url(gw: SocketAddr, path: &str) -> String {
    let url = format!("http://{gw}{path}");
    if url.contains(['?', '*', '[', ']', '&']) {
        format!("'{url}'")
    } else {
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            free_token: "f.t.k".into(),
            pro_token: "p.t.k".into(),
            api_key: super::super::credentials::API_KEY.into(),
        }
    }

    fn backends() -> DemoAddrs {
        DemoAddrs {
            users: "127.0.0.1:19001".parse().unwrap(),
            orders: "127.0.0.1:19002".parse().unwrap(),
            products: "127.0.0.1:19003".parse().unwrap(),
        }
    }

    #[test]
    fn instructions_are_copy_pasteable_curl_lines() {
        let gw: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let text = instructions(gw, backends(), &creds());
        for line in [
            "ringgate demo: gateway on http://127.0.0.1:8080, demo backends (users on \
             127.0.0.1:19001, orders on 127.0.0.1:19002, products on 127.0.0.1:19003)",
            "export FREE='f.t.k'\n",
            "export KEY='rg_demo_key_7f3c9a2e4b1d4e8f'\n",
            "curl -i http://127.0.0.1:8080/api/users\n",
            "curl -i -H \"Authorization: Bearer $PRO\" http://127.0.0.1:8080/api/users/2\n",
            "curl -i -H \"Authorization: Bearer $FREE\" http://127.0.0.1:8080/api/orders\n",
            "curl -i -H \"X-API-Key: $KEY\" http://127.0.0.1:8080/api/orders\n",
            "curl -si -w '\\n' http://127.0.0.1:8080/api/products/2 http://127.0.0.1:8080/api/products/2 | grep -E '^HTTP|^X-Cache|^Age'\n",
            "curl -i 'http://127.0.0.1:8080/api/slow?ms=500'\n",
            "curl -i http://127.0.0.1:8080/api/fail\n",
            "curl -i 'http://127.0.0.1:8080/api/slow?ms=8000'\n",
            "curl -i http://127.0.0.1:8080/nope\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // Every curl line has a comment above it saying what to expect.
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with("curl") || l.starts_with("for "))
        {
            assert!(lines[i - 1].starts_with("# "), "{line}");
        }
        assert_eq!(lines.last(), Some(&LAST_LINE));
        let v6 = instructions("[::1]:8080".parse().unwrap(), backends(), &creds());
        assert!(v6.contains("curl -i 'http://[::1]:8080/api/users'\n"));
    }
}
