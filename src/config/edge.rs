//! Typed `cors` and `compress` route settings (validated in `validate/edge.rs`; used
//! by `crate::pipeline::cors` and `crate::pipeline::compress`). Everything a request
//! needs is precomputed here: the header values are written as they are.

/// A route's CORS policy (Fetch standard, "CORS protocol").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCors {
    pub origins: CorsOrigins,
    /// Upper-case method names a preflight may ask for.
    pub methods: Vec<String>,
    /// `Access-Control-Allow-Methods` as sent: `methods` joined.
    pub allow_methods: String,
    /// Lower-case field names a preflight may ask for.
    pub headers: Vec<String>,
    /// `"*"` was listed: any requested field is allowed (and echoed).
    pub any_header: bool,
    /// `Access-Control-Expose-Headers` as sent (empty: none).
    pub expose: String,
    /// `Access-Control-Max-Age` in seconds.
    pub max_age_s: Option<u64>,
    pub credentials: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `"*"`: any origin.
    Any,
    /// Serialized origins, lower-case (`https://app.example.com`, `http://h:8080`).
    List(Vec<String>),
}

/// A content coding the gateway can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    /// The token of `Content-Encoding` / `Accept-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    pub fn from_token(t: &str) -> Option<Coding> {
        match t {
            "br" => Some(Coding::Br),
            "zstd" => Some(Coding::Zstd),
            "gzip" => Some(Coding::Gzip),
            _ => None,
        }
    }
}

/// A route's compression policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCompress {
    /// Lower-case media types, `type/subtype` or `type/*`.
    pub types: Vec<String>,
    pub min_bytes: u64,
    /// The server's preference, best first (breaks ties between equal q-values).
    pub algorithms: Vec<Coding>,
}
