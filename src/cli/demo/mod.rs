//! `ringgate demo`: the gateway with `config/demo.toml` in front of three small JSON
//! services (users, orders, products) that run inside the same process on 127.0.0.1,
//! then printed instructions: the run's credentials and curl lines to try.
//!
//! - [`server`]: the services' HTTP/1.1 server ([`DemoServices`]); plain blocking
//!   sockets, a thread per connection; [`request`] reads a request, strict about
//!   framing.
//! - [`services`]: what they answer: resources, handlers, data; JSON through serde_json.
//! - [`credentials`]: the run's signing secret, the two tokens signed with it, the
//!   published API key.
//! - [`certs`]: the run's HTTPS certificate for `localhost` and the demo CA that signs
//!   it, made with rcgen into a directory of their own, removed when the demo stops.
//! - [`instructions`]: the text printed once the gateway listens, every line of which
//!   tests/demo.rs runs.
//!
//! [`DemoArgs`] are the subcommand's flags. Without them everything listens where
//! demo.toml says (the gateway on 127.0.0.1:8080, the services on 19001-19003), and
//! HTTPS on 127.0.0.1:8443 ([`DEFAULT_TLS_LISTEN`]), as the README shows; `--listen
//! 127.0.0.1:0 --tls-listen 127.0.0.1:0 --backend-ports 0,0,0` lets the OS choose every
//! port instead, so that a demo can run beside another (tests/demo.rs does), and the
//! instructions print the ports chosen. `src/main.rs` runs the steps in order.
//!
//! The `[server.tls]` section is not in demo.toml itself, whose comments show it: it
//! names files that exist only once the demo has made them, so [`DemoArgs::config`]
//! adds it to the file's text ([`tls_section`]) before the text is parsed and checked.

mod certs;
mod credentials;
mod instructions;
mod request;
mod server;
mod services;
#[cfg(test)]
mod test_client;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ringgate::config::{Config, ConfigError};

pub use certs::DemoCerts;
pub use credentials::{fresh_secret, Credentials, SECRET_ENV};
pub use instructions::instructions;
pub use server::{DemoAddrs, DemoServices};

/// config/demo.toml, built into the binary: `ringgate demo` runs wherever it is
/// started, and the file's own comments explain the demo.
const DEMO_TOML: &str = include_str!("../../../config/demo.toml");
/// Where the gateway serves HTTPS unless `--tls-listen` says otherwise.
pub const DEFAULT_TLS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);

/// The flags of `ringgate demo`. Each overrides one setting of config/demo.toml.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the gateway listens [default: 127.0.0.1:8080, from config/demo.toml].
    /// Port 0: a free port chosen by the OS, printed in the instructions.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Where the gateway serves HTTPS, with a certificate for localhost made at start
    /// [default: 127.0.0.1:8443, as config/demo.toml shows]. Port 0: a free port chosen
    /// by the OS, printed in the instructions.
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<SocketAddr>,
    /// Ports of the users, orders and products services on 127.0.0.1 [default:
    /// 19001,19002,19003, from config/demo.toml]. 0: chosen by the OS, printed in the
    /// instructions.
    #[arg(long, value_name = "USERS,ORDERS,PRODUCTS")]
    pub backend_ports: Option<BackendPorts>,
    /// Where the admin API listens [default: 127.0.0.1:9901, from config/demo.toml].
    /// Port 0: a free port chosen by the OS, printed in the instructions.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// The I/O driver [default: auto, from config/demo.toml].
    #[arg(long, value_name = "DRIVER")]
    pub io_driver: Option<Driver>,
}

/// `--io-driver`, spelled as in the configuration file's `io_driver`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Driver {
    Auto,
    #[value(name = "io_uring")]
    IoUring,
    Epoll,
}

/// `--backend-ports`: three ports, comma-separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendPorts([u16; 3]);

impl std::str::FromStr for BackendPorts {
    type Err = String;

