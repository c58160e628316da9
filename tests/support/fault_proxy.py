#!/usr/bin/env python3
"""A loopback HTTP proxy in front of moto that injects the failures AWS clients must survive.

  fault_proxy.py PORT UPSTREAM_URL [--seed S --rate R] [--stall SECONDS]

Requests are forwarded to UPSTREAM_URL unchanged. Faults come from two places:

Queued, through a control path (deterministic tests):
  POST /__faults  {"faults": ["throttle", "500", "reset-after", "pass", ...]}
each one is consumed by the next AWS request, in order; "pass" forwards normally. It also clears the log.
  GET  /__faults  -> {"pending": [...], "log": [[fault, method, target], ...]}

Seeded (the fault campaign): with --seed and --rate, a request that finds the queue empty gets a fault
with probability R, the kind drawn uniformly from RANDOM_FAULTS. The draw is a hash of the seed, the run
label, the operation, its region and how many times this run has sent that operation to that region, so
a seed injects the same faults whatever order concurrent calls arrive in.
  POST /__faults/run {"run": "failover-1"}  labels the requests that follow (one atlas-run process)
  GET  /__faults/requests -> every AWS request the proxy received: {run, op, service, region, method,
       digest, conn, nth, fault, forwarded}; forwarded is true when it reached the upstream. The same
       op and digest (method, path and body) forwarded twice in one run reached the service twice.
  GET  /__faults/idle -> waits (up to 30 s) until no request is in flight, then {"in_flight": n}

The faults:
  pass             forward
  throttle         400 Throttling, in the request's protocol (JSON: X-Amz-Target, else XML); not forwarded
  500, 502, 504    that status with an HTML body; not forwarded
  503              503 with an HTML body; not forwarded
  503-retry-after  503, Retry-After: 1, empty body; not forwarded
  500-after        forwarded, then the answer replaced by a 500 InternalError (the service acted)
  reset            reads the request, closes the connection without forwarding or answering
  reset-after      forwards, then closes without answering (the service acted; the client saw nothing)
  slow             waits half a second, then forwards
  stall            waits 1.5 s, then forwards
  stall-long       waits --stall seconds (past the client's timeout), then forwards
  truncate         forwards, answers the full Content-Length with half the body, closes
  truncate-close   forwards, answers half the body without a length (ended by the close), closes
  empty-200        forwards, answers 200 with an empty body
  html-200         forwards, answers 200 with an HTML page (a captive portal, a proxy's error page)
"""
import argparse
import hashlib
import http.client
import json
import re
import socket
import struct
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANDOM_FAULTS = ["reset", "reset-after", "500-after", "503", "throttle", "stall-long",
                 "truncate", "truncate-close", "empty-200", "html-200"]

ARGS = None
UPSTREAM = None
LOCK = threading.Lock()
IDLE = threading.Condition(LOCK)
PENDING = []
LOG = []
REQUESTS = []
STATE = {"run": "", "in_flight": 0, "conns": 0}
SEEN = {}  # (run, op, region) -> times seen


def draw(run, op, region):
    """The seeded decision for one request: a fault name or "pass"."""
    key = (run, op, region)
    SEEN[key] = SEEN.get(key, 0) + 1
    text = "%d|%s|%s|%s|%d" % (ARGS.seed, run, op, region, SEEN[key])
    h = hashlib.sha256(text.encode()).digest()
    u, k = struct.unpack(">QQ", h[:16])
    if u / 2.0 ** 64 >= ARGS.rate:
        return "pass"
    return RANDOM_FAULTS[k % len(RANDOM_FAULTS)]


# Route 53 (rest-xml) operations by method and path, named as the client names them.
ROUTE53 = [("POST", r"/hostedzone/[^/]+/rrset/?$", "ChangeResourceRecordSets"),
           ("GET", r"/hostedzone/[^/]+/rrset/?$", "ListResourceRecordSets"),
           ("GET", r"/hostedzonesbyname/?$", "ListHostedZonesByName"),
           ("GET", r"/hostedzone/?$", "ListHostedZones"),
           ("GET", r"/hostedzone/[^/]+/?$", "GetHostedZone"),
           ("GET", r"/healthcheck/[^/]+/status/?$", "GetHealthCheckStatus"),
           ("GET", r"/healthcheck/?$", "ListHealthChecks"),
           ("GET", r"/healthcheck/[^/]+/?$", "GetHealthCheck"),
           ("GET", r"/change/[^/]+/?$", "GetChange")]


