#!/usr/bin/env python3
"""boto3's view of a moto server's failover state, over loopback HTTP, so a test that checks it many
times imports boto3 once: GET /view -> api_records.view() as JSON; POST /reset -> reset_failover.reset().
Usage: failover_server.py PORT MOTO_ENDPOINT_URL"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_records import view  # noqa: E402
from reset_failover import reset  # noqa: E402

ENDPOINT = sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/view":
            return self.answer(404, {"error": "no such path"})
        try:
            self.answer(200, view(ENDPOINT))
        except Exception as e:  # the test shows what went wrong
            self.answer(500, {"error": repr(e)})

    def do_POST(self):
        if self.path != "/reset":
            return self.answer(404, {"error": "no such path"})
        try:
            reset(ENDPOINT)
            self.answer(200, {"reset": True})
        except Exception as e:
            self.answer(500, {"error": repr(e)})

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
