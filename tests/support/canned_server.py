#!/usr/bin/env python3
"""A loopback HTTP server that answers every request with the next canned
response from a JSON file: [{"status": 200, "headers": {...}, "body": "..."}, ...].
The last response repeats. Used to feed atlas.aws replies no real service sends.
Usage: canned_server.py PORT RESPONSES.json"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT = int(sys.argv[1])
RESPONSES = json.load(open(sys.argv[2]))
state = {"next": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        i = min(state["next"], len(RESPONSES) - 1)
        state["next"] += 1
        r = RESPONSES[i]
        body = r.get("body", "").encode()
        self.send_response(r.get("status", 200))
        for k, v in r.get("headers", {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