    fn from_str(s: &str) -> Result<BackendPorts, String> {
        let ports: Vec<u16> = s
            .split(',')
            .map(|p| p.trim().parse().map_err(|e| format!("{p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let ports = <[u16; 3]>::try_from(ports).map_err(|p| {
            format!(
                "three ports are needed (users, orders, products), not {}",
                p.len()
            )
        })?;
        Ok(BackendPorts(ports))
    }
}

impl DemoArgs {
    /// config/demo.toml with `--listen`, `--tls-listen` and `--io-driver` applied, its
    /// signing key `secret` (handed to validation as the value of [`SECRET_ENV`], the
    /// variable the file names, without setting it in the process), and a
    /// `[server.tls]` section serving `certs` on [`DemoArgs::tls_listen`]. Its upstreams
    /// still name the ports in the file until [`point_upstreams`] moves them to where
    /// the services listen.
    pub fn config(&self, secret: &str, certs: &DemoCerts) -> Result<Config, ConfigError> {
        let env = |name: &str| {
            if name == SECRET_ENV {
                Some(secret.into())
            } else {
                std::env::var_os(name)
            }
        };
        let text = format!("{DEMO_TOML}{}", tls_section(self.tls_listen(), certs));
        // The flags change the text itself, not only the typed values: the admin API
        // validates the text again for every change it makes.
        let text = edit_text(&text, |doc| {
            let table = |doc: &mut toml::Table, name: &str| {
                doc.entry(name)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .map(std::mem::take)
                    .unwrap_or_default()
            };
            let mut server = table(doc, "server");
            if let Some(listen) = self.listen {
                server.insert("listen".into(), toml::Value::from(vec![listen.to_string()]));
            }
            if let Some(driver) = self.io_driver {
                let name = match driver {
                    Driver::Auto => "auto",
                    Driver::IoUring => "io_uring",
                    Driver::Epoll => "epoll",
                };
                server.insert("io_driver".into(), toml::Value::from(name));
            }
            doc.insert("server".into(), toml::Value::Table(server));
            let mut admin = table(doc, "admin");
            if let Some(listen) = self.admin_listen {
                admin.insert("listen".into(), toml::Value::from(listen.to_string()));
            }
            doc.insert("admin".into(), toml::Value::Table(admin));
            // The IoT route's schema: the copy written beside the certificate.
            let schema = certs.schema_file().to_string_lossy().into_owned();
            let routes = doc.get_mut("routes").and_then(toml::Value::as_array_mut);
            for route in routes.into_iter().flatten() {
                let validate = route
                    .get_mut("validate")
                    .and_then(toml::Value::as_table_mut);
                if let Some(v) = validate {
                    v.insert("schema_file".into(), toml::Value::from(schema.clone()));
                }
            }
        });
        let cfg = Config::parse_with_env(&text, "config/demo.toml", &env)?;
        Ok(cfg)
    }

    /// Where the gateway serves HTTPS: `--tls-listen`, else [`DEFAULT_TLS_LISTEN`].
    pub fn tls_listen(&self) -> SocketAddr {
        self.tls_listen.unwrap_or(DEFAULT_TLS_LISTEN)
    }

