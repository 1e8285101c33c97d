//! [`summary`]: the one-screen view of a validated [`Config`] that `ringgate check`
//! prints. It shows what the gateway will do, says plainly which sections are parsed
//! but not yet active, and never prints a secret: only the names of the environment
//! variables and files that hold them. [`tls_warnings`] (also printed by start and
//! reload): `verify = false` upstreams, expired or expiring certificates, server names
//! a certificate does not cover.

use std::fmt::Write as _;
use std::time::Duration;

use super::super::{
    AccessLog, AuthMode, Balance, Config, HostMatch, IoDriver, LogLevel, PathMatch, RouteConfig,
    RouteTarget, UpstreamConfig,
};
use crate::tls::client::Trust;
use crate::tls::server::{ClientAuth, ServerTls, TlsVersion};
use crate::tls::sni;

/// "30s", "1500ms", "5m".
fn dur(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 || ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// "16384 B", "10 MiB".
fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size && n % size == 0 {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} B")
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// The human summary printed by `ringgate check`.
pub fn summary(cfg: &Config) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = write_summary(&mut out, cfg);
    out
}

fn write_summary(o: &mut String, cfg: &Config) -> std::fmt::Result {
    let s = &cfg.server;
    let l = &s.limits;
    if s.tls_listen.is_empty() {
        writeln!(o, "listeners     http {}", join(&s.listen))?;
    } else {
        writeln!(
            o,
            "listeners     http {}; https {}",
            join(&s.listen),
            join(&s.tls_listen)
        )?;
    }
    if let Some(tls) = &cfg.tls {
        write_tls(o, tls)?;
    }
    if cfg.admin.requested {
        // Whether the token variable is set, never its value.
        let token = match std::env::var_os(&cfg.admin.token_env) {
            Some(v) if !v.is_empty() => "set",
            _ => "unset: only GET /health and /metrics are served",
        };
        let state = match &cfg.admin.state_file {
            Some(p) => format!("API changes kept in {}", p.display()),
            None => "API changes kept in memory only".to_owned(),
        };
        writeln!(
            o,
            "admin         http://{}; token ${} {token}; {state}",
            cfg.admin.listen, cfg.admin.token_env
        )?;
    }
    let workers = match s.workers {
        0 => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            format!("auto ({cores} cores)")
        }
        n => n.to_string(),
    };
    let pin = if s.pin_workers {
        "pinned to cores"
    } else {
        "not pinned"
    };
    let driver = match s.io_driver {
        IoDriver::Auto => "auto (io_uring if the kernel allows it, else epoll)",
        IoDriver::IoUring => "io_uring",
        IoDriver::Epoll => "epoll",
    };
    writeln!(
        o,
        "workers       {workers}, {pin}; io_driver {driver}, uring_entries {}",
        s.uring_entries
    )?;
    writeln!(
        o,
        "connections   max {}; graceful shutdown {}; trusted proxies {}",
        s.max_connections,
        dur(s.graceful_shutdown),
        join(&s.trusted_proxies)
    )?;
    writeln!(
        o,
        "limits        head {} / {} headers, body {}; header read {}, idle {}, request {}, buffers held {}",
        bytes(l.max_header_bytes as u64),
        l.max_headers,
        bytes(l.max_body_bytes),
        dur(l.header_read_timeout),
        dur(l.idle_timeout),
        dur(l.request_timeout),
        dur(l.buffer_hold)
    )?;
    let access = match &cfg.log.access_log {
        AccessLog::Stdout => "stdout".to_owned(),
        AccessLog::Off => "off".to_owned(),
        AccessLog::File(p) => p.display().to_string(),
    };
    let level = match cfg.log.level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    writeln!(o, "log           access {access}, level {level}")?;
    let m = &cfg.metrics;
    if m.enabled {
        let prometheus = if m.prometheus { "on" } else { "off" };
        writeln!(
            o,
            "metrics       recorded; GET /metrics {prometheus}; route metrics up to {}",
            dur(Duration::from_secs(m.latency_window_s))
        )?;
    } else {
        writeln!(o, "metrics       off (nothing recorded)")?;
    }

    writeln!(o, "upstreams ({})", cfg.upstreams.len())?;
    for u in &cfg.upstreams {
        write_upstream(o, u)?;
        if let Some(w) = upstream_tls_warning(u) {
            writeln!(o, "    {w}")?;
        }
    }
    writeln!(
        o,
        "routes ({}, first match wins; no match -> 404, or 405 when only the method differs)",
        cfg.routes.len()
    )?;
    for r in &cfg.routes {
        write_route(o, r, cfg)?;
    }
    for line in shadow_warnings(cfg) {
        writeln!(o, "  {line}")?;
    }
    write_inactive(o, cfg)
}

