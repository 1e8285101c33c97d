//! The small grammars of the configuration: tokens, methods, header values, CIDRs, host
//! patterns, paths, upstream server addresses, balance modes. Pure functions that say
//! yes or no (or why not); `validate` turns a "no" into a [`super::ConfigError`] with
//! the key and line.

use std::net::{SocketAddr, ToSocketAddrs};

use super::super::{Balance, HostMatch};

/// RFC 9110 `tchar`: what header names and method names are made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 token (header name, `hash:` header, plan name).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A method as a request line carries it: a token, upper case (methods are
/// case-sensitive, so "get" would never match a real GET).
pub fn is_method(s: &str) -> bool {
    is_token(s) && !s.bytes().any(|b| b.is_ascii_lowercase())
}

/// RFC 9110 field value: visible ASCII, spaces, tabs and obs-text; never CR, LF or NUL,
/// which would let a value split a header in two.
pub fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || b >= 0x20 && b != 0x7f)
}

/// "10.0.0.0/8", "fd00::/8", or a bare address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(ip.into());
    }
    // Host bits are dropped ("10.1.2.3/8" -> "10.0.0.0/8"): the meaning is the same.
    s.parse::<ipnet::IpNet>()
        .map(|n| n.trunc())
        .map_err(|e| e.to_string())
}

/// "api.example.com" -> Exact, "*.example.com" -> Suffix(".example.com"), lower-cased.
pub fn parse_host_pattern(s: &str) -> Result<HostMatch, &'static str> {
    let lower = s.to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    if name.is_empty() {
        return Err("expected a host name such as \"api.example.com\" or \"*.example.com\"");
    }
    if name.contains(':') {
        return Err("a host pattern has no port (the port of the Host header is ignored)");
    }
    if name.contains('*') {
        return Err("a wildcard is only allowed as a whole first label: \"*.example.com\"");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err("not a host name: letters, digits, '-' and '.' between non-empty labels");
    }
    Ok(if wild {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(name.to_owned())
    })
}

/// A route path: absolute, and nothing a request path could never contain.
pub fn check_path(s: &str) -> Result<(), &'static str> {
    if !s.starts_with('/') {
        return Err("a path starts with '/' (\"/\" matches everything)");
    }
    if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("a path has no spaces or control characters");
    }
    if s.contains(['?', '#']) {
        return Err("a path has no query or fragment ('?', '#'); routes match the path only");
    }
    Ok(())
}

/// Is `strip` a prefix of `path` that ends on a segment boundary? Stripping "/api/us"
/// from "/api/users/7" would forward "ers/7", which no upstream expects.
pub fn is_segment_prefix(strip: &str, path: &str) -> bool {
    match path.strip_prefix(strip) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || strip.ends_with('/'),
        None => false,
    }
}

/// Would two listeners fight over one address? Same port, and the same IP or a
/// wildcard of the same family (0.0.0.0 covers every IPv4 address). Port 0 asks the
/// kernel for a free port (tests do this), so it never clashes.
pub fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

/// "http://h:p" | "https://h:p" | "h:p" -> ("h:p", tls). The port is required: a
/// default port guessed from the scheme hides typos.
pub fn split_scheme(s: &str) -> Result<(String, bool), String> {
    let lower = s.to_ascii_lowercase();
    let (rest, tls) = if lower.starts_with("http://") {
        (&s[7..], false)
    } else if lower.starts_with("https://") {
        (&s[8..], true)
    } else if s.contains("://") {
        return Err("unsupported scheme: expected http:// or https://".to_owned());
    } else {
        (s, false)
    };
    if rest.contains('/') {
        return Err("a server is host:port, without a path".to_owned());
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err("missing :port (a server is \"host:port\")".to_owned());
    };
    if host.is_empty() {
        return Err("missing host (a server is \"host:port\")".to_owned());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("an IPv6 address is written in brackets: \"[::1]:9001\"".to_owned());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((rest.to_owned(), tls)),
        _ => Err(format!("bad port {port:?}: expected 1 to 65535")),
    }
}

/// Resolve "host:port" once, at load. IPv4 first: "localhost" often lists ::1 first,
/// while upstreams in development usually listen on 127.0.0.1 only.
pub fn resolve(label: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = label
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| "no address found".to_owned())
}

/// `round_robin` | `least_request` | `random_two` | `hash:<Header-Name>`.
pub fn parse_balance(s: &str) -> Option<Balance> {
    match s {
        "round_robin" => Some(Balance::RoundRobin),
        "least_request" => Some(Balance::LeastRequest),
        "random_two" => Some(Balance::RandomTwo),
        _ => {
            let header = s.strip_prefix("hash:")?;
            is_token(header).then(|| Balance::Hash(header.to_ascii_lowercase()))
        }
    }
}

/// `user` | `tenant` | `api_key` | `ip` | `header:<Name>`.
pub fn is_rate_limit_key(s: &str) -> bool {
    matches!(s, "user" | "tenant" | "api_key" | "ip")
        || s.strip_prefix("header:").is_some_and(is_token)
}

/// JWT algorithms the gateway verifies; `none` is deliberately absent.
pub const JWT_ALGORITHMS: [&str; 10] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

/// Names for an error message: "a, b, c", or "none".
pub fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// serde's wording, in the words of a TOML file.
/// For a duration key (`timeout_ms`, `ttl_s`): what its value is, in words.
pub fn duration_unit(key: &str) -> Option<&'static str> {
    if key.ends_with("_ms") {
        Some("an integer number of milliseconds, like 5000")
    } else if key.ends_with("_s") {
        Some("an integer number of seconds, like 30")
    } else {
        None
    }
}

/// serde's "invalid type: string \"5s\", expected ..." with the expectation replaced by
/// the duration's unit (`"5s"` is a common guess; the key's suffix says the unit).
pub fn with_unit(message: &str, unit: &str) -> String {
    match message.split_once(", expected ") {
        Some((got, _)) if got.starts_with("invalid ") => format!("{got}, expected {unit}"),
        _ => message.to_owned(),
    }
}

pub fn friendlier(message: &str) -> String {
    message
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected u32", "expected an integer from 0 to 4294967295")
        .replace("expected a sequence", "expected an array")
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: array")
}
