//! Active health checks (`[upstreams.health_check]`): each worker probes each server of
//! the upstream every `interval_ms` with `GET <path>` on a fresh connection; a 2xx or
//! 3xx within `timeout_ms` is a success. `unhealthy_threshold` consecutive failures take
//! the server out of this worker's rotation, `healthy_threshold` successes bring it
//! back. Each worker checks for itself so that no state crosses cores.

use std::rc::Rc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use crate::config::{HealthCheck, UpstreamServer};
use crate::runtime::worker::Worker;
use crate::upstream::UpstreamState;

/// Probe loop for upstream `up` of worker `w`; ends at shutdown, or when a reload
/// retires the upstream (its successor has a loop of its own).
pub async fn run(w: Rc<Worker>, up: Rc<UpstreamState>) {
    let Some(hc) = up.cfg.health_check.clone() else {
        return;
    };
    let n = up.servers.len();
    let mut ok_streak = vec![0u32; n];
    let mut fail_streak = vec![0u32; n];
    loop {
        monoio::select! {
            _ = monoio::time::sleep(hc.interval) => {},
            _ = w.shutdown.wait() => return,
        }
        if up.is_retired() {
            return;
        }
        for i in 0..n {
            let server = up.cfg.servers[i].clone();
            let ok = probe(&server, &hc).await;
            let state = &up.servers[i];
            if ok {
                ok_streak[i] += 1;
                fail_streak[i] = 0;
                if !state.healthy.get() && ok_streak[i] >= hc.healthy_threshold {
                    state.healthy.set(true);
                }
            } else {
                fail_streak[i] += 1;
                ok_streak[i] = 0;
                if state.healthy.get() && fail_streak[i] >= hc.unhealthy_threshold {
                    state.healthy.set(false);
                }
            }
        }
    }
}

async fn probe(server: &UpstreamServer, hc: &HealthCheck) -> bool {
    if server.tls {
        return false;
    }
    let attempt = async {
        let mut s = monoio::net::TcpStream::connect_addr(server.addr)
            .await
            .ok()?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringgate-health\r\nConnection: close\r\n\r\n",
            hc.path, server.label
        );
        let (r, _) = s.write_all(req.into_bytes()).await;
        r.ok()?;
        let (r, buf) = s.read(Vec::with_capacity(512)).await;
        let n = r.ok()?;
        let line = &buf[..n];
        // "HTTP/1.1 200 ..." -> the status digits.
        let code = line.get(9..12)?;
        Some(line.starts_with(b"HTTP/1.") && (code[0] == b'2' || code[0] == b'3'))
    };
    matches!(
        monoio::time::timeout(hc.timeout.max(Duration::from_millis(1)), attempt).await,
        Ok(Some(true))
    )
}
