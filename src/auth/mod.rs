//! Authentication: who is calling. A request's `Authorization: Bearer <JWT>` or API-key
//! header becomes an [`Identity`] (user, tenant, plan, scopes), or a refusal with a
//! reason a client may read ([`AuthFailure`]). The pipeline's auth stage runs this
//! right after routing, before rate limiting (which keys on the identity), and turns
//! the [`AuthOutcome`] into a 401 or 403 with the [`challenge`] header of RFC 6750 3.
//!
//! - [`AuthSettings`] (`keys.rs`): `[auth]` with every key loaded, once, at start.
//! - [`Authenticator`]: one per worker, built from the settings, owned by the worker and
//!   used through `&self`. It holds the worker's identity cache in a `RefCell` and its
//!   counters in `Cell`s: no lock, no atomic on the request path (a cache miss reads
//!   jsonwebtoken's installed provider from a `OnceLock`: one uncontended load).
//! - `jwt.rs`: bearer parsing and token verification; [`crypto`]: the ring backend of
//!   jsonwebtoken; `cache.rs`: the bounded identity cache.
//!
//! ## Choices
//!
//! - **Crypto**: jsonwebtoken `~10.3` with its built-in backends off and ring installed
//!   as its provider ([`crypto`]): 10.3 is the first release that rejects an `exp` or
//!   `nbf` of the wrong JSON type (GHSA-h395-gr6q-cpjc, CVE-2026-25537; 9.x, the last
//!   ring-based line, is not fixed), and ring is already the TLS stack's crypto.
//!   10.4 and 11 need Rust 1.88. jsonwebtoken's own PEM loader (`use_pem`) is off too:
//!   it pulls `simple_asn1` and through it `time` >= 0.3.47, which needs Rust 1.88;
//!   public-key files are read with `pem-rfc7468` and `spki` instead, which also check
//!   the key's algorithm and curve OIDs rather than taking the first bit string.
//! - **Both credentials sent**: the bearer token alone decides; the API key is not
//!   looked at (a bad token is not rescued by a good key).
//! - **One credential, one value**: RFC 9110 allows a single `Authorization` value
//!   (and an API key is one value too). Two `Authorization` fields, two API-key fields,
//!   or either folded into a comma-separated list (what an intermediary makes of two
//!   fields) is an [`AuthOutcome::Ambiguous`] request, 400 `invalid_request` (RFC 6750
//!   3.1: "repeats the same parameter"): taking the first would let a filter in front
//!   that reads the last one disagree with us about who is calling. Duplicate fields
//!   are counted by the pipeline's auth stage; lists are found here.
//! - **Other `Authorization` schemes** (`Basic ...`) are no bearer credential, as in
//!   Envoy's jwt_authn: the request is anonymous unless it carries an API key.
//!   `Bearer` with no token, or two, is malformed. An empty API-key header is no key.
//! - **Numeric `sub`** (and tenant claim): accepted as its decimal string; any other
//!   non-string is rejected. Identity values with control characters are rejected
//!   (they become upstream header values).
//! - **Cache**: keyed by the token's bytes (full comparison on lookup), at most
//!   [`CacheLimits::entries`] entries and [`CacheLimits::bytes`] bytes per worker. An
//!   entry is served while `now <= exp + leeway_s`, exactly as long as verification
//!   would accept the token again. Rejections that cost a signature check are
//!   remembered in a separate, smaller cache for [`CacheLimits::negative_ttl_s`], so
//!   garbage can never push out good entries; "not yet valid" is never remembered.
//!   API keys are not cached: one SHA-256 and one map lookup is already the cost of a
//!   cache hit.

mod cache;
pub mod crypto;
mod jwt;
mod keys;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use hashbrown::HashMap;
use ring::digest;

use self::cache::GenCache;
use self::jwt::Bearer;
pub use self::jwt::MAX_TOKEN_BYTES;
use self::keys::JwtSettings;
pub use self::keys::{AuthConfigError, AuthEntry, AuthSettings, LocatedAuthError};

