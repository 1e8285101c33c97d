//! `ringgate token`: the token it prints is accepted by a gateway running the same
//! configuration, and carries the identity asked for (what the upstream receives).

mod common;

use std::process::Command;

use common::*;

const SECRET: &str = "token-e2e-secret-0123456789abcdef0123456789abcdef";

fn config(origin: &Origin) -> String {
    fill(
        "[auth.jwt]\nissuer = \"https://issuer.token.test\"\naudience = [\"gw\"]\n\
         [[auth.jwt.keys]]\nkid = \"hs\"\nalgorithm = \"HS256\"\nsecret_env = \"TOKEN_E2E_SECRET\"\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\
         [[routes]]\nid = \"me\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\n",
        &[("origin", origin.addr())],
    )
}

fn token(file: &std::path::Path, args: &[&str], secret: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringgate"));
    cmd.arg("token").arg("--config").arg(file).args(args);
    cmd.env_remove("TOKEN_E2E_SECRET");
    if let Some(s) = secret {
        cmd.env("TOKEN_E2E_SECRET", s);
    }
    cmd.output().unwrap()
}

both_drivers! {
    fn a_minted_token_is_accepted_and_names_its_caller(driver) {
        let origin = Origin::echo();
        let text = config(&origin);
        let dir = common::tls::TempDir::new("token");
        let file = dir.path("gateway.toml");
        std::fs::write(&file, &text).unwrap();
        let out = token(&file, &["--sub", "alice", "--tenant", "acme", "--plan", "pro", "--scope", "orders:read", "--scope", "users:read", "--ttl", "10m"], Some(SECRET));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let tok = stdout.trim();
        assert_eq!(tok.lines().count(), 1, "only the token on stdout: {stdout:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains(SECRET));

        let rendered = without_auth(&render_config(&text, driver, 1));
        let env = |name: &str| (name == "TOKEN_E2E_SECRET").then(|| SECRET.into());
        let cfg = Config::parse_with_env(&rendered, "gateway.toml", &env).unwrap();
        let gw = Gateway::start(cfg).unwrap();
        let mut c = Client::connect(gw.addrs()[0]);
        let r = c.request(&Req::get("/me").header("Authorization", &format!("Bearer {tok}")));
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = origin.last_request();
        assert_eq!(seen.header("x-user-id"), Some("alice"));
        assert_eq!(seen.header("x-tenant-id"), Some("acme"));
        assert_eq!(seen.header("x-user-plan"), Some("pro"));
        let r = c.request(&Req::get("/me").header("Authorization", "Bearer nope"));
        assert_eq!(r.status, 401);
        gw.shutdown();
        gw.join();
    }
}

#[test]
fn without_the_secret_it_says_which_variable() {
    let origin = Origin::echo();
    let dir = common::tls::TempDir::new("token-nosecret");
    let file = dir.path("gateway.toml");
    std::fs::write(&file, config(&origin)).unwrap();
    let out = token(&file, &["--sub", "alice"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TOKEN_E2E_SECRET"), "{err}");
    assert!(out.stdout.is_empty());
    let out = token(&file, &["--sub", "alice", "--kid", "other"], Some(SECRET));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kid"));
}
