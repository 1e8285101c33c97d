//! TLS termination end to end, on both drivers: real rustls clients against the
//! gateway's TLS listener, in front of a plain origin written in the test.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::tls::{client_config, Ca, TempDir};
use common::*;

/// A gateway with a TLS listener (and a plain one) in front of `origin`, serving
/// `leaf` for "gw.test"; `extra` goes into `[server.tls]`.
struct TlsGw {
    gw: Gw,
    ca: Ca,
    _dir: TempDir,
}

impl TlsGw {
    fn start(driver: IoDriver, origin: &Origin, extra: &str) -> TlsGw {
        let ca = Ca::new("ringgate test CA");
        let dir = TempDir::new("tls");
        let (cert, key) = ca.server(&["gw.test"]).write(&dir.0, "gw");
        let top = format!(
            "[server]\n\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\n{extra}\n\
             [[server.tls.certificates]]\nserver_names = [\"gw.test\"]\n\
             cert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        );
        let gw = Gw::start(driver, &simple_config(origin, &top));
        TlsGw { gw, ca, _dir: dir }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.gw.gateway().tls_addrs()[0]
    }

    fn client(&self) -> Client {
        Client::connect_tls(
            self.addr(),
            client_config(&self.ca, &["http/1.1"], &[], None),
            "gw.test",
        )
    }
}

both_drivers! {
    fn requests_over_tls_reach_the_origin_as_https(driver) {
        let origin = Origin::echo();
        let g = TlsGw::start(driver, &origin, "");
        let mut c = g.client();
        assert_eq!(c.tls().alpn_protocol(), Some(&b"http/1.1"[..]));
        for i in 0..3 {
            let r = c.request(&Req::get(&format!("/hello/{i}")).header("X-Forwarded-Proto", "http"));
            assert_eq!(r.status, 200, "{}", r.text());
            let seen = origin.last_request();
            assert_eq!(seen.target, format!("/hello/{i}"));
            // A client's own X-Forwarded-Proto is not believed (it is not a trusted proxy).
            assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
        }
        // The plain listener still serves plain HTTP, as http.
        let r = g.gw.send(&Req::get("/plain"));
        assert_eq!(r.status, 200);
        assert_eq!(origin.last_request().header("x-forwarded-proto"), Some("http"));
    }

    fn bodies_stream_both_ways_over_tls(driver) {
        let big = pattern(3 * 1024 * 1024 + 17, 7);
        let body = big.clone();
        let origin = Origin::start(move |req| {
            if req.method == "POST" {
                Reply::ok(format!("{}:{}", req.body.len(), checksum(&req.body)))
            } else {
                Reply::ok(body.clone())
            }
        });
        let g = TlsGw::start(driver, &origin, "");
        let mut c = g.client();
        let r = c.request(&Req::get("/big"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), big.len());
        assert_eq!(checksum(&r.body), checksum(&big));
        let r = c.request(&Req::post("/up", big.clone()));
        assert_eq!(r.text(), format!("{}:{}", big.len(), checksum(&big)));
        let chunks: Vec<&[u8]> = big.chunks(100_000).collect();
        let r = c.request(&Req::new("POST", "/up").chunked(&chunks));
        assert_eq!(r.text(), format!("{}:{}", big.len(), checksum(&big)));
    }

    fn pipelined_requests_over_tls_are_answered_in_order(driver) {
        let origin = Origin::echo();
        let g = TlsGw::start(driver, &origin, "");
        let mut c = g.client();
        let mut all = Vec::new();
        for i in 0..5 {
            all.extend_from_slice(&Req::get(&format!("/p/{i}")).bytes());
        }
        c.send(&all);
        for i in 0..5 {
            let r = c.read_response();
            assert_eq!(r.status, 200);
            assert!(r.text().contains(&format!("/p/{i}")), "{}", r.text());
        }
    }

    fn tls_12_and_13_are_both_served(driver) {
        let origin = Origin::echo();
        let g = TlsGw::start(driver, &origin, "");
        for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let cfg = client_config(&g.ca, &["http/1.1"], &[v], None);
            let mut c = Client::connect_tls(g.addr(), cfg, "gw.test");
            assert_eq!(c.tls().protocol_version(), Some(v.version));
            assert_eq!(c.request(&Req::get("/v")).status, 200);
        }
    }

