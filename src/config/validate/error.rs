//! [`ConfigError`]: every way a configuration can be wrong, and [`Site`]: where. Each
//! message reads `file:line:column: key = value: what is wrong`, followed by the line of
//! the file; a value that was not in the file (a default) says "(default)" instead.

use std::fmt;

/// Where a mistake is: file, line, column, the key path and the value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub origin: String,
    /// 1-based; `None` when the value is a default (not written in the file).
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: usize,
    /// Key path such as `routes."users".upstream`; empty when unknown.
    pub key: String,
    /// The value as TOML-ish text (`"abc"`, `12`); empty when not relevant.
    pub value: String,
    /// The text of the offending line, shown under the message.
    pub source_line: String,
}

impl Site {
    /// Second line of a message: the offending line of the file, if there is one.
    fn excerpt(&self) -> String {
        match self.line {
            Some(line) => format!("\n  line {line} | {}", self.source_line.trim_end()),
            None => String::new(),
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}:{}", self.origin, line, self.column)?,
            None => write!(f, "{}", self.origin)?,
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
            if !self.value.is_empty() {
                write!(f, " = {}", self.value)?;
                if self.line.is_none() {
                    f.write_str(" (default)")?;
                }
            }
        }
        Ok(())
    }
}

/// Every way a configuration can be wrong. Each message names the key, the value and
/// the line (`file:line:column:` first, then the line of the file itself). The
/// [`Site`] is boxed to keep `Result<_, ConfigError>` small.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The I/O error is the `source`: printed once, by whoever prints the chain.
    #[error("{path}: cannot read the configuration")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// TOML syntax, unknown key, wrong type or missing key (reported by serde).
    #[error("{site}: {message}{}", .site.excerpt())]
    Parse { site: Box<Site>, message: String },
    #[error("{site}: not an ip:port socket address (e.g. \"0.0.0.0:8080\", \"[::]:8080\"){}", .site.excerpt())]
    BadSocketAddr { site: Box<Site> },
    #[error("{site}: no listener: give at least one address in server.listen or server.tls.listen{}", .site.excerpt())]
    NoListener { site: Box<Site> },
    #[error("{site}: same address as {other}; every listener needs its own, and the admin API is never served on a public one{}", .site.excerpt())]
    ListenerClash { site: Box<Site>, other: String },
    #[error("{site}: not a CIDR (\"10.0.0.0/8\") or IP address: {reason}{}", .site.excerpt())]
    BadCidr { site: Box<Site>, reason: String },
    #[error("{site}: expected one of auto, io_uring, epoll{}", .site.excerpt())]
    BadIoDriver { site: Box<Site> },
    #[error("{site}: must be greater than 0{}", .site.excerpt())]
    NotPositive { site: Box<Site> },
    #[error("{site}: must be at most {max}{}", .site.excerpt())]
    TooLarge { site: Box<Site>, max: String },
    #[error("{site}: must be at least {min}{}", .site.excerpt())]
    TooSmall { site: Box<Site>, min: String },
    #[error("{site}: expected one of error, warn, info, debug{}", .site.excerpt())]
    BadLogLevel { site: Box<Site> },
    #[error("{site}: expected stdout, off or a file path{}", .site.excerpt())]
    BadAccessLog { site: Box<Site> },
    #[error("{site}: must not be empty{}", .site.excerpt())]
    EmptyName { site: Box<Site> },
    #[error("{site}: upstream name already used at line {first_line}{}", .site.excerpt())]
    DuplicateUpstream { site: Box<Site>, first_line: usize },
    #[error("{site}: route id already used at line {first_line}{}", .site.excerpt())]
    DuplicateRoute { site: Box<Site>, first_line: usize },
    #[error("{site}: no upstream has this name (upstreams: {known}){}", .site.excerpt())]
    UnknownUpstream { site: Box<Site>, known: String },
    #[error("{site}: a route has one of `upstream`, `split`, `respond`, `compose`, `fanout`; not both of these{}", .site.excerpt())]
    TargetConflict { site: Box<Site> },
    #[error("{site}: the route has neither `upstream` nor `split` (nor `respond`, `compose`, `fanout`){}", .site.excerpt())]
    NoTarget { site: Box<Site> },
    #[error("{site}: a split needs at least one {{ upstream, weight }} entry{}", .site.excerpt())]
    EmptySplit { site: Box<Site> },
    #[error("{site}: a weight must be at least 1{}", .site.excerpt())]
    ZeroWeight { site: Box<Site> },
    #[error("{site}: a route has one of `path_prefix`, `path_exact`, `path_template`; not both of these{}", .site.excerpt())]
    PathConflict { site: Box<Site> },
    #[error("{site}: the route has neither `path_prefix` nor `path_exact` nor `path_template` (\"/\" matches everything){}", .site.excerpt())]
    NoPath { site: Box<Site> },
    #[error("{site}: {reason}{}", .site.excerpt())]
    BadPath {
        site: Box<Site>,
        reason: &'static str,
    },
    #[error("{site}: must be a whole-segment prefix of the route's path {path:?}{}", .site.excerpt())]
    BadStripPrefix { site: Box<Site>, path: String },
    #[error("{site}: not an HTTP method (an upper-case token such as GET or POST){}", .site.excerpt())]
    BadMethod { site: Box<Site> },
    #[error("{site}: an empty list matches no request; remove the key to allow any method{}", .site.excerpt())]
    NoMethods { site: Box<Site> },
    #[error("{site}: expected one of required, optional, none, mtls{}", .site.excerpt())]
    BadAuthMode { site: Box<Site> },
    #[error("{site}: expected round_robin, least_request, random_two or hash:<Header-Name>{}", .site.excerpt())]
    BadBalance { site: Box<Site> },
    #[error("{site}: an upstream needs at least one server{}", .site.excerpt())]
    NoServers { site: Box<Site> },
    #[error("{site}: {reason}{}", .site.excerpt())]
    BadServer { site: Box<Site>, reason: String },
    #[error("{site}: does not resolve: {reason}{}", .site.excerpt())]
    Unresolvable { site: Box<Site>, reason: String },
    #[error("{site}: expected one of user, tenant, api_key, ip, header:<Name>{}", .site.excerpt())]
    BadRateLimitKey { site: Box<Site> },
    #[error("{site}: no [plans.NAME] table has this name (plans: {known}){}", .site.excerpt())]
    UnknownPlan { site: Box<Site>, known: String },
    #[error("{site}: a plan name is a token (letters, digits, - _ .){}", .site.excerpt())]
    BadPlanName { site: Box<Site> },
    #[error("{site}: larger than cache.max_bytes = {max_bytes}{}", .site.excerpt())]
    CacheObjectTooLarge { site: Box<Site>, max_bytes: u64 },
    #[error("{site}: {reason}{}", .site.excerpt())]
    BadHost {
        site: Box<Site>,
        reason: &'static str,
    },
    #[error("{site}: not a header name (a token: letters, digits, ! # $ % & ' * + - . ^ _ ` | ~){}", .site.excerpt())]
    BadHeaderName { site: Box<Site> },
    #[error("{site}: a header value may not hold control characters (CR, LF, NUL ...){}", .site.excerpt())]
    BadHeaderValue { site: Box<Site> },
    #[error("{site}: expected one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 ES256 ES384 EdDSA{}", .site.excerpt())]
    BadJwtAlgorithm { site: Box<Site> },
    #[error("{site}: {reason}{}", .site.excerpt())]
    BadJwtKeySource {
        site: Box<Site>,
        reason: &'static str,
    },
    #[error("{site}: kid already used at line {first_line}{}", .site.excerpt())]
    DuplicateJwtKid { site: Box<Site>, first_line: usize },
    #[error("{site}: expected 64 hex digits (the SHA-256 of the key, never the key){}", .site.excerpt())]
    BadSha256 { site: Box<Site> },
    #[error("{site}: already used by the API key at line {first_line}{}", .site.excerpt())]
    DuplicateApiKey { site: Box<Site>, first_line: usize },
    #[error("{site}: TLS needs at least one [[server.tls.certificates]]{}", .site.excerpt())]
    NoTlsCertificates { site: Box<Site> },
    #[error("{site}: [server.tls] needs at least one address to listen on (remove [server.tls] to serve plain HTTP only){}", .site.excerpt())]
    NoTlsListener { site: Box<Site> },
    #[error("{site}: {reason}{}", .site.excerpt())]
    BadAlpn {
        site: Box<Site>,
        reason: &'static str,
    },
    #[error("{site}: expected \"1.2\" or \"1.3\"{}", .site.excerpt())]
    BadTlsVersion { site: Box<Site> },
    #[error("{site}: expected one of none, optional, required{}", .site.excerpt())]
    BadClientAuth { site: Box<Site> },
    #[error("{site}: client certificates need client_ca_file, the PEM CAs they must chain to{}", .site.excerpt())]
    NoClientCa { site: Box<Site> },
    #[error("{site}: client_auth = \"none\" asks for no client certificate: set client_auth to \"optional\" or \"required\", or remove client_ca_file{}", .site.excerpt())]
    ClientCaUnused { site: Box<Site> },
    /// A certificate, key or CA file that cannot be read.
    #[error("{site}: {reason}{}", .site.excerpt())]
    TlsFileUnreadable { site: Box<Site>, reason: String },
    /// Read, but not a usable PEM certificate chain, key or CA bundle.
    #[error("{site}: {reason}{}", .site.excerpt())]
    TlsFileContents { site: Box<Site>, reason: String },
    /// `key_file` holds another key than the one `cert_file` certifies.
    #[error("{site}: {reason}{}", .site.excerpt())]
    TlsKeyMismatch { site: Box<Site>, reason: String },
    #[error("{site}: this certificate names no DNS name and server_names is empty, so no client could ever get it (only the first certificate is the default): give server_names{}", .site.excerpt())]
    TlsCertNeverChosen { site: Box<Site> },
    #[error("{site}: a client certificate needs both cert_file and key_file ({missing} is missing){}", .site.excerpt())]
    TlsKeyPairIncomplete {
        site: Box<Site>,
        missing: &'static str,
    },
    #[error("{site}: not usable as a TLS server name (SNI and the name verified): expected a DNS name or an IP address{}", .site.excerpt())]
    BadTlsServerName { site: Box<Site> },
    #[error("{site}: [upstreams.tls] is set but no server of this upstream is https:// (write servers as \"https://host:port\"){}", .site.excerpt())]
    UpstreamTlsUnused { site: Box<Site> },
    #[error("{site}: {reason}{}", .site.excerpt())]
    NoSystemRoots { site: Box<Site>, reason: String },
    /// A key of `[auth]` that cannot be loaded: a missing or short secret, an
    /// unreadable or unfit key file.
    #[error("{site}: {reason}{}", .site.excerpt())]
    AuthKey {
        site: Box<Site>,
        reason: String,
        /// The variable, when its secret is too short for its algorithm (the file is
        /// right; the environment it was checked in is not: see `ringgate check`).
        weak_secret_env: Option<String>,
    },
    #[error("{site}: {reason}{}", .site.excerpt())]
    RateLimit { site: Box<Site>, reason: String },
    #[error("{site}: cannot write the access log there: {reason}{}", .site.excerpt())]
    AccessLogPath { site: Box<Site>, reason: String },
    /// `json_match`, `validate` or `json_body` of a route.
    #[error("{site}: {reason}{}", .site.excerpt())]
    BadBody { site: Box<Site>, reason: String },
    /// A template value (`${...}`) that does not parse, names an unset `${env:...}`
    /// or a `${path:...}` the route's path_template lacks. The reason names the
    /// variable, never an `${env:...}` value.
    #[error("{site}: {reason}{}", .site.excerpt())]
    BadTemplate { site: Box<Site>, reason: String },
    /// `rewrite`: a pattern that does not compile, a replacement naming no group.
    #[error("{site}: {reason}{}", .site.excerpt())]
    BadRewrite { site: Box<Site>, reason: String },
    /// `content_type`, `path_template` or `respond`: a value of the wrong shape; an
    /// upstream's `request_headers` naming a field the gateway writes itself.
    #[error("{site}: {reason}{}", .site.excerpt())]
    BadRouteValue { site: Box<Site>, reason: String },
    /// A route's `cors` or `compress` table (`validate/edge.rs`).
    #[error("{site}: {reason}{}", .site.excerpt())]
    EdgePolicy { site: Box<Site>, reason: String },
    /// A route's `compose` parts (`validate/compose.rs`).
    #[error("{site}: {reason}{}", .site.excerpt())]
    BadCompose { site: Box<Site>, reason: String },
}