/// Longest API key looked at.
pub const MAX_API_KEY_BYTES: usize = 1024;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// The tenant claim or key setting; the user when there is none.
    pub tenant: String,
    /// From the token or key; `None`: the rate limiter's default plan.
    pub plan: Option<String>,
    pub scopes: Vec<String>,
    /// The `id` of the API key used, if one was.
    pub api_key_id: Option<String>,
    /// The token's `exp`, unix seconds; `None` for API keys.
    pub expires_at: Option<u64>,
    pub via: Via,
}

/// The kind of credential an [`Identity`] was proven with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Jwt,
    ApiKey,
}

/// What [`Authenticator::authenticate`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// No credential was sent.
    Anonymous,
    Authenticated(Rc<Identity>),
    /// A credential was sent and is not good.
    Invalid(AuthFailure),
    /// Not one credential but several where one value belongs: 400, never judged.
    Ambiguous(Ambiguity),
}

impl AuthOutcome {
    pub fn identity(&self) -> Option<&Rc<Identity>> {
        match self {
            AuthOutcome::Authenticated(id) => Some(id),
            _ => None,
        }
    }
}

/// Why a credential was refused. `Display` is the message for the client (the 401
/// body and `error_description`): it never contains the credential.
///
/// `MissingClaim` and `InvalidClaim` name registered claims as such (`"exp"`,
/// `"iss"`, `"aud"`, `"nbf"`, `"iat"`) and the configured ones by their role
/// (`"user"`, `"tenant"`, `"plan"`, `"scope"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("malformed token")]
    Malformed,
    #[error("invalid signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("wrong token issuer")]
    WrongIssuer,
    #[error("wrong token audience")]
    WrongAudience,
    #[error("unknown key id")]
    UnknownKid,
    #[error("signing algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("token is missing the {0} claim")]
    MissingClaim(&'static str),
    #[error("token claim {0} has the wrong type or value")]
    InvalidClaim(&'static str),
    #[error("unknown API key")]
    UnknownApiKey,
    #[error("credential too large")]
    TooLarge,
}

impl AuthFailure {
    /// A short fixed name for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthFailure::Malformed => "malformed",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::IssuedInFuture => "issued_in_future",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::UnknownKid => "unknown_kid",
            AuthFailure::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthFailure::MissingClaim(_) => "missing_claim",
            AuthFailure::InvalidClaim(_) => "invalid_claim",
            AuthFailure::UnknownApiKey => "unknown_api_key",
            AuthFailure::TooLarge => "too_large",
        }
    }
}

/// Why a request's credentials are not judged at all: more than one where RFC 9110
/// allows a single value (400, RFC 6750 3.1 `invalid_request`). `Display` is the message
/// for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ambiguity {
    #[error("more than one Authorization field: send one credential")]
    TwoAuthorizations,
    #[error("more than one API-key field: send one credential")]
    TwoApiKeys,
    #[error("the Authorization field holds a list: send one credential")]
    AuthorizationList,
    #[error("the API-key field holds a list: send one credential")]
    ApiKeyList,
}

impl Ambiguity {
    /// A short fixed name for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Ambiguity::TwoAuthorizations => "two_authorizations",
            Ambiguity::TwoApiKeys => "two_api_keys",
            Ambiguity::AuthorizationList => "authorization_list",
            Ambiguity::ApiKeyList => "api_key_list",
        }
    }
}

/// Bounds of a worker's identity cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Verified tokens kept; 0 turns the cache off.
    pub entries: usize,
    /// Bytes of verified tokens kept (tokens plus a fixed overhead each).
    pub bytes: usize,
    /// Rejected tokens kept; 0 turns the negative cache off.
    pub negative_entries: usize,
    pub negative_bytes: usize,
    /// How long a rejection is remembered.
    pub negative_ttl_s: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            entries: 10_000,
            bytes: 8 << 20,
            negative_entries: 1_024,
            negative_bytes: 1 << 20,
            negative_ttl_s: 30,
        }
    }
}