    fn an_h2_only_client_gets_no_application_protocol(driver) {
        let origin = Origin::echo();
        let g = TlsGw::start(driver, &origin, "");
        let cfg = client_config(&g.ca, &["h2"], &[], None);
        let err = Client::try_connect_tls(g.addr(), cfg, "gw.test").err().expect("handshake must fail");
        let text = err.to_string();
        assert!(text.contains("NoApplicationProtocol"), "{text}");
        // A client offering no ALPN at all is served (curl without --http1.1 offers both).
        let cfg = client_config(&g.ca, &[], &[], None);
        let mut c = Client::connect_tls(g.addr(), cfg, "gw.test");
        assert_eq!(c.request(&Req::get("/none")).status, 200);
    }

    fn plain_http_to_the_tls_port_is_closed_and_others_are_unaffected(driver) {
        let origin = Origin::echo();
        let g = TlsGw::start(driver, &origin, "");
        let mut tls = g.client();
        let mut raw = TcpStream::connect(g.addr()).unwrap();
        raw.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let _ = raw.read_to_end(&mut got);
        // Nothing of HTTP comes back: at most a TLS alert record (content type 21).
        assert!(got.is_empty() || got[0] == 21, "{got:?}");
        // Garbage that looks like a TLS record with an absurd length: closed too.
        let mut raw = TcpStream::connect(g.addr()).unwrap();
        raw.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        raw.write_all(&[22, 3, 1, 0xff, 0xff, 1, 2, 3]).unwrap();
        raw.write_all(&[0u8; 4096]).unwrap();
        let mut got = Vec::new();
        let _ = raw.read_to_end(&mut got);
        assert!(origin.requests().is_empty());
        assert_eq!(tls.request(&Req::get("/still")).status, 200);
    }

    fn a_stalled_handshake_is_closed_after_the_timeout(driver) {
        let origin = Origin::echo();
        let g = TlsGw::start(driver, &origin, "handshake_timeout_ms = 300");
        let mut raw = TcpStream::connect(g.addr()).unwrap();
        raw.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        // Half a ClientHello record header, then nothing.
        raw.write_all(&[22, 3, 1]).unwrap();
        let t = std::time::Instant::now();
        let mut got = Vec::new();
        let _ = raw.read_to_end(&mut got);
        let took = t.elapsed();
        assert!(took < Duration::from_secs(3), "closed after {took:?}");
        assert!(took >= Duration::from_millis(250), "closed after {took:?}");
        // Meanwhile and after, a real client is served.
        let mut c = g.client();
        assert_eq!(c.request(&Req::get("/ok")).status, 200);
    }

    fn a_wrong_name_still_gets_the_default_certificate(driver) {
        let origin = Origin::echo();
        let g = TlsGw::start(driver, &origin, "");
        // No match for the SNI: the first (default) certificate is served, and a
        // client that checks names refuses it.
        let cfg = client_config(&g.ca, &["http/1.1"], &[], None);
        let err = Client::try_connect_tls(g.addr(), cfg, "other.test").err().expect("name mismatch");
        assert!(err.to_string().contains("not valid for name"), "{err}");
    }
}

/// A TLS gateway whose `[server.tls]` is written by the test (`tls` holds the table's
/// keys and its certificates), with more workers.
fn start_with(driver: IoDriver, workers: usize, origin: &Origin, tls: &str, routes: &str) -> Gw {
    let top = format!("[server]\n\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\n{tls}\n");
    let mut text = simple_config(origin, &top);
    text.push_str(routes);
    Gw::start_workers(driver, workers, &text)
}

fn cert_entry(names: &[&str], files: &(std::path::PathBuf, std::path::PathBuf)) -> String {
    format!(
        "[[server.tls.certificates]]\nserver_names = {names:?}\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        files.0.display(),
        files.1.display()
    )
}

