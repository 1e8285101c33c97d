//! The admin listener (`admin.listen`): health and readiness, metrics, and the
//! management API that changes routes, reloads and purges while the gateway serves.
//! It is never served on the public listeners.
//!
//! It runs on its own thread ("ringgate-admin") with blocking sockets, off every
//! worker's loop: an admin call reaches the workers only through [`Control`], which
//! either hands them a new configuration (taken whole on their next tick, like a
//! SIGHUP reload) or asks each of them a question through its mailbox
//! ([`crate::runtime::mailbox`]): a closure run on the worker's own thread that copies
//! what it needs (counters, breaker states, a cache purge's count). Nothing the
//! request path touches is shared or locked for the admin API.
//!
//! # Who may call it
//!
//! `admin.token_env` names the environment variable holding the admin token, read at
//! start. Every call then needs `Authorization: Bearer <token>`, or a JWT that
//! `[auth.jwt]` verifies carrying the scope `gateway:admin`; else 401. While the
//! variable is unset, only `GET /health` and `GET /metrics` are served and every other
//! call is 403 with a message saying how to enable it. `GET /ready`, the load
//! balancer's probe, is always open: it says only whether this gateway takes traffic.
//!
//! - [`http`]: reading requests and writing answers;
//! - [`api`]: the endpoints (health, ready, reload, config, purge);
//! - [`metrics`]: `/metrics` and the route-metrics API;
//! - [`routes`]: the routes API; [`state`]: its changes, kept apart from the file.

pub mod api;
pub mod http;
pub mod metrics;
pub mod routes;
pub mod state;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::runtime::Control;
use http::{Request, Response};

/// The scope a JWT must carry to use the admin API.
pub const ADMIN_SCOPE: &str = "gateway:admin";

/// Bind the admin listener (before the workers start, so a taken port refuses the
/// start).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// The running admin listener.
pub struct AdminServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    listener: TcpListener,
    thread: Option<JoinHandle<()>>,
}

/// What every admin connection shares.
pub struct Admin {
    pub control: Arc<Control>,
    /// SHA-256 of the admin token; `None`: the variable is unset (or empty).
    token: Option<[u8; 32]>,
    /// The variable's name, for the 403 that says how to enable the API.
    token_env: String,
    active: AtomicUsize,
}

