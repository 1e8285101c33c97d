//! Responses the gateway writes itself: every error a client sees is JSON,
//! `{"error": "...", "message": "...", "request_id": "..."}`, with the matching status,
//! `Content-Type: application/json`, `Date` and `X-Request-ID`.

/// Canonical reason phrase, and the machine-readable error code used in JSON bodies.
pub fn status_text(status: u16) -> (&'static str, &'static str) {
    match status {
        308 => ("Permanent Redirect", "permanent_redirect"),
        400 => ("Bad Request", "bad_request"),
        401 => ("Unauthorized", "unauthorized"),
        403 => ("Forbidden", "forbidden"),
        404 => ("Not Found", "not_found"),
        405 => ("Method Not Allowed", "method_not_allowed"),
        408 => ("Request Timeout", "request_timeout"),
        413 => ("Content Too Large", "payload_too_large"),
        414 => ("URI Too Long", "uri_too_long"),
        417 => ("Expectation Failed", "expectation_failed"),
        429 => ("Too Many Requests", "too_many_requests"),
        431 => (
            "Request Header Fields Too Large",
            "request_header_fields_too_large",
        ),
        500 => ("Internal Server Error", "internal_error"),
        501 => ("Not Implemented", "not_implemented"),
        502 => ("Bad Gateway", "bad_gateway"),
        503 => ("Service Unavailable", "service_unavailable"),
        504 => ("Gateway Timeout", "gateway_timeout"),
        505 => ("HTTP Version Not Supported", "http_version_not_supported"),
        _ => ("Error", "error"),
    }
}

/// Append a complete JSON error response to `out`.
///
/// `close` adds `Connection: close`; `head_only` (a HEAD request) omits the body but
/// keeps its Content-Length. `extra` holds additional header lines, each ending in
/// CRLF (empty for none).
#[allow(clippy::too_many_arguments)]
pub fn write_error(
    out: &mut Vec<u8>,
    status: u16,
    message: &str,
    request_id: &[u8],
    date: &[u8],
    close: bool,
    head_only: bool,
    extra: &[u8],
) {
    let (reason, code) = status_text(status);
    let mut body = Vec::with_capacity(96 + message.len() + request_id.len());
    body.extend_from_slice(b"{\"error\":");
    json_str(&mut body, code.as_bytes());
    body.extend_from_slice(b",\"message\":");
    json_str(&mut body, message.as_bytes());
    body.extend_from_slice(b",\"request_id\":");
    json_str(&mut body, request_id);
    body.extend_from_slice(b"}\n");

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date);
    if !request_id.is_empty() {
        out.extend_from_slice(b"\r\nX-Request-ID: ");
        out.extend_from_slice(request_id);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
}

/// Append `s` as a JSON string literal (quoted, escaped; invalid UTF-8 replaced).
pub fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    let text = String::from_utf8_lossy(s);
    // serde_json's writer does the escaping; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text.as_ref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_json_with_escaped_request_id() {
        let mut out = Vec::new();
        write_error(
            &mut out,
            404,
            "no route",
            b"a\"b",
            b"Sun, 22 Nov 2026 06:00:00 GMT",
            false,
            false,
            b"",
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "not_found");
        assert_eq!(v["message"], "no route");
        assert_eq!(v["request_id"], "a\"b");
        let cl: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(cl, body.len());
    }
}