impl ConfigError {
    /// Where the mistake is; `None` only for [`ConfigError::Io`].
    pub fn site(&self) -> Option<&Site> {
        use ConfigError as E;
        match self {
            E::Io { .. } => None,
            E::Parse { site, .. }
            | E::BadSocketAddr { site }
            | E::NoListener { site }
            | E::ListenerClash { site, .. }
            | E::BadCidr { site, .. }
            | E::BadIoDriver { site }
            | E::NotPositive { site }
            | E::TooLarge { site, .. }
            | E::TooSmall { site, .. }
            | E::BadLogLevel { site }
            | E::BadAccessLog { site }
            | E::EmptyName { site }
            | E::DuplicateUpstream { site, .. }
            | E::DuplicateRoute { site, .. }
            | E::UnknownUpstream { site, .. }
            | E::TargetConflict { site }
            | E::NoTarget { site }
            | E::EmptySplit { site }
            | E::ZeroWeight { site }
            | E::PathConflict { site }
            | E::NoPath { site }
            | E::BadPath { site, .. }
            | E::BadStripPrefix { site, .. }
            | E::BadMethod { site }
            | E::NoMethods { site }
            | E::BadAuthMode { site }
            | E::BadBalance { site }
            | E::NoServers { site }
            | E::BadServer { site, .. }
            | E::Unresolvable { site, .. }
            | E::BadRateLimitKey { site }
            | E::UnknownPlan { site, .. }
            | E::BadPlanName { site }
            | E::CacheObjectTooLarge { site, .. }
            | E::BadHost { site, .. }
            | E::BadHeaderName { site }
            | E::BadHeaderValue { site }
            | E::BadJwtAlgorithm { site }
            | E::BadJwtKeySource { site, .. }
            | E::DuplicateJwtKid { site, .. }
            | E::BadSha256 { site }
            | E::DuplicateApiKey { site, .. }
            | E::NoTlsCertificates { site }
            | E::NoTlsListener { site }
            | E::BadAlpn { site, .. }
            | E::BadTlsVersion { site }
            | E::BadClientAuth { site }
            | E::NoClientCa { site }
            | E::ClientCaUnused { site }
            | E::TlsFileUnreadable { site, .. }
            | E::TlsFileContents { site, .. }
            | E::TlsKeyMismatch { site, .. }
            | E::TlsCertNeverChosen { site }
            | E::TlsKeyPairIncomplete { site, .. }
            | E::BadTlsServerName { site }
            | E::UpstreamTlsUnused { site }
            | E::NoSystemRoots { site, .. }
            | E::AuthKey { site, .. }
            | E::RateLimit { site, .. }
            | E::AccessLogPath { site, .. }
            | E::BadBody { site, .. }
            | E::BadTemplate { site, .. }
            | E::BadRewrite { site, .. }
            | E::BadRouteValue { site, .. } => Some(&**site),
            E::EdgePolicy { site, .. } => Some(&**site),
            E::BadCompose { site, .. } => Some(&**site),
        }
    }

    /// 1-based line of the mistake, when it is in the file.
    pub fn line(&self) -> Option<usize> {
        self.site().and_then(|s| s.line)
    }
}
