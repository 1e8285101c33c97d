//! Active health checks (`[upstreams.health_check]`): each worker probes each server of
//! the upstream every `interval_ms` with `GET <path>` on a fresh connection, through
//! the upstream client ([`super::client`]); a 2xx or
//! 3xx within `timeout_ms` is a success. `unhealthy_threshold` consecutive failures take
//! the server out of this worker's rotation, `healthy_threshold` successes bring it
//! back. Each worker checks for itself so that no state crosses cores.

use std::rc::Rc;
use std::time::Duration;

use monoio::time::Instant;

use super::client::{self, HeadLimits};
use crate::config::HealthCheck;
use crate::http::ResponseHead;
use crate::pipeline::local::Local;
use crate::upstream::UpstreamState;

/// Probe loop for upstream `up` of worker `w`; ends at shutdown, or when a reload
/// retires the upstream (its successor has a loop of its own).
pub async fn run(w: Rc<Local>, up: Rc<UpstreamState>) {
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
            let ok = probe(&up, i, &hc).await;
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

/// One probe on a new connection, through the upstream client: a 2xx or 3xx final
/// head within `timeout_ms` is a success.
async fn probe(up: &UpstreamState, si: usize, hc: &HealthCheck) -> bool {
    let server = &up.cfg.servers[si];
    let attempt = async {
        let mut conn = client::checkout(up, si, Instant::now(), true).await.ok()?;
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringgate-health\r\nConnection: close\r\n\r\n",
            hc.path, server.label
        )
        .into_bytes();
        client::send(&mut conn, &mut req).await.ok()?;
        let mut resp = ResponseHead::default();
        let limits = HeadLimits {
            max_bytes: 16 * 1024,
            max_headers: 128,
        };
        // The whole probe is bounded by the timeout below.
        let far = Instant::now() + Duration::from_secs(3600);
        client::read_final_head(&mut conn, &mut resp, limits, false, far)
            .await
            .ok()?;
        Some((200..400).contains(&resp.status))
    };
    matches!(
        monoio::time::timeout(hc.timeout.max(Duration::from_millis(1)), attempt).await,
        Ok(Some(true))
    )
}
