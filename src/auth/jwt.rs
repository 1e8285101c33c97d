//! Bearer tokens: the `Authorization` header parsed (RFC 6750 2.1), the key chosen, the
//! token verified by jsonwebtoken, and the identity read from its claims.
//!
//! The key is chosen before anything is verified, from the token's header: a `kid`
//! selects that key (unknown kid: rejected), no `kid` selects every key whose algorithm
//! is the token's `alg`. The token's `alg` must be exactly its key's algorithm, so
//! `"none"`, an algorithm the key was not configured for, and an RS256 public key used
//! as an HS256 secret all fail before any cryptography runs (and jsonwebtoken, given
//! only the key's algorithm, checks the same again).
//!
//! jsonwebtoken (>= 10.3, where an `exp` or `nbf` of the wrong JSON type is an error
//! rather than "absent") verifies the signature and `exp` (required), `nbf`, `iss` and
//! `aud` against the system clock. The claims are then read once more, strictly and
//! against the caller's clock `now`, which is the clock the identity cache uses: a
//! token is accepted only when both agree.

use std::cell::Cell;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::crypto;
use super::keys::{JwtKey, JwtSettings};
use super::{is_identity_value, is_scope_token, AuthFailure, Identity, Via};

/// Longest token looked at; longer ones are rejected unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What an `Authorization` header value holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bearer<'a> {
    /// Another scheme (`Basic ...`): no bearer credential, as for Envoy's jwt_authn.
    OtherScheme,
    /// The token, not yet checked beyond its shape.
    Token(&'a [u8]),
    /// `Bearer` without a token.
    Malformed,
    /// A bearer credential in a comma-separated list (`Bearer a, Bearer b`, or `Basic
    /// x, Bearer y`): what an intermediary makes of two `Authorization` fields when it
    /// folds them into one, which RFC 9110 5.3 does not allow for this field. A token
    /// never holds a comma (token68, RFC 9110 11.4; a JWS is base64url and dots).
    List,
}

/// `Bearer <token>`: see [`bearer_one`]; a bearer credential that is one element of a
/// list is [`Bearer::List`]. Only a value holding a comma is looked at twice: another
/// scheme's own parameters (`Digest a=b, c=d`) are no bearer credential and stay
/// [`Bearer::OtherScheme`]. The comma search is memchr's vectorised scan, a few ns for
/// a whole token, not the byte-by-byte pass `bearer_one` avoids.
pub(crate) fn bearer(value: &[u8]) -> Bearer<'_> {
    let one = bearer_one(value);
    let comma = |v: &[u8]| memchr::memchr(b',', v).is_some();
    match one {
        Bearer::Token(token) if comma(token) => Bearer::List,
        Bearer::OtherScheme if comma(value) => {
            let later_bearer = value
                .split(|&b| b == b',')
                .skip(1)
                .any(|element| bearer_one(element) != Bearer::OtherScheme);
            if later_bearer {
                Bearer::List
            } else {
                Bearer::OtherScheme
            }
        }
        other => other,
    }
}

/// `Bearer <token>`: scheme case-insensitive (RFC 9110 11.1), then one or more spaces.
fn bearer_one(value: &[u8]) -> Bearer<'_> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at(value.len().min(6));
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Bearer::OtherScheme;
    }
    match rest.first() {
        None => return Bearer::Malformed,
        Some(b' ' | b'\t') => {}
        // "Bearerx ...": a different scheme name.
        Some(_) => return Bearer::OtherScheme,
    }
    let token = rest.trim_ascii_start();
    if token.is_empty() {
        return Bearer::Malformed;
    }
    // Not scanned here for inner whitespace ("Bearer a b"): such a token cannot decode
    // and is rejected as malformed by `verify`, and can never be in the cache, so the
    // cache hit path does not pay a byte-by-byte pass over every token.
    Bearer::Token(token)
}

/// A verified token: its identity, and the last second it may be served from cache.
pub(crate) struct Verified {
    pub identity: Identity,
    pub valid_through: u64,
}

/// A rejected token, and whether the verdict may be remembered. Only verdicts that
/// cost a signature check are worth remembering, and only those that time cannot
/// change into a success ("not yet valid" can).
#[derive(Debug)]
pub(crate) struct Rejected {
    pub failure: AuthFailure,
    pub cacheable: bool,
}

fn cheap(failure: AuthFailure) -> Rejected {
    Rejected {
        failure,
        cacheable: false,
    }
}

fn checked(failure: AuthFailure) -> Rejected {
    let cacheable = !matches!(
        failure,
        AuthFailure::NotYetValid | AuthFailure::IssuedInFuture
    );
    Rejected { failure, cacheable }
}

/// The JOSE header fields that choose the key. Unknown fields are allowed (`typ`,
/// `cty`, ...); a duplicated field is an error (serde's derive rejects it).
#[derive(serde::Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Extensions the recipient must understand (RFC 7515 4.1.11): ringgate knows none.
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