both_drivers! {
    fn certificates_are_chosen_by_sni_with_wildcards_and_a_default(driver) {
        let origin = Origin::echo();
        let ca = Ca::new("sni CA");
        let dir = TempDir::new("sni");
        let api = ca.server(&["api.test"]);
        let wild = ca.server(&["*.wild.test"]);
        let tls = format!(
            "{}{}",
            cert_entry(&["api.test"], &api.write(&dir.0, "api")),
            cert_entry(&["*.wild.test"], &wild.write(&dir.0, "wild"))
        );
        let gw = start_with(driver, 1, &origin, &tls, "");
        let addr = gw.gateway().tls_addrs()[0];
        let served = |sni: &str| {
            let c = Client::connect_tls(addr, common::tls::client_config_any(&["http/1.1"]), sni);
            c.tls().peer_certificates().unwrap()[0].clone()
        };
        assert_eq!(served("api.test"), api.cert_der);
        assert_eq!(served("API.Test"), api.cert_der, "names are case-insensitive");
        assert_eq!(served("x.wild.test"), wild.cert_der);
        // A wildcard covers one label: not the bare name, not two labels.
        assert_eq!(served("wild.test"), api.cert_der);
        assert_eq!(served("a.b.wild.test"), api.cert_der);
        assert_eq!(served("unknown.test"), api.cert_der);
        // No SNI at all (an IP address as the name): the default, the first one.
        assert_eq!(served("127.0.0.1"), api.cert_der);
        // And a verifying client gets through with the right name.
        let mut c = Client::connect_tls(addr, client_config(&ca, &["http/1.1"], &[], None), "x.wild.test");
        assert_eq!(c.request(&Req::get("/w")).status, 200);
    }

    fn sessions_resume_on_any_worker(driver) {
        let origin = Origin::echo();
        let ca = Ca::new("resume CA");
        let dir = TempDir::new("resume");
        let tls = cert_entry(&["gw.test"], &ca.server(&["gw.test"]).write(&dir.0, "gw"));
        let gw = start_with(driver, 2, &origin, &tls, "");
        let addr = gw.gateway().tls_addrs()[0];
        for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
            // One client configuration: its resumption store keeps the tickets.
            let cfg = client_config(&ca, &["http/1.1"], &[v], None);
            let mut first = Client::connect_tls(addr, cfg.clone(), "gw.test");
            assert_eq!(first.request(&Req::get("/first")).status, 200);
            assert_eq!(first.tls().handshake_kind(), Some(rustls::HandshakeKind::Full));
            // New connections land on either worker (SO_REUSEPORT hashes the source
            // port); every one must resume.
            for i in 0..8 {
                let mut c = Client::connect_tls(addr, cfg.clone(), "gw.test");
                assert_eq!(c.request(&Req::get(&format!("/again/{i}"))).status, 200);
                assert_eq!(
                    c.tls().handshake_kind(),
                    Some(rustls::HandshakeKind::Resumed),
                    "{v:?} connection {i} did not resume"
                );
            }
        }
    }

    fn client_certificates_reach_the_upstream_when_verified(driver) {
        let origin = Origin::echo();
        let ca = Ca::new("mtls CA");
        let other = Ca::new("someone else");
        let dir = TempDir::new("mtls");
        let ca_file = dir.path("clients.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        let tls = format!(
            "client_auth = \"optional\"\nclient_ca_file = \"{}\"\n{}",
            ca_file.display(),
            cert_entry(&["gw.test"], &ca.server(&["gw.test"]).write(&dir.0, "gw"))
        );
        let routes = "[[routes]]\nid = \"devices\"\npath_prefix = \"/devices\"\nupstream = \"app\"\nauth = \"mtls\"\n";
        // The device route must come before the catch-all: put it first.
        let gw = {
            let top = format!("[server]\n\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\n{tls}\n");
            let text = fill(
                &format!(
                    "{top}\n[[upstreams]]\nname = \"app\"\nservers = [\"{{origin}}\"]\n\n{routes}\n\
                     [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n"
                ),
                &[("origin", origin.addr())],
            );
            Gw::start(driver, &text)
        };
        let addr = gw.gateway().tls_addrs()[0];
        let device = ca.client("device-17", "Example Devices");
        let sha = {
            let d = ring::digest::digest(&ring::digest::SHA256, device.cert_der.as_ref());
            hex::encode(d.as_ref())
        };

        // With a certificate: its subject and fingerprint go upstream, and what the
        // client claimed in those fields does not.
        let mut c = Client::connect_tls(addr, client_config(&ca, &["http/1.1"], &[], Some(&device)), "gw.test");
        let r = c.request(
            &Req::get("/devices/1")
                .header("X-Client-Cert-Subject", "CN=admin")
                .header("X-Client-Cert-SHA256", "00"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = origin.last_request();
        // RFC 4514: the last RDN of the certificate's sequence first (rcgen writes CN,
        // then O), as nginx's $ssl_client_s_dn does.
        assert_eq!(seen.all("x-client-cert-subject"), vec!["O=Example Devices,CN=device-17"]);
        assert_eq!(seen.all("x-client-cert-sha256"), vec![sha.as_str()]);

        // Without one (optional): served, but not on the mTLS route, and forged
        // fields never reach the upstream.
        let mut c = Client::connect_tls(addr, client_config(&ca, &["http/1.1"], &[], None), "gw.test");
        let r = c.request(&Req::get("/devices/1"));
        r.assert_json_error(403);
        let r = c.request(&Req::get("/open").header("X-Client-Cert-Subject", "CN=admin"));
        assert_eq!(r.status, 200);
        let seen = origin.last_request();
        assert!(!seen.has("x-client-cert-subject") && !seen.has("x-client-cert-sha256"));

        // A certificate from an unknown CA is refused in the handshake.
        let stranger = other.client("stranger", "Nobody");
        let cfg = client_config(&ca, &["http/1.1"], &[], Some(&stranger));
        let refused = Client::try_connect_tls(addr, cfg, "gw.test")
            .and_then(|mut c| {
                c.send(Req::get("/open").bytes());
                match c.try_read_response("GET") {
                    Ok(r) => Ok(r.status),
                    Err(e) => Err(std::io::Error::other(format!("{e:?}"))),
                }
            });
        assert!(refused.is_err(), "a client certificate from an unknown CA was accepted");
    }

    fn required_client_certificates_refuse_clients_without_one(driver) {
        let origin = Origin::echo();
        let ca = Ca::new("mtls CA");
        let dir = TempDir::new("mtls-req");
        let ca_file = dir.path("clients.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        let tls = format!(
            "client_auth = \"required\"\nclient_ca_file = \"{}\"\n{}",
            ca_file.display(),
            cert_entry(&["gw.test"], &ca.server(&["gw.test"]).write(&dir.0, "gw"))
        );
        let gw = start_with(driver, 1, &origin, &tls, "");
        let addr = gw.gateway().tls_addrs()[0];
        // TLS 1.3: the client learns of the refusal on its first read.
        let refused = Client::try_connect_tls(addr, client_config(&ca, &["http/1.1"], &[], None), "gw.test")
            .and_then(|mut c| {
                c.send(Req::get("/x").bytes());
                c.try_read_response("GET").map(|r| r.status).map_err(|e| std::io::Error::other(format!("{e:?}")))
            });
        assert!(refused.is_err(), "served without a client certificate");
        let device = ca.client("device-1", "Example Devices");
        let mut c = Client::connect_tls(addr, client_config(&ca, &["http/1.1"], &[], Some(&device)), "gw.test");
        assert_eq!(c.request(&Req::get("/x")).status, 200);
        assert!(origin.last_request().has("x-client-cert-sha256"));
        assert!(origin.requests().len() == 1);
    }

    fn plain_requests_are_redirected_and_https_gets_hsts(driver) {
        let origin = Origin::echo();
        let ca = Ca::new("redirect CA");
        let dir = TempDir::new("redirect");
        let tls = format!(
            "redirect_http = true\nhsts_max_age_s = 31536000\n{}",
            cert_entry(&["gw.test"], &ca.server(&["gw.test"]).write(&dir.0, "gw"))
        );
        let gw = start_with(driver, 1, &origin, &tls, "");
        let port = gw.gateway().tls_addrs()[0].port();
        let r = gw.send(&Req::post("/api/x?y=1", "body").host("gw.test:8080"));
        assert_eq!(r.status, 308);
        assert_eq!(r.header("location"), Some(format!("https://gw.test:{port}/api/x?y=1").as_str()));
        assert!(!r.has("strict-transport-security"), "HSTS is never sent over plain HTTP");
        assert!(origin.requests().is_empty());
        let mut c = Client::connect_tls(gw.gateway().tls_addrs()[0], client_config(&ca, &["http/1.1"], &[], None), "gw.test");
        let r = c.request(&Req::get("/api/x"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("strict-transport-security"), Some("max-age=31536000"));
        // Errors over HTTPS carry it too.
        let r = c.request(&Req::get("/api/x").header("Content-Length", "x"));
        assert_eq!(r.status, 400);
    }

    fn a_reload_serves_new_certificates_to_new_handshakes_only(driver) {
        let origin = Origin::echo();
        let old_ca = Ca::new("old CA");
        let new_ca = Ca::new("new CA");
        let dir = TempDir::new("tls-reload");
        let files = old_ca.server(&["gw.test"]).write(&dir.0, "gw");
        let tls = cert_entry(&["gw.test"], &files);
        let text = {
            let top = format!("[server]\n\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\n{tls}\n");
            simple_config(&origin, &top)
        };
        let gw = Gw::start(driver, &text);
        let addr = gw.gateway().tls_addrs()[0];
        let mut open = Client::connect_tls(addr, client_config(&old_ca, &["http/1.1"], &[], None), "gw.test");
        assert_eq!(open.request(&Req::get("/before")).status, 200);

        // New files in place, then a reload: new handshakes get the new certificate.
        new_ca.server(&["gw.test"]).write(&dir.0, "gw");
        let cfg = Config::parse(&without_auth(&render_config(&text, driver, 1)), "reload.toml").unwrap();
        gw.gateway().reload(cfg).expect("reload applied");
        let mut fresh = Client::connect_tls(addr, client_config(&new_ca, &["http/1.1"], &[], None), "gw.test");
        assert_eq!(fresh.request(&Req::get("/after")).status, 200);
        assert!(Client::try_connect_tls(addr, client_config(&old_ca, &["http/1.1"], &[], None), "gw.test").is_err());
        // The connection opened before keeps its session.
        assert_eq!(open.request(&Req::get("/still")).status, 200);

        // A broken key file: the configuration is refused, the certificate stays.
        std::fs::write(&files.1, "not a key").unwrap();
        let err = Config::parse(&without_auth(&render_config(&text, driver, 1)), "reload.toml").expect_err("a broken key is refused");
        assert!(err.to_string().contains("key"), "{err}");
        let mut again = Client::connect_tls(addr, client_config(&new_ca, &["http/1.1"], &[], None), "gw.test");
        assert_eq!(again.request(&Req::get("/again")).status, 200);
    }
}

both_drivers! {
    /// Cached bodies over TLS: one kept in memory (encrypted from the cache's buffer)
    /// and one kept in a memory-backed file (sendfile on plain connections; read a
    /// chunk at a time and encrypted over TLS), each served whole and intact.
    fn cache_hits_are_served_over_tls_from_memory_and_from_files(driver) {
        let small = pattern(50_000, 3);
        let big = pattern(700_000, 4);
        let (s, b) = (small.clone(), big.clone());
        let origin = Origin::start(move |req| {
            let body = if req.target.starts_with("/big") { b.clone() } else { s.clone() };
            Reply::ok(body).header("Cache-Control", "max-age=60")
        });
        let ca = Ca::new("cache CA");
        let dir = TempDir::new("tls-cache");
        let files = ca.server(&["gw.test"]).write(&dir.0, "gw");
        let text = fill(
            &format!(
                "[server]\n\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\n{}\n\
                 [cache]\nenabled = true\nmax_bytes = 67108864\nmax_object_bytes = 8388608\n\
                 file_min_bytes = 131072\n\
                 [[upstreams]]\nname = \"app\"\nservers = [\"{{origin}}\"]\n\
                 [[routes]]\nid = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
                 cache = {{ ttl_s = 30 }}\n",
                cert_entry(&["gw.test"], &files)
            ),
            &[("origin", origin.addr())],
        );
        let gw = Gw::start(driver, &text);
        let mut c = Client::connect_tls(
            gw.gateway().tls_addrs()[0],
            client_config(&ca, &["http/1.1"], &[], None),
            "gw.test",
        );
        for (path, want) in [("/small", &small), ("/big", &big)] {
            for i in 0..3 {
                let r = c.request(&Req::get(path));
                assert_eq!(r.status, 200);
                assert_eq!(r.body.len(), want.len(), "{path} #{i}");
                assert_eq!(checksum(&r.body), checksum(want), "{path} #{i}");
                if i > 0 {
                    assert_eq!(r.header("x-cache"), Some("HIT"), "{path} #{i}");
                }
            }
        }
        assert_eq!(origin.requests().len(), 2);
    }
}
