//! [`Control`]: the one place a running gateway's configuration changes, whoever asks:
//! SIGHUP, `POST /api/v1/reload`, the routes API, or a test. It holds the
//! configuration in force, the file text it came from and the admin API's
//! [`Overlay`], and hands a new configuration to the workers (each builds and swaps
//! to its new pipeline on its next tick; see [`Control::apply`]).
//!
//! Changes are serialized by one lock, taken only by these (never by a worker), so
//! two admin calls cannot interleave their read-modify-write of the routes.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::mailbox::{self, AskError, Mailbox};
use super::{ActiveDriver, Reloaded, Shared};
use crate::admin::state::{Overlay, StateError};
use crate::config::{Config, ConfigError};
use crate::pipeline::local::Local;

/// How long the workers have to take a new configuration.
const APPLY_WITHIN: Duration = Duration::from_secs(5);

pub struct Control {
    pub shared: Arc<Shared>,
    mail: Vec<Mailbox>,
    pub driver: ActiveDriver,
    /// `[metrics]` as the gateway started with it: what the workers record and the
    /// admin API serves (a reload does not change it).
    pub metrics: crate::config::MetricsConfig,
    current: Mutex<Arc<Config>>,
    edit: Mutex<EditState>,
}

/// What a change is made from.
struct EditState {
    /// The configuration text without the overlay (the file as last read).
    base: Option<String>,
    overlay: Overlay,
}

/// Why a reload or a change was not applied; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the workers did not take the new configuration within {0:?}")]
    NotApplied(Duration),
    /// The file (or the file with the API's routes) is not valid.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "this gateway was not started from a configuration file: there is nothing to read again"
    )]
    NoSource,
    #[error("this gateway's configuration was built in code, not from TOML: the admin API cannot edit its routes")]
    NoText,
}

/// What a change through the API did.
#[derive(Debug)]
pub struct Applied {
    /// Sections that changed but take effect at the next start.
    pub restart_needed: Vec<&'static str>,
    /// The overlay was written to `admin.state_file`.
    pub persisted: bool,
}

/// The text `base` with `overlay` on top, validated. `origin` names the file.
pub fn with_overlay(base: &str, origin: &str, overlay: &Overlay) -> Result<Config, ReloadError> {
    if overlay.is_empty() {
        return Ok(Config::parse(base, origin)?);
    }
    let merged = overlay.apply(base)?;
    let origin = format!("{origin} with the admin API's routes");
    Ok(Config::parse(&merged, &origin)?)
}

impl Control {
    /// `cfg` is the configuration the workers start with; `overlay`, what the state
    /// file held (already applied to `cfg`); `base`, the text without it.
    pub fn new(
        shared: Arc<Shared>,
        mail: Vec<Mailbox>,
        driver: ActiveDriver,
        cfg: Arc<Config>,
        base: Option<String>,
        overlay: Overlay,
    ) -> Control {
        Control {
            shared,
            mail,
            driver,
            metrics: cfg.metrics,
            current: Mutex::new(cfg),
            edit: Mutex::new(EditState { base, overlay }),
        }
    }