impl JwtSettings {
    /// Verify `token` (at most [`MAX_TOKEN_BYTES`]) at `now`, counting each signature
    /// check in `checks`.
    pub(crate) fn verify(
        &self,
        token: &[u8],
        now: u64,
        checks: &Cell<u64>,
    ) -> Result<Verified, Rejected> {
        let mut parts = token.split(|&b| b == b'.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(cheap(AuthFailure::Malformed));
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(cheap(AuthFailure::Malformed));
        }
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|json| serde_json::from_slice::<JoseHeader>(&json).ok())
            .ok_or(cheap(AuthFailure::Malformed))?;
        if header.crit.is_some() {
            return Err(cheap(AuthFailure::Malformed));
        }
        let alg = header.alg.as_str();
        let fits = |k: &&JwtKey| crypto::name(k.alg) == alg;
        let candidates: Vec<&JwtKey> = match &header.kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .ok_or(cheap(AuthFailure::UnknownKid))?;
                Some(key).filter(fits).into_iter().collect()
            }
            None => self.keys.iter().filter(fits).collect(),
        };
        if candidates.is_empty() {
            return Err(cheap(AuthFailure::AlgorithmNotAllowed));
        }
        for key in candidates {
            checks.set(checks.get() + 1);
            let kind = match jsonwebtoken::decode::<IgnoredAny>(token, &key.key, &key.validation) {
                Ok(_) => return self.identity(payload, now).map_err(checked),
                Err(e) => e.into_kind(),
            };
            let failure = map_error(&kind);
            if failure == AuthFailure::BadSignature {
                continue; // the next key of this algorithm may have signed it
            }
            if is_claims_error(&kind) {
                // The signature held. Our own reading names the fault more precisely
                // ("exp" of the wrong type rather than "missing").
                return Err(checked(
                    self.identity(payload, now).err().unwrap_or(failure),
                ));
            }
            return Err(checked(failure));
        }
        Err(checked(AuthFailure::BadSignature))
    }

    /// The identity in a verified token's payload, every claim checked at `now`.
    fn identity(&self, payload: &[u8], now: u64) -> Result<Verified, AuthFailure> {
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthFailure::Malformed)?;
        let c = &self.claims;
        let names = [
            "exp",
            "nbf",
            "iat",
            "iss",
            "aud",
            c.user.as_str(),
            c.tenant.as_str(),
            c.plan.as_str(),
            c.scope.as_str(),
        ];
        let mut de = serde_json::Deserializer::from_slice(&json);
        let [exp, nbf, iat, iss, aud, user, tenant, plan, scope] = ClaimsSeed(&names)
            .deserialize(&mut de)
            .and_then(|slots| de.end().map(|()| slots))
            .map_err(|_| AuthFailure::Malformed)?;

        let leeway = self.leeway;
        let exp = exp.ok_or(AuthFailure::MissingClaim("exp"))?;
        let exp = numeric_date(&exp, false).ok_or(AuthFailure::InvalidClaim("exp"))?;
        if now > exp.saturating_add(leeway) {
            return Err(AuthFailure::Expired);
        }
        if let Some(nbf) = nbf {
            let nbf = numeric_date(&nbf, true).ok_or(AuthFailure::InvalidClaim("nbf"))?;
            if nbf > now.saturating_add(leeway) {
                return Err(AuthFailure::NotYetValid);
            }
        }
        if let Some(iat) = iat {
            let iat = numeric_date(&iat, true).ok_or(AuthFailure::InvalidClaim("iat"))?;
            if iat > now.saturating_add(leeway) {
                return Err(AuthFailure::IssuedInFuture);
            }
        }
        if let Some(issuer) = &self.issuer {
            match iss.ok_or(AuthFailure::MissingClaim("iss"))? {
                Value::String(s) if s == *issuer => {}
                Value::String(_) => return Err(AuthFailure::WrongIssuer),
                _ => return Err(AuthFailure::InvalidClaim("iss")),
            }
        }
        if !self.audience.is_empty() {
            self.check_audience(aud.ok_or(AuthFailure::MissingClaim("aud"))?)?;
        }
        let user = identity_string(user, "user")?.ok_or(AuthFailure::MissingClaim("user"))?;
        let tenant = identity_string(tenant, "tenant")?.unwrap_or_else(|| user.clone());
        let plan = match plan {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if is_identity_value(&s) => Some(s),
            Some(_) => return Err(AuthFailure::InvalidClaim("plan")),
        };
        let scopes = scopes(scope)?;
        Ok(Verified {
            identity: Identity {
                user,
                tenant,
                plan,
                scopes,
                api_key_id: None,
                expires_at: Some(exp),
                via: Via::Jwt,
            },
            valid_through: exp.saturating_add(leeway),
        })
    }

    /// `aud` is one string or an array of strings (RFC 7519 4.1.3); one must be ours.
    fn check_audience(&self, aud: Value) -> Result<(), AuthFailure> {
        let ours = |s: &str| self.audience.iter().any(|a| a == s);
        let found = match aud {
            Value::String(s) => ours(&s),
            Value::Array(items) => {
                let mut found = false;
                for item in &items {
                    let Value::String(s) = item else {
                        return Err(AuthFailure::InvalidClaim("aud"));
                    };
                    found |= ours(s);
                }
                found
            }
            _ => return Err(AuthFailure::InvalidClaim("aud")),
        };
        if found {
            Ok(())
        } else {
            Err(AuthFailure::WrongAudience)
        }
    }
}

