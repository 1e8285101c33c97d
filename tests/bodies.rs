//! Message bodies in both directions: Content-Length and chunked uploads, chunked and
//! close-delimited responses re-framed for HTTP/1.1 and HTTP/1.0 clients, bodiless
//! statuses, HEAD, large streamed bodies, `Expect: 100-continue`.

mod common;

use common::*;

const MIB: usize = 1024 * 1024;

both_drivers! {
    fn content_length_uploads_small_and_streamed(driver) {
        let origin = Origin::start(|r| Reply::ok(checksum(&r.body).to_string()));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        // 100 bytes travel with the head; 300 KiB are streamed.
        for (i, len) in [100usize, 300 * 1024].into_iter().enumerate() {
            let body = pattern(len, i as u64 + 1);
            let resp = c.request(&Req::post("/up", body.clone()));
            assert_eq!(resp.status, 200);
            assert_eq!(resp.text(), checksum(&body).to_string());
            let r = origin.last_request();
            assert_eq!(r.header("content-length"), Some(&*len.to_string()));
            assert!(!r.chunked);
            assert!(r.body == body, "upload of {len} bytes corrupted");
        }
        assert!(origin.errors().is_empty(), "{:?}", origin.errors());
    }

    fn chunked_upload_is_reframed(driver) {
        let origin = Origin::start(|r| Reply::ok(format!("{}", r.body.len())));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::post("/up", "").chunked(&[b"hello", b" ", b"world"]));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "11");
        let r = origin.only_request();
        assert!(r.chunked, "origin got {:?}", r.headers);
        assert!(!r.has("content-length"));
        assert_eq!(r.body, b"hello world");
        assert!(origin.errors().is_empty(), "{:?}", origin.errors());
        // The connection is still in step.
        assert_eq!(c.request(&Req::get("/")).status, 200);
    }

    fn chunked_upload_with_extensions_and_trailers(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let raw = b"POST /t HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: Chunked\r\n\r\n\
                    5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Checksum: abc\r\n\r\n";
        c.send(raw);
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        let r = origin.only_request();
        assert!(r.chunked);
        assert_eq!(r.body, b"hello0123456789");
        // Trailers are tolerated; if forwarded they are intact.
        for (n, v) in &r.trailers {
            assert_eq!((n.as_str(), v.as_str()), ("X-Checksum", "abc"));
        }
        assert!(origin.errors().is_empty(), "{:?}", origin.errors());
        assert_eq!(c.request(&Req::get("/after")).text(), "GET /after");
    }

    fn chunked_upload_split_into_tiny_writes(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let req = Req::post("/drip", "").chunked(&[b"abc", b"defgh", b"i"]);
        c.send(req.head_bytes());
        for b in req.body_bytes() {
            c.send([b]);
        }
        assert_eq!(c.read_response().status, 200);
        assert_eq!(origin.only_request().body, b"abcdefghi");
    }

    fn chunked_response_to_http11_client(driver) {
        let origin = Origin::start(|_| {
            Reply::new(200).chunked(&[b"hello", b" ", b"world"], &[("X-Checksum", "abc")])
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/"));
        assert_eq!(resp.status, 200);
        assert!(resp.chunked, "{}", resp.head);
        assert!(!resp.has("content-length"));
        assert_eq!(resp.text(), "hello world");
        assert_eq!(resp.trailers, [("X-Checksum".to_owned(), "abc".to_owned())]);
        assert_eq!(c.request(&Req::get("/")).text(), "hello world");
        assert_eq!(origin.connections(), 1, "a clean chunked response keeps the upstream");
    }

    fn chunked_response_to_http10_client_is_dechunked(driver) {
        let origin = Origin::start(|_| Reply::new(200).chunked(&[b"hello", b" world"], &[]));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/").http10());
        assert_eq!(resp.status, 200);
        assert!(!resp.has("transfer-encoding"), "{}", resp.head);
        assert!(!resp.has("content-length"), "{}", resp.head);
        assert_eq!(resp.text(), "hello world", "body must end with the close");
    }

    fn close_delimited_response_to_http11_client_is_chunked(driver) {
        let origin = Origin::start(|_| Reply::new(200).until_close("streamed till close"));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/"));
        assert_eq!(resp.status, 200);
        assert!(resp.chunked, "{}", resp.head);
        assert_eq!(resp.text(), "streamed till close");
        // The client connection stays usable; the upstream one could not be reused.
        assert_eq!(c.request(&Req::get("/")).text(), "streamed till close");
        assert_eq!(origin.connections(), 2);
    }

    fn close_delimited_response_to_http10_client(driver) {
        let origin = Origin::start(|_| Reply::new(200).until_close("old style"));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/").http10().header("Connection", "keep-alive"));
        assert_eq!(resp.status, 200);
        assert!(!resp.has("transfer-encoding") && !resp.has("content-length"), "{}", resp.head);
        assert_eq!(resp.text(), "old style");
    }

    fn no_content_and_not_modified_have_no_body(driver) {
        let origin = Origin::start(|r| match r.target.as_str() {
            "/204" => Reply::new(204).no_body().header("X-Status", "204"),
            "/304" => Reply::new(304).no_body().header("ETag", "\"v1\""),
            // A 304 may repeat the representation's length; no body follows.
            _ => Reply::new(304).no_body().header("ETag", "\"v2\"").header("Content-Length", "100"),
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::get("/204"));
        assert_eq!(resp.status, 204);
        assert_eq!(resp.header("x-status"), Some("204"));
        assert!(!resp.has("transfer-encoding"), "{}", resp.head);
        assert!(!resp.has("content-length"), "204 with Content-Length:\n{}", resp.head);
        let resp = c.request(&Req::get("/304").header("If-None-Match", "\"v1\""));
        assert_eq!(resp.status, 304);
        assert_eq!(resp.header("etag"), Some("\"v1\""));
        assert!(!resp.has("transfer-encoding"), "{}", resp.head);
        let resp = c.request(&Req::get("/304-length"));
        assert_eq!(resp.status, 304);
        assert!(!resp.has("transfer-encoding"), "{}", resp.head);
        // Any stray body byte would break this exchange.
        let resp = c.request(&Req::get("/204"));
        assert_eq!(resp.status, 204);
        assert_eq!(origin.requests().len(), 4);
        assert_eq!(origin.connections(), 1);
    }

    fn head_response_keeps_length_without_body(driver) {
        let origin = Origin::start(|r| match r.target.as_str() {
            "/chunked" => Reply::new(200).chunked(&[b"abc"], &[]),
            _ => Reply::ok(vec![b'x'; 1000]),
        });
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let resp = c.request(&Req::head("/"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-length"), Some("1000"));
        let resp = c.request(&Req::head("/chunked"));
        assert_eq!(resp.status, 200);
        let resp = c.request(&Req::get("/"));
        assert_eq!(resp.body.len(), 1000);
        assert_eq!(origin.connections(), 1, "HEAD responses must keep the upstream usable");
    }

    fn large_bodies_are_streamed_intact(driver) {
        let down = pattern(8 * MIB, 42);
        let down_sum = checksum(&down);
        let origin = Origin::start(move |r| {
            Reply::ok(down.clone()).header("X-Upload-Sum", &checksum(&r.body).to_string())
        });
        let gw = Gw::simple(driver, &origin);
        let up = pattern(8 * MIB, 7);
        let mut c = gw.client();
        let resp = c.request(&Req::post("/big", up.clone()));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body.len(), 8 * MIB);
        assert_eq!(checksum(&resp.body), down_sum, "download corrupted");
        let up_sum = checksum(&up).to_string();
        assert_eq!(resp.header("x-upload-sum"), Some(&*up_sum), "upload corrupted");
    }

    fn large_chunked_bodies_are_streamed_intact(driver) {
        let chunks: Vec<Vec<u8>> = (0..64)
            .map(|i| pattern(64 * 1024 + i, i as u64 + 100))
            .collect();
        let down: Vec<u8> = chunks.concat();
        let origin = Origin::start(move |r| {
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            Reply::new(200)
                .header("X-Upload-Sum", &checksum(&r.body).to_string())
                .chunked(&refs, &[])
        });
        let gw = Gw::simple(driver, &origin);
        let up = pattern(3 * MIB + 17, 9);
        let up_chunks: Vec<&[u8]> = up.chunks(100_000).collect();
        let mut c = gw.client();
        let resp = c.request(&Req::post("/big", "").chunked(&up_chunks));
        assert_eq!(resp.status, 200);
        assert!(resp.chunked);
        assert_eq!(resp.body.len(), down.len());
        assert_eq!(checksum(&resp.body), checksum(&down), "download corrupted");
        let up_sum = checksum(&up).to_string();
        assert_eq!(resp.header("x-upload-sum"), Some(&*up_sum), "upload corrupted");
        assert!(origin.errors().is_empty(), "{:?}", origin.errors());
    }

    fn expect_100_continue(driver) {
        let origin =
            Origin::start(|r| Reply::ok(format!("got {}", String::from_utf8_lossy(&r.body))));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let req = Req::post("/upload", "12345").header("Expect", "100-continue");
        c.send(req.head_bytes());
        let interim = c.read_response();
        assert_eq!(interim.status, 100, "expected 100 Continue first:\n{}", interim.head);
        c.send(req.body_bytes());
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "got 12345");
        let r = origin.only_request();
        assert!(!r.has("expect"), "origin saw Expect: {:?}", r.headers);
        assert_eq!(r.body, b"12345");
        // And the connection carries on.
        assert_eq!(c.request(&Req::get("/")).status, 200);
    }

    fn expect_100_continue_with_body_already_sent(driver) {
        // A client that does not wait: the body is forwarded, and any interim response
        // it gets must be a 100 before the final one.
        let origin = Origin::start(|r| Reply::ok(r.body.clone()));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        c.send(Req::post("/", "eager").header("Expect", "100-continue").bytes());
        let mut resp = c.read_response();
        if resp.status == 100 {
            resp = c.read_response();
        }
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "eager");
        assert!(!origin.only_request().has("expect"));
    }

    fn content_length_list_of_equal_values_is_accepted(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let resp = gw.send(&Req::post("/", "abc").header("Content-Length", "3, 3"));
        assert_eq!(resp.status, 200);
        let r = origin.only_request();
        assert_eq!(r.body, b"abc");
        assert_eq!(r.all("content-length"), ["3"]);
    }
}

both_drivers! {
    fn pipelined_requests_after_streamed_bodies(driver) {
        let origin = Origin::start(|r| Reply::ok(format!("{} {}", r.target, r.body.len())));
        let gw = Gw::simple(driver, &origin);
        let mut c = gw.client();
        let big = pattern(200 * 1024, 3);
        let mut all = Req::post("/big", big.clone()).bytes();
        all.extend(Req::post("/chunked", "").chunked(&[&big[..70_000], b"x"]).bytes());
        all.extend(Req::get("/last").bytes());
        c.send(all);
        assert_eq!(c.read_response().text(), "/big 204800");
        assert_eq!(c.read_response().text(), "/chunked 70001");
        assert_eq!(c.read_response().text(), "/last 0");
        let reqs = origin.requests();
        assert!(reqs[0].body == big);
        assert_eq!(reqs.len(), 3);
    }
}

both_drivers! {
    fn repeated_equal_content_length_fields_are_accepted(driver) {
        let origin = Origin::echo();
        let gw = Gw::simple(driver, &origin);
        let req = Req::post("/", "hello")
            .header("Content-Length", "5")
            .header("Content-Length", "5");
        let resp = gw.send(&req);
        assert_eq!(resp.status, 200);
        let r = origin.only_request();
        assert_eq!(r.all("content-length"), ["5"]);
        assert_eq!(r.body, b"hello");
    }
}
