//! [`Template`]: a config value with variables (`"Bearer ${env:TOKEN}"`,
//! `"${path:user_id}"`, `"${now_ms}"`), parsed once at load into literal and variable
//! parts, rendered per request from a [`TemplateCx`] into the caller's buffer with no
//! allocation of its own.
//!
//! Variables: `${header:Name}`, `${query:name}`, `${path:name}` (a `{name}` segment of
//! the route's `path_template`, see [`super::path_template`]), `${env:NAME}` (read once,
//! at load), `${request_id}`, `${client_ip}`, `${now_ms}`, `${now_rfc3339}`, `${user}`,
//! `${tenant}`, `${plan}`. `$$` is a literal `$`; a `$` not followed by `{` or `$` is
//! itself. Anything else after `${` (an unknown name, no closing `}`, an empty argument)
//! is a [`TemplateError`], which the config turns into an error naming the key and line.
//!
//! Values are used as received: a header's value, a query parameter and a path segment
//! keep their percent-encoding. A value that is absent (no such header, an anonymous
//! caller) renders as nothing, or as JSON `null` when it is the whole template.
//!
//! Two renderings:
//! - [`Template::render`] (plain, for header values): control bytes (CR, LF, NUL and the
//!   rest of 0x00-0x1F except HTAB, and DEL) are dropped, so no value can end a header
//!   line or start another. Request headers cannot hold them anyway (the parser refuses
//!   them); an `${env:...}` value might.
//! - [`Template::render_json`] (for JSON bodies): a template that is exactly one
//!   variable keeps its type (`${now_ms}` is a number, an absent value is `null`, the
//!   rest are strings); anything else is one JSON string, escaped. Bytes that are not
//!   UTF-8 become U+FFFD, so the output always parses as JSON.
//!
//! `${env:...}` values may be secrets (`Authorization = "Bearer ${env:CDN_TOKEN}"`): they
//! are kept out of `Debug`, errors and [`Template::as_str`], which show only the
//! reference (`${env:CDN_TOKEN}`).

use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;

use super::path_template::{is_name, PathTemplate};
use super::request::RequestHead;

/// One variable of a template.
#[derive(Clone, PartialEq, Eq)]
pub enum Var {
    /// `${header:Name}`; the name kept in lower case.
    Header(Box<str>),
    /// `${query:name}`: the first `name=` parameter of the query string.
    Query(Box<str>),
    /// `${path:name}`: the `{name}` segment of the route's `path_template`.
    Path(Box<str>),
    /// `${env:NAME}`: only the name; the value (read at load) is in the part.
    Env(Box<str>),
    RequestId,
    ClientIp,
    NowMs,
    NowRfc3339,
    User,
    Tenant,
    Plan,
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Header(n) => write!(f, "${{header:{n}}}"),
            Var::Query(n) => write!(f, "${{query:{n}}}"),
            Var::Path(n) => write!(f, "${{path:{n}}}"),
            Var::Env(n) => write!(f, "${{env:{n}}}"),
            Var::RequestId => f.write_str("${request_id}"),
            Var::ClientIp => f.write_str("${client_ip}"),
            Var::NowMs => f.write_str("${now_ms}"),
            Var::NowRfc3339 => f.write_str("${now_rfc3339}"),
            Var::User => f.write_str("${user}"),
            Var::Tenant => f.write_str("${tenant}"),
            Var::Plan => f.write_str("${plan}"),
        }
    }
}

impl fmt::Debug for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The names accepted after `${`, for error messages.
pub const KNOWN_VARIABLES: &str = "header:Name, query:name, path:name, env:NAME, request_id, \
     client_ip, now_ms, now_rfc3339, user, tenant, plan";

/// Why a template is refused. Never holds an `${env:...}` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown variable ${{{var}}} (known: {KNOWN_VARIABLES})")]
    UnknownVariable { var: String },
    #[error("\"${{\" at byte {offset} has no closing '}}' (write $$ for a literal $)")]
    Unclosed { offset: usize },
    #[error("${{{var}}}: {reason}")]
    BadArgument { var: String, reason: &'static str },
    #[error("${{env:{name}}}: the environment variable is not set")]
    MissingEnv { name: String },
    #[error("${{env:{name}}}: the environment variable is not UTF-8")]
    EnvNotUtf8 { name: String },
}

