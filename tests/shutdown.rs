//! Graceful shutdown, through the API (`Gateway::shutdown` / `join`) and through the
//! binary (SIGTERM): in-flight requests finish, idle connections close, new ones are
//! refused, and the drain is bounded by `graceful_shutdown_s`.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

fn slow_origin(ms: u64) -> Origin {
    Origin::start(move |r| Reply::ok(format!("done {}", r.target)).delay_ms(ms))
}

/// Wait (polling) for the child to exit; kill it and fail after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringgate did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Start the binary on `config`; returns it and the address it reports listening on
/// (its start-up line on stderr is the readiness signal).
fn spawn_ringgate(config: &str) -> (Child, SocketAddr) {
    let g = common::process::spawn_gateway("shutdown", config, false);
    (g.child, g.addr)
}

both_drivers! {
    fn in_flight_request_completes(driver) {
        let origin = slow_origin(500);
        let mut gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        c.send(Req::get("/slow").bytes());
        origin.wait_requests(1);
        gw.shutdown();
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "done /slow");
        assert!(resp.connection_has("close"), "draining must close: {}", resp.head);
        c.assert_closed();
        let took = gw.stop();
        assert!(took < Duration::from_secs(2), "join took {took:?}");
    }

    fn new_connections_are_refused_after_shutdown(driver) {
        // Refused at once, during the drain, not only once the workers are gone (that
        // is `listener_is_closed_when_join_returns`): a request is still in flight for
        // another 1.5 s while new connections must already be refused.
        let origin = slow_origin(1500);
        let gw = Gw::simple(driver, &origin);
        let addr = gw.addr;
        let mut c = gw.client();
        c.send(Req::get("/in-flight").bytes());
        origin.wait_requests(1);
        let t = Instant::now();
        gw.shutdown();
        // The worker picks the stop flag up at its next tick (50 ms).
        let refused_after = loop {
            match TcpStream::connect(addr) {
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                    break t.elapsed();
                }
                Ok(_) => {
                    assert!(
                        t.elapsed() < Duration::from_millis(1000),
                        "still accepting {:?} after shutdown",
                        t.elapsed()
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        // And it stays refused while the drain goes on.
        let err = TcpStream::connect(addr).expect_err("accepting again during the drain");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        // Refused within 1 s of shutdown, while the origin holds its answer for 1.5 s:
        // the drain was still going on. It still ends with the answer.
        assert!(refused_after < Duration::from_millis(1000));
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "done /in-flight");
    }

    fn idle_connections_close_promptly(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut idle = gw.client();
        assert_eq!(idle.request(&Req::get("/")).status, 200);
        let fresh = gw.client(); // accepted, never sent a byte
        let t = Instant::now();
        gw.shutdown();
        idle.assert_closed();
        let mut fresh = fresh;
        fresh.assert_closed();
        assert!(t.elapsed() < Duration::from_secs(1), "closed only after {:?}", t.elapsed());
    }

    fn pipelined_requests_during_drain(driver) {
        // A request already in flight finishes; the connection then closes, so the
        // pipelined one is never started (the client may retry it elsewhere).
        let origin = slow_origin(300);
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let mut both = Req::get("/a").bytes();
        both.extend(Req::get("/b").bytes());
        c.send(both);
        origin.wait_requests(1);
        gw.shutdown();
        assert_eq!(c.read_response().text(), "done /a");
        c.assert_closed();
        assert_eq!(origin.requests().len(), 1);
    }

    fn drain_is_bounded(driver) {
        let origin = slow_origin(3000);
        let toml = simple_config(&origin, "[server]\ngraceful_shutdown_s = 1\n");
        let mut gw = Gw::start(driver, &toml);
        let mut c = gw.client();
        c.send(Req::get("/forever").bytes());
        origin.wait_requests(1);
        let took = gw.stop();
        assert!(took >= Duration::from_millis(900), "gave up after only {took:?}");
        assert!(took < Duration::from_millis(2500), "drain took {took:?}");
    }

    fn connections_cut_off_by_the_drain_bound_are_closed(driver) {
        let origin = slow_origin(3000);
        let toml = simple_config(&origin, "[server]\ngraceful_shutdown_s = 1\n");
        let mut gw = Gw::start(driver, &toml);
        let mut c = gw.client();
        c.send(Req::get("/forever").bytes());
        origin.wait_requests(1);
        gw.stop();
        // The cut-off client must see the connection end (with no response), not hang.
        let rest = c.read_until_close();
        assert!(!rest.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&rest));
        // And the upstream connection is closed too.
        origin.wait_closed(1);
    }

    fn binary_drains_on_sigterm_and_exits_0(driver) {
        let origin = slow_origin(500);
        let config = render_config(&simple_config(&origin, ""), driver, 1);
        let (mut child, addr) = spawn_ringgate(&config);
        let mut c = Client::connect(addr);
        c.send(Req::get("/in-flight").bytes());
        origin.wait_requests(1);
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "done /in-flight");
        let status = wait_exit(&mut child, Duration::from_secs(10));
        assert!(status.success(), "exit status {status:?}");
        assert!(TcpStream::connect(addr).is_err(), "still accepting after exit");
    }
}

/// After `join` returns, nothing may still accept: a connection the kernel accepted now
/// would be reset, never served.
fn listener_is_closed_when_join_returns(driver: IoDriver) {
    let origin = Origin::echo();
    let mut gw = Gw::simple(driver, &origin);
    assert_eq!(gw.send(&Req::get("/")).status, 200);
    let addr = gw.addr;
    gw.stop();
    let err = TcpStream::connect(addr).expect_err("connected after join returned");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

mod listener_is_closed_when_join_returns {
    use super::*;

    #[test]
    fn io_uring() {
        if driver_available(IoDriver::IoUring) {
            super::listener_is_closed_when_join_returns(IoDriver::IoUring);
        }
    }

    #[test]
    fn epoll() {
        super::listener_is_closed_when_join_returns(IoDriver::Epoll);
    }
}
