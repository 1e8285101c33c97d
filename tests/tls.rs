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
