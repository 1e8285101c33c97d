//! Rate-limit keys: which caller a bucket belongs to ([`KeyKind`], [`bucket_key`]) and
//! the secret fingerprint under which a worker stores it ([`KeySecret`]).
//!
//! Key bytes start with a tag naming the kind (`u` user, `t` tenant, `k` API key, `h`
//! header value, `i`/`I` IPv4 address / IPv6 /64 prefix), so keys of different kinds
//! never collide. The rest of the key is the value itself; since the tag fixes the
//! kind, no separator or length is needed.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;
use std::ops::Deref;

/// `[rate_limit] key`: what a bucket is per.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    User,
    Tenant,
    ApiKey,
    Ip,
    /// The value of this request header (name lower-cased).
    Header(String),
}

impl KeyKind {
    /// `user` | `tenant` | `api_key` | `ip` | `header:<Name>`.
    pub fn parse(s: &str) -> Option<KeyKind> {
        Some(match s {
            "user" => KeyKind::User,
            "tenant" => KeyKind::Tenant,
            "api_key" => KeyKind::ApiKey,
            "ip" => KeyKind::Ip,
            _ => {
                let name = s.strip_prefix("header:")?;
                let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                if name.is_empty() || !name.bytes().all(tchar) {
                    return None;
                }
                KeyKind::Header(name.to_ascii_lowercase())
            }
        })
    }
}

/// As written in the configuration: `user`, `tenant`, `api_key`, `ip`, `header:<name>`.
impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::User => f.write_str("user"),
            KeyKind::Tenant => f.write_str("tenant"),
            KeyKind::ApiKey => f.write_str("api_key"),
            KeyKind::Ip => f.write_str("ip"),
            KeyKind::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// What the pipeline knows about an authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user: &'a str,
    /// `None`: the token had no tenant claim, and the tenant is the user.
    pub tenant: Option<&'a str>,
    /// The `id` of the API key the caller used; `None` for a bearer token.
    pub api_key_id: Option<&'a str>,
}

const INLINE: usize = 64;

/// Key bytes, kept inline up to 64 bytes so that building a key does not allocate.
#[derive(Clone)]
pub struct KeyBytes {
    len: usize,
    inline: [u8; INLINE],
    spilled: Vec<u8>,
}

impl KeyBytes {
    fn with_tag(tag: u8) -> KeyBytes {
        let mut k = KeyBytes {
            len: 1,
            inline: [0; INLINE],
            spilled: Vec::new(),
        };
        k.inline[0] = tag;
        k
    }

    fn push(&mut self, bytes: &[u8]) {
        if !self.spilled.is_empty() {
            self.spilled.extend_from_slice(bytes);
        } else if self.len + bytes.len() <= INLINE {
            self.inline[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.spilled.reserve(self.len + bytes.len());
            self.spilled.extend_from_slice(&self.inline[..self.len]);
            self.spilled.extend_from_slice(bytes);
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

impl Deref for KeyBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyBytes({:?})",
            self.as_bytes().escape_ascii().to_string()
        )
    }
}

/// The bucket key of a request.
///
/// * no caller (anonymous, or `auth = "none"`): the IP, whatever `kind` says;
/// * `User`: the user; `Tenant`: the tenant (the user when the token names none);
/// * `ApiKey`: the API key's id; a caller with a bearer token is keyed by user;
/// * `Header`: the header's value; without the header (or with an empty one), the user;
/// * `Ip`: the IP.
///
/// IPv4-mapped IPv6 addresses count as IPv4; other IPv6 addresses are keyed by their /64,
/// the smallest block one subscriber is usually given (per address, one client could
/// rotate through 2^64 buckets).
pub fn bucket_key(
    kind: &KeyKind,
    caller: Option<&Caller<'_>>,
    ip: IpAddr,
    header_value: Option<&[u8]>,
) -> KeyBytes {
    let Some(c) = caller else {
        return ip_key(ip);
    };
    let (tag, value) = match kind {
        KeyKind::Ip => return ip_key(ip),
        KeyKind::User => (b'u', c.user.as_bytes()),
        KeyKind::Tenant => (b't', c.tenant.unwrap_or(c.user).as_bytes()),
        KeyKind::ApiKey => match c.api_key_id {
            Some(id) => (b'k', id.as_bytes()),
            None => (b'u', c.user.as_bytes()),
        },
        KeyKind::Header(_) => match header_value {
            Some(v) if !v.is_empty() => (b'h', v),
            _ => (b'u', c.user.as_bytes()),
        },
    };
    let mut k = KeyBytes::with_tag(tag);
    k.push(value);
    k
}

fn ip_key(ip: IpAddr) -> KeyBytes {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mut k = KeyBytes::with_tag(b'i');
            k.push(&v4.octets());
            k
        }
        IpAddr::V6(v6) => {
            let mut k = KeyBytes::with_tag(b'I');
            k.push(&v6.octets()[..8]);
            k
        }
    }
}