    pub fn workers(&self) -> usize {
        self.mail.len()
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The admin API's changes as they stand.
    pub fn overlay(&self) -> Overlay {
        self.edit().overlay.clone()
    }

    fn edit(&self) -> MutexGuard<'_, EditState> {
        self.edit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on every worker (see [`mailbox::ask_all`]).
    pub fn ask_all<T, F>(&self, within: Duration, f: F) -> Result<Vec<T>, AskError>
    where
        T: Send + 'static,
        F: Fn(&std::rc::Rc<Local>) -> T + Send + Sync + 'static,
    {
        mailbox::ask_all(&self.mail, within, f)
    }

    /// Read the configuration file again and apply it, with the API's routes on top:
    /// SIGHUP and `POST /api/v1/reload`. An invalid file changes nothing; its error
    /// names the file and line.
    pub fn reload_file(&self) -> Result<Applied, ReloadError> {
        let mut edit = self.edit();
        let path = self.current().source.clone().ok_or(ReloadError::NoSource)?;
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: origin.clone(),
            source,
        })?;
        // The file alone first: its own mistakes are reported with its own lines.
        let mut cfg = Config::parse(&text, &origin)?;
        if !edit.overlay.is_empty() {
            cfg = with_overlay(&text, &origin, &edit.overlay)?;
        }
        cfg.source = Some(path);
        let restart_needed = self.apply(cfg)?;
        edit.base = Some(text);
        Ok(Applied {
            restart_needed,
            persisted: false,
        })
    }

    /// Change the API's routes with `change` (given the overlay to change, the running
    /// configuration and the file's text without the overlay) and apply the result;
    /// nothing changes if `change` fails or the result is not valid. `T`: what
    /// `change` says.
    pub fn change_routes<T, E>(
        &self,
        change: impl FnOnce(&mut Overlay, &Config, &str) -> Result<T, E>,
    ) -> Result<Result<(T, Applied), E>, ReloadError> {
        let mut edit = self.edit();
        let current = self.current();
        let base = edit.base.clone().ok_or(ReloadError::NoText)?;
        let mut next = edit.overlay.clone();
        let said = match change(&mut next, &current, &base) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let origin = current
            .source
            .as_ref()
            .map_or("configuration".to_owned(), |p| p.display().to_string());
        let mut cfg = with_overlay(&base, &origin, &next)?;
        cfg.source = current.source.clone();
        let restart_needed = self.apply(cfg)?;
        edit.overlay = next;
        let persisted = match &current.admin.state_file {
            Some(path) => {
                edit.overlay.save(path)?;
                true
            }
            None => false,
        };
        Ok(Ok((
            said,
            Applied {
                restart_needed,
                persisted,
            },
        )))
    }

    /// Apply `cfg` (a whole validated configuration) as it is; it becomes the base the
    /// API's changes are made on (the overlay is applied on top when there is one).
    pub fn replace(&self, cfg: Config) -> Result<Vec<&'static str>, ReloadError> {
        let mut edit = self.edit();
        let base = cfg.text.as_deref().map(str::to_owned);
        let cfg = match (&base, edit.overlay.is_empty()) {
            (Some(text), false) => {
                let mut merged = with_overlay(text, "configuration", &edit.overlay)?;
                merged.source = cfg.source.clone();
                merged
            }
            _ => cfg,
        };
        let restart_needed = self.apply(cfg)?;
        edit.base = base;
        Ok(restart_needed)
    }

    /// Replace the routes, upstreams, plans, rate-limit settings, keys and per-route
    /// cache settings with those of `cfg` (already validated), on every worker,
    /// without dropping a connection: each worker builds its new pipeline on its next
    /// tick, and requests in flight finish on the one they started with. Returns once
    /// every worker runs it, with the sections that changed but take effect only at
    /// the next start (listeners, workers, `[server]`, `[log]`, `[admin]`, `[cache]`
    /// sizes, `[metrics]`, `[cluster]`).
    fn apply(&self, mut cfg: Config) -> Result<Vec<&'static str>, ReloadError> {
        // Keys and plans were loaded and typed when `cfg` was validated.
        let limits = cfg.limits.clone();
        let auth = cfg.auth_keys.clone();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        // Whether the start took an address over (`--takeover`) means nothing now.
        cfg.server.takeover = current.server.takeover;
        cfg.server.https_port = current.server.https_port;
        let cfg = Arc::new(cfg);
        let differs =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        let mut restart_needed = Vec::new();
        if differs(&current.server, &cfg.server) {
            restart_needed.push("[server]");
        }
        if differs(&current.log, &cfg.log) {
            restart_needed.push("[log]");
        }
        if differs(&current.admin, &cfg.admin) {
            restart_needed.push("[admin]");
        }
        if differs(&current.cache, &cfg.cache) {
            restart_needed.push("[cache]");
        }
        if current.metrics != cfg.metrics {
            restart_needed.push("[metrics]");
        }
        // The sync thread, its Redis URL and the keys' secret are made at start.
        if current.cluster != cfg.cluster {
            restart_needed.push("[cluster]");
        }
        if let Some(status) = &self.shared.cluster {
            status.set_quota_plans(&limits);
        }
        let generation = self.shared.generation.load(Ordering::Acquire) + 1;
        *self.shared.reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Reloaded {
            generation,
            cfg: cfg.clone(),
            limits,
            auth,
        }));
        self.shared.generation.store(generation, Ordering::Release);
        *current = cfg;
        drop(current);
        // Each worker takes it on its tick (every 50 ms).
        let deadline = std::time::Instant::now() + APPLY_WITHIN;
        while self
            .shared
            .applied
            .iter()
            .any(|a| a.load(Ordering::Acquire) < generation)
        {
            if std::time::Instant::now() >= deadline {
                return Err(ReloadError::NotApplied(APPLY_WITHIN));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(restart_needed)
    }
}