/// A NumericDate (RFC 7519 2): seconds, possibly fractional. Anything else (a string,
/// a negative or non-finite number) is `None`. Fractions round toward the stricter
/// side: down for `exp`, up for `nbf` and `iat`.
fn numeric_date(v: &Value, round_up: bool) -> Option<u64> {
    let Value::Number(n) = v else {
        return None;
    };
    if let Some(secs) = n.as_u64() {
        return Some(secs);
    }
    let f = n.as_f64()?;
    if !f.is_finite() || f < 0.0 || f >= u64::MAX as f64 {
        return None;
    }
    Some(if round_up { f.ceil() } else { f.floor() } as u64)
}

/// The user or tenant: a string, or an integer taken as its decimal form (some issuers
/// use numeric user ids). Either way it must be fit for a header value.
fn identity_string(v: Option<Value>, role: &'static str) -> Result<Option<String>, AuthFailure> {
    let s = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(AuthFailure::InvalidClaim(role)),
    };
    if is_identity_value(&s) {
        Ok(Some(s))
    } else {
        Err(AuthFailure::InvalidClaim(role))
    }
}

/// A space-separated string (OAuth's `scope`, RFC 8693 4.2) or an array of strings
/// (`scp` as some issuers send it).
fn scopes(v: Option<Value>) -> Result<Vec<String>, AuthFailure> {
    let bad = AuthFailure::InvalidClaim("scope");
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => s
            .split_ascii_whitespace()
            .map(|t| is_scope_token(t).then(|| t.to_owned()).ok_or(bad))
            .collect(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) if is_scope_token(&s) => Ok(s),
                _ => Err(bad),
            })
            .collect(),
        Some(_) => Err(bad),
    }
}

fn is_claims_error(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::ExpiredSignature
            | ErrorKind::ImmatureSignature
            | ErrorKind::InvalidIssuer
            | ErrorKind::InvalidAudience
    )
}

fn map_error(kind: &ErrorKind) -> AuthFailure {
    match kind {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthFailure::Malformed,
        ErrorKind::MissingRequiredClaim(c) => AuthFailure::MissingClaim(registered(c)),
        ErrorKind::InvalidClaimFormat(c) => AuthFailure::InvalidClaim(registered(c)),
        ErrorKind::ExpiredSignature => AuthFailure::Expired,
        ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
        ErrorKind::InvalidIssuer => AuthFailure::WrongIssuer,
        ErrorKind::InvalidAudience => AuthFailure::WrongAudience,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => AuthFailure::AlgorithmNotAllowed,
        // A signature that does not verify, or a key that cannot verify this token:
        // either way the token is not proven, and the next key may still prove it.
        _ => AuthFailure::BadSignature,
    }
}

/// The `'static` name of a registered claim that jsonwebtoken reported.
fn registered(claim: &str) -> &'static str {
    match claim {
        "iss" => "iss",
        "aud" => "aud",
        "nbf" => "nbf",
        "sub" => "sub",
        _ => "exp",
    }
}

/// Reads a claims object, keeping the values of the nine claims of interest (named in
/// the array) and skipping every other value unparsed. A claim of interest given twice
/// is an error: two readers of the token must never see different values.
struct ClaimsSeed<'a>(&'a [&'a str; 9]);

type Slots = [Option<Value>; 9];

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Slots;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Slots, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Slots;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Slots, M::Error> {
        let mut slots: Slots = Default::default();
        while let Some(roles) = map.next_key_seed(KeyRoles(self.0))? {
            if roles == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: Value = map.next_value()?;
            for (i, slot) in slots.iter_mut().enumerate() {
                if roles & (1 << i) != 0 {
                    if slot.is_some() {
                        return Err(de::Error::custom("duplicate claim"));
                    }
                    *slot = Some(value.clone());
                }
            }
        }
        Ok(slots)
    }
}

/// A claim name, read without allocating, as the set of roles it fills (a bit each).
struct KeyRoles<'a>(&'a [&'a str; 9]);

impl<'de> DeserializeSeed<'de> for KeyRoles<'_> {
    type Value = u16;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<u16, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyRoles<'_> {
    type Value = u16;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a claim name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<u16, E> {
        Ok(self
            .0
            .iter()
            .enumerate()
            .filter(|(_, name)| **name == key)
            .fold(0, |roles, (i, _)| roles | (1 << i)))
    }
}