def describe(command, path, headers, data):
    """-> op ("ecs.UpdateService", "route53.ChangeResourceRecordSets", else "s3 PUT /ID/key"), service, region"""
    auth = headers.get("Authorization") or ""
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/") if "Credential=" in auth else []
    region = scope[2] if len(scope) > 3 else ""
    service = scope[3] if len(scope) > 3 else ""
    target = headers.get("X-Amz-Target")
    if target:
        return "%s.%s" % (service, target.rsplit(".", 1)[-1]), service, region
    if command == "POST" and (headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
        action = urllib.parse.parse_qs(data.decode("utf-8", "replace")).get("Action", [""])[0]
        if action:
            return "%s.%s" % (service, action), service, region
    bare = re.sub(r"^/\d{4}-\d\d-\d\d", "", path.split("?")[0])
    if service == "route53":
        for method, pattern, action in ROUTE53:
            if command == method and re.search(pattern, bare):
                return "route53." + action, service, region
    # ids differ from one moto to the next: a seed draws the same faults against any
    return "%s %s %s" % (service, command, re.sub(r"/[A-Z0-9]{10,}", "/ID", bare)), service, region


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with LOCK:
            STATE["conns"] += 1
            self.conn_id = STATE["conns"]
        self.nth = 0

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

    def answer_json(self, doc):
        self.reply(200, [("Content-Type", "application/json")], json.dumps(doc).encode())

    def control(self, data):
        global PENDING
        path = self.path.split("?")[0]
        if path == "/__faults/run":
            with LOCK:
                STATE["run"] = json.loads(data or b"{}").get("run", "")
            return self.answer_json({"run": STATE["run"]})
        if path == "/__faults/requests":
            with LOCK:
                doc = {"requests": list(REQUESTS)}
            return self.answer_json(doc)
        if path == "/__faults/idle":
            with IDLE:
                IDLE.wait_for(lambda: STATE["in_flight"] == 0, timeout=30)
                doc = {"in_flight": STATE["in_flight"]}
            return self.answer_json(doc)
        if self.command == "POST":
            with LOCK:
                PENDING = list(json.loads(data or b"{}").get("faults", []))
                LOG.clear()
        with LOCK:
            doc = {"pending": PENDING, "log": LOG}
        self.answer_json(doc)

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

    def upstream(self, data):
        """Forwards the request (marked as reached in the log) -> status, headers, payload."""
        with LOCK:
            self.entry["forwarded"] = True
        conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        conn.request(self.command, self.path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        skip = ("connection", "keep-alive", "transfer-encoding", "content-length")
        return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in skip], payload

    def cut(self):
        """Closes the connection at once, without an answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def truncated(self, status, headers, payload, framed):
        half = payload[: len(payload) // 2]
        self.close_connection = True
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if framed:
            self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(half)
        self.wfile.flush()
        self.cut()

    def apply(self, fault, data, target):
        if fault == "throttle":
            return self.throttle(target)
        if fault in ("500", "502", "503", "504"):
            return self.reply(int(fault), [("Content-Type", "text/html")], b"<html>upstream trouble</html>")
        if fault == "503-retry-after":
            return self.reply(503, [("Retry-After", "1")], b"")
        if fault == "reset":
            return self.cut()
        if fault in ("slow", "stall", "stall-long"):
            time.sleep({"slow": 0.5, "stall": 1.5}.get(fault, ARGS.stall))
        status, headers, payload = self.upstream(data)
        if fault == "reset-after":
            return self.cut()
        if fault == "500-after":
            body = (b'{"__type":"InternalFailure","message":"fault proxy"}' if target else
                    b"<ErrorResponse><Error><Code>InternalError</Code><Message>fault proxy</Message>"
                    b"</Error></ErrorResponse>")
            return self.reply(500, [("Content-Type", "application/x-amz-json-1.1" if target else "text/xml")], body)
        if fault in ("truncate", "truncate-close"):
            return self.truncated(status, headers, payload, fault == "truncate")
        if fault == "empty-200":
            return self.reply(200, [(k, v) for k, v in headers if k.lower() == "content-type"], b"")
        if fault == "html-200":
            return self.reply(200, [("Content-Type", "text/html")],
                              b"<html><body><h1>Service temporarily unavailable</h1></body></html>")
        return self.reply(status, headers, payload)

    def handle_any(self):
        data = self.body()
        if self.path.startswith("/__faults"):
            return self.control(data)
        self.nth += 1
        target = self.headers.get("X-Amz-Target")
        op, service, region = describe(self.command, self.path, self.headers, data)
        with LOCK:
            run = STATE["run"]
            if PENDING:
                fault = PENDING.pop(0)
            elif ARGS.seed is not None:
                fault = draw(run, op, region)
            else:
                fault = "pass"
            LOG.append([fault, self.command, target or self.path.split("?")[0]])
            self.entry = {
                "run": run, "op": op, "service": service, "region": region, "method": self.command,
                "fault": fault, "conn": self.conn_id, "nth": self.nth, "forwarded": False,
                "digest": hashlib.sha256(self.command.encode() + b" " + self.path.encode() + b"\n" + data)
                .hexdigest()[:16],
            }
            REQUESTS.append(self.entry)
            STATE["in_flight"] += 1
        try:
            self.apply(fault, data, target)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout) before the answer
        finally:
            with IDLE:
                STATE["in_flight"] -= 1
                IDLE.notify_all()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


def main():
    global ARGS, UPSTREAM
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("upstream")
    p.add_argument("--seed", type=int)
    p.add_argument("--rate", type=float, default=0.2)
    p.add_argument("--stall", type=float, default=3.0)
    ARGS = p.parse_args()
    UPSTREAM = urllib.parse.urlsplit(ARGS.upstream)
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Proxy)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
