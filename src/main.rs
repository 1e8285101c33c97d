//! The `ringgate` command: parse arguments, load the configuration, start the workers,
//! wait for SIGTERM/SIGINT, drain, exit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringgate::config::{validate, Config, IoDriver};
use ringgate::runtime::Gateway;

mod cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringgate",
    version,
    about = "Thread-per-core HTTP/1.1 API gateway"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArg,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outer = cli.config.config;
    let path = |given: Option<PathBuf>| given.unwrap_or_else(|| "config/gateway.toml".into());
    let result = match cli.command {
        Some(Command::Check(inner)) => check(&path(inner.config.or(outer))),
        Some(Command::Demo(_)) if outer.is_some() => Err(anyhow::anyhow!(
            "demo runs with its own configuration (config/demo.toml); --config is not used"
        )),
        Some(Command::Demo(args)) => demo(&args),
        None => serve(&path(outer)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    print!("{}", validate::summary(&cfg));
    if cfg.server.io_driver != IoDriver::Epoll {
        match ringgate::runtime::driver::probe_uring(cfg.server.uring_entries) {
            Ok(()) => println!("io_uring: available on this host"),
            Err(e) => println!("io_uring: NOT available on this host ({e}); auto uses epoll"),
        }
    }
    println!("configuration OK: {}", path.display());
    Ok(())
}

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    let signals = signals()?;
    let gw = start(cfg)?;
    wait_for_signal(gw, signals)
}

/// SIGTERM and SIGINT, caught from before the gateway starts: a signal that arrives
/// as soon as it listens (a rolling restart, a test) drains it like any other,
/// instead of killing the process with requests in flight.
fn signals() -> anyhow::Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).context("installing signal handlers")
}

fn start(cfg: Config) -> anyhow::Result<Gateway> {
    let requested = cfg.server.io_driver;
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
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(gw)
}

fn wait_for_signal(gw: Gateway, mut signals: signal_hook::iterator::Signals) -> anyhow::Result<()> {
    if let Some(sig) = signals.forever().next() {
        eprintln!("ringgate: signal {sig}: draining in-flight requests");
    }
    gw.shutdown();
    gw.join();
    eprintln!("ringgate: stopped");
    Ok(())
}

fn demo(args: &cli::demo::DemoArgs) -> anyhow::Result<()> {
    use cli::demo;
    // A signing secret made up for this run, handed to the gateway the way a real
    // deployment would: through the environment variable the config names. Set before
    // any thread starts.
    let secret = demo::fresh_secret();
    std::env::set_var(demo::SECRET_ENV, &secret);
    let creds = demo::Credentials::mint(&secret);
    let mut cfg = args.config()?;
    let signals = signals()?;
    let [users, orders, products] = args.backend_ports(&cfg);
    let services = demo::DemoServices::start(users, orders, products).with_context(|| {
        format!("starting the demo services (ports {users}, {orders}, {products} must be free)")
    })?;
    // The services' real ports: the OS chose them where the ports given were 0.
    demo::point_upstreams(&mut cfg, services.addrs());
    let gw = start(cfg)?;
    let addr = gw.addrs()[0];
    println!("{}", demo::instructions(addr, services.addrs(), &creds));
    let r = wait_for_signal(gw, signals);
    services.stop();
    r
}
