//! The text `ringgate demo` prints once the gateway listens: where the gateway (HTTP and
//! HTTPS) and the demo backends listen, where the run's CA certificate is, the run's
//! credentials as `export` lines, and curl lines to try, each under a comment saying
//! what it shows (a status, a header, `X-Cache` values, a quoted JSON value). The lines
//! work as printed in a POSIX shell: tests/demo.rs runs every one through `sh` and
//! checks its output against its comment, so a comment here is a promise that test
//! keeps. The HTTPS lines give curl the demo CA with `--cacert`, so that curl verifies
//! the gateway's certificate as it would any other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::certs::{DemoCerts, SERVER_NAME};
use super::credentials::Credentials;
use super::server::DemoAddrs;

/// The instructions' last line. Nothing else is printed after it but access-log lines,
/// so a program reading `ringgate demo`'s output (tests/demo.rs) knows the demo is ready
/// once it has read this.
pub const LAST_LINE: &str = "Ctrl-C stops the gateway and the demo backends.";

/// The text printed after start: where everything listens, then what to try, as curl
/// lines that work as printed (after the `export` lines) against the gateway's plain
/// address `gw` and its HTTPS address `https`, which serves `certs`. Its last line is
/// [`LAST_LINE`].
pub fn instructions(
    gw: SocketAddr,
    https: SocketAddr,
    admin: Option<SocketAddr>,
    certs: &DemoCerts,
    backends: DemoAddrs,
    creds: &Credentials,
) -> String {
    let gw = format!("http://{gw}");
    let bearer = |var: &str, path: &str| {
        format!(
            "curl -i -H \"Authorization: Bearer ${var}\" {}",
            url(&gw, path)
        )
    };
    let by_name = https_by_name(https);
    let by_ip = https_by_ip(https);
    let ca_file = certs.ca_file();
    let cacert = format!("--cacert {}", shell_word(&ca_file.to_string_lossy()));
    let tries: Vec<(&str, String)> = vec![
        (
            "No credential on a protected route: 401 with WWW-Authenticate: Bearer",
            format!("curl -i {}", url(&gw, "/api/users")),
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
            format!("curl -i -H \"X-API-Key: $KEY\" {}", url(&gw, "/api/orders")),
        ),
        (
            "A forged token: 401 with error=\"invalid_token\"",
            format!(
                "curl -i -H 'Authorization: Bearer not.a.token' {}",
                url(&gw, "/api/users")
            ),
        ),
        (
            "The free plan (60/min, burst 10): 11 quick requests per worker at most, then 429",
            format!(
                "for i in $(seq 30); do curl -s -o /dev/null -w '%{{http_code}}\\n' \
                 -H \"Authorization: Bearer $FREE\" {}; done",
                url(&gw, "/api/users")
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
                url(&gw, "/api/products/2")
            ),
        ),
        (
            "Create a user: 201 and the body echoed back with a new id (not stored)",
            format!(
                "curl -i -H \"Authorization: Bearer $PRO\" -H 'Content-Type: application/json' \
                 -d '{{\"name\":\"Grace\"}}' {}",
                url(&gw, "/api/users")
            ),
        ),
        (
            "A slow backend: 200 after half a second",
            format!("curl -i {}", url(&gw, "/api/slow?ms=500")),
        ),
        (
            "A failing backend: its 500 JSON passed through",
            format!("curl -i {}", url(&gw, "/api/fail")),
        ),
        (
            "Slower than the route's 3 s timeout: the gateway answers 504",
            format!("curl -i {}", url(&gw, "/api/slow?ms=8000")),
        ),
        (
            "No route matches: the gateway's own 404 JSON",
            format!("curl -i {}", url(&gw, "/nope")),
        ),
    ];
    let post = |headers: &str, body: &str, path: &str| {
        format!(
            "curl -i -H 'Content-Type: application/json'{headers} -d '{body}' {}",
            url(&gw, path)
        )
    };
    let edge: Vec<(&str, String)> = vec![
        (
            "A call event goes to the voice service: 200, body unchanged (\"call.hangup\"); \
             what it received: X-Service: voice",
            post(
                "",
                r#"{"data":{"event_type":"call.hangup","call_id":"c-17"}}"#,
                "/webhooks/telecom",
            ),
        ),
        (
            "An SMS event, same URL, to the SMS service: 200; what it received: X-Service: sms",
            post(
                "",
                r#"{"data":{"event_type":"message.received","from":"+15550100"}}"#,
                "/webhooks/telecom",
            ),
        ),
        (
            "A fax event to the fax service: 200; what it received: X-Service: fax",
            post(
                "",
                r#"{"data":{"event_type":"fax.sent","pages":3}}"#,
                "/webhooks/telecom",
            ),
        ),
        (
            "An event no service handles: 200 and OK, answered by the gateway itself",
            post(
                "",
                r#"{"data":{"event_type":"call.recording.saved"}}"#,
                "/webhooks/telecom",
            ),
        ),
        (
            "Not JSON at all: 400 \"bad_request\", saying the body is not valid JSON",
            post("", "event_type=call.hangup", "/webhooks/telecom"),
        ),
        (
            "A valid IoT reading: 200 from the data lake, which received it enriched and \
             wrapped: \"reading\", \"edge_pop\", \"received_at\", \"device_id\" (from \
             X-Device-ID: \"thermo-7\")",
            post(
                " -H 'X-Device-ID: thermo-7'",
                r#"{"sensor_type":"temperature","value":21.5,"timestamp":1765000000000}"#,
                "/iot/readings",
            ),
        ),
        (
            "A reading whose value is not a number: 400 at the edge, its message naming the \
             field and why (at /value: not of type number)",
            post(
                " -H 'X-Device-ID: thermo-7'",
                r#"{"sensor_type":"temperature","value":"warm","timestamp":1765000000000}"#,
                "/iot/readings",
            ),
        ),
        (
            "A v1 call, rewritten for the legacy backend: 200; it received the path \
             \"/echo/api/contacts?src=demo\" and msisdn renamed \"phone\", debug removed",
            post(
                "",
                r#"{"msisdn":"+15550100","debug":true}"#,
                "/v1/contacts?src=demo",
            ),
        ),
    ];
    let over_https: Vec<(&str, String)> = vec![
        (
            "No credential over HTTPS: the same 401",
            format!("curl -i {cacert} {}", url(&by_name, "/api/users")),
        ),
        (
            "The pro user's token over HTTPS: 200 and user 2, \"Grace Hopper\"",
            format!(
                "curl -i {cacert} -H \"Authorization: Bearer $PRO\" {}",
                url(&by_name, "/api/users/2")
            ),
        ),
        (
            "What the backend received over HTTPS: X-Forwarded-Proto: https, X-User-ID, \
             no Authorization",
            format!(
                "curl -i {cacert} -H \"Authorization: Bearer $PRO\" {}",
                url(&by_name, "/api/echo")
            ),
        ),
        (
            "By IP address (the certificate names it too) with the API key: 200 and order 2, \
             \"processing\"",
            format!(
                "curl -i {cacert} -H \"X-API-Key: $KEY\" {}",
                url(&by_ip, "/api/orders/2")
            ),
        ),
    ];
    let admin_tries: Vec<(&str, String)> = match admin {
        Some(admin) => {
            let admin = format!("http://{admin}");
            vec![
                (
                    "Each upstream's servers with their health and circuit: 200, \"closed\"",
                    format!(
                        "curl -i -H \"Authorization: Bearer $ADMIN\" {}",
                        url(&admin, "/health")
                    ),
                ),
                (
                    "The management API without the admin token: 401",
                    format!("curl -i {}", url(&admin, "/api/v1/routes")),
                ),
                (
                    "Create a route live (no restart), with the admin token: 201, \"active\"",
                    format!(
                        "curl -i -H \"Authorization: Bearer $ADMIN\" -H 'Content-Type: application/json' \
                         -d '{{\"id\":\"staff\",\"path\":\"/staff\",\"upstream_id\":\"users\",\"strip_path\":true,\"auth_required\":false}}' {}",
                        url(&admin, "/api/v1/routes")
                    ),
                ),
                (
                    "Served at once by every worker, without a token: 200 and user 2, \"Grace Hopper\"",
                    format!("curl -i {}", url(&gw, "/staff/users/2")),
                ),
                (
                    "The products route's numbers over the last 5 minutes, merged across workers: 200, \"cache_hit_rate\", \"p99_latency_ms\"",
                    format!(
                        "curl -i -H \"Authorization: Bearer $ADMIN\" {}",
                        url(&admin, "/api/v1/metrics/routes/products?period=5m")
                    ),
                ),
                (
                    "Prometheus metrics, here the requests counted by route, method and status class: \"products\", \"2xx\"",
                    format!(
                        "curl -s -H \"Authorization: Bearer $ADMIN\" {} | grep -E '^ringgate_requests_total'",
                        url(&admin, "/metrics")
                    ),
                ),
                (
                    "Delete it again: 200, \"deleted\"",
                    format!(
                        "curl -i -X DELETE -H \"Authorization: Bearer $ADMIN\" {}",
                        url(&admin, "/api/v1/routes/staff")
                    ),
                ),
            ]
        }
        None => Vec::new(),
    };
    let names = std::iter::once(SERVER_NAME.to_string())
        .chain(certs.ips().iter().map(IpAddr::to_string))
        .collect::<Vec<_>>();
    let mut text = format!(
        "ringgate demo: gateway on {gw} and {by_name}, demo backends (users on {}, orders on \
         {}, products on {}) running in this process behind it.\n\
         HTTPS serves a certificate for {} signed by a demo CA, both made for this run \
         and kept in {} until the demo stops; the HTTPS lines below trust that CA with \
         --cacert {}\n\
         First, in your shell (tokens signed for this run, valid 24 h):\n\n\
         export FREE='{}'\nexport PRO='{}'\nexport KEY='{}'\nexport ADMIN='{}'\n\nThen try:\n\n",
        backends.users,
        backends.orders,
        backends.products,
        and_list(&names),
        certs.dir().display(),
        shell_word(&ca_file.to_string_lossy()),
        creds.free_token,
        creds.pro_token,
        creds.api_key,
        creds.admin_token
    );
    for (what, line) in tries {
        text.push_str(&format!("# {what}\n{line}\n\n"));
    }
    text.push_str(
        "Edge workloads: telecom webhooks routed by a field of their JSON body, IoT \
         readings validated and enriched, a v1 API rewritten for its old backend (the \
         services answer with what they received):\n\n",
    );
    for (what, line) in edge {
        text.push_str(&format!("# {what}\n{line}\n\n"));
    }
    text.push_str(
        "Over HTTPS, the same gateway (curl verifies its certificate with the demo CA):\n\n",
    );
    for (what, line) in over_https {
        text.push_str(&format!("# {what}\n{line}\n\n"));
    }
    if !admin_tries.is_empty() {
        text.push_str(&format!(
            "The admin API, on its own port ({}), never on the public ones:\n\n",
            admin.map_or(String::new(), |a| a.to_string())
        ));
    }
    for (what, line) in admin_tries {
        text.push_str(&format!("# {what}\n{line}\n\n"));
    }
    text.push_str(LAST_LINE);
    text
}

