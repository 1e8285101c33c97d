//! [`MediaRange`]: a route's `content_type = ["video/*", "application/json"]` entry,
//! matched against a request's `Content-Type`: type and subtype compared without
//! regard to case, `type/*` and `*/*` as wildcards, parameters (`; charset=utf-8`)
//! ignored on both sides. Parsed once at load; matching allocates nothing.

/// One entry of a route's `content_type` list (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    /// `None`: `*/*`.
    kind: Option<Box<str>>,
    /// `None`: `type/*`.
    subtype: Option<Box<str>>,
}

impl MediaRange {
    /// `type/subtype`, `type/*` or `*/*`; parameters are refused (they are not
    /// compared, so writing one would mislead).
    pub fn parse(text: &str) -> Result<MediaRange, &'static str> {
        let (t, s) = text
            .split_once('/')
            .ok_or("expected type/subtype, type/* or */* (e.g. \"video/*\")")?;
        let token = |x: &str| super::header::is_token(x.as_bytes());
        if !token(t) || !token(s) {
            return Err(
                "type and subtype are tokens, without spaces or parameters (\"; charset\" is ignored when matching)",
            );
        }
        match (t, s) {
            ("*", "*") => Ok(MediaRange {
                kind: None,
                subtype: None,
            }),
            ("*", _) => Err("*/subtype matches nothing: write type/subtype, type/* or */*"),
            (t, "*") => Ok(MediaRange {
                kind: Some(t.to_ascii_lowercase().into()),
                subtype: None,
            }),
            (t, s) => Ok(MediaRange {
                kind: Some(t.to_ascii_lowercase().into()),
                subtype: Some(s.to_ascii_lowercase().into()),
            }),
        }
    }

    /// Whether a request's `Content-Type` value is in this range. A malformed value
    /// (no `/`) matches nothing, not even `*/*`.
    pub fn matches(&self, content_type: &[u8]) -> bool {
        let essence = match memchr::memchr(b';', content_type) {
            Some(i) => &content_type[..i],
            None => content_type,
        };
        let essence = super::header::trim_ows(essence);
        let Some(slash) = memchr::memchr(b'/', essence) else {
            return false;
        };
        let (t, s) = (
            super::header::trim_ows(&essence[..slash]),
            super::header::trim_ows(&essence[slash + 1..]),
        );
        if t.is_empty() || s.is_empty() {
            return false;
        }
        self.kind
            .as_ref()
            .is_none_or(|k| k.as_bytes().eq_ignore_ascii_case(t))
            && self
                .subtype
                .as_ref()
                .is_none_or(|k| k.as_bytes().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for MediaRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.kind.as_deref().unwrap_or("*"),
            self.subtype.as_deref().unwrap_or("*")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::MediaRange;

    fn m(range: &str, ct: &str) -> bool {
        MediaRange::parse(range).unwrap().matches(ct.as_bytes())
    }

    #[test]
    fn matching() {
        assert!(m("video/*", "video/mp4"));
        assert!(m("video/*", "VIDEO/MP4; codecs=avc1"));
        assert!(!m("video/*", "audio/mpeg"));
        assert!(m("application/json", "application/json; charset=utf-8"));
        assert!(m("Application/JSON", "application/json"));
        assert!(!m("application/json", "application/json-seq"));
        assert!(!m("application/json", "application/jsonx"));
        assert!(m("*/*", "text/plain"));
        assert!(!m("*/*", "garbage"));
        assert!(!m("*/*", ""));
        assert!(!m("text/*", "/plain"));
        assert!(m("text/plain", " text/plain ;q"));
    }

    #[test]
    fn refused() {
        for bad in [
            "video",
            "video/",
            "*/mp4",
            "text/plain; charset=utf-8",
            "a b/c",
        ] {
            assert!(MediaRange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(MediaRange::parse("Video/*").unwrap().to_string(), "video/*");
    }
}