/// The secret under which keys are fingerprinted (SipHash-1-3 with a random 128-bit
/// key). Every worker of one process must use the same secret, since gossip names keys
/// by fingerprint: create it once ([`super::Mesh::new`] does) and clone it.
#[derive(Clone, Debug)]
pub struct KeySecret(Secret);

#[derive(Clone)]
enum Secret {
    Random(RandomState),
    /// `[cluster]`: a secret every node derives alike (`ClusterConfig::key_seed`), so
    /// the nodes name a key by the same fingerprint in Redis; SipHash-1-3 over the
    /// secret then the key.
    Keyed([u8; 16]),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl KeySecret {
    pub fn random() -> KeySecret {
        KeySecret(Secret::Random(RandomState::new()))
    }

    /// A secret shared by every process given the same `seed`.
    pub fn keyed(seed: [u8; 16]) -> KeySecret {
        KeySecret(Secret::Keyed(seed))
    }

    /// The 64-bit fingerprint of `key` under the plan whose name hashes to `plan`
    /// (`Plan::name_hash`). Two distinct (plan, key) pairs share one with
    /// probability 2^-64; among a million keys, about 3 × 10^-8 that any do. The plan
    /// is named, not numbered, so a bucket keeps its fingerprint when a reload adds,
    /// removes or reorders plans.
    #[inline]
    pub fn fingerprint(&self, plan: u64, key: &[u8]) -> u64 {
        let mut h = match &self.0 {
            Secret::Random(s) => s.build_hasher(),
            Secret::Keyed(k) => {
                let mut h = std::hash::DefaultHasher::new();
                h.write(k);
                h
            }
        };
        h.write_u64(plan);
        h.write(key);
        h.finish()
    }
}

/// Hasher for maps keyed by a fingerprint, which is already uniformly random.
#[derive(Default, Clone, Copy)]
pub(crate) struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are ever hashed; fold anything else in for completeness.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type BuildFingerprint = std::hash::BuildHasherDefault<FingerprintHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    fn caller(user: &'static str) -> Caller<'static> {
        Caller {
            user,
            tenant: None,
            api_key_id: None,
        }
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(KeyKind::parse("user"), Some(KeyKind::User));
        assert_eq!(KeyKind::parse("tenant"), Some(KeyKind::Tenant));
        assert_eq!(KeyKind::parse("api_key"), Some(KeyKind::ApiKey));
        assert_eq!(KeyKind::parse("ip"), Some(KeyKind::Ip));
        assert_eq!(
            KeyKind::parse("header:X-Tenant"),
            Some(KeyKind::Header("x-tenant".into()))
        );
        for s in ["user", "tenant", "api_key", "ip", "header:x-tenant"] {
            assert_eq!(KeyKind::parse(s).unwrap().to_string(), s, "round trip");
        }
        for bad in ["org", "header:", "header:a b", "User", ""] {
            assert_eq!(KeyKind::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn each_kind_keys_on_its_field() {
        let c = Caller {
            user: "alice",
            tenant: Some("acme"),
            api_key_id: Some("key_1"),
        };
        let k = |kind: KeyKind, h: Option<&[u8]>| bucket_key(&kind, Some(&c), IP, h).to_vec();
        assert_eq!(k(KeyKind::User, None), b"ualice");
        assert_eq!(k(KeyKind::Tenant, None), b"tacme");
        assert_eq!(k(KeyKind::ApiKey, None), b"kkey_1");
        assert_eq!(k(KeyKind::Ip, None), b"i\xc0\x00\x02\x07");
        let hdr = KeyKind::Header("x-org".into());
        assert_eq!(k(hdr.clone(), Some(b"o-9")), b"ho-9");
        // Fallbacks: no header -> the user; no tenant -> the user as tenant; a bearer
        // token under `api_key` -> the user.
        assert_eq!(k(hdr.clone(), None), b"ualice");
        assert_eq!(k(hdr, Some(b"")), b"ualice");
        let bare = caller("bob");
        assert_eq!(
            bucket_key(&KeyKind::Tenant, Some(&bare), IP, None).to_vec(),
            b"tbob"
        );
        assert_eq!(
            bucket_key(&KeyKind::ApiKey, Some(&bare), IP, None).to_vec(),
            b"ubob"
        );
    }

    #[test]
    fn anonymous_callers_are_keyed_by_ip_whatever_the_kind() {
        let kinds = [
            KeyKind::User,
            KeyKind::Tenant,
            KeyKind::ApiKey,
            KeyKind::Ip,
            KeyKind::Header("x-a".into()),
        ];
        for kind in kinds {
            assert_eq!(
                bucket_key(&kind, None, IP, Some(b"v")).to_vec(),
                b"i\xc0\x00\x02\x07"
            );
        }
    }

    #[test]
    fn same_string_of_different_kinds_never_shares_a_key() {
        let s = "192.0.2.7";
        let c = Caller {
            user: s,
            tenant: Some(s),
            api_key_id: Some(s),
        };
        let keys: Vec<Vec<u8>> = [
            KeyKind::User,
            KeyKind::Tenant,
            KeyKind::ApiKey,
            KeyKind::Header("x".into()),
        ]
        .iter()
        .map(|k| bucket_key(k, Some(&c), IP, Some(s.as_bytes())).to_vec())
        .chain([bucket_key(&KeyKind::Ip, None, IP, None).to_vec()])
        .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_v4_as_v4() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        let key = |ip: IpAddr| bucket_key(&KeyKind::Ip, None, ip, None).to_vec();
        assert_eq!(key(a.into()), key(b.into()));
        assert_ne!(key(a.into()), key(other.into()));
        let mapped: Ipv6Addr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(key(mapped.into()), key(IP));
    }

    #[test]
    fn long_keys_spill_to_the_heap_intact() {
        let long = "x".repeat(300);
        let k = bucket_key(&KeyKind::User, Some(&caller("a")), IP, None);
        assert_eq!(&*k, b"ua");
        let c = Caller {
            user: &long,
            tenant: None,
            api_key_id: None,
        };
        let k = bucket_key(&KeyKind::User, Some(&c), IP, None);
        assert_eq!(k.len(), 301);
        assert_eq!(k[0], b'u');
        assert!(k[1..].iter().all(|&b| b == b'x'));
    }

    #[test]
    fn fingerprints_depend_on_plan_key_and_secret() {
        let s = KeySecret::random();
        let clone = s.clone();
        let (free, pro) = (
            super::super::name_hash("free"),
            super::super::name_hash("pro"),
        );
        let a = s.fingerprint(free, b"ualice");
        assert_eq!(a, clone.fingerprint(free, b"ualice"));
        assert_ne!(a, s.fingerprint(pro, b"ualice"));
        assert_ne!(a, s.fingerprint(free, b"ualicf"));
        assert_ne!(a, KeySecret::random().fingerprint(free, b"ualice"));
        assert_eq!(free, super::super::name_hash("free"), "stable across calls");
    }
}
