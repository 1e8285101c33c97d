//! [`Rewrite`]: a route's `rewrite = { pattern = "^/v1/(.*)$", replace = "/api/$1" }`.
//! The pattern (the `regex` crate, compiled once at load) is applied to the path
//! routing matched (normalised, without the query); the first match is replaced
//! (`$1`, `${name}` for capture groups, `$$` for a `$`), and the query string, if any,
//! is appended unchanged (after `&` when the replacement holds a `?` of its own). A
//! path the pattern does not match is sent as it is.
//!
//! The result must be an origin-form target: starting with `/`, printable ASCII
//! without spaces or `#`. Replacement text is checked at load; a capture group holds
//! bytes of the normalised path, which the head parser already limited, so a bad
//! result is only possible when the replacement does not start with `/`; it is
//! refused at run time ([`RewriteError`], answered 500) rather than sent.

use regex::bytes::Regex;

#[derive(Debug, Clone)]
pub struct Rewrite {
    pattern: Regex,
    replace: Box<str>,
}

impl PartialEq for Rewrite {
    fn eq(&self, other: &Rewrite) -> bool {
        self.pattern.as_str() == other.pattern.as_str() && self.replace == other.replace
    }
}

/// A rewrite produced a target that cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the route's rewrite produced a target that is not an origin-form path")]
pub struct RewriteError;

impl Rewrite {
    /// Compile `pattern` and check `replace` (the error is the reason, for a config
    /// error naming the key).
    pub fn new(pattern: &str, replace: &str) -> Result<Rewrite, (&'static str, String)> {
        let re = Regex::new(pattern).map_err(|e| ("pattern", one_line(&e)))?;
        if replace
            .bytes()
            .any(|b| !(0x21..0x7f).contains(&b) || b == b'#')
        {
            return Err((
                "replace",
                "printable ASCII without spaces or '#' (percent-encode anything else)".into(),
            ));
        }
        // Every group the replacement names must exist, or it would silently expand
        // to nothing.
        for name in group_refs(replace) {
            let known = match name.parse::<usize>() {
                Ok(i) => i < re.captures_len(),
                Err(_) => re.capture_names().flatten().any(|n| n == name),
            };
            if !known {
                return Err(("replace", format!("${name}: the pattern has no such group")));
            }
        }
        Ok(Rewrite {
            pattern: re,
            replace: replace.into(),
        })
    }

    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }

    pub fn replace(&self) -> &str {
        &self.replace
    }

    /// Append the target to send for `path` (matched, no query) and `query` (what
    /// followed `?`, if there was one) to `out`. `Ok(false)`: the pattern does not
    /// match; `out` is untouched and the target goes as received.
    pub fn apply(
        &self,
        path: &[u8],
        query: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<bool, RewriteError> {
        let Some(caps) = self.pattern.captures(path) else {
            return Ok(false);
        };
        let start = out.len();
        let m = caps.get(0).map_or(0..0, |m| m.range());
        out.extend_from_slice(&path[..m.start]);
        caps.expand(self.replace.as_bytes(), out);
        out.extend_from_slice(&path[m.end..]);
        let new = &out[start..];
        if new.first() != Some(&b'/')
            || new.iter().any(|&b| !(0x21..0x7f).contains(&b) || b == b'#')
        {
            out.truncate(start);
            return Err(RewriteError);
        }
        if let Some(q) = query {
            let sep = if new.contains(&b'?') { b'&' } else { b'?' };
            out.push(sep);
            out.extend_from_slice(q);
        }
        Ok(true)
    }
}

/// The regex crate's message is several lines (the pattern, a caret, the error):
/// the config error has the pattern already, so only the error is kept.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    match text.lines().find_map(|l| l.strip_prefix("error: ")) {
        Some(what) => format!("not a valid regex: {what}"),
        None => format!("not a valid regex: {}", text.replace('\n', " ")),
    }
}

/// The group names and numbers `$1`, `${name}`, `$name` in a replacement (`$$` is a
/// literal `$`), as the regex crate reads them: the longest run of name characters.
fn group_refs(replace: &str) -> Vec<&str> {
    let b = replace.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => match replace[i + 2..].find('}') {
                Some(end) => {
                    out.push(&replace[i + 2..i + 2 + end]);
                    i += end + 3;
                }
                None => i += 1,
            },
            _ => {
                let len = b[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                if len > 0 {
                    out.push(&replace[i + 1..i + 1 + len]);
                }
                i += len + 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &str, r: &str, path: &str, q: Option<&str>) -> Result<Option<String>, RewriteError> {
        let rw = Rewrite::new(p, r).unwrap();
        let mut out = Vec::new();
        Ok(rw
            .apply(path.as_bytes(), q.map(str::as_bytes), &mut out)?
            .then(|| String::from_utf8(out).unwrap()))
    }

    #[test]
    fn captures_and_query() {
        let v1 = |path, q| run("^/v1/(.*)$", "/api/$1", path, q).unwrap();
        assert_eq!(
            v1("/v1/users/7", Some("a=1&b")).as_deref(),
            Some("/api/users/7?a=1&b")
        );
        assert_eq!(v1("/v1/", None).as_deref(), Some("/api/"));
        assert_eq!(v1("/v2/x", None), None);
        let named = run(
            "^/u/(?P<id>[0-9]+)/(?P<rest>.*)$",
            "/users/${id}/x/${rest}",
            "/u/42/a/b",
            Some("q"),
        );
        assert_eq!(named.unwrap().as_deref(), Some("/users/42/x/a/b?q"));
        let with_q = run("^/s/(.*)$", "/search?term=$1", "/s/cat", Some("page=2"));
        assert_eq!(with_q.unwrap().as_deref(), Some("/search?term=cat&page=2"));
        // Only the matched part is replaced.
        assert_eq!(
            run("/old/", "/new/", "/a/old/b", None).unwrap().as_deref(),
            Some("/a/new/b")
        );
    }

    #[test]
    fn bad_results_refused() {
        assert_eq!(run("^/(.*)$", "$1", "/x", None), Err(RewriteError));
    }

    #[test]
    fn load_errors() {
        assert_eq!(Rewrite::new("^/v1/(", "/").unwrap_err().0, "pattern");
        assert_eq!(
            Rewrite::new("^/v1/(.*)$", "/api/$2").unwrap_err().0,
            "replace"
        );
        assert_eq!(
            Rewrite::new("^/v1/(.*)$", "/api/${nope}").unwrap_err().0,
            "replace"
        );
        assert_eq!(Rewrite::new("^/v1/(.*)$", "/a b").unwrap_err().0, "replace");
        assert!(Rewrite::new("^/v1/(?P<x>.*)$", "/api/$x/$$").is_ok());
    }
}