#[derive(Clone)]
enum Part {
    Literal(Box<[u8]>),
    /// `${env:NAME}`, with the value read at load.
    Env {
        name: Box<str>,
        value: Box<[u8]>,
    },
    Var(Var),
}

/// A parsed template. `Debug` shows the text as written, never an `${env:...}` value.
#[derive(Clone)]
pub struct Template {
    text: Box<str>,
    parts: Vec<Part>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.text)
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Template) -> bool {
        self.text == other.text
    }
}

/// What a template is rendered from: the request path fills one per request from what
/// it already has (the head and its buffer, the path routing matched, the identity).
/// Everything is borrowed; nothing here allocates.
#[derive(Clone, Copy)]
pub struct TemplateCx<'a> {
    pub head: &'a RequestHead,
    /// The buffer `head` was parsed from.
    pub buf: &'a [u8],
    /// The path routing matched (normalised, no query), for `${path:...}`.
    pub path: &'a [u8],
    /// The route's `path_template`, if it has one.
    pub path_template: Option<&'a PathTemplate>,
    pub request_id: &'a [u8],
    pub client_ip: Option<IpAddr>,
    /// Milliseconds since the Unix epoch, read once per request.
    pub now_ms: u64,
    pub user: Option<&'a str>,
    pub tenant: Option<&'a str>,
    /// The plan the rate limiter used (the identity's, or the default plan).
    pub plan: Option<&'a str>,
}

impl<'a> TemplateCx<'a> {
    /// A context with only the request head: no identity, no path template, no client
    /// address, request id empty, time 0. Fill in the rest with struct update syntax.
    pub fn new(head: &'a RequestHead, buf: &'a [u8]) -> TemplateCx<'a> {
        TemplateCx {
            head,
            buf,
            path: b"/",
            path_template: None,
            request_id: b"",
            client_ip: None,
            now_ms: 0,
            user: None,
            tenant: None,
            plan: None,
        }
    }

    /// The first `name=` parameter of the query string, as received.
    fn query(&self, name: &str) -> Option<&'a [u8]> {
        let target = self.head.target.get(self.buf);
        let q = &target[memchr::memchr(b'?', target)? + 1..];
        let q = match memchr::memchr(b'#', q) {
            Some(i) => &q[..i],
            None => q,
        };
        q.split(|&b| b == b'&').find_map(|pair| {
            let (k, v) = match memchr::memchr(b'=', pair) {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            (k == name.as_bytes()).then_some(v)
        })
    }
}

/// A variable's value for one request.
enum Value<'a> {
    Bytes(&'a [u8]),
    Number(u64),
    Ip(IpAddr),
    Rfc3339(u64),
    Absent,
}