/// The HTTPS base URL by name: `https://localhost:PORT` when the TLS listener is on
/// 127.0.0.1, ::1 or every address, else by its address.
fn https_by_name(addr: SocketAddr) -> String {
    let local = addr.ip().is_unspecified()
        || addr.ip() == Ipv4Addr::LOCALHOST
        || addr.ip() == Ipv6Addr::LOCALHOST;
    if local {
        format!("https://{SERVER_NAME}:{}", addr.port())
    } else {
        format!("https://{addr}")
    }
}

/// The HTTPS base URL by IP address (no SNI then: the gateway serves its default, and
/// only, certificate, which names the address): every address means loopback.
fn https_by_ip(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

/// "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// A URL as a shell word: single-quoted when it holds characters the shell would expand
/// (`?` and `[]` glob, `&` backgrounds).
fn url(base: &str, path: &str) -> String {
    let url = format!("{base}{path}");
    if url.contains(['?', '*', '[', ']', '&']) {
        format!("'{url}'")
    } else {
        url
    }
}

/// A path as a shell word: as it is when it holds only characters no shell treats
/// specially, else single-quoted (a `'` in it written as `'\''`).
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
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
            admin_token: "adm".into(),
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
        let https: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let certs = DemoCerts::generate(None).unwrap();
        let admin: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        let text = instructions(gw, https, Some(admin), &certs, backends(), &creds());
        let ca = certs.ca_file().display().to_string();
        for line in [
            "ringgate demo: gateway on http://127.0.0.1:8080 and https://localhost:8443, demo \
             backends (users on 127.0.0.1:19001, orders on 127.0.0.1:19002, products on \
             127.0.0.1:19003)"
                .to_string(),
            format!(
                "\nHTTPS serves a certificate for localhost, 127.0.0.1 and ::1 signed by a demo \
                 CA, both made for this run and kept in {} until the demo stops; the HTTPS \
                 lines below trust that CA with --cacert {ca}\n",
                certs.dir().display()
            ),
            "export FREE='f.t.k'\n".into(),
            "export KEY='rg_demo_key_7f3c9a2e4b1d4e8f'\n".into(),
            "curl -i http://127.0.0.1:8080/api/users\n".into(),
            "curl -i -H \"Authorization: Bearer $PRO\" http://127.0.0.1:8080/api/users/2\n".into(),
            "curl -i -H \"Authorization: Bearer $FREE\" http://127.0.0.1:8080/api/orders\n".into(),
            "curl -i -H \"X-API-Key: $KEY\" http://127.0.0.1:8080/api/orders\n".into(),
            "curl -si -w '\\n' http://127.0.0.1:8080/api/products/2 http://127.0.0.1:8080/api/products/2 | grep -E '^HTTP|^X-Cache|^Age'\n".into(),
            "curl -i 'http://127.0.0.1:8080/api/slow?ms=500'\n".into(),
            "curl -i http://127.0.0.1:8080/api/fail\n".into(),
            "curl -i 'http://127.0.0.1:8080/api/slow?ms=8000'\n".into(),
            "curl -i http://127.0.0.1:8080/nope\n".into(),
            "export ADMIN='adm'\n".into(),
            "curl -i -H \"Authorization: Bearer $ADMIN\" http://127.0.0.1:9901/health\n".into(),
            "curl -i -X DELETE -H \"Authorization: Bearer $ADMIN\" http://127.0.0.1:9901/api/v1/routes/staff\n".into(),
            format!("\ncurl -i --cacert {ca} https://localhost:8443/api/users\n"),
            format!(
                "\ncurl -i --cacert {ca} -H \"Authorization: Bearer $PRO\" \
                 https://localhost:8443/api/users/2\n"
            ),
            format!(
                "\ncurl -i --cacert {ca} -H \"Authorization: Bearer $PRO\" \
                 https://localhost:8443/api/echo\n"
            ),
            format!(
                "\ncurl -i --cacert {ca} -H \"X-API-Key: $KEY\" https://127.0.0.1:8443/api/orders/2\n"
            ),
        ] {
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
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
        // Nothing of the key.
        let key = std::fs::read_to_string(certs.key_file()).unwrap();
        assert!(!text.contains("PRIVATE KEY"));
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "{text}");
        }

        let v6 = instructions(
            "[::1]:8080".parse().unwrap(),
            "[::1]:8443".parse().unwrap(),
            None,
            &certs,
            backends(),
            &creds(),
        );
        assert!(v6.contains("curl -i 'http://[::1]:8080/api/users'\n"));
        assert!(v6.contains(&format!(
            "curl -i --cacert {ca} https://localhost:8443/api/users\n"
        )));
        assert!(v6.contains("'https://[::1]:8443/api/orders/2'\n"));
    }

    #[test]
    fn https_urls_name_what_the_certificate_names() {
        let at = |s: &str| -> SocketAddr { s.parse().unwrap() };
        assert_eq!(https_by_name(at("0.0.0.0:443")), "https://localhost:443");
        assert_eq!(https_by_name(at("[::]:8443")), "https://localhost:8443");
        assert_eq!(https_by_name(at("10.1.2.3:8443")), "https://10.1.2.3:8443");
        assert_eq!(https_by_ip(at("0.0.0.0:8443")), "https://127.0.0.1:8443");
        assert_eq!(https_by_ip(at("[::]:8443")), "https://[::1]:8443");
        assert_eq!(https_by_ip(at("10.1.2.3:1")), "https://10.1.2.3:1");
    }

    #[test]
    fn paths_are_shell_words() {
        assert_eq!(
            shell_word("/tmp/ringgate-demo-42/ca.pem"),
            "/tmp/ringgate-demo-42/ca.pem"
        );
        assert_eq!(shell_word("/my tmp/ca.pem"), "'/my tmp/ca.pem'");
        assert_eq!(shell_word("/it's/$x"), "'/it'\\''s/$x'");
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("printf %s {}", shell_word("/it's $x `y` \"z\"*")),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/it's $x `y` \"z\"*");
    }
}
