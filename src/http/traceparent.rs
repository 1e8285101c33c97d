//! W3C Trace Context's `traceparent` field (<https://www.w3.org/TR/trace-context/>):
//! reading a client's, writing the gateway's. `version-traceid-parentid-flags`, all
//! lower-case hex: `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
//!
//! Read as the specification says a receiver must: version `ff` is invalid; version
//! `00` is exactly 55 characters; a later version may carry more after a `-`; an
//! all-zero trace id or parent id is invalid; upper-case hex is invalid. An invalid
//! field is treated as absent (a new trace starts), never forwarded.

/// The length of a version-00 `traceparent`.
pub const LEN: usize = 55;

/// What the gateway keeps of a valid incoming `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub flags: u8,
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn hex_into(src: &[u8], out: &mut [u8]) -> Option<()> {
    for (o, pair) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = hex_val(pair[0])? << 4 | hex_val(pair[1])?;
    }
    Some(())
}

/// Parse a `traceparent` value (surrounding spaces and tabs allowed).
pub fn parse(value: &[u8]) -> Option<TraceParent> {
    let v = crate::http::header::trim_ows(value);
    if v.len() < LEN || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let mut version = [0u8; 1];
    hex_into(&v[0..2], &mut version)?;
    match version[0] {
        0xff => return None,
        0 if v.len() != LEN => return None,
        _ if v.len() > LEN && v[LEN] != b'-' => return None,
        _ => {}
    }
    let mut trace_id = [0u8; 16];
    hex_into(&v[3..35], &mut trace_id)?;
    let mut parent = [0u8; 8];
    hex_into(&v[36..52], &mut parent)?;
    let mut flags = [0u8; 1];
    hex_into(&v[53..55], &mut flags)?;
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        flags: flags[0],
    })
}

/// Write a version-00 `traceparent` for this trace, with `span` as the parent id.
pub fn write(out: &mut [u8; LEN], trace_id: &[u8; 16], span: u64, flags: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    fn put(out: &mut [u8], bytes: &[u8]) {
        for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX[(b >> 4) as usize];
            pair[1] = HEX[(b & 15) as usize];
        }
    }
    put(&mut out[0..2], &[0]);
    out[2] = b'-';
    put(&mut out[3..35], trace_id);
    out[35] = b'-';
    // A span id of zero is invalid: the caller's random value is made odd.
    put(&mut out[36..52], &(span | 1).to_be_bytes());
    out[52] = b'-';
    put(&mut out[53..55], &[flags]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_fields_are_read() {
        let t = parse(GOOD).unwrap();
        assert_eq!(t.flags, 1);
        assert_eq!(t.trace_id[0], 0x4b);
        assert!(parse(b"  00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\t").is_some());
        // A later version may carry more fields.
        assert!(parse(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what").is_some());
    }

    #[test]
    fn invalid_fields_are_refused() {
        for bad in [
            &b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn written_fields_read_back() {
        let mut out = [0u8; LEN];
        let t = parse(GOOD).unwrap();
        write(&mut out, &t.trace_id, 0x1234, t.flags);
        assert_eq!(&out[..36], &GOOD[..36]);
        assert_eq!(&out[36..], b"0000000000001235-01");
        assert_eq!(parse(&out), Some(t));
    }
}
