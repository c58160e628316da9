#!/usr/bin/env python3
"""A loopback HTTP proxy in front of moto that injects the failures AWS clients must survive.

  fault_proxy.py PORT UPSTREAM_URL

Requests are forwarded to UPSTREAM_URL unchanged. Faults are queued through a control path:
  POST /__faults  {"faults": ["throttle", "500", "503-retry-after", "reset", "slow", "stall", "pass", ...]}
each one is consumed by the next AWS request, in order; "pass" forwards normally.
  GET  /__faults  -> {"pending": [...], "log": [[fault, method, target], ...]}
Throttling answers in the protocol of the request: JSON (X-Amz-Target) or XML (query, rest-xml).
"reset" reads the request, then closes the connection without answering (curl: "reset", sent).
"slow" waits half a second, then forwards; "stall" waits 1.5 s, then forwards.
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
PENDING = []
LOG = []
UPSTREAM = urllib.parse.urlsplit(sys.argv[2])


def next_fault():
    with LOCK:
        return PENDING.pop(0) if PENDING else "pass"


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, status, headers, data):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def control(self, data):
        global PENDING
        if self.command == "POST":
            with LOCK:
                PENDING = list(json.loads(data or b"{}").get("faults", []))
                LOG.clear()
        with LOCK:
            doc = json.dumps({"pending": PENDING, "log": LOG}).encode()
        self.reply(200, [("Content-Type", "application/json")], doc)

    def throttle(self, target):
        if target:
            self.reply(400, [("Content-Type", "application/x-amz-json-1.1"),
                             ("x-amzn-RequestId", "fault-proxy")],
                       b'{"__type":"ThrottlingException","message":"Rate exceeded (fault proxy)"}')
        else:
            self.reply(400, [("Content-Type", "text/xml")],
                       b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                       b"<Message>Rate exceeded (fault proxy)</Message></Error>"
                       b"<RequestId>fault-proxy</RequestId></ErrorResponse>")

    def forward(self, data):
        conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        conn.request(self.command, self.path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        skip = ("connection", "keep-alive", "transfer-encoding", "content-length")
        self.reply(resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in skip], payload)

    def handle_any(self):
        data = self.body()
        if self.path.startswith("/__faults"):
            return self.control(data)
        fault = next_fault()
        target = self.headers.get("X-Amz-Target")
        with LOCK:
            LOG.append([fault, self.command, target or self.path.split("?")[0]])
        if fault == "throttle":
            return self.throttle(target)
        if fault in ("500", "502", "503", "504"):
            return self.reply(int(fault), [("Content-Type", "text/html")], b"<html>upstream trouble</html>")
        if fault == "503-retry-after":
            return self.reply(503, [("Retry-After", "1")], b"")
        if fault in ("slow", "stall"):
            time.sleep(0.5 if fault == "slow" else 1.5)
            return self.forward(data)
        if fault == "reset":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        return self.forward(data)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Proxy).serve_forever()
