//! `ringgate token`: mint a test token that the running configuration accepts, so a
//! user can try an authenticated route without a script of their own.
//!
//! The claims are named as `[auth.jwt]` names them (`user_claim`, `tenant_claim`,
//! `plan_claim`, `scope_claim`), with its `issuer` and first `audience` when set, and
//! `iat`/`exp`. The key is one of `[[auth.jwt.keys]]`: `--kid` chooses it, else the
//! first. An HMAC key signs with the secret its `secret_env` names (read from the
//! environment, never printed); an asymmetric key's configuration holds only the
//! public half, so `--key` gives the private one (PEM PKCS#8, or PKCS#1 for RSA).
//! The token goes to stdout alone, so `export TOKEN=$(ringgate token --sub alice)`
//! works.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ringgate::config::file::{FileConfig, FileJwtKey};

/// The flags of `ringgate token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Configuration file whose [auth.jwt] the token is for [default: config/gateway.toml].
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The caller (the `user_claim`, `sub` by default).
    #[arg(long)]
    pub sub: String,
    /// The tenant claim [default: none: the tenant is the user].
    #[arg(long)]
    pub tenant: Option<String>,
    /// The plan claim (a `[plans.*]` name) [default: none: `default_plan`].
    #[arg(long)]
    pub plan: Option<String>,
    /// A scope; repeat for more (sent space-separated in the scope claim).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Lifetime: seconds, or a number with s, m, h or d [default: 1h].
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: u64,
    /// Which [[auth.jwt.keys]] signs, by its kid [default: the first key].
    #[arg(long)]
    pub kid: Option<String>,
    /// The private key (PEM) for an RS*/PS*/ES*/EdDSA key, whose configuration holds
    /// only the public half.
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
}

/// `90`, `90s`, `15m`, `2h`, `7d` -> seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of seconds, or like 15m, 2h, 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d")),
    };
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("{s:?}: give a lifetime above zero")),
        Some(t) => Ok(t),
    }
}

/// Mint the token.
pub fn mint(args: &TokenArgs, default_config: &Path) -> anyhow::Result<String> {
    let path = args.config.as_deref().unwrap_or(default_config);
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // The whole file is validated first: a token for a configuration that would not
    // start is no use.
    ringgate::config::Config::load(path)?;
    let file: FileConfig = toml::from_str(&text)?;
    let jwt = &file.auth.jwt;
    let key = match &args.kid {
        Some(kid) => jwt
            .keys
            .iter()
            .find(|k| k.kid.as_ref().is_some_and(|x| x.get_ref() == kid))
            .with_context(|| format!("no [[auth.jwt.keys]] has kid = {kid:?}"))?,
        None => jwt
            .keys
            .first()
            .context("the configuration has no [[auth.jwt.keys]]: it accepts no tokens")?,
    };
    let (alg, encoding) = signing_key(key, args.key.as_deref())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = serde_json::Map::new();
    let mut set = |name: &str, v: serde_json::Value| {
        claims.insert(name.to_owned(), v);
    };
    set(&jwt.user_claim, args.sub.clone().into());
    if let Some(t) = &args.tenant {
        set(&jwt.tenant_claim, t.clone().into());
    }
    if let Some(p) = &args.plan {
        set(&jwt.plan_claim, p.clone().into());
    }
    if !args.scopes.is_empty() {
        set(&jwt.scope_claim, args.scopes.join(" ").into());
    }
    if !jwt.issuer.is_empty() {
        set("iss", jwt.issuer.clone().into());
    }
    if let Some(aud) = jwt.audience.first() {
        set("aud", aud.clone().into());
    }
    set("iat", now.into());
    set("exp", (now + args.ttl).into());
    let mut header = Header::new(alg);
    header.kid = key.kid.as_ref().map(|k| k.get_ref().clone());
    // Fails only when a provider is installed already, which signs as well.
    let _ = ringgate::auth::crypto::install();
    Ok(jsonwebtoken::encode(&header, &claims, &encoding)?)
}

/// The algorithm and signing key of a configured key.
fn signing_key(
    key: &FileJwtKey,
    private: Option<&Path>,
) -> anyhow::Result<(Algorithm, EncodingKey)> {
    let alg_name = key
        .algorithm
        .as_ref()
        .map(|a| a.get_ref().as_str())
        .unwrap_or("");
    let alg: Algorithm = alg_name
        .parse()
        .map_err(|_| anyhow::anyhow!("the key's algorithm {alg_name:?} cannot sign here; give --kid of a key with an algorithm"))?;
    if let Some(env) = &key.secret_env {
        let secret = std::env::var_os(env.get_ref()).with_context(|| {
            format!(
                "the key signs with the secret in ${}, which is not set",
                env.get_ref()
            )
        })?;
        return Ok((alg, EncodingKey::from_secret(secret.as_encoded_bytes())));
    }
    let Some(private) = private else {
        bail!(
            "this key's configuration holds only its public half ({alg_name}); give the private key with --key PRIVATE.pem"
        );
    };
    let pem = std::fs::read_to_string(private)
        .with_context(|| format!("cannot read {}", private.display()))?;
    let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: not a PEM key ({e})", private.display()))?;
    let encoding = match (alg, label) {
        (Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512, _)
        | (Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512, _) => {
            EncodingKey::from_rsa_der(&der)
        }
        (Algorithm::ES256 | Algorithm::ES384, "PRIVATE KEY") => EncodingKey::from_ec_der(&der),
        (Algorithm::EdDSA, "PRIVATE KEY") => EncodingKey::from_ed_der(&der),
        (_, label) => bail!(
            "{}: a {label:?} PEM block does not sign {alg_name}; give a PKCS#8 (PRIVATE KEY) key",
            private.display()
        ),
    };
    Ok((alg, encoding))
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("2h"), Ok(7200));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
