//! The `ringgate` command: parse arguments, load the configuration, start the workers,
//! reload on SIGHUP, and on SIGTERM/SIGINT drain and exit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringgate::config::{validate, Config, IoDriver};
use ringgate::runtime::{nofile, Gateway};

mod cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `ringgate --help` says beyond the flags: how to operate the process.
const OPERATOR_HELP: &str = "\
Signals:
  SIGHUP           Reload the configuration file: routes, upstreams, plans, keys, cache
                   rules and TLS certificates, without dropping a connection. A file
                   that does not load changes nothing (the error is logged).
  SIGTERM, SIGINT  Stop accepting, finish in-flight requests (up to
                   server.graceful_shutdown_s), then exit 0.

Environment:
  The variables the configuration names: [[auth.jwt.keys]] secret_env (HMAC secrets),
  admin.token_env (GATEWAY_ADMIN_TOKEN by default). Secrets never appear in the file,
  in logs or in errors.

Exit status:
  0  stopped on a signal after draining; `check`: the configuration is valid
  1  the configuration is invalid, the gateway could not start, or a command failed
     (the reason is printed on stderr, with the file and line for configuration errors)
  2  the command line itself is wrong

Files:
  config/gateway.toml   the default configuration (--config to give another)
  config/ringgate.service   a systemd unit (reload = SIGHUP)";

#[derive(Parser)]
#[command(
    name = "ringgate",
    version,
    about = "Thread-per-core HTTP/1.1 API gateway",
    after_long_help = OPERATOR_HELP
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArg,
    /// Share listen addresses another process already serves (zero-downtime upgrade:
    /// start the new gateway with this, then SIGTERM the old one). Without it, an
    /// address in use refuses the start. Same as `server.takeover = true`.
    #[arg(long)]
    takeover: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `--config`, taken by running and by `check`, both before and after `check`; not by
/// `demo`, which runs with its own configuration.
#[derive(clap::Args)]
struct ConfigArg {
    /// Configuration file [default: config/gateway.toml].
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, print a summary, exit 0 (valid) or 1.
    Check(ConfigArg),
    /// Start the gateway with config/demo.toml in front of built-in demo services on
    /// loopback, and print what to try.
    Demo(cli::demo::DemoArgs),
    /// Print a test token (JWT) signed with a key of the configuration, with the
    /// claims its [auth.jwt] reads: `export TOKEN=$(ringgate token --sub alice)`.
    Token(cli::token::TokenArgs),
    /// Print the manual page (roff), generated from this command line's definition:
    /// `ringgate man > ringgate.1 && man ./ringgate.1`.
    Man,
}

