#!/usr/bin/env python3
"""A small HTTP/1.1 keep-alive server on loopback for tests/unit/curl_test.lua.

usage: http_test_server.py PORT [--tls CERT KEY]

Routes (any method):
  /echo                -> 200, JSON {method, path, headers (lower-case), body, connection}
  /delay?ms=N          -> 200 after N milliseconds, body "slept N"
  /status?code=N       -> status N, header Retry-After: 2, body "status N"
  /headers             -> 200 with repeated and mixed-case header names
  /drop                -> reads the request, then closes the socket without answering
  /partial             -> promises 100 bytes, sends 10, closes
  /close               -> 200 with Connection: close, then closes
  /idle-close?ms=N     -> 200; the server then closes this kept-alive connection after N ms idle
  /bytes?n=N           -> 200 with N bytes of "x"
  /connections         -> 200, the number of TCP connections accepted so far
  /delays              -> 200, the number of /delay requests received so far
"""
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

lock = threading.Lock()
connections = 0
delays = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        global connections
        super().setup()
        # headers and body go out in separate writes; without this, Nagle plus the
        # client's delayed ACK adds 40 ms to every keep-alive response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with lock:
            connections += 1
            self.connection_id = connections

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body, headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path == "/echo":
            self.send(200, json.dumps({
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "connection": self.connection_id,
            }), [("Content-Type", "application/json")])
        elif url.path == "/delay":
            global delays
            with lock:
                delays += 1
            ms = int(query.get("ms", "0"))
            time.sleep(ms / 1000)
            self.send(200, "slept %d" % ms)
        elif url.path == "/status":
            code = int(query.get("code", "500"))
            self.send(code, "status %d" % code, [("Retry-After", "2")])
        elif url.path == "/headers":
            self.send(200, "ok", [("X-Multi", "a"), ("x-multi", "b"), ("X-Amzn-RequestId", "req-1"),
                                  ("X-Spaced", "  padded value  ")])
        elif url.path == "/drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif url.path == "/partial":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif url.path == "/close":
            self.send(200, "closing", [("Connection", "close")])
            self.close_connection = True
        elif url.path == "/idle-close":
            self.send(200, "will close when idle")
            self.connection.settimeout(int(query.get("ms", "200")) / 1000)
        elif url.path == "/bytes":
            self.send(200, "x" * int(query.get("n", "0")))
        elif url.path == "/connections":
            with lock:
                self.send(200, str(connections))
        elif url.path == "/delays":
            with lock:
                self.send(200, str(delays))
        else:
            self.send(404, "no route")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    if len(sys.argv) == 5 and sys.argv[2] == "--tls":
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
