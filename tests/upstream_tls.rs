//! TLS to upstreams end to end, on both drivers: `https://` servers behind the gateway
//! (an HTTPS origin written in the test, on rustls), with verification against
//! `ca_file` and `server_name`, a client certificate, `verify = false`, and pooling.

mod common;

use common::tls::{Ca, TempDir, TlsOrigin};
use common::*;

/// A gateway with one route to an `https://` upstream; `tls` holds `[upstreams.tls]`
/// keys.
fn gateway(driver: IoDriver, origin: &TlsOrigin, tls: &str) -> Gw {
    let text = format!(
        "[[upstreams]]\nname = \"secure\"\nservers = [\"https://{}\"]\n\n[upstreams.tls]\n{tls}\n\n\
         [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"secure\"\nauth = \"none\"\n",
        origin.addr
    );
    Gw::start(driver, &text)
}

fn pem_file(dir: &TempDir, name: &str, ca: &Ca) -> String {
    ca.write(&dir.0, name).display().to_string()
}

both_drivers! {
    fn a_verified_https_upstream_is_served_and_pooled(driver) {
        let ca = Ca::new("origin CA");
        let origin = TlsOrigin::start(&ca.server(&["origin.test"]), None);
        let dir = TempDir::new("up-tls");
        let gw = gateway(
            driver,
            &origin,
            &format!("server_name = \"origin.test\"\nca_file = \"{}\"", pem_file(&dir, "ca.pem", &ca)),
        );
        let mut c = gw.client();
        for i in 0..3 {
            let r = c.request(&Req::get(&format!("/x/{i}")));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.text(), "https-origin");
        }
        let seen = origin.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].sni.as_deref(), Some("origin.test"));
        assert_eq!(seen[0].alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(seen[2].request_head.starts_with("GET /x/2 HTTP/1.1"), "{}", seen[2].request_head);
        // One handshake: the TLS connection was pooled and reused.
        assert_eq!(origin.handshakes.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    fn an_untrusted_upstream_certificate_is_a_502(driver) {
        let ca = Ca::new("origin CA");
        let other = Ca::new("other CA");
        let origin = TlsOrigin::start(&ca.server(&["origin.test"]), None);
        let dir = TempDir::new("up-tls-bad");
        let gw = gateway(
            driver,
            &origin,
            &format!("server_name = \"origin.test\"\nca_file = \"{}\"", pem_file(&dir, "other.pem", &other)),
        );
        let r = gw.send(&Req::get("/x"));
        r.assert_json_error(502);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains("not trusted"), "{message}");
        assert!(origin.seen().is_empty());
    }

    fn the_name_checked_is_the_servers_host_by_default(driver) {
        let ca = Ca::new("origin CA");
        let origin = TlsOrigin::start(&ca.server(&["origin.test"]), None);
        let dir = TempDir::new("up-tls-name");
        // No server_name: the name checked is 127.0.0.1, which the certificate lacks.
        let gw = gateway(driver, &origin, &format!("ca_file = \"{}\"", pem_file(&dir, "ca.pem", &ca)));
        let r = gw.send(&Req::get("/x"));
        r.assert_json_error(502);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains("does not name the upstream"), "{message}");
    }

    fn verify_false_accepts_any_certificate(driver) {
        let ca = Ca::new("origin CA");
        let origin = TlsOrigin::start(&ca.server(&["origin.test"]), None);
        let gw = gateway(driver, &origin, "verify = false");
        let r = gw.send(&Req::get("/x"));
        assert_eq!(r.status, 200, "{}", r.text());
    }

    fn a_client_certificate_is_presented_to_the_upstream(driver) {
        let ca = Ca::new("origin CA");
        let clients = Ca::new("gateway clients CA");
        let origin = TlsOrigin::start(&ca.server(&["origin.test"]), Some(&clients));
        let dir = TempDir::new("up-mtls");
        let (cert, key) = clients.client("gateway", "Edge").write(&dir.0, "gateway");
        let gw = gateway(
            driver,
            &origin,
            &format!(
                "server_name = \"origin.test\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
                pem_file(&dir, "ca.pem", &ca),
                cert.display(),
                key.display()
            ),
        );
        let r = gw.send(&Req::get("/x"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(origin.seen()[0].client_cert);
        // Without a client certificate the origin refuses the handshake: 502.
        let gw = gateway(
            driver,
            &origin,
            &format!("server_name = \"origin.test\"\nca_file = \"{}\"", pem_file(&dir, "ca.pem", &ca)),
        );
        gw.send(&Req::get("/x")).assert_json_error(502);
    }
}
