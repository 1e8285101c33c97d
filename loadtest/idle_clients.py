#!/usr/bin/env python3
"""Open N keep-alive connections to a proxy, make one GET on each, then hold them all
idle. Prints "ready <n>" on stdout once every connection has its whole response, then
holds them until it is killed (SIGTERM). Used by loadtest/conns.sh.

usage: idle_clients.py HOST PORT N [PATH]
"""
import selectors
import signal
import socket
import sys


def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/"
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    socks = []
    pending = {}
    for _ in range(n):
        s = socket.create_connection((host, port))
        s.setblocking(False)
        s.sendall(request)
        socks.append(s)
        pending[s] = b""
        sel.register(s, selectors.EVENT_READ)
    done = 0
    while pending:
        events = sel.select(timeout=30)
        if not events:
            sys.exit(f"no response for 30 s ({done} of {n} done)")
        for key, _ in events:
            s = key.fileobj
            data = s.recv(65536)
            if not data:
                sys.exit(f"connection closed before its response ({done} done)")
            buf = pending[s] + data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                pending[s] = buf
                continue
            head = buf[:end].decode("latin-1").lower()
            if not head.startswith("http/1.1 200"):
                sys.exit(f"unexpected response: {head.splitlines()[0]!r}")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip() == "content-length":
                    length = int(value)
            if len(buf) - end - 4 >= length:
                sel.unregister(s)
                del pending[s]
                done += 1
            else:
                pending[s] = buf
    print(f"ready {done}", flush=True)
    # Not stdin: a background job of a script reads /dev/null there, and would end at
    # once (closing every connection before the measurement).
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