impl Template {
    /// Parse `text`, reading `${env:...}` from the process environment.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        Template::parse_with(text, &|name| std::env::var_os(name))
    }

    /// Parse `text`, with `env` standing in for the process environment.
    pub fn parse_with(
        text: &str,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Template, TemplateError> {
        let bytes = text.as_bytes();
        let mut parts = Vec::new();
        let mut lit: Vec<u8> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b != b'$' {
                lit.push(b);
                i += 1;
                continue;
            }
            match bytes.get(i + 1) {
                Some(b'$') => {
                    lit.push(b'$');
                    i += 2;
                }
                Some(b'{') => {
                    let close = memchr::memchr(b'}', &bytes[i + 2..])
                        .ok_or(TemplateError::Unclosed { offset: i })?;
                    let inner = &text[i + 2..i + 2 + close];
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit).into()));
                    }
                    parts.push(variable(inner, env)?);
                    i += close + 3;
                }
                _ => {
                    lit.push(b'$');
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit.into()));
        }
        Ok(Template {
            text: text.into(),
            parts,
        })
    }

    /// The template as written (`${env:...}` as the reference, never its value).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The variables it uses, in order (to check `${path:x}` against the route's
    /// `path_template`, or to know whether it needs the caller's identity).
    pub fn vars(&self) -> impl Iterator<Item = &Var> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Env { .. } | Part::Literal(_) => None,
        })
    }

    /// The names of the `${env:...}` variables it read at load.
    pub fn env_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Env { name, .. } => Some(&**name),
            _ => None,
        })
    }

    /// True when the value is the same for every request (no variables, or only
    /// `${env:...}`).
    pub fn is_constant(&self) -> bool {
        self.vars().next().is_none()
    }

    /// Plain rendering, for header values: appends to `out`, dropping control bytes
    /// (CR, LF, NUL ..., see the module doc).
    pub fn render(&self, cx: &TemplateCx, out: &mut Vec<u8>) {
        for p in &self.parts {
            match p {
                Part::Literal(l) => push_plain(out, l),
                Part::Env { value, .. } => push_plain(out, value),
                Part::Var(v) => write_value(&value(v, cx), out, push_plain),
            }
        }
    }

    /// Rendering into a request target (a compose part's `path`): the text as written
    /// is copied as it is (checked at load to be a valid target, see
    /// [`Template::literals`]); each value, `${env:...}` included, goes through
    /// `escape` whole (percent-encoding, see `pipeline::compose`).
    pub fn render_target(
        &self,
        cx: &TemplateCx,
        out: &mut Vec<u8>,
        escape: fn(&mut Vec<u8>, &[u8]),
    ) {
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.extend_from_slice(l),
                Part::Env { value, .. } => escape(out, value),
                Part::Var(v) => write_value(&value(v, cx), out, escape),
            }
        }
    }

    /// The text as written between the variables (`$$` already made `$`).
    pub fn literals(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Literal(l) => Some(&**l),
            _ => None,
        })
    }

    /// JSON rendering: appends one JSON value to `out` (see the module doc).
    pub fn render_json(&self, cx: &TemplateCx, out: &mut Vec<u8>) {
        if let [Part::Var(v)] = &self.parts[..] {
            match value(v, cx) {
                Value::Absent => out.extend_from_slice(b"null"),
                Value::Number(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
                other => {
                    out.push(b'"');
                    write_value(&other, out, push_json_escaped);
                    out.push(b'"');
                }
            }
            return;
        }
        out.push(b'"');
        for p in &self.parts {
            match p {
                Part::Literal(l) => push_json_escaped(out, l),
                Part::Env { value, .. } => push_json_escaped(out, value),
                Part::Var(v) => write_value(&value(v, cx), out, push_json_escaped),
            }
        }
        out.push(b'"');
    }
}

/// `inner` is what stands between `${` and `}`.
fn variable(inner: &str, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Part, TemplateError> {
    let bad = |reason| TemplateError::BadArgument {
        var: inner.to_owned(),
        reason,
    };
    let var = match inner.split_once(':') {
        None => match inner {
            "request_id" => Var::RequestId,
            "client_ip" => Var::ClientIp,
            "now_ms" => Var::NowMs,
            "now_rfc3339" => Var::NowRfc3339,
            "user" => Var::User,
            "tenant" => Var::Tenant,
            "plan" => Var::Plan,
            _ => {
                return Err(TemplateError::UnknownVariable {
                    var: inner.to_owned(),
                })
            }
        },
        Some((kind, arg)) => {
            if arg.is_empty() {
                return Err(bad("a name is needed after ':'"));
            }
            match kind {
                "header" => {
                    if !super::header::is_token(arg.as_bytes()) {
                        return Err(bad("not a header name (a token)"));
                    }
                    Var::Header(arg.to_ascii_lowercase().into())
                }
                "query" => {
                    if arg.bytes().any(|b| matches!(b, b'&' | b'=' | b'#' | b'?'))
                        || arg.bytes().any(|b| b.is_ascii_control() || b == b' ')
                    {
                        return Err(bad("a query parameter name holds no & = # ? or spaces"));
                    }
                    Var::Query(arg.into())
                }
                "path" => {
                    if !is_name(arg) {
                        return Err(bad(
                            "a path segment name is letters, digits and _ (as in {name})",
                        ));
                    }
                    Var::Path(arg.into())
                }
                "env" => {
                    if arg
                        .bytes()
                        .any(|b| b == b'=' || b == 0 || b.is_ascii_whitespace())
                    {
                        return Err(bad("not an environment variable name"));
                    }
                    let value = env(arg).ok_or_else(|| TemplateError::MissingEnv {
                        name: arg.to_owned(),
                    })?;
                    let value = value.into_string().map_err(|_| TemplateError::EnvNotUtf8 {
                        name: arg.to_owned(),
                    })?;
                    return Ok(Part::Env {
                        name: arg.into(),
                        value: value.into_bytes().into(),
                    });
                }
                _ => {
                    return Err(TemplateError::UnknownVariable {
                        var: inner.to_owned(),
                    })
                }
            }
        }
    };
    Ok(Part::Var(var))
}

fn value<'a>(v: &Var, cx: &TemplateCx<'a>) -> Value<'a> {
    let bytes = |b: Option<&'a [u8]>| b.map_or(Value::Absent, Value::Bytes);
    let text = |s: Option<&'a str>| bytes(s.map(str::as_bytes));
    match v {
        Var::Header(name) => bytes(cx.head.header(cx.buf, name)),
        Var::Query(name) => bytes(cx.query(name)),
        Var::Path(name) => bytes(cx.path_template.and_then(|t| t.param(cx.path, name))),
        // Parsed into `Part::Env`, never a `Part::Var`.
        Var::Env(_) => Value::Absent,
        Var::RequestId => bytes(Some(cx.request_id).filter(|r| !r.is_empty())),
        Var::ClientIp => cx.client_ip.map_or(Value::Absent, Value::Ip),
        Var::NowMs => Value::Number(cx.now_ms),
        Var::NowRfc3339 => Value::Rfc3339(cx.now_ms),
        Var::User => text(cx.user),
        Var::Tenant => text(cx.tenant),
        Var::Plan => text(cx.plan),
    }
}