fn write_tls(o: &mut String, t: &ServerTls) -> std::fmt::Result {
    let st = &t.settings;
    let version = match st.min_version {
        TlsVersion::Tls12 => "1.2",
        TlsVersion::Tls13 => "1.3",
    };
    let alpn = join(
        st.alpn
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
    );
    let tickets = if st.session_tickets {
        "session tickets on (one key for all workers, rotated every 12h)"
    } else {
        "session tickets off"
    };
    writeln!(
        o,
        "tls           min {version}, alpn {alpn}; {tickets}; handshake timeout {}; session cache {}/worker",
        dur(st.handshake_timeout),
        crate::tls::server::SESSION_CACHE_PER_WORKER
    )?;
    let auth = match (st.client_auth, &t.client_ca) {
        (ClientAuth::None, _) | (_, None) => "none".to_owned(),
        (ClientAuth::Optional, Some(ca)) => {
            format!("optional, CAs {} ({} CA)", ca.file, ca.roots.count)
        }
        (ClientAuth::Required, Some(ca)) => {
            format!("required, CAs {} ({} CA)", ca.file, ca.roots.count)
        }
    };
    let redirect = if st.redirect_http {
        "308 to https"
    } else {
        "served"
    };
    let hsts = t.hsts().unwrap_or("off");
    writeln!(
        o,
        "              client certificates {auth}; plain-HTTP requests {redirect}; HSTS {hsts}"
    )?;
    for (i, c) in t.certificates.iter().enumerate() {
        let d = &c.cert.details;
        let names = if c.names.is_empty() {
            "(no names)".to_owned()
        } else {
            c.names.join(", ")
        };
        let from = if c.names_from_certificate {
            " (from the certificate)"
        } else {
            ""
        };
        let default = if i == 0 { ", default" } else { "" };
        writeln!(
            o,
            "  certificate {i}{default}: {names}{from}\n      {} ({}, {}), expires {}",
            c.cert.cert_file, d.subject, d.key_type, d.not_after
        )?;
    }
    for w in certificate_warnings(t, unix_now()) {
        writeln!(o, "  {w}")?;
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Certificates this near their notAfter get a warning.
const EXPIRY_WARNING_DAYS: u64 = 30;

/// Per certificate: expired, expiring within 30 days, or listed for a name it does not
/// cover (clients that verify would refuse it).
fn certificate_warnings(t: &ServerTls, now: u64) -> Vec<String> {
    let mut out = Vec::new();
    for (i, c) in t.certificates.iter().enumerate() {
        let d = &c.cert.details;
        let what = format!("server.tls.certificates[{i}] ({})", c.cert.cert_file);
        if d.not_after_unix <= now {
            out.push(format!(
                "WARNING: {what} expired at {}: clients that verify refuse it",
                d.not_after
            ));
        } else if d.not_after_unix - now < EXPIRY_WARNING_DAYS * 86_400 {
            out.push(format!(
                "warning: {what} expires in {} day(s), at {}",
                (d.not_after_unix - now) / 86_400,
                d.not_after
            ));
        }
        if !c.names_from_certificate {
            for name in c.names.iter().filter(|n| !sni::covers(&d.dns_names, n)) {
                out.push(format!(
                    "warning: {what} is listed for {name}, which the certificate does not cover (it names {}): clients that verify refuse it",
                    join(&d.dns_names)
                ));
            }
        }
    }
    out
}

fn upstream_tls_warning(u: &UpstreamConfig) -> Option<String> {
    let t = u.tls.as_ref()?;
    matches!(t.trust, Trust::Off).then(|| {
        format!(
            "WARNING: upstream {:?}: [upstreams.tls] verify = false: any certificate for any name is accepted, so anyone on the path can impersonate the upstream; for tests only",
            u.name
        )
    })
}

/// The warnings about TLS that `check` prints in its summary, and start and reload
/// print on their own: upstreams with `verify = false`, certificates expired or close
/// to it, server names a certificate does not cover.
pub fn tls_warnings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = &cfg.tls {
        out.extend(certificate_warnings(t, unix_now()));
    }
    out.extend(cfg.upstreams.iter().filter_map(upstream_tls_warning));
    out
}

fn write_upstream(o: &mut String, u: &UpstreamConfig) -> std::fmt::Result {
    let balance = match &u.balance {
        Balance::RoundRobin => "round_robin".to_owned(),
        Balance::LeastRequest => "least_request".to_owned(),
        Balance::RandomTwo => "random_two".to_owned(),
        Balance::Hash(h) => format!("hash on {h}"),
    };
    writeln!(
        o,
        "  {}: {balance}; connect {}, response {}, idle {}; {} idle/worker, retries {}",
        u.name,
        dur(u.connect_timeout),
        dur(u.response_timeout),
        dur(u.idle_timeout),
        u.max_idle_per_worker,
        u.retries
    )?;
    if let Some(h) = &u.health_check {
        writeln!(
            o,
            "    health check GET {} every {}, timeout {}, healthy after {}, unhealthy after {}",
            h.path,
            dur(h.interval),
            dur(h.timeout),
            h.healthy_threshold,
            h.unhealthy_threshold
        )?;
    }
    if let Some(b) = &u.circuit_breaker {
        writeln!(
            o,
            "    circuit breaker: open after {} failures for {}, close after {} probes",
            b.failure_threshold,
            dur(b.open),
            b.half_open_successes
        )?;
    }
    if let Some(t) = &u.tls {
        let trust = match &t.trust {
            Trust::CaFile { file, roots } => {
                format!("verified against {file} ({} CA)", roots.count)
            }
            Trust::System { count, .. } => {
                format!("verified against the system roots ({count} CA)")
            }
            Trust::Off => "NOT verified (verify = false)".to_owned(),
        };
        let name = t
            .server_name
            .as_deref()
            .map_or("each server's host".to_owned(), |n| n.to_owned());
        let client = t.client_cert.as_ref().map_or(String::new(), |c| {
            format!("; client certificate {}", c.cert_file)
        });
        writeln!(o, "    tls: {trust}; SNI {name}{client}")?;
    }
    if !u.request_headers.is_empty() {
        // The templates as written: an ${env:...} shows as its reference, never its
        // value.
        let fields = u
            .request_headers
            .iter()
            .map(|(n, t)| format!("{n}: {}", t.as_str()));
        writeln!(o, "    adds: {}", join(fields))?;
    }
    for srv in &u.servers {
        let tls = if srv.tls { " (https)" } else { "" };
        // Show the resolved address only when it says something the label does not.
        let resolved = if srv.label == srv.addr.to_string() {
            String::new()
        } else {
            format!(" ({})", srv.addr)
        };
        writeln!(o, "    {}{resolved} weight {}{tls}", srv.label, srv.weight)?;
    }
    Ok(())
}

fn write_route(o: &mut String, r: &RouteConfig, cfg: &Config) -> std::fmt::Result {
    let path = match &r.path {
        PathMatch::Prefix(p) => format!("prefix {p}"),
        PathMatch::Exact(p) => format!("exact {p}"),
        PathMatch::Template(t) => format!("template {}", t.as_str()),
    };
    let methods = r.methods.as_ref().map_or("any".to_owned(), |m| m.join(","));
    let name = |i: usize| cfg.upstreams.get(i).map_or("?", |u| u.name.as_str());
    let target = match &r.target {
        RouteTarget::Single(i) => name(*i).to_owned(),
        RouteTarget::Split(v) => join(v.iter().map(|(i, w)| format!("{} w{w}", name(*i)))),
        RouteTarget::Respond(r) => format!("respond {} at the edge", r.status),
        RouteTarget::Compose(c) => format!(
            "compose {}",
            join(c.parts.iter().map(|p| {
                let req = if p.required { " (required)" } else { "" };
                format!("{} from {}{req}", p.name, name(p.upstream))
            }))
        ),
        RouteTarget::Fanout(f) => format!(
            "fan-out to {} (require {})",
            join(f.upstreams.iter().map(|i| name(*i).to_owned())),
            f.require
        ),
    };
    write!(o, "  {}: {path}, methods {methods}", r.id)?;
    if let Some(h) = &r.host {
        match h {
            HostMatch::Exact(h) => write!(o, ", host {h}")?,
            HostMatch::Suffix(s) => write!(o, ", host *{s}")?,
        }
    }
    for (name, value) in &r.headers {
        write!(o, ", {name}: {value}")?;
    }
    write!(o, "\n      -> {target}")?;
    if !r.mirror.is_empty() {
        write!(
            o,
            ", mirrored to {}",
            join(r.mirror.iter().map(|&i| name(i)))
        )?;
    }
    if r.websocket {
        write!(o, ", WebSocket relayed")?;
    }
    if !r.strip_prefix.is_empty() {
        write!(o, ", strip {}", r.strip_prefix)?;
    }
    if let Some(rw) = &r.rewrite {
        write!(o, ", rewrite {} -> {}", rw.pattern(), rw.replace())?;
    }
    if !r.content_type.is_empty() {
        write!(
            o,
            ", content type {}",
            join(r.content_type.iter().map(|m| m.to_string()))
        )?;
    }
    if let Some(t) = r.timeout {
        write!(o, ", timeout {}", dur(t))?;
    }
    if let Some(b) = r.max_body_bytes {
        write!(o, ", body <= {}", bytes(b))?;
    }
    let auth = match r.auth {
        AuthMode::Required => "required",
        AuthMode::Optional => "optional",
        AuthMode::None => "none",
        AuthMode::Mtls => "mtls (client certificate)",
    };
    write!(o, "; auth {auth}")?;
    if !r.scopes.is_empty() {
        write!(o, " scopes {}", r.scopes.join(" "))?;
    }
    match &r.rate_limit {
        Some(l) if l.enabled => write!(
            o,
            ", limit {}/min burst {} per {}",
            l.requests_per_minute, l.burst, l.key
        )?,
        Some(_) => write!(o, ", own limit off")?,
        None => {}
    }
    if let Some(p) = &r.plan {
        write!(o, ", plan {p}")?;
    }
    if let Some(c) = &r.cache {
        let shared = if c.shared { ", shared" } else { "" };
        // Without ttl_s only what the origin marks fresh is stored.
        let ttl = c.ttl.map_or_else(|| "origin-fresh".to_owned(), dur);
        write!(o, "; cache {ttl} {}{shared}", c.methods.join(","))?;
        if !c.vary.is_empty() {
            write!(o, " vary {}", c.vary.join(","))?;
        }
    }
    let edits = r.request_headers.add.len()
        + r.request_headers.remove.len()
        + r.response_headers.add.len()
        + r.response_headers.remove.len();
    if edits > 0 {
        write!(o, "; {edits} header edit(s)")?;
    }
    writeln!(o)
}

fn write_inactive(o: &mut String, cfg: &Config) -> std::fmt::Result {
    writeln!(o, "identity, limits and cache:")?;
    let jwt = &cfg.auth.jwt;
    let keys = join(jwt.keys.iter().map(|k| {
        let kid = k.kid.as_ref().map_or("(no kid)", |k| k.get_ref().as_str());
        let alg = k
            .algorithm
            .as_ref()
            .map_or("from JWKS", |a| a.get_ref().as_str());
        // Only where the key comes from: the variable's name, never its value.
        let from = match (&k.secret_env, &k.public_key_file, &k.jwks_file) {
            (Some(e), _, _) => format!("secret from ${}", e.get_ref()),
            (_, Some(f), _) => format!("public key {}", f.get_ref()),
            (_, _, Some(f)) => format!("JWKS {}", f.get_ref()),
            _ => String::new(),
        };
        format!("{kid} {alg} {from}")
    }));
    writeln!(o, "  auth/JWT      keys: {keys}")?;
    let api = &cfg.auth.api_keys;
    writeln!(
        o,
        "  API keys      header {}, {} key(s): {}",
        api.header.get_ref(),
        api.keys.len(),
        join(api.keys.iter().map(|k| k.id.get_ref()))
    )?;
    let closed = cfg
        .routes
        .iter()
        .filter(|r| r.auth != AuthMode::None)
        .count();
    if closed > 0 && jwt.keys.is_empty() && api.keys.is_empty() {
        writeln!(
            o,
            "  note          {closed} route(s) have auth required/optional but no JWT or API key is configured"
        )?;
    }
    let rl = &cfg.rate_limit;
    writeln!(
        o,
        "  rate limits   key {}, default plan {}, sync every {}ms; plans: {}",
        rl.key.get_ref(),
        rl.default_plan.get_ref(),
        rl.sync_interval_ms.get_ref(),
        join(cfg.plans.iter().map(|(n, p)| format!(
            "{n} {}/min burst {}",
            p.requests_per_minute.get_ref(),
            p.burst
        )))
    )?;
    // The Redis URL is never printed (it may hold a password).
    match &cfg.cluster {
        Some(c) => writeln!(
            o,
            "  cluster       {:?} as node {:?}, Redis (URL not shown), sync every {}ms, on Redis error: local share",
            c.name,
            c.node_id,
            c.sync_interval.as_millis()
        )?,
        None => writeln!(o, "  cluster       none: limits are this node's alone")?,
    }
    let c = &cfg.cache;
    let cached = cfg.routes.iter().filter(|r| r.cache.is_some()).count();
    writeln!(
        o,
        "  cache         {}, {} total, objects <= {}, bodies from {} in files; used by {cached} route(s)",
        if c.enabled { "enabled" } else { "disabled" },
        bytes(*c.max_bytes.get_ref()),
        bytes(*c.max_object_bytes.get_ref()),
        match *c.file_min_bytes.get_ref() {
            0 => "(never)".to_owned(),
            n => bytes(n),
        }
    )?;
    writeln!(o, "parsed and checked, {NOT_YET_ACTIVE}:")?;
    let inactive = not_yet_active(cfg);
    if inactive.is_empty() {
        writeln!(o, "  none")?;
    }
    for line in inactive {
        writeln!(o, "  {line}")?;
    }
    Ok(())
}

/// One warning line per route that an earlier route shadows (see `shadow.rs`).
pub fn shadow_warnings(cfg: &Config) -> Vec<String> {
    super::shadow::shadowed_routes(&cfg.routes)
        .into_iter()
        .map(|(earlier, later)| {
            format!(
                "warning: route {:?} can never match: route {:?} before it matches every request it would",
                cfg.routes[later].id, cfg.routes[earlier].id
            )
        })
        .collect()
}

/// The words `check` and start both use for a section that is accepted but not served.
pub const NOT_YET_ACTIVE: &str = "not yet active";

/// The sections the file asks for that are parsed and checked but not served yet, one
/// line each: `check` lists them, start prints each as a warning.
pub fn not_yet_active(cfg: &Config) -> Vec<String> {
    // Every section of the file is served now; later sections will be listed here
    // while they are only parsed and checked.
    let _ = cfg;
    Vec::new()
}
