//! The `ringgate` command: parse arguments, load the configuration, start the workers,
//! wait for SIGTERM/SIGINT, drain, exit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringgate::config::{validate, Config, IoDriver};
use ringgate::runtime::Gateway;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringgate",
    version,
    about = "Thread-per-core HTTP/1.1 API gateway"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = "config/gateway.toml")]
    config: PathBuf,
    /// Share listen addresses another process already serves (zero-downtime upgrade:
    /// start the new gateway with this, then SIGTERM the old one). Without it, an
    /// address in use refuses the start. Same as `server.takeover = true`.
    #[arg(long)]
    takeover: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, print a summary, exit 0 (valid) or 1.
    Check,
    /// Start the gateway in front of built-in demo services on loopback.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check) => check(&cli.config),
        Some(Command::Demo) => demo(),
        None => serve(&cli.config, cli.takeover),
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
    // `Config::load` builds everything start uses (keys included); what is left is
    // what depends on this host: the io_uring driver, when it is required.
    let cfg = Config::load(path)?;
    print!("{}", validate::summary(&cfg));
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

fn serve(path: &std::path::Path, takeover: bool) -> anyhow::Result<()> {
    let mut cfg = Config::load(path)?;
    cfg.server.takeover |= takeover;
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
    // The same lines `check` lists: accepted, not served.
    for line in validate::not_yet_active(&cfg) {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        eprintln!(
            "ringgate: warning: {line}: parsed and checked, {}: nothing is served for it",
            validate::NOT_YET_ACTIVE
        );
    }
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

fn demo() -> anyhow::Result<()> {
    use ringgate::demo;
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"));
    // A signing secret made up for this run, handed to the gateway the way a real
    // deployment would: through the environment variable the config names. Set before
    // any thread starts.
    let secret: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(48)
        .collect();
    std::env::set_var(demo::DEMO_SECRET_ENV, &secret);
    let creds = demo::DemoCredentials {
        free_token: demo::mint_token(&secret, "alice", "acme", "free", "users:read"),
        pro_token: demo::mint_token(&secret, "bob", "globex", "pro", "users:read orders:read"),
        api_key: demo::DEMO_API_KEY.to_string(),
    };
    let cfg = Config::load(&path)?;
    let signals = signals()?;
    let services =
        demo::DemoServices::start(demo::USERS_PORT, demo::ORDERS_PORT, demo::PRODUCTS_PORT)
            .context("starting the demo services (ports 19001-19003 must be free)")?;
    let gw = start(cfg)?;
    let addr = gw.addrs()[0];
    println!("{}", demo::instructions(addr, &creds));
    let r = wait_for_signal(gw, signals);
    services.stop();
    r
}
