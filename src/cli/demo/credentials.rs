//! The demo's credentials: a signing secret made up for each run and handed to the
//! gateway through the environment variable `config/demo.toml` names
//! ([`SECRET_ENV`]), two tokens signed with it ([`Credentials::mint`]: a free-plan and
//! a pro-plan user), and the demo's published API key, of which demo.toml holds only
//! the SHA-256. All three are printed as `export` lines for the curl lines that follow.

/// The demo's published API key (config/demo.toml holds only its SHA-256). It is not a
/// secret: anyone who reads the README has it.
pub const API_KEY: &str = "rg_demo_key_7f3c9a2e4b1d4e8f";
/// Where `ringgate demo` puts the secret it signs its tokens with; config/demo.toml's
/// `[[auth.jwt.keys]] secret_env`.
pub const SECRET_ENV: &str = "RINGGATE_DEMO_JWT_SECRET";

/// Credentials made up for this run, printed for the curl lines.
pub struct Credentials {
    /// Free plan, scope users:read.
    pub free_token: String,
    /// Pro plan, scopes users:read and orders:read.
    pub pro_token: String,
    pub api_key: String,
    /// The admin API's token for this run (what `[admin] token_env` names).
    pub admin_token: String,
}

impl Credentials {
    /// The demo's two users' tokens, signed with `secret`, and the API key.
    pub fn mint(secret: &str) -> Credentials {
        Credentials {
            free_token: mint_token(secret, "alice", "acme", "free", "users:read"),
            pro_token: mint_token(secret, "bob", "globex", "pro", "users:read orders:read"),
            api_key: API_KEY.to_string(),
            admin_token: fresh_secret(),
        }
    }
}

/// A signing secret for one run: 48 random alphanumerics (about 285 bits).
pub fn fresh_secret() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(48)
        .collect()
}

/// Signs a demo token (HS256, kid demo-hs256, valid 24 h) the way config/demo.toml
/// expects it.
fn mint_token(secret: &str, user: &str, tenant: &str, plan: &str, scope: &str) -> String {
    // Fails only when another provider is installed already, which signs as well.
    let _ = ringgate::auth::crypto::install();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "iss": "ringgate-demo",
        "aud": "ringgate-demo",
        "sub": user,
        "tenant": tenant,
        "plan": plan,
        "scope": scope,
        "iat": now,
        "exp": now + 24 * 3600,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("demo-hs256".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_matches_the_digest_in_demo_toml() {
        let digest = ring::digest::digest(&ring::digest::SHA256, API_KEY.as_bytes());
        assert!(super::super::DEMO_TOML.contains(&hex::encode(digest.as_ref())));
    }

    #[test]
    fn demo_toml_reads_the_secret_from_secret_env() {
        let line = format!("secret_env = \"{SECRET_ENV}\"");
        assert!(super::super::DEMO_TOML.contains(&line));
    }

    #[test]
    fn tokens_are_signed_with_the_secret_and_carry_the_plan() {
        let secret = fresh_secret();
        assert_eq!(secret.len(), 48);
        let creds = Credentials::mint(&secret);
        let mut check = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        check.set_issuer(&["ringgate-demo"]);
        check.set_audience(&["ringgate-demo"]);
        let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
        for (token, plan) in [(&creds.free_token, "free"), (&creds.pro_token, "pro")] {
            let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &check)
                .unwrap_or_else(|e| panic!("{e}"))
                .claims;
            assert_eq!(claims["plan"], plan);
        }
    }
}
