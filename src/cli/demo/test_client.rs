//! A blocking HTTP/1.1 client for the demo services' unit tests: it reads responses as
//! a client would (status, headers, a Content-Length body), keeps bytes read past one
//! response for the next, and tells a closed connection from an open one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response as a client sees it.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: String,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One client connection, keeping bytes read past the current response.
pub(super) struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub(super) fn new(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        // A hung server fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub(super) fn send(&mut self, raw: &str) {
        self.stream.write_all(raw.as_bytes()).unwrap();
    }

    pub(super) fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one response; after HEAD (`head_request`) no body follows.
    pub(super) fn reply(&mut self, head_request: bool) -> Reply {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(len) = parsed.parse(&self.buf).unwrap() {
                let status = parsed.code.unwrap();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8(h.value.to_vec()).unwrap();
                        (h.name.to_owned(), value)
                    })
                    .collect();
                self.buf.drain(..len);
                let mut reply = Reply {
                    status,
                    headers,
                    body: String::new(),
                };
                let body_len = match reply.header("content-length") {
                    Some(n) if !head_request => n.parse().unwrap(),
                    _ => 0,
                };
                while self.buf.len() < body_len {
                    assert!(self.fill() > 0, "closed before the body ended");
                }
                let body: Vec<u8> = self.buf.drain(..body_len).collect();
                reply.body = String::from_utf8(body).unwrap();
                return reply;
            }
            assert!(self.fill() > 0, "closed before the response head ended");
        }
    }

    /// True when the server has closed and sent nothing more.
    pub(super) fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill() == 0
    }
}

pub(super) fn request(addr: SocketAddr, raw: &str) -> Reply {
    let mut client = Client::new(addr);
    client.send(raw);
    client.reply(raw.starts_with("HEAD "))
}

pub(super) fn get(addr: SocketAddr, target: &str) -> Reply {
    request(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: demo\r\n\r\n"),
    )
}