fn main() -> ExitCode {
    ringgate::runtime::alloc::tune();
    let cli = Cli::parse();
    let outer = cli.config.config;
    let path = |given: Option<PathBuf>| given.unwrap_or_else(|| "config/gateway.toml".into());
    let result = match cli.command {
        Some(Command::Check(inner)) => check(&path(inner.config.or(outer))),
        Some(Command::Demo(_)) if outer.is_some() => Err(anyhow::anyhow!(
            "demo runs with its own configuration (config/demo.toml); --config is not used"
        )),
        Some(Command::Demo(args)) => demo(&args),
        Some(Command::Man) => man(),
        Some(Command::Token(args)) => {
            cli::token::mint(&args, &path(outer)).map(|token| println!("{token}"))
        }
        None => serve(&path(outer), cli.takeover),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The manual page, from the same definition as `--help` (its subcommands, signals,
/// environment and exit status included).
fn man() -> anyhow::Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock())?;
    Ok(())
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    // `Config::load` builds everything start uses (keys included); what is left is
    // what depends on this host: the io_uring driver, when it is required.
    let cfg = load_for_check(path)?;
    print!("{}", validate::summary(&cfg));
    println!(
        "memory        an idle client connection keeps {} bytes (its task) besides its socket; \
         busy ones take {} KiB buffers from a per-worker pool of at most {} free",
        ringgate::pipeline::conn::idle_state_bytes(),
        ringgate::http::buffers::LARGE / 1024,
        ringgate::http::buffers::MAX_FREE,
    );
    if cfg.server.io_driver != IoDriver::Epoll {
        match ringgate::runtime::driver::probe_uring(cfg.server.uring_entries) {
            Ok(()) => println!("io_uring: available on this host"),
            Err(e) if cfg.server.io_driver == IoDriver::IoUring => anyhow::bail!(
                "{}: server.io_driver = \"io_uring\" but io_uring is not available on this host ({e}); use \"auto\" or \"epoll\"",
                path.display()
            ),
            Err(e) => println!("io_uring: NOT available on this host ({e}); auto uses epoll"),
        }
    }
    println!("configuration OK: {}", path.display());
    Ok(())
}

/// The configuration as `check` judges it. A secret too short for its algorithm is a
/// fault of the environment `check` runs in, not of the file (which names only the
/// variable): it is reported as a warning saying that `start` refuses it, and the
/// rest of the file is checked as if the secret were long enough. `start` still
/// refuses it (RFC 7518 3.2).
fn load_for_check(path: &std::path::Path) -> anyhow::Result<Config> {
    let mut weak: Vec<String> = Vec::new();
    loop {
        let env = |name: &str| {
            if weak.iter().any(|w| w == name) {
                Some(std::ffi::OsString::from("x".repeat(64)))
            } else {
                std::env::var_os(name)
            }
        };
        match Config::load_with_env(path, &env) {
            Err(validate::ConfigError::AuthKey {
                weak_secret_env: Some(var),
                ref site,
                ref reason,
            }) if !weak.contains(&var) => {
                println!("warning: {site}: {reason}; `ringgate start` refuses it: give {var} a longer secret where the gateway runs");
                weak.push(var);
            }
            other => return Ok(other?),
        }
    }
}

fn serve(path: &std::path::Path, takeover: bool) -> anyhow::Result<()> {
    let mut cfg = Config::load(path)?;
    cfg.server.takeover |= takeover;
    let signals = signals()?;
    let gw = start(cfg)?;
    wait_for_signal(gw, signals, Some(path))
}

/// SIGTERM and SIGINT (drain and stop) and SIGHUP (reload), caught from before the
/// gateway starts: a signal that arrives as soon as it listens (a rolling restart, a
/// test) is handled like any other, instead of killing the process with requests in
/// flight.
fn signals() -> anyhow::Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")
}

/// Read and validate the file again (with the admin API's routes on top); if it is
/// valid, every worker takes it. If not, nothing changes and the error (with file and
/// line) is logged. `POST /api/v1/reload` is the same entry point
/// (`Gateway::reload_file`).
fn reload(gw: &Gateway, path: &std::path::Path) {
    match gw.reload_file() {
        Ok(applied) => {
            eprintln!("ringgate: reloaded {}", path.display());
            let cfg = gw.config();
            for line in validate::shadow_warnings(&cfg)
                .into_iter()
                .chain(validate::tls_warnings(&cfg))
            {
                eprintln!("ringgate: {line}");
            }
            if !applied.restart_needed.is_empty() {
                eprintln!(
                    "ringgate: changes to {} take effect at the next start",
                    applied.restart_needed.join(", ")
                );
            }
        }
        Err(e) => eprintln!("ringgate: reload failed, the running configuration stays: {e}"),
    }
}