    /// Where to start the users, orders and products services: `--backend-ports`, else
    /// the ports `cfg` gives their upstreams.
    pub fn backend_ports(&self, cfg: &Config) -> [u16; 3] {
        match self.backend_ports {
            Some(BackendPorts(ports)) => ports,
            // A demo.toml without one of these upstreams fails the unit test below, so
            // 0 (any port) is never reached in a release.
            None => ["users", "orders", "products"].map(|name| {
                cfg.upstreams
                    .iter()
                    .find(|u| u.name == name)
                    .and_then(|u| u.servers.first())
                    .map_or(0, |s| s.addr.port())
            }),
        }
    }
}

/// `text` (TOML) changed by `f`; comments do not survive. Unchanged if it does not
/// parse (validation then says why).
fn edit_text(text: &str, f: impl FnOnce(&mut toml::Table)) -> String {
    let Ok(mut doc) = text.parse::<toml::Table>() else {
        return text.to_owned();
    };
    f(&mut doc);
    toml::to_string(&doc).unwrap_or_else(|_| text.to_owned())
}

/// The `[server.tls]` section added to demo.toml's text: HTTPS on `listen` (HTTP/1.1),
/// with the demo's certificate for `localhost` (the default one too, for clients that
/// send no SNI, such as curl to an IP address).
fn tls_section(listen: SocketAddr, certs: &DemoCerts) -> String {
    let path = |p: std::path::PathBuf| toml_string(&p.to_string_lossy());
    format!(
        "\n# Added by `ringgate demo` (src/cli/demo/mod.rs), with the files it made at start.\n\
         [server.tls]\n\
         listen = [{}]\n\
         alpn = [\"http/1.1\"]\n\n\
         [[server.tls.certificates]]\n\
         server_names = [{}]\n\
         cert_file = {}\n\
         key_file = {}\n",
        toml_string(&listen.to_string()),
        toml_string(certs::SERVER_NAME),
        path(certs.cert_file()),
        path(certs.key_file()),
    )
}

/// `s` as a TOML basic string, quoted: a temporary directory's path may hold quotes,
/// backslashes or control characters.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Points the upstreams at where the services listen: those demo.toml gives port 19001
/// (users, and the edge workloads' voice, sms, fax, lake and legacy), 19002 (orders)
/// and 19003 (products).
pub fn point_upstreams(cfg: &mut Config, addrs: DemoAddrs) {
    // By the port demo.toml gives: the edge workloads' upstreams (voice, lake, ...) are
    // the users service too.
    let at = |port: u16| match port {
        19001 => Some(addrs.users),
        19002 => Some(addrs.orders),
        19003 => Some(addrs.products),
        _ => None,
    };
    // In the text too, which the admin API validates again for each change.
    if let Some(text) = cfg.text.as_deref() {
        let edited = edit_text(text, |doc| {
            let ups = doc.get_mut("upstreams").and_then(toml::Value::as_array_mut);
            for u in ups.into_iter().flatten() {
                let port = u
                    .get("servers")
                    .and_then(toml::Value::as_array)
                    .and_then(|s| s.first())
                    .and_then(toml::Value::as_str)
                    .and_then(|s| s.parse::<SocketAddr>().ok())
                    .map_or(0, |a| a.port());
                if let (Some(addr), Some(t)) = (at(port), u.as_table_mut()) {
                    t.insert("servers".into(), toml::Value::from(vec![addr.to_string()]));
                }
            }
        });
        cfg.text = Some(edited.into());
    }
    for upstream in &mut cfg.upstreams {
        for server in &mut upstream.servers {
            if let Some(addr) = at(server.addr.port()) {
                server.addr = addr;
                server.label = addr.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use ringgate::config::IoDriver;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    fn parse(args: &[&str]) -> Result<DemoArgs, clap::Error> {
        Cli::try_parse_from(["demo"].iter().chain(args)).map(|cli| cli.demo)
    }

    const SECRET: &str = "test-secret-0123456789abcdef0123456789";

    #[test]
    fn without_flags_everything_is_where_demo_toml_says() {
        let args = parse(&[]).unwrap();
        let certs = DemoCerts::generate(Some(args.tls_listen().ip())).unwrap();
        let cfg = args.config(SECRET, &certs).unwrap();
        assert_eq!(cfg.server.listen, ["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(cfg.server.tls_listen, ["127.0.0.1:8443".parse().unwrap()]);
        // The certificate made, loaded by validation, for localhost.
        let tls = cfg.tls.as_ref().expect("[server.tls]");
        assert_eq!(tls.certificates.len(), 1);
        assert_eq!(tls.certificates[0].names, ["localhost"]);
        let files = &tls.certificates[0].cert;
        assert_eq!(Path::new(&files.cert_file), certs.cert_file());
        assert_eq!(Path::new(&files.key_file), certs.key_file());
        assert_eq!(cfg.server.io_driver, IoDriver::Auto);
        assert_eq!(args.backend_ports(&cfg), [19001, 19002, 19003]);
        // demo.toml's comments show the section the demo adds, with its address.
        assert!(DEMO_TOML.contains(&format!("# listen = [\"{DEFAULT_TLS_LISTEN}\"]")));
    }

    #[test]
    fn the_tls_section_names_the_files_made() {
        let certs = DemoCerts::generate(None).unwrap();
        let listen = "[::1]:0".parse().unwrap();
        let text = tls_section(listen, &certs);
        let quoted = |p: std::path::PathBuf| format!("\"{}\"", p.display());
        for line in [
            "\n[server.tls]\nlisten = [\"[::1]:0\"]\nalpn = [\"http/1.1\"]\n".to_string(),
            "\n[[server.tls.certificates]]\nserver_names = [\"localhost\"]\n".to_string(),
            format!("\ncert_file = {}\n", quoted(certs.cert_file())),
            format!("\nkey_file = {}\n", quoted(certs.key_file())),
        ] {
            assert!(text.contains(&line), "{line:?} missing in\n{text}");
        }
        let parsed: toml::Table = toml::from_str(&format!("{DEMO_TOML}{text}")).unwrap();
        let cert = &parsed["server"]["tls"]["certificates"][0];
        assert_eq!(
            cert["key_file"].as_str(),
            certs.key_file().to_str(),
            "{text}"
        );
    }

    #[test]
    fn toml_strings_are_escaped() {
        let odd = "/tmp/a \"b\" \\c\u{1}\u{7f}\u{e9}";
        let parsed: toml::Table = toml::from_str(&format!("x = {}", toml_string(odd))).unwrap();
        assert_eq!(parsed["x"].as_str(), Some(odd));
    }

    #[test]
    fn flags_move_the_gateway_and_the_services() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "[::1]:0",
            "--backend-ports",
            "0,0,7",
            "--io-driver",
            "io_uring",
        ])
        .unwrap();
        let certs = DemoCerts::generate(Some(args.tls_listen().ip())).unwrap();
        let mut cfg = args.config(SECRET, &certs).unwrap();
        assert_eq!(cfg.server.listen, ["127.0.0.1:0".parse().unwrap()]);
        assert_eq!(cfg.server.tls_listen, ["[::1]:0".parse().unwrap()]);
        assert_eq!(cfg.server.io_driver, IoDriver::IoUring);
        assert_eq!(args.backend_ports(&cfg), [0, 0, 7]);

        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let addrs = DemoAddrs {
            users: addr(1),
            orders: addr(2),
            products: addr(3),
        };
        point_upstreams(&mut cfg, addrs);
        let servers: Vec<(&str, SocketAddr, &str)> = cfg
            .upstreams
            .iter()
            .flat_map(|u| {
                u.servers
                    .iter()
                    .map(|s| (u.name.as_str(), s.addr, &*s.label))
            })
            .collect();
        assert_eq!(
            servers,
            [
                ("users", addr(1), "127.0.0.1:1"),
                ("orders", addr(2), "127.0.0.1:2"),
                ("products", addr(3), "127.0.0.1:3"),
                // The edge workloads' upstreams are the users service.
                ("voice", addr(1), "127.0.0.1:1"),
                ("sms", addr(1), "127.0.0.1:1"),
                ("fax", addr(1), "127.0.0.1:1"),
                ("lake", addr(1), "127.0.0.1:1"),
                ("legacy", addr(1), "127.0.0.1:1"),
            ]
        );
    }

    #[test]
    fn backend_ports_takes_exactly_three() {
        for wrong in ["0,0", "0,0,0,0", "0,0,x", "0,0,65536", ""] {
            assert!(parse(&["--backend-ports", wrong]).is_err(), "{wrong:?}");
        }
        assert!(parse(&["--io-driver", "uring"]).is_err());
        assert!(parse(&["--tls-listen", "localhost:8443"]).is_err());
    }
}
