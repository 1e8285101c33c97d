//! Path normalisation for route matching (RFC 3986 6.2.2): percent-encoded unreserved
//! characters are decoded and "." / ".." segments removed, so `/api/%75sers` or
//! `/public/../admin` match the route a reader would expect instead of slipping past a
//! stricter one. Paths that need none of this (nearly all) are not copied.

/// Does `path` need normalising before matching?
#[inline]
pub fn needs_normalizing(path: &[u8]) -> bool {
    memchr::memchr(b'%', path).is_some() || memchr::memmem::find(path, b"/.").is_some()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Write the normalised form of `path` (no query) into `out`.
pub fn normalize(path: &[u8], out: &mut Vec<u8>) {
    out.clear();
    // 1. Decode %XX where XX is an unreserved character; keep every other escape as is
    //    (with upper-case hex digits, the RFC's normal form).
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex(path[i + 1]), hex(path[i + 2])) {
                let c = h << 4 | l;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    decoded.push(c);
                } else {
                    decoded.push(b'%');
                    decoded.push(path[i + 1].to_ascii_uppercase());
                    decoded.push(path[i + 2].to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        decoded.push(path[i]);
        i += 1;
    }
    // 2. Remove dot segments.
    let mut segments: Vec<&[u8]> = Vec::new();
    let trailing = decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    for seg in decoded.split(|&c| c == b'/').skip(1) {
        match seg {
            b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing {
        out.push(b'/');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> String {
        let mut out = Vec::new();
        normalize(p.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn normalises() {
        assert_eq!(norm("/api/%75sers"), "/api/users");
        assert_eq!(norm("/public/../admin"), "/admin");
        assert_eq!(norm("/a/./b/"), "/a/b/");
        assert_eq!(norm("/a/b/.."), "/a/");
        assert_eq!(norm("/../../x"), "/x");
        assert_eq!(norm("/a%2fb"), "/a%2Fb");
        assert_eq!(norm("/a%2"), "/a%2");
        assert_eq!(norm("/"), "/");
        assert!(!needs_normalizing(b"/api/users/7"));
        assert!(needs_normalizing(b"/api/./x"));
    }
}