fn start(cfg: Config) -> anyhow::Result<Gateway> {
    // The same lines `check` lists: accepted, not served.
    for line in validate::not_yet_active(&cfg) {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        eprintln!(
            "ringgate: warning: {line}: parsed and checked, {}: nothing is served for it",
            validate::NOT_YET_ACTIVE
        );
    }
    for line in validate::shadow_warnings(&cfg)
        .into_iter()
        .chain(validate::tls_warnings(&cfg))
    {
        eprintln!("ringgate: {line}");
    }
    let requested = cfg.server.io_driver;
    let max_connections = cfg.server.max_connections;
    // Before the workers start: they size what they keep open by it (cache body files).
    let limit = nofile::raise();
    let gw = Gateway::start(cfg).context("cannot start")?;
    let why = match (requested, gw.driver()) {
        (IoDriver::Auto, ringgate::runtime::ActiveDriver::Epoll) => {
            match ringgate::runtime::driver::probe_uring(8) {
                Ok(()) => " (io_driver = auto: epoll measured cheaper here)".to_string(),
                Err(e) => format!(" (io_driver = auto: io_uring unavailable: {e})"),
            }
        }
        (IoDriver::Auto, _) => " (io_driver = auto)".to_string(),
        _ => String::new(),
    };
    eprintln!(
        "ringgate {}: {} workers, {} driver{why}, listening on {}",
        env!("CARGO_PKG_VERSION"),
        gw.workers(),
        gw.driver(),
        gw.addrs()
            .iter()
            .map(|a| a.to_string())
            .chain(gw.tls_addrs().iter().map(|a| format!("{a} (https)")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(admin) = gw.admin_addr() {
        eprintln!("ringgate: admin API on http://{admin} (GET /health, /metrics; the rest needs the admin token)");
    }
    // After the start line, which scripts (and tests) read first as the sign of ready.
    let reserved = nofile::reserved(gw.workers(), gw.addrs().len());
    if let (Some(soft), Some(fits)) = (
        limit.soft,
        nofile::shortfall(max_connections, reserved, limit.soft),
    ) {
        eprintln!("ringgate: {}", nofile::warning(max_connections, soft, fits));
    }
    Ok(gw)
}

/// Until SIGTERM or SIGINT: SIGHUP reloads `path` (the demo, whose configuration is
/// built in, has none to reload).
fn wait_for_signal(
    gw: Gateway,
    mut signals: signal_hook::iterator::Signals,
    path: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGHUP {
            match path {
                Some(path) => reload(&gw, path),
                None => eprintln!(
                    "ringgate: SIGHUP: the demo's configuration is built in, nothing to reload"
                ),
            }
            continue;
        }
        eprintln!("ringgate: signal {sig}: draining in-flight requests");
        break;
    }
    gw.shutdown();
    gw.join();
    eprintln!("ringgate: stopped");
    Ok(())
}

fn demo(args: &cli::demo::DemoArgs) -> anyhow::Result<()> {
    use cli::demo;
    // A signing secret made up for this run, handed to the configuration as the value
    // of the environment variable it names (the process environment is not changed).
    let secret = demo::fresh_secret();
    let creds = demo::Credentials::mint(&secret);
    // The HTTPS certificate, made for this run; dropping `certs` removes its files, on
    // every way out of this function.
    let certs = demo::DemoCerts::generate(Some(args.tls_listen().ip()))
        .context("making the demo's HTTPS certificate")?;
    let mut cfg = args.config(&secret, &certs)?;
    // The admin token made up for this run, where `[admin] token_env` says the
    // gateway reads it, and the signing secret where the file names it: a change made
    // through the admin API validates the whole file again, reading its secrets from
    // the environment. Set before any thread of this process starts.
    std::env::set_var(&cfg.admin.token_env, &creds.admin_token);
    std::env::set_var(demo::SECRET_ENV, &secret);
    let signals = signals()?;
    let [users, orders, products] = args.backend_ports(&cfg);
    let services = demo::DemoServices::start(users, orders, products).with_context(|| {
        format!("starting the demo services (ports {users}, {orders}, {products} must be free)")
    })?;
    // The services' real ports: the OS chose them where the ports given were 0.
    demo::point_upstreams(&mut cfg, services.addrs());
    let gw = start(cfg)?;
    let addr = gw.addrs()[0];
    let https = gw.tls_addrs()[0];
    println!(
        "{}",
        demo::instructions(
            addr,
            https,
            gw.admin_addr(),
            &certs,
            services.addrs(),
            &creds
        )
    );
    let r = wait_for_signal(gw, signals, None);
    services.stop();
    drop(certs);
    r
}
