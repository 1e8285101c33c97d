//! [`PathTemplate`]: a route path such as `/api/profile/{user_id}`, matched segment by
//! segment: a literal segment must be equal, a `{name}` segment matches exactly one
//! non-empty segment, and the named segments become `${path:name}` in templates
//! ([`super::template`]). Parsed once at load; matching walks the request path once
//! and allocates nothing.
//!
//! The path matched is the one routing sees (normalised, without the query). A value
//! is the segment as received: percent-encoding is kept (`%20` stays `%20`).

/// One `/`-separated piece of a [`PathTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(Box<str>),
    /// `{name}`: one non-empty segment.
    Param(Box<str>),
}

/// A parsed `path_template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: Box<str>,
    segments: Vec<Segment>,
    /// The template ends in `/` (`/a/{b}/`): so must the path.
    trailing_slash: bool,
}

/// Why a `path_template` is refused (the caller names the key and line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathTemplateError {
    #[error("must start with '/'")]
    NoLeadingSlash,
    #[error("empty segment (\"//\")")]
    EmptySegment,
    #[error("a segment is either literal or exactly one {{name}} (got {0:?})")]
    MixedSegment(String),
    #[error("{{{0}}}: a name is letters, digits and _ (not starting with a digit)")]
    BadName(String),
    #[error("{{{0}}} appears twice")]
    DuplicateName(String),
    #[error("a path holds no '?', '#', '%', spaces or control characters")]
    BadChar,
}

impl PathTemplate {
    pub fn parse(text: &str) -> Result<PathTemplate, PathTemplateError> {
        let rest = text
            .strip_prefix('/')
            .ok_or(PathTemplateError::NoLeadingSlash)?;
        if text
            .bytes()
            .any(|b| matches!(b, b'?' | b'#' | b'%' | b' ') || b.is_ascii_control())
        {
            return Err(PathTemplateError::BadChar);
        }
        let trailing_slash = rest.ends_with('/') && !rest.is_empty();
        let body = rest.strip_suffix('/').unwrap_or(rest);
        let mut segments = Vec::new();
        if !body.is_empty() {
            for seg in body.split('/') {
                if seg.is_empty() {
                    return Err(PathTemplateError::EmptySegment);
                }
                segments.push(segment(seg)?);
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for s in &segments {
            if let Segment::Param(n) = s {
                if names.contains(&&**n) {
                    return Err(PathTemplateError::DuplicateName(n.to_string()));
                }
                names.push(n);
            }
        }
        Ok(PathTemplate {
            text: text.into(),
            segments,
            trailing_slash,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The names of the `{name}` segments, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) => Some(&**n),
            Segment::Literal(_) => None,
        })
    }

    /// Whether `name` is one of the `{name}` segments.
    pub fn has(&self, name: &str) -> bool {
        self.names().any(|n| n == name)
    }

    /// The literal segments before the first `{name}`, as a path (`/api/profile` for
    /// `/api/profile/{id}`): every path this template matches starts with it.
    pub fn literal_prefix(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                Segment::Param(_) => break,
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// Whether `path` (no query) matches: same number of segments, literals equal,
    /// each `{name}` one non-empty segment.
    pub fn matches(&self, path: &[u8]) -> bool {
        let Some(rest) = path.strip_prefix(b"/") else {
            return false;
        };
        let ends_slash = !rest.is_empty() && rest.ends_with(b"/");
        if ends_slash != self.trailing_slash {
            return false;
        }
        let body = if ends_slash {
            &rest[..rest.len() - 1]
        } else {
            rest
        };
        if body.is_empty() {
            return self.segments.is_empty();
        }
        let mut parts = body.split(|&b| b == b'/');
        for s in &self.segments {
            let Some(p) = parts.next() else {
                return false;
            };
            match s {
                Segment::Literal(l) if l.as_bytes() != p => return false,
                Segment::Param(_) if p.is_empty() => return false,
                _ => {}
            }
        }
        parts.next().is_none()
    }

    /// Whether every path `other` matches, this one matches too (same number of
    /// segments and trailing slash; each literal of this one the same literal there).
    pub fn covers(&self, other: &PathTemplate) -> bool {
        self.trailing_slash == other.trailing_slash
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| match (a, b) {
                    (Segment::Param(_), _) => true,
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    (Segment::Literal(_), Segment::Param(_)) => false,
                })
    }

    /// The value of `{name}` in `path`, which this template matched; `None` when the
    /// name is not a segment of it or the path does not have that many segments.
    pub fn param<'a>(&self, path: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let index = self
            .segments
            .iter()
            .position(|s| matches!(s, Segment::Param(n) if &**n == name))?;
        path.strip_prefix(b"/")?
            .split(|&b| b == b'/')
            .nth(index)
            .filter(|p| !p.is_empty())
    }
}