/// Writes `v` through `push` (plain or JSON-escaped); numbers and addresses are
/// formatted on the stack first.
fn write_value(v: &Value, out: &mut Vec<u8>, push: fn(&mut Vec<u8>, &[u8])) {
    match v {
        Value::Bytes(b) => push(out, b),
        Value::Number(n) => push(out, itoa::Buffer::new().format(*n).as_bytes()),
        Value::Ip(ip) => {
            use std::io::Write as _;
            let mut buf = [0u8; 64];
            let mut w = &mut buf[..];
            // 64 bytes hold any IPv6 text form (at most 45).
            let _ = write!(w, "{ip}");
            let n = 64 - w.len();
            push(out, &buf[..n]);
        }
        Value::Rfc3339(ms) => push(out, &rfc3339(*ms)),
        Value::Absent => {}
    }
}

/// Appends `b` without its control bytes (all of 0x00-0x1F but HTAB, and DEL).
fn push_plain(out: &mut Vec<u8>, b: &[u8]) {
    let bad = |c: u8| (c < 0x20 && c != b'\t') || c == 0x7f;
    if !b.iter().any(|&c| bad(c)) {
        out.extend_from_slice(b);
        return;
    }
    out.extend(b.iter().copied().filter(|&c| !bad(c)));
}

/// Appends `b` escaped for the inside of a JSON string; invalid UTF-8 becomes U+FFFD.
pub fn push_json_escaped(out: &mut Vec<u8>, b: &[u8]) {
    for chunk in b.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0;
        for (i, &c) in valid.iter().enumerate() {
            let esc: &[u8] = match c {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                c if c < 0x20 => {
                    out.extend_from_slice(&valid[start..i]);
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(c >> 4) as usize]);
                    out.push(HEX[(c & 0xf) as usize]);
                    start = i + 1;
                    continue;
                }
                _ => continue,
            };
            out.extend_from_slice(&valid[start..i]);
            out.extend_from_slice(esc);
            start = i + 1;
        }
        out.extend_from_slice(&valid[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// `2026-12-06T14:04:46.123Z` for `ms` since the epoch (UTC, millisecond precision).
pub fn rfc3339(ms: u64) -> [u8; 24] {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative).
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for k in (0..width).rev() {
            out[at + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    // Years past 9999 wrap to four digits; a clock that far ahead is already wrong.
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, m as u64);
    put(8, 2, d as u64);
    put(11, 2, sod / 3600);
    put(14, 2, sod / 60 % 60);
    put(17, 2, sod % 60);
    put(20, 3, ms % 1000);
    out
}

#[cfg(test)]
mod tests;
