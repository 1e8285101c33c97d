#!/usr/bin/env python3
"""Origin for loadtest/mem.sh: streams a large body out and swallows a large body in,
never holding more than one 64 KiB chunk, so that any memory growth seen during a
transfer belongs to the proxy in between.

  GET  /big     200, Content-Length: SIZE (default 1 GiB), zeros in 64 KiB writes
  POST /sink    (or PUT) reads and discards the body, Content-Length or chunked;
                200 {"received": N, "framing": "length"|"chunked"}
  GET  /health  200 "ok"

usage: sink_origin.py --port PORT [--size BYTES]
"""

import argparse
import http.server
import json
import sys

CHUNK = 64 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and what the proxy speaks upstream
    size = 1 << 30

    def log_message(self, fmt, *args):  # quiet: one line per request is noise here
        pass

    def _reply(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._reply(200, "ok", "text/plain")
            return
        if self.path != "/big":
            self._reply(404, '{"error":"not found"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(self.size))
        self.end_headers()
        chunk = bytes(CHUNK)
        left = self.size
        while left >= CHUNK:
            self.wfile.write(chunk)
            left -= CHUNK
        if left:
            self.wfile.write(chunk[:left])

    def _read_exact(self, n, buf):
        """Read and drop exactly n bytes; False if the peer closed early."""
        view = memoryview(buf)
        while n > 0:
            got = self.rfile.readinto(view[:min(n, CHUNK)])
            if not got:
                return False
            n -= got
        return True

    def do_POST(self):
        if self.path != "/sink":
            self._reply(404, '{"error":"not found"}')
            return
        buf = bytearray(CHUNK)
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            framing, received = "chunked", 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    self.close_connection = True
                    return
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                if not self._read_exact(size, buf):
                    self.close_connection = True
                    return
                received += size
                self.rfile.readline(8)  # CRLF after the chunk
        else:
            framing = "length"
            received = int(self.headers.get("Content-Length") or 0)
            if not self._read_exact(received, buf):
                self.close_connection = True
                return
        self._reply(200, json.dumps({"received": received, "framing": framing}))

    do_PUT = do_POST


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, default=1 << 30)
    args = ap.parse_args()
    Handler.size = args.size
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    print(f"sink_origin on 127.0.0.1:{args.port}, /big is {args.size} bytes",
          file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