fn segment(seg: &str) -> Result<Segment, PathTemplateError> {
    let has_brace = seg.contains(['{', '}']);
    if !has_brace {
        return Ok(Segment::Literal(seg.into()));
    }
    let name = seg
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .filter(|n| !n.contains(['{', '}']))
        .ok_or_else(|| PathTemplateError::MixedSegment(seg.to_owned()))?;
    if !is_name(name) {
        return Err(PathTemplateError::BadName(name.to_owned()));
    }
    Ok(Segment::Param(name.into()))
}

/// `[A-Za-z_][A-Za-z0-9_]*`: the names `{name}` and `${path:name}` accept.
pub fn is_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_segment_by_segment() {
        let t = PathTemplate::parse("/api/profile/{user_id}").unwrap();
        assert!(t.matches(b"/api/profile/42"));
        assert!(!t.matches(b"/api/profile/"));
        assert!(!t.matches(b"/api/profile"));
        assert!(!t.matches(b"/api/profile/42/x"));
        assert!(!t.matches(b"/api/profiles/42"));
        assert!(!t.matches(b"/api/profile/42/"));
        assert_eq!(t.param(b"/api/profile/42", "user_id"), Some(&b"42"[..]));
        assert_eq!(t.param(b"/api/profile/42", "other"), None);
        assert_eq!(t.literal_prefix(), "/api/profile");
    }

    #[test]
    fn several_params_and_trailing_slash() {
        let t = PathTemplate::parse("/u/{a}/orders/{b}/").unwrap();
        assert!(t.matches(b"/u/1/orders/2/"));
        assert!(!t.matches(b"/u/1/orders/2"));
        assert!(!t.matches(b"/u//orders/2/"));
        assert_eq!(t.param(b"/u/1/orders/2/", "b"), Some(&b"2"[..]));
        assert_eq!(t.names().collect::<Vec<_>>(), ["a", "b"]);
        let root = PathTemplate::parse("/").unwrap();
        assert!(root.matches(b"/"));
        assert!(!root.matches(b"/x"));
        let first = PathTemplate::parse("/{x}").unwrap();
        assert_eq!(first.literal_prefix(), "/");
        assert!(first.matches(b"/abc"));
    }

    #[test]
    fn refused() {
        use PathTemplateError as E;
        assert_eq!(PathTemplate::parse("api/{x}"), Err(E::NoLeadingSlash));
        assert_eq!(PathTemplate::parse("/a//{x}"), Err(E::EmptySegment));
        assert!(matches!(
            PathTemplate::parse("/a/x{y}"),
            Err(E::MixedSegment(_))
        ));
        assert!(matches!(PathTemplate::parse("/a/{}"), Err(E::BadName(_))));
        assert!(matches!(PathTemplate::parse("/a/{1x}"), Err(E::BadName(_))));
        assert!(matches!(
            PathTemplate::parse("/{a}/{a}"),
            Err(E::DuplicateName(_))
        ));
        assert_eq!(PathTemplate::parse("/a?b"), Err(E::BadChar));
    }
}