impl AdminServer {
    /// Serve `listener` on a thread of its own until [`AdminServer::stop`].
    pub fn start(listener: TcpListener, control: Arc<Control>) -> AdminServer {
        let cfg = control.current();
        let token = std::env::var(&cfg.admin.token_env)
            .ok()
            .filter(|t| !t.is_empty())
            .map(|t| digest(t.as_bytes()));
        let admin = Arc::new(Admin {
            control,
            token,
            token_env: cfg.admin.token_env.clone(),
            active: AtomicUsize::new(0),
        });
        let addr = listener.local_addr().unwrap_or(cfg.admin.listen);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match listener.try_clone() {
            Ok(l) => {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name("ringgate-admin".into())
                    .spawn(move || accept_loop(l, admin, stop))
                    .ok()
            }
            Err(_) => None,
        };
        AdminServer {
            addr,
            stop,
            listener,
            thread,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting and wait for the accept loop to end (connections under way
    /// finish on their own threads).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // shutdown(2) on a listening socket makes a blocked accept return (Linux).
        let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, admin: Arc<Admin>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut s) = conn else {
            // Out of descriptors: wait rather than spin.
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        };
        if admin.active.fetch_add(1, Ordering::SeqCst) >= http::MAX_CONNECTIONS {
            admin.active.fetch_sub(1, Ordering::SeqCst);
            let r = Response::error(503, "too many admin connections", "");
            let _ = http::write_response(&mut s, &r, "", false, false);
            continue;
        }
        let a = admin.clone();
        let spawned = std::thread::Builder::new()
            .name("ringgate-admin-conn".into())
            .spawn(move || {
                serve(&a, s);
                a.active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            admin.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One connection: requests in turn, until it closes, idles out or errs.
fn serve(admin: &Admin, mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(http::READ_TIMEOUT));
    let _ = s.set_write_timeout(Some(http::READ_TIMEOUT));
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    for _ in 0..http::MAX_REQUESTS {
        let mut req = match http::read_request(&mut s, &mut buf) {
            Ok(r) => r,
            Err(http::ReadError(Some((status, message)))) => {
                let id = new_request_id();
                let _ = http::write_response(
                    &mut s,
                    &Response::error(status, message, &id),
                    &id,
                    false,
                    false,
                );
                return;
            }
            Err(http::ReadError(None)) => return,
        };
        req.request_id = request_id(&req);
        let head_only = req.method == "HEAD";
        let r = admin.handle(&req);
        let keep = req.keep_alive && !admin.control.shared.stop.load(Ordering::Relaxed);
        if http::write_response(&mut s, &r, &req.request_id, keep, head_only).is_err() || !keep {
            return;
        }
    }
}

/// The client's `X-Request-ID` when it is a sane token, else a new one.
fn request_id(req: &Request) -> String {
    match req.header("x-request-id") {
        Some(v)
            if (1..=128).contains(&v.len())
                && v.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b)) =>
        {
            String::from_utf8_lossy(v).into_owned()
        }
        _ => new_request_id(),
    }
}

fn new_request_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

fn digest(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether a call may go on.
enum Access {
    Granted,
    Refused(Response),
}

impl Admin {
    /// Check who calls, then answer.
    pub fn handle(&self, req: &Request) -> Response {
        let open = req.path == "/ready"
            || (self.token.is_none()
                && matches!(req.method.as_str(), "GET" | "HEAD")
                && matches!(req.path.as_str(), "/health" | "/metrics"));
        if !open {
            if let Access::Refused(r) = self.authorize(req) {
                return r;
            }
        }
        api::dispatch(self, req)
    }

    /// The token rules (see the module doc).
    fn authorize(&self, req: &Request) -> Access {
        let Some(token) = &self.token else {
            return Access::Refused(Response::error(
                403,
                &format!(
                    "the admin API is disabled: set the environment variable {} to a secret token before starting the gateway, then send it as \"Authorization: Bearer <token>\" (only GET /health and GET /metrics are served without it)",
                    self.token_env
                ),
                &req.request_id,
            ));
        };
        let challenge = |message: &str| {
            let mut r = Response::error(401, message, &req.request_id);
            r.headers = "WWW-Authenticate: Bearer realm=\"ringgate-admin\"\r\n".into();
            Access::Refused(r)
        };
        let Some(value) = req.header("authorization") else {
            return challenge("the admin API needs \"Authorization: Bearer <admin token>\" or a JWT with the scope gateway:admin");
        };
        let presented = match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
            _ => return challenge("the admin API takes a bearer token"),
        };
        // Compared as SHA-256 digests: how long the comparison takes tells at most how
        // many leading bytes of the two digests agree, which says nothing usable about
        // the token itself.
        if digest(presented) == *token {
            return Access::Granted;
        }
        self.authorize_jwt(value, req, challenge)
    }

    fn authorize_jwt(
        &self,
        value: &[u8],
        req: &Request,
        challenge: impl Fn(&str) -> Access,
    ) -> Access {
        let cfg = self.control.current();
        if cfg.auth_keys.jwt.keys.is_empty() {
            return challenge("invalid admin token");
        }
        let auth = crate::auth::Authenticator::new(&cfg.auth_keys);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match auth.authenticate(Some(value), None, now) {
            crate::auth::AuthOutcome::Authenticated(id) if id.via == crate::auth::Via::Jwt => {
                if id.scopes.iter().any(|s| s == ADMIN_SCOPE) {
                    Access::Granted
                } else {
                    Access::Refused(Response::error(
                        403,
                        &format!("the token is valid but lacks the scope {ADMIN_SCOPE}"),
                        &req.request_id,
                    ))
                }
            }
            _ => challenge("invalid admin token"),
        }
    }
}