impl CacheLimits {
    /// No caching at all: every token is verified every time (benches, tests).
    pub fn disabled() -> Self {
        CacheLimits {
            entries: 0,
            negative_entries: 0,
            ..CacheLimits::default()
        }
    }
}

/// A worker's counters (never reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Signature checks run (one per key tried).
    pub signature_checks: u64,
    /// Tokens answered from the identity cache.
    pub cache_hits: u64,
    /// Tokens answered from the cache of rejections.
    pub negative_hits: u64,
}

struct Caches {
    verified: GenCache<Rc<Identity>>,
    rejected: GenCache<AuthFailure>,
}

/// A worker's authenticator: keys, API keys and identity cache. Not `Send`; each worker
/// builds its own from the shared [`AuthSettings`].
pub struct Authenticator {
    jwt: JwtSettings,
    /// SHA-256 of the key -> its identity.
    api_keys: HashMap<Box<[u8]>, Rc<Identity>>,
    api_key_header: String,
    limits: CacheLimits,
    cache: RefCell<Caches>,
    signature_checks: Cell<u64>,
    cache_hits: Cell<u64>,
    negative_hits: Cell<u64>,
}

impl Authenticator {
    /// Load `[auth]` and build an authenticator (reads the environment and key files:
    /// when there are several workers, prefer [`AuthSettings::load`] once and
    /// [`Authenticator::new`] per worker).
    pub fn from_config(
        auth: &crate::config::file::FileAuth,
    ) -> Result<Authenticator, AuthConfigError> {
        Ok(Authenticator::new(&AuthSettings::load(auth)?))
    }

    pub fn new(settings: &AuthSettings) -> Authenticator {
        Authenticator::with_limits(settings, CacheLimits::default())
    }

    pub fn with_limits(settings: &AuthSettings, limits: CacheLimits) -> Authenticator {
        let api_keys = settings
            .api_keys
            .iter()
            .map(|(digest, id)| (Box::from(&digest[..]), Rc::new(id.clone())))
            .collect();
        Authenticator {
            jwt: settings.jwt.clone(),
            api_keys,
            api_key_header: settings.api_key_header.clone(),
            limits,
            cache: RefCell::new(Caches {
                verified: GenCache::new(limits.entries, limits.bytes),
                rejected: GenCache::new(limits.negative_entries, limits.negative_bytes),
            }),
            signature_checks: Cell::new(0),
            cache_hits: Cell::new(0),
            negative_hits: Cell::new(0),
        }
    }

    /// Judge a request's credentials. `authorization`: the raw `Authorization` value;
    /// `api_key`: the raw value of the API-key header ([`Self::api_key_header`]);
    /// `now`: unix seconds. The caller has made sure each was sent at most once
    /// ([`Ambiguity::TwoAuthorizations`], [`Ambiguity::TwoApiKeys`]); a value that is a
    /// list is found here.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        api_key: Option<&[u8]>,
        now: u64,
    ) -> AuthOutcome {
        if let Some(value) = authorization {
            match jwt::bearer(value) {
                Bearer::Token(token) => return self.token(token, now),
                Bearer::Malformed => return AuthOutcome::Invalid(AuthFailure::Malformed),
                Bearer::List => return AuthOutcome::Ambiguous(Ambiguity::AuthorizationList),
                Bearer::OtherScheme => {}
            }
        }
        match api_key.map(<[u8]>::trim_ascii) {
            // An API key is opaque, but "k1, k2" is what folding two fields makes of it;
            // keys are therefore never issued with a comma (see the README).
            Some(key) if memchr::memchr(b',', key).is_some() => {
                AuthOutcome::Ambiguous(Ambiguity::ApiKeyList)
            }
            Some(key) if !key.is_empty() => self.api_key(key),
            _ => AuthOutcome::Anonymous,
        }
    }

    /// The API-key header's name, lower-cased.
    pub fn api_key_header(&self) -> &str {
        &self.api_key_header
    }

    pub fn stats(&self) -> AuthStats {
        AuthStats {
            signature_checks: self.signature_checks.get(),
            cache_hits: self.cache_hits.get(),
            negative_hits: self.negative_hits.get(),
        }
    }

    /// Verified tokens held in the cache now (expired ones included until found).
    pub fn cached_identities(&self) -> usize {
        self.cache.borrow().verified.len()
    }

    fn token(&self, token: &[u8], now: u64) -> AuthOutcome {
        if token.len() > MAX_TOKEN_BYTES {
            return AuthOutcome::Invalid(AuthFailure::TooLarge);
        }
        {
            let mut cache = self.cache.borrow_mut();
            if let Some(id) = cache.verified.get(token, now) {
                bump(&self.cache_hits);
                return AuthOutcome::Authenticated(id);
            }
            if let Some(failure) = cache.rejected.get(token, now) {
                bump(&self.negative_hits);
                return AuthOutcome::Invalid(failure);
            }
        }
        match self.jwt.verify(token, now, &self.signature_checks) {
            Ok(v) => {
                let id = Rc::new(v.identity);
                let mut cache = self.cache.borrow_mut();
                cache
                    .verified
                    .insert(token, Rc::clone(&id), v.valid_through);
                AuthOutcome::Authenticated(id)
            }
            Err(r) => {
                if r.cacheable {
                    let until = now.saturating_add(self.limits.negative_ttl_s);
                    self.cache
                        .borrow_mut()
                        .rejected
                        .insert(token, r.failure, until);
                }
                AuthOutcome::Invalid(r.failure)
            }
        }
    }

    fn api_key(&self, key: &[u8]) -> AuthOutcome {
        if key.len() > MAX_API_KEY_BYTES {
            return AuthOutcome::Invalid(AuthFailure::TooLarge);
        }
        // The lookup compares digests, not keys: timing can reveal at most how much of
        // a digest matched, which does not help anyone find a key that hashes to it.
        let digest = digest::digest(&digest::SHA256, key);
        match self.api_keys.get(digest.as_ref()) {
            Some(id) => AuthOutcome::Authenticated(Rc::clone(id)),
            None => AuthOutcome::Invalid(AuthFailure::UnknownApiKey),
        }
    }
}

fn bump(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

/// Every scope a route requires is among the caller's.
pub fn has_scopes(id: &Identity, required: &[String]) -> bool {
    required.iter().all(|r| id.scopes.iter().any(|s| s == r))
}

/// Which `WWW-Authenticate` challenge to send.
#[derive(Debug, Clone, Copy)]
pub enum Challenge<'a> {
    /// 401, no credential was sent: a bare `Bearer` (RFC 6750 3.1).
    NoCredential,
    /// 401, the credential was refused.
    InvalidToken(&'a AuthFailure),
    /// 403, the caller lacks a scope the route requires: the route's scopes.
    InsufficientScope(&'a [String]),
    /// 400, the request carries more than one credential.
    InvalidRequest(&'a Ambiguity),
}

/// The `WWW-Authenticate` value for a 401 or 403 (RFC 6750 3).
pub fn challenge(c: Challenge<'_>) -> String {
    match c {
        Challenge::NoCredential => "Bearer".to_owned(),
        Challenge::InvalidToken(failure) => format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            quoted(&failure.to_string())
        ),
        Challenge::InsufficientScope(scopes) => format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\"",
            quoted(&scopes.join(" "))
        ),
        Challenge::InvalidRequest(ambiguity) => format!(
            "Bearer error=\"invalid_request\", error_description=\"{}\"",
            quoted(&ambiguity.to_string())
        ),
    }
}

/// Content of an HTTP quoted-string: `"` and `\` escaped, control characters dropped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars().filter(|c| !c.is_control()) {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Fit to be a user, tenant or plan: it becomes an upstream header value.
fn is_identity_value(s: &str) -> bool {
    !s.is_empty() && !s.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// One scope: no whitespace, no control characters (RFC 6749 3.3 is stricter still).
fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && !s.bytes().any(|b| b <= 0x20 || b == 0x7f)
}
